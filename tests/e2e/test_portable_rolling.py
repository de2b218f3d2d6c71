"""Portable: rolling maintenance of every node, without real reboots.

A plan file in tmp rolls through all online nodes: each is drained, its `before` and `after`
hooks run (they only append "<hook> $PVETOOL_NODE" to a marker file; nothing is rebooted), pvetool
waits for the node to be online and the cluster quorate, and the guests come home. Guests that
cannot move (the local-device test guest) and guests the suite did not create are excluded by
the plan's rules, so they stay where they are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.e2e.backend import Backend

# The hook: append "<before|after> $PVETOOL_NODE" to the marker file; nothing else.
HOOK = (
    "import os, sys; "
    "open(sys.argv[1], 'a').write(sys.argv[2] + ' ' + os.environ['PVETOOL_NODE'] + '\\n')"
)


def write_plan(tmp: Path, nodes: list[str], exclude: set[int]) -> tuple[Path, Path]:
    marker = tmp / "hooks.log"
    hook = [sys.executable, "-c", HOOK, str(marker)]
    excluded = f"  exclude: {{vmids: {sorted(exclude)}}}\n" if exclude else ""
    plan = tmp / "rolling.yaml"
    plan.write_text(
        "version: 1\n"
        "name: portable-rolling\n"
        "rules:\n"
        f"{excluded}"
        "  migration: {with_local_disks: true}\n"
        "  on_failure: stop\n"
        "steps:\n"
        "  - rolling:\n"
        f"      nodes: {json.dumps(nodes)}\n"
        "      before:\n"
        f"        command: {json.dumps([*hook, 'before'])}\n"
        "        timeout: 60s\n"
        f"      after: {json.dumps([*hook, 'after'])}\n"
        "      wait_online_timeout: 5m\n",
        encoding="utf-8",
    )
    return plan, marker


def test_rolling_maintenance_drains_runs_the_hooks_and_refills_every_node(
    cluster: Backend, tmp_path: Path
) -> None:
    nodes = cluster.online_nodes()
    start = cluster.placement()
    stay = cluster.foreign_guests() | {cluster.role("local-device")}
    plan, marker = write_plan(tmp_path, nodes, stay)
    report = tmp_path / "rolling.json"

    r = cluster.pvetool(
        "plan",
        "apply",
        str(plan),
        "--yes",
        "--report",
        str(report),
        *cluster.report_args("rolling"),
    )
    assert r.code == 0, r.out + r.err
    assert [line.split() for line in marker.read_text().splitlines()] == [
        [hook, node] for node in nodes for hook in ("before", "after")
    ]
    assert cluster.placement() == start  # every guest is back where it started
    data = json.loads(report.read_text())
    assert data["exit_code"] == 0 and data["summary"]["failed"] == 0
    assert [w["node"] for w in data["node_waits"]] == nodes
    assert len(data["hooks"]) == 2 * len(nodes) and all(h["ok"] for h in data["hooks"])
    movable = {v for v in cluster.test_vmids() if v not in stay}
    moved = [m for m in data["moves"] if m["status"] == "moved"]
    for node in nodes:
        # Each node was emptied of its movable guests, and they came back.
        mine = {v for v in movable if start[v] == node}
        assert {
            m["vmid"] for m in moved if m["source"] == node and start[m["vmid"]] == node
        } == mine
        assert {
            m["vmid"] for m in moved if m["target"] == node and start[m["vmid"]] == node
        } == mine
