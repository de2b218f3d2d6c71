"""The HA rules of a cluster file: `ha_rules:`, checked into `HaRuleSpec`s.

PVE 9's rules (pve-ha-manager `src/PVE/HA/Rules.pm`, `Rules/NodeAffinity.pm`,
`Rules/ResourceAffinity.pm`): a node-affinity rule pins HA resources to nodes with priorities,
a resource-affinity rule keeps resources together (positive) or apart (negative). A resource is
in at most one node-affinity rule; a pair cannot be kept both together and apart.

Imports: the standard library, the leaf `pvetool.yamlcheck`, and the emulator's `specs` and
`clusterfile_checker`.
"""

from __future__ import annotations

import re

from pvetool.emulator.clusterfile_checker import CONFIG_ID_RE, ClusterChecker, Draft
from pvetool.emulator.specs import AFFINITIES, HA_RULE_TYPES, HaRuleSpec
from pvetool.yamlcheck import BROKEN, Loc, to_bool, to_enum, to_pattern, to_str

__all__ = ["check_ha_rules"]

_RULE_KEYS = ("rule", "type", "resources", "affinity", "nodes", "strict", "disable", "comment")
_RESOURCE_RE = re.compile(r"(vm|ct):(\d+)")


def check_ha_rules(ck: ClusterChecker, loc: Loc | None, draft: Draft) -> tuple[HaRuleSpec, ...]:
    """`ha_rules:`, PVE 9's HA rules (pve-ha-manager `PVE/HA/Rules.pm` and its plugins)."""
    if loc is None:
        return ()
    items = ck.sequence(loc, "ha_rules", "a list of rules")
    if items is None:
        return ()
    rules: list[tuple[int, HaRuleSpec]] = []  # (index in the file, rule)
    seen_ids: set[str] = set()
    node_affinity_of: dict[str, str] = {}
    for i, r_loc in enumerate(items):
        rule = _check_ha_rule(ck, r_loc, f"ha_rules[{i}]", draft, seen_ids, node_affinity_of)
        if rule is not None:
            rules.append((i, rule))
    _check_affinity_conflicts(ck, rules, items)
    return tuple(rule for _, rule in rules)


_to_rule_id = to_pattern(CONFIG_ID_RE, "a rule id like keep-apart", numbers=True)


def _check_ha_rule(
    ck: ClusterChecker,
    r_loc: Loc,
    path: str,
    draft: Draft,
    seen_ids: set[str],
    node_affinity_of: dict[str, str],
) -> HaRuleSpec | None:
    """One rule; `seen_ids` and `node_affinity_of` (resource -> rule) span all rules."""
    values = ck.fields(r_loc, path, _RULE_KEYS, required=("rule", "type", "resources"))
    if values is None:
        return None
    rule_id = ck.opt(values, "rule", path, _to_rule_id)
    if rule_id is not None:
        if rule_id in seen_ids:
            ck.at(values, "rule", path, f"rule id '{rule_id}' is used twice")
        seen_ids.add(rule_id)
    rtype = ck.opt(values, "type", path, to_enum(HA_RULE_TYPES))
    resources = _check_rule_resources(ck, values, path, draft)
    for key, wanted in (
        ("affinity", "resource-affinity"),
        ("nodes", "node-affinity"),
        ("strict", "node-affinity"),
    ):
        if key in values and rtype is not None and rtype != wanted:
            line = (r_loc.key_lines or {}).get(key, r_loc.line)
            ck.add(line, path, f"'{key}' applies only to {wanted} rules")
    affinity: str | None = None
    nodes: list[tuple[str, int]] = []
    if rtype == "resource-affinity":
        affinity = _check_resource_affinity(ck, values, r_loc, path, resources, draft)
    elif rtype == "node-affinity":
        nodes = _check_rule_nodes(ck, values, r_loc, path, draft)
        for res in resources:
            other = node_affinity_of.get(res)
            if other is not None:
                ck.at(
                    values,
                    "resources",
                    path,
                    f"{res} is already in node-affinity rule '{other}'",
                )
            node_affinity_of.setdefault(res, rule_id or path)
    return HaRuleSpec(
        rule=rule_id or "",
        type=rtype or "",
        resources=tuple(resources),
        affinity=affinity,
        nodes=tuple(nodes),
        strict=ck.get(values, "strict", path, to_bool, False),
        # pve-ha-manager src/PVE/HA/Rules.pm: every rule type has `disable` and `comment`.
        disable=ck.get(values, "disable", path, to_bool, False),
        comment=ck.get(values, "comment", path, to_str, ""),
    )


def _check_resource_affinity(
    ck: ClusterChecker,
    values: dict[str, Loc],
    r_loc: Loc,
    path: str,
    resources: list[str],
    draft: Draft,
) -> str | None:
    """The affinity of a resource-affinity rule, with what its resources allow."""
    affinity = ck.opt(values, "affinity", path, to_enum(AFFINITIES))
    if "affinity" not in values:
        ck.add(r_loc, path, "missing required key 'affinity' (positive or negative)")
    if "resources" in values and len(resources) < 2:
        ck.at(
            values,
            "resources",
            path,
            "a resource-affinity rule needs at least two resources",
        )
    if affinity == "negative" and draft.node_names and len(resources) > len(draft.node_names):
        ck.at(
            values,
            "resources",
            path,
            f"{len(resources)} resources cannot be kept apart on {len(draft.node_names)} nodes",
        )
    return affinity


def _check_rule_resources(
    ck: ClusterChecker, values: dict[str, Loc], path: str, draft: Draft
) -> list[str]:
    listed = ck.str_list(values, "resources", path)
    out: list[str] = []
    for i, (item, res) in enumerate(listed or ()):
        item_path = f"{path}.resources[{i}]"
        match = _RESOURCE_RE.fullmatch(res)
        if match is None:
            ck.add(item, item_path, f"expected a resource like vm:101 or ct:200, got {res!r}")
            continue
        kind, vmid = match.group(1), int(match.group(2))
        if res in out:
            ck.add(item, item_path, f"{res} is listed twice")
            continue
        out.append(res)
        if vmid not in draft.guest_locs:
            ck.add(item, item_path, f"there is no guest {vmid}")
            continue
        guest = draft.guests.get(vmid)
        if guest is None:
            continue
        wanted = "vm" if guest.type == "qemu" else "ct"
        if kind != wanted:
            what = "a VM" if guest.type == "qemu" else "a container"
            ck.add(item, item_path, f"guest {vmid} is {what}; write {wanted}:{vmid}")
        elif not guest.ha:
            ck.add(item, item_path, f"guest {vmid} is not HA-managed (set 'ha: true' on it)")
    return out


def _check_rule_nodes(
    ck: ClusterChecker, values: dict[str, Loc], r_loc: Loc, path: str, draft: Draft
) -> list[tuple[str, int]]:
    if "nodes" not in values:
        ck.add(r_loc, path, "missing required key 'nodes' (e.g. [\"pve1:2\", pve2])")
        return []
    listed = ck.str_list(values, "nodes", path)
    out: list[tuple[str, int]] = []
    for i, (item, text) in enumerate(listed or ()):
        item_path = f"{path}.nodes[{i}]"
        match = re.fullmatch(r"([^:\s]+)(?::(\d+))?", text.strip())
        if match is None:
            ck.add(item, item_path, f"expected NODE or NODE:PRIORITY like pve1:2, got {text!r}")
            continue
        node, priority = match.group(1), int(match.group(2) or 0)
        if not ck.reference(item, item_path, node, draft.known_nodes, "node"):
            continue
        if any(node == n for n, _ in out):
            ck.add(item, item_path, f"node {node} is listed twice")
            continue
        out.append((node, priority))
    if listed is not None and not listed and values["nodes"].value is not BROKEN:
        ck.at(values, "nodes", path, "a node-affinity rule needs at least one node")
    return out


def _check_affinity_conflicts(
    ck: ClusterChecker, rules: list[tuple[int, HaRuleSpec]], items: list[Loc]
) -> None:
    """A pair of resources cannot be both kept together and kept apart."""
    together: dict[frozenset[str], str] = {}
    for i, rule in rules:
        if rule.type == "resource-affinity" and rule.affinity == "positive":
            for a in rule.resources:
                for b in rule.resources:
                    if a < b:
                        together[frozenset((a, b))] = f"'{rule.rule}'" if rule.rule else f"#{i}"
    for i, rule in rules:
        if rule.type != "resource-affinity" or rule.affinity != "negative":
            continue
        for a in rule.resources:
            for b in rule.resources:
                other = together.get(frozenset((a, b))) if a < b else None
                if other is not None:
                    ck.add(
                        items[i],
                        f"ha_rules[{i}]",
                        f"{a} and {b} are kept apart here but together by rule {other}",
                    )
