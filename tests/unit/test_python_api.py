"""The Python API: docs/python-api.md's example runs as written against the embedded emulator,
and a session journals like the CLI (a script's drain is found by `pvetool undrain`)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import pvetool
from pvetool.errors import ConfigError
from pvetool.journal import list_runs

ROOT = Path(__file__).resolve().parents[2]


def _example() -> str:
    text = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/python-api.md has one runnable example"
    return blocks[0]


def test_the_documented_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_example(), "docs/python-api.md", "exec"), {"__name__": "example"})
    text = out.getvalue()
    assert "lab: 3 nodes, 20 guests" in text
    assert "pve2 can be emptied: False blocked: [" in text
    assert "PVT-LOCAL-DEVICE" in text  # 114 gpu1 has PCI passthrough
    assert re.search(r"exit code [01] \{'moved': \d+", text)
    assert "undrain:" in text
    runs = list_runs(tmp_path / "state")
    assert [r.command for r in runs][:1] == ["drain:pve1"], "the run is journalled as a drain"


def test_connect_without_settings_names_what_is_missing(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(ConfigError):
        pvetool.connect(env=env)


def test_sessions_plan_and_close(tmp_path: Path) -> None:
    with pvetool.connect(emulate="lab", journal_dir=tmp_path / "state") as pve:
        assert pve.emulator is not None
        plan = pve.plan_drain(["pve3"])
        assert plan.moves and all(m.source == "pve3" for m in plan.moves)
        assert pve.undrain("pve3", dry_run=True) is None  # nothing drained in this journal
    assert pve.emulator is None
