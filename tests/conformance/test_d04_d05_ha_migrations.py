"""D4, D5: migrations of HA-managed guests: the `hamigrate` request and what the HA stack's
LRM runs afterwards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pvetool.emulator.server import Emulator
from tests.conformance.conftest import run_task, strip_ts
from tests.emu import Api

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"


def _find_tasks(api: Api, node: str, vmid: int, ttype: str, within_s: float) -> list[Any]:
    waited = 0.0
    while waited <= within_s:
        rows = api.get(f"/nodes/{node}/tasks", source="all", vmid=vmid, typefilter=ttype)
        if rows:
            return list(rows)
        api.advance(1)
        waited += 1
    return []


def _shape(line: str) -> str:
    return re.sub(r"'[^']*'|\b(vm|ct):\d+|\bVM \d+|\bnode \S+$", "X", line)


@pytest.mark.source(
    "pve-ha-manager",
    "src/PVE/CLI/ha_manager.pm; qemu-server src/PVE/API2/Qemu.pm",
    "$print_resource_motion_output; migrate_vm (hamigrate worker)",
    "l.150-184; l.5639-5651",
)
def test_a_blocked_hamigrate_ends_in_task_error(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    assert upid.split(":")[5] == "hamigrate"
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "command 'ha-manager migrate vm:101 pve2' failed: exit code 2"
    assert log == [
        "Requesting HA migration for VM 101 to node pve2",
        "cannot migrate resource 'vm:101' to node 'pve2':",
        "",
        "- resource 'vm:102' on target node 'pve2' in negative affinity with resource 'vm:101'",
        "TASK ERROR: command 'ha-manager migrate vm:101 pve2' failed: exit code 2",
    ]
    # The recorded 9.x log has the same lines (the paste lost the empty one).
    recorded = (FIXTURES / "hamigrate_blocked_negative_affinity_pve9.log").read_text().splitlines()
    assert [_shape(x) for x in log if x] == [_shape(x) for x in recorded]
    # Nothing moves: no qmigrate follows, 101 stays, its HA state stays started.
    assert _find_tasks(api, "pve1", 101, "qmigrate", within_s=30) == []
    g = api.guest(101)
    assert (g["node"], g["hastate"]) == ("pve1", "started")


@pytest.mark.source("pve-ha-manager", "src/PVE/API2/HA/Resources.pm", "migrate", "l.393-417")
def test_the_ha_api_reports_blockers_synchronously(api: Api) -> None:
    res = api.post("/cluster/ha/resources/vm:101/migrate", node="pve2")
    assert res == {
        "sid": "vm:101",
        "requested-node": "pve2",
        "blocking-resources": [{"sid": "vm:102", "cause": "resource-affinity"}],
    }


@pytest.mark.source(
    "pve-ha-manager",
    "src/PVE/HA/Resources/PVEVM.pm; src/PVE/HA/LRM.pm",
    "migrate; exec_resource_agent",
    "l.108-137; l.992-1021",
)
def test_the_lrm_migrates_a_vm_with_local_disks(api: Api) -> None:
    upid = api.post("/nodes/pve3/qemu/307/migrate", target="pve1", online=1)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "OK"
    assert log[0] == "Requesting HA migration for VM 307 to node pve1"
    (q,) = _find_tasks(api, "pve3", 307, "qmigrate", within_s=25)
    assert q["user"] == "root@pam" and "tokenid" not in q
    status, log = run_task(api, str(q["upid"]))
    assert status["exitstatus"] == "OK"
    assert log[0] == "task started by HA resource agent"
    assert "drive mirror is starting for drive-virtio0" in log  # with-local-disks=1
    assert log[-1] == "TASK OK"
    api.advance(10)  # the CRM's next round marks it started on the target
    g = api.guest(307)
    assert (g["node"], g["hastate"]) == ("pve1", "started")


@pytest.mark.source(
    "pve-ha-manager",
    "src/PVE/HA/Resources/PVECT.pm; src/PVE/HA/LRM.pm",
    "migrate, shutdown; exec_resource_agent 'started'",
    "l.85-131; l.952-968",
)
def test_the_lrm_relocates_a_container(api: Api, probe: Emulator) -> None:
    upid = api.post("/nodes/pve3/lxc/306/migrate", target="pve2", restart=1)
    assert upid.split(":")[5] == "hamigrate"
    (shutdown,) = _find_tasks(api, "pve3", 306, "vzshutdown", within_s=25)
    assert shutdown["user"] == "root@pam"
    assert run_task(api, str(shutdown["upid"]))[0]["exitstatus"] == "OK"
    (mig,) = _find_tasks(api, "pve3", 306, "vzmigrate", within_s=5)
    status, log = run_task(api, str(mig["upid"]))
    assert status["exitstatus"] == "OK"
    lines = strip_ts(log)
    assert log[0] == "task started by HA resource agent"
    assert "start final cleanup" in lines
    assert not any(x.startswith("shutdown CT") for x in lines)  # offline, no restart mode
    assert "start container on target node" not in lines
    assert probe.state()["guests"]["306"]["status"] == "stopped"  # on pve2, not yet started
    (start,) = _find_tasks(api, "pve2", 306, "vzstart", within_s=30)
    assert start["user"] == "root@pam"
    assert run_task(api, str(start["upid"]))[0]["exitstatus"] == "OK"
    assert api.guest(306)["node"] == "pve2"
    assert probe.state()["guests"]["306"]["status"] == "running"


@pytest.mark.source(
    "pve-ha-manager",
    "src/PVE/HA/Resources/PVECT.pm; pve-container src/PVE/API2/LXC.pm",
    "shutdown; migrate_vm",
    "l.85-105; l.1695-1698",
)
def test_a_container_that_ignores_the_shutdown_is_not_moved(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.faults.shutdown_s[306] = float("inf")
    upid = api.post("/nodes/pve3/lxc/306/migrate", target="pve2", restart=1)
    run_task(api, upid)
    (shutdown,) = _find_tasks(api, "pve3", 306, "vzshutdown", within_s=25)
    status, _ = run_task(api, str(shutdown["upid"]))
    assert status["exitstatus"] != "OK"
    assert _find_tasks(api, "pve3", 306, "vzmigrate", within_s=30) == []
    api.advance(20)
    g = api.guest(306)
    assert (g["node"], g["hastate"]) == ("pve3", "started")
    assert probe.state()["guests"]["306"]["status"] == "running"
