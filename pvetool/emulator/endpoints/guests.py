"""Guest endpoints: /nodes/{node}/{qemu,lxc}[/{vmid}/...]: lists, config, pending, status,
rrddata, the agent ping, migrate (GET precondition, POST), shutdown and start.

After qemu-server `src/PVE/API2/Qemu.pm` and pve-container `src/PVE/API2/LXC.pm` and
`src/PVE/API2/LXC/Status.pm`. A guest's status JSON (`guest_json`) is built once for the list
entries and for status/current.

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pvetool.emulator import migrate, power
from pvetool.emulator.abstract_migrate import MigrationOptions
from pvetool.emulator.cluster import Cluster, GuestRt, PveError
from pvetool.emulator.endpoints.common import (
    guest_of,
    guest_resource,
    proxied_node,
    rrd_points,
    tags_of,
)
from pvetool.emulator.routing import Ctx, endpoint
from pvetool.emulator.schema import IdMap, parse_idmap


# -- guests ---------------------------------------------------------------------------------
def guest_json(c: Cluster, g: GuestRt, details: Mapping[str, Any]) -> dict[str, Any]:
    """A guest's status as GET .../qemu and .../lxc list it and .../status/current answers
    (qemu-server `PVE::QemuServer::vmstatus`, pve-container `PVE::LXC::vmstatus`): the shared
    fields, then the caller's `details`, then lock, tags and template."""
    r = guest_resource(c, g, rrd=False)  # vmstatus on the node: live, not RRD
    res: dict[str, Any] = {
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
    res.update(details)
    if g.lock:
        res["lock"] = g.lock
    if g.spec.tags:
        res["tags"] = tags_of(g)
    if g.spec.template:
        res["template"] = 1
    return res


def _lxc_details() -> dict[str, Any]:
    return {"type": "lxc", "maxswap": 512 * 1024**2, "swap": 0}


def _guest_list(ctx: Ctx, kind: str) -> list[dict[str, Any]]:
    c = ctx.cluster
    name = proxied_node(ctx)
    out = []
    for g in c.guests.values():
        if g.node != name or g.type != kind:
            continue
        details: dict[str, Any] = _lxc_details() if kind == "lxc" else {}
        if g.status == "running":
            details["pid"] = g.pid
            if kind == "qemu":
                details["qmpstatus"] = "running"
        out.append(guest_json(c, g, details))
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
        # The rest of the VM's config as qemu-server stores it (src/PVE/QemuServer.pm
        # $confdesc: parallelN, virtiofsN, migrate_speed in MB/s, migrate_downtime in s).
        for key, value in (*s.parallel, *s.virtiofs):
            conf[key] = value
        if s.migrate_speed_MiBps:
            conf["migrate_speed"] = int(s.migrate_speed_MiBps)
        if s.migrate_downtime_s is not None:
            conf["migrate_downtime"] = s.migrate_downtime_s
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
        conf["tags"] = tags_of(g)
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
    return guest_config(ctx.cluster, guest_of(ctx, "qemu"))


@endpoint("GET", "/nodes/{node}/lxc/{vmid}/config")
def get_lxc_config(ctx: Ctx) -> Any:
    return guest_config(ctx.cluster, guest_of(ctx, "lxc"))


@endpoint("GET", "/nodes/{node}/qemu/{vmid}/pending")
def get_qemu_pending(ctx: Ctx) -> Any:
    conf = guest_config(ctx.cluster, guest_of(ctx, "qemu"))
    return [{"key": k, "value": str(v)} for k, v in conf.items() if k != "digest"]


@endpoint("GET", "/nodes/{node}/lxc/{vmid}/pending")
def get_lxc_pending(ctx: Ctx) -> Any:
    conf = guest_config(ctx.cluster, guest_of(ctx, "lxc"))
    return [{"key": k, "value": str(v)} for k, v in conf.items() if k != "digest"]


def _guest_status(ctx: Ctx, kind: str) -> dict[str, Any]:
    g = guest_of(ctx, kind)
    running = g.status == "running"
    details: dict[str, Any] = {"ha": {"managed": 0}}
    if ctx.cluster.ha_managed(g):
        # qemu-server/pve-container vmstatus via PVE::HA::Config::get_service_status: an
        # `ignored` resource counts as not managed.
        details["ha"] = {
            "managed": 1,
            "state": ctx.cluster.ha_resource_state(g),
            "request_state": g.ha_request,
        }
    if running:
        details["pid"] = g.pid
    if kind == "qemu":
        details["qmpstatus"] = "running" if running else "stopped"
        if running:
            details["running-machine"] = "pc-i440fx-10.0+pve0"
            details["running-qemu"] = "10.0.2"
            details["memhost"] = g.used_bytes
        if g.spec.agent:
            details["agent"] = 1
    else:
        details.update(_lxc_details())
    return guest_json(ctx.cluster, g, details)


@endpoint("GET", "/nodes/{node}/qemu/{vmid}/status/current")
def get_qemu_status(ctx: Ctx) -> Any:
    return _guest_status(ctx, "qemu")


@endpoint("GET", "/nodes/{node}/lxc/{vmid}/status/current")
def get_lxc_status(ctx: Ctx) -> Any:
    return _guest_status(ctx, "lxc")


def _guest_rrd(ctx: Ctx, kind: str) -> Any:
    g = guest_of(ctx, kind)
    return rrd_points(
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
    g = guest_of(ctx, "qemu")
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
    """qemu-server Qemu.pm migrate_vm_precondition: quorum first (l.5397), then the config."""
    proxied_node(ctx)
    ctx.cluster.check_quorum()
    return migrate.precondition(ctx.cluster, guest_of(ctx, "qemu"))


@endpoint("GET", "/nodes/{node}/lxc/{vmid}/migrate")
def get_lxc_migrate(ctx: Ctx) -> Any:
    """pve-container LXC.pm migrate_vm_precondition: quorum first (l.1569), then the config."""
    proxied_node(ctx)
    ctx.cluster.check_quorum()
    return migrate.precondition(ctx.cluster, guest_of(ctx, "lxc"))


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
    """qemu-server Qemu.pm migrate_vm (l.5558-5666): target/quorum/node and root-only
    options before the config is loaded (l.5564-5588)."""
    node = proxied_node(ctx)
    p = ctx.params
    target = str(p["target"])
    migrate.check_migrate_request(ctx.cluster, node, target, ctx.caller, p, "qemu")
    g = guest_of(ctx, "qemu")
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
    return migrate.start_migration(ctx.cluster, g, target, opts, ctx.caller).upid


@endpoint("POST", "/nodes/{node}/lxc/{vmid}/migrate")
def post_lxc_migrate(ctx: Ctx) -> Any:
    """pve-container LXC.pm migrate_vm (l.1671-1753)."""
    node = proxied_node(ctx)
    p = ctx.params
    target = str(p["target"])
    migrate.check_migrate_request(ctx.cluster, node, target, ctx.caller, p, "lxc")
    g = guest_of(ctx, "lxc")
    opts = MigrationOptions(
        online=bool(p.get("online", False)),
        restart=bool(p.get("restart", False)),
        targetstorage=_storage_map(p, "target-storage"),
        bwlimit_KiBps=float(p["bwlimit"]) if "bwlimit" in p else None,
        timeout_s=int(p["timeout"]) if "timeout" in p else None,
    )
    return migrate.start_migration(ctx.cluster, g, target, opts, ctx.caller).upid


def _root_only(ctx: Ctx, *names: str) -> None:
    """Options PVE lets only root@pam use (an API token of root is not root@pam)."""
    for name in names:
        if ctx.params.get(name) and ctx.caller.authid != "root@pam":
            raise PveError(
                400, "Parameter verification failed.", {name: "Only root may use this option."}
            )


def _shutdown(ctx: Ctx, kind: str) -> Any:
    g = guest_of(ctx, kind)
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
    g = guest_of(ctx, kind)
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
