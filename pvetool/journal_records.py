"""The run journal's records, one frozen dataclass per record type, and `RunState`: a run as
its records rebuild it.

A record is written as one JSON object: ``type`` (the class's `TYPE`), ``t`` (epoch seconds of
this machine when it was written) and the record's fields by name (`pvetool.plan_json.to_data`);
it is read back through the same class (`pvetool.plan_json.from_data`, which checks every value
against the field's type). The field names are the journal's keys since its first version, so
journals written before the records were typed read the same; a field a record lacks takes its
default, and keys this version does not know are ignored.

=============  ===============  ==============================================================
type           class            what it says
=============  ===============  ==============================================================
run-start      `RunStart`       what runs (command key, kind, the whole plan), on which cluster
resume         `Resume`         a later process continues this run (appends to the same file)
stage          `StageEvent`     a stage started or ended
intent         `Intent`         a migration is about to be requested: written BEFORE anything
started        `Started`        its task's UPID (``found``: found running by a resumed run)
power          `Power`          an offline move's shutdown or start was requested (or found)
outcome        `Outcome`        how a move ended, where the guest is (one per attempt)
origin         `Origin`         a guest the run moved away from its home node (for undrain)
replan         `Replan`         a move got another target (or none), or another source
hook           `Hook`           a hook command started or ended
wait-node      `WaitNode`       waiting for a node to come back ended
interrupt      `Interruption`   Ctrl-C: 1 stops starting migrations, 2 leaves running ones
run-end        `RunEnd`         the run ended by itself: exit code, counts, abandoned tasks
=============  ===============  ==============================================================

Imports: the standard library and `pvetool.model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from pvetool.model import GuestKind, Move, MoveResult, MoveStatus, StageKind

__all__ = [
    "JOURNAL_VERSION",
    "RECORD_TYPES",
    "Hook",
    "Intent",
    "Interruption",
    "MoveRecord",
    "Origin",
    "Outcome",
    "PlanRef",
    "Power",
    "Record",
    "Replan",
    "Resume",
    "RunEnd",
    "RunStart",
    "RunState",
    "RunningTask",
    "StageEvent",
    "Started",
    "WaitNode",
]

JOURNAL_VERSION = 1
Event = Literal["start", "end"]


# --------------------------------------------------------------------------------------------
# What a run's records add up to


@dataclass
class MoveRecord:
    """What the journal knows about one move of a run (the latest attempt wins)."""

    move_id: str
    vmid: int
    source: str | None = None
    target: str | None = None
    intent_t: float | None = None
    upid: str | None = None
    upid_t: float | None = None
    cluster_t: int | None = None
    outcome: Outcome | None = None
    abandoned: bool = False
    upids: list[str] = field(default_factory=list)  # every task of every attempt
    shutdown: bool = False  # an offline move of a running VM (shut down, migrate, start)
    power_action: str | None = None  # its latest shutdown/start request ...
    power_upid: str | None = None  # ... and that request's task

    @property
    def status(self) -> MoveStatus | None:
        return None if self.outcome is None else self.outcome.status

    def remember(self, upid: str | None) -> None:
        if upid and upid not in self.upids:
            self.upids.append(upid)


@dataclass
class RunState:
    """A run as rebuilt from its journal."""

    path: Path
    run_id: str
    started_t: float = 0.0
    command: str = ""
    kind: str = ""
    plan_name: str = ""
    plan_digest: str = ""
    fingerprint: str = ""
    plan_source: str = ""
    plan_json: str = ""
    drained_nodes: tuple[str, ...] = ()
    undoes: str | None = None
    cluster: str | None = None  # see `RunStart.cluster`
    cluster_nodes: tuple[str, ...] = ()
    endpoint: str = ""
    moves: dict[str, MoveRecord] = field(default_factory=dict)
    origins: list[Origin] = field(default_factory=list)
    hooks_done: set[int] = field(default_factory=set)  # stage indexes whose hook succeeded
    hooks_failed: set[int] = field(default_factory=set)
    stages_started: set[int] = field(default_factory=set)
    stages_ended: set[int] = field(default_factory=set)
    replans: list[Replan] = field(default_factory=list)
    interrupts: list[Interruption] = field(default_factory=list)
    resumes: int = 0
    ended: bool = False
    exit_code: int | None = None
    interrupted: bool = False
    records: int = 0
    torn_lines: int = 0  # not JSON objects: the last line of a killed process, or foreign
    unreadable: int = 0  # JSON objects that do not fit their record type (skipped)
    problems: list[str] = field(default_factory=list)  # "file:line: what is wrong", per line
    hook_ends: dict[int, Hook] = field(default_factory=dict)  # stage index -> how it ended
    waits: dict[int, WaitNode] = field(default_factory=dict)  # stage index -> how it ended
    last_t: float = 0.0  # when the latest record was written (this machine's clock)

    @property
    def finished(self) -> bool:
        """Ended by itself (not killed, not interrupted)."""
        return self.ended and not self.interrupted

    @property
    def all_upids(self) -> frozenset[str]:
        return frozenset(u for m in self.moves.values() for u in m.upids)

    def cluster_offset_s(self) -> float | None:
        """Cluster clock minus this machine's clock, from a task this run started."""
        for rec in self.moves.values():
            if rec.cluster_t is not None and rec.upid_t is not None:
                return rec.cluster_t - rec.upid_t
        return None

    def move(self, move_id: str, vmid: int) -> MoveRecord:
        """The record of a move, created on its first mention."""
        entry = self.moves.get(move_id)
        if entry is None:
            entry = self.moves[move_id] = MoveRecord(move_id=move_id, vmid=vmid)
        return entry


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class PlanRef:
    """Which plan a run runs (its whole JSON is in `RunStart.plan_json`)."""

    name: str = ""
    digest: str = ""
    fingerprint: str = ""
    source: str = ""


@dataclass(frozen=True)
class RunStart:
    """The first record of a run: what runs, on which cluster state, and the whole plan.

    `command` is the key `--resume` looks for (``drain:pve2``, ``plan:<digest>``); `undoes` the
    run id an undrain reverses."""

    TYPE: ClassVar[str] = "run-start"
    run: str
    v: int = JOURNAL_VERSION
    pid: int = 0
    command: str = ""
    argv: tuple[str, ...] = ()
    kind: str = ""
    plan: PlanRef = PlanRef()
    drained_nodes: tuple[str, ...] = ()
    undoes: str | None = None
    plan_json: str = ""
    # The cluster the run acts on (`pvetool.state.identity`): its name (None: a single node),
    # its sorted node names and the endpoint that answered. Journals written before these
    # fields existed read as an unknown cluster.
    cluster: str | None = None
    cluster_nodes: tuple[str, ...] = ()
    endpoint: str = ""

    def apply(self, state: RunState, t: float) -> None:
        state.run_id = self.run or state.run_id
        state.cluster = self.cluster or None
        state.cluster_nodes = self.cluster_nodes
        state.endpoint = self.endpoint
        state.started_t = t
        state.command = self.command
        state.kind = self.kind
        state.plan_name = self.plan.name
        state.plan_digest = self.plan.digest
        state.fingerprint = self.plan.fingerprint
        state.plan_source = self.plan.source
        state.plan_json = self.plan_json
        state.drained_nodes = self.drained_nodes
        state.undoes = self.undoes or None


@dataclass(frozen=True)
class Resume:
    """A later process continues this run."""

    TYPE: ClassVar[str] = "resume"
    pid: int = 0

    def apply(self, state: RunState, t: float) -> None:
        state.resumes += 1
        state.ended = False
        state.interrupted = False
        state.exit_code = None


@dataclass(frozen=True)
class StageEvent:
    """A stage started (with its label and node) or ended."""

    TYPE: ClassVar[str] = "stage"
    index: int
    kind: StageKind
    event: Event
    label: str | None = None
    node: str | None = None

    def apply(self, state: RunState, t: float) -> None:
        if self.event == "start":
            state.stages_started.add(self.index)
        if self.event == "end":
            state.stages_ended.add(self.index)

    @staticmethod
    def passed(state: RunState, index: int) -> bool:
        """The run had gone on past stage `index` (a later stage started): its moment is over."""
        return any(i > index for i in state.stages_started)


@dataclass(frozen=True)
class Intent:
    """A migration is about to be requested: written before anything is asked of PVE.
    `shutdown`: an offline move of a running VM (shut down, migrate, start)."""

    TYPE: ClassVar[str] = "intent"
    move: str
    vmid: int
    source: str
    target: str
    kind: GuestKind | None = None
    ha: bool = False
    shutdown: bool = False

    def apply(self, state: RunState, t: float) -> None:
        entry = state.move(self.move, self.vmid)
        entry.source = self.source
        entry.target = self.target
        entry.intent_t = t
        entry.upid = None
        entry.upid_t = None
        entry.outcome = None
        entry.abandoned = False
        entry.shutdown = self.shutdown
        entry.power_action = None
        entry.power_upid = None


@dataclass(frozen=True)
class Started:
    """A migration task's UPID; `cluster_t` its start on the cluster's clock; `found`: a
    resumed run found it running rather than started it."""

    TYPE: ClassVar[str] = "started"
    move: str
    vmid: int
    upid: str
    cluster_t: int | None = None
    found: bool = False

    def apply(self, state: RunState, t: float) -> None:
        entry = state.move(self.move, self.vmid)
        entry.upid = self.upid
        entry.upid_t = t
        entry.cluster_t = self.cluster_t
        entry.upids.append(self.upid)


@dataclass(frozen=True)
class Power:
    """An offline move's shutdown or start was requested on `node` (or, `found`, found running
    by a resumed run)."""

    TYPE: ClassVar[str] = "power"
    move: str
    vmid: int
    action: Literal["shutdown", "start"]
    node: str
    upid: str
    found: bool = False

    def apply(self, state: RunState, t: float) -> None:
        entry = state.move(self.move, self.vmid)
        entry.power_action = self.action
        entry.power_upid = self.upid
        entry.remember(self.upid)


@dataclass(frozen=True)
class Outcome:
    """How one attempt of a move ended. `upid` is the task this run started (for an HA guest
    the ``hamigrate`` request), `real_upid` the migration followed; `node` where the guest is;
    times: ``wall_*`` seconds since the run started here, ``task_*`` the cluster's clock."""

    TYPE: ClassVar[str] = "outcome"
    move: str
    vmid: int
    status: MoveStatus
    reason: str = ""
    source: str | None = None
    target: str | None = None
    upid: str | None = None
    real_upid: str | None = None
    ha_upid: str | None = None
    node: str | None = None
    still_running: bool = False
    task_start: float | None = None
    task_duration_s: float | None = None
    downtime_ms: float | None = None
    wall_start: float | None = None
    wall_end: float | None = None

    @classmethod
    def of(cls, result: MoveResult, started_upid: str | None = None) -> Outcome:
        """The record of a move's result; `started_upid` the task this run requested."""
        move = result.move
        return cls(
            move=move.id,
            vmid=move.vmid,
            status=result.status,
            reason=result.reason,
            source=move.source,
            target=move.target,
            upid=started_upid or result.upid,
            real_upid=result.upid,
            ha_upid=result.ha_upid,
            node=result.node,
            still_running=result.still_running,
            task_start=result.task_start,
            task_duration_s=result.task_duration_s,
            downtime_ms=result.downtime_ms,
            wall_start=result.wall_start_s,
            wall_end=result.wall_end_s,
        )

    def result(self, move: Move, stage_index: int) -> MoveResult:
        """The move's result as this record tells it (a resumed run reports it again)."""
        return MoveResult(
            move=move,
            status=self.status,
            reason=self.reason,
            stage_index=stage_index,
            upid=self.real_upid or self.upid,
            ha_upid=self.ha_upid,
            still_running=self.still_running,
            node=self.node,
            task_start=self.task_start,
            task_duration_s=self.task_duration_s,
            downtime_ms=self.downtime_ms,
        )

    def apply(self, state: RunState, t: float) -> None:
        entry = state.move(self.move, self.vmid)
        entry.outcome = self
        entry.abandoned = False
        entry.source = self.source or entry.source
        entry.target = self.target or entry.target
        entry.remember(self.upid)
        entry.remember(self.real_upid)


@dataclass(frozen=True)
class Origin:
    """A guest this run moved away from its home node (`undrain` brings it back)."""

    TYPE: ClassVar[str] = "origin"
    vmid: int
    home: str
    now: str
    move: str = ""
    cluster: str = ""  # the run's cluster key (`ClusterIdentity.key`), stamped by the journal

    def apply(self, state: RunState, t: float) -> None:
        state.origins.append(self)


@dataclass(frozen=True)
class Replan:
    """A move got another target (`new_target` None: no other node can take it), or comes
    from another source (`new_source`: a guest this run had already moved elsewhere)."""

    TYPE: ClassVar[str] = "replan"
    move: str
    vmid: int
    old_target: str
    new_target: str | None = None
    reason: str = ""
    new_source: str | None = None

    def apply(self, state: RunState, t: float) -> None:
        state.replans.append(self)
        entry = state.move(self.move, self.vmid)
        entry.target = self.new_target or entry.target
        entry.source = self.new_source or entry.source


@dataclass(frozen=True)
class Hook:
    """A hook command started, or ended (with its exit code and output's tail)."""

    TYPE: ClassVar[str] = "hook"
    index: int
    label: str
    node: str | None
    argv: tuple[str, ...]
    event: Event
    exit_code: int | None = None
    timed_out: bool = False
    duration_s: float = 0.0
    output: str = ""
    error: str = ""

    def apply(self, state: RunState, t: float) -> None:
        if self.event == "end":
            done = self.exit_code == 0
            (state.hooks_done if done else state.hooks_failed).add(self.index)
            state.hook_ends[self.index] = self  # the latest attempt (a resumed run's) wins


@dataclass(frozen=True)
class WaitNode:
    """Waiting for a node to be online (and the cluster quorate) ended."""

    TYPE: ClassVar[str] = "wait-node"
    index: int
    node: str
    ok: bool
    waited_s: float = 0.0
    reason: str = ""

    def apply(self, state: RunState, t: float) -> None:
        # A resumed run waits again (the node may have gone meanwhile); kept for the history.
        state.waits[self.index] = self


@dataclass(frozen=True)
class RunningTask:
    move: str
    vmid: int
    upid: str | None = None


@dataclass(frozen=True)
class Interruption:
    """Ctrl-C: level 1 stops starting migrations, level 2 leaves the `running` ones running."""

    TYPE: ClassVar[str] = "interrupt"
    level: int
    running: tuple[RunningTask, ...] = ()

    def apply(self, state: RunState, t: float) -> None:
        state.interrupts.append(self)
        if self.level >= 2:
            for task in self.running:
                if task.move in state.moves:
                    state.moves[task.move].abandoned = True


@dataclass(frozen=True)
class RunEnd:
    """The run ended by itself (not killed): its exit code, its counts, the tasks it left."""

    TYPE: ClassVar[str] = "run-end"
    exit_code: int | None = None
    interrupted: bool = False
    summary: Mapping[str, int] = field(default_factory=dict)
    abandoned: tuple[str, ...] = ()

    def apply(self, state: RunState, t: float) -> None:
        state.ended = True
        state.exit_code = self.exit_code
        state.interrupted = self.interrupted


Record = (
    RunStart
    | Resume
    | StageEvent
    | Intent
    | Started
    | Power
    | Outcome
    | Origin
    | Replan
    | Hook
    | WaitNode
    | Interruption
    | RunEnd
)

RECORD_TYPES: Mapping[str, type[Record]] = {
    cls.TYPE: cls
    for cls in (
        RunStart,
        Resume,
        StageEvent,
        Intent,
        Started,
        Power,
        Outcome,
        Origin,
        Replan,
        Hook,
        WaitNode,
        Interruption,
        RunEnd,
    )
}
