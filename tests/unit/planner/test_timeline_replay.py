"""No planned move overfills a target at any moment of the plan, and the predicted timeline obeys
the caps and the `after` dependencies (the rules the sliding-window executor follows).

Replayed on the lab cluster (every drain, every playbook) and on generated clusters (tight
memory, mixed fleets), and by hypothesis on random small clusters.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvetool.emulator.fleet import generate_cluster
from pvetool.model import (
    ClusterSnapshot,
    DatacenterOptions,
    Disk,
    ExecutionPlan,
    Guest,
    Net,
    Node,
    Storage,
    StorageOnNode,
)
from pvetool.planner.build import build_plan, drain_spec, rebalance_spec
from pvetool.planner.loader import load_plan, load_plan_text
from tests.unit.planner.planner_support import ROOT, lab, replay_memory, snapshot_of_text

PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yaml"))
GiB = 1024**3


def check_window(plan: ExecutionPlan) -> list[str]:
    """Caps and `after` hold at every moment of every migrate stage."""
    problems: list[str] = []
    for si, stage in enumerate(plan.stages, 1):
        ends = {m.id: m.predicted_end_s for m in stage.moves}
        for m in stage.moves:
            assert m.predicted_start_s <= m.predicted_end_s
            for dep in m.after:
                if dep in ends and ends[dep] > m.predicted_start_s + 1e-6:
                    problems.append(f"stage {si}: {m.id} starts before {dep} ends")
        for m in stage.moves:
            t = m.predicted_start_s
            running = [
                o for o in stage.moves if o.predicted_start_s <= t < o.predicted_end_s - 1e-9
            ]
            if len(running) > plan.caps.cluster:
                problems.append(f"stage {si} at {t}: {len(running)} > cluster cap")
            if not plan.caps.holds_slot(m):  # copies nothing: only the cluster cap applies
                continue
            # Under caps the sequencer chose, a move that copies nothing holds no slot.
            running = [o for o in running if plan.caps.holds_slot(o)]
            if sum(o.source == m.source for o in running) > plan.caps.per_source:
                problems.append(f"stage {si} at {t}: per-source cap exceeded on {m.source}")
            if sum(o.target == m.target for o in running) > plan.caps.per_target:
                problems.append(f"stage {si} at {t}: per-target cap exceeded on {m.target}")
    return problems


@pytest.mark.parametrize("node", ["pve1", "pve2", "pve3"])
def test_lab_drains_never_overfill(node: str) -> None:
    snap = lab()
    for with_disks in (False, True):
        plan = build_plan(drain_spec([node], with_local_disks=with_disks), snap)
        assert replay_memory(plan, snap) == []
        assert check_window(plan) == []
        for vmid in plan.blocked:
            assert any(f.vmid == vmid and f.blocks for f in plan.findings), vmid


@pytest.mark.parametrize("path", PLAYBOOKS, ids=[p.stem for p in PLAYBOOKS])
def test_lab_playbooks_never_overfill(path: Path) -> None:
    snap = lab()
    plan = build_plan(load_plan(path), snap)
    assert replay_memory(plan, snap) == []
    assert check_window(plan) == []


def test_lab_every_blocked_guest_is_named_with_all_its_reasons() -> None:
    snap = lab()
    plan = build_plan(drain_spec(["pve3"]), snap)
    reasons = {v: {f.id for f in plan.blockers if f.vmid == v} for v in plan.blocked}
    assert reasons == {
        115: {"PVT-LOCKED"},
        120: {"PVT-LOCAL-DISK"},
        121: {"PVT-LOCAL-DEVICE"},
    }
    # A guest with several reasons gets all of them: lock 121 too, and it has both.
    locked = replace(snap, guests={**snap.guests, 121: replace(snap.guests[121], lock="backup")})
    plan = build_plan(drain_spec(["pve3"]), locked)
    assert {f.id for f in plan.blockers if f.vmid == 121} == {"PVT-LOCAL-DEVICE", "PVT-LOCKED"}


@pytest.mark.parametrize(("nodes", "fleet", "seed"), [(6, "mixed", 3), (8, "light", 5)])
def test_generated_clusters_never_overfill(nodes: int, fleet: str, seed: int) -> None:
    text = generate_cluster(nodes, nodes * 12, seed=seed, fleet=fleet)
    snap = snapshot_of_text(text, f"gen-{fleet}-{seed}")
    for node in list(snap.nodes)[:3]:
        plan = build_plan(drain_spec([node]), snap)
        assert replay_memory(plan, snap) == [], node
        assert check_window(plan) == [], node
    plan = build_plan(rebalance_spec("memory", 0.05), snap)
    assert replay_memory(plan, snap) == []
    assert check_window(plan) == []
    rolling = load_plan_text(
        "version: 1\nrules: {headroom: {memory: 0%}}\nsteps:\n  - rolling: {nodes: [pve1, pve2]}\n"
    )
    plan = build_plan(rolling, snap)
    assert replay_memory(plan, snap) == []


def test_tight_memory_waits_for_departures() -> None:
    """Explicit moves into full nodes: each waits for the departure that frees its room."""
    text = """
name: tight
seed: 2
nodes:
  n1: {cpus: 16, memory: 32GiB}
  n2: {cpus: 16, memory: 32GiB}
  n3: {cpus: 16, memory: 32GiB}
storages:
  ceph: {type: rbd, shared: true, size: 4TiB}
guests:
  101: {type: qemu, node: n1, memory: 14GiB, disks: {scsi0: "ceph:8G"}}
  102: {type: qemu, node: n1, memory: 14GiB, disks: {scsi0: "ceph:8G"}}
  201: {type: qemu, node: n2, memory: 14GiB, disks: {scsi0: "ceph:8G"}}
  202: {type: qemu, node: n2, memory: 14GiB, disks: {scsi0: "ceph:8G"}}
"""
    snap = snapshot_of_text(text, "tight")
    spec = load_plan_text(
        "version: 1\nrules: {headroom: {memory: 0%}}\n"
        "steps:\n  - move: {101: n2, 201: n3, 202: n3, 102: n2}\n"
    )
    plan = build_plan(spec, snap)
    assert plan.can_run, [f.message for f in plan.findings]
    by_vmid = {m.vmid: m for m in plan.moves}
    assert by_vmid[101].after and by_vmid[102].after
    assert replay_memory(plan, snap) == []
    assert check_window(plan) == []


# --- hypothesis: random small clusters ------------------------------------------------------


def _snapshot(nodes: list[int], guests: list[tuple[int, int, int, bool]]) -> ClusterSnapshot:
    node_objs = {
        f"n{i}": Node(
            name=f"n{i}",
            online=True,
            cpus=16,
            memory_total_bytes=mem * GiB,
            memory_used_bytes=GiB,
            host_arch="x86_64",
        )
        for i, mem in enumerate(nodes, 1)
    }
    guest_objs = {}
    for k, (node, mem, cores, running) in enumerate(guests):
        vmid = 100 + k
        guest_objs[vmid] = Guest(
            vmid=vmid,
            kind="qemu",
            name=f"g{vmid}",
            node=f"n{node % len(nodes) + 1}",
            status="running" if running else "stopped",
            memory_bytes=mem * GiB,
            used_memory_bytes=0,
            cores=cores,
            disks=(Disk("scsi0", f"ceph:vm-{vmid}-disk-0", "ceph", 8 * GiB, is_local=False),),
            nets=(Net("net0", "vmbr0"),),
            config_known=True,
        )
    storage = Storage(
        "ceph",
        "rbd",
        shared=True,
        per_node={n: StorageOnNode(n, True, 10**13, 0) for n in node_objs},
    )
    return ClusterSnapshot(
        cluster_name="h",
        quorate=True,
        nodes=node_objs,
        guests=guest_objs,
        storages={"ceph": storage},
        datacenter=DatacenterOptions(),
        bridges={n: frozenset({"vmbr0"}) for n in node_objs},
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=st.lists(st.integers(8, 64), min_size=2, max_size=5),
    guests=st.lists(
        st.tuples(st.integers(0, 9), st.integers(1, 16), st.integers(1, 8), st.booleans()),
        min_size=1,
        max_size=14,
    ),
    headroom=st.sampled_from(["0%", "10%", "2GiB"]),
    explicit=st.lists(st.tuples(st.integers(0, 13), st.integers(0, 4)), max_size=6),
)
def test_random_plans_never_overfill(
    nodes: list[int],
    guests: list[tuple[int, int, int, bool]],
    headroom: str,
    explicit: list[tuple[int, int]],
) -> None:
    snap = _snapshot(nodes, guests)
    names = list(snap.nodes)
    rules = f"rules: {{headroom: {{memory: '{headroom}'}}}}\n"
    plans = [
        f"version: 1\n{rules}steps:\n  - drain: {names[0]}\n",
        f"version: 1\n{rules}steps:\n  - rebalance: {{threshold: 5%}}\n",
    ]
    moves = {100 + g % len(guests): names[n % len(names)] for g, n in explicit}
    if moves:
        body = ", ".join(f"{v}: {n}" for v, n in moves.items())
        plans.append(f"version: 1\n{rules}steps:\n  - move: {{{body}}}\n")
    for text in plans:
        plan = build_plan(load_plan_text(text), snap)
        assert replay_memory(plan, snap) == [], text
        assert check_window(plan) == [], text
        for vmid in plan.blocked:
            assert any(f.vmid == vmid and f.blocks for f in plan.findings)
