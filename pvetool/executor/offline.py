"""The offline move of a running VM (`MoveOptions.shutdown`, a plan's per-guest
``offline: true``): shut down -> migrate offline -> start on the target -> verify.

Each step journals its UPID before it is followed (`Power` for the shutdown and the start,
`Started` for the migration). PVE waits `SHUTDOWN_TIMEOUT_S` for a clean shutdown and never
forces it: a VM that does not stop in time keeps running and its move fails. After any failure
the VM is started again wherever it is (`start_again`), and the outcome says where it runs, or
that it is stopped and why. A resumed run enters the sequence at the step the cluster shows
(`offline(..., step, attach=...)`).

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.journal_records` and
the `pvetool.executor` siblings `context` and `verify`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pvetool.errors import PvetoolError, TaskFailed, TaskTimeout
from pvetool.executor.context import (
    Flight,
    MoveEnd,
    RunContext,
    migration_request,
    refusal,
    refused,
)
from pvetool.executor.settle import after_unclear_request
from pvetool.executor.verify import find_guest, verify_arrival, wait_for_status, whereabouts
from pvetool.journal_records import Power, Started
from pvetool.model import TaskResult, Upid
from pvetool.model.events import MoveStarted, Notice

__all__ = [
    "BOOT_AGENT_TIMEOUT_S",
    "POWER_WAIT_S",
    "SHUTDOWN_TIMEOUT_S",
    "STEP_OF_TASK",
    "OfflineStep",
    "StepFailed",
    "offline",
]

OfflineStep = Literal["shutdown", "migrate", "start", "verify"]
ORDER: tuple[OfflineStep, ...] = ("shutdown", "migrate", "start", "verify")
# The task types of an offline move's steps (HA-managed guests: the HA request tasks).
STEP_OF_TASK: Mapping[str, OfflineStep] = {
    "qmshutdown": "shutdown",
    "hastop": "shutdown",
    "qmigrate": "migrate",
    "hamigrate": "migrate",
    "qmstart": "start",
    "hastart": "start",
}
# How long PVE waits for a VM's clean shutdown before it fails the task. Never forced: a VM
# that does not shut down in time keeps running and its move fails.
SHUTDOWN_TIMEOUT_S = 180
# How long the run state may take to show after a shutdown/start task (HA: the HA stack acts
# after its own loop delays, and the shutdown itself may take SHUTDOWN_TIMEOUT_S).
POWER_WAIT_S = SHUTDOWN_TIMEOUT_S + 60.0
# After a cold start the guest OS boots before its QEMU guest agent answers a ping.
BOOT_AGENT_TIMEOUT_S = 180.0


class StepFailed(Exception):
    """A step of an offline move failed; `reason` is the sentence for the outcome."""

    def __init__(
        self, reason: str, *, upid: str | None = None, still_running: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.upid = upid
        self.still_running = still_running


def offline(
    ctx: RunContext,
    flight: Flight,
    step: OfflineStep,
    *,
    attach: Upid | None = None,
    resumed: bool = False,
) -> MoveEnd:
    """Shut the VM down, migrate it offline, start it on the target, verify; from `step` on
    (resume), following `attach` when that step's task already runs."""
    move = flight.move
    first = ORDER.index(step)
    timeout_s = ctx.plan.task_timeout_s
    down_from: Upid | None = None
    migration: TaskResult | None = None
    started: tuple[Upid, TaskResult] | None = None
    arrival_s = ctx.options.arrival_timeout_s
    try:
        if first <= 0:
            pick = attach if step == "shutdown" else None
            down_from, _ = power_step(ctx, flight, "shutdown", move.source, timeout_s, pick)
        if first <= 1:
            migration = _migrate(ctx, flight, attach if step == "migrate" else None)
        if first <= 2:
            pick = attach if step == "start" else None
            started = power_step(ctx, flight, "start", move.target, timeout_s, pick)
        arrival = verify_arrival(
            ctx.api,
            move,
            "running",
            agent=move.vmid in ctx.options.agent_vmids,
            timeout_s=arrival_s,
            poll_s=ctx.options.agent_poll_s,
            agent_timeout_s=max(ctx.options.agent_timeout_s, BOOT_AGENT_TIMEOUT_S),
            agent_poll_s=ctx.options.agent_poll_s,
            sleep=ctx.deps.sleep,
            clock=ctx.deps.clock,
        )
    except StepFailed as failure:
        return failed(ctx, flight, failure, migration, resumed)
    except PvetoolError as exc:  # e.g. the API stayed unreachable through every retry
        return failed(ctx, flight, StepFailed(str(exc)), migration, resumed)
    if not arrival.ok and not arrival.checked:
        return ctx.finish(
            flight,
            "moved",
            f"shut down, migrated offline and started again; its arrival could not be "
            f"verified: {arrival.reason}",
            node=move.target,
            task=migration,
            attached=resumed,
        )
    if not arrival.ok:
        # Started (so nothing to start again), but not as it should be.
        return ctx.finish(
            flight,
            "failed",
            f"VM {move.vmid} was shut down, migrated and started, but {arrival.reason}",
            node=arrival.node,
            task=migration,
            attached=resumed,
        )
    downtime_ms = None
    if down_from is not None and started is not None:
        # From the shutdown request to the end of the start task, on the cluster's clock
        # (the start task's own duration as this machine measured it).
        upid, result = started
        downtime_ms = (upid.starttime - down_from.starttime + (result.duration_s or 0.0)) * 1000
    return ctx.finish(
        flight,
        "moved",
        "shut down, migrated offline and started again",
        node=arrival.node,
        task=migration,
        downtime_ms=downtime_ms,
        attached=resumed,
    )


def power_step(
    ctx: RunContext,
    flight: Flight,
    action: Literal["shutdown", "start"],
    node: str,
    timeout_s: float,
    attach: Upid | None,
) -> tuple[Upid, TaskResult]:
    """Request (or follow, when `attach`) a shutdown or start on `node` and wait until the VM
    shows stopped/running there; raises `StepFailed`."""
    move = flight.move
    what = f"VM {move.vmid}"
    upid = attach
    if upid is None:
        try:
            if action == "shutdown":
                upid = ctx.api.shutdown_guest(
                    move.kind, node, move.vmid, timeout_s=SHUTDOWN_TIMEOUT_S
                )
            else:
                upid = ctx.api.start_guest(move.kind, node, move.vmid)
        except PvetoolError as exc:
            raise StepFailed(f"PVE refused to {action} {what} on {node}: {refusal(exc)}") from exc
        ctx.write(Power(move=move.id, vmid=move.vmid, action=action, node=node, upid=str(upid)))
    flight.upid = str(upid)
    doing = "shutting down" if action == "shutdown" else "starting"
    again = " (re-attached)" if attach is not None else ""
    ctx.emit(Notice(f"{what}: {doing} on {node}, task {upid}{again}"))
    result = _follow_power(ctx, upid, timeout_s, action, f"{what} on {node}")
    want = "stopped" if action == "shutdown" else "running"
    shown = wait_for_status(
        ctx.api,
        move.vmid,
        node,
        want,
        timeout_s=POWER_WAIT_S,
        poll_s=ctx.options.node_poll_s,
        sleep=ctx.deps.sleep,
        clock=ctx.deps.clock,
    )
    if shown is None:
        _, where = whereabouts(ctx.api, move)
        raise StepFailed(
            f"its {action} task {upid} ended {result.exitstatus}, but {what} is not "
            f"{want} on {node} ({where})",
            upid=str(upid),
        )
    return upid, result


def _follow_power(
    ctx: RunContext, upid: Upid, timeout_s: float, action: str, where: str
) -> TaskResult:
    """Follow a shutdown or start task (`where`: ``VM 110 on pve1``); failures as `StepFailed`."""
    try:
        return ctx.deps.follow(upid, timeout_s, None)
    except TaskTimeout as exc:
        raise StepFailed(
            f"its {action} task {exc.upid or upid} did not finish within {timeout_s:g} s; "
            "it is still running and was not stopped",
            upid=exc.upid or str(upid),
            still_running=True,
        ) from exc
    except TaskFailed as exc:
        raise StepFailed(f"the {action} of {where} failed: {exc.reason}", upid=exc.upid) from exc
    except PvetoolError as exc:
        raise StepFailed(
            f"lost track of the {action} task {upid}: {exc}",
            upid=str(upid),
            still_running=True,
        ) from exc


def _migrate(ctx: RunContext, flight: Flight, attach: Upid | None) -> TaskResult | None:
    """The offline migration of the shut-down VM; verifies it arrived stopped. None: an unclear
    request whose migration had already ended when the cluster was looked at."""
    move = flight.move
    upid = attach
    if upid is None:
        try:
            upid = ctx.api.start_migration(migration_request(move, online=False))
        except PvetoolError as exc:
            if refused(exc):
                raise StepFailed(f"PVE refused to start the migration: {refusal(exc)}") from exc
            upid = _unclear(ctx, flight, str(exc))
            if upid is None:
                return None
        else:
            ctx.write(
                Started(move=move.id, vmid=move.vmid, upid=str(upid), cluster_t=upid.starttime)
            )
    flight.upid = str(upid)
    ctx.known(str(upid))
    ctx.emit(MoveStarted(move, str(upid), attached=attach is not None))
    timeout_s = ctx.plan.task_timeout_s
    try:
        result = ctx.deps.follow(upid, timeout_s, ctx.progress(move))
    except TaskTimeout as exc:
        raise StepFailed(
            f"task {exc.upid or upid} did not finish within {timeout_s:g} s; it is still "
            "running and was not stopped",
            upid=exc.upid or str(upid),
            still_running=True,
        ) from exc
    except TaskFailed as exc:
        raise StepFailed(f"{exc.description} failed: {exc.reason}", upid=exc.upid) from exc
    except PvetoolError as exc:
        raise StepFailed(
            f"lost track of task {upid}: {exc}", upid=str(upid), still_running=True
        ) from exc
    arrival = verify_arrival(
        ctx.api,
        move,
        "stopped",
        agent=False,
        timeout_s=ctx.options.arrival_timeout_s,
        poll_s=ctx.options.agent_poll_s,
        sleep=ctx.deps.sleep,
        clock=ctx.deps.clock,
    )
    if not arrival.ok and arrival.checked:
        raise StepFailed(
            f"task {result.upid} reported {result.exitstatus}, but {arrival.reason}",
            upid=str(result.upid),
        )
    return result


def _unclear(ctx: RunContext, flight: Flight, answer: str) -> Upid | None:
    """The offline migrate request's answer was unclear: its task if one runs (journalled as
    found), None if the VM is already on the target; raises `StepFailed` otherwise."""
    move = flight.move
    why = f"the answer to the migration request was unclear ({answer.rstrip('.')})"
    settled = after_unclear_request(ctx, move)
    if settled.verdict == "running" and settled.upid is not None:
        upid = settled.upid
        ctx.write(
            Started(
                move=move.id, vmid=move.vmid, upid=str(upid), cluster_t=upid.starttime, found=True
            )
        )
        return upid
    if settled.verdict == "arrived":
        return None
    if settled.verdict == "not-started":
        raise StepFailed(f"{why}; no migration of it runs and it is still on {move.source}")
    raise StepFailed(f"{why}; {settled.why}", still_running=True)


def failed(
    ctx: RunContext,
    flight: Flight,
    failure: StepFailed,
    migration: TaskResult | None,
    resumed: bool,
) -> MoveEnd:
    """A step failed: start the VM again wherever it is, and say where it runs (or not)."""
    node, where = start_again(ctx, flight)
    return ctx.finish(
        flight,
        "failed",
        f"{failure.reason}; {where}",
        node=node,
        upid=failure.upid,
        still_running=failure.still_running,
        task=migration,
        attached=resumed,
    )


def start_again(ctx: RunContext, flight: Flight) -> tuple[str | None, str]:
    """(node, sentence): the VM of a failed offline move running again, or why not."""
    move = flight.move
    what = f"VM {move.vmid}"
    try:
        guest = find_guest(ctx.api.cluster_resources("vm"), move.vmid)
    except PvetoolError as exc:
        return None, (
            f"whether {what} runs could not be checked ({exc}); it may be STOPPED: "
            f"check it and start it (qm start {move.vmid})"
        )
    if guest is None:
        return None, f"{what} is not in /cluster/resources any more"
    if guest.running:
        return guest.node, f"{what} runs on {guest.node}"
    if guest.lock:
        return guest.node, (
            f"{what} is STOPPED on {guest.node} and locked ({guest.lock}); start it once "
            f"the lock is gone (qm start {move.vmid} on {guest.node})"
        )
    try:
        upid, _ = power_step(ctx, flight, "start", guest.node, POWER_WAIT_S, None)
    except StepFailed as failure:
        return guest.node, (
            f"{what} is STOPPED on {guest.node}: starting it again failed "
            f"({failure.reason}); start it by hand"
        )
    except PvetoolError as exc:
        return guest.node, (
            f"{what} is STOPPED on {guest.node}: starting it again failed ({exc}); start it by hand"
        )
    return guest.node, f"{what} was started again on {guest.node} (task {upid})"
