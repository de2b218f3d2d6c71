"""Portable: one `pvetool migrate` of each kind, and the migrations PVE refuses.

Runs on the emulator (nested-like.yaml) and on the real nested cluster alike. Placement and task
lists are read through the PVE API; the `cluster` fixture moves every test guest back afterwards.
"""

from __future__ import annotations

import pytest

from tests.e2e.backend import MIGRATION_TYPES, Backend


@pytest.mark.parametrize(
    ("role", "extra"),
    [
        ("shared-disk", []),  # a running VM whose disk is on the shared NFS storage: live
        ("local-disk", ["--with-local-disks"]),  # a running VM with a local-lvm disk: disk copied
        ("stopped", []),  # offline: only the config moves
        ("container", []),  # restart migration
        ("ha", []),  # through the HA stack: hamigrate, then a qmigrate by root@pam
    ],
)
def test_migrate_one_guest(cluster: Backend, role: str, extra: list[str]) -> None:
    vmid = cluster.role(role)
    before = cluster.guests()[vmid]
    source = str(before["node"])
    target = cluster.other_node(source)
    known = cluster.task_upids([source], [vmid])

    r = cluster.pvetool("migrate", str(vmid), "--to", target, *extra)
    assert r.code == 0, (role, r.out, r.err)
    assert f"migrated {vmid} {source} -> {target}" in r.out

    cluster.wait_settled([vmid])  # PVE's HA manager reports "started" again a moment later
    after = cluster.guests()[vmid]
    assert after["node"] == target
    assert after["status"] == before["status"]
    assert not after.get("lock")
    new = [t for t in cluster.migration_tasks(source, vmid) if t["upid"] not in known]
    assert len(new) == 1, new  # one migration, never started twice
    assert new[0]["status"] == "OK"
    assert new[0]["type"] == MIGRATION_TYPES[str(before["type"])]
    if role == "ha":
        assert after.get("hastate") == "started"


def test_the_task_list_filters_by_the_exact_task_type(cluster: Backend) -> None:
    """The contract the other tests rely on (pve-manager's node_tasks compares with `ne`)."""
    vmid = cluster.role("nodisk")
    source = cluster.where(vmid)
    target = cluster.other_node(source)
    upid = cluster.start_migration(vmid, target)
    cluster.restore({vmid: source})  # waits for the move there, then comes back
    rows = cluster.api.get(f"/nodes/{source}/tasks", vmid=vmid, typefilter="qmigrate", limit=500)
    assert upid in [t["upid"] for t in rows]
    assert all(t["type"] == "qmigrate" and t["id"] == str(vmid) for t in rows)
    assert cluster.api.get(f"/nodes/{source}/tasks", vmid=vmid, typefilter="migrate") == []
    # Tasks still running carry the status "RUNNING" (ended ones not yet archived their own).
    active = cluster.api.get(f"/nodes/{source}/tasks", source="active", limit=500)
    assert all(t.get("status") == "RUNNING" for t in active if "endtime" not in t), active


@pytest.mark.parametrize("case", ["local-device", "local-disk", "unknown-target"])
def test_a_refused_migration_exits_2_with_pves_reason(cluster: Backend, case: str) -> None:
    # The planner's checks refuse these before anything is sent to PVE (`pvetool migrate` is a
    # one-move plan): the reason is the check's finding, naming what PVE would refuse.
    if case == "local-device":
        vmid = cluster.role("local-device")
        target = cluster.other_node(cluster.where(vmid))
        reason = "PVT-LOCAL-DEVICE"
        detail = "it uses host-bound devices: usb0"
    elif case == "local-disk":
        vmid = cluster.role("local-disk")
        target = cluster.other_node(cluster.where(vmid))
        reason = "PVT-LOCAL-DISK"
        detail = "it runs with local disks"
    else:
        vmid = cluster.role("shared-disk")
        target = "nosuchnode"
        assert target not in cluster.nodes()
        reason = "PVT-UNKNOWN-NODE"
        detail = f"{target} is not a node of this cluster"
    source = cluster.where(vmid)

    r = cluster.pvetool("migrate", str(vmid), "--to", target)
    assert r.code == 2, (r.out, r.err)  # refused before starting (issue 13)
    assert reason in r.err and detail in r.err
    assert "Traceback" not in r.err
    after = cluster.guests()[vmid]
    assert after["node"] == source and not after.get("lock")
