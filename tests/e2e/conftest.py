"""End-to-end fixtures: the emulator on a free port, and `pvetool` run as a real process.

Everything goes CLI -> client -> emulator over HTTPS with certificate verification on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pvetool.emulator.server import Emulator
from tests.emu import start

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Cluster:
    emu: Emulator
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)

    def pvetool(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))
        }
        full_env.update(self.env if env is None else env)
        full_env["PYTHONPATH"] = str(ROOT)
        full_env["XDG_CONFIG_HOME"] = str(ROOT / "tests" / "data" / "no-config")
        proc = subprocess.run(
            [sys.executable, "-c", "from pvetool.cli.main import main; main()", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        self.outputs += [proc.stdout, proc.stderr]
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PVETOOL_")}
        full_env.update(self.env)
        full_env["PYTHONPATH"] = str(ROOT)
        return subprocess.Popen(
            [sys.executable, "-c", "from pvetool.cli.main import main; main()", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )

    def node_of(self, vmid: int) -> str:
        return str(self.emu.state()["guests"][str(vmid)]["node"])


@pytest.fixture()
def lab() -> Iterator[Cluster]:
    emu = start("lab", speed=40.0)
    cluster = Cluster(emu, emu.env())
    yield cluster
    emu.stop()
    secret = emu.admin_token()[1]
    for text in cluster.outputs:
        assert secret not in text, "a secret appeared in pvetool's output"
