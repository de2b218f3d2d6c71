"""Nodes pvetool drained, remembered per cluster until `pvetool undrain NODE`.

``<cluster folder>/drained.json`` (`pvetool.state.layout`) maps a node to the run that drained
it and since when. A drain (``pvetool drain``, a plan's ``drain`` step) records its nodes when
the run starts (what the operator decided, whatever the run then managed to move); `undrain`
forgets the node when it starts bringing guests back, or when there is nothing left to bring.
The planner never chooses a remembered node as a target (finding ``PVT-DRAINED``, through
`ClusterSnapshot.held_nodes`), and ``status`` says "drained by pvetool (run ..., since ...)".

Rolling maintenance is not recorded: it brings each node's guests back itself.

The file is replaced atomically (written beside it, fsync'd, renamed), mode 0600.

Imports: the standard library and the package's `layout`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pvetool.state.layout import ClusterState

__all__ = ["DrainHold", "forget", "held_nodes", "holds", "remember"]

FILE = "drained.json"


@dataclass(frozen=True)
class DrainHold:
    """A node pvetool drained: by which run, since when (epoch seconds), which command."""

    node: str
    run_id: str
    since_t: float
    command: str = ""

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.since_t))
        return f"drained by pvetool (run {self.run_id}, since {since})"


def holds(cluster: ClusterState) -> dict[str, DrainHold]:
    """The nodes of `cluster` that pvetool drained and no undrain has released yet."""
    path = cluster.root / FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # unreadable: the journals still drive undrain; nothing is held by it
    out: dict[str, DrainHold] = {}
    for node, entry in data.items() if isinstance(data, dict) else []:
        if not isinstance(entry, dict):
            continue
        try:
            out[str(node)] = DrainHold(
                str(node),
                str(entry["run"]),
                float(entry["since"]),
                str(entry.get("command", "")),
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out


def held_nodes(cluster: ClusterState) -> dict[str, str]:
    """node -> "drained by pvetool (run ..., since ...)" (what `ClusterSnapshot.held_nodes`
    carries to the planner)."""
    return {node: hold.describe() for node, hold in holds(cluster).items()}


def _write(cluster: ClusterState, entries: Mapping[str, DrainHold]) -> None:
    folder = cluster.ensure()
    path = folder / FILE
    data = {
        node: {"run": h.run_id, "since": round(h.since_t, 3), "command": h.command}
        for node, h in sorted(entries.items())
    }
    temp = folder / f".{FILE}.{os.getpid()}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def remember(
    cluster: ClusterState, nodes: Iterable[str], run_id: str, command: str, now: float
) -> None:
    """Record `nodes` as drained by `run_id` (a node already held keeps its first record)."""
    entries = holds(cluster)
    changed = False
    for node in nodes:
        if node not in entries:
            entries[node] = DrainHold(node, run_id, now, command)
            changed = True
    if changed:
        _write(cluster, entries)


def forget(cluster: ClusterState, node: str) -> DrainHold | None:
    """Release `node` (undrain); the hold it had, or None."""
    entries = holds(cluster)
    hold = entries.pop(node, None)
    if hold is not None:
        _write(cluster, entries)
    return hold
