"""Rebalance: move running guests until the spread of node load is within the threshold.

Load of a node = weighted memory load (configured memory of its running guests / its memory)
and vCPU load (vCPUs / (CPUs x cpu_overcommit)); spread = most loaded - least loaded node.
Greedy, and explainable move by move:

1. Stop when the spread is within `threshold`, after `max_moves`, or when no move helps.
2. Candidates: running guests on the most loaded nodes (above the mean) to nodes below the mean,
   that pass every check (`target_verdict`), never moved before in this plan (no oscillation),
   and shrink the spread by at least `min_improvement` (and the sum of squared deviations).
3. If a candidate reaches the threshold, take the one that sends the fewest bytes; otherwise
   the one with the largest improvement per byte sent (a fixed cost per migration is counted
   as 1 GiB, so a swarm of tiny moves does not win; a container's restart migration, which
   means downtime, as 16 GiB more, so live-migrated VMs are preferred).

Guests in a plan affinity group or with HA positive resource affinity are not moved here (they
would have to move as a unit); stopped guests do not count towards load and stay.

Pure. Imports: the standard library, `pvetool.model`, `pvetool.planner`.
"""

from __future__ import annotations

from collections.abc import Collection

from pvetool.model import Guest, MoveOptions
from pvetool.planner.checks import Issue, TargetVerdict, guest_issues, ha_partners, target_verdict
from pvetool.planner.resolve import exclusion_reason
from pvetool.planner.spec import RebalanceStep, Rules
from pvetool.planner.strategies.common import (
    MoveChoice,
    StagePlanner,
    UnitEvaluation,
    move_options,
    send_bytes,
)

__all__ = ["plan_rebalance"]

FIXED_COST_BYTES = 1024**3
DOWNTIME_COST_BYTES = 16 * 1024**3  # a restart migration (container) means downtime
TOP_SOURCES = 3


def _spread_after(
    top: list[tuple[float, str]],
    bottom: list[tuple[float, str]],
    a: tuple[str, float],
    b: tuple[str, float],
) -> float:
    """max - min load once nodes a and b have their new loads (O(1): the other nodes'
    extremes are among the three most and three least loaded)."""
    changed = (a[0], b[0])
    hi = next((v for v, x in top if x not in changed), a[1])
    lo = next((v for v, x in bottom if x not in changed), a[1])
    return max(hi, a[1], b[1]) - min(lo, a[1], b[1])


def plan_rebalance(
    sp: StagePlanner, step: RebalanceStep, rules: Rules, moved_before: Collection[int] = ()
) -> None:
    """Plan the moves of one rebalance step; `moved_before`: guests an earlier stage of the
    plan moves (they do not move again: a guest moves at most once per plan)."""
    snap = sp.snapshot
    placement = sp.placement
    w_mem, w_cpu = step.memory_weight, step.cpu_weight
    nodes = [
        n
        for n, node in snap.nodes.items()
        if node.online
        and node.memory_total_bytes
        and n not in step.exclude_nodes
        and not snap.in_ha_maintenance(n)
    ]
    if len(nodes) < 2:
        sp.issue(
            Issue("PVT-BALANCED", "info", "fewer than two nodes can take part in a rebalance"),
            None,
        )
        return
    in_groups = {v for g in sp.rules.affinity for v in g.vmids}
    moved: set[int] = set(moved_before)
    blocked_in_itself: set[int] = set()
    limit = step.max_moves if step.max_moves is not None else 10**9
    by = "memory" if w_cpu == 0 else "vCPUs" if w_mem == 0 else "memory and vCPUs"

    def delta(guest: Guest, node: str) -> float:
        entry = snap.nodes[node]
        mem = w_mem * guest.memory_bytes / entry.memory_total_bytes
        cap = entry.cpus * sp.rules.cpu_overcommit
        cpu = w_cpu * guest.cores / cap if cap else 0.0
        return mem + cpu

    made = 0
    while made < limit:
        loads = {n: placement.load(n, w_mem, w_cpu) for n in nodes}
        spread = max(loads.values()) - min(loads.values())
        if spread <= step.threshold + 1e-12:
            if made == 0:
                sp.issue(
                    Issue(
                        "PVT-BALANCED",
                        "info",
                        f"the {by} load spread is {spread:.1%}, within the threshold "
                        f"{step.threshold:.0%}: nothing to move",
                    ),
                    None,
                )
            return
        n = len(loads)
        s1 = sum(loads.values())
        s2 = sum(v * v for v in loads.values())
        variance = s2 - s1 * s1 / n
        mean = s1 / n
        ranked = sorted(loads, key=lambda x: (-loads[x], x))
        heavy = [x for x in ranked if loads[x] > mean]
        light = [x for x in reversed(ranked) if loads[x] < mean]

        top = [(loads[x], x) for x in ranked[:3]]
        bottom = [(loads[x], x) for x in ranked[::-1][:3]]

        # Score every (guest, target) pair by load alone (cheap), then check the best first.
        scored: list[tuple[tuple[float, ...], Guest, str, float, MoveOptions]] = []
        for source in heavy[:TOP_SOURCES]:
            for vmid in placement.guests_planned_on(source):
                guest = snap.guests[vmid]
                if (
                    not guest.running
                    or vmid in moved
                    or vmid in blocked_in_itself
                    or vmid in in_groups
                    or ha_partners(snap, guest, "positive")
                    or exclusion_reason(rules, guest) is not None
                ):
                    continue
                opts = move_options(
                    guest,
                    rules.migration,
                    with_local_disks=rules.migration.with_local_disks,
                    target_storage=rules.migration.target_storage,
                )
                level = guest_issues(
                    guest, sp.ctx, with_local_disks=opts.with_local_disks, shutdown=opts.shutdown
                )
                if any(i.severity == "blocker" for i in level):
                    blocked_in_itself.add(vmid)
                    continue
                cost = send_bytes(guest, opts) + FIXED_COST_BYTES
                if opts.restart or opts.shutdown:
                    cost += DOWNTIME_COST_BYTES
                ls = loads[source] - delta(guest, source)
                for target in light:
                    lt = loads[target] + delta(guest, target)
                    new_spread = _spread_after(top, bottom, (source, ls), (target, lt))
                    if new_spread > spread - step.min_improvement + 1e-12:
                        continue
                    n_s1 = s1 - loads[source] - loads[target] + ls + lt
                    n_s2 = s2 - loads[source] ** 2 - loads[target] ** 2 + ls * ls + lt * lt
                    new_var = n_s2 - n_s1 * n_s1 / n
                    if new_var >= variance - 1e-12:
                        continue
                    if new_spread <= step.threshold + 1e-12:
                        key: tuple[float, ...] = (0.0, float(cost), new_spread, float(vmid))
                    else:
                        key = (1.0, -(variance - new_var) / cost, new_spread, float(vmid))
                    scored.append((key, guest, target, new_spread, opts))
        scored.sort(key=lambda c: (c[0], c[2]))
        best: tuple[tuple[float, ...], Guest, str, float, TargetVerdict] | None = None
        rejected: dict[int, list[TargetVerdict]] = {}
        for key, guest, target, new_spread, opts in scored:
            verdict = target_verdict(
                guest,
                target,
                sp.ctx,
                placement,
                with_local_disks=opts.with_local_disks,
                target_storage=opts.target_storage,
            )
            if verdict.blocked:
                rejected.setdefault(guest.vmid, []).append(verdict)
                continue
            best = (key, guest, target, new_spread, verdict)
            break
        if best is None:
            if made == 0:
                text = (
                    f"the {by} load spread is {spread:.1%}, above the threshold "
                    f"{step.threshold:.0%}, but no allowed move narrows it"
                )
            else:
                text = (
                    f"after {made} move(s) the {by} load spread is {spread:.1%}, above the "
                    f"threshold {step.threshold:.0%}, and no further allowed move narrows it"
                )
            sp.issue(Issue("PVT-BALANCED", "info", text), None)
            return
        _, guest, target, new_spread, verdict = best
        source = placement.node_of[guest.vmid]
        opts = move_options(
            guest,
            rules.migration,
            with_local_disks=rules.migration.with_local_disks,
            target_storage=rules.migration.target_storage,
        )
        ev = UnitEvaluation(
            members=(MoveChoice(guest, opts),),
            guest_level={
                guest.vmid: guest_issues(
                    guest, sp.ctx, with_local_disks=opts.with_local_disks, shutdown=opts.shutdown
                )
            },
        )
        ev.verdicts[target] = {guest.vmid: verdict}
        for other in rejected.get(guest.vmid, []):
            ev.verdicts[other.target] = {guest.vmid: other}
        src_after = loads[source] - delta(guest, source)
        tgt_after = loads[target] + delta(guest, target)
        reason = (
            f"rebalance by {by}: {source} {loads[source]:.0%} -> {src_after:.0%}, "
            f"{target} {loads[target]:.0%} -> {tgt_after:.0%}; spread {spread:.0%} -> "
            f"{new_spread:.0%}"
        )
        sp.accept(ev, target, reason=reason)
        moved.add(guest.vmid)
        made += 1
