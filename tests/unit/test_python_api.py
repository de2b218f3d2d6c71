"""The Python API: docs/python-api.md's example runs as written against the embedded emulator,
and a session runs like the CLI: journalled in the cluster's folder (`pvetool runs` lists a
script's drain), the cluster held for the run (a held lock raises `RunConflict`), drained nodes
held until `undrain` releases them."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import pvetool
from pvetool.cli.main import cli
from pvetool.errors import ConfigError, RunConflict
from pvetool.state.history import all_runs
from pvetool.state.lock import Holder, hold_cluster

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
    runs = [e.state for e in all_runs(tmp_path / "state") if e.cluster == "lab" and e.emulated]
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


def test_a_sessions_drain_is_the_clusters_and_held_until_undrain(tmp_path: Path) -> None:
    base = tmp_path / "state"
    with pvetool.connect(emulate="lab", emulate_speed=200, journal_dir=base) as pve:
        plan = pve.plan_drain("pve3")
        moved = {m.vmid for m in plan.moves}
        assert moved and pve.drained() == {}
        report = pve.run(plan)
        assert {r.vmid for r in report.results if r.status == "moved"} == moved
        assert report.command == "drain:pve3"

        # `pvetool runs` sees it as a run on the emulated cluster 'lab', with its identity
        entries = all_runs(base)
        assert [(e.cluster, e.emulated, e.state.command) for e in entries] == [
            ("lab", True, "drain:pve3")
        ]
        run = entries[0].state
        assert run.cluster == "lab" and tuple(run.cluster_nodes) == ("pve1", "pve2", "pve3")
        assert run.endpoint == str(pve.client.current_host)
        assert run.path.parent == base / "emulated" / "lab" / "runs"
        shown = CliRunner().invoke(
            cli, ["runs", "--cluster", "lab", "-o", "json"], env={"PVETOOL_STATE_DIR": str(base)}
        )
        assert shown.exit_code == 0, shown.output
        rows = json.loads(shown.stdout)["runs"]
        assert [(r["run"], r["command"], r["emulated"]) for r in rows] == [
            (run.run_id, "drain:pve3", True)
        ]

        # pve3 is held (what `status` lists): no later plan places a guest on it
        held = pve.drained()
        assert list(held) == ["pve3"] and held["pve3"].run_id == run.run_id
        assert "pve3" in pve.snapshot().held_nodes
        other = pve.plan_drain("pve2")
        assert other.moves and all(m.target == "pve1" for m in other.moves)
        assert all(m.target != "pve3" for m in pve.plan_rebalance(threshold=0.0).moves)

        # undrain brings the guests home and releases the node
        back = pve.undrain("pve3")
        assert back is not None and not isinstance(back, type(plan))
        assert {r.vmid for r in back.results if r.status == "moved"} == moved
        guests = pve.snapshot().guests
        assert all(guests[vmid].node == "pve3" for vmid in moved)
        assert pve.drained() == {}
        assert "pve3" not in pve.snapshot().held_nodes
        commands = [e.state.command for e in all_runs(base)]
        assert commands == ["drain:pve3", "undrain:pve3"]
        assert pve.undrain("pve3") is None  # nothing left to undo


def test_a_run_on_a_cluster_another_run_holds_raises_run_conflict(tmp_path: Path) -> None:
    base = tmp_path / "state"
    with pvetool.connect(emulate="lab", emulate_speed=200, journal_dir=base) as pve:
        plan = pve.plan_drain("pve3")
        cluster = pve.cluster_state()
        assert cluster.root == base / "emulated" / "lab"
        before = {v: g.node for v, g in pve.snapshot().guests.items()}
        notices: list[str] = []
        # another run (the local lock only, as a second process on this machine would hold it)
        with (
            hold_cluster(cluster, None, Holder.here("other-run", "drain:pve1"), notices=notices),
            pytest.raises(RunConflict, match="other-run"),
        ):
            pve.run(plan)
        assert {v: g.node for v, g in pve.snapshot().guests.items()} == before
        assert pve.drained() == {}, "a refused run holds no node"
        assert all_runs(base) == [], "a refused run writes no journal"


def test_undrain_without_a_drain_releases_a_held_node(tmp_path: Path) -> None:
    base = tmp_path / "state"
    with pvetool.connect(emulate="lab", emulate_speed=200, journal_dir=base) as pve:
        from pvetool.state.drained import remember

        remember(pve.cluster_state(), ["pve2"], "earlier-run", "drain:pve2", 0.0)
        assert list(pve.drained()) == ["pve2"]
        assert pve.undrain("pve2", dry_run=True) is None
        assert list(pve.drained()) == ["pve2"], "a dry run releases nothing"
        assert pve.undrain("pve2") is None
        assert pve.drained() == {}
