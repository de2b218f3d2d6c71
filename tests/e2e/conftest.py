"""End-to-end fixtures: `pvetool` run as a real process against a cluster over HTTPS.

Two kinds of tests live here:

- portable tests (`test_portable_*.py`) take the `cluster` fixture: a `Backend` (backend.py) that
  is the emulator on `tests/data/clusters/nested-like.yaml` by default, or the real cluster named
  by `PVETOOL_E2E_ENV=path/to/cluster.env`. They read placement through the PVE API and put the
  test guests back where they were after each test, even when it fails;
- emulator-only tests (`@pytest.mark.emulator_only`): they use the emulator's powers (fault
  injection, the clock, nodes going offline, `emu.state()`) or the built-in `lab` cluster, and
  are skipped when `PVETOOL_E2E_ENV` is set.

Everything goes CLI -> client -> cluster over HTTPS with certificate verification on.
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
from tests.e2e.backend import Backend
from tests.emu import start

ROOT = Path(__file__).resolve().parents[2]
E2E_ENV = "PVETOOL_E2E_ENV"


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml; here so that `-m "not emulator_only"` and the skip
    # below work with any pytest configuration.
    config.addinivalue_line(
        "markers",
        "emulator_only: needs the emulator's powers (faults, clock, node state, emu.state()) "
        f"or the lab cluster; skipped when {E2E_ENV} points at an external cluster",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    env_file = os.environ.get(E2E_ENV)
    if not env_file:
        return
    skip = pytest.mark.skip(reason=f"needs the emulator; {E2E_ENV}={env_file} is external")
    for item in items:
        if item.get_closest_marker("emulator_only") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    """The cluster of the portable tests: `PVETOOL_E2E_ENV`'s, or the emulator (one per session).

    At the end every test guest is put back where it was when the session started."""
    env_file = os.environ.get(E2E_ENV)
    if env_file:
        path = Path(env_file)
        if not path.is_file():
            pytest.fail(f"{E2E_ENV}={env_file}: no such file", pytrace=False)
        chosen = Backend.from_env_file(path)
    else:
        chosen = Backend.emulated()
    try:
        try:
            chosen.api.get("/version")
        except Exception as exc:  # any failure here means the suite cannot use it
            where = env_file or "the emulator"
            pytest.fail(f"cannot reach the cluster of {where}: {exc}", pytrace=False)
        if not chosen.roles():
            pytest.fail(
                "the cluster has no test guests (tagged 'pvelab;<kind>', see nested-pve/): "
                "the portable tests only ever move those",
                pytrace=False,
            )
        chosen.homes = {v: n for v, n in chosen.placement().items() if v in chosen.test_vmids()}
        yield chosen
        chosen.restore(chosen.homes)
    finally:
        chosen.close()


@pytest.fixture()
def cluster(backend: Backend, tmp_path: Path) -> Iterator[Backend]:
    """The backend for one portable test, with pvetool's journal in `tmp_path`.

    Afterwards (pass or fail): running migrations of test guests are waited for, every test
    guest goes back to the node it was on before the test, guests the suite did not create must
    not have moved, and no secret may have appeared in pvetool's output."""
    before = backend.placement()
    backend.state_dir = tmp_path / "state"
    try:
        yield backend
    finally:
        backend.state_dir = None
        backend.restore(before)
        after = backend.placement()
        foreign = backend.foreign_guests()
        moved = {v: (before.get(v), after.get(v)) for v in foreign if before.get(v) != after.get(v)}
        assert not moved, f"guests the suite did not create moved: {moved}"
        assert {v: after[v] for v in backend.test_vmids()} == {
            v: before[v] for v in backend.test_vmids()
        }, "the test guests are not back where they were"
        backend.check_no_secret_leaked()


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
