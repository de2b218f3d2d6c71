"""Sequencer: planned moves -> order, concurrency caps and a predicted timeline per stage.

The executor runs the stages in order. Within a migrate stage it runs a *sliding window*: at the
start and whenever a migration ends, it walks the moves in order and starts every move whose
`after` moves have all ended and that fits the `Caps` (running migrations in the cluster, out of
its source, into its target); a move that cannot start yet is passed over, not waited for.
`simulate` replays exactly that rule with the timing model (docs/timing-model.md):

- per move: fixed phases (lock/checks/ssh, target start, tunnel; HA manager delay for HA
  guests; container shutdown/start), then local disks one after the other, then the RAM
  pre-copy (`timing.Precopy`, stepped with the bandwidth the move gets), stop-and-copy, resume
  and cleanup;
- bandwidth: max-min fair sharing (`timing.max_min_fair`) of each source's uplink and each
  target's downlink (and, for a node pair with its own figure, the pair's path that way:
  `Network.resources`), each flow capped at one stream (`stream_cap_Bps`, bwlimit), recomputed
  at every start, phase change and end.

Caps and order are chosen from that model unless the plan fixes them. Per-source concurrency:
every value from 1 to about ceil(link / stream cap) + 2 (the smallest that fills the link is
about ceil(link / stream cap) + 1) and a few higher ones up to 12 (many small guests hide their
fixed per-migration time only with more of them in flight); the same per target; the cluster
cap per-source x sources (at most 16). Orders: as planned, largest first (best when
stream-capped), smallest first (best mean completion when link-bound), hot guests first / last
(a hot guest with few competitors re-sends fewer pages), and largest first spread round-robin
over targets. Moves that free memory for others always come first. The lowest predicted
makespan wins; within 3 % the smaller concurrency (fewer parallel streams: less risk, less
re-sent memory).

Stages of more than `estimate.LARGE_STAGE_MOVES` moves (a rebalance of thousands of guests)
are not simulated: the simulation costs moves x events, and the search above runs it a dozen
times. `estimate.window_estimate` (each move at its full-window share of its links, pre-copy in
closed form) ranks their candidates, with the same rules; `estimate.estimate` (the window and
max-min fair sharing of `simulate`, each transfer a fixed number of bytes) predicts the chosen
order and caps. A candidate concurrency whose `estimate_floor` is beyond the tolerance of the
best one so far is skipped. Drains (fewer moves) keep the simulation and its predictions.

Lower bounds per stage (`Bounds`): LB_pure and LB_dirty as in the timing model, over every
source uplink, every target downlink, every pair path with a figure (each direction) and every
single stream; `bound_by` names the binding one.

Inputs the cluster does not report are assumptions, listed in `ExecutionPlan.assumptions`:
link speed (default 10 Gbit/s per node), the bytes a live VM sends (its used memory), local
disk bytes (their configured size: what a drive-mirror of a block device sends, an upper bound
for files), and each guest's dirty-page profile: learned from its own last migration when
known (`Network.dirty_profiles`, `pvetool.links`), else guessed from its CPU load
(`timing.profile_from_cpu`: below 6 % idle, below 25 % moderate, else hot).

Pure: no I/O, no clock. Imports: the standard library, `pvetool.model`, `pvetool.planner.spec`,
`pvetool.planner.estimate`, `pvetool.timing`.
"""

from __future__ import annotations

import copy
import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pvetool.model import (
    Bounds,
    Caps,
    ClusterSnapshot,
    DatacenterOptions,
    Guest,
    Move,
)
from pvetool.planner.estimate import (
    LARGE_STAGE_MOVES,
    estimate,
    estimate_floor,
    live_sent_bytes,
    window_estimate,
)
from pvetool.planner.spec import AUTO_CONCURRENCY, Concurrency
from pvetool.timing import (
    DIRTY_PROFILES,
    DirtyProfile,
    Flow,
    Precopy,
    TimingParams,
    fixed_time_s,
    link_goodput_Bps,
    max_min_fair,
    profile_from_cpu,
    solo_migration,
    stream_cap_Bps,
)

__all__ = [
    "DEFAULT_LINK_BITS_PER_S",
    "Network",
    "Predicted",
    "StageSchedule",
    "Timing",
    "choose_schedule",
    "estimate_profile",
    "move_timing",
    "simulate",
    "stage_bounds",
]

DEFAULT_LINK_BITS_PER_S = 10e9
MAX_DEFAULT_CLUSTER_CAP = 16
MAX_DEFAULT_PER_SOURCE = 12
CONCURRENCY_TOLERANCE = 0.03  # prefer fewer parallel migrations unless more is >3 % faster
_EPS = 1e-9
_HORIZON_S = 5.0  # longest step between events: bounds the pre-copy work a finish wastes
_PROFILE_RANK = {"idle": 0, "moderate": 1, "hot": 2}


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Network:
    """Usable bytes/second of each node's migration link (each direction), and of the path
    between node pairs known to be slower than both ends (`pvetool.links`).

    A stream from A to B crosses A's uplink, B's downlink and, when the pair has a figure, the
    A -> B direction of their path: each is a capacity its streams share max-min fairly
    (`resources`). Without pair figures nothing costs more than per-node links."""

    goodput_Bps: Mapping[str, float]
    default_Bps: float = link_goodput_Bps(DEFAULT_LINK_BITS_PER_S)
    # Dirty profile per vmid learned from that guest's last migration (others: `estimate_profile`)
    dirty_profiles: Mapping[int, str] = field(default_factory=dict)
    # (a, b) with a < b -> usable bytes/s of their path, each direction
    pair_Bps: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        link_bits_per_s: float | Mapping[str, float],
        pair_bits_per_s: Mapping[tuple[str, str], float] | None = None,
    ) -> Network:
        pairs = {
            (a, b) if a < b else (b, a): link_goodput_Bps(bits)
            for (a, b), bits in (pair_bits_per_s or {}).items()
        }
        if isinstance(link_bits_per_s, Mapping):
            return cls({n: link_goodput_Bps(b) for n, b in link_bits_per_s.items()}, pair_Bps=pairs)
        return cls({}, link_goodput_Bps(link_bits_per_s), pair_Bps=pairs)

    def link(self, node: str) -> float:
        return self.goodput_Bps.get(node, self.default_Bps)

    def pair(self, source: str, target: str) -> float | None:
        """The path's own figure between two nodes (either order), None without one."""
        if not self.pair_Bps:
            return None
        return self.pair_Bps.get((source, target) if source < target else (target, source))

    def path(self, source: str, target: str) -> float:
        """Usable bytes/s of one stream alone from `source` to `target`, stream cap aside."""
        rate = min(self.link(source), self.link(target))
        pair = self.pair(source, target)
        return rate if pair is None else min(rate, pair)

    def resources(
        self, moves: Iterable[Move]
    ) -> tuple[dict[str, float], dict[str, tuple[str, ...]]]:
        """The capacities `moves` share (``up:A``, ``down:B``, ``path:A>B``) and each move's
        resources, by move id: what `timing.max_min_fair` shares."""
        capacity: dict[str, float] = {}
        routes: dict[str, tuple[str, ...]] = {}
        for m in moves:
            up, down = f"up:{m.source}", f"down:{m.target}"
            capacity[up] = self.link(m.source)
            capacity[down] = self.link(m.target)
            pair = self.pair(m.source, m.target)
            if pair is None:
                routes[m.id] = (up, down)
            else:
                name = f"path:{m.source}>{m.target}"
                capacity[name] = pair
                routes[m.id] = (up, down, name)
        return capacity, routes


def estimate_profile(guest: Guest) -> str:
    """Dirty-page profile guessed from the guest's CPU load (PVE does not report dirty rates)."""
    return profile_from_cpu(guest.cpu_fraction)


@dataclass(frozen=True)
class Timing:
    """What the timing model needs to know about one move."""

    move_id: str
    source: str
    target: str
    mode: str  # "live" (qemu pre-copy), "offline" (config + disks), "restart" (lxc / shutdown)
    ram_bytes: float
    disk_bytes: float
    profile: str
    cap_Bps: float
    secure: bool
    pre_s: float  # fixed time before the transfers
    post_s: float  # fixed time after them (live: t_res + t_post; stop-and-copy is added)
    lb_fixed_s: float  # lower bound of the fixed time (for LB_pure / LB_dirty)
    downtime_all: bool  # the guest is down for the whole migration (restart, shutdown)

    @property
    def dirty(self) -> DirtyProfile:
        return DIRTY_PROFILES[self.profile]


def move_timing(
    move: Move,
    guest: Guest,
    params: TimingParams,
    datacenter: DatacenterOptions,
    profile: str | None = None,
) -> Timing:
    """The timing-model view of a planned move (`profile`: the guest's learned dirty profile;
    None: guessed from its CPU load)."""
    opts = move.options
    secure = (opts.migration_type or datacenter.migration_type) != "insecure"
    bwlimit: float | None
    if opts.bwlimit_kib_s is not None:
        bwlimit = float(opts.bwlimit_kib_s) or None
    else:
        bwlimit = datacenter.bwlimit_migration_kib_s or datacenter.bwlimit_default_kib_s or None
    cap = stream_cap_Bps(params, secure, bwlimit)
    ha_s = (params.ha_crm_max_s + params.ha_lrm_max_s) / 2 if opts.ha else 0.0
    profile = profile or estimate_profile(guest)
    shutdown_s = (params.lxc_shutdown_min_s + params.lxc_shutdown_max_s) / 2
    start_s = (params.lxc_start_min_s + params.lxc_start_max_s) / 2
    if guest.kind == "qemu" and opts.online:
        ram = float(guest.used_memory_bytes or guest.memory_bytes * 0.7)
        disks = float(move.send_bytes - ram) if opts.with_local_disks else 0.0
        start = params.t_start_s + (params.t_start_secure_extra_s if secure else 0.0)
        return Timing(
            move.id,
            move.source,
            move.target,
            "live",
            ram,
            max(0.0, disks),
            profile,
            cap,
            secure,
            pre_s=ha_s + params.t_pre_s + start,
            post_s=params.t_res_s + params.t_post_s,
            lb_fixed_s=fixed_time_s(params, secure),
            downtime_all=False,
        )
    disks = float(move.send_bytes)
    if guest.kind == "lxc":
        running = opts.restart
        return Timing(
            move.id,
            move.source,
            move.target,
            "restart" if running else "offline",
            0.0,
            disks,
            profile,
            cap,
            secure,
            # prepare (checks, ssh: T_pre / 2, docs/timing-model.md), then the shutdown
            pre_s=ha_s + params.t_pre_s / 2 + (shutdown_s if running else 0.0),
            post_s=params.lxc_move_s + (start_s if running else 0.0),
            lb_fixed_s=params.t_pre_s / 2
            + params.lxc_move_s
            + ((params.lxc_shutdown_min_s + params.lxc_start_min_s) if running else 0.0),
            downtime_all=running,
        )
    down = opts.shutdown
    return Timing(
        move.id,
        move.source,
        move.target,
        "restart" if down else "offline",
        0.0,
        disks,
        profile,
        cap,
        secure,
        pre_s=ha_s + params.t_pre_s + (shutdown_s if down else 0.0),
        post_s=params.t_post_s + (start_s if down else 0.0),
        lb_fixed_s=params.t_pre_s
        + params.t_post_s
        + ((params.lxc_shutdown_min_s + params.lxc_start_min_s) if down else 0.0),
        downtime_all=down,
    )


# --------------------------------------------------------------------------------------------
# Simulation of the sliding window


@dataclass(frozen=True)
class Predicted:
    start_s: float
    end_s: float
    downtime_s: float | None
    sent_bytes: float
    aborted: bool = False
    escalations: int = 0


class _Run:
    __slots__ = (
        "disk_left",
        "downtime_s",
        "move",
        "phase",
        "precopy",
        "rate",
        "start_s",
        "timer",
        "timing",
    )

    def __init__(self, move: Move, timing: Timing, start_s: float, params: TimingParams) -> None:
        self.move = move
        self.timing = timing
        self.start_s = start_s
        self.phase = "pre"
        self.timer = timing.pre_s
        self.disk_left = timing.disk_bytes
        self.rate = 0.0
        self.downtime_s: float | None = None
        self.precopy: Precopy | None = None
        if timing.mode == "live":
            dirty = timing.dirty
            self.precopy = Precopy(
                max(timing.ram_bytes, 1024**2), dirty.rate_Bps, dirty.wss_bytes, params
            )


def simulate(
    order: Sequence[Move],
    timings: Mapping[str, Timing],
    caps: Caps,
    network: Network,
    params: TimingParams,
) -> dict[str, Predicted]:
    """Predicted start/end of every move when a sliding window runs `order` under `caps`."""
    pending = list(order)
    done: dict[str, Predicted] = {}
    active: list[_Run] = []
    by_source: dict[str, int] = {}
    by_target: dict[str, int] = {}
    stage_ids = {m.id for m in order}
    capacity, routes = network.resources(order)
    now = 0.0
    while pending or active:
        started = []
        for move in pending:
            if len(active) >= caps.cluster:
                break
            if any(dep in stage_ids and dep not in done for dep in move.after):
                continue
            slot = caps.holds_slot(move)
            if slot and by_source.get(move.source, 0) >= caps.per_source:
                continue
            if slot and by_target.get(move.target, 0) >= caps.per_target:
                continue
            active.append(_Run(move, timings[move.id], now, params))
            if slot:
                by_source[move.source] = by_source.get(move.source, 0) + 1
                by_target[move.target] = by_target.get(move.target, 0) + 1
            started.append(move)
        for move in started:
            pending.remove(move)
        _transitions(active, params)
        finished = [r for r in active if r.phase == "done"]
        if finished:
            for run in finished:
                _finish(run, now, done, active, by_source, by_target, caps)
            continue
        if not active:
            # Unreachable with dependencies on earlier moves only; never loop forever.
            for move in pending:
                done[move.id] = Predicted(now, now, None, 0.0)
            break
        _share_links(active, capacity, routes)
        now += _advance(active)
    return done


def _share_links(
    active: list[_Run], capacity: Mapping[str, float], routes: Mapping[str, tuple[str, ...]]
) -> None:
    """Give every run that is copying (disks or RAM) its max-min fair share of the source's
    uplink, the target's downlink and the pair's path if it has a figure (`routes`,
    `Network.resources`), capped at one stream."""
    flows = [r for r in active if r.phase in ("disk", "ram")]
    if not flows:
        return
    rates = max_min_fair([Flow(routes[r.move.id], r.timing.cap_Bps) for r in flows], capacity)
    for run, rate in zip(flows, rates, strict=True):
        run.rate = rate


def _advance(active: list[_Run]) -> float:
    """Move every run forward to the next event (a phase ends, a disk is copied, a pre-copy
    finishes or gives up; at most `_HORIZON_S`) and return how far that was."""
    dt = _HORIZON_S
    for run in active:
        if run.phase in ("pre", "post"):
            dt = min(dt, run.timer)
        elif run.phase == "disk" and run.rate > 0:
            dt = min(dt, run.disk_left / run.rate)
    horizon = dt
    trials: dict[int, tuple[Precopy, float]] = {}
    for i, run in enumerate(active):
        if run.phase != "ram" or run.precopy is None:
            continue
        trial = copy.copy(run.precopy)
        trial.step(run.rate, horizon)
        took = trial.elapsed_s - run.precopy.elapsed_s
        trials[i] = (trial, took)
        if trial.finished or trial.aborted:
            dt = min(dt, took)
    dt = max(dt, 0.0)
    for i, run in enumerate(active):
        if run.phase in ("pre", "post"):
            run.timer -= dt
        elif run.phase == "disk":
            run.disk_left -= run.rate * dt
        elif run.phase == "ram" and run.precopy is not None:
            trial, took = trials[i]
            if abs(took - dt) <= _EPS or (dt >= horizon - _EPS):
                run.precopy = trial
            else:
                run.precopy.step(run.rate, dt)
    return dt


def _transitions(active: list[_Run], params: TimingParams) -> None:
    """Advance every run through phases that have ended (several may end at once)."""
    for run in active:
        changed = True
        while changed:
            changed = False
            timing = run.timing
            if run.phase == "pre" and run.timer <= _EPS:
                run.phase = (
                    "disk" if run.disk_left > 1.0 else "ram" if timing.mode == "live" else "post"
                )
                if run.phase == "post":
                    run.timer = timing.post_s
                changed = True
            elif run.phase == "disk" and run.disk_left <= 1.0:
                run.phase = "ram" if timing.mode == "live" else "post"
                if run.phase == "post":
                    run.timer = timing.post_s
                changed = True
            elif (
                run.phase == "ram"
                and run.precopy is not None
                and (run.precopy.finished or run.precopy.aborted)
            ):
                stop_copy = detect = 0.0
                if run.precopy.finished:
                    rate = run.rate if run.rate > 0 else timing.cap_Bps
                    stop_copy = run.precopy.stop_copy_s(rate)
                    run.downtime_s = stop_copy + params.t_res_s
                    # PVE sees "completed" only at its next query-migrate poll (qemu-server
                    # QemuMigrate.pm phase2: usleep 1 s, 100 ms near the end); so does the emulator
                    elapsed = run.precopy.elapsed_s
                    detect = run.precopy.next_poll_after_s(elapsed + stop_copy) - elapsed
                run.phase = "post"
                run.timer = max(stop_copy, detect) + timing.post_s
                changed = True
            elif run.phase == "post" and run.timer <= _EPS:
                run.phase = "done"


def _finish(
    run: _Run,
    now: float,
    done: dict[str, Predicted],
    active: list[_Run],
    by_source: dict[str, int],
    by_target: dict[str, int],
    caps: Caps,
) -> None:
    active.remove(run)
    if caps.holds_slot(run.move):
        by_source[run.move.source] -= 1
        by_target[run.move.target] -= 1
    timing = run.timing
    downtime = run.downtime_s
    if timing.downtime_all:
        downtime = now - run.start_s
    sent = timing.disk_bytes
    aborted = False
    escalations = 0
    if run.precopy is not None:
        sent += run.precopy.sent_bytes
        aborted = run.precopy.aborted
        escalations = run.precopy.escalations
    done[run.move.id] = Predicted(run.start_s, now, downtime, sent, aborted, escalations)


# --------------------------------------------------------------------------------------------
# Lower bounds


def stage_bounds(
    moves: Sequence[Move],
    timings: Mapping[str, Timing],
    network: Network,
    params: TimingParams,
    labels: Mapping[str, str] | None = None,
    cache: dict[object, Any] | None = None,
) -> Bounds:
    """LB_pure / LB_dirty of a stage: every uplink, every downlink, every single stream
    (`cache`: the pre-copies `estimate` computed, for a large stage)."""
    if not moves:
        return Bounds(0.0, 0.0, "nothing to move")
    labels = labels or {}
    up_pure: dict[str, float] = {}
    up_dirty: dict[str, float] = {}
    down_pure: dict[str, float] = {}
    down_dirty: dict[str, float] = {}
    streams_pure: list[tuple[float, str]] = []
    streams_dirty: list[tuple[float, str]] = []
    path_pure: dict[tuple[str, str], float] = {}
    path_dirty: dict[tuple[str, str], float] = {}
    cache = {} if cache is None else cache
    for move in moves:
        t = timings[move.id]
        rate = min(t.cap_Bps, network.path(t.source, t.target))
        pure = t.ram_bytes + t.disk_bytes
        dirty = t.disk_bytes
        if t.mode == "live" and len(moves) > LARGE_STAGE_MOVES:
            dirty += live_sent_bytes(t, rate, params, cache)  # the same, in closed form
        elif t.mode == "live":
            dirty += solo_migration(t.ram_bytes, t.dirty, rate, params, t.secure).sent_bytes
        up_pure[t.source] = up_pure.get(t.source, 0.0) + pure
        up_dirty[t.source] = up_dirty.get(t.source, 0.0) + dirty
        down_pure[t.target] = down_pure.get(t.target, 0.0) + pure
        down_dirty[t.target] = down_dirty.get(t.target, 0.0) + dirty
        if network.pair_Bps and network.pair(t.source, t.target) is not None:
            way = (t.source, t.target)
            path_pure[way] = path_pure.get(way, 0.0) + pure
            path_dirty[way] = path_dirty.get(way, 0.0) + dirty
        name = labels.get(move.id, str(move.vmid))
        streams_pure.append((t.lb_fixed_s + pure / rate, f"stream of {name}"))
        streams_dirty.append((t.lb_fixed_s + dirty / rate, f"stream of {name}"))

    def terms(
        up: dict[str, float],
        down: dict[str, float],
        paths: dict[tuple[str, str], float],
        streams: list[tuple[float, str]],
    ) -> list[tuple[float, str]]:
        out = [(b / network.link(n), f"uplink of {n}") for n, b in up.items()]
        out += [(b / network.link(n), f"downlink of {n}") for n, b in down.items()]
        out += [
            (b / (network.pair(s, d) or network.path(s, d)), f"path {s} -> {d}")
            for (s, d), b in paths.items()
        ]
        return out + streams

    pure_terms = terms(up_pure, down_pure, path_pure, streams_pure)
    dirty_terms = terms(up_dirty, down_dirty, path_dirty, streams_dirty)
    # Ties: a link term wins over a stream term (as timing.drain_lower_bounds does).
    best_dirty = max(dirty_terms, key=lambda x: (x[0], not x[1].startswith("stream")))
    return Bounds(
        lb_pure_s=max(v for v, _ in pure_terms),
        lb_dirty_s=best_dirty[0],
        bound_by=best_dirty[1],
    )


# --------------------------------------------------------------------------------------------
# Choosing caps and order


def _topological(moves: Sequence[Move], key: Callable[[Move], tuple[object, ...]]) -> list[Move]:
    """Moves by `key`, but never before a move it waits for; moves others wait for first."""
    ids = {m.id for m in moves}
    needed = {dep for m in moves for dep in m.after if dep in ids}
    waiting = {m.id: {d for d in m.after if d in ids} for m in moves}
    dependents: dict[str, list[Move]] = {}
    for m in moves:
        for dep in waiting[m.id]:
            dependents.setdefault(dep, []).append(m)
    index = {m.id: i for i, m in enumerate(moves)}

    def prio(m: Move) -> tuple[object, ...]:
        return (m.id not in needed, *key(m), index[m.id])

    heap = [(prio(m), index[m.id], m) for m in moves if not waiting[m.id]]
    heapq.heapify(heap)
    out: list[Move] = []
    while heap:
        _, _, move = heapq.heappop(heap)
        out.append(move)
        for nxt in dependents.get(move.id, []):
            waiting[nxt.id].discard(move.id)
            if not waiting[nxt.id]:
                heapq.heappush(heap, (prio(nxt), index[nxt.id], nxt))
    if len(out) < len(moves):  # a cycle cannot be planned; keep the rest in planned order
        out += [m for m in moves if m not in out]
    return out


def _orders(
    moves: Sequence[Move], timings: Mapping[str, Timing], network: Network | None = None
) -> dict[str, list[Move]]:
    def size(m: Move) -> float:
        return timings[m.id].ram_bytes + timings[m.id].disk_bytes

    def alone_s(m: Move) -> float:
        """The move's duration alone on its links: with per-node link speeds a move to a slow
        node can bound the makespan though it is not the largest (issue 14: bottleneck first)."""
        t = timings[m.id]
        rate = t.cap_Bps
        if network is not None:
            rate = min(rate, network.path(m.source, m.target))
        return t.pre_s + t.post_s + size(m) / max(rate, 1.0)

    def rank(m: Move) -> int:
        t = timings[m.id]
        return _PROFILE_RANK.get(t.profile, 0) if t.mode == "live" else -1

    orders = {
        "as planned": _topological(moves, lambda m: ()),
        "largest first": _topological(moves, lambda m: (-size(m),)),
        "longest first": _topological(moves, lambda m: (-alone_s(m), -size(m))),
        "smallest first": _topological(moves, lambda m: (size(m),)),
        "hot first": _topological(moves, lambda m: (-rank(m), -size(m))),
        "hot last": _topological(moves, lambda m: (rank(m), -size(m))),
    }
    largest = orders["largest first"]
    seen: dict[str, int] = {}
    turn: dict[str, int] = {}
    for m in largest:
        turn[m.id] = seen.get(m.target, 0)
        seen[m.target] = turn[m.id] + 1
    orders["spread over targets"] = _topological(moves, lambda m: (turn[m.id], -size(m)))
    if len(moves) > 80:  # keep planning time bounded on very large stages
        keep = ("as planned", "largest first", "longest first", "spread over targets")
        orders = {k: orders[k] for k in keep}
    unique: dict[tuple[str, ...], str] = {}
    for name, order in orders.items():
        unique.setdefault(tuple(m.id for m in order), name)
    return {name: orders[name] for name in unique.values()}


@dataclass(frozen=True)
class StageSchedule:
    """One migrate stage, sequenced: moves in order with predictions, makespan, bounds."""

    moves: tuple[Move, ...]
    makespan_s: float
    bounds: Bounds
    order_name: str
    predicted: Mapping[str, Predicted]


def _mean_end(pred: Mapping[str, Predicted]) -> float:
    return sum(p.end_s for p in pred.values()) / len(pred) if pred else 0.0


def _predict(
    order: Sequence[Move],
    timings: Mapping[str, Timing],
    caps: Caps,
    network: Network,
    params: TimingParams,
    cache: dict[object, Any],
) -> dict[str, Predicted]:
    """`simulate`, or for a stage of more than `LARGE_STAGE_MOVES` moves `window_estimate`
    (the simulation's cost grows as moves x events; issue 14): it ranks the candidate orders
    and concurrencies, and `estimate` predicts the chosen one (`choose_schedule`)."""
    if len(order) <= LARGE_STAGE_MOVES:
        return simulate(order, timings, caps, network, params)
    found = window_estimate(order, timings, caps, network, params, cache)
    return {move_id: Predicted(*p) for move_id, p in found.items()}


def _best_order(
    moves: Sequence[Move],
    timings: Mapping[str, Timing],
    caps: Caps,
    network: Network,
    params: TimingParams,
    cache: dict[object, Any],
) -> tuple[str, list[Move], dict[str, Predicted], float]:
    best: tuple[tuple[float, float], str, list[Move], dict[str, Predicted]] | None = None
    for name, order in _orders(moves, timings, network).items():
        pred = _predict(order, timings, caps, network, params, cache)
        makespan = max((p.end_s for p in pred.values()), default=0.0)
        key = (round(makespan, 3), round(_mean_end(pred), 3))
        if best is None or key < best[0]:
            best = (key, name, order, pred)
    assert best is not None
    return best[1], best[2], best[3], best[0][0]


def _size(timing: Timing) -> float:
    return timing.ram_bytes + timing.disk_bytes


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def choose_schedule(
    stages: Sequence[Sequence[Move]],
    snapshots: Sequence[ClusterSnapshot],
    params: TimingParams,
    network: Network,
    fixed: Concurrency = AUTO_CONCURRENCY,
) -> tuple[Caps, list[StageSchedule]]:
    """Caps for the whole plan and, per migrate stage, the order with the best predicted
    makespan. `fixed` = the plan's concurrency caps; None = choose."""
    timings: dict[str, Timing] = {}
    labels: dict[str, str] = {}
    for moves, snap in zip(stages, snapshots, strict=True):
        for m in moves:
            guest = snap.guests[m.vmid]
            learned = network.dirty_profiles.get(m.vmid)
            timings[m.id] = move_timing(m, guest, params, snap.datacenter, learned)
            labels[m.id] = f"{m.vmid} ({m.name})" if m.name else str(m.vmid)
    candidates = _caps_candidates(stages, timings, network, fixed)
    cache: dict[object, Any] = {}  # pre-copies of `estimate`, shared by every candidate
    if len(candidates) > 2:
        candidates = _promising_caps(candidates, stages, timings, network, params, cache)
    caps, per_stage = _best_caps(candidates, stages, timings, network, params, cache)
    for i, (name, order, _, _) in enumerate(per_stage):
        if len(order) > LARGE_STAGE_MOVES:
            found = estimate(order, timings, caps, network, params, cache)
            pred = {move_id: Predicted(*p) for move_id, p in found.items()}
            per_stage[i] = (name, order, pred, max((p.end_s for p in pred.values()), default=0.0))
    schedules: list[StageSchedule] = []
    for moves, (name, order, pred, makespan) in zip(stages, per_stage, strict=True):
        order = _longest_first_at_each_start(order, pred)
        ordered = tuple(
            replace(
                m,
                predicted_start_s=round(pred[m.id].start_s, 3),
                predicted_end_s=round(pred[m.id].end_s, 3),
                predicted_downtime_ms=_ms(pred[m.id].downtime_s),
                predicted_sent_bytes=float(round(pred[m.id].sent_bytes)),
                profile=timings[m.id].profile if timings[m.id].mode == "live" else None,
            )
            for m in order
        )
        bounds = stage_bounds(moves, timings, network, params, labels, cache)
        schedules.append(StageSchedule(ordered, round(makespan, 3), bounds, name, pred))
    return caps, schedules


def _longest_first_at_each_start(
    order: Sequence[Move], pred: Mapping[str, Predicted]
) -> list[Move]:
    """`order` by predicted start, the longest move first among those starting together.

    The executor asks PVE for the moves that start together one after another (a few
    hundredths of a second apart), so the one that bounds the makespan goes first (issue 14:
    start the transfers that bound the makespan first). The simulation is unchanged: moves
    that start at the same moment all start then, and a move starts after every move it
    depends on has ended, so the dependencies stay in order."""
    return sorted(
        order,
        key=lambda m: (
            round(pred[m.id].start_s, 3),
            -(pred[m.id].end_s - pred[m.id].start_s),
        ),
    )


def _caps_candidates(
    stages: Sequence[Sequence[Move]],
    timings: Mapping[str, Timing],
    network: Network,
    fixed: Concurrency,
) -> list[Caps]:
    """The caps worth simulating, by ascending per-source concurrency: around the one that
    fills the fastest link with streams, and higher ones; what the plan fixes stays fixed."""
    all_moves = [m for moves in stages for m in moves]
    fixed_cluster, fixed_source, fixed_target = fixed.cluster, fixed.per_source, fixed.per_target
    if all_moves:
        links = [network.link(m.source) for m in all_moves] + [
            network.link(m.target) for m in all_moves
        ]
        stream = min(timings[m.id].cap_Bps for m in all_moves)
        fill = math.ceil(max(links) / stream) + 1
    else:
        fill = 2
    # Chosen caps limit the streams on each link (`Caps.copies_only`): a move that copies
    # nothing (a container restart on shared storage) holds no source or target slot, so it
    # neither waits behind the streams nor takes the place of one (issue 14: concurrency per
    # link; PVE's `migrateall` counts it as a worker, and a stream waits behind it).
    copies_only = not fixed_source and not fixed_target
    counted = [[m for m in s if m.copies or not copies_only] for s in stages]
    free = max((len(s) - len(c) for s, c in zip(stages, counted, strict=True)), default=0)
    # Around the concurrency that fills the link, plus higher ones: many small guests hide
    # their fixed per-migration time only with more of them in flight.
    busiest = max(
        (max(Counter(m.source for m in s).values(), default=0) for s in counted), default=1
    )
    # `busiest`: every move of the busiest source at once, when the links can take it (a few
    # small guests finish soonest together; issue 14).
    wanted = set(range(1, fill + 2)) | {fill + 3, 2 * fill, 3 * fill, busiest}
    wanted.add(MAX_DEFAULT_PER_SOURCE)
    per_source_options = (
        [fixed_source]
        if fixed_source
        else sorted(c for c in wanted if 1 <= c <= min(max(busiest, 1), MAX_DEFAULT_PER_SOURCE))
    )
    sources_per_stage = max((len({m.source for m in s}) for s in counted), default=1) or 1
    candidates: list[Caps] = []
    for per_source in per_source_options:
        per_target = fixed_target or max(per_source, 1)
        streams = max(per_source, min(MAX_DEFAULT_CLUSTER_CAP, per_source * sources_per_stage))
        # Room in the cluster's window for the moves that hold no link slot, within the cap.
        cluster = fixed_cluster or max(streams, min(MAX_DEFAULT_CLUSTER_CAP, streams + free))
        candidates.append(
            Caps(
                cluster=cluster,
                per_source=per_source,
                per_target=per_target,
                copies_only=copies_only,
            )
        )
    return candidates


def _promising_caps(
    candidates: list[Caps],
    stages: Sequence[Sequence[Move]],
    timings: Mapping[str, Timing],
    network: Network,
    params: TimingParams,
    cache: dict[object, Any],
) -> list[Caps]:
    """The fastest candidate and the least concurrent one within the tolerance of it, judged
    with one order (largest first): the order matters less than the concurrency, so every
    order is tried only for these two, which saves most of the work.

    A candidate whose large stages' `estimate_floor` alone is beyond the tolerance of the
    fastest one so far is not estimated: it can be neither the fastest nor near it, so it
    counts as worse without the work (at 5,000 guests a low per-source cap makes every hot
    guest's pre-copy a long computation)."""
    quick: list[tuple[float, int, Caps, float]] = []
    worse = 0
    for caps in candidates:  # ascending concurrency; stop once it keeps getting worse
        if quick:
            floor = sum(
                estimate_floor(s, timings, caps, network, params)
                for s in stages
                if len(s) > LARGE_STAGE_MOVES
            )
            if floor > min(q[0] for q in quick) * (1 + CONCURRENCY_TOLERANCE) + 1e-3:
                worse += 1
                if worse >= 2:
                    break
                continue
        total = 0.0
        ends: list[float] = []
        for s in stages:
            order = _topological(s, lambda m: (-_size(timings[m.id]),))
            pred = _predict(order, timings, caps, network, params, cache)
            ends += [total + p.end_s for p in pred.values()]
            total += max((p.end_s for p in pred.values()), default=0.0)
        mean_end = sum(ends) / len(ends) if ends else 0.0
        worse = worse + 1 if quick and total > min(q[0] for q in quick) else 0
        quick.append((round(total, 3), caps.per_source, caps, mean_end))
        if worse >= 2:
            break
    quick.sort(key=lambda q: (q[0], q[1]))
    limit = quick[0][0] * (1 + CONCURRENCY_TOLERANCE) + 1e-9
    near = [q for q in quick if q[0] <= limit]
    # The fastest, the least concurrency within the tolerance of it, and the one whose moves
    # end soonest on average within it (`_best_caps` chooses among them).
    keep = [
        quick[0][2],
        min(near, key=lambda q: q[1])[2],
        min(near, key=lambda q: (round(q[3]), q[1]))[2],
    ]
    return [c for c in candidates if any(c is k for k in keep)]


def _best_caps(
    candidates: list[Caps],
    stages: Sequence[Sequence[Move]],
    timings: Mapping[str, Timing],
    network: Network,
    params: TimingParams,
    cache: dict[object, Any],
) -> tuple[Caps, list[tuple[str, list[Move], dict[str, Predicted], float]]]:
    """Every order of every stage under each candidate; the first candidate (least
    concurrency) whose total makespan is within the tolerance of the best wins."""
    results: list[
        tuple[float, Caps, list[tuple[str, list[Move], dict[str, Predicted], float]]]
    ] = []
    for caps in candidates:
        per_stage = [_best_order(s, timings, caps, network, params, cache) for s in stages]
        results.append((sum(r[3] for r in per_stage), caps, per_stage))
    best_total = min(r[0] for r in results)
    near = [r for r in results if r[0] <= best_total * (1 + CONCURRENCY_TOLERANCE) + 1e-9]
    # Among those as fast as the best, the one whose moves end soonest on average: small guests
    # next to a long one finish early instead of queueing behind it, which also keeps a
    # misjudged long move (its dirty rate is a guess) from holding the others back (issue 14).
    # Ties (within a second) go to the least concurrency.
    soonest = min(_mean_completion(r[2]) for r in near)
    _, caps, per_stage = next(r for r in near if _mean_completion(r[2]) <= soonest + 1.0)
    return caps, per_stage


def _mean_completion(
    per_stage: Sequence[tuple[str, list[Move], dict[str, Predicted], float]],
) -> float:
    """Mean predicted end of the moves, stages placed one after the other."""
    ends: list[float] = []
    offset = 0.0
    for _, _, pred, makespan in per_stage:
        ends += [offset + p.end_s for p in pred.values()]
        offset += makespan
    return sum(ends) / len(ends) if ends else 0.0
