"""Scenario tests as data: tests/data/scenarios/*.yaml, each a cluster, a plan and what the
planner must find and do. One test runs them all (README in that directory).

Every scenario is also replayed: no target may hold more memory than its limit at any moment of
the predicted timeline.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvetool.errors import PlanError
from pvetool.model import ExecutionPlan, Finding
from pvetool.planner.build import build_plan
from pvetool.planner.checks import FINDING_IDS
from pvetool.planner.loader import load_plan_text
from tests.unit.planner.planner_support import (
    SCENARIOS,
    replay_memory,
    snapshot_of,
    snapshot_of_text,
)

FILES = sorted(SCENARIOS.glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    unknown = set(doc) - {"description", "cluster", "plan", "inputs", "expect"}
    assert not unknown, f"{path.name}: unknown keys {unknown}"
    return doc


def _snapshot(doc: dict[str, Any], path: Path) -> Any:
    cluster = doc["cluster"]
    if isinstance(cluster, str):
        return snapshot_of(cluster)
    return snapshot_of_text(yaml.safe_dump(cluster, sort_keys=False), f"{path.name}#cluster")


def _plan_text(doc: dict[str, Any]) -> str:
    plan = doc["plan"]
    return plan if isinstance(plan, str) else yaml.safe_dump(plan, sort_keys=False)


def _matches(f: Finding, want: dict[str, Any]) -> bool:
    if f.id != want["id"]:
        return False
    if "vmid" in want and f.vmid != want["vmid"]:
        return False
    if "target" in want and f.target != want["target"]:
        return False
    if "severity" in want and f.severity != want["severity"]:
        return False
    return "contains" not in want or want["contains"] in f.message


def _all_findings(plan: ExecutionPlan, where: str) -> tuple[Finding, ...]:
    if where == "findings":
        return plan.findings
    if where == "rejections":
        return plan.rejections
    return plan.findings + plan.rejections


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path) -> None:
    doc = _load(path)
    expect = doc.get("expect") or {}
    inputs = doc.get("inputs") or {}
    snapshot = _snapshot(doc, path)
    if "held_nodes" in inputs:  # nodes pvetool drained (the CLI adds them from its state)
        snapshot = replace(snapshot, held_nodes=dict(inputs["held_nodes"]))
    spec = load_plan_text(_plan_text(doc), f"{path.stem}.plan.yaml")
    kwargs: dict[str, Any] = {}
    if "replication" in inputs:
        kwargs["replication"] = {int(k): v for k, v in inputs["replication"].items()}
    if "link_gbit" in inputs:
        kwargs["link_bits_per_s"] = float(inputs["link_gbit"]) * 1e9
    if "error" in expect:
        with pytest.raises(PlanError) as caught:
            build_plan(spec, snapshot, **kwargs)
        assert expect["error"] in str(caught.value)
        return
    plan = build_plan(spec, snapshot, **kwargs)
    shown = "\n".join(
        [f"{f.severity} {f.id} {f.vmid} {f.target}: {f.message}" for f in plan.findings]
        + [f"rejected {f.id} {f.vmid} {f.target}" for f in plan.rejections]
        + [f"move {m.id} {m.vmid} {m.source}->{m.target} after={m.after}" for m in plan.moves]
    )
    if "can_run" in expect:
        assert plan.can_run is expect["can_run"], shown
    for want in expect.get("findings", []):
        assert want["id"] in FINDING_IDS, want
        found = _all_findings(plan, want.get("in", "any"))
        assert any(_matches(f, want) for f in found), f"missing {want}\n{shown}"
    for want in expect.get("no_findings", []):
        found = _all_findings(plan, want.get("in", "any"))
        assert not any(_matches(f, want) for f in found), f"unexpected {want}\n{shown}"
    moves = plan.moves
    by_vmid: dict[int, list[Any]] = {}
    for m in moves:
        by_vmid.setdefault(m.vmid, []).append(m)
    ids = {m.id: m.vmid for m in moves}
    for want in expect.get("moves", []):
        got = by_vmid.get(want["vmid"], [])
        assert got, f"{want['vmid']} does not move\n{shown}"

        def fits(m: Any, want: dict[str, Any] = want) -> bool:
            if "target" in want and m.target != want["target"]:
                return False
            if "source" in want and m.source != want["source"]:
                return False
            if "pinned" in want and m.pinned is not want["pinned"]:
                return False
            if "after" in want and not set(want["after"]) <= {ids[a] for a in m.after}:
                return False
            if "same_target_as" in want:
                other = by_vmid.get(want["same_target_as"], [])
                return bool(other) and other[0].target == m.target
            return True

        assert any(fits(m) for m in got), f"no move fits {want}\n{shown}"
    for vmid in expect.get("not_moved", []):
        assert vmid not in by_vmid, f"{vmid} moves\n{shown}"
    if "move_count" in expect:
        assert len(moves) == expect["move_count"], shown
    if "max_moves" in expect:
        assert len(moves) <= expect["max_moves"], shown
    if "blocked" in expect:
        assert sorted(plan.blocked) == sorted(expect["blocked"]), shown
    if "stages" in expect:
        assert [s.kind for s in plan.stages] == expect["stages"], shown
    if "caps" in expect:
        for key, value in expect["caps"].items():
            assert getattr(plan.caps, key) == value, plan.caps
    for vmid in plan.blocked:
        reasons = [f for f in plan.blockers if f.vmid == vmid]
        assert reasons, f"blocked guest {vmid} without a reason\n{shown}"
    assert replay_memory(plan, snapshot) == []


def test_every_finding_id_has_a_scenario() -> None:
    """Each id the checks can produce appears in some scenario's expectations."""
    covered: set[str] = set()
    for path in FILES:
        expect = _load(path).get("expect") or {}
        covered |= {f["id"] for f in expect.get("findings", [])}
    # Not reachable through the emulator's API; covered by unit tests in test_checks.py (and
    # PVT-CONFIG-INVALID by the hostile-server tests in tests/hostile/).
    by_unit_tests = {"PVT-UNKNOWN-NODE", "PVT-CONFIG-UNKNOWN", "PVT-CONFIG-INVALID"}
    assert set(FINDING_IDS) - covered - by_unit_tests == set()


def test_every_strategy_has_a_scenario() -> None:
    kinds: set[str] = set()
    for path in FILES:
        doc = _load(path)
        text = _plan_text(doc)
        for kind in ("drain", "rolling", "rebalance", "move"):
            if f"- {kind}:" in text or f"- {kind}: " in text or f"{kind}:" in text:
                kinds.add(kind)
    assert kinds == {"drain", "rolling", "rebalance", "move"}
