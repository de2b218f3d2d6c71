"""The cluster a run acts on, from what was read of it: its `ClusterState` and the snapshot the
planner must see (the nodes pvetool drained held). Shared by the CLI
(`pvetool.cli.clusterstate`) and the Python API (`pvetool.session`), so both name a cluster,
find its folder and hold drained nodes the same way.

Imports: the standard library, `pvetool.journal`, `pvetool.model` and the package's
`identity`, `layout` and `drained`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pvetool.journal import state_dir
from pvetool.model import ClusterSnapshot
from pvetool.state.drained import held_nodes
from pvetool.state.identity import ClusterIdentity, identity_of
from pvetool.state.layout import ClusterState

__all__ = ["cluster_of", "state_for", "with_held"]


def state_for(
    identity: ClusterIdentity, *, emulated: bool, base: Path | None = None
) -> ClusterState:
    """The state folder of the cluster `identity` names under `base` (default: the state
    directory, `pvetool.journal.state_dir`); ``emulated/`` for an emulated cluster."""
    return ClusterState(base if base is not None else state_dir(), identity, emulated=emulated)


def cluster_of(
    snapshot: ClusterSnapshot, endpoint: str, *, emulated: bool, base: Path | None = None
) -> ClusterState:
    """The state of the cluster `snapshot` was read from (`endpoint`: where it answered)."""
    return state_for(identity_of(snapshot, endpoint), emulated=emulated, base=base)


def with_held(
    snapshot: ClusterSnapshot, cluster: ClusterState, *, release: str | None = None
) -> ClusterSnapshot:
    """`snapshot` with the nodes pvetool drained on `cluster` (`ClusterSnapshot.held_nodes`:
    never a target); `release`: the node an undrain is about to release, not held."""
    held = held_nodes(cluster)
    if release is not None:
        held.pop(release, None)
    return replace(snapshot, held_nodes=held)
