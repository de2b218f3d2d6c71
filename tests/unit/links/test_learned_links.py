"""Learned link speeds (issue 14): PVE's real migration logs parsed, per-node figures learned
from them, declared figures winning, and a slow-link node planned around."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pvetool.api import PveClient, fetch_snapshot
from pvetool.api.convert.links import LinkSample, parse_migration_log, parse_render_duration
from pvetool.api.links import LearnedLink, learn_links
from pvetool.emulator.clusterfile import load_cluster_text
from pvetool.emulator.fleet import generate_cluster
from pvetool.emulator.server import Emulator
from pvetool.links import cluster_links, parse_links, resolve
from pvetool.model import (
    ClusterSnapshot,
    DatacenterOptions,
    Disk,
    Guest,
    Net,
    Node,
    Storage,
    StorageOnNode,
)
from pvetool.planner.build import build_plan, drain_spec
from pvetool.settings import load_settings
from pvetool.timing import TimingParams, link_goodput_Bps, stream_cap_Bps
from pvetool.units import GiB, MiB
from tests.emu import START_EPOCH, Api

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"  # sources: SOURCES.md
UPID = "UPID:pve1:0000A1B2:0001C3D4:6A000000:qmigrate:101:root@pam:"
CAP = TimingParams()


def cap(secure: bool) -> float:
    return stream_cap_Bps(CAP, secure)


def test_pve9_log_gives_target_and_median_ram_rate() -> None:
    lines = (FIXTURES / "qmigrate_online_pve9_ha_ok.log").read_text().splitlines()
    sample = parse_migration_log(UPID, lines, endtime=5)
    assert sample is not None
    assert (sample.source, sample.target, sample.secure) == ("pve1", "dalia", True)
    # 15 "migration active" rates; their median is 823.0 MiB/s (not the 806.6 MiB/s average
    # line, which divides the whole RAM size by the time).
    assert sample.ram_Bps == pytest.approx(823.0 * MiB)
    assert sample.disk_Bps is None


def test_insecure_and_disk_mirror_lines() -> None:
    lines = [
        "2026-01-02 10:00:00 starting migration of VM 111 to node 'pve3' (10.0.0.3)",
        "drive-scsi0: transferred 1.0 GiB of 64.0 GiB (1.56%) in 1s",
        "drive-scsi0: transferred 64.0 GiB of 64.0 GiB (100.00%) in 1m 4s, ready",
        "2026-01-02 10:01:05 starting online/live migration on tcp:10.0.0.3:60000",
        "2026-01-02 10:01:05 start migrate command to tcp:10.0.0.3:60000",
        "2026-01-02 10:01:09 migration completed, transferred 4.0 GiB VM-state",
    ]
    sample = parse_migration_log(UPID, lines, endtime=9)
    assert sample is not None
    assert not sample.secure
    assert sample.disk_bytes == 64 * GiB and sample.disk_Bps == pytest.approx(GiB)
    assert sample.ram_Bps == pytest.approx(GiB)  # 4 GiB between 10:01:05 and 10:01:09


def test_render_duration() -> None:
    assert parse_render_duration("5s") == 5
    assert parse_render_duration("1m 2s") == 62
    assert parse_render_duration("1h 5s") == 3605
    assert parse_render_duration("2m") == 120
    assert parse_render_duration("soon") is None


def test_failed_and_ha_request_logs_give_no_rate() -> None:
    ha = (FIXTURES / "qmigrate_failed_local_disk.log").read_text().splitlines()
    sample = parse_migration_log(UPID, ha, endtime=1)
    assert sample is None or sample.ram_Bps is None
    blocked = (FIXTURES / "hamigrate_blocked_negative_affinity_pve9.log").read_text()
    assert parse_migration_log(UPID, blocked.splitlines(), endtime=1) is None


def _sample(src: str, dst: str, rate: float, end: int = 1) -> LinkSample:
    return LinkSample(
        f"UPID:{src}:1:2:{end:08X}:qmigrate:1{end:02d}:root@pam:", src, dst, end, rate
    )


def test_learn_links_slow_node_and_stream_bound_fast_ones() -> None:
    slow = link_goodput_Bps(1e9)
    samples = [
        _sample("pve1", "pve2", 0.59e9, 1),  # at the secure stream cap: "at least"
        _sample("pve2", "pve3", slow * 0.9, 2),
        _sample("pve3", "pve1", slow, 3),
    ]
    by_node, by_pair = learn_links(samples, cap)
    assert by_node["pve3"] == LearnedLink(slow, 2, slow)  # its peers were seen faster
    assert by_node["pve1"].goodput_Bps is None and by_node["pve1"].tasks == 2
    assert by_pair[("pve2", "pve3")].goodput_Bps == pytest.approx(slow * 0.9)


def test_a_slow_migration_alone_does_not_say_which_end_was_slow() -> None:
    by_node, _ = learn_links([_sample("pve1", "pve4", 0.1e9, 1)], cap)
    assert by_node["pve1"].goodput_Bps is None and by_node["pve4"].goodput_Bps is None


def test_declared_wins_then_learned_then_default() -> None:
    learned = {"pve3": LearnedLink(link_goodput_Bps(1e9), 4, link_goodput_Bps(1e9))}
    figures = resolve(["pve1", "pve2", "pve3"], {}, learned)
    assert figures.origin == {
        "pve1": "default",
        "pve2": "default",
        "pve3": "learned from 4 migrations",
    }
    assert figures.bits_per_s["pve3"] == pytest.approx(1e9)
    declared = resolve(["pve1", "pve3"], parse_links(["pve3=25Gbit"]), learned)
    assert declared.bits_per_s["pve3"] == 25e9 and declared.origin["pve3"] == "declared"
    every = resolve(["pve1", "pve3"], parse_links(["2.5Gbit"]), learned)
    assert every.bits_per_s == {"pve1": 2.5e9, "pve3": 2.5e9}
    with pytest.raises(ValueError, match="pve3=fast"):
        parse_links(["pve3=fast"])


def _log_reads(emu: Emulator) -> int:
    return sum(n for k, n in emu.stats.by_endpoint.items() if k.endswith("/log"))


def _heterogeneous() -> str:
    text = generate_cluster(4, 16, seed=3, fleet="light")
    return re.sub(r'(  pve4: \{[^\n]*?)link: "10Gbit"', r'\1link: "1Gbit"', text)


def test_learned_from_the_emulator_and_planned_around(tmp_path: Path) -> None:
    """Migrations to and from the 1 GbE node teach pvetool its speed; a drain then sends the
    big guests elsewhere and the plan says where the figure came from."""
    emu = Emulator(
        load_cluster_text(_heterogeneous(), "<hetero>"), speed=0.0, start_epoch_s=START_EPOCH
    ).start()
    try:
        api = Api(emu)
        guests = api.get("/cluster/resources", type="vm")
        qemu = [g for g in guests if g["type"] == "qemu" and g["status"] == "running"]
        fast = [g for g in qemu if g["node"] != "pve4"]
        moves = [(fast[0], "pve4"), (fast[1], "pve4")]  # 1 GbE: bound by pve4's link
        moves += [(g, "pve3" if g["node"] != "pve3" else "pve2") for g in fast[2:4]]  # stream
        for g, target in moves:
            upid = api.post(f"/nodes/{g['node']}/qemu/{g['vmid']}/migrate", target=target, online=1)
            api.wait_task(upid)
        with PveClient(load_settings(env=emu.env(), config_path=None)) as client:
            snap = fetch_snapshot(client)
            figures = cluster_links(client, snap, {}, state=tmp_path)
            logs_read = _log_reads(emu)
            again = cluster_links(client, snap, {}, state=tmp_path)
            assert _log_reads(emu) == logs_read == 4  # each log once: the samples are kept
        listed = [k for k in emu.stats.by_endpoint if k.endswith("/tasks")]
        assert listed == ["GET /cluster/tasks"]  # one call for the whole cluster
    finally:
        emu.stop()
    assert figures.origin["pve4"] == "learned from 2 migrations"
    assert figures.bits_per_s["pve4"] == pytest.approx(1e9, rel=0.1)
    for node in ("pve1", "pve2", "pve3"):  # stream-bound: "at least", the default stays
        assert (figures.origin[node], figures.bits_per_s[node]) == ("default", 10e9)
    assert again == figures  # from the kept samples
    assert [p.name for p in tmp_path.glob("link-samples-*.json")] == [
        f"link-samples-{snap.cluster_name}.json"
    ]
    source = next(n for n in ("pve1", "pve2", "pve3") if snap.guests_on(n))
    plan = build_plan(
        drain_spec([source]),
        snap,
        link_bits_per_s=figures.bits_per_s,
        link_origin=figures.origin,
    )
    assert plan.can_run
    for move in plan.moves:
        guest = snap.guests[move.vmid]
        if move.target == "pve4":  # only a guest whose transfer takes at most ~5 s longer
            assert guest.used_memory_bytes / link_goodput_Bps(1e9) < 6.0, move
    link_text = dict(plan.assumptions)["link"]
    assert "pve4 1 Gbit/s (learned from 2 migrations)" in link_text


def _two_targets(big_gib: int) -> ClusterSnapshot:
    """n1 (to drain) with a big and a tiny guest; n2 (1 GbE) emptier than n3 (10 GbE)."""
    nodes = {
        name: Node(name, online=True, cpus=32, memory_total_bytes=mem * GiB, host_arch="x86_64")
        for name, mem in (("n1", 64), ("n2", 64), ("n3", 48))
    }

    def guest(vmid: int, node: str, gib: float) -> Guest:
        return Guest(
            vmid=vmid, kind="qemu", name=f"g{vmid}", node=node, status="running",
            memory_bytes=int(gib * GiB), used_memory_bytes=int(gib * GiB), cores=1,
            disks=(Disk("scsi0", f"ceph:vm-{vmid}-disk-0", "ceph", 8 * GiB, is_local=False),),
            nets=(Net("net0", "vmbr0"),), config_known=True,
        )  # fmt: skip

    guests = {100: guest(100, "n1", big_gib), 101: guest(101, "n1", 0.25)}
    storage = Storage(
        "ceph", "rbd", shared=True, per_node={n: StorageOnNode(n, True, 10**13, 0) for n in nodes}
    )
    return ClusterSnapshot(
        cluster_name="c", quorate=True, nodes=nodes, guests=guests, storages={"ceph": storage},
        datacenter=DatacenterOptions(), bridges={n: frozenset({"vmbr0"}) for n in nodes},
    )  # fmt: skip


def test_slow_link_node_receives_small_guests_only() -> None:
    snap = _two_targets(8)
    links = {"n1": 10e9, "n2": 1e9, "n3": 10e9}
    plan = build_plan(drain_spec(["n1"]), snap, link_bits_per_s=links)
    targets = {m.vmid: m.target for m in plan.moves}
    assert targets[100] == "n3"  # 8 GiB over 1 GbE: ~70 s more than over 10 GbE
    assert targets[101] == "n2"  # 0.25 GiB: ~2 s more; n2 is the emptier node
    same = build_plan(drain_spec(["n1"]), snap, link_bits_per_s=10e9)
    assert {m.vmid: m.target for m in same.moves}[100] == "n2"  # one speed: load decides
