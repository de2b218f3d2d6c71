"""Portable: drain one node, then undrain it: every guest leaves once and comes home.

The node drained is the one of the HA test guest (pve2 in the nested lab: an HA VM, a VM with a
local disk and, once config.toml has it, a stopped VM), so one drain covers several kinds. The
test skips itself when that node holds guests the suite did not create.
"""

from __future__ import annotations

import json

from tests.e2e.backend import Backend


def test_drain_then_undrain_brings_every_guest_home(cluster: Backend) -> None:
    node = cluster.where(cluster.role("ha"))
    cluster.require_only_test_guests(node)
    roles = cluster.roles()
    home = {v for v, n in cluster.placement().items() if n == node}
    movable = home - {roles.get("local-device")}
    assert movable, f"no test guest to drain on {node}"
    known = cluster.task_upids([node], movable)

    r = cluster.pvetool(
        "drain", node, "--with-local-disks", "--yes", "-o", "json", *cluster.report_args("drain")
    )
    assert r.code == (1 if home - movable else 0), r.out + r.err
    summary = next(json.loads(x) for x in r.out.splitlines() if '"event": "summary"' in x)
    assert {m["vmid"] for m in summary["moves"] if m["status"] == "moved"} == movable
    placement = cluster.placement()
    assert not movable & {v for v, n in placement.items() if n == node}
    for vmid in movable:
        moved = [t for t in cluster.migration_tasks(node, vmid) if t["upid"] not in known]
        assert [t["status"] for t in moved] == ["OK"], (vmid, moved)

    r = cluster.pvetool("undrain", node, "--yes", *cluster.report_args("undrain"))
    assert r.code == 0, r.out + r.err
    assert f"summary: {len(movable)} moved, 0 skipped, 0 failed, 0 blocked" in r.out
    assert {v for v, n in cluster.placement().items() if n == node} == home
