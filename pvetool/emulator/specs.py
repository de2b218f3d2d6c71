"""What a cluster file describes: the frozen specs the emulator is built from, and PVE's limits.

`clusterfile` reads a cluster file into these (`ClusterSpec` and its parts); `cluster` builds the
running cluster from them. The constants are the values a spec field may take, as PVE 9.2's own
schemas allow them (qemu-server, pve-container, pve-storage, pve-ha-manager, pve-access-control).

Imports: the standard library and `pvetool.units`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pvetool.units import GiB, MiB

__all__ = [
    "AFFINITIES",
    "MAPPING_TYPES",
    "ALWAYS_SHARED",
    "BUILTIN_ROLES",
    "ARCHES",
    "CONTENT_TYPES",
    "DEFAULT_DIRTY",
    "DEFAULT_RATE_WSS_BYTES",
    "DIRTY_PROFILES",
    "GUEST_STATUSES",
    "GUEST_TYPES",
    "HA_RULE_TYPES",
    "HA_STATES",
    "LXC_LOCKS",
    "MIGRATION_TYPES",
    "NEVER_SHARED",
    "PRIVILEGES",
    "QEMU_LOCKS",
    "QEMU_NIC_MODELS",
    "SHUTDOWN_POLICIES",
    "STORAGE_TYPES",
    "VMID_MAX",
    "VMID_MIN",
    "AclSpec",
    "ClusterFileError",
    "ClusterSpec",
    "DatacenterSpec",
    "DiskSpec",
    "GuestSpec",
    "HaRuleSpec",
    "MappingSpec",
    "NodeSpec",
    "PoolSpec",
    "StorageSpec",
    "TokenSpec",
    "UserSpec",
]

# Dirty profiles (rate D in B/s, writable working set W in bytes). The same numbers as
# pvetool.timing.DIRTY_PROFILES / docs/timing-model.md; a unit test keeps the two in step.
DIRTY_PROFILES: dict[str, tuple[float, float]] = {
    "idle": (2.0 * MiB, 256.0 * MiB),
    "moderate": (40.0 * MiB, 1.0 * GiB),
    "hot": (400.0 * MiB, 4.0 * GiB),
}
DEFAULT_DIRTY = "idle"
DEFAULT_RATE_WSS_BYTES = 1 * GiB  # W when `dirty` is an explicit rate and `wss` is not given
# The privileges of PVE 9.2 (GET /access/roles/{roleid} of the 9.2 API schema; pve-access-control
# $privgroups plus Permissions.Modify). 9.x dropped VM.Monitor and added VM.GuestAgent.*. The
# `pve-priv` format of the API schema (`schema`) checks against the same set.
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
ALWAYS_SHARED = frozenset("rbd cephfs nfs cifs pbs iscsi iscsidirect zfs esxi drbd".split())
NEVER_SHARED = frozenset({"lvmthin", "zfspool", "btrfs"})
STORAGE_TYPES = ALWAYS_SHARED | NEVER_SHARED | {"dir", "lvm"}
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
MIGRATION_TYPES = ("secure", "insecure")
SHUTDOWN_POLICIES = ("freeze", "failover", "conditional", "migrate")
ARCHES = ("x86_64", "aarch64")
HA_RULE_TYPES = ("node-affinity", "resource-affinity")
AFFINITIES = ("positive", "negative")
MAPPING_TYPES = ("pci", "usb", "dir")  # /cluster/mapping/{pci,usb,dir}
VMID_MIN, VMID_MAX = 100, 999_999_999


# pve-access-control AccessControl.pm $privgroups (l.1057-1164): category -> (root, admin,
# user, audit) privileges.
_PRIVGROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "VM": (
        (),
        tuple(
            (
                "VM.Config.Disk VM.Config.CPU VM.Config.Memory VM.Config.Network VM.Config.HWType "
                "VM.Config.Options VM.Allocate VM.Clone VM.GuestAgent.Unrestricted VM.Migrate "
                "VM.Replicate VM.Snapshot VM.Snapshot.Rollback"
            ).split()
        ),
        tuple(
            (
                "VM.Config.CDROM VM.Config.Cloudinit VM.Console VM.Backup "
                "VM.GuestAgent.FileRead VM.GuestAgent.FileSystemMgmt VM.GuestAgent.FileWrite "
                "VM.PowerMgmt"
            ).split()
        ),
        ("VM.Audit", "VM.GuestAgent.Audit"),
    ),
    "Sys": (
        ("Sys.PowerMgmt", "Sys.Modify", "Sys.Incoming", "Sys.AccessNetwork"),
        ("Sys.Console", "Sys.Syslog"),
        (),
        ("Sys.Audit",),
    ),
    "Datastore": (
        (),
        ("Datastore.Allocate", "Datastore.AllocateTemplate"),
        ("Datastore.AllocateSpace",),
        ("Datastore.Audit",),
    ),
    "SDN": ((), ("SDN.Allocate", "SDN.Audit"), ("SDN.Use",), ("SDN.Audit",)),
    "User": (
        ("Realm.Allocate",),
        ("User.Modify", "Group.Allocate", "Realm.AllocateUser"),
        (),
        (),
    ),
    "Pool": ((), ("Pool.Allocate",), ("Pool.Audit",), ("Pool.Audit",)),
    "Mapping": ((), ("Mapping.Modify",), ("Mapping.Use",), ("Mapping.Audit",)),
}


def _builtin_roles() -> dict[str, frozenset[str]]:
    """AccessControl.pm create_roles (l.1175-1204)."""
    roles: dict[str, set[str]] = {"NoAccess": set(), "Administrator": set(PRIVILEGES)}
    for cat, (root, admin, user, audit) in _PRIVGROUPS.items():
        for priv in (*admin, *user, *audit):
            roles.setdefault(f"PVE{cat}Admin", set()).add(priv)
            roles.setdefault("PVEAdmin", set()).add(priv)
        if user:
            for priv in (*user, *audit):
                roles.setdefault(f"PVE{cat}User", set()).add(priv)
        for priv in audit:
            roles.setdefault("PVEAuditor", set()).add(priv)
        del root  # root-only privileges are in no role but Administrator
    roles["PVEAdmin"].discard("Mapping.Modify")
    roles["PVETemplateUser"] = {"VM.Clone", "VM.Audit"}
    return {name: frozenset(privs) for name, privs in roles.items()}


BUILTIN_ROLES: dict[str, frozenset[str]] = _builtin_roles()


class ClusterFileError(Exception):
    """A cluster file cannot be used; ``problems`` holds one ``file:line: path: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"The cluster file has {count} {noun}:\n" + "\n".join(self.problems))


@dataclass(frozen=True)
class DiskSpec:
    key: str  # scsi0, virtio1, efidisk0, rootfs, mp0, unused0, ide2 (CD-ROM) ...
    storage: str  # "" for a CD-ROM drive without media ("none")
    size_bytes: int  # 0 when unknown (an ISO image without size=)
    cdrom: bool = False  # media=cdrom: an ISO image (volume `iso`) or none
    iso: str | None = None  # the ISO volume name of a CD-ROM, e.g. "iso/debian-13.iso"
    unused: bool = False  # an unusedN volume: part of the guest, attached to nothing


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
    disable: bool = False  # storage.cfg `disable`: unusable on every node


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
    parallel: tuple[tuple[str, str], ...] = ()  # (parallel0, /dev/parport0)
    virtiofs: tuple[tuple[str, str], ...] = ()  # (virtiofs0, raw: dirid=<directory mapping>)
    migrate_speed_MiBps: float = 0.0  # qemu `migrate_speed` (MB/s); 0: no limit
    migrate_downtime_s: float | None = None  # qemu `migrate_downtime`; None: PVE's 0.1 s
    ha_failback: bool = True  # HA resource `failback` (pve-ha-manager default 1)
    ha_max_restart: int = 1


@dataclass(frozen=True)
class HaRuleSpec:
    rule: str
    type: str  # node-affinity | resource-affinity
    resources: tuple[str, ...]  # "vm:101", "ct:200"
    affinity: str | None  # positive | negative (resource-affinity only)
    nodes: tuple[tuple[str, int], ...]  # (node, priority) (node-affinity only)
    strict: bool
    disable: bool = False
    comment: str = ""


@dataclass(frozen=True)
class TokenSpec:
    id: str  # user@realm!tokenid
    secret: str = field(repr=False)
    privileges: tuple[str, ...] | None  # None: all privileges (of a privsep token's ACL on /)
    # Privilege separation (pve-access-control): a privsep token has the intersection of its
    # own ACLs (`privileges` on / and `acls:`) with its user's; without, its user's privileges.
    privsep: bool = True


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
    # datacenter.cfg `max_workers`; None when not set (HA LRM: 4; migrateall then refuses).
    max_workers: int | None = None
    ha_shutdown_policy: str = "conditional"
    bwlimit_default_KiBps: int = 0  # `bwlimit: default=`, used when `migration=` is not set
    timezone: str = "UTC"  # the nodes' time zone: task-log time stamps are local time


@dataclass(frozen=True)
class AclSpec:
    """One ACL entry (user.cfg `acl:`): roles or privileges of a user or token on a path."""

    path: str
    subject: str  # user@realm or user@realm!tokenid
    roles: tuple[str, ...]
    privileges: tuple[str, ...] | None  # an anonymous role of these privileges
    propagate: bool = True


@dataclass(frozen=True)
class PoolSpec:
    name: str
    comment: str = ""


@dataclass(frozen=True)
class MappingSpec:
    """A resource mapping (/cluster/mapping/{pci,usb,dir}): which nodes have the device."""

    name: str
    type: str  # pci | usb | dir
    nodes: tuple[str, ...]
    live_migration: bool = False  # PCI `live-migration-capable`


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
    acls: tuple[AclSpec, ...] = ()
    pools: dict[str, PoolSpec] = field(default_factory=dict)  # pools beyond the guests' own
    mappings: dict[str, MappingSpec] = field(default_factory=dict)
