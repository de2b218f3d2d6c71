"""The target lost after the config moved (pve-guest-common `AbstractMigrate.pm` `migrate`,
qemu-server `QemuMigrate.pm` `phase3_cleanup`, pve-container `LXC/Migrate.pm` `final_cleanup`):
each cleanup runs in its own eval, so the task ends "migration finished with problems" with the
guest on the target, locked when `qm unlock`/`pct unlock` could not reach it."""

from __future__ import annotations

import pytest

from pvetool.emulator.server import Emulator
from tests.conformance.conftest import run_task, strip_ts
from tests.emu import Api

SSH = "/usr/bin/ssh -e none -o 'BatchMode=yes'"


def _until_config_moved(api: Api, upid: str, vmid: int, target: str) -> None:
    """Advance in small steps until the guest shows on `target`, still locked, task running."""
    for _ in range(20000):
        g = api.guest(vmid)
        if api.task_status(upid)["status"] != "running":
            raise AssertionError("the task ended before the config moved")
        if g["node"] == target and g.get("lock") == "migrate":
            return
        api.advance(0.2)
    raise AssertionError("the config never moved")


@pytest.mark.source(
    "pve-guest-common; qemu-server",
    "src/PVE/AbstractMigrate.pm; src/PVE/QemuMigrate.pm",
    "migrate; phase3_cleanup",
    "l.209-221, l.240-248; l.1749-1756, l.1836-1843, l.1896-1904",
)
def test_a_target_lost_in_phase_3_leaves_the_vm_there_locked(api: Api, probe: Emulator) -> None:
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    _until_config_moved(api, upid, 110, "pve2")
    with probe.locked() as c:
        c.set_node_online("pve2", False)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration problems"
    lines = strip_ts(log)
    resume = "ERROR: no reply to command 'resume 110': reading from tunnel failed: got timeout"
    quit_ = "ERROR: no reply to command 'quit': reading from tunnel failed: got timeout"
    sigterm = "tunnel still running - terminating now with SIGTERM"
    unlock = next(i for i, x in enumerate(lines) if x.startswith(f"# {SSH}"))
    assert lines[unlock].endswith("root@10.0.0.12 qm unlock 110")
    assert lines.index(resume) < lines.index(sigterm) < lines.index(quit_) < unlock
    assert lines[unlock + 1] == (
        "ERROR: failed to clear migrate lock: ssh: connect to host 10.0.0.12 port 22: "
        "No route to host"
    )
    assert lines[-2].startswith("ERROR: migration finished with problems (duration 00:0")
    assert log[-1] == "TASK ERROR: migration problems"
    assert not any("migration aborted" in x for x in lines)
    g = probe.state()["guests"]["110"]
    assert (g["node"], g["lock"]) == ("pve2", "migrate")


@pytest.mark.source(
    "qemu-server", "src/PVE/QemuMigrate.pm", "phase3_cleanup", "l.1749-1756, l.1896-1904"
)
def test_a_target_back_before_the_unlock_ends_the_vm_unlocked(api: Api, probe: Emulator) -> None:
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    _until_config_moved(api, upid, 110, "pve2")
    with probe.locked() as c:
        c.set_node_online("pve2", False)
    api.advance(45)  # back while the tunnel's replies are still awaited (30 s + 30 s + 30 s)
    with probe.locked() as c:
        c.set_node_online("pve2", True)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration problems"
    lines = strip_ts(log)
    assert "ERROR: no reply to command 'resume 110': reading from tunnel failed: got timeout" in (
        lines
    )
    assert not any("failed to clear migrate lock" in x for x in lines)
    g = probe.state()["guests"]["110"]
    assert (g["node"], g["lock"]) == ("pve2", None)


@pytest.mark.source(
    "pve-guest-common; pve-container",
    "src/PVE/AbstractMigrate.pm; src/PVE/LXC/Migrate.pm",
    "migrate; final_cleanup",
    "l.216-221; l.519-564",
)
def test_a_target_lost_after_a_container_moved_leaves_it_locked(api: Api, probe: Emulator) -> None:
    upid = api.post("/nodes/pve1/lxc/200/migrate", target="pve2", restart=1)
    _until_config_moved(api, upid, 200, "pve2")
    with probe.locked() as c:
        c.set_node_online("pve2", False)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "migration problems"
    lines = strip_ts(log)
    i = lines.index("start final cleanup")
    assert lines[i + 1] == f"# {SSH} -o 'HostKeyAlias=pve2' " + (
        "-o 'UserKnownHostsFile=/etc/pve/nodes/pve2/ssh_known_hosts' "
        "-o 'GlobalKnownHostsFile=none' root@10.0.0.12 pct unlock 200"
    )
    assert lines[i + 2] == (
        "ERROR: failed to clear migrate lock: ssh: connect to host 10.0.0.12 port 22: "
        "No route to host"
    )
    assert lines[i + 3] == "start container on target node"
    assert lines[i + 4].endswith("root@10.0.0.12 pct start 200")
    assert lines[i + 5] == "ssh: connect to host 10.0.0.12 port 22: No route to host"
    assert lines[i + 6].startswith("ERROR: command '/usr/bin/ssh ")
    assert lines[i + 6].endswith("pct start 200' failed: exit code 255")
    assert lines[-2].startswith("ERROR: migration finished with problems (duration ")
    g = probe.state()["guests"]["200"]
    assert (g["node"], g["lock"], g["status"]) == ("pve2", "migrate", "stopped")


@pytest.mark.source(
    "pve-guest-common", "src/PVE/AbstractMigrate.pm", "migrate", "l.144-150, l.209-221"
)
def test_a_task_stopped_in_phase_3_still_finishes(api: Api) -> None:
    upid = api.post("/nodes/pve1/qemu/110/migrate", target="pve2", online=1)
    _until_config_moved(api, upid, 110, "pve2")
    api.call("DELETE", f"/nodes/pve1/tasks/{upid}")
    status, log = run_task(api, upid)
    lines = strip_ts(log)
    assert "ERROR: received interrupt - delayed" in lines
    assert lines[-2].startswith("migration finished successfully (duration ")
    assert status["exitstatus"] == "OK"
    g = api.guest(110)
    assert (g["node"], g.get("lock", "")) == ("pve2", "")
