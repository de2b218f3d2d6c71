"""Which cluster a run belongs to: `ClusterIdentity`, read from a `ClusterSnapshot`.

A cluster is known by its name in ``GET /cluster/status`` (corosync's cluster name) plus the
sorted names of its nodes; a node that is not in a cluster has no cluster name and is known by
its own name. The endpoint (``host:port`` the client reached) is recorded beside it, but is not
part of the identity: the same cluster answers on every node's address.

Two identities are the same cluster only when both the name and the node list are equal: two
labs both called ``pve`` with nodes ``pve1..3`` are the one case this cannot tell apart (the
endpoint in the messages then helps the operator). A node added to or removed from a cluster
changes its identity too; `--resume` and `undrain` then refuse and say so, naming both.

Imports: the standard library and `pvetool.model`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pvetool.model import ClusterSnapshot

__all__ = ["UNKNOWN", "ClusterIdentity", "identity_of"]

# What a folder name may hold: PVE cluster names are [A-Za-z0-9-] (pve-cluster `pvecm create`
# checks `^[A-Za-z][A-Za-z0-9\-]{0,14}$`) and node names are host names; anything else is
# replaced so a name read from an answer can never walk out of the state folder.
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ClusterIdentity:
    """A cluster's name (None: a single node), its sorted node names, and the endpoint."""

    name: str | None
    nodes: tuple[str, ...]
    endpoint: str = ""

    @property
    def key(self) -> str:
        """The folder name of this cluster's state: ``lab``, or ``node-pve1`` for a single
        node without a cluster."""
        if self.name:
            raw = self.name
        elif len(self.nodes) == 1:
            raw = "node-" + self.nodes[0]
        else:
            raw = "nodes-" + hashlib.sha256(",".join(self.nodes).encode()).hexdigest()[:12]
        safe = _SAFE.sub("_", raw).lstrip(".")
        return safe or "unknown"

    @property
    def label(self) -> str:
        """For messages: ``cluster 'lab' (pve1, pve2, pve3)`` or ``node 'pve1' (no cluster)``."""
        if self.name is None and not self.nodes:
            return "an unknown cluster (a journal written before runs recorded their cluster)"
        if self.name:
            text = f"cluster '{self.name}' ({', '.join(self.nodes)})"
        elif len(self.nodes) == 1:
            text = f"node '{self.nodes[0]}' (no cluster)"
        else:
            text = f"nodes {', '.join(self.nodes)} (no cluster name)"
        return f"{text} at {self.endpoint}" if self.endpoint else text

    def same_cluster(self, other: ClusterIdentity) -> bool:
        """Same name and the same nodes (the endpoint may differ)."""
        return self.name == other.name and self.nodes == other.nodes

    @property
    def known(self) -> bool:
        return bool(self.name or self.nodes)


UNKNOWN = ClusterIdentity(None, ())


def identity_of(snapshot: ClusterSnapshot, endpoint: str = "") -> ClusterIdentity:
    """The identity of the cluster `snapshot` was read from (`endpoint`: where it answered)."""
    return ClusterIdentity(snapshot.cluster_name or None, tuple(sorted(snapshot.nodes)), endpoint)
