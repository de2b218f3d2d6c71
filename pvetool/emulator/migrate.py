"""The API side of migrations: precondition, the checks before the worker forks, HA, migrateall.

- `precondition`: GET .../migrate (qemu-server `src/PVE/API2/Qemu.pm` `migrate_vm_precondition`,
  pve-container `src/PVE/API2/LXC.pm` `migrate_vm_precondition`).
- `start_migration`: POST .../migrate (`migrate_vm` of both): what is refused before the worker
  task starts, the `hamigrate` request for an HA resource, else the `qmigrate`/`vzmigrate` task
  running `qemu_migrate.worker` or `lxc_migrate.worker`, with the faults armed for the guest.
- `ha_request_migration`: `ha-manager migrate` (pve-ha-manager `src/PVE/API2/HA/Resources.pm`);
  the CRM and LRM loops start the migration later, as root@pam (`src/PVE/HA/LRM.pm`
  `run_workers`, at most `max_workers` at a time per node).
- `migrate_all`: POST /nodes/{node}/migrateall (pve-manager `PVE/API2/Nodes.pm` `migrateall`).

Imports: stdlib, `pvetool.timing` and the emulator's own modules.
"""

from __future__ import annotations

import functools
from typing import Any

from pvetool.emulator import lxc_migrate, qemu_migrate
from pvetool.emulator.abstract_migrate import Migration, MigrationOptions
from pvetool.emulator.cluster import Cluster, GuestRt, PveError, TaskRt
from pvetool.emulator.engine import Job, JobGen, Wait
from pvetool.emulator.schema import IdMap
from pvetool.timing import ha_delay_s

__all__ = ["ha_request_migration", "migrate_all", "precondition", "start_migration"]


def precondition(c: Cluster, g: GuestRt, target: str | None) -> dict[str, Any]:
    """GET .../migrate (PVE `migrate_vm_precondition`)."""
    c.check_lock(g)
    running = g.status == "running"
    allowed: list[str] = []
    not_allowed: dict[str, Any] = {}
    candidates = [target] if target else [n for n in c.nodes if n != g.node]
    for name in candidates:
        if name not in c.nodes or name == g.node:
            continue
        if not c.nodes[name].online:
            continue
        info: dict[str, Any] = {}
        missing = c.unavailable_storages(g, name, IdMap())
        if missing:
            info["unavailable_storages"] = missing
        blockers = c.ha_blockers(g, name)
        if blockers:
            info["blocking-ha-resources"] = blockers
        if info:
            not_allowed[name] = info
        else:
            allowed.append(name)
    if g.type == "lxc":
        return _lxc_precondition(c, g, running, allowed, not_allowed)
    local_disks = []
    for d in c.local_disks(g):
        local_disks.append(
            {
                "volid": d.volid,
                "size": d.size_bytes,
                "cdrom": 0,
                "is_unused": 0,
                "drivename": d.key,
                # Volumes of a guest with replication jobs (they all are on zfspool).
                "replicated": 1 if g.replicate else 0,
            }
        )
    mapped = c.mapped_resources(g)
    result: dict[str, Any] = {
        "running": 1 if running else 0,
        "allowed_nodes": allowed,
        "not_allowed_nodes": not_allowed,
        "local_disks": local_disks,
        "local_resources": c.local_resources(g),
        "mapped-resources": mapped,
        "mapped-resource-info": {k: {"live-migration": 0} for k in mapped},
        "has-dbus-vmstate": 1,
    }
    deps = c.ha_dependents(g)
    if deps:
        result["dependent-ha-resources"] = deps
    return result


def _lxc_precondition(
    c: Cluster, g: GuestRt, running: bool, allowed: list[str], not_allowed: dict[str, Any]
) -> dict[str, Any]:
    """pve-container's answer: dashed keys, no local disks or devices."""
    res: dict[str, Any] = {"running": 1 if running else 0}
    res["allowed-nodes"] = allowed
    res["not-allowed-nodes"] = {
        n: {k: v for k, v in i.items() if k != "unavailable_storages"}
        | (
            {"unavailable_storages": i["unavailable_storages"]}
            if "unavailable_storages" in i
            else {}
        )
        for n, i in not_allowed.items()
    }
    deps = c.ha_dependents(g)
    if deps:
        res["dependent-ha-resources"] = deps
    return res


def start_migration(
    c: Cluster, g: GuestRt, target: str, opts: MigrationOptions, user: str, via_ha: bool = False
) -> TaskRt:
    """POST .../migrate: checks done before the worker forks, then the worker task."""
    source = g.node
    if target == source:
        raise PveError(400, "Parameter verification failed.", {"target": "target is local node."})
    if target not in c.nodes:
        raise PveError(500, f"no such cluster node '{target}'")
    c.check_quorum()
    c.check_lock(g)
    running = g.status == "running"
    if g.type == "qemu":
        if running and not opts.online:
            raise PveError(500, "can't migrate running VM without --online")
    elif running and not opts.online and not opts.restart:
        raise PveError(500, "can't migrate running container without --online or --restart")
    if g.spec.ha and not via_ha:
        return _start_ha_request(c, g, target, user)
    task_type = "qmigrate" if g.type == "qemu" else "vzmigrate"
    task = c.new_task(source, task_type, str(g.vmid), user, g.vmid)
    if via_ha:
        task.raw("task started by HA resource agent")
    task.stats.source, task.stats.target = source, target
    task.stats.kind, task.stats.online = g.type, running
    g.lock = "migrate"
    g.migrating = True
    g.config_version += 1
    m = Migration.begin(c, task, g, target, opts, running)
    job = Job(name=task.upid, gen=(qemu_migrate if g.type == "qemu" else lxc_migrate).worker(m))
    if c.faults.arm(job, g.vmid):
        task.stats.hung = True
    task.job = job
    c.events.append(
        {
            "event": "migration-start",
            "upid": task.upid,
            "vmid": g.vmid,
            "t": c.now,
            "source": source,
            "target": target,
        }
    )
    c.engine.start_job(job)
    return task


# -- HA ------------------------------------------------------------------------------------------
def _start_ha_request(c: Cluster, g: GuestRt, target: str, user: str) -> TaskRt:
    """The `hamigrate` task of an HA resource: it only hands the request to the HA stack."""
    task = c.new_task(g.node, "hamigrate", str(g.vmid), user, g.vmid)
    task.log(c.now, f"Requesting HA migration for {g.kind_word} {g.vmid} to node {target}")
    ha_request_migration(c, g, target)
    c.end_task(task, None)
    return task


def ha_request_migration(c: Cluster, g: GuestRt, target: str) -> dict[str, Any]:
    """`ha-manager migrate`: queue the request; the CRM/LRM run it after their loop delays."""
    blockers = c.ha_blockers(g, target)
    result: dict[str, Any] = {"sid": g.sid, "requested-node": target}
    if blockers:
        result["blocking-resources"] = blockers
        return result
    deps = c.ha_dependents(g)
    if deps:
        result["comigrated-resources"] = deps
    for sid in [g.sid, *deps]:
        gg = c.guests.get(int(sid.split(":", 1)[1]))
        if gg is None or gg.node == target:
            continue
        gg.ha_state = "migrate"
        delay = ha_delay_s(c.rng, c.params)
        c.engine.call_later(delay, functools.partial(_ha_lrm_start, c, gg, target))
    return result


def _ha_lrm_start(c: Cluster, g: GuestRt, target: str) -> None:
    """The LRM's worker for a requested migration, if one of its `max_workers` slots is free."""
    node = c.nodes[g.node]
    slots = c.spec.datacenter.max_workers or c.params.ha_default_workers
    busy = sum(
        1
        for t in c.tasks.values()
        if t.status == "running"
        and t.user == "root@pam"
        and t.node == node.name
        and t.type in ("qmigrate", "vzmigrate")
        and t.stats.ha
    )
    if busy >= slots or not node.online:
        # LRM loop: try again on its next round.
        c.engine.call_later(c.params.ha_lrm_max_s / 2, lambda: _ha_lrm_start(c, g, target))
        return
    if g.node == target or g.lock:
        g.ha_state = "started" if g.status == "running" else "stopped"
        return
    running = g.status == "running"
    opts = MigrationOptions(online=running, restart=running, with_local_disks=False)
    try:
        task = start_migration(c, g, target, opts, "root@pam", via_ha=True)
    except PveError:
        g.ha_state = "started" if running else "stopped"
        return
    task.stats.ha = True


# -- migrateall ----------------------------------------------------------------------------------
def migrate_all(
    c: Cluster,
    node: str,
    target: str,
    max_workers: int | None,
    vms: list[int] | None,
    with_local_disks: bool,
    user: str,
) -> TaskRt:
    """POST /nodes/{node}/migrateall: a task that migrates the node's guests, `max_workers`
    (else datacenter.cfg's) at a time, in vmid string order, as pve-manager sorts them."""
    if target not in c.nodes:
        raise PveError(500, f"no such cluster node '{target}'")
    workers = max_workers or c.spec.datacenter.max_workers
    if not workers:
        raise PveError(500, "max_workers is neither set from datacenter.cfg or via --max-workers")
    task = c.new_task(node, "migrateall", "", user, None)
    order = sorted(
        (
            g.vmid
            for g in c.guests.values()
            if g.node == node and not g.spec.template and (vms is None or g.vmid in vms)
        ),
        key=str,
    )
    task.stats.children = []
    gen = _migrate_all_worker(c, task, node, target, workers, order, with_local_disks, user)
    task.job = Job(name=task.upid, gen=gen)
    c.engine.start_job(task.job)
    return task


def _migrate_all_worker(
    c: Cluster,
    task: TaskRt,
    node: str,
    target: str,
    workers: int,
    order: list[int],
    with_local_disks: bool,
    user: str,
) -> JobGen:
    running: list[TaskRt] = []
    if not order:
        task.raw("no virtual guests matched, nothing to do..")
        c.end_task(task, None)
        return
    for vmid in order:
        g = c.guests.get(vmid)
        if g is None or g.node != node:
            continue
        online = g.status == "running"
        problems = _migrateall_problems(c, g, online, with_local_disks)
        if problems:
            task.raw(f"skip VM {vmid} - precondition check failed:")
            for pr in problems:
                task.raw(f"  {pr}")
            continue
        opts = MigrationOptions(online=online, restart=online, with_local_disks=with_local_disks)
        try:
            child = start_migration(c, g, target, opts, user)
        except PveError as exc:
            task.raw(f"{exc.reason}")
            continue
        task.stats.children = [*(task.stats.children or ()), child.upid]
        running.append(child)
        while len([t for t in running if t.status == "running"]) >= workers:
            yield Wait(1.0)
    while any(t.status == "running" for t in running):
        yield Wait(1.0)
    if not running:
        c.end_task(task, "no migrations worker started...")
    else:
        c.end_task(task, None)


def _migrateall_problems(c: Cluster, g: GuestRt, online: bool, with_local_disks: bool) -> list[str]:
    """Why migrateall skips a VM (its own precondition check); containers are never skipped."""
    problems: list[str] = []
    if g.type == "qemu":
        local = c.local_disks(g)
        if online and not with_local_disks and local:
            problems.append("Has local disks: " + ", ".join(d.volid for d in local))
        res = c.local_resources(g)
        if res:
            problems.append("Has local resources: " + ", ".join(res))
    return problems
