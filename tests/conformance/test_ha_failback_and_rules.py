"""Issue 13: the CRM moves an HA guest back to the node its node-affinity rule prefers
(pve-ha-manager `Manager.pm` `select_service_node`, `next_state_started`), unless failback is
off, a rule keeps it away or the node is in maintenance; /cluster/ha/rules as PVE 9.2 serves it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvetool.emulator.server import Emulator
from tests.emu import Api, start

ROUNDS_S = 60.0  # CRM round + LRM round + the migration + the next CRM round, generously


def _migrate_away(api: Api, vmid: int, target: str) -> None:
    """A manual move with the HA stack's blessing (hamigrate -> CRM -> LRM)."""
    upid = api.post(f"/nodes/pve1/qemu/{vmid}/migrate", target=target, online=1)
    assert api.wait_task(upid)["exitstatus"] == "OK"
    for _ in range(60):
        if api.guest(vmid)["node"] == target:
            return
        api.advance(1)
    raise AssertionError(f"{vmid} never reached {target}")


def _run(api: Api, seconds: float) -> None:
    waited = 0.0
    while waited < seconds:
        api.advance(2)
        waited += 2


@pytest.mark.source(
    "pve-ha-manager",
    "src/PVE/HA/Manager.pm",
    "select_service_node; next_state_started",
    "l.315-383; l.1508-1548",
)
def test_a_guest_moved_away_from_its_preferred_node_comes_back(api: Api) -> None:
    _migrate_away(api, 103, "pve2")
    _run(api, ROUNDS_S)
    g = api.guest(103)
    assert (g["node"], g["hastate"]) == ("pve1", "started")
    back = api.get("/nodes/pve2/tasks", source="all", vmid=103, typefilter="qmigrate")
    assert back and back[0]["user"] == "root@pam"


@pytest.mark.source("pve-ha-manager", "src/PVE/HA/Manager.pm", "select_service_node", "l.334-344")
def test_without_failback_the_guest_stays(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "data" / "clusters" / "probe.yaml").read_text()
    text = text.replace(
        '103: {type: qemu, node: pve1, memory: 2GiB, used: 1GiB, disks: {scsi0: "ceph:8G"},\n'
        '        net0: "virtio,bridge=vmbr0", ha: true}',
        '103: {type: qemu, node: pve1, memory: 2GiB, used: 1GiB, disks: {scsi0: "ceph:8G"},\n'
        '        net0: "virtio,bridge=vmbr0", ha: {state: started, failback: false}}',
    )
    path = tmp_path / "nofailback.yaml"
    path.write_text(text)
    with start(str(path)) as emu:
        api = Api(emu)
        assert api.get("/cluster/ha/resources/vm:103")["failback"] == 0
        _migrate_away(api, 103, "pve2")
        _run(api, ROUNDS_S)
        assert api.guest(103)["node"] == "pve2"


@pytest.mark.source(
    "pve-ha-manager",
    "src/PVE/API2/HA/Rules.pm; src/PVE/HA/Rules/NodeAffinity.pm",
    "create_rule, update_rule, delete_rule; get_node_affinity",
    "l.231-376; l.268-290",
)
def test_a_temporary_rule_keeps_the_guest_away_until_it_is_removed(api: Api) -> None:
    # Keep vm:103 off pve1: its own rule cannot be doubled (one node-affinity rule per
    # resource), so the drain tool rewrites it and restores it afterwards.
    rule = api.get("/cluster/ha/rules/db-prefers-1")
    assert (rule["nodes"], rule["strict"], rule["order"]) == ("pve1:2,pve2", 0, 2)
    reply = api.call(
        "PUT",
        "/cluster/ha/rules/db-prefers-1",
        type="node-affinity",
        nodes="pve2,pve3",
        strict=1,
        digest=rule["digest"],
    )
    assert reply.status == 200, reply.body
    _migrate_away(api, 103, "pve2")
    _run(api, ROUNDS_S)
    assert api.guest(103)["node"] == "pve2"
    api.call(
        "PUT", "/cluster/ha/rules/db-prefers-1", type="node-affinity", nodes="pve1:2,pve2", strict=0
    )
    _run(api, ROUNDS_S)
    assert api.guest(103)["node"] == "pve1"


@pytest.mark.source("pve-ha-manager", "src/PVE/API2/HA/Rules.pm", "update_rule", "l.301-308")
def test_a_stale_digest_is_refused(api: Api) -> None:
    reply = api.call(
        "PUT", "/cluster/ha/rules/db-prefers-1", type="node-affinity", comment="x", digest="0" * 40
    )
    assert reply.status == 500
    assert reply.reason.startswith("update HA rules failed: detected modified configuration")


@pytest.mark.source(
    "pve-ha-manager", "src/PVE/API2/HA/Rules.pm", "create_rule", "l.255-283, l.46-80"
)
def test_rule_creation_checks(api: Api) -> None:
    reply = api.call(
        "POST",
        "/cluster/ha/rules",
        rule="keep-apart",
        type="resource-affinity",
        resources="vm:101,vm:102",
        affinity="negative",
    )
    assert (reply.status, reply.reason) == (
        500,
        "create ha rule failed: HA rule 'keep-apart' already defined",
    )
    reply = api.call(
        "POST",
        "/cluster/ha/rules",
        rule="r9",
        type="node-affinity",
        resources="vm:110",
        nodes="pve1",
    )
    assert (reply.status, reply.reason) == (500, "cannot use unmanaged resource(s) vm:110.")
    reply = api.call(
        "POST", "/cluster/ha/rules", rule="r9", type="node-affinity", resources="vm:101"
    )
    assert reply.status == 400 and "nodes" in reply.body["errors"]
    reply = api.call(
        "POST",
        "/cluster/ha/rules",
        rule="r9",
        type="resource-affinity",
        resources="vm:101,vm:102",
        affinity="positive",
    )
    assert reply.reason == "create ha rule failed: 400 Rule 'r9' is invalid."
    assert (
        "rule shares two or more resources with a negative resource affinity rule"
        in (reply.body["message"])
    )
    # Deleting a rule that does not exist is no error (Rules.pm delete_rule).
    assert api.call("DELETE", "/cluster/ha/rules/nothing").status == 200


@pytest.mark.source(
    "pve-ha-manager",
    "src/PVE/HA/Manager.pm; src/PVE/CLI/ha_manager.pm",
    "next_state_started, update_crm_commands; node-maintenance",
    "l.1380-1389, l.1517-1531, l.679-708; l.119-148",
)
def test_node_maintenance_moves_guests_away_and_back(api: Api, probe: Emulator) -> None:
    control = f"https://127.0.0.1:{probe.port}/_emulator"
    r = api.session.post(f"{control}/nodes/pve1/maintenance", json={"enabled": True}, timeout=30)
    assert r.status_code == 200
    _run(api, ROUNDS_S)
    nodes = {r["node"]: r for r in api.get("/cluster/resources", type="node")}
    assert nodes["pve1"]["hastate"] == "maintenance"
    away = {v: api.guest(v)["node"] for v in (101, 103)}
    assert "pve1" not in away.values()
    status = api.get("/cluster/ha/status/manager_status")["manager_status"]
    assert status["service_status"]["vm:103"]["maintenance_node"] == "pve1"
    r = api.session.post(f"{control}/nodes/pve1/maintenance", json={"enabled": False}, timeout=30)
    _run(api, ROUNDS_S * 2)
    assert api.guest(103)["node"] == "pve1"
    assert api.guest(101)["node"] == "pve1"
