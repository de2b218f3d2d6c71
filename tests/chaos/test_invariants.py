"""The campaign's checks can fail: each invariant, fed evidence that breaks it, says so.

Synthetic evidence (a three-node cluster, a drain of pve1 that moved guests 101 and 102 to
pve2) is correct as built; each test breaks one thing and expects exactly that invariant.
No emulator, no pvetool: these run in milliseconds.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.chaos.invariants import check
from tests.chaos.schedule import ClusterChoice, Trial
from tests.chaos.trial import Evidence, PvetoolRun, Reference, _over_committed

GIB = 2**30
SECRET = "CHAOSTOKEN-0123456789abcdef"
PASSWORD = "CHAOSPASSWORD-fedcba9876543210"
USER = "root@pam!chaos"


def _task(
    upid: str,
    vmid: int,
    source: str,
    target: str,
    *,
    ok: bool = True,
    start: int = 1000,
    end: int | None = 1020,
    ttype: str = "qmigrate",
) -> dict[str, Any]:
    return {
        "upid": upid,
        "type": ttype,
        "vmid": vmid,
        "status": "running" if end is None else "stopped",
        "exitstatus": None if end is None else ("OK" if ok else "migration aborted"),
        "starttime": start,
        "endtime": end,
        "user": USER,
        "stats": {"source": source, "target": target},
    }


def _state(
    placement: dict[int, str], tasks: list[dict[str, Any]], now: float = 1100.0
) -> dict[str, Any]:
    nodes = {
        n: {
            "online": True,
            "memory_total": 64 * GIB,
            "memory_committed": 8 * GIB * sum(1 for v in placement.values() if v == n),
            "guests": sorted(v for v, node in placement.items() if node == n),
        }
        for n in ("pve1", "pve2", "pve3")
    }
    guests = {
        str(v): {
            "node": n,
            "type": "qemu",
            "status": "running",
            "lock": None,
            "memory": 8 * GIB,
            "ha_state": None,
        }
        for v, n in placement.items()
    }
    return {"time": now, "quorate": True, "nodes": nodes, "guests": guests, "tasks": tasks}


def _move(vmid: int, status: str = "moved", node: str = "pve2", **kw: Any) -> dict[str, Any]:
    move = {
        "move": f"s1:{vmid}",
        "vmid": vmid,
        "source": "pve1",
        "target": "pve2",
        "status": status,
        "reason": "",
        "node": node,
        "upid": f"UPID:{vmid}",
        "ha_upid": None,
        "still_running": False,
        "attempts": [],
    }
    move.update(kw)
    return move


def evidence() -> Evidence:
    """A correct drain of pve1 (101, 102 -> pve2; 103 stays on pve3)."""
    choice = ClusterChoice("lab-drain", 1, "lab", None, 50.0, "token", False, SECRET, PASSWORD)
    trial = Trial(choice, "drain", ("drain", "pve1"), ("pve1",), 8.0, 2.5, (), ())
    initial = _state({101: "pve1", 102: "pve1", 103: "pve3"}, [])
    tasks = [
        _task("UPID:101", 101, "pve1", "pve2"),
        _task("UPID:102", 102, "pve1", "pve2", start=1005, end=1030),
    ]
    final = _state({101: "pve2", 102: "pve2", 103: "pve3"}, tasks, now=1100.0)
    report = {
        "exit_code": 0,
        "moves": [_move(101), _move(102)],
        "blocked": [],
        "hooks": [],
        "node_waits": [],
        "interrupted": False,
    }
    run = PvetoolRun(0, ["drain", "pve1", "--yes"], False, 0.0, ended_s=2.0, code=0)
    run.stdout = "summary: 2 moved, 0 skipped, 0 failed, 0 blocked\n"
    run.report = report
    run.tasks_after = {t["upid"] for t in tasks}
    run.exit_state = copy.deepcopy(final)
    ev = Evidence(
        trial,
        initial,
        Reference([(101, "pve1", "pve2"), (102, "pve1", "pve2")], [], 0),
        runs=[run],
        final=final,
        resources=[{"vmid": v, "node": g["node"]} for v, g in final["guests"].items()],
        secrets=[SECRET, PASSWORD],
        pvetool_user=USER,
        memory_samples=10,
    )
    ev.texts = [("run 0 stdout", run.stdout), ("r0.json", str(report))]
    return ev


def invariants(ev: Evidence) -> set[str]:
    return {v.invariant for v in check(ev)}


def test_the_correct_evidence_holds_every_invariant() -> None:
    assert check(evidence()) == []


def test_a_guest_listed_twice_or_lost() -> None:
    ev = evidence()
    ev.resources.append({"vmid": "101", "node": "pve3"})
    assert invariants(ev) == {"exactly-once"}
    ev = evidence()
    del ev.final["guests"]["103"]
    ev.final["nodes"]["pve3"]["guests"] = []
    ev.resources = [r for r in ev.resources if r["vmid"] != "103"]
    assert invariants(ev) == {"exactly-once"}


def test_a_guest_migrated_twice_for_one_intent() -> None:
    ev = evidence()
    ev.final["tasks"].append(_task("UPID:101b", 101, "pve2", "pve3", start=1040, end=1060))
    ev.final["tasks"].append(_task("UPID:101c", 101, "pve3", "pve2", start=1061, end=1070))
    assert invariants(ev) == {"no-double-migration"}


def test_a_guest_of_another_node_migrated_by_a_drain() -> None:
    ev = evidence()
    ev.final["tasks"].append(_task("UPID:103", 103, "pve3", "pve2", start=1040, end=1060))
    ev.final["tasks"].append(_task("UPID:103b", 103, "pve2", "pve3", start=1061, end=1070))
    assert invariants(ev) == {"no-double-migration"}


def test_a_second_ha_request_for_one_intent() -> None:
    ev = evidence()
    for i in (1, 2):
        ev.final["tasks"].append(
            _task(f"UPID:ha{i}", 101, "pve1", "pve2", start=990 + i, end=990 + i, ttype="hamigrate")
        )
    assert invariants(ev) == {"no-double-migration"}


def test_an_overcommitted_node_is_seen() -> None:
    state = _state({101: "pve2", 102: "pve2"}, [])
    state["nodes"]["pve2"]["memory_committed"] = 60 * GIB
    assert _over_committed(state) == {}
    state["tasks"].append(_task("UPID:x", 103, "pve1", "pve2", end=None))
    state["guests"]["103"] = dict(state["guests"]["101"], node="pve1")
    assert set(_over_committed(state)) == {"pve2"}
    ev = evidence()
    ev.memory_violations.append("1.00s pve2 holds 68.0 GiB (running 60.0 + incoming 8.0) of 64")
    assert invariants(ev) == {"memory"}


def test_a_move_reported_but_not_made() -> None:
    ev = evidence()
    ev.final = _state({101: "pve1", 102: "pve2", 103: "pve3"}, ev.final["tasks"][1:])
    ev.resources = [{"vmid": v, "node": g["node"]} for v, g in ev.final["guests"].items()]
    # ... and exit 0 with a planned guest still on the drained node.
    assert invariants(ev) == {"report-truth", "exit-code"}


def test_a_failure_reported_for_a_guest_that_moved() -> None:
    ev = evidence()
    assert ev.final_run is not None and ev.final_run.report is not None
    ev.final_run.report["exit_code"] = 1
    ev.final_run.code = 1
    ev.final_run.report["moves"][1] = _move(
        102, "failed", node="pve1", still_running=True, reason="lost track of task"
    )
    assert invariants(ev) == {"report-truth"}


def test_a_task_that_really_outlived_the_timeout_is_no_lie() -> None:
    ev = evidence()
    assert ev.final_run is not None and ev.final_run.report is not None
    ev.final_run.report["exit_code"] = 1
    ev.final_run.code = 1
    ev.final_run.report["moves"][1] = _move(
        102, "failed", node="pve1", still_running=True, reason="did not finish within 8 s"
    )
    # 8 s of real time at x50 = 400 emulated seconds: this task ran 500.
    ev.final["tasks"][1]["endtime"] = 1505
    assert check(ev) == []


def test_a_later_move_of_a_guest_whose_migration_still_ran_may_find_it_there() -> None:
    """A drain move left running past the timeout, then its "return home" move not started:
    the guest may end on the drain's target only if that task really outlived the timeout."""
    ev = evidence()
    assert ev.final_run is not None and ev.final_run.report is not None
    ev.final_run.report["exit_code"] = 1
    ev.final_run.code = 1
    ev.final_run.report["moves"][1] = _move(
        102, "failed", node="pve1", still_running=True, reason="did not finish within 8 s"
    )
    home = _move(102, "not-started", node="pve1", source="pve2", target="pve1")
    ev.final_run.report["moves"].append({**home, "move": "s5:102"})
    assert invariants(ev) == {"report-truth"}  # the task ended in time: the report lied
    ev.final["tasks"][1]["endtime"] = 1505  # it really ran past the timeout
    assert check(ev) == []


def test_exit_codes_that_contradict_the_outcome() -> None:
    ev = evidence()
    assert ev.final_run is not None and ev.final_run.report is not None
    ev.final_run.report["exit_code"] = 1
    assert invariants(ev) == {"exit-code"}
    ev = evidence()
    assert ev.final_run is not None and ev.final_run.report is not None
    ev.final_run.report["blocked"] = [{"vmid": 103, "reason": "locked", "finding": "X"}]
    assert invariants(ev) == {"exit-code"}
    ev = evidence()
    assert ev.final_run is not None
    ev.final_run.report = None
    assert invariants(ev) == {"exit-code"}


def test_exit_0_with_a_planned_guest_left_on_the_drained_node() -> None:
    ev = evidence()
    assert ev.reference is not None
    ev.reference.moves.append((103, "pve1", "pve2"))
    ev.final = _state({101: "pve2", 102: "pve2", 103: "pve1"}, ev.final["tasks"])
    ev.initial["guests"]["103"]["node"] = "pve1"
    ev.resources = [{"vmid": v, "node": g["node"]} for v, g in ev.final["guests"].items()]
    assert invariants(ev) == {"exit-code"}


def test_a_lock_or_a_task_left_behind() -> None:
    ev = evidence()
    ev.final["guests"]["101"]["lock"] = "migrate"
    assert invariants(ev) == {"no-leftovers"}
    ev = evidence()
    ev.held_on_purpose[101] = "backup"
    ev.final["guests"]["101"]["lock"] = "backup"
    assert check(ev) == []
    ev.cluster_tasks = [{"upid": "UPID:z", "status": "running"}]
    assert invariants(ev) == {"no-leftovers"}


def test_a_lock_pve_left_is_accepted_only_when_the_report_names_it_and_its_fix() -> None:
    named = "VM 101 is on pve2, locked (migrate): run 'qm unlock 101' on pve2"

    def left_locked(reason: str, *, lock: str = "migrate", node: str = "pve2") -> Evidence:
        ev = evidence()
        ev.final["guests"]["101"]["lock"] = lock
        assert ev.runs[0].report is not None
        ev.runs[0].report["moves"][0] = _move(101, "failed", node=node, reason=reason)
        ev.runs[0].report["exit_code"] = 1
        ev.runs[0].code = 1
        return ev

    task = "Migration of VM 101 failed: failed to clear migrate lock: exit code 255"
    assert check(left_locked(f"{task}; {named}")) == []
    ev = left_locked(f"{task}; {named}")  # the way back was never started: still named
    assert ev.runs[0].report is not None
    ev.runs[0].report["moves"].append(_move(101, "not-started", reason="depends on s1:101"))
    assert check(ev) == []
    assert invariants(left_locked(task)) == {"no-leftovers"}  # the lock is not named
    # named, but not with this lock, node, command or guest
    assert invariants(left_locked(f"{task}; {named}", lock="backup")) == {"no-leftovers"}
    wrong_node = named.replace("on pve2", "on pve3")
    assert invariants(left_locked(f"{task}; {wrong_node}")) == {"no-leftovers"}
    wrong_cli = named.replace("'qm unlock", "'pct unlock")
    assert invariants(left_locked(f"{task}; {wrong_cli}")) == {"no-leftovers"}
    other = named.replace("101", "102")
    assert invariants(left_locked(f"{task}; {other}")) == {"no-leftovers"}
    # a report that calls the locked guest moved never excuses its lock
    ev = evidence()
    ev.final["guests"]["101"]["lock"] = "migrate"
    assert ev.runs[0].report is not None
    ev.runs[0].report["moves"][0]["reason"] = named
    assert "no-leftovers" in invariants(ev)


@pytest.mark.parametrize("text", ["Traceback (most recent call last):", "internal error: KeyError"])
def test_a_crash_in_the_output(text: str) -> None:
    ev = evidence()
    assert ev.final_run is not None
    ev.final_run.stderr = text
    assert invariants(ev) == {"clean-output"}


@pytest.mark.parametrize(
    "leak", [SECRET, PASSWORD, "PVEAuthCookie=PVE:root@pam:6B114945::c2lnbmF0dXJl"]
)
def test_a_secret_in_a_journal(leak: str) -> None:
    ev = evidence()
    ev.texts.append(("state/runs/x.jsonl", f'{{"output": "{leak}"}}'))
    assert invariants(ev) == {"no-secret"}


def test_emulator_tracebacks_except_the_known_drop_noise() -> None:
    noise = (
        "Error on request:\nTraceback (most recent call last):\n"
        '  File "serving.py", line 374, in run_wsgi\n    execute(self.server.app)\n'
        "AssertionError: write() before start_response\n"
    )
    ev = evidence()
    ev.emulator_stderr = noise * 2
    assert check(ev) == []
    ev.emulator_stderr = noise + "Traceback (most recent call last):\nKeyError: 'x'\n"
    assert invariants(ev) == {"harness"}


def test_a_hung_pvetool_run() -> None:
    ev = evidence()
    ev.runs.append(PvetoolRun(1, ["drain"], True, 3.0, hung=True))
    assert "terminates" in invariants(ev)
