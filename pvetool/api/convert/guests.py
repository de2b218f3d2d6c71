"""Guest configurations, guest status and the migrate precondition -> model objects.

Imports: the standard library, `pvetool.errors`, `pvetool.model` and the package's own
`_coerce` and `ha` modules. Pure functions: config property strings (disks, NICs, host-bound
devices) are parsed here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pvetool.api.convert._coerce import (
    MIB,
    _bool,
    _float,
    _int,
    _obj,
    _objects,
    _opt_bool,
    _opt_int,
    _opt_str,
    _str,
    _strings,
    _tags,
    parse_property_string,
    parse_pve_size,
)
from pvetool.api.convert.ha import blocking_resources
from pvetool.model import (
    DeviceKind,
    Disk,
    GuestConfig,
    GuestKind,
    GuestStatus,
    LocalDevice,
    LocalDiskInfo,
    MappedResource,
    Net,
    NodeRefusal,
    Precondition,
)

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
    size = parse_pve_size(props["size"]) if "size" in props else None
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
                blocking_ha_resources=blocking_resources(
                    _either(info, "blocking-ha-resources", "blocking_ha_resources")
                ),
            )
    disks = tuple(
        LocalDiskInfo(
            volid=_str(d.get("volid")),
            size_bytes=_opt_int(d.get("size")),
            cdrom=_bool(d.get("cdrom")),
            is_unused=_bool(d.get("is_unused")),
            is_attached=_opt_bool(d.get("is_attached")),
            is_cloudinit=_bool(d.get("is_cloudinit")),
        )
        for d in _objects(_either(data, "local_disks", "local-disks"), "local_disks")
    )
    info = _either(data, "mapped-resource-info", "mapped_resource_info")
    mapped_info: list[MappedResource] = []
    if isinstance(info, dict):
        for key, details in sorted(info.items()):
            live = details.get("live-migration") if isinstance(details, dict) else None
            name = details.get("name") if isinstance(details, dict) else None
            mapped_info.append(
                MappedResource(
                    key=str(key),
                    # PVE sends the key only for a live-capable mapping (D7): absent = no
                    live_migration=bool(_opt_bool(live)),
                    name=_opt_str(name),
                )
            )
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
