"""The emulator's control API under `/_emulator/`: every route, its JSON, and its refusals.

Tests, the chaos campaign and benchmarks script against these paths and keys, so they are pinned
here (the routes share the registry of the `/api2/json` endpoints).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from pvetool.emulator.server import Emulator
from tests.emu import Api, start


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with start() as emulator:
        yield emulator


@pytest.fixture
def api(emu: Emulator) -> Api:
    return Api(emu)


def control(api: Api, method: str, path: str, body: Any = None) -> tuple[int, str, Any]:
    url = f"https://127.0.0.1:{api.emu.port}/_emulator/{path}"
    r = api.session.request(method, url, json=body, timeout=30)
    return r.status_code, r.reason, r.json() if r.content else None


def ok(api: Api, method: str, path: str, body: Any = None) -> Any:
    status, reason, answer = control(api, method, path, body)
    assert status == 200, (status, reason, answer)
    return answer["data"]


def test_state_stats_and_task_answers_keep_their_keys(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    api.wait_task(upid, step_s=5.0)
    state = ok(api, "GET", "state")
    assert set(state) == {"time", "quorate", "nodes", "guests", "tasks"}
    assert set(state["nodes"]["pve1"]) == {
        "online",
        "maintenance",
        "memory_total",
        "memory_used",
        "memory_committed",
        "guests",
    }
    assert set(state["guests"]["110"]) == {"node", "type", "status", "lock", "memory", "ha_state"}
    (task,) = [t for t in state["tasks"] if t["upid"] == upid]
    assert set(task) == {
        "upid",
        "type",
        "vmid",
        "status",
        "exitstatus",
        "starttime",
        "endtime",
        "user",
        "stats",
    }
    answer = ok(api, "GET", f"tasks/{upid}")
    assert set(answer) == {"upid", "status", "exitstatus", "starttime", "endtime", "stats"}
    assert answer["stats"] == task["stats"]
    # Only what the migration recorded: no escalation or hang key for this one.
    assert set(answer["stats"]) == {
        "source",
        "target",
        "kind",
        "online",
        "target_started",
        "ram_fraction",
        "throttle",
        "sent_bytes",
        "downtime_ms",
        "guest_downtime_s",
    }
    assert answer["stats"]["source"] == "pve1" and answer["stats"]["ram_fraction"] == 0.0
    stats = ok(api, "GET", "stats")
    assert set(stats) == {"requests", "by_endpoint"} and stats["requests"] > 0


def test_node_guest_and_task_faults(api: Api, emu: Emulator) -> None:
    assert ok(api, "POST", "nodes/pve3/offline") is None
    assert ok(api, "GET", "state")["nodes"]["pve3"]["online"] is False
    assert ok(api, "POST", "nodes/pve3/online") is None
    assert ok(api, "POST", "nodes/pve2/maintenance", {"enabled": True}) is None
    # As `ha-manager crm-command node-maintenance enable`: a CRM round, then the LRM's.
    assert ok(api, "GET", "state")["nodes"]["pve2"]["maintenance"] is False
    api.advance(25)
    assert ok(api, "GET", "state")["nodes"]["pve2"]["maintenance"] is True
    assert ok(api, "POST", "guests/101/lock", {"lock": "backup"}) is None
    assert ok(api, "GET", "state")["guests"]["101"]["lock"] == "backup"
    assert ok(api, "POST", "guests/101/unlock") is None
    assert ok(api, "GET", "state")["guests"]["101"]["lock"] is None
    assert ok(api, "POST", "guests/110/hang-migration") is None
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    api.advance(30)
    assert ok(api, "GET", f"tasks/{upid}")["stats"]["hung"] is True
    assert ok(api, "POST", f"tasks/{upid}/unhang") is None
    assert ok(api, "GET", f"tasks/{upid}")["stats"]["hung"] is False
    assert api.wait_task(upid, step_s=5.0)["exitstatus"] == "OK"
    assert ok(api, "POST", "guests/105/fail-migration", {"at_percent": 30, "error": "boom"}) is None
    upid = api.post("/nodes/pve2/qemu/105/migrate", target="pve1", online=1)
    assert api.wait_task(upid, step_s=1.0)["exitstatus"] == "migration problems"
    assert any("boom" in line for line in api.task_log(upid))


def test_request_faults_quorum_clock_and_tickets(api: Api, emu: Emulator) -> None:
    assert (
        ok(api, "POST", "faults/requests", {"count": 1, "status": 502, "path": "^/version$"})
        is None
    )
    reply = api.call("GET", "/version")
    assert (reply.status, reply.reason) == (502, "Bad Gateway")
    assert api.call("GET", "/version").status == 200
    assert ok(api, "POST", "faults/slow", {"seconds": 0.0, "count": 1}) is None
    assert ok(api, "POST", "faults/clear") is None
    assert emu.request_faults.failing == [] and emu.request_faults.slow == []
    assert ok(api, "POST", "tickets/expire") is None
    assert ok(api, "POST", "quorum", {"quorate": False}) is None
    assert ok(api, "GET", "state")["quorate"] is False
    assert ok(api, "POST", "quorum", {"quorate": None}) is None
    assert ok(api, "GET", "state")["quorate"] is True
    before = ok(api, "GET", "state")["time"]
    assert ok(api, "POST", "clock", {"advance_s": 30})["time"] == pytest.approx(before + 30)
    assert ok(api, "POST", "clock", {"speed": 0})["time"] == pytest.approx(before + 30)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("GET", "nosuch", None, 501, "no control endpoint GET /_emulator/nosuch"),
        ("POST", "nosuch", None, 501, "no control endpoint POST /_emulator/nosuch"),
        ("PUT", "state", None, 501, "no control endpoint PUT /_emulator/state"),
        ("POST", "nodes/pve1/explode", None, 501, "unknown node action 'explode'"),
        ("POST", "guests/101/explode", None, 501, "unknown guest action 'explode'"),
        ("POST", "nodes/pve9/offline", None, 500, "no such cluster node 'pve9'"),
        ("POST", "guests/9999/lock", {"lock": "backup"}, 500, "unknown guest 9999"),
        ("POST", "guests/abc/lock", None, 400, "bad control request: invalid literal for int()"),
        ("POST", "faults/slow", {}, 400, "bad control request: 'seconds'"),
        ("POST", "faults/clear", [1], 400, "control body must be a JSON object"),
        ("GET", "tasks/UPID:nope", None, 500, "unable to open file - No such file or directory"),
    ],
)
def test_refusals(api: Api, method: str, path: str, body: Any, status: int, reason: str) -> None:
    got_status, got_reason, _ = control(api, method, path, body)
    assert got_status == status
    assert got_reason.startswith(reason), got_reason


def test_only_a_caller_with_every_privilege_may_use_it(emu: Emulator) -> None:
    auditor = Api(emu, token=("auditor@pve!ro", "1ab1ab1a-0000-4000-8000-000000000002"))
    status, reason, _ = control(auditor, "GET", "state")
    assert (status, reason) == (403, "Permission check failed (/_emulator, all privileges)")
    anonymous = Api(emu)
    del anonymous.session.headers["Authorization"]
    assert control(anonymous, "GET", "state")[:2] == (401, "No ticket")


# -- issue 12: every control value is range-checked; a bad one never breaks the emulator --
def _post(api: Api, path: str, body: object) -> requests.Response:
    url = f"https://127.0.0.1:{api.emu.port}/_emulator/{path}"
    return api.session.post(
        url,
        data=body if isinstance(body, str) else json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("clock", '{"speed": NaN}', "control body must be JSON: NaN is not a number"),
        ("clock", '{"advance_s": Infinity}', "control body must be JSON: Infinity is not a number"),
        ("clock", {"advance_s": 1e308}, "bad control request: 'advance_s' must be a number"),
        ("clock", {"speed": -1}, "bad control request: 'speed' must be a number"),
        ("faults/requests", {"count": -1}, "bad control request: 'count' must be an integer"),
        ("faults/requests", {"path": "(["}, "bad control request: 'path' is not a valid regular"),
        ("faults/slow", {"seconds": 1e308}, "bad control request: 'seconds' must be a number"),
        ("guests/110/fail-migration", {"at_percent": 150}, "bad control request: 'at_percent'"),
    ],
)
def test_the_control_api_refuses_values_out_of_range(
    api: Api, path: str, body: object, reason: str
) -> None:
    r = _post(api, path, body)
    assert r.status_code == 400 and r.reason.startswith(reason), r.reason
    # ... and the emulator goes on working.
    assert api.call("GET", "/version").status == 200
    assert _post(api, "clock", {"advance_s": 1}).status_code == 200
