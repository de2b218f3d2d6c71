"""Power: POST .../status/shutdown and .../status/start, and their HA variants.

- `start_shutdown`: qemu-server `src/PVE/API2/Qemu.pm` `vm_shutdown` and pve-container
  `src/PVE/API2/LXC/Status.pm` `vm_shutdown`; the guest OS takes as long as a container's
  shutdown in the timing model, and `forceStop` ends a shutdown that overruns its timeout.
- `start_guest`: `vm_start` of both; a start fails as QEMU would on the node (a bridge missing,
  not enough memory: `Cluster.start_error`).
- An HA resource gets a ``hastop``/``hastart`` task that only sets its requested state; the HA
  stack's LRM runs the real shutdown or start after its loop delays (pve-ha-manager
  `src/PVE/HA/LRM.pm`), as root@pam.

Imports: stdlib, `pvetool.timing` and the emulator's own modules.
"""

from __future__ import annotations

import functools

from pvetool.emulator.cluster import Cluster, GuestRt, PveError, TaskRt
from pvetool.emulator.engine import Job, JobFailure, JobGen, Wait
from pvetool.timing import ha_delay_s

__all__ = ["GUEST_BOOT_S", "start_guest", "start_shutdown"]

# Seconds from the end of a start task until the guest OS has booted and its agent answers.
GUEST_BOOT_S = (5.0, 30.0)


def start_shutdown(
    c: Cluster,
    g: GuestRt,
    user: str,
    *,
    timeout_s: int | None = None,
    force_stop: bool = False,
    skiplock: bool = False,
    via_ha: bool = False,
) -> TaskRt:
    """POST .../status/shutdown (qemu-server and pve-container `vm_shutdown`).

    The checks PVE makes before it forks the worker raise `PveError`; the rest (lock, the
    guest taking longer than `timeout_s`) ends the task with PVE's error. An HA-managed
    guest gets a ``hastop`` task that only asks the HA stack, which shuts it down later.
    """
    if g.type == "lxc" and g.status != "running":
        raise PveError(500, f"CT {g.vmid} not running")
    if c.ha_managed(g) and not via_ha:
        return _ha_power_request(c, g, "stopped", user, timeout_s)
    ttype = "qmshutdown" if g.type == "qemu" else "vzshutdown"
    task = c.new_task(g.node, ttype, str(g.vmid), user, g.vmid)
    if via_ha:
        task.raw("task started by HA resource agent")
        task.stats.ha = True
    task.stats.power = "shutdown"
    gen = _shutdown_worker(c, task, g, timeout_s, force_stop, skiplock)
    task.job = Job(name=task.upid, gen=gen)
    c.engine.start_job(task.job)
    return task


def start_guest(
    c: Cluster, g: GuestRt, user: str, *, skiplock: bool = False, via_ha: bool = False
) -> TaskRt:
    """POST .../status/start (qemu-server and pve-container `vm_start`).

    Quorum (and for a container: already running) are checked before the worker forks;
    template, lock, already running (VM) and a failing QEMU start end the task with PVE's
    error. The guest runs from the task's successful end on. An HA-managed guest gets a
    ``hastart`` task that sets its HA state to started; the HA stack starts it later.
    """
    if g.type == "lxc" and g.status == "running":
        raise PveError(500, f"CT {g.vmid} already running")
    c.check_quorum()
    if c.ha_managed(g) and not via_ha:
        return _ha_power_request(c, g, "started", user, None)
    ttype = "qmstart" if g.type == "qemu" else "vzstart"
    task = c.new_task(g.node, ttype, str(g.vmid), user, g.vmid)
    if via_ha:
        task.raw("task started by HA resource agent")
        task.stats.ha = True
    task.stats.power = "start"
    task.job = Job(name=task.upid, gen=_start_worker(c, task, g, skiplock))
    c.engine.start_job(task.job)
    return task


def _power_off(c: Cluster, g: GuestRt) -> None:
    c.set_status(g, "stopped")
    g.cpu_load = 0.0
    g.agent_frozen = False


def _power_on(c: Cluster, g: GuestRt) -> None:
    c.set_status(g, "running")
    g.started_at_s = c.now
    g.agent_ready_at_s = c.now + c.rng.uniform(*GUEST_BOOT_S)
    g.pid = c.rng.randint(1000, 4_000_000)
    g.cpu_load = 0.05 + c.rng.random() * 0.1


def _shutdown_worker(
    c: Cluster, task: TaskRt, g: GuestRt, timeout_s: int | None, force_stop: bool, skiplock: bool
) -> JobGen:
    try:
        if g.status != "running":
            # qemu-server `_do_vm_stop` returns quietly when the VM does not run.
            c.end_task(task, None)
            return
        if g.lock and not skiplock:
            c.end_task(task, f"{g.kind_word} is locked ({g.lock})")
            return
        # The guest OS takes as long as a container's shutdown (pvetool.timing).
        needed_s = c.shutdown_needed_s(g)
        limit_s = 60.0 if timeout_s is None else float(timeout_s)
        if needed_s <= limit_s:
            yield Wait(needed_s)
            _power_off(c, g)
            c.end_task(task, None)
            return
        yield Wait(limit_s)
        if not force_stop:
            if g.type == "qemu":
                err = "VM quit/powerdown failed - got timeout"
            else:
                err = (
                    f"command 'lxc-stop -n {g.vmid} --nokill --timeout {int(limit_s)}' "
                    "failed: exit code 1"
                )
            c.end_task(task, err)
            return
        if g.type == "qemu":
            task.raw("VM still running - terminating now with SIGTERM")
        else:
            task.raw("shutdown failed - forcing stop now")
        task.warnings += 1
        yield Wait(1.0)
        _power_off(c, g)
        c.end_task(task, None)
    except JobFailure as exc:
        c.end_task(task, str(exc))


def _start_worker(c: Cluster, task: TaskRt, g: GuestRt, skiplock: bool) -> JobGen:
    p = c.params
    try:
        if g.spec.template:
            what = "vm" if g.type == "qemu" else "CT"
            c.end_task(task, f"you can't start a {what} if it's a template")
            return
        if g.lock and not skiplock:
            c.end_task(task, f"{g.kind_word} is locked ({g.lock})")
            return
        if g.status == "running":
            c.end_task(task, f"VM {g.vmid} already running")
            return
        errors = c.start_error(g, g.node)
        yield Wait(c.rng.uniform(p.lxc_start_min_s, p.lxc_start_max_s))
        if errors:
            for line in errors:
                task.raw(line)
            if g.type == "qemu":
                c.end_task(task, "start failed: QEMU exited with code 1")
            else:
                c.end_task(task, f"startup for container '{g.vmid}' failed")
            return
        _power_on(c, g)
        c.end_task(task, None)
    except JobFailure as exc:
        c.end_task(task, str(exc))


def _ha_power_request(
    c: Cluster, g: GuestRt, state: str, user: str, timeout_s: int | None
) -> TaskRt:
    """``hastop``/``hastart``: `ha-manager crm-command stop` / `ha-manager set --state
    started`; the HA stack's LRM runs the real shutdown or start after its loop delays."""
    verb = "stop" if state == "stopped" else "start"
    task = c.new_task(g.node, f"ha{verb}", str(g.vmid), user, g.vmid)
    task.raw(f"Requesting HA {verb} for {g.kind_word} {g.vmid}")
    g.ha_request = state
    c.end_task(task, None)
    if state == "stopped":
        delay = ha_delay_s(c.rng, c.params)
        c.engine.call_later(
            delay,
            functools.partial(_ha_lrm_power, c, g, state, 60 if timeout_s is None else timeout_s),
        )
    # A start is the CRM's and the LRM's business (ha.py: the LRM starts a `started` service
    # that does not run).
    return task


def _ha_lrm_power(c: Cluster, g: GuestRt, state: str, timeout_s: int) -> None:
    if g.ha_request != state:
        return  # asked otherwise meanwhile
    if not c.nodes[g.node].online or g.lock:
        c.engine.call_later(
            c.params.ha_lrm_max_s / 2,
            functools.partial(_ha_lrm_power, c, g, state, timeout_s),
        )
        return
    running = g.status == "running"
    if not (state == "stopped" and running):
        return
    try:
        task = start_shutdown(c, g, "root@pam", timeout_s=timeout_s, force_stop=True, via_ha=True)
    except PveError:
        return
    task.stats.ha = True
