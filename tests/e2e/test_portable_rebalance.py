"""Portable: `pvetool rebalance --dry-run`, then the real run, whose moves are then reverted.

A rebalance may move any guest of the cluster, so the test skips itself when the cluster holds
guests the suite did not create. The threshold is low (1 %) so that the small test guests of the
nested lab are always out of balance; `--max-moves 2` keeps it short.
"""

from __future__ import annotations

import json

from tests.e2e.backend import Backend

ARGS = ("rebalance", "--by", "memory", "--threshold", "1%", "--max-moves", "2")


def test_rebalance_dry_run_then_run_then_revert(cluster: Backend) -> None:
    cluster.require_only_test_guests()
    start = cluster.placement()

    r = cluster.pvetool(*ARGS, "--dry-run", "-o", "json")
    assert r.code == 0, r.err
    plan = json.loads(r.out)["plan"]
    planned = {m["vmid"]: m["target"] for s in plan["stages"] for m in s["moves"]}
    assert planned, "nothing to rebalance: the test guests should be out of balance by > 1 %"
    assert all("spread" in m["reason"] for s in plan["stages"] for m in s["moves"])
    assert cluster.placement() == start  # a dry run moves nothing

    r = cluster.pvetool(*ARGS, "--yes", "-o", "json", *cluster.report_args("rebalance"))
    assert r.code == 0, r.out + r.err
    summary = next(json.loads(x) for x in r.out.splitlines() if '"event": "summary"' in x)
    moved = {m["vmid"]: m["target"] for m in summary["moves"] if m["status"] == "moved"}
    assert moved and summary["summary"]["failed"] == 0
    assert moved.keys() <= cluster.test_vmids()
    after = cluster.placement()
    assert {v: after[v] for v in moved} == moved
    assert {v: n for v, n in after.items() if v not in moved} == {
        v: n for v, n in start.items() if v not in moved
    }

    assert sorted(cluster.restore(start)) == sorted(moved)
    assert cluster.placement() == start
