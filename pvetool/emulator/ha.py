"""The HA stack: rules, the CRM's rounds and the LRMs' rounds, after pve-ha-manager 5.2.0.

Sources (pve-ha-manager b71218f unless noted):

- Requests: `src/PVE/API2/HA/Resources.pm` `migrate` (l.393-417) queues `migrate <sid>
  <node>` for the CRM and reports the blockers (`src/PVE/HA/Config.pm`
  `get_resource_motion_info`, l.391-434: negative resource affinity on HA-online nodes only);
  the `hamigrate` task runs `ha-manager migrate`, whose CLI dies on blockers
  (`src/PVE/CLI/ha_manager.pm` `$print_resource_motion_output`, l.150-184).
- The CRM (`src/PVE/HA/Manager.pm`), one round every 10 s (`src/PVE/HA/CRM.pm` l.361-417):
  node states (`NodeStatus.pm`: online, maintenance, unknown), queued commands
  (`update_crm_commands` l.642-720, `queue_resource_motion` l.580-624), then each service's
  state machine: `next_state_started` (l.1373-1588: a queued move, else
  `select_service_node(..., 'none')` l.315-383 - node-affinity priorities, strict rules,
  `failback` (default 1), resource affinity, the maintenance fallback - and a move if the
  answer differs: `migrate` for VMs, `relocate` for CTs) and `next_state_migrate_relocate`
  (l.1224-1260: the LRM's result sets the service `started` on the target, or back on the
  source).
- The LRM of each node (`src/PVE/HA/LRM.pm`), one round every 10 s (l.467-533), at most
  `max_workers` (datacenter.cfg, else 4) at once: `exec_resource_agent` (l.940-1021) runs
  `src/PVE/HA/Resources/PVEVM.pm` `migrate` (l.108-137: `force=1, with-local-disks=1`,
  online for `migrate`; shut down first for `relocate`) or `PVECT.pm` `migrate` (l.107-131:
  shutdown with timeout 60, then an offline migration), and starts a `started` service that is
  not running (l.952-968) - which is how a relocated container comes up on its new node. Every
  task the LRM starts runs as root@pam and begins with "task started by HA resource agent".
- Node maintenance (9.2 has no API for it, only `ha-manager crm-command node-maintenance`):
  the control route queues `enable-node-maintenance <node>`; the CRM records the request, the
  node's LRM switches to maintenance at its next round, the CRM then marks the node
  `maintenance` and moves its services away remembering `maintenance_node`, and moves them back
  once the node is online again (l.1380-1389, l.1517-1531).
- Rules (`src/PVE/HA/Rules.pm`, `Rules/NodeAffinity.pm`, `Rules/ResourceAffinity.pm`): the
  feasibility checks drop infeasible rules (`transform`, l.440-457); `rule_errors` gives them
  for `GET /cluster/ha/rules` and the create/update checks (`src/PVE/API2/HA/Rules.pm`).

Imports: stdlib, `pvetool.timing` and the emulator's own modules (`migrate` and `power`
lazily: they import this module).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pvetool.emulator.cluster import Cluster, GuestRt, PveError, TaskRt
from pvetool.emulator.engine import Job, JobGen, Wait
from pvetool.emulator.permissions import Caller
from pvetool.emulator.specs import HaRuleSpec

__all__ = [
    "CRM_ROUND_S",
    "HaService",
    "HaState",
    "install",
    "request_migration",
    "resource_motion_info",
    "rule_errors",
    "start_hamigrate",
]

CRM_ROUND_S = 10.0  # CRM.pm l.361-363: $max_time = 10
LRM_ROUND_S = 10.0  # LRM.pm l.467-469
HA_CLI_S = 0.8  # `ha-manager migrate`: starting the Perl CLI and the API call
ROOT = Caller("root@pam", None)


@dataclass
class HaService:
    """The CRM's record of one service (manager_status `service_status.<sid>`)."""

    sid: str
    state: str  # started, stopped, migrate, relocate, ...
    node: str
    target: str | None = None
    cmd: tuple[str, str] | None = None  # a queued (migrate|relocate, node)
    maintenance_node: str | None = None
    worker: Job | None = None  # the LRM's operation in flight
    result: str | None = None  # the LRM's result for the CRM: ok | error
    uid: str = ""


@dataclass
class HaState:
    """Everything the HA stack keeps: rules, queued commands, services, the manager log."""

    rules: list[HaRuleSpec] = field(default_factory=list)
    rule_order: dict[str, int] = field(default_factory=dict)
    rules_version: int = 0
    commands: list[str] = field(default_factory=list)
    services: dict[str, HaService] = field(default_factory=dict)
    maintenance_requests: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    master: str | None = None
    timestamp: int = 0

    @property
    def rules_digest(self) -> str:
        return hashlib.sha1(f"rules:{self.rules_version}".encode()).hexdigest()


def install(c: Cluster) -> None:
    """Give the cluster its HA stack and schedule the CRM's and the LRMs' rounds."""
    state = HaState(rules=list(c.spec.ha_rules))
    state.rule_order = {r.rule: i + 1 for i, r in enumerate(state.rules)}
    c.ha = state
    for g in c.guests.values():
        if g.spec.ha:
            _ensure_service(c, g)
    for name in c.nodes:
        if c.nodes[name].maintenance:
            state.maintenance_requests.add(name)
    c.engine.call_at(c.now + _phase_s(c, "crm", CRM_ROUND_S), functools.partial(_crm_round, c))
    for name in c.nodes:
        c.engine.call_at(
            c.now + _phase_s(c, f"lrm:{name}", LRM_ROUND_S),
            functools.partial(_lrm_round, c, name),
        )


def _phase_s(c: Cluster, what: str, period_s: float) -> float:
    digest = hashlib.sha256(f"{c.spec.seed}:{what}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 * period_s


def _ensure_service(c: Cluster, g: GuestRt) -> HaService | None:
    """The CRM adds configured resources to its status and drops `ignored` ones
    (Manager.pm manage, l.1029-1037)."""
    st = _state(c)
    if not c.ha_managed(g):
        st.services.pop(g.sid, None)
        return None
    svc = st.services.get(g.sid)
    if svc is None:
        state = "started" if g.ha_request in ("started", "enabled") else "stopped"
        svc = HaService(g.sid, state, g.node, uid=hashlib.sha1(g.sid.encode()).hexdigest()[:22])
        st.services[g.sid] = svc
        g.ha_state = svc.state
    return svc


def _state(c: Cluster) -> HaState:
    st = c.ha
    assert isinstance(st, HaState)
    return st


# -- rules ----------------------------------------------------------------------------------------
def rule_errors(c: Cluster, rules: Iterable[HaRuleSpec]) -> dict[str, dict[str, list[str]]]:
    """Rules.pm check_feasibility over the enabled rules: per rule and option, why it is
    infeasible (NodeAffinity.pm check_single_resource_reference l.206-248;
    ResourceAffinity.pm l.150-282; Rules.pm l.619-674)."""
    enabled = [r for r in rules if not r.disable]
    errors: dict[str, dict[str, list[str]]] = {}

    def add(rule: str, message: str) -> None:
        errors.setdefault(rule, {}).setdefault("resources", []).append(message)

    node_rules = [r for r in enabled if r.type == "node-affinity"]
    by_resource: dict[str, list[str]] = {}
    for r in node_rules:
        for sid in r.resources:
            by_resource.setdefault(sid, []).append(r.rule)
    for sid, ids in sorted(by_resource.items()):
        if len(ids) > 1:
            for rid in ids:
                add(rid, f"resource '{sid}' is already used in another node affinity rule")
    res_rules = [r for r in enabled if r.type == "resource-affinity"]
    for r in sorted(res_rules, key=lambda r: r.rule):
        if len(r.resources) < 2:
            add(r.rule, "rule is ineffective as there are less than two resources")
        if r.affinity == "negative" and len(r.resources) > len(c.nodes):
            add(r.rule, "rule defines more resources than available nodes")
    positives = [r for r in res_rules if r.affinity == "positive"]
    negatives = [r for r in res_rules if r.affinity == "negative"]
    for neg in negatives:
        for pos in positives:
            if len(set(neg.resources) & set(pos.resources)) >= 2:
                add(
                    neg.rule,
                    "rule shares two or more resources with a positive resource affinity rule",
                )
                add(
                    pos.rule,
                    "rule shares two or more resources with a negative resource affinity rule",
                )
    for ra in res_rules:
        multi = [
            n
            for n in node_rules
            if set(n.resources) & set(ra.resources) and len({p for _, p in n.nodes}) > 1
        ]
        if multi:
            add(ra.rule, "resources are in node affinity rules with multiple priorities")
            for n in multi:
                add(
                    n.rule,
                    "resources are in a resource affinity rule and cannot be in a node affinity "
                    "rule with multiple priorities",
                )
    return errors


def _compiled_rules(c: Cluster) -> list[HaRuleSpec]:
    """Rules.pm transform (l.440-457): the enabled, feasible rules the CRM uses."""
    st = _state(c)
    dropped = rule_errors(c, st.rules)
    return [r for r in st.rules if not r.disable and r.rule not in dropped]


def _node_affinity(c: Cluster, sid: str, rules: list[HaRuleSpec]) -> dict[str, int] | None:
    """NodeAffinity.pm plugin_compile (l.158-190): node -> priority, other nodes at -1 for a
    non-strict rule; None without a rule."""
    for r in rules:
        if r.type == "node-affinity" and sid in r.resources:
            nodes = {n: p for n, p in r.nodes}
            if not r.strict:
                for name in c.nodes:
                    nodes.setdefault(name, -1)
            return nodes
    return None


def _affinitive(sid: str, rules: list[HaRuleSpec]) -> tuple[set[str], set[str]]:
    """ResourceAffinity.pm get_affinitive_resources: (positive partners, negative partners)."""
    together: set[str] = set()
    separate: set[str] = set()
    for r in rules:
        if r.type != "resource-affinity" or sid not in r.resources:
            continue
        others = {x for x in r.resources if x != sid}
        (together if r.affinity == "positive" else separate).update(others)
    return together, separate


# -- motion requests ------------------------------------------------------------------------------
def resource_motion_info(c: Cluster, sid: str) -> tuple[list[str], dict[str, list[dict[str, str]]]]:
    """Config.pm get_resource_motion_info (l.391-434): the positive-affinity partners that
    move along, and per HA-online node the negative-affinity partners there."""
    st = _state(c)
    deps: list[str] = []
    blocking: dict[str, list[dict[str, str]]] = {}
    g = c.guest_by_sid(sid)
    if g is None or not c.ha_managed(g):
        return deps, blocking
    together, separate = _affinitive(sid, _compiled_rules(c))
    for csid in sorted(together):
        if csid in st.services:
            deps.append(csid)
    for node in c.nodes:
        if _node_state(c, node) != "online":
            continue
        for csid in sorted(separate):
            other = st.services.get(csid)
            if other is None:
                continue
            if other.node and other.node != node:
                continue
            if other.target and other.target != node:
                continue
            blocking.setdefault(node, []).append({"sid": csid, "cause": "resource-affinity"})
    return deps, blocking


def request_migration(c: Cluster, g: GuestRt, target: str) -> dict[str, Any]:
    """Resources.pm migrate (l.393-417): the command is queued first, the blockers are only
    reported (the CRM refuses the command itself)."""
    if not c.ha_managed(g):
        raise PveError(500, f"resource '{g.sid}' is not HA managed")
    svc = _ensure_service(c, g)
    if svc is not None and svc.state == "error":
        raise PveError(500, f"service '{g.sid}' in error state, must be disabled and fixed first")
    _state(c).commands.append(f"migrate {g.sid} {target}")
    deps, blocking = resource_motion_info(c, g.sid)
    result: dict[str, Any] = {"sid": g.sid, "requested-node": target}
    if deps:
        result["comigrated-resources"] = deps
    if blocking.get(target):
        result["blocking-resources"] = blocking[target]
    return result


def start_hamigrate(c: Cluster, g: GuestRt, target: str, authid: str) -> TaskRt:
    """The `hamigrate` task (Qemu.pm migrate_vm l.5639-5651, LXC.pm l.1723-1739): it runs
    `ha-manager migrate <sid> <target>`."""
    task = c.new_task(g.node, "hamigrate", str(g.vmid), authid, g.vmid)
    task.job = Job(name=task.upid, gen=_hamigrate_worker(c, task, g, target))
    c.engine.start_job(task.job)
    return task


def _hamigrate_worker(c: Cluster, task: TaskRt, g: GuestRt, target: str) -> JobGen:
    from pvetool.emulator.abstract_migrate import FORK_S

    yield Wait(FORK_S)
    task.raw(f"Requesting HA migration for {g.kind_word} {g.vmid} to node {target}")
    yield Wait(HA_CLI_S)
    command = f"command 'ha-manager migrate {g.sid} {target}' failed: exit code 2"
    try:
        data = request_migration(c, g, target)
    except PveError as exc:
        task.raw(exc.reason)
        c.end_task(task, command)
        return
    blocking = data.get("blocking-resources")
    if blocking:
        # ha_manager.pm $print_resource_motion_output (l.159-175): an uncaught die, so the
        # message goes to the task log and the command exits non-zero (recorded: 2).
        task.raw(f"cannot migrate resource '{g.sid}' to node '{target}':")
        task.raw("")
        for b in blocking:
            task.raw(
                f"- resource '{b['sid']}' on target node '{target}' in negative affinity "
                f"with resource '{g.sid}'"
            )
        c.end_task(task, command)
        return
    for csid in data.get("comigrated-resources", []):
        task.raw(
            f"also migrate resource '{csid}' in positive affinity with resource '{g.sid}' to "
            f"target node '{target}'"
        )
    c.end_task(task, None)


# -- the CRM --------------------------------------------------------------------------------------
def _node_state(c: Cluster, name: str) -> str:
    """NodeStatus.pm: online, maintenance (the node's LRM is in maintenance mode) or
    unknown (not a quorate cluster member)."""
    node = c.nodes[name]
    if not node.online:
        return "unknown"
    return "maintenance" if node.maintenance else "online"


def _crm_round(c: Cluster) -> None:
    c.engine.call_later(CRM_ROUND_S, lambda: _crm_round(c))
    st = _state(c)
    master = next((n.name for n in c.nodes.values() if n.online), None)
    if master is None or not c.quorate or not c.ha_active():
        return
    st.master = master
    st.timestamp = int(c.now)
    for guest in c.guests.values():
        if guest.spec.ha:
            _ensure_service(c, guest)
    _process_commands(c)
    rules = _compiled_rules(c)
    for sid in sorted(st.services):
        svc = st.services[sid]
        g = c.guest_by_sid(sid)
        if g is None:
            continue
        if svc.state in ("migrate", "relocate"):
            _next_state_migrate_relocate(c, svc, g)
        elif svc.state == "started":
            _next_state_started(c, svc, g, rules)
        elif svc.state == "stopped" and g.ha_request in ("started", "enabled"):
            svc.state = "started"
        g.ha_state = svc.state


def _log(c: Cluster, level: str, msg: str) -> None:
    _state(c).log.append(f"{int(c.now)} {level}: {msg}")


def _process_commands(c: Cluster) -> None:
    """Manager.pm update_crm_commands (l.642-720) and queue_resource_motion (l.580-624)."""
    st = _state(c)
    commands, st.commands = st.commands, []
    for cmd in commands:
        parts = cmd.split()
        if parts[0] in ("migrate", "relocate") and len(parts) == 3:
            task, sid, node = parts
            svc = st.services.get(sid)
            if svc is None:
                _log(c, "err", f"crm command error - no such service: {cmd}")
            elif _node_state(c, node) != "online":
                _log(c, "err", f"crm command error - node not online: {cmd}")
            elif node == svc.node:
                _log(c, "info", f"ignore crm command - service already on target node: {cmd}")
            else:
                _queue_resource_motion(c, cmd, task, sid, node)
        elif parts[0] == "enable-node-maintenance":
            node = parts[1]
            if _node_state(c, node) == "online":
                st.maintenance_requests.add(node)
        elif parts[0] == "disable-node-maintenance":
            st.maintenance_requests.discard(parts[1])


def _queue_resource_motion(c: Cluster, cmd: str, task: str, sid: str, target: str) -> None:
    st = _state(c)
    together, separate = _affinitive(sid, _compiled_rules(c))
    for csid in sorted(separate):
        other = st.services.get(csid)
        if other is None:
            continue
        if other.node and other.node != target:
            continue
        if other.target and other.target != target:
            continue
        _log(
            c,
            "err",
            f"crm command '{cmd}' error - service '{csid}' on node '{target}' in negative "
            f"affinity with service '{sid}'",
        )
        return
    _log(c, "info", f"got crm command: {cmd}")
    st.services[sid].cmd = (task, target)
    for csid in sorted(together):
        other = st.services.get(csid)
        if other is None or other.node == target or other.target == target:
            continue
        other.cmd = (task, target)


def _next_state_started(c: Cluster, svc: HaService, g: GuestRt, rules: list[HaRuleSpec]) -> None:
    """Manager.pm next_state_started (l.1373-1588)."""
    node_state = _node_state(c, svc.node)
    if node_state != "online":
        if node_state != "maintenance":
            return
        svc.maintenance_node = svc.node
    if g.ha_request in ("stopped", "disabled"):
        # l.1392-1395: request_stop; the shutdown itself is power._ha_power_request's.
        if g.status != "running":
            svc.state = "stopped"
        return
    if svc.cmd is not None:
        task, target = svc.cmd
        svc.cmd = None
        if _node_state(c, target) != "online":
            _log(
                c, "err", f"ignore service '{svc.sid}' {task} request - node '{target}' not online"
            )
        elif svc.node == target:
            _log(c, "info", f"ignore service '{svc.sid}' {task} request - already on '{target}'")
        else:
            _log(c, "info", f"{task} service '{svc.sid}' to node '{target}'")
            svc.state, svc.target = task, target
        return
    node = _select_service_node(c, svc, g, rules)
    if node is None or node == svc.node:
        return
    fallback = svc.maintenance_node
    if fallback is not None:
        if node == fallback:
            _log(
                c,
                "info",
                f"moving service '{svc.sid}' back to '{fallback}', node came back "
                "from maintenance.",
            )
            svc.maintenance_node = None
        elif svc.node != fallback:
            _log(c, "info", f"dropping maintenance fallback node '{fallback}' for '{svc.sid}'")
            svc.maintenance_node = None
    if g.type == "qemu":
        _log(c, "info", f"migrate service '{svc.sid}' to node '{node}' (running)")
        svc.state = "migrate"
    else:
        _log(c, "info", f"relocate service '{svc.sid}' to node '{node}'")
        svc.state = "relocate"
    svc.target = node


def _select_service_node(
    c: Cluster, svc: HaService, g: GuestRt, rules: list[HaRuleSpec]
) -> str | None:
    """Manager.pm select_service_node(..., 'none') (l.315-383)."""
    st = _state(c)
    online = [n for n in c.nodes if _node_state(c, n) == "online"]
    affinity = _node_affinity(c, svc.sid, rules)
    if affinity is None:
        allowed = set(online)
        pri = set(online)
    else:
        allowed = {n for n in online if n in affinity}
        best = max((affinity[n] for n in allowed), default=None)
        pri = {n for n in allowed if affinity[n] == best} if best is not None else set()
    if not pri:
        return None
    together_sids, separate_sids = _affinitive(svc.sid, rules)
    together: dict[str, int] = {}
    separate: set[str] = set()
    for csid in together_sids:
        other = st.services.get(csid)
        if other is not None:
            where = other.target or other.node
            if where in online:
                together[where] = together.get(where, 0) + 1
    for csid in separate_sids:
        other = st.services.get(csid)
        if other is not None:
            separate.update(n for n in (other.node, other.target) if n)
    if (
        not failback(g)
        and svc.node in allowed
        and (svc.node in together or svc.node not in separate)
    ):
        return svc.node
    pri -= separate  # apply_negative_resource_affinity
    majority = sorted((n for n in together if n in pri), key=lambda n: (-together[n], n))
    if majority:  # apply_positive_resource_affinity
        pri = {majority[0]}
    if svc.maintenance_node is not None and svc.maintenance_node in pri:
        return svc.maintenance_node
    if svc.node in pri:
        return svc.node
    # Usage/Basic.pm: the node with the fewest services (node or target) first, then by name.
    counts = {n: 0 for n in pri}
    for other in st.services.values():
        for n in {other.node, other.target}:
            if n in counts:
                counts[n] += 1
    nodes = sorted(pri, key=lambda n: (counts[n], n))
    return nodes[0] if nodes else None


def failback(g: GuestRt) -> bool:
    """The resource's `failback` (resources.cfg; default 1, Config.pm
    read_and_check_resources_config l.120), as last set through the API."""
    return g.spec.ha_failback if g.ha_failback is None else g.ha_failback


def _next_state_migrate_relocate(c: Cluster, svc: HaService, g: GuestRt) -> None:
    """Manager.pm next_state_migrate_relocate (l.1224-1260)."""
    if svc.result is None:
        return
    result, svc.result = svc.result, None
    if result == "ok" and svc.target is not None:
        svc.node = svc.target
    else:
        _log(c, "err", f"service '{svc.sid}' - migration failed (exit code 1)")
    svc.state = "started"
    svc.target = None


# -- the LRMs -------------------------------------------------------------------------------------
def _lrm_round(c: Cluster, name: str) -> None:
    c.engine.call_later(LRM_ROUND_S, lambda: _lrm_round(c, name))
    st = _state(c)
    node = c.nodes[name]
    if not node.online:
        return
    node.maintenance = name in st.maintenance_requests  # LRM.pm l.212-217: the mode follows
    slots = c.spec.datacenter.max_workers or c.params.ha_default_workers
    busy = sum(1 for s in st.services.values() if s.worker is not None and s.node == name)
    for sid in sorted(st.services):
        svc = st.services[sid]
        guest = c.guest_by_sid(sid)
        if guest is None or svc.node != name or svc.worker is not None:
            continue
        g = guest
        if busy >= slots:
            break
        if svc.state in ("migrate", "relocate") and svc.target and svc.result is None:
            job = Job(name=f"lrm:{sid}", gen=_lrm_move(c, svc, g, svc.target, svc.state))
        elif (
            svc.state == "started"
            and g.ha_request in ("started", "enabled")
            and g.status != "running"
            and g.node == name
            and not g.lock
            and not g.migrating
        ):
            job = Job(name=f"lrm:{sid}", gen=_lrm_start(c, svc, g))
        else:
            continue
        svc.worker = job
        busy += 1
        c.engine.start_job(job)


def _wait_task(task: TaskRt) -> JobGen:
    while task.status == "running":
        yield Wait(1.0)


def _lrm_move(c: Cluster, svc: HaService, g: GuestRt, target: str, cmd: str) -> JobGen:
    """LRM.pm exec_resource_agent 'migrate'/'relocate' (l.992-1021) with PVEVM.pm / PVECT.pm
    migrate: the service is moved if its config left this node."""
    from pvetool.emulator import migrate, power
    from pvetool.emulator.abstract_migrate import MigrationOptions

    source = g.node
    try:
        online = cmd == "migrate" and g.type == "qemu"
        if g.status == "running" and not online:
            # PVEVM.pm l.125-128 (timeout 60, forceStop), PVECT.pm l.119-122 (timeout 60)
            task = power.start_shutdown(
                c, g, "root@pam", timeout_s=60, force_stop=g.type == "qemu", via_ha=True
            )
            yield from _wait_task(task)
        if g.type == "qemu":
            opts = MigrationOptions(online=online, force=True, with_local_disks=True)
        else:
            opts = MigrationOptions(online=False)
        try:
            task = migrate.start_migration(c, g, target, opts, ROOT, via_ha=True)
        except PveError as exc:
            _log(c, "err", f"service {svc.sid} not moved (migration error): {exc.reason}")
        else:
            yield from _wait_task(task)
    finally:
        svc.result = "ok" if g.node != source else "error"
        svc.worker = None


def _lrm_start(c: Cluster, svc: HaService, g: GuestRt) -> JobGen:
    """LRM.pm exec_resource_agent 'started' (l.952-968): start the guest where it is."""
    from pvetool.emulator import power

    try:
        try:
            task = power.start_guest(c, g, "root@pam", via_ha=True)
        except PveError:
            return
        yield from _wait_task(task)
    finally:
        svc.worker = None


# -- API views ------------------------------------------------------------------------------------
def api_rule(c: Cluster, r: HaRuleSpec, errors: dict[str, list[str]] | None) -> dict[str, Any]:
    """API2/HA/Rules.pm $get_api_ha_rule (l.22-44): defaults set, lists encoded, the file's
    digest, the rule's order and, for an infeasible rule, its errors."""
    st = _state(c)
    e: dict[str, Any] = {
        "rule": r.rule,
        "type": r.type,
        "resources": ",".join(r.resources),
        "digest": st.rules_digest,
        "order": st.rule_order.get(r.rule, 0),
        "disable": 1 if r.disable else 0,
    }
    if r.comment:
        e["comment"] = r.comment
    if r.type == "node-affinity":
        e["nodes"] = ",".join(f"{n}:{p}" if p else n for n, p in r.nodes)
        e["strict"] = 1 if r.strict else 0
    else:
        e["affinity"] = r.affinity
    if errors:
        e["errors"] = {k: ", ".join(v) for k, v in errors.items()}
    return e


def replace_rules(c: Cluster, rules: list[HaRuleSpec]) -> None:
    st = _state(c)
    st.rules = rules
    for r in rules:
        st.rule_order.setdefault(r.rule, max(st.rule_order.values(), default=0) + 1)
    for rid in [k for k in st.rule_order if all(r.rule != k for r in rules)]:
        del st.rule_order[rid]
    st.rules_version += 1


def with_changes(rule: HaRuleSpec, **changes: Any) -> HaRuleSpec:
    return dataclasses.replace(rule, **changes)
