"""The HA drain hold: keep PVE's HA manager from moving guests back onto a drained node.

Why: on PVE 9.2 the CRM moves an HA guest back to the highest-priority online node of its
node-affinity rule in every 10 s round while ``failback`` is on, its default (pve-ha-manager
5.2.0 ``src/PVE/HA/Manager.pm`` ``select_service_node`` l.315-383, ``next_state_started``
l.1373-1588; ``src/PVE/HA/Resources.pm`` l.65-73). A drain by plain migrations is undone
within seconds for every guest whose rule prefers the drained node. Node maintenance, the CRM's
own answer, has no REST endpoint in 9.2 (only ``ha-manager crm-command node-maintenance``).

How the hold composes with the guest's rules: a resource may be in one node-affinity rule
only; a second one makes the API refuse it, and the CRM drops both if they exist anyway
(``src/PVE/HA/Rules/NodeAffinity.pm`` ``check_single_resource_reference`` l.206-248,
``src/PVE/HA/Rules.pm`` ``transform`` l.440-457). So the hold cannot add a rule next to the
guest's own: it rewrites the guest's rule instead. The CRM takes a rule's listed nodes at their
priorities; a non-strict rule adds every other node at priority -1, a strict one allows only
the listed nodes (``NodeAffinity.pm`` ``plugin_compile`` l.158-190, ``get_node_affinity``
l.268-290). Taking the drained node out of the list therefore means: strict, it is not allowed;
non-strict, it is least preferred (-1) and never chosen while another node is online. A rule
left with no node is disabled instead: with no node affinity the CRM keeps a guest where it is
(``select_service_node`` l.359, ``return $current_node if ... $pri_nodes->{$current_node}``),
except a strict rule that lists only the drained node, which the hold leaves alone (disabling
it would let the guest run anywhere; the planner keeps such a guest on its node anyway). A
guest without a node-affinity rule needs no hold: every online node has priority 0 for it and
the CRM keeps it where it is (same line).

The original rule is kept in the rule itself, in its comment (``pvetool-hold: {json}``:
the held nodes, the original node list, disable flag and comment), so that `release`, run by
``undrain`` on any machine, restores it exactly, also after a failed or interrupted run and
when this machine's state is lost; PVE stores a comment as given (``Rules.pm``
``encode_value``/``decode_value``, ``PVE::Tools::encode_text``). Holding a second node adds it to
the held set; releasing one node puts it back while the others stay held.

Changing rules needs ``Sys.Console`` on ``/`` (``src/PVE/API2/HA/Rules.pm`` ``update_rule``).

Imports: the standard library, `pvetool.errors`, `pvetool.model` and `pvetool.api.client`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from pvetool.api.client import PveClient
from pvetool.errors import PvetoolError
from pvetool.model import ClusterSnapshot, HaRule, HaRuleNode

__all__ = [
    "MARKER",
    "HoldChange",
    "hold_changes",
    "hold_nodes",
    "release_changes",
    "release_node",
    "released",
]

logger = logging.getLogger(__name__)

MARKER = "pvetool-hold: "


@dataclass(frozen=True)
class HoldChange:
    """One rule update: the new node list (None: unchanged), whether the rule is disabled,
    its new comment (None: delete it), and a sentence for the operator."""

    rule_id: str
    nodes: tuple[HaRuleNode, ...]
    disable: bool
    comment: str | None
    note: str


def _nodes_text(nodes: Iterable[HaRuleNode]) -> str:
    return ",".join(f"{n.node}:{n.priority}" if n.priority else n.node for n in nodes)


def _parse_nodes(text: str) -> tuple[HaRuleNode, ...]:
    out = []
    for item in text.split(","):
        if item:
            name, _, prio = item.partition(":")
            out.append(HaRuleNode(name, int(prio or 0)))
    return tuple(out)


def _marker(rule: HaRule) -> dict[str, Any] | None:
    """The hold recorded in the rule's comment, None when it has none."""
    comment = rule.comment or ""
    if not comment.startswith(MARKER):
        return None
    try:
        data = json.loads(comment[len(MARKER) :])
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("held"), list):
        return None
    return data


def _change(rule: HaRule, original: dict[str, Any], held: list[str], verb: str) -> HoldChange:
    """The rule as the original with the `held` nodes taken out (the original when none)."""
    nodes = _parse_nodes(str(original["nodes"]))
    if not held:
        return HoldChange(
            rule.rule_id,
            nodes,
            bool(original.get("disable")),
            original.get("comment"),
            f"HA rule {rule.rule_id}: restored (nodes {_nodes_text(nodes)})",
        )
    kept = tuple(n for n in nodes if n.node not in held)
    data = dict(original, held=sorted(held))
    comment = MARKER + json.dumps(data, sort_keys=True, separators=(",", ":"))
    if kept:
        return HoldChange(
            rule.rule_id,
            kept,
            bool(original.get("disable")),
            comment,
            f"HA rule {rule.rule_id}: {verb}; nodes {_nodes_text(kept)} while "
            f"{', '.join(sorted(held))} {'is' if len(held) == 1 else 'are'} drained",
        )
    return HoldChange(
        rule.rule_id,
        nodes,
        True,
        comment,
        f"HA rule {rule.rule_id}: {verb}; disabled while {', '.join(sorted(held))} "
        f"{'is' if len(held) == 1 else 'are'} drained (it lists no other node)",
    )


def hold_changes(rules: Iterable[HaRule], node: str) -> tuple[list[HoldChange], list[str]]:
    """The rule updates that keep the HA manager off `node`, and notes on rules left alone."""
    changes: list[HoldChange] = []
    notes: list[str] = []
    for rule in rules:
        if rule.type != "node-affinity" or rule.from_group:
            continue
        data = _marker(rule)
        if data is not None:
            held = [str(h) for h in data["held"]]
            if node in held or node not in {n.node for n in _parse_nodes(str(data["nodes"]))}:
                continue
            changes.append(_change(rule, data, [*held, node], f"also keeps off {node}"))
            continue
        if rule.disabled or node not in rule.node_priorities:
            continue
        if rule.strict and all(n.node == node for n in rule.nodes):
            notes.append(
                f"HA rule {rule.rule_id} allows only {node} for {', '.join(rule.resources)}; "
                "not changed (its guests stay there)"
            )
            continue
        original = {
            "nodes": _nodes_text(rule.nodes),
            "disable": rule.disabled,
            "comment": rule.comment,
        }
        changes.append(_change(rule, original, [node], f"keeps off {node}"))
    return changes, notes


def release_changes(rules: Iterable[HaRule], node: str) -> list[HoldChange]:
    """The rule updates that end the hold on `node` (the original rule once no node is held)."""
    changes = []
    for rule in rules:
        data = _marker(rule) if rule.type == "node-affinity" else None
        if data is None or node not in data["held"]:
            continue
        held = [str(h) for h in data["held"] if h != node]
        changes.append(_change(rule, data, held, f"no longer keeps off {node}"))
    return changes


def released(snapshot: ClusterSnapshot, node: str) -> ClusterSnapshot:
    """`snapshot` with the hold on `node` ended in its HA rules: what an undrain plans against
    (it ends the hold before its moves start)."""
    changes = {c.rule_id: c for c in release_changes(snapshot.ha_rules, node)}
    if not changes:
        return snapshot
    rules = tuple(
        replace(
            r,
            nodes=changes[r.rule_id].nodes,
            disabled=changes[r.rule_id].disable,
            comment=changes[r.rule_id].comment,
        )
        if r.rule_id in changes
        else r
        for r in snapshot.ha_rules
    )
    return replace(snapshot, ha_rules=rules)


def _apply(client: PveClient, changes: Iterable[HoldChange]) -> list[str]:
    notes = []
    for change in changes:
        try:
            client.update_ha_rule(
                change.rule_id,
                "node-affinity",
                nodes=_nodes_text(change.nodes),
                disable=change.disable,
                comment=change.comment,
            )
        except PvetoolError as exc:
            logger.warning("HA rule %s not changed: %s", change.rule_id, exc)
            notes.append(f"HA rule {change.rule_id} could not be changed: {exc}")
        else:
            notes.append(change.note)
    return notes


def hold_nodes(client: PveClient, nodes: Iterable[str]) -> list[str]:
    """Hold each of `nodes` (see the module docstring); one note per rule changed or left."""
    notes: list[str] = []
    for node in nodes:
        rules = client.ha_rules()
        changes, skipped = hold_changes(rules, node)
        notes += skipped + _apply(client, changes)
    return notes


def release_node(client: PveClient, node: str) -> list[str]:
    """End the hold on `node`; one note per rule changed."""
    return _apply(client, release_changes(client.ha_rules(), node))
