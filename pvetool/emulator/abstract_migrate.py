"""What qemu and container migrations share, after pve-guest-common `src/PVE/AbstractMigrate.pm`.

PVE's `AbstractMigrate::migrate` (4a8f6cb, l.104-251) runs a guest type's phases under the
config lock and ends every migration one of three ways:

- `prepare` dies: "ERROR: migration aborted (duration ...): <err>", TASK ERROR
  `migration aborted` - nothing was locked, no cleanup runs (l.158-159, l.240-243);
- `phase1` dies: "ERROR: <err>", `phase1_cleanup`, `final_cleanup`, then the same abort
  (l.176-189);
- `phase2` dies or a cleanup fails: `errors` is set ("ERROR: online migrate failure - <err>",
  `phase2_cleanup`), phase 3 and the cleanups still run, and the task ends with
  "ERROR: migration finished with problems (duration ...)", TASK ERROR `migration problems`
  (l.194-248). `phase3_cleanup` and `final_cleanup` run in an eval each (l.209-221): a step
  that dies there is logged "ERROR: <err>" and only sets `errors`, so a target lost after the
  config moved leaves the guest on the target, locked if its unlock failed, and the task ends
  with problems, never "migration aborted";
- else "migration finished successfully (duration HH:MM:SS)", TASK OK.

Between `prepare` and `phase1` it logs "use dedicated network address ..." and tests the ssh
connection to that address (l.161-174). `Migration` is the state of one running migration (the
`$self` of those subs); `qemu_migrate` and `lxc_migrate` hold the phases (`Phases`).

Log levels follow `$msg2text` (l.15-28): every line time-stamped in the node's time zone, `err`
lines with "ERROR: ", `info` and `warn` lines plain; `raw` is what a phase prints itself.

Imports: stdlib, `pvetool.timing` and the emulator's own modules.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pvetool.emulator.cluster import Cluster, DiskRt, GuestRt, TaskRt, render_hms
from pvetool.emulator.engine import JobFailure, JobGen, JobInterrupted, Request, Wait
from pvetool.emulator.schema import IdMap
from pvetool.timing import stream_cap_Bps

__all__ = [
    "FORK_S",
    "Migration",
    "MigrationError",
    "MigrationOptions",
    "SSH_UNREACHABLE_S",
    "Phases",
    "migrate",
    "retarget_disk",
    "ssh_command",
]

# A forked worker has written nothing yet: clients polling right after the POST read the log's
# "no content" line (pve-common Tools.pm dump_logfile l.792-795), as on PVE.
FORK_S = 0.2

# ssh to an offline node on the same subnet gives up when ARP does: 3 probes 1 s apart (Linux
# neigh defaults mcast_solicit=3, retrans_time_ms=1000), "No route to host".
SSH_UNREACHABLE_S = 3.0


class MigrationError(JobFailure):
    """A phase died with this message (what `die "...\\n"` is in the Perl code)."""


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
    timeout_s: int | None = None  # LXC restart mode: shutdown timeout (None: 180)
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
    caller: str  # the task's user (authid), for permission-dependent limits
    local: list[DiskRt] = field(default_factory=list)  # local volumes, found in phase1
    local_bytes: float = 0.0  # their allocated bytes, what a copy sends
    errors: bool = False  # $self->{errors}
    phase2_errors: bool = False  # $self->{phase2errors}
    conf_migrated: bool = False  # the config is on the target (LXC $self->{conf_migrated})
    was_running: bool = False  # LXC $self->{was_running}
    replicated_to_target: bool = False  # a replication job to the target exists
    hang_pending: bool = False  # a hang fault that takes hold in phase 1
    target_boot_epoch_s: float = 0.0  # the target's boot time when the migration began
    target_lost: bool = False  # the target went offline during phase 3's steps
    copies: list[str] = field(default_factory=list)  # volumes copied (or being copied) so far

    def hang_if_armed(self) -> None:
        """The hang-next-migration fault: from now on no progress until released."""
        job = self.task.job
        if self.hang_pending and job is not None:
            self.hang_pending = False
            job.hung = True
            self.task.stats.hung = True

    @classmethod
    def begin(
        cls,
        c: Cluster,
        task: TaskRt,
        g: GuestRt,
        target: str,
        opts: MigrationOptions,
        running: bool,
        bwlimit_KiBps: float | None,
    ) -> Migration:
        """AbstractMigrate::migrate's setup (l.110-129): migration type and network from the
        options or datacenter.cfg; the bandwidth limit and the stream cap."""
        mtype = opts.migration_type or c.spec.datacenter.migration_type
        secure = mtype != "insecure"
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
            bwlimit_KiBps=bwlimit_KiBps,
            cap_Bps=stream_cap_Bps(c.params, secure, bwlimit_KiBps),
            ip=ip,
            dedicated_network=dedicated,
            caller=task.user,
            replicated_to_target=target in g.replicate,
            target_boot_epoch_s=c.nodes[target].boot_epoch_s,
        )

    def log(self, msg: str) -> None:
        """$self->log('info'|'warn', ...): time-stamped."""
        self.task.log(self.c.now, msg)

    def log_err(self, msg: str) -> None:
        """$self->log('err', ...): time-stamped with "ERROR: "."""
        self.task.log(self.c.now, "\n".join(f"ERROR: {part}" for part in msg.split("\n")))

    def raw(self, msg: str) -> None:
        """A phase's own print/warn: no time stamp."""
        self.task.raw(msg)

    def duration(self) -> str:
        return render_hms(self.c.now - self.start_s)

    def target_online(self) -> bool:
        return self.c.nodes[self.target].online

    def source_online(self) -> bool:
        return self.c.nodes[self.source].online

    def tunnel_alive(self) -> bool:
        """The ssh tunnel of phase 2 still answers: its target has been reachable, and not
        rebooted, since the migration began."""
        node = self.c.nodes[self.target]
        return (
            node.online and node.boot_epoch_s == self.target_boot_epoch_s and not self.target_lost
        )

    def wait_through(self, seconds: float) -> JobGen:
        """`seconds` of phase 3 or final cleanup work the target's loss does not stop (the
        source's own steps, or a command whose ssh connection just hangs). The engine throws
        `JobFailure` into the task when the target goes offline; here that only marks the
        target lost. A stop of the task neither stops it (see below)."""
        end_s = self.c.now + seconds
        while True:
            try:
                yield Wait(max(0.0, end_s - self.c.now))
                return
            except JobInterrupted:
                # A task stop (SIGTERM) outside eval_int meets migrate's own handler (l.144-150):
                # logged, remembered, and the cleanup goes on.
                self.log_err("received interrupt - delayed")
            except JobFailure:
                if not self.source_online():
                    raise
                self.target_lost = True

    def tunnel_command(
        self, command: str, timeout_s: float, work_s: float
    ) -> Generator[Request, Any, str | None]:
        """pve-guest-common src/PVE/Tunnel.pm write_tunnel over a version 1 tunnel: the
        error it dies with, or None. A tunnel whose target went away never replies: the read
        times out after `timeout_s` (read_tunnel, run_with_timeout's "got timeout")."""
        start_s = self.c.now
        if self.tunnel_alive():
            yield from self.wait_through(work_s)
            if self.tunnel_alive():
                return None
        yield from self.wait_through(max(0.0, start_s + timeout_s - self.c.now))
        return f"no reply to command '{command}': reading from tunnel failed: got timeout"

    def ssh_reaches_target(self) -> Generator[Request, Any, bool]:
        """A fresh ssh to the target (pve-cluster SSHInfo.pm ssh_info_to_command): False,
        after ARP gave up (3 probes of 1 s, Linux's default), when the target is offline."""
        if self.target_online():
            return True
        yield from self.wait_through(SSH_UNREACHABLE_S)
        return False

    def ssh_error(self) -> str:
        """What ssh prints on stderr when the target is unreachable."""
        return f"ssh: connect to host {self.ip} port 22: No route to host"


class Phases(Protocol):
    """The guest type's half of AbstractMigrate (QemuMigrate.pm, LXC/Migrate.pm)."""

    def prepare(self, m: Migration) -> JobGen: ...

    def phase1(self, m: Migration) -> JobGen: ...

    def phase1_cleanup(self, m: Migration, err: str) -> None: ...

    def phase2(self, m: Migration) -> JobGen: ...

    def phase2_cleanup(self, m: Migration, err: str | None) -> None: ...

    def phase3_cleanup(self, m: Migration) -> JobGen: ...

    def final_cleanup(self, m: Migration) -> JobGen: ...


def migrate(m: Migration, phases: Phases) -> JobGen:
    """pve-guest-common src/PVE/AbstractMigrate.pm migrate (l.152-251)."""
    try:
        # The worker's start is inside the eval too: a target lost while the task forks ends
        # it as a failed prepare would ("migration aborted"), never outside the task.
        yield Wait(FORK_S)
        yield from phases.prepare(m)  # sets m.running
        if m.dedicated_network:
            # l.161-174
            m.log(f"use dedicated network address for sending migration traffic ({m.ip})")
            if not m.target_online():
                raise MigrationError(
                    f"Can't connect to destination address ({m.ip}) using public key authentication"
                )
        try:
            yield from phases.phase1(m)
        except JobFailure as exc:
            err = str(exc)
            m.log_err(err)
            phases.phase1_cleanup(m, err)
            yield from phases.final_cleanup(m)
            raise MigrationError(err) from None
        if m.running:
            phase2_err: str | None = None
            try:
                yield from phases.phase2(m)
            except JobFailure as exc:
                phase2_err = str(exc)
                m.errors = True
                m.log_err(f"online migrate failure - {phase2_err}")
            phases.phase2_cleanup(m, phase2_err)
        # l.209-221: phase 3's cleanup and the final cleanup each run in their own eval: an
        # error there (the target lost after the config moved, a failed `qm unlock`) is logged
        # and sets `errors`; the task goes on and ends "migration finished with problems".
        for cleanup in (phases.phase3_cleanup, phases.final_cleanup):
            try:
                yield from cleanup(m)
            except JobFailure as exc:
                if not m.source_online():
                    raise  # the worker's own node went away: no eval catches that
                m.log_err(str(exc))
                m.errors = True
    except JobFailure as exc:
        m.log_err(f"migration aborted (duration {m.duration()}): {exc}")
        _end(m, "migration aborted")
        return
    if m.errors:
        m.log_err(f"migration finished with problems (duration {m.duration()})")
        _end(m, "migration problems")
        return
    m.log(f"migration finished successfully (duration {m.duration()})")
    _end(m, None)


def _end(m: Migration, error: str | None) -> None:
    g = m.g
    g.migrating = False
    m.task.stats.ram_fraction = 0.0
    m.c.end_task(m.task, error)


def _target_ip(c: Cluster, target: str, opts: MigrationOptions) -> tuple[str, bool]:
    """(the target's address, whether it is on a dedicated migration network): pve-cluster
    src/PVE/SSHInfo.pm get_ssh_info with the migration network (l.9-55)."""
    net = opts.migration_network or c.spec.datacenter.migration_network
    node = c.nodes[target]
    if net:
        prefix = net.split("/")[0].rsplit(".", 1)[0]
        return f"{prefix}.{node.nodeid + 10}", True
    return node.ip, False


def ssh_command(m: Migration, *args: str) -> str:
    """pve-cluster SSHInfo.pm ssh_info_to_command (l.57-98), as pve-common Cmd.pm to_string
    quotes it (String::ShellQuote)."""
    node = m.target
    return " ".join(
        [
            "/usr/bin/ssh -e none -o 'BatchMode=yes'",
            f"-o 'HostKeyAlias={node}'",
            f"-o 'UserKnownHostsFile=/etc/pve/nodes/{node}/ssh_known_hosts'",
            "-o 'GlobalKnownHostsFile=none'",
            f"root@{m.ip}",
            *args,
        ]
    )


def retarget_disk(d: DiskRt, dst: str) -> None:
    """A volume copied to storage `dst` on the target ("volume '...' is '...' on the target")."""
    if dst != d.storage:
        d.volid = d.volid.replace(d.storage, dst, 1)
        d.storage = dst


def switch_replication(m: Migration) -> None:
    """AbstractMigrate::switch_replication_job_target, after the config moved: the job that
    replicated to the new node now replicates back to the old one."""
    m.g.replicate = [m.source if t == m.target else t for t in m.g.replicate]
