"""The emulated `lab` cluster of the emulator-only end-to-end tests, and what they share.

`make_cluster(tmp)` starts the built-in lab in this process with its clock stopped: `pvetool()`
runs the CLI in this process on the stepped clock (`tests/e2e/inprocess.py`), so emulated
minutes cost no real time. `make_cluster(tmp, speed=20)` starts it with a clock that runs on real
time instead, for the tests that need pvetool as a real process (`process` mark: signals,
kill -9); `pvetool()` and `spawn()` then start one.

After a test `check_consistent` asserts what must hold after anything: every guest on exactly
one node, none left locked by a migration, no migration still running. `MemoryWatch` checks,
while a run goes on, that no node ever holds more memory than it has.

Not a test module. Imports: the standard library, pytest, pvetool's CLI (through
`tests.e2e.inprocess`) and the emulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvetool.emulator.server import Emulator
from tests.e2e.inprocess import NO_CONFIG, ROOT, Run, SteppedClock, run_cli
from tests.emu import start

# pvetool's task poll interval on the stepped clock, in emulated seconds: what 0.05 s at 100x
# used to be, so pvetool looks at a migration as often (in emulated time) as it always did.
STEPPED_POLL = "5"
REAL_TIME_POLL = "0.05"  # real seconds, for an emulator clock that runs on real time
MIGRATIONS = ("qmigrate", "vzmigrate")


@dataclass
class Cluster:
    """The lab, its admin connection settings (`env`) and everything pvetool printed."""

    emu: Emulator
    env: dict[str, str]
    stepped: SteppedClock | None = None  # None: the emulator's clock runs on real time
    outputs: list[str] = field(default_factory=list)

    def pvetool(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        real_time: bool = False,
    ) -> Run:
        """`pvetool ARGS` with `env` (default: the lab's settings) as its only `PVETOOL_*`
        settings: in this process on the stepped clock, or as a process when the emulator's
        clock runs on real time. `real_time`: in this process on this machine's clocks (for
        `--emulate`, whose own emulator runs on real time)."""
        settings = self.env if env is None else env
        if self.stepped is None:
            run = _process(args, settings, timeout)
        elif real_time:
            run = run_cli(args, settings, clocks=None, limit_s=timeout)
        else:
            run = run_cli(
                args, settings, clocks=self.stepped.clocks(), stepped=self.stepped, limit_s=timeout
            )
        self.outputs += [run.out, run.err]
        return run

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """`pvetool ARGS` as a background process whose stdout lines can be read as they come;
        only on an emulator whose clock runs on real time."""
        assert self.stepped is None, "a pvetool process needs the emulator's clock running"
        return subprocess.Popen(
            [sys.executable, "-c", "from pvetool.cli.main import main; main()", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_process_env(self.env),
        )

    def collect(self, proc: subprocess.Popen[str], seen: list[str]) -> Run:
        """Wait for a spawned process; its exit code and everything it printed."""
        out, err = proc.communicate(timeout=120)
        text = "".join(seen) + out
        self.outputs += [text, err]
        return Run(proc.returncode, text, err)

    def stop_clock(self) -> None:
        """From now on the emulator's clock stands still and `pvetool()` runs in this process on
        it: for what follows the part of a `process` test that needs a process (the `--resume`
        after a kill)."""
        self.stepped = SteppedClock(self.emu)
        self.env["PVETOOL_POLL_INTERVAL"] = STEPPED_POLL

    def node_of(self, vmid: int) -> str:
        return str(self.emu.state()["guests"][str(vmid)]["node"])

    def finish(self) -> None:
        """Let the migrations still running end (emulated time goes on for them)."""

        def idle() -> bool:
            return not any(
                t["status"] == "running" and t["type"] in (*MIGRATIONS, "hamigrate")
                for t in self.emu.state()["tasks"]
            )

        if self.stepped is not None:
            self.stepped.advance_until(idle, step_s=1.0, limit_s=3600.0)
            return
        deadline = time.monotonic() + 60
        while not idle() and time.monotonic() < deadline:
            time.sleep(0.05)

    def check_no_secret_leaked(self) -> None:
        secret = self.emu.admin_token()[1]
        for text in self.outputs:
            assert secret not in text, "a secret appeared in pvetool's output"


def _process_env(env: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    full["XDG_CONFIG_HOME"] = str(NO_CONFIG)
    return full


def _process(args: tuple[str, ...], env: dict[str, str], timeout: float) -> Run:
    proc = subprocess.run(
        [sys.executable, "-c", "from pvetool.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=_process_env(env),
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def make_cluster(tmp: Path, *, speed: float | None = None, api_hosts: int = 1) -> Cluster:
    """The lab with pvetool's journal in `tmp`: on the stepped clock (`speed` None), or with a
    clock running `speed` times real time for pvetool as a process."""
    emu = start("lab", speed=speed or 0.0)
    for _ in range(api_hosts - 1):
        emu.add_listener()
    env = emu.env()
    env["PVETOOL_STATE_DIR"] = str(tmp / "state")
    env["PVETOOL_POLL_INTERVAL"] = REAL_TIME_POLL if speed else STEPPED_POLL
    return Cluster(emu, env, stepped=None if speed else SteppedClock(emu))


@contextlib.contextmanager
def checked(cluster: Cluster) -> Iterator[Cluster]:
    """`cluster` for the block; afterwards let it finish, check it (`check_consistent`), stop
    it, and check that no secret appeared in pvetool's output (when the block raised: only stop
    it)."""
    try:
        yield cluster
        cluster.finish()
        check_consistent(cluster.emu)
    finally:
        cluster.emu.stop()
    cluster.check_no_secret_leaked()


def check_consistent(emu: Emulator) -> None:
    """Every guest on exactly one node, none locked by a migration, no migration running."""
    state = emu.state()
    placed: dict[int, list[str]] = {}
    for node, info in state["nodes"].items():
        for vmid in info["guests"]:
            placed.setdefault(int(vmid), []).append(node)
    for vmid, guest in state["guests"].items():
        assert placed.get(int(vmid)) == [guest["node"]], f"guest {vmid} on {placed.get(int(vmid))}"
        assert guest["lock"] != "migrate", f"guest {vmid} is left locked by a migration"
    running = [
        t["upid"] for t in state["tasks"] if t["status"] == "running" and t["type"] in MIGRATIONS
    ]
    assert not running, f"migrations still running: {running}"


class MemoryWatch:
    """Checks the emulator while a run goes on: no node may hold more memory than it has,
    counting the running guests on it and those migrating into it.

    On the stepped clock it checks before and after every step of the clock, so no state the
    run went through escapes it; a thread also samples the cluster every 10 ms of real time."""

    def __init__(self, cluster: Cluster) -> None:
        self.emu = cluster.emu
        self.stepped = cluster.stepped
        self.violations: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._steps: Any = None

    def __enter__(self) -> MemoryWatch:
        if self.stepped is not None:
            self._steps = self.stepped.on_step(self.check)
            self._steps.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._steps is not None:
            self._steps.__exit__(None, None, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            time.sleep(0.01)

    def check(self) -> None:
        state = self.emu.state()
        self.samples += 1
        incoming: dict[str, int] = {}
        for task in state["tasks"]:
            target = task["stats"].get("target")
            if task["status"] == "running" and target and task["vmid"] is not None:
                guest = state["guests"][str(task["vmid"])]
                # PVE moves the config to the target before the task ends (qemu-server
                # QemuMigrate.pm phase3_cleanup move_config_to_node, then qm unlock): from then
                # on the target's committed memory counts the guest already.
                if guest["node"] == target:
                    continue
                if guest["status"] == "running" or task["type"] == "vzmigrate":
                    incoming[target] = incoming.get(target, 0) + guest["memory"]
        for name, node in state["nodes"].items():
            total = node["memory_committed"] + incoming.get(name, 0)
            if total > node["memory_total"]:
                self.violations.append(
                    f"{name}: {total / 2**30:.1f} GiB of {node['memory_total'] / 2**30:.0f}"
                )


def guests_on(emu: Emulator, node: str) -> dict[int, dict[str, Any]]:
    return {int(v): g for v, g in emu.state()["guests"].items() if g["node"] == node}


def json_events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def summary_of(out: str) -> dict[str, Any]:
    return next(e for e in json_events(out) if e["event"] == "summary")


def journal_records(cluster: Cluster) -> list[list[dict[str, Any]]]:
    """The records of every run journal, the runs in the order they started.

    Ordered by the time of the first record, not by file name: a run id starts with its second
    and ends with random hex, so two runs in the same second (in-process runs are that quick)
    would sort at random."""
    result = []
    # Journals live per cluster (``clusters/<name>/runs/``, pvetool.state.layout).
    for path in Path(cluster.env["PVETOOL_STATE_DIR"]).glob("*/*/runs/*.jsonl"):
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
        result.append(records)
    return sorted(result, key=lambda run: run[0]["t"] if run else float("inf"))


def migration_tasks(emu: Emulator, vmid: int) -> list[dict[str, Any]]:
    return [t for t in emu.state()["tasks"] if t["vmid"] == vmid and t["type"] in MIGRATIONS]


def read_until(proc: subprocess.Popen[str], needle: str, seen: list[str]) -> str | None:
    """Read stdout lines until one contains `needle` (returned) or the process ends (None)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if needle in line:
            return line
    return None
