"""Truthful outputs of the commands that run plans, in process against the emulated lab with
its clock stopped (nothing here needs a migration to end): a report for every run, also one
refused before it starts; an unwritable report path refused before anything moves; arguments
that cannot mean anything refused at parse time; a hand-edited move to its own source refused.
(Reliability campaign finding 10, issue 12's "truthful outputs".)"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvetool.api import PveClient
from pvetool.cli.main import main
from pvetool.emulator.clusterfile import load_cluster
from pvetool.emulator.server import Emulator
from tests.emu import START_EPOCH

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulator]:
    emu = Emulator(load_cluster("lab"), speed=0.0, start_epoch_s=START_EPOCH).start()
    for key, value in emu.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(ROOT / "tests" / "data" / "no-config"))
    monkeypatch.setenv("PVETOOL_STATE_DIR", str(tmp_path / "state"))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every request the client sends other than a read, as (method, path)."""
    sent: list[tuple[str, str]] = []
    original = PveClient._request

    def recording(self: PveClient, method: str, path: str, **kw: Any) -> Any:
        if method != "GET":
            sent.append((method, path))
        return original(self, method, path, **kw)

    monkeypatch.setattr(PveClient, "_request", recording)
    return sent


def pvetool(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_an_unwritable_report_path_is_refused_before_anything_moves(
    lab: Emulator, writes: list[tuple[str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir" / "r.json"
    # (--task-timeout: were the check missing, the run would end instead of hanging on the
    # stopped clock)
    code, _, err = pvetool(
        capsys, "drain", "pve1", "--yes", "--task-timeout", "2s", "--report", str(missing)
    )
    assert code == 2 and "the directory" in err and "does not exist" in err
    assert writes == []
    folder = tmp_path / "a-folder.xml"
    folder.mkdir()
    code, _, err = pvetool(
        capsys, "drain", "pve1", "--yes", "--task-timeout", "2s", "--junit", str(folder)
    )
    assert code == 2 and "it is a directory" in err
    assert writes == []


@pytest.mark.parametrize(
    "args",
    [
        ("drain", "pve1", "--yes", "--task-timeout", "0s"),
        ("drain", "", "--yes"),
        ("drain", ",", "--yes"),
        ("drain", "pve1", "--to", "", "--yes", "--task-timeout", "2s"),
        ("undrain", "", "--yes"),
        ("migrate", "110", "--to", "pve2", "--timeout", "0s"),
    ],
)
def test_arguments_that_cannot_mean_anything_are_refused_at_parse_time(
    lab: Emulator,
    writes: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
) -> None:
    code, _, err = pvetool(capsys, *args)
    assert code == 2 and err
    assert writes == []


def test_a_plan_refused_before_it_starts_still_writes_its_reports(
    lab: Emulator, writes: list[tuple[str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with lab.locked() as cluster:
        cluster.quorate_override = False
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    code, _, err = pvetool(
        capsys, "drain", "pve1", "--yes", "--report", str(report), "--junit", str(junit)
    )
    assert code == 2 and "PVT-NO-QUORUM" in err
    assert writes == []
    data = json.loads(report.read_text())
    assert data["exit_code"] == 2 and "PVT-NO-QUORUM" in data["refused"]
    assert data["moves"] and {m["status"] for m in data["moves"]} == {"not-started"}
    assert {m["node"] for m in data["moves"]} == {"pve1"}
    failures = ET.parse(junit).getroot().findall(".//failure[@type='refused']")
    assert len(failures) == 1


def test_a_run_without_confirmation_and_one_with_nothing_to_do_write_their_reports(
    lab: Emulator, writes: list[tuple[str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    code, _, err = pvetool(capsys, "drain", "pve1", "--report", str(report))  # stdin: no tty
    assert code == 2 and "without confirmation" in err
    assert json.loads(report.read_text())["exit_code"] == 2

    nothing = tmp_path / "nothing.json"
    code, _, err = pvetool(
        capsys, "rebalance", "--threshold", "99%", "--yes", "--report", str(nothing)
    )
    assert code == 0 and "Nothing to migrate." in err
    data = json.loads(nothing.read_text())
    assert data["exit_code"] == 0 and data["moves"] == []
    assert writes == []


def test_a_saved_move_to_its_own_source_is_a_plan_error_not_a_skip(
    lab: Emulator, writes: list[tuple[str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan_json = tmp_path / "plan.json"
    saved = _saved_drain(capsys, tmp_path)
    data = json.loads(saved.read_text())
    first = data["plan"]["stages"][0]["moves"][0]
    first["target"] = first["source"]
    plan_json.write_text(json.dumps(data), encoding="utf-8")
    report = tmp_path / "r.json"
    code, _, err = pvetool(
        capsys,
        "plan",
        "apply",
        str(plan_json),
        "--yes",
        "--ignore-drift",
        "--task-timeout",
        "2s",
        "--report",
        str(report),
    )
    assert code == 2 and "is its source" in err
    assert writes == []
    assert "is its source" in json.loads(report.read_text())["refused"]


def _saved_drain(capsys: pytest.CaptureFixture[str], tmp: Path) -> Path:
    plan = tmp / "drain.yaml"
    plan.write_text("version: 1\nname: drain-pve1\nsteps:\n  - drain: pve1\n", encoding="utf-8")
    code, out, err = pvetool(capsys, "plan", "show", str(plan), "-o", "json")
    assert code == 0, err
    saved = tmp / "saved.json"
    saved.write_text(out, encoding="utf-8")
    return saved
