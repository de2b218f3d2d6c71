"""The HA stack's answers (resources, status, rules, PVE 8 groups, migrate requests) -> model.

Imports: the standard library, `pvetool.errors`, `pvetool.model` and the package's `_coerce`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, cast

from pvetool.api.convert._coerce import (
    _bool,
    _int,
    _list,
    _objects,
    _opt_int,
    _opt_str,
    _str,
    _strings,
)
from pvetool.model import (
    BlockingHaResource,
    HaMigrateRequest,
    HaResource,
    HaRule,
    HaRuleNode,
    HaServiceStatus,
    HaStatus,
)


def ha_resources(raw: Any) -> tuple[HaResource, ...]:
    """``GET /cluster/ha/resources`` -> `HaResource` per configured resource."""
    result = []
    for entry in _objects(raw, "/cluster/ha/resources"):
        failback = entry.get("failback")
        result.append(
            HaResource(
                sid=_str(entry.get("sid")),
                requested_state=_str(entry.get("state"), "started"),
                group=_opt_str(entry.get("group")),
                max_restart=_opt_int(entry.get("max_restart")),
                max_relocate=_opt_int(entry.get("max_relocate")),
                failback=None if failback is None else _bool(failback),
                comment=_opt_str(entry.get("comment")),
            )
        )
    return tuple(sorted(result, key=lambda r: r.sid))


def ha_status(raw: Any) -> HaStatus:
    """``GET /cluster/ha/status/current`` -> quorum, LRM and service states."""
    quorate: bool | None = None
    lrm: dict[str, str] = {}
    services: dict[str, HaServiceStatus] = {}
    for entry in _objects(raw, "/cluster/ha/status/current"):
        kind = entry.get("type")
        node = _str(entry.get("node"))
        if kind == "quorum":
            quorate = _bool(entry.get("quorate"))
        elif kind == "lrm" and node:
            lrm[node] = _str(entry.get("status")).strip()
        elif kind == "service":
            sid = _str(entry.get("sid"))
            if sid:
                services[sid] = HaServiceStatus(
                    sid=sid,
                    node=node,
                    state=_opt_str(entry.get("state")),
                    crm_state=_opt_str(entry.get("crm_state")),
                    request_state=_opt_str(entry.get("request_state")),
                )
    return HaStatus(quorate=quorate, lrm=lrm, services=services)


def _rule_nodes(value: Any) -> tuple[HaRuleNode, ...]:
    """``node1:2,node2`` or ``{"node1": {"priority": 2}}`` -> nodes with priority."""
    nodes: list[HaRuleNode] = []
    if isinstance(value, dict):
        for name, info in value.items():
            prio = info.get("priority") if isinstance(info, dict) else info
            nodes.append(HaRuleNode(node=str(name), priority=_int(prio)))
    else:
        for item in _strings(value):
            name, _, prio = item.partition(":")
            nodes.append(HaRuleNode(node=name, priority=_int(prio)))
    return tuple(nodes)


def ha_rules(raw: Any) -> tuple[HaRule, ...]:
    """``GET /cluster/ha/rules`` (PVE 9) -> `HaRule` per rule."""
    result = []
    for entry in _objects(raw, "/cluster/ha/rules"):
        rtype = _str(entry.get("type"))
        if rtype not in ("node-affinity", "resource-affinity"):
            continue  # a rule type newer than this code: not ours to interpret
        affinity = _opt_str(entry.get("affinity"))
        result.append(
            HaRule(
                rule_id=_str(entry.get("rule")),
                type=cast(Literal["node-affinity", "resource-affinity"], rtype),
                resources=_strings(entry.get("resources")),
                nodes=_rule_nodes(entry.get("nodes")),
                strict=_bool(entry.get("strict")),
                affinity=cast(Literal["positive", "negative"], affinity)
                if affinity in ("positive", "negative")
                else None,
                disabled=_bool(entry.get("disable")),
                comment=_opt_str(entry.get("comment")),
            )
        )
    return tuple(result)


def ha_groups_as_rules(raw: Any, resources: Iterable[HaResource]) -> tuple[HaRule, ...]:
    """``GET /cluster/ha/groups`` (PVE 8) -> equivalent node-affinity rules.

    PVE 9 migrated groups the same way: ``restricted`` becomes ``strict`` and the members are
    the resources whose ``group`` names the group.
    """
    members: dict[str, list[str]] = {}
    for res in resources:
        if res.group:
            members.setdefault(res.group, []).append(res.sid)
    result = []
    for entry in _objects(raw, "/cluster/ha/groups"):
        group = _str(entry.get("group"))
        result.append(
            HaRule(
                rule_id=f"group:{group}",
                type="node-affinity",
                resources=tuple(sorted(members.get(group, []))),
                nodes=_rule_nodes(entry.get("nodes")),
                strict=_bool(entry.get("restricted")),
                comment=_opt_str(entry.get("comment")),
                from_group=True,
            )
        )
    return tuple(result)


def blocking_resources(value: Any) -> tuple[BlockingHaResource, ...]:
    return tuple(
        BlockingHaResource(sid=_str(item.get("sid")), cause=_str(item.get("cause")))
        for item in _objects(value, "blocking HA resources")
    )


def ha_migrate_request(raw: Any, sid: str, node: str) -> HaMigrateRequest:
    """``POST /cluster/ha/resources/{sid}/migrate``: an object on PVE 9, null before."""
    if not isinstance(raw, dict):
        return HaMigrateRequest(sid=sid, requested_node=node)
    comigrated = raw.get("comigrated-resources")
    return HaMigrateRequest(
        sid=_str(raw.get("sid"), sid),
        requested_node=_str(raw.get("requested-node"), node),
        blocking=blocking_resources(raw.get("blocking-resources")),
        comigrated=tuple(
            _str(c.get("sid")) if isinstance(c, dict) else _str(c) for c in _list(comigrated, "")
        ),
    )
