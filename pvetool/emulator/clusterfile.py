"""Cluster files for the emulator: the schema, read from YAML into frozen specs.

A cluster file describes what the emulated Proxmox VE cluster holds: nodes, storages, guests,
HA rules, API tokens and users, datacenter options and timing overrides (format: the built-in
``lab`` in ``data/lab.yaml`` documents every key). ``load_cluster`` / ``load_cluster_text``
check the whole file and raise one ``ClusterFileError`` that lists *every* problem, each as
``file:line: key.path: message``, so a scenario author fixes them in one go. What PVE itself would
only refuse at migration or start time (a bridge missing on one node, a PCI device, a local disk)
is *not* an error here: the emulator must be able to show those refusals.

Defaults worth knowing: a guest is ``running`` (a template ``stopped``), ``idle``, not HA
(``ha_state`` ""), with ``used_bytes`` None (the emulator derives it). Without ``tokens`` and
``users`` the cluster has token ``root@pam!pvetool`` and user ``root@pam``, their secrets derived
from ``seed``. A token without ``privileges`` has its user's; a user other than root@pam without
``privileges`` has none. Secrets never appear in a repr.

Big cluster files for benchmarks come from `emulator.fleet.generate_cluster`.

Imports: the standard library and the standard-library-only leaves ``pvetool.units``,
``pvetool.yamlcheck`` and, lazily, ``pvetool.timing`` (for the names and limits of timing
overrides); nothing else from pvetool.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import random
import re
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pvetool.units import GiB, MiB, format_size, parse_link, parse_rate, parse_size
from pvetool.yamlcheck import (
    BROKEN,
    Checker,
    Conv,
    Invalid,
    Loc,
    Problems,
    describe,
    hint,
    hint_or_known,
    join,
    read_document,
    to_bool,
    to_cidr,
    to_enum,
    to_int,
    to_nonempty_str,
    to_number,
    to_pattern,
    to_str,
)

T = TypeVar("T")

__all__ = [
    "ClusterFileError",
    "ClusterSpec",
    "DatacenterSpec",
    "DiskSpec",
    "GuestSpec",
    "HaRuleSpec",
    "NodeSpec",
    "StorageSpec",
    "TokenSpec",
    "UserSpec",
    "load_cluster",
    "load_cluster_text",
    "parse_disk",
]

BUILTIN_CLUSTERS = ("lab",)

# Dirty profiles (rate D in B/s, writable working set W in bytes). The same numbers as
# pvetool.timing.DIRTY_PROFILES / docs/timing-model.md; a unit test keeps the two in step.
DIRTY_PROFILES: dict[str, tuple[float, float]] = {
    "idle": (2.0 * MiB, 256.0 * MiB),
    "moderate": (40.0 * MiB, 1.0 * GiB),
    "hot": (400.0 * MiB, 4.0 * GiB),
}
DEFAULT_DIRTY = "idle"
DEFAULT_RATE_WSS_BYTES = 1 * GiB  # W when `dirty` is an explicit rate and `wss` is not given

# The privileges of PVE 9.2 (GET /access/roles/{roleid} of the 9.2 API schema). VM.Monitor is
# gone since PVE 9.
PRIVILEGES: frozenset[str] = frozenset(
    """
    Datastore.Allocate Datastore.AllocateSpace Datastore.AllocateTemplate Datastore.Audit
    Group.Allocate Mapping.Audit Mapping.Modify Mapping.Use Permissions.Modify Pool.Allocate
    Pool.Audit Realm.Allocate Realm.AllocateUser SDN.Allocate SDN.Audit SDN.Use
    Sys.AccessNetwork Sys.Audit Sys.Console Sys.Incoming Sys.Modify Sys.PowerMgmt Sys.Syslog
    User.Modify VM.Allocate VM.Audit VM.Backup VM.Clone VM.Config.CDROM VM.Config.CPU
    VM.Config.Cloudinit VM.Config.Disk VM.Config.HWType VM.Config.Memory VM.Config.Network
    VM.Config.Options VM.Console VM.GuestAgent.Audit VM.GuestAgent.FileRead
    VM.GuestAgent.FileSystemMgmt VM.GuestAgent.FileWrite VM.GuestAgent.Unrestricted VM.Migrate
    VM.PowerMgmt VM.Replicate VM.Snapshot VM.Snapshot.Rollback
    """.split()
)

# Storage types of the 9.2 schema, plus "drbd" (the LINSTOR plugin, as in the calibration log).
_ALWAYS_SHARED = frozenset("rbd cephfs nfs cifs pbs iscsi iscsidirect zfs esxi drbd".split())
_NEVER_SHARED = frozenset({"lvmthin", "zfspool", "btrfs"})
STORAGE_TYPES = _ALWAYS_SHARED | _NEVER_SHARED | {"dir", "lvm"}
CONTENT_TYPES = frozenset("images rootdir iso vztmpl backup snippets import".split())

GUEST_TYPES = ("qemu", "lxc")
GUEST_STATUSES = ("running", "stopped")
HA_STATES = ("started", "stopped", "enabled", "disabled", "ignored")
QEMU_LOCKS = tuple(
    "backup clone create migrate rollback snapshot snapshot-delete suspending suspended".split()
)
LXC_LOCKS = tuple(
    "backup create destroyed disk fstrim migrate mounted rollback snapshot snapshot-delete".split()
)
QEMU_NIC_MODELS = frozenset(
    """e1000 e1000-82540em e1000-82544gc e1000-82545em e1000e i82551 i82557b i82559er ne2k_isa
    ne2k_pci pcnet rtl8139 virtio vmxnet3""".split()
)
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
_GUEST_INDEXED = {"net": _NET_MAX, "hostpci": 15, "usb": 14, "serial": 3}
_QEMU_ONLY = ("agent", "cpu", "hostpci", "usb", "serial")
MIGRATION_TYPES = ("secure", "insecure")
SHUTDOWN_POLICIES = ("freeze", "failover", "conditional", "migrate")
ARCHES = ("x86_64", "aarch64")
HA_RULE_TYPES = ("node-affinity", "resource-affinity")
AFFINITIES = ("positive", "negative")
VMID_MIN, VMID_MAX = 100, 999_999_999


# --- public specs ------------------------------------------------------------------------------


class ClusterFileError(Exception):
    """A cluster file cannot be used; ``problems`` holds one ``file:line: path: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"The cluster file has {count} {noun}:\n" + "\n".join(self.problems))


@dataclass(frozen=True)
class DiskSpec:
    key: str  # scsi0, virtio1, efidisk0, rootfs, mp0, ...
    storage: str
    size_bytes: int


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpus: int
    memory_bytes: int
    link_bits_per_s: float
    version: str
    cpu_model: str
    online: bool
    arch: str
    bridges: tuple[str, ...]
    maintenance: bool  # HA maintenance mode (ha-manager crm-command node-maintenance enable)


@dataclass(frozen=True)
class StorageSpec:
    name: str
    type: str
    shared: bool
    size_bytes: int
    nodes: tuple[str, ...] | None  # None: available on every node
    content: tuple[str, ...]


@dataclass(frozen=True)
class GuestSpec:
    vmid: int
    type: str  # qemu | lxc
    name: str
    node: str
    status: str  # running | stopped
    cores: int
    memory_bytes: int
    used_bytes: int | None  # None: the emulator derives it
    dirty_rate_Bps: float
    wss_bytes: float
    disks: tuple[DiskSpec, ...]
    nets: tuple[tuple[str, str], ...]  # (net0, raw PVE property string)
    agent: bool
    tags: tuple[str, ...]
    pool: str | None
    ha: bool
    ha_state: str  # started|stopped|enabled|disabled|ignored; "" when not HA-managed
    ha_max_relocate: int
    hostpci: tuple[tuple[str, str], ...]  # (hostpci0, raw); "mapping=..." is a mapped device
    usb: tuple[tuple[str, str], ...]
    serial: tuple[tuple[str, str], ...]
    lock: str | None
    template: bool
    cpu: str | None  # qemu CPU type, e.g. "host"; None: PVE's default (x86-64-v2-AES)
    replicate: tuple[str, ...]  # target nodes of storage replication jobs
    onboot: bool
    description: str


@dataclass(frozen=True)
class HaRuleSpec:
    rule: str
    type: str  # node-affinity | resource-affinity
    resources: tuple[str, ...]  # "vm:101", "ct:200"
    affinity: str | None  # positive | negative (resource-affinity only)
    nodes: tuple[tuple[str, int], ...]  # (node, priority) (node-affinity only)
    strict: bool


@dataclass(frozen=True)
class TokenSpec:
    id: str  # user@realm!tokenid
    secret: str = field(repr=False)
    privileges: tuple[str, ...] | None  # None: all privileges


@dataclass(frozen=True)
class UserSpec:
    id: str  # user@realm
    password: str = field(repr=False)
    privileges: tuple[str, ...] | None  # None: all privileges


@dataclass(frozen=True)
class DatacenterSpec:
    migration_type: str = "secure"
    migration_network: str | None = None
    bwlimit_migration_KiBps: int = 0  # 0: unlimited
    max_workers: int = 4
    ha_shutdown_policy: str = "conditional"


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    seed: int
    datacenter: DatacenterSpec
    nodes: dict[str, NodeSpec]  # in file order
    storages: dict[str, StorageSpec]  # in file order
    guests: dict[int, GuestSpec]  # by ascending vmid
    ha_rules: tuple[HaRuleSpec, ...]
    tokens: tuple[TokenSpec, ...]
    users: tuple[UserSpec, ...]
    timing_overrides: dict[str, float]


def _to_size(loc: Loc) -> int:
    value = loc.value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(f"expected a size like 8GiB, got {describe(loc)}")
    try:
        return parse_size(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _to_link(loc: Loc) -> float:
    value = loc.value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(f"expected a link speed like 10Gbit, got {describe(loc)}")
    try:
        return parse_link(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


_NODE_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_STORAGE_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-_.]*[A-Za-z0-9]")
_CONFIG_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]+")
_CLUSTER_NAME_RE = re.compile(r"[A-Za-z0-9\-]{1,15}")
_BRIDGE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,14}")
_VERSION_RE = re.compile(r"\d+\.\d+(\.\d+)?([~+\-][A-Za-z0-9.~+\-]*)?")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-+.]*")
_POOL_RE = re.compile(r"[A-Za-z0-9.\-_]+")
_USER_RE = re.compile(r"[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]*")
_TOKEN_RE = re.compile(r"([^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]*)!([A-Za-z][A-Za-z0-9.\-_]*)")
_PCI_ID_RE = re.compile(
    r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?"
    r"(?:;(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?)*"
)
_USB_HOST_RE = re.compile(r"spice|[0-9a-fA-F]{4}:[0-9a-fA-F]{4}|\d+-\d+(?:\.\d+)*")
_SERIAL_RE = re.compile(r"/dev/[^,]+|socket")
_CPU_RE = re.compile(r"(?:cputype=)?[A-Za-z0-9_.\-]+(?:,[A-Za-z0-9_\-]+=[^,]*)*")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_RESOURCE_RE = re.compile(r"(vm|ct):(\d+)")


def _split_options(text: str) -> list[tuple[str, str | None]]:
    """PVE property string ``a,b=c,d=e`` -> [(a, None), (b, c), (d, e)]."""
    items: list[tuple[str, str | None]] = []
    for part in text.split(","):
        part = part.strip()
        if "=" in part:
            key, _, value = part.partition("=")
            items.append((key.strip(), value.strip()))
        else:
            items.append((part, None))
    return items


# --- the checker -------------------------------------------------------------------------------


class _Checker(Checker):
    """The shared checker, plus lists of strings and references to what a section defines."""

    def str_list(
        self, values: dict[str, Loc], key: str, path: str, conv: Conv[str] = to_str
    ) -> list[tuple[Loc, str]] | None:
        """A list of strings (a single string counts as a one-item list)."""
        loc = values.get(key)
        if loc is None:
            return None
        if loc.value is BROKEN:
            return None
        if isinstance(loc.value, list):
            items = loc.value
        elif isinstance(loc.value, str):
            items = [loc]
        else:
            self.add(loc, join(path, key), f"expected a list, got {describe(loc)}")
            return None
        out: list[tuple[Loc, str]] = []
        for i, item in enumerate(items):
            item_path = f"{join(path, key)}[{i}]" if isinstance(loc.value, list) else path
            value = self.convert(item, item_path, conv)
            if value is not None:
                out.append((item, value))
        return out

    def reference(
        self, loc: Loc, path: str, name: str, known: Collection[str] | None, what: str
    ) -> bool:
        """Whether ``name`` is known; None for ``known`` means the section is unreadable."""
        if known is None or name in known:
            return True
        self.add(loc, path, f"unknown {what} '{name}'{hint_or_known(name, known)}")
        return False


# --- sections ----------------------------------------------------------------------------------

_TOP_KEYS = tuple(
    """
    name seed datacenter nodes storages guests ha_rules tokens users timing
    """.split()
)
_NODE_KEYS = tuple(
    """
    cpus memory link version cpu_model online arch bridges maintenance
    """.split()
)
_STORAGE_KEYS = ("type", "shared", "size", "nodes", "content")
_GUEST_KEYS = tuple(
    """
    type name node status cores memory used dirty wss disks agent tags pool ha lock template
    cpu replicate onboot description
    """.split()
)
_RULE_KEYS = ("rule", "type", "resources", "affinity", "nodes", "strict")


@dataclass
class _Draft:
    """What the sections learned; cross-references use it even when a section had errors."""

    node_names: list[str] = field(default_factory=list)
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    storage_names: list[str] = field(default_factory=list)
    storages: dict[str, StorageSpec] = field(default_factory=dict)
    guests: dict[int, GuestSpec] = field(default_factory=dict)
    guest_locs: dict[int, Loc] = field(default_factory=dict)
    nodes_broken: bool = False  # the whole section is unreadable: do not flag references to it
    storages_broken: bool = False

    @property
    def known_nodes(self) -> list[str] | None:
        return None if self.nodes_broken else self.node_names

    @property
    def known_storages(self) -> list[str] | None:
        return None if self.storages_broken else self.storage_names


def _check_datacenter(ck: _Checker, loc: Loc | None) -> DatacenterSpec:
    if loc is None:
        return DatacenterSpec()
    path = "datacenter"
    values = ck.fields(loc, path, ("migration", "bwlimit", "max_workers", "ha"))
    if values is None:
        return DatacenterSpec()
    migration_type, network = "secure", None
    if "migration" in values:
        mig = ck.fields(values["migration"], f"{path}.migration", ("type", "network"))
        if mig is not None:
            migration_type = ck.get(
                mig, "type", f"{path}.migration", to_enum(MIGRATION_TYPES), "secure"
            )
            network = ck.opt(mig, "network", f"{path}.migration", to_cidr)
    bwlimit = 0
    if "bwlimit" in values:
        bw = ck.fields(values["bwlimit"], f"{path}.bwlimit", ("migration",))
        if bw is not None:
            bwlimit = ck.get(bw, "migration", f"{path}.bwlimit", to_int(0), 0)
    policy = "conditional"
    if "ha" in values:
        ha = ck.fields(values["ha"], f"{path}.ha", ("shutdown_policy",))
        if ha is not None:
            policy = ck.get(
                ha, "shutdown_policy", f"{path}.ha", to_enum(SHUTDOWN_POLICIES), "conditional"
            )
    return DatacenterSpec(
        migration_type=migration_type,
        migration_network=network,
        bwlimit_migration_KiBps=bwlimit,
        max_workers=ck.get(values, "max_workers", path, to_int(1, 1024), 4),
        ha_shutdown_policy=policy,
    )


def _check_nodes(ck: _Checker, loc: Loc | None, top_line: int, draft: _Draft) -> None:
    if loc is None:
        ck.add(top_line, "", "missing required key 'nodes'")
        return
    nodes = ck.mapping(loc, "nodes", "a mapping of node name to node")
    if nodes is None:
        draft.nodes_broken = True
        return
    if not nodes:
        ck.add(loc, "nodes", "a cluster needs at least one node")
    for name, node_loc in nodes.items():
        path = f"nodes.{name}"
        key_line = (loc.key_lines or {}).get(name, node_loc.line)
        if not _NODE_NAME_RE.fullmatch(name):
            ck.add(key_line, path, f"'{name}' is not a valid node (host) name")
            continue
        draft.node_names.append(name)
        values = ck.fields(node_loc, path, _NODE_KEYS, required=("cpus", "memory"))
        if values is None:
            continue
        memory = ck.opt(values, "memory", path, _to_size)
        if memory is not None and memory < GiB:
            ck.at(
                values,
                "memory",
                path,
                f"{format_size(memory)} is too little for a node (did you forget a unit?)",
            )
        bridges = ["vmbr0"]
        listed = ck.str_list(
            values, "bridges", path, to_pattern(_BRIDGE_RE, "a bridge name", numbers=True)
        )
        if listed is not None:
            bridges = []
            for item, bridge in listed:
                if bridge in bridges:
                    ck.add(item, f"{path}.bridges", f"bridge '{bridge}' is listed twice")
                bridges.append(bridge)
        draft.nodes[name] = NodeSpec(
            name=name,
            cpus=ck.get(values, "cpus", path, to_int(1, 8192), 1),
            memory_bytes=memory or GiB,
            link_bits_per_s=ck.get(values, "link", path, _to_link, 10e9),
            version=ck.get(
                values,
                "version",
                path,
                to_pattern(_VERSION_RE, "a PVE version like 9.2.4", numbers=True),
                "9.2.4",
            ),
            cpu_model=ck.get(
                values, "cpu_model", path, to_nonempty_str, "QEMU Virtual CPU version 2.5+"
            ),
            online=ck.get(values, "online", path, to_bool, True),
            arch=ck.get(values, "arch", path, to_enum(ARCHES), "x86_64"),
            bridges=tuple(dict.fromkeys(bridges)),
            maintenance=ck.get(values, "maintenance", path, to_bool, False),
        )


def _check_storages(ck: _Checker, loc: Loc | None, draft: _Draft) -> None:
    if loc is None:
        return
    storages = ck.mapping(loc, "storages", "a mapping of storage id to storage")
    if storages is None:
        draft.storages_broken = True
        return
    for name, st_loc in storages.items():
        path = f"storages.{name}"
        key_line = (loc.key_lines or {}).get(name, st_loc.line)
        if not _STORAGE_ID_RE.fullmatch(name):
            ck.add(key_line, path, f"'{name}' is not a valid storage id")
            continue
        draft.storage_names.append(name)
        values = ck.fields(st_loc, path, _STORAGE_KEYS, required=("type", "size"))
        if values is None:
            continue
        stype = ck.opt(values, "type", path, to_enum(sorted(STORAGE_TYPES)))
        shared = ck.opt(values, "shared", path, to_bool)
        if stype is not None and shared is not None:
            if shared and stype in _NEVER_SHARED:
                ck.at(
                    values,
                    "shared",
                    path,
                    f"a {stype} storage is local to one node and cannot be shared",
                )
            if not shared and stype in _ALWAYS_SHARED:
                ck.at(values, "shared", path, f"a {stype} storage is always shared")
        if shared is None:
            shared = stype in _ALWAYS_SHARED
        nodes: tuple[str, ...] | None = None
        listed = ck.str_list(values, "nodes", path)
        if listed is not None:
            nodes = tuple(dict.fromkeys(n for _, n in listed))
            for i, (item, node) in enumerate(listed):
                ck.reference(item, f"{path}.nodes[{i}]", node, draft.known_nodes, "node")
        content: tuple[str, ...] = ("images", "rootdir")
        listed = ck.str_list(values, "content", path, to_enum(sorted(CONTENT_TYPES)))
        if listed is not None:
            content = tuple(dict.fromkeys(c for _, c in listed))
        draft.storages[name] = StorageSpec(
            name=name,
            type=stype or "dir",
            shared=shared,
            size_bytes=ck.get(values, "size", path, _to_size, 0),
            nodes=nodes,
            content=content,
        )


def _qemu_disk_key(key: str) -> bool:
    if key in _QEMU_SINGLE_DISKS:
        return True
    match = re.fullmatch(r"([a-z]+)(0|[1-9]\d*)", key)
    return bool(
        match
        and match.group(1) in _QEMU_DISK_SLOTS
        and int(match.group(2)) <= _QEMU_DISK_SLOTS[match.group(1)]
    )


def _lxc_disk_key(key: str) -> bool:
    match = re.fullmatch(r"mp(0|[1-9]\d*)", key)
    return key == "rootfs" or bool(match and int(match.group(1)) <= _LXC_MP_MAX)


def parse_disk(text: str) -> tuple[str, int]:
    """(storage, size) of ``ceph:32G``, ``local-lvm:100G,ssd=1``, ``ceph:vm-1-disk-0,size=32G``."""
    head, _, rest = text.partition(",")
    storage, colon, volume = head.partition(":")
    options = dict((k, v) for k, v in _split_options(rest) if v is not None) if rest else {}
    if not colon or not _STORAGE_ID_RE.fullmatch(storage.strip()):
        raise Invalid(f"expected STORAGE:SIZE like 'ceph:32G', got {text!r}")
    if options.get("media") == "cdrom":
        raise Invalid("CD-ROM drives are not modelled; list only disks")
    size_text = options.get("size", volume)
    try:
        size = parse_size(size_text.strip())
    except ValueError:
        raise Invalid(f"expected STORAGE:SIZE like 'ceph:32G', got {text!r}") from None
    if size <= 0:
        raise Invalid(f"a disk needs a positive size, got {text!r}")
    return storage.strip(), size


def _check_guests(ck: _Checker, loc: Loc | None, draft: _Draft) -> None:
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
    ck: _Checker, loc: Loc, path: str, vmid: int, draft: _Draft, all_bridges: set[str]
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
    gtype = ck.opt(values, "type", path, to_enum(GUEST_TYPES))
    node = ck.opt(values, "node", path, to_str)
    if node is not None and not ck.reference(
        values["node"], f"{path}.node", node, draft.known_nodes, "node"
    ):
        node = None
    node_spec = draft.nodes.get(node) if node else None
    template = ck.get(values, "template", path, to_bool, False)
    status = ck.get(
        values, "status", path, to_enum(GUEST_STATUSES), "stopped" if template else "running"
    )
    if template and status == "running":
        ck.at(values, "status", path, "a template cannot be running")
    running = status == "running"

    # Options that exist only for one guest type.
    if gtype == "lxc":
        for key in values:
            base = re.sub(r"\d+$", "", key) if key not in _GUEST_KEYS else key
            if base in _QEMU_ONLY:
                line = (loc.key_lines or {}).get(key, loc.line)
                ck.add(line, path, f"'{key}' is a VM option; containers do not have it")

    cores = ck.get(values, "cores", path, to_int(1, 8192), 1)
    if node_spec is not None and "cores" in values and cores > node_spec.cpus:
        ck.at(
            values,
            "cores",
            path,
            f"{cores} cores exceed the {node_spec.cpus} CPUs of node {node_spec.name}",
        )
    memory = ck.opt(values, "memory", path, _to_size)
    if memory is not None and memory < 16 * MiB:
        ck.at(
            values,
            "memory",
            path,
            f"{format_size(memory)} is below the 16MiB minimum (did you forget a unit?)",
        )
    used = ck.opt(values, "used", path, _to_size)
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

    rate, wss = _check_dirty(ck, values, path)
    disks = _check_disks(ck, values, loc, path, gtype, node, draft)
    nets = _check_nets(ck, values, path, gtype, all_bridges)

    ha, ha_state, max_relocate = _check_ha(ck, values, path, running, template)
    hostpci = _check_passthrough(ck, values, path, "hostpci", _check_hostpci)
    usb = _check_passthrough(ck, values, path, "usb", _check_usb)
    serial = _check_passthrough(ck, values, path, "serial", _check_serial)

    lock = None
    if gtype is not None:
        lock = ck.opt(values, "lock", path, to_enum(QEMU_LOCKS if gtype == "qemu" else LXC_LOCKS))
    tags = ck.str_list(
        values, "tags", path, to_pattern(_TAG_RE, "a tag of letters, digits, _ - + .", numbers=True)
    )
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
        pool=ck.opt(values, "pool", path, to_pattern(_POOL_RE, "a pool name", numbers=True)),
        ha=ha,
        ha_state=ha_state,
        ha_max_relocate=max_relocate,
        hostpci=hostpci,
        usb=usb,
        serial=serial,
        lock=lock,
        template=template,
        cpu=ck.opt(values, "cpu", path, to_pattern(_CPU_RE, "a CPU type like host", numbers=True)),
        replicate=replicate,
        onboot=ck.get(values, "onboot", path, to_bool, False),
        description=ck.get(values, "description", path, to_str, ""),
    )


def _guest_key_hint(key: str) -> str | None:
    if _qemu_disk_key(key) or _lxc_disk_key(key):
        return f" (disks go under 'disks', e.g. disks: {{{key}: 'ceph:32G'}})"
    return None


def _check_dirty(ck: _Checker, values: dict[str, Loc], path: str) -> tuple[float, float]:
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
    wss_bytes = ck.opt(values, "wss", path, _to_size)
    return rate, float(wss_bytes) if wss_bytes is not None else wss


def _check_disks(
    ck: _Checker,
    values: dict[str, Loc],
    guest_loc: Loc,
    path: str,
    gtype: str | None,
    node: str | None,
    draft: _Draft,
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
                "virtio0-15, sata0-5, ide0-3, efidisk0 and tpmstate0",
            )
            continue
        if gtype == "lxc" and not _lxc_disk_key(key):
            ck.add(
                key_line,
                key_path,
                f"'{key}' is not a container disk; container disks are rootfs and mp0-255",
            )
            continue
        text = ck.convert(d_loc, key_path, to_str)
        if text is None:
            continue
        try:
            storage, size = parse_disk(text)
        except Invalid as exc:
            ck.add(d_loc, key_path, str(exc))
            continue
        out.append(DiskSpec(key=key, storage=storage, size_bytes=size))
        if not ck.reference(d_loc, key_path, storage, draft.known_storages, "storage"):
            continue
        st = draft.storages.get(storage)
        if st is None:
            continue
        needed = "rootdir" if gtype == "lxc" else "images"
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
    ck: _Checker, values: dict[str, Loc], path: str, gtype: str | None, all_bridges: set[str]
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
        items = _split_options(text)
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


def _check_ha(
    ck: _Checker, values: dict[str, Loc], path: str, running: bool, template: bool
) -> tuple[bool, str, int]:
    loc = values.get("ha")
    if loc is None or loc.value is BROKEN:
        return False, "", 1
    default_state = "started" if running else "stopped"
    if isinstance(loc.value, dict):
        ha_values = ck.fields(loc, f"{path}.ha", ("state", "max_relocate"))
        if ha_values is None:
            return False, "", 1
        state = ck.get(ha_values, "state", f"{path}.ha", to_enum(HA_STATES), default_state)
        relocate = ck.get(ha_values, "max_relocate", f"{path}.ha", to_int(0, 100), 1)
        enabled = True
    else:
        flag = ck.convert(loc, f"{path}.ha", _to_bool_or_mapping)
        if not flag:
            return False, "", 1
        state, relocate, enabled = default_state, 1, True
    if enabled and template:
        ck.add(loc, f"{path}.ha", "a template cannot be an HA resource")
    if running and state in ("stopped", "disabled"):
        ck.add(loc, f"{path}.ha", f"the guest is running but its HA state '{state}' would stop it")
    elif not running and state in ("started", "enabled"):
        ck.add(loc, f"{path}.ha", f"the guest is stopped but its HA state '{state}' would start it")
    return enabled, state, relocate


def _to_bool_or_mapping(loc: Loc) -> bool:
    try:
        return to_bool(loc)
    except Invalid:
        raise Invalid(
            f"expected true, false or a mapping like {{state: started, max_relocate: 1}}, "
            f"got {describe(loc)}"
        ) from None


def _check_passthrough(
    ck: _Checker,
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
    items = _split_options(text)
    options = {k: v for k, v in items if v is not None}
    host = items[0][0] if items and items[0][1] is None else options.get("host")
    mapping = options.get("mapping")
    expected = "expected a PCI address like '0000:01:00.0' or a mapping like 'mapping=gpu1'"
    if host and mapping:
        return f"host and mapping= exclude each other; {expected}"
    if mapping is not None:
        return None if _CONFIG_ID_RE.fullmatch(mapping) else f"{expected}, got {text!r}"
    if host is None or not _PCI_ID_RE.fullmatch(host):
        return f"{expected}, got {text!r}"
    return None


def _check_usb(text: str) -> str | None:
    items = _split_options(text)
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


def _check_serial(text: str) -> str | None:
    if _SERIAL_RE.fullmatch(text):
        return None
    return f"expected 'socket' or a host device like '/dev/ttyS0', got {text!r}"


def _check_replicate(
    ck: _Checker,
    values: dict[str, Loc],
    path: str,
    node: str | None,
    disks: tuple[DiskSpec, ...],
    draft: _Draft,
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


def _check_ha_rules(ck: _Checker, loc: Loc | None, draft: _Draft) -> tuple[HaRuleSpec, ...]:
    if loc is None:
        return ()
    items = ck.sequence(loc, "ha_rules", "a list of rules")
    if items is None:
        return ()
    rules: list[tuple[int, HaRuleSpec]] = []  # (index in the file, rule)
    seen_ids: set[str] = set()
    node_affinity_of: dict[str, str] = {}
    for i, r_loc in enumerate(items):
        path = f"ha_rules[{i}]"
        values = ck.fields(r_loc, path, _RULE_KEYS, required=("rule", "type", "resources"))
        if values is None:
            continue
        rule_id = ck.opt(
            values,
            "rule",
            path,
            to_pattern(_CONFIG_ID_RE, "a rule id like keep-apart", numbers=True),
        )
        if rule_id is not None:
            if rule_id in seen_ids:
                ck.at(values, "rule", path, f"rule id '{rule_id}' is used twice")
            seen_ids.add(rule_id)
        rtype = ck.opt(values, "type", path, to_enum(HA_RULE_TYPES))
        resources = _check_rule_resources(ck, values, path, draft)
        for key, wanted in (
            ("affinity", "resource-affinity"),
            ("nodes", "node-affinity"),
            ("strict", "node-affinity"),
        ):
            if key in values and rtype is not None and rtype != wanted:
                line = (r_loc.key_lines or {}).get(key, r_loc.line)
                ck.add(line, path, f"'{key}' applies only to {wanted} rules")
        affinity: str | None = None
        nodes: list[tuple[str, int]] = []
        if rtype == "resource-affinity":
            affinity = ck.opt(values, "affinity", path, to_enum(AFFINITIES))
            if "affinity" not in values:
                ck.add(r_loc, path, "missing required key 'affinity' (positive or negative)")
            if "resources" in values and len(resources) < 2:
                ck.at(
                    values,
                    "resources",
                    path,
                    "a resource-affinity rule needs at least two resources",
                )
            if (
                affinity == "negative"
                and draft.node_names
                and len(resources) > len(draft.node_names)
            ):
                ck.at(
                    values,
                    "resources",
                    path,
                    f"{len(resources)} resources cannot be kept apart on "
                    f"{len(draft.node_names)} nodes",
                )
        elif rtype == "node-affinity":
            nodes = _check_rule_nodes(ck, values, r_loc, path, draft)
            for res in resources:
                other = node_affinity_of.get(res)
                if other is not None:
                    ck.at(
                        values,
                        "resources",
                        path,
                        f"{res} is already in node-affinity rule '{other}'",
                    )
                node_affinity_of.setdefault(res, rule_id or path)
        rules.append(
            (
                i,
                HaRuleSpec(
                    rule=rule_id or "",
                    type=rtype or "",
                    resources=tuple(resources),
                    affinity=affinity,
                    nodes=tuple(nodes),
                    strict=ck.get(values, "strict", path, to_bool, False),
                ),
            )
        )
    _check_affinity_conflicts(ck, rules, items)
    return tuple(rule for _, rule in rules)


def _check_rule_resources(
    ck: _Checker, values: dict[str, Loc], path: str, draft: _Draft
) -> list[str]:
    listed = ck.str_list(values, "resources", path)
    out: list[str] = []
    for i, (item, res) in enumerate(listed or ()):
        item_path = f"{path}.resources[{i}]"
        match = _RESOURCE_RE.fullmatch(res)
        if match is None:
            ck.add(item, item_path, f"expected a resource like vm:101 or ct:200, got {res!r}")
            continue
        kind, vmid = match.group(1), int(match.group(2))
        if res in out:
            ck.add(item, item_path, f"{res} is listed twice")
            continue
        out.append(res)
        if vmid not in draft.guest_locs:
            ck.add(item, item_path, f"there is no guest {vmid}")
            continue
        guest = draft.guests.get(vmid)
        if guest is None:
            continue
        wanted = "vm" if guest.type == "qemu" else "ct"
        if kind != wanted:
            what = "a VM" if guest.type == "qemu" else "a container"
            ck.add(item, item_path, f"guest {vmid} is {what}; write {wanted}:{vmid}")
        elif not guest.ha:
            ck.add(item, item_path, f"guest {vmid} is not HA-managed (set 'ha: true' on it)")
    return out


def _check_rule_nodes(
    ck: _Checker, values: dict[str, Loc], r_loc: Loc, path: str, draft: _Draft
) -> list[tuple[str, int]]:
    if "nodes" not in values:
        ck.add(r_loc, path, "missing required key 'nodes' (e.g. [\"pve1:2\", pve2])")
        return []
    listed = ck.str_list(values, "nodes", path)
    out: list[tuple[str, int]] = []
    for i, (item, text) in enumerate(listed or ()):
        item_path = f"{path}.nodes[{i}]"
        match = re.fullmatch(r"([^:\s]+)(?::(\d+))?", text.strip())
        if match is None:
            ck.add(item, item_path, f"expected NODE or NODE:PRIORITY like pve1:2, got {text!r}")
            continue
        node, priority = match.group(1), int(match.group(2) or 0)
        if not ck.reference(item, item_path, node, draft.known_nodes, "node"):
            continue
        if any(node == n for n, _ in out):
            ck.add(item, item_path, f"node {node} is listed twice")
            continue
        out.append((node, priority))
    if listed is not None and not listed and values["nodes"].value is not BROKEN:
        ck.at(values, "nodes", path, "a node-affinity rule needs at least one node")
    return out


def _check_affinity_conflicts(
    ck: _Checker, rules: list[tuple[int, HaRuleSpec]], items: list[Loc]
) -> None:
    """A pair of resources cannot be both kept together and kept apart."""
    together: dict[frozenset[str], str] = {}
    for i, rule in rules:
        if rule.type == "resource-affinity" and rule.affinity == "positive":
            for a in rule.resources:
                for b in rule.resources:
                    if a < b:
                        together[frozenset((a, b))] = f"'{rule.rule}'" if rule.rule else f"#{i}"
    for i, rule in rules:
        if rule.type != "resource-affinity" or rule.affinity != "negative":
            continue
        for a in rule.resources:
            for b in rule.resources:
                other = together.get(frozenset((a, b))) if a < b else None
                if other is not None:
                    ck.add(
                        items[i],
                        f"ha_rules[{i}]",
                        f"{a} and {b} are kept apart here but together by rule {other}",
                    )


def _check_privileges(
    ck: _Checker, values: dict[str, Loc], path: str, default: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    loc = values.get("privileges")
    if loc is None or loc.value is BROKEN:
        return default
    if loc.value == "all":
        return None
    if not isinstance(loc.value, list):
        ck.add(
            loc,
            f"{path}.privileges",
            f"expected 'all' or a list of privileges, got {describe(loc)}",
        )
        return default
    out: list[str] = []
    for i, item in enumerate(loc.value):
        priv = ck.convert(item, f"{path}.privileges[{i}]", to_str)
        if priv is None:
            continue
        if priv not in PRIVILEGES:
            note = " (PVE 9 removed it)" if priv == "VM.Monitor" else hint(priv, PRIVILEGES)
            ck.add(item, f"{path}.privileges[{i}]", f"unknown privilege '{priv}'{note}")
            continue
        if priv not in out:
            out.append(priv)
    return tuple(out)


def _check_auth(
    ck: _Checker, tokens_loc: Loc | None, users_loc: Loc | None, seed: int
) -> tuple[tuple[TokenSpec, ...], tuple[UserSpec, ...]]:
    if tokens_loc is None and users_loc is None:
        rng = random.Random(seed)
        secret = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        password = f"{rng.getrandbits(96):024x}"
        return (TokenSpec("root@pam!pvetool", secret, None),), (
            UserSpec("root@pam", password, None),
        )
    users: list[UserSpec] = []
    user_privs: dict[str, tuple[str, ...] | None] = {"root@pam": None}
    user_items = ck.sequence(users_loc, "users") if users_loc is not None else None
    for i, u_loc in enumerate(user_items or ()):
        path = f"users[{i}]"
        values = ck.fields(
            u_loc, path, ("id", "password", "privileges"), required=("id", "password")
        )
        if values is None:
            continue
        uid = ck.opt(
            values, "id", path, to_pattern(_USER_RE, "a user id like auditor@pve", numbers=True)
        )
        if uid is not None:
            if any(u.id == uid for u in users):
                ck.at(values, "id", path, f"user {uid} is listed twice")
        privs = _check_privileges(ck, values, path, None if uid == "root@pam" else ())
        if uid == "root@pam" and privs is not None:
            ck.at(values, "privileges", path, "root@pam always has all privileges")
        users.append(
            UserSpec(uid or "", ck.get(values, "password", path, to_nonempty_str, ""), privs)
        )
        if uid:
            user_privs[uid] = privs
    tokens: list[TokenSpec] = []
    token_items = ck.sequence(tokens_loc, "tokens") if tokens_loc is not None else None
    for i, t_loc in enumerate(token_items or ()):
        path = f"tokens[{i}]"
        values = ck.fields(t_loc, path, ("id", "secret", "privileges"), required=("id", "secret"))
        if values is None:
            continue
        tid = ck.opt(
            values,
            "id",
            path,
            to_pattern(_TOKEN_RE, "a token id like root@pam!pvetool", numbers=True),
        )
        owner_privs: tuple[str, ...] | None = ()
        if tid is not None:
            owner = tid.split("!", 1)[0]
            if any(t.id == tid for t in tokens):
                ck.at(values, "id", path, f"token {tid} is listed twice")
            if owner not in user_privs:
                ck.at(values, "id", path, f"its user {owner} is not in 'users'")
            owner_privs = user_privs.get(owner, ())
        # Without `privileges` a token has its user's (PVE: privsep=0).
        privs = _check_privileges(ck, values, path, owner_privs)
        tokens.append(
            TokenSpec(tid or "", ck.get(values, "secret", path, to_nonempty_str, ""), privs)
        )
    return tuple(tokens), tuple(users)


def _check_timing(ck: _Checker, loc: Loc | None) -> dict[str, float]:
    if loc is None:
        return {}
    values = ck.mapping(loc, "timing", "a mapping of timing parameter to number")
    if values is None:
        return {}
    from pvetool import timing  # lazily: only cluster files that tune the model need it

    fields_by_name = {f.name: f for f in dataclasses.fields(timing.TimingParams)}
    overrides: dict[str, float] = {}
    for name, v_loc in values.items():
        if name not in fields_by_name:
            line = (loc.key_lines or {}).get(name, loc.line)
            ck.add(line, "timing", f"unknown timing parameter '{name}'{hint(name, fields_by_name)}")
            continue
        number = ck.convert(v_loc, f"timing.{name}", to_number)
        if number is None:
            continue
        if number < 0:
            ck.add(v_loc, f"timing.{name}", f"must not be negative, got {number}")
            continue
        if isinstance(fields_by_name[name].default, int) and not number.is_integer():
            ck.add(v_loc, f"timing.{name}", f"must be an integer, got {number}")
            continue
        overrides[name] = number
    if overrides and not ck.problems:
        # The model's own cross-checks (e.g. min <= max) on the combined parameters.
        clean: dict[str, Any] = {
            k: int(v) if isinstance(fields_by_name[k].default, int) else v
            for k, v in overrides.items()
        }
        try:
            dataclasses.replace(timing.TimingParams(), **clean)
        except (ValueError, TypeError) as exc:
            ck.add(loc, "timing", str(exc))
    return overrides


def _check_cluster(root: Loc, problems: Problems) -> ClusterSpec:
    ck = _Checker(problems)
    top = ck.fields(root, "", _TOP_KEYS, required=("name", "nodes"))
    if top is None:
        raise ClusterFileError(problems.sorted())
    name = ck.get(
        top,
        "name",
        "",
        to_pattern(
            _CLUSTER_NAME_RE, "a cluster name of up to 15 letters, digits and -", numbers=True
        ),
        "",
    )
    seed = ck.get(top, "seed", "", to_int(0), 0)
    datacenter = _check_datacenter(ck, top.get("datacenter"))
    draft = _Draft()
    _check_nodes(ck, top.get("nodes"), root.line, draft)
    _check_storages(ck, top.get("storages"), draft)
    _check_guests(ck, top.get("guests"), draft)
    rules = _check_ha_rules(ck, top.get("ha_rules"), draft)
    tokens, users = _check_auth(ck, top.get("tokens"), top.get("users"), seed)
    timing_overrides = _check_timing(ck, top.get("timing"))
    if problems:
        raise ClusterFileError(problems.sorted())
    return ClusterSpec(
        name=name,
        seed=seed,
        datacenter=datacenter,
        nodes=draft.nodes,
        storages=draft.storages,
        guests=draft.guests,
        ha_rules=rules,
        tokens=tokens,
        users=users,
        timing_overrides=timing_overrides,
    )


# --- loading -----------------------------------------------------------------------------------


def load_cluster_text(text: str, filename: str = "<string>") -> ClusterSpec:
    """Validate a cluster file's text; ``filename`` is what problem messages name."""
    problems = Problems(filename)
    root = read_document(
        text,
        problems,
        what="the cluster file",
        empty="the file is empty; a cluster needs at least 'name' and 'nodes'",
    )
    if root is None:
        raise ClusterFileError(problems.sorted())
    if not isinstance(root.value, dict):
        problems.add(root.line, "", f"expected a mapping at the top, got {describe(root)}")
        raise ClusterFileError(problems.sorted())
    return _check_cluster(root, problems)


def load_cluster(source: str | os.PathLike[str]) -> ClusterSpec:
    """Load a built-in cluster by name (``lab``) or a cluster file by path."""
    if isinstance(source, str) and source in BUILTIN_CLUSTERS:
        resource = importlib.resources.files("pvetool.emulator").joinpath(f"data/{source}.yaml")
        return load_cluster_text(resource.read_text(encoding="utf-8"), f"{source}.yaml")
    filename = os.fspath(source)
    try:
        with open(filename, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        builtin = f" (built-in clusters: {', '.join(BUILTIN_CLUSTERS)})"
        problem = f"{filename}: cannot read the cluster file: {reason}{builtin}"
        raise ClusterFileError([problem]) from None
    return load_cluster_text(text, filename)
