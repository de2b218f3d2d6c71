"""D9, D13: task logs, task status, the node task list and /cluster/tasks as pve-manager
`PVE/API2/Tasks.pm` and `PVE/API2/Cluster.pm` `tasks` answer them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pvetool.emulator.server import Emulator
from tests.conformance.conftest import ticket_api
from tests.emu import Api

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
UNKNOWN = "UPID:pve3:00000001:00000001:00000001:qmigrate:116:root@pam:"


def _finished_task(api: Api) -> str:
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    api.wait_task(upid)
    return str(upid)


@pytest.mark.source(
    "pve-manager",
    "PVE/API2/Tasks.pm; pve-common src/PVE/Tools.pm",
    "read_task_log; dump_logfile",
    "l.439-446; l.751-821",
)
def test_log_pages_carry_total_and_limit_0_reads_to_the_end(api: Api) -> None:
    upid = _finished_task(api)
    reply = api.call("GET", f"/nodes/pve1/tasks/{upid}/log")
    assert reply.status == 200 and set(reply.body) == {"data", "total"}
    total = reply.body["total"]
    lines = reply.body["data"]
    assert total > 12 and len(lines) == min(50, total)
    assert [row["n"] for row in lines] == list(range(1, len(lines) + 1))
    assert set(lines[0]) == {"n", "t"}
    tail = api.call("GET", f"/nodes/pve1/tasks/{upid}/log", start=total - 2, limit=0).body
    assert tail["total"] == total
    assert [row["n"] for row in tail["data"]] == [total - 1, total]
    assert tail["data"][-1]["t"] == "TASK OK"
    past = api.call("GET", f"/nodes/pve1/tasks/{upid}/log", start=total + 5).body
    assert past == {"data": [], "total": total}
    # The recorded capture has the same row shape: n from 1, t the raw line.
    recorded = json.loads((FIXTURES / "task_log_data_file_import_capture.json").read_text())
    assert {tuple(sorted(r)) for r in recorded} == {tuple(sorted(r)) for r in lines}
    assert [r["n"] for r in recorded] == list(range(1, len(recorded) + 1))


@pytest.mark.source("pve-common", "src/PVE/Tools.pm", "dump_logfile_by_filehandle", "l.790-795")
def test_an_empty_log_reads_no_content(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    reply = api.call("GET", f"/nodes/pve1/tasks/{upid}/log")
    assert reply.body == {"data": [{"n": 1, "t": "no content"}], "total": 1}


@pytest.mark.source(
    "pve-manager",
    "PVE/API2/Tasks.pm",
    "read_task_status; read_task_log",
    "l.515-517; l.396-397, l.442",
)
def test_unknown_and_malformed_upids(api: Api) -> None:
    reply = api.call("GET", f"/nodes/pve3/tasks/{UNKNOWN}/status")
    assert (reply.status, reply.reason) == (400, "Parameter verification failed.")
    assert reply.body["errors"] == {"upid": "no such task"}
    reply = api.call("GET", f"/nodes/pve3/tasks/{UNKNOWN}/log")
    assert reply.body == {
        "data": [{"n": 1, "t": "unable to open file - No such file or directory"}],
        "total": 1,
    }
    for what in ("status", "log"):
        reply = api.call("GET", f"/nodes/pve1/tasks/garbage/{what}")
        assert reply.status == 400
        assert reply.body["errors"] == {"upid": "unable to parse worker upid"}
    # A UPID of another node is unknown where it is asked.
    upid = _finished_task(api)
    reply = api.call("GET", f"/nodes/pve2/tasks/{upid}/status")
    assert reply.body["errors"] == {"upid": "no such task"}


@pytest.mark.source("pve-manager", "PVE/API2/Tasks.pm", "read_task_log", "l.409-412")
def test_download_with_start_or_limit(api: Api) -> None:
    upid = _finished_task(api)
    reply = api.call("GET", f"/nodes/pve1/tasks/{upid}/log", download=1, limit=5)
    assert (reply.status, reply.reason) == (
        500,
        "'download' cannot be used together with 'start' or 'limit' parameters",
    )


@pytest.mark.source("pve-manager", "PVE/API2/Tasks.pm", "read_task_status", "l.527-544")
def test_status_of_a_token_task(api: Api) -> None:
    upid = _finished_task(api)
    status = api.get(f"/nodes/pve1/tasks/{upid}/status")
    assert (status["user"], status["tokenid"]) == ("root@pam", "pvetool")
    assert status["status"] == "stopped" and status["exitstatus"] == "OK"
    assert "endtime" not in status


@pytest.mark.source("pve-manager", "PVE/API2/Tasks.pm", "node_tasks", "l.202-203, l.255")
def test_the_node_task_list_counts_total_and_limit_0_lists_nothing(api: Api) -> None:
    for vmid, target in ((110, "pve2"), (201, "pve2")):
        api.wait_task(
            api.post(
                f"/nodes/pve1/{'qemu' if vmid == 110 else 'lxc'}/{vmid}/migrate",
                target=target,
                **({"online": 1} if vmid == 110 else {}),
            )
        )
    everything = api.call("GET", "/nodes/pve1/tasks", limit=1000).body
    assert everything["total"] == len(everything["data"]) == 2
    none = api.call("GET", "/nodes/pve1/tasks", limit=0).body
    assert none == {"data": [], "total": 2}
    empty = api.call("GET", "/nodes/pve3/tasks").body
    assert empty == {"data": []}  # total 0 is left out (HTTPServer.pm rest_handler l.208)


@pytest.mark.source("pve-manager", "PVE/API2/Tasks.pm", "stop_task", "l.314-326")
def test_stopping_another_users_task_needs_sys_modify(api: Api, ops: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    reply = ops.call("DELETE", f"/nodes/pve1/tasks/{upid}")
    assert (reply.status, reply.reason) == (
        403,
        "Permission check failed (/nodes/pve1, Sys.Modify)",
    )


@pytest.mark.source(
    "pve-common", "src/PVE/RESTEnvironment.pm", "active_workers", "l.312-324, l.388-394"
)
def test_cluster_tasks_keep_25_rows_per_node(api: Api) -> None:
    for _ in range(14):
        api.wait_task(api.post("/nodes/pve1/qemu/303/status/start"))
        api.wait_task(api.post("/nodes/pve1/qemu/303/status/shutdown"))
    running = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    rows = api.get("/cluster/tasks")
    pve1 = [r for r in rows if r["node"] == "pve1"]
    assert len(pve1) == 25
    assert pve1[0]["upid"] == running and "pid" in pve1[0]
    assert all("pstart" not in r for r in rows)
    assert all("pid" not in r for r in pve1[1:])


@pytest.mark.source("pve-manager", "PVE/API2/Cluster.pm", "tasks", "l.755-766")
def test_cluster_tasks_without_sys_audit(api: Api, ops: Api, probe: Emulator) -> None:
    upid = ops.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    ops.wait_task(upid)
    # A token's own rows have user "ops@pve": never equal to "ops@pve!t".
    assert ops.get("/cluster/tasks") == []
    user = ticket_api(probe, "ops@pve", "probe-ops-password")
    (row,) = [r for r in user.get("/cluster/tasks") if r["upid"] == upid]
    assert (row["user"], row["tokenid"]) == ("ops@pve", "t")
    assert any(r["upid"] == upid for r in api.get("/cluster/tasks"))
