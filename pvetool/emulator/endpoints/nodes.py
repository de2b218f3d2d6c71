"""Node endpoints: /nodes, /nodes/{node}/{status,time,version,rrddata,storage,network,migrateall}.

After pve-manager `PVE/API2/Nodes.pm` (and `PVE/API2/Network.pm`, pve-storage
`PVE/API2/Storage/Status.pm`). A call proxied to an offline node gets pveproxy's 595.

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any

from pvetool.emulator import migrate
from pvetool.emulator.cluster import Cluster
from pvetool.emulator.endpoints.common import node_uptime, proxied_node, rrd_points
from pvetool.emulator.routing import Ctx, endpoint


@endpoint("GET", "/nodes")
def get_nodes(ctx: Ctx) -> Any:
    c = ctx.cluster
    u = c.usage()
    out = []
    for name, n in c.nodes.items():
        e: dict[str, Any] = {
            "node": name,
            "status": "online" if n.online else "offline",
            "id": f"node/{name}",
            "type": "node",
            "maxcpu": n.spec.cpus,
            "maxmem": n.spec.memory_bytes,
            "level": "",
            "ssl_fingerprint": _node_fingerprint(c, name),
        }
        if n.online:
            e.update(
                {
                    "cpu": round(c.node_cpu(name, u), 4),
                    "mem": u.mem_used[name],
                    "uptime": node_uptime(c, name),
                    "maxdisk": 100 * 1024**3,
                    "disk": 12 * 1024**3,
                }
            )
        out.append(e)
    return out


def _node_fingerprint(c: Cluster, name: str) -> str:
    digest = hashlib.sha256(f"{c.spec.name}/{name}/{c.spec.seed}".encode()).digest()
    return ":".join(f"{b:02X}" for b in digest)


@endpoint("GET", "/nodes/{node}/time")
def get_node_time(ctx: Ctx) -> Any:
    """pve-manager PVE/API2/Nodes.pm `time` (proxied to the node): its time zone
    (/etc/timezone), the epoch time and the local time as epoch seconds."""
    c = ctx.cluster
    proxied_node(ctx)
    now = int(c.now)
    offset = datetime.datetime.fromtimestamp(now, c.tz).utcoffset()
    local = now + int(offset.total_seconds()) if offset is not None else now
    return {"timezone": c.spec.datacenter.timezone, "time": now, "localtime": local}


@endpoint("GET", "/nodes/{node}/status")
def get_node_status(ctx: Ctx) -> Any:
    c = ctx.cluster
    name = proxied_node(ctx)
    n = c.nodes[name]
    used = c.node_used_memory(name)
    total = n.spec.memory_bytes
    cpu = c.node_cpu(name)
    load = cpu * n.spec.cpus
    return {
        "uptime": node_uptime(c, name),
        "cpu": round(cpu, 4),
        "wait": 0.0,
        "idle": 0,
        "loadavg": [f"{load:.2f}", f"{load * 0.95:.2f}", f"{load * 0.9:.2f}"],
        "cpuinfo": {
            "model": n.spec.cpu_model,
            "cpus": n.spec.cpus,
            "cores": max(1, n.spec.cpus // 2),
            "sockets": 1,
            "mhz": "2345.000",
            "hvm": "1",
            "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr",
            "user_hz": 100,
        },
        "memory": {"total": total, "used": used, "free": total - used, "available": total - used},
        "swap": {"total": 8 * 1024**3, "used": 0, "free": 8 * 1024**3},
        "ksm": {"shared": 0},
        "rootfs": {
            "total": 100 * 1024**3,
            "used": 12 * 1024**3,
            "free": 88 * 1024**3,
            "avail": 83 * 1024**3,
        },
        "boot-info": {"mode": "efi", "secureboot": 0},
        "current-kernel": {
            "sysname": "Linux",
            "release": "6.14.11-4-pve",
            "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.14.11-4 (2025-10-10T08:04Z)",
            "machine": n.spec.arch,
        },
        "kversion": "Linux 6.14.11-4-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.11-4",
        "pveversion": f"pve-manager/{n.spec.version}/ad4f3b8f8e7b2c1d",
    }


@endpoint("GET", "/nodes/{node}/version")
def get_node_version(ctx: Ctx) -> Any:
    c = ctx.cluster
    name = proxied_node(ctx)
    v = c.nodes[name].spec.version
    return {"version": v, "release": ".".join(v.split(".")[:2]), "repoid": "ad4f3b8f8e7b2c1d"}


@endpoint("GET", "/nodes/{node}/rrddata")
def get_node_rrd(ctx: Ctx) -> Any:
    c = ctx.cluster
    name = proxied_node(ctx)
    n = c.nodes[name]
    return rrd_points(
        ctx,
        lambda: {
            "cpu": c.node_cpu(name),
            "maxcpu": float(n.spec.cpus),
            "memused": float(c.node_used_memory(name)),
            "memtotal": float(n.spec.memory_bytes),
            "loadavg": c.node_cpu(name) * n.spec.cpus,
            "netin": 0.0,
            "netout": 0.0,
        },
    )


@endpoint("GET", "/nodes/{node}/storage")
def get_node_storage(ctx: Ctx) -> Any:
    c = ctx.cluster
    name = proxied_node(ctx)
    wanted = ctx.params.get("storage")
    content = ctx.params.get("content")
    out = []
    for sid, st in c.spec.storages.items():
        if wanted and sid != wanted:
            continue
        if content and not set(str(content).split(",")) & set(st.content):
            continue
        available = c.storage_available_on(sid, name)
        if not available and ctx.params.get("enabled"):
            continue
        if not available:
            continue
        used = c.storage_used(sid, name)
        out.append(
            {
                "storage": sid,
                "type": st.type,
                "content": ",".join(st.content),
                "shared": 1 if st.shared else 0,
                "active": 1,
                "enabled": 1,
                "total": st.size_bytes,
                "used": used,
                "avail": max(0, st.size_bytes - used),
                "used_fraction": used / st.size_bytes if st.size_bytes else 0.0,
            }
        )
    return out


@endpoint("GET", "/nodes/{node}/storage/{storage}/content")
def get_storage_content(ctx: Ctx) -> Any:
    """pve-storage src/PVE/API2/Storage/Content.pm `index`: the guest volumes on a storage as
    that node sees it (`volume_list`: shared storages hold every node's guests, local ones only
    this node's), each with its size; a volume only for a caller with Datastore.Allocate on the
    storage, or Datastore.Audit on it and VM.Config.Disk on its guest (Storage.pm
    `check_volume_access`, l.619-656). ISO images and templates are not modelled."""
    c = ctx.cluster
    name = proxied_node(ctx)
    sid = ctx.params["storage"]
    c.storage_check_enabled(sid, name)
    shared = c.spec.storages[sid].shared
    want_vmid = ctx.params.get("vmid")
    want_content = ctx.params.get("content")
    allocate = ctx.caller.has(f"/storage/{sid}", ["Datastore.Allocate"])
    audit = ctx.caller.has(f"/storage/{sid}", ["Datastore.Audit"])
    out: list[dict[str, Any]] = []
    for vmid in sorted(c.guests):
        g = c.guests[vmid]
        if want_vmid is not None and int(want_vmid) != vmid:
            continue
        if not shared and g.node != name:
            continue
        content = "images" if g.type == "qemu" else "rootdir"
        if want_content and want_content != content:
            continue
        if not allocate and not (audit and ctx.caller.has(f"/vms/{vmid}", ["VM.Config.Disk"])):
            continue
        for d in g.disks:
            if d.cdrom or d.storage != sid:
                continue
            out.append(
                {
                    "volid": d.volid,
                    "content": content,
                    "format": "raw",
                    "size": d.size_bytes,
                    "used": d.alloc_bytes,
                    "vmid": vmid,
                    "ctime": int(c.now) - 86400,
                }
            )
    return out


@endpoint("GET", "/nodes/{node}/network")
def get_network(ctx: Ctx) -> Any:
    c = ctx.cluster
    name = proxied_node(ctx)
    n = c.nodes[name]
    want = ctx.params.get("type")
    out: list[dict[str, Any]] = []
    ifaces: list[tuple[str, str, str | None]] = [("eno1", "eth", None), ("eno2", "eth", None)]
    for i, br in enumerate(n.spec.bridges):
        ifaces.append((br, "bridge", "eno1" if i == 0 else "eno2"))
    for iface, itype, port in ifaces:
        if want and want not in (itype, "any_bridge", "any_local_bridge"):
            continue
        if want in ("any_bridge", "any_local_bridge") and itype != "bridge":
            continue
        e: dict[str, Any] = {
            "iface": iface,
            "type": itype,
            "method": "manual",
            "method6": "manual",
            "families": ["inet"],
            "active": 1,
            "autostart": 1,
            "priority": len(out) + 1,
        }
        if itype == "bridge":
            e["bridge_ports"] = port
            e["bridge_stp"] = "off"
            e["bridge_fd"] = "0"
            e["bridge_vlan_aware"] = 1
            e["bridge_vids"] = "2-4094"
            if iface == n.spec.bridges[0]:
                e["method"] = "static"
                e["address"] = n.ip
                e["netmask"] = "24"
                e["cidr"] = f"{n.ip}/24"
                e["gateway"] = "10.0.0.1"
        else:
            e["exists"] = 1
        out.append(e)
    return out


@endpoint("POST", "/nodes/{node}/migrateall")
def post_migrateall(ctx: Ctx) -> Any:
    """pve-manager PVE/API2/Nodes.pm migrateall (l.2707-2793)."""
    node = proxied_node(ctx)
    p = ctx.params
    vms = None
    if p.get("vms"):
        vms = [int(v) for v in re.split(r"[,;\s\0]+", str(p["vms"])) if v]
    workers = p.get("max-workers") or p.get("maxworkers")
    wld = p.get("with-local-disks")
    task = migrate.migrate_all(
        ctx.cluster,
        node,
        str(p["target"]),
        int(workers) if workers else None,
        vms,
        None if wld is None else bool(wld),
        ctx.caller,
    )
    return task.upid
