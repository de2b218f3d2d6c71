"""`pvetool status`: the cluster overview as rich tables or as plain data."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pvetool.api.overview import ClusterOverview
from pvetool.model import Guest, Node
from pvetool.render.formats import gib


def _ha_state(ov: ClusterOverview, node: str) -> str:
    if ov.ha is None:
        return "?"
    text = ov.ha.lrm.get(node, "")
    if "maintenance" in text:
        return "maintenance"
    for word in ("active", "idle", "dead", "wait_for_agent_lock"):
        if word in text:
            return word
    return "-" if not text else text.split("(")[-1].split(",")[0]


def status_data(ov: ClusterOverview) -> dict[str, Any]:
    nodes = []
    for n in ov.nodes:
        guests = ov.guests_on(n.name)
        nodes.append(
            {
                "node": n.name,
                "online": n.online,
                "version": ov.versions[n.name].version if n.name in ov.versions else None,
                "guests": len(guests),
                "running": sum(1 for g in guests if g.running),
                "memory_used_bytes": n.memory_used_bytes,
                "memory_total_bytes": n.memory_total_bytes,
                "cpu_fraction": round(n.cpu_fraction, 4),
                "cpus": n.cpus,
                "ha": _ha_state(ov, n.name),
            }
        )
    return {
        "cluster": ov.status.name,
        "quorate": ov.status.quorate,
        "nodes_online": len(ov.status.online_nodes),
        "nodes_total": len(ov.status.nodes),
        "nodes": nodes,
        "guests": [_guest_data(g) for g in sorted(ov.guests, key=lambda g: g.vmid)],
    }


def _guest_data(g: Guest) -> dict[str, Any]:
    return {
        "vmid": g.vmid,
        "name": g.name,
        "type": g.kind,
        "node": g.node,
        "status": g.status,
        "memory_bytes": g.memory_bytes,
        "used_memory_bytes": g.used_memory_bytes,
        "cores": g.cores,
        "lock": g.lock,
        "ha": g.ha_state,
        "template": g.template,
        "tags": list(g.tags),
        "pool": g.pool,
    }


def _pct(used: float, total: float) -> str:
    return f"{100 * used / total:.0f}%" if total else "-"


def _node_row(ov: ClusterOverview, n: Node) -> list[RenderableType]:
    guests = ov.guests_on(n.name)
    running = sum(1 for g in guests if g.running)
    version = ov.versions[n.name].version if n.name in ov.versions else "-"
    state = Text("online", style="green") if n.online else Text("offline", style="bold red")
    if not n.online:
        return [n.name, state, version, f"{running}/{len(guests)}", "-", "-", _ha_state(ov, n.name)]
    mem = (
        f"{n.memory_used_bytes / 1024**3:.1f}/{n.memory_total_bytes / 1024**3:.0f} GiB "
        f"{_pct(n.memory_used_bytes, n.memory_total_bytes)}"
    )
    cpu = f"{100 * n.cpu_fraction:.0f}% of {n.cpus}"
    return [n.name, state, version, f"{running}/{len(guests)}", mem, cpu, _ha_state(ov, n.name)]


def status_renderable(ov: ClusterOverview) -> RenderableType:
    quorum = (
        Text("quorate", style="green")
        if ov.status.quorate
        else Text("NOT quorate", style="bold red")
    )
    head = Text.assemble(
        ("cluster ", "bold"),
        (ov.status.name or "(single node)", "bold"),
        ": ",
        quorum,
        f", {len(ov.status.online_nodes)}/{len(ov.status.nodes)} nodes online, "
        f"{len(ov.guests)} guests",
    )
    nodes = Table(title="Nodes", title_justify="left")
    for col in ("node", "status", "version", "run/all", "memory used", "CPU", "HA"):
        nodes.add_column(col)
    for n in ov.nodes:
        nodes.add_row(*_node_row(ov, n))
    parts: list[RenderableType] = [head, nodes]
    for n in ov.nodes:
        guests = ov.guests_on(n.name)
        if not guests:
            continue
        t = Table(title=f"Guests on {n.name}", title_justify="left")
        for col in ("vmid", "name", "type", "status", "memory", "cores", "lock", "HA", "tags"):
            t.add_column(col)
        for g in guests:
            t.add_row(
                str(g.vmid),
                g.name,
                "template" if g.template else g.kind,
                g.status,
                gib(g.memory_bytes),
                str(g.cores),
                g.lock or "",
                g.ha_state or "",
                ",".join(g.tags),
            )
        parts.append(t)
    return Group(*parts)
