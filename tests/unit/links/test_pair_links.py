"""Learned node-pair link figures (issue 14, "per node pair where the data supports it"): a path
slower than both of its nodes' links (two racks joined by a slower uplink) is learned from the
pair's own migrations, overridden by declarations, shared by the pair's streams in the
simulation, the estimate and the lower bounds, avoided by the target choice, and named in the
plan's assumptions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from pvetool.api.links import LearnedLink, learn_links
from pvetool.links import cluster_links, parse_links, resolve
from pvetool.model import Caps, Move, MoveOptions
from pvetool.planner.build import build_plan, drain_spec
from pvetool.planner.estimate import estimate, window_estimate
from pvetool.planner.sequencer import Network, Timing, simulate, stage_bounds
from pvetool.render.plan import limited_by, plan_data, plan_markdown, plan_renderable
from pvetool.timing import TimingParams, link_goodput_Bps, stream_cap_Bps
from pvetool.units import GiB
from tests.unit.links.test_learned_links import _sample, _two_targets, cap

PARAMS = TimingParams()
ONE_GBIT_Bps = link_goodput_Bps(1e9)
TEN_GBIT_Bps = link_goodput_Bps(10e9)


def _timed(src: str, dst: str, rate: float, start: int, end: int, n: int) -> object:
    """A sample whose task ran from `start` to `end` (the UPID carries the start, in hex)."""
    from pvetool.api.convert.links import LinkSample

    return LinkSample(f"UPID:{src}:1:2:{start:08X}:qmigrate:{n}:root@pam:", src, dst, end, rate)


# -- learning ----------------------------------------------------------------------------------


def test_a_pair_alone_on_its_links_is_learned_both_ways_pooled() -> None:
    samples = [
        _sample("pve2", "pve5", ONE_GBIT_Bps * 0.95, 1),
        _sample("pve5", "pve2", ONE_GBIT_Bps, 2),
        _sample("pve2", "pve1", 0.59e9, 3),  # stream-bound: the nodes themselves are fast
        _sample("pve5", "pve1", 0.59e9, 4),
    ]
    _, pairs = learn_links(samples, cap)
    assert pairs[("pve2", "pve5")].goodput_Bps == pytest.approx(ONE_GBIT_Bps * 0.95)
    assert pairs[("pve2", "pve1")].goodput_Bps is None  # at the stream cap: "at least"
    figures = resolve(["pve1", "pve2", "pve5"], {}, {}, pairs)
    assert set(figures.pairs) == {("pve2", "pve5")}
    bits, origin = figures.pairs[("pve2", "pve5")]
    assert bits == pytest.approx(1e9, rel=0.01)  # the faster way, as a nominal speed
    assert origin == "learned from 2 migrations"  # both directions count
    assert figures.origin == dict.fromkeys(("pve1", "pve2", "pve5"), "default")


def test_migrations_that_shared_a_link_teach_nothing_about_the_pair() -> None:
    # Three migrations into pve5 at once, each at a third of its downlink: slow, but not
    # because of the path from pve2.
    third = TEN_GBIT_Bps / 3
    samples = [
        _timed("pve2", "pve5", third, 100, 130, 101),
        _timed("pve3", "pve5", third, 110, 140, 102),
        _timed("pve4", "pve5", third, 120, 150, 103),
        _timed("pve2", "pve6", third, 200, 230, 104),  # shares pve2's uplink with the next
        _timed("pve2", "pve7", third, 229, 260, 105),
    ]
    _, pairs = learn_links(samples, cap)
    assert pairs == {}
    # The same pve2 -> pve5 migration alone is a pair figure.
    alone = [_timed("pve2", "pve5", third, 100, 130, 101), _timed("pve3", "pve5", 1, 131, 140, 2)]
    _, pairs = learn_links(alone, cap)
    assert pairs[("pve2", "pve5")].goodput_Bps == pytest.approx(third)


def test_a_migration_that_left_its_node_with_another_one_is_marked_from_the_task_list() -> None:
    """The other migration's log was never read (it failed), but the task list shows it left
    pve2 at the same time: the logged one's rate shared pve2's uplink."""
    from pvetool.api.links import fetch_link_samples
    from pvetool.model import TaskLogLine, TaskSummary, Upid

    def task(vmid: int, start: int, end: int | None, status: str | None) -> TaskSummary:
        upid = Upid.parse(f"UPID:pve2:00001234:00005678:{start:08X}:qmigrate:{vmid}:root@pam:")
        return TaskSummary(upid, status, end)

    log = [
        "2026-01-02 10:00:00 starting migration of VM 101 to node 'pve5' (10.0.0.5)",
        "2026-01-02 10:00:05 start migrate command to tcp:10.0.0.5:60000",
        "2026-01-02 10:00:09 migration completed, transferred 400.0 MiB VM-state",
    ]

    class Cluster:
        def __init__(self, tasks: list[TaskSummary]) -> None:
            self.tasks = tasks

        def cluster_tasks(self) -> tuple[TaskSummary, ...]:
            return tuple(self.tasks)

        def task_log_all(self, upid: Upid) -> list[TaskLogLine]:
            return [TaskLogLine(i + 1, text) for i, text in enumerate(log)]

    logged = task(101, 1000, 1009, "OK")
    for others, shared in (
        ([task(102, 1004, 1030, "migration aborted")], True),
        ([task(103, 1001, None, None)], True),  # still running
        ([task(104, 1009, 1030, "OK")], False),  # began as the logged one ended
    ):
        cluster = Cluster([logged, *others])
        got = fetch_link_samples(cluster, ["pve2", "pve5"], per_node=2)  # type: ignore[arg-type]
        mine = [(x.target, x.shared_source) for x in got if x.upid == str(logged.upid)]
        assert mine == [("pve5", shared)]
    flagged = replace(_sample("pve2", "pve5", ONE_GBIT_Bps, 1), shared_source=True)
    assert learn_links([flagged], cap)[1] == {}
    assert learn_links([replace(flagged, shared_source=False)], cap)[1] != {}


def test_a_pair_as_fast_as_its_slow_node_adds_nothing() -> None:
    learned = {"pve5": LearnedLink(ONE_GBIT_Bps, 3, ONE_GBIT_Bps)}
    pairs = {("pve2", "pve5"): LearnedLink(ONE_GBIT_Bps * 0.9, 2, ONE_GBIT_Bps * 0.9)}
    figures = resolve(["pve2", "pve5"], {}, learned, pairs)
    assert figures.bits_per_s["pve5"] == pytest.approx(1e9)
    assert figures.pairs == {}  # pve5's own 1 GbE link already says it


def test_declared_nodes_drop_the_learned_pairs_that_touch_them() -> None:
    slow = LearnedLink(ONE_GBIT_Bps, 4, ONE_GBIT_Bps)
    pairs = {("pve1", "pve2"): slow, ("pve3", "pve4"): slow}
    nodes = ["pve1", "pve2", "pve3", "pve4"]
    assert set(resolve(nodes, {}, {}, pairs).pairs) == {("pve1", "pve2"), ("pve3", "pve4")}
    one = resolve(nodes, parse_links(["pve3=25Gbit"]), {}, pairs)
    assert set(one.pairs) == {("pve1", "pve2")}
    assert resolve(nodes, parse_links(["10Gbit"]), {}, pairs).pairs == {}
    assert resolve(nodes, parse_links(["default=10Gbit"]), {}, pairs).pairs == {}


def test_cluster_links_keeps_pair_figures_from_kept_samples(tmp_path: Path) -> None:
    """Without a client nothing is read; with the kept samples of the cluster (the state file
    the previous runs wrote) and no declaration the pair figure is used."""
    from pvetool.links import _save
    from tests.unit.planner.planner_support import lab

    snap = lab()
    samples = {
        s.upid: s
        for s in (
            _sample("pve1", "pve2", ONE_GBIT_Bps, 1),
            _sample("pve2", "pve1", ONE_GBIT_Bps * 0.97, 2),
            _sample("pve1", "pve3", 0.59e9, 3),
            _sample("pve2", "pve3", 0.59e9, 4),
        )
    }
    _save(tmp_path / f"link-samples-{snap.cluster_name}.json", samples)

    class NoNewTasks:  # the cluster lists no migration it has not seen: kept samples only
        def cluster_tasks(self) -> tuple[()]:
            return ()

    figures = cluster_links(NoNewTasks(), snap, {}, state=tmp_path)  # type: ignore[arg-type]
    assert figures.pairs[("pve1", "pve2")][1] == "learned from 2 migrations"
    declared = cluster_links(NoNewTasks(), snap, {"pve2": 10e9}, state=tmp_path)  # type: ignore[arg-type]
    assert declared.pairs == {}


# -- the planner ---------------------------------------------------------------------------------


def _move(i: int, source: str, target: str) -> Move:
    return Move(
        id=f"m{i}", vmid=100 + i, kind="qemu", name=f"g{i}", source=source, target=target,
        options=MoveOptions(online=False), reason="test",
    )  # fmt: skip


def _copy(move: Move, disk_bytes: float) -> Timing:
    """An offline move: fixed phases and `disk_bytes` over the link (exact arithmetic)."""
    return Timing(
        move.id, move.source, move.target, "offline", 0.0, disk_bytes, "idle",
        cap_Bps=stream_cap_Bps(PARAMS, False), secure=False, pre_s=2.0, post_s=1.0,
        lb_fixed_s=3.0, downtime_all=False,
    )  # fmt: skip


NET = Network.of({"a": 10e9, "b": 10e9, "c": 10e9}, {("b", "a"): 1e9})


def test_network_pair_path_and_resources() -> None:
    assert NET.pair("a", "b") == NET.pair("b", "a") == pytest.approx(ONE_GBIT_Bps)
    assert NET.pair("a", "c") is None
    assert NET.path("a", "b") == pytest.approx(ONE_GBIT_Bps)
    assert NET.path("a", "c") == pytest.approx(TEN_GBIT_Bps)
    moves = [_move(1, "a", "b"), _move(2, "a", "c")]
    capacity, routes = NET.resources(moves)
    assert routes == {"m1": ("up:a", "down:b", "path:a>b"), "m2": ("up:a", "down:c")}
    assert capacity["path:a>b"] == pytest.approx(ONE_GBIT_Bps)
    plain = Network.of({"a": 10e9, "b": 10e9})
    assert plain.resources(moves)[1]["m1"] == ("up:a", "down:b")  # nothing per pair without one


def test_the_pair_streams_share_the_path_and_the_others_do_not_notice() -> None:
    moves = [_move(1, "a", "b"), _move(2, "a", "b"), _move(3, "a", "c"), _move(4, "b", "a")]
    timings = {m.id: _copy(m, 2 * GiB) for m in moves}
    caps = Caps(cluster=8, per_source=8, per_target=8)
    pred = simulate(moves, timings, caps, NET, PARAMS)
    both = 2 * 2 * GiB / ONE_GBIT_Bps  # m1 and m2 share a->b's path: 4 GiB at 1 Gbit
    assert pred["m1"].end_s == pytest.approx(3.0 + both, rel=1e-3)
    assert pred["m2"].end_s == pytest.approx(3.0 + both, rel=1e-3)
    # m3 (a -> c) gets what the pair's streams leave of a's 10 GbE uplink: all but 1 Gbit
    assert stream_cap_Bps(PARAMS, False) > TEN_GBIT_Bps
    assert pred["m3"].end_s == pytest.approx(3.0 + 2 * GiB / (TEN_GBIT_Bps - ONE_GBIT_Bps))
    # the path is full duplex, like a node's link: b -> a runs alone at 1 Gbit
    assert pred["m4"].end_s == pytest.approx(3.0 + 2 * GiB / ONE_GBIT_Bps, rel=1e-3)
    plain = simulate(moves, timings, caps, Network.of({"a": 10e9, "b": 10e9, "c": 10e9}), PARAMS)
    assert plain["m1"].end_s < pred["m1"].end_s / 4  # 8.5 s without the pair figure

    # The large-stage estimate shares the same resources (fixed bytes: the same answer).
    est = estimate(moves, timings, caps, NET, PARAMS)
    for m in moves:
        assert est[m.id].end_s == pytest.approx(pred[m.id].end_s, rel=1e-3)
    # Its candidate ranking counts the path too: two streams share the 1 Gbit.
    window = window_estimate(moves, timings, caps, NET, PARAMS)
    assert window["m1"].end_s == pytest.approx(3.0 + both, rel=1e-3)


def test_bounds_name_the_slow_path() -> None:
    moves = [_move(1, "a", "b"), _move(2, "a", "b"), _move(3, "a", "c")]
    timings = {m.id: _copy(m, 2 * GiB) for m in moves}
    bounds = stage_bounds(moves, timings, NET, PARAMS)
    assert bounds.bound_by == "path a -> b"
    assert limited_by(bounds.bound_by) == "the path a -> b"
    assert bounds.lb_pure_s == pytest.approx(4 * GiB / ONE_GBIT_Bps)
    plain = stage_bounds(moves, timings, Network.of({"a": 10e9, "b": 10e9, "c": 10e9}), PARAMS)
    assert plain.bound_by != "path a -> b" and plain.lb_pure_s < bounds.lb_pure_s / 3


def _link_pairs() -> dict[tuple[str, str], tuple[float, str]]:
    return {("n1", "n2"): (1e9, "learned from 3 migrations")}


def test_a_target_behind_a_slow_path_receives_small_guests_only() -> None:
    snap = _two_targets(8)
    links = dict.fromkeys(("n1", "n2", "n3"), 10e9)
    plain = build_plan(drain_spec(["n1"]), snap, link_bits_per_s=links)
    assert {m.vmid: m.target for m in plain.moves}[100] == "n2"  # the emptier node
    plan = build_plan(drain_spec(["n1"]), snap, link_bits_per_s=links, link_pairs=_link_pairs())
    targets = {m.vmid: m.target for m in plan.moves}
    assert targets[100] == "n3"  # 8 GiB over the 1 Gbit path: ~70 s more
    assert targets[101] == "n2"  # 0.25 GiB: ~2 s more; n2 is the emptier node


def test_the_streams_already_planned_over_a_slow_path_count() -> None:
    """Three 0.5 GiB guests: one alone over the 1 Gbit path costs ~4 s more (fine), two share
    it and cost ~8 s more: the emptier node behind the path receives one, the other node two."""
    from pvetool.model import Guest

    snap = _two_targets(8)
    base = snap.guests[101]
    guests = {
        vmid: replace(base, vmid=vmid, name=f"g{vmid}", node=node, memory_bytes=int(gib * GiB),
                      used_memory_bytes=int(gib * GiB))
        for vmid, node, gib in ((100, "n1", 0.5), (101, "n1", 0.5), (102, "n1", 0.5),
                                (200, "n3", 16))
    }  # fmt: skip
    assert all(isinstance(g, Guest) for g in guests.values())
    snap = replace(snap, guests=guests)
    links = dict.fromkeys(("n1", "n2", "n3"), 10e9)
    plain = build_plan(drain_spec(["n1"]), snap, link_bits_per_s=links)
    assert sorted(m.target for m in plain.moves) == ["n2", "n2", "n2"]  # n3 is loaded
    plan = build_plan(drain_spec(["n1"]), snap, link_bits_per_s=links, link_pairs=_link_pairs())
    assert sorted(m.target for m in plan.moves) == ["n2", "n3", "n3"]


def test_the_assumptions_name_each_pair_figure_in_text_markdown_and_json() -> None:
    snap = _two_targets(1)
    links = dict.fromkeys(("n1", "n2", "n3"), 10e9)
    origin = dict.fromkeys(links, "default")
    plan = build_plan(
        drain_spec(["n1"]), snap, link_bits_per_s=links, link_origin=origin,
        link_pairs=_link_pairs(),
    )  # fmt: skip
    rows = dict(plan.assumptions)
    assert rows["link"].startswith("10 Gbit/s per node")
    assert rows["link n1 <-> n2"].startswith("1 Gbit/s each way (")
    assert "learned from 3 migrations" in rows["link n1 <-> n2"]
    console = Console(width=400, record=True, color_system=None)
    console.print(plan_renderable(plan))
    text = console.export_text()
    assert "link n1 <-> n2: 1 Gbit/s each way" in text
    assert "- link n1 <-> n2: 1 Gbit/s each way" in plan_markdown(plan)
    data = json.loads(json.dumps(plan_data(plan)))
    listed = [list(r) for r in data["plan"]["assumptions"]]
    assert ["link n1 <-> n2", rows["link n1 <-> n2"]] in listed
    none = build_plan(drain_spec(["n1"]), snap, link_bits_per_s=links, link_origin=origin)
    assert not [k for k, _ in none.assumptions if k.startswith("link ")]


# -- end to end ------------------------------------------------------------------------------------
# The emulator models one link per node (cluster-file key ``link``; `pvetool.emulator.engine`
# shares each node's uplink and downlink), not a path between two nodes, so it cannot produce
# a pair slower than both of its nodes. The command line is checked with the samples a previous
# run kept in the state directory (what `cluster_links` reads before it asks the cluster).


def test_drain_dry_run_plans_with_a_kept_pair_figure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pvetool.api import PveClient, fetch_snapshot
    from pvetool.cli.main import main
    from pvetool.emulator.clusterfile import load_cluster
    from pvetool.emulator.server import Emulator
    from pvetool.links import _save
    from pvetool.settings import load_settings
    from tests.emu import START_EPOCH

    root = Path(__file__).resolve().parents[3]
    emu = Emulator(load_cluster("lab"), speed=0.0, start_epoch_s=START_EPOCH).start()
    try:
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "tests" / "data" / "no-config"))
        monkeypatch.setenv("PVETOOL_STATE_DIR", str(tmp_path))
        with PveClient(load_settings(env=emu.env(), config_path=None)) as client:
            cluster = fetch_snapshot(client).cluster_name
        kept = (
            _sample("pve1", "pve2", ONE_GBIT_Bps, 1),
            _sample("pve2", "pve1", ONE_GBIT_Bps * 0.97, 2),
            _sample("pve1", "pve3", 0.59e9, 3),
            _sample("pve2", "pve3", 0.59e9, 4),
        )
        _save(tmp_path / f"link-samples-{cluster}.json", {s.upid: s for s in kept})

        def dry_run(*extra: str) -> dict[str, str]:
            with pytest.raises(SystemExit) as done:
                main(["drain", "pve1", "--dry-run", "-o", "json", *extra])
            out, _ = capsys.readouterr()
            assert not done.value.code, out
            return dict(json.loads(out)["plan"]["assumptions"])

        rows = dry_run()
        assert rows["link pve1 <-> pve2"].startswith("1 Gbit/s each way")
        assert "learned from 2 migrations" in rows["link pve1 <-> pve2"]
        # A declared speed for one of the pair's nodes is what its migrations run at.
        assert "link pve1 <-> pve2" not in dry_run("--link", "pve2=10Gbit")
    finally:
        emu.stop()
