"""Frozen value objects describing a PVE cluster, its tasks and migration preconditions.

Imports: the standard library and `pvetool.errors` only. No I/O here: objects are built by
`pvetool.api.convert` from PVE's JSON and read by the planner, executor and renderers.

Units are in the names (`memory_bytes`, `rate_bps` = bytes per second, `bwlimit_kib_s` = KiB/s
as PVE counts it, `timeout_s`). Guests are keyed by VMID, never by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

from pvetool.errors import ValidationError

GuestKind = Literal["qemu", "lxc"]
TaskState = Literal["running", "stopped"]
HaRuleType = Literal["node-affinity", "resource-affinity"]
Affinity = Literal["positive", "negative"]
MigrationType = Literal["secure", "insecure"]
DeviceKind = Literal["pci", "usb", "serial", "parallel", "dev", "bind-mount", "virtiofs"]

__all__ = [
    "Affinity",
    "BlockingHaResource",
    "ClusterNodeStatus",
    "ClusterResources",
    "ClusterSnapshot",
    "ClusterStatus",
    "DatacenterOptions",
    "DeviceKind",
    "Disk",
    "Guest",
    "GuestConfig",
    "GuestGroup",
    "GuestPin",
    "GuestKind",
    "GuestStatus",
    "HaMigrateRequest",
    "HaResource",
    "HaRule",
    "HaRuleNode",
    "HaRuleType",
    "HaServiceStatus",
    "HaStatus",
    "LocalDevice",
    "LocalDiskInfo",
    "MappedResource",
    "MigrationProgress",
    "MigrationType",
    "Net",
    "Node",
    "NodeRefusal",
    "PlanRules",
    "Precondition",
    "PveVersion",
    "ReplicationJob",
    "Storage",
    "StorageConfig",
    "StorageOnNode",
    "StorageStatus",
    "TaskLogLine",
    "TaskResult",
    "TaskState",
    "TaskStatus",
    "TaskSummary",
    "Upid",
    "exitstatus_ok",
]


def exitstatus_ok(exitstatus: str | None) -> bool:
    """True for the exit statuses PVE uses for success: ``OK`` and ``WARNINGS: n``."""
    return exitstatus is not None and (exitstatus == "OK" or exitstatus.startswith("WARNINGS"))


# --------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True, slots=True)
class Upid:
    """A PVE task id, ``UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user[!token]>:``."""

    # From proxmox/pve-common src/PVE/UPID.pm (see tests/data/fixtures/upids.json).
    PATTERN: ClassVar[re.Pattern[str]] = re.compile(
        r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
        r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$"
    )

    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str
    token: str | None = None

    @classmethod
    def parse(cls, text: str) -> Upid:
        """Parse a UPID string; raise `ValidationError` when it is not one."""
        match = cls.PATTERN.match(text.strip())
        if not match:
            raise ValidationError(f"'{text}' is not a PVE task id (UPID)", field="upid")
        userid = match.group(8)
        user, _, token = userid.partition("!")
        return cls(
            node=match.group(1),
            pid=int(match.group(3), 16),
            pstart=int(match.group(4), 16),
            starttime=int(match.group(5), 16),
            type=match.group(6),
            id=match.group(7),
            user=user,
            token=token or None,
        )

    @property
    def userid(self) -> str:
        """``user@realm`` or ``user@realm!tokenid`` as PVE prints it."""
        return f"{self.user}!{self.token}" if self.token else self.user

    @property
    def vmid(self) -> int | None:
        """The guest id for guest tasks (qmigrate, vzmigrate, hamigrate ...), else None."""
        return int(self.id) if self.id.isdigit() else None

    def __str__(self) -> str:
        return (
            f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:{self.starttime:08X}:"
            f"{self.type}:{self.id}:{self.userid}:"
        )


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """Answer of ``GET /nodes/{node}/tasks/{upid}/status``."""

    upid: Upid
    status: TaskState
    exitstatus: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ok(self) -> bool:
        """Success: stopped with ``OK`` or ``WARNINGS: n``."""
        return self.status == "stopped" and exitstatus_ok(self.exitstatus)


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One entry of a node's task list; `exitstatus` and `endtime` are None while running."""

    upid: Upid
    exitstatus: str | None = None
    endtime: int | None = None

    @property
    def running(self) -> bool:
        return self.endtime is None


@dataclass(frozen=True, slots=True)
class TaskLogLine:
    """One task log line; `n` counts from 1 like PVE does."""

    n: int
    text: str


@dataclass(frozen=True, slots=True)
class MigrationProgress:
    """A progress line of a migration log.

    `phase` is ``ram`` for the VM state (``migration active, transferred X of Y VM-state, Z/s``
    and the pre-7.0 ``migration status: active (transferred ...)``) or ``disk`` for a drive
    mirror (``drive-scsi0: transferred X of Y (p%) in Ns``). Values from the newer formats are
    rounded by PVE to one decimal of the unit shown.
    """

    upid: Upid
    transferred_bytes: int
    total_bytes: int | None = None
    rate_bps: float | None = None
    phase: Literal["ram", "disk"] = "ram"
    device: str | None = None
    completed: bool = False
    line_no: int | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total_bytes:
            return None
        return min(1.0, self.transferred_bytes / self.total_bytes)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """The outcome of a task that finished successfully (``OK`` or ``WARNINGS: n``).

    For an HA migration `upid` is the real ``qmigrate``/``vzmigrate`` task and `ha_upid` the
    ``hamigrate`` task that requested it.
    """

    upid: Upid
    exitstatus: str
    duration_s: float | None = None
    downtime_ms: int | None = None
    log_tail: tuple[str, ...] = ()
    ha_upid: Upid | None = None

    @property
    def ok(self) -> bool:
        return exitstatus_ok(self.exitstatus)

    @property
    def warnings(self) -> int:
        """Number of warnings PVE counted (``WARNINGS: 2`` -> 2)."""
        if self.exitstatus.startswith("WARNINGS"):
            digits = self.exitstatus.partition(":")[2].strip()
            return int(digits) if digits.isdigit() else 1
        return 0


# --------------------------------------------------------------------------------------------
# Versions and cluster status


@dataclass(frozen=True, slots=True)
class PveVersion:
    """A pve-manager version: ``release`` is ``x.y`` (e.g. ``8.2``), ``version`` the package."""

    release: str
    version: str = ""
    repoid: str = ""

    @property
    def major_minor(self) -> tuple[int, int]:
        """(major, minor) from `release`, falling back to `version`; (0, 0) if unparsable."""
        for text in (self.release, self.version):
            match = re.match(r"(\d+)\.(\d+)", text)
            if match:
                return int(match.group(1)), int(match.group(2))
        return (0, 0)

    def at_least(self, major: int, minor: int = 0) -> bool:
        return self.major_minor >= (major, minor)

    def __str__(self) -> str:
        return self.version or self.release


@dataclass(frozen=True, slots=True)
class ClusterNodeStatus:
    """A node entry of ``GET /cluster/status``."""

    name: str
    online: bool
    node_id: int | None = None
    ip: str | None = None
    local: bool = False


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """``GET /cluster/status``: quorum and membership. `name` is None on a single node."""

    name: str | None
    quorate: bool
    nodes: tuple[ClusterNodeStatus, ...] = ()

    @property
    def online_nodes(self) -> tuple[str, ...]:
        return tuple(sorted(n.name for n in self.nodes if n.online))


# --------------------------------------------------------------------------------------------
# Nodes, storage, guests


@dataclass(frozen=True, slots=True)
class Node:
    """A cluster node with its capacity and current usage."""

    name: str
    online: bool
    cpus: int = 0
    cpu_fraction: float = 0.0
    memory_total_bytes: int = 0
    memory_used_bytes: int = 0
    uptime_s: int = 0
    version: PveVersion | None = None
    cpu_model: str | None = None
    node_id: int | None = None
    ip: str | None = None
    host_arch: str | None = None
    ha_lrm_status: str | None = None
    ssl_fingerprint: str | None = None

    @property
    def memory_free_bytes(self) -> int:
        return max(0, self.memory_total_bytes - self.memory_used_bytes)


@dataclass(frozen=True, slots=True)
class StorageOnNode:
    """One storage as seen from one node."""

    node: str
    available: bool
    total_bytes: int = 0
    used_bytes: int = 0

    @property
    def free_bytes(self) -> int:
        return max(0, self.total_bytes - self.used_bytes)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """An entry of ``GET /storage`` (the datacenter storage configuration)."""

    name: str
    type: str
    shared: bool = False
    content: frozenset[str] = frozenset()
    nodes: frozenset[str] | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class StorageStatus:
    """A storage's status on one node (``/cluster/resources`` or ``/nodes/{n}/storage``)."""

    name: str
    node: str
    type: str = ""
    shared: bool = False
    available: bool = True
    enabled: bool = True
    content: frozenset[str] = frozenset()
    total_bytes: int = 0
    used_bytes: int = 0
    avail_bytes: int | None = None

    @property
    def free_bytes(self) -> int:
        if self.avail_bytes is not None:
            return self.avail_bytes
        return max(0, self.total_bytes - self.used_bytes)


@dataclass(frozen=True, slots=True)
class Storage:
    """A storage of the cluster: shared flag, and availability and free space per node."""

    name: str
    type: str = ""
    shared: bool = False
    content: frozenset[str] = frozenset()
    enabled: bool = True
    restricted_to: frozenset[str] | None = None
    per_node: Mapping[str, StorageOnNode] = field(default_factory=dict)

    def available_on(self, node: str) -> bool:
        entry = self.per_node.get(node)
        return entry is not None and entry.available and self.enabled

    def free_bytes_on(self, node: str) -> int | None:
        entry = self.per_node.get(node)
        return entry.free_bytes if entry is not None else None


@dataclass(frozen=True, slots=True)
class Disk:
    """A guest volume: ``scsi0: ceph:vm-101-disk-0,size=32G`` -> key scsi0, storage ceph.

    `storage` is None for a host path (``/dev/sdb`` passthrough, LXC bind mount) and for an
    empty CD drive (``none``). `is_local` is None until resolved against the storage's shared
    flag (`ClusterSnapshot` does that); a host path is always local.
    """

    key: str
    volid: str
    storage: str | None = None
    size_bytes: int | None = None
    media: Literal["disk", "cdrom"] = "disk"
    is_local: bool | None = None
    unused: bool = False
    marked_shared: bool = False

    @property
    def is_cloudinit(self) -> bool:
        return "cloudinit" in self.volid

    @property
    def is_host_path(self) -> bool:
        return self.volid.startswith("/")


@dataclass(frozen=True, slots=True)
class Net:
    """A network device: ``net0: virtio=AA:..,bridge=vmbr1,tag=10`` (qemu) or
    ``net0: name=eth0,bridge=vmbr0,hwaddr=..,tag=20`` (lxc)."""

    key: str
    bridge: str | None
    vlan_tag: int | None = None
    model: str | None = None
    mac: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class LocalDevice:
    """A device tied to the host (PCI/USB passthrough, serial/parallel port, CT device, bind
    mount, virtiofs). With `mapping` set it is a cluster resource mapping that exists per node
    and may migrate; without it the device pins the guest to its node."""

    key: str
    kind: DeviceKind
    value: str
    mapping: str | None = None

    @property
    def blocks_migration(self) -> bool:
        return self.mapping is None


@dataclass(frozen=True, slots=True)
class GuestConfig:
    """The parts of a guest configuration the planner needs."""

    kind: GuestKind
    memory_bytes: int | None = None
    cores: int | None = None
    sockets: int | None = None
    vcpus: int | None = None
    disks: tuple[Disk, ...] = ()
    nets: tuple[Net, ...] = ()
    local_devices: tuple[LocalDevice, ...] = ()
    lock: str | None = None
    template: bool = False
    tags: tuple[str, ...] = ()
    cpu_type: str | None = None
    agent_enabled: bool = False
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Guest:
    """A VM (qemu) or container (lxc).

    `memory_bytes` is the configured maximum, `used_memory_bytes` what PVE reports in use,
    `cores` the number of vCPUs. `config_known` is False when the configuration could not be
    read (e.g. the guest is on an offline node); disks, nets and devices are then empty.
    """

    vmid: int
    kind: GuestKind
    name: str
    node: str
    status: str
    memory_bytes: int = 0
    used_memory_bytes: int = 0
    cores: int = 0
    cpu_fraction: float = 0.0
    uptime_s: int = 0
    disks: tuple[Disk, ...] = ()
    nets: tuple[Net, ...] = ()
    local_devices: tuple[LocalDevice, ...] = ()
    lock: str | None = None
    template: bool = False
    tags: tuple[str, ...] = ()
    pool: str | None = None
    ha_state: str | None = None
    ha_group: str | None = None
    cpu_type: str | None = None
    agent_enabled: bool = False
    config_known: bool = False

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ha_sid(self) -> str:
        """The HA resource id this guest would have: ``vm:100`` or ``ct:100``."""
        return f"{'vm' if self.kind == 'qemu' else 'ct'}:{self.vmid}"

    @property
    def ha_managed(self) -> bool:
        return self.ha_state is not None

    @property
    def local_disks(self) -> tuple[Disk, ...]:
        return tuple(d for d in self.disks if d.is_local)

    @property
    def disk_bytes_by_storage(self) -> Mapping[str, int]:
        """Sum of known disk sizes per storage (CD-ROM media excluded)."""
        sums: dict[str, int] = {}
        for disk in self.disks:
            if disk.storage and disk.media == "disk" and disk.size_bytes:
                sums[disk.storage] = sums.get(disk.storage, 0) + disk.size_bytes
        return sums

    @property
    def bridges(self) -> frozenset[str]:
        return frozenset(n.bridge for n in self.nets if n.bridge)


@dataclass(frozen=True, slots=True)
class GuestStatus:
    """``GET /nodes/{node}/{qemu|lxc}/{vmid}/status/current``."""

    vmid: int
    kind: GuestKind
    status: str
    name: str | None = None
    lock: str | None = None
    qmpstatus: str | None = None
    ha_managed: bool = False
    ha_state: str | None = None
    uptime_s: int = 0
    memory_bytes: int = 0
    used_memory_bytes: int = 0
    cpus: float = 0.0
    agent_enabled: bool = False
    running_machine: str | None = None
    running_qemu: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True, slots=True)
class ClusterResources:
    """``GET /cluster/resources`` split by type. Guests carry no configuration yet."""

    nodes: tuple[Node, ...] = ()
    guests: tuple[Guest, ...] = ()
    storages: tuple[StorageStatus, ...] = ()


# --------------------------------------------------------------------------------------------
# HA


@dataclass(frozen=True, slots=True)
class HaResource:
    """An HA resource (``vm:100``) with its requested state and, if known, the CRM's view."""

    sid: str
    requested_state: str = "started"
    group: str | None = None
    max_restart: int | None = None
    max_relocate: int | None = None
    failback: bool | None = None
    comment: str | None = None
    node: str | None = None
    crm_state: str | None = None

    @property
    def kind(self) -> Literal["vm", "ct"] | None:
        prefix = self.sid.partition(":")[0]
        return "vm" if prefix == "vm" else "ct" if prefix == "ct" else None

    @property
    def vmid(self) -> int | None:
        ident = self.sid.partition(":")[2]
        return int(ident) if ident.isdigit() else None


@dataclass(frozen=True, slots=True)
class HaServiceStatus:
    """A ``service`` entry of ``GET /cluster/ha/status/current``."""

    sid: str
    node: str
    state: str | None = None
    crm_state: str | None = None
    request_state: str | None = None


@dataclass(frozen=True, slots=True)
class HaStatus:
    """``GET /cluster/ha/status/current``."""

    quorate: bool | None = None
    master_node: str | None = None
    lrm: Mapping[str, str] = field(default_factory=dict)
    services: Mapping[str, HaServiceStatus] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HaRuleNode:
    node: str
    priority: int = 0


@dataclass(frozen=True, slots=True)
class HaRule:
    """An HA rule (PVE 9). On PVE 8 an HA group is presented as a node-affinity rule with
    `from_group` set: restricted -> strict, member resources from the resources' group."""

    rule_id: str
    type: HaRuleType
    resources: tuple[str, ...] = ()
    nodes: tuple[HaRuleNode, ...] = ()
    strict: bool = False
    affinity: Affinity | None = None
    disabled: bool = False
    comment: str | None = None
    from_group: bool = False

    @property
    def node_priorities(self) -> Mapping[str, int]:
        return {n.node: n.priority for n in self.nodes}


@dataclass(frozen=True, slots=True)
class BlockingHaResource:
    sid: str
    cause: str


@dataclass(frozen=True, slots=True)
class HaMigrateRequest:
    """Answer of ``POST /cluster/ha/resources/{sid}/migrate`` (an object on PVE 9, null before)."""

    sid: str
    requested_node: str
    blocking: tuple[BlockingHaResource, ...] = ()
    comigrated: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Migration precondition


@dataclass(frozen=True, slots=True)
class LocalDiskInfo:
    """A ``local_disks`` entry of the qemu migrate precondition."""

    volid: str
    size_bytes: int | None = None
    cdrom: bool = False
    is_unused: bool = False


@dataclass(frozen=True, slots=True)
class NodeRefusal:
    """Why one node is in ``not_allowed_nodes``."""

    node: str
    unavailable_storages: tuple[str, ...] = ()
    unavailable_resources: tuple[str, ...] = ()
    blocking_ha_resources: tuple[BlockingHaResource, ...] = ()


@dataclass(frozen=True, slots=True)
class MappedResource:
    key: str
    live_migration: bool | None = None


@dataclass(frozen=True, slots=True)
class Precondition:
    """``GET /nodes/{node}/{qemu|lxc}/{vmid}/migrate``: what PVE thinks of a migration."""

    kind: GuestKind
    running: bool
    allowed_nodes: tuple[str, ...] = ()
    not_allowed: Mapping[str, NodeRefusal] = field(default_factory=dict)
    local_disks: tuple[LocalDiskInfo, ...] = ()
    local_resources: tuple[str, ...] = ()
    mapped_resources: tuple[str, ...] = ()
    mapped_resource_info: tuple[MappedResource, ...] = ()
    dependent_ha_resources: tuple[str, ...] = ()
    has_dbus_vmstate: bool | None = None

    def allows(self, node: str) -> bool:
        return node in self.allowed_nodes and node not in self.not_allowed


# --------------------------------------------------------------------------------------------
# Storage replication


@dataclass(frozen=True, slots=True)
class ReplicationJob:
    """A storage replication job (``GET /cluster/replication``): `id` is ``<vmid>-<n>``; the
    guest's volumes are replicated from `source` (None when PVE has not recorded it yet) to
    `target`. PVE switches a job's direction when its guest migrates to the job's target."""

    id: str
    vmid: int
    target: str
    source: str | None = None
    disabled: bool = False


# --------------------------------------------------------------------------------------------
# Datacenter and snapshot


@dataclass(frozen=True, slots=True)
class DatacenterOptions:
    """Datacenter options relevant to migrations (``GET /cluster/options``)."""

    migration_type: MigrationType = "secure"
    migration_network: str | None = None
    bwlimit_migration_kib_s: float | None = None
    bwlimit_default_kib_s: float | None = None
    max_workers: int | None = None
    ha_shutdown_policy: str | None = None
    crs_ha: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything the planner needs, read in one go by `pvetool.api.fetch_snapshot`."""

    cluster_name: str | None
    quorate: bool
    nodes: Mapping[str, Node]
    guests: Mapping[int, Guest]
    storages: Mapping[str, Storage] = field(default_factory=dict)
    ha_resources: Mapping[str, HaResource] = field(default_factory=dict)
    ha_rules: tuple[HaRule, ...] = ()
    datacenter: DatacenterOptions = field(default_factory=DatacenterOptions)
    bridges: Mapping[str, frozenset[str]] = field(default_factory=dict)
    fetched_at: float | None = None
    # Targets of each guest's enabled storage replication jobs (`/cluster/replication`).
    replication: Mapping[int, tuple[str, ...]] = field(default_factory=dict)

    # -- lookups
    def node(self, name: str) -> Node:
        return self.nodes[name]

    def guest(self, vmid: int) -> Guest:
        return self.guests[vmid]

    @property
    def online_nodes(self) -> tuple[str, ...]:
        return tuple(sorted(name for name, node in self.nodes.items() if node.online))

    def guests_on(self, node: str) -> tuple[Guest, ...]:
        return tuple(g for _, g in sorted(self.guests.items()) if g.node == node)

    def running_guests_on(self, node: str) -> tuple[Guest, ...]:
        return tuple(g for g in self.guests_on(node) if g.running)

    def iter_guests(self) -> Iterator[Guest]:
        for _, guest in sorted(self.guests.items()):
            yield guest

    def storage_available_on(self, storage: str, node: str) -> bool:
        entry = self.storages.get(storage)
        return entry is not None and entry.available_on(node)

    def storage_free_bytes(self, storage: str, node: str) -> int | None:
        entry = self.storages.get(storage)
        return entry.free_bytes_on(node) if entry is not None else None

    def bridges_on(self, node: str) -> frozenset[str]:
        return self.bridges.get(node, frozenset())

    def ha_rules_for(self, sid: str) -> tuple[HaRule, ...]:
        return tuple(r for r in self.ha_rules if sid in r.resources and not r.disabled)

    @property
    def min_version(self) -> PveVersion | None:
        versions = [n.version for n in self.nodes.values() if n.version is not None]
        return min(versions, key=lambda v: v.major_minor) if versions else None

    def in_ha_maintenance(self, node: str) -> bool:
        """True when the node's HA LRM reports maintenance mode (``ha-manager crm-command
        node-maintenance enable``): the HA stack moves guests off it and accepts none."""
        entry = self.nodes.get(node)
        return entry is not None and "maintenance" in (entry.ha_lrm_status or "")

    def host_overhead_bytes(self, node: str) -> int:
        """Memory the node uses beyond its guests (host, page cache, ZFS ARC), estimated as
        its used memory minus the used memory of its running guests; 0 when unknown."""
        entry = self.nodes.get(node)
        if entry is None or not entry.online or not entry.memory_used_bytes:
            return 0
        guests_used = sum(
            g.used_memory_bytes for g in self.guests.values() if g.node == node and g.running
        )
        return max(0, entry.memory_used_bytes - guests_used)

    # -- what-if
    def with_guest_moved(self, vmid: int, target: str) -> ClusterSnapshot:
        """A copy in which guest `vmid` runs on `target` (for planning; no I/O)."""
        guests = dict(self.guests)
        guests[vmid] = replace(guests[vmid], node=target)
        return replace(self, guests=guests)


# --------------------------------------------------------------------------------------------
# Plans: findings, moves and the execution plan the planner hands to the executor

Severity = Literal["blocker", "warning", "info"]
StageKind = Literal["migrate", "hook", "wait-node", "confirm", "pause"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason from the pre-flight checks: a stable id (e.g. ``PVT-STORAGE``), a severity,
    the guest and candidate target it concerns (None: the whole plan/cluster), and a sentence
    for the administrator. `where` points at the plan line that caused it, if any."""

    id: str
    severity: Severity
    message: str
    vmid: int | None = None
    target: str | None = None
    where: str | None = None

    @property
    def blocks(self) -> bool:
        return self.severity == "blocker"


@dataclass(frozen=True, slots=True)
class MoveOptions:
    """How one migration is started (PVE's parameters, already decided)."""

    online: bool = False  # qemu: live migration of a running VM
    restart: bool = False  # lxc: restart migration of a running container
    with_local_disks: bool = False
    target_storage: tuple[tuple[str, str], ...] = ()  # ("*", "ceph") maps every storage
    bwlimit_kib_s: int | None = None
    migration_type: Literal["secure", "insecure"] | None = None
    migration_network: str | None = None
    ha: bool = False  # goes through PVE's HA stack (hamigrate -> qmigrate)
    shutdown: bool = False  # qemu: shut the running VM down, migrate offline, start it again


@dataclass(frozen=True, slots=True)
class Move:
    """One planned migration, with why it goes where it goes and what it is predicted to cost.

    `after` lists ids of moves that must have finished first (e.g. the move that frees the
    memory this one needs). `pinned` means the target is fixed (explicit move, pin, override):
    the executor must not re-plan it onto another node.
    """

    id: str
    vmid: int
    kind: GuestKind
    name: str
    source: str
    target: str
    options: MoveOptions
    reason: str
    memory_bytes: int = 0
    send_bytes: int = 0  # RAM + local disks expected on the wire
    predicted_start_s: float = 0.0  # seconds after the stage starts
    predicted_end_s: float = 0.0
    predicted_downtime_ms: float | None = None
    after: tuple[str, ...] = ()
    pinned: bool = False
    rejected: tuple[str, ...] = ()  # "pve3 rejected for 101: needs 8.0 GiB, 3.5 GiB free ..."
    profile: str | None = None  # dirty-page profile the prediction assumed (idle/moderate/hot)
    predicted_sent_bytes: float = 0.0  # bytes on the wire incl. re-sent dirty pages


@dataclass(frozen=True, slots=True)
class Caps:
    """Concurrency limits of a sliding window (never waves)."""

    cluster: int = 4
    per_source: int = 2
    per_target: int = 2


@dataclass(frozen=True, slots=True)
class Bounds:
    """Physical lower bounds of a stage (docs/timing-model.md) and which link bounds them."""

    lb_pure_s: float
    lb_dirty_s: float
    bound_by: str


@dataclass(frozen=True, slots=True)
class Stage:
    """A step of the execution: a batch of moves, a hook, waiting for a node, or a pause.

    For rolling maintenance the planner emits, per node: migrate (drain), hook (before),
    wait-node (online + quorate), hook (after), migrate (bring the guests home).
    """

    kind: StageKind
    label: str
    node: str | None = None
    moves: tuple[Move, ...] = ()
    argv: tuple[str, ...] = ()
    timeout_s: float = 0.0
    predicted_makespan_s: float = 0.0
    bounds: Bounds | None = None


@dataclass(frozen=True, slots=True)
class GuestGroup:
    """A plan rule's group resolved to vmids when the plan was computed."""

    name: str
    vmids: tuple[int, ...]
    where: str | None = None


@dataclass(frozen=True, slots=True)
class GuestPin:
    """Guests that may only run on `nodes` (resolved to vmids)."""

    vmids: tuple[int, ...]
    nodes: tuple[str, ...]
    where: str | None = None


@dataclass(frozen=True, slots=True)
class PlanRules:
    """The plan's rules as the planner applied them, carried by the `ExecutionPlan` so a saved
    plan can be re-checked and a failed move re-planned without the YAML file.

    Memory headroom: `memory_headroom_bytes` when set, else `memory_headroom_fraction` of the
    node's memory (the planner's default is 5 %, on top of the host's measured own use).
    CPU: a target may carry `cpu_overcommit` vCPUs of running guests per CPU, minus the CPU
    headroom (`cpu_headroom_cpus`, else the fraction).
    """

    memory_headroom_fraction: float = 0.05
    memory_headroom_bytes: float | None = None
    cpu_headroom_fraction: float = 0.0
    cpu_headroom_cpus: float | None = None
    cpu_overcommit: float = 4.0
    anti_affinity: tuple[GuestGroup, ...] = ()
    affinity: tuple[GuestGroup, ...] = ()
    pins: tuple[GuestPin, ...] = ()
    excluded: tuple[int, ...] = ()

    def memory_headroom_for(self, node_memory_bytes: int) -> int:
        if self.memory_headroom_bytes is not None:
            return int(self.memory_headroom_bytes)
        return int(self.memory_headroom_fraction * node_memory_bytes)

    def cpu_limit_for(self, cpus: int) -> float:
        headroom = (
            self.cpu_headroom_cpus
            if self.cpu_headroom_cpus is not None
            else self.cpu_headroom_fraction * cpus
        )
        return cpus * self.cpu_overcommit - headroom


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """What the executor runs: stages in order, caps, and everything the checks found.

    `fingerprint` identifies the cluster state the plan was computed on (drift check before
    applying a saved plan); `plan_digest` the plan file's text.
    """

    name: str
    source: str
    stages: tuple[Stage, ...]
    caps: Caps
    findings: tuple[Finding, ...] = ()
    blocked: tuple[int, ...] = ()  # guests that should move but cannot (see findings)
    fingerprint: str = ""
    plan_digest: str = ""
    on_failure: Literal["stop", "continue", "skip-guest"] = "stop"
    task_timeout_s: float = 3600.0
    predicted_makespan_s: float = 0.0
    # Optional additions (planner): the rules applied, every rejected candidate target of a
    # guest that found another target (the rest of the check matrix), the facts the
    # fingerprint hashes (for `drift`), and the assumptions of the predicted timeline.
    rules: PlanRules | None = None
    rejections: tuple[Finding, ...] = ()
    facts: tuple[tuple[str, str], ...] = ()
    assumptions: tuple[tuple[str, str], ...] = ()

    @property
    def moves(self) -> tuple[Move, ...]:
        return tuple(m for s in self.stages for m in s.moves)

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.blocks)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def can_run(self) -> bool:
        return not self.blockers
