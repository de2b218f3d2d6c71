"""The plan as an administrator sees it: table, matrix, Markdown and JSON data."""

from __future__ import annotations

import json

from rich.console import Console, RenderableType

from pvetool.plan_json import plan_from_dict
from pvetool.planner.build import build_plan, drain_spec
from pvetool.planner.loader import load_plan
from pvetool.render.plan import (
    matrix_data,
    matrix_renderable,
    plan_data,
    plan_markdown,
    plan_renderable,
)
from tests.unit.planner.planner_support import ROOT, lab


def _text(renderable: RenderableType, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_plan_shows_moves_in_order_blocked_guests_and_timeline() -> None:
    plan = build_plan(drain_spec(["pve1"]), lab())
    text = _text(plan_renderable(plan))
    assert text.startswith("plan drain-pve1: CANNOT RUN: ")
    assert "1 guest(s) blocked; 5 migration(s)" in text
    assert "Stage 1/1 migrate: drain pve1" in text
    positions = [text.index(f"{m.vmid} {m.name}") for m in plan.moves]
    assert positions == sorted(positions)  # in the order they start
    assert "pve3 rejected for 103: strict HA rule db-on-1-2 allows only pve1, pve2" in text
    assert "Blocked guests (1)" in text and "PVT-LOCAL-DISK" in text
    assert "LB_" not in text  # the planner's names stay out of the operator's view
    assert "fastest possible:" in text and "limited by the migration of 103 (db1) alone" in text
    assert "Predicted timeline:" in text
    assert "caps:" in text


def test_rolling_plan_shows_every_stage() -> None:
    plan = build_plan(load_plan(ROOT / "playbooks" / "rolling-maintenance.yaml"), lab())
    text = _text(plan_renderable(plan))
    assert "hook: before hook for pve1 - runs /usr/local/sbin/pve-maintenance-hook before" in text
    assert "PVETOOL_NODE=pve1" in text
    assert "wait-node: wait until pve1 is online and the cluster quorate" in text
    assert "migrate: return guests to pve1" in text
    assert "confirm: confirm before the maintenance of pve2" in text


def test_matrix_names_every_reason() -> None:
    plan = build_plan(drain_spec(["pve2"]), lab())
    text = _text(matrix_renderable(plan))
    for line in ("114 gpu1", "BLOCKED", "PVT-LOCAL-DEVICE", "112 cache1", "PVT-LOCAL-DISK"):
        assert line in text
    assert "(target rejected)" in text  # 102 web2 could not take pve1
    data = matrix_data(plan)
    assert data["can_run"] is False and sorted(data["blocked"]) == [112, 114]
    rows = {row["vmid"]: row for row in data["guests"]}
    assert rows[102]["target"] == "pve3"
    assert any(r["id"] == "PVT-HA-RESOURCE-AFFINITY" for r in rows[102]["reasons"])
    json.dumps(data)


def test_markdown_and_json() -> None:
    plan = build_plan(load_plan(ROOT / "playbooks" / "drain-node.yaml"), lab())
    md = plan_markdown(plan)
    assert md.startswith("# Plan drain-pve2\n")
    assert "| # | guest | from | to |" in md
    assert "## Predicted timeline" in md
    data = plan_data(plan)
    assert plan_from_dict(json.loads(json.dumps(data))) == plan
