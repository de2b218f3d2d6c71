"""D10, D11: when the lock appears and the config moves (qemu-server `QemuMigrate.pm`,
pve-container `LXC/Migrate.pm`), and how a container migration checks, shuts down and fails."""

from __future__ import annotations

import pytest

from pvetool.emulator.server import Emulator
from tests.conformance.conftest import TS, run_task, strip_ts
from tests.emu import Api


def _samples(api: Api, upid: str, vmid: int, step_s: float = 0.1) -> list[tuple[str, str, str]]:
    """(node, lock, task status) of the guest every `step_s` emulated seconds."""
    out = []
    while True:
        st = api.task_status(upid)["status"]
        g = api.guest(vmid)
        out.append((g["node"], g.get("lock", ""), st))
        if st == "stopped":
            return out
        api.advance(step_s)


@pytest.mark.source(
    "qemu-server",
    "src/PVE/QemuMigrate.pm",
    "phase1; phase3_cleanup",
    "l.831-837; l.1716-1721, l.1896-1904",
)
def test_the_guest_is_on_the_target_locked_before_the_task_ends(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    samples = _samples(api, upid, 110)
    assert samples[0] == ("pve1", "", "running")  # forked, prepare: no lock yet
    assert ("pve2", "migrate", "running") in samples
    assert samples[-1] == ("pve2", "", "stopped")
    lines = strip_ts(api.task_log(upid))
    assert lines.index("starting migration of VM 110 to node 'pve2' (10.0.0.12)") > 0


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "prepare", "l.183-365")
def test_a_failure_in_prepare_never_shows_a_lock(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.set_node_online("pve3", False)
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve3", online=1)
    samples = _samples(api, upid, 110)
    assert all(lock == "" for _, lock, _ in samples)
    assert api.task_status(upid)["exitstatus"] == "migration aborted"
    lines = strip_ts(api.task_log(upid))
    assert not any(x.startswith("starting migration") for x in lines)
    assert lines[-2].endswith("): Can't connect to destination address using public key")


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "phase3_cleanup", "l.1901-1903")
def test_a_failed_unlock_leaves_the_guest_locked_on_the_target(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.faults.unlock_fails[110] = True
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration problems"
    lines = strip_ts(log)
    assert "ERROR: failed to clear migrate lock: exit code 255" in lines
    assert any(
        x.startswith("# /usr/bin/ssh -e none -o 'BatchMode=yes'")
        and x.endswith("root@10.0.0.12 qm unlock 110")
        for x in lines
    )
    assert lines[-2].startswith("ERROR: migration finished with problems (duration ")
    g = api.guest(110)
    assert (g["node"], g["lock"]) == ("pve2", "migrate")


@pytest.mark.source(
    "pve-manager",
    "PVE/API2Tools.pm; PVE/Service/pvestatd.pm",
    "extract_vm_stats; update loop",
    "l.81-119; l.885",
)
def test_cluster_resources_show_the_run_state_pvestatd_last_sent(api: Api) -> None:
    api.wait_task(api.post("/nodes/pve1/qemu/110/status/shutdown"), step_s=0.1)
    # status/current asks the node (vmstatus): stopped at once; /cluster/resources shows
    # what pvestatd sent last: running, until the node's next broadcast (within 10 s).
    assert api.get("/nodes/pve1/qemu/110/status/current")["status"] == "stopped"
    assert api.guest(110)["status"] == "running"
    api.advance(10)
    assert api.guest(110)["status"] == "stopped"


@pytest.mark.source(
    "pve-container",
    "src/PVE/LXC/Migrate.pm; src/PVE/LXC.pm",
    "prepare; vm_stop",
    "l.164-173; l.3238-3270",
)
def test_a_container_that_does_not_stop_in_time(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.faults.shutdown_s[200] = 30.0
    upid = api.post("/nodes/pve1/lxc/200/migrate", target="pve2", restart=1, timeout=5)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration aborted"
    lines = strip_ts(log)
    i = lines.index("shutdown CT 200")
    raw = "command 'lxc-stop -n 200 --nokill --timeout 5' failed: exit code 1"
    assert lines[i + 1] == raw and log[i + 1] == raw  # a warn line: no time stamp
    assert lines[-2].startswith("ERROR: migration aborted (duration 00:00:1")
    assert lines[-2].endswith("): container did not stop")
    assert not TS.match(log[-1]) and log[-1] == "TASK ERROR: migration aborted"
    g = api.guest(200)
    assert g["node"] == "pve1" and "lock" not in g
    assert probe.state()["guests"]["200"]["status"] == "running"


@pytest.mark.source("pve-container", "src/PVE/LXC/Migrate.pm", "prepare", "l.36-176")
def test_container_checks_come_before_the_shutdown(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.set_node_online("pve2", False)
    upid = api.post("/nodes/pve1/lxc/200/migrate", target="pve2", restart=1)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration aborted"
    assert not any(x.startswith("shutdown CT") for x in strip_ts(log))
    assert probe.state()["guests"]["200"]["status"] == "running"


@pytest.mark.source("pve-container", "src/PVE/LXC/Migrate.pm", "prepare", "l.51-53")
def test_online_on_a_running_container(api: Api) -> None:
    upid = api.post("/nodes/pve1/lxc/200/migrate", target="pve2", restart=1, online=1)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration aborted"
    assert strip_ts(log)[-2] == (
        "ERROR: migration aborted (duration 00:00:00): lxc live migration is currently not "
        "implemented"
    )


@pytest.mark.source(
    "pve-container",
    "src/PVE/LXC/Migrate.pm; src/PVE/API2/LXC.pm",
    "prepare; migrate_vm",
    "l.48; l.1671-1753",
)
def test_a_locked_container_fails_in_the_task(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.set_lock(201, "backup")
    reply = api.call("POST", "/nodes/pve1/lxc/201/migrate", target="pve2")
    assert reply.status == 200  # the container API has no lock check
    status, log = run_task(api, reply.body["data"])
    assert status["exitstatus"] == "migration aborted"
    assert strip_ts(log)[-2].endswith("): CT is locked (backup)")


@pytest.mark.source(
    "pve-container", "src/PVE/LXC/Migrate.pm", "phase1; final_cleanup", "l.467-475; l.519-564"
)
def test_a_restart_migration_moves_the_config_then_starts_the_container(
    api: Api, probe: Emulator
) -> None:
    upid = api.post("/nodes/pve1/lxc/200/migrate", target="pve2", restart=1)
    seen = set()
    while api.task_status(upid)["status"] == "running":
        g = api.guest(200)
        seen.add((g["node"], g.get("lock", ""), probe.state()["guests"]["200"]["status"]))
        api.advance(0.2)
    assert ("pve2", "migrate", "stopped") in seen
    lines = strip_ts(api.task_log(upid))
    i = lines.index("start container on target node")
    assert lines[i + 1].startswith(
        "# /usr/bin/ssh -e none -o 'BatchMode=yes' -o 'HostKeyAlias=pve2'"
    )
    assert lines[i + 1].endswith("root@10.0.0.12 pct start 200")
    assert lines.index("start final cleanup") < i


@pytest.mark.source(
    "pve-guest-common; pve-container",
    "src/PVE/AbstractMigrate.pm; src/PVE/LXC/Migrate.pm",
    "migrate; phase1_cleanup, final_cleanup",
    "l.176-189; l.478-534",
)
def test_a_failure_in_phase_one_after_the_shutdown(api: Api, probe: Emulator) -> None:
    with probe.locked() as c:
        c.fail_next_migration(200, 50, "volume copy failed (injected)")
    upid = api.post("/nodes/pve1/lxc/200/migrate", target="pve2", restart=1)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration aborted"
    lines = strip_ts(log)
    i = lines.index("ERROR: volume copy failed (injected)")
    assert lines[i + 1 : i + 5] == [
        "aborting phase 1 - cleanup resources",
        "ERROR: found stale volume copy 'local-lvm:vm-200-disk-0' on node 'pve2'",
        "start final cleanup",
        "start container on source node",
    ]
    assert lines[i + 5].startswith("ERROR: migration aborted (duration ")
    assert lines[i + 5].endswith("): volume copy failed (injected)")
    assert lines.index("shutdown CT 200") < i
    g = api.guest(200)
    assert g["node"] == "pve1" and "lock" not in g
    assert probe.state()["guests"]["200"]["status"] == "running"
