"""The typed journal: every record type round-trips through its own class, and journals written
by the version before the records were typed (tests/data/journals/v1) still read, resume and
undrain the same."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from pvetool.errors import ConfigError
from pvetool.journal import Journal, find_resumable, journalled_plan, read_run, undrain_candidates
from pvetool.journal_records import (
    RECORD_TYPES,
    Hook,
    Intent,
    Interruption,
    Origin,
    Outcome,
    PlanRef,
    Power,
    Record,
    Replan,
    Resume,
    RunEnd,
    RunningTask,
    RunStart,
    StageEvent,
    Started,
    WaitNode,
)
from pvetool.model import MigrationRequest, Move, MoveOptions, MoveResult, Stage
from pvetool.plan_json import from_data
from tests.unit.executor.fakes import FakeApi, FakeGuest, make_executor, plan_of
from tests.unit.executor.fakes import move as fake_move

V1 = Path(__file__).resolve().parents[1] / "data" / "journals" / "v1"
GiB = 1024**3
UPID = "UPID:pve1:000003E9:00000001:6B49D201:qmigrate:101:root@pam:"

EVERY_RECORD: tuple[Record, ...] = (
    RunStart(
        run="r1",
        pid=42,
        command="drain:pve1",
        argv=("drain", "pve1"),
        kind="drain",
        plan=PlanRef("drain-pve1", "d1", "sha256:f", "<command line>"),
        drained_nodes=("pve1",),
        undoes="r0",
        plan_json="{}",
    ),
    Resume(pid=43),
    StageEvent(0, "migrate", "start", "drain pve1", "pve1"),
    Intent("a", 101, "pve1", "pve2", kind="qemu", ha=True, shutdown=True),
    Started("a", 101, UPID, cluster_t=1_800_000_001, found=True),
    Power("a", 101, "shutdown", "pve1", UPID, found=True),
    Outcome(
        "a",
        101,
        "moved",
        "shut down, migrated offline and started again",
        source="pve1",
        target="pve2",
        upid=UPID,
        real_upid=UPID,
        ha_upid=UPID,
        node="pve2",
        still_running=False,
        task_start=1_800_000_001.0,
        task_duration_s=21.5,
        downtime_ms=59.0,
        wall_start=0.25,
        wall_end=22.0,
    ),
    Origin(101, "pve1", "pve2", "a"),
    Replan("a", 101, "pve2", "pve3", "target pve2 is offline", new_source="pve4"),
    Hook(1, "before", "pve1", ("reboot", "--now"), "end", 0, False, 1.5, "ok\n", ""),
    WaitNode(2, "pve1", True, 12.25, ""),
    Interruption(2, (RunningTask("a", 101, UPID), RunningTask("b", 102, None))),
    RunEnd(130, True, {"moved": 1, "failed": 0}, (UPID,)),
)


def test_every_record_type_round_trips_through_its_class(tmp_path: Path) -> None:
    assert {type(r) for r in EVERY_RECORD} == set(RECORD_TYPES.values())
    journal = Journal.create(tmp_path, run_id="r1", clock=lambda: 1_790_000_000.5)
    for record in EVERY_RECORD:
        journal.write(record)
    journal.close()
    lines = [json.loads(line) for line in journal.path.read_text().splitlines()]
    assert [line["type"] for line in lines] == [r.TYPE for r in EVERY_RECORD]
    for raw, record in zip(lines, EVERY_RECORD, strict=True):
        assert raw.pop("t") == 1_790_000_000.5
        assert from_data(RECORD_TYPES[raw.pop("type")], raw) == record
    state = read_run(journal.path)
    assert (state.records, state.unreadable, state.torn_lines) == (len(EVERY_RECORD), 0, 0)
    rec = state.moves["a"]
    assert (rec.source, rec.target, rec.status) == ("pve4", "pve3", "moved")
    assert rec.outcome == EVERY_RECORD[6] and rec.abandoned  # the level-2 interrupt came after
    assert state.hooks_done == {1} and state.interrupted and state.exit_code == 130


def test_an_outcome_is_one_spelling_of_a_move_result() -> None:
    move = Move("a", 101, "qemu", "web1", "pve1", "pve2", MoveOptions(online=True, ha=True), "x")
    result = MoveResult(
        move=move,
        status="moved",
        stage_index=2,
        upid=UPID,
        ha_upid="UPID:pve1:0:0:0:hamigrate:101:root@pam:",
        node="pve2",
        task_start=1.0,
        task_duration_s=2.0,
        downtime_ms=3.0,
    )
    outcome = Outcome.of(result, started_upid="UPID:pve1:0:0:0:hamigrate:101:root@pam:")
    assert (outcome.upid, outcome.real_upid) == (result.ha_upid, result.upid)
    assert outcome.result(move, 2) == result


def test_a_record_that_does_not_fit_its_type_is_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(
        '{"type":"intent","t":1,"move":"a","vmid":"not a number","source":"x","target":"y"}\n'
        '{"type":"something-newer","t":2,"x":1}\n'
        '{"type":"intent","t":3,"move":"b","vmid":2,"source":"x","target":"y","new_key":1}\n'
    )
    state = read_run(path)
    assert (state.records, state.unreadable) == (3, 1)
    assert list(state.moves) == ["b"]  # a key this version does not know is ignored


# -- journals written before the records were typed -------------------------------------------


def v1_runs(tmp_path: Path, *names: str) -> Path:
    """A state directory holding copies of the v1 journals named (all of them when none)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    for path in sorted((V1 / "runs").glob("*.jsonl")):
        if not names or any(n in path.name for n in names):
            shutil.copy(path, runs / path.name)
    return tmp_path


def test_v1_journals_read_completely(tmp_path: Path) -> None:
    directory = v1_runs(tmp_path)
    states = {p.stem.split("-")[-1]: read_run(p) for p in sorted((directory / "runs").iterdir())}
    assert all(s.unreadable == 0 and s.torn_lines == 0 for s in states.values())

    rolling = states["aaaaaa"]
    assert (rolling.kind, rolling.drained_nodes, rolling.finished) == ("plan", ("pve1",), True)
    assert {m: r.status for m, r in rolling.moves.items()} == {
        "d1": "moved",
        "d2": "moved",
        "d3": "moved",
        "d4": "moved",
        "d5": "moved",
        "d6": "failed",
    }
    assert rolling.moves["d3"].shutdown and rolling.moves["d3"].power_action == "start"
    assert rolling.moves["d4"].target == "pve3"  # re-planned away from the offline pve4
    assert [(r.move, r.new_target) for r in rolling.replans] == [("d4", "pve3"), ("d6", None)]
    assert (rolling.hooks_done, rolling.hooks_failed) == ({1}, {3})
    assert len(rolling.origins) == 5 and rolling.exit_code == 1
    plan = journalled_plan(rolling)
    assert [m.id for m in plan.moves] == ["d1", "d2", "d3", "d4", "d5", "d6", "r1", "r2", "r3"]

    resumed = states["bbbbbb"]
    assert resumed.resumes == 1 and len(resumed.interrupts) == 1 and resumed.finished
    assert all(r.status == "moved" for r in resumed.moves.values())

    killed = states["cccccc"]
    assert not killed.ended and killed.moves["a"].upid == UPID
    assert killed.moves["a"].outcome is None and killed.moves["b"].intent_t is not None

    abandoned = states["dddddd"]
    assert abandoned.interrupted and all(r.abandoned for r in abandoned.moves.values())

    drain = states["89002a"]
    assert (drain.command, drain.drained_nodes) == ("drain:pve2", ("pve2",))
    assert journalled_plan(drain).blocked == (114,)


def test_a_drain_journalled_by_v1_is_undrained(tmp_path: Path) -> None:
    found = undrain_candidates(v1_runs(tmp_path, "89002a"), "pve2")
    assert found is not None
    run, origins = found
    assert run.run_id == "20261203T103600Z-89002a"
    assert [(o.vmid, o.home, o.now) for o in origins] == [
        (102, "pve2", "pve3"),
        (105, "pve2", "pve3"),
        (112, "pve2", "pve1"),
        (117, "pve2", "pve3"),
        (201, "pve2", "pve3"),
    ]


@pytest.mark.parametrize("typed_tail", [False, True])
def test_a_run_killed_under_v1_is_resumed(tmp_path: Path, typed_tail: bool) -> None:
    directory = v1_runs(tmp_path, "cccccc")
    state = find_resumable(directory, command="drain:pve1")
    assert state is not None
    api = FakeApi(
        {"pve1": 64 * GiB, "pve2": 64 * GiB},
        [FakeGuest(101, "qemu", "pve1"), FakeGuest(102, "qemu", "pve1")],
    )
    running = api.start_migration(MigrationRequest("qemu", "pve1", 101, "pve2", online=True))
    assert str(running) == UPID  # the task the killed run had started
    api.started.clear()
    if typed_tail:  # a first resume that died at once: v1 lines followed by typed ones
        journal = Journal.reopen(state)
        journal.write(Resume(pid=1))
        journal.close()
        state = read_run(state.path)
    report = make_executor(api, journal=Journal.reopen(state)).run(
        journalled_plan(state), resume=state
    )
    assert {r.vmid: r.status for r in report.results} == {101: "moved", 102: "moved"}
    assert api.followed[0] == UPID  # re-attached, not started again
    assert [t.vmid for t in api.started] == [102]  # intent only: looked up, then started
    after = read_run(state.path)
    assert after.finished and after.unreadable == 0


# -- journal trust (reliability campaign finding 11, issue 12) -------------------------------


def drain_journal(directory: Path) -> Journal:
    """A finished drain of pve1 that moved 101 to pve2."""
    journal = Journal.create(directory)
    plan = plan_of(Stage("migrate", "drain pve1", "pve1", (fake_move("m1", 101, "pve1", "pve2"),)))
    journal.start_run(plan, command="drain:pve1", kind="drain", drained_nodes=["pve1"])
    journal.write(Intent(move="m1", vmid=101, source="pve1", target="pve2"))
    journal.write(Origin(vmid=101, home="pve1", now="pve2", move="m1"))
    journal.write(Outcome(move="m1", vmid=101, status="moved", node="pve2"))
    journal.write(RunEnd(exit_code=0))
    journal.close()
    return journal


def test_state_dir_and_journals_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        journal = drain_journal(tmp_path / "state" / "deep")
    finally:
        os.umask(old)
    for folder in (tmp_path / "state", tmp_path / "state" / "deep", journal.path.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


@pytest.mark.parametrize("which", ["state", "runs"])
def test_a_world_writable_or_symlinked_state_dir_is_refused(tmp_path: Path, which: str) -> None:
    state = tmp_path / "state"
    drain_journal(state)
    folder = state if which == "state" else state / "runs"
    folder.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by every user .*chmod 700"):
        undrain_candidates(state, "pve1")
    with pytest.raises(ConfigError, match="writable by every user"):
        Journal.create(state)
    folder.chmod(0o700)

    elsewhere = tmp_path / "planted"
    drain_journal(elsewhere)
    link = tmp_path / "linked"
    link.symlink_to(elsewhere if which == "state" else elsewhere / "runs")
    if which == "runs":
        link = tmp_path / "linked-state"
        link.mkdir(mode=0o700)
        (link / "runs").symlink_to(elsewhere / "runs")
    with pytest.raises(ConfigError, match="symbolic link"):
        undrain_candidates(link, "pve1")
    with pytest.raises(ConfigError, match="symbolic link"):
        find_resumable(link, command="drain:pve1")


def test_a_bad_journal_line_is_named_with_its_file_and_line_and_the_rest_still_counts(
    tmp_path: Path,
) -> None:
    journal = drain_journal(tmp_path)
    lines = journal.path.read_text().splitlines()
    lines.insert(2, '{"type":"origin","t":1,"vmid":"abc","home":"pve1","now":"pve3"}')
    lines.insert(3, "this is not JSON")
    journal.path.write_text("\n".join(lines) + "\n")
    state = read_run(journal.path)
    assert state.problems == [
        f"{journal.path}:3: a 'origin' record that does not fit: "
        + state.problems[0].split("does not fit: ", 1)[1],
        f"{journal.path}:4: not a journal record (not a JSON object)",
    ]
    assert "vmid" in state.problems[0]
    # The rest of the journal still drives undrain (and the other nodes' runs are untouched).
    found = undrain_candidates(tmp_path, "pve1")
    assert found is not None and [(o.vmid, o.now) for o in found[1]] == [(101, "pve2")]
    assert undrain_candidates(tmp_path, "pve2") is None
