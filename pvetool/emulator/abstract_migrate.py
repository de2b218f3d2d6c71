"""What qemu and container migrations share, after pve-guest-common `src/PVE/AbstractMigrate.pm`.

PVE's `AbstractMigrate::migrate` runs a guest type's phases (prepare, phase1, phase2, phase3,
their cleanups, final_cleanup) under the guest's migrate lock and ends every migration the same
way: unlocked, the config on the new node (or still on the old one), and one of "migration
finished successfully", "migration aborted" or "migration problems". `Migration` is the state of
one running migration (the `$self` of those subs); `qemu_migrate` and `lxc_migrate` hold the
phases.

Imports: stdlib, `pvetool.timing` and the emulator's own modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pvetool.emulator.cluster import Cluster, DiskRt, GuestRt, TaskRt, render_duration
from pvetool.emulator.schema import IdMap
from pvetool.timing import stream_cap_Bps

__all__ = ["Migration", "MigrationOptions", "finish", "retarget_disk"]


@dataclass
class MigrationOptions:
    """The options of POST .../migrate (qemu-server `migrate_vm`, pve-container `migrate_vm`)."""

    online: bool = False
    with_local_disks: bool = False
    targetstorage: IdMap = field(default_factory=IdMap)
    bwlimit_KiBps: float | None = None
    migration_type: str | None = None
    migration_network: str | None = None
    restart: bool = False
    timeout_s: int = 180
    force: bool = False
    with_conntrack_state: bool = False


@dataclass
class Migration:
    """One migration in flight: AbstractMigrate's `$self` (opts, node, nodeip, running...)."""

    c: Cluster
    task: TaskRt
    g: GuestRt
    target: str
    opts: MigrationOptions
    running: bool
    source: str
    start_s: float
    secure: bool
    bwlimit_KiBps: float | None
    cap_Bps: float
    ip: str
    dedicated_network: bool
    local: list[DiskRt] = field(default_factory=list)  # local volumes, found in phase1
    local_bytes: float = 0.0  # their allocated bytes, what a copy sends

    @classmethod
    def begin(
        cls,
        c: Cluster,
        task: TaskRt,
        g: GuestRt,
        target: str,
        opts: MigrationOptions,
        running: bool,
    ) -> Migration:
        """AbstractMigrate::migrate's setup: migration type and network from the options or
        datacenter.cfg, the bandwidth limit (AbstractMigrate::get_bwlimit) and the stream cap."""
        mtype = opts.migration_type or c.spec.datacenter.migration_type
        secure = mtype != "insecure"
        bwlimit = _bwlimit_KiBps(c, opts)
        ip, dedicated = _target_ip(c, target, opts)
        return cls(
            c=c,
            task=task,
            g=g,
            target=target,
            opts=opts,
            running=running,
            source=g.node,
            start_s=c.now,
            secure=secure,
            bwlimit_KiBps=bwlimit,
            cap_Bps=stream_cap_Bps(c.params, secure, bwlimit),
            ip=ip,
            dedicated_network=dedicated,
        )

    def log(self, msg: str) -> None:
        self.task.log(self.c.now, msg)

    def duration(self) -> str:
        """Since the migration began, as AbstractMigrate::migrate prints it (HH:MM:SS)."""
        return render_duration(self.c.now - self.start_s)

    def target_unreachable(self) -> str | None:
        """The error of the ssh check in `prepare` (QemuMigrate and LXC::Migrate) when the
        target node is down."""
        if not self.c.nodes[self.target].online:
            return "Can't connect to destination address using public key"
        return None

    def log_aborted(self, err: str) -> None:
        """AbstractMigrate::migrate when a phase died: "migration aborted (duration ...)"."""
        self.log(f"ERROR: migration aborted (duration {self.duration()}): {err}")


def _bwlimit_KiBps(c: Cluster, opts: MigrationOptions) -> float | None:
    """The `bwlimit` option, else datacenter.cfg's `bwlimit: migration=` (0 = unlimited)."""
    if opts.bwlimit_KiBps is not None:
        return opts.bwlimit_KiBps or None
    dc = c.spec.datacenter.bwlimit_migration_KiBps
    return float(dc) if dc else None


def _target_ip(c: Cluster, target: str, opts: MigrationOptions) -> tuple[str, bool]:
    """(the target's address, whether it is on a dedicated migration network)."""
    net = opts.migration_network or c.spec.datacenter.migration_network
    node = c.nodes[target]
    if net:
        prefix = net.split("/")[0].rsplit(".", 1)[0]
        return f"{prefix}.{node.nodeid + 10}", True
    return node.ip, False


def retarget_disk(d: DiskRt, dst: str) -> None:
    """A volume copied to storage `dst` on the target ("volume '...' is '...' on the target")."""
    if dst != d.storage:
        d.volid = d.volid.replace(d.storage, dst, 1)
        d.storage = dst


def finish(m: Migration, error: str | None, moved: bool) -> None:
    """The end of every migration: unlock, the config on the target if `moved`, end the task."""
    g = m.g
    if moved:
        # AbstractMigrate::switch_replication_job_target, after the config moved: the job that
        # replicated to the new node now replicates back to the old one.
        g.replicate = [g.node if t == m.target else t for t in g.replicate]
        g.node = m.target
    g.lock = None
    g.migrating = False
    g.config_version += 1
    if g.spec.ha:
        g.ha_state = "started" if g.status == "running" else "stopped"
    m.task.stats.ram_fraction = 0.0
    m.c.end_task(m.task, error)
