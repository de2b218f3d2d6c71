"""A guest's dirty-page profile learned from its own last migration (issue 14: predictions you
can trust): the real task logs parsed, the profile that reproduces them, the planner using it
instead of the CPU-load guess, and the plan saying where each guest's figure came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvetool.api import PveClient, fetch_snapshot
from pvetool.api.convert.links import LinkSample, parse_migration_log
from pvetool.emulator.clusterfile import load_cluster_text
from pvetool.emulator.server import Emulator
from pvetool.links import cluster_links, learned_dirty
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
from pvetool.timing import (
    DIRTY_PROFILES,
    TimingParams,
    fit_dirty_profile,
    profile_from_cpu,
    solo_migration,
)
from pvetool.units import GiB, MiB
from tests.emu import START_EPOCH, Api

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"  # sources: SOURCES.md
PARAMS = TimingParams()


def _upid(vmid: int, node: str = "pve1") -> str:
    return f"UPID:{node}:0000A1B2:0001C3D4:6A000000:qmigrate:{vmid}:root@pam:"


def test_pve9_log_says_what_the_guest_sent_and_it_fits_moderate() -> None:
    """The recorded PVE 9 migration of VM 20057 (12.6 GiB configured, 11.7 GiB sent): with the
    non-zero RAM the timing model's calibration found for it (0.88 x 12.6 GiB, module docstring
    of pvetool.timing) and its median rate, the profile that reproduces it is "moderate" - the
    profile that calibration matched by hand."""
    lines = (FIXTURES / "qmigrate_online_pve9_ha_ok.log").read_text().splitlines()
    sample = parse_migration_log(_upid(20057), lines, endtime=5)
    assert sample is not None
    assert sample.vmid == 20057
    assert sample.ram_sent_bytes == int(11.7 * GiB)  # "migration completed, transferred ..."
    assert not sample.dirties_lots and not sample.downtime_raised
    assert sample.ram_Bps is not None
    profile = fit_dirty_profile(0.88 * 12.6 * GiB, sample.ram_sent_bytes, sample.ram_Bps, PARAMS)
    assert profile == "moderate"


def test_pve8_log_without_the_completed_line_uses_the_last_progress_line() -> None:
    lines = (FIXTURES / "qmigrate_online_pve8_ha_ok.log").read_text().splitlines()
    sample = parse_migration_log(_upid(105), lines, endtime=5)
    assert sample is not None
    assert (sample.vmid, sample.ram_sent_bytes) == (105, int(2.5 * GiB))


def test_a_guest_that_outran_the_transfer_is_hot() -> None:
    # qemu-server src/PVE/QemuMigrate.pm phase2 (l.1534-1545) appends this when QEMU's
    # dirty-pages-rate x page-size exceeds pages-per-second x page-size; and
    # increase_migrate_downtime (l.1190-1211) logs the raised limit.
    lines = [
        "2026-01-02 10:00:00 starting migration of VM 120 to node 'pve2' (10.0.0.2)",
        "2026-01-02 10:00:02 start migrate command to unix:/run/qemu-server/120.migrate",
        "2026-01-02 10:00:03 migration active, transferred 500.0 MiB of 4.0 GiB VM-state, "
        "500.0 MiB/s, VM dirties lots of memory: 612.0 MiB/s",
        "2026-01-02 10:00:09 auto-increased downtime to continue migration: 200 ms",
        "2026-01-02 10:00:12 migration completed, transferred 4.9 GiB VM-state",
    ]
    sample = parse_migration_log(_upid(120), lines, endtime=5)
    assert sample is not None
    assert sample.dirties_lots and sample.downtime_raised
    assert sample.ram_sent_bytes == int(4.9 * GiB)
    hot = fit_dirty_profile(2 * GiB, 2.01 * GiB, 500 * MiB, PARAMS, converged_hardly=True)
    assert hot == "hot"


@pytest.mark.parametrize("name", sorted(DIRTY_PROFILES))
@pytest.mark.parametrize("ram_gib", [0.5, 2.0, 8.0])
def test_the_fit_recovers_each_profile_from_what_it_sends(name: str, ram_gib: float) -> None:
    rate = 0.6e9
    sent = solo_migration(ram_gib * GiB, DIRTY_PROFILES[name], rate, PARAMS, True).sent_bytes
    assert fit_dirty_profile(ram_gib * GiB, sent, rate, PARAMS) == name


def test_cpu_prior() -> None:
    assert [profile_from_cpu(c) for c in (0.0, 0.059, 0.06, 0.249, 0.25, 1.0)] == [
        "idle", "idle", "moderate", "moderate", "hot", "hot",
    ]  # fmt: skip


def _snapshot(cpu: float) -> ClusterSnapshot:
    nodes = {
        n: Node(n, online=True, cpus=32, memory_total_bytes=64 * GiB, host_arch="x86_64")
        for n in ("n1", "n2")
    }

    def guest(vmid: int) -> Guest:
        return Guest(
            vmid=vmid, kind="qemu", name=f"g{vmid}", node="n1", status="running",
            memory_bytes=4 * GiB, used_memory_bytes=2 * GiB, cores=2, cpu_fraction=cpu,
            disks=(Disk("scsi0", f"ceph:vm-{vmid}-disk-0", "ceph", 8 * GiB, is_local=False),),
            nets=(Net("net0", "vmbr0"),), config_known=True,
        )  # fmt: skip

    storage = Storage(
        "ceph", "rbd", shared=True, per_node={n: StorageOnNode(n, True, 10**13, 0) for n in nodes}
    )
    return ClusterSnapshot(
        cluster_name="c", quorate=True, nodes=nodes, guests={100: guest(100), 101: guest(101)},
        storages={"ceph": storage}, datacenter=DatacenterOptions(),
        bridges={n: frozenset({"vmbr0"}) for n in nodes},
    )  # fmt: skip


def _sent_sample(vmid: int, profile: str, endtime: int) -> LinkSample:
    rate = 0.6e9
    sent = solo_migration(2 * GiB, DIRTY_PROFILES[profile], rate, PARAMS, True).sent_bytes
    return LinkSample(
        _upid(vmid), "n1", "n2", endtime, ram_Bps=rate, vmid=vmid, ram_sent_bytes=int(sent)
    )


def test_learned_profile_wins_over_the_cpu_guess_and_the_plan_says_so() -> None:
    snap = _snapshot(cpu=0.01)  # both guests look idle by their CPU load
    samples = [
        _sent_sample(100, "idle", endtime=1_790_000_000),
        _sent_sample(100, "hot", endtime=1_790_000_100),  # newer: this one counts
    ]
    learned = learned_dirty(snap, samples, PARAMS)
    assert learned == {100: ("hot", "learned from its migration of 2026-09-21 14:15 UTC")}
    plan = build_plan(drain_spec(["n1"]), snap, learned_dirty=learned)
    profiles = {m.vmid: m.profile for m in plan.moves}
    assert profiles == {100: "hot", 101: "idle"}
    said = dict(plan.assumptions)
    assert said["dirty pages of 100"] == "hot, learned from its migration of 2026-09-21 14:15 UTC"
    assert said["dirty pages of the others"].startswith("guessed from the guest's CPU load")
    guessed = build_plan(drain_spec(["n1"]), snap)
    assert {m.vmid: m.profile for m in guessed.moves} == {100: "idle", 101: "idle"}
    assert dict(guessed.assumptions)["dirty pages"].startswith("guessed from the guest's CPU")
    hot_end = max(m.predicted_end_s or 0.0 for m in plan.moves if m.vmid == 100)
    idle_end = max(m.predicted_end_s or 0.0 for m in guessed.moves if m.vmid == 100)
    assert hot_end > idle_end  # the prediction follows the learned profile


_CLUSTER = """
name: learn
seed: 5
datacenter: {migration: {type: secure}, max_workers: 4}
nodes:
  pve1: {cpus: 16, memory: 32GiB, link: "10Gbit", online: true, bridges: [vmbr0]}
  pve2: {cpus: 16, memory: 32GiB, link: "10Gbit", online: true, bridges: [vmbr0]}
storages:
  ceph: {type: rbd, shared: true, size: 4TiB}
guests:
  100: {type: qemu, name: hot-100, node: pve1, status: running, cores: 2, memory: 2GiB,
        used: 1GiB, dirty: hot, disks: {scsi0: "ceph:8G"}, net0: "virtio,bridge=vmbr0"}
  101: {type: qemu, name: calm-101, node: pve1, status: running, cores: 2, memory: 2GiB,
        used: 1GiB, dirty: idle, disks: {scsi0: "ceph:8G"}, net0: "virtio,bridge=vmbr0"}
"""


def test_learned_from_the_guests_own_migration_with_links_declared(tmp_path: Path) -> None:
    """A hot guest restarted (its CPU load low again, as after a boot) migrated before: the
    next plan knows it is hot from that migration's log, even with every link declared."""
    emu = Emulator(load_cluster_text(_CLUSTER, "<learn>"), speed=0.0, start_epoch_s=START_EPOCH)
    emu.start()
    try:
        api = Api(emu)
        for vmid in (100, 101):
            upid = api.post(f"/nodes/pve1/qemu/{vmid}/migrate", target="pve2", online=1)
            assert api.wait_task(upid)["exitstatus"] == "OK"
            upid = api.post(f"/nodes/pve2/qemu/{vmid}/migrate", target="pve1", online=1)
            assert api.wait_task(upid)["exitstatus"] == "OK"
        with emu.locked() as c:
            c.guests[100].cpu_load = 0.02  # as the emulator sets it after a start
        api.advance(20)  # the next pvestatd broadcast shows it
        with PveClient(load_settings(env=emu.env(), config_path=None)) as client:
            snap = fetch_snapshot(client)
            figures = cluster_links(client, snap, {"default": 10e9}, state=tmp_path)
    finally:
        emu.stop()
    assert snap.guests[100].cpu_fraction < 0.06  # the CPU guess would say idle
    assert {v: p for v, (p, _) in figures.dirty.items()} == {100: "hot", 101: "idle"}
    assert figures.origin == {"pve1": "declared", "pve2": "declared"}
    plan = build_plan(
        drain_spec(["pve1"]),
        snap,
        link_bits_per_s=figures.bits_per_s,
        link_origin=figures.origin,
        learned_dirty=figures.dirty,
    )
    assert {m.vmid: m.profile for m in plan.moves} == {100: "hot", 101: "idle"}
    assert dict(plan.assumptions)["dirty pages of 100"].startswith("hot, learned from its")
