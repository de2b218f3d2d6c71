"""A plan's `links:` section (issue 14): per node or default, checked like every other key, and
the command line's --link wins over it."""

from __future__ import annotations

import pytest

from pvetool.errors import PlanError
from pvetool.planner.build import build_plan
from pvetool.planner.loader import load_plan_text
from tests.unit.planner.planner_support import lab

PLAN = "version: 1\nlinks: {default: 25Gbit, pve3: 1Gbit}\nsteps:\n  - drain: pve1\n"


def test_links_are_read_in_bits_per_second() -> None:
    spec = load_plan_text(PLAN)
    assert dict(spec.links) == {"default": 25e9, "pve3": 1e9}
    assert ("pve3", 2) in [(name, where.line) for name, where in spec.node_refs]


@pytest.mark.parametrize(
    ("links", "problem"),
    [
        ("{pve3: fast}", "links.pve3: expected a rate"),
        ("{pve3: 0Gbit}", "links.pve3: the link speed must be above 0"),
        ("[pve3]", "links: expected a mapping"),
    ],
)
def test_bad_links_are_named(links: str, problem: str) -> None:
    with pytest.raises(PlanError) as info:
        load_plan_text(f"version: 1\nlinks: {links}\nsteps:\n  - drain: pve1\n", "p.yaml")
    assert f"p.yaml:2: {problem}" in str(info.value)


def test_unknown_node_in_links_is_refused_against_the_cluster() -> None:
    spec = load_plan_text("version: 1\nlinks: {pve9: 1Gbit}\nsteps:\n  - drain: pve1\n")
    with pytest.raises(PlanError, match="unknown node 'pve9'"):
        build_plan(spec, lab())


def test_command_line_wins_over_the_plan() -> None:
    from pvetool.cli.plan_cmds import planned_links

    snap = lab()
    spec = load_plan_text(PLAN)
    got = planned_links(None, snap, {}, spec.links)
    assert got["link_bits_per_s"] == {"pve1": 25e9, "pve2": 25e9, "pve3": 1e9}
    assert set(got["link_origin"].values()) == {"declared"}
    one = planned_links(None, snap, {"pve3": 10e9}, spec.links)
    assert one["link_bits_per_s"]["pve3"] == 10e9 and one["link_bits_per_s"]["pve1"] == 25e9
    every = planned_links(None, snap, {"default": 2.5e9}, spec.links)
    assert set(every["link_bits_per_s"].values()) == {2.5e9}
