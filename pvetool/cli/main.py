"""Entry point of `pvetool`: registers the commands and is the one error boundary.

Errors pvetool raises on purpose (`PvetoolError`) become one line on stderr and their exit code
(1 execution failed, 2 usage/config/plan/validation); an error that lists problems (a plan's)
prints its headline and then one problem per line (``file:line: problem``); with ``-o json``
the error is also printed to stdout as one JSON object (``{"error": {...}}``) when the command
printed nothing there before (a blocked plan's JSON is the answer itself). Ctrl-C exits 130;
anything unexpected prints "internal error" (with a traceback only under `--debug`) and exits 1.

Everything printed goes through `pvetool.render.terminal`: control characters from plans and
API answers are escaped before they reach the terminal.

`main(argv, clocks=...)` runs pvetool on other clocks than this machine's (`Clocks`): the seam
the end-to-end tests use to run it in process on the emulator's stepped clock.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from pvetool.cli.common import Clocks
from pvetool.cli.group import cli
from pvetool.errors import PvetoolError, TaskFailed
from pvetool.render.formats import document
from pvetool.render.terminal import escape_controls, escaping_streams, stdout_written

__all__ = ["cli", "main"]


def _wants_json(args: Sequence[str]) -> bool:
    """Whether the command line asks for ``-o json`` (the error is then JSON too)."""
    for index, arg in enumerate(args):
        if arg == "--":
            return False
        if arg in ("-o", "--output") and index + 1 < len(args) and args[index + 1] == "json":
            return True
        if arg in ("-ojson", "--output=json"):
            return True
    return False


def _one_line(text: str) -> str:
    return escape_controls(text, keep_newlines=False)


def _show_error(exc: PvetoolError, as_json: bool) -> None:
    """The error on stderr: its headline, then each problem it lists on its own line."""
    problems = [str(p) for p in getattr(exc, "problems", ()) or ()]
    headline = exc.message
    if problems and problems[0] in headline:
        headline = headline[: headline.index(problems[0])].rstrip(" :;") + ":"
    if as_json and not stdout_written():  # one JSON document on stdout, never two
        error: dict[str, Any] = {
            "type": type(exc).__name__,
            "exit_code": exc.exit_code,
            "message": exc.message,
        }
        if problems:
            error["problems"] = problems
        click.echo(json.dumps(document("error", {"error": error}), indent=2))
    if problems and headline.endswith(":"):
        click.echo(f"error: {_one_line(headline)}", err=True)
        for problem in problems:
            click.echo(_one_line(problem), err=True)
    else:
        click.echo(f"error: {_one_line(exc.message)}", err=True)


def main(argv: Sequence[str] | None = None, *, clocks: Clocks | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    with escaping_streams():
        _main(args, clocks)


def _main(args: list[str], clocks: Clocks | None) -> None:
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="pvetool", standalone_mode=False, obj=clocks)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TaskFailed as exc:
        click.echo(_one_line(f"error: {exc.description} failed: {exc.reason}"), err=True)
        click.echo(_one_line(f"  exit status '{exc.exitstatus}', task {exc.upid}"), err=True)
        if exc.last_lines:
            click.echo("  last lines of the task log:", err=True)
            for line in exc.last_lines[-8:]:
                click.echo(_one_line(f"    {line}"), err=True)
        sys.exit(exc.exit_code)
    except PvetoolError as exc:
        _show_error(exc, _wants_json(args))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # the one place that catches everything
        click.echo(_one_line(f"internal error: {type(exc).__name__}: {exc}"), err=True)
        if debug:
            traceback.print_exc()
        else:
            click.echo("(run with --debug for details)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
