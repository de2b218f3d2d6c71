"""End-to-end fixtures: `pvetool` against a cluster over HTTPS with certificate verification on.

Two kinds of tests live here:

- portable tests (`test_portable_*.py`) take the `cluster` fixture: a `Backend` (backend.py) that
  is the emulator on `tests/data/clusters/nested-like.yaml` by default, or the real cluster named
  by `PVETOOL_E2E_ENV=path/to/cluster.env`. They read placement through the PVE API and put the
  test guests back where they were after each test, even when it fails;
- emulator-only tests (`@pytest.mark.emulator_only`): they use the emulator's powers (fault
  injection, the clock, nodes going offline, `emu.state()`) or the built-in `lab` cluster, and
  are skipped when `PVETOOL_E2E_ENV` is set.

Against the emulator, pvetool runs in this process on the emulator's stepped clock
(`inprocess.py`); tests marked `process` (signals, kill -9, the env-file proof) run it as a real
process against a clock that runs on real time. Against `PVETOOL_E2E_ENV`'s cluster it always
runs as a process, in real time. Everything goes CLI -> client -> cluster over HTTPS.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.backend import Backend
from tests.e2e.lab import Cluster, make_cluster

E2E_ENV = "PVETOOL_E2E_ENV"


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml; here so that `-m "not emulator_only"` and the skip
    # below work with any pytest configuration.
    config.addinivalue_line(
        "markers",
        "emulator_only: needs the emulator's powers (faults, clock, node state, emu.state()) "
        f"or the lab cluster; skipped when {E2E_ENV} points at an external cluster",
    )
    config.addinivalue_line(
        "markers",
        "process: runs pvetool (or the emulator) as a real process against a clock that runs on "
        "real time (signals, kill -9, the env-file proof); in the default run",
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
def cluster(backend: Backend, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The backend for one portable test, with pvetool's journal in `tmp_path`; for a test
    marked `process`, the emulator's clock runs on real time meanwhile.

    Afterwards (pass or fail): running migrations of test guests are waited for, every test
    guest goes back to the node it was on before the test, guests the suite did not create must
    not have moved, and no secret may have appeared in pvetool's output."""
    before = backend.placement()
    backend.state_dir = tmp_path / "state"
    try:
        if request.node.get_closest_marker("process") is not None:
            with backend.real_time():
                yield backend
        else:
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


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Cluster]:
    """The built-in lab on the stepped clock, pvetool's journal in `tmp_path / "state"`;
    afterwards no secret may have appeared in pvetool's output."""
    cluster = make_cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.emu.stop()
    cluster.check_no_secret_leaked()
