"""The migration of a VM, phase by phase, after qemu-server `src/PVE/QemuMigrate.pm` (9.2.6).

`worker` is the task's job (a generator the `engine` runs in emulated time): pve-guest-common
`AbstractMigrate::migrate` (`abstract_migrate.migrate`) over the phases below.

- `prepare` (l.183-365): lock check, the replication-target check, the conntrack warning,
  local and mapped devices (l.270-304), every volume's storage on both nodes (l.315-340), the ssh
  test to the target. Nothing is locked yet: a failure here leaves the guest untouched.
- `phase1` (l.828-850): "starting migration of VM ..." and the `migrate` lock (l.835-837),
  `scan_local_volumes` (l.367-606), then for a stopped VM `sync_offline_local_volumes`.
- `phase2` (l.1214-1591): the target QEMU (`phase2_start_local_cluster`), the tunnel, the
  storage mirrors (`PVE::QemuServer::BlockJob`), the RAM (`pvetool.timing.Precopy`), and the
  mirrors' cancel.
- `phase3_cleanup` (l.1690-1910): the config moves to the target (l.1719) while the lock stays,
  the VM resumes there over the tunnel, the tunnel closes, the source is stopped and its local
  volumes freed, then `qm unlock` on the target (l.1902-1903) - a failure there leaves the guest
  locked on the target. A target lost in this phase fails each of its steps (logged, `errors`
  set) without stopping the others; the task ends "migration finished with problems".

Imports: stdlib, `pvetool.timing` and the emulator's own modules.
"""

from __future__ import annotations

import math
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
from pvetool.emulator.cluster import DiskRt, render_bytes, render_duration
from pvetool.emulator.engine import JobGen, Ram, Request, Send, Wait
from pvetool.timing import Precopy, PrecopyEvent

__all__ = ["mirror_bytes", "worker"]

_MIGRATABLE_TYPES = ("dir", "btrfs", "zfspool", "lvmthin", "lvm")  # scan_local_volumes l.576
# Storages whose volumes QEMU opens as host block devices (an LV, a thin LV, a zvol). QEMU's
# block/file-posix.c `find_allocation` asks lseek(SEEK_DATA/SEEK_HOLE) for holes; on a Linux
# block device that reports the whole device as data (fs/read_write.c
# `generic_file_llseek_size`, via `blkdev_llseek`), so a drive-mirror (block/mirror.c) reads and
# sends every byte of the volume's size, unallocated thin extents included. Files (dir, btrfs:
# raw with holes, qcow2 clusters) report their holes, so only allocated bytes are sent.
_BLOCK_DEVICE_TYPES = frozenset({"lvm", "lvmthin", "zfspool"})


def worker(m: Migration) -> JobGen:
    yield from migrate(m, _QemuPhases())


class _QemuPhases:
    def prepare(self, m: Migration) -> JobGen:
        yield from _prepare(m)

    def phase1(self, m: Migration) -> JobGen:
        yield from _phase1(m)

    def phase1_cleanup(self, m: Migration, err: str) -> None:
        """QemuMigrate.pm phase1_cleanup (l.948-977): the lock goes, copies are freed."""
        m.log("aborting phase 1 - cleanup resources")
        m.c.set_lock(m.g, None)

    def phase2(self, m: Migration) -> JobGen:
        yield from _phase2(m)

    def phase2_cleanup(self, m: Migration, err: str | None) -> None:
        """QemuMigrate.pm phase2_cleanup (l.1593-1682): only after an error."""
        if not m.errors:
            return
        m.phase2_errors = True
        m.log("aborting phase 2 - cleanup resources")
        m.log("migrate_cancel")
        m.c.set_lock(m.g, None)
        m.task.stats.target_started = False

    def phase3_cleanup(self, m: Migration) -> JobGen:
        yield from _phase3_cleanup(m)

    def final_cleanup(self, m: Migration) -> JobGen:
        return
        yield  # QemuMigrate.pm final_cleanup (l.1912-1916): nothing to do


# -- prepare --------------------------------------------------------------------------------------
def _prepare(m: Migration) -> Generator[Request, Any, None]:
    c, g = m.c, m.g
    if g.lock:
        raise MigrationError(f"VM is locked ({g.lock})")  # l.211 check_lock
    running = g.status == "running"
    if running:
        # l.218-229: the replication-target check (the API already refused without force).
        if g.replicate and not m.replicated_to_target:
            if not m.opts.force:
                raise MigrationError(
                    f"Cannot live-migrate replicated VM to node '{m.target}' - not a "
                    "replication target. Use 'force' to override."
                )
            m.log(
                f"WARNING: Node '{m.target}' is not a replication target. Existing "
                "replication jobs will fail after migration!"
            )
        if not m.opts.with_conntrack_state:
            m.log(
                "conntrack state migration not supported or disabled, "
                "active connections might get dropped"
            )
    _check_devices(m, running)
    _check_storages(m)
    # The ssh test (l.358-361) and what prepare does besides take this long. T_pre of the
    # timing model (docs/timing-model.md: "lock, checks, ssh", 1.5 s) counts from the task's
    # start, so the worker's fork (`FORK_S`, spent before prepare) is part of it, not extra.
    yield Wait(max(0.0, c.params.t_pre_s - FORK_S))
    if not m.target_online():
        raise MigrationError("Can't connect to destination address using public key")
    m.running = running


def _check_devices(m: Migration, running: bool) -> None:
    """QemuMigrate.pm prepare l.270-304 on Helpers.pm check_local_resources. `$self->{running}`
    is still 0 while prepare runs (AbstractMigrate.pm l.157-158), so `force` lets non-mapped
    local devices pass even for a running VM."""
    loc, mapped, missing = m.c.local_resources(m.g, running)
    blocking = [k for k in loc if k not in mapped]
    if blocking:
        if not m.opts.force:
            raise MigrationError(
                f"can't migrate VM which uses local devices: {', '.join(blocking)}"
            )
        m.log("migrating VM which uses local devices")
    if mapped:
        not_live = [
            f"{k}:{mapped[k]['name']}"
            for k in sorted(mapped)
            if not mapped[k].get("live-migration")
        ]
        if missing.get(m.target):
            raise MigrationError(
                f"can't migrate to '{m.target}': missing mapped devices "
                f"{', '.join(missing[m.target])}"
            )
        if running and not_live:
            raise MigrationError(
                "can't live migrate running VM which uses following mapped devices: "
                + ", ".join(not_live)
            )
        m.log("migrating VM which uses mapped local devices")


def _check_storages(m: Migration) -> None:
    """QemuMigrate.pm prepare l.315-340: each volume's storage is enabled here and (mapped) on
    the target (target_storage_check_available, l.169-181)."""
    c = m.c
    for d in m.g.disks:
        if not d.storage:
            continue  # CD-ROM without media
        st = c.spec.storages[d.storage]
        if st.disable:
            raise MigrationError(f"storage '{d.storage}' is disabled")
        target_sid = d.storage if st.shared else m.opts.targetstorage.map(d.storage)
        _target_storage_check_available(m, target_sid, d)


def _target_storage_check_available(m: Migration, target_sid: str, d: DiskRt) -> None:
    c = m.c
    tst = c.spec.storages.get(target_sid)
    if tst is None:
        raise MigrationError(f"storage '{target_sid}' does not exist")
    if not c.storage_available_on(target_sid, m.target):
        raise MigrationError(f"storage '{target_sid}' is not available on node '{m.target}'")
    if tst.disable:
        raise MigrationError(f"storage '{target_sid}' is disabled")
    vtype = "iso" if d.cdrom else "images"
    if vtype not in tst.content:
        raise MigrationError(
            f"{d.volid}: content type '{vtype}' is not available on storage '{target_sid}'"
        )


# -- phase 1 --------------------------------------------------------------------------------------
def _phase1(m: Migration) -> JobGen:
    c, g = m.c, m.g
    m.log(f"starting migration of VM {g.vmid} to node '{m.target}' ({m.ip})")
    c.set_lock(g, "migrate")  # l.835-837
    g.migrating = True
    m.hang_if_armed()
    _scan_local_volumes(m)
    if m.replicated_to_target:
        m.log("replicating disk images")
    m.local_bytes = float(sum(_copy_bytes(m, d) for d in m.local))
    if not m.running or any(d.unused for d in m.local):
        yield from _sync_offline_local_volumes(m)


def _copy_bytes(m: Migration, d: DiskRt) -> int:
    """What moving a local volume sends: nothing for a volume the replication job already has
    on the target (handle_replication, l.608-653)."""
    return 0 if m.replicated_to_target else d.alloc_bytes


def mirror_bytes(storage_type: str, d: DiskRt) -> int:
    """What a live drive-mirror of local volume `d` puts on the wire (see
    `_BLOCK_DEVICE_TYPES`): its whole size on a block-device storage, else its allocated bytes."""
    return d.size_bytes if storage_type in _BLOCK_DEVICE_TYPES else d.alloc_bytes


def _mirror_copy_bytes(m: Migration, d: DiskRt) -> int:
    if m.replicated_to_target:
        return 0
    return mirror_bytes(m.c.spec.storages[d.storage].type if d.storage else "", d)


def _scan_local_volumes(m: Migration) -> None:
    """QemuMigrate.pm scan_local_volumes (l.367-606)."""
    c, g = m.c, m.g
    errors: dict[str, str] = {}
    local: list[DiskRt] = []
    for d in g.disks:
        if not d.storage:
            continue  # l.426: the `none` CD-ROM
        if c.spec.storages[d.storage].shared:
            continue  # l.441
        local.append(d)
        if d.cdrom and not _is_cloudinit(d):
            errors[d.volid] = "local cdrom image"  # l.473-479
    m.local = local
    kind = "local, replicated" if m.replicated_to_target else "local"
    for d in sorted(local, key=lambda d: d.volid):
        if d.key == "tpmstate0":
            m.log(f"found generated disk '{d.volid}' (in current VM config)")
        elif d.unused:
            m.log(f"found {kind} disk '{d.volid}' (unused)")
        else:
            if m.running and not m.opts.with_local_disks:
                errors[d.volid] = (
                    "can't live migrate attached local disks without with-local-disks option"
                )
            m.log(f"found {kind} disk '{d.volid}' (attached)")
    for volid in sorted(errors):
        m.log(f"can't migrate local disk '{volid}': {errors[volid]}")
    if errors:
        raise MigrationError("Problem found while scanning volumes - can't migrate VM - check log")
    for d in local:
        stype = c.spec.storages[d.storage].type
        if stype not in _MIGRATABLE_TYPES:
            raise MigrationError(
                "Problem found while scanning volumes - can't migrate "
                f"'{d.volid}' - storage type '{stype}' not supported"
            )


def _is_cloudinit(d: DiskRt) -> bool:
    return "cloudinit" in d.volid


def _offline_volumes(m: Migration) -> list[DiskRt]:
    """filter_local_volumes('offline', 0): everything of a stopped VM; of a running one what
    is not attached (unused volumes)."""
    if m.replicated_to_target:
        return []
    return [d for d in m.local if not m.running or d.unused]


def _sync_offline_local_volumes(m: Migration) -> JobGen:
    """QemuMigrate.pm sync_offline_local_volumes (l.713-783)."""
    volumes = sorted(_offline_volumes(m), key=lambda d: d.volid)
    if volumes:
        m.log("copying local disk images")
    job = m.task.job
    if job is not None:
        job.progress_total_bytes = float(sum(d.alloc_bytes for d in volumes))
    for d in volumes:
        yield Send(d.alloc_bytes, m.source, m.target, m.cap_Bps)
        dst = m.opts.targetstorage.map(d.storage)
        m.log(f"volume '{d.volid}' is '{d.volid.replace(d.storage, dst, 1)}' on the target")
    if not m.target_online():
        raise MigrationError(f"Connection to node '{m.target}' lost: No route to host")


# -- phase 2 --------------------------------------------------------------------------------------
def _online_volumes(m: Migration) -> list[DiskRt]:
    """filter_local_volumes('online'): attached local volumes of a running VM (l.590-593)."""
    return [d for d in m.local if not d.unused and not d.cdrom]


def _phase2(m: Migration) -> JobGen:
    p = m.c.params
    mirrors = _online_volumes(m) if m.opts.with_local_disks else []
    yield from _phase2_start_local_cluster(m, mirrors)
    m.log("start remote tunnel")  # l.1289: also for insecure migrations (fork_tunnel())
    yield Wait(p.t_start_s / 2 + (p.t_start_secure_extra_s if m.secure else 0.0))
    m.log("ssh tunnel ver 1")  # pve-guest-common Tunnel.pm fork_tunnel (l.183-189)
    job = m.task.job
    give_up_s = None if p.abort_s_per_gib > 0 else math.inf
    precopy = Precopy(
        m.g.used_bytes,
        m.g.dirty.rate_Bps,
        m.g.dirty.wss_bytes,
        p,
        downtime_limit_s=m.g.spec.migrate_downtime_s,
        give_up_s=give_up_s,
    )
    if job is not None:
        job.progress_total_bytes = (
            float(sum(_mirror_copy_bytes(m, d) for d in mirrors)) + m.g.used_bytes
        )
    if mirrors:
        # phase1 counted their allocated bytes; a mirror of a block device sends its size
        m.local_bytes += sum(_mirror_copy_bytes(m, d) - _copy_bytes(m, d) for d in mirrors)
        yield from _mirror_local_disks(m, mirrors)
    yield from _migrate_ram(m, precopy)
    if mirrors:
        yield from _cancel_mirrors(m, mirrors)


def _migrate_uri(m: Migration) -> str:
    """l.1229-1230, l.1293-1295: unix socket through the ssh tunnel, or tcp to the target."""
    if m.secure:
        return f"unix:/run/qemu-server/{m.g.vmid}.migrate"
    return f"tcp:{m.ip}:60000"


def _phase2_start_local_cluster(m: Migration, mirrors: list[DiskRt]) -> JobGen:
    """QemuMigrate.pm phase2_start_local_cluster (l.979-1148): `qm start --migratedfrom` on
    the target; its output names the volumes it allocated, its errors come back as
    "[<node>] ..." lines and "remote command failed with exit code 255"."""
    p = m.c.params
    g = m.g
    m.log(f"starting VM {g.vmid} on remote node '{m.target}'")
    yield Wait(p.t_start_s / 2)
    start_err = m.c.start_error(g, m.target)
    if start_err or not m.target_online():
        for line in start_err:
            m.log(f"[{m.target}] {line}")
        if start_err:
            m.log(f"[{m.target}] start failed: QEMU exited with code 1")
        raise MigrationError("remote command failed with exit code 255")
    for d in mirrors:
        dst = m.opts.targetstorage.map(d.storage)
        m.log(f"volume '{d.volid}' is '{d.volid.replace(d.storage, dst, 1)}' on the target")
    m.task.stats.target_started = True


def _mirror_local_disks(m: Migration, mirrors: list[DiskRt]) -> JobGen:
    """QemuMigrate.pm phase2 l.1297-1336 and qemu-server src/PVE/QemuServer/BlockJob.pm: one
    drive-mirror per local disk, each monitored (`monitor`, l.88-245: a raw progress line per
    second until ready, then "all 'mirror' jobs are ready" - once per mirror call), then the
    jobs switch to actively synced mode (QEMU >= 8.2)."""
    m.log("starting storage migration")
    for d in mirrors:
        if m.secure:
            nbd = f"nbd:unix:/run/qemu-server/{m.g.vmid}_nbd.migrate:exportname=drive-{d.key}"
        else:
            nbd = f"nbd:{m.ip}:60001:exportname=drive-{d.key}"
        m.log(f"{d.key}: start migration to {nbd}")
        if m.bwlimit_KiBps:
            m.raw(
                f"drive mirror is starting for drive-{d.key} with bandwidth limit: "
                f"{int(m.bwlimit_KiBps)} KiB/s"
            )
        else:
            m.raw(f"drive mirror is starting for drive-{d.key}")
        t0 = m.c.now
        copy_bytes = _mirror_copy_bytes(m, d)

        def each_second(
            sent: float, rate: float, d: DiskRt = d, t0: float = t0, total: int = copy_bytes
        ) -> None:
            _log_mirror(m, d, min(1.0, sent / (total or 1)), t0, "")

        yield Send(copy_bytes, m.source, m.target, m.cap_Bps, on_second=each_second)
        _log_mirror(m, d, 1.0, t0, ", ready")
        m.raw("all 'mirror' jobs are ready")
    m.log("switching mirror jobs to actively synced mode")


def _log_mirror(m: Migration, d: DiskRt, fraction: float, t0: float, suffix: str) -> None:
    """BlockJob.pm monitor l.134-155 (render_bytes, render_duration)."""
    m.raw(
        f"drive-{d.key}: transferred {render_bytes(fraction * d.size_bytes)} of "
        f"{render_bytes(d.size_bytes)} ({fraction * 100:.2f}%) in "
        f"{render_duration(m.c.now - t0)}{suffix}"
    )


def _cancel_mirrors(m: Migration, mirrors: list[DiskRt]) -> JobGen:
    """QemuMigrate.pm phase2 l.1578-1590: BlockJob::monitor(..., 'cancel') after the RAM."""
    m.raw("all 'mirror' jobs are ready")
    for d in sorted(mirrors, key=lambda d: d.key):
        m.raw(f"drive-{d.key}: Completing block job...")
        m.raw(f"drive-{d.key}: Completed successfully.")
    yield Wait(1.0)
    for d in sorted(mirrors, key=lambda d: d.key):
        m.raw(f"drive-{d.key}: mirror-job finished")


def _migrate_ram(m: Migration, precopy: Precopy) -> JobGen:
    """QemuMigrate.pm phase2 l.1338-1576: capabilities and parameters, pre-copy, stop-and-copy."""
    p = m.c.params
    uri = _migrate_uri(m)
    m.log(f"starting online/live migration on {uri}")
    m.log("set migration capabilities")
    speed_KiBps = _migrate_speed_KiBps(m)
    if speed_KiBps:
        m.log(f"migration speed limit: {render_bytes(speed_KiBps * 1024)}/s")
    m.log(f"migration downtime limit: {int(round(precopy.downtime_limit_s * 1000))} ms")
    cache = _round_powerof2(int(m.g.memory_bytes / 10))
    m.log(f"migration cachesize: {render_bytes(cache)}")
    m.log("set migration parameters")
    m.log(f"start migrate command to {uri}")
    ram_start = m.c.now
    cap_Bps = m.cap_Bps if not speed_KiBps else min(m.cap_Bps, speed_KiBps * 1024)
    yield Ram(
        precopy,
        m.source,
        m.target,
        cap_Bps,
        on_second=lambda pc, rate: _log_ram_second(m, pc, rate),
        on_event=lambda ev: _ram_event(m, ev),
    )
    stats = m.task.stats
    stats.sent_bytes = precopy.sent_bytes + m.local_bytes
    stats.throttle = precopy.throttle
    if precopy.aborted:
        m.log("migration status error: failed")
        raise MigrationError("aborting")
    links = m.c.engine.link_Bps
    stop_s = precopy.stop_copy_s(min(cap_Bps, links[m.source], links[m.target]))
    # QEMU pauses the guest for the stop-and-copy; PVE sees "completed" at its next poll.
    detect_s = precopy.next_poll_after_s(precopy.elapsed_s + stop_s) - precopy.elapsed_s
    yield Wait(max(stop_s, detect_s))
    downtime_ms = int(round(stop_s * 1000))
    stats.downtime_ms = downtime_ms
    stats.guest_downtime_s = stop_s + p.t_res_s
    # l.1483-1489: only when the RAM phase took at least one whole second.
    delay = int(m.c.now) - int(ram_start)
    if delay > 0:
        m.log(
            f"average migration speed: {render_bytes(m.g.memory_bytes / delay)}/s - "
            f"downtime {downtime_ms} ms"
        )
    m.log(f"migration completed, transferred {render_bytes(precopy.sent_bytes)} VM-state")
    m.log("migration status: completed")


def _migrate_speed_KiBps(m: Migration) -> float:
    """QemuMigrate.pm phase2 l.1350-1362: the lower of bwlimit (KiB/s) and the VM's
    `migrate_speed` (MB/s); 0 = no limit (QEMU then gets 16 GiB/s)."""
    bwlimit = m.bwlimit_KiBps or 0.0
    speed = m.g.spec.migrate_speed_MiBps * 1024
    if bwlimit and speed:
        return min(bwlimit, speed)
    return speed or bwlimit


def _round_powerof2(value: int) -> int:
    """QemuMigrate.pm round_powerof2 (l.1918-1921)."""
    if value < 2:
        return 1
    return 2 << int(math.log(value - 1) / math.log(2))


def _log_ram_second(m: Migration, pc: Precopy, rate: float) -> None:
    """QemuMigrate::phase2's "migration active" line (l.1519-1546), once a second (also when
    polling every 100 ms: it logs every 10th poll then)."""
    g = m.g
    m.task.stats.ram_fraction = min(1.0, pc.sent_bytes / max(1.0, g.used_bytes))
    msg = (
        f"migration active, transferred {render_bytes(pc.sent_bytes)} of "
        f"{render_bytes(g.memory_bytes)} VM-state, {render_bytes(rate)}/s"
    )
    dirty_rate = g.dirty.rate_Bps * (1 - pc.throttle)
    if dirty_rate > rate:
        msg += f", VM dirties lots of memory: {render_bytes(dirty_rate)}/s"
    m.log(msg)


def _ram_event(m: Migration, ev: PrecopyEvent) -> None:
    """QEMU raising the downtime limit (QemuMigrate::phase2) or throttling (auto-converge)."""
    if ev.kind == "downtime-capped":
        # QemuMigrate.pm cap_migrate_downtime (l.1179-1188): logged once, when the doubled
        # limit would pass QEMU's maximum.
        m.log(f"capping downtime limit to maximum possible: {int(round(ev.value * 1000))} ms")
    elif ev.kind == "downtime-limit":
        m.log(f"auto-increased downtime to continue migration: {int(round(ev.value * 1000))} ms")
        m.task.stats.escalations = (m.task.stats.escalations or 0) + 1
    elif ev.kind == "auto-converge":
        m.task.stats.throttle = ev.value


# -- phase 3 --------------------------------------------------------------------------------------
def _phase3_cleanup(m: Migration) -> JobGen:
    """QemuMigrate.pm phase3_cleanup (l.1690-1910). Every step on the target is in its own
    eval that logs the error and sets `errors`, except the last, `qm unlock`, which
    `cmd_logerr` runs: a target lost after the config moved leaves the guest there, locked."""
    if m.phase2_errors:
        return
    c, g, p = m.c, m.g, m.c.params
    vmid = str(g.vmid)
    mapping = m.opts.targetstorage
    for d in m.local:
        if not m.replicated_to_target:
            retarget_disk(d, mapping.map(d.storage))
    # l.1716-1721: the config moves to the target (a rename inside pmxcfs, which needs only
    # the source's quorum); the guest shows there, still locked.
    c.set_node(g, m.target)
    g.config_version += 1
    if g.replicate:
        switch_replication(m)
    if m.running:
        if _online_volumes(m) and m.opts.with_local_disks:
            m.log("stopping NBD storage migration server on target.")
            # l.1727-1741: a version 1 tunnel, so `qm nbdstop` over ssh, errors discarded.
            if not (yield from m.ssh_reaches_target()):
                m.log_err(
                    f"command '{ssh_command(m, 'qm', 'nbdstop', vmid)}' failed: exit code 255"
                )
                m.errors = True
        # l.1749-1756: "resume <vmid>" over the version 1 tunnel, 30 s for the reply. A VM
        # whose resume got no answer stays paused on the target (the emulator keeps it running).
        err = yield from m.tunnel_command(f"resume {vmid}", 30.0, p.t_res_s)
        if err is not None:
            m.log_err(err)
            m.errors = True
        # l.1836-1843: finish_tunnel (pve-guest-common Tunnel.pm): "quit", 30 s for the reply,
        # then finish_command_pipe waits 30 s for the ssh process and sends it SIGTERM.
        err = yield from m.tunnel_command("quit", 30.0, 0.0)
        if err is not None:
            yield from m.wait_through(30.0)
            m.log("tunnel still running - terminating now with SIGTERM")
            m.log_err(err)
            m.errors = True
    # l.1859-1894: stop the source's VM, free its local volumes (all on the source).
    yield from m.wait_through(p.t_post_s)
    # l.1896-1904: clear the migrate lock with `qm unlock` on the target (AbstractMigrate.pm
    # cmd_logerr: "# <command>", then "failed to clear migrate lock: <ssh's last stderr line>"
    # as pve-common Cmd.pm run_command's errmsg makes it; `errors` set, nothing dies).
    cmd = ssh_command(m, "qm", "unlock", vmid)
    if c.faults.unlock_fails.pop(g.vmid, False):
        m.log(f"# {cmd}")
        m.log_err("failed to clear migrate lock: exit code 255")
        m.errors = True
        return
    if not (yield from m.ssh_reaches_target()):
        m.log(f"# {cmd}")
        m.log_err(f"failed to clear migrate lock: {m.ssh_error()}")
        m.errors = True
        return
    c.set_lock(g, None)
