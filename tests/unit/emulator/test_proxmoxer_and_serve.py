"""The emulator seen by third-party clients: plain proxmoxer over HTTPS with verification on, and
`pvetool emulator serve` / `python -m pvetool.emulator serve` as a separate process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from tests.emu import start

ROOT_SECRET = "00000000-test-secret-0000"


def test_proxmoxer_token_and_password_auth_with_verification() -> None:
    with start("behaviour.yaml") as emu:
        ca = str(emu.tls.ca_file)
        by_token = ProxmoxAPI(
            "127.0.0.1",
            port=emu.port,
            user="root@pam",
            token_name="test",
            token_value=ROOT_SECRET,
            verify_ssl=ca,
        )
        nodes = {n["node"]: n["status"] for n in by_token.nodes.get()}
        assert nodes == {"pve1": "online", "pve2": "online", "pve3": "online", "pve4": "offline"}
        upid = by_token.nodes("pve1").qemu(101).migrate.post(target="pve2", online=1)
        assert ":qmigrate:101:root@pam!test:" in upid
        by_password = ProxmoxAPI(
            "127.0.0.1", port=emu.port, user="root@pam", password="rootpass-lab", verify_ssl=ca
        )
        status = by_password.nodes("pve1").tasks(upid).status.get()
        assert status["status"] == "running" and status["type"] == "qmigrate"
        # A write through the ticket path (cookie + CSRF token).
        upid2 = by_password.nodes("pve2").lxc(200).migrate.post(target="pve3", restart=1)
        assert ":vzmigrate:200:root@pam:" in upid2
        emu.clock.advance(3)  # past prepare: the migrate lock comes in phase 1
        try:
            by_token.nodes("pve1").qemu(101).migrate.post(target="pve3", online=1)
        except ResourceException as exc:
            assert exc.status_code == 500
            assert "VM is locked (migrate)" in str(exc)
        else:
            raise AssertionError("a second migration of a locked VM must be refused")
        # Verification really is on: the system CA store does not know the emulator.
        refused = ProxmoxAPI(
            "127.0.0.1",
            port=emu.port,
            user="root@pam",
            token_name="test",
            token_value=ROOT_SECRET,
            verify_ssl=True,
        )
        try:
            refused.version.get()
        except requests.exceptions.SSLError:
            pass
        else:
            raise AssertionError("an unknown CA must be refused")


def _serve(args: list[str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[3]))
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    exports: dict[str, str] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while len(exports) < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.match(r"export (PVETOOL_\w+)=(.*)$", line.strip())
        if m:
            exports[m.group(1)] = m.group(2).strip("'")
    return proc, exports


def _check_serving(exports: dict[str, str]) -> None:
    s = requests.Session()
    s.trust_env = False
    host = exports["PVETOOL_HOST"]
    r = s.get(
        f"https://{host}/api2/json/cluster/resources",
        verify=exports["PVETOOL_VERIFY"],
        headers={"Authorization": f"PVEAPIToken={exports['PVETOOL_TOKEN']}"},
        timeout=10,
    )
    assert r.status_code == 200
    assert any(x.get("vmid") == 101 for x in r.json()["data"])


@pytest.mark.process
def test_python_m_emulator_serve_until_sigterm() -> None:
    proc, exports = _serve(
        [
            sys.executable,
            "-m",
            "pvetool.emulator",
            "serve",
            "--cluster",
            "lab",
            "--port",
            "0",
            "--speed",
            "10",
        ]
    )
    try:
        assert set(exports) == {"PVETOOL_HOST", "PVETOOL_TOKEN", "PVETOOL_VERIFY"}
        assert re.fullmatch(r"127\.0\.0\.1:\d+", exports["PVETOOL_HOST"])
        assert re.fullmatch(r"[^@]+@[^!]+![^=]+=.+", exports["PVETOOL_TOKEN"])
        _check_serving(exports)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


@pytest.mark.process
def test_pvetool_emulator_serve_with_token_and_sigint() -> None:
    proc, exports = _serve(
        [
            sys.executable,
            "-c",
            "from pvetool.cli.main import main; main()",
            "emulator",
            "serve",
            "--port",
            "0",
            "--token",
            "ci@pve!run=abc123",
        ]
    )
    try:
        assert exports["PVETOOL_TOKEN"] == "ci@pve!run=abc123"
        _check_serving(exports)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0


def test_serve_rejects_a_bad_cluster_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  pve1: {cpus: 4, memroy: 8GiB}\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[3]))
    r = subprocess.run(
        [sys.executable, "-m", "pvetool.emulator", "serve", "--cluster", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert r.returncode == 2
    assert "memroy" in r.stderr and "Traceback" not in r.stderr
