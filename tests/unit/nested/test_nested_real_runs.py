"""Real (non-dry) runs that are safe here: `up` refusing an unusable checksum before it does
anything, and `down` removing exactly what a state file records, by pid file, twice over."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import PLACEHOLDER, Sandbox


@pytest.mark.parametrize("value", [PLACEHOLDER, "", "abc123", "G" * 64])
def test_up_refuses_an_unusable_checksum_before_doing_anything(
    sandbox: Sandbox, value: str
) -> None:
    sandbox.set_sha256(value)
    run = sandbox.script("up")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "SHA-256" in run.stderr and "SHA256SUMS" in run.stderr
    assert run.stdout == ""
    assert not sandbox.work.exists()
    assert not sandbox.cache.exists()
    assert sandbox.recorded() == [], "a tool ran although the checksum was refused"


def test_up_refuses_a_bad_checksum_given_on_the_command_line(sandbox: Sandbox) -> None:
    run = sandbox.script("up", "--iso-sha256", "not-a-checksum")
    assert run.returncode == 2
    assert "not-a-checksum" in run.stderr
    assert not sandbox.work.exists() and sandbox.recorded() == []


def test_real_down_on_an_empty_work_dir_is_a_no_op(sandbox: Sandbox) -> None:
    for _ in range(2):
        run = sandbox.script("down")
        assert run.returncode == 0, run.stderr
        assert "nothing recorded" in run.stdout
    assert sandbox.recorded() == []
    assert not sandbox.work.exists()


def _start(marker: str) -> subprocess.Popen[bytes]:
    """A process carrying `marker` in its command line (once exec has happened)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", marker],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    deadline = time.monotonic() + 10
    while marker.encode() not in cmdline.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def _gone(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> bool:
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_real_down_removes_what_the_state_records_and_is_idempotent(sandbox: Sandbox) -> None:
    work = sandbox.work
    (work / "run").mkdir(parents=True)
    ours = _start("pvelab-pve1")
    stranger = _start("somebody-else")  # its pid sits in a stale pid file: must survive
    try:
        (work / "run" / "pve1.pid").write_text(f"{ours.pid}\n")
        (work / "run" / "pve2.pid").write_text(f"{stranger.pid}\n")
        (work / "run" / "pve3.pid").write_text("999999999\n")  # long gone
        env_file = sandbox.root / "cluster.env"
        env_file.write_text("export PVETOOL_HOST=x\n")
        resources = [
            {"kind": "path", "path": str(work)},
            {"kind": "link", "name": "pvelab0"},
            {"kind": "sysctl", "key": "net.ipv4.ip_forward", "previous": "0"},
            {
                "kind": "iptables",
                "table": "nat",
                "chain": "POSTROUTING",
                "rule": ["-s", "10.251.0.0/24", "!", "-o", "pvelab0", "-j", "MASQUERADE"],
            },
            {"kind": "link", "name": "pvelab-tap1"},
            {
                "kind": "process",
                "name": "qemu pve1",
                "pidfile": str(work / "run/pve1.pid"),
                "marker": "pvelab-pve1",
            },
            {
                "kind": "process",
                "name": "qemu pve2",
                "pidfile": str(work / "run/pve2.pid"),
                "marker": "pvelab-pve2",
            },
            {
                "kind": "process",
                "name": "qemu pve3",
                "pidfile": str(work / "run/pve3.pid"),
                "marker": "pvelab-pve3",
            },
            {"kind": "nfs-export", "client": "10.251.0.0/24", "path": str(work / "nfs")},
            {"kind": "path", "path": str(env_file)},
            {"kind": "path", "path": "/etc"},  # not the lab's: never removed
        ]
        (work / "state.json").write_text(json.dumps({"resources": resources}))

        run = sandbox.script("down")
        assert run.returncode == 0, run.stdout + run.stderr
        assert _gone(ours), "the lab's process was not stopped"
        assert stranger.poll() is None, "a process that is not the lab's was signalled"
        assert "not removing /etc" in run.stdout
        assert not work.exists() and not env_file.exists()
        assert Path("/etc").exists()
        assert sandbox.recorded() == [
            ["exportfs", "-u", f"10.251.0.0/24:{work / 'nfs'}"],
            ["ip", "link", "delete", "pvelab-tap1"],
            [
                "iptables",
                "-t",
                "nat",
                "-D",
                "POSTROUTING",
                "-s",
                "10.251.0.0/24",
                "!",
                "-o",
                "pvelab0",
                "-j",
                "MASQUERADE",
            ],
            ["sysctl", "-w", "net.ipv4.ip_forward=0"],
            ["ip", "link", "delete", "pvelab0"],
        ]

        again = sandbox.script("down")
        assert again.returncode == 0 and "nothing recorded" in again.stdout
        assert len(sandbox.recorded()) == 5
    finally:
        for proc in (ours, stranger):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_stop_process_waits_for_the_process(pvelab: ModuleType, tmp_path: Path) -> None:
    mod = pvelab
    proc = _start("pvelab-marker-x")
    try:
        pidfile = tmp_path / "x.pid"
        pidfile.write_text(str(proc.pid))
        assert mod._pid_alive(pidfile, "pvelab-marker-x")
        assert not mod._pid_alive(pidfile, "another-marker")
        runner = mod.Runner(dry_run=False, out=io.StringIO())
        started = time.monotonic()
        mod._stop_process(runner, pidfile, "pvelab-marker-x", "x")
        assert _gone(proc, 5)
        assert time.monotonic() - started < 30
        assert not mod._pid_alive(pidfile, "pvelab-marker-x")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert os.path.exists(pidfile)


def test_up_refuses_to_run_over_a_lab_that_is_up(sandbox: Sandbox) -> None:
    sandbox.work.mkdir()
    (sandbox.work / "state.json").write_text(
        json.dumps({"resources": [{"kind": "link", "name": "pvelab0"}]})
    )
    run = sandbox.script("up")
    assert run.returncode == 1
    assert "run nested-pve/down first" in run.stderr
    assert sandbox.recorded() == []
