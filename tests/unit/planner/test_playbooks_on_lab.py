"""Every shipped playbook is a plan that can run on the `lab` cluster: no blockers, and each
guest that the plan means to move has a move (so the examples cannot rot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvetool.planner.build import build_plan
from pvetool.planner.loader import load_plan
from tests.unit.planner.planner_support import lab

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yaml"))


def test_there_are_at_least_five_playbooks() -> None:
    assert len(PLAYBOOKS) >= 5


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.name)
def test_playbook_can_run_on_lab(path: Path) -> None:
    plan = build_plan(load_plan(path), lab())
    assert plan.blockers == (), [f.message for f in plan.blockers]
    assert plan.blocked == ()
    assert plan.moves, "a playbook that moves nothing teaches nothing"
