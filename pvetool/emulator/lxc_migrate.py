"""The migration of a container, phase by phase, after pve-container `src/PVE/LXC/Migrate.pm`.

A container moves in restart mode only (LXC::Migrate::prepare refuses `online`): `prepare`
shuts it down, `phase1` copies its local volumes, `final_cleanup` starts it on the target, or,
after a failure, on the source again. The log lines and timing are the emulator's established
ones, pinned by tests.

Imports: stdlib, `pvetool.timing` and the emulator's own modules.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pvetool.emulator.abstract_migrate import Migration, finish, retarget_disk
from pvetool.emulator.engine import JobFailure, JobGen, Request, Send, Wait
from pvetool.timing import lxc_restart_times

__all__ = ["worker"]


def worker(m: Migration) -> JobGen:
    """AbstractMigrate::migrate for a container: the phases, and the one way a failure ends."""
    try:
        move_s, start_s = yield from _prepare(m)
        yield from _phase1(m)
        yield Wait(move_s)
        yield from _final_cleanup(m, start_s)
    except JobFailure as exc:
        _abort(m, str(exc))


def _prepare(m: Migration) -> Generator[Request, Any, tuple[float, float]]:
    """LXC::Migrate::prepare: no live migration, shutdown in restart mode, the target answers,
    the storages exist there. Returns the (move, start) seconds of the restart."""
    c, g = m.c, m.g
    if m.running and m.opts.online and not m.opts.restart:
        raise JobFailure("lxc live migration is currently not implemented")
    shutdown_s, move_s, start_s = lxc_restart_times(c.rng, c.params)
    if m.running:
        m.log(f"shutdown CT {g.vmid}")
        yield Wait(min(shutdown_s, float(m.opts.timeout_s)))
        g.status = "stopped"
        g.cpu_load = 0.0
    # LXC::Migrate logs this first line in phase1; here it comes before the checks.
    m.log(f"starting migration of CT {g.vmid} to node '{m.target}' ({m.ip})")
    unreachable = m.target_unreachable()
    if unreachable:
        raise JobFailure(unreachable)
    missing = c.unavailable_storages(g, m.target, m.opts.targetstorage)
    if missing:
        raise JobFailure(f"storage '{missing[0]}' is not available on node '{m.target}'")
    return move_s, start_s


def _phase1(m: Migration) -> JobGen:
    """LXC::Migrate::phase1: find the local volumes and copy each to the target."""
    m.local = m.c.local_disks(m.g)
    job = m.task.job
    if job is not None:
        job.progress_total_bytes = float(sum(d.alloc_bytes for d in m.local))
    for d in m.local:
        m.log(f"found local volume '{d.volid}' (in current VM config)")
    mapping = m.opts.targetstorage
    for d in m.local:
        yield Send(d.alloc_bytes, m.source, m.target, m.cap_Bps)
        dst = mapping.map(d.storage)
        m.log(f"volume '{d.volid}' is '{d.volid.replace(d.storage, dst, 1)}' on the target")
        retarget_disk(d, dst)


def _final_cleanup(m: Migration, start_s: float) -> JobGen:
    """LXC::Migrate::final_cleanup: in restart mode the container starts on the target."""
    c, g = m.c, m.g
    m.log("start final cleanup")
    if m.running:
        m.log("start container on target node")
        yield Wait(start_s)
        g.status = "running"
        g.started_at_s = c.now
        g.cpu_load = 0.05 + c.rng.random() * 0.1
    m.task.stats.guest_downtime_s = c.now - m.start_s if m.running else 0.0
    m.log(f"migration finished successfully (duration {m.duration()})")
    finish(m, None, moved=True)


def _abort(m: Migration, reason: str) -> None:
    """ "migration aborted"; LXC::Migrate::final_cleanup restarts a container that was running
    on the source (here after the abort line)."""
    m.log_aborted(reason)
    g = m.g
    if m.running and g.status == "stopped" and g.node == m.source:
        m.log("start container on source node")
        g.status = "running"
        g.started_at_s = m.c.now
    finish(m, "migration aborted", moved=False)
