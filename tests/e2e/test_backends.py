"""The two backends of the portable tests, checked.

1. `tests/data/clusters/nested-like.yaml` describes the nested lab of `nested-pve/config.toml`
   (nodes, storages, test guests, token), so the portable tests meet the same cluster on the
   emulator as on real PVE.
2. The "external cluster" path works: an emulator started on its own (`python -m
   pvetool.emulator serve`, as a separate process) is written to an env file exactly like
   `nested-pve/cluster.env`, and a representative part of the portable tests (`PROOF`) runs
   against it with `PVETOOL_E2E_ENV=<that file>`, in a pytest of their own: all must pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvetool.emulator.clusterfile import load_cluster
from tests.e2e.backend import LAB_TOKEN_ID, NESTED_LIKE, ROOT, TEST_TAG, load_pvelab

PORTABLE = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "e2e").glob("test_portable_*.py")
)
# Guests of nested-like.yaml that config.toml does not create yet (none: they agree).
PENDING_IN_CONFIG: dict[int, str] = {}


def test_nested_like_describes_the_nested_lab() -> None:
    cfg = load_pvelab().load_config(ROOT / "nested-pve" / "config.toml")
    spec = load_cluster(str(NESTED_LIKE))
    assert spec.name == cfg.cluster_name
    assert {name: (n.cpus, n.memory_bytes) for name, n in spec.nodes.items()} == {
        n.name: (cfg.node_cores, cfg.node_memory_mib * 2**20) for n in cfg.nodes
    }
    assert spec.storages[cfg.storage].shared
    assert {"local", "local-lvm"} <= set(spec.storages)  # the installer's ext4 layout

    guests = {
        vmid: (g.node, next(t for t in g.tags if t != TEST_TAG), g.memory_bytes // 2**20)
        for vmid, g in spec.guests.items()
    }
    lab = {g.vmid: (g.node, g.kind, g.memory_mib) for g in cfg.guests}
    pending = {v: guests[v] for v in guests.keys() - lab.keys()}
    assert {v: kind for v, (_, kind, _) in pending.items()} == {
        v: k for v, k in PENDING_IN_CONFIG.items() if v not in lab
    }
    assert {v: guests[v] for v in lab} == lab
    for vmid, g in spec.guests.items():
        assert set(g.tags) == {TEST_TAG, guests[vmid][1]}
        assert g.type == ("lxc" if guests[vmid][1] == "container" else "qemu")
        assert (g.ha, bool(g.usb)) == (guests[vmid][1] == "ha", guests[vmid][1] == "local-device")
    local = {v for v, g in spec.guests.items() if any(d.storage == "local-lvm" for d in g.disks)}
    assert {guests[v][1] for v in local} == {"local-disk"}

    token = next(t for t in spec.tokens if t.id == LAB_TOKEN_ID)
    assert LAB_TOKEN_ID == f"{cfg.token_user}!{cfg.token_name}"
    assert set(token.privileges or ()) == set(cfg.privileges)


@pytest.fixture()
def served_env_file(tmp_path: Path) -> Iterator[Path]:
    """`python -m pvetool.emulator serve` in a process of its own; its exports in an env file."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pvetool.emulator",
            "serve",
            "--cluster",
            str(NESTED_LIKE),
            "--port",
            "0",
            "--speed",
            "50",
            "--tls-dir",
            str(tmp_path / "tls"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        exports = []
        for line in proc.stdout:
            if line.startswith("export PVETOOL_"):
                exports.append(line)
            if len(exports) == 3:
                break
        assert len(exports) == 3, proc.stderr.read() if proc.stderr else exports
        env_file = tmp_path / "cluster.env"
        env_file.write_text(
            "# written by tests/e2e/test_backends.py from `pvetool.emulator serve`\n"
            + "".join(exports)
            # An ordinary pvetool setting: poll tasks at the emulator's clock (x50), not each 1 s.
            + "export PVETOOL_POLL_INTERVAL=0.05\n",
            encoding="utf-8",
        )
        env_file.chmod(0o600)
        yield env_file
    finally:
        proc.terminate()  # serve stops on SIGTERM
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _pytest(*args: str, env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))}
    if env_file is not None:
        env["PVETOOL_E2E_ENV"] = str(env_file)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


# The proof runs a representative part of the portable suite through the env-file path, with
# pvetool as a process in real time: a status read, a refusal with its reason and exit 1, a
# drain and undrain with every guest home, and a resumed interrupted drain. The whole portable
# suite already ran in this session (in process, on the stepped clock), and on a real cluster it
# runs there directly. One refusal stands for the three: they differ in the planner check that
# refuses, not in the path to the cluster. Each pvetool process costs about a second of start-up.
PROOF = [
    "tests/e2e/test_portable_status.py",
    "tests/e2e/test_portable_migrate.py::test_a_refused_migration_exits_2_with_pves_reason"
    "[local-device]",
    "tests/e2e/test_portable_drain.py",
    "tests/e2e/test_portable_resume.py",
]


@pytest.mark.process
@pytest.mark.emulator_only  # on a real cluster the portable tests run there directly
def test_the_portable_tests_run_on_a_cluster_named_by_an_env_file(served_env_file: Path) -> None:
    assert {p.split("::")[0] for p in PROOF} <= set(PORTABLE)

    run = _pytest("-v", "-m", "not emulator_only", *PROOF, env_file=served_env_file)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    # Every test collected passed: nothing skipped (a missing guest kind), deselected (marked
    # emulator-only), failed or in error; and each part of PROOF ran at least one of them.
    assert not re.search(r"skipped|deselected|failed|error", summary), summary
    passed = re.search(r"\b(\d+) passed\b", summary)
    assert passed and int(passed.group(1)) >= len(PROOF), summary
    ran = re.findall(r"^(tests/e2e/\S+::\S+) PASSED", run.stdout, re.MULTILINE)
    assert len(ran) == int(passed.group(1)), run.stdout[-6000:]
    for part in PROOF:
        assert any(test == part or test.startswith((part + "::", part + "[")) for test in ran), (
            part,
            ran,
        )
