"""Contract: `GET /nodes/{node}/tasks` filters and labels tasks as pve-manager does.

Source: pve-manager `PVE/API2/Tasks.pm` (`node_tasks`: `$filter_task`, the `active` list first
with `status => 'RUNNING'`, then the archive) and pve-common `PVE::Tools::
upid_normalize_status_type`. The portable end-to-end tests read migrations from these lists on
the emulator and on real PVE alike (tests/e2e/test_portable_resume.py), so the two must agree.
The clock stands still here: a started migration stays running until the test advances it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pvetool.emulator.server import Emulator
from tests.emu import Api, start


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    emulator = start("lab", speed=0.0)
    yield emulator
    emulator.stop()


def test_typefilter_is_the_exact_task_type(emu: Emulator) -> None:
    api = Api(emu)
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    api.wait_task(upid)
    rows = api.get("/nodes/pve1/tasks", typefilter="qmigrate", vmid=110)
    assert [r["upid"] for r in rows] == [upid]
    # PVE compares with `ne`: a part of the type matches nothing.
    assert api.get("/nodes/pve1/tasks", typefilter="migrate") == []
    assert api.get("/nodes/pve1/tasks", typefilter="qmigrat") == []


def test_running_tasks_come_first_marked_running_and_count_as_unknown(emu: Emulator) -> None:
    api = Api(emu)
    done = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    api.wait_task(done)
    running = api.post("/nodes/pve1/qemu/113/migrate", target="pve2", online=1)
    assert api.task_status(running)["status"] == "running"

    rows = api.get("/nodes/pve1/tasks", source="all")
    assert rows[0]["upid"] == running
    assert rows[0]["status"] == "RUNNING" and "endtime" not in rows[0]
    assert done in [r["upid"] for r in rows[1:]]
    assert [r["upid"] for r in api.get("/nodes/pve1/tasks", source="active")] == [running]
    assert running not in [r["upid"] for r in api.get("/nodes/pve1/tasks")]  # archive only

    # A running task has no exit status yet: its status type is "unknown", not "ok".
    unknown = api.get("/nodes/pve1/tasks", source="all", statusfilter="unknown")
    assert [r["upid"] for r in unknown] == [running]
    ok = [r["upid"] for r in api.get("/nodes/pve1/tasks", source="all", statusfilter="ok")]
    assert done in ok and running not in ok
    # errors=1 drops only the tasks that ended OK.
    errors = [r["upid"] for r in api.get("/nodes/pve1/tasks", source="all", errors=1)]
    assert running in errors and done not in errors
    api.wait_task(running)


def test_userfilter_matches_part_of_the_user_in_any_case_not_the_token(emu: Emulator) -> None:
    api = Api(emu)  # root@pam!pvetool
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    api.wait_task(upid)
    row = next(r for r in api.get("/nodes/pve1/tasks") if r["upid"] == upid)
    assert (row["user"], row["tokenid"]) == ("root@pam", "pvetool")
    assert [r["upid"] for r in api.get("/nodes/pve1/tasks", userfilter="ROOT@")] == [upid]
    # The user filter looks at the user, not at the token's name.
    assert api.get("/nodes/pve1/tasks", userfilter="pvetool") == []


def test_start_and_limit_page_through_the_matching_tasks(emu: Emulator) -> None:
    api = Api(emu)
    upids = []
    for target in ("pve2", "pve1", "pve2", "pve1"):
        node = api.guest(110)["node"]
        upid = api.post(f"/nodes/{node}/qemu/110/migrate", target=target, online=1)
        api.wait_task(upid)
        upids.append((node, upid))
    pve1 = [u for node, u in upids if node == "pve1"]
    rows = api.get("/nodes/pve1/tasks", vmid=110, typefilter="qmigrate")
    assert len(pve1) == 2 and [r["upid"] for r in rows] == list(reversed(pve1))
    assert api.get("/nodes/pve1/tasks", vmid=110, typefilter="qmigrate", limit=1) == rows[:1]
    assert api.get("/nodes/pve1/tasks", vmid=110, typefilter="qmigrate", start=1) == rows[1:]
