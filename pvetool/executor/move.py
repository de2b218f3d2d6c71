"""One live or restart migration, Watcher-style: pre-condition -> execute -> post-condition.

- `pre_condition`: re-check the move on the cluster as it is now (`verify.precheck`) and reserve
  the memory it will take on its target, atomically per target, so two moves cannot both take
  the last room. Already on the target -> *skipped*; moved elsewhere, locked, refused ->
  *failed*; the target offline, full or refusing this guest -> the scheduler re-plans.
- `execute`: journal the intent and the guest's origin, request the migration PVE needs (a
  running VM live, a running container by restart; an offline move of a running VM goes to
  `offline`), journal its UPID. An answer that is neither a UPID nor PVE's refusal is looked
  into on the cluster (`settle.after_unclear_request`) before anything is recorded.
- `post_condition` (`follow_and_verify`): follow the task (HA: ``hamigrate`` through to the
  real ``qmigrate``), then verify the arrival; journal the outcome and the guest's origin. A
  follow that ends without the task's outcome is settled on the cluster too
  (`settle.after_lost_follow`).

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.journal_records` and
the `pvetool.executor` siblings.
"""

from __future__ import annotations

import logging

from pvetool.errors import PvetoolError, TaskFailed, TaskTimeout
from pvetool.executor.context import (
    Flight,
    MoveEnd,
    RunContext,
    migration_request,
    refusal,
    refused,
)
from pvetool.executor.offline import offline
from pvetool.executor.settle import Settled, after_lost_follow, after_unclear_request
from pvetool.executor.verify import (
    HA_MOVING,
    Check,
    Room,
    expected_status,
    left_locked,
    precheck,
    still_at_source,
    target_offline,
    target_trouble,
    verify_arrival,
    wait_settled,
    whereabouts,
)
from pvetool.journal_records import Intent, Started
from pvetool.model import Guest, Move, PlanRules, TaskResult, Upid
from pvetool.model.events import MoveStarted, Notice

__all__ = ["execute", "follow_and_verify", "pre_condition", "started"]

logger = logging.getLogger(__name__)

# Two CRM rounds and one LRM round (10 s each, pve-ha-manager CRM.pm l.361-363, LRM.pm
# l.467-469) and some: how long an HA move waits for the HA manager's previous move to settle.
HA_SETTLE_TIMEOUT_S = 40.0


def pre_condition(ctx: RunContext, flight: Flight) -> Check | MoveEnd:
    """The move checked on the cluster as it is now, with its memory reserved on the target;
    or how it ends without starting (skipped, failed, deferred, its target to re-plan)."""
    move = flight.move
    room = Room(
        rules=ctx.plan.rules or PlanRules(),
        incoming=lambda target: ctx.incoming(target, flight),
        busy=lambda node: ctx.busy(node, flight),
    )
    check = _checked(ctx, flight, room)
    guest = check.guest
    in_flight = guest is not None and (
        guest.lock == "migrate" or (guest.ha_managed and guest.ha_state in HA_MOVING)
    )
    if in_flight:
        # A migration of it still runs: locked by it (on the target too: PVE moves the config
        # before its task ends, qemu-server QemuMigrate.pm phase3_cleanup move_config_to_node,
        # then qm unlock), or the HA manager moves it (its failback, say), when a request now
        # would be dropped (see wait_settled). Wait for it to end, then look again: the guest
        # may be on the target by then (skipped) or back where it was.
        # A lock means a whole migration may still be under way (the HA manager's failback
        # after a hold is released, say): allow it the plan's task timeout, as our own moves.
        wait_settled(
            ctx.api,
            move.vmid,
            timeout_s=(
                max(HA_SETTLE_TIMEOUT_S, ctx.plan.task_timeout_s)
                if guest is not None and guest.lock == "migrate"
                else HA_SETTLE_TIMEOUT_S
            ),
            poll_s=ctx.options.node_poll_s,
            sleep=ctx.deps.sleep,
            clock=ctx.deps.clock,
        )
        check = _checked(ctx, flight, room)
    if check.verdict == "skip":
        return ctx.finish(flight, "skipped", check.reason, node=move.target)
    if check.verdict == "fail":
        node = check.guest.node if check.guest is not None else None
        left = _left_by_this_run(ctx, move, check.guest)
        reason = f"{check.reason}; {left}" if left else check.reason
        return ctx.finish(flight, "failed", reason, node=node)
    if check.verdict in ("defer", "target-down", "target-refused"):
        return MoveEnd(check.verdict, reason=check.reason)
    return check


def _left_by_this_run(ctx: RunContext, move: Move, guest: Guest | None) -> str | None:
    """The lock an earlier move of this run saw PVE leave on the guest, still there: said again
    with its fix (a lock seen for the first time may be another migration's, never advised)."""
    if guest is None or guest.lock != "migrate":
        return None
    sentence = left_locked(move.kind, move.vmid, guest.node, guest.lock)
    with ctx.lock:
        earlier = list(ctx.results.values())
    return sentence if any(r.vmid == move.vmid and sentence in r.reason for r in earlier) else None


def _checked(ctx: RunContext, flight: Flight, room: Room) -> Check:
    """`precheck`, with the memory reserved on the target under its lock."""
    with ctx.target_lock(flight.move.target):
        check = precheck(ctx.api, flight.move, room=room)
        if check.ready and check.reserve_bytes:
            with ctx.lock:
                flight.reserved_bytes = check.reserve_bytes
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
    ctx.origin(flight)
    if shutdown:
        return offline(ctx, flight, "shutdown")
    try:
        upid = ctx.api.start_migration(migration_request(move, online=running))
    except PvetoolError as exc:
        if not refused(exc):
            return _unclear(ctx, flight, guest, str(exc))
        reason = f"PVE refused to start the migration: {refusal(exc)}"
        trouble = target_trouble(reason)
        if trouble is not None:
            return MoveEnd(trouble, reason=reason)
        return ctx.finish(flight, "failed", reason, node=move.source)
    except Exception as exc:  # an answer the client could not make sense of
        logger.exception("the answer to the migration request of %s", move.vmid)
        return _unclear(ctx, flight, guest, f"{type(exc).__name__}: {exc}")
    started(ctx, flight, upid)
    if ctx.options.start_only:
        return ctx.finish(
            flight,
            "left-running",
            f"started, not followed (task {upid})",
            node=move.source,
            still_running=True,
        )
    return follow_and_verify(ctx, flight, upid, before=guest, attached=False)


def started(ctx: RunContext, flight: Flight, upid: Upid, *, found: bool = False) -> None:
    """Journal and announce the migration task of a move (`found`: looked up, not answered)."""
    move = flight.move
    flight.upid = str(upid)
    ctx.known(str(upid))
    ctx.write(
        Started(move=move.id, vmid=move.vmid, upid=str(upid), cluster_t=upid.starttime, found=found)
    )
    ctx.emit(MoveStarted(move, str(upid)))


def _unclear(ctx: RunContext, flight: Flight, before: Guest | None, answer: str) -> MoveEnd:
    """The migrate request's answer said neither yes nor no: the cluster says what happened."""
    move = flight.move
    why = f"the answer to the migration request was unclear ({answer.rstrip('.')})"
    ctx.emit(Notice(f"{move.vmid}: {why}; looking at the cluster"))
    settled = after_unclear_request(ctx, move)
    if settled.verdict == "running" and settled.upid is not None:
        started(ctx, flight, settled.upid, found=True)
        return follow_and_verify(ctx, flight, settled.upid, before=before, attached=False)
    if settled.verdict == "arrived":
        if settled.upid is not None:
            flight.upid = str(settled.upid)
            ctx.known(str(settled.upid))
        note = f"{why}; it arrived on {move.target}"
        return _post_condition(ctx, flight, None, expected_status(move, before), False, note)
    if settled.verdict == "not-started":
        return ctx.finish(
            flight,
            "failed",
            f"{why}; no migration of it runs and it is still on {move.source}: not moved",
            node=move.source,
        )
    return ctx.finish(
        flight,
        "failed",
        f"{why}; {settled.why}: whether a migration of it runs could not be told, check the "
        f"task list of {move.source}",
        node=settled.guest.node if settled.guest is not None else None,
        still_running=True,
    )


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
        ctx.known(str(upid))
        ctx.emit(MoveStarted(move, str(upid), attached=True))
    status_before = expected_status(move, before)
    try:
        result = ctx.deps.follow(upid, ctx.plan.task_timeout_s, ctx.progress(move))
    except PvetoolError as exc:
        return _follow_failed(ctx, flight, upid, exc, attached, status_before)
    flight.task_over = True  # the window may start the next move while this one is verified
    ctx.done.put((move.id, None))
    return _post_condition(ctx, flight, result, status_before, attached)


def _post_condition(
    ctx: RunContext,
    flight: Flight,
    result: TaskResult | None,
    status_before: str,
    attached: bool,
    note: str = "",
) -> MoveEnd:
    """The task ended OK (or the guest was seen on the target): is it there as it left?"""
    move = flight.move
    if result is not None:
        ctx.known(str(result.upid))
    arrival = verify_arrival(
        ctx.api,
        move,
        status_before,
        agent=move.vmid in ctx.options.agent_vmids,
        timeout_s=ctx.options.arrival_timeout_s,
        poll_s=ctx.options.agent_poll_s,
        agent_timeout_s=ctx.options.agent_timeout_s,
        agent_poll_s=ctx.options.agent_poll_s,
        sleep=ctx.deps.sleep,
        clock=ctx.deps.clock,
    )
    downtime = _downtime_ms(move, result, status_before) if result is not None else None
    said = f"task {result.upid} reported {result.exitstatus}" if result is not None else note
    if not arrival.ok and not arrival.checked:
        # PVE's own word that the migration finished is all there is: the guest is there.
        return ctx.finish(
            flight,
            "moved",
            f"{said}; its arrival could not be verified: {arrival.reason}",
            node=move.target,
            task=result,
            downtime_ms=downtime,
            attached=attached,
        )
    if not arrival.ok:
        return ctx.finish(
            flight,
            "failed",
            f"{said}, but {arrival.reason}",
            node=arrival.node,
            task=result,
            downtime_ms=downtime,
            attached=attached,
        )
    return ctx.finish(
        flight,
        "moved",
        note,
        node=arrival.node,
        task=result,
        downtime_ms=downtime,
        attached=attached,
    )


def _follow_failed(
    ctx: RunContext,
    flight: Flight,
    upid: Upid,
    exc: PvetoolError,
    attached: bool,
    status_before: str,
) -> MoveEnd:
    """The task could not be followed to a success: failed (the target's fault: re-plan while
    the guest is still at its source), or its outcome unknown (timed out, or the follow lost):
    then the cluster says how it stands before anything is recorded."""
    if isinstance(exc, TaskFailed):
        return _task_failed(ctx, flight, exc, attached)
    real = Upid.parse(exc.upid) if isinstance(exc, TaskTimeout) and exc.upid else upid
    settled = after_lost_follow(ctx, flight.move, real)
    if settled.verdict == "ended-ok":
        done = TaskResult(upid=real, exitstatus="OK")
        return _post_condition(ctx, flight, done, status_before, attached)
    if settled.verdict == "arrived":
        note = f"its task could not be followed to its end ({exc}), but it arrived"
        return _post_condition(ctx, flight, None, status_before, attached, note)
    if settled.verdict == "ended-failed":
        failure = TaskFailed(
            upid=str(real),
            node=real.node,
            exitstatus=settled.exitstatus or "unknown",
            description=f"Migration of {flight.move.vmid}",
        )
        return _task_failed(ctx, flight, failure, attached)
    return _still_running(ctx, flight, real, exc, attached, settled)


def _task_failed(ctx: RunContext, flight: Flight, exc: TaskFailed, attached: bool) -> MoveEnd:
    move = flight.move
    reason = f"{exc.description} failed: {exc.reason}"
    trouble = target_trouble(exc.reason) or target_offline(ctx.api, move.target)
    if trouble is not None:
        node, where = whereabouts(ctx.api, move, ended=True)
        if still_at_source(ctx.api, move):
            return MoveEnd(trouble, reason=reason, upid=exc.upid)
        # Past the point of no return (the config moved, or a lock stays): say where it is.
        return ctx.finish(flight, "failed", f"{reason}; {where}", node=node, upid=exc.upid)
    node, where = whereabouts(ctx.api, move, ended=True)
    return ctx.finish(
        flight, "failed", f"{reason}; {where}", node=node, upid=exc.upid, attached=attached
    )


def _still_running(
    ctx: RunContext,
    flight: Flight,
    task: Upid,
    exc: PvetoolError,
    attached: bool,
    settled: Settled,
) -> MoveEnd:
    """The task still runs (past the timeout), or how it stands is unknown: say so, with where
    the guest was last seen."""
    move = flight.move
    node, where = whereabouts(ctx.api, move)
    if node is None and settled.guest is not None:
        node = settled.guest.node
    if isinstance(exc, TaskTimeout) and settled.verdict == "running":
        timeout_s = ctx.plan.task_timeout_s
        reason = (
            f"task {task} did not finish within {timeout_s:g} s; it is still running and was "
            f"not stopped; {where}"
        )
    else:
        unclear = f"; {settled.why}" if settled.why else ""
        reason = f"lost track of task {task}: {exc}{unclear}; {where}"
    return ctx.finish(
        flight,
        "failed",
        reason,
        node=node,
        upid=str(task),
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
