"""D2, D3, D16, D17: what POST .../migrate refuses before a task exists, and what it forks."""

from __future__ import annotations

import pytest

from pvetool.emulator.server import Emulator
from tests.conformance.conftest import run_task, strip_ts, ticket_api
from tests.emu import Api

ROOT_ONLY = "Only root may use this option."


def _tasks(api: Api, node: str, vmid: int) -> list[dict[str, object]]:
    return list(api.get(f"/nodes/{node}/tasks", source="all", vmid=vmid, limit=1000))


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm", "l.5580-5581")
def test_a_root_token_is_not_root_at_pam(api: Api) -> None:
    reply = api.call(
        "POST", "/nodes/pve1/qemu/110/migrate", target="pve2", online=1, migration_type="secure"
    )
    assert (reply.status, reply.reason) == (400, "Parameter verification failed.")
    assert set(reply.body) == {"data", "errors", "message"}
    assert reply.body["data"] is None
    assert reply.body["errors"] == {"migration_type": ROOT_ONLY}
    assert reply.body["message"] == "Parameter verification failed.\n"
    assert "lock" not in api.guest(110)
    assert _tasks(api, "pve1", 110) == []


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm", "l.5577-5585")
def test_the_three_options_in_pves_order(api: Api) -> None:
    def errors(**params: object) -> object:
        reply = api.call("POST", "/nodes/pve1/qemu/110/migrate", target="pve2", online=1, **params)
        assert reply.status == 400
        return reply.body["errors"]

    assert errors(migration_network="10.10.10.0/24") == {"migration_network": ROOT_ONLY}
    assert errors(force=1) == {"force": ROOT_ONLY}
    assert errors(force=1, migration_type="insecure", migration_network="10.1.0.0/24") == {
        "force": ROOT_ONLY
    }
    # `target is local node.` comes before them (l.5567).
    reply = api.call(
        "POST", "/nodes/pve1/qemu/110/migrate", target="pve1", migration_type="insecure"
    )
    assert reply.body["errors"] == {"target": "target is local node."}


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm", "l.5577-5578")
def test_force_0_is_not_refused(api: Api) -> None:
    reply = api.call("POST", "/nodes/pve1/qemu/110/migrate", target="pve2", online=1, force=0)
    assert reply.status == 200 and ":qmigrate:110:root@pam!pvetool:" in reply.body["data"]


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "phase2", "l.1229-1230, l.1293-1295")
def test_root_at_pam_may_migrate_insecurely(probe: Emulator) -> None:
    root = ticket_api(probe, "root@pam", "probe-root-password")
    upid = root.post(
        "/nodes/pve1/qemu/110/migrate", target="pve2", online=1, migration_type="insecure"
    )
    assert ":qmigrate:110:root@pam:" in upid
    status, log = run_task(root, upid)
    assert status["exitstatus"] == "OK"
    lines = strip_ts(log)
    assert "start remote tunnel" in lines and "ssh tunnel ver 1" in lines
    assert any(line.startswith("starting online/live migration on tcp:") for line in lines)


@pytest.mark.source(
    "qemu-server",
    "src/PVE/API2/Qemu.pm",
    "migrate_vm; QemuServer.pm check_storage_availability",
    "l.5611-5637; l.2234-2258",
)
def test_a_drive_on_a_storage_missing_on_the_target_is_refused_synchronously(api: Api) -> None:
    reply = api.call("POST", "/nodes/pve1/qemu/303/migrate", target="pve3")
    assert (reply.status, reply.reason) == (500, "storage 'fast' is not available on node 'pve3'")
    assert reply.body == {
        "data": None,
        "message": "storage 'fast' is not available on node 'pve3'\n",
    }
    assert "lock" not in api.guest(303) and api.guest(303)["node"] == "pve1"
    assert _tasks(api, "pve1", 303) == []
    reply = api.call("POST", "/nodes/pve1/qemu/309/migrate", target="pve2")
    assert (reply.status, reply.reason) == (500, "storage 'old' is disabled")


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "prepare", "l.315-340")
def test_an_unused_volume_on_a_missing_storage_fails_inside_the_task(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/304/migrate", target="pve3")
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration aborted"
    lines = strip_ts(log)
    assert lines[-2].startswith("ERROR: migration aborted (duration 00:00:0")
    assert lines[-2].endswith("): storage 'fast' is not available on node 'pve3'")
    assert lines[-1] == "TASK ERROR: migration aborted"
    assert not any(line.startswith("starting migration") for line in lines)


@pytest.mark.source("pve-container", "src/PVE/LXC/Migrate.pm", "prepare", "l.59-112, l.164-173")
def test_containers_check_storages_in_the_task_before_the_shutdown(api: Api) -> None:
    upid = api.post("/nodes/pve1/lxc/302/migrate", target="pve3", restart=1)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration aborted"
    lines = strip_ts(log)
    assert lines[-1] == "TASK ERROR: migration aborted"
    assert lines[-2].endswith("): storage 'fast' is not available on node 'pve3'")
    assert not any(line.startswith("shutdown CT") for line in lines)


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm", "l.5594-5604")
def test_live_migration_of_a_replicated_vm_only_to_a_replication_target(api: Api) -> None:
    reply = api.call("POST", "/nodes/pve1/qemu/140/migrate", target="pve3", online=1)
    text = (
        "Cannot live-migrate replicated VM to node 'pve3' - not a replication target. "
        "Use 'force' to override."
    )
    assert (reply.status, reply.reason) == (500, text)
    assert reply.body == {"data": None, "message": text + "\n"}
    assert _tasks(api, "pve1", 140) == []
    reply = api.call("POST", "/nodes/pve1/qemu/140/migrate", target="pve3", online=1, force=1)
    assert reply.body["errors"] == {"force": ROOT_ONLY}  # a token can never override
    reply = api.call("POST", "/nodes/pve1/qemu/140/migrate", target="pve2", online=1)
    assert reply.status == 200


@pytest.mark.source(
    "pve-ha-manager",
    "src/PVE/HA/Config.pm",
    "$service_check_ha_state / vm_is_ha_managed",
    "l.352-378, l.467-478",
)
def test_an_ignored_ha_resource_migrates_like_any_guest(api: Api) -> None:
    upid = api.post("/nodes/pve3/qemu/104/migrate", target="pve1", online=1)
    assert upid.split(":")[5:8] == ["qmigrate", "104", "root@pam!pvetool"]
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "OK"
    assert log[0] != "task started by HA resource agent"
    assert api.guest(104)["hastate"] == "ignored"
    current = api.get("/nodes/pve1/qemu/104/status/current")
    assert current["ha"] == {"managed": 0}
    reply = api.call("POST", "/cluster/ha/resources/vm:104/migrate", node="pve2")
    assert (reply.status, reply.reason) == (500, "resource 'vm:104' is not HA managed")
    pre = api.get("/nodes/pve1/qemu/104/migrate")
    assert "dependent-ha-resources" not in pre


@pytest.mark.source("pve-ha-manager", "src/PVE/HA/Config.pm", "service_is_ha_managed", "l.480-490")
def test_the_ha_api_refuses_a_guest_without_ha(api: Api) -> None:
    reply = api.call("POST", "/cluster/ha/resources/vm:110/migrate", node="pve2")
    assert (reply.status, reply.reason) == (500, "resource 'vm:110' is not HA managed")
