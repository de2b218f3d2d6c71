"""The cluster as PVE reports it: versions, nodes, storage, guests, HA, preconditions,
replication, datacenter options and the `ClusterSnapshot` the planner reads.

Imports: the standard library, `pvetool.model.types` and `pvetool.model.plan` (the moves a
what-if applies). No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from pvetool.model.plan import Move
from pvetool.model.types import Affinity, DeviceKind, GuestKind, HaRuleType, MigrationType

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
    # /cluster/resources node `hastate` (pve-manager PVE/API2/Cluster.pm resources l.633-635,
    # the CRM node_status: online, maintenance, fence, unknown, ...); None when not sent.
    ha_state: str | None = None

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
    `config_problem` says why PVE's answer for the configuration was refused as unusable
    (malformed, not the documented shape), when that was the reason.
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
    config_problem: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ha_sid(self) -> str:
        """The HA resource id this guest would have: ``vm:100`` or ``ct:100``."""
        return f"{'vm' if self.kind == 'qemu' else 'ct'}:{self.vmid}"

    @property
    def ha_managed(self) -> bool:
        """Whether PVE's HA stack manages the guest: a resource in state ``ignored`` is not
        (pve-ha-manager ``src/PVE/HA/Config.pm`` ``$service_check_ha_state`` l.352-364: "ignored
        service behave as if they were not managed by HA"; qemu-server ``Qemu.pm``
        ``migrate_vm`` then migrates it directly, no ``hamigrate``)."""
        return self.ha_state is not None and self.ha_state != "ignored"

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


_CLOUDINIT_RE = re.compile(r"vm-\d+-cloudinit")


@dataclass(frozen=True, slots=True)
class LocalDiskInfo:
    """A ``local_disks`` entry of the qemu migrate precondition."""

    volid: str
    size_bytes: int | None = None
    cdrom: bool = False
    is_unused: bool = False
    # PVE 9.2 (qemu-server QemuServer.pm get_vm_volumes/foreach_volid l.4537-4553): attached
    # to a drive of the config; None from an older PVE that does not say.
    is_attached: bool | None = None
    is_cloudinit: bool = False

    @property
    def needs_with_local_disks(self) -> bool:
        """A live migration refuses it without with-local-disks: a local disk attached to a
        drive (qemu-server ``QemuMigrate.pm`` ``scan_local_volumes`` l.536-545); a CD-ROM is
        never copied."""
        attached = self.is_attached if self.is_attached is not None else not self.is_unused
        return attached and not self.cdrom

    @property
    def blocks_migration(self) -> bool:
        """A local CD-ROM image that is not a cloud-init drive: PVE refuses any migration of
        the VM (``QemuMigrate.pm`` l.473-479, ``die "local cdrom image"``)."""
        return self.cdrom and not self.is_cloudinit and not _CLOUDINIT_RE.search(self.volid)


@dataclass(frozen=True, slots=True)
class NodeRefusal:
    """Why one node is in ``not_allowed_nodes``."""

    node: str
    unavailable_storages: tuple[str, ...] = ()
    unavailable_resources: tuple[str, ...] = ()
    blocking_ha_resources: tuple[BlockingHaResource, ...] = ()

    @property
    def blocks(self) -> bool:
        """Whether PVE refuses the node. On PVE 9.2 every other node of a qemu guest has an
        entry, ``{}`` when it is allowed (qemu-server ``src/PVE/API2/Qemu.pm``
        ``migrate_vm_precondition`` l.5439-5465 with ``QemuServer.pm``
        ``check_local_storage_availability`` l.2301 seeding ``{}`` per node), so presence alone
        is no refusal."""
        return bool(
            self.unavailable_storages or self.unavailable_resources or self.blocking_ha_resources
        )


@dataclass(frozen=True, slots=True)
class MappedResource:
    """A ``mapped-resource-info`` entry: the mapping's `name`; `live_migration` only when PVE
    says the mapping can live-migrate (a missing key means it cannot, qemu-server
    ``QemuMigrate/Helpers.pm`` ``check_local_resources`` l.87-93)."""

    key: str
    live_migration: bool | None = None
    name: str | None = None


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
        """PVE offers `node` as a target: it is in ``allowed_nodes`` (an empty entry in
        ``not_allowed_nodes`` is not a refusal, see `NodeRefusal.blocks`)."""
        refusal = self.not_allowed.get(node)
        return node in self.allowed_nodes and (refusal is None or not refusal.blocks)


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


ROOT_PAM = "root@pam"


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
    # Nodes pvetool drained and no undrain released yet (`pvetool.state.drained`): node ->
    # "drained by pvetool (run ..., since ...)". Not read from PVE: the CLI adds it.
    held_nodes: Mapping[str, str] = field(default_factory=dict)
    # Who the session is to PVE: a token's id (``user@realm!name``) or a password login's user;
    # None when not known. Only ``root@pam`` itself may send root-only options (a token never
    # is root@pam, not even ``root@pam!x``: pve-manager ``PVE/HTTPServer.pm`` ``auth_handler``
    # l.86 makes the token id the request's user).
    session_user: str | None = None

    @property
    def root_session(self) -> bool:
        """The session may send root@pam-only migration options (see `session_user`)."""
        return self.session_user == ROOT_PAM

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

    def in_ha_maintenance(self, node: str) -> bool:
        """True when the node is in HA maintenance (``ha-manager crm-command node-maintenance
        enable``): its ``hastate`` in /cluster/resources or its LRM status says so. The HA
        stack moves guests off it and accepts none."""
        entry = self.nodes.get(node)
        return entry is not None and (
            entry.ha_state == "maintenance" or "maintenance" in (entry.ha_lrm_status or "")
        )

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
    def after(self, moves: Sequence[Move]) -> ClusterSnapshot:
        """The cluster once `moves` have ended (for planning; no I/O): guests on their targets,
        their used memory counted there, copied disks on their target storages, replication jobs
        re-targeted as PVE does it."""
        if not moves:
            return self
        guests = dict(self.guests)
        replication = dict(self.replication)
        used = {name: node.memory_used_bytes for name, node in self.nodes.items()}
        for move in moves:
            guest = guests.get(move.vmid)
            if guest is None:
                continue
            mapping = dict(move.options.target_storage)
            disks = guest.disks
            if mapping:
                disks = tuple(self._mapped_disk(d, mapping) for d in guest.disks)
            if guest.running and guest.node in used and move.target in used:
                # The node's used memory follows the guest, so the host's own use stays the same.
                used[guest.node] -= guest.used_memory_bytes
                used[move.target] += guest.used_memory_bytes
            guests[move.vmid] = replace(guest, node=move.target, disks=disks)
            jobs = replication.get(move.vmid)
            if jobs:
                # pve-guest-common `switch_replication_job_target`: the job to the new node now
                # replicates back to the old one.
                replication[move.vmid] = tuple(guest.node if t == move.target else t for t in jobs)
        nodes = {
            name: replace(node, memory_used_bytes=max(0, used[name]))
            for name, node in self.nodes.items()
        }
        return replace(self, guests=guests, nodes=nodes, replication=replication)

    def _mapped_disk(self, disk: Disk, mapping: Mapping[str, str]) -> Disk:
        """A local disk as a migration with this storage map leaves it."""
        if not disk.is_local or disk.storage is None or disk.media != "disk":
            return disk
        target = mapping.get(disk.storage) or mapping.get("*") or disk.storage
        if target == disk.storage:
            return disk
        storage = self.storages.get(target)
        return replace(
            disk,
            storage=target,
            volid=target + disk.volid[len(disk.storage) :],
            is_local=not (storage is not None and storage.shared),
        )
