"""Rolling maintenance of the whole lab cluster with hooks, end to end.

The hooks (tests/data/hooks/emulator_hook.py, run by pvetool without a shell) "reboot" the node
through the emulator's HTTPS control API: offline, a pause, online. pvetool drains each node,
runs the before hook, waits for the node (online + quorate), runs the after hook, and brings the
guests home. pvetool runs in this process on the stepped clock (`inprocess.py`); the hooks are
real processes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.inprocess import ROOT
from tests.e2e.lab import Cluster, MemoryWatch, checked, journal_records, make_cluster

HOOK = ROOT / "tests" / "data" / "hooks" / "emulator_hook.py"


@pytest.fixture()
def fast_lab(tmp_path: Path) -> Iterator[Cluster]:
    with checked(make_cluster(tmp_path)) as cluster:
        yield cluster


def write_plan(tmp: Path, before: str = "reboot", nodes: str = "[pve1, pve2, pve3]") -> Path:
    log = tmp / "hooks.log"
    hook = [sys.executable, str(HOOK)]
    plan = tmp / "rolling.yaml"
    plan.write_text(
        f"""version: 1
name: rolling-lab
rules:
  exclude: {{tags: [gpu], vmids: [121, 115]}}   # passthrough devices; a guest under backup
  migration: {{with_local_disks: true}}
  on_failure: stop
steps:
  - rolling:
      nodes: {nodes}
      before:
        command: {json.dumps([*hook, before, "--down-s", "0.3", "--log", str(log)])}
        timeout: 60s
        pass_credentials: true   # the hook reaches the emulator with pvetool's token
      after:
        command: {json.dumps([*hook, "check", "--log", str(log)])}
        pass_credentials: true
      wait_online_timeout: 60s
""",
        encoding="utf-8",
    )
    return plan


@pytest.mark.emulator_only
def test_rolling_maintenance_drains_reboots_and_refills_every_node(
    fast_lab: Cluster, tmp_path: Path
) -> None:
    start = {v: g["node"] for v, g in fast_lab.emu.state()["guests"].items()}
    plan = write_plan(tmp_path)
    report = tmp_path / "rolling.json"
    with MemoryWatch(fast_lab) as watch:
        r = fast_lab.pvetool("plan", "apply", str(plan), "--yes", "--report", str(report))
    assert r.code == 0, r.out + r.err
    assert not watch.violations, watch.violations
    end = {v: g["node"] for v, g in fast_lab.emu.state()["guests"].items()}
    assert end == start  # every guest is back where it started
    log = (tmp_path / "hooks.log").read_text().splitlines()
    assert [line.split()[:2] for line in log] == [
        ["reboot", "pve1"],
        ["check", "pve1"],
        ["reboot", "pve2"],
        ["check", "pve2"],
        ["reboot", "pve3"],
        ["check", "pve3"],
    ]
    events = [e for e in fast_lab.emu.cluster.events if e["event"].startswith("node-")]
    assert [(e["event"], e["node"]) for e in events] == [
        (kind, node)
        for node in ("pve1", "pve2", "pve3")
        for kind in ("node-offline", "node-online")
    ]
    data = json.loads(report.read_text())
    assert data["exit_code"] == 0 and data["summary"]["failed"] == 0
    assert len(data["hooks"]) == 6 and all(h["ok"] for h in data["hooks"])
    assert [w["node"] for w in data["node_waits"]] == ["pve1", "pve2", "pve3"]
    # Every node was really emptied of its movable guests before its hook ran.
    for node in ("pve1", "pve2", "pve3"):
        drained = [m for m in data["moves"] if m["source"] == node and m["status"] == "moved"]
        assert drained, node


@pytest.mark.emulator_only
def test_a_failing_hook_stops_the_roll_before_the_next_node(
    fast_lab: Cluster, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, before="fail")
    r = fast_lab.pvetool("plan", "apply", str(plan), "--yes", "-o", "json")
    assert r.code == 1
    log = (tmp_path / "hooks.log").read_text().splitlines()
    assert [line.split()[:2] for line in log] == [["fail", "pve1"]]
    summary = next(json.loads(x) for x in r.out.splitlines() if '"summary"' in x)
    assert summary["hooks"][0]["ok"] is False
    assert "exited with status 1" in summary["stopped_reason"]
    not_started = {m["source"] for m in summary["moves"] if m["status"] == "not-started"}
    assert "pve2" in not_started and "pve3" in not_started
    journal = journal_records(fast_lab)[0]
    hook_end = next(x for x in journal if x["type"] == "hook" and x["event"] == "end")
    assert hook_end["exit_code"] == 1 and "failed (simulated)" in hook_end["output"]
