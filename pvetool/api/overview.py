"""`fetch_overview()`: what `pvetool status` shows, in a handful of calls.

Quorum and membership (`/cluster/status`), usage of every node and guest (`/cluster/resources`,
once), HA state (`/cluster/ha/status/current`) and each online node's PVE version (at most
`max_workers` of these in flight). Guest configs are not read (that is what the planner's
`fetch_snapshot` does). Imports: pvetool.model and the client (no HTTP library directly).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pvetool.api.client import PveClient
from pvetool.api.snapshot import check_guest_nodes
from pvetool.errors import ApiError, ApiUnreachable
from pvetool.model import ClusterStatus, Guest, HaStatus, Node, PveVersion


@dataclass(frozen=True)
class ClusterOverview:
    status: ClusterStatus
    nodes: tuple[Node, ...]
    guests: tuple[Guest, ...]
    ha: HaStatus | None
    versions: dict[str, PveVersion]
    _by_node: dict[str, tuple[Guest, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def guests_on(self, node: str) -> tuple[Guest, ...]:
        """The guests on `node` by VMID (grouped once: `status` asks for every node, several
        times, and a scan per question was 15,000 passes at 100 nodes / 5,000 guests)."""
        if not self._by_node:
            grouped: dict[str, list[Guest]] = {}
            for g in sorted(self.guests, key=lambda g: g.vmid):
                grouped.setdefault(g.node, []).append(g)
            self._by_node.update({n: tuple(gs) for n, gs in grouped.items()})
            self._by_node.setdefault("", ())  # grouped, even for a cluster without guests
        return self._by_node.get(node, ())


def fetch_overview(client: PveClient, *, max_workers: int = 8) -> ClusterOverview:
    status = client.cluster_status()
    resources = client.cluster_resources()
    check_guest_nodes(client, status, resources)  # never "0 guests" on pve1 when it has six
    try:
        ha: HaStatus | None = client.ha_status()
    except ApiError:
        ha = None  # e.g. a token without Sys.Audit on /: show the rest
    versions: dict[str, PveVersion] = {}
    online = [node.name for node in resources.nodes if node.online]
    # A few at a time over the client's kept-alive connections: one round trip per node,
    # sequentially, was most of `status`'s wait on a 100-node cluster.
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="pve") as pool:
        futures = {name: pool.submit(client.node_version, name) for name in online}
        for name, future in futures.items():
            try:
                versions[name] = future.result()
            except (ApiError, ApiUnreachable):
                continue  # went offline meanwhile: shown without a version
    nodes = tuple(sorted(resources.nodes, key=lambda n: node_order(n.name)))
    return ClusterOverview(status, nodes, resources.guests, ha, versions)


def node_order(name: str) -> tuple[str | int, ...]:
    """Sort key for node names as an administrator counts: pve2 before pve10 (the split
    alternates text and digits, so the parts compare type by type)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
