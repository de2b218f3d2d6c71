"""Offline moves of running VMs (`MoveOptions.shutdown`): shut down, migrate offline, start on
the target, verify; a VM is never left stopped without the outcome saying so; a resumed run
finishes the sequence from what the cluster shows. In-memory cluster, no real waiting."""

from __future__ import annotations

import json
from pathlib import Path

from pvetool.journal import Journal, read_run
from pvetool.journal_records import Intent, Power, Record, Started
from pvetool.model import ExecutionPlan, MigrationRequest, RunReport
from pvetool.model.events import Event, Notice
from tests.unit.executor.fakes import FakeApi, FakeGuest, make_executor, move, plan_of

GiB = 1024**3
NODES = {"pve1": 64 * GiB, "pve2": 64 * GiB, "pve3": 64 * GiB}


def offline_plan(vmid: int = 110, source: str = "pve1", target: str = "pve2") -> ExecutionPlan:
    return plan_of([move("a", vmid, source, target, shutdown=True)])


def run(api: FakeApi, plan: ExecutionPlan, **kw: object) -> RunReport:
    return make_executor(api, **kw).run(plan)  # type: ignore[arg-type]


def guest_state(api: FakeApi, vmid: int = 110) -> tuple[str, str]:
    g = api.guests[vmid]
    return g.node, g.status


def test_shutdown_migrate_offline_start_and_verify(tmp_path: Path) -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1", agent=True)])
    journal = Journal.create(tmp_path)
    plan = offline_plan()
    journal.start_run(plan, command="plan:x", kind="plan")
    events: list[Event] = []
    report = run(api, plan, journal=journal, agent_vmids={110}, observer=events.append)
    journal.close()

    result = report.results[0]
    assert (result.status, result.node, report.exit_code) == ("moved", "pve2", 0)
    assert result.reason == "shut down, migrated offline and started again"
    assert guest_state(api) == ("pve2", "running")
    assert api.power_log() == [("shutdown", 110, "pve1"), ("start", 110, "pve2")]
    assert [(t.vmid, t.params["online"]) for t in api.started] == [(110, False)]
    assert api.power[0].params["timeout"] == 180 and not api.power[0].params["force_stop"]
    assert api.pings >= 1  # the agent answered on the target
    assert result.upid == str(api.started[0].upid)  # the migration task
    assert result.downtime_ms is not None and result.downtime_ms > 0
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("shutting down on pve1" in n for n in notices)
    assert any("starting on pve2" in n for n in notices)

    records = [json.loads(line) for line in journal.path.read_text().splitlines()]
    steps = [
        (r["type"], r.get("action"))
        for r in records
        if r.get("move") == "a" and r["type"] in ("intent", "power", "started", "outcome")
    ]
    assert steps == [
        ("intent", None),
        ("power", "shutdown"),
        ("started", None),
        ("power", "start"),
        ("outcome", None),
    ]
    intent = next(r for r in records if r["type"] == "intent")
    assert intent["shutdown"] is True  # the intent says it is an offline move
    state = read_run(journal.path)
    rec = state.moves["a"]
    assert rec.shutdown and rec.power_action == "start" and rec.status == "moved"
    assert rec.power_upid in rec.upids


def test_a_vm_that_is_already_stopped_is_migrated_and_left_stopped() -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1", status="stopped")])
    report = run(api, offline_plan())
    assert report.results[0].status == "moved"
    assert guest_state(api) == ("pve2", "stopped")
    assert api.power_log() == []


def test_a_failed_migration_starts_the_vm_again_where_it_is() -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1")])
    api.fail_next[110] = "storage 'local-zfs' is not available on node 'pve2'"
    report = run(api, offline_plan())
    result = report.results[0]
    assert result.status == "failed" and report.exit_code == 1
    assert "not available on node 'pve2'" in result.reason
    assert "VM 110 was started again on pve1" in result.reason
    assert result.node == "pve1"
    assert guest_state(api) == ("pve1", "running")
    assert api.power_log() == [
        ("shutdown", 110, "pve1"),
        ("start", 110, "pve1"),
    ]


def test_a_shutdown_that_fails_leaves_the_vm_running_and_migrates_nothing() -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1")])
    api.fail_power[(110, "shutdown")] = ["VM quit/powerdown failed - got timeout"]
    report = run(api, offline_plan())
    result = report.results[0]
    assert result.status == "failed"
    assert "shutdown of VM 110 on pve1 failed: VM quit/powerdown failed - got timeout" in (
        result.reason
    )
    assert result.reason.endswith("VM 110 runs on pve1")
    assert api.started == [] and guest_state(api) == ("pve1", "running")


def test_a_vm_that_starts_nowhere_is_reported_stopped() -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1")])
    api.fail_power[(110, "start")] = ["bridge 'vmbr1' does not exist"] * 2
    report = run(api, offline_plan())
    result = report.results[0]
    assert result.status == "failed" and result.node == "pve2"
    assert "the start of VM 110 on pve2 failed: TASK ERROR: bridge 'vmbr1'" in result.reason
    assert "VM 110 is STOPPED on pve2: starting it again failed" in result.reason
    assert guest_state(api) == ("pve2", "stopped")


def test_ha_guests_go_through_hastop_and_hastart() -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1", ha=True)])
    plan = plan_of([move("a", 110, "pve1", "pve2", shutdown=True, ha=True)])
    report = run(api, plan)
    assert report.results[0].status == "moved"
    assert [t.upid.type for t in api.power] == ["hastop", "hastart"]
    assert api.started[0].upid.type == "hamigrate"
    assert guest_state(api) == ("pve2", "running")


# -- resume ------------------------------------------------------------------------------------


def interrupted(tmp_path: Path, api: FakeApi, *records: Record) -> Journal:
    journal = Journal.create(tmp_path)
    journal.start_run(offline_plan(), command="plan:x", kind="plan")
    journal.write(
        Intent(move="a", vmid=110, source="pve1", target="pve2", kind="qemu", shutdown=True)
    )
    for record in records:
        journal.write(record)
    journal.close()
    return journal


def resume(api: FakeApi, journal: Journal) -> RunReport:
    state = read_run(journal.path)
    ex = make_executor(api, journal=Journal.reopen(state))
    return ex.run(offline_plan(), resume=state)


def test_resume_after_the_shutdown_migrates_and_starts(tmp_path: Path) -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1")])
    upid = api.shutdown_guest("qemu", "pve1", 110)
    api.follow(upid, 10, None)  # done while pvetool was dead
    api.power.clear()
    journal = interrupted(
        tmp_path,
        api,
        Power(move="a", vmid=110, action="shutdown", node="pve1", upid=str(upid)),
    )
    report = resume(api, journal)
    result = report.results[0]
    assert (result.status, result.resumed) == ("moved", True)
    assert api.power_log() == [("start", 110, "pve2")]
    assert [t.params["online"] for t in api.started] == [False]
    assert guest_state(api) == ("pve2", "running")
    assert read_run(journal.path).finished


def test_resume_with_the_shutdown_still_running_follows_it(tmp_path: Path) -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1")])
    upid = api.shutdown_guest("qemu", "pve1", 110)  # still running, not even journalled
    api.power.clear()
    journal = interrupted(tmp_path, api)
    report = resume(api, journal)
    assert report.results[0].status == "moved"
    assert api.followed[0] == str(upid)
    assert api.power_log() == [("start", 110, "pve2")]  # no second shutdown
    found = [
        json.loads(line) for line in journal.path.read_text().splitlines() if '"found":true' in line
    ]
    assert found[0]["type"] == "power" and found[0]["upid"] == str(upid)


def test_resume_with_the_migration_running_follows_it_then_starts(tmp_path: Path) -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1", status="stopped")])
    upid = api.start_migration(MigrationRequest("qemu", "pve1", 110, "pve2", online=False))
    api.started.clear()
    started = Started(move="a", vmid=110, upid=str(upid), cluster_t=1)
    journal = interrupted(tmp_path, api, started)
    report = resume(api, journal)
    assert report.results[0].status == "moved"
    assert api.started == [] and api.followed[0] == str(upid)
    assert api.power_log() == [("start", 110, "pve2")]
    assert guest_state(api) == ("pve2", "running")


def test_resume_on_the_target_starts_it_or_only_verifies(tmp_path: Path) -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve2", status="stopped")])
    report = resume(api, interrupted(tmp_path / "a", api))
    assert report.results[0].status == "moved"
    assert api.power_log() == [("start", 110, "pve2")] and api.started == []

    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve2")])
    report = resume(api, interrupted(tmp_path / "b", api))
    assert (report.results[0].status, report.results[0].resumed) == ("moved", True)
    assert api.power_log() == [] and api.started == []


def test_resume_with_nothing_done_starts_afresh(tmp_path: Path) -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1")])
    report = resume(api, interrupted(tmp_path, api))
    assert report.results[0].status == "moved"
    assert api.power_log() == [("shutdown", 110, "pve1"), ("start", 110, "pve2")]


def test_resume_finds_it_elsewhere_stopped_and_starts_it_there(tmp_path: Path) -> None:
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve3", status="stopped")])
    report = resume(api, interrupted(tmp_path, api))
    result = report.results[0]
    assert result.status == "failed"
    assert "on pve3 now" in result.reason and "started again on pve3" in result.reason
    assert guest_state(api) == ("pve3", "running")


def test_an_unclear_answer_to_the_offline_migrate_request_is_looked_up() -> None:
    """The migration of the shut-down VM started but its answer was garbage: found in the task
    list, followed, the VM started on the target; never requested twice."""
    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1")])
    api.garble_post.add(110)
    report = run(api, offline_plan())
    result = report.results[0]
    assert (result.status, result.node) == ("moved", "pve2")
    assert guest_state(api) == ("pve2", "running")
    assert len(api.started) == 1

    api = FakeApi(NODES, [FakeGuest(110, "qemu", "pve1")])
    api.lose_post.add(110)  # nothing started: the VM is started again where it is
    report = run(api, offline_plan())
    result = report.results[0]
    assert (result.status, result.node) == ("failed", "pve1")
    assert "unclear" in result.reason and "started again on pve1" in result.reason
    assert guest_state(api) == ("pve1", "running") and not api.started
