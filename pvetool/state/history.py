"""The runs pvetool remembers, across clusters: listing them, finding one, and rebuilding its
report from its journal alone (``pvetool runs``, ``runs show RUN``, ``report RUN``).

Runs live in their cluster's folder (`pvetool.state.layout`); journals of the old layout
(``runs/`` under the state folder) are listed with the cluster ``unknown``.

A rebuilt report has what the journal holds: every move with its last outcome (a move without
one is "not started", or "unknown" when the run was killed while it was under way), the hooks
and node waits as they ended, the guests the plan blocked, the exit code. What only the live run
knew (its wall-clock duration, the reason it stopped) is taken from the records' times and
outcomes.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.journal` and the
package's `layout`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from pvetool.errors import PlanError, ValidationError
from pvetool.journal import journalled_plan, list_runs, read_run, secure_dir
from pvetool.journal_records import RunState
from pvetool.model import (
    BlockedGuest,
    ExecutionPlan,
    HookResult,
    MoveResult,
    NodeWaitResult,
    RunReport,
)
from pvetool.state.layout import CLUSTERS, EMULATED

__all__ = ["RunEntry", "all_runs", "find_run", "rebuild_report"]


@dataclass(frozen=True)
class RunEntry:
    """A remembered run: its state, its cluster's folder name, whether it was emulated."""

    state: RunState
    cluster: str
    emulated: bool = False

    @property
    def result(self) -> str:
        s = self.state
        if not s.ended:
            return "unfinished (killed, or still running)"
        if s.interrupted:
            return "interrupted"
        return "ok" if s.exit_code == 0 else f"failed (exit {s.exit_code})"

    @property
    def started(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.state.started_t))

    def involves(self, node: str) -> bool:
        s = self.state
        if node in s.drained_nodes:
            return True
        return any(node in (m.source, m.target) for m in s.moves.values())

    @property
    def moves(self) -> int:
        return len(self.state.moves)


def _folders(base: Path) -> Iterable[tuple[Path, str, bool]]:
    for kind, emulated in ((CLUSTERS, False), (EMULATED, True)):
        parent = base / kind
        if parent.is_dir() and not parent.is_symlink():
            for folder in sorted(parent.iterdir()):
                if folder.is_dir():
                    yield folder, folder.name, emulated
    if (base / "runs").is_dir():
        yield base, "unknown", False


def all_runs(base: Path) -> list[RunEntry]:
    """Every readable run under the state folder `base`, oldest first."""
    if not base.is_dir():
        return []
    secure_dir(base)
    entries = [
        RunEntry(state, key, emulated)
        for folder, key, emulated in _folders(base)
        for state in list_runs(folder)
    ]
    entries.sort(key=lambda e: (e.state.started_t, e.state.run_id))
    return entries


def find_run(base: Path, run_id: str) -> RunEntry:
    """The run whose id is `run_id` or starts with it (exactly one)."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise ValidationError(f"'{run_id}' is not a run id (see `pvetool runs`)", field="RUN")
    found: list[RunEntry] = []
    for folder, key, emulated in _folders(base) if base.is_dir() else ():
        runs = folder / "runs"
        for path in sorted(runs.glob(f"{run_id}*.jsonl")) if runs.is_dir() else ():
            found.append(RunEntry(read_run(path), key, emulated))
    if not found:
        raise ValidationError(
            f"there is no run {run_id} in {base} (`pvetool runs` lists them)", field="RUN"
        )
    if len(found) > 1:
        names = ", ".join(e.state.run_id for e in found[:5])
        raise ValidationError(f"'{run_id}' names {len(found)} runs ({names}); give more of it")
    return found[0]


def _results(plan: ExecutionPlan, state: RunState) -> tuple[list[MoveResult], str]:
    """Each planned move's result as its journal records it, and why the run stopped early
    (the first move it did not start, if any)."""
    results: list[MoveResult] = []
    stop = ""
    for index, stage in enumerate(plan.stages):
        for move in stage.moves:
            rec = state.moves.get(move.id)
            if rec is not None and rec.target and rec.target != move.target:
                move = replace(move, target=rec.target)
            if rec is not None and rec.outcome is not None:
                result = rec.outcome.result(move, index)
                if result.status == "not-started" and not stop:
                    stop = result.reason.removeprefix("not started: ")
            elif rec is not None and (rec.intent_t is not None or rec.upid):
                result = MoveResult(
                    move=move,
                    status="failed",
                    reason="no outcome in the journal: the run ended while this move was under "
                    "way (look at the guest, or --resume the run)",
                    stage_index=index,
                    upid=rec.upid,
                )
            else:
                result = MoveResult(
                    move=move,
                    status="not-started",
                    reason="not started: the run ended before this move",
                    stage_index=index,
                    node=move.source,
                )
            results.append(result)
    return results, stop


def rebuild_report(state: RunState) -> RunReport:
    """The run's report, from its journal alone (module docstring)."""
    try:
        plan = journalled_plan(state)
    except PlanError as exc:
        raise ValidationError(f"the journal {state.path} holds no readable plan: {exc}") from None
    results, stop = _results(plan, state)
    hooks = tuple(
        HookResult(
            stage_index=h.index,
            label=h.label,
            node=h.node,
            argv=h.argv,
            exit_code=h.exit_code,
            timed_out=h.timed_out,
            duration_s=h.duration_s,
            output_tail=h.output,
            error=h.error,
        )
        for _, h in sorted(state.hook_ends.items())
    )
    waits = tuple(
        NodeWaitResult(w.index, w.node, w.ok, w.waited_s, w.reason)
        for _, w in sorted(state.waits.items())
    )
    blocked = []
    for vmid in plan.blocked:
        findings = [f for f in plan.findings if f.vmid == vmid and f.severity != "info"]
        reason = "; ".join(f.message for f in findings) or "no safe target (see the plan)"
        blocked.append(BlockedGuest(vmid, reason, findings[0].id if findings else ""))
    offsets: list[float] = []
    elapsed = 0.0
    for stage in plan.stages:
        offsets.append(elapsed)
        elapsed += stage.predicted_makespan_s
    return RunReport(
        run_id=state.run_id,
        plan_name=plan.name,
        plan_source=plan.source,
        command=state.command,
        results=tuple(results),
        blocked=tuple(blocked),
        hooks=hooks,
        node_waits=waits,
        interrupted=state.interrupted,
        stopped_reason=stop,
        wall_duration_s=max(0.0, state.last_t - state.started_t),
        predicted_makespan_s=plan.predicted_makespan_s or elapsed,
        journal_path=str(state.path),
        resumed=state.resumes > 0,
        started_epoch=state.started_t,
        stage_offsets_s=tuple(offsets),
        notes=("rebuilt from the journal " + str(state.path),),
    )
