"""PVE JSON and PVE text (config strings, task log lines) -> `pvetool.model` objects.

Imports: the standard library, `pvetool.errors` and `pvetool.model`. Pure functions: no I/O,
no clock. Raw dicts stop here; everything returned is a frozen model object.

PVE encodes booleans as 0/1 (sometimes as strings), omits keys that are unset, and packs
structured values into "property strings" (``local-lvm:vm-100-disk-0,size=32G``). The helpers
below accept all of those forms. An answer of the wrong *shape* (a list where an object is
expected) raises `ValidationError`; a missing optional key never does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, cast

from pvetool.errors import ValidationError
from pvetool.model import (
    BlockingHaResource,
    ClusterNodeStatus,
    ClusterResources,
    ClusterSnapshot,
    ClusterStatus,
    DatacenterOptions,
    DeviceKind,
    Disk,
    Guest,
    GuestConfig,
    GuestKind,
    GuestStatus,
    HaMigrateRequest,
    HaResource,
    HaRule,
    HaRuleNode,
    HaServiceStatus,
    HaStatus,
    LocalDevice,
    LocalDiskInfo,
    MappedResource,
    MigrationProgress,
    Net,
    Node,
    NodeRefusal,
    Precondition,
    PveVersion,
    ReplicationJob,
    Storage,
    StorageConfig,
    StorageOnNode,
    StorageStatus,
    TaskLogLine,
    TaskStatus,
    TaskSummary,
    Upid,
)

__all__ = [
    "build_snapshot",
    "cluster_resources",
    "cluster_status",
    "datacenter_options",
    "guest_config",
    "guest_status",
    "ha_groups_as_rules",
    "ha_migrate_request",
    "ha_resources",
    "ha_rules",
    "ha_status",
    "network_bridges",
    "node_cpu_model",
    "node_index",
    "node_storage_status",
    "parse_bytes",
    "parse_disk",
    "parse_downtime_ms",
    "parse_duration_s",
    "parse_local_device",
    "parse_net",
    "parse_progress_line",
    "parse_property_string",
    "parse_size",
    "precondition",
    "replication_jobs",
    "replication_targets",
    "storage_config",
    "task_list",
    "task_log",
    "task_status",
    "upid",
    "version",
]

MIB = 1024**2

# --------------------------------------------------------------------------------------------
# Scalars


def _obj(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise ValidationError(
            f"PVE answered {what} with {type(raw).__name__}, where an object was expected",
            field=what,
        )
    return raw


def _list(raw: Any, what: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError(
            f"PVE answered {what} with {type(raw).__name__}, where a list was expected",
            field=what,
        )
    return raw


def _objects(raw: Any, what: str) -> list[Mapping[str, Any]]:
    return [item for item in _list(raw, what) if isinstance(item, dict)]


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return default
    return default


def _opt_int(value: Any) -> int | None:
    return None if value is None or value == "" else _int(value)


def _float(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return default
    return default


def _opt_float(value: Any) -> float | None:
    return None if value is None or value == "" else _float(value)


def _bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
    return default


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else _bool(value)


def _str(value: Any, default: str = "") -> str:
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _str(value)


def _strings(value: Any) -> tuple[str, ...]:
    """A list of strings, or a comma-separated string, as a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, list):
        return tuple(_str(v) for v in value if v is not None and _str(v))
    if isinstance(value, dict):
        return tuple(str(k) for k in value)
    return ()


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str):
        return ()
    return tuple(t for t in re.split(r"[;,\s]+", value) if t)


def _content(value: Any) -> frozenset[str]:
    return frozenset(_strings(value))


_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_size(text: str) -> int | None:
    """PVE disk size (``32G``, ``4M``, ``512K``, ``1.5T``, plain bytes) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTPB]?)\s*", text.upper())
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def parse_bytes(number: str, unit: str) -> int:
    """``357.9`` + ``MiB`` -> bytes, for the units PVE's render_bytes prints (B, KiB ... PiB)."""
    factor = _SIZE_UNITS.get(unit.strip().upper().replace("IB", "").replace("B", "") or "", 1)
    return int(float(number) * factor)


def parse_property_string(text: str, default_key: str | None = None) -> dict[str, str]:
    """``local-lvm:vm-100-disk-0,size=32G`` -> {default_key: 'local-lvm:...', 'size': '32G'}.

    An item without ``=`` is the value of `default_key` (first one only); without a default key
    it is stored with an empty value (``spice`` in ``usb0: spice``).
    """
    result: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if sep:
            result[key.strip()] = value.strip()
        elif default_key is not None and default_key not in result:
            result[default_key] = part
        else:
            result[part] = ""
    return result


# --------------------------------------------------------------------------------------------
# Guest configuration strings

_QEMU_DISK_KEY = re.compile(r"^(?:(?:ide|sata|scsi|virtio)\d+|efidisk0|tpmstate0|unused\d+|cdrom)$")
_LXC_DISK_KEY = re.compile(r"^(?:rootfs|mp\d+|unused\d+)$")
_NET_KEY = re.compile(r"^net\d+$")
_NET_OPTION_KEYS = frozenset(
    {
        "bridge",
        "tag",
        "firewall",
        "link_down",
        "macaddr",
        "model",
        "mtu",
        "queues",
        "rate",
        "trunks",
        "name",
        "hwaddr",
        "ip",
        "ip6",
        "gw",
        "gw6",
        "type",
        "host-managed",
    }
)


def _storage_of(volid: str) -> str | None:
    if volid.startswith("/") or ":" not in volid:
        return None
    return volid.split(":", 1)[0]


def parse_disk(key: str, value: str, kind: GuestKind) -> Disk | None:
    """One disk/volume line of a guest config, or None when `key` is not a volume key."""
    pattern = _QEMU_DISK_KEY if kind == "qemu" else _LXC_DISK_KEY
    if not pattern.match(key):
        return None
    default_key = "volume" if kind == "lxc" else "file"
    props = parse_property_string(value, default_key)
    volid = props.get(default_key) or props.get("volume") or props.get("file") or ""
    if kind == "lxc" and key.startswith("mp") and volid.startswith("/"):
        return None  # a bind or device mount: a host dependency, see parse_local_device
    media: Literal["disk", "cdrom"] = "cdrom" if props.get("media") == "cdrom" else "disk"
    if key == "cdrom":
        media = "cdrom"
    if media == "cdrom" and volid in ("", "none", "cdrom"):
        volid = "none"
    size = parse_size(props["size"]) if "size" in props else None
    marked_shared = _bool(props.get("shared"))
    storage = _storage_of(volid)
    is_local: bool | None = None
    if volid.startswith("/"):
        is_local = True  # passthrough of a host block device
    elif volid == "none":
        is_local = False
    elif marked_shared:
        is_local = False
    return Disk(
        key=key,
        volid=volid,
        storage=storage,
        size_bytes=size,
        media=media,
        is_local=is_local,
        unused=key.startswith("unused"),
        marked_shared=marked_shared,
    )


def parse_net(key: str, value: str, kind: GuestKind) -> Net | None:
    """``net0`` of a VM (``virtio=AA:..,bridge=vmbr1,tag=10``) or a CT (``name=eth0,...``)."""
    if not _NET_KEY.match(key):
        return None
    props = parse_property_string(value)
    model = props.get("model") or props.get("type")
    mac = props.get("macaddr") or props.get("hwaddr")
    if kind == "qemu":
        for item, item_value in props.items():
            if item not in _NET_OPTION_KEYS:
                model, mac = item, item_value or mac
                break
    tag = props.get("tag")
    return Net(
        key=key,
        bridge=props.get("bridge") or None,
        vlan_tag=int(tag) if tag and tag.isdigit() else None,
        model=model or None,
        mac=mac or None,
        name=props.get("name"),
    )


def parse_local_device(key: str, value: str, kind: GuestKind) -> LocalDevice | None:
    """A host-bound device of a guest config, or None when `key`/`value` is not one.

    ``serial0: socket`` and ``usb0: spice`` are not bound to the host and give None.
    """
    dev_kind: DeviceKind
    if kind == "qemu":
        if re.fullmatch(r"hostpci\d+", key):
            props = parse_property_string(value, "host")
            mapping = props.get("mapping")
            return LocalDevice(key, "pci", props.get("host") or mapping or value, mapping)
        if re.fullmatch(r"usb\d+", key):
            props = parse_property_string(value, "host")
            mapping = props.get("mapping")
            host = props.get("host")
            if host == "spice" or (host is None and mapping is None and "spice" in props):
                return None
            return LocalDevice(key, "usb", host or mapping or value, mapping)
        if re.fullmatch(r"serial\d+", key):
            return None if value.strip() == "socket" else LocalDevice(key, "serial", value.strip())
        if re.fullmatch(r"parallel\d+", key):
            return LocalDevice(key, "parallel", value.strip())
        if re.fullmatch(r"virtiofs\d+", key):
            props = parse_property_string(value, "dirid")
            dirid = props.get("dirid")
            return LocalDevice(key, "virtiofs", dirid or value, dirid)
        return None
    if re.fullmatch(r"dev\d+", key):
        props = parse_property_string(value, "path")
        return LocalDevice(key, "dev", props.get("path", value))
    if re.fullmatch(r"mp\d+", key):
        props = parse_property_string(value, "volume")
        volume = props.get("volume", "")
        if volume.startswith("/") and not _bool(props.get("shared")):
            dev_kind = "bind-mount"
            return LocalDevice(key, dev_kind, volume)
    return None


def _memory_mib(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and "=" in value:
        return _opt_int(parse_property_string(value, "current").get("current"))
    return _opt_int(value)


def guest_config(kind: GuestKind, raw: Any) -> GuestConfig:
    """``GET /nodes/{node}/{qemu|lxc}/{vmid}/config`` -> `GuestConfig`."""
    conf = _obj(raw, f"the {kind} config")
    disks: list[Disk] = []
    nets: list[Net] = []
    devices: list[LocalDevice] = []
    for key in sorted(conf, key=_natural_key):
        value = conf[key]
        if not isinstance(value, str):
            continue
        disk = parse_disk(key, value, kind)
        if disk is not None:
            disks.append(disk)
            continue
        net = parse_net(key, value, kind)
        if net is not None:
            nets.append(net)
            continue
        device = parse_local_device(key, value, kind)
        if device is not None:
            devices.append(device)
    memory_mib = _memory_mib(conf.get("memory"))
    cpu_type: str | None = None
    agent = False
    if kind == "qemu":
        cpu = conf.get("cpu")
        if isinstance(cpu, str) and cpu:
            cpu_type = parse_property_string(cpu, "cputype").get("cputype")
        agent_value = conf.get("agent")
        if isinstance(agent_value, str):
            agent = _bool(parse_property_string(agent_value, "enabled").get("enabled"))
        else:
            agent = _bool(agent_value)
    return GuestConfig(
        kind=kind,
        memory_bytes=memory_mib * MIB if memory_mib is not None else None,
        cores=_opt_int(conf.get("cores")),
        sockets=_opt_int(conf.get("sockets")),
        vcpus=_opt_int(conf.get("vcpus")),
        disks=tuple(disks),
        nets=tuple(nets),
        local_devices=tuple(devices),
        lock=_opt_str(conf.get("lock")),
        template=_bool(conf.get("template")),
        tags=_tags(conf.get("tags")),
        cpu_type=cpu_type,
        agent_enabled=agent,
        name=_opt_str(conf.get("name") if kind == "qemu" else conf.get("hostname")),
    )


def _natural_key(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*?)(\d+)", text)
    return (match.group(1), int(match.group(2))) if match else (text, -1)


# --------------------------------------------------------------------------------------------
# Versions, cluster, resources


def upid(text: Any) -> Upid:
    """A UPID string (as returned by every task-creating call) -> `Upid`."""
    if not isinstance(text, str):
        raise ValidationError(f"PVE returned {type(text).__name__} where a task id was expected")
    return Upid.parse(text)


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
    """``GET /cluster/status`` -> `ClusterStatus` (a node without cluster is quorate)."""
    entries = _objects(raw, "/cluster/status")
    name: str | None = None
    quorate: bool | None = None
    nodes: list[ClusterNodeStatus] = []
    for entry in entries:
        if entry.get("type") == "cluster":
            name = _opt_str(entry.get("name"))
            quorate = _bool(entry.get("quorate"))
        elif entry.get("type") == "node":
            nodes.append(
                ClusterNodeStatus(
                    name=_str(entry.get("name")),
                    online=_bool(entry.get("online")),
                    node_id=_opt_int(entry.get("nodeid")),
                    ip=_opt_str(entry.get("ip")),
                    local=_bool(entry.get("local")),
                )
            )
    return ClusterStatus(
        name=name,
        quorate=True if quorate is None else quorate,
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
    )


def _guest_from_resource(entry: Mapping[str, Any]) -> Guest:
    kind = cast(GuestKind, entry.get("type"))
    vmid = _int(entry.get("vmid"))
    return Guest(
        vmid=vmid,
        kind=kind,
        name=_str(entry.get("name")),
        node=_str(entry.get("node")),
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
    """``GET /cluster/resources`` -> nodes, guests (without config) and storage per node."""
    nodes: list[Node] = []
    guests: list[Guest] = []
    storages: list[StorageStatus] = []
    for entry in _objects(raw, "/cluster/resources"):
        kind = entry.get("type")
        if kind == "node":
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


def guest_status(kind: GuestKind, raw: Any) -> GuestStatus:
    """``GET /nodes/{node}/{qemu|lxc}/{vmid}/status/current`` -> `GuestStatus`."""
    data = _obj(raw, f"the {kind} status")
    ha = data.get("ha") if isinstance(data.get("ha"), dict) else {}
    assert isinstance(ha, dict)
    return GuestStatus(
        vmid=_int(data.get("vmid")),
        kind=kind,
        status=_str(data.get("status"), "unknown"),
        name=_opt_str(data.get("name")),
        lock=_opt_str(data.get("lock")),
        qmpstatus=_opt_str(data.get("qmpstatus")),
        ha_managed=_bool(ha.get("managed")),
        ha_state=_opt_str(ha.get("state")),
        uptime_s=_int(data.get("uptime")),
        memory_bytes=_int(data.get("maxmem")),
        used_memory_bytes=_int(data.get("mem")),
        cpus=_float(data.get("cpus")),
        agent_enabled=_bool(data.get("agent")),
        running_machine=_opt_str(data.get("running-machine")),
        running_qemu=_opt_str(data.get("running-qemu")),
    )


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


# --------------------------------------------------------------------------------------------
# HA


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
    """``GET /cluster/ha/status/current`` -> quorum, master, LRM and service states."""
    quorate: bool | None = None
    master: str | None = None
    lrm: dict[str, str] = {}
    services: dict[str, HaServiceStatus] = {}
    for entry in _objects(raw, "/cluster/ha/status/current"):
        kind = entry.get("type")
        node = _str(entry.get("node"))
        if kind == "quorum":
            quorate = _bool(entry.get("quorate"))
        elif kind == "master":
            master = node or None
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
    return HaStatus(quorate=quorate, master_node=master, lrm=lrm, services=services)


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


def _blocking(value: Any) -> tuple[BlockingHaResource, ...]:
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
        blocking=_blocking(raw.get("blocking-resources")),
        comigrated=tuple(
            _str(c.get("sid")) if isinstance(c, dict) else _str(c) for c in _list(comigrated, "")
        ),
    )


# --------------------------------------------------------------------------------------------
# Storage replication


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


# --------------------------------------------------------------------------------------------
# Migration precondition


def _either(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data:
            return data[key]
    return None


def precondition(kind: GuestKind, raw: Any) -> Precondition:
    """``GET /nodes/{node}/{qemu|lxc}/{vmid}/migrate`` -> `Precondition`.

    qemu spells its keys with underscores (``allowed_nodes``), lxc with hyphens
    (``allowed-nodes``); both spellings are read for both kinds.
    """
    data = _obj(raw, f"the {kind} migrate precondition")
    refusals: dict[str, NodeRefusal] = {}
    not_allowed = _either(data, "not_allowed_nodes", "not-allowed-nodes")
    if isinstance(not_allowed, dict):
        for node, info in not_allowed.items():
            info = info if isinstance(info, dict) else {}
            refusals[str(node)] = NodeRefusal(
                node=str(node),
                unavailable_storages=_strings(
                    _either(info, "unavailable_storages", "unavailable-storages")
                ),
                unavailable_resources=_strings(
                    _either(info, "unavailable-resources", "unavailable_resources")
                ),
                blocking_ha_resources=_blocking(
                    _either(info, "blocking-ha-resources", "blocking_ha_resources")
                ),
            )
    disks = tuple(
        LocalDiskInfo(
            volid=_str(d.get("volid")),
            size_bytes=_opt_int(d.get("size")),
            cdrom=_bool(d.get("cdrom")),
            is_unused=_bool(d.get("is_unused")),
        )
        for d in _objects(_either(data, "local_disks", "local-disks"), "local_disks")
    )
    info = _either(data, "mapped-resource-info", "mapped_resource_info")
    mapped_info: list[MappedResource] = []
    if isinstance(info, dict):
        for key, details in sorted(info.items()):
            live = details.get("live-migration") if isinstance(details, dict) else None
            mapped_info.append(MappedResource(key=str(key), live_migration=_opt_bool(live)))
    return Precondition(
        kind=kind,
        running=_bool(data.get("running")),
        allowed_nodes=_strings(_either(data, "allowed_nodes", "allowed-nodes")),
        not_allowed=refusals,
        local_disks=disks,
        local_resources=_strings(_either(data, "local_resources", "local-resources")),
        mapped_resources=_strings(_either(data, "mapped-resources", "mapped_resources")),
        mapped_resource_info=tuple(mapped_info),
        dependent_ha_resources=_strings(data.get("dependent-ha-resources")),
        has_dbus_vmstate=_opt_bool(data.get("has-dbus-vmstate")),
    )


# --------------------------------------------------------------------------------------------
# Tasks


def task_status(raw: Any) -> TaskStatus:
    """``GET /nodes/{node}/tasks/{upid}/status`` -> `TaskStatus`."""
    data = _obj(raw, "the task status")
    state = _str(data.get("status"))
    if state not in ("running", "stopped"):
        raise ValidationError(f"PVE reported an unknown task state '{state}'", field="status")
    return TaskStatus(
        upid=upid(data.get("upid")),
        status=cast(Literal["running", "stopped"], state),
        exitstatus=_opt_str(data.get("exitstatus")),
    )


def task_list(raw: Any) -> tuple[TaskSummary, ...]:
    """``GET /nodes/{node}/tasks`` -> summaries, newest first (as PVE sorts them)."""
    result = []
    for entry in _objects(raw, "the task list"):
        text = entry.get("upid")
        if not isinstance(text, str) or not Upid.PATTERN.match(text):
            continue
        endtime = _opt_int(entry.get("endtime"))
        result.append(
            TaskSummary(
                upid=Upid.parse(text),
                exitstatus=_opt_str(entry.get("status")) if endtime is not None else None,
                endtime=endtime,
            )
        )
    return tuple(result)


def task_log(raw: Any) -> tuple[TaskLogLine, ...]:
    """``GET /nodes/{node}/tasks/{upid}/log`` -> lines (``n`` counts from 1)."""
    return tuple(
        TaskLogLine(n=_int(entry.get("n")), text=_str(entry.get("t")))
        for entry in _objects(raw, "the task log")
    )


# Progress lines. The timestamp prefix ("2025-01-04 00:34:30 ") is optional.
_TS = r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d )?"
_NUM_UNIT = r"([\d.]+) ?([KMGTP]?i?B)"
_RAM_ACTIVE = re.compile(
    _TS + rf"migration active, transferred {_NUM_UNIT} of {_NUM_UNIT} VM-state, {_NUM_UNIT}/s"
)
_RAM_COMPLETED = re.compile(_TS + rf"migration completed, transferred {_NUM_UNIT} VM-state")
_RAM_LEGACY = re.compile(
    _TS + r"migration status: active \(transferred (\d+), remaining (\d+)\), total (\d+)\)"
)
_DISK_MIRROR = re.compile(
    _TS + rf"(drive-[\w-]+): transferred {_NUM_UNIT} of {_NUM_UNIT} \(([\d.]+)%\)"
)
_DOWNTIME = re.compile(r"migration speed: .*- downtime (\d+) ms")
_DURATION = re.compile(r"migration finished successfully \(duration (\d+):(\d\d):(\d\d)\)")


def parse_progress_line(
    task: Upid, text: str, line_no: int | None = None
) -> MigrationProgress | None:
    """A migration log line -> `MigrationProgress`, or None when it is not a progress line.

    Formats: ``migration active, transferred 357.9 MiB of 4.0 GiB VM-state, 586.6 MiB/s``
    (PVE 7+), ``migration status: active (transferred N, remaining N), total N)`` (PVE 6),
    ``migration completed, transferred 11.7 GiB VM-state`` and the drive mirror line
    ``drive-scsi0: transferred 1.0 GiB of 32.0 GiB (3.12%) in 5s``.
    """
    match = _RAM_ACTIVE.match(text)
    if match:
        g = match.groups()
        return MigrationProgress(
            upid=task,
            transferred_bytes=parse_bytes(g[0], g[1]),
            total_bytes=parse_bytes(g[2], g[3]),
            rate_bps=float(parse_bytes(g[4], g[5])),
            line_no=line_no,
        )
    match = _RAM_LEGACY.match(text)
    if match:
        return MigrationProgress(
            upid=task,
            transferred_bytes=int(match.group(1)),
            total_bytes=int(match.group(3)),
            line_no=line_no,
        )
    match = _RAM_COMPLETED.match(text)
    if match:
        done = parse_bytes(match.group(1), match.group(2))
        return MigrationProgress(
            upid=task, transferred_bytes=done, total_bytes=done, completed=True, line_no=line_no
        )
    match = _DISK_MIRROR.match(text)
    if match:
        g = match.groups()
        return MigrationProgress(
            upid=task,
            transferred_bytes=parse_bytes(g[1], g[2]),
            total_bytes=parse_bytes(g[3], g[4]),
            phase="disk",
            device=g[0],
            completed=float(g[5]) >= 100.0,
            line_no=line_no,
        )
    return None


def parse_downtime_ms(text: str) -> int | None:
    """``average migration speed: 457.0 MiB/s - downtime 73 ms`` (and the PVE 6 form) -> 73."""
    match = _DOWNTIME.search(text)
    return int(match.group(1)) if match else None


def parse_duration_s(text: str) -> int | None:
    """``migration finished successfully (duration 00:00:18)`` -> 18."""
    match = _DURATION.search(text)
    if not match:
        return None
    hours, minutes, seconds = (int(x) for x in match.groups())
    return hours * 3600 + minutes * 60 + seconds


# --------------------------------------------------------------------------------------------
# Snapshot assembly


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


def build_snapshot(
    *,
    status: ClusterStatus,
    resources: ClusterResources,
    storage_configs: Sequence[StorageConfig] = (),
    datacenter: DatacenterOptions | None = None,
    ha_resource_list: Sequence[HaResource] = (),
    ha: HaStatus | None = None,
    rules: Sequence[HaRule] = (),
    configs: Mapping[int, GuestConfig] | None = None,
    versions: Mapping[str, PveVersion] | None = None,
    cpu_models: Mapping[str, str] | None = None,
    bridges: Mapping[str, frozenset[str]] | None = None,
    fetched_at: float | None = None,
    replication: Sequence[ReplicationJob] = (),
) -> ClusterSnapshot:
    """Join the separate answers into one `ClusterSnapshot` (no I/O)."""
    configs = configs or {}
    versions = versions or {}
    cpu_models = cpu_models or {}
    ha = ha or HaStatus()
    member = {n.name: n for n in status.nodes}

    nodes: dict[str, Node] = {}
    for node in resources.nodes:
        info = member.get(node.name)
        nodes[node.name] = Node(
            name=node.name,
            online=node.online if info is None else (node.online and info.online),
            cpus=node.cpus,
            cpu_fraction=node.cpu_fraction,
            memory_total_bytes=node.memory_total_bytes,
            memory_used_bytes=node.memory_used_bytes,
            uptime_s=node.uptime_s,
            version=versions.get(node.name),
            cpu_model=cpu_models.get(node.name),
            node_id=info.node_id if info else None,
            ip=info.ip if info else None,
            host_arch=node.host_arch,
            ha_lrm_status=ha.lrm.get(node.name),
        )
    for name, info in member.items():
        if name not in nodes:
            nodes[name] = Node(
                name=name,
                online=info.online,
                node_id=info.node_id,
                ip=info.ip,
                version=versions.get(name),
                cpu_model=cpu_models.get(name),
                ha_lrm_status=ha.lrm.get(name),
            )

    storages = _storages(resources.storages, storage_configs)

    ha_by_sid: dict[str, HaResource] = {}
    for res in ha_resource_list:
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

    guests: dict[int, Guest] = {}
    for base in resources.guests:
        sid = base.ha_sid
        ha_res = ha_by_sid.get(sid)
        ha_state = base.ha_state or (ha_res.crm_state or ha_res.requested_state if ha_res else None)
        conf = configs.get(base.vmid)
        ha_group = ha_res.group if ha_res else None
        if conf is None:
            guests[base.vmid] = replace(base, ha_state=ha_state, ha_group=ha_group)
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

    dc = datacenter or DatacenterOptions()
    return ClusterSnapshot(
        cluster_name=status.name,
        quorate=status.quorate,
        nodes=dict(sorted(nodes.items())),
        guests=guests,
        storages=storages,
        ha_resources=ha_by_sid,
        ha_rules=tuple(rules),
        datacenter=dc,
        bridges=dict(bridges or {}),
        fetched_at=fetched_at,
        replication=replication_targets(replication),
    )
