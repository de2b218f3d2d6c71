"""HA endpoints: /cluster/ha/{resources,status/current,status/manager_status,rules} and
POST /cluster/ha/resources/{sid}/migrate.

After pve-ha-manager (b71218f) `src/PVE/API2/HA/Resources.pm`, `Status.pm` and `Rules.pm`; the
state they show is the emulated HA stack's (`emulator/ha.py`).

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from pvetool.emulator import ha
from pvetool.emulator.cluster import Cluster, GuestRt, PveError
from pvetool.emulator.routing import Ctx, endpoint
from pvetool.emulator.specs import HaRuleSpec


# -- resources -------------------------------------------------------------------------------------
def _resources_digest(c: Cluster) -> str:
    """Resources.pm $api_copy_config (l.24-35): every row carries the digest of the whole
    resources.cfg."""
    text = ";".join(
        f"{g.sid}={g.ha_request},{ha.failback(g)},{g.ha_comment}"
        for g in c.guests.values()
        if g.spec.ha
    )
    return hashlib.sha1(text.encode()).hexdigest()


def _ha_entry(c: Cluster, g: GuestRt) -> dict[str, Any]:
    return {
        "sid": g.sid,
        "type": "vm" if g.type == "qemu" else "ct",
        "state": g.ha_request,
        "max_relocate": g.spec.ha_max_relocate,
        "max_restart": g.spec.ha_max_restart,
        "failback": 1 if ha.failback(g) else 0,
        "digest": _resources_digest(c),
    } | ({"comment": g.ha_comment} if g.ha_comment else {})


@endpoint("GET", "/cluster/ha/resources")
def get_ha_resources(ctx: Ctx) -> Any:
    c = ctx.cluster
    want = ctx.params.get("type")
    rows = [_ha_entry(c, g) for g in c.guests.values() if g.spec.ha]
    return [r for r in rows if want is None or r["type"] == want]


def _parse_sid(c: Cluster, text: str) -> str:
    """pve-ha-manager Config.pm parse_sid (l.189-216)."""
    if re.fullmatch(r"\d+", text):
        g = c.guests.get(int(text))
        if g is None:
            raise PveError(500, f"unable to detect SID from VMID - VM/CT {text} does not exist")
        return g.sid
    if re.fullmatch(r"\S+:\S+", text):
        return text
    raise PveError(500, f"unable to parse service id '{text}'")


def _configured(c: Cluster, sid: str) -> GuestRt:
    g = c.guest_by_sid(sid)
    if g is None or not g.spec.ha:
        raise PveError(500, f"no such resource '{sid}'")
    return g


@endpoint("GET", "/cluster/ha/resources/{sid}")
def get_ha_resource(ctx: Ctx) -> Any:
    c = ctx.cluster
    g = _configured(c, _parse_sid(c, str(ctx.params["sid"])))
    return _ha_entry(c, g)


@endpoint("PUT", "/cluster/ha/resources/{sid}")
def put_ha_resource(ctx: Ctx) -> Any:
    """pve-ha-manager src/PVE/API2/HA/Resources.pm update (l.233-279): `failback` and
    `comment` (what pvetool's drain hold changes) and `delete` of them; the change reaches the
    CRM at its next round, which reads resources.cfg then (Manager.pm manage)."""
    c = ctx.cluster
    p = ctx.params
    g = _configured(c, _parse_sid(c, str(p["sid"])))
    digest = p.get("digest")
    if digest and digest != _resources_digest(c):
        raise PveError(
            500, "detected modified configuration - file changed by other user? Try again."
        )
    deleted = {k for k in re.split(r"[,;\s]+", str(p.get("delete") or "")) if k}
    if "failback" in p:
        g.ha_failback = str(p["failback"]) not in ("0", "false", "False", "")
    if "failback" in deleted:
        g.ha_failback = None if g.spec.ha_failback else True  # the default is 1
    if "comment" in p:
        g.ha_comment = str(p["comment"])
    if "comment" in deleted:
        g.ha_comment = ""
    return None


@endpoint("POST", "/cluster/ha/resources/{sid}/migrate")
def post_ha_migrate(ctx: Ctx) -> Any:
    """Resources.pm migrate (l.393-417): `service_is_ha_managed` (500 `resource 'vm:N' is not
    HA managed`, also for `ignored` resources), then the request."""
    c = ctx.cluster
    sid = _parse_sid(c, str(ctx.params["sid"]))
    g = c.guest_by_sid(sid)
    if g is None or not c.ha_managed(g):
        raise PveError(500, f"resource '{sid}' is not HA managed")
    return ha.request_migration(c, g, str(ctx.params["node"]))


# -- status ----------------------------------------------------------------------------------------
@endpoint("GET", "/cluster/ha/status/current")
def get_ha_status(ctx: Ctx) -> Any:
    """Status.pm status (l.166-360): quorum, master, fencing, one row per LRM and service."""
    c = ctx.cluster
    st = c.ha
    now = int(c.now)
    serving = ctx.serving_node if ctx.serving_node in c.nodes else next(iter(c.nodes))
    out: list[dict[str, Any]] = [
        {
            "id": "quorum",
            "type": "quorum",
            "node": serving,
            "status": "OK" if c.quorate else f"No quorum on node '{serving}'!",
            "quorate": 1 if c.quorate else 0,
        },
    ]
    active = st.master is not None and c.ha_active() and now - st.timestamp <= 60
    if st.master is not None:
        status = "active" if active else "idle"
        out.append(
            {
                "id": "master",
                "type": "master",
                "node": st.master,
                "status": f"{st.master} ({status}, {time.ctime(st.timestamp)})",
                "timestamp": st.timestamp,
            }
        )
    armed = "armed" if active else "standby"
    out.append(
        {
            "id": "fencing",
            "type": "fencing",
            "node": st.master or serving,
            "status": f"{armed} (CRM watchdog {'active' if active else 'standby'})",
            "armed-state": armed,
        }
    )
    if c.ha_active():
        for n in sorted(c.nodes):
            node = c.nodes[n]
            busy = any(s.node == n for s in st.services.values())
            if not node.online:
                mode = "old timestamp - dead?"
                out.append({"id": f"lrm:{n}", "type": "lrm", "node": n, "status": f"{n} ({mode})"})
                continue
            if node.maintenance:
                mode, wd = "maintenance mode", "watchdog active"
            else:
                mode = "active" if busy else "idle"
                wd = "watchdog active" if busy else "watchdog standby"
            out.append(
                {
                    "id": f"lrm:{n}",
                    "type": "lrm",
                    "node": n,
                    "status": f"{n} ({mode}, {wd}, {time.ctime(now)})",
                    "timestamp": now,
                }
            )
    for g in c.guests.values():
        if not g.spec.ha:
            continue
        svc = st.services.get(g.sid)
        crm = svc.state if svc is not None else g.ha_request
        row: dict[str, Any] = {
            "id": f"service:{g.sid}",
            "type": "service",
            "sid": g.sid,
            "node": g.node,
            "state": crm,
            "request_state": g.ha_request,
            "status": f"{g.sid} ({g.node}, {crm})",
            "max_relocate": g.spec.ha_max_relocate,
            "max_restart": g.spec.ha_max_restart,
            "failback": 1 if g.spec.ha_failback else 0,
        }
        if svc is not None:
            row["crm_state"] = svc.state
        out.append(row)
    return out


@endpoint("GET", "/cluster/ha/status/manager_status")
def get_ha_manager_status(ctx: Ctx) -> Any:
    c = ctx.cluster
    st = c.ha
    now = int(c.now)
    services: dict[str, Any] = {}
    for sid, svc in sorted(st.services.items()):
        entry: dict[str, Any] = {"node": svc.node, "state": svc.state, "uid": svc.uid}
        if svc.target:
            entry["target"] = svc.target
        if svc.maintenance_node:
            entry["maintenance_node"] = svc.maintenance_node
        services[sid] = entry
    manager: dict[str, Any] = {}
    if st.master is not None:
        manager = {
            "master_node": st.master,
            "node_status": {n: c.ha_node_state(n) or "online" for n in c.nodes},
            "service_status": services,
            "timestamp": st.timestamp,
        }
        requests = {n: {"maintenance": 1} for n in sorted(st.maintenance_requests)}
        if requests:
            manager["node_request"] = requests
    return {
        "manager_status": manager,
        "lrm_status": {
            n.name: {
                "mode": "maintenance" if n.maintenance else "active",
                "state": "active" if n.online else "unknown",
                "timestamp": now,
                "results": {},
            }
            for n in c.nodes.values()
        },
        "quorum": {"node": ctx.serving_node or "", "quorate": "1" if c.quorate else "0"},
    }


# -- rules -----------------------------------------------------------------------------------------
@endpoint("GET", "/cluster/ha/rules")
def get_ha_rules(ctx: Ctx) -> Any:
    """Rules.pm index (l.140-202): rules in `order`, each with the file's digest and the
    errors that make it infeasible (the CRM drops such rules)."""
    c = ctx.cluster
    st = c.ha
    want_type = ctx.params.get("type")
    want_res = ctx.params.get("resource")
    errors = ha.rule_errors(c, st.rules)
    out = []
    for r in sorted(st.rules, key=lambda r: st.rule_order.get(r.rule, 0)):
        if want_type and r.type != want_type:
            continue
        if want_res and want_res not in r.resources:
            continue
        out.append(ha.api_rule(c, r, errors.get(r.rule)))
    return out


def _find_rule(c: Cluster, rule_id: str) -> HaRuleSpec | None:
    return next((r for r in c.ha.rules if r.rule == rule_id), None)


@endpoint("GET", "/cluster/ha/rules/{rule}")
def get_ha_rule(ctx: Ctx) -> Any:
    c = ctx.cluster
    rule_id = str(ctx.params["rule"])
    r = _find_rule(c, rule_id)
    if r is None:
        raise PveError(500, f"no such ha rule '{rule_id}'")
    return ha.api_rule(c, r, ha.rule_errors(c, c.ha.rules).get(rule_id))


_SCHEMA_MISSING = "property is missing and it is not optional"
_SCHEMA_EXTRA = (
    "property is not defined in schema and the schema does not allow additional properties"
)


def _rule_options(c: Cluster, rtype: str, params: dict[str, Any], create: bool) -> dict[str, Any]:
    """The plugin's check_config: options of the rule's type only, the required ones on
    create; resources must be configured HA resources, nodes cluster members (Rules.pm
    $assert_valid_resources_param / $assert_valid_nodes_param, l.46-80)."""
    errors: dict[str, str] = {}
    own = {"node-affinity": ("nodes", "strict"), "resource-affinity": ("affinity",)}[rtype]
    other = {"nodes", "strict", "affinity"} - set(own)
    for key in other:
        if key in params:
            errors[key] = _SCHEMA_EXTRA
    if create:
        required = "nodes" if rtype == "node-affinity" else "affinity"
        if required not in params:
            errors[required] = _SCHEMA_MISSING
    if errors:
        raise PveError(400, "Parameter verification failed.", errors)
    opts: dict[str, Any] = {}
    if "resources" in params:
        sids = tuple(dict.fromkeys(s for s in re.split(r"[,;\s]+", str(params["resources"])) if s))
        if not sids:
            raise PveError(500, "no resources were specified")
        unmanaged = [s for s in sorted(sids) if _configured_or_none(c, s) is None]
        if unmanaged:
            raise PveError(500, f"cannot use unmanaged resource(s) {', '.join(unmanaged)}.")
        opts["resources"] = sids
    if "nodes" in params:
        nodes: list[tuple[str, int]] = []
        for item in re.split(r"[,;\s]+", str(params["nodes"])):
            if not item:
                continue
            name, _, prio = item.partition(":")
            nodes.append((name, int(prio or 0)))
        missing = sorted(n for n, _ in nodes if n not in c.nodes)
        if missing:
            raise PveError(500, f"cannot use non-existent node(s) {', '.join(missing)}.")
        opts["nodes"] = tuple(nodes)
    for key in ("strict", "disable"):
        if key in params:
            opts[key] = bool(params[key])
    if "affinity" in params:
        opts["affinity"] = str(params["affinity"])
    if "comment" in params:
        opts["comment"] = str(params["comment"])
    return opts


def _configured_or_none(c: Cluster, sid: str) -> GuestRt | None:
    g = c.guest_by_sid(sid)
    return g if g is not None and g.spec.ha else None


def _assert_feasibility(c: Cluster, rules: list[HaRuleSpec], rule_id: str, errmsg: str) -> None:
    """Rules.pm $assert_feasibility (l.111-137): a PVE::Exception (400) that lock_ha_domain
    stringifies into a plain die: HTTP 500 "<errmsg>: 400 Rule 'x' is invalid." with the
    errors below (pve-common Exception.pm stringify l.98-130)."""
    errors = ha.rule_errors(c, rules).get(rule_id)
    if not errors:
        return
    lines = "".join(f"{opt}: {', '.join(msgs)}\n" for opt, msgs in errors.items())
    raise PveError(500, f"{errmsg}: 400 Rule '{rule_id}' is invalid.\n{lines}")


@endpoint("POST", "/cluster/ha/rules")
def post_ha_rule(ctx: Ctx) -> Any:
    """Rules.pm create_rule (l.231-283)."""
    c = ctx.cluster
    c.check_quorum()
    p = ctx.params
    rtype = str(p["type"])
    rule_id = str(p["rule"])
    opts = _rule_options(c, rtype, p, create=True)
    errmsg = "create ha rule failed"
    if _find_rule(c, rule_id) is not None:
        raise PveError(500, f"{errmsg}: HA rule '{rule_id}' already defined")
    rule = HaRuleSpec(
        rule=rule_id,
        type=rtype,
        resources=opts["resources"],
        affinity=opts.get("affinity"),
        nodes=opts.get("nodes", ()),
        strict=opts.get("strict", False),
        disable=opts.get("disable", False),
        comment=opts.get("comment", ""),
    )
    rules = [*c.ha.rules, rule]
    _assert_feasibility(c, rules, rule_id, errmsg)
    ha.replace_rules(c, rules)
    return None


@endpoint("PUT", "/cluster/ha/rules/{rule}")
def put_ha_rule(ctx: Ctx) -> Any:
    """Rules.pm update_rule (l.285-346): digest check, the type's options, `delete`."""
    c = ctx.cluster
    p = ctx.params
    rule_id = str(p["rule"])
    errmsg = "update HA rules failed"
    digest = p.get("digest")
    if digest and digest != c.ha.rules_digest:
        raise PveError(
            500,
            f"{errmsg}: detected modified configuration - file changed by other user? Try again.",
        )
    old = _find_rule(c, rule_id)
    if old is None:
        raise PveError(500, f"{errmsg}: HA rule '{rule_id}' does not exist")
    opts = _rule_options(c, old.type, p, create=False)
    for key in re.split(r"[,;\s]+", str(p.get("delete") or "")):
        if key in ("comment",):
            opts["comment"] = ""
        elif key in ("disable", "strict"):
            opts[key] = False
    new = ha.with_changes(old, **opts)
    rules = [new if r.rule == rule_id else r for r in c.ha.rules]
    _assert_feasibility(c, rules, rule_id, errmsg)
    ha.replace_rules(c, rules)
    return None


@endpoint("DELETE", "/cluster/ha/rules/{rule}")
def delete_ha_rule(ctx: Ctx) -> Any:
    """Rules.pm delete_rule (l.348-376): removing a rule that does not exist is no error."""
    c = ctx.cluster
    rule_id = str(ctx.params["rule"])
    ha.replace_rules(c, [r for r in c.ha.rules if r.rule != rule_id])
    return None
