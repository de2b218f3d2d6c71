"""Events the executor emits while it runs; `pvetool.render.live` shows them (live bars, lines,
JSON).

The executor calls its observer with one of these at a time (serialised under a lock, from the
scheduling thread and the worker threads), never prints. Pure data next to the model, so the
renderers need not import the executor. Imports: the standard library and the other model
modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pvetool.model.plan import ExecutionPlan, Move, Stage
from pvetool.model.report import HookResult, MoveResult, NodeWaitResult, RunReport

__all__ = [
    "Event",
    "HookStarted",
    "Interrupt",
    "MoveFinished",
    "MoveProgressed",
    "MoveReplanned",
    "MoveStarted",
    "NodeWaited",
    "Notice",
    "Observer",
    "RunFinished",
    "RunStarted",
    "StageStarted",
    "HookFinished",
]


@dataclass(frozen=True)
class RunStarted:
    plan: ExecutionPlan
    run_id: str
    journal_path: str | None
    resumed: bool


@dataclass(frozen=True)
class StageStarted:
    index: int
    stage: Stage


@dataclass(frozen=True)
class MoveStarted:
    """A migration task was requested (or, when resuming, re-attached)."""

    move: Move
    upid: str
    attached: bool = False


@dataclass(frozen=True)
class MoveProgressed:
    move: Move
    transferred_bytes: int
    total_bytes: int | None
    rate_bps: float | None
    phase: str


@dataclass(frozen=True)
class MoveFinished:
    result: MoveResult


@dataclass(frozen=True)
class MoveReplanned:
    move: Move
    old_target: str
    new_target: str | None  # None: no other node can take it
    reason: str


@dataclass(frozen=True)
class HookStarted:
    index: int
    label: str
    node: str | None
    argv: tuple[str, ...]


@dataclass(frozen=True)
class HookFinished:
    result: HookResult


@dataclass(frozen=True)
class NodeWaited:
    result: NodeWaitResult


@dataclass(frozen=True)
class Interrupt:
    """level 1: no new migrations, waiting for the running ones; level 2: left running."""

    level: int
    running: tuple[tuple[Move, str | None], ...]


@dataclass(frozen=True)
class Notice:
    message: str


@dataclass(frozen=True)
class RunFinished:
    report: RunReport


Event = (
    RunStarted
    | StageStarted
    | MoveStarted
    | MoveProgressed
    | MoveFinished
    | MoveReplanned
    | HookStarted
    | HookFinished
    | NodeWaited
    | Interrupt
    | Notice
    | RunFinished
)

Observer = Callable[[Event], None]
