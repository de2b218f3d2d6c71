"""The executor against an in-memory cluster: window, re-checks, verification, policies,
re-planning, timeouts, agent pings, Ctrl-C. Hand-built plans; no network, no real waiting."""

from __future__ import annotations

import json
import threading
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

import pytest

from pvetool.executor import Executor
from pvetool.journal import Journal, read_run
from pvetool.model import Caps, Move, RunReport
from pvetool.model.events import Event, MoveReplanned
from tests.unit.executor.fakes import (
    FakeApi,
    FakeGuest,
    each,
    make_executor,
    move,
    plan_of,
    wait_until,
)

GiB = 1024**3
NODES = {"pve1": 64 * GiB, "pve2": 64 * GiB, "pve3": 64 * GiB}


def cluster(*guests: FakeGuest) -> FakeApi:
    return FakeApi(NODES, list(guests))


def executor(api: FakeApi, **kw: object) -> Executor:
    return make_executor(api, **kw)  # type: ignore[arg-type]


def by_vmid(report: RunReport) -> dict[int, str]:
    return {r.vmid: r.status for r in report.results}


def test_moves_every_kind_with_the_right_call_and_verifies() -> None:
    api = cluster(
        FakeGuest(101, "qemu", "pve1"),
        FakeGuest(102, "qemu", "pve1", status="stopped"),
        FakeGuest(200, "lxc", "pve1"),
        FakeGuest(103, "qemu", "pve1", ha=True),
    )
    plan = plan_of(
        [
            move("a", 101, "pve1", "pve2"),
            move("b", 102, "pve1", "pve2", running=False),
            move("c", 200, "pve1", "pve3", kind="lxc"),
            move("d", 103, "pve1", "pve3", ha=True),
        ]
    )
    report = executor(api).run(plan)
    assert by_vmid(report) == {101: "moved", 102: "moved", 200: "moved", 103: "moved"}
    assert report.exit_code == 0
    params = {t.vmid: t.params for t in api.started}
    assert params[101]["online"] is True
    assert params[102]["online"] is False
    assert params[200]["restart"] is True and params[200]["online"] is None
    assert {api.node_of(v) for v in (101, 102)} == {"pve2"}
    ha = next(r for r in report.results if r.vmid == 103)
    assert ha.upid is not None and ":qmigrate:" in ha.upid
    assert ha.ha_upid is not None and ":hamigrate:" in ha.ha_upid
    ct = next(r for r in report.results if r.vmid == 200)
    assert ct.downtime_ms == 10_000.0  # a restart migration is down for the whole task


def test_sliding_window_honours_caps_and_never_waits_for_a_wave() -> None:
    guests = [FakeGuest(100 + i, "qemu", "pve1") for i in range(6)]
    api = cluster(*guests)
    api.hold(*(g.vmid for g in guests))
    moves = [move(f"m{i}", 100 + i, "pve1", "pve2" if i % 2 else "pve3") for i in range(6)]
    plan = plan_of(moves, caps=Caps(cluster=3, per_source=3, per_target=2))
    ex = executor(api)
    result: list[RunReport] = []
    runner = threading.Thread(target=lambda: result.append(ex.run(plan)))
    runner.start()
    assert wait_until(lambda: len(api.started) == 3)
    api.release(100)  # one ends: the next starts while the other two still run
    assert wait_until(lambda: len(api.started) == 4)
    assert len(api.running) == 3
    api.release()
    runner.join(30)
    assert by_vmid(result[0]) == dict.fromkeys(range(100, 106), "moved")
    assert api.max_cluster == 3
    assert max(api.max_target.values()) <= 2


@pytest.mark.parametrize(("copies_only", "first_wave"), [(True, {100, 200, 201}), (False, {100})])
def test_a_move_that_copies_nothing_needs_only_a_cluster_slot_under_chosen_caps(
    copies_only: bool, first_wave: set[int]
) -> None:
    # Two VMs (RAM on the wire) and two containers restarted on shared storage (nothing to
    # copy). Under caps the sequencer chose, per_source=1 limits the streams: the containers
    # start next to the first VM; under the same caps declared by a plan they wait their turn.
    api = cluster(
        FakeGuest(100, "qemu", "pve1"),
        FakeGuest(101, "qemu", "pve1"),
        FakeGuest(200, "lxc", "pve1"),
        FakeGuest(201, "lxc", "pve1"),
    )
    api.hold(100, 101, 200, 201)
    moves = [
        move("v0", 100, "pve1", "pve2"),
        move("v1", 101, "pve1", "pve3"),
        move("c0", 200, "pve1", "pve2", kind="lxc"),
        move("c1", 201, "pve1", "pve3", kind="lxc"),
    ]
    assert [m.copies for m in moves] == [True, True, False, False]
    plan = plan_of(moves, caps=Caps(cluster=4, per_source=1, per_target=1, copies_only=copies_only))
    ex = executor(api)
    result: list[RunReport] = []
    runner = threading.Thread(target=lambda: result.append(ex.run(plan)))
    runner.start()
    assert wait_until(lambda: len(api.started) == len(first_wave))
    assert {t.vmid for t in api.started} == first_wave
    assert not wait_until(lambda: len(api.started) > len(first_wave), timeout_s=0.5)
    api.release()
    runner.join(30)
    assert by_vmid(result[0]) == dict.fromkeys((100, 101, 200, 201), "moved")


def test_a_slot_is_free_once_the_task_ended_while_the_arrival_is_verified() -> None:
    # One stream from pve1 at a time. 100's task ends, its arrival check (the guest agent's
    # ping) hangs: 101 starts without waiting for that check, and 100 still ends as moved.
    api = cluster(FakeGuest(100, "qemu", "pve1"), FakeGuest(101, "qemu", "pve1"))
    api.hold(100, 101)
    api.ping_gates[100] = threading.Event()
    moves = [move("a", 100, "pve1", "pve2"), move("b", 101, "pve1", "pve3")]
    plan = plan_of(moves, caps=Caps(cluster=1, per_source=1, per_target=1))
    ex = executor(api, agent_vmids={100})
    result: list[RunReport] = []
    runner = threading.Thread(target=lambda: result.append(ex.run(plan)))
    runner.start()
    assert wait_until(lambda: len(api.started) == 1)
    api.release(100)
    assert wait_until(lambda: len(api.started) == 2)  # while 100's ping still hangs
    assert not result
    api.ping_gates[100].set()
    api.release(101)
    runner.join(30)
    assert by_vmid(result[0]) == {100: "moved", 101: "moved"}
    assert api.max_source["pve1"] == 1


def test_already_on_target_is_skipped_and_elsewhere_fails() -> None:
    api = cluster(FakeGuest(101, "qemu", "pve2"), FakeGuest(102, "qemu", "pve3"))
    plan = plan_of(
        [move("a", 101, "pve1", "pve2"), move("b", 102, "pve1", "pve2")],
        on_failure="continue",
    )
    report = executor(api).run(plan)
    assert by_vmid(report) == {101: "skipped", 102: "failed"}
    failed = report.failed[0]
    assert "on pve3 now, not on pve1" in failed.reason
    assert not api.started
    assert report.exit_code == 1


def test_locked_guest_fails_with_the_lock() -> None:
    api = cluster(FakeGuest(101, "qemu", "pve1", lock="backup"))
    report = executor(api).run(plan_of([move("a", 101, "pve1", "pve2")]))
    assert report.failed[0].reason.endswith("is locked (backup); PVE would refuse to move it")


def test_stop_policy_starts_nothing_new_after_a_failure() -> None:
    api = cluster(*(FakeGuest(100 + i, "qemu", "pve1") for i in range(3)))
    api.fail_next[100] = "migration failed (injected)"
    plan = plan_of(
        [move(f"m{i}", 100 + i, "pve1", "pve2") for i in range(3)],
        caps=Caps(cluster=1, per_source=1, per_target=1),
    )
    report = executor(api).run(plan)
    assert by_vmid(report) == {100: "failed", 101: "not-started", 102: "not-started"}
    assert "migration failed (injected)" in report.failed[0].reason
    assert "on_failure: stop" in report.stopped_reason
    assert report.exit_code == 1


def test_continue_policy_goes_on_and_skip_guest_leaves_dependents() -> None:
    api = cluster(*(FakeGuest(100 + i, "qemu", "pve1") for i in range(3)))
    api.fail_next[100] = "boom"
    moves = [
        move("m0", 100, "pve1", "pve2"),
        move("m1", 101, "pve1", "pve2", after=("m0",)),
        move("m2", 102, "pve1", "pve2"),
    ]
    report = executor(api).run(plan_of(moves, on_failure="continue"))
    assert by_vmid(report) == {100: "failed", 101: "moved", 102: "moved"}

    api = cluster(*(FakeGuest(100 + i, "qemu", "pve1") for i in range(3)))
    api.fail_next[100] = "boom"
    report = executor(api).run(plan_of(moves, on_failure="skip-guest"))
    assert by_vmid(report) == {100: "failed", 101: "not-started", 102: "moved"}
    assert "depends on m0" in next(r for r in report.results if r.vmid == 101).reason


def test_task_ok_while_the_guest_did_not_move_is_a_failure() -> None:
    api = cluster(FakeGuest(101, "qemu", "pve1"))
    api.noop_next.add(101)
    report = executor(api).run(plan_of([move("a", 101, "pve1", "pve2")]))
    assert report.failed[0].reason.endswith("it is on pve1, not on pve2")


def test_task_timeout_is_reported_still_running_with_the_guest_location() -> None:
    api = cluster(FakeGuest(101, "qemu", "pve1"))
    api.hang.add(101)
    report = executor(api).run(plan_of([move("a", 101, "pve1", "pve2")], task_timeout_s=5))
    result = report.failed[0]
    assert result.still_running
    assert "still running and was not stopped" in result.reason
    assert "guest 101 is on pve1 (locked: migrate)" in result.reason
    assert result.node == "pve1"


def test_target_offline_replans_pending_moves_unless_pinned() -> None:
    api = cluster(
        FakeGuest(101, "qemu", "pve1"),
        FakeGuest(102, "qemu", "pve1"),
        FakeGuest(103, "qemu", "pve1"),
    )
    api.online["pve2"] = False
    asked: list[tuple[int, frozenset[str]]] = []

    def replan(m: Move, avoid: Collection[str]) -> Move | None:
        asked.append((m.vmid, frozenset(avoid)))
        return replace(m, target="pve3", id="planner-id")

    events: list[Event] = []
    plan = plan_of(
        [
            move("a", 101, "pve1", "pve2"),
            move("b", 102, "pve1", "pve2"),
            move("c", 103, "pve1", "pve2", pinned=True),
        ],
        on_failure="continue",
        caps=Caps(cluster=1, per_source=1, per_target=1),
    )
    report = executor(api, replan=each(replan), observer=events.append).run(plan)
    assert by_vmid(report) == {101: "moved", 102: "moved", 103: "failed"}
    assert api.node_of(101) == api.node_of(102) == "pve3"
    first = next(r for r in report.results if r.vmid == 101)
    assert first.move.id == "a" and first.original_target == "pve2"
    assert first.attempts[0].target == "pve2" and "offline" in first.attempts[0].reason
    assert all("pve2" in avoid for _, avoid in asked)
    assert "pins 103 to pve2" in report.failed[0].reason
    assert any(isinstance(e, MoveReplanned) and e.new_target == "pve3" for e in events)


def test_target_failing_mid_task_replans_the_move() -> None:
    api = cluster(FakeGuest(101, "qemu", "pve1"))
    api.offline_on_follow[101] = "pve2"

    def replan(m: Move, avoid: Collection[str]) -> Move | None:
        return replace(m, target="pve3")

    report = executor(api, replan=each(replan)).run(plan_of([move("a", 101, "pve1", "pve2")]))
    assert by_vmid(report) == {101: "moved"}
    assert api.node_of(101) == "pve3"
    assert len(api.started) == 2


def test_refused_target_is_replanned_for_that_guest_only() -> None:
    api = cluster(FakeGuest(101, "qemu", "pve1"))
    api.refuse_target[(101, "pve2")] = "local-lvm"
    report = executor(api, replan=each(lambda m, avoid: replace(m, target="pve3"))).run(
        plan_of([move("a", 101, "pve1", "pve2")])
    )
    assert by_vmid(report) == {101: "moved"}
    assert "storage not available there: local-lvm" in report.results[0].attempts[0].reason


def test_target_without_room_is_replanned_when_nothing_is_under_way() -> None:
    api = FakeApi(
        {"pve1": 64 * GiB, "pve2": 8 * GiB, "pve3": 64 * GiB},
        [FakeGuest(101, "qemu", "pve1", memory=16 * GiB)],
    )
    report = executor(api, replan=each(lambda m, avoid: replace(m, target="pve3"))).run(
        plan_of([move("a", 101, "pve1", "pve2")])
    )
    assert by_vmid(report) == {101: "moved"}
    assert "pve2 has no room for 101 now: needs 16.0 GiB" in report.results[0].attempts[0].reason


def test_moves_into_a_tight_target_wait_for_each_other_instead_of_overfilling() -> None:
    api = FakeApi(
        {"pve1": 64 * GiB, "pve2": 10 * GiB},
        [
            FakeGuest(101, "qemu", "pve1", memory=4 * GiB),
            FakeGuest(102, "qemu", "pve1", memory=4 * GiB),
        ],
    )
    # pve2: 1 GiB used + 4 + 4 would be 9 GiB: fits. Make it 5 GiB each: only one at a time.
    api.guests[101].memory = api.guests[102].memory = 5 * GiB
    api.guests[103] = FakeGuest(103, "qemu", "pve2", status="stopped")
    plan = plan_of([move("a", 101, "pve1", "pve2"), move("b", 102, "pve1", "pve2")])
    report = executor(api).run(plan)
    # The second does not fit next to the first (1 + 5 + 5 > 10): it failed as target full
    # after the first arrived, and nothing was started that would have overfilled pve2.
    assert not api.overfilled
    assert by_vmid(report)[101] == "moved"


def test_agent_ping_is_retried_then_required() -> None:
    api = cluster(FakeGuest(101, "qemu", "pve1", agent=True), FakeGuest(102, "qemu", "pve1"))
    api.agent_silent_pings[101] = 2
    ex = executor(api, agent_vmids={101}, agent_timeout_s=10.0, agent_poll_s=0.0)
    report = ex.run(plan_of([move("a", 101, "pve1", "pve2"), move("b", 102, "pve1", "pve2")]))
    assert by_vmid(report) == {101: "moved", 102: "moved"}
    assert api.pings == 3  # 102 has no agent: not pinged

    api = cluster(FakeGuest(101, "qemu", "pve1", agent=True))
    api.agent_silent_pings[101] = 10**6
    ticks = iter(range(10**6))
    ex = make_executor(
        api,
        agent_vmids={101},
        agent_timeout_s=3.0,
        clock=lambda: float(next(ticks)),
    )
    report = ex.run(plan_of([move("a", 101, "pve1", "pve2")]))
    assert "guest agent did not answer a ping" in report.failed[0].reason


def test_first_interrupt_waits_for_running_moves_second_leaves_them() -> None:
    api = cluster(*(FakeGuest(100 + i, "qemu", "pve1") for i in range(4)))
    api.hold(100, 101, 102, 103)
    plan = plan_of(
        [move(f"m{i}", 100 + i, "pve1", "pve2") for i in range(4)],
        caps=Caps(cluster=2, per_source=2, per_target=2),
    )
    ex = executor(api)
    out: list[RunReport] = []
    runner = threading.Thread(target=lambda: out.append(ex.run(plan)))
    runner.start()
    assert wait_until(lambda: len(api.started) == 2)
    ex.interrupt()
    api.release(100, 101)
    runner.join(30)
    report = out[0]
    assert by_vmid(report) == {100: "moved", 101: "moved", 102: "not-started", 103: "not-started"}
    assert report.exit_code == 130 and len(api.started) == 2

    api = cluster(*(FakeGuest(100 + i, "qemu", "pve1") for i in range(2)))
    api.hold(100, 101)
    ex = executor(api)
    out = []
    plan = plan_of([move(f"m{i}", 100 + i, "pve1", "pve2") for i in range(2)])
    runner = threading.Thread(target=lambda: out.append(ex.run(plan)))
    runner.start()
    assert wait_until(lambda: len(api.started) == 2)
    assert wait_until(lambda: len(ex.in_flight()) == 2 and all(u for _, u in ex.in_flight()))
    ex.interrupt()
    ex.interrupt()
    runner.join(30)
    report = out[0]
    assert by_vmid(report) == {100: "left-running", 101: "left-running"}
    assert set(report.abandoned_upids) == {str(t.upid) for t in api.started}
    assert report.exit_code == 130
    api.release()


def test_blocked_guests_are_reported_and_count_as_left_behind() -> None:
    api = cluster(FakeGuest(101, "qemu", "pve1"))
    plan = plan_of([move("a", 101, "pve1", "pve2")], blocked=(114,))
    report = executor(api).run(plan)
    assert report.blocked[0].vmid == 114
    assert report.exit_code == 1


def test_journal_records_intent_before_the_task_and_the_origin(tmp_path: Path) -> None:
    api = cluster(FakeGuest(101, "qemu", "pve1"), FakeGuest(102, "qemu", "pve2"))
    journal = Journal.create(tmp_path)
    plan = plan_of([move("a", 101, "pve1", "pve2"), move("b", 102, "pve1", "pve2")])
    journal.start_run(plan, command="drain:pve1", kind="drain", drained_nodes=["pve1"])
    report = executor(api, journal=journal).run(plan)
    journal.close()
    records = [json.loads(line) for line in journal.path.read_text().splitlines()]
    of_a = [r["type"] for r in records if r.get("move") == "a"]
    # The origin is journalled with the intent (undrain knows it whatever happens next) and
    # again with where the guest arrived.
    assert of_a == ["intent", "origin", "started", "outcome", "origin"]
    state = read_run(journal.path)
    assert state.finished and state.exit_code == report.exit_code == 0
    assert state.moves["a"].status == "moved" and state.moves["b"].status == "skipped"
    assert {(o.vmid, o.home, o.now) for o in state.origins} == {(101, "pve1", "pve2")}


def test_a_guest_on_its_target_still_locked_by_the_migration_is_waited_for() -> None:
    # D10: PVE moves the config to the target before the task ends and unlocks it last
    # (qemu-server QemuMigrate.pm phase3_cleanup l.1719 move_config_to_node ... l.1902
    # qm unlock): "on the target, lock migrate" is a migration in flight, not a done move.
    api = cluster(FakeGuest(101, "qemu", "pve2", lock="migrate"))
    reads = {"n": 0}
    original = api.cluster_resources

    def resources(type_filter=None):  # type: ignore[no-untyped-def]
        reads["n"] += 1
        if reads["n"] == 3:
            api.guests[101].lock = None  # the unlock over ssh, two looks later
        return original(type_filter)

    api.cluster_resources = resources  # type: ignore[method-assign]
    report = executor(api).run(plan_of([move("a", 101, "pve1", "pve2")]))
    assert by_vmid(report) == {101: "skipped"}
    assert reads["n"] >= 3 and not api.started
