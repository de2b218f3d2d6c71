"""D1, D7, D8: GET /nodes/{node}/{qemu,lxc}/{vmid}/migrate as qemu-server and pve-container
answer it, and the checks of POST .../migrate that run before the guest is loaded."""

from __future__ import annotations

import pytest

from pvetool.emulator.server import Emulator
from tests.conformance.conftest import run_task, strip_ts
from tests.emu import Api

QEMU_KEYS = {
    "running",
    "allowed_nodes",
    "not_allowed_nodes",
    "local_disks",
    "local_resources",
    "mapped-resources",
    "mapped-resource-info",
    "has-dbus-vmstate",
}


@pytest.mark.source(
    "qemu-server",
    "src/PVE/API2/Qemu.pm",
    "migrate_vm_precondition; QemuServer.pm check_local_storage_availability",
    "l.5439-5465; l.2300-2301",
)
def test_every_other_node_is_listed_with_an_empty_entry_when_allowed(api: Api) -> None:
    reply = api.call("GET", "/nodes/pve1/qemu/111/migrate")
    assert (reply.status, reply.reason) == (200, "OK")
    data = reply.body["data"]
    assert set(data) >= QEMU_KEYS
    # get_nodelist is a Perl hash: the order is unspecified, compare as sets.
    assert set(data["allowed_nodes"]) == {"pve2", "pve3"}
    assert data["not_allowed_nodes"] == {"pve2": {}, "pve3": {}}


@pytest.mark.source(
    "qemu-server", "src/PVE/QemuServer.pm", "check_local_storage_availability", "l.2319-2332"
)
def test_a_storage_limited_to_some_nodes_refuses_the_others(api: Api) -> None:
    data = api.get("/nodes/pve1/qemu/303/migrate")
    assert data["not_allowed_nodes"] == {"pve2": {}, "pve3": {"unavailable_storages": ["fast"]}}
    assert data["allowed_nodes"] == ["pve2"]
    # A disabled storage is unavailable everywhere (l.2315-2318).
    data = api.get("/nodes/pve1/qemu/309/migrate")
    assert data["not_allowed_nodes"] == {
        "pve2": {"unavailable_storages": ["old"]},
        "pve3": {"unavailable_storages": ["old"]},
    }
    assert data["allowed_nodes"] == []


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm_precondition", "l.5402")
def test_the_target_parameter_changes_nothing(api: Api) -> None:
    assert api.get("/nodes/pve1/qemu/111/migrate", target="pve3") == api.get(
        "/nodes/pve1/qemu/111/migrate"
    )


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm_precondition", "l.5439-5441")
def test_offline_members_are_listed_as_allowed(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.set_node_online("pve3", False)
    data = api.get("/nodes/pve1/qemu/110/migrate")
    assert "pve3" in data["allowed_nodes"] and data["not_allowed_nodes"]["pve3"] == {}


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm_precondition", "l.5397")
def test_quorum_comes_first(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.quorate_override = False
    reply = api.call("GET", "/nodes/pve3/qemu/115/migrate")  # also locked: quorum wins
    assert (reply.status, reply.reason) == (500, "cluster not ready - no quorum?")
    assert reply.body == {"data": None, "message": "cluster not ready - no quorum?\n"}


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm_precondition", "l.5410")
def test_a_locked_vm_is_refused(api: Api) -> None:
    reply = api.call("GET", "/nodes/pve3/qemu/115/migrate")
    assert (reply.status, reply.reason) == (500, "VM is locked (backup)")


@pytest.mark.source(
    "qemu-server",
    "src/PVE/QemuServer.pm",
    "foreach_volid; Qemu.pm $check_vm_disks_local",
    "l.4531-4571; l.5207-5239",
)
def test_local_disks_carry_pves_attributes(api: Api) -> None:
    (disk,) = api.get("/nodes/pve1/qemu/111/migrate")["local_disks"]
    assert disk == {
        "volid": "local-lvm:vm-111-disk-0",
        "size": 4 * 1024**3,
        "drivename": "scsi0",
        "cdrom": 0,
        "is_cloudinit": 0,
        "replicate": 1,
        "shared": 0,
        "is_unused": 0,
        "is_attached": 1,
        "is_vmstate": 0,
        "is_tpmstate": 0,
    }
    # An unused volume and a local ISO in a CD drive are local disks too.
    unused = api.get("/nodes/pve1/qemu/304/migrate")["local_disks"]
    assert [(d["volid"], d["is_unused"], d["is_attached"]) for d in unused] == [
        ("fast:vm-304-disk-1", 1, 0)
    ]
    (iso,) = api.get("/nodes/pve1/qemu/305/migrate")["local_disks"]
    assert (iso["volid"], iso["cdrom"], iso["drivename"]) == ("local:iso/debian-13.iso", 1, "ide2")
    assert iso["size"] == 650 * 1024**2  # the size= PVE writes into an ISO drive


@pytest.mark.source(
    "pve-ha-manager", "src/PVE/HA/Config.pm", "get_resource_motion_info", "l.391-434"
)
def test_ha_blockers_come_only_from_negative_resource_affinity(api: Api) -> None:
    data = api.get("/nodes/pve1/qemu/101/migrate")
    assert data["not_allowed_nodes"]["pve2"] == {
        "blocking-ha-resources": [{"sid": "vm:102", "cause": "resource-affinity"}]
    }
    assert data["dependent-ha-resources"] == []
    # A node-affinity rule never blocks (the schema still lists the cause, no code emits it).
    pre = api.get("/nodes/pve1/qemu/103/migrate")
    assert pre["dependent-ha-resources"] == []
    assert all("blocking-ha-resources" not in v for v in pre["not_allowed_nodes"].values())
    # A guest that is not HA-managed has no dependent-ha-resources key (Qemu.pm l.5432-5437).
    assert "dependent-ha-resources" not in api.get("/nodes/pve1/qemu/110/migrate")


@pytest.mark.source(
    "pve-container", "src/PVE/API2/LXC.pm", "migrate_vm_precondition", "l.1586-1612"
)
def test_containers_list_only_ha_blocked_nodes(api: Api) -> None:
    data = api.get("/nodes/pve1/lxc/302/migrate")
    # pve3 lacks `fast`, but the container precondition knows nothing of storages.
    assert data == {"running": 1, "allowed-nodes": ["pve2", "pve3"], "not-allowed-nodes": {}}


@pytest.mark.source(
    "qemu-server", "src/PVE/QemuMigrate/Helpers.pm", "check_local_resources", "l.74-108"
)
def test_mapped_devices(api: Api) -> None:
    data = api.get("/nodes/pve1/qemu/301/migrate")
    assert data["local_resources"] == ["usb0"]  # a mapped USB device stays a local resource
    assert data["mapped-resources"] == ["usb0"]
    assert data["mapped-resource-info"] == {"usb0": {"name": "dongle"}}
    assert data["not_allowed_nodes"]["pve3"] == {"unavailable-resources": ["usb0"]}
    assert data["allowed_nodes"] == ["pve2"]
    # A live-migration-capable mapped PCI device is no local resource (l.90-93).
    data = api.get("/nodes/pve1/qemu/308/migrate")
    assert data["local_resources"] == []
    assert data["mapped-resource-info"] == {"hostpci0": {"name": "gpu", "live-migration": 1}}


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "prepare", "l.287-304")
def test_a_running_vm_with_a_mapped_usb_device_cannot_move_live(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/301/migrate", target="pve2", online=1)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration aborted"
    lines = strip_ts(log)
    assert not any(line.startswith("starting migration") for line in lines)
    assert any(
        line.startswith("ERROR: migration aborted (duration 00:00:0")
        and line.endswith(
            "): can't live migrate running VM which uses following mapped devices: usb0:dongle"
        )
        for line in lines
    ), lines
    g = api.guest(301)
    assert g["node"] == "pve1" and "lock" not in g


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "prepare", "l.295-302")
def test_mapped_devices_offline_and_to_a_node_without_the_mapping(api: Api) -> None:
    api.wait_task(api.post("/nodes/pve1/qemu/301/status/shutdown"))
    upid = api.post("/nodes/pve1/qemu/301/migrate", target="pve3")
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration aborted"
    assert any(
        line.endswith("can't migrate to 'pve3': missing mapped devices usb0")
        for line in strip_ts(log)
    )
    upid = api.post("/nodes/pve1/qemu/301/migrate", target="pve2")
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "OK"
    assert "migrating VM which uses mapped local devices" in strip_ts(log)


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm", "l.5564-5588")
def test_post_checks_before_the_guest_is_loaded(api: Api) -> None:
    # VM 999 does not exist: the local-target check still answers first.
    reply = api.call("POST", "/nodes/pve1/qemu/999/migrate", target="pve1")
    assert (reply.status, reply.reason) == (400, "Parameter verification failed.")
    assert reply.body["errors"] == {"target": "target is local node."}
    reply = api.call("POST", "/nodes/pve1/qemu/999/migrate", target="pve9")
    assert (reply.status, reply.reason) == (500, "no such cluster node 'pve9'")
    reply = api.call("POST", "/nodes/pve1/qemu/999/migrate", target="pve2")
    assert (reply.status, reply.reason) == (
        500,
        "Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist",
    )
