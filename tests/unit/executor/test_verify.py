"""How the executor reads PVE's answers (`pvetool.executor.verify`) in the shapes PVE 9.2 really
sends: a synchronous storage refusal (D3), a hamigrate the HA manager refuses (D5), and the
migrate precondition with its {} entries (D1), mapped devices (D7), disks and CD-ROMs (D8)."""

from __future__ import annotations

from typing import Any

from pvetool.api import convert
from pvetool.errors import TaskFailed
from pvetool.executor.verify import Check, Room, precheck, target_trouble
from pvetool.model import PlanRules
from tests.unit.api.helpers import load_fixture
from tests.unit.executor.fakes import FakeApi, FakeGuest, move


def test_a_storage_refusal_blames_the_target() -> None:
    # qemu-server QemuServer.pm check_storage_availability -> pve-storage storage_check_node.
    reason = "PVE refused to start the migration: storage 'fast' is not available on node 'pve3'"
    assert target_trouble(reason) == "target-refused"


def test_a_refused_hamigrate_is_a_failed_move_with_pves_words() -> None:
    # Recorded 9.x task log (SOURCES.md: proxcenter-ui#674): the HA manager's CLI dies on a
    # negative resource-affinity partner on the target (ha_manager.pm l.159-175).
    lines = load_fixture("hamigrate_blocked_negative_affinity_pve9.log").splitlines()
    failed = TaskFailed(
        upid="UPID:PVE-2-1:0001:0002:6A000000:hamigrate:20026:root@pam:",
        node="PVE-2-1",
        exitstatus=lines[-1].removeprefix("TASK ERROR: "),
        last_lines=lines,
        description="HA migration request for 20026",
    )
    assert failed.reason == (
        "resource 'vm:20027' on target node 'PVE-2-2' in negative affinity with resource 'vm:20026'"
    )
    assert target_trouble(failed.reason) == "target-refused"  # another target may do


# -- precheck on PVE 9.2's precondition (D1, D7, D8) ---------------------------------------

GiB = 1024**3


def _precheck(raw: dict[str, Any], *, running: bool = True, shutdown: bool = False) -> Check:
    api = FakeApi({"pve1": 64 * GiB, "pve2": 64 * GiB}, [FakeGuest(301, "qemu", "pve1")])
    if not running:
        api.guests[301].status = "stopped"
    pre = convert.precondition("qemu", raw)
    api.migrate_precondition = lambda *_a, **_k: pre  # type: ignore[method-assign]
    room = Room(rules=PlanRules(), incoming=lambda _t: {}, busy=lambda _n: False)
    return precheck(
        api, move("m", 301, "pve1", "pve2", running=running, shutdown=shutdown), room=room
    )


def _answer(**extra: Any) -> dict[str, Any]:
    # The shape of qemu-server 9.2.6 migrate_vm_precondition: every other node listed (D1).
    base: dict[str, Any] = {
        "running": 1,
        "allowed_nodes": ["pve2"],
        "not_allowed_nodes": {"pve2": {}},
        "local_disks": [],
        "local_resources": [],
        "mapped-resources": [],
        "mapped-resource-info": {},
    }
    return base | extra


def test_an_allowed_node_with_an_empty_entry_is_a_target() -> None:
    assert _precheck(_answer()).verdict == "ready"


def test_a_mapped_usb_device_blocks_only_a_live_migration() -> None:
    # D7: QemuMigrate/Helpers.pm check_local_resources l.74-80 lists a mapped USB device in
    # local_resources too; prepare (QemuMigrate.pm l.270-304) refuses it live only.
    raw = _answer(
        local_resources=["usb0"],
        **{"mapped-resources": ["usb0"], "mapped-resource-info": {"usb0": {"name": "dongle"}}},
    )
    live = _precheck(raw)
    assert live.verdict == "fail" and "usb0:dongle" in live.reason and "offline" in live.reason
    assert _precheck(raw | {"running": 0}, running=False).verdict == "ready"
    capable = raw | {"mapped-resource-info": {"usb0": {"name": "dongle", "live-migration": 1}}}
    assert _precheck(capable).verdict == "ready"


def test_an_unmapped_local_device_blocks_every_migration() -> None:
    check = _precheck(_answer(local_resources=["hostpci0"]), running=False)
    assert check.verdict == "fail" and "local devices (hostpci0)" in check.reason


def test_local_disks_need_with_local_disks_only_when_attached() -> None:
    # D8: is_attached decides (QemuMigrate.pm scan_local_volumes l.536-545).
    unused = {"volid": "local-lvm:vm-301-disk-1", "cdrom": 0, "is_unused": 1, "is_attached": 0}
    assert _precheck(_answer(local_disks=[unused])).verdict == "ready"
    attached = {"volid": "local-lvm:vm-301-disk-0", "cdrom": 0, "is_unused": 0, "is_attached": 1}
    check = _precheck(_answer(local_disks=[attached]))
    assert check.verdict == "fail" and "with-local-disks" in check.reason


def test_a_local_cdrom_image_blocks_but_a_cloudinit_drive_does_not() -> None:
    # D8: QemuMigrate.pm l.473-479 "local cdrom image"; the recorded 9.x answer lists such an
    # ISO with cdrom: 1 (tests/data/fixtures/qemu_precondition_all_refused_2026.json).
    recorded = load_fixture("qemu_precondition_all_refused_2026.json")
    iso = next(d for d in recorded["local_disks"] if d["cdrom"])
    check = _precheck(_answer(local_disks=[iso]), running=False)
    assert check.verdict == "fail" and "local CD-ROM image" in check.reason
    assert iso["volid"] in check.reason
    cloudinit = {"volid": "local-lvm:vm-301-cloudinit", "cdrom": 1, "is_cloudinit": 1}
    assert _precheck(_answer(local_disks=[cloudinit]), running=False).verdict == "ready"


def test_a_container_that_did_not_stop_is_its_own_failure_not_the_targets() -> None:
    # D11: pve-container src/PVE/LXC/Migrate.pm prepare (restart mode): the shutdown times out,
    # the CT keeps running on its source, unlocked; the move failed, no other target helps.
    lines = [
        "2026-12-03 10:00:00 shutdown CT 200",
        "command 'lxc-stop -n 200 --nokill --timeout 180' failed: exit code 1",
        "2026-12-03 10:06:05 ERROR: migration aborted (duration 00:06:05): container did not stop",
        "TASK ERROR: migration aborted",
    ]
    failed = TaskFailed(
        upid="UPID:pve1:0001:0002:6A000000:vzmigrate:200:root@pam:",
        node="pve1",
        exitstatus="migration aborted",
        last_lines=lines,
        description="Migration of 200",
    )
    assert failed.reason == "container did not stop"
    assert target_trouble(failed.reason) is None
