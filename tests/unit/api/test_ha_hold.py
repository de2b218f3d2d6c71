"""The HA drain hold's rule arithmetic (`pvetool.api.ha_hold`): failback off first, the node
out of the rule once its guests left, how two held nodes compose, and that releasing gives back
the original rule and failback exactly."""

from __future__ import annotations

from dataclasses import replace

from pvetool.api.ha_hold import (
    FailbackChange,
    HoldChange,
    activate_changes,
    finish_changes,
    hold_changes,
    release_changes,
)
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


def _held(rule: HaRule, node: str, on_node: tuple[str, ...] = ()) -> HaRule:
    (marked,), _, _ = hold_changes([rule], {}, node)
    rule = _applied(rule, marked)
    changes, _ = activate_changes([rule], node, on_node)
    return _applied(rule, changes[0]) if changes else rule


def test_failback_goes_off_first_and_the_rule_changes_only_after_the_guests_left() -> None:
    (marked,), off, notes = hold_changes([DB], {"vm:103": None}, "pve1")
    assert notes == [] and off == [FailbackChange("vm:103", False)]
    step1 = _applied(DB, marked)
    # Step 1 leaves the nodes alone: the CRM must not move the guests still on pve1 itself.
    assert step1.nodes == DB.nodes and not step1.disabled
    assert step1.comment is not None and step1.comment.startswith("pvetool-hold: ")
    waiting, notes = activate_changes([step1], "pve1", {"vm:103"})
    assert waiting == [] and "vm:103 is still there" in notes[0]
    (active,), _ = activate_changes([step1], "pve1", set())
    step2 = _applied(step1, active)
    assert [n.node for n in step2.nodes] == ["pve2", "pve3"] and step2.strict
    (back,), failbacks = release_changes([step2], "pve1")
    assert _applied(step2, back) == DB
    assert failbacks == [FailbackChange("vm:103", None)]  # PVE's default, as it was


def test_an_explicit_failback_is_restored_as_it_was() -> None:
    _, off, _ = hold_changes([DB], {"vm:103": False}, "pve1")
    assert off == []  # already off: nothing to change
    (marked,), _, _ = hold_changes([DB], {"vm:103": True}, "pve1")
    _, failbacks = release_changes([_applied(DB, marked)], "pve1")
    assert failbacks == [FailbackChange("vm:103", True)]


def test_two_held_nodes_compose_and_release_one_at_a_time() -> None:
    one = _held(DB, "pve1")
    two = _held(one, "pve2")
    assert [n.node for n in two.nodes] == ["pve3"]
    (r1,), fb1 = release_changes([two], "pve1")
    after_pve1 = _applied(two, r1)
    assert fb1 == []  # pve2 is still held: failback stays off
    assert [(n.node, n.priority) for n in after_pve1.nodes] == [("pve1", 2), ("pve3", 0)]
    (r2,), _ = release_changes([after_pve1], "pve2")
    assert _applied(after_pve1, r2) == DB


def test_a_rule_left_without_nodes_is_disabled_while_held() -> None:
    soft = HaRule("soft", "node-affinity", resources=("vm:104",), nodes=(HaRuleNode("pve1"),))
    held = _held(soft, "pve1")
    assert held.disabled and held.nodes == soft.nodes
    (back,), _ = release_changes([held], "pve1")
    assert _applied(held, back) == soft


def test_rules_not_listing_the_node_and_strict_single_node_rules_are_left_alone() -> None:
    other = HaRule("other", "node-affinity", resources=("vm:105",), nodes=(HaRuleNode("pve2"),))
    only = HaRule(
        "only", "node-affinity", resources=("vm:106",), nodes=(HaRuleNode("pve1"),), strict=True
    )
    apart = HaRule("apart", "resource-affinity", resources=("vm:1", "vm:2"), affinity="negative")
    changes, off, notes = hold_changes([other, only, apart], {}, "pve1")
    assert changes == [] and off == []
    assert notes == [
        "HA rule only allows only pve1 for vm:106; not changed (its guests stay there)"
    ]
    assert release_changes([other, only, apart], "pve1") == ([], [])


def test_a_release_before_moves_home_restores_the_rule_and_keeps_failback_off_until_the_end() -> (
    None
):
    """Failback on while pvetool brings the guest home would make the CRM start the same
    migration in its next round (and pvetool's would fail on the lock)."""
    held = _held(DB, "pve1")
    (first,), failbacks = release_changes([held], "pve1", keep_failback=True)
    during = _applied(held, first)
    assert failbacks == [] and "failback stays off for vm:103" in first.note
    assert during.nodes == DB.nodes and not during.disabled  # the guest may go home now
    assert during.comment is not None and during.comment.startswith("pvetool-hold: ")
    assert finish_changes([held]) == ([], [], [])  # pve1 still held: nothing to finish
    (last,), failbacks, notes = finish_changes([during], {"vm:103": "pve1"}, {"pve1", "pve2"})
    assert notes == []
    assert _applied(during, last) == DB
    assert failbacks == [FailbackChange("vm:103", None)]
    # A second release (an undrain again, after a run stopped between the steps) only finishes.
    assert release_changes([during], "pve1") == ([], [])


def test_an_unfinished_release_is_not_taken_for_a_hold_of_another_node() -> None:
    during = _applied(
        _held(DB, "pve1"), release_changes([_held(DB, "pve1")], "pve1", keep_failback=True)[0][0]
    )
    assert activate_changes([during], "pve1", set()) == ([], [])
    (again,), off, _ = hold_changes([during], {"vm:103": False}, "pve1")
    assert off == []  # failback is still off: a new drain holds pve1 with nothing to switch off
    assert [n.node for n in _applied(during, again).nodes] == ["pve1", "pve2", "pve3"]


def test_failback_stays_off_for_a_guest_whose_move_home_failed() -> None:
    """With failback back on, the CRM would move a guest that is not on its rule's best online
    node (its move home failed): the report would no longer say where it is."""
    held = _held(DB, "pve1")
    (first,), _ = release_changes([held], "pve1", keep_failback=True)
    during = _applied(held, first)
    online = {"pve1", "pve2", "pve3"}
    changes, failbacks, notes = finish_changes([during], {"vm:103": "pve2"}, online)
    assert changes == [] and failbacks == []
    assert notes == [
        "HA rule db: failback stays off for vm:103: vm:103 is on pve2, not on pve1 where the rule "
        "puts it first (the HA manager would move it); it comes back on once the guest is there "
        "(resume the run, or undrain again)"
    ]
    # Its best node offline: the CRM keeps it where it is, so failback may come back.
    (last,), failbacks, notes = finish_changes([during], {"vm:103": "pve2"}, {"pve2", "pve3"})
    assert notes == [] and failbacks == [FailbackChange("vm:103", None)]
    # Failback off before the drain: nothing would move it, so the rule is finished.
    (off_marked,), _, _ = hold_changes([DB], {"vm:103": False}, "pve1")
    off_held = _applied(DB, off_marked)
    (off_first,), _ = release_changes([off_held], "pve1", keep_failback=True)
    (done,), failbacks, notes = finish_changes(
        [_applied(off_held, off_first)], {"vm:103": "pve2"}, online
    )
    assert notes == [] and failbacks == [FailbackChange("vm:103", False)]


def test_a_hold_killed_before_failback_went_off_is_finished_by_the_resumed_drain() -> None:
    """The marker is written first; a run killed before failback goes off must not leave it
    on for the resumed drain (chaos lab-drain 77: the CRM moved 103 straight back)."""
    (marked,), off, _ = hold_changes([DB], {"vm:103": None}, "pve1")
    assert off == [FailbackChange("vm:103", False)]
    killed = _applied(DB, marked)  # the marker landed, the failback change did not
    changes, off, notes = hold_changes([killed], {"vm:103": None}, "pve1")
    assert changes == [] and notes == []
    assert off == [FailbackChange("vm:103", False)]
    # Once it is off, holding again changes nothing.
    assert hold_changes([killed], {"vm:103": False}, "pve1") == ([], [], [])
