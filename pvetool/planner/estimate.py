"""Schedule estimates of large migrate stages: pre-copies in closed form, few events, no
simulation on the 0.1 s grid (issue 14: planning time of a 5,000-guest rebalance).

`sequencer.simulate` steps every running pre-copy on the timing model's 0.1 s grid at the
max-min fair rates, recomputed at every event: exact for the model, but its cost grows as moves
x simulated events (0.5-0.7 s for one order of a 372-move stage on this project's shared
machine), and the sequencer tries several orders and concurrencies. For stages of more than
`LARGE_STAGE_MOVES` moves it uses these instead:

- `window_estimate` ranks the candidates: each move at its share of its links when the window
  is full under the caps, min(stream cap, uplink / k_source, downlink / k_target) with k the
  cap on that node (at most the stage's moves from or into it, and the cluster cap; a node
  pair with its own figure, `Network.pair`, likewise path / k over the pair's moves), for its
  whole duration: the fixed phases as in `simulate`, local disks / rate, the RAM pre-copy
  (`precopy_closed_form`, or `timing.solo_migration` where the dirty rate is high enough for
  auto-converge or downtime escalations), the stop-and-copy and the post phase; then the
  sliding window's rule over those durations (at the start and whenever a move ends, walk the
  moves in order and start each one whose `after` moves have ended and that fits the caps).
- `estimate_floor` is a lower bound of `window_estimate` under given caps for every order: the
  sequencer skips a concurrency whose floor is already beyond the best one found.
- `estimate` predicts the chosen order and caps: `simulate`'s window, phases and max-min fair
  link sharing, with each transfer a fixed number of bytes (local disks, and the pre-copy in
  closed form at the rate the move gets when its transfer starts), so a few events per move.
  tests/unit/planner/test_estimate.py holds it to the simulation (stated tolerance there).

Pure: no I/O, no clock. Imports: the standard library, `pvetool.model`, `pvetool.timing`,
`pvetool.units` (and `pvetool.planner.sequencer` for types only).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Collection, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from pvetool.model import Caps, Move
from pvetool.timing import (
    CONVERGENCE_HORIZON_S_PER_GIB,
    DirtyProfile,
    Flow,
    TimingParams,
    max_min_fair,
    solo_migration,
)
from pvetool.units import GiB

if TYPE_CHECKING:
    from pvetool.planner.sequencer import Network, Timing

__all__ = [
    "LARGE_STAGE_MOVES",
    "Estimated",
    "estimate",
    "estimate_floor",
    "live_sent_bytes",
    "precopy_closed_form",
    "window_estimate",
]

# Stages with more moves than this are estimated, not simulated. Drains of one node stay below
# it in practice (a node with more than 120 guests to move); their predictions are simulated.
LARGE_STAGE_MOVES = 120

# The closed form holds while the guest dirties at most this share of the rate: then no
# auto-converge period is "high" (QEMU counts one that dirtied > 50 % of what it sent) and the
# pre-copy converges in a few passes, too few for PVE's stalled-poll count (more than 5) to
# double the downtime limit.
_CLOSED_FORM_DIRTY_SHARE = 0.25
_CLOSED_FORM_PASSES = 4
_EPS = 1e-9

# Pre-copy at one rate: (seconds until stop-and-copy, bytes sent until then, final bytes,
# downtime escalations, aborted).
_Precopy = tuple[float, float, float, int, bool]


class Estimated(NamedTuple):
    """One move's estimate (the fields of `sequencer.Predicted`)."""

    start_s: float
    end_s: float
    downtime_s: float | None
    sent_bytes: float
    aborted: bool
    escalations: int


def precopy_closed_form(
    ram_bytes: float, dirty: DirtyProfile, rate_Bps: float, params: TimingParams
) -> tuple[float, float, float] | None:
    """The RAM pre-copy of `timing.Precopy` at a constant rate, pass by pass in closed form:
    (seconds until stop-and-copy, bytes sent until then, final bytes), or None where it does
    not hold (the dirty rate above a quarter of the rate, or more than four passes).

    Within a pass that starts with `rem` bytes, after t seconds rem - r t bytes are left and
    min(W, D t) dirtied; the pre-copy stops at the first check (every `step_s` on a grid from
    its start, and at the end of a pass) where left + dirtied <= r x downtime limit. A pass
    that ends first makes its dirtied bytes the next pass."""
    dirty_Bps, wss = dirty.rate_Bps, dirty.wss_bytes
    if not rate_Bps > 0 or dirty_Bps > _CLOSED_FORM_DIRTY_SHARE * rate_Bps:
        return None
    step_s = params.step_s
    fits = rate_Bps * params.downtime_limit_s
    rem, elapsed_s, sent = float(ram_bytes), 0.0, 0.0
    for _ in range(_CLOSED_FORM_PASSES):
        pass_s = rem / rate_Bps
        t_s = (rem - fits) / (rate_Bps - dirty_Bps)
        if dirty_Bps * t_s > wss:
            t_s = (rem + wss - fits) / rate_Bps
        # The first grid point strictly after the pass started and not before t_s.
        at_s = math.ceil((elapsed_s + max(t_s, 0.0)) / step_s - _EPS) * step_s - elapsed_s
        if at_s <= _EPS:
            at_s += step_s
        if at_s < pass_s - _EPS:
            final = rem - rate_Bps * at_s + min(wss, dirty_Bps * at_s)
            return elapsed_s + at_s, sent + rate_Bps * at_s, final
        elapsed_s += pass_s
        sent += rem
        rem = min(wss, dirty_Bps * pass_s)
        if rem <= fits:
            return elapsed_s, sent, rem
    return None


def live_sent_bytes(
    timing: Timing, rate_Bps: float, params: TimingParams, cache: MutableMapping[object, _Precopy]
) -> float:
    """RAM bytes a live migration sends alone at `rate_Bps` (`timing.solo_migration`'s
    `sent_bytes`), through the closed form where it holds."""
    _, sent, final, _, _ = _precopy(timing, rate_Bps, params, cache, timing.ram_bytes)
    return sent + final


def _precopy(
    timing: Timing,
    rate_Bps: float,
    params: TimingParams,
    cache: MutableMapping[object, _Precopy],
    ram_bytes: float | None = None,
) -> _Precopy:
    # The simulation's pre-copy has at least 1 MiB (`sequencer._Run`).
    ram = max(timing.ram_bytes, 1024.0**2) if ram_bytes is None else ram_bytes
    key = (ram, timing.profile, rate_Bps)
    found = cache.get(key)
    if found is not None:
        return found
    closed = precopy_closed_form(ram, timing.dirty, rate_Bps, params)
    if closed is not None:
        found = (*closed, 0, False)
    else:
        solo = solo_migration(ram, timing.dirty, rate_Bps, params, timing.secure)
        final = solo.logged_downtime_s - params.device_state_s if not solo.aborted else 0.0
        final_bytes = max(final, 0.0) * rate_Bps
        found = (
            solo.precopy_s,
            solo.sent_bytes - final_bytes,
            final_bytes,
            solo.escalations,
            solo.aborted,
        )
    cache[key] = found
    return found


def _rates(
    moves: Sequence[Move], timings: Mapping[str, Timing], caps: Caps, network: Network
) -> dict[str, float]:
    """Each move's share of its links when the window is full under `caps`."""
    # Moves that hold no slot (`Caps.copies_only`: nothing to copy) share no link either.
    from_source = Counter(m.source for m in moves if caps.holds_slot(m))
    into_target = Counter(m.target for m in moves if caps.holds_slot(m))
    rates: dict[str, float] = {}
    for m in moves:
        k_up = max(1, min(caps.per_source, caps.cluster, from_source[m.source]))
        k_down = max(1, min(caps.per_target, caps.cluster, into_target[m.target]))
        rates[m.id] = min(
            timings[m.id].cap_Bps, network.link(m.source) / k_up, network.link(m.target) / k_down
        )
    if network.pair_Bps:  # a pair's path, shared by its streams that way
        on_path = Counter((m.source, m.target) for m in moves)
        for m in moves:
            pair = network.pair(m.source, m.target)
            if pair is not None:
                ways = on_path[m.source, m.target]
                k = max(1, min(caps.per_source, caps.per_target, caps.cluster, ways))
                rates[m.id] = min(rates[m.id], pair / k)
    return rates


def _durations(
    moves: Sequence[Move],
    timings: Mapping[str, Timing],
    caps: Caps,
    network: Network,
    params: TimingParams,
    cache: MutableMapping[object, _Precopy],
) -> dict[str, tuple[float, float | None, float, bool, int]]:
    """(duration, downtime, bytes sent, aborted, escalations) of each move at its share."""
    out: dict[str, tuple[float, float | None, float, bool, int]] = {}
    for move_id, rate in _rates(moves, timings, caps, network).items():
        t = timings[move_id]
        disk_s = t.disk_bytes / rate if t.disk_bytes > 1.0 else 0.0
        if t.mode == "live":
            precopy_s, sent, final, escalations, aborted = _precopy(t, rate, params, cache)
            stop_copy_s = 0.0 if aborted else final / rate + params.device_state_s
            seen_s = stop_copy_s if aborted else _seen_s(precopy_s, stop_copy_s, params)
            duration = t.pre_s + disk_s + precopy_s + seen_s + t.post_s
            downtime = None if aborted else stop_copy_s + params.t_res_s
            out[move_id] = (duration, downtime, t.disk_bytes + sent + final, aborted, escalations)
        else:
            duration = t.pre_s + disk_s + t.post_s
            out[move_id] = (duration, duration if t.downtime_all else None, t.disk_bytes, False, 0)
    return out


def window_estimate(
    order: Sequence[Move],
    timings: Mapping[str, Timing],
    caps: Caps,
    network: Network,
    params: TimingParams,
    cache: MutableMapping[object, _Precopy] | None = None,
) -> dict[str, Estimated]:
    """Start/end of every move when a sliding window runs `order` under `caps`, each move at
    its full-window share of its links (`_rates`) for its whole duration: cheap enough to
    rank every candidate order and concurrency of a large stage (`cache` keeps pre-copies
    across calls: one dict per planning), not to predict (see `estimate`)."""
    cache = {} if cache is None else cache
    durations = _durations(order, timings, caps, network, params, cache)
    stage_ids = {m.id for m in order}
    pending = list(order)
    done: dict[str, Estimated] = {}
    running: list[tuple[float, int, float, Move]] = []  # (end, position, start, move)
    position = {m.id: i for i, m in enumerate(order)}
    by_source: Counter[str] = Counter()
    by_target: Counter[str] = Counter()
    now = 0.0
    while pending or running:
        for move in _admit(pending, len(running), caps, stage_ids, done, by_source, by_target):
            heapq.heappush(running, (now + durations[move.id][0], position[move.id], now, move))
        if not running:
            # Unreachable with dependencies on earlier moves only; never loop forever.
            for move in pending:
                done[move.id] = Estimated(now, now, None, 0.0, False, 0)
            break
        now = running[0][0]
        while running and running[0][0] <= now + _EPS:
            end, _, start, move = heapq.heappop(running)
            if caps.holds_slot(move):
                by_source[move.source] -= 1
                by_target[move.target] -= 1
            _, downtime, sent, aborted, escalations = durations[move.id]
            done[move.id] = Estimated(start, end, downtime, sent, aborted, escalations)
    return done


def _admit(
    pending: list[Move],
    running: int,
    caps: Caps,
    stage_ids: Collection[str],
    done: Mapping[str, object],
    by_source: Counter[str],
    by_target: Counter[str],
) -> list[Move]:
    """The sliding window's next starts, in order: each pending move whose dependencies in the
    stage ended and whose source, target and the cluster have a free slot (`running` in
    flight now); they leave `pending` and are counted on their nodes."""
    started: list[int] = []
    for i, move in enumerate(pending):
        if running + len(started) >= caps.cluster:
            break
        if move.after and any(dep in stage_ids and dep not in done for dep in move.after):
            continue
        if caps.holds_slot(move):
            if (
                by_source[move.source] >= caps.per_source
                or by_target[move.target] >= caps.per_target
            ):
                continue
            by_source[move.source] += 1
            by_target[move.target] += 1
        started.append(i)
    admitted = [pending[i] for i in started]
    for i in reversed(started):
        del pending[i]
    return admitted


class _Run:
    __slots__ = (
        "after_s",
        "end_of_pre",
        "final",
        "left",
        "move",
        "rate",
        "result",
        "start_s",
    )

    def __init__(self, move: Move, start_s: float, end_of_pre: float) -> None:
        self.move = move
        self.start_s = start_s
        self.end_of_pre = end_of_pre  # when the transfer starts
        self.left = -1.0  # bytes left to send; < 0: not transferring yet
        self.rate = 0.0
        self.final = 0.0  # stop-and-copy bytes of a live move
        self.after_s = math.inf  # when it ends, once its transfer is done
        self.result: tuple[float | None, float, bool, int] = (None, 0.0, False, 0)


def estimate(
    order: Sequence[Move],
    timings: Mapping[str, Timing],
    caps: Caps,
    network: Network,
    params: TimingParams,
    cache: MutableMapping[object, _Precopy] | None = None,
) -> dict[str, Estimated]:
    """Predicted start/end of every move when a sliding window runs `order` under `caps`:
    `simulate`'s window, phases and max-min fair link sharing, with each move's transfer a
    fixed number of bytes: its local disks plus its RAM pre-copy in closed form at the rate it
    gets when its transfer starts (`simulate` re-steps every pre-copy on a 0.1 s grid at every
    event instead). The rates are recomputed when a transfer starts or ends, so the events are
    a few per move."""
    cache = {} if cache is None else cache
    stage_ids = {m.id for m in order}
    capacity, routes = network.resources(order)
    pending = list(order)
    done: dict[str, Estimated] = {}
    active: list[_Run] = []
    by_source: Counter[str] = Counter()
    by_target: Counter[str] = Counter()
    now = 0.0
    while pending or active:
        for move in _admit(pending, len(active), caps, stage_ids, done, by_source, by_target):
            active.append(_Run(move, now, now + timings[move.id].pre_s))
        if not active:
            # Unreachable with dependencies on earlier moves only; never loop forever.
            for move in pending:
                done[move.id] = Estimated(now, now, None, 0.0, False, 0)
            break
        entering = [r for r in active if r.left < 0 and r.end_of_pre <= now + _EPS]
        if entering:
            for run in entering:
                run.left = 0.0
            flows = [r for r in active if r.left >= 0 and r.after_s == math.inf]
            _share(flows, timings, capacity, routes)
            for run in entering:
                _begin_transfer(run, timings[run.move.id], params, cache, now)
        ended = [r for r in active if r.after_s <= now + _EPS]
        if ended:
            for run in ended:
                active.remove(run)
                if caps.holds_slot(run.move):
                    by_source[run.move.source] -= 1
                    by_target[run.move.target] -= 1
                downtime, sent, aborted, escalations = run.result
                if timings[run.move.id].downtime_all:
                    downtime = now - run.start_s
                done[run.move.id] = Estimated(
                    run.start_s, now, downtime, sent, aborted, escalations
                )
            continue
        flows = [r for r in active if r.left >= 0 and r.after_s == math.inf]
        dt = math.inf
        for run in active:
            if run.left < 0:
                dt = min(dt, run.end_of_pre - now)
            elif run.after_s < math.inf:
                dt = min(dt, run.after_s - now)
            elif run.rate > 0:
                dt = min(dt, run.left / run.rate)
        if dt == math.inf:  # no link capacity at all: nothing would ever end
            for run in active:
                done[run.move.id] = Estimated(run.start_s, now, None, 0.0, False, 0)
            for move in pending:
                done[move.id] = Estimated(now, now, None, 0.0, False, 0)
            break
        dt = max(dt, 0.0)
        now += dt
        finished = False
        for run in flows:
            run.left -= run.rate * dt
            if run.left <= 1.0 or (run.rate > 0 and run.left / run.rate <= _EPS):
                _end_transfer(run, timings[run.move.id], params, now)
                finished = True
        if finished:
            _share(
                [r for r in active if r.left >= 0 and r.after_s == math.inf],
                timings,
                capacity,
                routes,
            )
    return done


def _share(
    flows: list[_Run],
    timings: Mapping[str, Timing],
    capacity: Mapping[str, float],
    routes: Mapping[str, tuple[str, ...]],
) -> None:
    """Max-min fair rates of the transfers (`timing.max_min_fair`) over their links (`routes`:
    `Network.resources`), each capped at one stream; the caps themselves when no link is
    oversubscribed (the common case, and much cheaper)."""
    if not flows:
        return
    load: dict[str, float] = {}
    for run in flows:
        cap = timings[run.move.id].cap_Bps
        for name in routes[run.move.id]:
            load[name] = load.get(name, 0.0) + cap
    if all(v <= capacity[k] for k, v in load.items()):
        for run in flows:
            run.rate = timings[run.move.id].cap_Bps
        return
    rates = max_min_fair(
        [Flow(routes[r.move.id], timings[r.move.id].cap_Bps) for r in flows], capacity
    )
    for run, rate in zip(flows, rates, strict=True):
        run.rate = rate


def _begin_transfer(
    run: _Run,
    t: Timing,
    params: TimingParams,
    cache: MutableMapping[object, _Precopy],
    now: float,
) -> None:
    """The bytes the move sends: local disks, and a live move's pre-copy at its rate now."""
    run.left = t.disk_bytes if t.disk_bytes > 1.0 else 0.0
    if t.mode == "live" and run.rate > 0:
        _, sent, final, escalations, aborted = _precopy(t, run.rate, params, cache)
        run.left += sent
        run.final = 0.0 if aborted else final
        run.result = (None, t.disk_bytes + sent + run.final, aborted, escalations)
    else:
        run.result = (None, t.disk_bytes, False, 0)
    if run.left <= 1.0:
        _end_transfer(run, t, params, now)


def _end_transfer(run: _Run, t: Timing, params: TimingParams, now: float) -> None:
    """Transfer done: a live move's stop-and-copy at its last rate, then the post phase."""
    seen_s = 0.0
    downtime, sent, aborted, escalations = run.result
    if t.mode == "live" and not aborted:
        rate = run.rate if run.rate > 0 else t.cap_Bps
        stop_copy_s = run.final / rate + params.device_state_s
        downtime = stop_copy_s + params.t_res_s
        # The RAM's share of the transfer's time (its rate may have changed since it began).
        ram_share = (sent - t.disk_bytes - run.final) / max(sent - run.final, 1.0)
        transfer_s = now - run.end_of_pre
        seen_s = _seen_s(max(transfer_s * ram_share, 0.0), stop_copy_s, params)
    run.result = (downtime, sent, aborted, escalations)
    run.left = 0.0
    run.after_s = now + seen_s + t.post_s


def _seen_s(precopy_s: float, stop_copy_s: float, params: TimingParams) -> float:
    """Seconds from the end of a pre-copy until PVE sees the migration completed: its next
    query-migrate poll, as `simulate` counts it (qemu-server ``QemuMigrate.pm`` phase2: every
    `poll_s`, every `poll_fast_s` once the remaining bytes are below the average sent per poll,
    which a converging pre-copy reaches in its last pass; that average is 0 at the first poll,
    so not before the second). Polls counted from the start of the RAM pre-copy; a move
    whose pre-copy was not sized (no rate when its transfer began) is left as it was."""
    if precopy_s <= _EPS:
        return stop_copy_s
    end_s = precopy_s + stop_copy_s
    step_s = params.poll_s if end_s < 2 * params.poll_s else params.poll_fast_s
    seen_s = max(params.poll_s, math.ceil(end_s / step_s - _EPS) * step_s)
    return max(stop_copy_s, seen_s - precopy_s)


def estimate_floor(
    moves: Sequence[Move],
    timings: Mapping[str, Timing],
    caps: Caps,
    network: Network,
    params: TimingParams,
) -> float:
    """A lower bound of `estimate`'s makespan under `caps`, for every order: the busiest of
    the cluster's window (the durations' sum / cluster cap), each source's, each target's, and
    the longest move; durations at the same shares, the pre-copy counted as its RAM / rate
    (it sends at least that, or gives up at its deadline), so no pre-copy is computed."""
    if not moves:
        return 0.0
    total = 0.0
    longest = 0.0
    per_gib_s = params.abort_s_per_gib or CONVERGENCE_HORIZON_S_PER_GIB
    per_source: dict[str, float] = {}
    per_target: dict[str, float] = {}
    slot = {m.id: caps.holds_slot(m) for m in moves}
    for move_id, rate in _rates(moves, timings, caps, network).items():
        t = timings[move_id]
        disk_s = t.disk_bytes / rate if t.disk_bytes > 1.0 else 0.0
        ram_s = 0.0
        if t.mode == "live":  # a pre-copy that gives up stops at its deadline
            ram_s = min(t.ram_bytes / rate, per_gib_s * max(t.ram_bytes, 1024.0**2) / GiB)
        duration = t.pre_s + t.post_s + disk_s + ram_s
        total += duration
        longest = max(longest, duration)
        if slot[move_id]:
            per_source[t.source] = per_source.get(t.source, 0.0) + duration
            per_target[t.target] = per_target.get(t.target, 0.0) + duration
    return max(
        total / caps.cluster,
        max(per_source.values(), default=0.0) / caps.per_source,
        max(per_target.values(), default=0.0) / caps.per_target,
        longest,
    )
