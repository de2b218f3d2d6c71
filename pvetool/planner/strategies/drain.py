"""Drain: move every movable guest off one or more nodes.

Running and stopped guests move (stopped ones cheaply: the config and any local disks);
templates, excluded and skipped guests stay, each with a finding. Guests that must move
together (plan affinity groups on the same node, HA positive resource affinity) are placed as a
unit. Units are placed largest first (first-fit decreasing packs tight clusters best); each
goes to its best acceptable target (`StagePlanner.evaluate`), or is blocked with every reason.

Pure. Imports: the standard library, `pvetool.model`, `pvetool.planner`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pvetool.model import Guest, MoveOptions
from pvetool.planner.checks import Issue, ha_partners
from pvetool.planner.resolve import exclusion_reason, where_text
from pvetool.planner.spec import DrainStep, GuestOverride, Rules
from pvetool.planner.strategies.common import MoveChoice, StagePlanner, move_options

__all__ = ["plan_drain"]


def plan_drain(
    sp: StagePlanner,
    step: DrainStep,
    rules: Rules,
    *,
    label: str | None = None,
    staying_note: str = "",
) -> None:
    """Plan the drain of `step.nodes` into `sp` (moves, findings, blocked guests)."""
    snap = sp.snapshot
    sources = set(step.nodes)
    candidates = list(step.targets) if step.targets else [n for n in snap.nodes if n not in sources]
    overrides = {o.vmid: o for o in step.overrides}
    what = label or f"drain {', '.join(step.nodes)}"
    with_local = (
        step.with_local_disks
        if step.with_local_disks is not None
        else rules.migration.with_local_disks
    )
    storage = (
        step.target_storage if step.target_storage is not None else rules.migration.target_storage
    )
    _warn_unknown_overrides(sp, step, sources)

    def options(guest: Guest) -> MoveOptions:
        override = overrides.get(guest.vmid)
        return move_options(
            guest,
            rules.migration,
            with_local_disks=with_local,
            target_storage=_storage_for(override, storage),
            bwlimit_Bps=override.bwlimit_Bps if override else None,
            offline=override.offline if override else None,
        )

    movable = _movable(sp, step, rules, overrides, staying_note)

    def members_of(unit: list[Guest]) -> list[MoveChoice]:
        members = [MoveChoice(g, options(g)) for g in unit]
        for g in unit:
            for vmid in ha_partners(snap, g, "positive"):
                partner = snap.guests.get(vmid)
                if partner is not None and vmid not in {m.guest.vmid for m in members}:
                    members.append(MoveChoice(partner, options(partner), primary=False))
        return members

    def targets_of(unit: list[Guest]) -> list[str]:
        override = overrides.get(unit[0].vmid)
        return [override.target] if override is not None and override.target else candidates

    # Most constrained first (fewest acceptable targets on the empty plan), then largest:
    # a guest that can only go to one node gets its room before others fill it.
    units = _units(sp, movable)
    freedom = {id(u): len(sp.evaluate(members_of(u), targets_of(u)).acceptable) for u in units}
    units.sort(key=lambda u: (freedom[id(u)] == 0, freedom[id(u)]))
    for unit in units:
        members = members_of(unit)
        fixed = overrides.get(unit[0].vmid)
        ev = sp.evaluate(members, targets_of(unit))
        target = ev.best()
        if target is None:
            sp.reject(ev, must_move=f"it must leave {unit[0].node} ({what})")
            continue
        if fixed is not None and fixed.target is not None:
            reason = f"{what}: target set by {where_text(fixed.where) or 'the plan'}"
            sp.accept(ev, target, reason=reason, pinned=True)
        else:
            sp.accept(ev, target, reason=sp.choice_reason(ev, target, what))


def _warn_unknown_overrides(sp: StagePlanner, step: DrainStep, sources: set[str]) -> None:
    """A per-guest setting for a guest that is not on a drained node is ignored, and said so."""
    for override in step.overrides:
        guest = sp.snapshot.guests.get(override.vmid)
        if guest is None or guest.node not in sources:
            where = where_text(override.where)
            text = (
                f"guest {override.vmid} does not exist"
                if guest is None
                else f"guest {override.vmid} is on {guest.node}, not on a drained node"
            )
            sp.issue(
                Issue("PVT-UNKNOWN-GUEST", "warning", f"{text}; its settings are ignored", where),
                None,
            )


def _movable(
    sp: StagePlanner,
    step: DrainStep,
    rules: Rules,
    overrides: dict[int, GuestOverride],
    staying_note: str,
) -> list[Guest]:
    """The guests of the drained nodes that should leave; the others stay, each with a finding."""
    movable: list[Guest] = []
    for node in step.nodes:
        for guest in sp.snapshot.guests_on(node):
            stay = _stays(guest, overrides.get(guest.vmid), step, rules)
            if stay is None:
                movable.append(guest)
                continue
            finding_id, why, where = stay
            sp.issue(
                Issue(finding_id, "warning", f"stays on {node}: {why}{staying_note}", where), guest
            )
    return movable


def _storage_for(
    override: GuestOverride | None, default: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    if override is not None and override.target_storage is not None:
        return override.target_storage
    return default


def _stays(
    guest: Guest, override: GuestOverride | None, step: DrainStep, rules: Rules
) -> tuple[str, str, str | None] | None:
    if override is not None and override.skip:
        return "PVT-EXCLUDED", "skipped by the plan", where_text(override.where)
    excluded = exclusion_reason(rules, guest)
    if excluded is not None:
        return excluded
    if not guest.running and not step.include_stopped:
        return (
            "PVT-EXCLUDED",
            "stopped guests stay (include_stopped: false)",
            where_text(step.where),
        )
    return None


def _units(sp: StagePlanner, guests: Sequence[Guest]) -> list[list[Guest]]:
    """Guests that move together, largest memory first."""
    by_vmid = {g.vmid: g for g in guests}
    parent = {g.vmid: g.vmid for g in guests}

    def find(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for group in sp.rules.affinity:
        members = [v for v in group.vmids if v in by_vmid]
        for a in members:
            for b in members:
                if by_vmid[a].node == by_vmid[b].node:
                    union(a, b)
    for guest in guests:
        for vmid in ha_partners(sp.snapshot, guest, "positive"):
            if vmid in by_vmid and by_vmid[vmid].node == guest.node:
                union(guest.vmid, vmid)
    groups: dict[int, list[Guest]] = {}
    for guest in guests:
        groups.setdefault(find(guest.vmid), []).append(guest)
    units = [
        sorted(u, key=lambda g: (-g.memory_bytes * g.running, g.vmid)) for u in groups.values()
    ]
    return sorted(
        units,
        key=lambda u: (-sum(g.memory_bytes for g in u if g.running), not u[0].running, u[0].vmid),
    )
