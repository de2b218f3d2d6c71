"""Offline moves of running VMs end to end: a plan's per-guest ``offline: true`` makes
`pvetool plan apply` shut the VM down, migrate it offline and start it on the target (CLI ->
client -> emulated lab over HTTPS); `pvetool migrate --offline` refuses a running VM with what
to do instead; a run killed between the steps is finished by `--resume`.

pvetool runs in this process on the stepped clock (`inprocess.py`), except in the kill -9 tests
(`process` mark), which kill a pvetool process while the emulator's clock runs on real time
(the `--resume` after it runs in this process again)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lab import Cluster, check_consistent, journal_records, make_cluster, read_until

pytestmark = pytest.mark.emulator_only

PLAN = {
    "version": 1,
    "rules": {"migration": {"with_local_disks": True}},
    "steps": [{"drain": {"node": "pve1", "guests": {110: {"offline": True}}}}],
}


def _tasks_of(lab: Cluster, vmid: int) -> list[dict[str, Any]]:
    return [t for t in lab.emu.state()["tasks"] if t["vmid"] == vmid]


def test_drain_with_an_offline_override_shuts_down_migrates_and_starts(
    lab: Cluster, tmp_path: Path
) -> None:
    plan = tmp_path / "drain-pve1.yaml"
    plan.write_text(json.dumps(PLAN))  # JSON is YAML
    r = lab.pvetool("plan", "apply", str(plan), "--yes", timeout=300)
    assert r.code == 0, r.out + r.err

    state = lab.emu.state()
    guest = state["guests"]["110"]
    assert guest["node"] != "pve1" and guest["status"] == "running" and guest["lock"] is None
    tasks = _tasks_of(lab, 110)
    types = sorted(t["type"] for t in tasks)
    assert types == ["qmigrate", "qmshutdown", "qmstart"], tasks
    assert all(t["exitstatus"] == "OK" for t in tasks)
    by_type = {t["type"]: t for t in tasks}
    # In this order, and the migration was an offline one (the VM was stopped).
    assert (
        by_type["qmshutdown"]["starttime"]
        <= by_type["qmigrate"]["starttime"]
        <= by_type["qmstart"]["starttime"]
    )
    assert by_type["qmigrate"]["stats"]["online"] is False
    assert by_type["qmstart"]["upid"].split(":")[1] == guest["node"]
    # The rest left pve1 as usual (live, by restart): the drain is complete.
    assert state["nodes"]["pve1"]["guests"] == [900]  # the template stays

    runs = sorted((tmp_path / "state").glob("clusters/*/runs/*.jsonl"))
    records = [json.loads(line) for line in runs[-1].read_text().splitlines()]
    power = [(r["action"], r["node"]) for r in records if r["type"] == "power"]
    assert power == [("shutdown", "pve1"), ("start", guest["node"])]


def test_migrate_offline_refuses_a_running_vm_and_says_what_to_do(lab: Cluster) -> None:
    r = lab.pvetool("migrate", "110", "--to", "pve2", "--offline")
    assert r.code == 2, r.out + r.err
    assert "VM 110 is running" in r.err and "shut it down first" in r.err
    assert "offline: true" in r.err
    assert _tasks_of(lab, 110) == []  # nothing was sent
    r = lab.pvetool("migrate", "--help")
    assert "shut it down first" in " ".join(r.out.split())


@pytest.mark.process
@pytest.mark.parametrize(
    "kill_after",
    ["VM 110: shutting down", "started 110 ", "VM 110: starting"],
    ids=["during-shutdown", "during-migration", "during-start"],
)
def test_kill_9_between_the_steps_then_resume_finishes_the_sequence(
    tmp_path: Path, kill_after: str
) -> None:
    cluster = make_cluster(tmp_path, speed=20.0)
    cluster.env["PVETOOL_POLL_INTERVAL"] = "0.1"
    try:
        others = {v: {"skip": True} for v in (101, 103, 111, 113, 200)}
        plan = tmp_path / "offline-110.yaml"
        steps = [
            {
                "drain": {
                    "node": "pve1",
                    "guests": {110: {"offline": True, "target": "pve2"}, **others},
                }
            }
        ]
        plan.write_text(json.dumps({"version": 1, "steps": steps}))
        proc = cluster.spawn("plan", "apply", str(plan), "--yes")
        seen: list[str] = []
        assert read_until(proc, kill_after, seen) is not None, "".join(seen)
        proc.kill()
        proc.wait(10)
        assert journal_records(cluster)[0][-1]["type"] != "run-end"

        cluster.stop_clock()  # the rest needs no process
        r = cluster.pvetool("plan", "apply", str(plan), "--yes", "--resume", timeout=300)
        assert r.code == 0, r.out + r.err
        guest = cluster.emu.state()["guests"]["110"]
        assert (guest["node"], guest["status"], guest["lock"]) == ("pve2", "running", None)
        tasks = _tasks_of(cluster, 110)
        assert sorted(t["type"] for t in tasks) == ["qmigrate", "qmshutdown", "qmstart"], tasks
        runs = journal_records(cluster)
        assert len(runs) == 1 and runs[0][-1]["type"] == "run-end"
        assert runs[0][-1]["exit_code"] == 0
    finally:
        cluster.finish()
        check_consistent(cluster.emu)
        cluster.emu.stop()
