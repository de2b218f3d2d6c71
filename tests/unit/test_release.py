"""Release: `python -m build` makes an sdist and a wheel that `twine check` accepts; the wheel
installs into a fresh venv and runs `pvetool --emulate lab status` (its schemas and the
emulator's data shipped inside), and the version is the one of `pvetool.__version__`.

Marked `process`: it builds, creates a venv and installs the wheel's dependencies (from pip's
cache or the package index), which takes a while. Two shortcuts keep it to seconds: the build
uses this environment's setuptools (`--no-isolation`; the test extra pins the version the
build-system table asks for) and the fresh venv has no pip of its own (this environment's pip
installs into it with `--python`), so nothing but pvetool and its declared dependencies is in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import pvetool

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    run = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, f"{args}: {run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return run.stdout


@pytest.mark.process
def test_build_check_install_and_run(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT)
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    version = pvetool.__version__
    assert [w.name for w in wheels] == [f"pvetool-{version}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"pvetool-{version}.tar.gz"]
    out = _run(sys.executable, "-m", "twine", "check", "--strict", *wheels, *sdists)
    assert out.count("PASSED") == 2, out

    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    bin_dir = env_dir / "bin"
    pip = (sys.executable, "-m", "pip", "--python", bin_dir / "python")
    _run(*pip, "install", "--quiet", "--no-compile", wheels[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))}
    env["PVETOOL_STATE_DIR"] = str(tmp_path / "state")
    outside = tmp_path / "elsewhere"  # not the source tree: the installed copy must be used
    outside.mkdir()
    status = _run(bin_dir / "pvetool", "--emulate", "lab", "status", cwd=outside, env=env)
    assert "cluster lab: quorate, 3/3 nodes online, 20 guests" in status
    doc = json.loads(
        _run(bin_dir / "pvetool", "--emulate", "lab", "status", "-o", "json", cwd=outside, env=env)
    )
    assert doc["format"] == "pvetool/status"
    shown = _run(bin_dir / "python", "-m", "pvetool", "--version", cwd=outside, env=env)
    assert shown.strip() == f"pvetool, version {version}"
    where = _run(
        bin_dir / "python",
        "-c",
        "import pvetool.schemas as s, pvetool; print(pvetool.__file__); "
        "print(sorted(s.load_schema(k)['title'] for k in s.KINDS)[0])",
        cwd=outside,
        env=env,
    )
    assert str(env_dir) in where.splitlines()[0]
