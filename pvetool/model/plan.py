"""Plans: findings, moves, stages, rules and the `ExecutionPlan` the planner hands to the
executor.

Imports: the standard library, `pvetool.errors` and the other model modules. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from pvetool.model.types import GuestKind

# --------------------------------------------------------------------------------------------
# Plans: findings, moves and the execution plan the planner hands to the executor

Severity = Literal["blocker", "warning", "info"]
StageKind = Literal["migrate", "hook", "wait-node", "confirm", "pause"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason from the pre-flight checks: a stable id (e.g. ``PVT-STORAGE``), a severity,
    the guest and candidate target it concerns (None: the whole plan/cluster), and a sentence
    for the administrator. `where` points at the plan line that caused it, if any."""

    id: str
    severity: Severity
    message: str
    vmid: int | None = None
    target: str | None = None
    where: str | None = None

    @property
    def blocks(self) -> bool:
        return self.severity == "blocker"


@dataclass(frozen=True, slots=True)
class MoveOptions:
    """How one migration is started (PVE's parameters, already decided)."""

    online: bool = False  # qemu: live migration of a running VM
    restart: bool = False  # lxc: restart migration of a running container
    with_local_disks: bool = False
    target_storage: tuple[tuple[str, str], ...] = ()  # ("*", "ceph") maps every storage
    bwlimit_kib_s: int | None = None
    migration_type: Literal["secure", "insecure"] | None = None
    migration_network: str | None = None
    ha: bool = False  # goes through PVE's HA stack (hamigrate -> qmigrate)
    shutdown: bool = False  # qemu: shut the running VM down, migrate offline, start it again


@dataclass(frozen=True, slots=True)
class Move:
    """One planned migration, with why it goes where it goes and what it is predicted to cost.

    `after` lists ids of moves that must have finished first (e.g. the move that frees the
    memory this one needs). `pinned` means the target is fixed (explicit move, pin, override):
    the executor must not re-plan it onto another node.
    """

    id: str
    vmid: int
    kind: GuestKind
    name: str
    source: str
    target: str
    options: MoveOptions
    reason: str
    memory_bytes: int = 0
    send_bytes: int = 0  # RAM + local disks expected on the wire
    predicted_start_s: float = 0.0  # seconds after the stage starts
    predicted_end_s: float = 0.0
    predicted_downtime_ms: float | None = None
    after: tuple[str, ...] = ()
    pinned: bool = False
    rejected: tuple[str, ...] = ()  # "pve3 rejected for 101: needs 8.0 GiB, 3.5 GiB free ..."
    profile: str | None = None  # dirty-page profile the prediction assumed (idle/moderate/hot)
    predicted_sent_bytes: float = 0.0  # bytes on the wire incl. re-sent dirty pages

    @property
    def copies(self) -> bool:
        """Whether the migration puts bytes on the migration link: a live VM's RAM, or disks
        copied. A container restart or an offline move on shared storage sends none (PVE
        moves the config and, for the restart, stops and starts the guest)."""
        return self.send_bytes > 0 or (self.kind == "qemu" and self.options.online)


@dataclass(frozen=True, slots=True)
class Caps:
    """Concurrency limits of a sliding window (never waves).

    `copies_only`: the per-source and per-target caps count only moves that put bytes on a
    link (`Move.copies`): they limit the streams sharing each node's migration link, and a
    container restart on shared storage does not wait behind them or hold a stream's slot
    (issue 14: concurrency per link). The sequencer sets it when it chooses the caps; caps a
    plan declares (`concurrency:`) count every move, as written.
    """

    cluster: int = 4
    per_source: int = 2
    per_target: int = 2
    copies_only: bool = False

    def holds_slot(self, move: Move) -> bool:
        """Whether `move` takes one of its source's and target's slots while it runs."""
        return move.copies or not self.copies_only


@dataclass(frozen=True, slots=True)
class Bounds:
    """Physical lower bounds of a stage (docs/timing-model.md) and which link bounds them."""

    lb_pure_s: float
    lb_dirty_s: float
    bound_by: str


@dataclass(frozen=True, slots=True)
class Stage:
    """A step of the execution: a batch of moves, a hook, waiting for a node, or a pause.

    For rolling maintenance the planner emits, per node: migrate (drain), hook (before),
    wait-node (online + quorate), hook (after), migrate (bring the guests home). A hook runs
    with the connection's credentials in its environment only when `pass_credentials`; with
    `require_drained` it runs only once every guest the stages before it move off its node has
    left (the executor checks the cluster first).
    """

    kind: StageKind
    label: str
    node: str | None = None
    moves: tuple[Move, ...] = ()
    argv: tuple[str, ...] = ()
    timeout_s: float = 0.0
    predicted_makespan_s: float = 0.0
    bounds: Bounds | None = None
    pass_credentials: bool = False
    require_drained: bool = True


@dataclass(frozen=True, slots=True)
class GuestGroup:
    """A plan rule's group resolved to vmids when the plan was computed."""

    name: str
    vmids: tuple[int, ...]
    where: str | None = None


@dataclass(frozen=True, slots=True)
class GuestPin:
    """Guests that may only run on `nodes` (resolved to vmids)."""

    vmids: tuple[int, ...]
    nodes: tuple[str, ...]
    where: str | None = None


@dataclass(frozen=True, slots=True)
class PlanRules:
    """The plan's rules as the planner applied them, carried by the `ExecutionPlan` so a saved
    plan can be re-checked and a failed move re-planned without the YAML file.

    Memory headroom: `memory_headroom_bytes` when set, else `memory_headroom_fraction` of the
    node's memory (the planner's default is 5 %, on top of the host's measured own use).
    CPU: a target may carry `cpu_overcommit` vCPUs of running guests per CPU, minus the CPU
    headroom (`cpu_headroom_cpus`, else the fraction).
    """

    memory_headroom_fraction: float = 0.05
    memory_headroom_bytes: float | None = None
    cpu_headroom_fraction: float = 0.0
    cpu_headroom_cpus: float | None = None
    cpu_overcommit: float = 4.0
    anti_affinity: tuple[GuestGroup, ...] = ()
    affinity: tuple[GuestGroup, ...] = ()
    pins: tuple[GuestPin, ...] = ()
    excluded: tuple[int, ...] = ()

    def memory_headroom_for(self, node_memory_bytes: int) -> int:
        if self.memory_headroom_bytes is not None:
            return int(self.memory_headroom_bytes)
        return int(self.memory_headroom_fraction * node_memory_bytes)

    def cpu_limit_for(self, cpus: int) -> float:
        headroom = (
            self.cpu_headroom_cpus
            if self.cpu_headroom_cpus is not None
            else self.cpu_headroom_fraction * cpus
        )
        return cpus * self.cpu_overcommit - headroom


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """What the executor runs: stages in order, caps, and everything the checks found.

    `fingerprint` identifies the cluster state the plan was computed on (drift check before
    applying a saved plan); `plan_digest` the plan file's text.
    """

    name: str
    source: str
    stages: tuple[Stage, ...]
    caps: Caps
    findings: tuple[Finding, ...] = ()
    blocked: tuple[int, ...] = ()  # guests that should move but cannot (see findings)
    fingerprint: str = ""
    plan_digest: str = ""
    on_failure: Literal["stop", "continue", "skip-guest"] = "stop"
    task_timeout_s: float = 3600.0
    predicted_makespan_s: float = 0.0
    # Optional additions (planner): the rules applied, every rejected candidate target of a
    # guest that found another target (the rest of the check matrix), the facts the
    # fingerprint hashes (for `drift`), and the assumptions of the predicted timeline.
    rules: PlanRules | None = None
    rejections: tuple[Finding, ...] = ()
    facts: tuple[tuple[str, str], ...] = ()
    assumptions: tuple[tuple[str, str], ...] = ()

    @property
    def moves(self) -> tuple[Move, ...]:
        return tuple(m for s in self.stages for m in s.moves)

    def with_moves(self, moves: Iterable[Move]) -> ExecutionPlan:
        """This plan with some moves replaced by others of the same id (re-planned ones)."""
        new = {m.id: m for m in moves}
        stages = tuple(
            replace(s, moves=tuple(new.get(m.id, m) for m in s.moves)) for s in self.stages
        )
        return replace(self, stages=stages)

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.blocks)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def can_run(self) -> bool:
        return not self.blockers
