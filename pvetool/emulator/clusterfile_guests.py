"""The guests of a cluster file: `guests:`, checked into `GuestSpec`s.

Every key of a guest (type, node, status, size, dirty pages, disks, NICs, HA, passthrough, lock,
replication...) with the limits of PVE 9.2's own schemas (qemu-server `PVE/QemuServer.pm`,
pve-container `PVE/LXC/Config.pm`). What PVE would only refuse at migration or start time is not
an error here (see `clusterfile`).

Imports: the standard library, the leaves `pvetool.units` and `pvetool.yamlcheck`, and the
emulator's `specs` and `clusterfile_checker`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pvetool.emulator.clusterfile_checker import (
    CONFIG_ID_RE,
    STORAGE_ID_RE,
    ClusterChecker,
    Draft,
    split_options,
    to_size,
)
from pvetool.emulator.specs import (
    DEFAULT_DIRTY,
    DEFAULT_RATE_WSS_BYTES,
    DIRTY_PROFILES,
    GUEST_STATUSES,
    GUEST_TYPES,
    HA_STATES,
    LXC_LOCKS,
    QEMU_LOCKS,
    QEMU_NIC_MODELS,
    VMID_MAX,
    VMID_MIN,
    DiskSpec,
    GuestSpec,
    NodeSpec,
)
from pvetool.units import MiB, format_size, parse_rate, parse_size
from pvetool.yamlcheck import (
    BROKEN,
    Invalid,
    Loc,
    describe,
    hint,
    hint_or_known,
    to_bool,
    to_enum,
    to_int,
    to_nonempty_str,
    to_number,
    to_pattern,
    to_str,
)

__all__ = ["check_guests", "parse_disk", "parse_drive"]

_QEMU_NET_OPTIONS = QEMU_NIC_MODELS | set(
    "bridge firewall link_down macaddr model mtu queues rate tag trunks".split()
)
_LXC_NET_OPTIONS = frozenset(
    """bridge firewall gw gw6 host-managed hwaddr ip ip6 link_down mtu name rate tag trunks
    type""".split()
)
# Highest index of numbered config keys (qemu-server / pve-container schemas).
_QEMU_DISK_SLOTS = {"scsi": 30, "virtio": 15, "sata": 5, "ide": 3}
_QEMU_SINGLE_DISKS = ("efidisk0", "tpmstate0")
_LXC_MP_MAX = 255
_NET_MAX = 31
_GUEST_INDEXED = {
    "net": _NET_MAX,
    "hostpci": 15,
    "usb": 14,
    "serial": 3,
    "parallel": 2,
    "virtiofs": 9,
}
_QEMU_ONLY = "agent cpu hostpci usb serial parallel virtiofs migrate_speed migrate_downtime".split()
_GUEST_KEYS = tuple(
    """
    type name node status cores memory used dirty wss disks agent tags pool ha lock template
    cpu replicate onboot description migrate_speed migrate_downtime
    """.split()
)
_UNUSED_MAX = 255
ISO_DEFAULT_BYTES = 650 * MiB
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-+.]*")
_POOL_RE = re.compile(r"[A-Za-z0-9.\-_]+")
_PCI_ID_RE = re.compile(
    r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?"
    r"(?:;(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?)*"
)
_USB_HOST_RE = re.compile(r"spice|[0-9a-fA-F]{4}:[0-9a-fA-F]{4}|\d+-\d+(?:\.\d+)*")
_SERIAL_RE = re.compile(r"/dev/[^,]+|socket")
_CPU_RE = re.compile(r"(?:cputype=)?[A-Za-z0-9_.\-]+(?:,[A-Za-z0-9_\-]+=[^,]*)*")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def _unused_key(key: str) -> bool:
    match = re.fullmatch(r"unused(0|[1-9]\d*)", key)
    return bool(match and int(match.group(1)) <= _UNUSED_MAX)


def _qemu_disk_key(key: str) -> bool:
    if key in _QEMU_SINGLE_DISKS or _unused_key(key):
        return True
    match = re.fullmatch(r"([a-z]+)(0|[1-9]\d*)", key)
    return bool(
        match
        and match.group(1) in _QEMU_DISK_SLOTS
        and int(match.group(2)) <= _QEMU_DISK_SLOTS[match.group(1)]
    )


def _lxc_disk_key(key: str) -> bool:
    match = re.fullmatch(r"mp(0|[1-9]\d*)", key)
    return key == "rootfs" or _unused_key(key) or bool(match and int(match.group(1)) <= _LXC_MP_MAX)


def parse_disk(text: str) -> tuple[str, int]:
    """(storage, size) of ``ceph:32G``, ``local-lvm:100G,ssd=1``, ``ceph:vm-1-disk-0,size=32G``."""
    spec = parse_drive("scsi0", text)
    return spec.storage, spec.size_bytes


def parse_drive(key: str, text: str) -> DiskSpec:
    """A disk (``ceph:32G``, ``local-lvm:100G,ssd=1``, ``ceph:vm-1-disk-0,size=32G``) or a
    CD-ROM drive (``local:iso/debian-13.iso,media=cdrom``, ``none,media=cdrom``) of `key`."""
    head, _, rest = text.partition(",")
    storage, colon, volume = head.partition(":")
    options = dict((k, v) for k, v in split_options(rest) if v is not None) if rest else {}
    if options.get("media") == "cdrom":
        if head.strip() in ("none", "cdrom") and not colon:
            return DiskSpec(key=key, storage="", size_bytes=0, cdrom=True, iso=None)
        if (
            not colon
            or not STORAGE_ID_RE.fullmatch(storage.strip())
            or not re.fullmatch(r"iso/[^/,]+\.(?:iso|img)", volume.strip())
        ):
            raise Invalid(
                f"expected a CD-ROM like 'local:iso/debian-13.iso,media=cdrom' or "
                f"'none,media=cdrom', got {text!r}"
            )
        # PVE records an attached ISO's size in the drive (`ide2: local:iso/x.iso,media=cdrom,
        # size=650M`); the precondition's local_disks then carry it (the schema requires it).
        size = ISO_DEFAULT_BYTES
        if "size" in options:
            try:
                size = parse_size(options["size"].strip())
            except ValueError:
                raise Invalid(f"expected a size like 600M, got {options['size']!r}") from None
        return DiskSpec(
            key=key, storage=storage.strip(), size_bytes=size, cdrom=True, iso=volume.strip()
        )
    if not colon or not STORAGE_ID_RE.fullmatch(storage.strip()):
        raise Invalid(f"expected STORAGE:SIZE like 'ceph:32G', got {text!r}")
    size_text = options.get("size", volume)
    try:
        size = parse_size(size_text.strip())
    except ValueError:
        raise Invalid(f"expected STORAGE:SIZE like 'ceph:32G', got {text!r}") from None
    if size <= 0:
        raise Invalid(f"a disk needs a positive size, got {text!r}")
    return DiskSpec(key=key, storage=storage.strip(), size_bytes=size, unused=_unused_key(key))


def check_guests(ck: ClusterChecker, loc: Loc | None, draft: Draft) -> None:
    if loc is None:
        return
    guests = ck.mapping(loc, "guests", "a mapping of vmid to guest")
    if guests is None:
        return
    all_bridges = {b for node in draft.nodes.values() for b in node.bridges}
    if len(draft.nodes) < len(draft.node_names):  # a broken node might define any bridge
        all_bridges = set()
    specs: dict[int, GuestSpec] = {}
    for key, g_loc in guests.items():
        path = f"guests.{key}"
        key_line = (loc.key_lines or {}).get(key, g_loc.line)
        if not re.fullmatch(r"\d+", key) or not VMID_MIN <= int(key) <= VMID_MAX:
            ck.add(key_line, path, f"a vmid must be an integer {VMID_MIN}..{VMID_MAX}, got '{key}'")
            _check_guest(ck, g_loc, path, 0, draft, all_bridges)  # its other problems too
            continue
        vmid = int(key)
        if vmid in specs or vmid in draft.guest_locs:
            ck.add(key_line, path, f"vmid {vmid} is used twice")
            continue
        draft.guest_locs[vmid] = g_loc
        spec = _check_guest(ck, g_loc, path, vmid, draft, all_bridges)
        if spec is not None:
            specs[vmid] = spec
    draft.guests = dict(sorted(specs.items()))


def _check_guest(
    ck: ClusterChecker, loc: Loc, path: str, vmid: int, draft: Draft, all_bridges: set[str]
) -> GuestSpec | None:
    values = ck.fields(
        loc,
        path,
        _GUEST_KEYS,
        required=("type", "node"),
        indexed=_GUEST_INDEXED,
        hints=_guest_key_hint,
    )
    if values is None:
        return None
    # The order of the checks is the order of the problems of a guest written on one line.
    gtype, node, template, status = _check_identity(ck, values, loc, path, draft)
    running = status == "running"
    node_spec = draft.nodes.get(node) if node else None
    cores, memory, used = _check_size(ck, values, path, node_spec, running)
    rate, wss = _check_dirty(ck, values, path)
    disks = _check_disks(ck, values, loc, path, gtype, node, draft)
    nets = _check_nets(ck, values, path, gtype, all_bridges)

    ha = _check_ha(ck, values, path, running, template)
    hostpci = _check_passthrough(ck, values, path, "hostpci", _check_hostpci)
    usb = _check_passthrough(ck, values, path, "usb", _check_usb)
    serial = _check_passthrough(ck, values, path, "serial", _check_serial)
    parallel = _check_passthrough(ck, values, path, "parallel", _check_parallel)
    virtiofs = _check_passthrough(ck, values, path, "virtiofs", _check_virtiofs)

    lock = None
    if gtype is not None:
        lock = ck.opt(values, "lock", path, to_enum(QEMU_LOCKS if gtype == "qemu" else LXC_LOCKS))
    tags = ck.str_list(values, "tags", path, _to_tag)
    replicate = _check_replicate(ck, values, path, node, disks, draft)
    default_name = f"VM {vmid}" if gtype != "lxc" else f"CT{vmid}"
    return GuestSpec(
        vmid=vmid,
        type=gtype or "qemu",
        name=ck.get(values, "name", path, to_nonempty_str, default_name),
        node=node or "",
        status=status,
        cores=cores,
        memory_bytes=memory if memory is not None else 512 * MiB,
        used_bytes=used,
        dirty_rate_Bps=rate,
        wss_bytes=wss,
        disks=disks,
        nets=nets,
        agent=ck.get(values, "agent", path, to_bool, False),
        tags=tuple(t for _, t in tags or ()),
        pool=ck.opt(values, "pool", path, _to_pool),
        ha=ha.enabled,
        ha_state=ha.state,
        ha_max_relocate=ha.max_relocate,
        ha_failback=ha.failback,
        ha_max_restart=ha.max_restart,
        hostpci=hostpci,
        usb=usb,
        serial=serial,
        parallel=parallel,
        virtiofs=virtiofs,
        migrate_speed_MiBps=float(ck.get(values, "migrate_speed", path, to_int(0, 1 << 40), 0)),
        migrate_downtime_s=ck.opt(values, "migrate_downtime", path, _to_downtime),
        lock=lock,
        template=template,
        cpu=ck.opt(values, "cpu", path, _to_cpu),
        replicate=replicate,
        onboot=ck.get(values, "onboot", path, to_bool, False),
        description=ck.get(values, "description", path, to_str, ""),
    )


_to_tag = to_pattern(_TAG_RE, "a tag of letters, digits, _ - + .", numbers=True)
_to_pool = to_pattern(_POOL_RE, "a pool name", numbers=True)
_to_cpu = to_pattern(_CPU_RE, "a CPU type like host", numbers=True)


def _check_identity(
    ck: ClusterChecker, values: dict[str, Loc], loc: Loc, path: str, draft: Draft
) -> tuple[str | None, str | None, bool, str]:
    """(type, node, template, status); the node is None unless the file defines it."""
    gtype = ck.opt(values, "type", path, to_enum(GUEST_TYPES))
    node = ck.opt(values, "node", path, to_str)
    if node is not None and not ck.reference(
        values["node"], f"{path}.node", node, draft.known_nodes, "node"
    ):
        node = None
    template = ck.get(values, "template", path, to_bool, False)
    status = ck.get(
        values, "status", path, to_enum(GUEST_STATUSES), "stopped" if template else "running"
    )
    if template and status == "running":
        ck.at(values, "status", path, "a template cannot be running")
    # Options that exist only for one guest type.
    if gtype == "lxc":
        for key in values:
            base = re.sub(r"\d+$", "", key) if key not in _GUEST_KEYS else key
            if base in _QEMU_ONLY:
                line = (loc.key_lines or {}).get(key, loc.line)
                ck.add(line, path, f"'{key}' is a VM option; containers do not have it")
    return gtype, node, template, status


def _check_size(
    ck: ClusterChecker,
    values: dict[str, Loc],
    path: str,
    node_spec: NodeSpec | None,
    running: bool,
) -> tuple[int, int | None, int | None]:
    """(cores, memory, used memory) of a guest, each within what its node and PVE allow."""
    cores = ck.get(values, "cores", path, to_int(1, 8192), 1)
    if node_spec is not None and "cores" in values and cores > node_spec.cpus:
        ck.at(
            values,
            "cores",
            path,
            f"{cores} cores exceed the {node_spec.cpus} CPUs of node {node_spec.name}",
        )
    memory = ck.opt(values, "memory", path, to_size)
    if memory is not None and memory < 16 * MiB:
        ck.at(
            values,
            "memory",
            path,
            f"{format_size(memory)} is below the 16MiB minimum (did you forget a unit?)",
        )
    used = ck.opt(values, "used", path, to_size)
    if used is not None:
        if not running:
            ck.at(values, "used", path, "a stopped guest uses no memory")
        elif memory is not None and used > memory:
            ck.at(
                values,
                "used",
                path,
                f"{format_size(used)} used is more than the {format_size(memory)} of memory",
            )
    return cores, memory, used


def _guest_key_hint(key: str) -> str | None:
    if _qemu_disk_key(key) or _lxc_disk_key(key):
        return f" (disks go under 'disks', e.g. disks: {{{key}: 'ceph:32G'}})"
    return None


def _check_dirty(ck: ClusterChecker, values: dict[str, Loc], path: str) -> tuple[float, float]:
    rate, wss = DIRTY_PROFILES[DEFAULT_DIRTY]
    loc = values.get("dirty")
    if loc is not None and loc.value is not BROKEN:
        if isinstance(loc.value, str) and loc.value in DIRTY_PROFILES:
            rate, wss = DIRTY_PROFILES[loc.value]
        else:
            try:
                if isinstance(loc.value, bool) or not isinstance(loc.value, str | int | float):
                    raise ValueError
                rate, wss = parse_rate(loc.value), float(DEFAULT_RATE_WSS_BYTES)
            except ValueError:
                suffix = hint(loc.value, DIRTY_PROFILES) if isinstance(loc.value, str) else ""
                ck.add(
                    loc,
                    f"{path}.dirty",
                    f"expected idle, moderate, hot or a rate like 120MiB/s, got "
                    f"{describe(loc)}{suffix}",
                )
    wss_bytes = ck.opt(values, "wss", path, to_size)
    return rate, float(wss_bytes) if wss_bytes is not None else wss


def _check_disks(
    ck: ClusterChecker,
    values: dict[str, Loc],
    guest_loc: Loc,
    path: str,
    gtype: str | None,
    node: str | None,
    draft: Draft,
) -> tuple[DiskSpec, ...]:
    loc = values.get("disks")
    if loc is None:
        if gtype == "lxc":
            ck.add(guest_loc, path, "a container needs a 'rootfs' disk in 'disks'")
        return ()
    disks_path = f"{path}.disks"
    entries = ck.mapping(loc, disks_path, "a mapping like {scsi0: 'ceph:32G'}")
    if entries is None:
        return ()
    if gtype == "lxc" and "rootfs" not in entries:
        ck.add(loc, disks_path, "a container needs a 'rootfs' disk")
    out: list[DiskSpec] = []
    for key, d_loc in entries.items():
        key_path = f"{disks_path}.{key}"
        key_line = (loc.key_lines or {}).get(key, d_loc.line)
        if gtype == "qemu" and not _qemu_disk_key(key):
            ck.add(
                key_line,
                key_path,
                f"'{key}' is not a VM disk; VM disks are scsi0-30, "
                "virtio0-15, sata0-5, ide0-3, efidisk0, tpmstate0 and unused0-255",
            )
            continue
        if gtype == "lxc" and not _lxc_disk_key(key):
            ck.add(
                key_line,
                key_path,
                f"'{key}' is not a container disk; container disks are rootfs, mp0-255 and "
                "unused0-255",
            )
            continue
        text = ck.convert(d_loc, key_path, to_str)
        if text is None:
            continue
        try:
            disk = parse_drive(key, text)
        except Invalid as exc:
            ck.add(d_loc, key_path, str(exc))
            continue
        if disk.cdrom and (gtype == "lxc" or _unused_key(key) or key in _QEMU_SINGLE_DISKS):
            ck.add(d_loc, key_path, f"'{key}' cannot be a CD-ROM drive")
            continue
        out.append(disk)
        if not disk.storage:
            continue
        if not ck.reference(d_loc, key_path, disk.storage, draft.known_storages, "storage"):
            continue
        storage = disk.storage
        st = draft.storages.get(storage)
        if st is None:
            continue
        needed = "iso" if disk.cdrom else "rootdir" if gtype == "lxc" else "images"
        if gtype is not None and needed not in st.content:
            ck.add(
                d_loc,
                key_path,
                f"storage '{storage}' does not hold {needed} (content: {','.join(st.content)})",
            )
        if node is not None and st.nodes is not None and node not in st.nodes:
            where = "local storage" if not st.shared else "storage"
            ck.add(
                d_loc,
                key_path,
                f"{where} '{storage}' is not available on node {node} "
                f"(only on {', '.join(st.nodes)})",
            )
    return tuple(out)


def _check_nets(
    ck: ClusterChecker, values: dict[str, Loc], path: str, gtype: str | None, all_bridges: set[str]
) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, loc in values.items():
        if not re.fullmatch(r"net\d+", key):
            continue
        key_path = f"{path}.{key}"
        text = ck.convert(loc, key_path, to_str)
        if text is None:
            continue
        out.append((key, text))
        items = split_options(text)
        options = {k: v for k, v in items}
        allowed = _QEMU_NET_OPTIONS if gtype == "qemu" else _LXC_NET_OPTIONS
        example = "virtio,bridge=vmbr0" if gtype != "lxc" else "name=eth0,bridge=vmbr0,ip=dhcp"
        problems: list[str] = []
        for i, (opt, val) in enumerate(items):
            if gtype == "qemu" and i == 0 and opt in QEMU_NIC_MODELS:
                if val is not None and not _MAC_RE.fullmatch(val):
                    problems.append(f"'{val}' is not a MAC address")
                continue
            if val is None or (gtype is not None and opt not in allowed):
                problems.append(f"unknown option '{opt}'{hint(opt, allowed)}")
        if (
            gtype == "qemu"
            and not (items and items[0][0] in QEMU_NIC_MODELS)
            and "model" not in options
        ):
            problems.append("the first item must be the NIC model (e.g. virtio)")
        if gtype == "lxc" and not options.get("name"):
            problems.append("a container NIC needs name= (e.g. name=eth0)")
        bridge = options.get("bridge")
        if not bridge:
            problems.append("bridge= is required")
        for message in problems:
            ck.add(loc, key_path, f"{message}; expected something like '{example}'")
        if bridge and all_bridges and bridge not in all_bridges:
            # Missing on the guest's own node is fine (PVE fails at start/migration), but a bridge
            # that no node has is a typo.
            ck.add(
                loc,
                key_path,
                f"bridge '{bridge}' is not defined on any node{hint_or_known(bridge, all_bridges)}",
            )
    return tuple(out)


@dataclass(frozen=True)
class _Ha:
    enabled: bool = False
    state: str = ""
    max_relocate: int = 1
    max_restart: int = 1
    failback: bool = True  # pve-ha-manager src/PVE/HA/Resources.pm: failback default 1


def _check_ha(
    ck: ClusterChecker, values: dict[str, Loc], path: str, running: bool, template: bool
) -> _Ha:
    loc = values.get("ha")
    if loc is None or loc.value is BROKEN:
        return _Ha()
    default_state = "started" if running else "stopped"
    if isinstance(loc.value, dict):
        ha_values = ck.fields(
            loc, f"{path}.ha", ("state", "max_relocate", "max_restart", "failback")
        )
        if ha_values is None:
            return _Ha()
        ha = _Ha(
            enabled=True,
            state=ck.get(ha_values, "state", f"{path}.ha", to_enum(HA_STATES), default_state),
            max_relocate=ck.get(ha_values, "max_relocate", f"{path}.ha", to_int(0, 10), 1),
            max_restart=ck.get(ha_values, "max_restart", f"{path}.ha", to_int(0, 10), 1),
            failback=ck.get(ha_values, "failback", f"{path}.ha", to_bool, True),
        )
    else:
        flag = ck.convert(loc, f"{path}.ha", _to_bool_or_mapping)
        if not flag:
            return _Ha()
        ha = _Ha(enabled=True, state=default_state)
    if template:
        ck.add(loc, f"{path}.ha", "a template cannot be an HA resource")
    if running and ha.state in ("stopped", "disabled"):
        ck.add(
            loc, f"{path}.ha", f"the guest is running but its HA state '{ha.state}' would stop it"
        )
    elif not running and ha.state in ("started", "enabled"):
        ck.add(
            loc, f"{path}.ha", f"the guest is stopped but its HA state '{ha.state}' would start it"
        )
    return ha


def _to_bool_or_mapping(loc: Loc) -> bool:
    try:
        return to_bool(loc)
    except Invalid:
        raise Invalid(
            f"expected true, false or a mapping like {{state: started, max_relocate: 1}}, "
            f"got {describe(loc)}"
        ) from None


def _check_passthrough(
    ck: ClusterChecker,
    values: dict[str, Loc],
    path: str,
    prefix: str,
    check: Callable[[str], str | None],
) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, loc in values.items():
        if not re.fullmatch(rf"{prefix}\d+", key):
            continue
        text = ck.convert(loc, f"{path}.{key}", to_str)
        if text is None:
            continue
        problem = check(text)
        if problem:
            ck.add(loc, f"{path}.{key}", problem)
        out.append((key, text))
    return tuple(out)


def _check_hostpci(text: str) -> str | None:
    items = split_options(text)
    options = {k: v for k, v in items if v is not None}
    host = items[0][0] if items and items[0][1] is None else options.get("host")
    mapping = options.get("mapping")
    expected = "expected a PCI address like '0000:01:00.0' or a mapping like 'mapping=gpu1'"
    if host and mapping:
        return f"host and mapping= exclude each other; {expected}"
    if mapping is not None:
        return None if CONFIG_ID_RE.fullmatch(mapping) else f"{expected}, got {text!r}"
    if host is None or not _PCI_ID_RE.fullmatch(host):
        return f"{expected}, got {text!r}"
    return None


def _check_usb(text: str) -> str | None:
    items = split_options(text)
    options = {k: v for k, v in items if v is not None}
    host = items[0][0] if items and items[0][1] is None else options.get("host")
    if options.get("mapping") is not None and host is None:
        return None
    if host is None or not _USB_HOST_RE.fullmatch(host):
        return (
            "expected host=VENDOR:PRODUCT (e.g. host=1050:0407), host=BUS-PORT, spice or "
            f"mapping=ID, got {text!r}"
        )
    return None


def _check_parallel(text: str) -> str | None:
    if re.fullmatch(r"/dev/parport\d+|/dev/usb/lp\d+", text):
        return None
    return f"expected a host device like '/dev/parport0', got {text!r}"


def _check_virtiofs(text: str) -> str | None:
    options = dict((k, v) for k, v in split_options(text) if v is not None)
    dirid = options.get("dirid") or (text if "=" not in text else None)
    if dirid and CONFIG_ID_RE.fullmatch(dirid):
        return None
    return f"expected a directory mapping like 'dirid=share', got {text!r}"


def _to_downtime(loc: Loc) -> float:
    value = to_number(loc)
    if not 0 <= value <= 2000:
        raise Invalid(f"expected seconds 0..2000 (qemu migrate_downtime), got {value}")
    return value


def _check_serial(text: str) -> str | None:
    if _SERIAL_RE.fullmatch(text):
        return None
    return f"expected 'socket' or a host device like '/dev/ttyS0', got {text!r}"


def _check_replicate(
    ck: ClusterChecker,
    values: dict[str, Loc],
    path: str,
    node: str | None,
    disks: tuple[DiskSpec, ...],
    draft: Draft,
) -> tuple[str, ...]:
    listed = ck.str_list(values, "replicate", path)
    if not listed:
        return ()
    targets: list[str] = []
    for i, (item, target) in enumerate(listed):
        item_path = f"{path}.replicate[{i}]"
        if not ck.reference(item, item_path, target, draft.known_nodes, "node"):
            continue
        if target == node:
            ck.add(item, item_path, f"a guest on {node} cannot replicate to its own node")
        elif target in targets:
            ck.add(item, item_path, f"node {target} is listed twice")
        else:
            targets.append(target)
    for disk in disks:
        st = draft.storages.get(disk.storage)
        if st is not None and st.type != "zfspool":
            ck.at(
                values,
                "replicate",
                path,
                f"replication needs every disk on zfspool storage; {disk.key} is on "
                f"{st.type} storage '{st.name}'",
            )
    return tuple(targets)
