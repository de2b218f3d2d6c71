"""Versions, cluster status and resources, nodes, storage, options, replication -> model.

Imports: the standard library, `pvetool.errors`, `pvetool.model` and the package's `_coerce`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

from pvetool.api.convert._coerce import (
    _bool,
    _content,
    _float,
    _int,
    _obj,
    _objects,
    _opt_float,
    _opt_int,
    _opt_str,
    _str,
    _strings,
    _tags,
    parse_property_string,
)
from pvetool.model import (
    ClusterNodeStatus,
    ClusterResources,
    ClusterStatus,
    DatacenterOptions,
    Guest,
    GuestKind,
    Node,
    PveVersion,
    ReplicationJob,
    StorageConfig,
    StorageStatus,
)

VMID_MIN, VMID_MAX = 100, 999_999_999
# pve-common src/PVE/JSONSchema.pm pve_verify_node_name
_NODE_RE = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?")
# The resource types whose ids pve-manager (PVE/API2/Cluster.pm `resources`, PVE/API2Tools.pm
# `extract_vm_stats`) builds as "<type>/..." (pools as "/pool/<id>").
_TYPED_IDS = frozenset({"node", "storage", "qemu", "lxc", "pool", "sdn", "network"})


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _node_name(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_NODE_RE.fullmatch(value))


def _no_repeats(keys: Iterable[Any], what: str) -> None:
    seen: set[Any] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"{what} {key} is listed twice")
        seen.add(key)


def _check_resource_id(entry: Mapping[str, Any]) -> None:
    """The id's leading part names the entry's type; a garbled type or id does not."""
    kind, ident = entry.get("type"), entry.get("id")
    prefix = _str(ident).lstrip("/").split("/", 1)[0]
    if (kind in _TYPED_IDS or prefix in _TYPED_IDS) and prefix != kind:
        raise ValueError(f"the entry {_shown(ident)} has the type {_shown(kind)}")


def version(raw: Any) -> PveVersion:
    """``GET /version`` or ``GET /nodes/{node}/version`` -> `PveVersion`."""
    data = _obj(raw, "the version")
    ver = _str(data.get("version"))
    release = _str(data.get("release"))
    if not release:
        match = re.match(r"(\d+\.\d+)", ver)
        release = match.group(1) if match else ver
    return PveVersion(release=release, version=ver, repoid=_str(data.get("repoid")))


def cluster_status(raw: Any) -> ClusterStatus:
    """``GET /cluster/status`` -> `ClusterStatus` (a node without cluster is quorate).

    A node entry without a name, or a node listed twice, is refused (ValueError)."""
    entries = _objects(raw, "/cluster/status")
    name: str | None = None
    quorate: bool | None = None
    nodes: list[ClusterNodeStatus] = []
    for entry in entries:
        if entry.get("type") == "cluster":
            name = _opt_str(entry.get("name"))
            quorate = _bool(entry.get("quorate"))
        elif entry.get("type") == "node":
            if not _node_name(entry.get("name")):
                raise ValueError(f"a node entry has no valid name ({_shown(entry.get('name'))})")
            nodes.append(
                ClusterNodeStatus(
                    name=_str(entry.get("name")),
                    online=_bool(entry.get("online")),
                    node_id=_opt_int(entry.get("nodeid")),
                    ip=_opt_str(entry.get("ip")),
                    local=_bool(entry.get("local")),
                )
            )
    _no_repeats([n.name for n in nodes], "node")
    return ClusterStatus(
        name=name,
        quorate=True if quorate is None else quorate,
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
    )


def _guest_from_resource(entry: Mapping[str, Any]) -> Guest:
    kind = cast(GuestKind, entry.get("type"))
    vmid = _opt_int(entry.get("vmid"))
    if vmid is None or not VMID_MIN <= vmid <= VMID_MAX:
        raise ValueError(f"{entry.get('id')}: {_shown(entry.get('vmid'))} is not a vmid")
    node = entry.get("node")
    if not _node_name(node):
        raise ValueError(f"{kind} {vmid} has no valid node ({_shown(node)})")
    return Guest(
        vmid=vmid,
        kind=kind,
        name=_str(entry.get("name")),
        node=_str(node),
        status=_str(entry.get("status"), "unknown"),
        memory_bytes=_int(entry.get("maxmem")),
        used_memory_bytes=_int(entry.get("mem")),
        cores=_int(entry.get("maxcpu")),
        cpu_fraction=_float(entry.get("cpu")),
        uptime_s=_int(entry.get("uptime")),
        lock=_opt_str(entry.get("lock")),
        template=_bool(entry.get("template")),
        tags=_tags(entry.get("tags")),
        pool=_opt_str(entry.get("pool")),
        ha_state=_opt_str(entry.get("hastate")),
    )


def cluster_resources(raw: Any) -> ClusterResources:
    """``GET /cluster/resources`` -> nodes, guests (without config) and storage per node.

    Refused (ValueError) when the answer contradicts itself: an entry whose id is not of its
    type (pve-manager builds ``qemu/101``, ``node/pve1``, ``storage/pve1/local``), a guest
    without a vmid or a node, a guest or node listed twice."""
    nodes: list[Node] = []
    guests: list[Guest] = []
    storages: list[StorageStatus] = []
    for entry in _objects(raw, "/cluster/resources"):
        kind = entry.get("type")
        _check_resource_id(entry)
        if kind == "node":
            if not _node_name(entry.get("node")):
                raise ValueError(f"{entry.get('id')}: no valid node name")
            nodes.append(
                Node(
                    name=_str(entry.get("node")),
                    online=entry.get("status") == "online",
                    cpus=_int(entry.get("maxcpu")),
                    cpu_fraction=_float(entry.get("cpu")),
                    memory_total_bytes=_int(entry.get("maxmem")),
                    memory_used_bytes=_int(entry.get("mem")),
                    uptime_s=_int(entry.get("uptime")),
                    host_arch=_opt_str(entry.get("host-arch")),
                    ha_state=_opt_str(entry.get("hastate")),
                )
            )
        elif kind in ("qemu", "lxc"):
            guests.append(_guest_from_resource(entry))
        elif kind == "storage":
            storages.append(
                StorageStatus(
                    name=_str(entry.get("storage")),
                    node=_str(entry.get("node")),
                    type=_str(entry.get("plugintype")),
                    shared=_bool(entry.get("shared")),
                    available=entry.get("status") == "available",
                    content=_content(entry.get("content")),
                    total_bytes=_int(entry.get("maxdisk")),
                    used_bytes=_int(entry.get("disk")),
                )
            )
        # Any other row type (pool, sdn, network on 9.x, and whatever comes later) is not
        # read: pve-manager PVE/API2/Cluster.pm resources lists them among the rest, in no
        # order to rely on.
    _no_repeats([n.name for n in nodes], "node")
    _no_repeats([g.vmid for g in guests], "guest")
    return ClusterResources(
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        guests=tuple(sorted(guests, key=lambda g: g.vmid)),
        storages=tuple(sorted(storages, key=lambda s: (s.name, s.node))),
    )


def node_index(raw: Any) -> tuple[Node, ...]:
    """``GET /nodes`` -> nodes with usage and the SHA-256 fingerprint of their certificate."""
    nodes = []
    for entry in _objects(raw, "/nodes"):
        nodes.append(
            Node(
                name=_str(entry.get("node")),
                online=entry.get("status") == "online",
                cpus=_int(entry.get("maxcpu")),
                cpu_fraction=_float(entry.get("cpu")),
                memory_total_bytes=_int(entry.get("maxmem")),
                memory_used_bytes=_int(entry.get("mem")),
                uptime_s=_int(entry.get("uptime")),
                ssl_fingerprint=_opt_str(entry.get("ssl_fingerprint")),
            )
        )
    return tuple(sorted(nodes, key=lambda n: n.name))


def storage_config(raw: Any) -> tuple[StorageConfig, ...]:
    """``GET /storage`` -> the datacenter storage definitions."""
    result = []
    for entry in _objects(raw, "/storage"):
        nodes = _strings(entry.get("nodes"))
        result.append(
            StorageConfig(
                name=_str(entry.get("storage")),
                type=_str(entry.get("type")),
                shared=_bool(entry.get("shared")),
                content=_content(entry.get("content")),
                nodes=frozenset(nodes) if nodes else None,
                enabled=not _bool(entry.get("disable")),
            )
        )
    return tuple(sorted(result, key=lambda s: s.name))


def node_storage_status(node: str, raw: Any) -> tuple[StorageStatus, ...]:
    """``GET /nodes/{node}/storage`` -> status of each storage on that node."""
    result = []
    for entry in _objects(raw, f"/nodes/{node}/storage"):
        result.append(
            StorageStatus(
                name=_str(entry.get("storage")),
                node=node,
                type=_str(entry.get("type")),
                shared=_bool(entry.get("shared")),
                available=_bool(entry.get("active"), default=True),
                enabled=_bool(entry.get("enabled"), default=True),
                content=_content(entry.get("content")),
                total_bytes=_int(entry.get("total")),
                used_bytes=_int(entry.get("used")),
                avail_bytes=_opt_int(entry.get("avail")),
            )
        )
    return tuple(sorted(result, key=lambda s: s.name))


def node_cpu_model(raw: Any) -> str | None:
    """``GET /nodes/{node}/status`` -> the CPU model (``cpuinfo.model``)."""
    data = _obj(raw, "the node status")
    cpuinfo = data.get("cpuinfo")
    return _opt_str(cpuinfo.get("model")) if isinstance(cpuinfo, dict) else None


def network_bridges(raw: Any) -> frozenset[str]:
    """``GET /nodes/{node}/network?type=any_bridge`` -> the bridge names guests can use."""
    names = set()
    for entry in _objects(raw, "the node network"):
        if _str(entry.get("type")) in ("bridge", "OVSBridge", "vnet") and entry.get("iface"):
            names.add(_str(entry.get("iface")))
    return frozenset(names)


def _prop(value: Any, default_key: str | None = None) -> Mapping[str, Any]:
    """A datacenter option that PVE returns parsed (object) or raw (property string)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return parse_property_string(value, default_key)
    return {}


def datacenter_options(raw: Any) -> DatacenterOptions:
    """``GET /cluster/options`` -> migration settings, bandwidth limits, HA policies."""
    data = _obj(raw, "/cluster/options")
    migration = _prop(data.get("migration"), "type")
    mtype = _str(migration.get("type"))
    if mtype not in ("secure", "insecure"):
        mtype = "insecure" if _bool(data.get("migration_unsecure")) else "secure"
    bwlimit = _prop(data.get("bwlimit"))
    return DatacenterOptions(
        migration_type=cast(Literal["secure", "insecure"], mtype),
        migration_network=_opt_str(migration.get("network")),
        bwlimit_migration_kib_s=_opt_float(bwlimit.get("migration")),
        bwlimit_default_kib_s=_opt_float(bwlimit.get("default")),
        max_workers=_opt_int(data.get("max_workers")),
        ha_shutdown_policy=_opt_str(
            _prop(data.get("ha"), "shutdown_policy").get("shutdown_policy")
        ),
        crs_ha=_opt_str(_prop(data.get("crs"), "ha").get("ha")),
    )


def replication_jobs(raw: Any) -> tuple[ReplicationJob, ...]:
    """``GET /cluster/replication`` -> `ReplicationJob` per job, by guest and job number.

    A job marked for removal (``remove_job``) replicates no more: it counts as disabled.
    """
    jobs: list[tuple[int, ReplicationJob]] = []
    for entry in _objects(raw, "/cluster/replication"):
        job_id = _str(entry.get("id"))
        guest, _, number = job_id.partition("-")
        vmid = _int(entry.get("guest"), _int(guest) if guest.isdigit() else 0)
        jobnum = _int(entry.get("jobnum"), _int(number) if number.isdigit() else 0)
        jobs.append(
            (
                jobnum,
                ReplicationJob(
                    id=job_id,
                    vmid=vmid,
                    target=_str(entry.get("target")),
                    source=_opt_str(entry.get("source")),
                    disabled=_bool(entry.get("disable")) or bool(entry.get("remove_job")),
                ),
            )
        )
    jobs.sort(key=lambda item: (item[1].vmid, item[0]))
    return tuple(job for _, job in jobs)


def replication_targets(jobs: Iterable[ReplicationJob]) -> dict[int, tuple[str, ...]]:
    """The targets of the enabled jobs, per guest (what the planner checks moves against)."""
    targets: dict[int, list[str]] = {}
    for job in jobs:
        if job.disabled or not job.target:
            continue
        found = targets.setdefault(job.vmid, [])
        if job.target not in found:
            found.append(job.target)
    return {vmid: tuple(nodes) for vmid, nodes in sorted(targets.items())}
