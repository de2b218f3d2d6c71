"""The run use case (`pvetool.operate`) on the in-memory cluster: overrides, plan-level blockers,
the journal, start-only runs, and re-planning with one snapshot per target failure in which
each re-planned move sees where the previous went."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pvetool.errors import PlanError
from pvetool.journal import read_run
from pvetool.model import Caps, ExecutionPlan, Finding, PlanRules, Stage
from pvetool.operate import (
    JobInfo,
    Overrides,
    RunSetup,
    execute_plan,
    not_run_report,
    nothing_to_run,
    open_journal,
    plan_level_blockers,
    poll_policy,
    replanner,
)
from pvetool.planner.build import replan_move
from pvetool.render import render_report
from pvetool.settings import WaitPolicy
from tests.unit.executor.fakes import FakeApi, FakeGuest, move, plan_of

GiB = 1024**3
ONE_AT_A_TIME = Caps(cluster=1, per_source=1, per_target=1)


def run(api: FakeApi, plan: ExecutionPlan, **kw: object) -> object:
    setup = RunSetup(tick_s=0.01, **kw.pop("setup", {}))  # type: ignore[arg-type]
    return execute_plan(api, plan, follow=api.follow, snapshot=api.snapshot, setup=setup, **kw)  # type: ignore[arg-type]


def tight_cluster() -> FakeApi:
    """pve2 is down. pve3 is the best target for one 8 GiB guest (it ends least loaded), but
    with two it would be fuller than pve4: a second re-planned guest belongs on pve4 only if
    its re-plan sees the first on pve3."""
    api = FakeApi(
        {"pve1": 64 * GiB, "pve2": 64 * GiB, "pve3": 20 * GiB, "pve4": 64 * GiB},
        [
            FakeGuest(101, "qemu", "pve1", memory=8 * GiB),
            FakeGuest(102, "qemu", "pve1", memory=8 * GiB),
            FakeGuest(900, "qemu", "pve4", memory=30 * GiB),  # makes pve4 the fuller node
        ],
    )
    api.online["pve2"] = False
    return api


def to_failed_target() -> ExecutionPlan:
    return replace(
        plan_of(
            [move("a", 101, "pve1", "pve2"), move("b", 102, "pve1", "pve2")],
            caps=ONE_AT_A_TIME,
            on_failure="continue",
        ),
        rules=PlanRules(),
    )


def test_replanning_asks_once_and_the_second_move_sees_the_first() -> None:
    api = tight_cluster()
    plan = to_failed_target()
    a, b = plan.moves
    snapshot = api.snapshot()
    # Re-planned one by one against the same cluster, both would go to pve3 (the old blind spot).
    alone = [replan_move(plan, m, snapshot, {"pve2"}) for m in (a, b)]
    assert [m.target if m else None for m in alone] == ["pve3", "pve3"]

    api.snapshots = 0
    answers = replanner(plan, api.snapshot)([(a, frozenset({"pve2"})), (b, frozenset({"pve2"}))])
    assert [m.target if m else None for m in answers] == ["pve3", "pve4"]
    assert api.snapshots == 1  # one cluster read for both


def test_a_run_replans_every_move_to_a_failed_target_against_one_snapshot() -> None:
    api = tight_cluster()
    report = run(api, to_failed_target())
    by_vmid = {r.vmid: r for r in report.results}  # type: ignore[attr-defined]
    assert {v: (r.status, r.node) for v, r in by_vmid.items()} == {
        101: ("moved", "pve3"),
        102: ("moved", "pve4"),
    }
    assert [a.target for a in by_vmid[102].attempts] == ["pve2"]
    assert api.snapshots == 1 and not api.overfilled  # one cluster read for both


def test_overrides_apply_and_plan_level_blockers_start_nothing() -> None:
    api = FakeApi({"pve1": 64 * GiB, "pve2": 64 * GiB}, [FakeGuest(101, "qemu", "pve1")])
    api.hang.add(101)
    plan = plan_of([move("a", 101, "pve1", "pve2")], on_failure="stop", task_timeout_s=600)
    report = run(api, plan, overrides=Overrides(on_failure="continue", task_timeout_s=7))
    result = report.results[0]  # type: ignore[attr-defined]
    assert "did not finish within 7 s" in result.reason

    api = FakeApi({"pve1": 64 * GiB, "pve2": 64 * GiB}, [FakeGuest(101, "qemu", "pve1")])
    blocked = replace(plan, findings=(Finding("PVT-QUORUM", "blocker", "not quorate"),))
    assert plan_level_blockers(blocked) == ["PVT-QUORUM: not quorate"]
    with pytest.raises(PlanError, match="PVT-QUORUM: not quorate"):
        run(api, blocked)
    assert not api.started


def test_the_journal_holds_the_plan_and_every_record(tmp_path: Path) -> None:
    api = FakeApi({"pve1": 64 * GiB, "pve2": 64 * GiB}, [FakeGuest(101, "qemu", "pve1")])
    plan = plan_of([move("a", 101, "pve1", "pve2")])
    job = JobInfo("drain:pve1", "drain", drained_nodes=("pve1",), argv=("drain", "pve1"))
    with open_journal(tmp_path, plan, job, None) as journal:
        report = run(api, plan, journal=journal)
    state = read_run(journal.path)
    assert state.finished and state.exit_code == report.exit_code == 0  # type: ignore[attr-defined]
    assert (state.command, state.kind, state.drained_nodes) == ("drain:pve1", "drain", ("pve1",))
    assert state.moves["a"].status == "moved" and state.origins[0].now == "pve2"
    assert state.unreadable == 0 and state.torn_lines == 0


def test_start_only_requests_the_migration_and_does_not_follow_it(tmp_path: Path) -> None:
    api = FakeApi({"pve1": 64 * GiB, "pve2": 64 * GiB}, [FakeGuest(101, "qemu", "pve1")])
    plan = plan_of([move("a", 101, "pve1", "pve2")])
    with open_journal(tmp_path, plan, JobInfo("migrate:101", "migrate"), None) as journal:
        report = run(api, plan, journal=journal, setup={"start_only": True})
    result = report.results[0]  # type: ignore[attr-defined]
    assert (result.status, result.still_running) == ("left-running", True)
    assert result.upid == str(api.started[0].upid) and not api.followed
    assert api.guests[101].lock == "migrate"  # still migrating: nothing waited for it
    rec = read_run(journal.path).moves["a"]
    assert rec.upid == result.upid and rec.outcome is not None and rec.outcome.still_running


def test_small_helpers() -> None:
    base = WaitPolicy()
    fast = poll_policy(base, interval_s=0.05)
    assert (fast.poll_interval_s, fast.max_poll_interval_s) == (0.05, 0.25)
    emulated = poll_policy(base, speed=10.0)
    assert emulated.poll_interval_s == pytest.approx(base.poll_interval_s / 10)
    assert poll_policy(base) == base
    assert nothing_to_run(plan_of([]))
    assert not nothing_to_run(plan_of([move("a", 101, "pve1", "pve2")]))


def test_a_move_whose_target_is_its_source_is_a_plan_error_not_a_skip() -> None:
    api = FakeApi({"pve1": 64 * GiB, "pve2": 64 * GiB}, [FakeGuest(101, "qemu", "pve1")])
    plan = plan_of([move("a", 101, "pve1", "pve1")])
    assert plan_level_blockers(plan) == [
        "stage 1 (drain), move a of 101: its target pve1 is its source"
    ]
    with pytest.raises(PlanError, match="its target pve1 is its source"):
        run(api, plan)
    assert not api.started
    doubled = plan_of([move("a", 101, "pve1", "pve2"), move("a", 101, "pve1", "pve2")])
    assert any("used twice" in p for p in plan_level_blockers(doubled))


SECRET = "5f0b6f4c-1d2e-4a8b-9c3d-7e6f5a4b3c2d"
HOOK = (
    "import os; print('token:', os.environ.get('PVETOOL_TOKEN', 'none')); "
    "print('ticket: PVE:root@pam:4EEC61E2::' + 'c2lnbmF0' + 'dXJlCg=='); "
    "print('password:', os.environ.get('PVETOOL_PASSWORD', 'none'))"
)


def hook_plan(*, pass_credentials: bool) -> ExecutionPlan:
    stage = Stage(
        kind="hook",
        label="show the environment",
        argv=(sys.executable, "-c", HOOK),
        timeout_s=30,
        pass_credentials=pass_credentials,
    )
    return plan_of(stage)


def test_hooks_inherit_no_secret_and_their_output_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PVETOOL_TOKEN", f"root@pam!pvetool={SECRET}")
    monkeypatch.setenv("PVETOOL_PASSWORD", "correct-horse-battery")
    api = FakeApi({"pve1": 64 * GiB}, [])
    journal = open_journal(
        tmp_path, hook_plan(pass_credentials=False), JobInfo("plan:x", "plan"), None
    )
    report = run(api, hook_plan(pass_credentials=False), journal=journal)
    journal.close()
    (hook,) = report.hooks  # type: ignore[attr-defined]
    assert "token: none" in hook.output_tail and "password: none" in hook.output_tail
    assert "PVE:***" in hook.output_tail and "c2lnbmF0dXJl" not in hook.output_tail

    # Asked for, the hook gets the credentials, and they are still kept out of what is stored.
    plan = hook_plan(pass_credentials=True)
    journal = open_journal(tmp_path, plan, JobInfo("plan:y", "plan"), None)
    creds = {"PVETOOL_TOKEN": f"root@pam!pvetool={SECRET}", "PVETOOL_HOST": "pve1:8006"}
    report = run(api, plan, journal=journal, setup={"hook_credentials": creds})
    journal.close()
    (hook,) = report.hooks  # type: ignore[attr-defined]
    assert "token: ***" in hook.output_tail  # it had the token; what it printed is hidden
    assert "password: none" in hook.output_tail  # only what the credentials hold
    stored = journal.path.read_text() + render_report(report, "r.json")  # type: ignore[arg-type]
    for secret in (SECRET, "correct-horse-battery", "c2lnbmF0dXJl"):
        assert secret not in stored


def test_a_run_that_never_started_reports_each_guest_where_the_plan_found_it() -> None:
    plan = plan_of(
        [move("out", 101, "pve1", "pve2")],
        [move("home", 101, "pve2", "pve1")],  # where the plan expected 101 by then: not now
    )
    report = not_run_report(plan, "the plan is blocked: PVT-NO-QUORUM", refused=True)
    assert [(r.move.id, r.status, r.node) for r in report.results] == [
        ("out", "not-started", "pve1"),
        ("home", "not-started", "pve1"),
    ]
    assert report.exit_code == 2 and report.refused
