"""The checks' vocabulary: an `Issue`, a target's `TargetVerdict`, the `CheckContext`, and the
finding an issue becomes.

Imports: the standard library, `pvetool.model` and `pvetool.planner.placement`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pvetool.model import (
    ClusterSnapshot,
    Finding,
    Guest,
    PlanRules,
    Precondition,
    Severity,
)
from pvetool.planner.placement import (
    Capacity,
    guest_label,
)


@dataclass(frozen=True)
class Issue:
    """One reason, before it is attached to a guest and target: `text` completes
    "pve3 rejected for 101: ..." and "101 (web1) cannot move to pve3: ..."."""

    id: str
    severity: Severity
    text: str
    where: str | None = None


def to_finding(issue: Issue, guest: Guest | None, target: str | None) -> Finding:
    """The administrator's sentence for an issue of `guest` (None: the plan) on `target`."""
    text = issue.text.rstrip(".")
    if guest is None:
        message = text[:1].upper() + text[1:]
    elif target is None:
        message = f"{guest_label(guest)}: {text}"
    elif issue.severity == "blocker":
        message = f"{guest_label(guest)} cannot move to {target}: {text}"
    else:
        message = f"{guest_label(guest)} to {target}: {text}"
    return Finding(
        id=issue.id,
        severity=issue.severity,
        message=message + ".",
        vmid=guest.vmid if guest is not None else None,
        target=target,
        where=issue.where,
    )


@dataclass(frozen=True)
class CheckContext:
    """What the checks know besides the snapshot and the working placement."""

    snapshot: ClusterSnapshot
    rules: PlanRules
    sources: frozenset[str] = frozenset()  # nodes this stage empties
    replication: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    preconditions: Mapping[int, Precondition] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetVerdict:
    """Everything the checks say about one guest on one candidate target."""

    target: str
    issues: tuple[Issue, ...]
    capacity: Capacity | None = None
    deps: tuple[str, ...] = ()  # planned moves that must have ended first

    @property
    def blocked(self) -> bool:
        return any(i.severity == "blocker" for i in self.issues)

    @property
    def blockers(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "blocker")

    @property
    def warnings(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "warning")


def ha_partners(snapshot: ClusterSnapshot, guest: Guest, affinity: str) -> tuple[int, ...]:
    """VMIDs in an enabled HA resource-affinity rule of `affinity` with `guest`."""
    if not guest.ha_managed:
        return ()
    found: list[int] = []
    for rule in snapshot.ha_rules_for(guest.ha_sid):
        if rule.type != "resource-affinity" or rule.affinity != affinity:
            continue
        for sid in rule.resources:
            vmid = sid_vmid(sid)
            if vmid is not None and vmid != guest.vmid and vmid not in found:
                found.append(vmid)
    return tuple(found)


def sid_vmid(sid: str) -> int | None:
    ident = sid.partition(":")[2] or sid
    return int(ident) if ident.isdigit() else None


def vmid_label(snapshot: ClusterSnapshot, vmid: int) -> str:
    guest = snapshot.guests.get(vmid)
    return guest_label(guest) if guest is not None else str(vmid)
