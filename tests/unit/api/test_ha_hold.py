"""The HA drain hold's rule arithmetic (`pvetool.api.ha_hold`): which rules change, how two
held nodes compose, and that releasing gives back the original rule exactly."""

from __future__ import annotations

from dataclasses import replace

from pvetool.api.ha_hold import HoldChange, hold_changes, release_changes
from pvetool.model import HaRule, HaRuleNode

DB = HaRule(
    "db",
    "node-affinity",
    resources=("vm:103",),
    nodes=(HaRuleNode("pve1", 2), HaRuleNode("pve2"), HaRuleNode("pve3")),
    strict=True,
    comment="keep the database on fast nodes",
)


def _applied(rule: HaRule, change: HoldChange) -> HaRule:
    return replace(rule, nodes=change.nodes, disabled=change.disable, comment=change.comment)


def test_hold_takes_the_node_out_and_release_restores_exactly() -> None:
    (change,), notes = hold_changes([DB], "pve1")
    assert notes == []
    held = _applied(DB, change)
    assert [n.node for n in held.nodes] == ["pve2", "pve3"] and held.strict and not held.disabled
    assert held.comment is not None and held.comment.startswith("pvetool-hold: ")
    (back,) = release_changes([held], "pve1")
    assert _applied(held, back) == DB


def test_two_held_nodes_compose_and_release_one_at_a_time() -> None:
    (c1,), _ = hold_changes([DB], "pve1")
    one = _applied(DB, c1)
    (c2,), _ = hold_changes([one], "pve2")
    two = _applied(one, c2)
    assert [n.node for n in two.nodes] == ["pve3"]
    (r1,) = release_changes([two], "pve1")
    after_pve1 = _applied(two, r1)
    assert [(n.node, n.priority) for n in after_pve1.nodes] == [("pve1", 2), ("pve3", 0)]
    (r2,) = release_changes([after_pve1], "pve2")
    assert _applied(after_pve1, r2) == DB


def test_a_rule_left_without_nodes_is_disabled_while_held() -> None:
    soft = HaRule("soft", "node-affinity", resources=("vm:104",), nodes=(HaRuleNode("pve1"),))
    (change,), _ = hold_changes([soft], "pve1")
    held = _applied(soft, change)
    assert held.disabled and held.nodes == soft.nodes
    (back,) = release_changes([held], "pve1")
    assert _applied(held, back) == soft


def test_rules_not_listing_the_node_and_strict_single_node_rules_are_left_alone() -> None:
    other = HaRule("other", "node-affinity", resources=("vm:105",), nodes=(HaRuleNode("pve2"),))
    only = HaRule(
        "only", "node-affinity", resources=("vm:106",), nodes=(HaRuleNode("pve1"),), strict=True
    )
    apart = HaRule("apart", "resource-affinity", resources=("vm:1", "vm:2"), affinity="negative")
    changes, notes = hold_changes([other, only, apart], "pve1")
    assert changes == []
    assert notes == [
        "HA rule only allows only pve1 for vm:106; not changed (its guests stay there)"
    ]
    assert release_changes([other, only, apart], "pve1") == []
