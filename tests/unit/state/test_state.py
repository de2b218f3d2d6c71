"""`pvetool.state`: cluster identity, the per-cluster layout, drained nodes, the run lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pvetool.errors import RunConflict
from pvetool.state import ClusterIdentity, ClusterState
from pvetool.state.drained import forget, held_nodes, holds, remember
from pvetool.state.lock import Holder, hold_cluster

LAB = ClusterIdentity("lab", ("pve1", "pve2", "pve3"), "10.0.0.1:8006")


def test_identity_keys_and_labels() -> None:
    assert LAB.key == "lab"
    assert LAB.label == "cluster 'lab' (pve1, pve2, pve3) at 10.0.0.1:8006"
    single = ClusterIdentity(None, ("pve1",))
    assert single.key == "node-pve1" and single.label == "node 'pve1' (no cluster)"
    # A name from an answer never walks out of the state folder.
    assert ClusterIdentity("../../etc", ("a",)).key == "_.._etc"
    assert LAB.same_cluster(ClusterIdentity("lab", LAB.nodes, "10.0.0.2:8006"))
    assert not LAB.same_cluster(ClusterIdentity("lab", ("pve1", "pve2")))


def test_drained_nodes_are_remembered_until_forgotten(tmp_path: Path) -> None:
    cluster = ClusterState(tmp_path / "state", LAB)
    remember(cluster, ["pve1"], "run-a", "drain:pve1", 1_790_000_000.0)
    remember(cluster, ["pve1", "pve3"], "run-b", "drain:pve3", 1_790_000_100.0)
    got = holds(cluster)
    assert got["pve1"].run_id == "run-a"  # the first drain's record stays
    assert got["pve3"].run_id == "run-b"
    assert held_nodes(cluster)["pve1"].startswith("drained by pvetool (run run-a, since 2026-")
    assert (cluster.root / "drained.json").stat().st_mode & 0o777 == 0o600
    assert forget(cluster, "pve1") is not None and forget(cluster, "pve1") is None
    assert set(holds(cluster)) == {"pve3"}


def test_the_local_lock_refuses_a_second_holder_and_is_free_after(tmp_path: Path) -> None:
    cluster = ClusterState(tmp_path / "state", LAB)
    first = Holder("run-a", os.getpid(), "here", "drain:pve1", 1_790_000_000.0)
    notices: list[str] = []
    with hold_cluster(cluster, None, first, notices=notices):
        with pytest.raises(RunConflict, match="run run-a \\(drain:pve1, pid"):
            with hold_cluster(cluster, None, Holder.here("run-b", "drain:pve1"), notices=[]):
                pass
        forced: list[str] = []
        with hold_cluster(cluster, None, Holder.here("run-c", "x"), force=True, notices=forced):
            pass
        assert forced and forced[0].startswith("warning: --force-lock")
    assert notices == []
    after: list[str] = []
    with hold_cluster(cluster, None, Holder.here("run-d", "x"), notices=after):
        pass
    assert after == []  # released cleanly: nothing left to take over


def test_a_journal_of_another_cluster_is_refused(tmp_path: Path) -> None:
    from pvetool.journal_records import RunState

    cluster = ClusterState(tmp_path / "state", LAB)
    other = RunState(path=tmp_path / "x.jsonl", run_id="r1", cluster="prod", cluster_nodes=("a",))
    with pytest.raises(RunConflict, match="cluster 'prod' \\(a\\).*cluster 'lab'"):
        cluster.check_run(other)
    cluster.check_run(RunState(path=tmp_path / "y.jsonl", run_id="r2"))  # old: unknown, allowed
