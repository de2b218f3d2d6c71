"""The plan's rules resolved against a cluster: selectors become vmids, defaults are applied.

Defaults chosen here (docs/findings.md): memory headroom 5 % of each target's memory when the
plan sets none (``headroom: {memory: 0%}`` keeps nothing free). The capacity test already counts
the configured (maximum) memory of every running guest and the host's own measured use, so 5 %
is a margin for growth, not the whole safety. CPU headroom none; templates excluded unless
``exclude: {templates: false}``.

Pure. Imports: the standard library, `pvetool.model`, `pvetool.planner.spec`.
"""

from __future__ import annotations

from pvetool.model import ClusterSnapshot, Guest, GuestGroup, GuestPin, PlanRules
from pvetool.planner.spec import Amount, GuestSelector, Rules, Where

__all__ = ["DEFAULT_MEMORY_HEADROOM", "exclusion_reason", "resolve_rules", "selects", "where_text"]

DEFAULT_MEMORY_HEADROOM = 0.05


def where_text(where: Where) -> str | None:
    """``plan.yaml:12: rules.pins[0]``, or None for a built-in default."""
    return None if where.line == 0 and where.file.startswith("<built-in") else str(where)


def selects(selector: GuestSelector, guest: Guest) -> bool:
    """A guest matching any of the selector's vmids, tags or pools."""
    return (
        guest.vmid in selector.vmids
        or any(tag in guest.tags for tag in selector.tags)
        or (guest.pool is not None and guest.pool in selector.pools)
    )


def _selected(selector: GuestSelector, snapshot: ClusterSnapshot) -> tuple[int, ...]:
    return tuple(g.vmid for g in snapshot.iter_guests() if selects(selector, g))


def _headroom(amount: Amount, default_fraction: float) -> tuple[float, float | None]:
    if amount.absolute is not None:
        return default_fraction, amount.absolute
    if amount.fraction is not None:
        return amount.fraction, None
    return default_fraction, None


def resolve_rules(rules: Rules, snapshot: ClusterSnapshot) -> PlanRules:
    """`PlanRules` for this cluster (vmids instead of selectors)."""
    mem_fraction, mem_bytes = _headroom(rules.headroom.memory, DEFAULT_MEMORY_HEADROOM)
    cpu_fraction, cpu_cpus = _headroom(rules.headroom.cpu, 0.0)
    excluded = [
        g.vmid
        for g in snapshot.iter_guests()
        if selects(rules.exclude.members, g) or (rules.exclude.templates and g.template)
    ]
    return PlanRules(
        memory_headroom_fraction=mem_fraction,
        memory_headroom_bytes=mem_bytes,
        cpu_headroom_fraction=cpu_fraction,
        cpu_headroom_cpus=cpu_cpus,
        cpu_overcommit=rules.cpu_overcommit,
        anti_affinity=tuple(
            GuestGroup(g.name, _selected(g.members, snapshot), where_text(g.where))
            for g in rules.anti_affinity
        ),
        affinity=tuple(
            GuestGroup(g.name, _selected(g.members, snapshot), where_text(g.where))
            for g in rules.affinity
        ),
        pins=tuple(
            GuestPin(_selected(p.members, snapshot), p.nodes, where_text(p.where))
            for p in rules.pins
        ),
        excluded=tuple(excluded),
    )


def exclusion_reason(rules: Rules, guest: Guest) -> tuple[str, str, str | None] | None:
    """(finding id, why, where) when the plan's rules keep `guest` from moving."""
    if selects(rules.exclude.members, guest):
        return "PVT-EXCLUDED", "excluded by rules.exclude", where_text(rules.exclude.where)
    if rules.exclude.templates and guest.template:
        return (
            "PVT-TEMPLATE",
            "a template; templates stay where they are (rules.exclude.templates)",
            where_text(rules.exclude.where),
        )
    return None
