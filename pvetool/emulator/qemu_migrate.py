"""The migration of a VM, phase by phase, after qemu-server `src/PVE/QemuMigrate.pm`.

`worker` is the task's job (a generator the `engine` runs in emulated time). It runs the phases
as `AbstractMigrate::migrate` calls them: `prepare`, `phase1` (with `sync_offline_local_volumes`
for a stopped VM), and for a running VM `phase2` (`phase2_start_local_cluster`, the storage
mirror, the RAM pre-copy and stop-and-copy), then `phase3_cleanup`. A failure before phase 2 ends
in `_abort` ("migration aborted"), a failure in phase 2 in `_phase2_cleanup` ("migration
problems").

The log lines and their timing are the emulator's established ones, pinned by tests; where they
still differ from QemuMigrate.pm (e.g. "starting migration of VM" is logged in `prepare` here, in
`phase1` by PVE) that is noted and left for a fidelity change of its own.

Imports: stdlib, `pvetool.timing` and the emulator's own modules.
"""

from __future__ import annotations

import math

from pvetool.emulator.abstract_migrate import Migration, finish, retarget_disk
from pvetool.emulator.cluster import DiskRt, render_bytes
from pvetool.emulator.engine import JobFailure, JobGen, JobInterrupted, Ram, Send, Wait
from pvetool.timing import Precopy, PrecopyEvent

__all__ = ["worker"]

_START_FAILED = (
    'error - tunnel command \'{"cmd":"quit"}\' failed - failed to write command - start failed: '
    "QEMU exited with code 1"
)


class _Abort(Exception):
    """A phase before phase 2 died with this error: the migration is aborted."""


def worker(m: Migration) -> JobGen:
    """AbstractMigrate::migrate for a VM: the phases, and how a failure ends the task."""
    try:
        yield from _prepare(m)
        yield from _phase1(m)
        if m.running:
            yield from _phase2(m)
        yield from _phase3_cleanup(m)
    except _Abort as exc:
        _abort(m, str(exc))
    except JobInterrupted as exc:
        _phase2_cleanup(m, exc)
    except JobFailure as exc:
        if m.running:
            _phase2_cleanup(m, exc)
        else:
            _abort(m, str(exc))


def _abort(m: Migration, reason: str) -> None:
    """The one abort: "migration aborted (duration ...): reason", unlocked, config unmoved."""
    m.log_aborted(reason)
    finish(m, "migration aborted", moved=False)


def _prepare(m: Migration) -> JobGen:
    """QemuMigrate::prepare: the target answers, no local devices, the storages exist there."""
    if m.running and not m.opts.with_conntrack_state:
        m.log(
            "conntrack state migration not supported or disabled, "
            "active connections might get dropped"
        )
    if m.dedicated_network:
        m.log(f"use dedicated network address for sending migration traffic ({m.ip})")
    # QemuMigrate logs this first line in phase1; here it comes before the checks.
    m.log(f"starting migration of VM {m.g.vmid} to node '{m.target}' ({m.ip})")
    yield Wait(m.c.params.t_pre_s)
    unreachable = m.target_unreachable()
    if unreachable:
        raise _Abort(unreachable)
    blocking = m.c.local_resources(m.g)
    if blocking and (m.running or not m.opts.force):
        raise _Abort(f"can't migrate VM which uses local devices: {', '.join(blocking)}")
    missing = m.c.unavailable_storages(m.g, m.target, m.opts.targetstorage)
    if missing:
        raise _Abort(f"storage '{missing[0]}' is not available on node '{m.target}'")


def _phase1(m: Migration) -> JobGen:
    """QemuMigrate::phase1: scan_local_volumes, then sync_offline_local_volumes if stopped."""
    m.local = m.c.local_disks(m.g)
    for d in m.local:
        m.log(f"found local disk '{d.volid}' (attached)")
    if m.running and m.local and not m.opts.with_local_disks:
        m.log(
            f"can't migrate local disk '{m.local[0].volid}': can't live migrate "
            "attached local disks without with-local-disks option"
        )
        err = "Failed to sync data - can't migrate VM - check log"
        m.log(f"ERROR: {err}")
        _phase1_cleanup(m)
        raise _Abort(err)
    m.local_bytes = float(sum(d.alloc_bytes for d in m.local))
    if not m.running:
        yield from _sync_offline_local_volumes(m)


def _phase1_cleanup(m: Migration) -> None:
    """QemuMigrate::phase1_cleanup (nothing was copied yet, so nothing to remove)."""
    m.log("aborting phase 1 - cleanup resources")


def _sync_offline_local_volumes(m: Migration) -> JobGen:
    """QemuMigrate::sync_offline_local_volumes: copy each local volume, then the config moves."""
    if m.local:
        m.log("copying local disk images")
    job = m.task.job
    if job is not None:
        job.progress_total_bytes = m.local_bytes
    mapping = m.opts.targetstorage
    for d in m.local:
        yield Send(d.alloc_bytes, m.source, m.target, m.cap_Bps)
        dst = mapping.map(d.storage)
        m.log(f"volume '{d.volid}' is '{d.volid.replace(d.storage, dst, 1)}' on the target")
        retarget_disk(d, dst)
    unreachable = m.target_unreachable()
    if unreachable:
        raise _Abort(unreachable)


def _phase2(m: Migration) -> JobGen:
    """QemuMigrate::phase2: start the target, mirror local disks, copy RAM, stop and copy."""
    yield from _phase2_start_local_cluster(m)
    job = m.task.job
    p = m.c.params
    # qemu-server QemuMigrate.pm phase2 (9.2.6 l.1445-1576) has no time limit: no deadline
    # unless the emulator fault `abort_s_per_gib` is set.
    give_up_s = None if p.abort_s_per_gib > 0 else math.inf
    precopy = Precopy(
        m.g.used_bytes, m.g.dirty.rate_Bps, m.g.dirty.wss_bytes, p, give_up_s=give_up_s
    )
    if job is not None:
        job.progress_total_bytes = m.local_bytes + m.g.used_bytes
    yield from _mirror_local_disks(m)
    yield from _migrate_ram(m, precopy)


def _phase2_start_local_cluster(m: Migration) -> JobGen:
    """QemuMigrate::phase2_start_local_cluster (`qm start --migratedfrom` on the target) and
    the SSH tunnel of a secure migration (fork_tunnel)."""
    p = m.c.params
    m.log(f"starting VM {m.g.vmid} on remote node '{m.target}'")
    start_err = m.c.start_error(m.g, m.target)
    yield Wait(p.t_start_s / 2)
    if start_err:
        for line in start_err:
            m.log(line)
        raise _Abort(_START_FAILED)
    m.task.stats.target_started = True
    if m.secure:
        m.log("start remote tunnel")
        yield Wait(p.t_start_s / 2 + p.t_start_secure_extra_s)
        m.log("ssh tunnel ver 1")
    else:
        yield Wait(p.t_start_s / 2)


def _mirror_local_disks(m: Migration) -> JobGen:
    """Phase 2's storage migration: a drive-mirror per local disk to the target's NBD server."""
    mapping = m.opts.targetstorage
    for d in m.local if m.opts.with_local_disks else []:
        dst = mapping.map(d.storage)
        nbd = f"nbd:unix:/run/qemu-server/{m.g.vmid}_nbd.migrate:exportname=drive-{d.key}"
        m.log(f"{d.key}: start migration to {nbd}")
        m.log(f"drive mirror is starting for drive-{d.key}")
        t0 = m.c.now

        def each_second(sent: float, rate: float, d: DiskRt = d, t0: float = t0) -> None:
            fraction = sent / d.alloc_bytes if d.alloc_bytes else 1.0
            _log_mirror(m, d, fraction, t0, "")

        yield Send(d.alloc_bytes, m.source, m.target, m.cap_Bps, on_second=each_second)
        _log_mirror(m, d, 1.0, t0, ", ready")
        retarget_disk(d, dst)
    if m.local and m.opts.with_local_disks:
        m.log("all 'mirror' jobs are ready")


def _log_mirror(m: Migration, d: DiskRt, fraction: float, t0: float, suffix: str) -> None:
    """A drive-mirror progress line (qemu-server `PVE::QemuServer::BlockJob::monitor`)."""
    m.log(
        f"drive-{d.key}: transferred {render_bytes(fraction * d.size_bytes)} of "
        f"{render_bytes(d.size_bytes)} ({fraction * 100:.2f}%) in "
        f"{_short_duration(m.c.now - t0)}{suffix}"
    )


def _short_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m {s % 60}s"


def _migrate_ram(m: Migration, precopy: Precopy) -> JobGen:
    """Phase 2's RAM migration: capabilities and parameters, pre-copy, stop-and-copy."""
    p = m.c.params
    vmid = m.g.vmid
    m.log(f"starting online/live migration on unix:/run/qemu-server/{vmid}.migrate")
    m.log("set migration capabilities")
    if m.bwlimit_KiBps:
        m.log(f"migration speed limit: {render_bytes(m.bwlimit_KiBps * 1024)}/s")
    m.log(f"migration downtime limit: {int(p.downtime_limit_s * 1000)} ms")
    cache = 1 << max(0, (int(m.g.memory_bytes / 10) - 1).bit_length())
    m.log(f"migration cachesize: {render_bytes(cache)}")
    m.log("set migration parameters")
    m.log(f"start migrate command to unix:/run/qemu-server/{vmid}.migrate")
    ram_start = m.c.now
    yield Ram(
        precopy,
        m.source,
        m.target,
        m.cap_Bps,
        on_second=lambda pc, rate: _log_ram_second(m, pc, rate),
        on_event=lambda ev: _ram_event(m, ev),
    )
    stats = m.task.stats
    stats.sent_bytes = precopy.sent_bytes + m.local_bytes
    stats.throttle = precopy.throttle
    if precopy.aborted:
        raise JobFailure("migration status error: failed")
    links = m.c.engine.link_Bps
    stop_s = precopy.stop_copy_s(min(m.cap_Bps, links[m.source], links[m.target]))
    yield Wait(stop_s)
    downtime_ms = int(round((stop_s + 0.0) * 1000))
    stats.downtime_ms = downtime_ms
    stats.guest_downtime_s = stop_s + p.t_res_s
    delay = max(1, int(m.c.now - ram_start))
    total_state = m.g.memory_bytes
    m.log(
        f"average migration speed: {render_bytes(total_state / delay)}/s - "
        f"downtime {downtime_ms} ms"
    )
    m.log(f"migration completed, transferred {render_bytes(precopy.sent_bytes)} VM-state")
    m.log("migration status: completed")


def _log_ram_second(m: Migration, pc: Precopy, rate: float) -> None:
    """QemuMigrate::phase2's once-a-second "migration active" line."""
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


def _phase2_cleanup(m: Migration, exc: JobFailure) -> None:
    """AbstractMigrate::migrate after phase 2 failed, and QemuMigrate::phase2_cleanup."""
    m.log(f"ERROR: online migrate failure - {exc}")
    m.log("aborting phase 2 - cleanup resources")
    m.log("migrate_cancel")
    m.log(f"ERROR: migration finished with problems (duration {m.duration()})")
    finish(m, "migration problems", moved=False)


def _phase3_cleanup(m: Migration) -> JobGen:
    """QemuMigrate::phase3_cleanup and final_cleanup: the config moves to the target, the VM
    resumes there (after stop-and-copy), the source is stopped and the guest unlocked. The
    guest counts as moved once the task has ended successfully."""
    p = m.c.params
    if m.running:
        if m.local and m.opts.with_local_disks:
            m.log("stopping NBD storage migration server on target.")
        yield Wait(p.t_res_s)
    yield Wait(p.t_post_s)
    m.log(f"migration finished successfully (duration {m.duration()})")
    finish(m, None, moved=True)
