"""`pvetool drain`, `undrain` and `rebalance` end to end: the CLI as a process, the client over
HTTPS, the emulated lab cluster in this process (clock at 100x, so a drain takes seconds).

The helpers at the top are shared with test_rolling, test_faults and test_resume. After every
test the cluster is checked: every guest on exactly one node, no guest left locked by a
migration, no migration task still running; during drains a watcher checks that no node ever
holds more than its memory (running guests plus guests migrating into it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvetool.emulator.server import Emulator
from tests.e2e.conftest import ROOT, Cluster
from tests.emu import start

FAST = 100.0  # emulated seconds per real second
POLL = "0.05"  # pvetool's task poll interval for the fast clock (5 emulated seconds)


# --------------------------------------------------------------------------------------------
# shared helpers


def make_cluster(tmp: Path, *, speed: float = FAST, api_hosts: int = 1) -> Cluster:
    emu = start("lab", speed=speed)
    for _ in range(api_hosts - 1):
        emu.add_listener()
    env = emu.env()
    env["PVETOOL_STATE_DIR"] = str(tmp / "state")
    env["PVETOOL_POLL_INTERVAL"] = POLL
    return Cluster(emu, env)


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
        t["upid"]
        for t in state["tasks"]
        if t["status"] == "running" and t["type"] in ("qmigrate", "vzmigrate")
    ]
    assert not running, f"migrations still running: {running}"


def finish(lab: Cluster) -> None:
    """Wait until no migration runs any more (the emulator's clock keeps going)."""

    def idle() -> bool:
        return not any(
            t["status"] == "running" and t["type"] in ("qmigrate", "vzmigrate", "hamigrate")
            for t in lab.emu.state()["tasks"]
        )

    deadline = time.monotonic() + 60
    while not idle() and time.monotonic() < deadline:
        time.sleep(0.05)


def fast_cluster(tmp: Path) -> Iterator[Cluster]:
    """The lab at 100x with pvetool's state in `tmp`; checks the cluster afterwards."""
    cluster = make_cluster(tmp)
    yield cluster
    try:
        finish(cluster)
        check_consistent(cluster.emu)
    finally:
        cluster.emu.stop()
    secret = cluster.emu.admin_token()[1]
    for text in cluster.outputs:
        assert secret not in text, "a secret appeared in pvetool's output"


@pytest.fixture()
def fast_lab(tmp_path: Path) -> Iterator[Cluster]:
    yield from fast_cluster(tmp_path)


class MemoryWatch:
    """Samples the emulator while a run goes on: no node may hold more memory than it has,
    counting the running guests on it and those migrating into it."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.violations: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            state = self.emu.state()
            self.samples += 1
            incoming: dict[str, int] = {}
            for task in state["tasks"]:
                target = task["stats"].get("target")
                if task["status"] == "running" and target and task["vmid"] is not None:
                    guest = state["guests"][str(task["vmid"])]
                    if guest["status"] == "running" or task["type"] == "vzmigrate":
                        incoming[target] = incoming.get(target, 0) + guest["memory"]
            for name, node in state["nodes"].items():
                total = node["memory_committed"] + incoming.get(name, 0)
                if total > node["memory_total"]:
                    self.violations.append(
                        f"{name}: {total / 2**30:.1f} GiB of {node['memory_total'] / 2**30:.0f}"
                    )
            time.sleep(0.01)


def guests_on(emu: Emulator, node: str) -> dict[int, dict[str, Any]]:
    return {int(v): g for v, g in emu.state()["guests"].items() if g["node"] == node}


def json_events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def summary_of(out: str) -> dict[str, Any]:
    return next(e for e in json_events(out) if e["event"] == "summary")


def journal_records(cluster: Cluster) -> list[list[dict[str, Any]]]:
    runs = sorted((Path(cluster.env["PVETOOL_STATE_DIR"]) / "runs").glob("*.jsonl"))
    result = []
    for path in runs:
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
        result.append(records)
    return result


def migration_tasks(emu: Emulator, vmid: int) -> list[dict[str, Any]]:
    return [
        t
        for t in emu.state()["tasks"]
        if t["vmid"] == vmid and t["type"] in ("qmigrate", "vzmigrate")
    ]


def spawn(cluster: Cluster, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`pvetool` as a background process whose stdout lines can be read as they come."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))}
    full_env.update(cluster.env if env is None else env)
    full_env["PYTHONPATH"] = str(ROOT)
    full_env["XDG_CONFIG_HOME"] = str(ROOT / "tests" / "data" / "no-config")
    return subprocess.Popen(
        [sys.executable, "-c", "from pvetool.cli.main import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def read_until(proc: subprocess.Popen[str], needle: str, seen: list[str]) -> str | None:
    """Read stdout lines until one contains `needle` (returned) or the process ends (None)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if needle in line:
            return line
    return None


def collect(proc: subprocess.Popen[str], seen: list[str], cluster: Cluster) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    text = "".join(seen) + out
    cluster.outputs += [text, err]
    return proc.returncode, text, err


# --------------------------------------------------------------------------------------------
# tests


@pytest.mark.emulator_only
def test_drain_pve1_moves_every_movable_guest_without_overfilling(
    fast_lab: Cluster, tmp_path: Path
) -> None:
    before = guests_on(fast_lab.emu, "pve1")
    reports = [str(tmp_path / f"r.{ext}") for ext in ("json", "md", "html")]
    junit = str(tmp_path / "r.xml")
    with MemoryWatch(fast_lab.emu) as watch:
        r = fast_lab.pvetool(
            "drain",
            "pve1",
            "--with-local-disks",
            "--yes",
            *[x for path in reports for x in ("--report", path)],
            "--junit",
            junit,
        )
    assert r.code == 0, r.out + r.err
    assert watch.samples > 5 and not watch.violations, watch.violations
    after = fast_lab.emu.state()["guests"]
    left = guests_on(fast_lab.emu, "pve1")
    assert set(left) == {900}  # the template stays (templates are excluded by default)
    for vmid, guest in before.items():
        if vmid != 900:
            assert after[str(vmid)]["status"] == guest["status"], vmid
            assert len(migration_tasks(fast_lab.emu, vmid)) == 1
    # kinds covered: running/stopped qemu, HA qemu, lxc, local disk
    assert {103, 101, 111, 200} <= set(before)
    assert "summary: 6 moved, 0 skipped, 0 failed, 0 blocked" in r.out

    data = json.loads(Path(reports[0]).read_text())
    assert data["exit_code"] == 0 and data["summary"]["moved"] == 6
    assert all(m["upid"] and m["task_duration_s"] for m in data["moves"])
    ha = next(m for m in data["moves"] if m["vmid"] == 103)
    assert ":qmigrate:" in ha["upid"] and ":hamigrate:" in ha["ha_upid"]
    html = Path(reports[2]).read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "# pvetool run" in Path(reports[1]).read_text()
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "6" and suite.get("failures") == "0"
    journal = journal_records(fast_lab)[0]
    assert journal[0]["type"] == "run-start" and journal[-1]["type"] == "run-end"
    assert {r["vmid"] for r in journal if r["type"] == "origin"} == set(before) - {900}


@pytest.mark.emulator_only
def test_drain_pve2_reports_each_unmovable_guest_with_its_reason(fast_lab: Cluster) -> None:
    before = guests_on(fast_lab.emu, "pve2")
    r = fast_lab.pvetool("drain", "pve2", "--yes", "-o", "json")
    assert r.code == 1, r.err  # guests were left behind
    summary = summary_of(r.out)
    blocked = {b["vmid"]: b["reason"] for b in summary["blocked"]}
    assert set(blocked) == {112, 114}
    assert "hostpci0" in blocked[114]
    assert "local disks" in blocked[112] or "with_local_disks" in blocked[112]
    assert set(guests_on(fast_lab.emu, "pve2")) == {112, 114}
    moved = {m["vmid"] for m in summary["moves"] if m["status"] == "moved"}
    assert moved == set(before) - {112, 114}
    events = {e["event"] for e in json_events(r.out)}
    assert {"run-start", "move-start", "move-end", "summary"} <= events


@pytest.mark.emulator_only
def test_dry_run_and_confirmation(fast_lab: Cluster) -> None:
    r = fast_lab.pvetool("drain", "pve1", "--dry-run")
    assert r.code == 0, r.err
    assert "pve1" in r.out
    r = fast_lab.pvetool("drain", "pve1")  # no terminal, no --yes
    assert r.code == 2
    assert "use" in r.err and "--yes" in r.err and len(r.err.strip().splitlines()) == 1
    assert not [t for t in fast_lab.emu.state()["tasks"] if t["type"] == "qmigrate"]


@pytest.mark.emulator_only
def test_undrain_brings_the_guests_back_and_reports_the_ones_moved_elsewhere(
    fast_lab: Cluster,
) -> None:
    home = set(guests_on(fast_lab.emu, "pve1"))
    r = fast_lab.pvetool("drain", "pve1", "--with-local-disks", "--yes")
    assert r.code == 0, r.out + r.err
    # Someone moves one drained guest elsewhere meanwhile: undrain must leave it there.
    mover = next(v for v in (200, 110) if fast_lab.node_of(v) == "pve3")
    r = fast_lab.pvetool("migrate", str(mover), "--to", "pve2")
    assert r.code == 0, r.err
    with MemoryWatch(fast_lab.emu) as watch:
        r = fast_lab.pvetool("undrain", "pve1", "--yes")
    assert r.code == 0, r.out + r.err
    assert not watch.violations
    assert set(guests_on(fast_lab.emu, "pve1")) == home - {mover}
    assert f"not moved: guest {mover} is on pve2 now, not on pve3" in r.err
    assert fast_lab.node_of(mover) == "pve2"
    runs = journal_records(fast_lab)
    assert runs[-1][0]["kind"] == "undrain" and runs[-1][0]["undoes"] == runs[0][0]["run"]
    r = fast_lab.pvetool("undrain", "pve1", "--yes")
    assert r.code == 0 and "No drain of pve1 to undo" in r.err


@pytest.mark.emulator_only
def test_rebalance_narrows_the_memory_spread(fast_lab: Cluster) -> None:
    def spread() -> float:
        nodes = fast_lab.emu.state()["nodes"].values()
        loads = [n["memory_committed"] / n["memory_total"] for n in nodes]
        return max(loads) - min(loads)

    before = spread()
    r = fast_lab.pvetool("rebalance", "--by", "memory", "--threshold", "20%", "--yes")
    assert r.code == 0, r.out + r.err
    assert "summary:" in r.out and " moved" in r.out
    assert spread() < before
