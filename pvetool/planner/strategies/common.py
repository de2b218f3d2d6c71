"""What every strategy shares: a `StagePlanner` that evaluates candidate targets for a guest
(or a unit of guests that must move together), picks the best one, records the move with its
reasons, and records every blocked guest with all its reasons.

Target choice ("best fit that keeps nodes balanced"): among the targets where every check
passes, prefer (1) fewer warnings (``cpu: host`` across CPU models, an older PVE, a non-strict HA
rule), (2) a higher HA node-affinity priority, (3) a node whose migration link is not slow for
this guest (`slow_link`: under half the fastest node's, and the guest's bytes would take more
than `SLOW_LINK_EXTRA_S` longer there -- a 1 GbE node among 10 GbE ones receives small guests
only, or none; likewise a target behind a slow path from the guest's node, a node pair with
its own learned figure, counting what is already planned over that path), (4) the lowest
memory load after the move (then vCPU load), (5) fewer moves already planned into the node
(spreads the downlinks), (6) the name.
Each choice keeps a sentence, and every rejected target its "pve3 rejected for 101: ..." line.

Pure: no I/O, no clock. Imports: the standard library, `pvetool.model`, `pvetool.planner`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pvetool.model import (
    ClusterSnapshot,
    Finding,
    Guest,
    Move,
    MoveOptions,
    PlanRules,
    Precondition,
)
from pvetool.planner.checks import (
    CheckContext,
    Issue,
    TargetVerdict,
    guest_issues,
    ha_partners,
    target_verdict,
    to_finding,
)
from pvetool.planner.placement import Placement, disk_plan
from pvetool.planner.spec import MigrationSettings

# A slow-link target is fine for a guest whose transfer there takes at most this much longer.
SLOW_LINK_EXTRA_S = 5.0

__all__ = [
    "MoveChoice",
    "StagePlanner",
    "UnitEvaluation",
    "move_options",
    "send_bytes",
]


@dataclass(frozen=True)
class MoveChoice:
    """How one guest of a unit would migrate (decided before a target is known)."""

    guest: Guest
    options: MoveOptions
    primary: bool = True  # False: dragged along by HA positive affinity


@dataclass
class UnitEvaluation:
    """The checks' verdicts for a unit on every candidate target."""

    members: tuple[MoveChoice, ...]
    guest_level: dict[int, list[Issue]]
    verdicts: dict[str, dict[int, TargetVerdict]] = field(default_factory=dict)
    scores: dict[str, tuple[object, ...]] = field(default_factory=dict)
    loads: dict[str, tuple[float, float]] = field(default_factory=dict)  # before, after

    @property
    def blocked_in_itself(self) -> bool:
        return any(i.severity == "blocker" for issues in self.guest_level.values() for i in issues)

    @property
    def acceptable(self) -> list[str]:
        if self.blocked_in_itself:
            return []
        return [t for t, by in self.verdicts.items() if not any(v.blocked for v in by.values())]

    def best(self) -> str | None:
        ok = self.acceptable
        return min(ok, key=lambda t: self.scores[t]) if ok else None


def send_bytes(guest: Guest, options: MoveOptions) -> int:
    """Bytes a migration puts on the wire at least: used RAM of a live VM + copied disks."""
    ram = 0
    if guest.kind == "qemu" and options.online:
        ram = guest.used_memory_bytes or int(guest.memory_bytes * 0.7)
    copies = guest.kind == "lxc" or not options.online or options.with_local_disks
    disks = sum(size for _, _, size in disk_plan(guest, options.target_storage)) if copies else 0
    return ram + disks


def move_options(
    guest: Guest,
    settings: MigrationSettings,
    *,
    with_local_disks: bool,
    target_storage: tuple[tuple[str, str], ...],
    bwlimit_Bps: float | None = None,
    offline: bool | None = None,
) -> MoveOptions:
    """PVE's migration parameters for this guest, already decided."""
    running = guest.running
    shutdown = bool(offline) and guest.kind == "qemu" and running
    has_local = bool(guest.local_disks)
    bw = bwlimit_Bps if bwlimit_Bps is not None else settings.bwlimit_Bps
    return MoveOptions(
        online=guest.kind == "qemu" and running and not shutdown,
        restart=guest.kind == "lxc" and running,
        with_local_disks=has_local and (with_local_disks or not running or guest.kind == "lxc"),
        target_storage=target_storage if has_local else (),
        bwlimit_kib_s=None if bw is None else int(bw // 1024),
        migration_type=settings.type,
        migration_network=settings.network,
        ha=guest.ha_managed,
        shutdown=shutdown,
    )


class StagePlanner:
    """Plans the moves of one migrate stage on a working placement."""

    def __init__(
        self,
        index: int,
        snapshot: ClusterSnapshot,
        rules: PlanRules,
        *,
        sources: Iterable[str] = (),
        replication: Mapping[int, tuple[str, ...]] | None = None,
        preconditions: Mapping[int, Precondition] | None = None,
        links_Bps: Mapping[str, float] | None = None,
        pairs_Bps: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        self.index = index
        self.links_Bps = dict(links_Bps or {})  # usable bytes/s of each node's migration link
        # (a, b) with a < b -> usable bytes/s of a path slower than both nodes' links
        self.pairs_Bps = dict(pairs_Bps or {})
        self._path_bytes: dict[tuple[str, str], float] = {}  # planned over each (source, target)
        self.snapshot = snapshot
        self.rules = rules
        self.ctx = CheckContext(
            snapshot=snapshot,
            rules=rules,
            sources=frozenset(sources),
            replication=replication or {},
            preconditions=preconditions or {},
        )
        self.placement = Placement(snapshot, rules)
        self.moves: list[Move] = []
        self.findings: list[Finding] = []
        self.rejections: list[Finding] = []
        self.blocked: list[int] = []

    # -- ids and bookkeeping ------------------------------------------------------------------
    def move_id(self, vmid: int) -> str:
        return f"s{self.index}:{vmid}"

    def finding(self, finding: Finding) -> None:
        if finding not in self.findings:
            self.findings.append(finding)

    def issue(self, issue: Issue, guest: Guest | None, target: str | None = None) -> None:
        self.finding(to_finding(issue, guest, target))

    def unit_for(self, guest: Guest, options: Callable[[Guest], MoveOptions]) -> list[MoveChoice]:
        """The guest plus what HA positive affinity drags along (if not already planned)."""
        members = [MoveChoice(guest, options(guest))]
        for vmid in ha_partners(self.snapshot, guest, "positive"):
            partner = self.snapshot.guests.get(vmid)
            if partner is None or vmid in self.placement.move_of:
                continue
            members.append(MoveChoice(partner, options(partner), primary=False))
        return members

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(
        self,
        members: Sequence[MoveChoice],
        candidates: Iterable[str],
        *,
        memory_weight: float = 1.0,
        cpu_weight: float = 0.0,
    ) -> UnitEvaluation:
        """Check every member on every candidate; members see each other's memory."""
        snap = self.snapshot
        unit = frozenset(m.guest.vmid for m in members)
        ev = UnitEvaluation(
            members=tuple(members),
            guest_level={
                m.guest.vmid: guest_issues(
                    m.guest,
                    self.ctx,
                    with_local_disks=m.options.with_local_disks,
                    shutdown=m.options.shutdown,
                )
                for m in members
            },
        )
        for target in candidates:
            if any(m.guest.node == target for m in members if m.primary):
                continue
            by: dict[int, TargetVerdict] = {}
            undo: list[tuple[int, str]] = []
            before = self._load(target, memory_weight, cpu_weight)
            for member in members:
                if not member.primary and member.guest.node == target:
                    continue  # already there: HA keeps it, nothing to move
                verdict = target_verdict(
                    member.guest,
                    target,
                    self.ctx,
                    self.placement,
                    with_local_disks=member.options.with_local_disks,
                    target_storage=member.options.target_storage,
                    unit=unit,
                    shutdown=member.options.shutdown,
                )
                by[member.guest.vmid] = verdict
                if not verdict.blocked and target in snap.nodes:
                    undo.append(self._trial(member, target))
            after = self._load(target, memory_weight, cpu_weight)
            for vmid, move_id in reversed(undo):
                self._untrial(vmid, move_id)
            ev.verdicts[target] = by
            ev.loads[target] = (before, after)
            warnings = sum(len(v.warnings) for v in by.values())
            ev.scores[target] = (
                warnings,
                -self._ha_priority(members, target),
                self.slow_link(members, target),
                round(after, 6),
                self.placement.incoming_count(target),
                target,
            )
        return ev

    def _load(self, target: str, memory_weight: float, cpu_weight: float) -> float:
        if target not in self.snapshot.nodes:
            return 0.0
        node = self.snapshot.nodes[target]
        if not node.online or not node.memory_total_bytes:
            return 0.0
        return self.placement.load(target, memory_weight, cpu_weight)

    def _trial(self, member: MoveChoice, target: str) -> tuple[int, str]:
        move_id = f"trial:{member.guest.vmid}"
        self.placement.commit(
            move_id, member.guest, target, disk_plan(member.guest, member.options.target_storage)
        )
        return member.guest.vmid, move_id

    def _untrial(self, vmid: int, move_id: str) -> None:
        self.placement.undo(move_id, vmid)

    def slow_link(self, members: Sequence[MoveChoice], target: str) -> int:
        """1 when `target`'s link is under half the fastest online node's and the unit's bytes
        would take more than `SLOW_LINK_EXTRA_S` longer over it, or likewise the path to it from
        a member's node where that pair has its own slower figure, counting the bytes already
        planned over that path (its streams share it); else 0."""
        link = self.links_Bps.get(target)
        if link is None or link <= 0:
            return 0
        fastest = max(
            (self.links_Bps.get(n, 0.0) for n, e in self.snapshot.nodes.items() if e.online),
            default=0.0,
        )
        if link < 0.5 * fastest:
            sent = sum(send_bytes(m.guest, m.options) for m in members)
            if sent / link - sent / fastest > SLOW_LINK_EXTRA_S:
                return 1
        if self.pairs_Bps:
            on_path: dict[str, float] = {}
            for m in members:
                source = self.placement.node_of.get(m.guest.vmid, m.guest.node)
                on_path[source] = on_path.get(source, 0.0) + send_bytes(m.guest, m.options)
            for source, unit_bytes in on_path.items():
                pair = self.pairs_Bps.get((source, target) if source < target else (target, source))
                if pair is None or pair <= 0 or pair >= 0.5 * fastest:
                    continue
                path_bytes = unit_bytes + self._path_bytes.get((source, target), 0.0)
                if path_bytes / pair - path_bytes / fastest > SLOW_LINK_EXTRA_S:
                    return 1
        return 0

    def _ha_priority(self, members: Sequence[MoveChoice], target: str) -> int:
        best = 0
        for member in members:
            guest = member.guest
            if not guest.ha_managed:
                continue
            for rule in self.snapshot.ha_rules_for(guest.ha_sid):
                if rule.type == "node-affinity":
                    best = max(best, rule.node_priorities.get(target, 0))
        return best

    # -- outcome ----------------------------------------------------------------------------------
    def accept(
        self,
        ev: UnitEvaluation,
        target: str,
        *,
        reason: str,
        pinned: bool = False,
        extra_after: Iterable[str] = (),
    ) -> list[Move]:
        """Record the unit's moves to `target` (the planner commits them)."""
        made: list[Move] = []
        primary_id: str | None = None
        for member in ev.members:
            guest = member.guest
            verdict = ev.verdicts[target].get(guest.vmid)
            if verdict is None:
                continue  # an HA partner that is already on the target
            for issue in ev.guest_level[guest.vmid]:
                self.issue(issue, guest)
            for issue in verdict.warnings:
                self.issue(issue, guest, target)
            rejected: list[str] = []
            for other, by in ev.verdicts.items():
                if other == target:
                    continue
                other_verdict = by.get(guest.vmid)
                if other_verdict is None or not other_verdict.blocked:
                    continue
                for issue in other_verdict.blockers:
                    rejected.append(f"{other} rejected for {guest.vmid}: {issue.text}")
                    self.rejections.append(to_finding(issue, guest, other))
            after = list(verdict.deps) + list(extra_after)
            why = reason
            if not member.primary and primary_id is not None:
                after.append(primary_id)
                why = f"moves with {ev.members[0].guest.vmid} (HA positive resource affinity)"
            move_id = self.move_id(guest.vmid)
            move = Move(
                id=move_id,
                vmid=guest.vmid,
                kind=guest.kind,
                name=guest.name,
                source=self.placement.node_of.get(guest.vmid, guest.node),
                target=target,
                options=member.options,
                reason=why,
                memory_bytes=guest.memory_bytes,
                send_bytes=send_bytes(guest, member.options),
                after=tuple(
                    dict.fromkeys(a for a in after if a != move_id and not a.startswith("trial:"))
                ),
                pinned=pinned,
                rejected=tuple(rejected),
            )
            self.placement.commit(
                move_id, guest, target, disk_plan(guest, member.options.target_storage)
            )
            self.moves.append(move)
            made.append(move)
            if self.pairs_Bps:
                way = (move.source, target)
                self._path_bytes[way] = self._path_bytes.get(way, 0.0) + move.send_bytes
            if member.primary and primary_id is None:
                primary_id = move_id
        return made

    def reject(self, ev: UnitEvaluation, *, must_move: str) -> None:
        """Record why the unit cannot move: guest-level reasons, every target's blockers, and
        PVT-NO-TARGET when the guests themselves could move but no target takes them."""
        in_itself = ev.blocked_in_itself
        for member in ev.members:
            guest = member.guest
            for issue in ev.guest_level[guest.vmid]:
                self.issue(issue, guest)
            lines: list[str] = []
            for target, by in ev.verdicts.items():
                verdict = by.get(guest.vmid)
                if verdict is None:
                    continue
                for issue in verdict.blockers:
                    self.issue(issue, guest, target)
                    lines.append(f"{target}: {issue.text}")
                if not verdict.blocked and not in_itself:
                    others = [
                        m.guest.vmid
                        for m in ev.members
                        if by.get(m.guest.vmid) is not None and by[m.guest.vmid].blocked
                    ]
                    if others:
                        lines.append(
                            f"{target}: {', '.join(map(str, others))} of the same unit cannot go"
                        )
            if not in_itself:
                if lines:
                    detail = "; ".join(lines)
                    text = f"{must_move}, but no target accepts it ({detail})"
                else:
                    text = f"{must_move}, but there is no candidate target"
                self.issue(Issue("PVT-NO-TARGET", "blocker", text), guest)
            if guest.vmid not in self.blocked:
                self.blocked.append(guest.vmid)

    def choice_reason(self, ev: UnitEvaluation, target: str, what: str) -> str:
        """Why `target`: e.g. "drain pve1: pve3 has the lowest memory load after the move"."""
        before, after = ev.loads.get(target, (0.0, 0.0))
        n_ok = len(ev.acceptable)
        load = f"memory load {before:.0%} -> {after:.0%}"
        if n_ok <= 1:
            return f"{what}: {target} is the only acceptable target ({load})"
        warnings = ev.scores[target][0]
        extra = "" if not warnings else f"; {warnings} warning(s), fewest of the candidates"
        return (
            f"{what}: best of {n_ok} acceptable targets, {target} stays most balanced "
            f"({load}){extra}"
        )
