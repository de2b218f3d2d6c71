"""The emulated cluster's state and behaviour: nodes, guests, storages, HA, tasks and migrations.

Everything here is consistent with everything else: a guest lives on exactly one node (it moves
only at the end of a successful migration task), node usage is the sum of its guests, locks and
tasks follow PVE 9.2's migration code (qemu-server `QemuMigrate.pm`, pve-container `Migrate.pm`,
pve-guest-common `AbstractMigrate.pm`, pve-ha-manager). Callers hold `Cluster.lock` and call
`sync()` before reading or changing anything (the HTTP layer does both).

Imports: stdlib, `pvetool.timing`, and the emulator's own modules.
"""

from __future__ import annotations

import functools
import hashlib
import random
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

from pvetool.emulator.clock import Clock
from pvetool.emulator.clusterfile import ClusterSpec, GuestSpec, NodeSpec
from pvetool.emulator.engine import (
    Engine,
    Job,
    JobFailure,
    JobGen,
    JobInterrupted,
    Ram,
    Send,
    Wait,
)
from pvetool.emulator.schema import IdMap
from pvetool.timing import (
    DIRTY_PROFILES,
    DirtyProfile,
    GiB,
    MiB,
    Precopy,
    PrecopyEvent,
    TimingParams,
    ha_delay_s,
    link_goodput_Bps,
    lxc_restart_times,
    stream_cap_Bps,
)

NODE_BASE_MEMORY_BYTES = int(1.5 * GiB)
# Seconds from the end of a start task until the guest OS has booted and its agent answers.
GUEST_BOOT_S = (5.0, 30.0)
OFFLINE_REASON = "Errors during connection establishment, proxy handshake: No route to host"


class PveError(Exception):
    """An answer PVE gives instead of data: status, reason phrase, optional `errors` dict."""

    def __init__(self, status: int, reason: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors


def render_bytes(value: float) -> str:
    """PVE::Tools::render_bytes($value, 1): one decimal, binary units."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    v = float(value)
    i = 0
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    return f"{v:.1f} {units[i]}" if i else f"{int(v)} B"


def render_duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def log_timestamp(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_s))


@dataclass
class NodeRt:
    spec: NodeSpec
    online: bool
    maintenance: bool
    ip: str
    nodeid: int
    boot_epoch_s: float
    pstart: int
    next_pid: int

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class DiskRt:
    key: str
    storage: str
    size_bytes: int
    volid: str
    alloc_bytes: int
    options: str = ""

    def config_value(self) -> str:
        size = self.size_bytes
        if size % GiB == 0:
            size_text = f"{size // GiB}G"
        elif size % MiB == 0:
            size_text = f"{size // MiB}M"
        else:
            size_text = f"{size // 1024}K"
        opts = f",{self.options}" if self.options else ""
        return f"{self.volid}{opts},size={size_text}"


@dataclass
class GuestRt:
    spec: GuestSpec
    vmid: int
    type: str
    name: str
    node: str
    status: str
    lock: str | None
    memory_bytes: int
    used_bytes: int
    dirty: DirtyProfile
    disks: list[DiskRt]
    nets: list[tuple[str, str]]
    cpu_load: float
    started_at_s: float
    pid: int
    ha_state: str
    config_version: int = 0
    migrating: bool = False
    agent_frozen: bool = False
    # The HA resource's requested state (resources.cfg `state`); `ha_state` is the CRM's view.
    ha_request: str = ""
    # Targets of the guest's storage replication jobs, by job number (`<vmid>-<n>`). A
    # migration to a job's target switches that job back to the old node (see `_finish`).
    replicate: list[str] = field(default_factory=list)
    # After a (cold) start the guest OS boots; its QEMU guest agent answers from then on.
    agent_ready_at_s: float = 0.0

    @property
    def sid(self) -> str:
        return f"{'vm' if self.type == 'qemu' else 'ct'}:{self.vmid}"

    @property
    def kind_word(self) -> str:
        return "VM" if self.type == "qemu" else "CT"


@dataclass
class TaskStats:
    """What the emulator records about a task beyond PVE's own fields, for the control API
    (`/_emulator/tasks/{upid}`), the state dump and benchmarks. None: never set (left out)."""

    source: str | None = None  # migrations: source and target node, guest type, online
    target: str | None = None
    kind: str | None = None
    online: bool | None = None
    hung: bool | None = None  # a hang-next-migration fault holds it; False once released
    ha: bool | None = None  # started by the HA stack's LRM
    power: str | None = None  # shutdown | start
    target_started: bool | None = None  # the target QEMU runs and fills as pages arrive
    ram_fraction: float | None = None  # of the used RAM sent so far
    escalations: int | None = None  # downtime-limit increases
    throttle: float | None = None  # auto-converge's vCPU throttle
    sent_bytes: float | None = None  # RAM and disks sent
    downtime_ms: int | None = None  # as PVE's log reports it
    guest_downtime_s: float | None = None  # the guest's pause (qemu) or stop (lxc)
    children: list[str] | None = None  # migrateall: the migration tasks it started

    def to_json(self) -> dict[str, Any]:
        """The fields that were set, by their names (the control API's and dump's keys)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out


@dataclass
class TaskRt:
    upid: str
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str
    vmid: int | None
    status: str = "running"
    exitstatus: str | None = None
    endtime: int | None = None
    lines: list[str] = field(default_factory=list)
    job: Job | None = None
    stats: TaskStats = field(default_factory=lambda: TaskStats())
    warnings: int = 0

    def log(self, epoch_s: float, msg: str) -> None:
        for part in msg.split("\n"):
            self.lines.append(f"{log_timestamp(epoch_s)} {part}")

    def raw(self, msg: str) -> None:
        self.lines.extend(msg.split("\n"))


@dataclass
class Usage:
    mem_used: dict[str, int]
    mem_committed: dict[str, int]
    cpu_busy: dict[str, float]
    storage_used: dict[tuple[str, str | None], int]


@dataclass
class MigrationFault:
    at_fraction: float
    message: str


@dataclass
class MigrationOptions:
    online: bool = False
    with_local_disks: bool = False
    targetstorage: IdMap = field(default_factory=IdMap)
    bwlimit_KiBps: float | None = None
    migration_type: str | None = None
    migration_network: str | None = None
    restart: bool = False
    timeout_s: int = 180
    force: bool = False
    with_conntrack_state: bool = False


class Cluster:
    """The whole emulated cluster. Not thread-safe by itself: hold `lock`."""

    def __init__(self, spec: ClusterSpec, clock: Clock | None = None) -> None:
        self.spec = spec
        self.lock = threading.RLock()
        self.clock = clock or Clock(speed=1.0)
        self.params = TimingParams().replace(**spec.timing_overrides)
        self.rng = random.Random(spec.seed)
        self.engine = Engine(self.clock.now(), self.params.step_s)
        self.quorate_override: bool | None = None
        self.nodes: dict[str, NodeRt] = {}
        self.guests: dict[int, GuestRt] = {}
        self.tasks: dict[str, TaskRt] = {}
        self.task_order: list[TaskRt] = []
        self.migration_faults: dict[int, MigrationFault] = {}
        self.hang_next: set[int] = set()
        self.events: list[dict[str, Any]] = []
        self._build()

    # -- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        t0 = self.engine.now
        for i, (name, nspec) in enumerate(self.spec.nodes.items()):
            self.nodes[name] = NodeRt(
                spec=nspec,
                online=nspec.online,
                maintenance=nspec.maintenance,
                ip=f"10.0.0.{11 + i}" if i < 240 else f"10.0.{1 + i // 240}.{11 + i % 240}",
                nodeid=i + 1,
                boot_epoch_s=t0 - self.rng.randint(86400, 40 * 86400),
                pstart=self.rng.randint(1_000_000, 90_000_000),
                next_pid=self.rng.randint(20_000, 900_000),
            )
            self.engine.link_Bps[name] = link_goodput_Bps(nspec.link_bits_per_s)
        for vmid, gspec in sorted(self.spec.guests.items()):
            self.guests[vmid] = self._build_guest(gspec, t0)

    def _build_guest(self, g: GuestSpec, t0: float) -> GuestRt:
        used = g.used_bytes
        if used is None:
            used = int(g.memory_bytes * self.rng.uniform(0.4, 0.9))
        profile = DirtyProfile(rate_Bps=g.dirty_rate_Bps, wss_bytes=g.wss_bytes)
        disks: list[DiskRt] = []
        counter = 0
        for d in g.disks:
            volname = f"vm-{g.vmid}-disk-{counter}"
            counter += 1
            stype = self.spec.storages[d.storage].type
            if stype in ("dir", "nfs", "cifs", "btrfs", "cephfs") and g.type == "qemu":
                volid = f"{d.storage}:{g.vmid}/{volname}.qcow2"
            elif stype in ("dir", "nfs", "cifs", "btrfs", "cephfs"):
                volid = f"{d.storage}:{g.vmid}/{volname}.raw"
            else:
                volid = f"{d.storage}:{volname}"
            alloc = int(d.size_bytes * self.rng.uniform(0.2, 0.7))
            opts = "iothread=1" if g.type == "qemu" and d.key.startswith("scsi") else ""
            disks.append(DiskRt(d.key, d.storage, d.size_bytes, volid, alloc, opts))
        nets = []
        for key, raw in g.nets:
            nets.append((key, self._with_mac(g, key, raw)))
        running = g.status == "running"
        load = {"idle": 0.03, "moderate": 0.15, "hot": 0.55}
        base = (
            load["hot"]
            if g.dirty_rate_Bps >= DIRTY_PROFILES["hot"].rate_Bps
            else load["moderate"]
            if g.dirty_rate_Bps >= DIRTY_PROFILES["moderate"].rate_Bps
            else load["idle"]
        )
        return GuestRt(
            spec=g,
            vmid=g.vmid,
            type=g.type,
            name=g.name,
            node=g.node,
            status=g.status,
            lock=g.lock,
            memory_bytes=g.memory_bytes,
            used_bytes=used,
            dirty=profile,
            disks=disks,
            nets=nets,
            cpu_load=base * self.rng.uniform(0.5, 1.5) if running else 0.0,
            started_at_s=t0 - self.rng.randint(600, 20 * 86400),
            pid=self.rng.randint(1000, 4_000_000),
            ha_state=("started" if running else "stopped") if g.ha else "",
            ha_request=g.ha_state if g.ha else "",
            replicate=list(g.replicate),
        )

    def _with_mac(self, g: GuestSpec, key: str, raw: str) -> str:
        digest = hashlib.sha256(f"{self.spec.seed}:{g.vmid}:{key}".encode()).digest()
        mac = "BC:24:11:" + ":".join(f"{b:02X}" for b in digest[:3])
        parts = raw.split(",")
        if g.type == "qemu":
            model = parts[0]
            if "=" not in model:
                return ",".join([f"{model}={mac}", *parts[1:]])
            return raw
        if not any(p.startswith("hwaddr=") for p in parts):
            parts.insert(1 if parts and parts[0].startswith("name=") else 0, f"hwaddr={mac}")
        return ",".join(parts)

    # -- time ------------------------------------------------------------------------------
    def sync(self) -> None:
        """Bring the simulation up to the emulated clock."""
        self.engine.advance_to(self.clock.now())

    @property
    def now(self) -> float:
        return self.engine.now

    # -- queries ---------------------------------------------------------------------------
    @property
    def quorate(self) -> bool:
        if self.quorate_override is not None:
            return self.quorate_override
        online = sum(1 for n in self.nodes.values() if n.online)
        return online * 2 > len(self.nodes)

    def node(self, name: str) -> NodeRt:
        try:
            return self.nodes[name]
        except KeyError:
            raise PveError(500, f"no such cluster node '{name}'") from None

    def require_online(self, name: str) -> NodeRt:
        """Calls proxied to a node: 595 when it is offline, as pveproxy answers."""
        node = self.node(name)
        if not node.online:
            raise PveError(595, OFFLINE_REASON)
        return node

    def guest_on(self, node: str, vmid: int, kind: str) -> GuestRt:
        g = self.guests.get(vmid)
        if g is None or g.type != kind or g.node != node:
            if kind == "qemu":
                raise PveError(
                    500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
                )
            raise PveError(500, f"Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist")
        return g

    def storage_available_on(self, storage: str, node: str) -> bool:
        st = self.spec.storages.get(storage)
        if st is None:
            return False
        return st.nodes is None or node in st.nodes

    def usage(self) -> Usage:
        """Per-node memory/CPU and per-storage usage, in one pass over guests and tasks."""
        u = Usage(
            mem_used={n: NODE_BASE_MEMORY_BYTES for n in self.nodes},
            mem_committed=dict.fromkeys(self.nodes, 0),
            cpu_busy=dict.fromkeys(self.nodes, 0.0),
            storage_used={},
        )
        shared = {name for name, st in self.spec.storages.items() if st.shared}
        for g in self.guests.values():
            if g.status == "running":
                u.mem_used[g.node] += g.used_bytes
                u.mem_committed[g.node] += g.memory_bytes
                u.cpu_busy[g.node] += g.cpu_load * g.spec.cores
            for d in g.disks:
                key = (d.storage, None if d.storage in shared else g.node)
                u.storage_used[key] = u.storage_used.get(key, 0) + d.alloc_bytes
        for task in self.tasks.values():
            tgt = task.stats.target
            if task.status == "running" and tgt in u.mem_used and task.stats.target_started:
                g2 = self.guests.get(task.vmid or 0)
                if g2 is not None and g2.node != tgt:
                    # The incoming QEMU fills as pages arrive.
                    u.mem_used[tgt] += int(g2.used_bytes * (task.stats.ram_fraction or 0.0))
        for name, node in self.nodes.items():
            u.mem_used[name] = min(u.mem_used[name], node.spec.memory_bytes)
        return u

    def node_used_memory(self, name: str) -> int:
        return self.usage().mem_used[name]

    def node_cpu(self, name: str, usage: Usage | None = None) -> float:
        node = self.nodes[name]
        if not node.online:
            return 0.0
        busy = (usage or self.usage()).cpu_busy[name]
        return min(1.0, 0.01 + busy / max(1, node.spec.cpus))

    def guest_status(self, g: GuestRt) -> str:
        return g.status if self.nodes[g.node].online else "unknown"

    def storage_used(self, storage: str, node: str | None, usage: Usage | None = None) -> int:
        u = usage or self.usage()
        key = (storage, None if self.spec.storages[storage].shared else node)
        return u.storage_used.get(key, 0)

    def ha_rules_for(self, sid: str) -> list[Any]:
        return [r for r in self.spec.ha_rules if sid in r.resources]

    def ha_blockers(self, g: GuestRt, target: str) -> list[dict[str, str]]:
        """HA resources or rules that keep `g` off `target` (PVE 9 rules semantics)."""
        if not g.spec.ha:
            return []
        blockers: list[dict[str, str]] = []
        for rule in self.ha_rules_for(g.sid):
            if rule.type == "node-affinity" and rule.strict:
                if target not in {n for n, _ in rule.nodes}:
                    blockers.append({"sid": g.sid, "cause": "node-affinity"})
            elif rule.type == "resource-affinity" and rule.affinity == "negative":
                for other in rule.resources:
                    if other == g.sid:
                        continue
                    og = self.guests.get(int(other.split(":", 1)[1]))
                    if og is not None and og.node == target:
                        blockers.append({"sid": other, "cause": "resource-affinity"})
        return blockers

    def ha_dependents(self, g: GuestRt) -> list[str]:
        deps: list[str] = []
        if not g.spec.ha:
            return deps
        for rule in self.ha_rules_for(g.sid):
            if rule.type == "resource-affinity" and rule.affinity == "positive":
                deps.extend(r for r in rule.resources if r != g.sid and r not in deps)
        return deps

    def local_resources(self, g: GuestRt) -> list[str]:
        res: list[str] = []
        for key, value in g.spec.hostpci:
            if "mapping=" not in value:
                res.append(key)
        for key, value in g.spec.usb:
            if "mapping=" not in value and value != "spice":
                res.append(key)
        for key, value in g.spec.serial:
            if value != "socket":
                res.append(key)
        return res

    def mapped_resources(self, g: GuestRt) -> list[str]:
        res = [k for k, v in g.spec.hostpci if "mapping=" in v]
        res += [k for k, v in g.spec.usb if "mapping=" in v]
        return res

    def local_disks(self, g: GuestRt) -> list[DiskRt]:
        return [d for d in g.disks if not self.spec.storages[d.storage].shared]

    def unavailable_storages(self, g: GuestRt, target: str, mapping: IdMap) -> list[str]:
        missing: list[str] = []
        for d in g.disks:
            # Shared volumes stay where they are; only local ones follow the storage map.
            sid = d.storage if self.spec.storages[d.storage].shared else mapping.map(d.storage)
            if not self.storage_available_on(sid, target) and sid not in missing:
                missing.append(sid)
        return missing

    def bridges_missing(self, g: GuestRt, target: str) -> list[str]:
        have = set(self.nodes[target].spec.bridges)
        missing: list[str] = []
        for _, raw in g.nets:
            for part in raw.split(","):
                if part.startswith("bridge="):
                    br = part.split("=", 1)[1]
                    if br not in have and br not in missing:
                        missing.append(br)
        return missing

    # -- tasks -----------------------------------------------------------------------------
    def new_task(self, node: str, ttype: str, tid: str, user: str, vmid: int | None) -> TaskRt:
        n = self.nodes[node]
        n.next_pid += self.rng.randint(1, 40)
        pid = n.next_pid
        start = int(self.now)
        upid = f"UPID:{node}:{pid:08X}:{n.pstart:08X}:{start:08X}:{ttype}:{tid}:{user}:"
        task = TaskRt(upid, node, pid, n.pstart, start, ttype, tid, user, vmid)
        self.tasks[upid] = task
        self.task_order.append(task)
        return task

    def end_task(self, task: TaskRt, error: str | None) -> None:
        if task.status == "stopped":
            return
        task.status = "stopped"
        task.endtime = int(self.now)
        if error is None:
            if task.warnings:
                task.exitstatus = f"WARNINGS: {task.warnings}"
                task.raw(f"TASK WARNINGS: {task.warnings}")
            else:
                task.exitstatus = "OK"
                task.raw("TASK OK")
        else:
            task.exitstatus = error
            task.raw(f"TASK ERROR: {error}")
        self.events.append(
            {"event": "task-end", "upid": task.upid, "exitstatus": task.exitstatus, "t": self.now}
        )

    def task(self, upid: str) -> TaskRt:
        t = self.tasks.get(upid)
        if t is None:
            raise PveError(500, f"unable to open file - No such file or directory: {upid}")
        return t

    def stop_task(self, task: TaskRt) -> None:
        if task.status != "running":
            return
        if task.job is not None and not task.job.done:
            self.engine.throw(task.job, JobInterrupted("interrupted by signal"))
        else:
            self.end_task(task, "interrupted by signal")

    # -- migration entry points --------------------------------------------------------------
    def check_lock(self, g: GuestRt) -> None:
        if g.lock:
            raise PveError(500, f"{g.kind_word} is locked ({g.lock})")

    def precondition(self, g: GuestRt, target: str | None) -> dict[str, Any]:
        """GET .../migrate (PVE `migrate_vm_precondition`)."""
        self.check_lock(g)
        running = g.status == "running"
        allowed: list[str] = []
        not_allowed: dict[str, Any] = {}
        candidates = [target] if target else [n for n in self.nodes if n != g.node]
        for name in candidates:
            if name not in self.nodes or name == g.node:
                continue
            if not self.nodes[name].online:
                continue
            info: dict[str, Any] = {}
            missing = self.unavailable_storages(g, name, IdMap())
            if missing:
                info["unavailable_storages"] = missing
            blockers = self.ha_blockers(g, name)
            if blockers:
                info["blocking-ha-resources"] = blockers
            if info:
                not_allowed[name] = info
            else:
                allowed.append(name)
        if g.type == "lxc":
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
            deps = self.ha_dependents(g)
            if deps:
                res["dependent-ha-resources"] = deps
            return res
        local_disks = []
        for d in self.local_disks(g):
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
        mapped = self.mapped_resources(g)
        result: dict[str, Any] = {
            "running": 1 if running else 0,
            "allowed_nodes": allowed,
            "not_allowed_nodes": not_allowed,
            "local_disks": local_disks,
            "local_resources": self.local_resources(g),
            "mapped-resources": mapped,
            "mapped-resource-info": {k: {"live-migration": 0} for k in mapped},
            "has-dbus-vmstate": 1,
        }
        deps = self.ha_dependents(g)
        if deps:
            result["dependent-ha-resources"] = deps
        return result

    def _check_quorum(self) -> None:
        if not self.quorate:
            raise PveError(500, "cluster not ready - no quorum?")

    def start_migration(
        self, g: GuestRt, target: str, opts: MigrationOptions, user: str, via_ha: bool = False
    ) -> TaskRt:
        """POST .../migrate: checks done before the worker forks, then the worker task."""
        source = g.node
        if target == source:
            raise PveError(
                400, "Parameter verification failed.", {"target": "target is local node."}
            )
        if target not in self.nodes:
            raise PveError(500, f"no such cluster node '{target}'")
        self._check_quorum()
        self.check_lock(g)
        running = g.status == "running"
        if g.type == "qemu":
            if running and not opts.online:
                raise PveError(500, "can't migrate running VM without --online")
        elif running and not opts.online and not opts.restart:
            raise PveError(500, "can't migrate running container without --online or --restart")
        if g.spec.ha and not via_ha:
            return self._start_ha_request(g, target, user)
        task_type = "qmigrate" if g.type == "qemu" else "vzmigrate"
        task = self.new_task(source, task_type, str(g.vmid), user, g.vmid)
        if via_ha:
            task.raw("task started by HA resource agent")
        task.stats.source, task.stats.target = source, target
        task.stats.kind, task.stats.online = g.type, running
        g.lock = "migrate"
        g.migrating = True
        g.config_version += 1
        fault = self.migration_faults.pop(g.vmid, None)
        gen: JobGen
        if g.type == "qemu":
            gen = self._qemu_worker(task, g, target, opts, running)
        else:
            gen = self._lxc_worker(task, g, target, opts, running)
        job = Job(name=task.upid, gen=gen)
        if fault is not None:
            job.fail_at_fraction = fault.at_fraction
            job.fail_message = fault.message
        if g.vmid in self.hang_next:
            self.hang_next.discard(g.vmid)
            job.hung = True
            task.stats.hung = True
        task.job = job
        self.events.append(
            {
                "event": "migration-start",
                "upid": task.upid,
                "vmid": g.vmid,
                "t": self.now,
                "source": source,
                "target": target,
            }
        )
        self.engine.start_job(job)
        return task

    # -- HA --------------------------------------------------------------------------------
    def _start_ha_request(self, g: GuestRt, target: str, user: str) -> TaskRt:
        task = self.new_task(g.node, "hamigrate", str(g.vmid), user, g.vmid)
        task.log(self.now, f"Requesting HA migration for {g.kind_word} {g.vmid} to node {target}")
        self.ha_request_migration(g, target)
        self.end_task(task, None)
        return task

    def ha_request_migration(self, g: GuestRt, target: str) -> dict[str, Any]:
        """`ha-manager migrate`: queue the request; the CRM/LRM run it after their loop delays."""
        blockers = self.ha_blockers(g, target)
        result: dict[str, Any] = {"sid": g.sid, "requested-node": target}
        if blockers:
            result["blocking-resources"] = blockers
            return result
        deps = self.ha_dependents(g)
        if deps:
            result["comigrated-resources"] = deps
        for sid in [g.sid, *deps]:
            gg = self.guests.get(int(sid.split(":", 1)[1]))
            if gg is None or gg.node == target:
                continue
            gg.ha_state = "migrate"
            delay = ha_delay_s(self.rng, self.params)
            self.engine.call_later(delay, functools.partial(self._ha_lrm_start, gg, target))
        return result

    def _ha_lrm_start(self, g: GuestRt, target: str) -> None:
        node = self.nodes[g.node]
        slots = self.spec.datacenter.max_workers or self.params.ha_default_workers
        busy = sum(
            1
            for t in self.tasks.values()
            if t.status == "running"
            and t.user == "root@pam"
            and t.node == node.name
            and t.type in ("qmigrate", "vzmigrate")
            and t.stats.ha
        )
        if busy >= slots or not node.online:
            # LRM loop: try again on its next round.
            self.engine.call_later(
                self.params.ha_lrm_max_s / 2, lambda: self._ha_lrm_start(g, target)
            )
            return
        if g.node == target or g.lock:
            g.ha_state = "started" if g.status == "running" else "stopped"
            return
        running = g.status == "running"
        opts = MigrationOptions(online=running, restart=running, with_local_disks=False)
        try:
            task = self.start_migration(g, target, opts, "root@pam", via_ha=True)
        except PveError:
            g.ha_state = "started" if running else "stopped"
            return
        task.stats.ha = True

    # -- power: status/shutdown and status/start ---------------------------------------------
    def start_shutdown(
        self,
        g: GuestRt,
        user: str,
        *,
        timeout_s: int | None = None,
        force_stop: bool = False,
        skiplock: bool = False,
        via_ha: bool = False,
    ) -> TaskRt:
        """POST .../status/shutdown (qemu-server and pve-container `vm_shutdown`).

        The checks PVE makes before it forks the worker raise `PveError`; the rest (lock, the
        guest taking longer than `timeout_s`) ends the task with PVE's error. An HA-managed
        guest gets a ``hastop`` task that only asks the HA stack, which shuts it down later.
        """
        if g.type == "lxc" and g.status != "running":
            raise PveError(500, f"CT {g.vmid} not running")
        if g.spec.ha and not via_ha:
            return self._ha_power_request(g, "stopped", user, timeout_s)
        ttype = "qmshutdown" if g.type == "qemu" else "vzshutdown"
        task = self.new_task(g.node, ttype, str(g.vmid), user, g.vmid)
        task.stats.power = "shutdown"
        gen = self._shutdown_worker(task, g, timeout_s, force_stop, skiplock)
        task.job = Job(name=task.upid, gen=gen)
        self.engine.start_job(task.job)
        return task

    def start_guest(
        self, g: GuestRt, user: str, *, skiplock: bool = False, via_ha: bool = False
    ) -> TaskRt:
        """POST .../status/start (qemu-server and pve-container `vm_start`).

        Quorum (and for a container: already running) are checked before the worker forks;
        template, lock, already running (VM) and a failing QEMU start end the task with PVE's
        error. The guest runs from the task's successful end on. An HA-managed guest gets a
        ``hastart`` task that sets its HA state to started; the HA stack starts it later.
        """
        if g.type == "lxc" and g.status == "running":
            raise PveError(500, f"CT {g.vmid} already running")
        self._check_quorum()
        if g.spec.ha and not via_ha:
            return self._ha_power_request(g, "started", user, None)
        ttype = "qmstart" if g.type == "qemu" else "vzstart"
        task = self.new_task(g.node, ttype, str(g.vmid), user, g.vmid)
        task.stats.power = "start"
        task.job = Job(name=task.upid, gen=self._start_worker(task, g, skiplock))
        self.engine.start_job(task.job)
        return task

    def _power_off(self, g: GuestRt) -> None:
        g.status = "stopped"
        g.cpu_load = 0.0
        g.agent_frozen = False
        if g.spec.ha:
            g.ha_state = "stopped"

    def _power_on(self, g: GuestRt) -> None:
        g.status = "running"
        g.started_at_s = self.now
        g.agent_ready_at_s = self.now + self.rng.uniform(*GUEST_BOOT_S)
        g.pid = self.rng.randint(1000, 4_000_000)
        g.cpu_load = 0.05 + self.rng.random() * 0.1
        if g.spec.ha:
            g.ha_state = "started"

    def _shutdown_worker(
        self, task: TaskRt, g: GuestRt, timeout_s: int | None, force_stop: bool, skiplock: bool
    ) -> JobGen:
        p = self.params
        try:
            if g.status != "running":
                # qemu-server `_do_vm_stop` returns quietly when the VM does not run.
                self.end_task(task, None)
                return
            if g.lock and not skiplock:
                self.end_task(task, f"{g.kind_word} is locked ({g.lock})")
                return
            # The guest OS takes as long as a container's shutdown (pvetool.timing).
            needed_s = self.rng.uniform(p.lxc_shutdown_min_s, p.lxc_shutdown_max_s)
            limit_s = 60.0 if timeout_s is None else float(timeout_s)
            if needed_s <= limit_s:
                yield Wait(needed_s)
                self._power_off(g)
                self.end_task(task, None)
                return
            yield Wait(limit_s)
            if not force_stop:
                if g.type == "qemu":
                    err = "VM quit/powerdown failed - got timeout"
                else:
                    err = (
                        f"command 'lxc-stop -n {g.vmid} --nokill --timeout {int(limit_s)}' "
                        "failed: exit code 1"
                    )
                self.end_task(task, err)
                return
            if g.type == "qemu":
                task.raw("VM still running - terminating now with SIGTERM")
            else:
                task.raw("shutdown failed - forcing stop now")
            task.warnings += 1
            yield Wait(1.0)
            self._power_off(g)
            self.end_task(task, None)
        except JobFailure as exc:
            self.end_task(task, str(exc))

    def _start_worker(self, task: TaskRt, g: GuestRt, skiplock: bool) -> JobGen:
        p = self.params
        try:
            if g.spec.template:
                what = "vm" if g.type == "qemu" else "CT"
                self.end_task(task, f"you can't start a {what} if it's a template")
                return
            if g.lock and not skiplock:
                self.end_task(task, f"{g.kind_word} is locked ({g.lock})")
                return
            if g.status == "running":
                self.end_task(task, f"VM {g.vmid} already running")
                return
            errors = self._target_start_error(g, g.node)
            yield Wait(self.rng.uniform(p.lxc_start_min_s, p.lxc_start_max_s))
            if errors:
                for line in errors:
                    task.raw(line)
                if g.type == "qemu":
                    self.end_task(task, "start failed: QEMU exited with code 1")
                else:
                    self.end_task(task, f"startup for container '{g.vmid}' failed")
                return
            self._power_on(g)
            self.end_task(task, None)
        except JobFailure as exc:
            self.end_task(task, str(exc))

    def _ha_power_request(self, g: GuestRt, state: str, user: str, timeout_s: int | None) -> TaskRt:
        """``hastop``/``hastart``: `ha-manager crm-command stop` / `ha-manager set --state
        started`; the HA stack's LRM runs the real shutdown or start after its loop delays."""
        verb = "stop" if state == "stopped" else "start"
        task = self.new_task(g.node, f"ha{verb}", str(g.vmid), user, g.vmid)
        task.raw(f"Requesting HA {verb} for {g.kind_word} {g.vmid}")
        g.ha_request = state
        self.end_task(task, None)
        delay = ha_delay_s(self.rng, self.params)
        self.engine.call_later(
            delay,
            functools.partial(self._ha_lrm_power, g, state, 60 if timeout_s is None else timeout_s),
        )
        return task

    def _ha_lrm_power(self, g: GuestRt, state: str, timeout_s: int) -> None:
        if g.ha_request != state:
            return  # asked otherwise meanwhile
        if not self.nodes[g.node].online or g.lock:
            self.engine.call_later(
                self.params.ha_lrm_max_s / 2,
                functools.partial(self._ha_lrm_power, g, state, timeout_s),
            )
            return
        running = g.status == "running"
        try:
            if state == "stopped" and running:
                task = self.start_shutdown(
                    g, "root@pam", timeout_s=timeout_s, force_stop=True, via_ha=True
                )
            elif state == "started" and not running:
                task = self.start_guest(g, "root@pam", via_ha=True)
            else:
                g.ha_state = "started" if running else "stopped"
                return
        except PveError:
            return
        task.stats.ha = True

    # -- workers ---------------------------------------------------------------------------
    def _secure(self, opts: MigrationOptions) -> bool:
        mtype = opts.migration_type or self.spec.datacenter.migration_type
        return mtype != "insecure"

    def _bwlimit(self, opts: MigrationOptions) -> float | None:
        if opts.bwlimit_KiBps is not None:
            return opts.bwlimit_KiBps or None
        dc = self.spec.datacenter.bwlimit_migration_KiBps
        return float(dc) if dc else None

    def _target_ip(self, target: str, opts: MigrationOptions) -> tuple[str, bool]:
        net = opts.migration_network or self.spec.datacenter.migration_network
        node = self.nodes[target]
        if net:
            prefix = net.split("/")[0].rsplit(".", 1)[0]
            return f"{prefix}.{node.nodeid + 10}", True
        return node.ip, False

    def _finish(self, task: TaskRt, g: GuestRt, error: str | None, moved_to: str | None) -> None:
        """Common end of a migration worker: unlock, move config on success, end the task."""
        if moved_to is not None:
            # pve-guest-common AbstractMigrate::switch_replication_job_target, after the config
            # moved: the job that replicated to the new node now replicates back to the old one.
            g.replicate = [g.node if t == moved_to else t for t in g.replicate]
            g.node = moved_to
        g.lock = None
        g.migrating = False
        g.config_version += 1
        if g.spec.ha:
            g.ha_state = "started" if g.status == "running" else "stopped"
        task.stats.ram_fraction = 0.0
        self.end_task(task, error)

    def _abort_lines(self, task: TaskRt, start_s: float, err: str) -> None:
        task.log(
            self.now,
            f"ERROR: migration aborted (duration {render_duration(self.now - start_s)}): {err}",
        )

    def _target_reachable(self, target: str) -> str | None:
        if not self.nodes[target].online:
            return "Can't connect to destination address using public key"
        return None

    def _qemu_worker(
        self, task: TaskRt, g: GuestRt, target: str, opts: MigrationOptions, running: bool
    ) -> JobGen:
        p = self.params
        start_s = self.now
        secure = self._secure(opts)
        bw = self._bwlimit(opts)
        cap = stream_cap_Bps(p, secure, bw)
        ip, dedicated = self._target_ip(target, opts)
        source = g.node
        try:
            if running and not opts.with_conntrack_state:
                task.log(
                    self.now,
                    "conntrack state migration not supported or disabled, "
                    "active connections might get dropped",
                )
            if dedicated:
                task.log(
                    self.now, f"use dedicated network address for sending migration traffic ({ip})"
                )
            task.log(self.now, f"starting migration of VM {g.vmid} to node '{target}' ({ip})")
            yield Wait(p.t_pre_s)
            unreachable = self._target_reachable(target)
            if unreachable:
                self._abort_lines(task, start_s, unreachable)
                self._finish(task, g, "migration aborted", None)
                return
            blocking = self.local_resources(g)
            if blocking and (running or not opts.force):
                err = f"can't migrate VM which uses local devices: {', '.join(blocking)}"
                self._abort_lines(task, start_s, err)
                self._finish(task, g, "migration aborted", None)
                return
            mapping = opts.targetstorage
            missing = self.unavailable_storages(g, target, mapping)
            if missing:
                err = f"storage '{missing[0]}' is not available on node '{target}'"
                self._abort_lines(task, start_s, err)
                self._finish(task, g, "migration aborted", None)
                return
            local = self.local_disks(g)
            for d in local:
                task.log(self.now, f"found local disk '{d.volid}' (attached)")
            if running and local and not opts.with_local_disks:
                d0 = local[0]
                task.log(
                    self.now,
                    f"can't migrate local disk '{d0.volid}': can't live migrate "
                    "attached local disks without with-local-disks option",
                )
                err = "Failed to sync data - can't migrate VM - check log"
                task.log(self.now, f"ERROR: {err}")
                task.log(self.now, "aborting phase 1 - cleanup resources")
                self._abort_lines(task, start_s, err)
                self._finish(task, g, "migration aborted", None)
                return
            total_disk = float(sum(d.alloc_bytes for d in local))
            if not running:
                # Offline migration: copy local volumes, then move the config.
                if local:
                    task.log(self.now, "copying local disk images")
                job = task.job
                if job is not None:
                    job.progress_total_bytes = total_disk
                for d in local:
                    yield Send(d.alloc_bytes, source, target, cap)
                    dst = mapping.map(d.storage)
                    task.log(
                        self.now,
                        f"volume '{d.volid}' is '{d.volid.replace(d.storage, dst, 1)}'"
                        " on the target",
                    )
                    self._retarget_disk(d, dst)
                unreachable = self._target_reachable(target)
                if unreachable:
                    self._abort_lines(task, start_s, unreachable)
                    self._finish(task, g, "migration aborted", None)
                    return
                yield Wait(p.t_post_s)
                task.log(
                    self.now,
                    f"migration finished successfully (duration "
                    f"{render_duration(self.now - start_s)})",
                )
                self._finish(task, g, None, target)
                return
            # Online: phase 2.
            task.log(self.now, f"starting VM {g.vmid} on remote node '{target}'")
            start_err = self._target_start_error(g, target)
            yield Wait(p.t_start_s / 2)
            if start_err:
                for line in start_err:
                    task.log(self.now, line)
                err = (
                    'error - tunnel command \'{"cmd":"quit"}\' failed - '
                    "failed to write command - start failed: QEMU exited with code 1"
                )
                self._abort_lines(task, start_s, err)
                self._finish(task, g, "migration aborted", None)
                return
            task.stats.target_started = True
            if secure:
                task.log(self.now, "start remote tunnel")
                yield Wait(p.t_start_s / 2 + p.t_start_secure_extra_s)
                task.log(self.now, "ssh tunnel ver 1")
            else:
                yield Wait(p.t_start_s / 2)
            job = task.job
            precopy = Precopy(g.used_bytes, g.dirty.rate_Bps, g.dirty.wss_bytes, p)
            if job is not None:
                job.progress_total_bytes = total_disk + g.used_bytes
            for d in local if opts.with_local_disks else []:
                dst = mapping.map(d.storage)
                nbd = f"nbd:unix:/run/qemu-server/{g.vmid}_nbd.migrate:exportname=drive-{d.key}"
                task.log(self.now, f"{d.key}: start migration to {nbd}")
                task.log(self.now, f"drive mirror is starting for drive-{d.key}")
                t_disk0 = self.now

                def disk_second(
                    sent: float, rate: float, d: DiskRt = d, t0: float = t_disk0
                ) -> None:
                    frac = sent / d.alloc_bytes if d.alloc_bytes else 1.0
                    shown = frac * d.size_bytes
                    task.log(
                        self.now,
                        f"drive-{d.key}: transferred {render_bytes(shown)} of "
                        f"{render_bytes(d.size_bytes)} ({frac * 100:.2f}%) in "
                        f"{self._short_duration(self.now - t0)}",
                    )

                yield Send(d.alloc_bytes, source, target, cap, on_second=disk_second)
                task.log(
                    self.now,
                    f"drive-{d.key}: transferred {render_bytes(d.size_bytes)} of "
                    f"{render_bytes(d.size_bytes)} (100.00%) in "
                    f"{self._short_duration(self.now - t_disk0)}, ready",
                )
                self._retarget_disk(d, dst)
            if local and opts.with_local_disks:
                task.log(self.now, "all 'mirror' jobs are ready")
            task.log(
                self.now,
                f"starting online/live migration on unix:/run/qemu-server/{g.vmid}.migrate",
            )
            task.log(self.now, "set migration capabilities")
            if bw:
                task.log(self.now, f"migration speed limit: {render_bytes(bw * 1024)}/s")
            task.log(self.now, f"migration downtime limit: {int(p.downtime_limit_s * 1000)} ms")
            cache = 1 << max(0, (int(g.memory_bytes / 10) - 1).bit_length())
            task.log(self.now, f"migration cachesize: {render_bytes(cache)}")
            task.log(self.now, "set migration parameters")
            task.log(self.now, f"start migrate command to unix:/run/qemu-server/{g.vmid}.migrate")
            ram_start = self.now
            total_state = g.memory_bytes

            def ram_second(pc: Precopy, rate: float) -> None:
                task.stats.ram_fraction = min(1.0, pc.sent_bytes / max(1.0, g.used_bytes))
                msg = (
                    f"migration active, transferred {render_bytes(pc.sent_bytes)} of "
                    f"{render_bytes(total_state)} VM-state, {render_bytes(rate)}/s"
                )
                dirty_rate = g.dirty.rate_Bps * (1 - pc.throttle)
                if dirty_rate > rate:
                    msg += f", VM dirties lots of memory: {render_bytes(dirty_rate)}/s"
                task.log(self.now, msg)

            def ram_event(ev: PrecopyEvent) -> None:
                if ev.kind == "downtime-limit":
                    task.log(
                        self.now,
                        "auto-increased downtime to continue migration: "
                        f"{int(round(ev.value * 1000))} ms",
                    )
                    task.stats.escalations = (task.stats.escalations or 0) + 1
                elif ev.kind == "auto-converge":
                    task.stats.throttle = ev.value

            yield Ram(precopy, source, target, cap, on_second=ram_second, on_event=ram_event)
            task.stats.sent_bytes = precopy.sent_bytes + total_disk
            task.stats.throttle = precopy.throttle
            if precopy.aborted:
                raise JobFailure("migration status error: failed")
            flow_rate = min(cap, self.engine.link_Bps[source], self.engine.link_Bps[target])
            stop_s = precopy.stop_copy_s(flow_rate)
            yield Wait(stop_s)
            downtime_ms = int(round((stop_s + 0.0) * 1000))
            task.stats.downtime_ms = downtime_ms
            task.stats.guest_downtime_s = stop_s + p.t_res_s
            delay = max(1, int(self.now - ram_start))
            task.log(
                self.now,
                f"average migration speed: {render_bytes(total_state / delay)}/s - "
                f"downtime {downtime_ms} ms",
            )
            task.log(
                self.now,
                f"migration completed, transferred {render_bytes(precopy.sent_bytes)} VM-state",
            )
            task.log(self.now, "migration status: completed")
            if local and opts.with_local_disks:
                task.log(self.now, "stopping NBD storage migration server on target.")
            # phase3: config moved, target resumed, source stopped, unlocked. The guest counts
            # as moved once the task has ended successfully.
            yield Wait(p.t_res_s)
            yield Wait(p.t_post_s)
            task.log(
                self.now,
                f"migration finished successfully (duration {render_duration(self.now - start_s)})",
            )
            self._finish(task, g, None, target)
        except JobInterrupted as exc:
            task.log(self.now, f"ERROR: online migrate failure - {exc}")
            task.log(self.now, "aborting phase 2 - cleanup resources")
            task.log(self.now, "migrate_cancel")
            task.log(
                self.now,
                f"ERROR: migration finished with problems (duration "
                f"{render_duration(self.now - start_s)})",
            )
            self._finish(task, g, "migration problems", None)
        except JobFailure as exc:
            if not running:
                self._abort_lines(task, start_s, str(exc))
                self._finish(task, g, "migration aborted", None)
                return
            task.log(self.now, f"ERROR: online migrate failure - {exc}")
            task.log(self.now, "aborting phase 2 - cleanup resources")
            task.log(self.now, "migrate_cancel")
            task.log(
                self.now,
                f"ERROR: migration finished with problems (duration "
                f"{render_duration(self.now - start_s)})",
            )
            self._finish(task, g, "migration problems", None)

    def _short_duration(self, seconds: float) -> str:
        s = int(seconds)
        if s < 60:
            return f"{s}s"
        return f"{s // 60}m {s % 60}s"

    def _retarget_disk(self, d: DiskRt, dst: str) -> None:
        if dst != d.storage:
            d.volid = d.volid.replace(d.storage, dst, 1)
            d.storage = dst

    def _target_start_error(self, g: GuestRt, target: str) -> list[str]:
        missing = self.bridges_missing(g, target)
        if missing:
            return [
                f"bridge '{missing[0]}' does not exist",
                f"kvm: -netdev type=tap,id=net0,ifname=tap{g.vmid}i0: network script "
                "/var/lib/qemu-server/pve-bridge failed with status 512",
            ]
        free = self.nodes[target].spec.memory_bytes - self.node_used_memory(target)
        if g.memory_bytes > free:
            return ["kvm: cannot set up guest memory 'pc.ram': Cannot allocate memory"]
        return []

    def _lxc_worker(
        self, task: TaskRt, g: GuestRt, target: str, opts: MigrationOptions, running: bool
    ) -> JobGen:
        p = self.params
        start_s = self.now
        cap = stream_cap_Bps(p, self._secure(opts), self._bwlimit(opts))
        source = g.node
        ip, _ = self._target_ip(target, opts)
        try:
            if running and opts.online and not opts.restart:
                raise JobFailure("lxc live migration is currently not implemented")
            shutdown_s, move_s, start_s_ = lxc_restart_times(self.rng, p)
            shutdown_s = min(shutdown_s, float(opts.timeout_s))
            if running:
                task.log(self.now, f"shutdown CT {g.vmid}")
                yield Wait(shutdown_s)
                g.status = "stopped"
                g.cpu_load = 0.0
            task.log(self.now, f"starting migration of CT {g.vmid} to node '{target}' ({ip})")
            unreachable = self._target_reachable(target)
            if unreachable:
                raise JobFailure(unreachable)
            mapping = opts.targetstorage
            missing = self.unavailable_storages(g, target, mapping)
            if missing:
                raise JobFailure(f"storage '{missing[0]}' is not available on node '{target}'")
            local = self.local_disks(g)
            job = task.job
            if job is not None:
                job.progress_total_bytes = float(sum(d.alloc_bytes for d in local))
            for d in local:
                task.log(self.now, f"found local volume '{d.volid}' (in current VM config)")
            for d in local:
                yield Send(d.alloc_bytes, source, target, cap)
                dst = mapping.map(d.storage)
                task.log(
                    self.now,
                    f"volume '{d.volid}' is '{d.volid.replace(d.storage, dst, 1)}' on the target",
                )
                self._retarget_disk(d, dst)
            yield Wait(move_s)
            task.log(self.now, "start final cleanup")
            if running:
                task.log(self.now, "start container on target node")
                yield Wait(start_s_)
                g.status = "running"
                g.started_at_s = self.now
                g.cpu_load = 0.05 + self.rng.random() * 0.1
            task.stats.guest_downtime_s = self.now - start_s if running else 0.0
            task.log(
                self.now,
                f"migration finished successfully (duration {render_duration(self.now - start_s)})",
            )
            self._finish(task, g, None, target)
        except JobFailure as exc:
            self._abort_lines(task, start_s, str(exc))
            if running and g.status == "stopped" and g.node == source:
                # PVE restarts the container on the source after a failed restart migration.
                task.log(self.now, "start container on source node")
                g.status = "running"
                g.started_at_s = self.now
            self._finish(task, g, "migration aborted", None)

    # -- migrateall ------------------------------------------------------------------------
    def migrate_all(
        self,
        node: str,
        target: str,
        max_workers: int | None,
        vms: list[int] | None,
        with_local_disks: bool,
        user: str,
    ) -> TaskRt:
        if target not in self.nodes:
            raise PveError(500, f"no such cluster node '{target}'")
        workers = max_workers or self.spec.datacenter.max_workers
        if not workers:
            raise PveError(
                500, "max_workers is neither set from datacenter.cfg or via --max-workers"
            )
        task = self.new_task(node, "migrateall", "", user, None)
        order = sorted(
            (
                g.vmid
                for g in self.guests.values()
                if g.node == node and not g.spec.template and (vms is None or g.vmid in vms)
            ),
            key=str,
        )
        task.stats.children = []
        job = Job(
            name=task.upid,
            gen=self._migrate_all_worker(
                task, node, target, workers, order, with_local_disks, user
            ),
        )
        task.job = job
        self.engine.start_job(job)
        return task

    def _migrate_all_worker(
        self,
        task: TaskRt,
        node: str,
        target: str,
        workers: int,
        order: list[int],
        with_local_disks: bool,
        user: str,
    ) -> JobGen:
        running: list[TaskRt] = []
        started = 0
        if not order:
            task.raw("no virtual guests matched, nothing to do..")
            self.end_task(task, None)
            return
        for vmid in order:
            g = self.guests.get(vmid)
            if g is None or g.node != node:
                continue
            online = g.status == "running"
            problems: list[str] = []
            if g.type == "qemu":
                local = self.local_disks(g)
                if online and not with_local_disks and local:
                    problems.append("Has local disks: " + ", ".join(d.volid for d in local))
                res = self.local_resources(g)
                if res:
                    problems.append("Has local resources: " + ", ".join(res))
            if problems:
                task.raw(f"skip VM {vmid} - precondition check failed:")
                for pr in problems:
                    task.raw(f"  {pr}")
                continue
            opts = MigrationOptions(
                online=online, restart=online, with_local_disks=with_local_disks
            )
            try:
                child = self.start_migration(g, target, opts, user)
            except PveError as exc:
                task.raw(f"{exc.reason}")
                continue
            started += 1
            task.stats.children = [*(task.stats.children or ()), child.upid]
            running.append(child)
            while len([t for t in running if t.status == "running"]) >= workers:
                yield Wait(1.0)
        while any(t.status == "running" for t in running):
            yield Wait(1.0)
        if started <= 0:
            self.end_task(task, "no migrations worker started...")
        else:
            self.end_task(task, None)

    # -- faults (called by tests and the control API) --------------------------------------
    def set_node_online(self, name: str, online: bool) -> None:
        node = self.node(name)
        if node.online == online:
            return
        node.online = online
        if not online:
            for task in list(self.tasks.values()):
                if task.status != "running" or task.job is None:
                    continue
                if task.stats.target == name or task.node == name:
                    self.engine.throw(
                        task.job, JobFailure(f"Connection to node '{name}' lost: No route to host")
                    )
        else:
            node.boot_epoch_s = self.now
            node.pstart = self.rng.randint(1_000, 100_000)
            for g in self.guests.values():
                if g.node == name and g.status == "running":
                    g.started_at_s = self.now
        self.events.append(
            {"event": "node-online" if online else "node-offline", "node": name, "t": self.now}
        )

    def set_lock(self, vmid: int, lock: str | None) -> None:
        g = self.guests.get(vmid)
        if g is None:
            raise PveError(500, f"unknown guest {vmid}")
        g.lock = lock
        g.config_version += 1

    def fail_next_migration(self, vmid: int, at_percent: float, message: str) -> None:
        self.migration_faults[vmid] = MigrationFault(at_percent / 100.0, message)

    def hang_next_migration(self, vmid: int) -> None:
        self.hang_next.add(vmid)

    def unhang_task(self, upid: str) -> None:
        task = self.task(upid)
        if task.job is not None:
            task.stats.hung = False
            self.engine.unhang(task.job)

    # -- state dump ------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        u = self.usage()
        return {
            "time": self.now,
            "quorate": self.quorate,
            "nodes": {
                n.name: {
                    "online": n.online,
                    "maintenance": n.maintenance,
                    "memory_total": n.spec.memory_bytes,
                    "memory_used": u.mem_used[n.name],
                    "memory_committed": u.mem_committed[n.name],
                    "guests": sorted(g.vmid for g in self.guests.values() if g.node == n.name),
                }
                for n in self.nodes.values()
            },
            "guests": {
                str(g.vmid): {
                    "node": g.node,
                    "type": g.type,
                    "status": g.status,
                    "lock": g.lock,
                    "memory": g.memory_bytes,
                    "ha_state": g.ha_state or None,
                }
                for g in self.guests.values()
            },
            "tasks": [
                {
                    "upid": t.upid,
                    "type": t.type,
                    "vmid": t.vmid,
                    "status": t.status,
                    "exitstatus": t.exitstatus,
                    "starttime": t.starttime,
                    "endtime": t.endtime,
                    "user": t.user,
                    "stats": t.stats.to_json(),
                }
                for t in self.task_order
            ],
        }
