"""The run context: what one run of the executor shares between its scheduling thread and its
worker threads, and the plumbing every step uses.

`ExecutorDeps` is what the executor talks to (the cluster, task following, re-planning, the
journal, the observer, hooks, clocks), `ExecutorOptions` how it behaves (agent pings, polls, the
scheduler's tick, start-only). `RunContext` holds one run's state (results, attempts, failed
targets, where each guest is as far as the run knows, the moves in flight and the memory they
hold on their targets) under one lock, and the three things every step does with it: announce
an event (`emit`), journal a record (`write`) and end a move (`finish` in a worker, `decide` in
the scheduler), which builds the `MoveResult`, journals its `Outcome` (and `Origin`) and
announces it, in that order.

Where a guest is: every result says (`MoveResult.node`); a move the run never started says where
the guest was last seen, never where the plan expected it (a guest whose drain failed is still
on its home node when its "return home" move is not started). Before the report, the run reads
the cluster once more and corrects the whereabouts of every guest whose move did not succeed.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.journal` and the
`pvetool.executor` siblings `api` and `hooks`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pvetool.errors import ApiError, PvetoolError
from pvetool.executor.api import ClusterApi, Confirm, Follow, Replan
from pvetool.executor.hooks import HookRunner, run_hook
from pvetool.journal import Journal
from pvetool.journal_records import MoveRecord, Origin, Outcome, Record, RunState
from pvetool.model import (
    Attempt,
    ExecutionPlan,
    Guest,
    HookResult,
    MigrationProgress,
    MigrationRequest,
    Move,
    MoveOptions,
    MoveResult,
    MoveStatus,
    NodeWaitResult,
    Stage,
    TaskResult,
)
from pvetool.model.events import Event, MoveFinished, MoveProgressed, Notice, Observer

__all__ = [
    "ExecutorDeps",
    "ExecutorOptions",
    "Flight",
    "MoveEnd",
    "RunContext",
    "migration_request",
    "refusal",
    "refused",
]

logger = logging.getLogger(__name__)

EndKind = Literal["result", "defer", "target-down", "target-refused"]


@dataclass(frozen=True)
class ExecutorDeps:
    """What the executor talks to. PVE only through `api`; task following, the planner's
    re-planning, hooks and confirmation come in as callables (`pvetool.operate` wires them)."""

    api: ClusterApi
    follow: Follow
    journal: Journal | None = None
    replan: Replan | None = None
    observer: Observer | None = None
    confirm: Confirm | None = None
    hook_runner: HookRunner = run_hook
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic  # seconds, for deadlines and wall times
    wall_clock: Callable[[], float] = time.time  # epoch seconds, for the report's start
    # before_stage(index, stage) -> notes: what the cluster needs before a stage starts (the
    # HA drain hold, `pvetool.operate`); each note is shown as a notice.
    before_stage: Callable[[int, Stage], Sequence[str]] | None = None
    # after_stage(index, stage) -> notes: the same once the stage has ended (not after an
    # abandoned run).
    after_stage: Callable[[int, Stage], Sequence[str]] | None = None


@dataclass(frozen=True)
class ExecutorOptions:
    """How the executor behaves.

    `agent_vmids`: guests whose QEMU guest agent must answer a ping after the move.
    `start_only`: request each migration and report it ``left-running`` with its UPID, without
    following it (``pvetool migrate --no-wait``); an offline move of a running VM (shut down,
    migrate, start) always runs to its end, so no VM is left shut down.
    `hook_env`: added to every hook's environment; `hook_credentials`: the connection's
    credentials (``PVETOOL_TOKEN``, ...), added only for hooks whose plan asks for them
    (``pass_credentials``); `redact`: removes every secret pvetool knows from hook output.
    `arrival_timeout_s`: how long after a successful task the cluster may take to show the
    guest as it should be (PVE's pvestatd updates run states every 10 s); `settle_timeout_s`:
    how long an unclear answer is looked into (the task list, the guest's node and lock).
    """

    agent_vmids: frozenset[int] = frozenset()
    hook_env: Mapping[str, str] = field(default_factory=dict)
    hook_credentials: Mapping[str, str] = field(default_factory=dict)
    redact: Callable[[str], str] = str
    agent_timeout_s: float = 10.0
    agent_poll_s: float = 1.0
    node_poll_s: float = 2.0
    arrival_timeout_s: float = 25.0
    settle_timeout_s: float = 20.0
    tick_s: float = 0.2
    start_only: bool = False


@dataclass
class MoveEnd:
    """What a worker hands back: a final result, or a reason to wait (`defer`) or to re-plan
    (the target is down, or refuses this guest)."""

    kind: EndKind
    result: MoveResult | None = None
    reason: str = ""
    upid: str | None = None


@dataclass
class Flight:
    """A move being worked on by a worker thread."""

    move: Move
    stage_index: int
    resume: MoveRecord | None = None
    upid: str | None = None  # the task this run requested or attached to, latest first
    reserved_bytes: int = 0  # memory held on the target from the room check to the end
    wall_start_s: float | None = None
    origin: bool = True  # a move that empties its stage's node: journal the guest's home
    # Its task ended: the migration holds no window slot while its arrival is verified (the
    # link is free; the next move need not wait for the checks). Dependants still wait for
    # the move's end.
    task_over: bool = False


def migration_request(move: Move, *, online: bool) -> MigrationRequest:
    """The migrate call a planned move needs. A running VM goes live (`online`), a running
    container by restart (PVE cannot move them otherwise); an offline move passes
    ``online=False`` for the VM it shut down."""
    opts = move.options
    storage = _storage_map(opts)
    if move.kind == "lxc":
        return MigrationRequest(
            "lxc",
            move.source,
            move.vmid,
            move.target,
            restart=True if online else None,
            target_storage=storage,
            bwlimit_kib_s=opts.bwlimit_kib_s,
        )
    return MigrationRequest(
        "qemu",
        move.source,
        move.vmid,
        move.target,
        online=online,
        with_local_disks=opts.with_local_disks or None,
        target_storage=storage,
        bwlimit_kib_s=opts.bwlimit_kib_s,
        migration_type=opts.migration_type,
        migration_network=opts.migration_network,
    )


def _storage_map(opts: MoveOptions) -> dict[str, str] | str | None:
    """The plan's storage map as PVE takes it (one storage for all: its name)."""
    if not opts.target_storage:
        return None
    pairs = dict(opts.target_storage)
    return pairs["*"] if set(pairs) == {"*"} else pairs


def refused(exc: PvetoolError) -> bool:
    """PVE answered a request with its refusal (an error status and its message), so nothing
    started. Anything else (no answer, a garbled one, a 502/503 the client could not settle) is
    unclear: the request may have started something."""
    return isinstance(exc, ApiError) and exc.status >= 400 and not exc.retryable


def refusal(exc: PvetoolError) -> str:
    """PVE's own words for a refused request, else the error's sentence."""
    reason = getattr(exc, "reason", None)
    return str(reason) if isinstance(reason, str) and reason else str(exc)


class RunContext:
    """One run's shared state; see the module docstring. Thread-safe where it must be: the
    scheduling thread and the workers meet under `lock`, events are announced one at a time."""

    def __init__(
        self,
        deps: ExecutorDeps,
        options: ExecutorOptions,
        plan: ExecutionPlan,
        resume: RunState | None,
        interrupts: Callable[[], int],
    ) -> None:
        self.deps = deps
        self.options = options
        self.api = deps.api
        self.plan = plan
        self.resume = resume
        self.interrupts = interrupts
        self.run_id = deps.journal.run_id if deps.journal is not None else ""
        self.t0 = deps.clock()
        # results and what led to them
        self.results: dict[str, MoveResult] = {}
        self.hooks: list[HookResult] = []
        self.waits: list[NodeWaitResult] = []
        self.attempts: dict[str, list[Attempt]] = {}
        self.original_targets: dict[str, str] = {}
        self.bad_targets: set[str] = set()
        self.abandoned: list[str] = []
        self.placed: dict[int, str] = {}  # where this run put a guest
        # where each guest of the plan is, as far as this run knows (None: unknown)
        self.location: dict[int, str | None] = {}
        for stage in plan.stages:
            for move in stage.moves:
                self.location.setdefault(move.vmid, move.source)
        # every task this run (and the run it resumes) started or attached to
        self.known_upids: set[str] = set(resume.all_upids) if resume is not None else set()
        # the window, shared with the workers under `lock`
        self.lock = threading.RLock()
        self._emit_lock = threading.Lock()
        self._target_locks: dict[str, threading.Lock] = {}
        self.inflight: dict[str, Flight] = {}
        # (move id, its end), or (move id, None): its task ended, its slot is free (`Flight`).
        self.done: queue.Queue[tuple[str, MoveEnd | None]] = queue.Queue()
        # control
        self.handled_interrupts = 0
        self.stop_reason: str | None = None
        self.abandon = False

    # -- plumbing

    def now(self) -> float:
        return self.deps.clock() - self.t0

    def emit(self, event: Event) -> None:
        observer = self.deps.observer
        if observer is None:
            return
        with self._emit_lock:
            try:
                observer(event)
            except Exception:  # a renderer bug must not break a running migration
                logger.exception("the observer failed on %s", type(event).__name__)

    def write(self, record: Record) -> None:
        if self.deps.journal is not None:
            self.deps.journal.write(record)

    def stop(self, reason: str) -> None:
        """Start no new migration from now on (running ones finish)."""
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason

    @property
    def stopping(self) -> str | None:
        """Why nothing new may start now (stopped or interrupted), else None."""
        if self.stop_reason is not None:
            return self.stop_reason
        return "interrupted by the operator (Ctrl-C)" if self.interrupts() > 0 else None

    def target_lock(self, target: str) -> threading.Lock:
        """Checks and reservations of one target run one at a time."""
        with self.lock:
            lock = self._target_locks.get(target)
            if lock is None:
                lock = self._target_locks[target] = threading.Lock()
            return lock

    def incoming(self, target: str, but: Flight) -> dict[int, int]:
        """Memory (bytes by vmid) the other migrations of this run into `target` hold there."""
        with self.lock:
            return {
                f.move.vmid: f.reserved_bytes
                for f in self.inflight.values()
                if f is not but and f.move.target == target and f.reserved_bytes
            }

    def busy(self, node: str, but: Flight) -> bool:
        """Another migration of this run goes into or out of `node` (room may change soon)."""
        with self.lock:
            return any(
                f is not but and node in (f.move.target, f.move.source)
                for f in self.inflight.values()
            )

    def known(self, upid: str | None) -> None:
        if upid:
            with self.lock:
                self.known_upids.add(upid)

    def progress(self, move: Move) -> Callable[[MigrationProgress], None]:
        """Task following's progress callback for `move`: announces it while the run goes on."""

        def on_progress(p: MigrationProgress) -> None:
            if not self.abandon:
                self.emit(
                    MoveProgressed(move, p.transferred_bytes, p.total_bytes, p.rate_bps, p.phase)
                )

        return on_progress

    # -- ending moves

    def finish(
        self,
        flight: Flight,
        status: MoveStatus,
        reason: str,
        *,
        node: str | None,
        upid: str | None = None,
        still_running: bool = False,
        task: TaskResult | None = None,
        downtime_ms: float | None = None,
        attached: bool = False,
    ) -> MoveEnd:
        """A worker's final result for its move: built, journalled and announced."""
        move = flight.move
        real = str(task.upid) if task is not None else (upid or flight.upid)
        result = MoveResult(
            move=move,
            status=status,
            reason=reason,
            stage_index=flight.stage_index,
            upid=real,
            ha_upid=str(task.ha_upid) if task is not None and task.ha_upid is not None else None,
            still_running=still_running,
            node=node,
            wall_start_s=flight.wall_start_s,
            wall_end_s=self.now(),
            task_start=float(task.upid.starttime) if task is not None else None,
            task_duration_s=task.duration_s if task is not None else None,
            downtime_ms=downtime_ms,
            resumed=attached,
        )
        self.write(Outcome.of(result, flight.upid))
        if status == "moved" and flight.origin:
            self.write(Origin(vmid=move.vmid, home=move.source, now=node or "", move=move.id))
        self.seen(move.vmid, node, moved=status == "moved")
        if not self.abandon:
            self.emit(MoveFinished(result))
        return MoveEnd("result", result=result)

    def origin(self, flight: Flight) -> None:
        """The guest's home, journalled the moment its move is requested (with the intent), so
        that `undrain` and `--resume` know it whatever the request's outcome turns out to be."""
        move = flight.move
        if flight.origin:
            self.write(Origin(vmid=move.vmid, home=move.source, now=move.target, move=move.id))

    def seen(self, vmid: int, node: str | None, *, moved: bool = False) -> None:
        """Where a guest is now, as a move's end showed it."""
        with self.lock:
            self.location[vmid] = node
            if moved and node:
                self.placed[vmid] = node

    def where(self, move: Move) -> str | None:
        """Where the guest of a move that did not run is, as far as this run knows."""
        with self.lock:
            return self.location[move.vmid] if move.vmid in self.location else move.source

    def look_around(self) -> bool:
        """Read where every guest of the plan is (one call; False when it cannot be read)."""
        try:
            guests: tuple[Guest, ...] = self.api.cluster_resources("vm").guests
        except PvetoolError as exc:
            logger.info("where the guests are could not be read: %s", exc)
            return False
        nodes = {g.vmid: g.node for g in guests}
        with self.lock:
            for vmid in self.location:
                self.location[vmid] = nodes.get(vmid)
        return True

    def decide(
        self,
        index: int,
        move: Move,
        status: Literal["failed", "not-started"],
        reason: str,
        *,
        upid: str | None = None,
        journal: bool = True,
        emit: bool = True,
    ) -> MoveResult:
        """A move ended by the scheduling thread (re-planning found nothing, a dependency
        failed, the run stopped first): recorded as this run's result for it."""
        result = MoveResult(
            move=move,
            status=status,
            reason=reason,
            stage_index=index,
            upid=upid,
            node=self.where(move),
            attempts=tuple(self.attempts.get(move.id, ())),
            original_target=self.original_targets.get(move.id),
        )
        self.results[move.id] = result
        if journal:
            self.write(Outcome.of(result, upid))
        if emit:
            self.emit(MoveFinished(result))
        if status == "failed" and self.plan.on_failure == "stop":
            self.stop(f"move {move.id} ({move.vmid}) failed; on_failure: stop")
        return result

    def not_started(
        self, index: int, moves: Collection[Move], reason: str, *, emit: bool = True
    ) -> None:
        """Moves the run never started (stopped, interrupted, abandoned): reported so, and
        announced once for all of them (one line, not one per move)."""
        fresh = [m for m in moves if m.id not in self.results]
        results = [
            self.decide(
                index, m, "not-started", f"not started: {reason}", journal=False, emit=False
            )
            for m in fresh
        ]
        if not emit or not results:
            return
        if len(results) == 1:
            self.emit(MoveFinished(results[0]))
            return
        self.emit(Notice(_not_started_line(fresh, reason)))

    def not_started_stages(
        self, stages: Sequence[tuple[int, Collection[Move]]], reason: str
    ) -> None:
        """`not_started` for every move of the stages a stop left behind, announced in one
        line for all of them (the same reason is never repeated stage by stage)."""
        fresh: list[Move] = []
        for index, moves in stages:
            for m in moves:
                if m.id in self.results:
                    continue
                self.decide(
                    index, m, "not-started", f"not started: {reason}", journal=False, emit=False
                )
                fresh.append(m)
        if not fresh:
            return
        if len(fresh) == 1:
            self.emit(MoveFinished(self.results[fresh[0].id]))
            return
        self.emit(Notice(_not_started_line(fresh, reason)))


def _not_started_line(moves: Sequence[Move], reason: str, shown: int = 12) -> str:
    """``N moves not started (101, 102, ... and 3 more): reason``."""
    vmids = ", ".join(str(m.vmid) for m in moves[:shown])
    if len(moves) > shown:
        vmids += f" and {len(moves) - shown} more"
    return f"{len(moves)} moves not started ({vmids}): {reason}"
