"""HA endpoints: /cluster/ha/{resources,status/current,status/manager_status,rules} and
POST /cluster/ha/resources/{sid}/migrate.

After pve-ha-manager `src/PVE/API2/HA/Resources.pm`, `Status.pm` and `Rules.pm`.

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from pvetool.emulator import migrate
from pvetool.emulator.cluster import Cluster, GuestRt, PveError
from pvetool.emulator.routing import Ctx, endpoint


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
