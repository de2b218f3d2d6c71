"""Ambiguity is not failure: what the cluster says when pvetool could not tell from an answer.

Two moments leave pvetool unsure whether a migration runs, ran or never started:

- the migrate request got an answer that is neither a UPID nor PVE's refusal (a truncated or
  garbled body, HTML, ``null``, a connection that broke after the request was sent and a
  client that could not look it up): `after_unclear_request`;
- a migration was being followed and the follow ended without its outcome (the task timeout
  ran out, or the status stopped answering): `after_lost_follow`.

In both cases the outcome is read from the cluster before anything is recorded: the source
node's task list (PVE lists a migration task from the moment its worker forks, before the guest
is locked: pve-guest-common `AbstractMigrate.pm` `migrate`), the task's status, and the guest's
node and lock (the config moves to the target before the task ends: qemu-server
`QemuMigrate.pm` `phase3_cleanup` `move_config_to_node`; a guest on the target still locked
``migrate`` is in flight, not arrived). Reads are retried through passing errors for up to
`ExecutorOptions.settle_timeout_s`; what is still unclear then is reported as such (where the
guest was last seen, and that its task may still run), never as "not moved".

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.waiting` and the
`pvetool.executor` siblings `context` and `verify`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pvetool.errors import PvetoolError
from pvetool.executor.context import RunContext
from pvetool.executor.verify import find_guest
from pvetool.model import Guest, Move, TaskQuery, TaskSummary, Upid, migrate_call_task_types
from pvetool.waiting import is_transient_read, wait_until

__all__ = ["Settled", "after_lost_follow", "after_unclear_request"]

Verdict = Literal["running", "ended-ok", "ended-failed", "arrived", "not-started", "unknown"]

# Between two looks after an unclear request: a request still on its way may fork its task.
LOOK_AGAIN_S = 1.0


@dataclass(frozen=True)
class Settled:
    """What the cluster showed: a task that `running` (follow it), ended (`ended-ok`: verify
    the arrival; `ended-failed`: its `exitstatus`), a guest that `arrived` on the target, a
    migration that was `not-started` (the guest unlocked on its source, no task), or still
    `unknown` after the looking time; `guest` as last seen, `why` for the report."""

    verdict: Verdict
    upid: Upid | None = None
    guest: Guest | None = None
    exitstatus: str | None = None
    why: str = ""


def _unknown_tasks(ctx: RunContext, move: Move) -> list[TaskSummary]:
    """Migration tasks of the guest on its source that this run did not start or attach to,
    newest first."""
    found = ctx.api.tasks(TaskQuery(move.source, vmid=move.vmid))
    types = migrate_call_task_types(move.kind)
    with ctx.lock:
        known = set(ctx.known_upids)
    mine = [t for t in found if t.upid.type in types and str(t.upid) not in known]
    return sorted(mine, key=lambda t: (t.upid.starttime, t.upid.pstart), reverse=True)


def _look_until(ctx: RunContext, look: Callable[[], Settled], why: str) -> Settled:
    """Call `look` until its verdict is not `unknown`, for at most the
    settle time, sitting out passing errors; the last verdict (or `unknown` with `why`)."""
    last: list[Settled] = []

    def once() -> Settled:
        try:
            settled: Settled = look()
        except PvetoolError as exc:
            seen = last[-1].guest if last else None
            last[:] = [Settled("unknown", guest=seen, why=f"{why} ({exc})")]
            raise
        last[:] = [settled]
        return settled

    try:
        wait_until(
            once,
            lambda s: s.verdict != "unknown",
            timeout_s=ctx.options.settle_timeout_s,
            poll_s=LOOK_AGAIN_S,
            clock=ctx.deps.clock,
            sleep=ctx.deps.sleep,
            transient=is_transient_read,
        )
    except PvetoolError as exc:
        seen = last[-1].guest if last else None
        last[:] = [Settled("unknown", guest=seen, why=f"{why} ({exc})")]
    return last[-1] if last else Settled("unknown", why=why)


def after_unclear_request(ctx: RunContext, move: Move) -> Settled:
    """Did the migrate request whose answer was unclear start a migration? Running: its task;
    already over: arrived on the target (with its task if it is listed); no migration running
    and the guest unlocked on its source (looked at twice): not started (or failed at once)."""
    looks = [0]

    def look() -> Settled:
        looks[0] += 1
        guest = find_guest(ctx.api.cluster_resources("vm"), move.vmid)
        tasks = _unknown_tasks(ctx, move)
        running = [t for t in tasks if t.running]
        if running:
            return Settled("running", upid=running[0].upid, guest=guest)
        if guest is None:
            return Settled("unknown", why=f"guest {move.vmid} is not in /cluster/resources")
        if guest.node == move.target and guest.lock != "migrate":
            ended = next((t for t in tasks if _ok(t)), None)
            return Settled("arrived", upid=ended.upid if ended else None, guest=guest)
        if guest.node == move.source and not guest.lock and looks[0] >= 2:
            # No migration of it runs and it is where it was: whether nothing started or a
            # migration failed at once, it is on its source and nothing is under way.
            return Settled("not-started", guest=guest)
        where = f"on {guest.node}" + (f", locked ({guest.lock})" if guest.lock else "")
        return Settled("unknown", guest=guest, why=f"guest {move.vmid} is {where}")

    return _look_until(ctx, look, "what the cluster shows could not be read")


def after_lost_follow(ctx: RunContext, move: Move, upid: Upid) -> Settled:
    """Where a migration whose follow ended without an outcome stands: its task's status
    (`upid`: the migration followed last; for an HA request whose migration was not found, the
    ``hamigrate``), else the guest's node and lock."""

    def look() -> Settled:
        guest = find_guest(ctx.api.cluster_resources("vm"), move.vmid)
        status = ctx.api.task_status(upid)
        if status.running:
            return Settled("running", upid=upid, guest=guest)
        if not status.ok:
            return Settled("ended-failed", upid=upid, guest=guest, exitstatus=status.exitstatus)
        if upid.type != "hamigrate":
            return Settled("ended-ok", upid=upid, guest=guest)
        # The HA request was handed over; its migration is the HA stack's. The guest says.
        if guest is not None and guest.node == move.target and guest.lock != "migrate":
            return Settled("arrived", guest=guest)
        return Settled("running", upid=upid, guest=guest)

    return _look_until(ctx, look, "its task's status could not be read")


def _ok(task: TaskSummary) -> bool:
    status = task.exitstatus
    return status is not None and (status == "OK" or status.startswith("WARNINGS"))
