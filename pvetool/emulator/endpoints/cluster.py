"""Cluster-wide endpoints: /version, /cluster/{status,resources,options,nextid,replication},
/cluster/mapping/{pci,usb,dir}, /storage and /pools.

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
def repoid_of(version: str) -> str:
    """A stable stand-in for the pve-manager build's git id (16 hex digits) per version."""
    return hashlib.sha1(f"pve-manager/{version}".encode()).hexdigest()[:16]


@endpoint("GET", "/version")
def get_version(ctx: Ctx) -> Any:
    """pve-manager PVE/API2.pm version (l.86-137): not proxied, so it is the version of the
    node whose pveproxy answers (PVE::pvecfg::version_info of the local package)."""
    c = ctx.cluster
    node = ctx.serving_node if ctx.serving_node in c.nodes else next(iter(c.nodes))
    v = c.nodes[node].spec.version
    return {"version": v, "release": ".".join(v.split(".")[:2]), "repoid": repoid_of(v)}


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
    """pve-manager PVE/API2/Cluster.pm resources (l.509-727), in its order: pools (sorted, with
    Pool.Audit, aggregating their running members), guests (VMID string order, with VM.Audit on
    each), nodes (node stats only with Sys.Audit on that node, `hastate` from the HA manager's
    node status), storages (storage-config order, then nodes; Datastore.Audit), then the
    `localnetwork` zone of each node (SDN.Audit). Guest numbers come from the RRD data
    (pvestatd, every 10 s), so they lag behind changes."""
    c = ctx.cluster
    caller = ctx.caller
    rtype = ctx.params.get("type")
    u = c.usage()
    out: list[dict[str, Any]] = []
    pools: dict[str, dict[str, Any]] = {}
    if rtype in (None, "pool"):
        for pool in sorted(c.pool_names()):
            if caller.has(f"/pool/{pool}", ["Pool.Audit"]):
                pools[pool] = {"id": f"/pool/{pool}", "pool": pool, "type": "pool"}
                out.append(pools[pool])
    if rtype in (None, "vm"):
        for vmid in sorted(c.guests, key=str):
            g = c.guests[vmid]
            entry = guest_resource(c, g)
            _add_to_pool(pools.get(g.spec.pool or ""), entry)
            if not caller.has(f"/vms/{vmid}", ["VM.Audit"]):
                continue  # l.587-588: after the pool sums
            if g.spec.pool and not caller.has(f"/pool/{g.spec.pool}", ["Pool.Audit"]):
                del entry["pool"]
            hastate = c.ha_resource_state(g)
            if hastate:
                entry["hastate"] = hastate
            out.append(entry)
    if rtype in (None, "node"):
        for name in c.nodes:
            entry = node_resource(c, name, u, stats=caller.has(f"/nodes/{name}", ["Sys.Audit"]))
            hastate = c.ha_node_state(name)
            if hastate:
                entry["hastate"] = hastate
            out.append(entry)
    if rtype in (None, "storage"):
        for storage in c.spec.storages:
            if not caller.has(f"/storage/{storage}", ["Datastore.Audit"]):
                continue
            for name in c.nodes:
                if c.storage_enabled_on(storage, name):
                    out.append(storage_resource(c, storage, name, u))
    if rtype in (None, "network") and caller.has("/sdn/zones/localnetwork", ["SDN.Audit"]):
        for name in c.nodes:
            out.append(
                {
                    "id": f"network/{name}/zone/localnetwork",
                    "type": "network",
                    "network-type": "zone",
                    "network": "localnetwork",
                    "node": name,
                    "status": "ok",
                }
            )
    return out


def _add_to_pool(pool: dict[str, Any] | None, entry: dict[str, Any]) -> None:
    """Cluster.pm resources l.562-584: a running member adds to its pool's numbers."""
    if pool is None or not entry.get("uptime"):
        return
    pool["uptime"] = max(pool.get("uptime", 0), entry["uptime"])
    pool["mem"] = pool.get("mem", 0) + entry["mem"]
    pool["maxmem"] = pool.get("maxmem", 0) + entry["maxmem"]
    old_cpu, old_max = pool.get("cpu", 0), pool.get("maxcpu", 0)
    pool["cpu"] = (old_cpu * old_max + entry["cpu"] * entry["maxcpu"]) / (old_max + entry["maxcpu"])
    pool["maxcpu"] = old_max + entry["maxcpu"]


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
        "keyboard": "en-us",
        "ha": {"shutdown_policy": dc.ha_shutdown_policy},
    }
    if dc.max_workers is not None:
        res["max_workers"] = dc.max_workers
    bwlimit = {}
    if dc.bwlimit_migration_KiBps:
        bwlimit["migration"] = dc.bwlimit_migration_KiBps
    if dc.bwlimit_default_KiBps:
        bwlimit["default"] = dc.bwlimit_default_KiBps
    if bwlimit:
        res["bwlimit"] = bwlimit
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
    for vmid, g in sorted(ctx.cluster.guests.items()):
        if not ctx.caller.has(f"/vms/{vmid}", ["VM.Audit"]):
            continue
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
        if st.disable:
            e["disable"] = 1  # storage.cfg's own key, listed as configured (Config.pm index)
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
    """pve-manager PVE/API2/Pool.pm index: every pool the caller may Pool.Audit (empty pools
    too), with `comment`; with `poolid` its members."""
    c = ctx.cluster
    want = ctx.params.get("poolid")
    out = []
    for pool in sorted(c.pool_names()):
        if want and pool != want:
            continue
        if not ctx.caller.has(f"/pool/{pool}", ["Pool.Audit"]):
            continue
        e: dict[str, Any] = {"poolid": pool}
        comment = c.pool_comment(pool)
        if comment:
            e["comment"] = comment
        if want:
            members = _pool_members(c, pool)
            if ctx.params.get("type"):
                members = [m for m in members if m["type"] == ctx.params["type"]]
            e["members"] = members
        out.append(e)
    if want and not out:
        raise PveError(500, f"pool '{want}' does not exist")
    return out


@endpoint("POST", "/pools")
def create_pool(ctx: Ctx) -> Any:
    """pve-manager PVE/API2/Pool.pm create_pool (l.160-213): under `lock_user_config` (one
    writer at a time; here the cluster lock every handler runs under), refused when the pool
    exists, when a nested pool's parent does not, or when the (leaf) name does not start with a
    letter; `lock_user_config` (pve-access-control AccessControl.pm l.81-93) prefixes the
    error with "create pool failed: ". Pool.Allocate on /pool/{poolid} is checked by the
    schema's permissions before this runs."""
    c = ctx.cluster
    pool = str(ctx.params["poolid"])
    comment = str(ctx.params.get("comment") or "")
    existing = c.pool_names()
    if pool in existing:
        raise PveError(500, f"create pool failed: pool '{pool}' already exists")
    parent, sep, leaf = pool.rpartition("/")
    if sep and parent not in existing:
        raise PveError(
            500, f"create pool failed: parent '{parent}' of pool '{pool}' does not exist"
        )
    if not (leaf[:1].isascii() and leaf[:1].isalpha()):
        raise PveError(500, "create pool failed: pool name must start with a letter")
    c.deleted_pools.discard(pool)
    c.created_pools[pool] = comment
    return None


@endpoint("DELETE", "/pools")
def delete_pool(ctx: Ctx) -> Any:
    """pve-manager PVE/API2/Pool.pm delete_pool (l.478-537): only an empty pool (no sub-pool, no
    existing guest; storages are not modelled), "delete pool failed: " prefixed as above."""
    c = ctx.cluster
    pool = str(ctx.params["poolid"])
    if pool not in c.pool_names():
        raise PveError(500, f"delete pool failed: pool '{pool}' does not exist")
    for sub in sorted(c.pool_names()):
        if sub.startswith(pool + "/"):
            raise PveError(
                500, f"delete pool failed: pool '{pool}' is not empty (contains pool '{sub}')"
            )
    for vmid in sorted(g.spec.vmid for g in c.guests.values() if g.spec.pool == pool):
        raise PveError(500, f"delete pool failed: pool '{pool}' is not empty (contains VM {vmid})")
    c.created_pools.pop(pool, None)
    c.deleted_pools.add(pool)
    return None


@endpoint("GET", "/pools/{poolid}")
def get_pool(ctx: Ctx) -> Any:
    c = ctx.cluster
    pool = str(ctx.params["poolid"])
    if pool not in c.pool_names():
        raise PveError(500, f"pool '{pool}' does not exist")
    members = _pool_members(c, pool)
    if ctx.params.get("type"):
        members = [m for m in members if m["type"] == ctx.params["type"]]
    res: dict[str, Any] = {"members": members}
    comment = c.pool_comment(pool)
    if comment:
        res["comment"] = comment
    return res


# -- resource mappings ----------------------------------------------------------------------------
def _mapping_index(ctx: Ctx, mtype: str) -> Any:
    """pve-manager PVE/API2/Cluster/Mapping/{PCI,USB,Dir}.pm `index`: each mapping the caller
    may see (Mapping.Modify, Mapping.Use or Mapping.Audit on /mapping/<type>/<id>), with its
    `map` entries (one per node, `node=<name>,...`) and, for PCI, `live-migration-capable`
    (pve-guest-common src/PVE/Mapping/PCI.pm). The cluster file holds no device paths or ids,
    so each entry names only its node."""
    out: list[dict[str, Any]] = []
    privs = ["Mapping.Modify", "Mapping.Use", "Mapping.Audit"]
    for name, m in sorted(ctx.cluster.spec.mappings.items()):
        if m.type != mtype or not ctx.caller.has(f"/mapping/{mtype}/{name}", privs, any_of=True):
            continue
        e: dict[str, Any] = {
            "id": name,
            "description": "",  # the returns schema requires it; the cluster file has none
            "map": [f"node={node}" for node in m.nodes],
            "digest": hashlib.sha1(f"{mtype}/{name}".encode()).hexdigest(),
        }
        if mtype == "pci" and m.live_migration:
            e["live-migration-capable"] = 1
        out.append(e)
    return out


@endpoint("GET", "/cluster/mapping/pci")
def get_mapping_pci(ctx: Ctx) -> Any:
    return _mapping_index(ctx, "pci")


@endpoint("GET", "/cluster/mapping/usb")
def get_mapping_usb(ctx: Ctx) -> Any:
    return _mapping_index(ctx, "usb")


@endpoint("GET", "/cluster/mapping/dir")
def get_mapping_dir(ctx: Ctx) -> Any:
    return _mapping_index(ctx, "dir")
