"""The migration of a container, phase by phase, after pve-container `src/PVE/LXC/Migrate.pm`.

- `prepare` (l.36-176), in this order: the lock (`CT is locked (backup)` - the API does not
  check it, `src/PVE/API2/LXC.pm` `migrate_vm` l.1671-1753), running + `online` ("lxc live
  migration is currently not implemented") or without `restart`, every mount point's storage on
  both nodes, the ssh test - and only then, in restart mode, the shutdown (`PVE::LXC::vm_stop`,
  `src/PVE/LXC.pm` l.3219-3271: `lxc-stop --nokill --timeout T`, then up to T+5 s more for the
  container to go, else "container did not stop").
- `phase1` (l.178-476): "starting migration of CT ...", the `migrate` lock, the local volumes,
  their copies, then the config moves to the target (l.470-475): the CT is there, stopped and
  locked, while the source copies are freed (`phase3`, l.500-517).
- `final_cleanup` (l.519-564): `pct unlock` on the target and `pct start` there (restart mode),
  or after a failure: unlock and `start container on source node`.

Imports: stdlib, `pvetool.timing` and the emulator's own modules.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pvetool.emulator.abstract_migrate import (
    FORK_S,
    Migration,
    MigrationError,
    migrate,
    retarget_disk,
    ssh_command,
    switch_replication,
)
from pvetool.emulator.engine import JobGen, Request, Send, Wait
from pvetool.timing import lxc_restart_times

__all__ = ["worker"]

_MIGRATABLE_TYPES = ("dir", "zfspool", "lvmthin", "lvm", "btrfs")  # phase1 l.313-315
DEFAULT_SHUTDOWN_TIMEOUT_S = 180  # prepare l.166: $self->{opts}->{timeout} // 180


def worker(m: Migration) -> JobGen:
    yield from migrate(m, _LxcPhases())


class _LxcPhases:
    def prepare(self, m: Migration) -> JobGen:
        yield from _prepare(m)

    def phase1(self, m: Migration) -> JobGen:
        yield from _phase1(m)

    def phase1_cleanup(self, m: Migration, err: str) -> None:
        """LXC/Migrate.pm phase1_cleanup (l.478-498)."""
        m.log("aborting phase 1 - cleanup resources")
        for volid in m.copies:  # every volume whose copy was begun (l.371-373, l.483-490)
            m.log_err(f"found stale volume copy '{volid}' on node '{m.target}'")

    def phase2(self, m: Migration) -> JobGen:
        return
        yield  # a container never runs during its migration (restart mode stopped it)

    def phase2_cleanup(self, m: Migration, err: str | None) -> None:
        pass

    def phase3_cleanup(self, m: Migration) -> JobGen:
        """LXC/Migrate.pm phase3 (l.500-517): free the source's local volumes."""
        if m.local:
            # vdisk_free on the source: the target's loss does not stop it.
            yield from m.wait_through(m.c.params.lxc_move_s)

    def final_cleanup(self, m: Migration) -> JobGen:
        yield from _final_cleanup(m)


def _prepare(m: Migration) -> Generator[Request, Any, None]:
    c, g = m.c, m.g
    if g.lock:
        raise MigrationError(f"CT is locked ({g.lock})")  # l.48 check_lock
    running = g.status == "running"
    if running:
        if m.opts.online:
            raise MigrationError("lxc live migration is currently not implemented")  # l.52
        if not m.opts.restart:
            raise MigrationError("running container can only be migrated in restart mode")
    m.was_running = running
    for d in g.disks:
        st = c.spec.storages[d.storage]
        if st.disable:
            raise MigrationError(f"storage '{d.storage}' is disabled")
        if "rootdir" not in st.content:
            raise MigrationError(
                f"content type 'rootdir' is not available on storage '{d.storage}'"
            )
        target_sid = d.storage if st.shared else m.opts.targetstorage.map(d.storage)
        tst = c.spec.storages.get(target_sid)
        if tst is None or not c.storage_available_on(target_sid, m.target):
            raise MigrationError(f"storage '{target_sid}' is not available on node '{m.target}'")
        if tst.disable:
            raise MigrationError(f"storage '{target_sid}' is disabled")
        if "rootdir" not in tst.content:
            raise MigrationError(
                f"{d.volid}: content type 'rootdir' is not available on storage '{target_sid}'"
            )
    # prepare's checks and ssh test: T_pre / 2 from the task's start (docs/timing-model.md),
    # the worker's fork (`FORK_S`, before prepare) included.
    yield Wait(max(0.0, c.params.t_pre_s / 2 - FORK_S))
    if not m.target_online():
        raise MigrationError("Can't connect to destination address using public key")  # l.161
    if running and m.opts.restart:
        yield from _shutdown(m)
    m.running = False  # l.172-175: restart mode returns 0 after the shutdown


def _shutdown(m: Migration) -> JobGen:
    """LXC/Migrate.pm prepare l.165-173 with LXC.pm vm_stop(vmid, 0, T): `lxc-stop --nokill
    --timeout T`; if that fails, its error is warned (a raw line) and the container gets T+5 s
    more (l.3246-3270) before "container did not stop"."""
    c, g = m.c, m.g
    timeout_s = m.opts.timeout_s if m.opts.timeout_s is not None else DEFAULT_SHUTDOWN_TIMEOUT_S
    m.log(f"shutdown CT {g.vmid}")
    needed_s = c.shutdown_needed_s(g)
    if needed_s <= timeout_s:
        yield Wait(needed_s)
    else:
        yield Wait(float(timeout_s))
        m.raw(f"command 'lxc-stop -n {g.vmid} --nokill --timeout {timeout_s}' failed: exit code 1")
        grace_s = timeout_s + 5.0
        if needed_s - timeout_s > grace_s:
            yield Wait(grace_s)
            raise MigrationError("container did not stop")
        yield Wait(needed_s - timeout_s)
    c.set_status(g, "stopped")
    g.cpu_load = 0.0


def _phase1(m: Migration) -> JobGen:
    c, g = m.c, m.g
    m.log(f"starting migration of CT {g.vmid} to node '{m.target}' ({m.ip})")
    c.set_lock(g, "migrate")  # l.189-190
    g.migrating = True
    m.hang_if_armed()
    local = []
    for d in g.disks:
        st = c.spec.storages[d.storage]
        if st.shared:
            m.log(f"volume '{d.volid}' is on shared storage '{d.storage}'")  # l.228-229
            continue
        local.append(d)
    errors = {}
    for d in local:
        stype = c.spec.storages[d.storage].type
        if stype not in _MIGRATABLE_TYPES:
            errors[d.volid] = f"storage type '{stype}' not supported"
    for d in sorted(local, key=lambda d: d.volid):
        m.log(f"found local volume '{d.volid}' (in current VM config)")
    for volid in sorted(errors):
        m.log(f"can't migrate local volume '{volid}': {errors[volid]}")
    if errors:
        raise MigrationError("can't migrate CT - check log")
    m.local = local
    job = m.task.job
    copies = [] if m.replicated_to_target else local
    if job is not None:
        job.progress_total_bytes = float(sum(d.alloc_bytes for d in copies))
    for d in copies:
        dst = m.opts.targetstorage.map(d.storage)
        new_volid = d.volid.replace(d.storage, dst, 1)
        m.copies.append(d.volid)
        yield Send(d.alloc_bytes, m.source, m.target, m.cap_Bps)
        m.copies[-1] = new_volid  # $self->{volume_map}
        m.task.stats.sent_bytes = (m.task.stats.sent_bytes or 0.0) + d.alloc_bytes
        m.log(f"volume '{d.volid}' is '{new_volid}' on the target")
    if not m.target_online():
        raise MigrationError(f"Connection to node '{m.target}' lost: No route to host")
    for d in local:
        retarget_disk(d, m.opts.targetstorage.map(d.storage))
    # l.467-475: the config moves to the target (the CT is there, stopped and locked).
    c.set_node(g, m.target)
    g.config_version += 1
    m.conf_migrated = True
    if g.replicate:
        switch_replication(m)


def _final_cleanup(m: Migration) -> JobGen:
    """LXC/Migrate.pm final_cleanup (l.519-564)."""
    c, g = m.c, m.g
    m.log("start final cleanup")
    if not m.conf_migrated:
        c.set_lock(g, None)
        g.migrating = False
        if m.opts.restart and m.was_running and g.status != "running":
            m.log("start container on source node")
            _, _, start_s = lxc_restart_times(c.rng, c.params)
            yield Wait(start_s)
            c.set_status(g, "running")
            g.started_at_s = c.now
            g.cpu_load = 0.05 + c.rng.random() * 0.1
        return
    # l.553-554: `pct unlock` on the target through cmd_logerr (AbstractMigrate.pm): "# <command>",
    # then "failed to clear migrate lock: <ssh's last stderr line>" (pve-common Cmd.pm
    # run_command with errmsg); `errors` set, the cleanup goes on. The CT stays locked.
    unlock = ssh_command(m, "pct", "unlock", str(g.vmid))
    if c.faults.unlock_fails.pop(g.vmid, False):
        m.log(f"# {unlock}")
        m.log_err("failed to clear migrate lock: exit code 255")
        m.errors = True
    elif not (yield from m.ssh_reaches_target()):
        m.log(f"# {unlock}")
        m.log_err(f"failed to clear migrate lock: {m.ssh_error()}")
        m.errors = True
    else:
        c.set_lock(g, None)
    if m.opts.restart and m.was_running:
        m.log("start container on target node")
        start = ssh_command(m, "pct", "start", str(g.vmid))
        m.log(f"# {start}")
        if not (yield from m.ssh_reaches_target()):
            # l.557-560: $self->cmd dies (AbstractMigrate.pm run_command_quiet_full prints
            # the command's output first); the eval around final_cleanup logs the error.
            m.log(m.ssh_error())
            raise MigrationError(f"command '{start}' failed: exit code 255")
        _, _, start_s = lxc_restart_times(c.rng, c.params)
        yield Wait(start_s)
        c.set_status(g, "running")
        g.started_at_s = c.now
        g.cpu_load = 0.05 + c.rng.random() * 0.1
    m.task.stats.guest_downtime_s = c.now - m.start_s if m.was_running else 0.0
