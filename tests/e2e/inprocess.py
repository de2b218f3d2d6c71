"""`pvetool` in this process, on the emulator's stepped clock (not a test module).

Most end-to-end tests need no real process: they run the CLI (`pvetool.cli.main.main`, its one
error boundary included) in this process, inside click's `CliRunner` isolation (own stdout,
stderr and stdin, no terminal, the environment the test gives), against the emulator in this
process over real HTTPS. What they wait for is emulated time: a migration of ten emulated
minutes, a node coming back, an HA manager round. So the emulator's clock stands still
(speed 0) and pvetool runs on `SteppedClock`, passed through the one seam pvetool has for it,
`main(argv, clocks=...)`: each of pvetool's sleeps moves the emulated clock forward by that much
instead of waiting, and its deadlines are read on the same clock. A run then costs real time
for its requests only, not for the emulated minutes it waits, and how far the cluster got
between two looks of pvetool is what pvetool said it would wait, not what a loaded machine let
pass.

Several of pvetool's threads may sleep at once (one per migration followed); each advances the
clock by its own pause, so emulated time then runs faster than any one follower's cadence,
which only means that it looks less often; every deadline is still measured on the clock the
cluster runs on. The order in which those threads step still varies from run to run, so the
tests assert outcomes, never exact emulated times.

Tests act at a moment of the run with `SteppedClock.on_step`: a check that runs before and after
every step of the clock (no state of the cluster that pvetool could see escapes it), or a
one-shot action once a condition holds (a fault once the first migration started).

Tests that need a real process (signals, kill -9, the env-file proof, the emulator's own
`serve`) run `pvetool` as one against an emulator whose clock runs on real time; they carry the
`process` mark.

Imports: the standard library, click's test runner, pvetool's CLI entry point and the emulator.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from pvetool.cli.common import Clocks
from pvetool.cli.main import main
from pvetool.emulator.server import Emulator

ROOT = Path(__file__).resolve().parents[2]
NO_CONFIG = ROOT / "tests" / "data" / "no-config"  # no ~/.config/pvetool profile is read

# How long one in-process run may take in real time before its next sleep fails it; a bound
# for a run that loops instead of a hung test (runs take well under a second or two).
RUN_LIMIT_S = 120.0


@dataclass
class Run:
    code: int
    out: str
    err: str


class RunTooLong(AssertionError):
    """An in-process run went on past its real-time limit (raised from pvetool's sleep)."""


class SteppedClock:
    """The emulator's clock, stopped, moved forward by pvetool's sleeps (module docstring)."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        emu.clock.set_speed(0.0)
        self._origin_s = emu.clock.now()
        self._lock = threading.Lock()
        self._checks: list[Callable[[], None]] = []
        # set by `run_cli` for the run under way
        self.deadline_real_s: float | None = None
        self.live_out: io.BytesIO | None = None

    # -- the clocks pvetool runs on

    def now(self) -> float:
        """Emulated epoch seconds (pvetool's wall clock)."""
        return self.emu.clock.now()

    def monotonic(self) -> float:
        """Emulated seconds since this clock was made (pvetool's deadlines and durations)."""
        return self.emu.clock.now() - self._origin_s

    def sleep(self, seconds: float) -> None:
        """Run the checks, move the emulated clock forward by `seconds`, run them again."""
        if self.deadline_real_s is not None and time.monotonic() > self.deadline_real_s:
            raise RunTooLong(f"pvetool ran longer than {RUN_LIMIT_S:g} s of real time")
        self._run_checks()
        if seconds > 0:
            self.emu.clock.advance(seconds)
            self._run_checks()
        time.sleep(0)  # let the other threads (the emulator's, pvetool's workers) go on

    def clocks(self) -> Clocks:
        return Clocks(sleep=self.sleep, monotonic=self.monotonic, wall=self.now)

    def advance_until(
        self, done: Callable[[], bool], *, step_s: float = 1.0, limit_s: float = 7200.0
    ) -> bool:
        """Step the clock (from the test) until `done()`; False when `limit_s` emulated seconds
        passed first."""
        waited = 0.0
        while not done():
            if waited >= limit_s:
                return False
            self.sleep(step_s)
            waited += step_s
        return True

    # -- acting at a moment of the run

    @contextlib.contextmanager
    def on_step(self, check: Callable[[], None]) -> Iterator[None]:
        """Run `check` before and after every step of the clock while in the block."""
        with self._lock:
            self._checks.append(check)
        try:
            yield
        finally:
            with self._lock:
                self._checks.remove(check)

    @contextlib.contextmanager
    def once(self, when: Callable[[], bool], action: Callable[[], None]) -> Iterator[list[bool]]:
        """Call `action` once, at the first step at which `when()` holds; the yielded list gets
        `True` when it ran."""
        fired: list[bool] = []
        gate = threading.Lock()

        def check() -> None:
            with gate:
                if not fired and when():
                    action()
                    fired.append(True)

        with self.on_step(check):
            yield fired

    def line_with(self, needle: str) -> str | None:
        """The first whole line the run under way printed on stdout that contains `needle`."""
        live = self.live_out
        if live is None:
            return None
        lines = live.getvalue().decode("utf-8", "replace").split("\n")[:-1]
        return next((line for line in lines if needle in line), None)

    def _run_checks(self) -> None:
        with self._lock:
            checks = list(self._checks)
        for check in checks:
            check()


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """pvetool configures no logging: as a process, its warnings reach stderr through Python's
    last-resort handler. Under pytest the root logger has handlers, so do the same by hand."""
    handler = logging.StreamHandler()  # sys.stderr as it is now: the run's own
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _exit_code(code: object) -> int:
    """What a process exits with for `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    clocks: Clocks | None,
    stepped: SteppedClock | None = None,
    limit_s: float = RUN_LIMIT_S,
) -> Run:
    """`pvetool ARGS` in this process with exactly the `PVETOOL_*`/`PROXMOX_*` settings of `env`
    (and its other variables), on `clocks` (None: this machine's); the run's exit code and
    output as a process would have them."""
    overrides: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("PVETOOL_", "PROXMOX_"))
    }
    overrides.update(env)
    overrides["XDG_CONFIG_HOME"] = str(NO_CONFIG)
    saved_argv = sys.argv
    if stepped is not None:
        stepped.deadline_real_s = time.monotonic() + limit_s
    try:
        with CliRunner().isolation(env=overrides) as (out, err, _mixed), _warnings_to_stderr():
            sys.argv = ["pvetool", *args]
            if stepped is not None:
                stepped.live_out = out
            try:
                main(list(args), clocks=clocks)
                code = 0
            except SystemExit as exc:
                code = _exit_code(exc.code)
            sys.stdout.flush()
            sys.stderr.flush()
            return Run(code, out.getvalue().decode(), err.getvalue().decode("utf-8", "replace"))
    finally:
        sys.argv = saved_argv
        if stepped is not None:
            stepped.deadline_real_s = None
            stepped.live_out = None
