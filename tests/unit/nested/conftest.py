"""Fixtures for nested-pve/: the pvelab module, a private config, and fake host tools.

nested-pve/ is not a package (it is a folder of scripts), so the module is loaded from its file.
Nothing here needs KVM, root, a network or the ISO: real runs only ever meet fake tools that
record their arguments.
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
NESTED = ROOT / "nested-pve"
CONFIG = NESTED / "config.toml"
PLACEHOLDER = "SET-ME-sha256-of-proxmox-ve_9.x-y.iso"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pvelab", NESTED / "pvelab.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pvelab"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pvelab() -> ModuleType:
    return _load()


@dataclass
class Sandbox:
    """A config copy with its work and cache dirs in tmp, and a PATH of recording fake tools."""

    root: Path
    config: Path
    work: Path
    cache: Path
    bin: Path
    calls: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.pop("SUDO_UID", None)
        env.pop("SUDO_GID", None)
        env.pop("PVELAB_ISO_URL", None)
        env.pop("PVELAB_ISO_SHA256", None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def script(
        self, name: str, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run nested-pve/<name> (up or down) as the operator would, against this sandbox."""
        return subprocess.run(
            [
                sys.executable,
                str(NESTED / name),
                "--config",
                str(self.config),
                "--work-dir",
                str(self.work),
                "--cache-dir",
                str(self.cache),
                *args,
            ],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )

    def recorded(self) -> list[list[str]]:
        if not self.calls.exists():
            return []
        return [line.split("\x1f") for line in self.calls.read_text().splitlines() if line]

    def set_sha256(self, value: str) -> None:
        text = self.config.read_text()
        text, n = re.subn(r'(?m)^sha256 = ".*"$', f'sha256 = "{value}"', text)
        assert n == 1
        self.config.write_text(text)


FAKE_TOOLS = (
    "ip",
    "iptables",
    "sysctl",
    "exportfs",
    "dnsmasq",
    "qemu-system-x86_64",
    "qemu-img",
    "ssh",
    "scp",
    "ssh-keygen",
    "curl",
    "mkfs.fat",
    "mcopy",
    "cpio",
    "docker",
    "chown",
)


@pytest.fixture()
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    root = tmp_path / "lab"
    root.mkdir()
    config = root / "config.toml"
    config.write_text(CONFIG.read_text())
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "calls.log"
    for tool in FAKE_TOOLS:
        path = fake_bin / tool
        path.write_text(
            "#!/bin/sh\n"
            f"# fake {tool}: records its arguments and succeeds\n"
            f'{{ printf "%s" "{tool}"; for a in "$@"; do printf "\\037%s" "$a"; done; echo; }}'
            f' >> "{calls}"\n'
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    yield Sandbox(
        root=root,
        config=config,
        work=tmp_path / "work",
        cache=tmp_path / "cache",
        bin=fake_bin,
        calls=calls,
    )
