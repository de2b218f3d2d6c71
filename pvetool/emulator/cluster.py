"""The emulated cluster's state and its queries: nodes, guests, storages, HA rules and tasks.

Everything here is consistent with everything else: a guest lives on exactly one node (it moves
only at the end of a successful migration task), node usage is the sum of its guests, and a task
ends exactly once. Callers hold `Cluster.lock` and call `sync()` before reading or changing
anything (the HTTP layer does both).

What changes the state lives along PVE's own seams: `migrate` (the API side of a migration, HA
requests, migrateall), `qemu_migrate` and `lxc_migrate` (the workers, after qemu-server
`QemuMigrate.pm` and pve-container `LXC/Migrate.pm`, with `abstract_migrate` after pve-guest-common
`AbstractMigrate.pm`), `power` (shutdown and start) and `faults` (what tests inject).

Imports: stdlib, `pvetool.timing`, and the emulator's own modules.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

from pvetool.emulator.clock import Clock
from pvetool.emulator.clusterfile import ClusterSpec, GuestSpec, NodeSpec
from pvetool.emulator.engine import Engine, Job, JobFailure, JobInterrupted
from pvetool.emulator.faults import MigrationFaults
from pvetool.emulator.schema import IdMap
from pvetool.timing import (
    DIRTY_PROFILES,
    DirtyProfile,
    GiB,
    MiB,
    TimingParams,
    link_goodput_Bps,
)

NODE_BASE_MEMORY_BYTES = int(1.5 * GiB)
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

    def state(self) -> dict[str, Any]:
        """The task in the state dump (`/_emulator/state`; `/_emulator/tasks/{upid}` shows a
        part of it)."""
        return {
            "upid": self.upid,
            "type": self.type,
            "vmid": self.vmid,
            "status": self.status,
            "exitstatus": self.exitstatus,
            "starttime": self.starttime,
            "endtime": self.endtime,
            "user": self.user,
            "stats": self.stats.to_json(),
        }

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
        self.faults = MigrationFaults()  # armed by fail_next_migration / hang_next_migration
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
            if g.type == "lxc" and d.key.startswith("mp"):
                # pve-container src/PVE/LXC/Config.pm $mp_desc: the mount path `mp` is required
                opts = f"mp=/mnt/{d.key}"
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

    def start_error(self, g: GuestRt, node: str) -> list[str]:
        """The log lines of QEMU failing to start `g` on `node` (no error: [])."""
        missing = self.bridges_missing(g, node)
        if missing:
            return [
                f"bridge '{missing[0]}' does not exist",
                f"kvm: -netdev type=tap,id=net0,ifname=tap{g.vmid}i0: network script "
                "/var/lib/qemu-server/pve-bridge failed with status 512",
            ]
        free = self.nodes[node].spec.memory_bytes - self.node_used_memory(node)
        if g.memory_bytes > free:
            return ["kvm: cannot set up guest memory 'pc.ram': Cannot allocate memory"]
        return []

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

    # -- checks PVE makes before it starts a task --------------------------------------------
    def check_lock(self, g: GuestRt) -> None:
        if g.lock:
            raise PveError(500, f"{g.kind_word} is locked ({g.lock})")

    def check_quorum(self) -> None:
        """What PVE's API answers when a change needs quorum (pmxcfs is read-only)."""
        if not self.quorate:
            raise PveError(500, "cluster not ready - no quorum?")

    # -- faults (the Python fault API; the control routes call the same) --------------------
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
        """The guest's next migration fails with `message` once `at_percent` is sent."""
        self.faults.fail_next(vmid, at_percent, message)

    def hang_next_migration(self, vmid: int) -> None:
        """The guest's next migration makes no progress until `unhang_task` or a stop."""
        self.faults.hang_next(vmid)

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
            "tasks": [t.state() for t in self.task_order],
        }
