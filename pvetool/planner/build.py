"""From a plan and a cluster snapshot to the `ExecutionPlan` the executor runs.

`build_plan` = every check + the strategies + the sequencer, for `pvetool plan show/validate`,
`pvetool check drain` and the `--dry-run` of `pvetool drain/rebalance/undrain/plan apply` (the
same code for the dry run and the real run). It never raises for a guest that cannot move: that
becomes findings and `ExecutionPlan.blocked`. It raises `PlanError` only when the plan does not
fit the cluster at all (a node it names does not exist: "did you mean ...?").

Steps become stages, each planned on the cluster as the previous stages leave it:

- ``drain`` -> one migrate stage;
- ``move`` -> one migrate stage of pinned moves;
- ``rebalance`` -> one migrate stage;
- ``rolling`` -> per node: migrate (drain), hook (before; the executor sets PVETOOL_NODE),
  wait-node (online and quorate), hook (after), migrate (bring the guests home); then pause
  and/or confirm before the next node.

`drain_spec`, `rebalance_spec`, `undrain_spec` and `migrate_spec` build the `PlanSpec` of the
one-shot commands. `replan` finds other targets for moves whose target failed during a run (all
against one snapshot, each seeing the previous); `replan_move` does it for one move.

Pure: no I/O, no clock. Imports: the standard library, `pvetool.errors`, `pvetool.model`,
`pvetool.timing` and `pvetool.planner`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from pvetool.errors import PlanError
from pvetool.model import (
    Caps,
    ClusterSnapshot,
    ExecutionPlan,
    Finding,
    Move,
    PlanRules,
    Precondition,
    Stage,
)
from pvetool.planner import fingerprint as fp
from pvetool.planner.checks import Issue, cluster_findings, to_finding
from pvetool.planner.loader import suggest
from pvetool.planner.resolve import resolve_rules, where_text
from pvetool.planner.sequencer import (
    DEFAULT_LINK_BITS_PER_S,
    Network,
    Predicted,
    choose_schedule,
)
from pvetool.planner.spec import (
    Concurrency,
    DrainStep,
    ExplicitMove,
    MigrationSettings,
    MoveStep,
    PlanSpec,
    RebalanceStep,
    RollingStep,
    Rules,
    Step,
    Where,
)
from pvetool.planner.strategies import (
    StagePlanner,
    Wanted,
    plan_drain,
    plan_moves,
    plan_rebalance,
)
from pvetool.planner.strategies.common import MoveChoice
from pvetool.timing import TimingParams, link_goodput_Bps, stream_cap_Bps

__all__ = [
    "build_plan",
    "drain_spec",
    "migrate_spec",
    "rebalance_spec",
    "replan",
    "replan_move",
    "undrain_spec",
]

_CLI = "<command line>"


# --------------------------------------------------------------------------------------------
# Specs of the one-shot commands


def _ref(node: str, path: str) -> tuple[str, Where]:
    return node, Where(_CLI, 0, path)


def drain_spec(
    nodes: Sequence[str],
    targets: Sequence[str] | None = None,
    max_parallel: int | None = None,
    with_local_disks: bool = False,
) -> PlanSpec:
    """What `pvetool drain NODE [--to ...] [--max-parallel N]` plans."""
    refs = [_ref(n, "NODE") for n in nodes] + [_ref(t, "--to") for t in targets or ()]
    return PlanSpec(
        version=1,
        name=f"drain-{'-'.join(nodes)}",
        rules=Rules(
            concurrency=Concurrency(cluster=max_parallel, per_source=max_parallel),
            migration=MigrationSettings(with_local_disks=with_local_disks),
        ),
        steps=(
            DrainStep(
                nodes=tuple(nodes),
                targets=tuple(targets) if targets else None,
                with_local_disks=with_local_disks,
            ),
        ),
        source=_CLI,
        node_refs=tuple(refs),
    )


def rebalance_spec(
    by: str = "memory", threshold: float = 0.10, max_moves: int | None = None
) -> PlanSpec:
    """What `pvetool rebalance [--by memory|cpu] [--threshold PCT]` plans."""
    if by not in ("memory", "cpu", "both"):
        raise PlanError(f"--by must be memory, cpu or both, got '{by}'")
    weights = {"memory": (1.0, 0.0), "cpu": (0.0, 1.0)}.get(by, (0.5, 0.5))
    step = RebalanceStep(
        by="memory" if by == "memory" else "cpu" if by == "cpu" else "both",
        memory_weight=weights[0],
        cpu_weight=weights[1],
        threshold=threshold,
        max_moves=max_moves,
    )
    return PlanSpec(version=1, name=f"rebalance-{by}", steps=(step,), source=_CLI)


def undrain_spec(moves: Sequence[tuple[int, str]]) -> PlanSpec:
    """Explicit moves vmid -> home node (the executor computes them from its journal)."""
    step = MoveStep(
        moves=tuple(
            ExplicitMove(vmid=v, target=t, where=Where(_CLI, 0, f"undrain {v}")) for v, t in moves
        )
    )
    return PlanSpec(
        version=1,
        name="undrain",
        rules=Rules(),
        steps=(step,),
        source=_CLI,
        node_refs=tuple(_ref(t, f"undrain {v}") for v, t in moves),
    )


def migrate_spec(
    vmid: int,
    target: str,
    *,
    with_local_disks: bool = False,
    target_storage: Sequence[tuple[str, str]] = (),
    bwlimit_Bps: float | None = None,
    task_timeout_s: float = 3600.0,
) -> PlanSpec:
    """What `pvetool migrate VMID --to NODE` plans: one explicit move, checked like any other.

    The target is not a node reference of the plan: a node the cluster does not have makes the
    guest blocked (PVT-UNKNOWN-NODE), the way PVE refuses such a migration, rather than the
    whole command invalid."""
    where = Where(_CLI, 0, f"migrate {vmid}")
    return PlanSpec(
        version=1,
        name=f"migrate-{vmid}",
        rules=Rules(
            concurrency=Concurrency(cluster=1, per_source=1, per_target=1),
            migration=MigrationSettings(
                with_local_disks=with_local_disks,
                target_storage=tuple(target_storage),
                bwlimit_Bps=bwlimit_Bps,
            ),
            task_timeout_s=task_timeout_s,
        ),
        steps=(MoveStep(moves=(ExplicitMove(vmid=vmid, target=target, where=where),)),),
        source=_CLI,
    )


# --------------------------------------------------------------------------------------------
# build_plan


def _check_nodes(spec: PlanSpec, snapshot: ClusterSnapshot) -> None:
    known = list(snapshot.nodes)
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for name, where in spec.node_refs:
        if name in snapshot.nodes or (name, str(where)) in seen:
            continue
        seen.add((name, str(where)))
        hint = suggest(name, known)
        text = f"unknown node '{name}'" + (f" ({hint})" if hint else "")
        if where.file == _CLI:
            problems.append(f"{text}; the cluster has {', '.join(known)}")
        else:
            problems.append(f"{where}: {text}")
    if problems:
        noun = "node" if len(problems) == 1 else "nodes"
        raise PlanError(
            f"The plan {spec.source} names {len(problems)} unknown {noun}: " + "; ".join(problems),
            problems=problems,
        )


@dataclass
class _Builder:
    spec: PlanSpec
    snapshot: ClusterSnapshot
    rules: PlanRules
    preconditions: Mapping[int, Precondition]
    working: ClusterSnapshot
    stages: list[Stage] = field(default_factory=list)
    migrate_snapshots: dict[int, ClusterSnapshot] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    rejections: list[Finding] = field(default_factory=list)
    blocked: list[int] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)
    links_Bps: Mapping[str, float] = field(default_factory=dict)
    pairs_Bps: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def planner(self, sources: Collection[str] = ()) -> StagePlanner:
        return StagePlanner(
            len(self.stages) + 1,
            self.working,
            self.rules,
            sources=sources,
            # PVE re-targets replication jobs as guests move: each stage sees the jobs as the
            # earlier stages leave them (see `ClusterSnapshot.after`).
            replication=self.working.replication,
            preconditions=self.preconditions if self.working is self.snapshot else {},
            links_Bps=self.links_Bps,
            pairs_Bps=self.pairs_Bps,
        )

    def close(self, sp: StagePlanner, label: str, node: str | None = None) -> Stage:
        stage = Stage(kind="migrate", label=label, node=node, moves=tuple(sp.moves))
        self.migrate_snapshots[len(self.stages)] = self.working
        self.stages.append(stage)
        for f in sp.findings:
            if f not in self.findings:
                self.findings.append(f)
        self.rejections += sp.rejections
        self.blocked += [v for v in sp.blocked if v not in self.blocked]
        self.nodes |= {m.source for m in sp.moves} | {m.target for m in sp.moves}
        self.working = self.working.after(sp.moves)
        return stage


def _rolling(b: _Builder, step: RollingStep, rules: Rules) -> None:
    nodes = list(step.nodes) if step.nodes is not None else sorted(b.working.nodes)
    for i, node in enumerate(nodes):
        b.nodes.add(node)
        targets = tuple(t for t in step.targets if t != node) if step.targets else None
        sp = b.planner(sources=[node])
        drain = DrainStep(nodes=(node,), targets=targets, where=step.where)
        plan_drain(
            sp,
            drain,
            rules,
            label=f"maintenance of {node}",
            staying_note="; it stays on the node during its maintenance",
        )
        drained = b.close(sp, f"drain {node}", node)
        if step.before is not None:
            b.stages.append(
                Stage(
                    kind="hook",
                    label=f"before hook for {node}",
                    node=node,
                    argv=step.before.argv,
                    timeout_s=step.before.timeout_s,
                    pass_credentials=step.before.pass_credentials,
                    require_drained=step.before.require_drained,
                )
            )
        b.stages.append(
            Stage(
                kind="wait-node",
                label=f"wait until {node} is online and the cluster quorate",
                node=node,
                timeout_s=step.wait_online_timeout_s,
            )
        )
        if step.after is not None:
            b.stages.append(
                Stage(
                    kind="hook",
                    label=f"after hook for {node}",
                    node=node,
                    argv=step.after.argv,
                    timeout_s=step.after.timeout_s,
                    pass_credentials=step.after.pass_credentials,
                )
            )
        if step.return_guests:
            sp = b.planner(sources=[])
            wanted = [
                Wanted(
                    m.vmid,
                    node,
                    why=f"back home to {node} after its maintenance",
                    with_local_disks=m.options.with_local_disks,
                    target_storage=(),
                )
                for m in drained.moves
            ]
            plan_moves(sp, wanted, rules, honour_exclusions=False)
            b.close(sp, f"return guests to {node}", node)
        if i + 1 < len(nodes):
            if step.pause_s > 0:
                b.stages.append(
                    Stage(kind="pause", label=f"pause {step.pause_s:g} s", timeout_s=step.pause_s)
                )
            if step.confirm_between:
                b.stages.append(
                    Stage(kind="confirm", label=f"confirm before the maintenance of {nodes[i + 1]}")
                )


def build_plan(
    spec: PlanSpec,
    snapshot: ClusterSnapshot,
    params: TimingParams | None = None,
    *,
    link_bits_per_s: float | Mapping[str, float] = DEFAULT_LINK_BITS_PER_S,
    replication: Mapping[int, Sequence[str]] | None = None,
    preconditions: Mapping[int, Precondition] | None = None,
    link_origin: Mapping[str, str] | None = None,
    learned_dirty: Mapping[int, tuple[str, str]] | None = None,
    link_pairs: Mapping[tuple[str, str], tuple[float, str]] | None = None,
) -> ExecutionPlan:
    """All checks + strategies + sequencing of `spec` on `snapshot`.

    `link_bits_per_s`: nominal migration link speed of every node (or per node; the API does not
    report it: `pvetool.links` learns it from recent migrations), and `link_origin` where each
    node's figure came from (shown in the plan's assumptions). With per-node speeds a slow-link
    node is avoided for large guests (`StagePlanner.slow_link`).
    `replication`: storage replication job targets per vmid; None: those of the snapshot
    (``/cluster/replication``).
    `preconditions`: PVE's own migrate preconditions per vmid, if fetched (merged into the
    checks). `learned_dirty`: vmid -> (dirty profile, where it came from) for guests whose last
    migration said how much they dirty (`pvetool.links`); the others' is guessed from CPU load.
    `link_pairs`: (node, node) -> (bits/s each way, where it came from) for node pairs whose
    path is slower than both nodes' links (`pvetool.links`): their streams share it, and a
    target behind such a path is avoided for large guests like a slow-link node.
    Raises `PlanError` only for unknown node names.
    """
    params = params or TimingParams()
    if replication is not None:
        snapshot = replace(snapshot, replication={k: tuple(v) for k, v in replication.items()})
    _check_nodes(spec, snapshot)
    rules = resolve_rules(spec.rules, snapshot)
    b = _Builder(
        spec=spec,
        snapshot=snapshot,
        rules=rules,
        preconditions=preconditions or {},
        working=snapshot,
    )
    learned_dirty = learned_dirty or {}
    link_pairs = link_pairs or {}
    network = replace(
        Network.of(link_bits_per_s, {k: bits for k, (bits, _) in link_pairs.items()}),
        dirty_profiles={vmid: profile for vmid, (profile, _) in learned_dirty.items()},
    )
    if isinstance(link_bits_per_s, Mapping):
        b.links_Bps = {n: network.link(n) for n in snapshot.nodes}
        b.pairs_Bps = dict(network.pair_Bps)
    b.findings += cluster_findings(snapshot)
    spec_rules, root_only = _root_only_options(spec.rules, snapshot)
    b.findings += root_only
    for step in spec.steps:
        _plan_step(b, step, spec_rules)
    caps, stages = _sequence(b, params, network, spec_rules)
    involved = {m.vmid for s in stages for m in s.moves} | set(b.blocked)
    for step in spec.steps:
        if isinstance(step, DrainStep):
            involved |= {g.vmid for n in step.nodes for g in snapshot.guests_on(n)}
    nodes = b.nodes | {m.target for s in stages for m in s.moves}
    facts = fp.facts(snapshot, involved, nodes)
    makespan = sum(s.predicted_makespan_s for s in stages if s.kind == "migrate") + sum(
        s.timeout_s for s in stages if s.kind == "pause"
    )
    return ExecutionPlan(
        name=spec.name,
        source=spec.source,
        stages=tuple(stages),
        caps=caps,
        findings=tuple(_ordered(b.findings)),
        blocked=tuple(b.blocked),
        fingerprint=fp.digest(facts),
        plan_digest=spec.digest,
        on_failure=spec.rules.on_failure,
        task_timeout_s=spec.rules.task_timeout_s,
        predicted_makespan_s=round(makespan, 3),
        rules=rules,
        rejections=tuple(b.rejections),
        facts=facts,
        assumptions=_assumptions(
            snapshot, params, link_bits_per_s, spec_rules, rules, link_origin or {}
        )
        + _pair_assumptions(link_pairs)
        + _dirty_assumptions(stages, learned_dirty),
    )


def _root_only_options(rules: Rules, snapshot: ClusterSnapshot) -> tuple[Rules, list[Finding]]:
    """The plan's rules without the migration options only root@pam may send, when this
    session is not root@pam, and the finding that says so (PVT-ROOT-ONLY).

    qemu-server ``src/PVE/API2/Qemu.pm`` ``migrate_vm`` (9.2.6 l.5577-5585) answers 400 "Only
    root may use this option." for ``force``, ``migration_type`` and ``migration_network``
    unless the request's user is exactly ``root@pam``; a token's user is its token id
    (pve-manager ``PVE/HTTPServer.pm`` ``auth_handler`` l.86), so no token ever qualifies.
    Without them PVE uses datacenter.cfg's ``migration:`` setting (pve-guest-common
    ``src/PVE/AbstractMigrate.pm`` ``migrate`` l.111-124), which the plan's timing then
    assumes too."""
    mig = rules.migration
    asked = {"type": mig.type, "network": mig.network}
    asked = {k: v for k, v in asked.items() if v}
    if not asked or snapshot.root_session:
        return rules, []
    dc = snapshot.datacenter
    who = snapshot.session_user or "unknown"
    kind = "token" if "!" in who else "user"
    wanted = ", ".join(f"{k}={v}" for k, v in asked.items())
    instead = f"type={dc.migration_type}" + (
        f", network={dc.migration_network}" if dc.migration_network else ""
    )
    setting = ",".join(f"{k}={v}" for k, v in asked.items())
    message = (
        f"migration {wanted} is not sent: PVE accepts migration_type and migration_network "
        f"only from root@pam, and this session is {kind} {who}. PVE uses the datacenter's "
        f"migration setting instead ({instead}). To migrate with {wanted}, set "
        f"'migration: {setting}' in datacenter.cfg (Datacenter > Options > Migration "
        "Settings, or PUT /cluster/options, which needs Sys.Modify on /), or run pvetool "
        "logged in as root@pam with a password"
    )
    stripped = replace(rules, migration=replace(mig, type=None, network=None))
    return stripped, [Finding("PVT-ROOT-ONLY", "warning", message)]


def _plan_step(b: _Builder, step: Step, rules: Rules) -> None:
    """One step of the plan as its migrate stage(s), on the cluster the earlier ones leave."""
    if isinstance(step, DrainStep):
        sp = b.planner(sources=step.nodes)
        plan_drain(sp, step, rules)
        b.nodes |= set(step.nodes)
        b.close(sp, f"drain {', '.join(step.nodes)}")
    elif isinstance(step, MoveStep):
        sp = b.planner()
        wanted = [Wanted(m.vmid, m.target, where_text(m.where)) for m in step.moves]
        plan_moves(sp, wanted, rules)
        b.close(sp, "move guests")
    elif isinstance(step, RebalanceStep):
        sp = b.planner()
        earlier = {m.vmid for stage in b.stages for m in stage.moves}
        plan_rebalance(sp, step, rules, moved_before=earlier)
        b.close(sp, f"rebalance by {step.by}")
    elif isinstance(step, RollingStep):
        _rolling(b, step, rules)


def _sequence(
    b: _Builder, params: TimingParams, network: Network, rules: Rules
) -> tuple[Caps, list[Stage]]:
    """The plan's caps and its stages with every migrate stage ordered and timed; a move
    predicted not to converge (or only with downtime escalations) gets a warning."""
    migrate = [i for i, s in enumerate(b.stages) if s.kind == "migrate"]
    caps, schedules = choose_schedule(
        [b.stages[i].moves for i in migrate],
        [b.migrate_snapshots[i] for i in migrate],
        params,
        network,
        fixed=rules.concurrency,
    )
    stages = list(b.stages)
    for i, schedule in zip(migrate, schedules, strict=True):
        stages[i] = replace(
            stages[i],
            moves=schedule.moves,
            predicted_makespan_s=schedule.makespan_s,
            bounds=schedule.bounds,
        )
        snap = b.migrate_snapshots[i]
        for move in schedule.moves:
            issue = _convergence(move, schedule.predicted[move.id])
            if issue is not None:
                b.findings.append(to_finding(issue, snap.guests[move.vmid], move.target))
    return caps, stages


def _convergence(move: Move, pred: Predicted) -> Issue | None:
    if pred.aborted:
        return Issue(
            "PVT-CONVERGENCE",
            "warning",
            "predicted not to converge: at the bandwidth it gets, its memory is dirtied "
            "faster than it is sent and PVE would abort the migration; give it more "
            "bandwidth (insecure migration, fewer in parallel) or migrate it offline",
        )
    if pred.escalations:
        return Issue(
            "PVT-CONVERGENCE",
            "warning",
            f"predicted to need {pred.escalations} downtime escalation(s): PVE doubles "
            "the allowed downtime until the last pass fits (predicted downtime "
            f"{move.predicted_downtime_ms or 0:.0f} ms)",
        )
    return None


_SEVERITY_ORDER = {"blocker": 0, "warning": 1, "info": 2}


def _ordered(findings: Sequence[Finding]) -> list[Finding]:
    unique = list(dict.fromkeys(findings))
    return sorted(
        unique,
        key=lambda f: (_SEVERITY_ORDER.get(f.severity, 3), f.vmid or 0, f.id, f.target or ""),
    )


def _assumptions(
    snapshot: ClusterSnapshot,
    params: TimingParams,
    link: float | Mapping[str, float],
    spec_rules: Rules,
    rules: PlanRules,
    origin: Mapping[str, str],
) -> tuple[tuple[str, str], ...]:
    if isinstance(link, Mapping):
        groups: dict[tuple[float, str], list[str]] = {}
        for node in sorted(link):
            key = (link[node], origin.get(node, "declared"))
            groups.setdefault(key, []).append(node)
        if len(groups) == 1:
            (bits, why), _ = next(iter(groups.items()))
            link_text = (
                f"{bits / 1e9:.3g} Gbit/s per node ({link_goodput_Bps(bits) / 1e9:.2f} GB/s "
                f"usable; {why})"
            )
        else:
            link_text = "; ".join(
                f"{_nodes_text(nodes, len(link))} {bits / 1e9:.3g} Gbit/s ({why})"
                for (bits, why), nodes in sorted(groups.items(), key=lambda kv: -len(kv[1]))
            )
    else:
        link_text = (
            f"{link / 1e9:g} Gbit/s per node ({link_goodput_Bps(link) / 2**20:.0f} MiB/s usable)"
        )
    mtype = spec_rules.migration.type or snapshot.datacenter.migration_type
    secure = mtype != "insecure"
    stream = stream_cap_Bps(params, secure)
    if rules.memory_headroom_bytes is not None:
        headroom = f"{rules.memory_headroom_bytes / 1024**3:.1f} GiB per node"
    else:
        headroom = f"{rules.memory_headroom_fraction:.0%} of each node's memory"
    return (
        ("link", link_text + ", both directions, shared max-min fairly"),
        ("migration", f"{mtype}: one stream carries at most {stream / 2**20:.0f} MiB/s"),
        ("memory headroom", headroom + " kept free, plus the host's own use"),
        ("RAM sent", "each running VM's used memory, plus pages dirtied meanwhile"),
        (
            "local disks",
            "their configured size (a live mirror sends all of an LVM or ZFS volume; of a file "
            "only its allocated bytes, so less)",
        ),
        ("HA", "HA-managed guests wait about 10 s for the HA manager before they start"),
    )


def _pair_assumptions(
    pairs: Mapping[tuple[str, str], tuple[float, str]],
) -> tuple[tuple[str, str], ...]:
    """One row per node pair whose path has its own figure (slower than both nodes'): its
    speed and where it came from."""
    rows = []
    for (a, b), (bits, why) in sorted(pairs.items()):
        a, b = (a, b) if a < b else (b, a)
        rows.append(
            (
                f"link {a} <-> {b}",
                f"{bits / 1e9:.3g} Gbit/s each way ({link_goodput_Bps(bits) / 2**20:.0f} MiB/s "
                f"usable), {why}; slower than both nodes' links, shared by the migrations "
                "between them",
            )
        )
    return tuple(rows)


def _dirty_assumptions(
    stages: Sequence[Stage], learned: Mapping[int, tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """Where each live-migrated guest's dirty-page profile came from: its own last migration
    (named per guest), else its CPU load."""
    guessed = "guessed from the guest's CPU load: below 6 % idle, below 25 % moderate, else hot"
    live = [m for s in stages for m in s.moves if m.profile is not None]
    known = [m for m in live if m.vmid in learned]
    if not known:
        return (("dirty pages", guessed),)
    rows = [
        (f"dirty pages of {m.vmid}", f"{learned[m.vmid][0]}, {learned[m.vmid][1]}")
        for m in sorted(known, key=lambda m: m.vmid)
    ]
    if len(known) < len(live):
        rows.append(("dirty pages of the others", guessed))
    return tuple(rows)


def _nodes_text(nodes: Sequence[str], of: int) -> str:
    if len(nodes) == of and of > 1:
        return "every node"
    if len(nodes) > 4:
        return f"{len(nodes)} nodes ({', '.join(nodes[:3])}, ...)"
    return ", ".join(nodes)


# --------------------------------------------------------------------------------------------
# Re-planning during a run


def replan(
    plan: ExecutionPlan,
    requests: Sequence[tuple[Move, Collection[str]]],
    snapshot: ClusterSnapshot,
) -> list[Move | None]:
    """Another target for each move (avoiding the nodes given with it) that passes every check
    on the *current* snapshot, in order; None where no target qualifies.

    Used when targets fail mid-run, with one snapshot for all the moves whose target failed
    together. Each move sees where the ones before it went; every other move of the plan whose
    guest is not yet on its target is counted as still coming (conservative), except those still
    waiting for their new target here. Never for pinned moves.
    """
    answers: list[Move | None] = []
    waiting = {move.id for move, _ in requests}
    for move, avoid in requests:
        waiting.discard(move.id)
        new = _replan_one(plan, move, snapshot, avoid, skip=waiting)
        answers.append(new)
        if new is not None:
            plan = plan.with_moves([new])
    return answers


def replan_move(
    plan: ExecutionPlan, move: Move, snapshot: ClusterSnapshot, avoid: Collection[str]
) -> Move | None:
    """`replan` for one move."""
    return replan(plan, [(move, avoid)], snapshot)[0]


def _replan_one(
    plan: ExecutionPlan,
    move: Move,
    snapshot: ClusterSnapshot,
    avoid: Collection[str],
    *,
    skip: Collection[str],
) -> Move | None:
    if move.pinned:
        return None
    guest = snapshot.guests.get(move.vmid)
    if guest is None:
        return None
    rules = plan.rules or PlanRules()
    stage_sources: set[str] = set()
    for stage in plan.stages:
        if any(m.id == move.id for m in stage.moves):
            stage_sources = {m.source for m in stage.moves}
    sp = StagePlanner(0, snapshot, rules, sources=stage_sources, replication=snapshot.replication)
    for other in plan.moves:
        if other.id == move.id or other.id in skip:
            continue
        other_guest = snapshot.guests.get(other.vmid)
        if other_guest is None or other_guest.node != other.source:
            continue  # done already (the snapshot shows it) or gone
        sp.placement.commit(other.id, other_guest, other.target)
    excluded = set(avoid) | {move.target, guest.node} | stage_sources
    candidates = [n for n in snapshot.nodes if n not in excluded]
    ev = sp.evaluate([MoveChoice(guest, move.options)], candidates)
    target = ev.best()
    if target is None:
        return None
    verdict = ev.verdicts[target][guest.vmid]
    rejected = tuple(
        f"{t} rejected for {guest.vmid}: {i.text}"
        for t, by in ev.verdicts.items()
        if t != target
        for v in by.values()
        for i in v.blockers
    ) + tuple(
        f"{t} rejected for {guest.vmid}: it failed or is to be avoided" for t in sorted(avoid)
    )
    return replace(
        move,
        source=guest.node,
        target=target,
        reason=f"re-planned after {move.target} failed: "
        + sp.choice_reason(ev, target, "best remaining target"),
        after=verdict.deps,
        rejected=rejected,
    )
