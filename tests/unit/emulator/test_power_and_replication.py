"""Shutdown, start and storage replication jobs as PVE 9.2 has them, over HTTPS with a stopped
clock: `qmshutdown`/`qmstart` (`vzshutdown`/`vzstart`) tasks whose effect shows at their end,
PVE's refusals before and inside the task, the HA path (`hastop`/`hastart`), and the switch of a
replication job's target when its guest migrates to that target."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvetool.emulator.server import Emulator
from tests.emu import Api, start


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    e = start("behaviour.yaml")
    yield e
    e.stop()


@pytest.fixture()
def api(emu: Emulator) -> Api:
    return Api(emu)


def live(api: Api, vmid: int) -> str:
    """The guest's run state from status/current (vmstatus: live; /cluster/resources shows
    pvestatd's RRD data, up to 10 s old)."""
    g = api.guest(vmid)
    return str(api.get(f"/nodes/{g['node']}/{g['type']}/{vmid}/status/current")["status"])


def _task(api: Api, upid: str) -> dict[str, Any]:
    node = upid.split(":")[1]
    rows = api.get(f"/nodes/{node}/tasks", source="all", limit=1000)
    found: dict[str, Any] = next(r for r in rows if r["upid"] == upid)
    return found


def test_shutdown_is_a_qmshutdown_task_and_the_vm_stops_at_its_end(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/101/status/shutdown")
    assert upid.split(":")[5:8] == ["qmshutdown", "101", "root@pam!test"]
    api.advance(1)
    assert api.task_status(upid)["status"] == "running"
    assert live(api, 101) == "running"  # the guest OS is still shutting down
    assert api.wait_task(upid)["exitstatus"] == "OK"
    assert live(api, 101) == "stopped"
    assert api.task_log(upid)[-1] == "TASK OK"
    entry = _task(api, upid)
    assert 2 <= entry["endtime"] - entry["starttime"] <= 21  # U(2, 20) s, whole seconds


def test_shutdown_of_a_stopped_vm_ends_quietly(api: Api) -> None:
    upid = api.post("/nodes/pve2/qemu/105/status/shutdown")
    assert api.wait_task(upid)["exitstatus"] == "OK"
    assert live(api, 105) == "stopped"


def test_start_is_a_qmstart_task_and_a_running_vm_is_refused_inside_it(api: Api) -> None:
    upid = api.post("/nodes/pve2/qemu/105/status/start")
    assert upid.split(":")[5] == "qmstart"
    assert live(api, 105) == "stopped"
    assert api.wait_task(upid)["exitstatus"] == "OK"
    g = api.get("/nodes/pve2/qemu/105/status/current")
    assert g["status"] == "running" and g["uptime"] <= 3
    entry = _task(api, upid)
    assert 1 <= entry["endtime"] - entry["starttime"] <= 4
    again = api.post("/nodes/pve2/qemu/105/status/start")
    assert api.wait_task(again)["exitstatus"] == "VM 105 already running"
    assert api.task_log(again)[-1] == "TASK ERROR: VM 105 already running"


def test_the_guest_agent_answers_once_the_started_vm_has_booted(api: Api) -> None:
    api.wait_task(api.post("/nodes/pve1/qemu/101/status/shutdown"))
    api.wait_task(api.post("/nodes/pve1/qemu/101/status/start"))
    ping = api.call("POST", "/nodes/pve1/qemu/101/agent/ping")
    assert (ping.status, ping.reason) == (500, "QEMU guest agent is not running")
    api.advance(30)
    assert api.post("/nodes/pve1/qemu/101/agent/ping") == {"result": {}}


def test_locks_are_respected(api: Api) -> None:
    for action in ("shutdown", "start"):
        upid = api.post(f"/nodes/pve2/qemu/107/status/{action}")
        assert api.wait_task(upid)["exitstatus"] == "VM is locked (backup)"
    assert live(api, 107) == "running"
    migration = api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    api.advance(3)  # past prepare: the migrate lock is set in phase 1
    upid = api.post("/nodes/pve1/qemu/101/status/shutdown")
    assert api.wait_task(upid)["exitstatus"] == "VM is locked (migrate)"
    assert api.wait_task(migration)["exitstatus"] == "OK"
    assert live(api, 101) == "running"


def test_timeout_fails_unless_force_stop(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/101/status/shutdown", timeout=0)
    assert api.wait_task(upid)["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert live(api, 101) == "running"
    upid = api.post("/nodes/pve1/qemu/101/status/shutdown", timeout=0, forceStop=1)
    assert api.wait_task(upid)["exitstatus"] == "WARNINGS: 1"
    assert "VM still running - terminating now with SIGTERM" in api.task_log(upid)
    assert live(api, 101) == "stopped"


def test_root_only_options_and_parameter_checks(api: Api) -> None:
    reply = api.call("POST", "/nodes/pve1/qemu/101/status/shutdown", skiplock=1)
    assert (reply.status, reply.body["errors"]) == (
        400,
        {"skiplock": "Only root may use this option."},
    )
    reply = api.call("POST", "/nodes/pve1/qemu/101/status/shutdown", timeout=-1)
    assert reply.status == 400 and "timeout" in reply.body["errors"]
    reply = api.call("POST", "/nodes/pve2/qemu/101/status/start")
    assert reply.status == 500
    assert reply.reason == "Configuration file 'nodes/pve2/qemu-server/101.conf' does not exist"


def test_containers(api: Api) -> None:
    reply = api.call("POST", "/nodes/pve2/lxc/201/status/shutdown")
    assert (reply.status, reply.reason) == (500, "CT 201 not running")
    reply = api.call("POST", "/nodes/pve2/lxc/200/status/start")
    assert (reply.status, reply.reason) == (500, "CT 200 already running")
    upid = api.post("/nodes/pve2/lxc/200/status/shutdown")
    assert upid.split(":")[5] == "vzshutdown"
    assert api.wait_task(upid)["exitstatus"] == "OK"
    assert live(api, 200) == "stopped"
    upid = api.post("/nodes/pve2/lxc/200/status/start")
    assert upid.split(":")[5] == "vzstart"
    assert api.wait_task(upid)["exitstatus"] == "OK"
    assert live(api, 200) == "running"


def test_shutdown_migrate_offline_start_and_a_start_that_fails_on_the_target(api: Api) -> None:
    # 101: the whole sequence works.
    api.wait_task(api.post("/nodes/pve1/qemu/101/status/shutdown"))
    refused = api.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve2", online=0)
    assert refused.status == 200  # stopped now: an offline migration is allowed
    assert api.wait_task(refused.data)["exitstatus"] == "OK"
    assert (api.guest(101)["node"], live(api, 101)) == ("pve2", "stopped")
    assert api.wait_task(api.post("/nodes/pve2/qemu/101/status/start"))["exitstatus"] == "OK"
    assert (api.guest(101)["node"], live(api, 101)) == ("pve2", "running")
    # 104 uses vmbr1, which pve3 lacks: offline it moves, but QEMU does not start there.
    api.wait_task(api.post("/nodes/pve1/qemu/104/status/shutdown"))
    api.wait_task(api.post("/nodes/pve1/qemu/104/migrate", target="pve3"))
    upid = api.post("/nodes/pve3/qemu/104/status/start")
    assert api.wait_task(upid)["exitstatus"] == "start failed: QEMU exited with code 1"
    assert "bridge 'vmbr1' does not exist" in api.task_log(upid)
    assert (api.guest(104)["node"], live(api, 104)) == ("pve3", "stopped")


def test_ha_guests_go_through_the_ha_stack(api: Api) -> None:
    upid = api.post("/nodes/pve2/qemu/106/status/shutdown")
    assert upid.split(":")[5] == "hastop"
    assert api.wait_task(upid)["exitstatus"] == "OK"
    assert api.task_log(upid)[0] == "Requesting HA stop for VM 106"
    resource = api.get("/cluster/ha/resources/vm:106")
    assert resource["state"] == "stopped"
    for _ in range(120):
        if live(api, 106) == "stopped":
            break
        api.advance(1)
    assert live(api, 106) == "stopped"
    tasks = api.get("/nodes/pve2/tasks", source="all", vmid=106)
    assert any(t["type"] == "qmshutdown" and t["user"] == "root@pam" for t in tasks)
    upid = api.post("/nodes/pve2/qemu/106/status/start")
    assert upid.split(":")[5] == "hastart"
    api.wait_task(upid)
    assert api.get("/cluster/ha/resources/vm:106")["state"] == "started"
    for _ in range(120):
        if live(api, 106) == "running":
            break
        api.advance(1)
    assert live(api, 106) == "running"


REPLICATED = """
name: repl
seed: 5
nodes:
  pve1: {cpus: 16, memory: 64GiB}
  pve2: {cpus: 16, memory: 64GiB}
  pve3: {cpus: 16, memory: 64GiB}
storages:
  local-zfs: {type: zfspool, shared: false, size: 1TiB}
guests:
  100: {type: qemu, node: pve1, memory: 2GiB, dirty: idle, disks: {scsi0: "local-zfs:8G"},
        net0: "virtio,bridge=vmbr0", replicate: [pve2, pve3]}
  101: {type: qemu, node: pve1, memory: 2GiB, disks: {scsi0: "local-zfs:8G"},
        net0: "virtio,bridge=vmbr0"}
"""


def test_migrating_to_a_replication_target_switches_that_job_back(tmp_path: Path) -> None:
    path = tmp_path / "repl.yaml"
    path.write_text(REPLICATED)
    emu = start(str(path))
    try:
        api = Api(emu)

        def jobs() -> list[tuple[str, str, str]]:
            return [(j["id"], j["target"], j["source"]) for j in api.get("/cluster/replication")]

        assert jobs() == [("100-0", "pve2", "pve1"), ("100-1", "pve3", "pve1")]
        # `replicate` is the drive option (default 1, QemuServer.pm foreach_volid l.4543).
        pre = api.get("/nodes/pve1/qemu/100/migrate")
        assert [d["replicate"] for d in pre["local_disks"]] == [1]
        pre = api.get("/nodes/pve1/qemu/101/migrate")
        assert [d["replicate"] for d in pre["local_disks"]] == [1]
        upid = api.post(
            "/nodes/pve1/qemu/100/migrate", target="pve2", online=1, **{"with-local-disks": 1}
        )
        assert api.wait_task(upid)["exitstatus"] == "OK"
        # The job to pve2 now replicates back to pve1; the one to pve3 stays.
        assert jobs() == [("100-0", "pve1", "pve2"), ("100-1", "pve3", "pve2")]
        # A failed migration switches nothing.
        with emu.locked() as c:
            c.fail_next_migration(100, 10, "migration aborted by test")
        upid = api.post(
            "/nodes/pve2/qemu/100/migrate", target="pve3", online=1, **{"with-local-disks": 1}
        )
        assert api.wait_task(upid)["exitstatus"] != "OK"
        assert jobs() == [("100-0", "pve1", "pve2"), ("100-1", "pve3", "pve2")]
    finally:
        emu.stop()
