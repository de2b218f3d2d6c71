"""Host memory is counted once in the placement check (issue 14: it was counted twice, so a
guest that fits was left on the drained node).

A node of 16 GiB whose host uses 4 GiB (PVE's `mem` minus its running guests' `mem`) has 12 GiB
for guests with no headroom: a 10 GiB guest fits, a 13 GiB guest does not.
"""

from __future__ import annotations

from dataclasses import replace

from pvetool.model import (
    ClusterSnapshot,
    DatacenterOptions,
    Disk,
    Guest,
    Net,
    Node,
    PlanRules,
    Storage,
    StorageOnNode,
)
from pvetool.planner.build import build_plan, drain_spec
from pvetool.planner.placement import Placement
from pvetool.planner.spec import Amount
from pvetool.units import GiB


def _cluster(guest_gib: int) -> ClusterSnapshot:
    nodes = {
        "n1": Node("n1", online=True, cpus=16, memory_total_bytes=64 * GiB,
                   memory_used_bytes=guest_gib * GiB + 2 * GiB, host_arch="x86_64"),
        "n2": Node("n2", online=True, cpus=16, memory_total_bytes=16 * GiB,
                   memory_used_bytes=4 * GiB, host_arch="x86_64"),
    }  # fmt: skip
    guest = Guest(
        vmid=100,
        kind="qemu",
        name="big",
        node="n1",
        status="running",
        memory_bytes=guest_gib * GiB,
        used_memory_bytes=guest_gib * GiB,
        cores=2,
        disks=(Disk("scsi0", "ceph:vm-100-disk-0", "ceph", 8 * GiB, is_local=False),),
        nets=(Net("net0", "vmbr0"),),
        config_known=True,
    )
    storage = Storage(
        "ceph", "rbd", shared=True, per_node={n: StorageOnNode(n, True, 10**13, 0) for n in nodes}
    )
    return ClusterSnapshot(
        cluster_name="c",
        quorate=True,
        nodes=nodes,
        guests={100: guest},
        storages={"ceph": storage},
        datacenter=DatacenterOptions(),
        bridges={n: frozenset({"vmbr0"}) for n in nodes},
    )


def test_capacity_counts_host_memory_once() -> None:
    snap = _cluster(10)
    assert snap.host_overhead_bytes("n2") == 4 * GiB
    capacity = Placement(snap, PlanRules(memory_headroom_fraction=0.0)).capacity(
        snap.guests[100], "n2"
    )
    assert capacity.fits_memory
    assert capacity.free_bytes == 12 * GiB


def test_guest_larger_than_free_memory_still_blocked() -> None:
    snap = _cluster(13)
    capacity = Placement(snap, PlanRules(memory_headroom_fraction=0.0)).capacity(
        snap.guests[100], "n2"
    )
    assert not capacity.fits_memory
    assert capacity.free_bytes == 12 * GiB


def test_drain_places_a_guest_that_fits() -> None:
    snap = _cluster(10)
    spec = drain_spec(["n1"])
    spec = replace(
        spec,
        rules=replace(
            spec.rules, headroom=replace(spec.rules.headroom, memory=Amount(fraction=0.0))
        ),
    )
    plan = build_plan(spec, snap)
    assert [(m.vmid, m.target) for m in plan.moves] == [(100, "n2")]
    assert plan.can_run, [f.message for f in plan.findings]
