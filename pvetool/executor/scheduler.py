"""The executor's scheduler: runs an `ExecutionPlan` stage by stage, and a migrate stage as a
sliding window of worker threads.

The calling thread schedules; each migration runs in its own worker thread (`move`,
`offline`). The window starts, whenever a migration ends, the next pending moves whose
dependencies (`Move.after`) are done and for which the cluster, per-source and per-target caps
have a free slot, in plan order. It never waits for a whole batch ("waves"). A migration
whose task ended frees its slot at once: the next move starts while its arrival is verified.
Under caps the sequencer chose (`Caps.copies_only`), a move that copies nothing (a container
restart on shared storage) needs only a cluster slot and holds no source or target slot.

Failures: `on_failure: stop` starts nothing new after a failure (running migrations finish),
`continue` and `skip-guest` go on (`skip-guest` also leaves moves that depend on the failed one).
A target that fails (offline, full, refusing) makes the scheduler ask the planner once for
another target for that move and, when the target is down, for every pending move to it (the
planner re-plans them in order against one fresh snapshot, each seeing the previous); moves the
plan pins are not re-planned.

Interrupts: `interrupt()` is safe to call from a signal handler (it only counts). The first
stops starting new migrations and waits for the running ones; the second returns at once and
leaves them running (their UPIDs are in the report and the journal).

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.journal_records` and
the `pvetool.executor` siblings.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from pvetool.errors import PvetoolError
from pvetool.executor.context import ExecutorDeps, ExecutorOptions, Flight, MoveEnd, RunContext
from pvetool.executor.move import execute, follow_and_verify, pre_condition
from pvetool.executor.replan import Retry, forget_recovered, replan, swapped
from pvetool.executor.resume import attach_or_settle, journalled, resume_offline, with_journal
from pvetool.executor.stages import confirm, pause, run_hook, wait_for_node
from pvetool.journal_records import (
    Interruption,
    MoveRecord,
    Replan,
    Resume,
    RunEnd,
    RunningTask,
    RunState,
    StageEvent,
)
from pvetool.model import (
    BlockedGuest,
    ExecutionPlan,
    Move,
    MoveResult,
    RunReport,
    Stage,
)
from pvetool.model.events import (
    Interrupt,
    MoveFinished,
    Notice,
    RunFinished,
    RunStarted,
    StageStarted,
)

__all__ = ["Executor", "blocked_guests"]

logger = logging.getLogger(__name__)


class Executor:
    """Runs execution plans through a `ClusterApi`; see the module docstring."""

    def __init__(self, deps: ExecutorDeps, options: ExecutorOptions | None = None) -> None:
        self._deps = deps
        self._options = options or ExecutorOptions()
        self._interrupts = 0  # written by the signal handler: a plain int, no locks
        self._ctx: RunContext | None = None

    # -- control (safe from a signal handler: assignments only)

    def interrupt(self) -> int:
        """Ctrl-C: the first stops starting migrations, the second leaves running ones."""
        self._interrupts += 1
        return self._interrupts

    @property
    def interrupts(self) -> int:
        return self._interrupts

    def in_flight(self) -> tuple[tuple[Move, str | None], ...]:
        """The moves running now, with the UPID of their task once it is known."""
        ctx = self._ctx
        if ctx is None:
            return ()
        with ctx.lock:
            return tuple((f.move, f.upid) for f in ctx.inflight.values())

    # -- the run

    def run(self, plan: ExecutionPlan, *, resume: RunState | None = None) -> RunReport:
        """Run every stage of `plan` (continuing `resume` when given) and report."""
        ctx = RunContext(self._deps, self._options, plan, resume, lambda: self._interrupts)
        self._ctx = ctx
        started_epoch = self._deps.wall_clock()
        journal = self._deps.journal
        if resume is not None:
            ctx.write(Resume(pid=os.getpid()))
        path = str(journal.path) if journal is not None else None
        ctx.emit(RunStarted(plan, ctx.run_id, path, resume is not None))
        left: list[tuple[int, tuple[Move, ...]]] = []  # stages a stop left behind
        for index, stage in enumerate(plan.stages):
            _check_interrupt(ctx)
            if ctx.abandon:
                break
            if ctx.stop_reason is not None:
                left.append((index, stage.moves))
                continue
            ctx.write(StageEvent(index, stage.kind, "start", stage.label, stage.node))
            ctx.emit(StageStarted(index, stage))
            if self._deps.before_stage is not None:
                for note in self._deps.before_stage(index, stage):
                    ctx.emit(Notice(note))
            _run_stage(ctx, index, stage)
            if not ctx.abandon:
                if self._deps.after_stage is not None:
                    for note in self._deps.after_stage(index, stage):
                        ctx.emit(Notice(note))
                ctx.write(StageEvent(index, stage.kind, "end"))
        if left and ctx.stop_reason is not None:
            ctx.not_started_stages(left, ctx.stop_reason)  # one line, not one per stage
        # Anything not handled (abandoned run) is reported as not started.
        why = ctx.stop_reason or "the run ended before this move"
        for index, stage in enumerate(plan.stages):
            ctx.not_started(index, stage.moves, why, emit=False)
        _whereabouts(ctx)
        report = _report(ctx, started_epoch, path)
        ctx.write(
            RunEnd(
                exit_code=report.exit_code,
                interrupted=report.interrupted,
                summary=report.summary_counts(),
                abandoned=tuple(ctx.abandoned),
            )
        )
        ctx.emit(RunFinished(report))
        return report


def _run_stage(ctx: RunContext, index: int, stage: Stage) -> None:
    if stage.kind == "migrate":
        _Window(ctx, index, stage).run()
    elif stage.kind == "hook":
        run_hook(ctx, index, stage)
    elif stage.kind == "wait-node":
        wait_for_node(ctx, index, stage)
    elif stage.kind == "confirm":
        confirm(ctx, stage)
    elif stage.kind == "pause":
        pause(ctx, stage.timeout_s or stage.predicted_makespan_s)


def _check_interrupt(ctx: RunContext) -> None:
    """Act on a Ctrl-C the signal handler counted since the last look."""
    level = ctx.interrupts()
    if level <= ctx.handled_interrupts:
        return
    ctx.handled_interrupts = level
    with ctx.lock:
        running = [(f.move, f.upid) for f in ctx.inflight.values()]
    ctx.stop("interrupted by the operator (Ctrl-C)")
    if level >= 2:
        ctx.abandon = True
    tasks = tuple(RunningTask(m.id, m.vmid, u) for m, u in running)
    ctx.write(Interruption(min(level, 2), tasks))
    ctx.emit(Interrupt(min(level, 2), tuple(running)))


def _whereabouts(ctx: RunContext) -> None:
    """Before the report: where is each guest whose move did not succeed? Read once from the
    cluster (a resumed run's journalled outcome, or an earlier guess, may be out of date). A
    guest whose earlier migration may still run is where it is now, and said to be in motion."""
    results = list(ctx.results.values())
    moving = {r.move.vmid: r for r in results if r.still_running or r.status == "left-running"}
    stale = [r for r in results if r.status in ("failed", "not-started") and not r.still_running]
    if not stale or not ctx.look_around():
        return
    for r in stale:
        node = ctx.location.get(r.move.vmid)
        running = moving.get(r.move.vmid)
        if running is not None and running is not r:
            task = f" {running.upid}" if running.upid else ""
            note = (
                f"; its migration{task} ({running.move.id}, to {running.move.target}) may still "
                "be running"
            )
            ctx.results[r.move.id] = replace(r, node=node, reason=r.reason + note)
        elif node != r.node:
            ctx.results[r.move.id] = replace(r, node=node)


def _report(ctx: RunContext, started_epoch: float, journal_path: str | None) -> RunReport:
    plan = ctx.plan
    offsets: list[float] = []
    elapsed = 0.0
    for stage in plan.stages:
        offsets.append(elapsed)
        elapsed += stage.predicted_makespan_s
    return RunReport(
        run_id=ctx.run_id,
        plan_name=plan.name,
        plan_source=plan.source,
        command="",
        results=tuple(ctx.results[m.id] for m in plan.moves if m.id in ctx.results),
        blocked=blocked_guests(plan),
        hooks=tuple(ctx.hooks),
        node_waits=tuple(ctx.waits),
        interrupted=ctx.interrupts() > 0,
        abandoned_upids=tuple(ctx.abandoned),
        stopped_reason=ctx.stop_reason or "",
        wall_duration_s=ctx.now(),
        predicted_makespan_s=plan.predicted_makespan_s or elapsed,
        journal_path=journal_path,
        resumed=ctx.resume is not None,
        started_epoch=started_epoch,
        stage_offsets_s=tuple(offsets),
    )


def blocked_guests(plan: ExecutionPlan) -> tuple[BlockedGuest, ...]:
    """The guests the plan leaves where they are because nothing may move them, and why."""
    blocked = []
    for vmid in plan.blocked:
        findings = [f for f in plan.findings if f.vmid == vmid and f.severity != "info"]
        reason = "; ".join(f.message for f in findings) or "no safe target (see the plan)"
        blocked.append(BlockedGuest(vmid, reason, findings[0].id if findings else ""))
    return tuple(blocked)


# --------------------------------------------------------------------------------------------
# A migrate stage: the sliding window


class _Window:
    """One migrate stage: pending moves, started as the caps allow, ended one by one."""

    def __init__(self, ctx: RunContext, index: int, stage: Stage) -> None:
        self.ctx = ctx
        self.index = index
        self.node = stage.node
        self.pending: list[Move] = []
        self.records: dict[str, MoveRecord | None] = {}
        self.deferred: dict[str, int] = {}  # move id -> completions count when it was deferred
        self.completions = 0
        # A stage the interrupted run had gone on from (a later stage started) is over: its
        # outcomes stand. One it was stopped or killed in goes on.
        ended = ctx.resume is not None and StageEvent.passed(ctx.resume, index)
        for original in stage.moves:
            move, rec = with_journal(ctx, original)
            done = journalled(index, move, rec, ended=ended) if ctx.resume is not None else None
            if done is not None:
                if done.status == "not-started":
                    done = replace(done, node=ctx.where(move))
                ctx.results[move.id] = done
                if done.node or done.status != "moved":
                    ctx.seen(move.vmid, done.node, moved=done.status == "moved")
                ctx.emit(MoveFinished(done))
                continue
            self.records[move.id] = rec
            self.pending.append(move)

    def run(self) -> None:
        ctx = self.ctx
        while self.pending or ctx.inflight:
            _check_interrupt(ctx)
            if ctx.abandon:
                self._leave_running()
                return
            if ctx.stop_reason is not None:
                ctx.not_started(self.index, self.pending, ctx.stop_reason)
                self.pending = []
            else:
                if not ctx.inflight:
                    self.deferred.clear()  # nothing running will free room: re-check now
                self._start_eligible()
            if not ctx.inflight:
                if not self.pending:
                    break
                continue
            try:
                move_id, end = ctx.done.get(timeout=ctx.options.tick_s)
            except queue.Empty:
                continue
            if end is None:  # its task ended, its arrival is being verified: a slot is free
                continue
            with ctx.lock:
                flight = ctx.inflight.pop(move_id)
            self.completions += 1
            self._handle(flight, end)

    # -- starting

    def _start_eligible(self) -> None:
        ctx = self.ctx
        self._retarget_failed()
        cluster_cap = max(1, ctx.plan.caps.cluster)
        waiting = {m.id for m in self.pending} | set(ctx.inflight)
        remaining: list[Move] = []
        for pos, move in enumerate(self.pending):
            busy = sum(1 for f in ctx.inflight.values() if not f.task_over)
            if busy >= cluster_cap or ctx.stop_reason is not None:
                remaining.extend(self.pending[pos:])
                break
            verdict = self._eligible(move, waiting)
            if verdict == "wait":
                remaining.append(move)
            elif verdict == "go":
                self._launch(self._from_where_it_is(move))
        self.pending = remaining

    def _retarget_failed(self) -> None:
        """Pending moves to a target that failed earlier and is still down go elsewhere (one
        re-plan for all); a target that is back (online again) is forgotten first."""
        bad = self.ctx.bad_targets
        stale = [m for m in self.pending if m.target in bad and not m.pinned]
        if not stale:
            return
        forget_recovered(self.ctx)
        stale = [m for m in stale if m.target in bad]
        if not stale:
            return
        answers = self._replan([(m, f"target {m.target} failed earlier", None) for m in stale])
        self.pending = swapped(self.pending, stale, answers)

    def _eligible(self, move: Move, waiting: set[str]) -> Literal["go", "wait", "done"]:
        """Whether `move` may start now, must wait, or was decided here (not started)."""
        ctx = self.ctx
        # Dependencies: wait for those still to run; a failed one stops dependents under
        # skip-guest (the memory it should have freed is not free).
        if any(d in waiting and d != move.id for d in move.after):
            return "wait"
        failed = [d for d in move.after if d in ctx.results and not ctx.results[d].ok]
        if failed and ctx.plan.on_failure == "skip-guest":
            ctx.decide(
                self.index,
                move,
                "not-started",
                f"not started: it depends on {', '.join(failed)}, which did not succeed "
                "(on_failure: skip-guest)",
            )
            return "done"
        if self.deferred.get(move.id) == self.completions:
            return "wait"
        caps = ctx.plan.caps
        if not caps.holds_slot(move):  # nothing to copy: only the cluster cap applies
            return "go"
        running = [
            f.move for f in ctx.inflight.values() if not f.task_over and caps.holds_slot(f.move)
        ]
        if sum(1 for m in running if m.source == move.source) >= max(1, caps.per_source):
            return "wait"
        if sum(1 for m in running if m.target == move.target) >= max(1, caps.per_target):
            return "wait"
        return "go"

    def _from_where_it_is(self, move: Move) -> Move:
        """A guest this run already moved elsewhere (e.g. re-planned while draining) comes back
        from where it is now."""
        placed = self.ctx.placed.get(move.vmid)
        if placed is None or placed in (move.source, move.target):
            return move
        self.ctx.write(
            Replan(
                move=move.id,
                vmid=move.vmid,
                old_target=move.target,
                new_target=move.target,
                reason=f"this run moved {move.vmid} to {placed} earlier",
                new_source=placed,
            )
        )
        return replace(move, source=placed)

    def _launch(self, move: Move) -> None:
        ctx = self.ctx
        flight = Flight(
            move=move,
            stage_index=self.index,
            resume=self.records.get(move.id),
            wall_start_s=ctx.now(),
            # Rolling maintenance also brings guests home: those moves are no origin records.
            origin=self.node is None or move.source == self.node,
        )
        with ctx.lock:
            ctx.inflight[move.id] = flight
        worker = threading.Thread(
            target=_work, args=(ctx, flight), name=f"migrate-{move.vmid}", daemon=True
        )
        worker.start()

    # -- ending

    def _handle(self, flight: Flight, end: MoveEnd) -> None:
        ctx = self.ctx
        move = flight.move
        if end.kind == "result" and end.result is not None:
            result = replace(
                end.result,
                attempts=tuple(ctx.attempts.get(move.id, ())),
                original_target=ctx.original_targets.get(move.id),
            )
            ctx.results[move.id] = result
            if result.status == "failed" and ctx.plan.on_failure == "stop":
                ctx.stop(f"move {move.id} ({move.vmid}) failed; on_failure: stop")
            return
        if end.kind == "defer":
            self.deferred[move.id] = self.completions
            self.pending = [move, *self.pending]
            return
        # The target failed: re-plan this move, and under target-down every pending move to it.
        retries: list[Retry] = [(move, end.reason, end.upid)]
        if end.kind == "target-down":
            ctx.bad_targets.add(move.target)
            retries += [
                (m, f"target {move.target} failed: {end.reason}", None)
                for m in self.pending
                if m.target == move.target and not m.pinned
            ]
        answers = self._replan(retries)
        rest = swapped(self.pending, [m for m, _, _ in retries[1:]], answers[1:])
        self.pending = [answers[0], *rest] if answers[0] is not None else rest

    def _replan(self, retries: Sequence[Retry]) -> list[Move | None]:
        return replan(self.ctx, self.index, retries)

    def _leave_running(self) -> None:
        """Second Ctrl-C: report what is still running and return without waiting."""
        ctx = self.ctx
        with ctx.lock:
            flights = list(ctx.inflight.values())
        for flight in flights:
            move, upid = flight.move, flight.upid
            if upid:
                ctx.abandoned.append(upid)
            reason = (
                f"left running at the operator's request; task {upid}"
                if upid
                else "left while its pre-checks ran; nothing was started yet or its task id "
                "was not known"
            )
            if move.options.shutdown:
                reason += (
                    f"; an offline move: VM {move.vmid} may be shut down, `--resume` migrates "
                    "and starts it"
                )
            ctx.results[move.id] = MoveResult(
                move=move,
                status="left-running",
                reason=reason,
                stage_index=flight.stage_index,
                upid=upid,
                still_running=bool(upid),
                node=move.source,
                wall_start_s=flight.wall_start_s,
            )


# --------------------------------------------------------------------------------------------
# One move (worker thread)


def _work(ctx: RunContext, flight: Flight) -> None:
    try:
        end = _move(ctx, flight)
    except PvetoolError as exc:  # e.g. the API stayed unreachable through every retry
        task = f"; its task {flight.upid} may still be running" if flight.upid else ""
        end = ctx.finish(
            flight,
            "failed",
            f"{exc}{task}",
            # Before its task was known nothing was started: the guest is where it was.
            node=None if flight.upid else ctx.where(flight.move),
            upid=flight.upid,
            still_running=bool(flight.upid),
        )
    except Exception as exc:  # a bug must not leave a guest unaccounted for
        logger.exception("internal error while migrating %s", flight.move.vmid)
        end = ctx.finish(
            flight, "failed", f"internal error: {type(exc).__name__}: {exc}", node=None
        )
    finally:
        with ctx.lock:
            flight.reserved_bytes = 0
    ctx.done.put((flight.move.id, end))


def _move(ctx: RunContext, flight: Flight) -> MoveEnd:
    """Resume what the interrupted run left, else pre-condition -> execute -> post-condition."""
    rec = flight.resume
    if rec is not None and rec.shutdown and rec.status not in ("moved", "skipped"):
        resumed = resume_offline(ctx, flight)
        if resumed is not None:
            return resumed
        rec = None  # nothing was done, or it was undone: check and start afresh
    if rec is not None:
        attach = attach_or_settle(ctx, flight, rec)
        if isinstance(attach, MoveEnd):
            return attach
        if attach is not None:
            return follow_and_verify(ctx, flight, attach, before=None, attached=True)
    checked = pre_condition(ctx, flight)
    if isinstance(checked, MoveEnd):
        return checked
    return execute(ctx, flight, checked)
