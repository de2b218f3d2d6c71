"""cluster.env: the three variables pvetool reads, in a file both a shell and Python can read."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import CONFIG

SECRET = "3f2b'9c$\"0a!=x y"  # quotes, $, !, = and a space: all must survive


def _values(pvelab: ModuleType, tmp_path: Path) -> dict[str, str]:
    cfg = pvelab.load_config(CONFIG)
    return pvelab.cluster_env_values(
        cfg,
        token_id="pvetool@pve!ci",
        token_secret=SECRET,
        ca_file=tmp_path / "pve-root-ca.pem",
        ssh_config=tmp_path / "ssh_config",
    )


def test_env_values_name_the_three_pvetool_variables(pvelab: ModuleType, tmp_path: Path) -> None:
    values = _values(pvelab, tmp_path)
    assert values["PVETOOL_HOST"] == "10.251.0.11:8006,10.251.0.12:8006,10.251.0.13:8006"
    assert values["PVETOOL_TOKEN"] == f"pvetool@pve!ci={SECRET}"
    assert values["PVETOOL_VERIFY"] == str(tmp_path / "pve-root-ca.pem")
    assert values["PVELAB_ALIVE_VMID"] == "107"
    assert values["PVELAB_NODES"] == "pve1,pve2,pve3"


def test_env_file_round_trips_through_the_reader(pvelab: ModuleType, tmp_path: Path) -> None:
    values = _values(pvelab, tmp_path)
    path = tmp_path / "cluster.env"
    path.write_text(pvelab.env_file_text(values, comment="two\nlines"))
    text = path.read_text()
    assert text.startswith("# two\n# lines\n")
    assert all(line.startswith(("# ", "export ")) for line in text.splitlines())
    assert pvelab.read_env_file(path) == values


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_env_file_can_be_sourced_by_a_shell(pvelab: ModuleType, tmp_path: Path) -> None:
    values = _values(pvelab, tmp_path)
    path = tmp_path / "cluster.env"
    path.write_text(pvelab.env_file_text(values))
    out = subprocess.run(
        [
            "bash",
            "-c",
            '. "$1" && printf "%s\\n%s\\n%s" "$PVETOOL_HOST" "$PVETOOL_TOKEN" "$PVETOOL_VERIFY"',
            "bash",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    assert out.split("\n") == [
        values["PVETOOL_HOST"],
        values["PVETOOL_TOKEN"],
        values["PVETOOL_VERIFY"],
    ]


def test_env_file_rejects_bad_names_and_lines(pvelab: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        pvelab.env_file_text({"not-a-name": "x"})
    bad = tmp_path / "bad.env"
    bad.write_text("export A=1 B=2\n")
    with pytest.raises(ValueError, match="bad.env:1"):
        pvelab.read_env_file(bad)


def test_dry_run_env_step_writes_nothing_and_names_the_file(pvelab: ModuleType) -> None:
    import io

    cfg = pvelab.load_config(CONFIG)
    out = io.StringIO()
    runner = pvelab.Runner(dry_run=True, out=out)
    paths = pvelab.Paths(cfg)
    lab = pvelab.Lab(
        cfg=cfg, runner=runner, state=pvelab.State(paths.state, persist=False), paths=paths, out=out
    )
    lab.step_env()
    assert f"write {paths.env_file}" in out.getvalue()
    assert not paths.env_file.exists()
