"""Faults during a drain, end to end. Each one ends with every guest on exactly one node (the
fixture checks it), the report naming each failure, and the documented exit code.

`pvetool drain` runs in this process on the stepped clock (`inprocess.py`); faults are injected
through the emulator's Python API at the first step of the clock after pvetool printed that its
first migration started (before, a separate process was read until that line, and the fault
came whenever this process got there).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lab import Cluster, checked, guests_on, make_cluster


@pytest.fixture()
def fast_lab(tmp_path: Path) -> Iterator[Cluster]:
    with checked(make_cluster(tmp_path)) as cluster:
        yield cluster


def report_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def moves_by_vmid(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {m["vmid"]: m for m in data["moves"]}


def drain_with(
    lab: Cluster,
    tmp: Path,
    inject: Callable[[str], None],
    *extra: str,
    node: str = "pve1",
    env: dict[str, str] | None = None,
) -> tuple[int, str, dict[str, Any]]:
    """Run a drain, call `inject(first_started_line)` once the first migration started."""
    assert lab.stepped is not None
    stepped = lab.stepped
    report = tmp / "report.json"

    def started() -> bool:
        return stepped.line_with(" started ") is not None

    def act() -> None:
        line = stepped.line_with(" started ")
        assert line is not None
        inject(line)

    with stepped.once(started, act) as fired:
        r = lab.pvetool(
            "drain",
            node,
            "--yes",
            "--with-local-disks",
            "--report",
            str(report),
            *extra,
            env=env,
        )
    assert fired, "no migration started: " + r.out + r.err
    assert report.exists(), r.out + r.err
    return r.code, r.out, report_of(report)


@pytest.mark.emulator_only
def test_503_burst(fast_lab: Cluster, tmp_path: Path) -> None:
    code, out, data = drain_with(
        fast_lab, tmp_path, lambda _: fast_lab.emu.fail_requests(8, status=503)
    )
    assert code == 0, out
    assert data["summary"]["moved"] == 6
    assert set(guests_on(fast_lab.emu, "pve1")) == {900}


@pytest.mark.emulator_only
def test_api_host_failover(tmp_path: Path) -> None:
    with checked(make_cluster(tmp_path, api_hosts=2)) as lab:
        code, out, data = drain_with(lab, tmp_path, lambda _: lab.emu.close_listener(0))
        assert code == 0, out
        assert data["summary"]["moved"] == 6


@pytest.mark.emulator_only
def test_a_migration_task_that_fails(fast_lab: Cluster, tmp_path: Path) -> None:
    with fast_lab.emu.locked() as c:
        c.fail_next_migration(110, 40, "migration failed (injected)")
    code, out, data = drain_with(fast_lab, tmp_path, lambda _: None, "--on-failure", "continue")
    assert code == 1, out
    failed = moves_by_vmid(data)[110]
    assert failed["status"] == "failed"
    assert "migration failed (injected)" in failed["reason"] or "problems" in failed["reason"]
    assert fast_lab.node_of(110) == "pve1"
    assert data["summary"]["moved"] == 5
    assert "failed" in out and "110" in out


@pytest.mark.emulator_only
def test_a_task_that_hangs_past_its_timeout(fast_lab: Cluster, tmp_path: Path) -> None:
    with fast_lab.emu.locked() as c:
        c.hang_next_migration(113)
    code, out, data = drain_with(
        fast_lab, tmp_path, lambda _: None, "--on-failure", "continue", "--task-timeout", "4s"
    )
    assert code == 1, out
    hung = moves_by_vmid(data)[113]
    assert hung["status"] == "failed" and hung["still_running"] is True
    assert "still running and was not stopped" in hung["reason"]
    assert "guest 113 is on pve1 (locked: migrate)" in hung["reason"]
    assert hung["upid"] and ":qmigrate:113:" in hung["upid"]
    # The operator stops the hung task (as PVE's GUI would); the guest stays on its node.
    with fast_lab.emu.locked() as c:
        c.stop_task(c.task(hung["upid"]))
    fast_lab.finish()
    assert fast_lab.node_of(113) == "pve1"


@pytest.mark.emulator_only
def test_a_target_going_offline_mid_drain_is_replanned(fast_lab: Cluster, tmp_path: Path) -> None:
    # Drain pve2 to pve3 and pve1; pve3 dies as soon as the first migration starts.
    def pve3_dies(_line: str) -> None:
        with fast_lab.emu.locked() as c:
            c.set_node_online("pve3", False)

    code, out, data = drain_with(
        fast_lab, tmp_path, pve3_dies, "--on-failure", "continue", node="pve2"
    )
    moves = data["moves"]
    assert all(
        m["target"] != "pve3" or m["status"] != "moved" or m["task_duration_s"] for m in moves
    )
    replanned = [m for m in moves if m["attempts"]]
    assert replanned, out
    for m in replanned:
        assert any("pve3" in a["target"] for a in m["attempts"])
        if m["status"] == "moved":
            assert m["target"] == "pve1" and m["original_target"] == "pve3"
        else:
            assert m["status"] == "failed" and m["reason"]
    assert code == (0 if all(m["status"] == "moved" for m in moves) and not data["blocked"] else 1)
    with fast_lab.emu.locked() as c:
        c.set_node_online("pve3", True)


@pytest.mark.emulator_only
def test_a_guest_locked_by_a_backup_fails_with_the_lock(fast_lab: Cluster, tmp_path: Path) -> None:
    locked: list[int] = []

    def backup_starts(line: str) -> None:
        started = int(line.split(" started ")[1].split()[0])
        vmid = next(v for v in (113, 110, 101, 200) if v != started)
        with fast_lab.emu.locked() as c:
            c.set_lock(vmid, "backup")
        locked.append(vmid)

    code, out, data = drain_with(
        fast_lab, tmp_path, backup_starts, "--on-failure", "continue", "--max-parallel", "1"
    )
    assert code == 1, out
    m = moves_by_vmid(data)[locked[0]]
    assert m["status"] == "failed" and "locked (backup)" in m["reason"]
    assert fast_lab.node_of(locked[0]) == "pve1"
    with fast_lab.emu.locked() as c:
        c.set_lock(locked[0], None)


@pytest.mark.parametrize("auth", ["password"])
@pytest.mark.emulator_only
def test_a_ticket_expiring_mid_drain(fast_lab: Cluster, tmp_path: Path, auth: str) -> None:
    env = {k: v for k, v in fast_lab.env.items() if k != "PVETOOL_TOKEN"}
    env["PVETOOL_USER"] = "root@pam"
    env["PVETOOL_PASSWORD"] = "lab-root-password"
    code, out, data = drain_with(
        fast_lab, tmp_path, lambda _: fast_lab.emu.expire_tickets(), env=env
    )
    assert code == 0, out
    assert data["summary"]["moved"] == 6
    assert "lab-root-password" not in out
