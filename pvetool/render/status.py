"""`pvetool status`: the cluster overview as rich tables or as plain data."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from pvetool.api.overview import ClusterOverview
from pvetool.model import Guest, Node
from pvetool.render.fit import Cell, Col, FitTable
from pvetool.render.formats import md_table


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
                "memory_allocated_bytes": _allocated_bytes(ov, n.name),
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


def _gib(n_bytes: float) -> str:
    """A number of GiB for a cell under a ``GiB`` header (512 MiB is ``0.5``)."""
    return f"{n_bytes / 1024**3:.1f}"


def _allocated_bytes(ov: ClusterOverview, node: str) -> int:
    """Configured memory of the running guests on `node`: what `rebalance --by memory` balances."""
    return sum(g.memory_bytes for g in ov.guests_on(node) if g.running)


def _node_row(ov: ClusterOverview, n: Node) -> list[Cell]:
    guests = ov.guests_on(n.name)
    running = sum(1 for g in guests if g.running)
    version = ov.versions[n.name].version if n.name in ov.versions else "-"
    state = Text("online", style="green") if n.online else Text("offline", style="bold red")
    if not n.online:
        return [n.name, state, version, f"{running}/{len(guests)}", "-", "-", "-", "-"]
    total = n.memory_total_bytes
    used = f"{_gib(n.memory_used_bytes)}/{total / 1024**3:.0f} {_pct(n.memory_used_bytes, total)}"
    allocated_bytes = _allocated_bytes(ov, n.name)
    allocated = f"{_gib(allocated_bytes)} {_pct(allocated_bytes, total)}"
    cpu = f"{100 * n.cpu_fraction:.0f}% of {n.cpus}"
    return [
        n.name,
        state,
        version,
        f"{running}/{len(guests)}",
        used,
        allocated,
        cpu,
        _ha_state(ov, n.name),
    ]


_NODE_COLS = (
    Col("node"),
    Col("status", keep=60),
    Col("version", keep=20),
    Col("run/all", keep=70),
    Col("used GiB", keep=90),
    Col("allocated GiB", keep=80),
    Col("CPU", keep=50),
    Col("HA", keep=40),
)

_GUEST_COLS = (
    Col("vmid", justify="right"),
    Col("name"),
    Col("type", keep=50),
    Col("status", keep=90),
    Col("memory GiB", keep=80, justify="right"),
    Col("cores", keep=40, justify="right"),
    Col("lock", keep=85),
    Col("HA", keep=60),
    Col("tags", keep=30, wrap=True),
)


def status_renderable(ov: ClusterOverview) -> RenderableType:
    """Quorum, a nodes table and one guests table per node, each fitted to the terminal.

    Memory is shown twice, labelled: *used* (what the node reports, as PVE's GUI shows it) and
    *allocated* (configured memory of its running guests, what `rebalance` balances)."""
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
    nodes = FitTable(_NODE_COLS, [_node_row(ov, n) for n in ov.nodes], title="Nodes", heavy=True)
    parts: list[RenderableType] = [head, nodes]
    for n in ov.nodes:
        guests = ov.guests_on(n.name)
        if not guests:
            continue
        rows: list[list[Cell]] = [
            [
                str(g.vmid),
                g.name,
                "template" if g.template else g.kind,
                g.status,
                _gib(g.memory_bytes),
                str(g.cores),
                g.lock or "",
                g.ha_state or "",
                " ".join(g.tags),
            ]
            for g in guests
        ]
        parts.append(FitTable(_GUEST_COLS, rows, title=f"Guests on {n.name}", heavy=True))
    parts.append(
        Text(
            "used: memory the node reports in use; allocated: configured memory of its running "
            "guests (what rebalance balances)",
            style="dim",
        )
    )
    return Group(*parts)


def status_markdown(ov: ClusterOverview) -> str:
    """The overview as Markdown (``status -o markdown``): for a ticket or a wiki page."""
    data = status_data(ov)
    quorum = "quorate" if data["quorate"] else "NOT quorate"
    out = [
        f"# Cluster {data['cluster'] or '(single node)'}",
        "",
        f"{quorum}, {data['nodes_online']}/{data['nodes_total']} nodes online, "
        f"{len(data['guests'])} guests",
        "",
        "## Nodes",
        "",
    ]
    rows: list[list[object]] = []
    for n in data["nodes"]:
        total = n["memory_total_bytes"]
        rows.append(
            [
                n["node"],
                "online" if n["online"] else "offline",
                n["version"] or "-",
                f"{n['running']}/{n['guests']}",
                f"{_gib(n['memory_used_bytes'])} ({_pct(n['memory_used_bytes'], total)})",
                f"{_gib(n['memory_allocated_bytes'])} ({_pct(n['memory_allocated_bytes'], total)})",
                _gib(total),
                f"{100 * n['cpu_fraction']:.0f}% of {n['cpus']}",
                n["ha"],
            ]
        )
    headers = ["node", "status", "version", "run/all", "used GiB", "allocated GiB", "total GiB"]
    out += md_table([*headers, "CPU", "HA"], rows)
    out += ["", "## Guests", ""]
    out += md_table(
        ["vmid", "name", "type", "node", "status", "memory GiB", "cores", "lock", "HA", "tags"],
        [
            [
                g["vmid"],
                g["name"],
                "template" if g["template"] else g["type"],
                g["node"],
                g["status"],
                _gib(g["memory_bytes"]),
                g["cores"],
                g["lock"] or "",
                g["ha"] or "",
                " ".join(g["tags"]),
            ]
            for g in data["guests"]
        ],
    )
    out += [
        "",
        "used: memory the node reports in use; allocated: configured memory of its running "
        "guests (what rebalance balances).",
    ]
    return "\n".join(out) + "\n"
