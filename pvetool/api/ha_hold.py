"""The HA drain hold: keep PVE's HA manager from moving guests back onto a drained node.

Why: on PVE 9.2 the CRM moves an HA guest back to the highest-priority online node of its
node-affinity rule in every 10 s round while the resource's ``failback`` is on, its default
(pve-ha-manager 5.2.0 ``src/PVE/HA/Manager.pm`` ``select_service_node`` l.315-383,
``next_state_started`` l.1373-1588; ``src/PVE/HA/Resources.pm`` l.65-73). A drain by plain
migrations is undone within seconds for every guest whose rule prefers the drained node. Node
maintenance, the CRM's own answer, has no REST endpoint in 9.2 (only ``ha-manager crm-command
node-maintenance``).

How, in two steps per drained node N, for every enabled node-affinity rule that lists N:

1. Before the drain's migrations: ``failback`` off for the rule's resources
   (``PUT /cluster/ha/resources/{sid}``). With failback off the CRM keeps a guest on its
   current node as long as its rule allows that node (``select_service_node`` l.335-343), so
   it neither moves the guests still on N itself nor brings back the ones pvetool moved (the
   planner only sends a guest where its rule allows). The rule itself is not changed yet:
   taking N out of it now would make the CRM move the guests still on N by itself, to nodes
   of its own choosing, racing pvetool's plan.
2. After the drain stage, once none of the rule's resources is on N: N is taken out of the
   rule's node list (``PUT /cluster/ha/rules/{rule}``), so that the CRM does not choose N
   either when it must place a guest (recovery, a start): strict, N is no longer allowed;
   non-strict, N gets priority -1 like every node the rule does not list
   (``src/PVE/HA/Rules/NodeAffinity.pm`` ``plugin_compile`` l.158-190, ``get_node_affinity``
   l.268-290). A rule left with no node is disabled instead: without node affinity the CRM
   keeps a guest where it is (``select_service_node`` l.359). A rule whose resource is still
   on N (its move failed) keeps its nodes (step 1 still holds).

Why rewrite the guest's rule rather than add a rule of pvetool's own: a resource may be in one
node-affinity rule only; the API refuses a second one, and the CRM drops both if they exist
anyway (``NodeAffinity.pm`` ``check_single_resource_reference`` l.206-248, ``src/PVE/HA/Rules.pm``
``transform`` l.440-457). A strict rule that lists only N is left alone (its guests stay there;
the planner does not move them). A guest without a node-affinity rule needs no hold: every
online node has priority 0 for it and the CRM keeps it where it is (l.359).

Ending the hold mirrors it, in two steps, so that pvetool and the CRM never both move a guest
home: before the moves that bring guests back, the rule's original nodes (failback still off, so
the CRM keeps each guest where it is, which the rule allows); after them, each resource's
failback and the rule's own comment (`finish_release`). Restoring failback first would make the
CRM start the same migrations in its next round, and pvetool's own would fail on the guest's
``lock: migrate``.

The originals (the rule's nodes, disable flag and comment, each resource's failback) are kept
in the rule itself, in its comment (``pvetool-hold: {json}``; PVE stores a comment as given,
``Rules.pm`` ``encode_value``), so that `release_node`, run by ``undrain`` from any machine,
restores them exactly, also after a failed or interrupted run and when this machine's state is
lost. Holding a second node adds it to the held set; releasing one node puts it back while the
others stay held. Changing rules and resources needs ``Sys.Console`` on ``/``.

Imports: the standard library, `pvetool.errors`, `pvetool.model` and `pvetool.api.client`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pvetool.api.client import PveClient
from pvetool.errors import PvetoolError
from pvetool.model import ClusterSnapshot, HaRule, HaRuleNode

__all__ = [
    "MARKER",
    "FailbackChange",
    "HoldChange",
    "activate_changes",
    "activate_nodes",
    "finish_changes",
    "finish_release",
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
    """One rule update: its node list, whether it is disabled, its comment (None: delete it),
    and a sentence for the operator."""

    rule_id: str
    nodes: tuple[HaRuleNode, ...]
    disable: bool
    comment: str | None
    note: str


@dataclass(frozen=True)
class FailbackChange:
    """One resource's ``failback``: False (off), True (on), None (back to PVE's default)."""

    sid: str
    failback: bool | None


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
    if rule.type != "node-affinity" or not comment.startswith(MARKER):
        return None
    try:
        data = json.loads(comment[len(MARKER) :])
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("held"), list):
        return None
    data.setdefault("active", [])
    data.setdefault("failback", {})
    return data


def _are(nodes: Collection[str]) -> str:
    return f"{', '.join(sorted(nodes))} {'is' if len(nodes) == 1 else 'are'} drained"


def _rule_change(rule: HaRule, data: dict[str, Any], note: str) -> HoldChange:
    """The rule as recorded in `data`: the original without the active nodes, or the
    original itself (and its own comment) when no node is held any more."""
    nodes = _parse_nodes(str(data["nodes"]))
    if not data["held"]:
        return HoldChange(rule.rule_id, nodes, bool(data.get("disable")), data.get("comment"), note)
    active = set(data["active"])
    kept = tuple(n for n in nodes if n.node not in active)
    comment = MARKER + json.dumps(data, sort_keys=True, separators=(",", ":"))
    if kept or not active:
        return HoldChange(rule.rule_id, kept, bool(data.get("disable")), comment, note)
    return HoldChange(rule.rule_id, nodes, True, comment, note)


def hold_changes(
    rules: Iterable[HaRule], failbacks: Mapping[str, bool | None], node: str
) -> tuple[list[HoldChange], list[FailbackChange], list[str]]:
    """Step 1 for `node`: the rules marked as holding it (their nodes unchanged), the
    resources whose failback goes off, and notes on rules left alone. `failbacks`: each HA
    resource's current ``failback`` (None: not reported, PVE's default)."""
    changes: list[HoldChange] = []
    off: list[FailbackChange] = []
    notes: list[str] = []
    for rule in rules:
        if rule.type != "node-affinity" or rule.from_group:
            continue
        data = _marker(rule)
        if data is not None:
            held = [str(h) for h in data["held"]]
            if node not in {n.node for n in _parse_nodes(str(data["nodes"]))}:
                continue
            # Failback off for every resource still on: a run killed between writing the
            # marker and switching failback off left it on (chaos lab-drain 77: the resumed
            # drain moved 103 and the CRM moved it straight back).
            off += [
                FailbackChange(s, False) for s in rule.resources if failbacks.get(s) is not False
            ]
            if node in held:
                continue
            data["held"] = sorted([*held, node])
            changes.append(_rule_change(rule, data, f"HA rule {rule.rule_id}: also holds {node}"))
            continue
        if rule.disabled or node not in rule.node_priorities:
            continue
        if rule.strict and all(n.node == node for n in rule.nodes):
            notes.append(
                f"HA rule {rule.rule_id} allows only {node} for {', '.join(rule.resources)}; "
                "not changed (its guests stay there)"
            )
            continue
        original = {sid: failbacks.get(sid) for sid in rule.resources}
        data = {
            "nodes": _nodes_text(rule.nodes),
            "disable": rule.disabled,
            "comment": rule.comment,
            "held": [node],
            "active": [],
            "failback": original,
        }
        sids = [sid for sid, fb in original.items() if fb is not False]
        changes.append(
            _rule_change(
                rule,
                data,
                f"HA rule {rule.rule_id}: failback off for {', '.join(rule.resources)} while "
                f"{_are([node])}",
            )
        )
        off += [FailbackChange(sid, False) for sid in sids]
    return changes, off, notes


def activate_changes(
    rules: Iterable[HaRule], node: str, on_node: Collection[str]
) -> tuple[list[HoldChange], list[str]]:
    """Step 2 for `node`: the held rules that now leave `node` out (none of their resources
    is in `on_node`, the HA resources on it now), and notes on the ones that cannot yet."""
    changes: list[HoldChange] = []
    notes: list[str] = []
    for rule in rules:
        data = _marker(rule)
        if data is None or node not in data["held"] or node in data["active"]:
            continue
        staying = sorted(set(rule.resources) & set(on_node))
        if staying:
            notes.append(
                f"HA rule {rule.rule_id} still lists {node}: {', '.join(staying)} is still "
                "there (failback stays off)"
            )
            continue
        data["active"] = sorted([*data["active"], node])
        change = _rule_change(rule, data, "")
        what = (
            f"nodes {_nodes_text(change.nodes)}"
            if not change.disable or data.get("disable")
            else "disabled (it lists no other node)"
        )
        changes.append(
            replace(
                change,
                note=f"HA rule {rule.rule_id}: keeps off {node}; {what} while "
                f"{_are(data['active'])}",
            )
        )
    return changes, notes


def release_changes(
    rules: Iterable[HaRule], node: str, *, keep_failback: bool = False
) -> tuple[list[HoldChange], list[FailbackChange]]:
    """The updates that end the hold on `node`: the original rule (and each resource's
    failback) once no node is held any more, else the rule without `node` among the held.
    `keep_failback`: the first step of a release before guests come home: the original nodes,
    but failback stays off and the marker stays (nothing held) until `finish_changes`."""
    changes: list[HoldChange] = []
    failbacks: list[FailbackChange] = []
    for rule in rules:
        data = _marker(rule)
        if data is None or node not in data["held"]:
            continue
        data["held"] = [h for h in data["held"] if h != node]
        data["active"] = [h for h in data["active"] if h != node]
        if data["held"]:
            change = _rule_change(rule, data, "")
            note = (
                f"HA rule {rule.rule_id}: no longer keeps off {node}; nodes "
                f"{_nodes_text(change.nodes)} while {_are(data['held'])}"
            )
            changes.append(replace(change, note=note))
            continue
        change = _rule_change(rule, data, "")
        note = f"HA rule {rule.rule_id}: restored (nodes {_nodes_text(change.nodes)})"
        if keep_failback:
            marker = MARKER + json.dumps(data, sort_keys=True, separators=(",", ":"))
            note += f"; failback stays off for {', '.join(rule.resources)} until the moves end"
            changes.append(replace(change, comment=marker, note=note))
            continue
        changes.append(replace(change, note=note))
        for sid, fb in sorted(data["failback"].items()):
            failbacks.append(FailbackChange(sid, None if fb is None else bool(fb)))
    return changes, failbacks


def finish_changes(
    rules: Iterable[HaRule],
    where: Mapping[str, str] | None = None,
    online: Collection[str] | None = None,
) -> tuple[list[HoldChange], list[FailbackChange], list[str]]:
    """The second step of a release: for every rule whose marker holds no node any more, each
    resource's original failback and the rule's own comment, and notes on rules kept as they
    are. `where` (HA sid -> node now) and `online` (the online nodes): a rule whose failback
    would come back on for a guest that is not on its best online node keeps failback off (its
    move home failed or did not run): the CRM would move it in its next round, and pvetool's
    report would no longer say where it is."""
    changes: list[HoldChange] = []
    failbacks: list[FailbackChange] = []
    notes: list[str] = []
    for rule in rules:
        data = _marker(rule)
        if data is None or data["held"]:
            continue
        nodes = _parse_nodes(str(data["nodes"]))
        away = [
            (sid, where[sid], best)
            for sid, fb in sorted(data["failback"].items())
            if fb is not False and where is not None and sid in where
            for best in [_best_online(nodes, online)]
            if best and where[sid] not in best
        ]
        if away:
            sid, node, best = away[0]
            kept = ", ".join(s for s, _, _ in away)
            first = ", ".join(sorted(best))
            notes.append(
                f"HA rule {rule.rule_id}: failback stays off for {kept}: {sid} is on {node}, "
                f"not on {first} where the rule puts it first (the HA manager would move it); "
                "it comes back on once the guest is there (resume the run, or undrain again)"
            )
            continue
        sids = sorted(data["failback"])
        note = f"HA rule {rule.rule_id}: failback as it was for {', '.join(sids) or 'its guests'}"
        changes.append(_rule_change(rule, data, note))
        failbacks += [
            FailbackChange(s, None if fb is None else bool(fb))
            for s, fb in sorted(data["failback"].items())
        ]
    return changes, failbacks, notes


def _best_online(nodes: Iterable[HaRuleNode], online: Collection[str] | None) -> set[str]:
    """The rule's highest-priority online nodes, where the CRM with failback on puts a guest
    (pve-ha-manager ``Manager.pm`` ``select_service_node``); empty when none is online."""
    up = [n for n in nodes if online is None or n.node in online]
    if not up:
        return set()
    top = max(n.priority for n in up)
    return {n.node for n in up if n.priority == top}


def released(snapshot: ClusterSnapshot, node: str) -> ClusterSnapshot:
    """`snapshot` with the hold on `node` ended in its HA rules: what an undrain plans against
    (it ends the hold before its moves start)."""
    changes = {c.rule_id: c for c in release_changes(snapshot.ha_rules, node)[0]}
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


def _apply(
    client: PveClient, changes: Iterable[HoldChange], failbacks: Iterable[FailbackChange] = ()
) -> list[str]:
    notes = []
    for fb in failbacks:
        try:
            client.update_ha_resource(fb.sid, failback=fb.failback)
        except PvetoolError as exc:
            logger.warning("HA resource %s not changed: %s", fb.sid, exc)
            notes.append(f"HA resource {fb.sid}: failback could not be changed: {exc}")
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
    """Step 1 for each of `nodes` (see the module docstring); one note per rule."""
    notes: list[str] = []
    for node in nodes:
        failbacks = {r.sid: r.failback for r in client.ha_resources()}
        changes, off, skipped = hold_changes(client.ha_rules(), failbacks, node)
        # The marker (with the originals) first: a run killed in between leaves nothing that
        # undrain could not put back.
        notes += skipped + _apply(client, changes) + _apply(client, (), off)
    return notes


def activate_nodes(client: PveClient, nodes: Iterable[str]) -> list[str]:
    """Step 2 for each of `nodes`, after their drain; one note per rule."""
    notes: list[str] = []
    for node in nodes:
        on_node = {g.ha_sid for g in client.cluster_resources("vm").guests if g.node == node}
        changes, waiting = activate_changes(client.ha_rules(), node, on_node)
        notes += waiting + _apply(client, changes)
    return notes


def release_node(client: PveClient, node: str, *, keep_failback: bool = False) -> list[str]:
    """End the hold on `node`: the rules first, then the resources' failback; one note per
    rule changed. `keep_failback`: only the rules (`release_changes`); `finish_release` ends
    it. Without it, a release left half done by an interrupted run is finished too."""
    changes, failbacks = release_changes(client.ha_rules(), node, keep_failback=keep_failback)
    notes = _apply(client, changes) + _apply(client, (), failbacks)
    return notes if keep_failback else notes + finish_release(client)


def finish_release(client: PveClient) -> list[str]:
    """The second step of a release (`finish_changes`): failback first, the marker last, so
    that a run killed in between leaves what the next release needs."""
    rules = client.ha_rules()
    if not any((d := _marker(r)) is not None and not d["held"] for r in rules):
        return []
    resources = client.cluster_resources()
    where = {g.ha_sid: g.node for g in resources.guests if g.ha_sid}
    online = {n.name for n in resources.nodes if n.online}
    changes, failbacks, notes = finish_changes(rules, where, online)
    return notes + _apply(client, (), failbacks) + _apply(client, changes)
