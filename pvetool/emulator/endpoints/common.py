"""What several endpoint modules build: a call's node and guest, and PVE's resource entries.

The entries of ``/cluster/resources`` (pve-manager `PVE/API2/Cluster.pm` `resources`) are also
the members of a pool; `rrd_points` is the shape of every ``rrddata`` answer.

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pvetool.emulator.cluster import Cluster, GuestRt, Usage
from pvetool.emulator.routing import Ctx

__all__ = [
    "guest_of",
    "guest_resource",
    "guest_uptime",
    "node_resource",
    "node_uptime",
    "proxied_node",
    "rrd_points",
    "storage_resource",
    "tags_of",
]


# -- helpers ---------------------------------------------------------------------------------
def proxied_node(ctx: Ctx) -> str:
    name = str(ctx.params["node"])
    ctx.cluster.require_online(name)
    return name


def guest_of(ctx: Ctx, kind: str) -> GuestRt:
    node = proxied_node(ctx)
    return ctx.cluster.guest_on(node, int(ctx.params["vmid"]), kind)


def tags_of(g: GuestRt) -> str:
    return ";".join(g.spec.tags)


def guest_uptime(c: Cluster, g: GuestRt) -> int:
    return int(c.now - g.started_at_s) if g.status == "running" else 0


def node_uptime(c: Cluster, name: str) -> int:
    return int(c.now - c.nodes[name].boot_epoch_s)


def rrd_points(ctx: Ctx, values: Callable[[], dict[str, float]]) -> list[dict[str, Any]]:
    frames = {
        "hour": 60,
        "day": 1800,
        "week": 10800,
        "month": 43200,
        "year": 604800,
        "decade": 6048000,
    }
    step = frames[str(ctx.params.get("timeframe", "hour"))]
    now = int(ctx.cluster.now) // step * step
    current = values()
    return [{"time": now - i * step, **current} for i in range(69, -1, -1)]


def guest_resource(c: Cluster, g: GuestRt) -> dict[str, Any]:
    status = c.guest_status(g)
    running = g.status == "running" and status != "unknown"
    disk_total = sum(d.size_bytes for d in g.disks)
    res: dict[str, Any] = {
        "id": f"{g.type}/{g.vmid}",
        "type": g.type,
        "vmid": g.vmid,
        "name": g.name,
        "node": g.node,
        "status": status,
        "maxmem": g.memory_bytes,
        "mem": g.used_bytes if running else 0,
        "maxcpu": g.spec.cores,
        "cpu": round(g.cpu_load, 4) if running else 0,
        "maxdisk": disk_total,
        "disk": 0,
        "diskread": 0,
        "diskwrite": 0,
        "netin": 0,
        "netout": 0,
        "uptime": guest_uptime(c, g) if running else 0,
        "template": 1 if g.spec.template else 0,
    }
    if g.type == "qemu" and running:
        res["memhost"] = g.used_bytes
    if g.spec.tags:
        res["tags"] = tags_of(g)
    if g.spec.pool:
        res["pool"] = g.spec.pool
    if g.lock:
        res["lock"] = g.lock
    if g.spec.ha:
        res["hastate"] = g.ha_state or "started"
    return res


def node_resource(c: Cluster, name: str, u: Usage) -> dict[str, Any]:
    n = c.nodes[name]
    online = n.online
    res: dict[str, Any] = {
        "id": f"node/{name}",
        "type": "node",
        "node": name,
        "status": "online" if online else "offline",
        "maxcpu": n.spec.cpus,
        "maxmem": n.spec.memory_bytes,
        "maxdisk": 100 * 1024**3,
        "level": "",
        "cgroup-mode": 2,
        "host-arch": n.spec.arch,
    }
    if online:
        res.update(
            {
                "cpu": round(c.node_cpu(name, u), 4),
                "mem": u.mem_used[name],
                "disk": 12 * 1024**3,
                "uptime": int(c.now - n.boot_epoch_s),
            }
        )
    return res


def storage_resource(c: Cluster, storage: str, node: str, u: Usage) -> dict[str, Any]:
    st = c.spec.storages[storage]
    online = c.nodes[node].online
    return {
        "id": f"storage/{node}/{storage}",
        "type": "storage",
        "storage": storage,
        "node": node,
        "status": "available" if online else "unknown",
        "plugintype": st.type,
        "shared": 1 if st.shared else 0,
        "content": ",".join(st.content),
        "maxdisk": st.size_bytes,
        "disk": c.storage_used(storage, node, u),
    }
