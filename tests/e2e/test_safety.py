"""Issue 13 end to end: runs bound to their cluster, one run at a time, drained nodes stay
drained, plans that fail early, resume after a failure, and the truth about where it runs.

Every test runs pvetool in this process on the emulator's stepped clock (`inprocess.py`),
except those marked `process` (two real pvetool processes racing for the same node).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pvetool.emulator.clusterfile import load_cluster
from pvetool.emulator.server import Emulator
from tests.e2e.inprocess import SteppedClock
from tests.e2e.lab import STEPPED_POLL, Cluster, check_consistent, journal_records
from tests.emu import START_EPOCH

pytestmark = pytest.mark.emulator_only


def _other_lab(tmp_path: Path, name: str = "lab2") -> Cluster:
    """A second cluster, the lab under another name, sharing the first one's state folder."""
    spec = replace(load_cluster("lab"), name=name)
    emu = Emulator(spec, speed=0.0, start_epoch_s=START_EPOCH).start()
    env = emu.env()
    env["PVETOOL_STATE_DIR"] = str(tmp_path / "state")
    env["PVETOOL_POLL_INTERVAL"] = STEPPED_POLL
    return Cluster(emu, env, stepped=SteppedClock(emu))


def _journals(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state").glob("*/*/runs/*.jsonl"))


def _kill_after_the_fact(path: Path) -> None:
    """What kill -9 leaves of a run: its journal without the run-end record."""
    lines = [line for line in path.read_text().splitlines() if '"type":"run-end"' not in line]
    path.write_text("\n".join(lines) + "\n")


# -- 1. cluster identity ------------------------------------------------------------------------


def test_journal_records_the_cluster_and_lives_in_its_folder(lab: Cluster, tmp_path: Path) -> None:
    r = lab.pvetool("drain", "pve3", "--yes", "-o", "json")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    [path] = _journals(tmp_path)
    assert path.parent == tmp_path / "state" / "clusters" / "lab" / "runs"
    start = journal_records(lab)[0][0]
    assert start["type"] == "run-start"
    assert start["cluster"] == "lab"
    assert start["cluster_nodes"] == ["pve1", "pve2", "pve3"]
    assert start["endpoint"] == lab.env["PVETOOL_HOST"]
    origins = [rec for rec in journal_records(lab)[0] if rec["type"] == "origin"]
    assert origins and all(o["cluster"] == "lab" for o in origins)


def test_resume_against_another_cluster_is_refused_naming_both(
    lab: Cluster, tmp_path: Path
) -> None:
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    [path] = _journals(tmp_path)
    _kill_after_the_fact(path)
    other = _other_lab(tmp_path)
    try:
        before = other.emu.state()["tasks"]
        r = other.pvetool("drain", "pve3", "--resume", "--yes")
        assert r.code == 2, r.out + r.err
        assert "Traceback" not in r.err
        assert "cluster 'lab' (pve1, pve2, pve3)" in r.err
        assert "cluster 'lab2' (pve1, pve2, pve3)" in r.err
        assert "not resumed here" in r.err
        assert other.emu.state()["tasks"] == before  # nothing was asked of the other cluster
    finally:
        other.emu.stop()
    # On its own cluster the run resumes (and finds nothing left to do).
    r = lab.pvetool("drain", "pve3", "--resume", "--yes")
    assert r.code in (0, 1) and "resum" in (r.out + r.err).lower(), r.out + r.err
    check_consistent(lab.emu)


def test_undrain_uses_only_its_own_clusters_drain(lab: Cluster, tmp_path: Path) -> None:
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    other = _other_lab(tmp_path)
    try:
        r = other.pvetool("undrain", "pve3", "--yes")
        # The other cluster has no drain of pve3: nothing to undo, nothing moved there.
        assert r.code == 0, r.out + r.err
        assert "No drain of pve3 to undo on the cluster 'lab2'" in r.err
        assert not [t for t in other.emu.state()["tasks"] if t["type"] == "qmigrate"]
    finally:
        other.emu.stop()


def test_a_journal_moved_into_another_clusters_folder_is_refused(
    lab: Cluster, tmp_path: Path
) -> None:
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    [path] = _journals(tmp_path)
    _kill_after_the_fact(path)
    other_runs = tmp_path / "state" / "clusters" / "lab2" / "runs"
    other_runs.mkdir(parents=True, mode=0o700)
    path.rename(other_runs / path.name)
    other = _other_lab(tmp_path)
    try:
        r = other.pvetool("drain", "pve3", "--resume", "--yes")
        assert r.code == 2, r.out + r.err
        assert "cluster 'lab' (pve1, pve2, pve3)" in r.err and "cluster 'lab2'" in r.err
    finally:
        other.emu.stop()


def test_an_old_layout_journal_is_not_resumed_but_named(lab: Cluster, tmp_path: Path) -> None:
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    [path] = _journals(tmp_path)
    _kill_after_the_fact(path)
    # As pvetool wrote it before journals recorded their cluster: state/runs/, no identity.
    legacy = tmp_path / "state" / "runs"
    legacy.mkdir(mode=0o700)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in records:
        for key in ("cluster", "cluster_nodes", "endpoint"):
            rec.pop(key, None)
    (legacy / path.name).write_text("".join(json.dumps(rec) + "\n" for rec in records))
    path.unlink()
    r = lab.pvetool("drain", "pve3", "--resume", "--yes")
    assert r.code == 2, r.out + r.err
    assert "written before pvetool recorded which cluster" in r.err
    assert f"mv {legacy / path.name}" in r.err


def test_emulated_runs_live_in_their_own_namespace(tmp_path: Path) -> None:
    from tests.e2e.inprocess import run_cli

    env = {"PVETOOL_STATE_DIR": str(tmp_path / "state")}
    r = run_cli(["--emulate", "lab", "drain", "pve3", "--yes"], env, clocks=None, limit_s=300)
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    assert sorted(p.relative_to(tmp_path / "state").parts[:2] for p in _journals(tmp_path)) == [
        ("emulated", "lab")
    ]
