"""What every command shares: the CLI state, the connection (real cluster or `--emulate`), the
output option, and the rich consoles.

`--emulate CLUSTER` starts the PVE API emulator in-process on a free port and points the client
at it over real HTTPS, with the emulator's CA as the trust anchor: the same code path as a real
cluster.

`Clocks` is the time pvetool waits on: this machine's, unless an embedding program passes others
to `pvetool.cli.main.main` (the one seam through which the end-to-end tests run pvetool in
process on the emulator's stepped clock).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click
from rich.console import Console

from pvetool.errors import ConfigError
from pvetool.render.terminal import SafeConsole
from pvetool.settings import Settings, load_settings

if TYPE_CHECKING:  # imported where a client is made: `pvetool --help` needs no HTTP stack
    from pvetool.api import PveClient

F = TypeVar("F", bound=Callable[..., Any])

# The output contract (pvetool.cli.output, docs/output.md): the same four on every command.
OUTPUT_CHOICES = ("table", "json", "yaml", "markdown")


@dataclass(frozen=True)
class Clocks:
    """What the client and the run wait on and measure with: this machine's time by default.

    `main(argv, clocks=...)` runs pvetool on other clocks; the end-to-end tests pass the
    emulator's stepped clock (each sleep moves the emulated time forward instead of waiting), so
    a run costs real time for its requests only, not for the emulated minutes it waits. pvetool
    never asks which clocks it runs on: the same code runs either way.
    """

    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic  # seconds, for deadlines and durations
    wall: Callable[[], float] = time.time  # epoch seconds: task-list searches, snapshot times


@dataclass
class CliState:
    host: str | None = None
    profile: str | None = None
    token_file: str | None = None
    emulate: str | None = None
    emulate_speed: float = 20.0
    debug: bool = False
    quiet: bool = False  # -q: results and errors only (no progress, no notes)
    verbose: bool = False  # -v: what pvetool's modules log at INFO
    debug_http: bool = False  # every API call: method, path, status, duration
    emulator: Any = None  # pvetool.emulator.server.Emulator when --emulate is used
    client: PveClient | None = None
    settings: Settings | None = None
    clocks: Clocks = field(default_factory=Clocks)
    # SafeConsole: names, tags, log lines and PVE's messages cannot act on the terminal.
    # Prose wraps at word boundaries on a terminal, never in a pipe (`SafeConsole`).
    stdout: Console = field(default_factory=lambda: SafeConsole(highlight=False))
    stderr: Console = field(default_factory=lambda: SafeConsole(stderr=True, highlight=False))


def state(ctx: click.Context) -> CliState:
    obj = ctx.find_object(CliState)
    if obj is None:  # pragma: no cover - the group always creates it
        raise click.UsageError("internal: no CLI state")
    return obj


def _start_emulator(st: CliState) -> dict[str, str]:
    # Imported here: only `--emulate` needs the emulator (and its TLS machinery).
    from pvetool.emulator.clusterfile import ClusterFileError, load_cluster
    from pvetool.emulator.server import Emulator

    try:
        spec = load_cluster(st.emulate or "lab")
    except ClusterFileError as exc:
        raise ConfigError(str(exc), source="--emulate") from None
    emu = Emulator(spec, speed=st.emulate_speed).start()
    st.emulator = emu
    return emu.env()


def get_client(ctx: click.Context) -> PveClient:
    """The connected client for this command (created once; closed when the command ends)."""
    st = state(ctx)
    if st.client is not None:
        return st.client
    if st.emulate:
        env = _start_emulator(st)
        settings = load_settings(env=env, config_path=None)
    else:
        settings = load_settings(
            host=st.host, profile=st.profile, token_file=st.token_file, env=os.environ
        )
    st.settings = settings
    for warning in settings.warnings:
        click.echo(f"warning: {warning}", err=True)
    clocks = st.clocks
    from pvetool.api import PveClient  # deferred: see the TYPE_CHECKING import

    st.client = PveClient(
        settings, sleep=clocks.sleep, wall_clock=clocks.wall, monotonic=clocks.monotonic
    )
    if st.debug_http:
        st.client.trace_http(http_tracer(st))
    root = ctx.find_root()
    root.call_on_close(lambda: close(st))
    return st.client


def http_tracer(st: CliState) -> Callable[[Any], None]:
    """``--debug-http``: one line on stderr per API answer: method, path, status, duration.
    The path only: no query string, header or body (where tokens, tickets and passwords are)."""

    def trace(response: Any) -> None:
        request = response.request
        path = urlsplit(str(request.url)).path
        ms = response.elapsed.total_seconds() * 1000.0
        click.echo(f"http: {request.method} {path} {response.status_code} {ms:.0f} ms", err=True)

    return trace


def apply_verbosity(st: CliState, ctx: click.Context) -> None:
    """-q / -v: the stderr console and Python logging (pvetool's modules log through it).

    Without either, logging is left as it is; with one, the "pvetool" logger's level (and the
    handler of -v) hold until the command ends, then are put back (pvetool may run in a
    process that goes on: the tests, a program that calls `main`)."""
    st.stderr.quiet = st.quiet
    if not (st.quiet or st.verbose):
        return
    logger = logging.getLogger("pvetool")
    previous = logger.level
    logger.setLevel(logging.ERROR if st.quiet else logging.INFO)
    handler: logging.Handler | None = None
    if st.verbose and not any(getattr(h, "pvetool_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler()  # sys.stderr at the time of the call: escaped
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.pvetool_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)

    def restore() -> None:
        logger.setLevel(previous)
        if handler is not None:
            logger.removeHandler(handler)

    ctx.find_root().call_on_close(restore)


def verbosity_options() -> list[click.Option]:
    """``-q/--quiet``, ``-v/--verbose`` and ``--debug-http``: accepted before the command name
    and after it (on every command), so that ``pvetool status -q`` works as well."""

    def set_flag(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        st = ctx.find_object(CliState)
        if value and st is not None and param.name:
            setattr(st, param.name, True)
            apply_verbosity(st, ctx)
        return value

    return [
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            callback=set_flag,
            help="Print results and errors only: no progress, no notes.",
        ),
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            expose_value=False,
            callback=set_flag,
            help="Also print what pvetool logs at INFO (retries, failovers, task logs).",
        ),
        click.Option(
            ["--debug-http", "debug_http"],
            is_flag=True,
            expose_value=False,
            callback=set_flag,
            help="Print every API call on stderr: method, path, status, duration (no secrets).",
        ),
    ]


def close(st: CliState) -> None:
    if st.client is not None:
        st.client.close()
        st.client = None
    if st.emulator is not None:
        st.emulator.stop()
        st.emulator = None


def output_option(
    default: str = "table", choices: tuple[str, ...] = OUTPUT_CHOICES
) -> Callable[[F], F]:
    """`-o/--output` with the given formats."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="table (for people), json or yaml (one document, docs/output.md) or markdown.",
    )
