"""Unit tests of the pure migration timing model (pvetool/timing.py, docs/timing-model.md)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvetool.timing import (
    CONVERGENCE_HORIZON_S_PER_GIB,
    DIRTY_PROFILES,
    DirtyProfile,
    Flow,
    GiB,
    KiB,
    LbGuest,
    MiB,
    Precopy,
    PrecopyEvent,
    TiB,
    TimingParams,
    drain_lower_bounds,
    fixed_time_s,
    ha_delay_s,
    link_goodput_Bps,
    lxc_restart_times,
    max_min_fair,
    solo_migration,
    stream_cap_Bps,
)

PARAMS = TimingParams()
GOODPUT_1GBE_BPS = 0.117e9
GOODPUT_10GBE_BPS = 1.17e9


def run_to_end(precopy: Precopy, rate_Bps: float, dt_s: float = 0.1) -> list[PrecopyEvent]:
    events: list[PrecopyEvent] = []
    while not (precopy.finished or precopy.aborted):
        events += precopy.step(rate_Bps, dt_s)
    return events


def make_precopy(ram_bytes: float, profile: str, params: TimingParams = PARAMS) -> Precopy:
    dirty = DIRTY_PROFILES[profile]
    return Precopy(ram_bytes, dirty.rate_Bps, dirty.wss_bytes, params)


# --- constants, params, links -----------------------------------------------------------------


def test_units() -> None:
    assert (KiB, MiB, GiB, TiB) == (2**10, 2**20, 2**30, 2**40)


def test_dirty_profiles_match_the_doc() -> None:
    assert DIRTY_PROFILES["idle"] == DirtyProfile(2 * MiB, 256 * MiB)
    assert DIRTY_PROFILES["moderate"] == DirtyProfile(40 * MiB, 1 * GiB)
    assert DIRTY_PROFILES["hot"] == DirtyProfile(400 * MiB, 4 * GiB)


def test_replace_changes_only_the_named_parameter() -> None:
    changed = PARAMS.replace(t_pre_s=3.0, stall_polls=7)
    assert changed.t_pre_s == 3.0
    assert changed.stall_polls == 7
    assert changed.t_post_s == PARAMS.t_post_s
    assert PARAMS.t_pre_s == 1.5  # the original is untouched


def test_replace_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="t_nonsense_s"):
        PARAMS.replace(t_nonsense_s=1.0)


def test_replace_rejects_invalid_values() -> None:
    with pytest.raises(ValueError, match="t_pre_s"):
        PARAMS.replace(t_pre_s=-1.0)
    with pytest.raises(ValueError, match="step_s"):
        PARAMS.replace(step_s=0.0)
    with pytest.raises(ValueError, match="stall_polls"):
        PARAMS.replace(stall_polls=2.5)
    assert PARAMS.replace(stall_polls=3.0).stall_polls == 3


@pytest.mark.parametrize(
    ("link_bits_per_s", "goodput_Bps"),
    [(1e9, 0.117e9), (10e9, 1.17e9), (25e9, 2.9e9)],
)
def test_link_goodput_anchors(link_bits_per_s: float, goodput_Bps: float) -> None:
    assert link_goodput_Bps(link_bits_per_s) == pytest.approx(goodput_Bps, rel=1e-12)


def test_link_goodput_interpolates_monotonically() -> None:
    speeds = [0.1e9, 1e9, 2.5e9, 5e9, 10e9, 25e9, 40e9, 100e9]
    goodputs = [link_goodput_Bps(s) for s in speeds]
    assert goodputs == sorted(goodputs)
    for speed, goodput in zip(speeds, goodputs, strict=True):
        assert 0.9 * speed / 8 < goodput < 0.95 * speed / 8
    assert link_goodput_Bps(0) == 0.0


def test_stream_cap_and_bwlimit() -> None:
    assert stream_cap_Bps(PARAMS, secure=True) == 0.6e9
    assert stream_cap_Bps(PARAMS, secure=False) == 2.5e9
    assert stream_cap_Bps(PARAMS, secure=False, bwlimit_KiBps=100_000) == 100_000 * 1024
    assert stream_cap_Bps(PARAMS, secure=True, bwlimit_KiBps=0) == 0.6e9  # 0 = no limit
    assert stream_cap_Bps(PARAMS, secure=True, bwlimit_KiBps=10**9) == 0.6e9


def test_fixed_time() -> None:
    assert fixed_time_s(PARAMS, secure=False) == pytest.approx(1.5 + 2.0 + 0.15 + 1.5)
    assert fixed_time_s(PARAMS, secure=True) == pytest.approx(1.5 + 2.5 + 0.15 + 1.5)


# --- pre-copy --------------------------------------------------------------------------------


def test_idle_guest_on_10gbe_finishes_quickly_within_the_limit() -> None:
    ram_bytes = 8 * GiB
    precopy = make_precopy(ram_bytes, "idle")
    events = run_to_end(precopy, GOODPUT_10GBE_BPS)
    assert precopy.finished and not precopy.aborted
    assert precopy.passes + 1 <= 2  # finished in the first or second pass
    assert precopy.escalations == 0 and precopy.throttle == 0
    # QEMU's downtime limit bounds the RAM part of stop-and-copy; device state comes on top.
    assert precopy.final_bytes / GOODPUT_10GBE_BPS <= 0.1
    assert precopy.stop_copy_s(GOODPUT_10GBE_BPS) <= 0.1 + PARAMS.device_state_s
    assert precopy.sent_bytes >= ram_bytes
    assert [e.kind for e in events] == ["stop-and-copy"]
    assert events[0].value == precopy.final_bytes


def test_hot_guest_on_1gbe_throttles_escalates_and_finishes() -> None:
    """400 MiB/s into a 4 GiB working set over 1 GbE (0.117e9 B/s).

    Under the model the guest FINISHES, it does not abort: each 36 s pass re-dirties the whole
    4 GiB working set, while QEMU's remaining (rem + dirtied) grows during the first ~10 s of
    pass (one counted poll per pass end), so PVE doubles the limit every sixth pass; the
    throttle grows by 10 % every second 36 s pass. The migration ends in stop-and-copy once
    rate x limit covers the remaining bytes, after ~605 s (19 passes), within the model's
    3200 s horizon.
    """
    ram_bytes = 4 * GiB
    precopy = make_precopy(ram_bytes, "hot")
    events = run_to_end(precopy, GOODPUT_1GBE_BPS)
    kinds = [e.kind for e in events]
    assert precopy.finished and not precopy.aborted
    assert "auto-converge" in kinds and "downtime-limit" in kinds
    assert precopy.throttle >= 0.2
    assert precopy.escalations >= 1
    assert precopy.downtime_limit_s == pytest.approx(0.1 * 2**precopy.escalations)
    assert precopy.elapsed_s < CONVERGENCE_HORIZON_S_PER_GIB * 4
    assert precopy.sent_bytes >= ram_bytes
    assert kinds[-1] == "stop-and-copy"
    assert precopy.final_bytes <= GOODPUT_1GBE_BPS * precopy.downtime_limit_s
    # Event values: throttle 0.2, then +0.1; each limit doubles the previous one.
    throttles = [e.value for e in events if e.kind == "auto-converge"]
    assert throttles[0] == pytest.approx(0.2)
    assert all(b == pytest.approx(a + 0.1) for a, b in pairwise(throttles))
    limits = [e.value for e in events if e.kind == "downtime-limit"]
    assert limits[0] == pytest.approx(0.2)
    assert all(b == pytest.approx(2 * a) for a, b in pairwise(limits))
    assert [e.at_s for e in events] == sorted(e.at_s for e in events)


def test_a_guest_that_cannot_keep_up_reaches_the_planning_horizon() -> None:
    # 1 MB/s for 1 GiB: pass 1 alone would need ~1070 s; the model's horizon is 800 s per GiB
    # (PVE itself would go on; the emulator runs with give_up_s=inf).
    precopy = make_precopy(1 * GiB, "moderate")
    events = run_to_end(precopy, 1e6, dt_s=5.0)
    assert precopy.aborted and not precopy.finished
    assert events[-1].kind == "aborted"
    assert events[-1].value == pytest.approx(800.0)
    assert precopy.elapsed_s == pytest.approx(800.0)
    assert precopy.step(1e9, 1.0) == []  # nothing happens after the end


def test_zero_rate_only_dirties_memory() -> None:
    precopy = make_precopy(2 * GiB, "moderate")
    precopy.step(0.0, 2.0)
    assert precopy.sent_bytes == 0
    assert precopy.remaining_bytes == 2 * GiB
    assert precopy.dirtied_bytes == pytest.approx(80 * MiB)
    assert precopy.elapsed_s == pytest.approx(2.0)
    assert not precopy.finished


def test_stepping_is_independent_of_the_step_length() -> None:
    def run(dt_s: float) -> tuple[float, float, int, int]:
        precopy = make_precopy(5 * GiB, "moderate")
        run_to_end(precopy, 0.3e9, dt_s)
        return precopy.elapsed_s, precopy.sent_bytes, precopy.passes, precopy.escalations

    reference = run(0.1)
    for dt_s in (1.0, 7.3, 100.0):
        elapsed_s, sent_bytes, passes, escalations = run(dt_s)
        assert elapsed_s == pytest.approx(reference[0])
        assert sent_bytes == pytest.approx(reference[1])
        assert (passes, escalations) == reference[2:]


def test_no_bandwidth_does_not_escalate_because_remaining_does_not_grow() -> None:
    # qemu-server counts polls where QEMU's `ram.remaining` grew (or is 0); with no bandwidth
    # the current pass' remaining stays where it is, so the limit stays at 100 ms.
    precopy = make_precopy(2 * GiB, "moderate")
    assert precopy.step(0.0, 30.0) == []
    assert precopy.downtime_limit_s == pytest.approx(0.1)


def test_escalation_after_more_than_five_pass_ends_that_grew_remaining() -> None:
    # A hot guest on a slow link: every pass ends with a full working set dirty again, so
    # remaining grows at each pass end; the 6th growth doubles the limit (counter > 5).
    precopy = make_precopy(2 * GiB, "hot")
    doublings: list[float] = []
    passes_at_doubling: list[int] = []
    while not (precopy.finished or precopy.aborted) and not doublings:
        for event in precopy.step(0.117e9, 0.1):
            if event.kind == "downtime-limit":
                doublings.append(event.value)
                passes_at_doubling.append(precopy.passes)
    assert doublings == [pytest.approx(0.2)]
    assert passes_at_doubling[0] >= 6


def test_explicit_downtime_limit() -> None:
    precopy = Precopy(1 * GiB, 0.0, 0.0, PARAMS, downtime_limit_s=0.5)
    assert precopy.downtime_limit_s == 0.5
    run_to_end(precopy, 1e9)
    # With nothing dirtied the last grid check before the end sees <= 0.5 s of RAM left.
    assert 0.4 * 1e9 <= precopy.final_bytes <= 0.5 * 1e9
    assert precopy.sent_bytes == pytest.approx(1 * GiB)


@settings(max_examples=150, deadline=None)
@given(
    ram_bytes=st.floats(1 * MiB, 16 * GiB),
    dirty_rate_Bps=st.floats(0, 1 * GiB),
    wss_bytes=st.floats(0, 16 * GiB),
    rate_Bps=st.floats(20e6, 3e9),
    dt_s=st.sampled_from([0.05, 0.1, 0.5, 3.0]),
)
def test_precopy_terminates_and_sends_at_least_b(
    ram_bytes: float, dirty_rate_Bps: float, wss_bytes: float, rate_Bps: float, dt_s: float
) -> None:
    # A shorter abort deadline keeps the property fast; 100 s/GiB at >= 20 MB/s still leaves
    # time to send B once (GiB / 100 s = 10.7 MB/s), so sent >= B holds even when aborted.
    params = PARAMS.replace(abort_s_per_gib=100.0)
    precopy = Precopy(ram_bytes, dirty_rate_Bps, wss_bytes, params)
    deadline_s = 100.0 * ram_bytes / GiB
    steps = 0
    while not (precopy.finished or precopy.aborted):
        precopy.step(rate_Bps, dt_s)
        steps += 1
        assert steps * dt_s <= deadline_s + 2 * dt_s  # must stop by the abort deadline
    assert precopy.finished != precopy.aborted
    assert precopy.sent_bytes >= ram_bytes * (1 - 1e-9)
    assert 0.0 <= precopy.throttle <= 0.99
    if precopy.finished:
        assert precopy.final_bytes <= rate_Bps * precopy.downtime_limit_s * (1 + 1e-9)
        assert precopy.stop_copy_s(rate_Bps) >= PARAMS.device_state_s


# --- one migration alone -----------------------------------------------------------------------


def test_solo_migration_adds_fixed_phases_disks_and_stop_and_copy() -> None:
    rate_Bps = 0.5e9
    no_dirt = DirtyProfile(0.0, 0.0)
    result = solo_migration(2 * GiB, no_dirt, rate_Bps, PARAMS, secure=True, local_disk_bytes=1e9)
    assert not result.aborted
    assert result.sent_bytes == pytest.approx(2 * GiB)
    assert result.escalations == 0 and result.max_throttle == 0
    stop_copy_s = result.logged_downtime_s
    assert result.downtime_s == pytest.approx(stop_copy_s + PARAMS.t_res_s)
    assert result.disk_s == pytest.approx(2.0)
    # PVE polls query-migrate every poll_s (fast near the end): the end is seen at a poll.
    end_s = result.precopy_s + stop_copy_s
    polls = [i * PARAMS.poll_fast_s for i in range(1, 1000)]
    seen_s = min(t for t in polls if t >= end_s - 1e-6)
    assert result.duration_s == pytest.approx(fixed_time_s(PARAMS, True) + 2.0 + seen_s, abs=0.11)
    assert result.duration_s >= fixed_time_s(PARAMS, True) + 2.0 + end_s - 1e-9
    # Without dirtying, the wire is busy for exactly B / r (pre-copy + stop-and-copy RAM).
    assert result.precopy_s + stop_copy_s - PARAMS.device_state_s == pytest.approx(
        2 * GiB / rate_Bps
    )


def test_calibration_pve9_log() -> None:
    """Reproduce qmigrate_online_pve9_ha_ok.log with the default TimingParams.

    Log: 12.6 GiB configured memory, 11.7 GiB transferred, whole task 00:00:20, QEMU downtime
    59 ms, secure (unix socket through the SSH tunnel), no local disks.
    Scenario: B = 0.88 x 12.6 GiB non-zero RAM, "moderate" profile, secure, and a constant
    per-stream rate of 0.88e9 B/s for this host pair (faster SSH stream than the 0.6e9 default
    cap; the log averages 806.6 MiB/s = 0.846e9 B/s). Model: 19.9 s, 11.64 GiB, 60.7 ms.
    """
    ram_bytes = 0.88 * 12.6 * GiB
    result = solo_migration(
        ram_bytes, DIRTY_PROFILES["moderate"], 0.88e9, PARAMS, secure=True, local_disk_bytes=0.0
    )
    assert not result.aborted
    assert result.duration_s == pytest.approx(20.0, rel=0.15)
    assert result.logged_downtime_s == pytest.approx(0.059, rel=0.15)
    assert result.sent_bytes == pytest.approx(11.7 * GiB, rel=0.15)
    assert result.escalations == 0 and result.max_throttle == 0.0


# --- max-min fair sharing --------------------------------------------------------------------


def test_two_flows_share_one_link_equally() -> None:
    flows = [Flow(("up:a",), math.inf), Flow(("up:a",), math.inf)]
    assert max_min_fair(flows, {"up:a": 10.0}) == pytest.approx([5.0, 5.0])


def test_capped_flow_leaves_the_rest_to_the_other() -> None:
    flows = [Flow(("up:a",), 2.0), Flow(("up:a",), math.inf)]
    assert max_min_fair(flows, {"up:a": 10.0}) == pytest.approx([2.0, 8.0])


def test_three_resources_chain() -> None:
    # f2 and f3 share B (6): 3 each. A (10) then gives f1 7, C (9) gives f4 6.
    flows = [
        Flow(("A",), math.inf),
        Flow(("A", "B"), math.inf),
        Flow(("B", "C"), math.inf),
        Flow(("C",), math.inf),
    ]
    rates = max_min_fair(flows, {"A": 10.0, "B": 6.0, "C": 9.0})
    assert rates == pytest.approx([7.0, 3.0, 3.0, 6.0])


def test_uplink_downlink_and_cap() -> None:
    # f1 is capped at 3; up:a (10) would then give f2 7, but down:c (12) is shared with f3: 6.
    flows = [
        Flow(("up:a", "down:b"), 3.0),
        Flow(("up:a", "down:c"), math.inf),
        Flow(("up:d", "down:c"), math.inf),
    ]
    capacity = {"up:a": 10.0, "down:b": 100.0, "down:c": 12.0, "up:d": 100.0}
    assert max_min_fair(flows, capacity) == pytest.approx([3.0, 6.0, 6.0])


def test_max_min_fair_edge_cases() -> None:
    assert max_min_fair([], {}) == []
    assert max_min_fair([Flow((), 4.0)], {}) == [4.0]
    assert max_min_fair([Flow(("x",), 4.0)], {"x": 0.0}) == [0.0]
    with pytest.raises(ValueError, match="'nowhere'"):
        max_min_fair([Flow(("nowhere",), 1.0)], {})


def check_max_min_fair(
    flows: Sequence[Flow], capacity: dict[str, float], rates: Sequence[float]
) -> None:
    """Feasible, and every flow has a bottleneck: its cap, or a saturated resource on which no
    other flow gets more (this characterises the max-min fair allocation)."""
    load = dict.fromkeys(capacity, 0.0)
    top = dict.fromkeys(capacity, 0.0)
    for flow, rate in zip(flows, rates, strict=True):
        assert 0.0 <= rate <= flow.cap_Bps * (1 + 1e-9)
        for name in set(flow.resources):
            load[name] += rate
            top[name] = max(top[name], rate)
    finite = [v for v in (*capacity.values(), *(f.cap_Bps for f in flows)) if v < math.inf]
    scale = max([*finite, 1.0])
    tol = 1e-9 * scale
    for name, used in load.items():
        assert used <= capacity[name] + tol
    for flow, rate in zip(flows, rates, strict=True):
        at_cap = rate >= flow.cap_Bps - tol
        bottlenecked = any(
            load[name] >= capacity[name] - tol and rate >= top[name] - tol
            for name in flow.resources
        )
        assert at_cap or bottlenecked, (flow, rate)


RESOURCE_NAMES = [f"up:n{i}" for i in range(4)] + [f"down:n{i}" for i in range(4)]


@settings(max_examples=300, deadline=None)
@given(
    capacities=st.lists(st.floats(0, 1e10), min_size=8, max_size=8),
    flow_specs=st.lists(
        st.tuples(
            st.lists(st.sampled_from(RESOURCE_NAMES), min_size=1, max_size=3),
            st.one_of(st.floats(0, 1e10), st.just(math.inf)),
        ),
        max_size=12,
    ),
)
def test_max_min_fair_is_feasible_and_pareto_efficient(
    capacities: list[float], flow_specs: list[tuple[list[str], float]]
) -> None:
    capacity = dict(zip(RESOURCE_NAMES, capacities, strict=True))
    flows = [Flow(tuple(names), cap) for names, cap in flow_specs]
    rates = max_min_fair(flows, capacity)
    assert len(rates) == len(flows)
    check_max_min_fair(flows, capacity, rates)


def test_max_min_fair_large_random_case_is_fair() -> None:
    rng = random.Random(7)
    nodes = [f"pve{i}" for i in range(100)]
    capacity: dict[str, float] = {}
    for node in nodes:
        goodput = link_goodput_Bps(rng.choice([1e9, 10e9, 25e9]))
        capacity[f"up:{node}"] = capacity[f"down:{node}"] = goodput
    flows = []
    for _ in range(200):
        src, dst = rng.sample(nodes, 2)
        flows.append(Flow((f"up:{src}", f"down:{dst}"), rng.choice([0.6e9, 2.5e9, 50 * MiB])))
    check_max_min_fair(flows, capacity, max_min_fair(flows, capacity))


def test_two_migrations_sharing_a_1gbe_uplink_take_twice_as_long() -> None:
    ram_bytes = 4 * GiB
    cap_Bps = stream_cap_Bps(PARAMS, secure=True)
    capacity = {
        "up:pve1": GOODPUT_1GBE_BPS,
        "down:pve2": GOODPUT_1GBE_BPS,
        "down:pve3": GOODPUT_1GBE_BPS,
    }

    def ram_phase_s(targets: list[str]) -> list[float]:
        migrations = [make_precopy(ram_bytes, "idle") for _ in targets]
        flows = [Flow(("up:pve1", f"down:{t}"), cap_Bps) for t in targets]
        done_s: list[float | None] = [None] * len(targets)
        now_s = 0.0
        while any(d is None for d in done_s):
            active = [i for i, d in enumerate(done_s) if d is None]
            shares = max_min_fair([flows[i] for i in active], capacity)
            for i, share in zip(active, shares, strict=True):
                migrations[i].step(share, PARAMS.step_s)
            now_s += PARAMS.step_s
            for i in active:
                if migrations[i].finished:
                    done_s[i] = now_s + migrations[i].stop_copy_s(GOODPUT_1GBE_BPS)
            assert not any(m.aborted for m in migrations)
        return [d for d in done_s if d is not None]

    (alone_s,) = ram_phase_s(["pve2"])
    shared_s = ram_phase_s(["pve2", "pve3"])
    assert alone_s == pytest.approx(ram_bytes / GOODPUT_1GBE_BPS, rel=0.05)
    for both_s in shared_s:
        assert both_s / alone_s == pytest.approx(2.0, rel=0.05)


# --- lower bounds --------------------------------------------------------------------------------

# g1: 4 GiB RAM dirtied at 1 GiB/s into a 10 MiB working set, alone at 0.4 GiB/s. The set is full
# after 10 ms and r x limit (41 MiB) exceeds it, so it stops in pass 1 once rem + 10 MiB fits:
# it sends exactly B + W. g2: 2 GiB RAM (never dirtied) + 6 GiB local disk at 1 GiB/s.
LB_GUESTS = [
    LbGuest(4 * GiB, 0.0, DirtyProfile(1 * GiB, 10 * MiB), 0.4 * GiB),
    LbGuest(2 * GiB, 6 * GiB, DirtyProfile(0.0, 0.0), 1 * GiB),
]
T_FIXED_SECURE_S = 1.5 + 2.0 + 0.5 + 0.15 + 1.5


def test_drain_lower_bounds_stream_bound() -> None:
    bounds = drain_lower_bounds(LB_GUESTS, 1 * GiB, PARAMS, secure=True)
    # pure: uplink 12 GiB / 1 GiB/s = 12 s; streams 5.65 + 4/0.4 = 15.65 s and 5.65 + 8 s.
    assert bounds.lb_pure_s == pytest.approx(T_FIXED_SECURE_S + 10.0)
    # dirty: g1 sends 4 GiB + 10 MiB: 5.65 + 10 + 10/409.6 s; uplink 12 GiB + 10 MiB: 12.01 s.
    assert bounds.lb_dirty_s == pytest.approx(T_FIXED_SECURE_S + 10.0 + 10 / 409.6)
    assert bounds.bound_by == "stream"


def test_drain_lower_bounds_uplink_bound() -> None:
    bounds = drain_lower_bounds(LB_GUESTS, 0.5 * GiB, PARAMS, secure=False)
    assert bounds.lb_pure_s == pytest.approx(12 / 0.5)
    assert bounds.lb_dirty_s == pytest.approx((12 * GiB + 10 * MiB) / (0.5 * GiB))
    assert bounds.bound_by == "uplink"
    assert drain_lower_bounds([], 1e9, PARAMS, secure=True).lb_dirty_s == 0.0


# --- LXC and HA ---------------------------------------------------------------------------------


def test_lxc_restart_times_within_ranges() -> None:
    rng = random.Random(1)
    for _ in range(200):
        shutdown_s, move_s, start_s = lxc_restart_times(rng, PARAMS)
        assert 2.0 <= shutdown_s <= 20.0
        assert move_s == 1.0
        assert 1.0 <= start_s <= 3.0


def test_lxc_shutdown_is_capped_by_the_timeout() -> None:
    params = PARAMS.replace(lxc_shutdown_min_s=200.0, lxc_shutdown_max_s=300.0)
    shutdown_s, _, _ = lxc_restart_times(random.Random(2), params)
    assert shutdown_s == 180.0


def test_ha_delay_is_deterministic_for_a_seed() -> None:
    delays = [ha_delay_s(random.Random(3), PARAMS) for _ in range(2)]
    assert delays[0] == delays[1]
    rng = random.Random(4)
    assert all(0.0 <= ha_delay_s(rng, PARAMS) <= 20.0 for _ in range(200))


def test_drain_lower_bounds_link_term_counts_the_fixed_lead_and_tail() -> None:
    """Many small guests: the uplink cannot carry anything during the first migration's lead
    (T_pre + T_start) nor after the last byte (T_res + T_post); LB_dirty ignores both."""
    small = [LbGuest(1 * GiB, 0.0, DirtyProfile(0.0, 0.0), 0.5 * GiB) for _ in range(8)]
    bounds = drain_lower_bounds(small, 1 * GiB, PARAMS, secure=True)
    assert bounds.lb_dirty_s == pytest.approx(8.0)  # uplink: 8 GiB at 1 GiB/s
    assert bounds.lb_link_s == pytest.approx(8.0 + T_FIXED_SECURE_S)
    # A restart-migrated container leads with its prepare (T_pre / 2) and shortest shutdown
    # (0.75 + 2 s, sooner than a VM's 4 s) and ends with the move and its shortest start.
    mixed = [*small, LbGuest(0.0, 1 * GiB, DirtyProfile(0.0, 0.0), 0.5 * GiB, kind="lxc")]
    bounds = drain_lower_bounds(mixed, 1 * GiB, PARAMS, secure=True)
    assert bounds.lb_link_s == pytest.approx(0.75 + 2.0 + 9.0 + 1.65)
    # One big stream-bound guest on a fast uplink: the stream term binds, LB_link = LB_dirty.
    bounds = drain_lower_bounds(LB_GUESTS[:1], 10 * GiB, PARAMS, secure=True)
    assert bounds.lb_link_s == bounds.lb_dirty_s > 15.0
