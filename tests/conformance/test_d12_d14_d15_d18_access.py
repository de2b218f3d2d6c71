"""D12, D14, D15, D18: /cluster/resources, authentication and permissions, the bandwidth
limit a caller may set, and /version of the serving node."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from pvetool.emulator.server import Emulator
from pvetool.emulator.specs import PRIVILEGES
from tests.conformance.conftest import AUDITOR, login, run_task, strip_ts
from tests.emu import Api, start


def _session(emu: Emulator) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(emu.tls.ca_file)
    return s


def _base(emu: Emulator, port: int | None = None) -> str:
    return f"https://127.0.0.1:{port or emu.port}/api2/json"


@pytest.mark.source("pve-manager", "PVE/API2/Cluster.pm", "resources", "l.533-658")
def test_resource_rows_in_pves_order(api: Api) -> None:
    rows = api.get("/cluster/resources")
    types = [r["type"] for r in rows]
    # pools, then guests, then nodes, then storages, then the network rows
    rank = {"pool": 0, "qemu": 1, "lxc": 1, "node": 2, "storage": 3, "network": 4}
    assert [rank[t] for t in types] == sorted(rank[t] for t in types)
    pools = [r for r in rows if r["type"] == "pool"]
    assert [p["id"] for p in pools] == ["/pool/dev", "/pool/prod", "/pool/spare"]
    dev = pools[0]
    assert dev["maxmem"] == 6 * 1024**3 and dev["mem"] > 0  # 110 and 111 run
    assert "maxmem" not in pools[2]  # the empty pool
    guests = [r for r in rows if r["type"] in ("qemu", "lxc")]
    assert [g["vmid"] for g in guests] == sorted((g["vmid"] for g in guests), key=str)
    first_node = types.index("node")
    assert all(t in ("qemu", "lxc", "pool") for t in types[:first_node])
    last_node = len(types) - 1 - types[::-1].index("node")
    assert all(t not in ("qemu", "lxc", "pool") for t in types[last_node:])
    assert all("memhost" in g for g in guests)


@pytest.mark.source("pve-manager", "PVE/API2/Cluster.pm", "resources", "l.633-635")
def test_nodes_carry_their_ha_state(api: Api, probe: Emulator) -> None:
    nodes = {r["node"]: r for r in api.get("/cluster/resources", type="node")}
    assert {n["hastate"] for n in nodes.values()} == {"online"}
    with probe.locked() as c:
        c.ha.commands.append("enable-node-maintenance pve2")
    api.advance(25)
    nodes = {r["node"]: r for r in api.get("/cluster/resources", type="node")}
    assert nodes["pve2"]["hastate"] == "maintenance"


@pytest.mark.source("pve-manager", "PVE/API2Tools.pm", "extract_node_stats", "l.38-79")
def test_node_numbers_need_sys_audit_on_the_node(probe: Emulator) -> None:
    auditor = Api(probe, AUDITOR)
    nodes = {r["node"]: r for r in auditor.get("/cluster/resources", type="node")}
    assert "maxmem" not in nodes["pve1"] and "cpu" not in nodes["pve1"]
    assert nodes["pve2"]["maxmem"] == 128 * 1024**3


@pytest.mark.source(
    "pve-http-server",
    "src/PVE/APIServer/AnyEvent.pm; Formatter.pm",
    "handle_request; extract_auth_value",
    "l.1573-1596; l.78-88",
)
def test_ticket_cookie_is_uri_unescaped_and_authorization_works_too(probe: Emulator) -> None:
    ticket, _ = login(probe, "root@pam", "probe-root-password")
    s = _session(probe)
    r = s.get(_base(probe) + "/version", headers={"Cookie": f"PVEAuthCookie={quote(ticket)}"})
    assert r.status_code == 200
    r = _session(probe).get(
        _base(probe) + "/version", headers={"Authorization": f"PVEAuthCookie={ticket}"}
    )
    assert r.status_code == 200


@pytest.mark.source("pve-manager", "PVE/HTTPServer.pm", "auth_handler", "l.84-111")
def test_a_bad_ticket_or_token_is_authentication_failed(probe: Emulator) -> None:
    ticket, _ = login(probe, "root@pam", "probe-root-password")
    s = _session(probe)
    s.cookies.set("PVEAuthCookie", ticket[:-4] + "AAAA")
    r = s.get(_base(probe) + "/version")
    assert (r.status_code, r.reason, r.content) == (401, "Authentication failed!", b"")
    r = _session(probe).get(
        _base(probe) + "/version", headers={"Authorization": "PVEAPIToken=ops@pve!t=wrong"}
    )
    assert (r.status_code, r.reason) == (401, "Authentication failed!")
    r = _session(probe).get(_base(probe) + "/version")
    assert (r.status_code, r.reason) == (401, "No ticket")


@pytest.mark.source(
    "pve-http-server", "src/PVE/APIServer/AnyEvent.pm", "handle_request", "l.1614-1618"
)
def test_failed_authentication_can_be_delayed_as_pveproxy_does() -> None:
    emu = start("probe.yaml", auth_failure_delay_s=0.3)
    try:
        t0 = time.monotonic()
        r = _session(emu).get(_base(emu) + "/version")
        assert r.status_code == 401 and time.monotonic() - t0 >= 0.3
    finally:
        emu.stop()


@pytest.mark.source(
    "pve-access-control",
    "src/PVE/RPCEnvironment.pm",
    "get_effective_permissions; permissions",
    "l.241-289; l.136-176",
)
def test_access_permissions_lists_pves_paths(api: Api, probe: Emulator) -> None:
    perms = api.get("/access/permissions")
    default = {"/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"}
    assert set(perms) >= default
    assert {"/vms/110", "/vms/111", "/vms/101"} <= set(perms)  # pool members
    assert "/pool/dev" not in perms
    for privs in perms.values():
        assert set(privs) == PRIVILEGES and len(privs) == 47
        assert "VM.Monitor" not in privs and set(privs.values()) == {1}
    assert set(_permissions(api, "/vms/101")) == {"/vms/101"}
    ops = Api(probe, ("ops@pve!t", "probe-ops-secret"))
    mine = _permissions(ops, "/")
    assert mine == {"/": {"Datastore.Audit": 1, "VM.Audit": 1, "VM.Migrate": 1}}


def _permissions(api: Api, path: str) -> dict[str, dict[str, int]]:
    r = api.session.get(api.base + "/access/permissions", params={"path": path}, timeout=30)
    data: dict[str, dict[str, int]] = r.json()["data"]
    return data


@pytest.mark.source(
    "pve-manager; pve-access-control",
    "PVE/HTTPServer.pm; src/PVE/RPCEnvironment.pm",
    "rest_handler; check",
    "l.170-203; l.291-305",
)
def test_permissions_are_checked_before_parameters(probe: Emulator) -> None:
    auditor = Api(probe, AUDITOR)
    reply = auditor.call("POST", "/nodes/pve1/qemu/110/migrate")  # no target: malformed
    assert (reply.status, reply.reason) == (403, "Permission check failed (/vms/110, VM.Migrate)")


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm", "l.5618-5629")
def test_a_storage_map_needs_config_disk_and_allocate_space(probe: Emulator) -> None:
    ops = Api(probe, ("ops@pve!t", "probe-ops-secret"))
    reply = ops.call(
        "POST",
        "/nodes/pve1/qemu/111/migrate",
        target="pve2",
        online=1,
        targetstorage="local-lvm:ceph",
        **{"with-local-disks": 1},
    )
    assert (reply.status, reply.reason) == (
        403,
        "Permission check failed (/vms/111, VM.Config.Disk)",
    )


@pytest.mark.source("pve-manager", "PVE/HTTPServer.pm", "rest_handler", "l.148-151")
def test_unknown_paths(api: Api) -> None:
    reply = api.call("GET", "/nodes/pve1/foo")
    assert (reply.status, reply.reason) == (501, "Method 'GET /nodes/pve1/foo' not implemented")


@pytest.mark.source("pve-http-server", "src/PVE/APIServer/AnyEvent.pm", "response", "l.306-315")
def test_the_reason_phrase_is_the_messages_first_line(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.ha.rules = [r for r in c.ha.rules if r.rule != "db-prefers-1"]
    reply = api.call(
        "POST",
        "/cluster/ha/rules",
        rule="r2",
        type="node-affinity",
        resources="vm:101",
        nodes="pve1",
    )
    assert reply.status == 200
    reply = api.call(
        "POST",
        "/cluster/ha/rules",
        rule="r3",
        type="node-affinity",
        resources="vm:101",
        nodes="pve2",
    )
    assert reply.status == 500
    assert reply.reason == "create ha rule failed: 400 Rule 'r3' is invalid."
    assert reply.body["message"] == (
        "create ha rule failed: 400 Rule 'r3' is invalid.\n"
        "resources: resource 'vm:101' is already used in another node affinity rule\n"
    )


BW_CLUSTER = """
name: bw
seed: 3
datacenter: {bwlimit: {migration: 102400}, max_workers: 2}
nodes:
  pve1: {cpus: 8, memory: 32GiB}
  pve2: {cpus: 8, memory: 32GiB}
storages:
  ceph: {type: rbd, shared: true, size: 1TiB}
guests:
  110: {type: qemu, node: pve1, memory: 1GiB, used: 256MiB, dirty: idle, disks: {scsi0: "ceph:4G"},
        net0: "virtio,bridge=vmbr0"}
tokens:
  - {id: "root@pam!pvetool", secret: "bw-root", privileges: all}
  - {id: "ops@pve!t", secret: "bw-ops", privileges: [VM.Audit, VM.Migrate]}
users:
  - {id: "root@pam", password: "bw-root-password"}
  - {id: "ops@pve", password: "bw-ops-password", privileges: [VM.Audit, VM.Migrate]}
"""


def _speed_line(api: Api, **params: object) -> str | None:
    node = api.guest(110)["node"]
    target = "pve2" if node == "pve1" else "pve1"
    upid = api.post(f"/nodes/{node}/qemu/110/migrate", target=target, online=1, **params)
    _, log = run_task(api, upid)
    found = [x for x in strip_ts(log) if x.startswith("migration speed limit: ")]
    return found[0] if found else None


@pytest.mark.source(
    "pve-storage; qemu-server",
    "src/PVE/Storage.pm; src/PVE/QemuMigrate.pm",
    "get_bandwidth_limit; phase2",
    "l.2394-2467; l.1350-1371",
)
def test_bwlimit_above_the_datacenter_limit_needs_sys_modify(tmp_path: Path) -> None:
    path = tmp_path / "bw.yaml"
    path.write_text(BW_CLUSTER)
    with start(str(path)) as emu:
        ops = Api(emu, ("ops@pve!t", "bw-ops"))
        root = Api(emu, ("root@pam!pvetool", "bw-root"))
        assert _speed_line(ops, bwlimit=0) == "migration speed limit: 100.0 MiB/s"
        assert _speed_line(ops, bwlimit=51200) == "migration speed limit: 50.0 MiB/s"
        assert _speed_line(ops, bwlimit=204800) == "migration speed limit: 100.0 MiB/s"
        assert _speed_line(root, bwlimit=0) is None
        assert _speed_line(root, bwlimit=51200) == "migration speed limit: 50.0 MiB/s"
        assert _speed_line(root, bwlimit=204800) == "migration speed limit: 200.0 MiB/s"
        assert _speed_line(ops) == "migration speed limit: 100.0 MiB/s"


@pytest.mark.source("pve-manager", "PVE/API2.pm", "version", "l.86-137")
def test_version_is_the_serving_nodes(probe: Emulator) -> None:
    second = probe.add_listener(0, node="pve3")
    token = {"Authorization": "PVEAPIToken=root@pam!pvetool=probe-root-secret"}
    one = _session(probe).get(_base(probe) + "/version", headers=token).json()["data"]
    three = _session(probe).get(_base(probe, second) + "/version", headers=token).json()["data"]
    assert (one["version"], one["release"]) == ("9.2.4", "9.2")
    assert (three["version"], three["release"]) == ("9.1.7", "9.1")
    other = _session(probe).get(_base(probe) + "/nodes/pve3/version", headers=token).json()
    assert other["data"]["version"] == "9.1.7"
