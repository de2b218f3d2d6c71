"""Portable: a drain interrupted by Ctrl-C (SIGINT once), then `--resume`; no guest migrates twice.

The drain runs one migration at a time on the node of the shared-disk test guest (pve1 in the
nested lab: three running VMs). pvetool gets SIGINT as soon as it reports its first started
migration: it starts nothing new, waits for the running one and exits 130. `--resume` moves the
rest. That every guest migrated exactly once is read from the source node's task list through the
PVE API (`/nodes/{node}/tasks?vmid=..&typefilter=qmigrate&source=all`).
"""

from __future__ import annotations

import pytest

from tests.e2e.backend import Backend


@pytest.mark.process  # SIGINT to a pvetool process: on the emulator, its clock runs meanwhile
def test_interrupted_drain_resumes_without_migrating_any_guest_twice(cluster: Backend) -> None:
    node = cluster.where(cluster.role("shared-disk"))
    cluster.require_only_test_guests(node)
    roles = cluster.roles()
    movable = {v for v, n in cluster.placement().items() if n == node} - {roles.get("local-device")}
    assert len(movable) >= 2, f"{node} needs two movable test guests, has {sorted(movable)}"
    known = cluster.task_upids([node], movable)
    args = ("drain", node, "--with-local-disks", "--yes")

    proc = cluster.spawn(*args, "--max-parallel", "1")
    seen: list[str] = []
    assert cluster.read_until(proc, " started ", seen) is not None, "".join(seen)
    cluster.interrupt(proc)
    r = cluster.collect(proc, seen)
    assert r.code == 130, r.out + r.err
    assert "interrupted: starting no new migrations" in r.out
    cluster.settle()
    left = movable & {v for v, n in cluster.placement().items() if n == node}
    assert left, "every guest had moved before the interrupt"
    assert left != movable, "the running migration was not waited for"

    r = cluster.pvetool(*args, "--resume", *cluster.report_args("resume"))
    assert r.code == 0, r.out + r.err
    assert "resuming" in r.out
    assert not movable & {v for v, n in cluster.placement().items() if n == node}
    for vmid in movable:
        tasks = [t for t in cluster.migration_tasks(node, vmid) if t["upid"] not in known]
        assert [t["status"] for t in tasks] == ["OK"], (vmid, tasks)
