"""fetch_snapshot: few calls (one /cluster/resources), configs in parallel, no per-node call to
an offline node, CPU models only when needed, and a vanished guest kept without its config."""

from __future__ import annotations

import copy
import re

import pytest
import responses

from pvetool.api import fetch_snapshot
from pvetool.api.client import PveClient

from .helpers import BASE1, PveResponse, RecordingSleep, load_fixture, token_settings

ONLINE = ("node1", "node2", "node3")


def _register(api: responses.RequestsMock, *, cpu_host: bool) -> None:
    status = copy.deepcopy(load_fixture("cluster_status_capture.json"))
    for entry in status["data"]:
        if entry.get("name") == "node4":
            entry["online"] = 0
    resources = copy.deepcopy(load_fixture("cluster_resources_capture.json"))
    for entry in resources["data"]:
        if entry.get("id") == "node/node4":
            entry["status"] = "offline"
        if entry.get("vmid") == 100:
            entry["hastate"] = "started"
    resources["data"].append(
        {
            "type": "lxc",
            "vmid": 300,
            "node": "node4",
            "status": "running",
            "name": "ct-off",
            "maxmem": 536870912,
            "mem": 100,
            "maxcpu": 1,
            "id": "lxc/300",
        }
    )
    api.get(f"{BASE1}/cluster/status", json=status)
    api.get(f"{BASE1}/cluster/resources", json=resources)
    api.get(
        f"{BASE1}/storage",
        json={
            "data": [
                {"storage": "local-zfs", "type": "zfspool", "content": "images,rootdir"},
                {"storage": "local", "type": "dir", "content": "backup,vztmpl,iso"},
                {"storage": "cloud-init", "type": "dir", "content": "snippets"},
            ]
        },
    )
    api.get(
        f"{BASE1}/cluster/options",
        json={
            "data": {"migration": {"type": "insecure", "network": "10.10.1.0/24"}, "max_workers": 4}
        },
    )
    api.get(
        f"{BASE1}/cluster/ha/resources",
        json={"data": [{"sid": "vm:100", "state": "started", "type": "vm"}]},
    )
    api.get(
        f"{BASE1}/cluster/ha/status/current",
        json={
            "data": [
                {"id": "quorum", "type": "quorum", "node": "node1", "quorate": 1, "status": "OK"},
                {
                    "id": "service:vm:100",
                    "type": "service",
                    "sid": "vm:100",
                    "node": "node2",
                    "state": "started",
                    "crm_state": "started",
                    "request_state": "started",
                    "status": "started",
                },
            ]
        },
    )
    api.get(
        f"{BASE1}/cluster/ha/rules",
        json={
            "data": [
                {
                    "rule": "db-on-2",
                    "type": "node-affinity",
                    "resources": "vm:100",
                    "nodes": "node2:2,node1",
                    "strict": 0,
                }
            ]
        },
    )
    # Shaped like pve-manager's ReplicationConfig index: the section config entries plus `id`.
    api.get(
        f"{BASE1}/cluster/replication",
        json={
            "data": [
                {
                    "id": "100-0",
                    "type": "local",
                    "guest": 100,
                    "jobnum": 0,
                    "target": "node3",
                    "source": "node2",
                    "schedule": "*/15",
                },
                {
                    "id": "101-0",
                    "type": "local",
                    "guest": 101,
                    "jobnum": 0,
                    "target": "node2",
                    "schedule": "22:30",
                    "rate": 50,
                    "disable": 1,
                    "comment": "paused during the migration to new disks",
                },
            ]
        },
    )
    for node in ONLINE:
        api.get(
            f"{BASE1}/nodes/{node}/version",
            json={"data": {"version": "9.0.3", "release": "9.0", "repoid": "a1b2c3d4"}},
        )
        api.get(
            f"{BASE1}/nodes/{node}/network",
            json={
                "data": [
                    {"iface": "vmbr0", "type": "bridge", "active": 1},
                    {"iface": "vmbr1", "type": "OVSBridge", "active": 1},
                ]
            },
        )
        api.get(
            f"{BASE1}/nodes/{node}/status",
            json={
                "data": {
                    "cpuinfo": {
                        "model": "AMD EPYC 7302P 16-Core Processor",
                        "cores": 16,
                        "cpus": 32,
                        "sockets": 1,
                    }
                }
            },
        )
    api.get(
        f"{BASE1}/nodes/node2/qemu/100/config",
        json={
            "data": {
                "memory": "1024",
                "cores": 1,
                "cpu": "host" if cpu_host else "x86-64-v2-AES",
                "scsi0": "local-zfs:vm-100-disk-0,size=32G",
                "net0": "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=10",
                "digest": "x",
            }
        },
    )
    for vmid in (101, 102):
        api.get(
            f"{BASE1}/nodes/node1/qemu/{vmid}/config",
            json={
                "data": {
                    "memory": "8000",
                    "scsi0": f"local-zfs:vm-{vmid}-disk-0,size=50G",
                    "digest": "x",
                }
            },
        )
    # 200 moved away between /cluster/resources and its config read
    api.add(
        PveResponse(
            "GET",
            f"{BASE1}/nodes/node1/qemu/200/config",
            status=500,
            reason="Configuration file 'nodes/node1/qemu-server/200.conf' does not exist",
            body="",
        )
    )


def _paths(api: responses.RequestsMock) -> list[str]:
    return [re.sub(r"^https://[^/]+/api2/json", "", c.request.url.split("?")[0]) for c in api.calls]


@pytest.mark.parametrize("cpu_host", [True, False])
def test_fetch_snapshot(
    api: responses.RequestsMock, cpu_host: bool, caplog: pytest.LogCaptureFixture
) -> None:
    _register(api, cpu_host=cpu_host)
    client = PveClient(token_settings(), sleep=RecordingSleep(), wall_clock=lambda: 1.7e9)
    snap = fetch_snapshot(client, max_workers=4)
    paths = _paths(api)

    assert paths.count("/cluster/resources") == 1
    assert not any(p.startswith("/nodes/node4") for p in paths)  # offline: no per-node call
    status_calls = [p for p in paths if re.fullmatch(r"/nodes/node\d/status", p)]
    assert len(status_calls) == (3 if cpu_host else 0)
    config_calls = [c for c in api.calls if c.request.url.split("?")[0].endswith("/config")]
    assert config_calls and all("current=1" in c.request.url for c in config_calls)
    assert len(api.calls) == 8 + 3 * 2 + len(status_calls) + 4

    assert snap.cluster_name == "clustername" and snap.quorate and snap.fetched_at == 1.7e9
    assert snap.online_nodes == ONLINE and not snap.nodes["node4"].online
    assert snap.nodes["node1"].version is not None
    assert snap.nodes["node1"].version.release == "9.0"
    assert snap.nodes["node4"].version is None
    assert (snap.nodes["node2"].cpu_model is not None) is cpu_host
    assert snap.bridges_on("node3") == {"vmbr0", "vmbr1"} and snap.bridges_on("node4") == set()
    assert snap.datacenter.migration_type == "insecure" and snap.datacenter.max_workers == 4
    assert [r.rule_id for r in snap.ha_rules_for("vm:100")] == ["db-on-2"]

    g100 = snap.guest(100)
    assert g100.config_known and g100.ha_state == "started" and g100.node == "node2"
    assert g100.memory_bytes == 1024 * 1024**2 and g100.nets[0].vlan_tag == 10
    assert g100.disks[0].is_local and g100.disks[0].size_bytes == 32 * 1024**3
    assert snap.guest(101).disk_bytes_by_storage == {"local-zfs": 50 * 1024**3}
    assert not snap.guest(200).config_known  # vanished: kept, with a warning
    assert "200" in caplog.text
    assert not snap.guest(300).config_known and snap.guest(300).node == "node4"
    assert snap.storage_free_bytes("local-zfs", "node1") == 955016175616 - 14446702592
    assert snap.replication == {100: ("node3",)}  # 101's job is disabled


def test_fetch_snapshot_fails_when_a_cluster_call_fails(api: responses.RequestsMock) -> None:
    api.add(
        PveResponse(
            "GET",
            f"{BASE1}/cluster/status",
            status=403,
            reason="Permission check failed (/, Sys.Audit)",
            body="",
        )
    )
    client = PveClient(token_settings(), sleep=RecordingSleep())
    with pytest.raises(Exception, match="Sys.Audit"):
        fetch_snapshot(client)


def test_fetch_snapshot_without_replication_jobs_when_pve_refuses_them(
    api: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    _register(api, cpu_host=False)
    api.replace(
        responses.GET,
        f"{BASE1}/cluster/replication",
        status=403,
        body="",
    )
    client = PveClient(token_settings(), sleep=RecordingSleep(), wall_clock=lambda: 1.7e9)
    snap = fetch_snapshot(client, max_workers=4)
    assert snap.replication == {}
    assert "replication" in caplog.text
