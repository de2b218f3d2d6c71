"""Checks of the cluster as a whole and of one guest before any target is considered.

Imports: the standard library, `pvetool.model`, `pvetool.planner.placement` and the package's
`verdicts`.
"""

from __future__ import annotations

from pvetool.model import (
    ClusterSnapshot,
    Finding,
    Guest,
    Precondition,
)
from pvetool.planner.checks.verdicts import (
    CheckContext,
    Issue,
    ha_partners,
    vmid_label,
)


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


def guest_issues(
    guest: Guest,
    ctx: CheckContext,
    *,
    with_local_disks: bool,
    shutdown: bool = False,
) -> list[Issue]:
    """What keeps `guest` from migrating anywhere (target-independent), plus warnings."""
    source = ctx.snapshot.nodes.get(guest.node)
    if source is None or not source.online:
        return [
            Issue(
                "PVT-OFFLINE",
                "blocker",
                f"its node {guest.node} is offline, and PVE migrates only from an online node",
            )
        ]
    issues = _state_issues(guest)
    issues += _device_issues(guest, ctx, shutdown)
    if guest.kind == "qemu":
        issues += _local_disk_issues(guest, guest.running and not shutdown, with_local_disks)
    issues += _companion_issues(guest, ctx)
    pre = ctx.preconditions.get(guest.vmid)
    host_bound = any(d.blocks_migration for d in guest.local_devices)
    if pre is not None and pre.local_resources and not host_bound:
        issues.append(
            Issue(
                "PVT-LOCAL-DEVICE",
                "blocker",
                f"PVE reports local resources {', '.join(pre.local_resources)}",
            )
        )
    return issues


def _state_issues(guest: Guest) -> list[Issue]:
    """A configuration that could not be read, or a lock: PVE (or the checks) cannot proceed."""
    issues: list[Issue] = []
    if guest.config_problem:
        issues.append(
            Issue(
                "PVT-CONFIG-INVALID",
                "blocker",
                "PVE's answer for its configuration is not a configuration PVE writes "
                f"({guest.config_problem.rstrip('.')}), so its disks, devices and networks "
                "cannot be checked; pvetool does not move a guest it cannot check",
            )
        )
    elif not guest.config_known:
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
    return issues


def _device_issues(guest: Guest, ctx: CheckContext, shutdown: bool) -> list[Issue]:
    """Host-bound devices block any migration; mapped devices block a live one unless PVE
    says each can live-migrate, and otherwise must exist on the target."""
    issues: list[Issue] = []
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
    return issues


def _local_disk_issues(guest: Guest, running: bool, with_local_disks: bool) -> list[Issue]:
    """A VM that stays running through its move: local disks need with_local_disks, and a
    local CD-ROM image cannot come along."""
    issues: list[Issue] = []
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
    return issues


def _companion_issues(guest: Guest, ctx: CheckContext) -> list[Issue]:
    """What the move costs beyond the guest: a container's restart, HA partners that follow."""
    snap = ctx.snapshot
    issues: list[Issue] = []
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
        names = ", ".join(vmid_label(snap, v) for v in dependents)
        issues.append(
            Issue(
                "PVT-HA-DEPENDENT",
                "warning",
                f"HA positive resource affinity moves {names} along with it "
                "(PVE's dependent-ha-resources); the plan moves them to the same node",
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
