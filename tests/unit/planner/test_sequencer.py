"""The sequencer: sliding-window simulation, lower bounds, caps and order chosen from the model."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pvetool.model import Caps, ClusterSnapshot, Guest, Move, MoveOptions
from pvetool.planner.build import build_plan, drain_spec
from pvetool.planner.sequencer import (
    Network,
    Timing,
    choose_schedule,
    simulate,
    stage_bounds,
)
from pvetool.planner.spec import Concurrency
from pvetool.timing import (
    DIRTY_PROFILES,
    GiB,
    LbGuest,
    TimingParams,
    drain_lower_bounds,
    fixed_time_s,
    link_goodput_Bps,
    solo_migration,
)
from tests.unit.planner.planner_support import lab

PARAMS = TimingParams()
NET = Network.of(10e9)


def _move(i: int, source: str = "a", target: str = "b", after: tuple[str, ...] = ()) -> Move:
    return Move(
        id=f"m{i}",
        vmid=100 + i,
        kind="qemu",
        name=f"g{i}",
        source=source,
        target=target,
        options=MoveOptions(online=True),
        reason="test",
        after=after,
    )


def _timing(move: Move, ram: float = 4 * GiB, profile: str = "moderate") -> Timing:
    return Timing(
        move.id,
        move.source,
        move.target,
        "live",
        ram,
        0.0,
        profile,
        cap_Bps=PARAMS.stream_cap_secure_Bps,
        secure=True,
        pre_s=PARAMS.t_pre_s + PARAMS.t_start_s + PARAMS.t_start_secure_extra_s,
        post_s=PARAMS.t_res_s + PARAMS.t_post_s,
        lb_fixed_s=fixed_time_s(PARAMS, True),
        downtime_all=False,
    )


def test_one_move_takes_what_solo_migration_says() -> None:
    move = _move(1)
    timing = _timing(move, 8 * GiB, "moderate")
    pred = simulate([move], {move.id: timing}, Caps(), NET, PARAMS)[move.id]
    solo = solo_migration(8 * GiB, DIRTY_PROFILES["moderate"], 0.6e9, PARAMS, secure=True)
    assert pred.start_s == 0.0
    assert pred.end_s == pytest.approx(solo.duration_s, abs=0.01)
    assert pred.downtime_s == pytest.approx(solo.downtime_s, abs=0.001)
    assert pred.sent_bytes == pytest.approx(solo.sent_bytes, rel=1e-6)


def test_caps_limit_the_window_and_after_is_honoured() -> None:
    moves = [_move(1), _move(2), _move(3, after=("m1",)), _move(4)]
    timings = {m.id: _timing(m) for m in moves}
    pred = simulate(moves, timings, Caps(cluster=2, per_source=2, per_target=2), NET, PARAMS)
    assert pred["m1"].start_s == pred["m2"].start_s == 0.0
    # m3 waits for m1; m4 is passed over until a slot frees, then starts (sliding window).
    assert pred["m3"].start_s >= pred["m1"].end_s - 1e-9
    first_end = min(pred["m1"].end_s, pred["m2"].end_s)
    assert pred["m4"].start_s == pytest.approx(first_end)
    serial = simulate(moves, timings, Caps(cluster=4, per_source=1, per_target=4), NET, PARAMS)
    ends = sorted((p.start_s, p.end_s) for p in serial.values())
    for (_, end), (start, _) in zip(ends, ends[1:], strict=False):
        assert start >= end - 1e-9


def test_link_sharing_slows_parallel_moves() -> None:
    moves = [_move(i) for i in range(1, 5)]
    timings = {m.id: _timing(m) for m in moves}
    alone = simulate(moves[:1], timings, Caps(), NET, PARAMS)["m1"].end_s
    together = simulate(moves, timings, Caps(cluster=4, per_source=4, per_target=4), NET, PARAMS)
    # Four streams share 1.17 GB/s: each is slower than alone, all end before four in a row.
    assert all(p.end_s > alone for p in together.values())
    assert max(p.end_s for p in together.values()) < 4 * alone


def test_bounds_match_the_timing_model_for_a_single_source_drain() -> None:
    moves = [_move(i, target="b" if i % 2 else "c") for i in range(1, 6)]
    timings = {
        m.id: _timing(m, (i + 2) * GiB, "hot" if i == 3 else "idle") for i, m in enumerate(moves)
    }
    bounds = stage_bounds(moves, timings, NET, PARAMS)
    rate = min(0.6e9, link_goodput_Bps(10e9))
    reference = drain_lower_bounds(
        [LbGuest(t.ram_bytes, 0.0, t.dirty, rate) for t in timings.values()],
        link_goodput_Bps(10e9),
        PARAMS,
        secure=True,
    )
    assert bounds.lb_pure_s == pytest.approx(reference.lb_pure_s)
    assert bounds.lb_dirty_s == pytest.approx(reference.lb_dirty_s)
    assert bounds.bound_by.startswith("uplink" if reference.bound_by == "uplink" else "stream")
    pred = simulate(moves, timings, Caps(cluster=3, per_source=3, per_target=3), NET, PARAMS)
    assert max(p.end_s for p in pred.values()) >= bounds.lb_dirty_s - 1e-6


def test_schedule_respects_fixed_caps_and_orders_dependencies_first() -> None:
    snap = lab()
    plan = build_plan(drain_spec(["pve2"], max_parallel=1), snap)
    assert plan.caps.cluster == 1 and plan.caps.per_source == 1
    stage = plan.stages[0]
    starts = [m.predicted_start_s for m in stage.moves]
    assert starts == sorted(starts)
    moves = [_move(1), _move(2, after=("m3",)), _move(3)]
    caps, schedules = choose_schedule([moves], [snap_for(moves)], PARAMS, NET)
    order = [m.id for m in schedules[0].moves]
    assert order.index("m3") < order.index("m2")
    assert caps.per_source >= 1


def snap_for(moves: list[Move]) -> ClusterSnapshot:
    """A snapshot with the guests of `moves` (for choose_schedule's guest lookups)."""
    base = lab()
    guests = dict(base.guests)
    for m in moves:
        guests[m.vmid] = Guest(
            vmid=m.vmid,
            kind="qemu",
            name=m.name,
            node=m.source,
            status="running",
            memory_bytes=4 * GiB,
            used_memory_bytes=3 * GiB,
            cores=2,
        )
    return replace(base, guests=guests)


def test_faster_links_predict_faster_drains() -> None:
    snap = lab()
    slow = build_plan(drain_spec(["pve2"]), snap, link_bits_per_s=1e9)
    fast = build_plan(drain_spec(["pve2"]), snap, link_bits_per_s=25e9)
    assert fast.predicted_makespan_s < slow.predicted_makespan_s
    for plan in (slow, fast):
        stage = plan.stages[0]
        assert stage.bounds is not None
        assert stage.predicted_makespan_s >= stage.bounds.lb_dirty_s - 1e-6
        assert stage.bounds.lb_dirty_s >= stage.bounds.lb_pure_s - 1e-6


def test_network_per_node() -> None:
    net = Network.of({"a": 1e9, "b": 25e9})
    assert net.link("a") == pytest.approx(0.117e9)
    assert net.link("b") == pytest.approx(2.9e9)
    assert net.link("zzz") == pytest.approx(link_goodput_Bps(10e9))


def test_chosen_caps_count_only_moves_that_copy() -> None:
    """Issue 14 (concurrency per link): two containers restarted on shared storage put nothing
    on the link, so under the caps the sequencer chooses they start at once without holding a
    stream's slot, and the large VM shares pve1's link with fewer streams than if every move
    ran at once (which is what counting every move as a slot came to)."""
    vms = [_move(1, "pve1", "pve2"), _move(2, "pve1", "pve3"), _move(3, "pve1", "pve3")]
    ram = {"m1": 16 * GiB, "m2": 4 * GiB, "m3": 3 * GiB}
    vms = [replace(m, send_bytes=int(ram[m.id])) for m in vms]
    cts = [
        replace(_move(i, "pve1", "pve2"), kind="lxc", options=MoveOptions(restart=True))
        for i in (4, 5)
    ]
    moves = vms + cts
    snap = snap_for(moves)
    guests = dict(snap.guests)
    for m in moves:
        kind = "lxc" if m in cts else "qemu"
        used = int(ram.get(m.id, 1 * GiB))
        guests[m.vmid] = replace(
            guests[m.vmid], kind=kind, memory_bytes=used + GiB, used_memory_bytes=used
        )
    snap = replace(snap, guests=guests)
    assert [m.copies for m in moves] == [True, True, True, False, False]
    caps, schedules = choose_schedule([moves], [snap], PARAMS, NET)
    assert caps.copies_only
    placed = {m.id: m for m in schedules[0].moves}
    assert placed["m4"].predicted_start_s == 0.0 and placed["m5"].predicted_start_s == 0.0
    streams = [placed[m.id] for m in vms]
    for m in streams:  # never more streams on pve1 than the chosen per-source cap
        t = m.predicted_start_s
        running = [o for o in streams if o.predicted_start_s <= t < o.predicted_end_s]
        assert len(running) <= caps.per_source
    # Against every move at once (the only way the old slot count let the containers start
    # at 0), the chosen schedule ends sooner.
    every, at_once = choose_schedule([moves], [snap], PARAMS, NET, fixed=Concurrency(5, 5, 5))
    assert every == Caps(cluster=5, per_source=5, per_target=5, copies_only=False)
    assert schedules[0].makespan_s < at_once[0].makespan_s


def test_moves_that_start_together_are_asked_for_longest_first() -> None:
    """The executor starts moves in plan order: among those predicted to start together, the
    one that bounds the makespan comes first (a few hundredths of a second matter on a drain
    of a few seconds)."""
    ram = {"m1": 1 * GiB, "m2": 6 * GiB, "m3": 2 * GiB}
    moves = [
        replace(_move(i, "pve1", f"pve{i + 1}"), send_bytes=int(ram[f"m{i}"])) for i in (1, 2, 3)
    ]
    snap = snap_for(moves)
    guests = dict(snap.guests)
    for m in moves:
        used = int(ram[m.id])
        guests[m.vmid] = replace(guests[m.vmid], memory_bytes=used + GiB, used_memory_bytes=used)
    snap = replace(snap, guests=guests)
    _, schedules = choose_schedule([moves], [snap], PARAMS, Network.of(25e9))
    placed = schedules[0].moves
    assert {m.predicted_start_s for m in placed} == {0.0}
    assert [m.id for m in placed] == ["m2", "m3", "m1"]
    durations = [m.predicted_end_s - m.predicted_start_s for m in placed]
    assert durations == sorted(durations, reverse=True)
