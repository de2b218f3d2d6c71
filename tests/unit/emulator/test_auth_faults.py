"""Authentication as PVE does it (token, ticket + CSRF, privileges) and the fault injection API."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from pvetool.emulator.server import Emulator
from tests.emu import Api, start

ROOT = ("root@pam!test", "00000000-test-secret-0000")
AUDITOR = ("auditor@pve!ro", "11111111-audit-secret-1111")


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    e = start("behaviour.yaml")
    yield e
    e.stop()


def _session(emu: Emulator) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(emu.tls.ca_file)
    return s


def _base(emu: Emulator) -> str:
    return f"https://127.0.0.1:{emu.port}/api2/json"


def test_token_auth(emu: Emulator) -> None:
    assert Api(emu, ROOT).call("GET", "/version").status == 200
    bad = Api(emu, (ROOT[0], "wrong")).call("GET", "/version")
    assert (bad.status, bad.reason, bad.body) == (401, "Authentication failed!", None)
    unknown = Api(emu, ("nobody@pam!x", "y")).call("GET", "/version")
    assert unknown.status == 401
    r = _session(emu).get(_base(emu) + "/version")
    assert (r.status_code, r.reason) == (401, "No ticket")


def test_privileges_are_checked_like_pve(emu: Emulator) -> None:
    auditor = Api(emu, AUDITOR)
    assert auditor.call("GET", "/cluster/resources").status == 200
    assert auditor.call("GET", "/nodes/pve1/qemu/101/migrate").reason == (
        "Permission check failed (/vms/101, VM.Migrate)"
    )
    r = auditor.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    assert (r.status, r.reason) == (403, "Permission check failed (/vms/101, VM.Migrate)")
    # The control API needs a caller with every privilege.
    r = auditor.session.get(f"https://127.0.0.1:{emu.port}/_emulator/state")
    assert r.status_code == 403


def test_ticket_auth_with_csrf_and_expiry(emu: Emulator) -> None:
    s = _session(emu)
    base = _base(emu)
    r = s.post(base + "/access/ticket", data={"username": "root@pam", "password": "nope"})
    assert (r.status_code, r.reason) == (401, "authentication failure")
    r = s.post(
        base + "/access/ticket",
        data={"username": "root", "realm": "pam", "password": "rootpass-lab"},
    )
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["username"] == "root@pam" and data["ticket"].startswith("PVE:root@pam:")
    s.cookies.set("PVEAuthCookie", data["ticket"])
    assert s.get(base + "/cluster/status").status_code == 200
    # Writes need the CSRF token.
    r = s.post(base + "/nodes/pve1/qemu/101/migrate", data={"target": "pve2", "online": 1})
    assert (r.status_code, r.reason) == (401, "Permission denied - invalid csrf token")
    r = s.post(
        base + "/nodes/pve1/qemu/101/migrate",
        data={"target": "pve2", "online": 1},
        headers={"CSRFPreventionToken": data["CSRFPreventionToken"]},
    )
    assert r.status_code == 200 and ":qmigrate:101:root@pam:" in r.json()["data"]
    emu.expire_tickets()
    r = s.get(base + "/cluster/status")
    # pve-manager PVE/HTTPServer.pm auth_handler (9.1.5+): any failed ticket check.
    assert (r.status_code, r.reason) == (401, "Authentication failed!")


def test_request_faults(emu: Emulator) -> None:
    api = Api(emu)
    emu.fail_requests(2, status=503, path="^/cluster/resources")
    assert api.call("GET", "/version").status == 200  # other paths unaffected
    assert api.call("GET", "/cluster/resources").status == 503
    assert api.call("GET", "/cluster/resources").status == 503
    assert api.call("GET", "/cluster/resources").status == 200
    emu.fail_requests(1, status=596)
    r = api.call("GET", "/version")
    assert r.status == 596 and r.body is None
    emu.fail_requests(1, drop=True)
    with pytest.raises(requests.ConnectionError):
        api.call("GET", "/version")
    assert api.call("GET", "/version").status == 200
    emu.slow_requests(0.3, count=1)
    t0 = time.monotonic()
    assert api.call("GET", "/version").status == 200
    assert time.monotonic() - t0 >= 0.3


def test_control_api_over_http(emu: Emulator) -> None:
    api = Api(emu)
    ctl = f"https://127.0.0.1:{emu.port}/_emulator"
    s = api.session

    def post(where: str, **body: object) -> requests.Response:
        return s.post(ctl + where, json=body)

    assert post("/guests/101/lock", lock="backup").status_code == 200
    r = api.call("POST", "/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    assert (r.status, r.reason) == (500, "VM is locked (backup)")
    assert post("/guests/101/unlock").status_code == 200
    assert post("/faults/requests", count=1, status=502, path="/version").status_code == 200
    assert api.call("GET", "/version").status == 502
    assert post("/nodes/pve3/offline").status_code == 200
    assert api.call("GET", "/nodes/pve3/status").status == 595
    assert post("/nodes/pve3/online").status_code == 200
    assert api.call("GET", "/nodes/pve3/status").status == 200
    assert post("/quorum", quorate=False).status_code == 200
    assert api.get("/cluster/status")[0]["quorate"] == 0
    assert post("/quorum", quorate=None).status_code == 200
    assert api.get("/cluster/status")[0]["quorate"] == 1
    before = s.post(ctl + "/clock", json={}).json()["data"]["time"]
    after = post("/clock", advance_s=100).json()["data"]["time"]
    assert after - before == pytest.approx(100, abs=0.2)
    state = s.get(ctl + "/state").json()["data"]
    assert state["guests"]["101"]["node"] == "pve1"
    assert sorted(state["nodes"]["pve1"]["guests"]) == [101, 102, 103, 104, 108]
    assert post("/tickets/expire").status_code == 200
    assert s.post(ctl + "/nope").status_code == 501


def test_migration_failure_at_a_given_progress(emu: Emulator) -> None:
    api = Api(emu)
    emu.cluster.fail_next_migration(101, 40, "migration status error: failed")
    upid = api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    st = api.wait_task(upid)
    assert st["exitstatus"] == "migration problems"
    log = api.task_log(upid)
    assert any("online migrate failure - migration status error: failed" in x for x in log)
    g = api.guest(101)
    assert (g["node"], g["status"]) == ("pve1", "running") and "lock" not in g
    # Only the next migration fails.
    assert (
        api.wait_task(api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1))[
            "exitstatus"
        ]
        == "OK"
    )


def test_hung_task_stays_running_until_stopped(emu: Emulator) -> None:
    api = Api(emu)
    emu.cluster.hang_next_migration(101)
    upid = api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    api.advance(3600)
    assert api.task_status(upid)["status"] == "running"
    assert api.guest(101)["lock"] == "migrate"
    api.call("DELETE", f"/nodes/pve1/tasks/{upid}")
    assert api.task_status(upid)["exitstatus"] == "migration problems"
    assert "lock" not in api.guest(101) and api.guest(101)["node"] == "pve1"


def test_target_going_offline_mid_migration_fails_the_task(emu: Emulator) -> None:
    api = Api(emu)
    upid = api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
    api.advance(6)
    with emu.locked() as c:
        c.set_node_online("pve2", False)
    st = api.task_status(upid)
    assert st["status"] == "stopped" and st["exitstatus"] != "OK"
    g = api.guest(101)
    assert g["node"] == "pve1" and "lock" not in g
    state = emu.state()
    assert sum(101 in n["guests"] for n in state["nodes"].values()) == 1


def test_agent_ping_only_for_running_guests_with_the_agent(emu: Emulator) -> None:
    api = Api(emu)
    assert api.call("POST", "/nodes/pve1/qemu/101/agent/ping").data == {"result": {}}
    assert api.call("POST", "/nodes/pve1/qemu/102/agent/ping").reason == (
        "No QEMU guest agent configured"
    )
    assert api.call("POST", "/nodes/pve2/qemu/105/agent/ping").reason == "VM 105 is not running"


def test_failover_between_api_listeners(emu: Emulator) -> None:
    first = emu.port
    second = emu.add_listener(0)
    api2 = Api(emu, port=second)
    emu.close_listener(0)
    assert emu.ports == [second]
    assert api2.call("GET", "/version").status == 200
    with pytest.raises(requests.ConnectionError):
        Api(emu, port=first).call("GET", "/version")
