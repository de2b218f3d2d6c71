"""D19 (in the emulator), D20: the lines of migration task logs as qemu-server, pve-container,
pve-guest-common and pve-common print them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pvetool.emulator.cluster import render_bytes, render_duration
from tests.conformance.conftest import is_stamped, run_task, strip_ts
from tests.emu import Api, start

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"

HOT = """
name: hot
seed: 2
datacenter: {bwlimit: {migration: 102400}, max_workers: 2}
nodes:
  pve1: {cpus: 8, memory: 32GiB}
  pve2: {cpus: 8, memory: 32GiB}
storages:
  ceph: {type: rbd, shared: true, size: 1TiB}
guests:
  110: {type: qemu, node: pve1, memory: 2GiB, used: 1GiB, dirty: hot, disks: {scsi0: "ceph:4G"},
        net0: "virtio,bridge=vmbr0"}
timing: {downtime_limit_max_s: 0.3}
"""


@pytest.mark.source(
    "qemu-server",
    "src/PVE/QemuMigrate.pm",
    "phase2; cap_migrate_downtime",
    "l.1445-1576; l.1179-1188",
)
def test_a_guest_that_cannot_converge_escalates_and_completes(tmp_path: Path) -> None:
    # 400 MiB/s dirty rate through a 100 MiB/s limit: it converges only after the downtime
    # limit reached its maximum (here lowered to 0.3 s so that the run stays short).
    path = tmp_path / "hot.yaml"
    path.write_text(HOT)
    with start(str(path)) as emu:
        api = Api(emu)
        upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
        status, log = run_task(api, upid, step_s=10.0)
    assert status["exitstatus"] == "OK"
    lines = strip_ts(log)
    assert not any(x.startswith("migration status error") for x in lines)
    assert lines.count("capping downtime limit to maximum possible: 300 ms") == 1
    increases = [x for x in lines if x.startswith("auto-increased downtime")]
    assert increases[-1] == "auto-increased downtime to continue migration: 300 ms"


@pytest.mark.source(
    "qemu-server",
    "src/PVE/QemuMigrate.pm",
    "scan_local_volumes; phase1",
    "l.537-569, l.605; l.828-850",
)
def test_a_local_disk_without_with_local_disks(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/111/migrate", target="pve2", online=1)
    status, log = run_task(api, upid)
    lines = strip_ts(log)
    i = lines.index("starting migration of VM 111 to node 'pve2' (10.0.0.12)")
    assert lines[i + 1 :] == [
        "found local disk 'local-lvm:vm-111-disk-0' (attached)",
        "can't migrate local disk 'local-lvm:vm-111-disk-0': can't live migrate attached local "
        "disks without with-local-disks option",
        "ERROR: Problem found while scanning volumes - can't migrate VM - check log",
        "aborting phase 1 - cleanup resources",
        lines[-2],
        "TASK ERROR: migration aborted",
    ]
    assert re.fullmatch(
        r"ERROR: migration aborted \(duration 00:00:\d\d\): Problem found while scanning "
        r"volumes - can't migrate VM - check log",
        lines[-2],
    )
    # The recorded 6.x log has the same structure with the older wording.
    recorded = strip_ts((FIXTURES / "qmigrate_failed_local_disk.log").read_text().splitlines())
    assert recorded[-3] == "aborting phase 1 - cleanup resources"
    assert status["exitstatus"] == "migration aborted"


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "scan_local_volumes", "l.473-479")
def test_a_local_cdrom_image_fails_any_migration(api: Api) -> None:
    upid = api.post(
        "/nodes/pve1/qemu/305/migrate", target="pve2", online=1, **{"with-local-disks": 1}
    )
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration aborted"
    assert "can't migrate local disk 'local:iso/debian-13.iso': local cdrom image" in strip_ts(log)


@pytest.mark.source(
    "qemu-server; pve-guest-common",
    "src/PVE/QemuMigrate.pm; src/PVE/AbstractMigrate.pm",
    "prepare, phase1; migrate",
    "l.256-259, l.831; l.158-176",
)
def test_prepare_lines_come_before_starting_migration(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    _, log = run_task(api, upid)
    lines = strip_ts(log)
    assert lines[0] == (
        "conntrack state migration not supported or disabled, active connections might get dropped"
    )
    assert lines[1] == "starting migration of VM 110 to node 'pve2' (10.0.0.12)"
    # The recorded 9.2.18 log: prepare's line about 2 s before phase 1's.
    recorded = (FIXTURES / "qmigrate_live_failed_phase2_pve9_2_18_partial.log").read_text()
    rec = strip_ts(recorded.splitlines())
    assert rec[0] == lines[0] and rec[1].startswith("starting migration of VM")


@pytest.mark.source(
    "qemu-server",
    "src/PVE/QemuMigrate.pm; src/PVE/QemuServer/BlockJob.pm",
    "phase2; monitor, common_mirror_qmp_options",
    "l.1289-1336; l.134-165, l.264-269",
)
def test_storage_migration_lines(api: Api) -> None:
    upid = api.post(
        "/nodes/pve1/qemu/111/migrate", target="pve2", online=1, **{"with-local-disks": 1}
    )
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "OK"
    lines = strip_ts(log)
    order = [
        "starting VM 111 on remote node 'pve2'",
        "volume 'local-lvm:vm-111-disk-0' is 'local-lvm:vm-111-disk-0' on the target",
        "start remote tunnel",
        "ssh tunnel ver 1",
        "starting storage migration",
        "scsi0: start migration to "
        "nbd:unix:/run/qemu-server/111_nbd.migrate:exportname=drive-scsi0",
        "drive mirror is starting for drive-scsi0",
        "all 'mirror' jobs are ready",
        "switching mirror jobs to actively synced mode",
        "starting online/live migration on unix:/run/qemu-server/111.migrate",
        "drive-scsi0: Completing block job...",
        "drive-scsi0: Completed successfully.",
        "drive-scsi0: mirror-job finished",
        "stopping NBD storage migration server on target.",
    ]
    positions = [lines.index(x) for x in order]
    assert positions == sorted(positions)
    # BlockJob.pm prints: no time stamps on the mirror's own lines.
    for raw in ("drive mirror is starting for drive-scsi0", "all 'mirror' jobs are ready"):
        assert raw in log
    progress = [x for x in log if x.startswith("drive-scsi0: transferred ")]
    assert progress and progress[-1].endswith(", ready")
    assert re.fullmatch(
        r"drive-scsi0: transferred [\d.]+ \w+ of 4\.0 GiB \(100\.00%\) in (\d+s|\d+m( \d+s)?), "
        r"ready",
        progress[-1],
    )


@pytest.mark.source(
    "qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm (hamigrate worker)", "l.5641-5648"
)
def test_the_ha_request_line_is_raw(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/103/migrate", target="pve2", online=1)
    _, log = run_task(api, upid)
    assert log[0] == "Requesting HA migration for VM 103 to node pve2"
    assert not is_stamped(log[0])


@pytest.mark.source(
    "pve-common", "src/PVE/Format.pm", "render_bytes; render_duration", "l.66-80; l.31-58"
)
def test_pves_number_formats() -> None:
    assert render_bytes(512) == "512.0 B"
    assert render_bytes(1023) == "1023.0 B"
    assert render_bytes(1024) == "1.0 KiB"
    assert render_bytes(1536 * 1024**2) == "1.5 GiB"
    assert [render_duration(s) for s in (0, 5, 62, 120, 3600, 3605)] == [
        "0s",
        "5s",
        "1m 2s",
        "2m",
        "1h",
        "1h 5s",
    ]


@pytest.mark.source("pve-guest-common", "src/PVE/AbstractMigrate.pm", "$msg2text", "l.15-28")
def test_time_stamps_are_local_time(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "data" / "clusters" / "probe.yaml").read_text()
    path = tmp_path / "vienna.yaml"
    path.write_text(
        text.replace(
            "datacenter: {migration: {type: secure}, max_workers: 4}",
            "datacenter: {migration: {type: secure}, max_workers: 4, timezone: Europe/Vienna}",
        )
    )
    with start(str(path)) as emu:
        api = Api(emu)
        upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
        _, log = run_task(api, upid)
        start_s = int(upid.split(":")[4], 16)
    import datetime
    import zoneinfo

    first = datetime.datetime.fromtimestamp(start_s, zoneinfo.ZoneInfo("Europe/Vienna"))
    assert log[0].startswith(first.strftime("%Y-%m-%d %H:"))
