"""Portable: `pvetool status` shows the cluster the PVE API shows (emulator or real PVE).

Read-only: nothing moves. See tests/e2e/README.md for how the portable tests pick their cluster.
"""

from __future__ import annotations

import json

from tests.e2e.backend import Backend


def test_status_json_and_table_agree_with_the_api(cluster: Backend) -> None:
    nodes = cluster.nodes()
    online = cluster.online_nodes()
    placement = cluster.placement()

    r = cluster.pvetool("status", "-o", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["quorate"] is True
    assert (data["nodes_online"], data["nodes_total"]) == (len(online), len(nodes))
    assert {n["node"]: n["online"] for n in data["nodes"]} == {n: n in online for n in nodes}
    assert {g["vmid"]: g["node"] for g in data["guests"]} == placement
    shown = {g["vmid"]: set(g["tags"]) for g in data["guests"]}
    for role, vmid in cluster.roles().items():
        assert {"pvelab", role} <= shown[vmid], (vmid, shown[vmid])

    r = cluster.pvetool("status")
    assert r.code == 0, r.err
    assert f"quorate, {len(online)}/{len(nodes)} nodes online, {len(placement)} guests" in r.out
    for node in {n for n in placement.values()}:
        assert f"Guests on {node}" in r.out
    assert r.err.strip() == ""
