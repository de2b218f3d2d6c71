"""Checks of one guest on one target against rules: HA node and resource affinity, the plan's
affinity and anti-affinity groups and pins, and the warnings (CPU model, PVE version,
replication) that do not block.

Imports: the standard library, `pvetool.model`, `pvetool.planner.placement` and the package's
`verdicts`. `deps` lists collect planned moves that must have ended before this one starts.
"""

from __future__ import annotations

import functools
from collections.abc import Collection

from pvetool.model import (
    Guest,
    PveVersion,
)
from pvetool.planner.checks.verdicts import (
    CheckContext,
    Issue,
    sid_vmid,
    vmid_label,
)
from pvetool.planner.placement import (
    Placement,
)


def ha_issues(
    guest: Guest, target: str, ctx: CheckContext, placement: Placement, deps: list[str]
) -> list[Issue]:
    snap = ctx.snapshot
    issues: list[Issue] = []
    if not guest.ha_managed:
        return issues
    for rule in snap.ha_rules_for(guest.ha_sid):
        if rule.type == "node-affinity":
            allowed = [n.node for n in rule.nodes]
            if target in allowed:
                continue
            what = "HA group" if rule.from_group else "HA rule"
            if rule.strict:
                issues.append(
                    Issue(
                        "PVT-HA-NODE-AFFINITY",
                        "blocker",
                        f"strict {what} {rule.rule_id} allows only {', '.join(allowed)}",
                    )
                )
            else:
                issues.append(
                    Issue(
                        "PVT-HA-NODE-AFFINITY",
                        "warning",
                        f"{what} {rule.rule_id} prefers {', '.join(allowed)}; HA may move it "
                        "back when one of them is available",
                    )
                )
        elif rule.type == "resource-affinity" and rule.affinity == "negative":
            for sid in rule.resources:
                other = sid_vmid(sid)
                if other is None or other == guest.vmid:
                    continue
                text = _apart_conflict(other, target, placement, deps)
                if text:
                    issues.append(
                        Issue(
                            "PVT-HA-RESOURCE-AFFINITY",
                            "blocker",
                            f"{vmid_label(snap, other)} {text} and HA rule {rule.rule_id} keeps "
                            "them apart",
                        )
                    )
    return issues


def _apart_conflict(other: int, target: str, placement: Placement, deps: list[str]) -> str | None:
    """Why `other` conflicts with a guest arriving on `target`; a planned departure of
    `other` from `target` is no conflict but a dependency (it must have left first)."""
    now = placement.snapshot.guests.get(other)
    planned = placement.node_of.get(other)
    if planned == target:
        return "runs there" if now is not None and now.node == target else "is planned there"
    if now is not None and now.node == target:
        move = placement.move_of.get(other)
        if move is not None:
            deps.append(move)
    return None


def rule_issues(
    guest: Guest,
    target: str,
    ctx: CheckContext,
    placement: Placement,
    unit: Collection[int],
    deps: list[str],
) -> list[Issue]:
    snap = ctx.snapshot
    rules = ctx.rules
    issues: list[Issue] = []
    for group in rules.anti_affinity:
        if guest.vmid not in group.vmids:
            continue
        for other in group.vmids:
            if other == guest.vmid or other not in snap.guests:
                continue
            text = _apart_conflict(other, target, placement, deps)
            if text:
                issues.append(
                    Issue(
                        "PVT-ANTI-AFFINITY",
                        "blocker",
                        f"{vmid_label(snap, other)} {text} and anti-affinity group {group.name} "
                        "keeps them apart",
                        group.where,
                    )
                )
    for group in rules.affinity:
        if guest.vmid not in group.vmids:
            continue
        others = [v for v in group.vmids if v != guest.vmid and v not in unit and v in snap.guests]
        if not others:
            continue
        final = {placement.node_of.get(v, snap.guests[v].node) for v in others}
        if target in final:
            continue
        together_now = any(snap.guests[v].node == guest.node for v in others)
        names = ", ".join(vmid_label(snap, v) for v in others)
        if final <= ctx.sources:
            issues.append(
                Issue(
                    "PVT-AFFINITY",
                    "warning",
                    f"affinity group {group.name} is split: {names} stay on "
                    f"{', '.join(sorted(final))}",
                    group.where,
                )
            )
        elif together_now:
            issues.append(
                Issue(
                    "PVT-AFFINITY",
                    "blocker",
                    f"affinity group {group.name} keeps it with {names} "
                    f"(on {', '.join(sorted(final))})",
                    group.where,
                )
            )
    for pin in rules.pins:
        if guest.vmid in pin.vmids and target not in pin.nodes:
            issues.append(
                Issue(
                    "PVT-PIN",
                    "blocker",
                    f"a plan pin allows only {', '.join(pin.nodes)}",
                    pin.where,
                )
            )
    return issues


@functools.lru_cache(maxsize=256)
def _major_minor(version: PveVersion) -> tuple[int, int]:
    return version.major_minor


def soft_issues(guest: Guest, target: str, ctx: CheckContext, shutdown: bool) -> list[Issue]:
    snap = ctx.snapshot
    issues: list[Issue] = []
    source = snap.nodes.get(guest.node)
    node = snap.nodes[target]
    if guest.kind == "qemu" and (guest.cpu_type or "").lower() == "host" and guest.running:
        src_model = source.cpu_model if source else None
        if not src_model or not node.cpu_model:
            issues.append(
                Issue(
                    "PVT-CPU-HOST",
                    "warning",
                    "it uses cpu: host and the CPU models cannot be compared; the guest may "
                    "crash after a live migration between different CPUs",
                )
            )
        elif src_model != node.cpu_model and not shutdown:
            issues.append(
                Issue(
                    "PVT-CPU-HOST",
                    "warning",
                    f"it uses cpu: host and {target} has a different CPU ({node.cpu_model}, "
                    f"{guest.node}: {src_model}); the guest may crash after a live migration",
                )
            )
    if source is not None and source.version is not None and node.version is not None:
        if _major_minor(node.version) < _major_minor(source.version):
            issues.append(
                Issue(
                    "PVT-VERSION",
                    "warning",
                    f"{target} runs PVE {node.version}, older than {guest.node} "
                    f"({source.version}); migrating to an older version may fail",
                )
            )
    jobs = ctx.replication.get(guest.vmid, ())
    live = guest.kind == "qemu" and guest.running and not shutdown
    if jobs and target not in jobs and live and not guest.ha_managed:
        # qemu-server src/PVE/API2/Qemu.pm migrate_vm (9.2.6 l.5597-5604) refuses a live
        # migration of a replicated VM to a node no job replicates to, unless `force` (root
        # only; the HA agent sends it, so HA guests pass).
        issues.append(
            Issue(
                "PVT-REPLICATION",
                "blocker",
                f"its storage replication goes to {', '.join(jobs)}, not {target}: PVE refuses "
                f"(\"Cannot live-migrate replicated VM to node '{target}' - not a replication "
                'target"); add a replication job to it, migrate the guest offline, or remove '
                "the job",
            )
        )
    elif jobs and target not in jobs:
        issues.append(
            Issue(
                "PVT-REPLICATION",
                "warning",
                f"its storage replication goes to {', '.join(jobs)}, not {target}; its disks "
                "are copied in full and the replication job must be re-targeted",
            )
        )
    return issues
