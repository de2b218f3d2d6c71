"""The library API the executor and the run commands use: specs, build_plan, replan_move."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pvetool.errors import PlanError
from pvetool.model import ExecutionPlan
from pvetool.planner.build import (
    build_plan,
    drain_spec,
    rebalance_spec,
    replan_move,
    undrain_spec,
)
from pvetool.planner.loader import load_plan_text
from tests.unit.planner.planner_support import lab, move_of


def test_drain_spec_is_what_drain_plans() -> None:
    spec = drain_spec(["pve2"], ["pve1", "pve3"], max_parallel=2, with_local_disks=True)
    plan = build_plan(spec, lab())
    assert isinstance(plan, ExecutionPlan)
    assert plan.name == "drain-pve2"
    assert plan.caps.cluster == 2 and plan.caps.per_source == 2
    assert {m.source for m in plan.moves} == {"pve2"}
    cache1 = next(m for m in plan.moves if m.vmid == 112)  # local disk: moves with it
    assert cache1.options.with_local_disks and cache1.options.online
    assert cache1.target == "pve1"  # vmbr1 is missing on pve3


def test_unknown_node_is_a_plan_error_with_did_you_mean() -> None:
    with pytest.raises(PlanError) as caught:
        build_plan(drain_spec(["pve22"]), lab())
    assert "unknown node 'pve22' (did you mean 'pve2'?)" in str(caught.value)
    spec = load_plan_text("version: 1\nsteps:\n  - move: {101: pve-3}\n", "p.yaml")
    with pytest.raises(PlanError) as caught:
        build_plan(spec, lab())
    assert "p.yaml:3: steps[0].move.101: unknown node 'pve-3' (did you mean 'pve3'?)" in str(
        caught.value
    )


def test_blocked_guests_never_raise() -> None:
    plan = build_plan(drain_spec(["pve3"]), lab())
    assert not plan.can_run and set(plan.blocked) == {115, 120, 121}


def test_rebalance_spec() -> None:
    plan = build_plan(rebalance_spec("memory", 0.15, max_moves=2), lab())
    assert 0 < len(plan.moves) <= 2
    assert len({m.vmid for m in plan.moves}) == len(plan.moves)  # a guest moves at most once
    with pytest.raises(PlanError):
        rebalance_spec("disk")


def test_undrain_returns_guests_home_pinned() -> None:
    snap = lab()
    away = snap.after([move_of(snap, 105, "pve3"), move_of(snap, 117, "pve1")])
    plan = build_plan(undrain_spec([(105, "pve2"), (117, "pve2")]), away)
    assert {(m.vmid, m.source, m.target) for m in plan.moves} == {
        (105, "pve3", "pve2"),
        (117, "pve1", "pve2"),
    }
    assert all(m.pinned for m in plan.moves)


def test_replan_move_finds_another_target_on_the_current_snapshot() -> None:
    snap = lab()
    plan = build_plan(drain_spec(["pve2"]), snap)
    move = next(m for m in plan.moves if m.vmid == 117)
    other = "pve1" if move.target == "pve3" else "pve3"
    new = replan_move(plan, move, snap, avoid=[move.target])
    assert new is not None
    assert new.target == other and new.vmid == 117 and new.id == move.id
    assert "re-planned" in new.reason
    assert replan_move(plan, move, snap, avoid=["pve1", "pve3"]) is None


def test_replan_never_moves_pinned_or_unsafe() -> None:
    snap = lab()
    plan = build_plan(load_plan_text("version: 1\nsteps:\n  - move: {105: pve3}\n"), snap)
    assert replan_move(plan, plan.moves[0], snap, avoid=["pve3"]) is None
    # web2 must stay apart from web1 (on pve1): when pve3 fails there is nowhere else.
    plan = build_plan(drain_spec(["pve2"]), snap)
    web2 = next(m for m in plan.moves if m.vmid == 102)
    assert web2.target == "pve3"
    assert replan_move(plan, web2, snap, avoid=["pve3"]) is None


def test_replan_counts_the_rest_of_the_plan() -> None:
    """Memory already promised to other pending moves is not handed out twice."""
    snap = lab()
    # pve1 (42.5 GiB running) has room for mail1 (4 GiB), but not also for app1 (6 GiB).
    small = replace(
        snap,
        nodes={**snap.nodes, "pve1": replace(snap.nodes["pve1"], memory_total_bytes=53 * 1024**3)},
    )
    plan = build_plan(drain_spec(["pve2"]), small)
    move = next(m for m in plan.moves if m.vmid == 117)
    alone = replan_move(plan, move, small, avoid=["pve3"])
    assert alone is not None and alone.target == "pve1"
    pending = replace(move, id="s1:104", vmid=104, name="app1", source="pve3", target="pve1")
    stage = replace(plan.stages[0], moves=(*plan.stages[0].moves, pending))
    crowded = replace(plan, stages=(stage,))
    assert replan_move(crowded, move, small, avoid=["pve3"]) is None


def test_replication_comes_from_the_snapshot_unless_given() -> None:
    snap = replace(lab(), replication={110: ("pve3",)})
    spec = load_plan_text("version: 1\nsteps:\n  - move: {110: pve2}\n", "p.yaml")

    def replication_findings(plan: ExecutionPlan) -> list[tuple[int | None, str | None]]:
        return [(f.vmid, f.target) for f in plan.findings if f.id == "PVT-REPLICATION"]

    assert replication_findings(build_plan(spec, snap)) == [(110, "pve2")]
    assert replication_findings(build_plan(spec, snap, replication={})) == []
    assert replication_findings(build_plan(spec, lab(), replication={110: ["pve3"]})) == [
        (110, "pve2")
    ]


def test_a_later_stage_sees_replication_jobs_re_targeted_as_pve_does() -> None:
    # 110 replicates to pve2 and moves there; PVE then replicates it back to pve1, so moving it
    # home in a second step is no replication problem, while a third move to pve3 is.
    snap = replace(lab(), replication={110: ("pve2",)})
    text = "version: 1\nsteps:\n  - move: {110: pve2}\n  - move: {110: pve1}\n"
    plan = build_plan(load_plan_text(text, "p.yaml"), snap)
    assert not [f for f in plan.findings if f.id == "PVT-REPLICATION"]
    text += "  - move: {110: pve3}\n"
    plan = build_plan(load_plan_text(text, "p.yaml"), snap)
    found = [(f.vmid, f.target) for f in plan.findings if f.id == "PVT-REPLICATION"]
    assert found == [(110, "pve3")]


@pytest.mark.parametrize(
    ("session", "sent"),
    [("root@pam", True), ("root@pam!ops", False), ("admin@pve", False), (None, False)],
)
def test_root_only_migration_options_are_sent_only_by_root_pam(
    session: str | None, sent: bool
) -> None:
    # D2: qemu-server src/PVE/API2/Qemu.pm migrate_vm l.5577-5585 (400 "Only root may use this
    # option." unless the request's user is exactly root@pam; a token's user is its token id).
    text = (
        "version: 1\nrules:\n  migration: {type: insecure, network: 10.9.0.0/24}\n"
        "steps:\n  - drain: {node: pve1}\n"
    )
    snap = replace(lab(), session_user=session)
    plan = build_plan(load_plan_text(text, "p.yaml"), snap)
    live = [m for m in plan.moves if m.kind == "qemu"]
    assert live
    found = [f for f in plan.findings if f.id == "PVT-ROOT-ONLY"]
    if sent:
        assert not found
        assert all(m.options.migration_type == "insecure" for m in live)
        assert all(m.options.migration_network == "10.9.0.0/24" for m in live)
    else:
        (finding,) = found
        assert finding.severity == "warning"
        assert f"this session is {'token' if session and '!' in session else 'user'}" in (
            finding.message
        )
        assert "'migration: type=insecure,network=10.9.0.0/24' in datacenter.cfg" in (
            finding.message
        )
        assert all(m.options.migration_type is None for m in plan.moves)
        assert all(m.options.migration_network is None for m in plan.moves)
        # The timing assumes what PVE will use: the datacenter's type (secure in the lab).
        assert dict(plan.assumptions)["migration"].startswith("secure:")


def test_storage_missing_on_the_target_is_blocked_with_pves_words() -> None:
    # D3: PVE refuses such a VM migration with HTTP 500 "storage 'X' is not available on node
    # 'Y'" (qemu-server QemuServer.pm check_storage_availability); the plan says so first.
    snap = lab()
    local = next(
        g for g in snap.iter_guests() if g.kind == "qemu" and g.node == "pve1" and g.local_disks
    )
    storage = local.local_disks[0].storage
    spec = load_plan_text(f"version: 1\nsteps:\n  - move: {{{local.vmid}: pve2}}\n", "p.yaml")
    snap = replace(
        snap,
        storages={
            **snap.storages,
            storage: replace(snap.storages[storage], restricted_to=frozenset({"pve1", "pve3"})),
        },
    )
    plan = build_plan(spec, snap)
    texts = [f.message for f in plan.findings if f.id == "PVT-STORAGE"]
    assert any(
        f"PVE refuses: storage '{storage}' is not available on node 'pve2'" in t for t in texts
    ), plan.findings
