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


def guest_resource(c: Cluster, g: GuestRt, *, rrd: bool = True) -> dict[str, Any]:
    """A guest's row as pve-manager `PVE/API2Tools.pm` `extract_vm_stats` (l.81-119) builds it
    from the RRD data (`rrd=True`: as pvestatd last broadcast it; False: live), plus `lock`,
    `tags` (config) and `pool`; `hastate` is added by the caller that knows the HA state."""
    stats = c.rrd_stats(g) if rrd else c.live_stats(g)
    disk_total = sum(d.size_bytes for d in g.disks if not d.cdrom and not d.unused)
    res: dict[str, Any] = {
        "id": f"{g.type}/{g.vmid}",
        "type": g.type,
        "vmid": g.vmid,
        "name": g.name,
        "node": g.node,
        "status": stats["status"],
        "maxmem": g.memory_bytes,
        "mem": stats["mem"],
        "maxcpu": g.spec.cores,
        "cpu": stats["cpu"],
        "maxdisk": disk_total,
        "disk": 0,
        "diskread": 0,
        "diskwrite": 0,
        "netin": 0,
        "netout": 0,
        "uptime": stats["uptime"],
        "template": 1 if g.spec.template else 0,
        # l.113-115: every guest with a pve-vm-9.0 RRD key (qemu and lxc) has memhost.
        "memhost": stats["mem"],
    }
    if g.spec.tags:
        res["tags"] = tags_of(g)
    if g.spec.pool:
        res["pool"] = g.spec.pool
    if g.lock:
        res["lock"] = g.lock
    return res


def node_resource(c: Cluster, name: str, u: Usage, *, stats: bool = True) -> dict[str, Any]:
    """pve-manager PVE/API2Tools.pm extract_node_stats (l.38-79): without Sys.Audit on the node
    (`stats=False`) no uptime, cpu, mem, disk and no maxima."""
    n = c.nodes[name]
    online = n.online
    res: dict[str, Any] = {
        "id": f"node/{name}",
        "type": "node",
        "node": name,
        "status": "online" if online else "offline",
        "level": "",
        "cgroup-mode": 2,
        "host-arch": n.spec.arch,
    }
    if stats:
        res.update({"maxcpu": n.spec.cpus, "maxmem": n.spec.memory_bytes, "maxdisk": 100 * 1024**3})
    if online and stats:
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
