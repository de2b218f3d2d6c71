"""`drained_issues`: a node pvetool drained takes no guests until `pvetool undrain` releases it.

The CLI puts the nodes pvetool remembers as drained (`pvetool.state.drained`) into
`ClusterSnapshot.held_nodes`; every target check asks here first (finding ``PVT-DRAINED``).

Imports: `pvetool.model` and the package's `verdicts`.
"""

from __future__ import annotations

from pvetool.model import ClusterSnapshot
from pvetool.planner.checks.verdicts import Issue

__all__ = ["drained_issues"]


def drained_issues(target: str, snap: ClusterSnapshot) -> list[Issue]:
    """A blocker when `target` is a node pvetool drained (its run and since when)."""
    held = snap.held_nodes.get(target)
    if held is None:
        return []
    return [
        Issue(
            "PVT-DRAINED",
            "blocker",
            f"{target} is {held} and takes no guests until `pvetool undrain {target}`",
        )
    ]
