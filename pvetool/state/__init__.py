"""pvetool's own state, per cluster: which cluster a run is on, where its journals live, the
run lock and the cluster marker, and the nodes pvetool drained.

Modules: `identity` (`ClusterIdentity`), `layout` (`ClusterState`: folders, what `--resume` and
`undrain` may use), `lock` (one run at a time: local lock file and cluster marker), `drained`
(nodes drained until `undrain`), `cluster` (a snapshot's `ClusterState` and the snapshot the
planner sees, for the CLI and the Python API).

Imports: the standard library, `pvetool.errors`, `pvetool.model` and `pvetool.journal`.
"""

from pvetool.state.identity import UNKNOWN, ClusterIdentity, identity_of
from pvetool.state.layout import ClusterState, run_identity

__all__ = ["UNKNOWN", "ClusterIdentity", "ClusterState", "identity_of", "run_identity"]
