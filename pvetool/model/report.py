"""What a run produced: one `MoveResult` per planned move, hook and node-wait results, and the
`RunReport` with the numbers the summary and the reports show.

Pure data, next to the model so renderers read it without the executor package. Imports: the
standard library and `pvetool.model.plan`.

Times: ``wall_*`` are seconds since the run started on this machine's monotonic clock;
``task_start``/``task_duration_s`` are on the cluster's clock (the UPID's start time and the
duration PVE logs), so predicted and actual timelines compare even against the emulator, whose
clock may run faster than real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pvetool.model.plan import Move

__all__ = [
    "Attempt",
    "BlockedGuest",
    "HookResult",
    "MoveResult",
    "MoveStatus",
    "NodeWaitResult",
    "RunReport",
]

MoveStatus = Literal["moved", "skipped", "failed", "not-started", "left-running"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a move that did not succeed and was re-planned (or given up)."""

    target: str
    reason: str
    upid: str | None = None


@dataclass(frozen=True, slots=True)
class MoveResult:
    """The outcome of one planned move."""

    move: Move  # as finally attempted (a re-plan changes its target)
    status: MoveStatus
    reason: str = ""
    stage_index: int = 0
    upid: str | None = None  # the task followed (for HA: the real qmigrate/vzmigrate)
    ha_upid: str | None = None  # the hamigrate request, for HA guests
    still_running: bool = False  # the task outlived its timeout and was left running
    node: str | None = None  # where the guest is at the end, as /cluster/resources shows it
    wall_start_s: float | None = None
    wall_end_s: float | None = None
    task_start: float | None = None  # cluster epoch seconds
    task_duration_s: float | None = None
    downtime_ms: float | None = None  # guest-visible: QEMU's stop-and-copy; LXC: whole restart
    attempts: tuple[Attempt, ...] = ()
    original_target: str | None = None  # when a re-plan changed the target
    resumed: bool = False  # finished by a resumed run (attached or taken from the journal)

    @property
    def ok(self) -> bool:
        return self.status in ("moved", "skipped")

    @property
    def vmid(self) -> int:
        return self.move.vmid

    @property
    def task_end(self) -> float | None:
        if self.task_start is None or self.task_duration_s is None:
            return None
        return self.task_start + self.task_duration_s


@dataclass(frozen=True, slots=True)
class BlockedGuest:
    """A guest the plan should have moved but could not (reported, never attempted)."""

    vmid: int
    reason: str
    finding_id: str = ""


@dataclass(frozen=True, slots=True)
class HookResult:
    stage_index: int
    label: str
    node: str | None
    argv: tuple[str, ...]
    exit_code: int | None  # None: it did not finish (timeout) or could not start
    timed_out: bool = False
    duration_s: float = 0.0
    output_tail: str = ""
    error: str = ""  # could not be started (not found, not executable)
    skipped: bool = False  # succeeded in the run that is being resumed

    @property
    def ok(self) -> bool:
        return self.skipped or (self.exit_code == 0 and not self.timed_out)

    @property
    def reason(self) -> str:
        if self.ok:
            return ""
        if self.error:
            return self.error
        if self.timed_out:
            return f"timed out after {self.duration_s:.0f} s and was killed"
        return f"exited with status {self.exit_code}"


@dataclass(frozen=True, slots=True)
class NodeWaitResult:
    stage_index: int
    node: str
    ok: bool
    waited_s: float
    reason: str = ""


@dataclass(frozen=True)
class RunReport:
    """Everything a finished (or interrupted) run did, for the summary and the reports."""

    run_id: str
    plan_name: str
    plan_source: str
    command: str
    results: tuple[MoveResult, ...]
    blocked: tuple[BlockedGuest, ...] = ()
    hooks: tuple[HookResult, ...] = ()
    node_waits: tuple[NodeWaitResult, ...] = ()
    interrupted: bool = False
    abandoned_upids: tuple[str, ...] = ()
    stopped_reason: str = ""  # why no new moves were started (failure policy, hook, ...)
    wall_duration_s: float = 0.0
    predicted_makespan_s: float = 0.0
    journal_path: str | None = None
    resumed: bool = False
    started_epoch: float = 0.0
    notes: tuple[str, ...] = field(default=())
    stage_offsets_s: tuple[float, ...] = ()  # predicted start of each stage after the run's
    refused: str = ""  # why the run was refused before anything started (exit code 2)

    def predicted_span(self, result: MoveResult) -> tuple[float, float]:
        """A move's predicted (start, end), in seconds after the run's predicted start."""
        offsets = self.stage_offsets_s
        base = offsets[result.stage_index] if result.stage_index < len(offsets) else 0.0
        return base + result.move.predicted_start_s, base + result.move.predicted_end_s

    # -- counts

    def with_status(self, status: str) -> tuple[MoveResult, ...]:
        return tuple(r for r in self.results if r.status == status)

    @property
    def moved(self) -> tuple[MoveResult, ...]:
        return self.with_status("moved")

    @property
    def skipped(self) -> tuple[MoveResult, ...]:
        return self.with_status("skipped")

    @property
    def failed(self) -> tuple[MoveResult, ...]:
        return self.with_status("failed")

    @property
    def not_started(self) -> tuple[MoveResult, ...]:
        return self.with_status("not-started")

    @property
    def left_running(self) -> tuple[MoveResult, ...]:
        return self.with_status("left-running")

    @property
    def hooks_failed(self) -> tuple[HookResult, ...]:
        return tuple(h for h in self.hooks if not h.ok)

    @property
    def succeeded(self) -> bool:
        """Every planned move moved or was already done, every hook and node wait succeeded,
        and no guest that should have moved was blocked (left behind)."""
        return (
            not self.refused
            and not self.interrupted
            and not self.blocked
            and all(r.ok for r in self.results)
            and not self.hooks_failed
            and all(w.ok for w in self.node_waits)
        )

    @property
    def exit_code(self) -> int:
        """0 everything planned succeeded, 1 anything failed or was left behind, 2 refused
        before anything started, 130 interrupted by the operator."""
        if self.refused:
            return 2
        if self.interrupted:
            return 130
        return 0 if self.succeeded else 1

    # -- timings

    @property
    def task_window(self) -> tuple[float, float] | None:
        """(first task start, last task end) on the cluster clock, over the moves that ran."""
        spans = [
            (r.task_start, r.task_end)
            for r in self.results
            if r.task_start is not None and r.task_end is not None
        ]
        if not spans:
            return None
        return min(s for s, _ in spans), max(e for _, e in spans if e is not None)

    @property
    def makespan_s(self) -> float:
        """From the first migration's start to the last one's end (cluster clock), else the
        run's wall-clock duration."""
        window = self.task_window
        if window is None:
            return self.wall_duration_s
        return max(0.0, window[1] - window[0])

    @property
    def max_downtime_ms(self) -> float | None:
        values = [r.downtime_ms for r in self.results if r.downtime_ms is not None]
        return max(values) if values else None

    def summary_counts(self) -> dict[str, int]:
        return {
            "moved": len(self.moved),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "not_started": len(self.not_started),
            "left_running": len(self.left_running),
            "blocked": len(self.blocked),
            "hooks_failed": len(self.hooks_failed),
        }
