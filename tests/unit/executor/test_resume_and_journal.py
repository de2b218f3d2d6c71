"""The journal (format, reader, resumable runs, undrain candidates) and resuming a run."""

from __future__ import annotations

import json
from pathlib import Path

from pvetool.journal import (
    Journal,
    find_resumable,
    read_run,
    state_dir,
    undrain_candidates,
)
from pvetool.journal_records import Intent, Origin, Outcome, RunEnd, Started
from pvetool.model import ExecutionPlan, MigrationRequest
from tests.unit.executor.fakes import FakeApi, FakeGuest, make_executor, move, plan_of

GiB = 1024**3
NODES = {"pve1": 64 * GiB, "pve2": 64 * GiB, "pve3": 64 * GiB}


def start(tmp: Path, plan: ExecutionPlan, command: str = "drain:pve1") -> Journal:
    journal = Journal.create(tmp)
    journal.start_run(plan, command=command, kind="drain", drained_nodes=["pve1"])
    return journal


def test_state_dir_precedence(tmp_path: Path) -> None:
    assert state_dir({"PVETOOL_STATE_DIR": str(tmp_path)}) == tmp_path
    assert state_dir({"XDG_STATE_HOME": "/x"}) == Path("/x/pvetool")
    assert state_dir({}).parts[-3:] == (".local", "state", "pvetool")


def test_reader_skips_a_torn_last_line_and_finds_unfinished_runs(tmp_path: Path) -> None:
    plan = plan_of([move("a", 101, "pve1", "pve2")])
    journal = start(tmp_path, plan)
    journal.write(Intent(move="a", vmid=101, source="pve1", target="pve2"))
    journal.close()
    with open(journal.path, "a", encoding="utf-8") as handle:
        handle.write('{"type":"started","move":"a","upid":"UPID:pv')  # killed mid-write
    state = read_run(journal.path)
    assert state.torn_lines == 1 and not state.ended
    assert state.moves["a"].intent_t is not None and state.moves["a"].upid is None
    assert find_resumable(tmp_path, command="drain:pve1") is not None
    assert find_resumable(tmp_path, command="drain:pve2") is None
    # Every record is a complete JSON object on its own line.
    lines = journal.path.read_text().splitlines()[:-1]
    assert all(json.loads(line)["type"] for line in lines)

    done = start(tmp_path, plan)
    done.write(RunEnd(exit_code=0, interrupted=False))
    done.close()
    assert find_resumable(tmp_path, command="drain:pve1") is None  # the last run finished

    failed = start(tmp_path, plan)
    failed.write(RunEnd(exit_code=1, interrupted=False))
    failed.close()
    found = find_resumable(tmp_path, command="drain:pve1")  # a failure can be resumed
    assert found is not None and found.run_id == failed.run_id


def test_resume_never_migrates_an_arrived_guest_again(tmp_path: Path) -> None:
    api = FakeApi(NODES, [FakeGuest(101, "qemu", "pve2"), FakeGuest(102, "qemu", "pve1")])
    plan = plan_of([move("a", 101, "pve1", "pve2"), move("b", 102, "pve1", "pve2")])
    journal = start(tmp_path, plan)
    journal.write(Intent(move="a", vmid=101, source="pve1", target="pve2"))
    journal.write(
        Started(
            move="a",
            vmid=101,
            upid="UPID:pve1:00000001:00000001:6B49D201:qmigrate:101:root@pam:",
            cluster_t=1_800_000_001,
        )
    )
    journal.write(Outcome(move="a", vmid=101, status="moved", node="pve2"))
    journal.close()
    state = read_run(journal.path)
    report = make_executor(api, journal=Journal.reopen(state)).run(plan, resume=state)
    assert [t.vmid for t in api.started] == [102]
    assert {r.vmid: (r.status, r.resumed) for r in report.results} == {
        101: ("moved", True),
        102: ("moved", False),
    }
    assert read_run(journal.path).finished


def test_resume_reattaches_to_a_task_by_upid(tmp_path: Path) -> None:
    api = FakeApi(NODES, [FakeGuest(101, "qemu", "pve1")])
    plan = plan_of([move("a", 101, "pve1", "pve2")])
    upid = api.start_migration(
        MigrationRequest("qemu", "pve1", 101, "pve2", online=True)
    )  # still running
    api.started.clear()
    journal = start(tmp_path, plan)
    journal.write(Intent(move="a", vmid=101, source="pve1", target="pve2"))
    journal.write(Started(move="a", vmid=101, upid=str(upid), cluster_t=upid.starttime))
    journal.close()
    state = read_run(journal.path)
    report = make_executor(api).run(plan, resume=state)
    assert not api.started and api.followed == [str(upid)]
    assert report.results[0].status == "moved" and report.results[0].resumed


def test_resume_after_intent_without_upid(tmp_path: Path) -> None:
    # 101: the POST reached PVE and the task finished while pvetool was dead -> done.
    # 102: the POST reached PVE, the task still runs (guest locked) -> attach to it.
    # 103: the POST never left -> re-check and start.
    api = FakeApi(NODES, [FakeGuest(v, "qemu", "pve1") for v in (101, 102, 103)])
    plan = plan_of(
        [
            move("a", 101, "pve1", "pve2"),
            move("b", 102, "pve1", "pve2"),
            move("c", 103, "pve1", "pve2"),
        ]
    )
    first = api.start_migration(MigrationRequest("qemu", "pve1", 101, "pve2", online=True))
    api.follow(first, 10, None)
    second = api.start_migration(MigrationRequest("qemu", "pve1", 102, "pve2", online=True))
    api.started.clear()
    api.followed.clear()
    journal = start(tmp_path, plan)
    for mid, vmid in (("a", 101), ("b", 102), ("c", 103)):
        journal.write(Intent(move=mid, vmid=vmid, source="pve1", target="pve2"))
    journal.close()
    state = read_run(journal.path)
    report = make_executor(api).run(plan, resume=state)
    assert {r.vmid: r.status for r in report.results} == dict.fromkeys((101, 102, 103), "moved")
    # 102's running task was attached to (the moves run side by side: in no fixed order).
    assert str(second) in api.followed and [t.vmid for t in api.started] == [103]


def test_undrain_candidates_take_the_latest_drain_not_undone(tmp_path: Path) -> None:
    plan = plan_of([move("a", 101, "pve1", "pve2")])
    old = start(tmp_path, plan)
    old.write(Origin(vmid=101, home="pve1", now="pve2", move="a"))
    old.write(Origin(vmid=105, home="pve1", now="pve3", move="b"))
    old.write(RunEnd(exit_code=0))
    old.close()
    found = undrain_candidates(tmp_path, "pve1")
    assert found is not None
    run, origins = found
    assert run.run_id == old.run_id
    assert [(o.vmid, o.now) for o in origins] == [(101, "pve2"), (105, "pve3")]
    assert undrain_candidates(tmp_path, "pve2") is None

    undo = Journal.create(tmp_path)
    undo.start_run(plan, command="undrain:pve1", kind="undrain", undoes=old.run_id)
    undo.write(RunEnd(exit_code=0))
    undo.close()
    assert undrain_candidates(tmp_path, "pve1") is None

    # A rolling run brings guests home itself: nothing is left away.
    roll = Journal.create(tmp_path)
    roll.start_run(plan, command="plan:x", kind="plan", drained_nodes=["pve1"])
    roll.write(Origin(vmid=101, home="pve1", now="pve2", move="d1"))
    roll.write(Intent(move="r1", vmid=101, source="pve2", target="pve1"))
    roll.write(Outcome(move="r1", vmid=101, status="moved", target="pve1"))
    roll.write(RunEnd(exit_code=0))
    roll.close()
    assert undrain_candidates(tmp_path, "pve1") is None
