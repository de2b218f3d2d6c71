"""`pvetool migrate` as a one-move plan, in process against the emulated lab: the planner's
checks refuse before any API write, `--no-wait` requests the migration and journals it, and a
refused move is named with its findings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvetool.api import PveClient
from pvetool.cli.main import main
from pvetool.emulator.clusterfile import load_cluster
from pvetool.emulator.server import Emulator
from pvetool.journal import list_runs
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
def requests_sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every request the client sends, as (method, path)."""
    sent: list[tuple[str, str]] = []
    original = PveClient._request

    def recording(self: PveClient, method: str, path: str, **kw: Any) -> Any:
        sent.append((method, path))
        return original(self, method, path, **kw)

    monkeypatch.setattr(PveClient, "_request", recording)
    return sent


def pvetool(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_a_passthrough_vm_is_refused_by_the_checks_before_any_write(
    lab: Emulator, requests_sent: list[tuple[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = pvetool(capsys, "migrate", "114", "--to", "pve1")
    assert code == 2 and out == ""  # refused before starting
    assert "error: guest 114 cannot be migrated to pve1:" in err
    assert "PVT-LOCAL-DEVICE: 114 (gpu1): it uses host-bound devices: hostpci0" in err
    assert requests_sent and not [r for r in requests_sent if r[0] != "GET"]
    assert lab.state()["guests"]["114"]["node"] == "pve2"


def test_no_wait_starts_journals_and_leaves_the_task_running(
    lab: Emulator,
    requests_sent: list[tuple[str, str]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    code, out, _ = pvetool(capsys, "migrate", "110", "--to", "pve2", "--no-wait")
    assert code == 0
    assert out.startswith("started: UPID:pve1:") and ":qmigrate:110:" in out
    posts = [path for method, path in requests_sent if method == "POST"]
    # the run marker on the cluster (pvetool.state.lock: pool pvetool-run), then one migration
    assert posts == ["/pools", "/nodes/pve1/qemu/110/migrate"]
    assert ("DELETE", "/pools") in requests_sent  # the marker is gone when the command ends
    (run,) = list_runs(tmp_path / "state" / "clusters" / "lab")
    assert (run.command, run.kind) == ("migrate:110", "migrate")
    rec = run.moves[next(iter(run.moves))]
    assert rec.upid == out.split()[1] and rec.outcome is not None
    assert (rec.outcome.status, rec.outcome.still_running) == ("left-running", True)
