"""Entry point of `pvetool`: registers the commands and is the one error boundary.

Errors pvetool raises on purpose (`PvetoolError`) become one line on stderr and their exit code
(1 execution failed, 2 usage/config/plan/validation); Ctrl-C exits 130; anything unexpected
prints "internal error" (with a traceback only under `--debug`) and exits 1.

`main(argv, clocks=...)` runs pvetool on other clocks than this machine's (`Clocks`): the seam
the end-to-end tests use to run it in process on the emulator's stepped clock.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import click

from pvetool.cli import (  # noqa: F401  (registration)
    emulator_cmds,
    migrate_cmds,
    plan_cmds,
    run_cmds,
    status_cmds,
)
from pvetool.cli.common import Clocks
from pvetool.cli.group import cli
from pvetool.errors import PvetoolError, TaskFailed

__all__ = ["cli", "main"]


def main(argv: Sequence[str] | None = None, *, clocks: Clocks | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
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
        click.echo(f"error: {exc.description} failed: {exc.reason}", err=True)
        click.echo(f"  exit status '{exc.exitstatus}', task {exc.upid}", err=True)
        if exc.last_lines:
            click.echo("  last lines of the task log:", err=True)
            for line in exc.last_lines[-8:]:
                click.echo(f"    {line}", err=True)
        sys.exit(exc.exit_code)
    except PvetoolError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # the one place that catches everything
        click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        if debug:
            traceback.print_exc()
        else:
            click.echo("(run with --debug for details)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
