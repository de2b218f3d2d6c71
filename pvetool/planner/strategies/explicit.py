"""Explicit moves: `vmid -> node`, e.g. a re-layout, bringing guests home after maintenance, or
undoing a drain. Targets are fixed (`Move.pinned`); every rule still holds.

A move that needs memory another listed move frees is planned after it (and waits for it:
`Move.after`), whatever order the plan lists them in: moves blocked only by memory or CPU are
retried after the others until no more can be placed.

Pure. Imports: the standard library, `pvetool.model`, `pvetool.planner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pvetool.model import Guest, MoveOptions
from pvetool.planner.checks import Issue
from pvetool.planner.resolve import exclusion_reason
from pvetool.planner.spec import Rules
from pvetool.planner.strategies.common import StagePlanner, UnitEvaluation, move_options

__all__ = ["Wanted", "plan_moves"]

StorageMap = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Wanted:
    vmid: int
    target: str
    where: str | None = None
    why: str = "move step"
    with_local_disks: bool | None = None  # None: the plan's rules.migration
    target_storage: tuple[tuple[str, str], ...] | None = None


def plan_moves(
    sp: StagePlanner, wanted: Sequence[Wanted], rules: Rules, *, honour_exclusions: bool = True
) -> None:
    """Plan each wanted move to its fixed target, or record why it cannot be made."""
    snap = sp.snapshot
    pending: list[tuple[Wanted, Guest]] = []
    for item in wanted:
        guest = snap.guests.get(item.vmid)
        if guest is None:
            sp.issue(
                Issue(
                    "PVT-UNKNOWN-GUEST",
                    "blocker",
                    f"guest {item.vmid} does not exist in this cluster",
                    item.where,
                ),
                None,
            )
            continue
        if guest.node == item.target:
            sp.issue(
                Issue("PVT-NOOP", "info", f"already on {item.target}, nothing to move", item.where),
                guest,
            )
            continue
        excluded = exclusion_reason(rules, guest) if honour_exclusions else None
        if excluded is not None:
            finding_id, why, _ = excluded
            sp.issue(
                Issue(finding_id, "blocker", f"the plan moves it, but it is {why}", item.where),
                guest,
            )
            sp.blocked.append(guest.vmid)
            continue
        pending.append((item, guest))

    while pending:
        deferred: list[tuple[Wanted, Guest, UnitEvaluation]] = []
        progress = False
        for item, guest in pending:
            if guest.vmid in sp.placement.move_of:
                continue  # dragged along by an earlier move (HA positive affinity)
            with_local = (
                item.with_local_disks
                if item.with_local_disks is not None
                else rules.migration.with_local_disks
            )
            storage = (
                item.target_storage
                if item.target_storage is not None
                else rules.migration.target_storage
            )

            def options(g: Guest, w: bool = with_local, s: StorageMap = storage) -> MoveOptions:
                return move_options(g, rules.migration, with_local_disks=w, target_storage=s)

            members = sp.unit_for(guest, options)
            ev = sp.evaluate(members, [item.target])
            if ev.best() is not None:
                where = f" ({item.where})" if item.where else ""
                sp.accept(ev, item.target, reason=f"{item.why}{where}", pinned=True)
                progress = True
            else:
                deferred.append((item, guest, ev))
        if not deferred:
            break
        if not progress:
            for item, _, ev in deferred:
                sp.reject(ev, must_move=f"the plan moves it to {item.target}")
            break
        pending = [(item, guest) for item, guest, _ in deferred]
