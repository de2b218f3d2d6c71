"""Migration behaviour of the emulator as PVE 9.2 has it, driven over HTTPS with a stopped clock."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from pvetool.emulator.qemu_migrate import mirror_bytes
from pvetool.emulator.server import Emulator
from tests.emu import Api, start


def emu_status(api: Api, vmid: int) -> str:
    """The guest's run state as the emulator knows it (/cluster/resources lags: RRD)."""
    return str(api.emu.state()["guests"][str(vmid)]["status"])


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    e = start("behaviour.yaml")
    yield e
    e.stop()


@pytest.fixture()
def api(emu: Emulator) -> Api:
    return Api(emu)


def test_online_migration_locks_in_phase_one_and_moves_before_the_end(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    assert re.fullmatch(
        r"UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:qmigrate:101:root@pam!test:", upid
    )
    api.advance(3)
    # During the task: locked, still on the source, and a second migrate is refused.
    assert api.guest(101)["lock"] == "migrate"
    assert api.guest(101)["node"] == "pve1"
    again = api.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve3", online=1)
    assert (again.status, again.reason) == (500, "VM is locked (migrate)")
    pre = api.call("GET", "/nodes/pve1/qemu/101/migrate")
    assert (pre.status, pre.reason) == (500, "VM is locked (migrate)")
    st = api.wait_task(upid)
    assert st["exitstatus"] == "OK"
    g = api.guest(101)
    assert (g["node"], g["status"]) == ("pve2", "running")
    assert "lock" not in g
    # The config is now on pve2 only.
    assert api.call("GET", "/nodes/pve2/qemu/101/config").status == 200
    gone = api.call("GET", "/nodes/pve1/qemu/101/config")
    assert gone.status == 500
    assert gone.reason == "Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist"
    log = api.task_log(upid)
    assert log[-1] == "TASK OK"
    assert any(
        re.fullmatch(
            r"\S+ \S+ migration active, transferred [\d.]+ \w?i?B of 8\.0 GiB "
            r"VM-state, [\d.]+ \w?i?B/s",
            line,
        )
        for line in log
    )
    assert any(
        re.fullmatch(r"\S+ \S+ average migration speed: [\d.]+ \w+/s - downtime \d+ ms", line)
        for line in log
    )
    assert re.fullmatch(r"\S+ \S+ migration finished successfully \(duration 00:00:\d\d\)", log[-2])


def test_node_usage_follows_the_guest(api: Api) -> None:
    def mem(node: str) -> int:
        return next(
            r["mem"] for r in api.get("/cluster/resources", type="node") if r["node"] == node
        )

    before1, before3 = mem("pve1"), mem("pve3")
    api.wait_task(api.post("/nodes/pve1/qemu/101/migrate", target="pve3", online=1))
    used = api.guest(101)["mem"]
    assert mem("pve1") == before1 - used
    assert mem("pve3") == before3 + used


def test_refusals_before_the_task(api: Api, emu: Emulator) -> None:
    r = api.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve1", online=1)
    assert (r.status, r.reason) == (400, "Parameter verification failed.")
    assert r.body["errors"] == {"target": "target is local node."}
    r = api.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve9", online=1)
    assert (r.status, r.reason) == (500, "no such cluster node 'pve9'")
    r = api.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve2")
    assert (r.status, r.reason) == (500, "can't migrate running VM without --online")
    r = api.call("POST", "/nodes/pve2/qemu/107/migrate", target="pve1", online=1)
    assert (r.status, r.reason) == (500, "VM is locked (backup)")
    r = api.call("POST", "/nodes/pve2/lxc/200/migrate", target="pve1")
    assert (r.status, r.reason) == (
        500,
        "can't migrate running container without --online or --restart",
    )
    r = api.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve2", online=1, bogus=1)
    assert r.status == 400
    assert r.body["errors"]["bogus"].startswith("property is not defined in schema")
    # An attached drive on a storage the target lacks: refused before any task (qemu-server
    # QemuServer.pm check_storage_availability).
    r = api.call("POST", "/nodes/pve1/qemu/108/migrate", target="pve3")
    assert (r.status, r.reason) == (500, "storage 'fast' is not available on node 'pve3'")
    with emu.locked() as c:
        c.quorate_override = False
    r = api.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    assert (r.status, r.reason) == (500, "cluster not ready - no quorum?")
    # Nothing moved, nothing locked.
    assert api.guest(101)["node"] == "pve1" and "lock" not in api.guest(101)


@pytest.mark.parametrize(
    ("path", "params", "expected", "exitstatus"),
    [
        (
            "/nodes/pve1/qemu/102/migrate",
            {"target": "pve2", "online": 1},
            "can't migrate local disk 'local-lvm:vm-102-disk-0': can't live migrate attached local "
            "disks without with-local-disks option",
            "migration aborted",
        ),
        (
            "/nodes/pve1/qemu/103/migrate",
            {"target": "pve2", "online": 1},
            "can't migrate VM which uses local devices: hostpci0",
            "migration aborted",
        ),
        (
            "/nodes/pve1/qemu/101/migrate",
            {"target": "pve4", "online": 1},
            "Can't connect to destination address using public key",
            "migration aborted",
        ),
        (
            "/nodes/pve1/qemu/104/migrate",
            {"target": "pve3", "online": 1},
            "[pve3] bridge 'vmbr1' does not exist",
            # The target's `qm start` fails in phase 2 (QemuMigrate.pm l.1137).
            "migration problems",
        ),
    ],
)
def test_refusals_inside_the_task(
    api: Api, path: str, params: dict[str, object], expected: str, exitstatus: str
) -> None:
    vmid = int(path.split("/")[4])
    upid = api.post(path, **params)
    st = api.wait_task(upid)
    assert st["exitstatus"] == exitstatus
    log = api.task_log(upid)
    assert any(expected in line for line in log), log
    assert log[-1] == f"TASK ERROR: {exitstatus}"
    g = api.guest(vmid)
    assert g["node"] == "pve1" and "lock" not in g


def test_local_disks_move_with_the_flag_and_the_storage_map(api: Api) -> None:
    upid = api.post(
        "/nodes/pve1/qemu/102/migrate",
        target="pve2",
        online=1,
        **{"with-local-disks": 1, "targetstorage": "local-lvm:fast"},
    )
    assert api.wait_task(upid)["exitstatus"] == "OK"
    log = "\n".join(api.task_log(upid))
    assert "drive mirror is starting for drive-scsi0" in log
    assert "all 'mirror' jobs are ready" in log
    conf = api.get("/nodes/pve2/qemu/102/config")
    assert conf["scsi0"].startswith("fast:vm-102-disk-0")


def test_a_live_mirror_of_a_thin_lv_sends_its_whole_size(api: Api, emu: Emulator) -> None:
    """QEMU's drive-mirror finds no holes on a block device (file-posix `find_allocation`:
    lseek SEEK_DATA reports a whole block device as data), so a thin LV's unallocated extents
    cross the wire too; a file's holes do not."""
    with emu.locked() as c:
        disk = next(d for d in c.guests[102].disks if d.storage == "local-lvm")
        size, alloc = disk.size_bytes, disk.alloc_bytes
        assert c.spec.storages["local-lvm"].type == "lvmthin" and alloc < size
    upid = api.post(
        "/nodes/pve1/qemu/102/migrate",
        target="pve2",
        online=1,
        **{"with-local-disks": 1, "targetstorage": "local-lvm:fast"},
    )
    assert api.wait_task(upid)["exitstatus"] == "OK"
    with emu.locked() as c:
        task = next(t for t in c.task_order if t.upid == upid)
        sent = float(task.stats.to_json()["sent_bytes"])
    assert sent >= size  # the whole LV, plus the RAM
    assert mirror_bytes("lvmthin", disk) == size
    assert mirror_bytes("zfspool", disk) == size
    assert mirror_bytes("dir", disk) == alloc


def test_stopped_vm_offline_migration_copies_local_disks(api: Api) -> None:
    upid = api.post("/nodes/pve2/qemu/105/migrate", target="pve3")
    assert api.wait_task(upid)["exitstatus"] == "OK"
    g = api.guest(105)
    assert (g["node"], g["status"]) == ("pve3", "stopped")
    assert any("copying local disk images" in line for line in api.task_log(upid))


def test_containers_restart_migration(api: Api) -> None:
    upid = api.post("/nodes/pve2/lxc/200/migrate", target="pve3", restart=1)
    assert upid.split(":")[5] == "vzmigrate"
    seen = set()
    while api.task_status(upid)["status"] == "running":
        seen.add(emu_status(api, 200))
        api.advance(1)
    assert seen == {"running", "stopped"}  # shut down for the move: all of it is downtime
    assert api.task_status(upid)["exitstatus"] == "OK"
    assert api.guest(200)["node"] == "pve3" and emu_status(api, 200) == "running"
    log = api.task_log(upid)
    assert "shutdown CT 200" in log[0] and "start container on target node" in "\n".join(log)
    # online=1 on a running container aborts inside the task, as PVE 9.2 does.
    upid = api.post("/nodes/pve3/lxc/200/migrate", target="pve2", online=1)
    assert api.wait_task(upid)["exitstatus"] == "migration aborted"
    assert any("lxc live migration is currently not implemented" in x for x in api.task_log(upid))
    assert api.guest(200)["node"] == "pve3"
    # A stopped container simply moves.
    assert (
        api.wait_task(api.post("/nodes/pve2/lxc/201/migrate", target="pve1"))["exitstatus"] == "OK"
    )
    assert api.guest(201)["node"] == "pve1"


def test_ha_guest_goes_through_hamigrate_then_a_qmigrate_by_root(api: Api) -> None:
    upid = api.post("/nodes/pve2/qemu/106/migrate", target="pve1", online=1)
    assert upid.split(":")[5] == "hamigrate"
    st = api.wait_task(upid, step_s=0.5)
    assert st["exitstatus"] == "OK"
    assert api.task_log(upid)[0] == "Requesting HA migration for VM 106 to node pve1"
    found: list[dict[str, object]] = []
    for _ in range(60):
        found = api.get(
            "/nodes/pve2/tasks",
            vmid=106,
            typefilter="qmigrate",
            source="all",
            since=int(upid.split(":")[4], 16),
        )
        if found:
            break
        api.advance(1)
    assert found, "the HA stack never started the real migration"
    q = found[0]
    assert q["user"] == "root@pam" and q["type"] == "qmigrate"
    assert api.wait_task(str(q["upid"]))["exitstatus"] == "OK"
    assert api.task_log(str(q["upid"]))[0] == "task started by HA resource agent"
    g = api.guest(106)
    assert (g["node"], g["hastate"]) == ("pve1", "migrate")
    api.advance(10)  # the CRM's next round sees the LRM's result (Manager.pm l.1224-1236)
    assert api.guest(106)["hastate"] == "started"


def test_ha_negative_affinity_blocks_the_target(api: Api) -> None:
    pre = api.get("/nodes/pve2/qemu/106/migrate")
    assert pre["not_allowed_nodes"]["pve3"]["blocking-ha-resources"] == [
        {"sid": "vm:109", "cause": "resource-affinity"}
    ]
    assert "pve3" not in pre["allowed_nodes"]
    res = api.post("/cluster/ha/resources/vm:106/migrate", node="pve3")
    assert res["blocking-resources"] == [{"sid": "vm:109", "cause": "resource-affinity"}]
    api.advance(60)
    assert api.guest(106)["node"] == "pve2"


def test_precondition_reports_what_pve_reports(api: Api) -> None:
    pre = api.get("/nodes/pve1/qemu/102/migrate", target="pve3")
    assert pre["running"] == 1
    assert pre["local_disks"][0]["volid"] == "local-lvm:vm-102-disk-0"
    assert pre["local_disks"][0]["size"] == 16 * 1024**3
    assert api.get("/nodes/pve1/qemu/103/migrate")["local_resources"] == ["hostpci0"]
    zfs = api.get("/nodes/pve1/qemu/108/migrate")
    assert zfs["not_allowed_nodes"]["pve3"]["unavailable_storages"] == ["fast"]
    assert zfs["allowed_nodes"] == ["pve2"]
    ct = api.get("/nodes/pve2/lxc/200/migrate")
    assert "allowed-nodes" in ct and "allowed_nodes" not in ct


def test_stopping_a_task_aborts_the_migration(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    api.advance(6)
    assert api.call("DELETE", f"/nodes/pve1/tasks/{upid}").status == 200
    st = api.task_status(upid)
    assert st["exitstatus"] == "migration problems"
    assert any("online migrate failure - interrupted by signal" in x for x in api.task_log(upid))
    g = api.guest(101)
    assert g["node"] == "pve1" and "lock" not in g and g["status"] == "running"


def test_migrateall_sliding_window_in_vmid_string_order(api: Api, emu: Emulator) -> None:
    upid = api.post("/nodes/pve3/migrateall", target="pve2", **{"max-workers": 2})
    assert upid.split(":")[5] == "migrateall"
    peak = 0
    for _ in range(400):
        st = api.task_status(upid)
        running = [
            t for t in emu.state()["tasks"] if t["type"] == "qmigrate" and t["status"] == "running"
        ]
        peak = max(peak, len(running))
        if st["status"] == "stopped":
            break
        api.advance(0.5)
    assert st["exitstatus"] == "OK"
    assert peak == 2
    children = [t for t in emu.state()["tasks"] if t["type"] == "qmigrate"]
    # 109 is HA (hamigrate), 1001 has a USB device and is skipped with a warning line.
    order = [t["vmid"] for t in children]
    assert order == [1000, 110, 2000]
    log = api.task_log(upid)
    assert "Check VM 1001: skip VM 1001 - precondition check failed:" in log
    assert "  Has local resources: usb0" in log
    assert {api.guest(v)["node"] for v in (110, 1000, 2000)} == {"pve2"}
    assert api.guest(1001)["node"] == "pve3"
