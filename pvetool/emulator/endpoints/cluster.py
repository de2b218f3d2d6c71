"""Cluster-wide endpoints: /version, /cluster/{status,resources,options,nextid,replication},
/storage and /pools.

After pve-manager `PVE/API2/Cluster.pm`, `PVE/API2/ClusterConfig.pm` and `PVE/API2/Pool.pm`,
pve-storage `PVE/API2/Storage/Config.pm` and pve-manager's replication API
(`PVE/API2/ReplicationConfig.pm`).

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pvetool.emulator.cluster import Cluster, PveError
from pvetool.emulator.endpoints.common import guest_resource, node_resource, storage_resource
from pvetool.emulator.routing import Ctx, endpoint


# -- version, nodes, cluster -------------------------------------------------------------------
@endpoint("GET", "/version")
def get_version(ctx: Ctx) -> Any:
    versions = sorted(n.spec.version for n in ctx.cluster.nodes.values())
    v = versions[-1]
    major_minor = ".".join(v.split(".")[:2])
    return {"version": v, "release": major_minor, "repoid": "ad4f3b8f8e7b2c1d"}


@endpoint("GET", "/cluster/status")
def get_cluster_status(ctx: Ctx) -> Any:
    c = ctx.cluster
    out: list[dict[str, Any]] = [
        {
            "type": "cluster",
            "id": "cluster",
            "name": c.spec.name,
            "nodes": len(c.nodes),
            "quorate": 1 if c.quorate else 0,
            "version": len(c.nodes) + 2,
        }
    ]
    first_online = next((n for n in c.nodes.values() if n.online), None)
    for n in c.nodes.values():
        out.append(
            {
                "type": "node",
                "id": f"node/{n.name}",
                "name": n.name,
                "nodeid": n.nodeid,
                "ip": n.ip,
                "online": 1 if n.online else 0,
                "local": 1 if first_online is n else 0,
                "level": "",
            }
        )
    return out


@endpoint("GET", "/cluster/resources")
def get_cluster_resources(ctx: Ctx) -> Any:
    c = ctx.cluster
    rtype = ctx.params.get("type")
    u = c.usage()
    out: list[dict[str, Any]] = []
    if rtype in (None, "vm"):
        for g in c.guests.values():
            out.append(guest_resource(c, g))
    if rtype in (None, "node"):
        for name in c.nodes:
            out.append(node_resource(c, name, u))
    if rtype in (None, "storage"):
        for name in c.nodes:
            for storage in c.spec.storages:
                if c.storage_available_on(storage, name):
                    out.append(storage_resource(c, storage, name, u))
    if rtype is None:
        for pool in sorted({g.spec.pool for g in c.guests.values() if g.spec.pool}):
            out.append({"id": f"/pool/{pool}", "type": "pool", "pool": pool})
    if not ctx.caller.has(["VM.Audit"]) and ctx.caller.privileges is not None:
        out = [r for r in out if r["type"] not in ("qemu", "lxc")]
    return out


@endpoint("GET", "/cluster/options")
def get_cluster_options(ctx: Ctx) -> Any:
    dc = ctx.cluster.spec.datacenter
    mig = f"type={dc.migration_type}"
    if dc.migration_network:
        mig += f",network={dc.migration_network}"
    res: dict[str, Any] = {
        "migration": {
            "type": dc.migration_type,
            **({"network": dc.migration_network} if dc.migration_network else {}),
        },
        "max_workers": dc.max_workers,
        "keyboard": "en-us",
        "ha": {"shutdown_policy": dc.ha_shutdown_policy},
    }
    if dc.bwlimit_migration_KiBps:
        res["bwlimit"] = {"migration": dc.bwlimit_migration_KiBps}
    return res


@endpoint("GET", "/cluster/nextid")
def get_nextid(ctx: Ctx) -> Any:
    used = set(ctx.cluster.guests)
    vmid = 100
    while vmid in used:
        vmid += 1
    return vmid


@endpoint("GET", "/cluster/replication")
def get_replication(ctx: Ctx) -> Any:
    """Storage replication jobs (replication.cfg): one per `replicate:` target of a guest, by
    job number; only guests the caller may audit (PVE checks VM.Audit per guest)."""
    out: list[dict[str, Any]] = []
    if not ctx.caller.has(["VM.Audit"]):
        return out
    for vmid, g in sorted(ctx.cluster.guests.items()):
        for jobnum, target in enumerate(g.replicate):
            out.append(
                {
                    "id": f"{vmid}-{jobnum}",
                    "jobnum": jobnum,
                    "type": "local",
                    "guest": vmid,
                    "target": target,
                    "schedule": "*/15",
                    "source": g.node,
                }
            )
    return out


# -- storage -------------------------------------------------------------------------------
@endpoint("GET", "/storage")
def get_storage(ctx: Ctx) -> Any:
    out = []
    for name, st in ctx.cluster.spec.storages.items():
        if ctx.params.get("type") and st.type != ctx.params["type"]:
            continue
        e: dict[str, Any] = {
            "storage": name,
            "type": st.type,
            "content": ",".join(st.content),
            "digest": hashlib.sha1(name.encode()).hexdigest(),
        }
        if st.shared:
            e["shared"] = 1
        if st.nodes is not None:
            e["nodes"] = ",".join(st.nodes)
        if st.type == "rbd":
            e["pool"] = name
            e["krbd"] = 0
        if st.type == "lvmthin":
            e["thinpool"] = "data"
            e["vgname"] = "pve"
        if st.type == "dir":
            e["path"] = "/var/lib/vz" if name == "local" else f"/mnt/{name}"
        out.append(e)
    return out


# -- pools, access, network ---------------------------------------------------------------------
def _pool_members(c: Cluster, pool: str) -> list[dict[str, Any]]:
    return [guest_resource(c, g) for g in c.guests.values() if g.spec.pool == pool]


@endpoint("GET", "/pools")
def get_pools(ctx: Ctx) -> Any:
    c = ctx.cluster
    pools = sorted({g.spec.pool for g in c.guests.values() if g.spec.pool})
    want = ctx.params.get("poolid")
    out = []
    for pool in pools:
        if want and pool != want:
            continue
        e: dict[str, Any] = {"poolid": pool}
        if want:
            members = _pool_members(c, pool)
            if ctx.params.get("type"):
                members = [m for m in members if m["type"] == ctx.params["type"]]
            e["members"] = members
        out.append(e)
    if want and not out:
        raise PveError(500, f"pool '{want}' does not exist")
    return out


@endpoint("GET", "/pools/{poolid}")
def get_pool(ctx: Ctx) -> Any:
    c = ctx.cluster
    pool = str(ctx.params["poolid"])
    members = _pool_members(c, pool)
    if not members:
        raise PveError(500, f"pool '{pool}' does not exist")
    if ctx.params.get("type"):
        members = [m for m in members if m["type"] == ctx.params["type"]]
    return {"members": members}
