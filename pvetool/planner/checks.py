"""Pre-flight checks: can this guest migrate, and to which node? Every answer has a reason.

Pure rules over a `ClusterSnapshot`, the plan's resolved rules (`PlanRules`) and the planner's
working `Placement` (so memory, disk space and affinity see every move planned before). Each
problem is a `Finding` with a stable id, a severity and a sentence for the administrator; the
strategies turn the blockers of a candidate target into "pve3 rejected for 101: ..." lines.

Finding ids (also in docs/findings.md):

=========================  ========  ====================================================
id                         severity  meaning
=========================  ========  ====================================================
PVT-NO-QUORUM              blocker   the cluster is not quorate: PVE refuses every migration
PVT-UNKNOWN-NODE           blocker   the target is not a node of the cluster
PVT-UNKNOWN-GUEST          blocker   the plan names a guest the cluster does not have
                                     (warning for a per-guest setting of a drain)
PVT-OFFLINE                blocker   the target (or the guest's own node) is offline
PVT-HA-MAINTENANCE         blocker   the target is in HA maintenance mode
PVT-CONFIG-UNKNOWN         blocker   the guest's configuration could not be read
PVT-LOCKED                 blocker   the guest is locked (backup, snapshot, migrate, ...)
PVT-TEMPLATE               warning   a template stays where it is (rules.exclude.templates)
PVT-EXCLUDED               warning   an excluded or skipped guest stays on a node being
                                     emptied (blocker when a move step names it)
PVT-LOCAL-DEVICE           blocker   PCI/USB passthrough of a host device, a serial or
                                     parallel port, a CT device or bind mount
PVT-MAPPED-DEVICE          blocker   a running VM with a mapped device that cannot live
                                     migrate (warning for a stopped VM: the mapping must
                                     exist on the target)
PVT-LOCAL-DISK             blocker   a running VM with local disks and no with_local_disks,
                                     or a local CD-ROM image
PVT-STORAGE                blocker   a storage the guest needs is not available on the
                                     target (storage.cfg nodes/disabled, not active there,
                                     wrong content type, or PVE's not_allowed_nodes)
PVT-STORAGE-SPACE          blocker   the target storage has no room for the copied disks
PVT-BRIDGE                 blocker   a bridge / VLAN-aware bridge / SDN vnet of the guest's
                                     NICs does not exist on the target
PVT-MEMORY                 blocker   not enough memory on the target after the planned moves
                                     and the headroom
PVT-CPU                    blocker   vCPUs above the target's CPUs x overcommit - headroom
PVT-ARCH                   blocker   source and target have different CPU architectures
PVT-CPU-HOST               warning   ``cpu: host`` and different (or unknown) CPU models
PVT-VERSION                warning   the target runs an older PVE version than the source
PVT-CT-RESTART             warning   a running container: restart migration = downtime
PVT-REPLICATION            warning   a replication job points at another node
PVT-HA-NODE-AFFINITY       blocker   a strict HA node-affinity rule excludes the target
                                     (warning for a non-strict rule: HA may move it back)
PVT-HA-RESOURCE-AFFINITY   blocker   a negative HA resource-affinity partner is (or will be)
                                     on the target
PVT-HA-DEPENDENT           warning   positive HA resource affinity: other guests move along
PVT-ANTI-AFFINITY          blocker   a plan anti-affinity group member is (or will be) there
PVT-AFFINITY               blocker   the move splits a plan affinity group (warning when the
                                     rest of the group cannot come along)
PVT-PIN                    blocker   a plan pin does not allow the target
PVT-NO-TARGET              blocker   a guest that must move has no acceptable target; the
                                     message lists every rejected target with its reason
PVT-CONVERGENCE            warning   predicted not to converge / needs downtime escalation
PVT-NOOP                   info      a requested move is already done
PVT-BALANCED               info      a rebalance found nothing worth moving
=========================  ========  ====================================================

Imports: the standard library, `pvetool.model`, `pvetool.planner.placement`.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from pvetool.model import (
    ClusterSnapshot,
    Finding,
    Guest,
    PlanRules,
    Precondition,
    PveVersion,
    Severity,
)
from pvetool.planner.placement import (
    Capacity,
    Placement,
    disk_plan,
    fmt_bytes,
    guest_label,
)

__all__ = [
    "FINDING_IDS",
    "CheckContext",
    "Issue",
    "TargetVerdict",
    "cluster_findings",
    "guest_issues",
    "ha_partners",
    "target_verdict",
    "to_finding",
]

FINDING_IDS: Mapping[str, str] = {
    "PVT-NO-QUORUM": "the cluster is not quorate",
    "PVT-UNKNOWN-NODE": "the target is not a node of the cluster",
    "PVT-UNKNOWN-GUEST": "the plan names a guest the cluster does not have",
    "PVT-OFFLINE": "the target or the guest's node is offline",
    "PVT-HA-MAINTENANCE": "the target is in HA maintenance mode",
    "PVT-CONFIG-UNKNOWN": "the guest's configuration could not be read",
    "PVT-LOCKED": "the guest is locked",
    "PVT-TEMPLATE": "a template stays where it is",
    "PVT-EXCLUDED": "an excluded or skipped guest stays where it is",
    "PVT-LOCAL-DEVICE": "a host-bound device blocks migration",
    "PVT-MAPPED-DEVICE": "a mapped device blocks live migration",
    "PVT-LOCAL-DISK": "local disks need with_local_disks",
    "PVT-STORAGE": "a storage is not available on the target",
    "PVT-STORAGE-SPACE": "no room on the target storage",
    "PVT-BRIDGE": "a network bridge is missing on the target",
    "PVT-MEMORY": "not enough memory on the target",
    "PVT-CPU": "too many vCPUs for the target",
    "PVT-ARCH": "different CPU architecture",
    "PVT-CPU-HOST": "cpu: host between different CPU models",
    "PVT-VERSION": "the target runs an older PVE version",
    "PVT-CT-RESTART": "a running container restarts (downtime)",
    "PVT-REPLICATION": "a replication job points at another node",
    "PVT-HA-NODE-AFFINITY": "an HA node-affinity rule excludes the target",
    "PVT-HA-RESOURCE-AFFINITY": "a negative HA resource-affinity partner is on the target",
    "PVT-HA-DEPENDENT": "positive HA resource affinity moves other guests along",
    "PVT-ANTI-AFFINITY": "a plan anti-affinity rule would be violated",
    "PVT-AFFINITY": "a plan affinity group would be split",
    "PVT-PIN": "a plan pin does not allow the target",
    "PVT-NO-TARGET": "no acceptable target",
    "PVT-CONVERGENCE": "the migration is predicted not to converge quickly",
    "PVT-NOOP": "nothing to do",
    "PVT-BALANCED": "the cluster is already balanced",
}

_CONTENT_FOR = {"qemu": "images", "lxc": "rootdir"}


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


# --------------------------------------------------------------------------------------------
# Cluster and guest


def cluster_findings(snapshot: ClusterSnapshot) -> list[Finding]:
    """Problems of the whole cluster that block every migration."""
    if snapshot.quorate:
        return []
    online = len(snapshot.online_nodes)
    return [
        Finding(
            id="PVT-NO-QUORUM",
            severity="blocker",
            message=(
                f"The cluster is not quorate ({online} of {len(snapshot.nodes)} nodes online): "
                "PVE refuses every migration until quorum is back."
            ),
        )
    ]


def ha_partners(snapshot: ClusterSnapshot, guest: Guest, affinity: str) -> tuple[int, ...]:
    """VMIDs in an enabled HA resource-affinity rule of `affinity` with `guest`."""
    if not guest.ha_managed:
        return ()
    found: list[int] = []
    for rule in snapshot.ha_rules_for(guest.ha_sid):
        if rule.type != "resource-affinity" or rule.affinity != affinity:
            continue
        for sid in rule.resources:
            vmid = _sid_vmid(sid)
            if vmid is not None and vmid != guest.vmid and vmid not in found:
                found.append(vmid)
    return tuple(found)


def _sid_vmid(sid: str) -> int | None:
    ident = sid.partition(":")[2] or sid
    return int(ident) if ident.isdigit() else None


def guest_issues(
    guest: Guest,
    ctx: CheckContext,
    *,
    with_local_disks: bool,
    shutdown: bool = False,
) -> list[Issue]:
    """What keeps `guest` from migrating anywhere (target-independent), plus warnings."""
    snap = ctx.snapshot
    issues: list[Issue] = []
    source = snap.nodes.get(guest.node)
    if source is None or not source.online:
        issues.append(
            Issue(
                "PVT-OFFLINE",
                "blocker",
                f"its node {guest.node} is offline, and PVE migrates only from an online node",
            )
        )
        return issues
    if not guest.config_known:
        issues.append(
            Issue(
                "PVT-CONFIG-UNKNOWN",
                "blocker",
                "its configuration could not be read, so its disks, devices and networks "
                "cannot be checked",
            )
        )
    if guest.lock:
        issues.append(
            Issue(
                "PVT-LOCKED",
                "blocker",
                f"it is locked ({guest.lock}); PVE refuses to migrate it until the "
                f"{guest.lock} is finished or the lock removed (qm unlock {guest.vmid})",
            )
        )
    running = guest.running and not shutdown
    local = [d for d in guest.local_devices if d.blocks_migration]
    if local:
        keys = ", ".join(f"{d.key} ({_device_word(d.kind)} {d.value})" for d in local)
        issues.append(
            Issue(
                "PVT-LOCAL-DEVICE",
                "blocker",
                f"it uses host-bound devices: {keys}; PVE cannot migrate it",
            )
        )
    mapped = [d for d in guest.local_devices if not d.blocks_migration]
    if mapped:
        keys = ", ".join(f"{d.key} (mapping {d.mapping})" for d in mapped)
        live_ok = _mapped_live_ok(ctx.preconditions.get(guest.vmid), [d.key for d in mapped])
        if guest.running and guest.kind == "qemu" and not live_ok and not shutdown:
            issues.append(
                Issue(
                    "PVT-MAPPED-DEVICE",
                    "blocker",
                    f"it is running with mapped devices {keys} that cannot be live-migrated; "
                    "shut it down first (per-guest 'offline: true')",
                )
            )
        else:
            issues.append(
                Issue(
                    "PVT-MAPPED-DEVICE",
                    "warning",
                    f"mapped devices {keys} must exist on the target node",
                )
            )
    if guest.kind == "qemu":
        local_disks = [d for d in guest.local_disks if d.media == "disk" and not d.unused]
        if running and local_disks and not with_local_disks:
            names = ", ".join(f"{d.key} on {d.storage or d.volid}" for d in local_disks)
            issues.append(
                Issue(
                    "PVT-LOCAL-DISK",
                    "blocker",
                    f"it runs with local disks ({names}); live migration needs "
                    "with_local_disks (the disks are copied over the network) or a shutdown",
                )
            )
        cdroms = [d for d in guest.disks if d.media == "cdrom" and d.is_local and d.volid != "none"]
        if running and cdroms:
            names = ", ".join(f"{d.key} ({d.volid})" for d in cdroms)
            issues.append(
                Issue(
                    "PVT-LOCAL-DISK",
                    "blocker",
                    f"it has a local CD-ROM image inserted ({names}); eject it first",
                )
            )
    if guest.kind == "lxc" and guest.running:
        issues.append(
            Issue(
                "PVT-CT-RESTART",
                "warning",
                "a running container migrates by restart: it is shut down, moved and started "
                "again, and is unreachable meanwhile",
            )
        )
    dependents = ha_partners(snap, guest, "positive")
    if dependents:
        names = ", ".join(_label(snap, v) for v in dependents)
        issues.append(
            Issue(
                "PVT-HA-DEPENDENT",
                "warning",
                f"HA positive resource affinity moves {names} along with it "
                "(PVE's dependent-ha-resources); the plan moves them to the same node",
            )
        )
    pre = ctx.preconditions.get(guest.vmid)
    if pre is not None and pre.local_resources and not local:
        issues.append(
            Issue(
                "PVT-LOCAL-DEVICE",
                "blocker",
                f"PVE reports local resources {', '.join(pre.local_resources)}",
            )
        )
    return issues


def _device_word(kind: str) -> str:
    return {
        "pci": "PCI passthrough",
        "usb": "USB device",
        "serial": "serial port",
        "parallel": "parallel port",
        "dev": "device",
        "bind-mount": "bind mount",
        "virtiofs": "virtiofs",
    }.get(kind, kind)


def _mapped_live_ok(pre: Precondition | None, keys: list[str]) -> bool:
    if pre is None:
        return False
    info = {m.key: m.live_migration for m in pre.mapped_resource_info}
    return all(info.get(k) is True for k in keys)


def _label(snapshot: ClusterSnapshot, vmid: int) -> str:
    guest = snapshot.guests.get(vmid)
    return guest_label(guest) if guest is not None else str(vmid)


# --------------------------------------------------------------------------------------------
# One guest on one target


def target_verdict(
    guest: Guest,
    target: str,
    ctx: CheckContext,
    placement: Placement,
    *,
    with_local_disks: bool,
    target_storage: Iterable[tuple[str, str]] = (),
    unit: Collection[int] = (),
    shutdown: bool = False,
) -> TargetVerdict:
    """Every reason `guest` can or cannot go to `target` after the moves planned so far.

    `unit` are the guests that move together with this one (plan affinity, HA positive
    affinity): they are not "the others" of its own groups.
    """
    snap = ctx.snapshot
    node = snap.nodes.get(target)
    if node is None:
        return TargetVerdict(
            target,
            (Issue("PVT-UNKNOWN-NODE", "blocker", f"{target} is not a node of this cluster"),),
        )
    if not node.online:
        return TargetVerdict(target, (Issue("PVT-OFFLINE", "blocker", f"{target} is offline"),))
    issues: list[Issue] = []
    deps: list[str] = []
    if snap.in_ha_maintenance(target):
        issues.append(
            Issue(
                "PVT-HA-MAINTENANCE",
                "blocker",
                f"{target} is in HA maintenance mode and accepts no guests",
            )
        )
    source = snap.nodes.get(guest.node)
    if (
        source is not None
        and source.host_arch
        and node.host_arch
        and source.host_arch != node.host_arch
    ):
        issues.append(
            Issue(
                "PVT-ARCH",
                "blocker",
                f"{target} is {node.host_arch}, {guest.node} is {source.host_arch}",
            )
        )
    mapping = tuple(target_storage)
    copies_disks = _copies_disks(guest, with_local_disks, shutdown)
    issues += _storage_issues(guest, target, ctx, placement, mapping, copies_disks)
    missing = sorted(guest.bridges - snap.bridges_on(target)) if target in snap.bridges else []
    if missing:
        nics = ", ".join(f"{n.key} on {n.bridge}" for n in guest.nets if n.bridge in set(missing))
        issues.append(
            Issue(
                "PVT-BRIDGE",
                "blocker",
                f"bridge{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"({nics}) {'do' if len(missing) > 1 else 'does'} not exist there; the guest "
                "would lose its network",
            )
        )
    capacity = placement.capacity(guest, target)
    if not capacity.fits_memory:
        headroom = placement.rules.memory_headroom_for(node.memory_total_bytes)
        host = snap.host_overhead_bytes(target)
        issues.append(
            Issue(
                "PVT-MEMORY",
                "blocker",
                f"needs {fmt_bytes(capacity.need_bytes)}, {fmt_bytes(max(0, capacity.free_bytes))}"
                f" free after planned moves ({fmt_bytes(node.memory_total_bytes)} minus "
                f"{fmt_bytes(headroom)} headroom, {fmt_bytes(host)} host use and "
                f"{fmt_bytes(placement.committed_memory(target) - host)} of running guests)",
            )
        )
    if not capacity.fits_cpu:
        issues.append(
            Issue(
                "PVT-CPU",
                "blocker",
                f"needs {capacity.need_vcpus} vCPUs, {max(0.0, capacity.free_vcpus):g} left of "
                f"{placement.cpu_limit(target):g} ({node.cpus} CPUs x "
                f"{placement.rules.cpu_overcommit:g} overcommit minus headroom)",
            )
        )
    if capacity.fits:
        deps += capacity.deps
    issues += _ha_issues(guest, target, ctx, placement, deps)
    issues += _rule_issues(guest, target, ctx, placement, unit, deps)
    issues += _soft_issues(guest, target, ctx, shutdown)
    pre = ctx.preconditions.get(guest.vmid)
    if pre is not None and target in pre.not_allowed:
        refusal = pre.not_allowed[target]
        known = {i.id for i in issues}
        if refusal.unavailable_storages and "PVT-STORAGE" not in known:
            issues.append(
                Issue(
                    "PVT-STORAGE",
                    "blocker",
                    "PVE reports unavailable storages " + ", ".join(refusal.unavailable_storages),
                )
            )
        if refusal.unavailable_resources:
            issues.append(
                Issue(
                    "PVT-MAPPED-DEVICE",
                    "blocker",
                    "PVE reports mapped resources missing there: "
                    + ", ".join(refusal.unavailable_resources),
                )
            )
        if refusal.blocking_ha_resources and not known & {
            "PVT-HA-NODE-AFFINITY",
            "PVT-HA-RESOURCE-AFFINITY",
        }:
            causes = ", ".join(f"{b.sid} ({b.cause})" for b in refusal.blocking_ha_resources)
            issues.append(
                Issue("PVT-HA-RESOURCE-AFFINITY", "blocker", f"PVE's HA stack blocks it: {causes}")
            )
    return TargetVerdict(target, tuple(issues), capacity, tuple(dict.fromkeys(deps)))


def _copies_disks(guest: Guest, with_local_disks: bool, shutdown: bool) -> bool:
    """Whether a migration of this guest copies its local disks."""
    if guest.kind == "lxc" or not guest.running or shutdown:
        return True  # offline and restart migrations always copy local volumes
    return with_local_disks


def _storage_issues(
    guest: Guest,
    target: str,
    ctx: CheckContext,
    placement: Placement,
    mapping: tuple[tuple[str, str], ...],
    copies_disks: bool,
) -> list[Issue]:
    snap = ctx.snapshot
    issues: list[Issue] = []
    unavailable: dict[str, str] = {}
    pairs = dict(mapping)
    for disk in guest.disks:
        if disk.storage is None or disk.media == "cdrom":
            continue
        storage = disk.storage
        if disk.is_local:
            storage = pairs.get(disk.storage) or pairs.get("*") or disk.storage
        if storage in unavailable:
            continue
        why = _storage_unavailable(
            snap, storage, target, guest.kind, mapped=storage != disk.storage
        )
        if why:
            unavailable[storage] = why
    for storage, why in unavailable.items():
        issues.append(Issue("PVT-STORAGE", "blocker", f"storage {storage} {why}"))
    if copies_disks and not unavailable:
        needs: dict[str, int] = {}
        for _, dst, size in disk_plan(guest, mapping):
            needs[dst] = needs.get(dst, 0) + size
        for storage, size in needs.items():
            free, _ = placement.storage_free(storage, target)
            if free is not None and size > free:
                issues.append(
                    Issue(
                        "PVT-STORAGE-SPACE",
                        "blocker",
                        f"its local disks need {fmt_bytes(size)} on {storage}, "
                        f"{fmt_bytes(max(0, free))} free there after planned copies",
                    )
                )
    return issues


def _storage_unavailable(
    snap: ClusterSnapshot, storage: str, target: str, kind: str, mapped: bool
) -> str | None:
    entry = snap.storages.get(storage)
    if entry is None:
        return "does not exist"
    if not entry.enabled:
        return "is disabled"
    if entry.restricted_to is not None and target not in entry.restricted_to:
        allowed = ", ".join(sorted(entry.restricted_to))
        return f"is limited to {allowed} in storage.cfg"
    if not entry.available_on(target):
        return f"is not active on {target}"
    content = _CONTENT_FOR.get(kind)
    if mapped and entry.content and content and content not in entry.content:
        return f"does not hold {content} (content: {', '.join(sorted(entry.content))})"
    return None


def _ha_issues(
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
                other = _sid_vmid(sid)
                if other is None or other == guest.vmid:
                    continue
                text = _apart_conflict(other, target, placement, deps)
                if text:
                    issues.append(
                        Issue(
                            "PVT-HA-RESOURCE-AFFINITY",
                            "blocker",
                            f"{_label(snap, other)} {text} and HA rule {rule.rule_id} keeps "
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


def _rule_issues(
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
                        f"{_label(snap, other)} {text} and anti-affinity group {group.name} "
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
        names = ", ".join(_label(snap, v) for v in others)
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


def _soft_issues(guest: Guest, target: str, ctx: CheckContext, shutdown: bool) -> list[Issue]:
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
    if jobs and target not in jobs:
        issues.append(
            Issue(
                "PVT-REPLICATION",
                "warning",
                f"its storage replication goes to {', '.join(jobs)}, not {target}; its disks "
                "are copied in full and the replication job must be re-targeted",
            )
        )
    return issues
