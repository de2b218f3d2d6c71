"""Re-planning around a failed target: one question to the planner for every move that has to
go elsewhere, and the moves it answers.

A target that fails (offline, full, refusing) makes the scheduler ask the planner for another
target for that move and, when the target is down, for every pending move to it; the planner
re-plans them against one fresh snapshot, each seeing where the previous went. A failed target
is avoided by later moves only while it stays down: `forget_recovered` drops the targets that
are online again (a node rebooted by a rolling maintenance hook comes back), so that the rest
of the run does not pile every later move onto the few nodes left.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.journal_records` and
the `pvetool.executor` sibling `context`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from pvetool.errors import PvetoolError
from pvetool.executor.context import RunContext
from pvetool.journal_records import Replan
from pvetool.model import Attempt, Move
from pvetool.model.events import MoveReplanned

__all__ = ["Retry", "forget_recovered", "replan", "swapped"]

logger = logging.getLogger(__name__)

# A move to re-plan: the move, why its target failed, and the task that failed (if any).
Retry = tuple[Move, str, str | None]


def forget_recovered(ctx: RunContext) -> None:
    """Failed targets that are online members of the cluster again are failed no more."""
    try:
        status = ctx.api.cluster_status()
    except PvetoolError as exc:
        logger.info("whether the failed targets are back could not be read: %s", exc)
        return
    online = {n.name for n in status.nodes if n.online}
    with ctx.lock:
        back = ctx.bad_targets & online
        ctx.bad_targets -= back
    for node in sorted(back):
        logger.info("%s is online again: moves to it go ahead as planned", node)


def replan(ctx: RunContext, index: int, retries: Sequence[Retry]) -> list[Move | None]:
    """Another target for each move (one question to the planner for all), or None; a move
    left without one is recorded as failed."""
    avoid: dict[str, frozenset[str]] = {}
    for move, reason, upid in retries:
        tried = ctx.attempts.setdefault(move.id, [])
        tried.append(Attempt(move.target, reason, upid))
        ctx.original_targets.setdefault(move.id, move.target)
        avoid[move.id] = frozenset(ctx.bad_targets | {a.target for a in tried})
    asked = [(m, avoid[m.id]) for m, _, _ in retries if not m.pinned]
    answers, trouble = _ask_planner(ctx, asked)
    out: list[Move | None] = []
    for move, reason, upid in retries:
        new, why = _answer(ctx, move, reason, answers.get(move.id), avoid[move.id], trouble)
        ctx.write(
            Replan(
                move=move.id,
                vmid=move.vmid,
                old_target=move.target,
                new_target=new.target if new is not None else None,
                reason=why,
            )
        )
        ctx.emit(MoveReplanned(move, move.target, new.target if new is not None else None, why))
        if new is None:
            ctx.decide(index, move, "failed", why, upid=upid)
        out.append(new)
    return out


def swapped(
    pending: Sequence[Move], asked: Sequence[Move], answers: Sequence[Move | None]
) -> list[Move]:
    """`pending` with each asked move replaced by its re-planned move, or dropped (failed)."""
    new = {m.id: a for m, a in zip(asked, answers, strict=True)}
    kept = [new[m.id] if m.id in new else m for m in pending]
    return [m for m in kept if m is not None]


def _ask_planner(
    ctx: RunContext, asked: Sequence[tuple[Move, frozenset[str]]]
) -> tuple[dict[str, Move | None], str | None]:
    """The planner's answer per move id, or why there is none for any of them."""
    replan = ctx.deps.replan
    if replan is None or not asked:
        return {}, None
    try:
        answers = list(replan(asked))
    except PvetoolError as exc:
        return {}, f"re-planning failed: {exc}"
    except Exception as exc:  # a planner bug must not abandon the running moves
        logger.exception("re-planning %s failed", ", ".join(str(m.vmid) for m, _ in asked))
        return {}, f"re-planning failed: internal error: {type(exc).__name__}"
    if len(answers) != len(asked):
        return {}, "re-planning failed: internal error: the planner answered for other moves"
    return {m.id: new for (m, _), new in zip(asked, answers, strict=True)}, None


def _answer(
    ctx: RunContext,
    move: Move,
    reason: str,
    candidate: Move | None,
    avoid: frozenset[str],
    trouble: str | None,
) -> tuple[Move | None, str]:
    """The re-planned move (keeping its id and source) and the sentence for the journal."""
    if move.pinned:
        return (
            None,
            f"{reason}; the plan pins {move.vmid} to {move.target}, so it was not re-planned",
        )
    if ctx.deps.replan is None:
        return None, f"{reason}; no re-planning available"
    if trouble is not None:
        return None, f"{reason}; {trouble}"
    if candidate is None:
        return None, f"{reason}; no other node can take {move.vmid}"
    if candidate.target in avoid:
        return None, reason
    return replace(candidate, id=move.id, source=move.source), reason
