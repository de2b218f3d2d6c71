"""Dataclasses mirroring a YAML maintenance plan (`version: 1`, see docs/plan-format.md).

Produced only by `planner.loader` (the one YAML reader), consumed by checks, strategies and the
sequencer. Values are already converted to base units: bytes, bytes/second, seconds, fractions.
Every part that can be wrong keeps its `Where` (file, line, key path) so a finding or an error can
point at the plan line that caused it. Pure data: no I/O. Imports: stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FailurePolicy = Literal["stop", "continue", "skip-guest"]
BalanceBy = Literal["memory", "cpu", "both"]


@dataclass(frozen=True)
class Where:
    """A place in a plan file: `plan.yaml:12: steps[2].drain.targets[0]`."""

    file: str
    line: int
    path: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}"


NOWHERE = Where("<built-in>", 0, "")


@dataclass(frozen=True)
class Amount:
    """A share of a node's capacity (`fraction`, from `10%`) or an absolute amount (`8GiB`, `4`)."""

    fraction: float | None = None
    absolute: float | None = None

    def of(self, capacity: float) -> float:
        """The amount for a node with this capacity (bytes or CPUs)."""
        if self.fraction is not None:
            return self.fraction * capacity
        return self.absolute or 0.0


@dataclass(frozen=True)
class GuestSelector:
    """Guests named by vmid, tag or pool (a guest matching any of them is selected)."""

    vmids: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    """An affinity or anti-affinity group: its members should (not) share a node."""

    name: str
    members: GuestSelector
    where: Where = NOWHERE


@dataclass(frozen=True)
class Pin:
    """The selected guests may only run on these nodes."""

    members: GuestSelector
    nodes: tuple[str, ...]
    where: Where = NOWHERE


@dataclass(frozen=True)
class Exclusions:
    """Guests the plan never moves (templates are excluded unless `templates: false`)."""

    members: GuestSelector = GuestSelector()
    templates: bool = True
    where: Where = NOWHERE


@dataclass(frozen=True)
class Headroom:
    """Capacity kept free on every target after all planned moves."""

    memory: Amount = Amount()
    cpu: Amount = Amount()


@dataclass(frozen=True)
class Concurrency:
    """Caps on simultaneous migrations; None lets the sequencer choose from the timing model."""

    cluster: int | None = None
    per_source: int | None = None
    per_target: int | None = None


AUTO_CONCURRENCY = Concurrency()  # every cap chosen by the sequencer


@dataclass(frozen=True)
class MigrationSettings:
    """How migrations are started (None: the datacenter's setting / PVE's default)."""

    type: Literal["secure", "insecure"] | None = None
    network: str | None = None
    bwlimit_Bps: float | None = None
    with_local_disks: bool = False
    target_storage: tuple[tuple[str, str], ...] = ()  # (source storage, target storage); "*" = all


@dataclass(frozen=True)
class Rules:
    """Rules applying to every step of the plan."""

    exclude: Exclusions = Exclusions()
    anti_affinity: tuple[Group, ...] = ()
    affinity: tuple[Group, ...] = ()
    pins: tuple[Pin, ...] = ()
    headroom: Headroom = Headroom()
    cpu_overcommit: float = 4.0
    concurrency: Concurrency = Concurrency()
    migration: MigrationSettings = MigrationSettings()
    on_failure: FailurePolicy = "stop"
    task_timeout_s: float = 3600.0


@dataclass(frozen=True)
class GuestOverride:
    """Per-guest settings inside a drain step."""

    vmid: int
    target: str | None = None
    target_storage: tuple[tuple[str, str], ...] | None = None
    bwlimit_Bps: float | None = None
    offline: bool | None = None
    skip: bool = False
    where: Where = NOWHERE


@dataclass(frozen=True)
class DrainStep:
    """Move every movable guest off `nodes` (onto `targets`, if given)."""

    nodes: tuple[str, ...]
    targets: tuple[str, ...] | None = None
    with_local_disks: bool | None = None
    target_storage: tuple[tuple[str, str], ...] | None = None
    include_stopped: bool = True
    overrides: tuple[GuestOverride, ...] = ()
    where: Where = NOWHERE
    kind: Literal["drain"] = "drain"


@dataclass(frozen=True)
class Hook:
    """A command run without a shell: argv list, timeout; the node name is in its environment.
    `pass_credentials`: the connection's credentials too; `require_drained` (``before`` only):
    run only once the guests the drain moves off the node have left it."""

    argv: tuple[str, ...]
    timeout_s: float = 1800.0
    where: Where = NOWHERE
    pass_credentials: bool = False
    require_drained: bool = True


@dataclass(frozen=True)
class RollingStep:
    """For each node in order: drain, `before` hook, wait until online and quorate, `after`
    hook, bring its guests home; optionally confirm or pause between nodes."""

    nodes: tuple[str, ...] | None = None  # None: every node, in name order
    targets: tuple[str, ...] | None = None
    before: Hook | None = None
    after: Hook | None = None
    wait_online_timeout_s: float = 1800.0
    confirm_between: bool = False
    pause_s: float = 0.0
    return_guests: bool = True
    where: Where = NOWHERE
    kind: Literal["rolling"] = "rolling"


@dataclass(frozen=True)
class RebalanceStep:
    """Move guests until the spread of node load is within `threshold`."""

    by: BalanceBy = "memory"
    memory_weight: float = 1.0
    cpu_weight: float = 0.0
    threshold: float = 0.10  # fraction: max - min of node load (memory or weighted)
    max_moves: int | None = None
    exclude_nodes: tuple[str, ...] = ()
    min_improvement: float = 0.0  # fraction by which the spread must shrink to move anything
    where: Where = NOWHERE
    kind: Literal["rebalance"] = "rebalance"


@dataclass(frozen=True)
class ExplicitMove:
    vmid: int
    target: str
    where: Where = NOWHERE


@dataclass(frozen=True)
class MoveStep:
    """Explicit moves (`vmid -> node`), e.g. a planned re-layout."""

    moves: tuple[ExplicitMove, ...]
    where: Where = NOWHERE
    kind: Literal["move"] = "move"


Step = DrainStep | RollingStep | RebalanceStep | MoveStep


@dataclass(frozen=True)
class PlanSpec:
    """A loaded, well-formed plan (not yet checked against a cluster)."""

    version: int
    name: str
    description: str = ""
    rules: Rules = Rules()
    steps: tuple[Step, ...] = ()
    source: str = "<string>"
    digest: str = ""  # sha256 of the plan text
    node_refs: tuple[tuple[str, Where], ...] = field(default=())  # every node name it mentions
    # `links:` migration link speed in bits/s per node name or "default" (issue 14)
    links: tuple[tuple[str, float], ...] = ()
