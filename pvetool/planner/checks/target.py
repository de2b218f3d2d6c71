"""`target_verdict`: every reason one guest can or cannot go to one target after the moves
planned so far (node, storage, bridges, capacity, rules, PVE's own precondition).

Imports: the standard library, `pvetool.model`, `pvetool.planner.placement` and the package's
`verdicts` and `rules`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from pvetool.model import (
    ClusterSnapshot,
    Guest,
)
from pvetool.planner.checks.drained import drained_issues
from pvetool.planner.checks.rules import ha_issues, rule_issues, soft_issues
from pvetool.planner.checks.verdicts import (
    CheckContext,
    Issue,
    TargetVerdict,
)
from pvetool.planner.placement import (
    Capacity,
    Placement,
    disk_plan,
    fmt_bytes,
)

_CONTENT_FOR = {"qemu": "images", "lxc": "rootdir"}


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
    deps: list[str] = []
    issues = _node_issues(guest, target, snap)
    mapping = tuple(target_storage)
    copies_disks = _copies_disks(guest, with_local_disks, shutdown)
    issues += _storage_issues(guest, target, ctx, placement, mapping, copies_disks)
    issues += _bridge_issues(guest, target, snap)
    capacity = placement.capacity(guest, target)
    issues += _capacity_issues(capacity, target, snap, placement)
    if capacity.fits:
        deps += capacity.deps
    issues += ha_issues(guest, target, ctx, placement, deps)
    issues += rule_issues(guest, target, ctx, placement, unit, deps)
    issues += soft_issues(guest, target, ctx, shutdown)
    issues += _refusal_issues(guest, target, ctx, {i.id for i in issues})
    return TargetVerdict(target, tuple(issues), capacity, tuple(dict.fromkeys(deps)))


def _node_issues(guest: Guest, target: str, snap: ClusterSnapshot) -> list[Issue]:
    """The target node itself refuses: HA maintenance, or another CPU architecture."""
    issues: list[Issue] = drained_issues(target, snap)
    node = snap.nodes[target]
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
    return issues


def _bridge_issues(guest: Guest, target: str, snap: ClusterSnapshot) -> list[Issue]:
    """A bridge of the guest's NICs missing on the target, or the target's bridges unknown (its
    network could not be read): a check that cannot be made does not pass."""
    if guest.bridges and target not in snap.bridges:
        return [
            Issue(
                "PVT-BRIDGE",
                "blocker",
                f"the network of {target} could not be read, so whether "
                f"{', '.join(sorted(guest.bridges))} exist there cannot be checked",
            )
        ]
    missing = sorted(guest.bridges - snap.bridges_on(target))
    if not missing:
        return []
    nics = ", ".join(f"{n.key} on {n.bridge}" for n in guest.nets if n.bridge in set(missing))
    return [
        Issue(
            "PVT-BRIDGE",
            "blocker",
            f"bridge{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"({nics}) {'do' if len(missing) > 1 else 'does'} not exist there; the guest "
            "would lose its network",
        )
    ]


def _capacity_issues(
    capacity: Capacity, target: str, snap: ClusterSnapshot, placement: Placement
) -> list[Issue]:
    """Memory and vCPUs on the target after the planned moves, with the arithmetic shown."""
    node = snap.nodes[target]
    issues: list[Issue] = []
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
    return issues


def _refusal_issues(
    guest: Guest, target: str, ctx: CheckContext, known: Collection[str]
) -> list[Issue]:
    """What PVE's migrate precondition says against the target that the checks above did not
    already say (`known`: the ids found so far)."""
    pre = ctx.preconditions.get(guest.vmid)
    if pre is None or target not in pre.not_allowed:
        return []
    refusal = pre.not_allowed[target]
    issues: list[Issue] = []
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
    ha_known = {"PVT-HA-NODE-AFFINITY", "PVT-HA-RESOURCE-AFFINITY"} & set(known)
    if refusal.blocking_ha_resources and not ha_known:
        causes = ", ".join(f"{b.sid} ({b.cause})" for b in refusal.blocking_ha_resources)
        issues.append(
            Issue("PVT-HA-RESOURCE-AFFINITY", "blocker", f"PVE's HA stack blocks it: {causes}")
        )
    return issues


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
        issues.append(
            Issue(
                "PVT-STORAGE",
                "blocker",
                f"storage {storage} {why}; PVE refuses: {_pve_storage_words(storage, target, why)}",
            )
        )
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


def _pve_storage_words(storage: str, target: str, why: str) -> str:
    """What PVE answers to such a migration: for a VM an HTTP 500 before any task starts
    (qemu-server ``src/PVE/API2/Qemu.pm`` ``migrate_vm`` l.5631-5636 ->
    ``QemuServer.pm`` ``check_storage_availability`` l.2234-2258 -> pve-storage
    ``src/PVE/Storage.pm`` ``storage_check_node``/``storage_check_enabled`` l.264-291), for a
    container the same words in the task's prepare step (pve-container ``LXC/Migrate.pm``
    l.101-108)."""
    if why == "is disabled":
        return f"storage '{storage}' is disabled"
    if why == "does not exist":
        return f"storage '{storage}' does not exist"
    if why.startswith("does not hold"):
        return f"content type not available on storage '{storage}'"
    return f"storage '{storage}' is not available on node '{target}'"


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
