"""The API side of migrations: precondition, the checks before the worker forks, migrateall.

- `precondition`: GET .../migrate (qemu-server `src/PVE/API2/Qemu.pm` `migrate_vm_precondition`
  l.5390-5477, pve-container `src/PVE/API2/LXC.pm` `migrate_vm_precondition` l.1562-1616).
- `check_migrate_request` + `start_migration`: POST .../migrate (`migrate_vm` of both), in
  PVE's order: target is local node (400), quorum, target exists, root-only options (those three
  run before the guest is even loaded, so the endpoint calls `check_migrate_request` first), then
  the guest's checks, the synchronous storage check (qemu), and the fork: a `hamigrate` task for
  an HA-managed guest (`ha.request_migration`), else a `qmigrate`/`vzmigrate` task running
  `qemu_migrate.worker` or `lxc_migrate.worker`.
- `migrate_all`: POST /nodes/{node}/migrateall (pve-manager `PVE/API2/Nodes.pm` `migrateall`
  l.2707-2793 and `$create_migrate_worker` l.2590-2654).

Imports: stdlib, `pvetool.timing` and the emulator's own modules.
"""

from __future__ import annotations

from typing import Any

from pvetool.emulator import ha, lxc_migrate, qemu_migrate
from pvetool.emulator.abstract_migrate import Migration, MigrationOptions
from pvetool.emulator.cluster import Cluster, GuestRt, PveError, TaskRt
from pvetool.emulator.engine import Job, JobGen, Wait
from pvetool.emulator.permissions import Caller

MIGRATION_LOCK_TIMEOUT_S = 10.0

__all__ = [
    "bwlimit_KiBps",
    "check_migrate_request",
    "migrate_all",
    "precondition",
    "start_migration",
]


# -- GET .../migrate ------------------------------------------------------------------------------
def precondition(c: Cluster, g: GuestRt) -> dict[str, Any]:
    """What PVE answers to GET .../migrate: quorum first, then the lock, then every other
    cluster member (online or not; the `target` parameter is read but never used)."""
    c.check_quorum()
    c.check_lock(g)
    running = g.status == "running"
    blocking_by_node: dict[str, list[dict[str, str]]] = {}
    deps: list[str] | None = None
    if c.ha_managed(g):
        deps, blocking_by_node = ha.resource_motion_info(c, g.sid)
    if g.type == "lxc":
        return _lxc_precondition(c, g, running, deps, blocking_by_node)
    loc, mapped, missing = c.local_resources(g, running)
    # QemuServer.pm check_local_storage_availability (l.2297-2337) seeds {} for every node;
    # Qemu.pm l.5444-5464 copies it into not_allowed_nodes, so every other node gets an entry,
    # {} when the node is allowed.
    allowed: list[str] = []
    not_allowed: dict[str, dict[str, Any]] = {}
    for name in c.nodes:
        if name == g.node:
            continue
        info: dict[str, Any] = {}
        unavailable = sorted(
            {
                d.storage
                for d in g.disks
                if d.storage and not d.unused and not c.storage_enabled_on(d.storage, name)
            }
        )
        if unavailable:
            info["unavailable_storages"] = unavailable
        if missing.get(name):
            info["unavailable-resources"] = list(missing[name])
        if blocking_by_node.get(name):
            info["blocking-ha-resources"] = blocking_by_node[name]
        not_allowed[name] = info
        if not info:
            allowed.append(name)
    result: dict[str, Any] = {
        "running": 1 if running else 0,
        "allowed_nodes": allowed,
        "not_allowed_nodes": not_allowed,
        "local_disks": _local_disks(c, g),
        "local_resources": loc,
        "mapped-resources": sorted(mapped),
        "mapped-resource-info": mapped,
        "has-dbus-vmstate": 1,
    }
    if deps is not None:
        result["dependent-ha-resources"] = deps
    return result


def _local_disks(c: Cluster, g: GuestRt) -> list[dict[str, Any]]:
    """Qemu.pm $check_vm_disks_local (l.5207-5239) over QemuServer.pm foreach_volid
    (l.4526-4592): every volume not on a shared storage, with its attributes (0/1)."""
    out: list[dict[str, Any]] = []
    for d in g.disks:
        if not d.storage:
            continue  # the `none` CD-ROM (l.5226)
        if c.spec.storages[d.storage].shared:
            continue
        entry: dict[str, Any] = {
            "volid": d.volid,
            "cdrom": 1 if d.cdrom else 0,
            "is_cloudinit": 1 if "cloudinit" in d.volid else 0,
            "replicate": 1,  # a drive's `replicate` option defaults to 1 (l.4543-4545)
            "shared": 0,
            "is_unused": 1 if d.unused else 0,
            "is_attached": 0 if d.unused else 1,
            "is_vmstate": 0,
            "is_tpmstate": 1 if d.key == "tpmstate0" else 0,
        }
        if d.size_bytes:
            entry["size"] = d.size_bytes
        if not d.unused:
            entry["drivename"] = d.key
        out.append(entry)
    return out


def _lxc_precondition(
    c: Cluster,
    g: GuestRt,
    running: bool,
    deps: list[str] | None,
    blocking_by_node: dict[str, list[dict[str, str]]],
) -> dict[str, Any]:
    """pve-container's answer: dashed keys, entries only for HA-blocked nodes, no storage,
    disk or device information (LXC.pm l.1586-1612)."""
    res: dict[str, Any] = {"running": 1 if running else 0}
    allowed: list[str] = []
    not_allowed: dict[str, Any] = {}
    for name in c.nodes:
        if name == g.node:
            continue
        if blocking_by_node.get(name):
            not_allowed[name] = {"blocking-ha-resources": blocking_by_node[name]}
        else:
            allowed.append(name)
    res["allowed-nodes"] = allowed
    res["not-allowed-nodes"] = not_allowed
    if deps is not None:
        res["dependent-ha-resources"] = deps
    return res


# -- POST .../migrate -----------------------------------------------------------------------------
def check_migrate_request(
    c: Cluster, node: str, target: str, caller: Caller, params: dict[str, Any], kind: str
) -> None:
    """The checks of `migrate_vm` before the guest's config is loaded (Qemu.pm l.5564-5585,
    LXC.pm l.1678-1687): local target (400), quorum, target exists, root-only options."""
    if target == node:
        raise PveError(400, "Parameter verification failed.", {"target": "target is local node."})
    c.check_quorum()
    if target not in c.nodes:
        raise PveError(500, f"no such cluster node '{target}'")
    if kind == "qemu":
        # Qemu.pm l.5577-5585: a token's user is its token id (pve-manager PVE/HTTPServer.pm
        # auth_handler l.86), so `root@pam!x` is not root@pam.
        for name in ("force", "migration_type", "migration_network"):
            if _truthy(params.get(name)) and caller.authid != "root@pam":
                raise PveError(
                    400, "Parameter verification failed.", {name: "Only root may use this option."}
                )


def _truthy(value: Any) -> bool:
    """Perl truthiness of a parameter value ("0" and "" are false)."""
    return value is not None and value not in ("", "0", 0, False)


def start_migration(
    c: Cluster,
    g: GuestRt,
    target: str,
    opts: MigrationOptions,
    caller: Caller,
    via_ha: bool = False,
) -> TaskRt:
    """POST .../migrate after `check_migrate_request`: the guest's own checks, then the task."""
    running = g.status == "running"
    if g.type == "qemu":
        c.check_lock(g)  # Qemu.pm l.5592 (pve-container's API does not check it)
        if running:
            if not opts.online:
                raise PveError(500, "can't migrate running VM without --online")
            # Qemu.pm l.5597-5604
            if g.replicate and target not in g.replicate and not opts.force:
                raise PveError(
                    500,
                    f"Cannot live-migrate replicated VM to node '{target}' - not a replication "
                    "target. Use 'force' to override.",
                )
        else:
            opts.online = False  # l.5605-5608: "Doing offline migration instead"
            opts.with_conntrack_state = False
        _check_storage_map(c, g, target, opts, caller)
    else:
        if running and not opts.online and not opts.restart:
            raise PveError(500, "can't migrate running container without --online or --restart")
        _check_storage_map(c, g, target, opts, caller)
    if c.ha_managed(g) and not via_ha:
        # Qemu.pm l.5639-5651, LXC.pm l.1723-1739
        return ha.start_hamigrate(c, g, target, caller.authid)
    return _fork_migration(c, g, target, opts, caller, running, via_ha)


def _check_storage_map(
    c: Cluster, g: GuestRt, target: str, opts: MigrationOptions, caller: Caller
) -> None:
    """Qemu.pm l.5611-5637 (LXC.pm l.1700-1721): a non-identity storage map needs
    VM.Config.Disk on the guest and, per target storage, that it is enabled on the target,
    Datastore.AllocateSpace on it and that it holds VM images ($check_storage_access_migrate,
    l.325-335); without a map (or with the identity) a VM's attached drives must be on
    storages enabled on both nodes (QemuServer.pm check_storage_availability l.2234-2258 on
    pve-storage Storage.pm storage_check_enabled l.264-291): HTTP 500 before any task."""
    mapping = opts.targetstorage
    if mapping.given and not mapping.identity:
        caller.check(f"/vms/{g.vmid}", ["VM.Config.Disk"])
        for sid in mapping.targets():
            c.storage_check_enabled(sid, target)
            caller.check(f"/storage/{sid}", ["Datastore.AllocateSpace"])
            st = c.spec.storages[sid]
            needed = "images" if g.type == "qemu" else "rootdir"
            if needed not in st.content:
                what = "vm images" if g.type == "qemu" else "container directories"
                raise PveError(500, f"storage '{sid}' does not support {what}")
    if g.type != "qemu" or (mapping.given and not mapping.identity):
        return
    for d in g.disks:
        if d.unused or not d.storage:
            continue  # foreach_volume: attached drives only (the `none` CD-ROM has no volume)
        c.storage_check_enabled(d.storage)
        c.storage_check_enabled(d.storage, target)
        vtype = "iso" if d.cdrom else "images"
        if vtype not in c.spec.storages[d.storage].content:
            raise PveError(
                500, f"{d.volid}: content type '{vtype}' is not available on storage '{d.storage}'"
            )


def bwlimit_KiBps(c: Cluster, g: GuestRt, opts: MigrationOptions, caller: Caller) -> float | None:
    """pve-storage src/PVE/Storage.pm get_bandwidth_limit (l.2394-2467) for 'migration' as
    pve-guest-common AbstractMigrate.pm get_bwlimit (l.354-360) asks for it: the API `bwlimit`
    stands as given only for a caller with Sys.Modify on /; anyone else gets at most the
    datacenter limit (`migration`, else `default`), and `bwlimit=0` then means that limit,
    not "unlimited". None: no limit."""
    dc = c.spec.datacenter
    dc_limit = float(dc.bwlimit_migration_KiBps or dc.bwlimit_default_KiBps or 0)
    override = opts.bwlimit_KiBps
    if override is not None and caller.has("/", ["Sys.Modify"]):
        return override or None
    limit = override
    if dc_limit and (not limit or dc_limit < limit):
        limit = dc_limit
    return limit or None


def _fork_migration(
    c: Cluster,
    g: GuestRt,
    target: str,
    opts: MigrationOptions,
    caller: Caller,
    running: bool,
    via_ha: bool,
) -> TaskRt:
    source = g.node
    task_type = "qmigrate" if g.type == "qemu" else "vzmigrate"
    task = c.new_task(source, task_type, str(g.vmid), caller.authid, g.vmid)
    if via_ha:
        # pve-common src/PVE/RESTEnvironment.pm fork_worker (l.647-649)
        task.raw("task started by HA resource agent")
        task.stats.ha = True
    task.stats.source, task.stats.target = source, target
    task.stats.kind, task.stats.online = g.type, running
    m = Migration.begin(c, task, g, target, opts, running, bwlimit_KiBps(c, g, opts, caller))
    inner = (qemu_migrate if g.type == "qemu" else lxc_migrate).worker(m)
    job = Job(name=task.upid, gen=_guest_migration_lock(c, task, g, inner))
    # A hang fault takes hold once the migration is under way (locked, in phase 1).
    m.hang_pending = c.faults.arm(job, g.vmid)
    job.hung = False
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


def _guest_migration_lock(c: Cluster, task: TaskRt, g: GuestRt, inner: JobGen) -> JobGen:
    """pve-guest-common src/PVE/GuestHelpers.pm guest_migration_lock (l.86-97): the worker
    takes the guest's migration lock file with a 10 s timeout (Qemu.pm l.5660, LXC.pm l.1748);
    a second migration of the same guest waits for it, then fails (pve-common Tools.pm
    lock_file l.264)."""
    waited_s = 0.0
    while c.migration_locks.get(g.vmid) not in (None, task.upid):
        if waited_s >= MIGRATION_LOCK_TIMEOUT_S:
            c.end_task(
                task,
                f"can't lock file '/var/lock/pve-manager/pve-migrate-{g.vmid}' - got timeout",
            )
            return
        yield Wait(0.1)
        waited_s += 0.1
    c.migration_locks[g.vmid] = task.upid
    try:
        yield from inner
    finally:
        if c.migration_locks.get(g.vmid) == task.upid:
            del c.migration_locks[g.vmid]


# -- migrateall -----------------------------------------------------------------------------------
def migrate_all(
    c: Cluster,
    node: str,
    target: str,
    max_workers: int | None,
    vms: list[int] | None,
    with_local_disks: bool | None,
    caller: Caller,
) -> TaskRt:
    """POST /nodes/{node}/migrateall, checks in Nodes.pm's order (l.2713-2738)."""
    if not caller.has("/", ["VM.Migrate"]):
        if vms:
            for vmid in vms:
                caller.check(f"/vms/{vmid}", ["VM.Migrate"])
        else:
            raise PveError(403, "Permission check failed (/, VM.Migrate)")
    if target == node:
        raise PveError(400, "Parameter verification failed.", {"target": "target is local node."})
    c.check_quorum()
    if target not in c.nodes:
        raise PveError(500, f"no such cluster node '{target}'")
    workers = max_workers or c.spec.datacenter.max_workers
    if not workers:
        raise PveError(
            500, "either 'max-workers' parameter or max_workers in datacenter.cfg must be set!"
        )
    task = c.new_task(node, "migrateall", "", caller.authid, None)
    # get_filtered_vmlist($nodename, $vms, 1, 1): templates and HA guests included; `sort keys`.
    order = sorted(
        (g.vmid for g in c.guests.values() if g.node == node and (vms is None or g.vmid in vms)),
        key=str,
    )
    task.stats.children = []
    gen = _migrate_all_worker(c, task, node, target, workers, order, with_local_disks, caller)
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
    with_local_disks: bool | None,
    caller: Caller,
) -> JobGen:
    """The migrateall worker (l.2740-2789); its STDERR lines are raw (no time stamps)."""
    yield Wait(0.2)
    if not order:
        task.raw("no virtual guests matched, nothing to do..")
        c.end_task(task, None)
        return
    running: list[TaskRt] = []
    started = 0
    for vmid in order:
        g = c.guests.get(vmid)
        if g is None or g.node != node:
            continue
        try:
            child = _create_migrate_worker(c, task, g, node, target, with_local_disks, caller)
        except _Skipped:
            continue
        except PveError as exc:
            task.append_raw(exc.reason.rstrip("\n"))  # `warn $@` (l.2761)
            continue
        started += 1
        task.stats.children = [*(task.stats.children or ()), child.upid]
        running.append(child)
        while len([t for t in running if t.status == "running"]) >= workers:
            yield Wait(1.0)
    while any(t.status == "running" for t in running):
        yield Wait(1.0)
    if not started:
        c.end_task(task, "no migrations worker started...")
        return
    task.raw(f"All jobs finished, used {started} workers in total.")
    c.end_task(task, None)


def _create_migrate_worker(
    c: Cluster,
    task: TaskRt,
    g: GuestRt,
    node: str,
    target: str,
    with_local_disks: bool | None,
    caller: Caller,
) -> TaskRt:
    """Nodes.pm $create_migrate_worker (l.2590-2654): "Check VM N: " and the precondition,
    or "Migrating CT N"."""
    online = g.status == "running"
    if g.type == "lxc":
        task.raw(f"Migrating CT {g.vmid}")
        opts = MigrationOptions(restart=online)
        return start_migration(c, g, target, opts, caller)
    task.begin_raw(f"Check VM {g.vmid}: ")
    pre = precondition(c, g)
    problems = []
    if online and not with_local_disks and pre["local_disks"]:
        problems.append("Has local disks: " + ", ".join(d["volid"] for d in pre["local_disks"]))
    if pre["local_resources"]:
        problems.append("Has local resources: " + ", ".join(pre["local_resources"]))
    refusal = pre["not_allowed_nodes"].get(target, {})
    if refusal.get("unavailable_storages"):
        problems.append("Has unavailable storages: " + ", ".join(refusal["unavailable_storages"]))
    if refusal.get("unavailable-resources"):
        problems.append("Has unavailable resources: " + ", ".join(refusal["unavailable-resources"]))
    if problems:
        task.append_raw(f"skip VM {g.vmid} - precondition check failed:")
        for line in problems:
            task.raw(f"  {line}")
        raise _Skipped
    task.append_raw("precondition check passed")
    task.raw(f"Migrating VM {g.vmid}")
    opts = MigrationOptions(online=online, with_local_disks=bool(with_local_disks))
    return start_migration(c, g, target, opts, caller)


class _Skipped(PveError):
    """A VM the precondition check skipped (its lines are already in the log)."""

    def __init__(self) -> None:
        super().__init__(500, "")
