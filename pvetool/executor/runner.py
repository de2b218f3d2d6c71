"""The executor: runs an `ExecutionPlan` on the cluster, safely, visibly and resumably.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.journal` and the
`pvetool.executor` siblings. PVE is reached only through `ClusterApi`; task following, the
planner's re-planning, hooks and confirmation come in as callables (the CLI wires them).

How a migrate stage runs
------------------------
The calling thread schedules; each migration runs in its own worker thread. The scheduler keeps
a *sliding window*: whenever a migration ends it starts the next pending move whose
dependencies (`Move.after`) are done and for which the cluster, per-source and per-target caps
have a free slot, in plan order. It never waits for a whole batch ("waves").

A worker: re-checks the move (`verify.precheck`: already on the target -> *skipped*; moved
elsewhere, locked, refused -> *failed*; target offline, full or refusing -> the scheduler
re-plans), journals the intent, starts the migration PVE needs (qemu online/offline with the
plan's options, lxc restart, HA guests through PVE's HA path), journals the UPID, follows the
task (HA: `hamigrate` through to the real `qmigrate`), verifies the arrival, and journals the
outcome and the guest's origin node.

Offline moves of running VMs (`MoveOptions.shutdown`, the plan's per-guest ``offline: true``):
the intent says so; the worker shuts the VM down cleanly (PVE waits `SHUTDOWN_TIMEOUT_S`, never
forces), migrates it offline, checks it arrived stopped, starts it on the target and verifies
it runs (agent ping if enabled). Each shutdown/start is journalled with its UPID. After any
failure the VM is started again wherever it is, and the outcome says where it runs, or that it
is stopped and why.

Failures: `on_failure: stop` starts nothing new after a failure (running migrations finish),
`continue` and `skip-guest` go on (`skip-guest` also leaves moves that depend on the failed one).
A target that fails (offline, full, refusing) makes the scheduler ask the planner for another
target for that move and every pending move to that target, unless the plan pins them.

Interrupts: `interrupt()` is safe to call from a signal handler (it only sets a flag). The
first stops starting new migrations and waits for the running ones; the second returns at once
and leaves them running (their UPIDs are in the report and the journal).

Resume: given the `RunState` of an unfinished run (and the same plan), moves that arrived are
taken from the journal, tasks that were started are re-attached by UPID, a move whose intent
was journalled but whose UPID was not is looked up (arrived? locked for migration? a migration
task of that guest on the source since the intent?) before anything is started again. An
unfinished offline move goes on from what the cluster shows: a shutdown, migration or start
task of the guest still running is followed; then stopped on the source -> migrate and start,
stopped on the target -> start, running on the target -> verify; running on the source with
nothing under way -> checked and started afresh.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from pvetool.errors import PvetoolError, TaskFailed, TaskTimeout
from pvetool.executor.api import ClusterApi, Confirm, Follow, Replan
from pvetool.executor.hooks import HookRunner, run_hook, wait_node_online
from pvetool.executor.verify import (
    Check,
    expected_status,
    find_guest,
    precheck,
    target_trouble,
    verify_arrival,
    wait_for_status,
)
from pvetool.journal import Journal, MoveRecord, RunState
from pvetool.model import (
    Attempt,
    BlockedGuest,
    ExecutionPlan,
    Guest,
    HookResult,
    MigrationProgress,
    MigrationRequest,
    Move,
    MoveOptions,
    MoveResult,
    NodeWaitResult,
    RunReport,
    Stage,
    TaskQuery,
    TaskResult,
    Upid,
)
from pvetool.model.events import (
    Event,
    HookFinished,
    HookStarted,
    Interrupt,
    MoveFinished,
    MoveProgressed,
    MoveReplanned,
    MoveStarted,
    NodeWaited,
    Notice,
    Observer,
    RunFinished,
    RunStarted,
    StageStarted,
)

__all__ = ["Executor"]

logger = logging.getLogger(__name__)

MIGRATION_TASK_TYPES = frozenset({"qmigrate", "vzmigrate", "hamigrate"})
OfflineStep = Literal["shutdown", "migrate", "start", "verify"]
# The task types of an offline move's steps (HA-managed guests: the HA request tasks).
STEP_OF_TASK: Mapping[str, OfflineStep] = {
    "qmshutdown": "shutdown",
    "hastop": "shutdown",
    "qmigrate": "migrate",
    "hamigrate": "migrate",
    "qmstart": "start",
    "hastart": "start",
}
CLOCK_SLACK_S = 5
# How long PVE waits for a VM's clean shutdown before it fails the task. Never forced: a VM
# that does not shut down in time keeps running and its move fails.
SHUTDOWN_TIMEOUT_S = 180
# How long the run state may take to show after a shutdown/start task (HA: the HA stack acts
# after its own loop delays, and the shutdown itself may take SHUTDOWN_TIMEOUT_S).
POWER_WAIT_S = SHUTDOWN_TIMEOUT_S + 60.0
# After a cold start the guest OS boots before its QEMU guest agent answers a ping.
BOOT_AGENT_TIMEOUT_S = 180.0

OutcomeKind = Literal["result", "defer", "target-down", "target-refused"]


@dataclass
class _Outcome:
    kind: OutcomeKind
    result: MoveResult | None = None
    reason: str = ""
    upid: str | None = None


class _StepFailed(Exception):
    """A step of an offline move failed; `reason` is the sentence for the outcome."""

    def __init__(
        self, reason: str, *, upid: str | None = None, still_running: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.upid = upid
        self.still_running = still_running


@dataclass
class _Flight:
    """A move being worked on by a worker thread."""

    move: Move
    stage_index: int
    resume: MoveRecord | None = None
    upid: str | None = None
    reserved_bytes: int = 0
    wall_start_s: float | None = None
    origin: bool = True  # a move that empties its stage's node: journal the guest's home


@dataclass
class _RunCtx:
    plan: ExecutionPlan
    resume: RunState | None
    results: dict[str, MoveResult] = field(default_factory=dict)
    hooks: list[HookResult] = field(default_factory=list)
    waits: list[NodeWaitResult] = field(default_factory=list)
    attempts: dict[str, list[Attempt]] = field(default_factory=dict)
    original_targets: dict[str, str] = field(default_factory=dict)
    bad_targets: set[str] = field(default_factory=set)
    abandoned: list[str] = field(default_factory=list)


class Executor:
    """Runs execution plans through a `ClusterApi`; see the module docstring."""

    def __init__(
        self,
        api: ClusterApi,
        follow: Follow,
        *,
        journal: Journal | None = None,
        replan: Replan | None = None,
        observer: Observer | None = None,
        agent_vmids: Collection[int] = (),
        hook_runner: HookRunner = run_hook,
        hook_env: Mapping[str, str] | None = None,
        confirm: Confirm | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        agent_timeout_s: float = 10.0,
        agent_poll_s: float = 1.0,
        node_poll_s: float = 2.0,
        tick_s: float = 0.2,
    ) -> None:
        self._api = api
        self._follow = follow
        self._journal = journal
        self._replan_fn = replan
        self._observer = observer
        self._agent_vmids = frozenset(agent_vmids)
        self._hook_runner = hook_runner
        self._hook_env = dict(hook_env or {})
        self._confirm = confirm
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._agent_timeout_s = agent_timeout_s
        self._agent_poll_s = agent_poll_s
        self._node_poll_s = node_poll_s
        self._tick_s = tick_s

        self._lock = threading.RLock()
        self._emit_lock = threading.Lock()
        self._target_locks: dict[str, threading.Lock] = {}
        self._reserved: dict[str, int] = {}
        self._inflight_into: dict[str, int] = {}
        self._placed: dict[int, str] = {}
        self._done: queue.Queue[tuple[str, _Outcome]] = queue.Queue()
        self._inflight: dict[str, _Flight] = {}
        self._interrupts = 0  # written by the signal handler: a plain int, no locks
        self._handled_interrupts = 0
        self._stop_reason: str | None = None
        self._abandon = False
        self._t0 = 0.0
        self._run_id = journal.run_id if journal is not None else ""

    # -- control (safe from a signal handler: assignments only)

    def interrupt(self) -> int:
        """Ctrl-C: the first stops starting migrations, the second leaves running ones."""
        self._interrupts += 1
        return self._interrupts

    @property
    def interrupts(self) -> int:
        return self._interrupts

    # -- plumbing

    def _emit(self, event: Event) -> None:
        if self._observer is None:
            return
        with self._emit_lock:
            try:
                self._observer(event)
            except Exception:  # a renderer bug must not break a running migration
                logger.exception("the observer failed on %s", type(event).__name__)

    def _write(self, rtype: str, **fields: object) -> None:
        if self._journal is not None:
            self._journal.write(rtype, **fields)

    def _now(self) -> float:
        return self._clock() - self._t0

    # -- the run

    def run(self, plan: ExecutionPlan, *, resume: RunState | None = None) -> RunReport:
        """Run every stage of `plan` (continuing `resume` when given) and report."""
        self._t0 = self._clock()
        started_epoch = self._wall_clock()
        ctx = _RunCtx(plan=plan, resume=resume)
        if resume is not None:
            self._write("resume", pid=os.getpid())
        self._emit(
            RunStarted(
                plan,
                self._run_id,
                str(self._journal.path) if self._journal is not None else None,
                resume is not None,
            )
        )
        offsets: list[float] = []
        elapsed = 0.0
        for stage in plan.stages:
            offsets.append(elapsed)
            elapsed += stage.predicted_makespan_s

        for index, stage in enumerate(plan.stages):
            self._check_interrupt(ctx)
            if self._abandon:
                break
            if self._stop_reason is not None:
                self._not_started(ctx, index, stage.moves, self._stop_reason)
                continue
            self._write(
                "stage",
                index=index,
                kind=stage.kind,
                label=stage.label,
                node=stage.node,
                event="start",
            )
            self._emit(StageStarted(index, stage))
            if stage.kind == "migrate":
                self._run_migrate_stage(ctx, index, stage)
            elif stage.kind == "hook":
                self._run_hook_stage(ctx, index, stage)
            elif stage.kind == "wait-node":
                self._run_wait_stage(ctx, index, stage)
            elif stage.kind == "confirm":
                if self._confirm is None or not self._confirm(stage.label):
                    self._stop(f"not confirmed: {stage.label}")
            elif stage.kind == "pause":
                self._pause(stage.timeout_s or stage.predicted_makespan_s)
            if not self._abandon:
                self._write("stage", index=index, kind=stage.kind, event="end")

        # Anything not handled (abandoned run) is reported as not started.
        for index, stage in enumerate(plan.stages):
            missing = [m for m in stage.moves if m.id not in ctx.results]
            if missing:
                why = self._stop_reason or "the run ended before this move"
                self._not_started(ctx, index, tuple(missing), why, emit=False)

        report = RunReport(
            run_id=self._run_id,
            plan_name=plan.name,
            plan_source=plan.source,
            command="",
            results=tuple(ctx.results[m.id] for m in plan.moves if m.id in ctx.results),
            blocked=_blocked(plan),
            hooks=tuple(ctx.hooks),
            node_waits=tuple(ctx.waits),
            interrupted=self._interrupts > 0,
            abandoned_upids=tuple(ctx.abandoned),
            stopped_reason=self._stop_reason or "",
            wall_duration_s=self._now(),
            predicted_makespan_s=plan.predicted_makespan_s or elapsed,
            journal_path=str(self._journal.path) if self._journal is not None else None,
            resumed=resume is not None,
            started_epoch=started_epoch,
            stage_offsets_s=tuple(offsets),
        )
        self._write(
            "run-end",
            exit_code=report.exit_code,
            interrupted=report.interrupted,
            summary=report.summary_counts(),
            abandoned=list(ctx.abandoned),
        )
        self._emit(RunFinished(report))
        return report

    def _stop(self, reason: str) -> None:
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason

    def _check_interrupt(self, ctx: _RunCtx) -> None:
        level = self._interrupts
        if level <= self._handled_interrupts:
            return
        self._handled_interrupts = level
        running = [(f.move, f.upid) for f in self._inflight.values()]
        self._stop("interrupted by the operator (Ctrl-C)")
        if level >= 2:
            self._abandon = True
        self._write(
            "interrupt",
            level=min(level, 2),
            running=[{"move": m.id, "vmid": m.vmid, "upid": u} for m, u in running],
        )
        self._emit(Interrupt(min(level, 2), tuple(running)))

    def _not_started(
        self,
        ctx: _RunCtx,
        index: int,
        moves: Collection[Move],
        reason: str,
        *,
        emit: bool = True,
    ) -> None:
        for move in moves:
            if move.id in ctx.results:
                continue
            result = MoveResult(
                move=move,
                status="not-started",
                reason=f"not started: {reason}",
                stage_index=index,
                node=self._placed.get(move.vmid, move.source),
                attempts=tuple(ctx.attempts.get(move.id, ())),
                original_target=ctx.original_targets.get(move.id),
            )
            ctx.results[move.id] = result
            if emit:
                self._emit(MoveFinished(result))

    # -- migrate stages

    def _resume_record(self, ctx: _RunCtx, move: Move) -> tuple[Move, MoveRecord | None]:
        if ctx.resume is None:
            return move, None
        rec = ctx.resume.moves.get(move.id)
        if rec is None:
            return move, None
        # Re-plans of the earlier run changed where this move goes (and from where).
        if rec.target and rec.target != move.target:
            ctx.original_targets.setdefault(move.id, move.target)
            move = replace(move, target=rec.target)
        if rec.source and rec.source != move.source:
            move = replace(move, source=rec.source)
        return move, rec

    def _journalled_result(self, index: int, move: Move, rec: MoveRecord) -> MoveResult:
        out = rec.outcome or {}
        return MoveResult(
            move=move,
            status="moved" if rec.status == "moved" else "skipped",
            reason=str(out.get("reason") or "") or "done in the interrupted run",
            stage_index=index,
            upid=out.get("real_upid") or out.get("upid"),
            ha_upid=out.get("ha_upid"),
            node=out.get("node") or move.target,
            task_start=_float(out.get("task_start")),
            task_duration_s=_float(out.get("task_duration_s")),
            downtime_ms=_float(out.get("downtime_ms")),
            resumed=True,
        )

    def _run_migrate_stage(self, ctx: _RunCtx, index: int, stage: Stage) -> None:
        pending: list[Move] = []
        records: dict[str, MoveRecord | None] = {}
        for original in stage.moves:
            move, rec = self._resume_record(ctx, original)
            if rec is not None and rec.status in ("moved", "skipped"):
                result = self._journalled_result(index, move, rec)
                ctx.results[move.id] = result
                if result.status == "moved" and result.node:
                    self._placed[move.vmid] = result.node
                self._emit(MoveFinished(result))
                continue
            records[move.id] = rec
            pending.append(move)

        deferred: dict[str, int] = {}
        completions = 0
        while pending or self._inflight:
            self._check_interrupt(ctx)
            if self._abandon:
                self._leave_running(ctx)
                return
            if self._stop_reason is not None:
                if pending:
                    self._not_started(ctx, index, pending, self._stop_reason)
                    pending = []
            else:
                if not self._inflight:
                    deferred.clear()  # nothing running will free room: re-check now
                pending = self._start_eligible(ctx, index, pending, records, deferred, completions)
            if not self._inflight:
                if not pending:
                    break
                continue
            try:
                move_id, outcome = self._done.get(timeout=self._tick_s)
            except queue.Empty:
                continue
            flight = self._inflight.pop(move_id)
            completions += 1
            pending = self._handle_outcome(
                ctx, index, flight, outcome, pending, deferred, completions
            )

    def _start_eligible(
        self,
        ctx: _RunCtx,
        index: int,
        pending: list[Move],
        records: Mapping[str, MoveRecord | None],
        deferred: Mapping[str, int],
        completions: int,
    ) -> list[Move]:
        caps = ctx.plan.caps
        waiting_ids = {m.id for m in pending} | set(self._inflight)
        remaining: list[Move] = []
        for pos, move in enumerate(pending):
            if len(self._inflight) >= max(1, caps.cluster) or self._stop_reason is not None:
                remaining.extend(pending[pos:])
                break
            # Dependencies: wait for those still to run; a failed one stops dependents under
            # skip-guest (the memory it should have freed is not free).
            blocking = [d for d in move.after if d in waiting_ids and d != move.id]
            if blocking:
                remaining.append(move)
                continue
            failed_deps = [d for d in move.after if d in ctx.results and not ctx.results[d].ok]
            if failed_deps and ctx.plan.on_failure == "skip-guest":
                self._finish_main(
                    ctx,
                    index,
                    move,
                    "not-started",
                    f"not started: it depends on {', '.join(failed_deps)}, which did not "
                    "succeed (on_failure: skip-guest)",
                )
                continue
            if deferred.get(move.id) == completions:
                remaining.append(move)
                continue
            if move.target in ctx.bad_targets and not move.pinned:
                new = self._replan(ctx, index, move, f"target {move.target} failed earlier", None)
                if new is None:
                    continue
                move = new
            running = list(self._inflight.values())
            if sum(1 for f in running if f.move.source == move.source) >= max(1, caps.per_source):
                remaining.append(move)
                continue
            if sum(1 for f in running if f.move.target == move.target) >= max(1, caps.per_target):
                remaining.append(move)
                continue
            # A guest this run already moved elsewhere (e.g. re-planned while draining) comes
            # back from where it is now.
            placed = self._placed.get(move.vmid)
            if placed is not None and placed != move.source and placed != move.target:
                self._write(
                    "replan",
                    move=move.id,
                    vmid=move.vmid,
                    old_target=move.target,
                    new_target=move.target,
                    new_source=placed,
                    reason=f"this run moved {move.vmid} to {placed} earlier",
                )
                move = replace(move, source=placed)
            self._launch(ctx, index, move, records.get(move.id))
        return remaining

    def _launch(self, ctx: _RunCtx, index: int, move: Move, rec: MoveRecord | None) -> None:
        stage_node = ctx.plan.stages[index].node
        flight = _Flight(
            move=move,
            stage_index=index,
            resume=rec,
            wall_start_s=self._now(),
            # Rolling maintenance also brings guests home: those moves are no origin records.
            origin=stage_node is None or move.source == stage_node,
        )
        with self._lock:
            self._inflight[move.id] = flight
            self._inflight_into[move.target] = self._inflight_into.get(move.target, 0) + 1
        thread = threading.Thread(
            target=self._worker, args=(ctx, flight), name=f"migrate-{move.vmid}", daemon=True
        )
        thread.start()

    def _handle_outcome(
        self,
        ctx: _RunCtx,
        index: int,
        flight: _Flight,
        outcome: _Outcome,
        pending: list[Move],
        deferred: dict[str, int],
        completions: int,
    ) -> list[Move]:
        move = flight.move
        if outcome.kind == "result" and outcome.result is not None:
            result = replace(
                outcome.result,
                attempts=tuple(ctx.attempts.get(move.id, ())),
                original_target=ctx.original_targets.get(move.id),
            )
            ctx.results[move.id] = result
            if result.status == "moved" and result.node:
                self._placed[move.vmid] = result.node
            if result.status == "failed" and ctx.plan.on_failure == "stop":
                self._stop(f"move {move.id} ({move.vmid}) failed; on_failure: stop")
            return pending
        if outcome.kind == "defer":
            deferred[move.id] = completions
            return [move, *pending]
        # The target failed: re-plan this move, and under target-down every pending move to it.
        if outcome.kind == "target-down":
            ctx.bad_targets.add(move.target)
        new = self._replan(ctx, index, move, outcome.reason, outcome.upid)
        if outcome.kind == "target-down":
            rest: list[Move] = []
            for other in pending:
                if other.target == move.target and not other.pinned:
                    moved_on = self._replan(
                        ctx, index, other, f"target {move.target} failed: {outcome.reason}", None
                    )
                    if moved_on is not None:
                        rest.append(moved_on)
                else:
                    rest.append(other)
            pending = rest
        if new is not None:
            pending = [new, *pending]
        return pending

    def _replan(
        self, ctx: _RunCtx, index: int, move: Move, reason: str, upid: str | None
    ) -> Move | None:
        """Another target for `move`, or None (then the move is recorded as failed)."""
        tried = ctx.attempts.setdefault(move.id, [])
        tried.append(Attempt(move.target, reason, upid))
        ctx.original_targets.setdefault(move.id, move.target)
        avoid = set(ctx.bad_targets) | {a.target for a in tried}
        new: Move | None = None
        why = reason
        if move.pinned:
            why = f"{reason}; the plan pins {move.vmid} to {move.target}, so it was not re-planned"
        elif self._replan_fn is None:
            why = f"{reason}; no re-planning available"
        else:
            try:
                candidate = self._replan_fn(move, frozenset(avoid))
            except PvetoolError as exc:
                candidate = None
                why = f"{reason}; re-planning failed: {exc}"
            except Exception as exc:  # a planner bug must not abandon the running moves
                logger.exception("re-planning %s failed", move.vmid)
                candidate = None
                why = f"{reason}; re-planning failed: internal error: {type(exc).__name__}"
            if candidate is not None and candidate.target not in avoid:
                new = replace(candidate, id=move.id, source=move.source)
            elif candidate is None and why == reason:
                why = f"{reason}; no other node can take {move.vmid}"
        self._write(
            "replan",
            move=move.id,
            vmid=move.vmid,
            old_target=move.target,
            new_target=new.target if new is not None else None,
            reason=why,
        )
        self._emit(MoveReplanned(move, move.target, new.target if new is not None else None, why))
        if new is None:
            self._finish_main(ctx, index, move, "failed", why, upid=upid)
        return new

    def _finish_main(
        self,
        ctx: _RunCtx,
        index: int,
        move: Move,
        status: Literal["failed", "not-started"],
        reason: str,
        *,
        upid: str | None = None,
    ) -> None:
        """A move decided in the scheduling thread (re-plan failed, dependency failed)."""
        result = MoveResult(
            move=move,
            status=status,
            reason=reason,
            stage_index=index,
            upid=upid,
            node=self._placed.get(move.vmid, move.source),
            attempts=tuple(ctx.attempts.get(move.id, ())),
            original_target=ctx.original_targets.get(move.id),
        )
        ctx.results[move.id] = result
        self._write(
            "outcome",
            move=move.id,
            vmid=move.vmid,
            status=status,
            reason=reason,
            source=move.source,
            target=move.target,
            upid=upid,
            node=result.node,
        )
        self._emit(MoveFinished(result))
        if status == "failed" and ctx.plan.on_failure == "stop":
            self._stop(f"move {move.id} ({move.vmid}) failed; on_failure: stop")

    def _leave_running(self, ctx: _RunCtx) -> None:
        """Second Ctrl-C: report what is still running and return without waiting."""
        for flight in list(self._inflight.values()):
            move = flight.move
            upid = flight.upid
            if upid:
                ctx.abandoned.append(upid)
            ctx.results[move.id] = MoveResult(
                move=move,
                status="left-running",
                reason=(
                    f"left running at the operator's request; task {upid}"
                    if upid
                    else "left while its pre-checks ran; nothing was started yet or its task "
                    "id was not known"
                )
                + (
                    f"; an offline move: VM {move.vmid} may be shut down, `--resume` migrates "
                    "and starts it"
                    if move.options.shutdown
                    else ""
                ),
                stage_index=flight.stage_index,
                upid=upid,
                still_running=bool(upid),
                node=move.source,
                wall_start_s=flight.wall_start_s,
            )

    # -- one migration (worker thread)

    def _worker(self, ctx: _RunCtx, flight: _Flight) -> None:
        try:
            outcome = self._do_move(ctx, flight)
        except PvetoolError as exc:  # e.g. the API stayed unreachable through every retry
            task = f"; its task {flight.upid} may still be running" if flight.upid else ""
            outcome = self._result(
                flight,
                "failed",
                f"{exc}{task}",
                node=None,
                upid=flight.upid,
                still_running=bool(flight.upid),
            )
        except Exception as exc:  # a bug must not leave a guest unaccounted for
            logger.exception("internal error while migrating %s", flight.move.vmid)
            outcome = self._result(
                flight, "failed", f"internal error: {type(exc).__name__}: {exc}", node=None
            )
        finally:
            with self._lock:
                target = flight.move.target
                self._reserved[target] = self._reserved.get(target, 0) - flight.reserved_bytes
                self._inflight_into[target] = self._inflight_into.get(target, 1) - 1
                flight.reserved_bytes = 0
        self._done.put((flight.move.id, outcome))

    def _target_lock(self, target: str) -> threading.Lock:
        with self._lock:
            lock = self._target_locks.get(target)
            if lock is None:
                lock = self._target_locks[target] = threading.Lock()
            return lock

    def _do_move(self, ctx: _RunCtx, flight: _Flight) -> _Outcome:
        move = flight.move
        rec = flight.resume
        if rec is not None and rec.shutdown and rec.status not in ("moved", "skipped"):
            resumed = self._resume_offline(ctx, flight, rec)
            if resumed is not None:
                return resumed
            rec = None  # nothing was done, or it was undone: check and start afresh
        if rec is not None:
            attach = self._resume_task(ctx, flight, rec)
            if isinstance(attach, _Outcome):
                return attach
            if attach is not None:
                return self._follow_and_verify(ctx, flight, attach, before=None, attached=True)

        # Check and reserve atomically per target, so two moves cannot both take the last room.
        with self._target_lock(move.target):
            check = precheck(
                self._api,
                move,
                reserved_bytes=lambda t: self._reserved.get(t, 0),
                inflight_into=lambda t: self._inflight_into.get(t, 1) - 1,
            )
            if check.ready and check.reserve_bytes:
                with self._lock:
                    self._reserved[move.target] = (
                        self._reserved.get(move.target, 0) + check.reserve_bytes
                    )
                    flight.reserved_bytes = check.reserve_bytes
        if check.verdict == "skip":
            return self._result(flight, "skipped", check.reason, node=move.target)
        if check.verdict == "fail":
            node = check.guest.node if check.guest is not None else None
            return self._result(flight, "failed", check.reason, node=node)
        if check.verdict in ("defer", "target-down", "target-refused"):
            return _Outcome(check.verdict, reason=check.reason)
        return self._start(ctx, flight, check)

    def _start(self, ctx: _RunCtx, flight: _Flight, check: Check) -> _Outcome:
        move = flight.move
        opts = move.options
        if self._stop_reason is not None or self._interrupts > 0:
            # Stopped while this move was being checked: start nothing new.
            why = self._stop_reason or "interrupted by the operator (Ctrl-C)"
            return self._result(flight, "not-started", f"not started: {why}", node=move.source)
        guest = check.guest
        # A running VM is migrated live and a running container by restart (PVE cannot move
        # them otherwise), unless the plan says to shut the VM down, migrate it offline and
        # start it again (the guest was running when checked: the sequence will start it).
        running = guest.running if guest is not None else (opts.online or opts.restart)
        offline = move.kind == "qemu" and opts.shutdown and running
        self._write(
            "intent",
            move=move.id,
            vmid=move.vmid,
            source=move.source,
            target=move.target,
            kind=move.kind,
            ha=opts.ha,
            shutdown=offline,
        )
        if offline:
            return self._offline(ctx, flight, "shutdown")
        storage = _storage_map(opts)
        try:
            if move.kind == "qemu":
                upid = self._api.start_migration(
                    MigrationRequest(
                        "qemu",
                        move.source,
                        move.vmid,
                        move.target,
                        online=running,
                        with_local_disks=opts.with_local_disks or None,
                        target_storage=storage,
                        bwlimit_kib_s=opts.bwlimit_kib_s,
                        migration_type=opts.migration_type,
                        migration_network=opts.migration_network,
                    )
                )
            else:
                # Containers cannot live-migrate: a running one is shut down, moved, started.
                upid = self._api.start_migration(
                    MigrationRequest(
                        "lxc",
                        move.source,
                        move.vmid,
                        move.target,
                        restart=True if running else None,
                        target_storage=storage,
                        bwlimit_kib_s=opts.bwlimit_kib_s,
                    )
                )
        except PvetoolError as exc:
            reason = f"PVE refused to start the migration: {_reason(exc)}"
            trouble = target_trouble(reason)
            if trouble is not None:
                return _Outcome(trouble, reason=reason)
            return self._result(flight, "failed", reason, node=move.source)
        flight.upid = str(upid)
        self._write(
            "started", move=move.id, vmid=move.vmid, upid=str(upid), cluster_t=upid.starttime
        )
        self._emit(MoveStarted(move, str(upid)))
        return self._follow_and_verify(ctx, flight, upid, before=guest, attached=False)

    # -- offline moves of running VMs (worker thread)

    def _offline(
        self,
        ctx: _RunCtx,
        flight: _Flight,
        step: OfflineStep,
        *,
        attach: Upid | None = None,
        resumed: bool = False,
    ) -> _Outcome:
        """Shut the VM down, migrate it offline, start it on the target, verify; from `step`
        on (resume), following `attach` when that step's task already runs."""
        move = flight.move
        order: tuple[OfflineStep, ...] = ("shutdown", "migrate", "start", "verify")
        first = order.index(step)
        timeout_s = ctx.plan.task_timeout_s
        down_from: Upid | None = None
        migration: TaskResult | None = None
        started: tuple[Upid, TaskResult] | None = None
        try:
            if first <= 0:
                down_from, _ = self._power_step(
                    flight,
                    "shutdown",
                    move.source,
                    timeout_s,
                    attach if step == "shutdown" else None,
                )
            if first <= 1:
                migration = self._offline_migrate(
                    ctx, flight, attach if step == "migrate" else None
                )
            if first <= 2:
                started = self._power_step(
                    flight, "start", move.target, timeout_s, attach if step == "start" else None
                )
            arrival = verify_arrival(
                self._api,
                move,
                "running",
                agent=move.vmid in self._agent_vmids,
                agent_timeout_s=max(self._agent_timeout_s, BOOT_AGENT_TIMEOUT_S),
                agent_poll_s=self._agent_poll_s,
                sleep=self._sleep,
                clock=self._clock,
            )
        except _StepFailed as failure:
            return self._offline_failed(flight, failure, migration, resumed)
        except PvetoolError as exc:  # e.g. the API stayed unreachable through every retry
            return self._offline_failed(flight, _StepFailed(str(exc)), migration, resumed)
        if not arrival.ok:
            # Started (so nothing to start again), but not as it should be.
            return self._result(
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
        return self._result(
            flight,
            "moved",
            "shut down, migrated offline and started again",
            node=arrival.node,
            task=migration,
            downtime_ms=downtime_ms,
            attached=resumed,
        )

    def _power_step(
        self,
        flight: _Flight,
        action: Literal["shutdown", "start"],
        node: str,
        timeout_s: float,
        attach: Upid | None,
    ) -> tuple[Upid, TaskResult]:
        """Request (or follow, when `attach`) a shutdown or start on `node` and wait until the
        VM shows stopped/running there; raises `_StepFailed`."""
        move = flight.move
        what = f"VM {move.vmid}"
        upid = attach
        if upid is None:
            try:
                if action == "shutdown":
                    upid = self._api.shutdown_guest(
                        move.kind, node, move.vmid, timeout_s=SHUTDOWN_TIMEOUT_S
                    )
                else:
                    upid = self._api.start_guest(move.kind, node, move.vmid)
            except PvetoolError as exc:
                raise _StepFailed(
                    f"PVE refused to {action} {what} on {node}: {_reason(exc)}"
                ) from exc
            self._write(
                "power", move=move.id, vmid=move.vmid, action=action, node=node, upid=str(upid)
            )
        flight.upid = str(upid)
        doing = "shutting down" if action == "shutdown" else "starting"
        again = " (re-attached)" if attach is not None else ""
        self._emit(Notice(f"{what}: {doing} on {node}, task {upid}{again}"))
        try:
            result = self._follow(upid, timeout_s, None)
        except TaskTimeout as exc:
            raise _StepFailed(
                f"its {action} task {exc.upid or upid} did not finish within {timeout_s:g} s; "
                "it is still running and was not stopped",
                upid=exc.upid or str(upid),
                still_running=True,
            ) from exc
        except TaskFailed as exc:
            raise _StepFailed(
                f"the {action} of {what} on {node} failed: {exc.reason}", upid=exc.upid
            ) from exc
        except PvetoolError as exc:
            raise _StepFailed(
                f"lost track of the {action} task {upid}: {exc}",
                upid=str(upid),
                still_running=True,
            ) from exc
        want = "stopped" if action == "shutdown" else "running"
        shown = wait_for_status(
            self._api,
            move.vmid,
            node,
            want,
            timeout_s=POWER_WAIT_S,
            poll_s=self._node_poll_s,
            sleep=self._sleep,
            clock=self._clock,
        )
        if shown is None:
            _, where = self._whereabouts(move)
            raise _StepFailed(
                f"its {action} task {upid} ended {result.exitstatus}, but {what} is not "
                f"{want} on {node} ({where})",
                upid=str(upid),
            )
        return upid, result

    def _offline_migrate(self, ctx: _RunCtx, flight: _Flight, attach: Upid | None) -> TaskResult:
        """The offline migration of the shut-down VM; verifies it arrived stopped."""
        move = flight.move
        opts = move.options
        upid = attach
        if upid is None:
            try:
                upid = self._api.start_migration(
                    MigrationRequest(
                        move.kind,
                        move.source,
                        move.vmid,
                        move.target,
                        online=False,
                        with_local_disks=opts.with_local_disks or None,
                        target_storage=_storage_map(opts),
                        bwlimit_kib_s=opts.bwlimit_kib_s,
                        migration_type=opts.migration_type,
                        migration_network=opts.migration_network,
                    )
                )
            except PvetoolError as exc:
                raise _StepFailed(f"PVE refused to start the migration: {_reason(exc)}") from exc
            self._write(
                "started", move=move.id, vmid=move.vmid, upid=str(upid), cluster_t=upid.starttime
            )
        flight.upid = str(upid)
        self._emit(MoveStarted(move, str(upid), attached=attach is not None))

        def on_progress(p: MigrationProgress) -> None:
            if not self._abandon:
                self._emit(
                    MoveProgressed(move, p.transferred_bytes, p.total_bytes, p.rate_bps, p.phase)
                )

        timeout_s = ctx.plan.task_timeout_s
        try:
            result = self._follow(upid, timeout_s, on_progress)
        except TaskTimeout as exc:
            raise _StepFailed(
                f"task {exc.upid or upid} did not finish within {timeout_s:g} s; it is still "
                "running and was not stopped",
                upid=exc.upid or str(upid),
                still_running=True,
            ) from exc
        except TaskFailed as exc:
            raise _StepFailed(f"{exc.description} failed: {exc.reason}", upid=exc.upid) from exc
        except PvetoolError as exc:
            raise _StepFailed(
                f"lost track of task {upid}: {exc}", upid=str(upid), still_running=True
            ) from exc
        arrival = verify_arrival(self._api, move, "stopped", agent=False)
        if not arrival.ok:
            raise _StepFailed(
                f"task {result.upid} reported {result.exitstatus}, but {arrival.reason}",
                upid=str(result.upid),
            )
        return result

    def _offline_failed(
        self,
        flight: _Flight,
        failure: _StepFailed,
        migration: TaskResult | None,
        resumed: bool,
    ) -> _Outcome:
        """A step failed: start the VM again wherever it is, and say where it runs (or not)."""
        node, state = self._start_again(flight)
        return self._result(
            flight,
            "failed",
            f"{failure.reason}; {state}",
            node=node,
            upid=failure.upid,
            still_running=failure.still_running,
            task=migration,
            attached=resumed,
        )

    def _start_again(self, flight: _Flight) -> tuple[str | None, str]:
        """(node, sentence): the VM of a failed offline move running again, or why not."""
        move = flight.move
        what = f"VM {move.vmid}"
        try:
            guest = find_guest(self._api.cluster_resources("vm"), move.vmid)
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
            upid, _ = self._power_step(flight, "start", guest.node, POWER_WAIT_S, None)
        except _StepFailed as failure:
            return guest.node, (
                f"{what} is STOPPED on {guest.node}: starting it again failed "
                f"({failure.reason}); start it by hand"
            )
        except PvetoolError as exc:
            return guest.node, (
                f"{what} is STOPPED on {guest.node}: starting it again failed ({exc}); "
                "start it by hand"
            )
        return guest.node, f"{what} was started again on {guest.node} (task {upid})"

    def _resume_offline(self, ctx: _RunCtx, flight: _Flight, rec: MoveRecord) -> _Outcome | None:
        """Go on with an offline move the interrupted run left unfinished, from what the
        cluster shows; None when nothing was done (check and start afresh)."""
        move = flight.move
        try:
            guest = find_guest(self._api.cluster_resources("vm"), move.vmid)
        except PvetoolError as exc:
            return self._result(
                flight,
                "failed",
                f"where VM {move.vmid} is could not be checked ({exc}); it may be shut down: "
                "resume again",
                node=None,
                attached=True,
            )
        if guest is None:
            return self._result(
                flight, "failed", f"VM {move.vmid} no longer exists in the cluster", node=None
            )
        task = self._running_step_task(move, guest.node)
        if task is not None:
            step, upid = task
            if step == "migrate":
                self._write(
                    "started",
                    move=move.id,
                    vmid=move.vmid,
                    upid=str(upid),
                    cluster_t=upid.starttime,
                    found=True,
                )
            else:
                self._write(
                    "power",
                    move=move.id,
                    vmid=move.vmid,
                    action=step,
                    node=upid.node,
                    upid=str(upid),
                    found=True,
                )
            return self._offline(ctx, flight, step, attach=upid, resumed=True)
        if guest.lock:
            return self._result(
                flight,
                "failed",
                f"VM {move.vmid} is locked ({guest.lock}) on {guest.node} and no task of it "
                "runs; not touched",
                node=guest.node,
                attached=True,
            )
        if guest.node == move.source:
            if guest.running:
                return None
            return self._offline(ctx, flight, "migrate", resumed=True)
        if guest.node == move.target:
            return self._offline(ctx, flight, "verify" if guest.running else "start", resumed=True)
        failure = _StepFailed(
            f"VM {move.vmid} is on {guest.node} now, neither on {move.source} nor on "
            f"{move.target} as planned; not moved"
        )
        return self._offline_failed(flight, failure, None, True)

    def _running_step_task(self, move: Move, node: str) -> tuple[OfflineStep, Upid] | None:
        """The newest running shutdown, migration or start task of the guest on `node`."""
        try:
            found = self._api.tasks(TaskQuery(node, vmid=move.vmid))
        except PvetoolError:
            return None
        running = [t for t in found if t.running and t.upid.type in STEP_OF_TASK]
        if not running:
            return None
        newest = max(running, key=lambda t: (t.upid.starttime, t.upid.pstart))
        return STEP_OF_TASK[newest.upid.type], newest.upid

    def _follow_and_verify(
        self,
        ctx: _RunCtx,
        flight: _Flight,
        upid: Upid,
        *,
        before: Guest | None,
        attached: bool,
    ) -> _Outcome:
        move = flight.move
        if attached:
            flight.upid = str(upid)
            self._emit(MoveStarted(move, str(upid), attached=True))
        status_before = expected_status(move, before)
        timeout_s = ctx.plan.task_timeout_s

        def on_progress(p: MigrationProgress) -> None:
            if not self._abandon:
                self._emit(
                    MoveProgressed(move, p.transferred_bytes, p.total_bytes, p.rate_bps, p.phase)
                )

        try:
            result = self._follow(upid, timeout_s, on_progress)
        except TaskTimeout as exc:
            node, where = self._whereabouts(move)
            return self._result(
                flight,
                "failed",
                f"task {exc.upid or upid} did not finish within {timeout_s:g} s; it is still "
                f"running and was not stopped; {where}",
                node=node,
                upid=exc.upid or str(upid),
                still_running=True,
                attached=attached,
            )
        except TaskFailed as exc:
            reason = f"{exc.description} failed: {exc.reason}"
            trouble = target_trouble(exc.reason) or self._target_offline(move.target)
            if trouble is not None:
                node, _ = self._whereabouts(move)
                guest_ok = self._still_at_source(move)
                if guest_ok:
                    return _Outcome(trouble, reason=reason, upid=exc.upid)
                return self._result(flight, "failed", reason, node=node, upid=exc.upid)
            node, where = self._whereabouts(move)
            return self._result(
                flight, "failed", f"{reason}; {where}", node=node, upid=exc.upid, attached=attached
            )
        except PvetoolError as exc:
            node, where = self._whereabouts(move)
            return self._result(
                flight,
                "failed",
                f"lost track of task {upid}: {exc}; {where}",
                node=node,
                upid=str(upid),
                still_running=True,
                attached=attached,
            )
        arrival = verify_arrival(
            self._api,
            move,
            status_before,
            agent=move.vmid in self._agent_vmids,
            agent_timeout_s=self._agent_timeout_s,
            agent_poll_s=self._agent_poll_s,
            sleep=self._sleep,
            clock=self._clock,
        )
        downtime = _downtime_ms(move, result, status_before)
        if not arrival.ok:
            return self._result(
                flight,
                "failed",
                f"task {result.upid} reported {result.exitstatus}, but {arrival.reason}",
                node=arrival.node,
                task=result,
                downtime_ms=downtime,
                attached=attached,
            )
        return self._result(
            flight,
            "moved",
            "",
            node=arrival.node,
            task=result,
            downtime_ms=downtime,
            attached=attached,
        )

    def _whereabouts(self, move: Move) -> tuple[str | None, str]:
        """(node, sentence) saying where the guest is now, for failure reports."""
        try:
            guest = find_guest(self._api.cluster_resources("vm"), move.vmid)
        except PvetoolError as exc:
            return None, f"where guest {move.vmid} is now could not be checked ({exc})"
        if guest is None:
            return None, f"guest {move.vmid} is not in /cluster/resources"
        lock = f" (locked: {guest.lock})" if guest.lock else ""
        return guest.node, f"guest {move.vmid} is on {guest.node}{lock}, {guest.status}"

    def _still_at_source(self, move: Move) -> bool:
        try:
            guest = find_guest(self._api.cluster_resources("vm"), move.vmid)
        except PvetoolError:
            return False
        return guest is not None and guest.node == move.source and not guest.lock

    def _target_offline(self, target: str) -> Literal["target-down"] | None:
        try:
            status = self._api.cluster_status()
        except PvetoolError:
            return None
        entry = next((n for n in status.nodes if n.name == target), None)
        return "target-down" if entry is not None and not entry.online else None

    def _result(
        self,
        flight: _Flight,
        status: Literal["moved", "skipped", "failed", "not-started"],
        reason: str,
        *,
        node: str | None,
        upid: str | None = None,
        still_running: bool = False,
        task: TaskResult | None = None,
        downtime_ms: float | None = None,
        attached: bool = False,
    ) -> _Outcome:
        """Build, journal and announce a worker's final result for its move."""
        move = flight.move
        real = str(task.upid) if task is not None else (upid or flight.upid)
        ha = str(task.ha_upid) if task is not None and task.ha_upid is not None else None
        task_start = float(task.upid.starttime) if task is not None else None
        result = MoveResult(
            move=move,
            status=status,
            reason=reason,
            stage_index=flight.stage_index,
            upid=real,
            ha_upid=ha,
            still_running=still_running,
            node=node,
            wall_start_s=flight.wall_start_s,
            wall_end_s=self._now(),
            task_start=task_start,
            task_duration_s=task.duration_s if task is not None else None,
            downtime_ms=downtime_ms,
            resumed=attached,
        )
        self._write(
            "outcome",
            move=move.id,
            vmid=move.vmid,
            status=status,
            reason=reason,
            source=move.source,
            target=move.target,
            upid=flight.upid,
            real_upid=real,
            ha_upid=ha,
            node=node,
            still_running=still_running,
            task_start=task_start,
            task_duration_s=result.task_duration_s,
            downtime_ms=downtime_ms,
            wall_start=flight.wall_start_s,
            wall_end=result.wall_end_s,
        )
        if status == "moved" and flight.origin:
            self._write("origin", vmid=move.vmid, home=move.source, now=node, move=move.id)
        if not self._abandon:
            self._emit(MoveFinished(result))
        return _Outcome("result", result=result)

    # -- resume

    def _resume_task(
        self, ctx: _RunCtx, flight: _Flight, rec: MoveRecord
    ) -> Upid | _Outcome | None:
        """What the interrupted run left for this move: a task to re-attach to, a finished
        move, or None (re-check and start)."""
        move = flight.move
        out = rec.outcome
        if rec.upid and (out is None or out.get("still_running")):
            return Upid.parse(rec.upid)
        if out is not None or rec.intent_t is None:
            return None  # failed or not started before: re-check and start again
        # Intent journalled, UPID not: did the request reach PVE before pvetool died?
        try:
            guest = find_guest(self._api.cluster_resources("vm"), move.vmid)
        except PvetoolError:
            guest = None
        if guest is not None and guest.node == move.target and not guest.lock:
            return self._result(
                flight,
                "moved",
                "arrived while pvetool was not running",
                node=guest.node,
                attached=True,
            )
        try:
            found = self._api.tasks(TaskQuery(move.source, vmid=move.vmid))
        except PvetoolError:
            found = ()
        known = ctx.resume.all_upids if ctx.resume is not None else frozenset()
        candidates = [
            t for t in found if t.upid.type in MIGRATION_TASK_TYPES and str(t.upid) not in known
        ]
        offset = ctx.resume.cluster_offset_s() if ctx.resume is not None else None
        if offset is not None:
            since = rec.intent_t + offset - CLOCK_SLACK_S
            recent = [t for t in candidates if t.upid.starttime >= since]
        else:
            recent = [t for t in candidates if t.running]
        locked = guest is not None and guest.lock == "migrate"
        if locked:
            running = [t for t in candidates if t.running]
            recent = running or recent
        if recent:
            newest = max(recent, key=lambda t: (t.upid.starttime, t.upid.pstart))
            self._write(
                "started",
                move=move.id,
                vmid=move.vmid,
                upid=str(newest.upid),
                cluster_t=newest.upid.starttime,
                found=True,
            )
            return newest.upid
        if locked:
            return self._result(
                flight,
                "failed",
                f"guest {move.vmid} is locked for migration, but no migration task of it was "
                f"found on {move.source}; not started again",
                node=guest.node if guest is not None else None,
            )
        return None

    # -- hooks, node waits, pauses

    def _run_hook_stage(self, ctx: _RunCtx, index: int, stage: Stage) -> None:
        if ctx.resume is not None and index in ctx.resume.hooks_done:
            result = HookResult(index, stage.label, stage.node, stage.argv, 0, skipped=True)
            ctx.hooks.append(result)
            self._emit(HookFinished(result))
            return
        env = dict(self._hook_env)
        env["PVETOOL_HOOK"] = stage.label
        env["PVETOOL_RUN_ID"] = self._run_id
        if stage.node:
            env["PVETOOL_NODE"] = stage.node
        self._write(
            "hook",
            index=index,
            label=stage.label,
            node=stage.node,
            argv=list(stage.argv),
            event="start",
        )
        self._emit(HookStarted(index, stage.label, stage.node, stage.argv))
        outcome = self._hook_runner(stage.argv, env, stage.timeout_s)
        result = HookResult(
            stage_index=index,
            label=stage.label,
            node=stage.node,
            argv=stage.argv,
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
            duration_s=outcome.duration_s,
            output_tail=outcome.output_tail,
            error=outcome.error,
        )
        ctx.hooks.append(result)
        self._write(
            "hook",
            index=index,
            label=stage.label,
            node=stage.node,
            argv=list(stage.argv),
            event="end",
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
            duration_s=round(outcome.duration_s, 3),
            output=outcome.output_tail[-500:],
            error=outcome.error,
        )
        self._emit(HookFinished(result))
        if not result.ok:
            self._stop(f"hook '{stage.label}' on {stage.node or 'the cluster'} {result.reason}")

    def _run_wait_stage(self, ctx: _RunCtx, index: int, stage: Stage) -> None:
        node = stage.node or ""
        ok, waited, reason = wait_node_online(
            self._api.cluster_status,
            node,
            stage.timeout_s or 1800.0,
            poll_s=self._node_poll_s,
            sleep=self._sleep,
            clock=self._clock,
            should_stop=lambda: self._interrupts > 0,
        )
        result = NodeWaitResult(index, node, ok, waited, reason)
        ctx.waits.append(result)
        self._write(
            "wait-node", index=index, node=node, ok=ok, waited_s=round(waited, 3), reason=reason
        )
        self._emit(NodeWaited(result))
        if not ok:
            self._stop(reason)

    def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._emit(Notice(f"pausing for {seconds:g} s"))
        deadline = self._clock() + seconds
        while self._clock() < deadline and self._interrupts == 0:
            self._sleep(min(self._tick_s * 5, deadline - self._clock()))


# --------------------------------------------------------------------------------------------
# helpers


def _storage_map(opts: MoveOptions) -> dict[str, str] | str | None:
    """The plan's storage map as `start_migration` takes it (one storage for all: its name)."""
    if not opts.target_storage:
        return None
    pairs = dict(opts.target_storage)
    return pairs["*"] if set(pairs) == {"*"} else pairs


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _reason(exc: PvetoolError) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if isinstance(reason, str) and reason else str(exc)


def _downtime_ms(move: Move, result: TaskResult, status_before: str) -> float | None:
    """Guest-visible downtime: QEMU's logged stop-and-copy; a running container's restart
    migration is down for the whole task."""
    if result.downtime_ms is not None:
        return float(result.downtime_ms)
    if move.kind == "lxc" and status_before == "running" and result.duration_s is not None:
        return result.duration_s * 1000.0
    return None


def _blocked(plan: ExecutionPlan) -> tuple[BlockedGuest, ...]:
    blocked = []
    for vmid in plan.blocked:
        findings = [f for f in plan.findings if f.vmid == vmid and f.severity != "info"]
        reason = "; ".join(f.message for f in findings) or "no safe target (see the plan)"
        blocked.append(BlockedGuest(vmid, reason, findings[0].id if findings else ""))
    return tuple(blocked)
