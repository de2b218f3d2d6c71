"""The snapshot assembly: the answers `fetch_snapshot` collected -> one `ClusterSnapshot`.

Imports: the standard library, `pvetool.model` and the package's `cluster`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pvetool.api.convert.cluster import replication_targets
from pvetool.model import (
    ClusterResources,
    ClusterSnapshot,
    ClusterStatus,
    DatacenterOptions,
    Disk,
    Guest,
    GuestConfig,
    HaResource,
    HaRule,
    HaStatus,
    Node,
    PveVersion,
    ReplicationJob,
    Storage,
    StorageConfig,
    StorageOnNode,
    StorageStatus,
)


def _storages(
    statuses: Sequence[StorageStatus], configs: Sequence[StorageConfig]
) -> dict[str, Storage]:
    by_name: dict[str, list[StorageStatus]] = {}
    for status in statuses:
        by_name.setdefault(status.name, []).append(status)
    config_by_name = {c.name: c for c in configs}
    result: dict[str, Storage] = {}
    for name in sorted(set(by_name) | set(config_by_name)):
        entries = by_name.get(name, [])
        config = config_by_name.get(name)
        result[name] = Storage(
            name=name,
            type=(entries[0].type if entries else "") or (config.type if config else ""),
            # /cluster/resources reports the plugin's effective shared flag (rbd, nfs... are
            # shared without `shared 1` in storage.cfg); the config flag covers the rest.
            shared=any(e.shared for e in entries) or bool(config and config.shared),
            content=(config.content if config else frozenset()).union(
                *(e.content for e in entries)
            ),
            enabled=config.enabled if config else True,
            restricted_to=config.nodes if config else None,
            per_node={
                e.node: StorageOnNode(
                    node=e.node,
                    available=e.available,
                    total_bytes=e.total_bytes,
                    used_bytes=e.used_bytes,
                )
                for e in entries
            },
        )
    return result


def _resolve_disk(disk: Disk, storages: Mapping[str, Storage]) -> Disk:
    if disk.is_local is not None or disk.storage is None:
        return disk
    storage = storages.get(disk.storage)
    if storage is None:
        return disk
    return replace(disk, is_local=not storage.shared)


@dataclass(frozen=True)
class RawCluster:
    """The separate answers `fetch_snapshot` collected, each already converted, before they
    are joined. Only `status` and `resources` are required; what is missing counts as empty
    (no HA, no configs read, ...)."""

    status: ClusterStatus
    resources: ClusterResources
    storage_configs: Sequence[StorageConfig] = ()
    datacenter: DatacenterOptions | None = None
    ha_resource_list: Sequence[HaResource] = ()
    ha: HaStatus | None = None
    rules: Sequence[HaRule] = ()
    configs: Mapping[int, GuestConfig] = field(default_factory=dict)
    config_problems: Mapping[int, str] = field(default_factory=dict)
    versions: Mapping[str, PveVersion] = field(default_factory=dict)
    cpu_models: Mapping[str, str] = field(default_factory=dict)
    bridges: Mapping[str, frozenset[str]] = field(default_factory=dict)
    fetched_at: float | None = None
    replication: Sequence[ReplicationJob] = ()
    session_user: str | None = None


def check_membership(status: ClusterStatus, resources: ClusterResources) -> None:
    """Refuse (ValueError) a guest list that names nodes the cluster does not have: every guest
    of ``/cluster/resources`` must be on a node that ``/cluster/status`` or the resources
    themselves list. A guest "on" an unknown node would be missing from its real node, and a
    drain of that node would see nothing to move."""
    known = {n.name for n in status.nodes} | {n.name for n in resources.nodes}
    strays = sorted({g.node for g in resources.guests} - known)
    if strays:
        count = sum(1 for g in resources.guests if g.node in strays)
        listing = ", ".join(f"'{name}'" for name in strays[:5])
        raise ValueError(
            f"it lists {count} guest(s) on {listing}, which "
            f"{'is not a node' if len(strays) == 1 else 'are not nodes'} of the cluster "
            f"(nodes: {', '.join(sorted(known)) or 'none'})"
        )


def build_snapshot(raw: RawCluster) -> ClusterSnapshot:
    """Join the separate answers into one `ClusterSnapshot` (no I/O)."""
    ha = raw.ha or HaStatus()
    storages = _storages(raw.resources.storages, raw.storage_configs)
    ha_by_sid = _ha_resources_where(raw.ha_resource_list, ha)
    return ClusterSnapshot(
        cluster_name=raw.status.name,
        quorate=raw.status.quorate,
        nodes=_nodes(raw, ha),
        guests=_guests(raw, storages, ha_by_sid),
        storages=storages,
        ha_resources=ha_by_sid,
        ha_rules=tuple(raw.rules),
        datacenter=raw.datacenter or DatacenterOptions(),
        bridges=dict(raw.bridges),
        fetched_at=raw.fetched_at,
        replication=replication_targets(raw.replication),
        session_user=raw.session_user,
    )


def _nodes(raw: RawCluster, ha: HaStatus) -> dict[str, Node]:
    """Every node of `/cluster/resources` and of the membership list, sorted by name; a node
    is online only when both say so."""
    member = {n.name: n for n in raw.status.nodes}
    nodes: dict[str, Node] = {}
    for node in raw.resources.nodes:
        info = member.get(node.name)
        nodes[node.name] = Node(
            name=node.name,
            online=node.online if info is None else (node.online and info.online),
            cpus=node.cpus,
            cpu_fraction=node.cpu_fraction,
            memory_total_bytes=node.memory_total_bytes,
            memory_used_bytes=node.memory_used_bytes,
            uptime_s=node.uptime_s,
            version=raw.versions.get(node.name),
            cpu_model=raw.cpu_models.get(node.name),
            node_id=info.node_id if info else None,
            ip=info.ip if info else None,
            host_arch=node.host_arch,
            ha_lrm_status=ha.lrm.get(node.name),
            ha_state=node.ha_state,
        )
    for name, info in member.items():
        if name not in nodes:
            nodes[name] = Node(
                name=name,
                online=info.online,
                node_id=info.node_id,
                ip=info.ip,
                version=raw.versions.get(name),
                cpu_model=raw.cpu_models.get(name),
                ha_lrm_status=ha.lrm.get(name),
            )
    return dict(sorted(nodes.items()))


def _ha_resources_where(resources: Sequence[HaResource], ha: HaStatus) -> dict[str, HaResource]:
    """The configured HA resources with the node and CRM state the HA status reports."""
    ha_by_sid: dict[str, HaResource] = {}
    for res in resources:
        svc = ha.services.get(res.sid)
        ha_by_sid[res.sid] = HaResource(
            sid=res.sid,
            requested_state=res.requested_state,
            group=res.group,
            max_restart=res.max_restart,
            max_relocate=res.max_relocate,
            failback=res.failback,
            comment=res.comment,
            node=svc.node if svc else None,
            crm_state=(svc.crm_state or svc.state) if svc else None,
        )
    return ha_by_sid


def _guests(
    raw: RawCluster, storages: Mapping[str, Storage], ha_by_sid: Mapping[str, HaResource]
) -> dict[int, Guest]:
    """Each guest of `/cluster/resources` completed by its config when it could be read."""
    guests: dict[int, Guest] = {}
    for base in raw.resources.guests:
        ha_res = ha_by_sid.get(base.ha_sid)
        ha_state = base.ha_state or (ha_res.crm_state or ha_res.requested_state if ha_res else None)
        conf = raw.configs.get(base.vmid)
        ha_group = ha_res.group if ha_res else None
        if conf is None:
            guests[base.vmid] = replace(
                base,
                ha_state=ha_state,
                ha_group=ha_group,
                config_problem=raw.config_problems.get(base.vmid),
            )
            continue
        guests[base.vmid] = replace(
            base,
            memory_bytes=conf.memory_bytes or base.memory_bytes,
            disks=tuple(_resolve_disk(d, storages) for d in conf.disks),
            nets=conf.nets,
            local_devices=conf.local_devices,
            lock=conf.lock,
            template=conf.template or base.template,
            tags=conf.tags or base.tags,
            name=base.name or conf.name or "",
            ha_state=ha_state,
            ha_group=ha_group,
            cpu_type=conf.cpu_type,
            agent_enabled=conf.agent_enabled,
            config_known=True,
        )
    return guests
