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

import heapq
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from pvetool.model import ClusterSnapshot, Guest, MoveOptions
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
TOP_TARGETS = 4


def failback_undoes(snap: ClusterSnapshot, guest: Guest, target: str) -> bool:
    """Whether PVE's HA manager would move `guest` straight back from `target`: failback is on
    (PVE's default, unless the resource turns it off) and a node-affinity rule of the guest
    ranks `target` below the best-ranked node that is online (pve-ha-manager
    ``src/PVE/HA/Manager.pm`` ``select_service_node``: with failback the service goes to the
    highest-priority group of online nodes; a node outside a non-strict rule ranks below every
    listed one). A rebalance move like that would be undone within a few CRM rounds."""
    if not guest.ha_managed:
        return False
    resource = snap.ha_resources.get(guest.ha_sid)
    if resource is not None and resource.failback is False:
        return False
    for rule in snap.ha_rules_for(guest.ha_sid):
        if rule.type != "node-affinity":
            continue
        ranks = rule.node_priorities
        online = [
            rank
            for node, rank in ranks.items()
            if (entry := snap.nodes.get(node)) is not None and entry.online
        ]
        if online and ranks.get(target, -1) < max(online):
            return True
    return False


def plan_rebalance(
    sp: StagePlanner, step: RebalanceStep, rules: Rules, moved_before: Collection[int] = ()
) -> None:
    """Plan the moves of one rebalance step; `moved_before`: guests an earlier stage of the
    plan moves (they do not move again: a guest moves at most once per plan)."""
    snap = sp.snapshot
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
    _Rebalance(sp, step, rules, nodes, moved_before).run()


class _Candidate(NamedTuple):
    """A guest that may move in a rebalance step; ordered by (bytes sent, vmid)."""

    cost: int  # bytes sent, plus the fixed costs (FIXED_COST_BYTES, DOWNTIME_COST_BYTES)
    vmid: int
    guest: Guest
    opts: MoveOptions


def _key(
    reaches: bool, cost: int, improvement: float, new_spread: float, vmid: int
) -> tuple[float, ...]:
    """Sort key of a pair: one that reaches the threshold by bytes sent, else by the variance
    improvement per byte (both grow with `cost`, then with the vmid)."""
    if reaches:
        return (0.0, float(cost), new_spread, float(vmid))
    return (1.0, -improvement / cost, new_spread, float(vmid))


# A pair scored by load alone: (sort key, guest, target, spread after, move options).
_Scored = tuple[tuple[float, ...], Guest, str, float, MoveOptions]
# The pair chosen: (sort key, guest, target, spread after, its verdict).
_Best = tuple[tuple[float, ...], Guest, str, float, TargetVerdict]


@dataclass(frozen=True)
class _Loads:
    """The load of every taking-part node at one point of the plan, and what the scoring of
    candidate moves reuses: sums for the variance, the nodes above and below the mean, and the
    three most and least loaded."""

    loads: dict[str, float]
    spread: float
    s1: float
    s2: float
    variance: float
    heavy: list[str]
    light: list[str]
    top: list[tuple[float, str]]
    bottom: list[tuple[float, str]]

    @classmethod
    def of(cls, loads: dict[str, float]) -> _Loads:
        n = len(loads)
        s1 = sum(loads.values())
        s2 = sum(v * v for v in loads.values())
        mean = s1 / n
        ranked = sorted(loads, key=lambda x: (-loads[x], x))
        return cls(
            loads=loads,
            spread=max(loads.values()) - min(loads.values()),
            s1=s1,
            s2=s2,
            variance=s2 - s1 * s1 / n,
            heavy=[x for x in ranked if loads[x] > mean],
            light=[x for x in reversed(ranked) if loads[x] < mean],
            top=[(loads[x], x) for x in ranked[:3]],
            bottom=[(loads[x], x) for x in ranked[::-1][:3]],
        )


class _Rebalance:
    """One rebalance step's greedy loop: score, check the best first, accept, repeat."""

    def __init__(
        self,
        sp: StagePlanner,
        step: RebalanceStep,
        rules: Rules,
        nodes: list[str],
        moved_before: Collection[int],
    ) -> None:
        self.sp = sp
        self.step = step
        self.rules = rules
        self.nodes = nodes
        self.in_groups = {v for g in sp.rules.affinity for v in g.vmids}
        self.moved: set[int] = set(moved_before)
        self.pools: dict[str, list[list[_Candidate]]] = {}
        self.loads: dict[str, float] = {}
        self.deltas: dict[tuple[str, int, int], float] = {}
        w_mem, w_cpu = step.memory_weight, step.cpu_weight
        self.by = "memory" if w_cpu == 0 else "vCPUs" if w_mem == 0 else "memory and vCPUs"

    def run(self) -> None:
        step, placement = self.step, self.sp.placement
        limit = step.max_moves if step.max_moves is not None else 10**9
        made = 0
        # Loads change only on the source and the target of an accepted move (`_accept`).
        self.loads = {n: placement.load(n, step.memory_weight, step.cpu_weight) for n in self.nodes}
        while made < limit:
            state = _Loads.of(dict(self.loads))
            if state.spread <= step.threshold + 1e-12:
                if made == 0:
                    text = (
                        f"the {self.by} load spread is {state.spread:.1%}, within the threshold "
                        f"{step.threshold:.0%}: nothing to move"
                    )
                    self.sp.issue(Issue("PVT-BALANCED", "info", text), None)
                return
            # The least loaded few targets first (where a move narrows the spread most); all
            # the nodes below the mean only when the checks refuse every pair there. Scoring
            # every pair made planning grow as moves x guests x nodes (issue 14).
            best, rejected = self._first_allowed(self._scored(state, state.light[:TOP_TARGETS]))
            if best is None and len(state.light) > TOP_TARGETS:
                best, rejected = self._first_allowed(self._scored(state, state.light))
            if best is None:
                self.sp.issue(Issue("PVT-BALANCED", "info", self._stuck(made, state)), None)
                return
            self._accept(best, rejected, state)
            made += 1

    def _delta(self, guest: Guest, node: str) -> float:
        """The load `guest` adds to (or takes from) `node`."""
        entry = self.sp.snapshot.nodes[node]
        mem = self.step.memory_weight * guest.memory_bytes / entry.memory_total_bytes
        cap = entry.cpus * self.sp.rules.cpu_overcommit
        cpu = self.step.cpu_weight * guest.cores / cap if cap else 0.0
        return mem + cpu

    def _fails_back(self, guest: Guest) -> bool:
        """Whether `failback_undoes` may hold for `guest` on some target (it has a
        node-affinity rule); such a guest is scored on its own."""
        return guest.ha_managed and any(
            r.type == "node-affinity" for r in self.sp.snapshot.ha_rules_for(guest.ha_sid)
        )

    def _delta_of(self, guest: Guest, node: str) -> float:
        """`_delta`, remembered by what it depends on (the node, memory and vCPUs)."""
        key = (node, guest.memory_bytes, guest.cores)
        found = self.deltas.get(key)
        if found is None:
            found = self.deltas[key] = self._delta(guest, node)
        return found

    def _options(self, guest: Guest) -> MoveOptions:
        migration = self.rules.migration
        return move_options(
            guest,
            migration,
            with_local_disks=migration.with_local_disks,
            target_storage=migration.target_storage,
        )

    def _candidate(self, vmid: int) -> _Candidate | None:
        """What scoring needs of a guest that may move in this step (None: it may not), from
        what does not change while the step is planned; `moved` is checked by the caller."""
        snap = self.sp.snapshot
        guest = snap.guests[vmid]
        if (
            not guest.running
            or vmid in self.in_groups
            or ha_partners(snap, guest, "positive")
            or exclusion_reason(self.rules, guest) is not None
        ):
            return None
        opts = self._options(guest)
        level = guest_issues(
            guest, self.sp.ctx, with_local_disks=opts.with_local_disks, shutdown=opts.shutdown
        )
        if any(i.severity == "blocker" for i in level):
            return None
        cost = send_bytes(guest, opts) + FIXED_COST_BYTES
        if opts.restart or opts.shutdown:
            cost += DOWNTIME_COST_BYTES
        return _Candidate(cost, vmid, guest, opts)

    def _groups(self, node: str) -> list[list[_Candidate]]:
        """The movable guests planned on `node`, in groups whose members add and take the same
        load everywhere (same memory and vCPUs, where their weight is not 0; a guest with an
        HA node-affinity rule alone, as failback depends on it), each by (bytes sent, vmid).
        Built once per node: a guest that arrives in this step never moves again, and one that
        leaves is taken out (`_accept`)."""
        groups, step = self.pools.get(node), self.step
        if groups is None:
            by_class: dict[tuple[int, ...], list[_Candidate]] = {}
            for vmid in self.sp.placement.guests_planned_on(node):
                if vmid in self.moved:
                    continue
                found = self._candidate(vmid)
                if found is None:
                    continue
                guest = found.guest
                key = (
                    guest.memory_bytes if step.memory_weight else 0,
                    guest.cores if step.cpu_weight else 0,
                    vmid if self._fails_back(guest) else 0,
                )
                by_class.setdefault(key, []).append(found)
            groups = [sorted(members) for _, members in sorted(by_class.items())]
            self.pools[node] = groups
        return groups

    def _scored(self, state: _Loads, targets: list[str]) -> Iterator[_Scored]:
        """Every (guest, target) pair from the most loaded nodes that narrows the spread,
        scored by load alone (cheap), best first; the checks come later, for the best only.

        Members of a group score the same on a target but for their bytes sent and vmid, and
        the key grows with both: so each (group, target) is scored once and its members are
        merged in lazily (a heap), which yields the pairs in the order of sorting them all
        and scores a few hundred groups per move instead of every guest on every target."""
        heap: list[tuple[tuple[float, ...], str, int, list[_Candidate], bool, float, float]] = []
        for source in state.heavy[:TOP_SOURCES]:
            for members in self._groups(source):
                if members:
                    heap += self._group_heads(state, source, members, targets)
        heapq.heapify(heap)
        while heap:
            key, target, i, members, reaches, improvement, new_spread = heap[0]
            c = members[i]
            if i + 1 < len(members):
                nxt = members[i + 1]
                heapq.heapreplace(
                    heap,
                    (
                        _key(reaches, nxt.cost, improvement, new_spread, nxt.vmid),
                        target,
                        i + 1,
                        members,
                        reaches,
                        improvement,
                        new_spread,
                    ),
                )
            else:
                heapq.heappop(heap)
            yield key, c.guest, target, new_spread, c.opts

    def _group_heads(
        self, state: _Loads, source: str, members: list[_Candidate], targets: list[str]
    ) -> list[tuple[tuple[float, ...], str, int, list[_Candidate], bool, float, float]]:
        """The targets below the mean that shrink both the spread (by `min_improvement`) and
        the sum of squared deviations when a member of the group moves there; one that reaches
        the threshold is scored by bytes sent, the others by improvement per byte."""
        loads, step = state.loads, self.step
        n = len(loads)
        head = members[0]
        guest = head.guest
        heads: list[tuple[tuple[float, ...], str, int, list[_Candidate], bool, float, float]] = []
        load_s = loads[source]
        ls = load_s - self._delta_of(guest, source)
        fails_back = self._fails_back(guest)
        top, bottom, spread = state.top, state.bottom, state.spread
        enough = spread - step.min_improvement + 1e-12
        for target in targets:
            if fails_back and failback_undoes(self.sp.snapshot, guest, target):
                continue
            load_t = loads[target]
            lt = load_t + self._delta_of(guest, target)
            # max - min load once source and target have their new loads (O(1): the other
            # nodes' extremes are among the three most and three least loaded).
            hi = lo = ls
            for v, x in top:
                if x != source and x != target:
                    hi = v
                    break
            for v, x in bottom:
                if x != source and x != target:
                    lo = v
                    break
            new_spread = max(hi, ls, lt) - min(lo, ls, lt)
            if new_spread > enough:
                continue
            n_s1 = state.s1 - load_s - load_t + ls + lt
            n_s2 = state.s2 - load_s**2 - load_t**2 + ls * ls + lt * lt
            new_var = n_s2 - n_s1 * n_s1 / n
            if new_var >= state.variance - 1e-12:
                continue
            reaches = new_spread <= step.threshold + 1e-12
            improvement = state.variance - new_var
            key = _key(reaches, head.cost, improvement, new_spread, head.vmid)
            heads.append((key, target, 0, members, reaches, improvement, new_spread))
        return heads

    def _first_allowed(
        self, scored: Iterable[_Scored]
    ) -> tuple[_Best | None, dict[int, list[TargetVerdict]]]:
        """The best-scored pair every check allows, and the verdicts of those before it."""
        rejected: dict[int, list[TargetVerdict]] = {}
        for key, guest, target, new_spread, opts in scored:
            verdict = target_verdict(
                guest,
                target,
                self.sp.ctx,
                self.sp.placement,
                with_local_disks=opts.with_local_disks,
                target_storage=opts.target_storage,
            )
            if verdict.blocked:
                rejected.setdefault(guest.vmid, []).append(verdict)
                continue
            return (key, guest, target, new_spread, verdict), rejected
        return None, rejected

    def _stuck(self, made: int, state: _Loads) -> str:
        threshold = self.step.threshold
        if made == 0:
            return (
                f"the {self.by} load spread is {state.spread:.1%}, above the threshold "
                f"{threshold:.0%}, but no allowed move narrows it"
            )
        return (
            f"after {made} move(s) the {self.by} load spread is {state.spread:.1%}, above the "
            f"threshold {threshold:.0%}, and no further allowed move narrows it"
        )

    def _accept(self, best: _Best, rejected: dict[int, list[TargetVerdict]], state: _Loads) -> None:
        """Commit the chosen move with its verdicts (and the targets rejected before it)."""
        _, guest, target, new_spread, verdict = best
        loads = state.loads
        source = self.sp.placement.node_of[guest.vmid]
        opts = self._options(guest)
        ev = UnitEvaluation(
            members=(MoveChoice(guest, opts),),
            guest_level={
                guest.vmid: guest_issues(
                    guest,
                    self.sp.ctx,
                    with_local_disks=opts.with_local_disks,
                    shutdown=opts.shutdown,
                )
            },
        )
        ev.verdicts[target] = {guest.vmid: verdict}
        for other in rejected.get(guest.vmid, []):
            ev.verdicts[other.target] = {guest.vmid: other}
        src_after = loads[source] - self._delta(guest, source)
        tgt_after = loads[target] + self._delta(guest, target)
        reason = (
            f"rebalance by {self.by}: {source} {loads[source]:.0%} -> {src_after:.0%}, "
            f"{target} {loads[target]:.0%} -> {tgt_after:.0%}; spread {state.spread:.0%} -> "
            f"{new_spread:.0%}"
        )
        self.sp.accept(ev, target, reason=reason)
        self.moved.add(guest.vmid)
        for members in self.pools.get(source, ()):
            for i, c in enumerate(members):
                if c.vmid == guest.vmid:
                    del members[i]
                    break
        placement, step = self.sp.placement, self.step
        for node in (source, target):
            if node in self.loads:
                self.loads[node] = placement.load(node, step.memory_weight, step.cpu_weight)
