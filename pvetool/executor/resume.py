"""Resuming an interrupted run: what the journal and the cluster say about each move.

Moves that arrived are taken from the journal; tasks that were started are re-attached by UPID;
a move whose intent was journalled but whose UPID was not is looked up (arrived? locked for
migration? a migration task of that guest on the source since the intent?) before anything is
started again. An unfinished offline move goes on from what the cluster shows: a shutdown,
migration or start task of the guest still running is followed; then stopped on the source ->
migrate and start, stopped on the target -> start, running on the target -> verify; running on
the source with nothing under way -> checked and started afresh.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.journal_records` and
the `pvetool.executor` siblings.
"""

from __future__ import annotations

from dataclasses import replace

from pvetool.errors import PvetoolError
from pvetool.executor.context import Flight, MoveEnd, RunContext
from pvetool.executor.offline import STEP_OF_TASK, OfflineStep, StepFailed, failed, offline
from pvetool.executor.verify import find_guest
from pvetool.journal_records import MoveRecord, Power, Started
from pvetool.model import Move, MoveResult, TaskQuery, Upid, migrate_call_task_types

__all__ = ["attach_or_settle", "journalled", "resume_offline", "with_journal"]

# Slack between this machine's clock and the cluster's when looking for a task started after
# an intent was journalled.
CLOCK_SLACK_S = 5


def with_journal(ctx: RunContext, move: Move) -> tuple[Move, MoveRecord | None]:
    """The move as the interrupted run left it (re-plans changed its target or source) and
    what the journal knows about it."""
    if ctx.resume is None:
        return move, None
    rec = ctx.resume.moves.get(move.id)
    if rec is None:
        return move, None
    if rec.target and rec.target != move.target:
        ctx.original_targets.setdefault(move.id, move.target)
        move = replace(move, target=rec.target)
    if rec.source and rec.source != move.source:
        move = replace(move, source=rec.source)
    return move, rec


def journalled(index: int, move: Move, rec: MoveRecord | None, *, ended: bool) -> MoveResult | None:
    """What the interrupted run decided for a move, reported again, or None to run it now.

    A move that arrived is done. In a stage that goes on, "already there" (skipped) and a
    failure are checked again (the cause may be gone). In a stage the interrupted run had gone
    on from (`ended`: a later stage started), every outcome stands, failures included:
    re-running a stage's move after the stage's moment has passed (a drain after the node's
    maintenance) would move a guest the wrong way. Only a task that may still run is attached
    to again; a move that stage never reached is reported not started (the caller fills in
    where the guest is).
    """
    out = rec.outcome if rec is not None else None
    if out is None:
        if not ended or (rec is not None and rec.upid):
            return None
        return MoveResult(
            move=move,
            status="not-started",
            reason="not started: the interrupted run had gone on past its stage without it",
            stage_index=index,
            resumed=True,
        )
    if out.status != "moved" and not (ended and not out.still_running):
        return None
    result = out.result(move, index)
    return replace(
        result,
        reason=result.reason or "done in the interrupted run",
        node=result.node or (move.target if out.status in ("moved", "skipped") else None),
        still_running=False,
        resumed=True,
    )


def attach_or_settle(ctx: RunContext, flight: Flight, rec: MoveRecord) -> Upid | MoveEnd | None:
    """What the interrupted run left for this move: a task to re-attach to, a finished move,
    or None (re-check and start)."""
    move = flight.move
    out = rec.outcome
    if rec.upid and (out is None or out.still_running):
        return Upid.parse(rec.upid)
    if out is not None or rec.intent_t is None:
        return None  # failed or not started before: re-check and start again
    # Intent journalled, UPID not: did the request reach PVE before pvetool died?
    try:
        guest = find_guest(ctx.api.cluster_resources("vm"), move.vmid)
    except PvetoolError:
        guest = None
    if guest is not None and guest.node == move.target and not guest.lock:
        return ctx.finish(
            flight,
            "moved",
            "arrived while pvetool was not running",
            node=guest.node,
            attached=True,
        )
    locked = guest is not None and guest.lock == "migrate"
    found = _task_since_intent(ctx, move, rec.intent_t, locked=locked)
    if found is not None:
        ctx.write(
            Started(
                move=move.id,
                vmid=move.vmid,
                upid=str(found),
                cluster_t=found.starttime,
                found=True,
            )
        )
        return found
    if locked:
        return ctx.finish(
            flight,
            "failed",
            f"guest {move.vmid} is locked for migration, but no migration task of it was "
            f"found on {move.source}; not started again",
            node=guest.node if guest is not None else None,
        )
    return None


def _task_since_intent(
    ctx: RunContext, move: Move, intent_t: float, *, locked: bool
) -> Upid | None:
    """The newest migration task of the guest on its source that this run does not know and
    that started after the intent (or, without a clock offset, that still runs)."""
    try:
        found = ctx.api.tasks(TaskQuery(move.source, vmid=move.vmid))
    except PvetoolError:
        found = ()
    known = ctx.resume.all_upids if ctx.resume is not None else frozenset()
    types = migrate_call_task_types()
    candidates = [t for t in found if t.upid.type in types and str(t.upid) not in known]
    offset = ctx.resume.cluster_offset_s() if ctx.resume is not None else None
    if offset is not None:
        since = intent_t + offset - CLOCK_SLACK_S
        recent = [t for t in candidates if t.upid.starttime >= since]
    else:
        recent = [t for t in candidates if t.running]
    if locked:
        running = [t for t in candidates if t.running]
        recent = running or recent
    if not recent:
        return None
    return max(recent, key=lambda t: (t.upid.starttime, t.upid.pstart)).upid


def resume_offline(ctx: RunContext, flight: Flight) -> MoveEnd | None:
    """Go on with an offline move the interrupted run left unfinished, from what the cluster
    shows; None when nothing was done (check and start afresh)."""
    move = flight.move
    try:
        guest = find_guest(ctx.api.cluster_resources("vm"), move.vmid)
    except PvetoolError as exc:
        return ctx.finish(
            flight,
            "failed",
            f"where VM {move.vmid} is could not be checked ({exc}); it may be shut down: "
            "resume again",
            node=None,
            attached=True,
        )
    if guest is None:
        return ctx.finish(
            flight, "failed", f"VM {move.vmid} no longer exists in the cluster", node=None
        )
    task = _running_step_task(ctx, move, guest.node)
    if task is not None:
        step, upid = task
        if step == "migrate":
            ctx.write(
                Started(
                    move=move.id,
                    vmid=move.vmid,
                    upid=str(upid),
                    cluster_t=upid.starttime,
                    found=True,
                )
            )
        elif step in ("shutdown", "start"):
            ctx.write(
                Power(
                    move=move.id,
                    vmid=move.vmid,
                    action=step,
                    node=upid.node,
                    upid=str(upid),
                    found=True,
                )
            )
        return offline(ctx, flight, step, attach=upid, resumed=True)
    if guest.lock:
        return ctx.finish(
            flight,
            "failed",
            f"VM {move.vmid} is locked ({guest.lock}) on {guest.node} and no task of it "
            "runs; not touched",
            node=guest.node,
            attached=True,
        )
    if guest.node == move.source:
        return None if guest.running else offline(ctx, flight, "migrate", resumed=True)
    if guest.node == move.target:
        return offline(ctx, flight, "verify" if guest.running else "start", resumed=True)
    failure = StepFailed(
        f"VM {move.vmid} is on {guest.node} now, neither on {move.source} nor on "
        f"{move.target} as planned; not moved"
    )
    return failed(ctx, flight, failure, None, True)


def _running_step_task(ctx: RunContext, move: Move, node: str) -> tuple[OfflineStep, Upid] | None:
    """The newest running shutdown, migration or start task of the guest on `node`."""
    try:
        found = ctx.api.tasks(TaskQuery(node, vmid=move.vmid))
    except PvetoolError:
        return None
    running = [t for t in found if t.running and t.upid.type in STEP_OF_TASK]
    if not running:
        return None
    newest = max(running, key=lambda t: (t.upid.starttime, t.upid.pstart))
    return STEP_OF_TASK[newest.upid.type], newest.upid
