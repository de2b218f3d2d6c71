"""`pvetool status` and `pvetool migrate` end to end against the emulated lab cluster.

pvetool runs in this process on the stepped clock (`inprocess.py`). The fault tests inject their
fault at the first step of the clock at which the migration runs: pvetool is then following it
(before, a separate pvetool process ran against a clock slowed to 5x so that this process could
catch the migration running).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.e2e.lab import Cluster


@pytest.mark.emulator_only
def test_status_table_and_json(lab: Cluster) -> None:
    r = lab.pvetool("status")
    assert r.code == 0, r.err
    assert "cluster lab: quorate, 3/3 nodes online, 20 guests" in r.out
    for node in ("pve1", "pve2", "pve3"):
        assert f"Guests on {node}" in r.out
    r = lab.pvetool("status", "-o", "json")
    data = json.loads(r.out)
    assert data["quorate"] is True and data["nodes_total"] == 3
    assert {n["node"]: n["version"] for n in data["nodes"]} == {
        "pve1": "9.2.4",
        "pve2": "9.2.4",
        "pve3": "9.2.4",
    }
    assert {g["vmid"] for g in data["guests"]} == set(map(int, lab.emu.state()["guests"]))
    with lab.emu.locked() as c:
        c.set_node_online("pve3", False)
    data = json.loads(lab.pvetool("status", "-o", "json").out)
    assert data["nodes_online"] == 2
    assert next(n for n in data["nodes"] if n["node"] == "pve3")["online"] is False
    r = lab.pvetool("status", "-o", "yaml")
    assert r.code == 0 and "quorate: true" in r.out


@pytest.mark.parametrize(
    ("vmid", "target", "extra", "kind"),
    [
        (110, "pve2", [], "running VM"),
        (116, "pve1", [], "stopped VM"),
        (200, "pve3", [], "container"),
        (101, "pve3", [], "HA VM"),
        (111, "pve2", ["--with-local-disks", "--target-storage", "local-lvm:ceph"], "local disk"),
    ],
)
@pytest.mark.emulator_only
def test_migrate_succeeds(
    lab: Cluster, vmid: int, target: str, extra: list[str], kind: str
) -> None:
    before = lab.emu.state()["guests"][str(vmid)]
    r = lab.pvetool("migrate", str(vmid), "--to", target, *extra)
    assert r.code == 0, (kind, r.err)
    assert f"migrated {vmid} {before['node']} -> {target}" in r.out
    after = lab.emu.state()["guests"][str(vmid)]
    assert (after["node"], after["status"], after["lock"]) == (target, before["status"], None)


# The planner's checks refuse these before anything is sent to PVE (`pvetool migrate` is a
# one-move plan), so the reason is the check's finding, naming what PVE would refuse.
@pytest.mark.parametrize(
    ("vmid", "target", "reason"),
    [
        (114, "pve1", "PVT-LOCAL-DEVICE: 114 (gpu1): it uses host-bound devices: hostpci0"),
        (111, "pve2", "PVT-LOCAL-DISK: 111 (ci-runner): it runs with local disks (scsi0"),
        (115, "pve1", "PVT-LOCKED: 115 (legacy1): it is locked (backup)"),
        (113, "pve3", "PVT-BRIDGE: 113 (fw1) cannot move to pve3: bridge vmbr1"),
    ],
)
@pytest.mark.emulator_only
def test_migrate_refused_with_pves_reason(
    lab: Cluster, vmid: int, target: str, reason: str
) -> None:
    source = lab.node_of(vmid)
    r = lab.pvetool("migrate", str(vmid), "--to", target)
    assert r.code == 2  # refused before starting (issue 13)
    assert reason in r.err
    assert "Traceback" not in r.err
    assert lab.node_of(vmid) == source


@pytest.mark.emulator_only
def test_migrate_to_an_offline_target(lab: Cluster) -> None:
    with lab.emu.locked() as c:
        c.set_node_online("pve3", False)
    r = lab.pvetool("migrate", "110", "--to", "pve3")
    assert r.code == 2  # refused before starting (issue 13)
    assert "PVT-OFFLINE" in r.err and "pve3 is offline" in r.err  # checked before PVE is asked
    assert lab.node_of(110) == "pve1"


@pytest.mark.emulator_only
def test_wrong_token_is_one_line_and_exit_2(lab: Cluster) -> None:
    env = dict(lab.env, PVETOOL_TOKEN="root@pam!pvetool=not-the-secret")
    r = lab.pvetool("status", env=env)
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert "Traceback" not in r.err and "not-the-secret" not in r.err


def _migration_running(lab: Cluster, vmid: int) -> Callable[[], bool]:
    def running() -> bool:
        return any(
            t["vmid"] == vmid and t["type"] == "qmigrate" and t["status"] == "running"
            for t in lab.emu.state()["tasks"]
        )

    return running


@pytest.mark.emulator_only
def test_503_burst_during_a_migration(lab: Cluster) -> None:
    assert lab.stepped is not None
    burst = lab.stepped.once(
        _migration_running(lab, 110), lambda: lab.emu.fail_requests(4, status=503)
    )
    with burst as fired:
        r = lab.pvetool("migrate", "110", "--to", "pve3")
    assert fired, "the migration was never seen running"
    assert r.code == 0, r.err
    assert lab.node_of(110) == "pve3"
    started = [t for t in lab.emu.state()["tasks"] if t["vmid"] == 110]
    assert len(started) == 1  # never started twice


@pytest.mark.emulator_only
def test_host_failover_during_a_migration(lab: Cluster) -> None:
    assert lab.stepped is not None
    second = lab.emu.add_listener(0)
    lab.env["PVETOOL_HOST"] = f"127.0.0.1:{lab.emu.port},127.0.0.1:{second}"
    first_goes = lab.stepped.once(_migration_running(lab, 110), lambda: lab.emu.close_listener(0))
    with first_goes as fired:
        r = lab.pvetool("migrate", "110", "--to", "pve3")
    assert fired, "the migration was never seen running"
    assert r.code == 0, r.err
    assert lab.node_of(110) == "pve3"
    assert len([t for t in lab.emu.state()["tasks"] if t["vmid"] == 110]) == 1


@pytest.mark.emulator_only
def test_no_wait_prints_the_upid(lab: Cluster) -> None:
    r = lab.pvetool("migrate", "110", "--to", "pve2", "--no-wait")
    assert r.code == 0
    assert r.out.startswith("started: UPID:pve1:") and ":qmigrate:110:" in r.out


@pytest.mark.emulator_only
def test_bad_arguments_exit_2(lab: Cluster) -> None:
    r = lab.pvetool("migrate", "110", "--to", "pve2", "--bwlimit", "fast")
    assert r.code == 2 and "expected" in r.err and "Traceback" not in r.err
    r = lab.pvetool("migrate", "99", "--to", "pve2")
    assert r.code == 2
    r = lab.pvetool("migrate", "4242", "--to", "pve2")
    assert r.code == 2 and "no guest 4242" in r.err


@pytest.mark.emulator_only
def test_emulate_runs_against_an_in_process_emulator(lab: Cluster) -> None:
    # `--emulate` starts an emulator of its own, whose clock runs on real time: pvetool waits on
    # this machine's clocks for it.
    r = lab.pvetool("--emulate", "lab", "migrate", "200", "--to", "pve3", env={}, real_time=True)
    assert r.code == 0, r.err
    assert "migrated 200 pve1 -> pve3" in r.out
    r = lab.pvetool("--emulate", "no/such/file.yaml", "status", env={}, real_time=True)
    assert r.code == 2 and "Traceback" not in r.err
