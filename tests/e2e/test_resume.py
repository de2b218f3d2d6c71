"""Crash and interrupt end to end: `kill -9` of pvetool mid-drain then `--resume`, and Ctrl-C
(SIGINT) once (wait for the running migrations) and twice (leave them running).

pvetool runs as a real process here (`process` mark: it is signalled and killed), against the
lab in this process whose clock runs on real time, 20x, so that migrations are still under way
when pvetool dies; the `--resume` after it needs no process and runs in this process on the
stepped clock (`inprocess.py`). No guest may be migrated twice: each guest has exactly one
qmigrate/vzmigrate task in the emulator's task list at the end.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lab import (
    Cluster,
    check_consistent,
    guests_on,
    journal_records,
    make_cluster,
    migration_tasks,
    read_until,
)

pytestmark = pytest.mark.process

SLOW = 20.0


@pytest.fixture()
def slow_lab(tmp_path: Path) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path, speed=SLOW)
    cluster.env["PVETOOL_POLL_INTERVAL"] = "0.1"
    yield cluster
    try:
        cluster.finish()
        check_consistent(cluster.emu)
    finally:
        cluster.emu.stop()


def movable_on_pve1(lab: Cluster) -> set[int]:
    return set(guests_on(lab.emu, "pve1")) - {900}


def started_upids(lab: Cluster) -> set[str]:
    return {r["upid"] for run in journal_records(lab) for r in run if r["type"] == "started"}


def assert_each_migrated_once(lab: Cluster, vmids: set[int]) -> None:
    for vmid in vmids:
        tasks = migration_tasks(lab.emu, vmid)
        assert len(tasks) == 1, (vmid, [t["upid"] for t in tasks])
        assert tasks[0]["exitstatus"] == "OK"


@pytest.mark.emulator_only
def test_kill_9_mid_drain_then_resume_completes_without_migrating_twice(
    slow_lab: Cluster,
) -> None:
    movable = movable_on_pve1(slow_lab)
    proc = slow_lab.spawn("drain", "pve1", "--with-local-disks", "--yes")
    seen: list[str] = []
    assert read_until(proc, " started ", seen) is not None
    # Let a little more happen (a second start or a first arrival), then kill without warning.
    read_until(proc, " started ", seen)
    proc.kill()
    proc.wait(10)
    finished_before = {
        int(t["vmid"])
        for t in slow_lab.emu.state()["tasks"]
        if t["type"] in ("qmigrate", "vzmigrate") and t["status"] == "stopped"
    }
    assert finished_before != movable, "everything finished before the kill"
    run = journal_records(slow_lab)[0]
    assert run[-1]["type"] != "run-end"

    slow_lab.stop_clock()  # the rest needs no process
    r = slow_lab.pvetool("drain", "pve1", "--with-local-disks", "--yes", "--resume")
    assert r.code == 0, r.out + r.err
    assert "resuming" in r.out
    assert not movable & set(guests_on(slow_lab.emu, "pve1"))
    assert_each_migrated_once(slow_lab, movable)
    runs = journal_records(slow_lab)
    assert len(runs) == 1  # the resumed run continues the same journal
    types = [x["type"] for x in runs[0]]
    assert "resume" in types and runs[0][-1]["type"] == "run-end"
    assert runs[0][-1]["exit_code"] == 0


@pytest.mark.emulator_only
def test_ctrl_c_once_waits_for_running_migrations_then_resume(slow_lab: Cluster) -> None:
    movable = movable_on_pve1(slow_lab)
    proc = slow_lab.spawn("drain", "pve1", "--with-local-disks", "--yes", "--max-parallel", "2")
    seen: list[str] = []
    assert read_until(proc, " started ", seen) is not None
    proc.send_signal(signal.SIGINT)
    ended = slow_lab.collect(proc, seen)
    code, out, err = ended.code, ended.out, ended.err
    assert code == 130, out + err
    assert "interrupted: starting no new migrations" in out
    # Nothing was left running: the first Ctrl-C waits for the running migrations.
    state = slow_lab.emu.state()
    assert not [
        t
        for t in state["tasks"]
        if t["status"] == "running" and t["type"] in ("qmigrate", "vzmigrate")
    ]
    run = journal_records(slow_lab)[0]
    assert any(x["type"] == "interrupt" and x["level"] == 1 for x in run)
    assert run[-1]["type"] == "run-end" and run[-1]["interrupted"] is True
    assert movable & set(guests_on(slow_lab.emu, "pve1")), "everything moved before Ctrl-C"

    slow_lab.stop_clock()  # the rest needs no process
    r = slow_lab.pvetool("drain", "pve1", "--with-local-disks", "--yes", "--resume")
    assert r.code == 0, r.out + r.err
    assert not movable & set(guests_on(slow_lab.emu, "pve1"))
    assert_each_migrated_once(slow_lab, movable)


@pytest.mark.emulator_only
def test_ctrl_c_twice_leaves_migrations_running_and_resume_reattaches(slow_lab: Cluster) -> None:
    movable = movable_on_pve1(slow_lab)
    proc = slow_lab.spawn("drain", "pve1", "--with-local-disks", "--yes", "--max-parallel", "2")
    seen: list[str] = []
    assert read_until(proc, " started ", seen) is not None
    proc.send_signal(signal.SIGINT)
    # The second Ctrl-C only once the first was seen: two SIGINTs sent while the process waits
    # for a CPU are one pending signal to the kernel (standard signals do not queue).
    assert read_until(proc, "interrupted: starting no new migrations", seen) is not None
    proc.send_signal(signal.SIGINT)
    ended = slow_lab.collect(proc, seen)
    code, out, err = ended.code, ended.out, ended.err
    assert code == 130, out + err
    assert "interrupted again: leaving" in out
    left = [line for line in out.splitlines() if line.startswith("  UPID:")]
    run = journal_records(slow_lab)[0]
    assert any(x["type"] == "interrupt" and x["level"] == 2 for x in run)
    for line in left:
        assert line.strip() in started_upids(slow_lab)

    slow_lab.stop_clock()  # the rest needs no process
    r = slow_lab.pvetool("drain", "pve1", "--with-local-disks", "--yes", "--resume")
    assert r.code == 0, r.out + r.err
    assert not movable & set(guests_on(slow_lab.emu, "pve1"))
    assert_each_migrated_once(slow_lab, movable)
    summary = json.dumps(journal_records(slow_lab)[0][-1])
    assert '"exit_code": 0' in summary
