"""The executor: turns an `ExecutionPlan` into migrations on the cluster, safely, visibly and
resumably (sliding window under the plan's caps, re-checks before and verification after each
move, re-planning around failed targets, hooks and node waits for rolling maintenance, Ctrl-C
handling, and an fsync'd journal for `--resume` and `undrain`).

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.waiting`,
`pvetool.journal` and `pvetool.journal_records`. Never the API layer or the planner: they come
in as `ExecutorDeps` (`ClusterApi`, `Follow`, `Replan`; `pvetool.operate` wires them).

Modules, along the run's own seams:

- `scheduler`: `Executor`, the stages in order and a migrate stage's sliding window (caps,
  dependencies, failure policy, interrupts, re-planning, the worker threads);
- `move`: one live or restart migration (pre-condition -> execute -> post-condition);
- `offline`: the offline move of a running VM (shut down -> migrate -> start -> verify, and
  starting it again after a failure);
- `resume`: what an interrupted run left (re-attach, look up, go on);
- `stages`: hooks (a `before` hook never runs on a node still holding guests meant to leave
  it), node waits, pauses, confirmations;
- `settle`: what the cluster says when an answer or a follow left the outcome unclear;
- `replan`: another target for the moves whose target failed;
- `context`: one run's shared state and plumbing (`RunContext`, `ExecutorDeps`,
  `ExecutorOptions`); `verify`: the checks before and after a move; `hooks`: running a hook
  command, waiting for a node; `api`: the protocols.

What the observer receives is in `pvetool.model.events`; what a run produced (`MoveResult`,
`RunReport`) in `pvetool.model.report`.
"""

from pvetool.executor.api import ClusterApi, Confirm, Follow, Replan
from pvetool.executor.context import ExecutorDeps, ExecutorOptions
from pvetool.executor.hooks import (
    SECRET_ENV,
    HookOutcome,
    HookRunner,
    redactor,
    run_hook,
    wait_node_online,
)
from pvetool.executor.scheduler import Executor, blocked_guests

__all__ = [
    "SECRET_ENV",
    "ClusterApi",
    "Confirm",
    "Executor",
    "ExecutorDeps",
    "ExecutorOptions",
    "Follow",
    "HookOutcome",
    "HookRunner",
    "Replan",
    "blocked_guests",
    "redactor",
    "run_hook",
    "wait_node_online",
]
