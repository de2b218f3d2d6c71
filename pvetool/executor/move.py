"""One live or restart migration, Watcher-style: pre-condition -> execute -> post-condition.

- `pre_condition`: re-check the move on the cluster as it is now (`verify.precheck`) and reserve
  the memory it will take on its target, atomically per target, so two moves cannot both take
  the last room. Already on the target -> *skipped*; moved elsewhere, locked, refused ->
  *failed*; the target offline, full or refusing this guest -> the scheduler re-plans.
- `execute`: journal the intent, request the migration PVE needs (a running VM live, a running
  container by restart; an offline move of a running VM goes to `offline`), journal its UPID.
- `post_condition` (`follow_and_verify`): follow the task (HA: ``hamigrate`` through to the
  real ``qmigrate``), then verify the arrival; journal the outcome and the guest's origin.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.journal_records` and
the `pvetool.executor` siblings.
"""

from __future__ import annotations

from pvetool.errors import PvetoolError, TaskFailed, TaskTimeout
from pvetool.executor.context import Flight, MoveEnd, RunContext, migration_request, refusal
from pvetool.executor.offline import offline
from pvetool.executor.verify import (
    Check,
    expected_status,
    precheck,
    still_at_source,
    target_offline,
    target_trouble,
    verify_arrival,
    whereabouts,
)
from pvetool.journal_records import Intent, Started
from pvetool.model import Guest, Move, TaskResult, Upid
from pvetool.model.events import MoveStarted

__all__ = ["execute", "follow_and_verify", "pre_condition"]


def pre_condition(ctx: RunContext, flight: Flight) -> Check | MoveEnd:
    """The move checked on the cluster as it is now, with its memory reserved on the target;
    or how it ends without starting (skipped, failed, deferred, its target to re-plan)."""
    move = flight.move
    with ctx.target_lock(move.target):
        check = precheck(
            ctx.api,
            move,
            reserved_bytes=lambda t: ctx.reserved.get(t, 0),
            inflight_into=lambda t: ctx.inflight_into.get(t, 1) - 1,
        )
        if check.ready and check.reserve_bytes:
            with ctx.lock:
                ctx.reserved[move.target] = ctx.reserved.get(move.target, 0) + check.reserve_bytes
                flight.reserved_bytes = check.reserve_bytes
    if check.verdict == "skip":
        return ctx.finish(flight, "skipped", check.reason, node=move.target)
    if check.verdict == "fail":
        node = check.guest.node if check.guest is not None else None
        return ctx.finish(flight, "failed", check.reason, node=node)
    if check.verdict in ("defer", "target-down", "target-refused"):
        return MoveEnd(check.verdict, reason=check.reason)
    return check


def execute(ctx: RunContext, flight: Flight, check: Check) -> MoveEnd:
    """Journal the intent and request the migration; then follow and verify it (or, with
    `ExecutorOptions.start_only`, report it started)."""
    move = flight.move
    opts = move.options
    why = ctx.stopping
    if why is not None:  # stopped while this move was being checked: start nothing new
        return ctx.finish(flight, "not-started", f"not started: {why}", node=move.source)
    guest = check.guest
    # A running VM is migrated live and a running container by restart (PVE cannot move them
    # otherwise), unless the plan says to shut the VM down, migrate it offline and start it
    # again (the guest was running when checked: the sequence will start it).
    running = guest.running if guest is not None else (opts.online or opts.restart)
    shutdown = move.kind == "qemu" and opts.shutdown and running
    ctx.write(
        Intent(
            move=move.id,
            vmid=move.vmid,
            source=move.source,
            target=move.target,
            kind=move.kind,
            ha=opts.ha,
            shutdown=shutdown,
        )
    )
    if shutdown:
        return offline(ctx, flight, "shutdown")
    try:
        upid = ctx.api.start_migration(migration_request(move, online=running))
    except PvetoolError as exc:
        reason = f"PVE refused to start the migration: {refusal(exc)}"
        trouble = target_trouble(reason)
        if trouble is not None:
            return MoveEnd(trouble, reason=reason)
        return ctx.finish(flight, "failed", reason, node=move.source)
    flight.upid = str(upid)
    ctx.write(Started(move=move.id, vmid=move.vmid, upid=str(upid), cluster_t=upid.starttime))
    ctx.emit(MoveStarted(move, str(upid)))
    if ctx.options.start_only:
        return ctx.finish(
            flight,
            "left-running",
            f"started, not followed (task {upid})",
            node=move.source,
            still_running=True,
        )
    return follow_and_verify(ctx, flight, upid, before=guest, attached=False)


def follow_and_verify(
    ctx: RunContext,
    flight: Flight,
    upid: Upid,
    *,
    before: Guest | None,
    attached: bool,
) -> MoveEnd:
    """Follow the migration task to its end, then check the guest arrived as it left."""
    move = flight.move
    if attached:
        flight.upid = str(upid)
        ctx.emit(MoveStarted(move, str(upid), attached=True))
    status_before = expected_status(move, before)
    try:
        result = ctx.deps.follow(upid, ctx.plan.task_timeout_s, ctx.progress(move))
    except PvetoolError as exc:
        return _follow_failed(ctx, flight, upid, exc, attached)
    arrival = verify_arrival(
        ctx.api,
        move,
        status_before,
        agent=move.vmid in ctx.options.agent_vmids,
        agent_timeout_s=ctx.options.agent_timeout_s,
        agent_poll_s=ctx.options.agent_poll_s,
        sleep=ctx.deps.sleep,
        clock=ctx.deps.clock,
    )
    downtime = _downtime_ms(move, result, status_before)
    if not arrival.ok:
        return ctx.finish(
            flight,
            "failed",
            f"task {result.upid} reported {result.exitstatus}, but {arrival.reason}",
            node=arrival.node,
            task=result,
            downtime_ms=downtime,
            attached=attached,
        )
    return ctx.finish(
        flight, "moved", "", node=arrival.node, task=result, downtime_ms=downtime, attached=attached
    )


def _follow_failed(
    ctx: RunContext, flight: Flight, upid: Upid, exc: PvetoolError, attached: bool
) -> MoveEnd:
    """The task could not be followed to a success: timed out (left running), failed (the
    target's fault: re-plan while the guest is still at its source), or lost track of."""
    move = flight.move
    if isinstance(exc, TaskFailed):
        reason = f"{exc.description} failed: {exc.reason}"
        trouble = target_trouble(exc.reason) or target_offline(ctx.api, move.target)
        if trouble is not None:
            node, _ = whereabouts(ctx.api, move)
            if still_at_source(ctx.api, move):
                return MoveEnd(trouble, reason=reason, upid=exc.upid)
            return ctx.finish(flight, "failed", reason, node=node, upid=exc.upid)
        node, where = whereabouts(ctx.api, move)
        return ctx.finish(
            flight, "failed", f"{reason}; {where}", node=node, upid=exc.upid, attached=attached
        )
    node, where = whereabouts(ctx.api, move)
    if isinstance(exc, TaskTimeout):
        task = exc.upid or str(upid)
        timeout_s = ctx.plan.task_timeout_s
        reason = (
            f"task {task} did not finish within {timeout_s:g} s; it is still running and was "
            f"not stopped; {where}"
        )
    else:
        task = str(upid)
        reason = f"lost track of task {upid}: {exc}; {where}"
    return ctx.finish(
        flight,
        "failed",
        reason,
        node=node,
        upid=task,
        still_running=True,
        attached=attached,
    )


def _downtime_ms(move: Move, result: TaskResult, status_before: str) -> float | None:
    """Guest-visible downtime: QEMU's logged stop-and-copy; a running container's restart
    migration is down for the whole task."""
    if result.downtime_ms is not None:
        return float(result.downtime_ms)
    if move.kind == "lxc" and status_before == "running" and result.duration_s is not None:
        return result.duration_s * 1000.0
    return None
