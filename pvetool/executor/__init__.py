"""The executor: turns an `ExecutionPlan` into migrations on the cluster, safely, visibly and
resumably (sliding window under the plan's caps, re-checks before and verification after each
move, re-planning around failed targets, hooks and node waits for rolling maintenance, Ctrl-C
handling, and an fsync'd journal for `--resume` and `undrain`).

Imports: the standard library, tenacity, `pvetool.errors`, `pvetool.model`, `pvetool.journal`.
Never the API layer or the planner: the CLI passes them in (`ClusterApi`, `Follow`, `Replan`).

Modules: `api` (the protocols), `runner` (`Executor`), `verify` (before/after checks),
`hooks` (hook commands, waiting for a node), `events` (what the observer receives),
`results` (`MoveResult`, `RunReport`).
"""

from pvetool.executor.api import ClusterApi, Confirm, Follow, Replan
from pvetool.executor.hooks import HookOutcome, HookRunner, run_hook, wait_node_online
from pvetool.executor.runner import Executor
from pvetool.model import (
    Attempt,
    BlockedGuest,
    HookResult,
    MoveResult,
    MoveStatus,
    NodeWaitResult,
    RunReport,
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

__all__ = [
    "Attempt",
    "BlockedGuest",
    "ClusterApi",
    "Confirm",
    "Event",
    "Executor",
    "Follow",
    "HookFinished",
    "HookOutcome",
    "HookResult",
    "HookRunner",
    "HookStarted",
    "Interrupt",
    "MoveFinished",
    "MoveProgressed",
    "MoveReplanned",
    "MoveResult",
    "MoveStarted",
    "MoveStatus",
    "NodeWaitResult",
    "NodeWaited",
    "Notice",
    "Observer",
    "Replan",
    "RunFinished",
    "RunReport",
    "RunStarted",
    "StageStarted",
    "run_hook",
    "wait_node_online",
]
