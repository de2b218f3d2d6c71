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

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from pvetool.errors import ConfigError
from pvetool.render.terminal import SafeConsole
from pvetool.settings import Settings, load_settings

if TYPE_CHECKING:  # imported where a client is made: `pvetool --help` needs no HTTP stack
    from pvetool.api import PveClient

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_CHOICES = ("table", "json", "yaml")


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
    emulator: Any = None  # pvetool.emulator.server.Emulator when --emulate is used
    client: PveClient | None = None
    settings: Settings | None = None
    clocks: Clocks = field(default_factory=Clocks)
    # SafeConsole: names, tags, log lines and PVE's messages cannot act on the terminal.
    stdout: Console = field(default_factory=lambda: SafeConsole(highlight=False, soft_wrap=True))
    stderr: Console = field(
        default_factory=lambda: SafeConsole(stderr=True, highlight=False, soft_wrap=True)
    )


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
    clocks = st.clocks
    from pvetool.api import PveClient  # deferred: see the TYPE_CHECKING import

    st.client = PveClient(
        settings, sleep=clocks.sleep, wall_clock=clocks.wall, monotonic=clocks.monotonic
    )
    root = ctx.find_root()
    root.call_on_close(lambda: close(st))
    return st.client


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
        help="Output format.",
    )
