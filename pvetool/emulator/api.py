"""The emulator's `/api2/json` endpoints: routing, parameter validation, permission checks, answers.

Each handler reads or changes the `Cluster` and returns the `data` PVE would return. Parameters are
validated against the packaged official schema before the handler runs; permissions follow the
schema's `permissions` entries.

Imports: stdlib, werkzeug routing, and the emulator's own modules.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from pvetool.emulator import migrate, power
from pvetool.emulator.abstract_migrate import MigrationOptions
from pvetool.emulator.cluster import Cluster, GuestRt, PveError, Usage
from pvetool.emulator.schema import ApiSchema, IdMap, parse_idmap


@dataclass
class Caller:
    """The authenticated caller: `root@pam` or `root@pam!pvetool`; privileges None = all."""

    authid: str
    privileges: frozenset[str] | None

    @property
    def user(self) -> str:
        return self.authid.split("!", 1)[0]

    def has(self, privs: list[str], any_of: bool = False) -> bool:
        if self.privileges is None:
            return True
        if any_of:
            return any(p in self.privileges for p in privs)
        return all(p in self.privileges for p in privs)


Handler = Callable[["Ctx"], Any]


@dataclass
class Ctx:
    cluster: Cluster
    caller: Caller
    params: dict[str, Any]
    method: str
    template: str


HANDLERS: dict[tuple[str, str], Handler] = {}


def endpoint(method: str, template: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[(method, template)] = fn
        return fn

    return deco


def build_url_map() -> Map:
    rules = []
    seen: set[str] = set()
    for _, template in HANDLERS:
        if template in seen:
            continue
        seen.add(template)
        rule = template.replace("{", "<").replace("}", ">")
        rules.append(Rule(rule, endpoint=template))
    return Map(rules, strict_slashes=False, merge_slashes=False)


URL_MAP: Map | None = None


def resolve(path: str, method: str) -> tuple[str, dict[str, str]]:
    """Map a request path to (template, path params); PVE's 501 for unknown paths/methods."""
    global URL_MAP
    if URL_MAP is None:
        URL_MAP = build_url_map()
    adapter = URL_MAP.bind("localhost")
    try:
        template, args = adapter.match(path, method="GET")
    except (NotFound, MethodNotAllowed):
        raise PveError(501, f"Method '{method} /api2/json{path}' not implemented") from None
    if (method, template) not in HANDLERS:
        raise PveError(501, f"Method '{method} /api2/json{path}' not implemented")
    return template, {k: str(v) for k, v in args.items()}


def check_permissions(
    schema_def: Mapping[str, Any], caller: Caller, params: Mapping[str, Any]
) -> None:
    perms = schema_def.get("permissions") or {}
    check = perms.get("check")
    if not check or check[0] != "perm":
        return
    path: str = check[1]
    privs: list[str] = list(check[2])
    any_of = len(check) > 4 and check[3] == "any" and bool(check[4])
    for key, value in params.items():
        path = path.replace("{" + key + "}", str(value))
    if not caller.has(privs, any_of):
        raise PveError(403, f"Permission check failed ({path}, {'|'.join(privs)})")


def dispatch(
    cluster: Cluster,
    schema: ApiSchema,
    caller: Caller,
    method: str,
    path: str,
    raw_params: Mapping[str, Any],
) -> Any:
    template, path_params = resolve(path, method)
    definition = schema.endpoint(method, template)
    merged: dict[str, Any] = dict(raw_params)
    merged.update(path_params)
    params = schema.validate_params(method, template, merged)
    check_permissions(definition, caller, params)
    handler = HANDLERS[(method, template)]
    with cluster.lock:
        cluster.sync()
        return handler(Ctx(cluster, caller, params, method, template))


# -- helpers ---------------------------------------------------------------------------------
def _proxied_node(ctx: Ctx) -> str:
    name = str(ctx.params["node"])
    ctx.cluster.require_online(name)
    return name


def _guest(ctx: Ctx, kind: str) -> GuestRt:
    node = _proxied_node(ctx)
    return ctx.cluster.guest_on(node, int(ctx.params["vmid"]), kind)


def _tags(g: GuestRt) -> str:
    return ";".join(g.spec.tags)


def _uptime(c: Cluster, g: GuestRt) -> int:
    return int(c.now - g.started_at_s) if g.status == "running" else 0


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
        "uptime": _uptime(c, g) if running else 0,
        "template": 1 if g.spec.template else 0,
    }
    if g.type == "qemu" and running:
        res["memhost"] = g.used_bytes
    if g.spec.tags:
        res["tags"] = _tags(g)
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


def _uptime_node(c: Cluster, name: str) -> int:
    return int(c.now - c.nodes[name].boot_epoch_s)


def task_entry(t: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "upid": t.upid,
        "node": t.node,
        "pid": t.pid,
        "pstart": t.pstart,
        "starttime": t.starttime,
        "type": t.type,
        "id": t.id,
        "user": t.user,
    }
    if t.status == "stopped":
        entry["endtime"] = t.endtime
        entry["status"] = t.exitstatus
    if "!" in t.user:
        entry["user"], entry["tokenid"] = t.user.split("!", 1)
    return entry


# -- version, nodes, cluster -------------------------------------------------------------------
@endpoint("GET", "/version")
def get_version(ctx: Ctx) -> Any:
    versions = sorted(n.spec.version for n in ctx.cluster.nodes.values())
    v = versions[-1]
    major_minor = ".".join(v.split(".")[:2])
    return {"version": v, "release": major_minor, "repoid": "ad4f3b8f8e7b2c1d"}


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
                    "uptime": _uptime_node(c, name),
                    "maxdisk": 100 * 1024**3,
                    "disk": 12 * 1024**3,
                }
            )
        out.append(e)
    return out


def _node_fingerprint(c: Cluster, name: str) -> str:
    digest = hashlib.sha256(f"{c.spec.name}/{name}/{c.spec.seed}".encode()).digest()
    return ":".join(f"{b:02X}" for b in digest)


@endpoint("GET", "/nodes/{node}/status")
def get_node_status(ctx: Ctx) -> Any:
    c = ctx.cluster
    name = _proxied_node(ctx)
    n = c.nodes[name]
    used = c.node_used_memory(name)
    total = n.spec.memory_bytes
    cpu = c.node_cpu(name)
    load = cpu * n.spec.cpus
    return {
        "uptime": _uptime_node(c, name),
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
    name = _proxied_node(ctx)
    v = c.nodes[name].spec.version
    return {"version": v, "release": ".".join(v.split(".")[:2]), "repoid": "ad4f3b8f8e7b2c1d"}


def _rrd_points(ctx: Ctx, values: Callable[[], dict[str, float]]) -> list[dict[str, Any]]:
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


@endpoint("GET", "/nodes/{node}/rrddata")
def get_node_rrd(ctx: Ctx) -> Any:
    c = ctx.cluster
    name = _proxied_node(ctx)
    n = c.nodes[name]
    return _rrd_points(
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


@endpoint("GET", "/cluster/tasks")
def get_cluster_tasks(ctx: Ctx) -> Any:
    c = ctx.cluster
    out = []
    for t in reversed(c.task_order[-500:]):
        out.append(task_entry(t) | {"saved": "1" if t.status == "stopped" else "0"})
    return out


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


@endpoint("GET", "/nodes/{node}/storage")
def get_node_storage(ctx: Ctx) -> Any:
    c = ctx.cluster
    name = _proxied_node(ctx)
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


# -- guests ---------------------------------------------------------------------------------
def _guest_list(ctx: Ctx, kind: str) -> list[dict[str, Any]]:
    c = ctx.cluster
    name = _proxied_node(ctx)
    out = []
    for g in c.guests.values():
        if g.node != name or g.type != kind:
            continue
        r = guest_resource(c, g)
        e: dict[str, Any] = {
            "vmid": g.vmid,
            "name": g.name,
            "status": r["status"],
            "cpus": g.spec.cores,
            "maxmem": g.memory_bytes,
            "mem": r["mem"],
            "cpu": r["cpu"],
            "maxdisk": r["maxdisk"],
            "disk": 0,
            "uptime": r["uptime"],
            "netin": 0,
            "netout": 0,
            "diskread": 0,
            "diskwrite": 0,
        }
        if kind == "lxc":
            e["type"] = "lxc"
            e["maxswap"] = 512 * 1024**2
            e["swap"] = 0
        if g.status == "running":
            e["pid"] = g.pid
            if kind == "qemu":
                e["qmpstatus"] = "running"
        if g.lock:
            e["lock"] = g.lock
        if g.spec.tags:
            e["tags"] = _tags(g)
        if g.spec.template:
            e["template"] = 1
        out.append(e)
    return out


@endpoint("GET", "/nodes/{node}/qemu")
def get_qemu_list(ctx: Ctx) -> Any:
    return _guest_list(ctx, "qemu")


@endpoint("GET", "/nodes/{node}/lxc")
def get_lxc_list(ctx: Ctx) -> Any:
    return _guest_list(ctx, "lxc")


def guest_config(c: Cluster, g: GuestRt) -> dict[str, Any]:
    s = g.spec
    conf: dict[str, Any] = {}
    mem_mib = g.memory_bytes // (1024 * 1024)
    if g.type == "qemu":
        conf.update(
            {
                "name": g.name,
                "cores": s.cores,
                "sockets": 1,
                "memory": str(mem_mib),
                "ostype": "l26",
                "scsihw": "virtio-scsi-single",
                "boot": "order=" + ";".join(d.key for d in g.disks[:1])
                if g.disks
                else "order=net0",
                "smbios1": "uuid=" + _uuid(c, g, "smbios"),
                "vmgenid": _uuid(c, g, "vmgenid"),
                "numa": 0,
            }
        )
        if s.cpu:
            conf["cpu"] = s.cpu
        if s.agent:
            conf["agent"] = "1"
        for key, value in s.hostpci:
            conf[key] = value
        for key, value in s.usb:
            conf[key] = value
        for key, value in s.serial:
            conf[key] = value
    else:
        conf.update(
            {
                "hostname": g.name,
                "cores": s.cores,
                "memory": mem_mib,
                "swap": 512,
                "ostype": "debian",
                "arch": "amd64",
                "unprivileged": 1,
            }
        )
    for d in g.disks:
        conf[d.key] = d.config_value()
    for key, raw in g.nets:
        conf[key] = raw
    if s.tags:
        conf["tags"] = _tags(g)
    if s.onboot:
        conf["onboot"] = 1
    if s.description:
        conf["description"] = s.description
    if g.lock:
        conf["lock"] = g.lock
    if s.template:
        conf["template"] = 1
    conf["digest"] = hashlib.sha1(f"{g.vmid}:{g.config_version}:{g.node}".encode()).hexdigest()
    return conf


def _uuid(c: Cluster, g: GuestRt, what: str) -> str:
    h = hashlib.sha256(f"{c.spec.seed}:{g.vmid}:{what}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@endpoint("GET", "/nodes/{node}/qemu/{vmid}/config")
def get_qemu_config(ctx: Ctx) -> Any:
    return guest_config(ctx.cluster, _guest(ctx, "qemu"))


@endpoint("GET", "/nodes/{node}/lxc/{vmid}/config")
def get_lxc_config(ctx: Ctx) -> Any:
    return guest_config(ctx.cluster, _guest(ctx, "lxc"))


@endpoint("GET", "/nodes/{node}/qemu/{vmid}/pending")
def get_qemu_pending(ctx: Ctx) -> Any:
    conf = guest_config(ctx.cluster, _guest(ctx, "qemu"))
    return [{"key": k, "value": str(v)} for k, v in conf.items() if k != "digest"]


@endpoint("GET", "/nodes/{node}/lxc/{vmid}/pending")
def get_lxc_pending(ctx: Ctx) -> Any:
    conf = guest_config(ctx.cluster, _guest(ctx, "lxc"))
    return [{"key": k, "value": str(v)} for k, v in conf.items() if k != "digest"]


def _guest_status(ctx: Ctx, kind: str) -> dict[str, Any]:
    c = ctx.cluster
    g = _guest(ctx, kind)
    r = guest_resource(c, g)
    running = g.status == "running"
    res: dict[str, Any] = {
        "vmid": g.vmid,
        "name": g.name,
        "status": g.status,
        "cpus": g.spec.cores,
        "maxmem": g.memory_bytes,
        "mem": r["mem"],
        "cpu": r["cpu"],
        "maxdisk": r["maxdisk"],
        "disk": 0,
        "uptime": r["uptime"],
        "netin": 0,
        "netout": 0,
        "diskread": 0,
        "diskwrite": 0,
        "ha": {"managed": 1, "state": g.ha_state or "started", "group": None}
        if g.spec.ha
        else {"managed": 0},
    }
    if res["ha"].get("group") is None:
        res["ha"].pop("group", None)
    if g.spec.ha:
        res["ha"]["request_state"] = "started" if g.status == "running" else "stopped"
    if running:
        res["pid"] = g.pid
    if kind == "qemu":
        res["qmpstatus"] = "running" if running else "stopped"
        if running:
            res["running-machine"] = "pc-i440fx-10.0+pve0"
            res["running-qemu"] = "10.0.2"
            res["memhost"] = g.used_bytes
        if g.spec.agent:
            res["agent"] = 1
    else:
        res["type"] = "lxc"
        res["maxswap"] = 512 * 1024**2
        res["swap"] = 0
    if g.lock:
        res["lock"] = g.lock
    if g.spec.tags:
        res["tags"] = _tags(g)
    if g.spec.template:
        res["template"] = 1
    return res


@endpoint("GET", "/nodes/{node}/qemu/{vmid}/status/current")
def get_qemu_status(ctx: Ctx) -> Any:
    return _guest_status(ctx, "qemu")


@endpoint("GET", "/nodes/{node}/lxc/{vmid}/status/current")
def get_lxc_status(ctx: Ctx) -> Any:
    return _guest_status(ctx, "lxc")


def _guest_rrd(ctx: Ctx, kind: str) -> Any:
    g = _guest(ctx, kind)
    return _rrd_points(
        ctx,
        lambda: {
            "cpu": g.cpu_load if g.status == "running" else 0.0,
            "maxcpu": float(g.spec.cores),
            "mem": float(g.used_bytes if g.status == "running" else 0),
            "maxmem": float(g.memory_bytes),
            "disk": 0.0,
            "maxdisk": float(sum(d.size_bytes for d in g.disks)),
            "netin": 0.0,
            "netout": 0.0,
            "diskread": 0.0,
            "diskwrite": 0.0,
        },
    )


@endpoint("GET", "/nodes/{node}/qemu/{vmid}/rrddata")
def get_qemu_rrd(ctx: Ctx) -> Any:
    return _guest_rrd(ctx, "qemu")


@endpoint("GET", "/nodes/{node}/lxc/{vmid}/rrddata")
def get_lxc_rrd(ctx: Ctx) -> Any:
    return _guest_rrd(ctx, "lxc")


@endpoint("POST", "/nodes/{node}/qemu/{vmid}/agent/ping")
def post_agent_ping(ctx: Ctx) -> Any:
    g = _guest(ctx, "qemu")
    if g.status != "running":
        raise PveError(500, f"VM {g.vmid} is not running")
    if not g.spec.agent:
        raise PveError(500, "No QEMU guest agent configured")
    if g.migrating and g.lock == "migrate":
        raise PveError(500, f"VM {g.vmid} qmp command 'guest-ping' failed - got timeout")
    if ctx.cluster.now < g.agent_ready_at_s:
        raise PveError(500, "QEMU guest agent is not running")  # still booting
    return {"result": {}}


# -- migration --------------------------------------------------------------------------------
@endpoint("GET", "/nodes/{node}/qemu/{vmid}/migrate")
def get_qemu_migrate(ctx: Ctx) -> Any:
    g = _guest(ctx, "qemu")
    return migrate.precondition(ctx.cluster, g, ctx.params.get("target"))


@endpoint("GET", "/nodes/{node}/lxc/{vmid}/migrate")
def get_lxc_migrate(ctx: Ctx) -> Any:
    g = _guest(ctx, "lxc")
    return migrate.precondition(ctx.cluster, g, ctx.params.get("target"))


def _storage_map(params: Mapping[str, Any], key: str) -> IdMap:
    text = params.get(key)
    if not text:
        return IdMap()
    try:
        return parse_idmap(str(text))
    except ValueError as exc:
        raise PveError(
            400, "Parameter verification failed.", {key: f"failed to parse storage map: {exc}"}
        ) from None


@endpoint("POST", "/nodes/{node}/qemu/{vmid}/migrate")
def post_qemu_migrate(ctx: Ctx) -> Any:
    g = _guest(ctx, "qemu")
    p = ctx.params
    if p.get("force") and ctx.caller.user != "root@pam":
        raise PveError(403, "Permission check failed (only root may use 'force')")
    opts = MigrationOptions(
        online=bool(p.get("online", False)),
        with_local_disks=bool(p.get("with-local-disks", False)),
        targetstorage=_storage_map(p, "targetstorage"),
        bwlimit_KiBps=float(p["bwlimit"]) if "bwlimit" in p else None,
        migration_type=p.get("migration_type"),
        migration_network=p.get("migration_network"),
        force=bool(p.get("force", False)),
        with_conntrack_state=bool(p.get("with-conntrack-state", False)),
    )
    return migrate.start_migration(ctx.cluster, g, str(p["target"]), opts, ctx.caller.authid).upid


@endpoint("POST", "/nodes/{node}/lxc/{vmid}/migrate")
def post_lxc_migrate(ctx: Ctx) -> Any:
    g = _guest(ctx, "lxc")
    p = ctx.params
    opts = MigrationOptions(
        online=bool(p.get("online", False)),
        restart=bool(p.get("restart", False)),
        targetstorage=_storage_map(p, "target-storage"),
        bwlimit_KiBps=float(p["bwlimit"]) if "bwlimit" in p else None,
        timeout_s=int(p.get("timeout", 180)),
    )
    return migrate.start_migration(ctx.cluster, g, str(p["target"]), opts, ctx.caller.authid).upid


def _root_only(ctx: Ctx, *names: str) -> None:
    """Options PVE lets only root@pam use (an API token of root is not root@pam)."""
    for name in names:
        if ctx.params.get(name) and ctx.caller.authid != "root@pam":
            raise PveError(
                400, "Parameter verification failed.", {name: "Only root may use this option."}
            )


def _shutdown(ctx: Ctx, kind: str) -> Any:
    g = _guest(ctx, kind)
    p = ctx.params
    _root_only(ctx, "skiplock", "keepActive")
    timeout = int(p["timeout"]) if "timeout" in p else None
    task = power.start_shutdown(
        ctx.cluster,
        g,
        ctx.caller.authid,
        timeout_s=timeout,
        force_stop=bool(p.get("forceStop", False)),
        skiplock=bool(p.get("skiplock", False)),
    )
    return task.upid


def _start(ctx: Ctx, kind: str) -> Any:
    g = _guest(ctx, kind)
    _root_only(
        ctx,
        "stateuri",
        "skiplock",
        "migratedfrom",
        "migration_type",
        "migration_network",
        "targetstorage",
        "force-cpu",
    )
    if ctx.params.get("targetstorage") and not ctx.params.get("migratedfrom"):
        raise PveError(
            400,
            "Parameter verification failed.",
            {"targetstorage": "targetstorage can only by used with migratedfrom."},
        )
    task = power.start_guest(
        ctx.cluster, g, ctx.caller.authid, skiplock=bool(ctx.params.get("skiplock", False))
    )
    return task.upid


@endpoint("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown")
def post_qemu_shutdown(ctx: Ctx) -> Any:
    return _shutdown(ctx, "qemu")


@endpoint("POST", "/nodes/{node}/qemu/{vmid}/status/start")
def post_qemu_start(ctx: Ctx) -> Any:
    return _start(ctx, "qemu")


@endpoint("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown")
def post_lxc_shutdown(ctx: Ctx) -> Any:
    return _shutdown(ctx, "lxc")


@endpoint("POST", "/nodes/{node}/lxc/{vmid}/status/start")
def post_lxc_start(ctx: Ctx) -> Any:
    return _start(ctx, "lxc")


@endpoint("POST", "/nodes/{node}/migrateall")
def post_migrateall(ctx: Ctx) -> Any:
    node = _proxied_node(ctx)
    p = ctx.params
    vms = None
    if p.get("vms"):
        vms = [int(v) for v in str(p["vms"]).replace(";", ",").replace(" ", ",").split(",") if v]
    if not ctx.caller.has(["VM.Migrate"]):
        raise PveError(403, "Permission check failed (/, VM.Migrate)")
    workers = p.get("max-workers") or p.get("maxworkers")
    task = migrate.migrate_all(
        ctx.cluster,
        node,
        str(p["target"]),
        int(workers) if workers else None,
        vms,
        bool(p.get("with-local-disks", False)),
        ctx.caller.authid,
    )
    return task.upid


# -- tasks ------------------------------------------------------------------------------------
def _task_on(ctx: Ctx) -> Any:
    node = _proxied_node(ctx)
    upid = str(ctx.params["upid"])
    t = ctx.cluster.task(upid)
    if t.node != node:
        raise PveError(
            400, "Parameter verification failed.", {"upid": "unable to parse worker upid"}
        )
    if not ctx.caller.has(["Sys.Audit"]) and not _task_visible(ctx.caller, t.user):
        raise PveError(403, f"Permission check failed (/nodes/{node}, Sys.Audit)")
    return t


def _task_status_type(exitstatus: str | None) -> str:
    """PVE::Tools::upid_normalize_status_type: ok, warning, error or unknown (running tasks)."""
    if not exitstatus:
        return "unknown"
    if exitstatus == "OK":
        return "ok"
    if re.fullmatch(r"WARNINGS: \d+", exitstatus):
        return "warning"
    if exitstatus == "unexpected status":
        return "unknown"
    return "error"


def _task_visible(caller: Caller, task_user: str) -> bool:
    """pve-manager's check_task_user: a token sees its own tasks, a user its own and its
    tokens' tasks."""
    return caller.authid == task_user or caller.authid == task_user.split("!", 1)[0]


@endpoint("GET", "/nodes/{node}/tasks")
def get_node_tasks(ctx: Ctx) -> Any:
    """pve-manager PVE/API2/Tasks.pm `node_tasks`: the active tasks first (source active|all,
    status "RUNNING"), then the archive, newest first. `typefilter` is the exact task type,
    `userfilter` a case-insensitive part of the user (without the token), and running tasks
    count as status type "unknown". One known difference is kept: `limit=0` lists every task
    here (PVE's `$limit // 50` lists none), because callers of the emulator rely on it."""
    c = ctx.cluster
    node = _proxied_node(ctx)
    p = ctx.params
    source = p.get("source", "archive")
    vmid = p.get("vmid")
    typefilter = p.get("typefilter")
    userfilter = str(p["userfilter"]).lower() if p.get("userfilter") else None
    since = p.get("since")
    until = p.get("until")
    errors_only = bool(p.get("errors", False))
    start = int(p.get("start", 0))
    limit = int(p.get("limit", 50))
    wanted = {"ok", "warning", "error", "unknown"}
    if p.get("statusfilter") and not errors_only:
        wanted = {s.strip().lower() for s in str(p["statusfilter"]).split(",") if s.strip()}
    elif errors_only:
        wanted.discard("ok")
    auditor = ctx.caller.has(["Sys.Audit"])
    count = 0

    def keep(t: Any) -> bool:
        nonlocal count
        user = t.user.split("!", 1)[0]
        if userfilter and userfilter not in user.lower():
            return False
        if not auditor and not _task_visible(ctx.caller, t.user):
            return False
        if typefilter and t.type != typefilter:
            return False
        if vmid is not None and t.id != str(vmid):
            return False
        if since is not None and t.starttime < int(since):
            return False
        if until is not None and t.starttime > int(until):
            return False
        running = t.status == "running"
        if _task_status_type(None if running else t.exitstatus) not in wanted:
            return False
        count += 1
        return count > start and (not limit or len(rows) < limit)

    rows: list[dict[str, Any]] = []
    newest_first = [t for t in reversed(c.task_order) if t.node == node]
    if source in ("active", "all"):
        for t in newest_first:
            if t.status == "running" and keep(t):
                rows.append(task_entry(t) | {"status": "RUNNING"})
    if source != "active":
        for t in newest_first:
            if t.status != "running" and keep(t):
                rows.append(task_entry(t))
    return rows


@endpoint("GET", "/nodes/{node}/tasks/{upid}/status")
def get_task_status(ctx: Ctx) -> Any:
    t = _task_on(ctx)
    e = task_entry(t)
    e["status"] = t.status
    if t.status == "stopped":
        e["exitstatus"] = t.exitstatus
    e.pop("endtime", None)
    return e


@endpoint("GET", "/nodes/{node}/tasks/{upid}/log")
def get_task_log(ctx: Ctx) -> Any:
    t = _task_on(ctx)
    start = int(ctx.params.get("start", 0))
    limit = int(ctx.params.get("limit", 50))
    lines = t.lines
    if ctx.params.get("download"):
        return "\n".join(lines) + "\n"
    selected = lines[start : start + limit] if limit else []
    return [{"n": start + i + 1, "t": text} for i, text in enumerate(selected)]


@endpoint("DELETE", "/nodes/{node}/tasks/{upid}")
def delete_task(ctx: Ctx) -> Any:
    t = _task_on(ctx)
    ctx.cluster.stop_task(t)
    return None


# -- HA -------------------------------------------------------------------------------------
def _ha_entry(c: Cluster, g: GuestRt) -> dict[str, Any]:
    e: dict[str, Any] = {
        "sid": g.sid,
        "type": "vm" if g.type == "qemu" else "ct",
        "state": g.ha_request,
        "max_relocate": g.spec.ha_max_relocate,
        "max_restart": 1,
        "failback": 1,
        "digest": hashlib.sha1(f"ha:{g.vmid}".encode()).hexdigest(),
    }
    return e


@endpoint("GET", "/cluster/ha/resources")
def get_ha_resources(ctx: Ctx) -> Any:
    c = ctx.cluster
    want = ctx.params.get("type")
    return [
        _ha_entry(c, g)
        for g in c.guests.values()
        if g.spec.ha and (want is None or _ha_entry(c, g)["type"] == want)
    ]


@endpoint("GET", "/cluster/ha/resources/{sid}")
def get_ha_resource(ctx: Ctx) -> Any:
    c = ctx.cluster
    g = _ha_guest(c, str(ctx.params["sid"]))
    return _ha_entry(c, g)


def _ha_guest(c: Cluster, sid: str) -> GuestRt:
    text = sid.split(":", 1)[-1]
    g = c.guests.get(int(text)) if text.isdigit() else None
    if g is None or not g.spec.ha:
        raise PveError(500, f"no such resource '{sid if ':' in sid else 'vm:' + sid}'")
    return g


@endpoint("GET", "/cluster/ha/status/current")
def get_ha_status(ctx: Ctx) -> Any:
    c = ctx.cluster
    now = int(c.now)
    master = next((n for n in c.nodes.values() if n.online), None)
    out: list[dict[str, Any]] = [
        {
            "id": "quorum",
            "type": "quorum",
            "node": master.name if master else "",
            "status": "OK" if c.quorate else "No quorum on node",
            "quorate": 1 if c.quorate else 0,
        },
    ]
    if master is not None:
        out.append(
            {
                "id": "master",
                "type": "master",
                "node": master.name,
                "status": f"{master.name} (active, {time.ctime(now)})",
                "timestamp": now,
            }
        )
    has_ha = any(g.spec.ha for g in c.guests.values())
    for n in c.nodes.values():
        active = any(g.spec.ha and g.node == n.name for g in c.guests.values())
        if n.maintenance:
            mode = "maintenance mode"
        elif not n.online:
            mode = "old timestamp - dead?"
        else:
            mode = "active" if active else "idle"
        state = "" if not has_ha else "watchdog active" if active else "watchdog standby"
        status = f"{n.name} ({mode}, {time.ctime(now)})" if n.online else f"{n.name} ({mode})"
        if state and n.online:
            status = f"{n.name} ({mode}, {state}, {time.ctime(now)})"
        out.append(
            {
                "id": f"lrm:{n.name}",
                "type": "lrm",
                "node": n.name,
                "status": status,
                "timestamp": now,
            }
        )
    for g in c.guests.values():
        if not g.spec.ha:
            continue
        crm = g.ha_state or "started"
        out.append(
            {
                "id": f"service:{g.sid}",
                "type": "service",
                "sid": g.sid,
                "node": g.node,
                "state": crm,
                "crm_state": crm,
                "request_state": g.ha_request,
                "status": f"{g.sid} ({g.node}, {crm})",
                "max_relocate": g.spec.ha_max_relocate,
                "max_restart": 1,
                "failback": 1,
            }
        )
    return out


@endpoint("GET", "/cluster/ha/status/manager_status")
def get_ha_manager_status(ctx: Ctx) -> Any:
    c = ctx.cluster
    now = int(c.now)
    master = next((n for n in c.nodes.values() if n.online), None)
    services = {
        g.sid: {
            "node": g.node,
            "state": g.ha_state or "started",
            "uid": hashlib.sha1(g.sid.encode()).hexdigest()[:22],
        }
        for g in c.guests.values()
        if g.spec.ha
    }
    node_status = {
        n.name: ("maintenance" if n.maintenance else "online" if n.online else "unknown")
        for n in c.nodes.values()
    }
    return {
        "manager_status": {
            "master_node": master.name if master else "",
            "node_status": node_status,
            "service_status": services,
            "timestamp": now,
        },
        "lrm_status": {
            n.name: {
                "mode": "maintenance" if n.maintenance else "active",
                "state": "active" if n.online else "unknown",
                "timestamp": now,
                "results": {},
            }
            for n in c.nodes.values()
        },
        "quorum": {"node": master.name if master else "", "quorate": "1" if c.quorate else "0"},
    }


@endpoint("GET", "/cluster/ha/rules")
def get_ha_rules(ctx: Ctx) -> Any:
    c = ctx.cluster
    want_type = ctx.params.get("type")
    want_res = ctx.params.get("resource")
    out: list[dict[str, Any]] = []
    for r in c.spec.ha_rules:
        if want_type and r.type != want_type:
            continue
        if want_res and want_res not in r.resources:
            continue
        e: dict[str, Any] = {
            "rule": r.rule,
            "type": r.type,
            "resources": ",".join(r.resources),
            "digest": hashlib.sha1(r.rule.encode()).hexdigest(),
            "order": len(out) + 1,
        }
        if r.type == "node-affinity":
            e["nodes"] = ",".join(f"{n}:{p}" if p else n for n, p in r.nodes)
            e["strict"] = 1 if r.strict else 0
        else:
            e["affinity"] = r.affinity
        out.append(e)
    return out


@endpoint("POST", "/cluster/ha/resources/{sid}/migrate")
def post_ha_migrate(ctx: Ctx) -> Any:
    c = ctx.cluster
    g = _ha_guest(c, str(ctx.params["sid"]))
    target = str(ctx.params["node"])
    if target not in c.nodes:
        raise PveError(500, f"no such cluster node '{target}'")
    if not c.quorate:
        raise PveError(500, "cluster not ready - no quorum?")
    return migrate.ha_request_migration(c, g, target)


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


ALL_PRIVS = (
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.Audit",
    "Mapping.Audit",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "SDN.Audit",
    "SDN.Use",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "VM.Audit",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Monitor",
    "VM.GuestAgent.Audit",
)


@endpoint("GET", "/access/permissions")
def get_permissions(ctx: Ctx) -> Any:
    privs = ctx.caller.privileges
    names = sorted(ALL_PRIVS) if privs is None else sorted(privs)
    path = ctx.params.get("path")
    paths = [path] if path else ["/", "/vms", "/nodes", "/storage"]
    return {p: {name: 1 for name in names} for p in paths}


@endpoint("GET", "/nodes/{node}/network")
def get_network(ctx: Ctx) -> Any:
    c = ctx.cluster
    name = _proxied_node(ctx)
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
