"""D6: POST /nodes/{node}/migrateall as pve-manager PVE/API2/Nodes.pm `migrateall`
(l.2707-2793) and `$create_migrate_worker` (l.2590-2654) do it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvetool.emulator.server import Emulator
from tests.conformance.conftest import is_stamped, run_task
from tests.emu import Api, start


@pytest.mark.source("pve-manager", "PVE/API2/Nodes.pm", "migrateall", "l.2727-2738")
def test_checks_before_the_task(api: Api, probe: Emulator) -> None:
    reply = api.call("POST", "/nodes/pve1/migrateall", target="pve1")
    assert (reply.status, reply.reason) == (400, "Parameter verification failed.")
    assert reply.body["errors"] == {"target": "target is local node."}
    reply = api.call("POST", "/nodes/pve1/migrateall", target="pve9")
    assert (reply.status, reply.reason) == (500, "no such cluster node 'pve9'")
    with probe.locked() as c:
        c.quorate_override = False
    reply = api.call("POST", "/nodes/pve1/migrateall", target="pve2")
    assert (reply.status, reply.reason) == (500, "cluster not ready - no quorum?")
    assert api.get("/nodes/pve1/tasks", source="all", typefilter="migrateall") == []


@pytest.mark.source("pve-manager", "PVE/API2/Nodes.pm", "migrateall", "l.2735-2738")
def test_max_workers_must_come_from_somewhere(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "data" / "clusters" / "probe.yaml").read_text()
    path = tmp_path / "noworkers.yaml"
    path.write_text(text.replace("max_workers: 4", "ha: {shutdown_policy: conditional}"))
    with start(str(path)) as emu:
        api = Api(emu, ("root@pam!pvetool", "probe-root-secret"))
        reply = api.call("POST", "/nodes/pve1/migrateall", target="pve2")
        assert (reply.status, reply.reason) == (
            500,
            "either 'max-workers' parameter or max_workers in datacenter.cfg must be set!",
        )
        reply = api.call("POST", "/nodes/pve1/migrateall", target="pve2", maxworkers=1)
        assert reply.status == 200  # the alias


@pytest.mark.source(
    "pve-manager", "PVE/API2/Nodes.pm", "migrateall / $create_migrate_worker", "l.2743-2787"
)
def test_the_log_of_a_migrateall(api: Api) -> None:
    upid = api.post(
        "/nodes/pve1/migrateall", target="pve2", vms="900,111,110,200", **{"max-workers": 2}
    )
    assert upid.split(":")[5:7] == ["migrateall", ""]
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "OK"
    # Raw lines (no time stamps), guests in VMID string order, the template included.
    assert log == [
        "Check VM 110: precondition check passed",
        "Migrating VM 110",
        "Check VM 111: skip VM 111 - precondition check failed:",
        "  Has local disks: local-lvm:vm-111-disk-0",
        "Migrating CT 200",
        "Check VM 900: precondition check passed",
        "Migrating VM 900",
        "All jobs finished, used 3 workers in total.",
        "TASK OK",
    ]
    assert not any(is_stamped(line) for line in log)
    assert {api.guest(v)["node"] for v in (110, 200, 900)} == {"pve2"}
    assert api.guest(111)["node"] == "pve1"


@pytest.mark.source("pve-manager", "PVE/API2/Nodes.pm", "migrateall", "l.2784-2786, l.2744-2746")
def test_nothing_started_and_nothing_matched(api: Api) -> None:
    status, log = run_task(api, api.post("/nodes/pve1/migrateall", target="pve2", vms="111"))
    assert status["exitstatus"] == "no migrations worker started..."
    assert log[-1] == "TASK ERROR: no migrations worker started..."
    status, log = run_task(api, api.post("/nodes/pve1/migrateall", target="pve2", vms="115"))
    assert status["exitstatus"] == "OK"
    assert log == ["no virtual guests matched, nothing to do..", "TASK OK"]


@pytest.mark.source("pve-manager", "PVE/API2/Nodes.pm", "$create_migrate_worker", "l.2600-2633")
def test_a_refused_guest_is_a_line_of_its_own(api: Api) -> None:
    upid = api.post("/nodes/pve3/migrateall", target="pve1", vms="115")
    status, log = run_task(api, upid)
    # VM 115 is locked: the precondition dies after "Check VM 115: ".
    assert log[0] == "Check VM 115: VM is locked (backup)"
    assert status["exitstatus"] == "no migrations worker started..."
