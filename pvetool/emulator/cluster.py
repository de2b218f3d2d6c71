"""The emulated cluster's state and its queries: nodes, guests, storages, HA rules and tasks.

Everything here is consistent with everything else: a guest lives on exactly one node (it moves
only at the end of a successful migration task), node usage is the sum of its guests, and a task
ends exactly once. Callers hold `Cluster.lock` and call `sync()` before reading or changing
anything (the HTTP layer does both).

What changes the state lives along PVE's own seams: `migrate` (the API side of a migration, HA
requests, migrateall), `qemu_migrate` and `lxc_migrate` (the workers, after qemu-server
`QemuMigrate.pm` and pve-container `LXC/Migrate.pm`, with `abstract_migrate` after pve-guest-common
`AbstractMigrate.pm`), `power` (shutdown and start) and `faults` (what tests inject). The
records it holds (nodes, disks, guests, tasks) are in `runtime`.

Imports: stdlib, `pvetool.timing`, and the emulator's own modules.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import zoneinfo
from typing import Any

from pvetool.emulator.clock import Clock
from pvetool.emulator.clusterfile import ClusterSpec, GuestSpec
from pvetool.emulator.engine import Engine, JobFailure, JobInterrupted
from pvetool.emulator.faults import MigrationFaults
from pvetool.emulator.runtime import (
    DiskRt,
    GuestRt,
    NodeRt,
    PveError,
    TaskRt,
    TaskStats,
    Usage,
    _options,
    log_timestamp,
    render_bytes,
    render_duration,
    render_hms,
)
from pvetool.emulator.schema import IdMap
from pvetool.timing import (
    DIRTY_PROFILES,
    DirtyProfile,
    GiB,
    TimingParams,
    link_goodput_Bps,
)

# The runtime records (runtime.py) are re-exported: the emulator's modules find them here.
__all__ = [
    "OFFLINE_REASON",
    "Cluster",
    "DiskRt",
    "GuestRt",
    "NodeRt",
    "PveError",
    "TaskRt",
    "TaskStats",
    "Usage",
    "log_timestamp",
    "render_bytes",
    "render_duration",
    "render_hms",
]

NODE_BASE_MEMORY_BYTES = int(1.5 * GiB)
# pve-manager PVE/Service/pvestatd.pm (l.885): `my $updatetime = 10;` - each node broadcasts
# its status and its guests' RRD data every 10 s.
PVESTATD_INTERVAL_S = 10.0
OFFLINE_REASON = "Errors during connection establishment, proxy handshake: No route to host"


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
        self.tz = zoneinfo.ZoneInfo(spec.datacenter.timezone)
        self.ha: Any = None  # the HA stack's state (`ha.HaState`), set by `ha.install`
        self.migration_locks: dict[int, str] = {}  # vmid -> UPID holding its migration lock
        # user.cfg pools created or deleted through the API (POST/DELETE /pools) since start.
        self.created_pools: dict[str, str] = {}  # poolid -> comment
        self.deleted_pools: set[str] = set()
        self._build()
        from pvetool.emulator import ha  # late: the HA stack builds on this module

        ha.install(self)

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
            if d.cdrom:
                volid = f"{d.storage}:{d.iso}" if d.storage else "none"
                disks.append(DiskRt(d.key, d.storage, d.size_bytes, volid, 0, "", cdrom=True))
                continue
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
            disks.append(
                DiskRt(d.key, d.storage, d.size_bytes, volid, alloc, opts, unused=d.unused)
            )
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

    # -- what pvestatd broadcasts (RRD) -----------------------------------------------------------
    def pvestatd_phase_s(self, node: str) -> float:
        """Where in its 10 s cycle a node's pvestatd broadcasts (fixed per cluster and seed)."""
        digest = hashlib.sha256(f"{self.spec.seed}:pvestatd:{node}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 * PVESTATD_INTERVAL_S

    def next_broadcast_s(self, node: str, after_s: float) -> float:
        """The first broadcast of `node`'s pvestatd after `after_s` (epoch seconds)."""
        phase = self.pvestatd_phase_s(node)
        k = math.floor((after_s - phase) / PVESTATD_INTERVAL_S) + 1
        return phase + k * PVESTATD_INTERVAL_S

    def live_stats(self, g: GuestRt) -> dict[str, Any]:
        """A guest's status and usage as its node sees them now (vmstatus)."""
        status = self.guest_status(g)
        running = g.status == "running" and status != "unknown"
        return {
            "status": status,
            "mem": g.used_bytes if running else 0,
            "cpu": round(g.cpu_load, 4) if running else 0,
            "uptime": int(self.now - g.started_at_s) if running else 0,
        }

    def rrd_stats(self, g: GuestRt) -> dict[str, Any]:
        """What /cluster/resources shows of a guest: pve-manager PVE/API2Tools.pm
        extract_vm_stats reads the RRD data pvestatd broadcast last, so a change shows only
        after the next broadcast of the node the guest is on."""
        snap = g.rrd_snapshot
        if snap is not None:
            if self.now < self.next_broadcast_s(g.node, g.rrd_changed_at_s):
                return snap
            g.rrd_snapshot = None
        return self.live_stats(g)

    def note_change(self, g: GuestRt) -> None:
        """Call before changing what pvestatd reports of `g` (status, node)."""
        if g.rrd_snapshot is None:
            g.rrd_snapshot = self.live_stats(g)
        g.rrd_changed_at_s = self.now

    def set_status(self, g: GuestRt, status: str) -> None:
        if g.status != status:
            self.note_change(g)
            g.status = status

    def set_node(self, g: GuestRt, node: str) -> None:
        """The guest's config moves to `node` (pmxcfs: instantly visible cluster-wide)."""
        if g.node != node:
            self.note_change(g)
            g.node = node

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
        """Configured for `node` (storage.cfg `nodes`), disabled or not."""
        st = self.spec.storages.get(storage)
        if st is None:
            return False
        return st.nodes is None or node in st.nodes

    def storage_enabled_on(self, storage: str, node: str) -> bool:
        """pve-storage Storage.pm storage_check_enabled(..., $noerr): on `node` and enabled."""
        st = self.spec.storages.get(storage)
        return st is not None and not st.disable and self.storage_available_on(storage, node)

    def storage_check_enabled(self, storage: str, node: str | None = None) -> None:
        """pve-storage src/PVE/Storage.pm storage_check_node / storage_check_enabled
        (l.264-291): die "storage 'X' is not available on node 'Y'" / "is disabled"."""
        st = self.spec.storages.get(storage)
        if st is None:
            raise PveError(500, f"storage '{storage}' does not exist")
        if node is not None and not self.storage_available_on(storage, node):
            raise PveError(500, f"storage '{storage}' is not available on node '{node}'")
        if st.disable:
            raise PveError(500, f"storage '{storage}' is disabled")

    def pool_names(self) -> set[str]:
        """user.cfg pools: the cluster file's `pools:` and every pool a guest names."""
        names = set(self.spec.pools)
        names.update(g.spec.pool for g in self.guests.values() if g.spec.pool)
        names.update(self.created_pools)
        return names - self.deleted_pools

    def pool_comment(self, pool: str) -> str:
        if pool in self.created_pools:
            return self.created_pools[pool]
        return self.spec.pools[pool].comment if pool in self.spec.pools else ""

    # -- HA ---------------------------------------------------------------------------------------
    def ha_managed(self, g: GuestRt) -> bool:
        """pve-ha-manager src/PVE/HA/Config.pm $service_check_ha_state (l.352-378) /
        vm_is_ha_managed (l.467-478): an HA resource in state `ignored` is not HA-managed."""
        return bool(g.spec.ha) and g.ha_request != "ignored"

    def ha_active(self) -> bool:
        """The CRM runs (and tracks nodes) once any HA resource is configured."""
        return any(g.spec.ha for g in self.guests.values())

    def ha_resource_state(self, g: GuestRt) -> str:
        """pve-manager Cluster.pm resources (l.604-612): the CRM's service state, else the
        resource's configured state (e.g. `ignored`, which the CRM drops); "" if no resource."""
        if not g.spec.ha:
            return ""
        if self.ha_managed(g):
            return g.ha_state or g.ha_request
        return g.ha_request

    def ha_node_state(self, name: str) -> str:
        """The CRM's node status (pve-ha-manager src/PVE/HA/NodeStatus.pm): online,
        maintenance or unknown; "" while the HA stack has nothing to manage."""
        if not self.ha_active():
            return ""
        node = self.nodes[name]
        if not node.online:
            return "unknown"
        return "maintenance" if node.maintenance else "online"

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

    def guest_by_sid(self, sid: str) -> GuestRt | None:
        kind, _, num = sid.partition(":")
        g = self.guests.get(int(num)) if num.isdigit() else None
        if g is None or (kind == "vm") != (g.type == "qemu") or kind not in ("vm", "ct"):
            return None
        return g

    def local_resources(
        self, g: GuestRt, running: bool
    ) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, list[str]]]:
        """qemu-server src/PVE/QemuMigrate/Helpers.pm check_local_resources (9.2.6 l.36-114):
        (local resources, mapped resources {key: {name[, live-migration]}}, config keys whose
        mapping is missing per node). A mapped USB device and a mapped PCI device that cannot
        live-migrate (while running) stay local resources; spice USB and serial sockets do not
        count; a running VM with virtiofs is a blocker of its own (l.17-33)."""
        loc: list[str] = []
        mapped: dict[str, dict[str, Any]] = {}
        missing: dict[str, list[str]] = {n: [] for n in self.nodes}
        if running and g.spec.virtiofs:
            loc.append("virtiofs")

        def add_missing(mtype: str, key: str, name: str) -> None:
            spec = self.spec.mappings.get(name)
            for node in self.nodes:
                if spec is None or spec.type != mtype or node not in spec.nodes:
                    missing[node].append(key)

        s = g.spec
        for key, value in s.usb:
            opts = _options(value)
            if opts.get("host", "").lower() == "spice" or value.lower() == "spice":
                continue
            if opts.get("mapping"):
                add_missing("usb", key, opts["mapping"])
                mapped[key] = {"name": opts["mapping"]}
            loc.append(key)
        for key, value in s.hostpci:
            opts = _options(value)
            name = opts.get("mapping")
            if name:
                add_missing("pci", key, name)
                device: dict[str, Any] = {"name": name}
                mapped[key] = device
                spec = self.spec.mappings.get(name)
                if spec is not None and spec.live_migration:
                    device["live-migration"] = 1
                    continue
                if not running:
                    continue
            loc.append(key)
        for key, value in s.serial:
            if value != "socket":
                loc.append(key)
        for key, _value in s.parallel:
            loc.append(key)
        for key, value in s.virtiofs:
            opts = _options(value)
            dirid = opts.get("dirid") or value
            add_missing("dir", key, dirid)
            mapped[key] = {"name": dirid}
            loc.append(key)
        return loc, mapped, missing

    def local_disks(self, g: GuestRt) -> list[DiskRt]:
        """Volumes on storages that are not shared (CD-ROM drives without media excluded)."""
        return [d for d in g.disks if d.storage and not self.spec.storages[d.storage].shared]

    def unavailable_storages(self, g: GuestRt, target: str, mapping: IdMap) -> list[str]:
        missing: list[str] = []
        for d in g.disks:
            if not d.storage:
                continue
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
            # QEMU names the NIC whose tap the bridge script could not plug (qemu-server
            # QemuServer.pm `print_netdev_full`, l.1450-1467: id=netN, ifname=tap<vmid>iN,
            # script=/usr/libexec/qemu-server/pve-bridge).
            key = next(k for k, raw in g.nets if f"bridge={missing[0]}" in raw.split(","))
            index = key.removeprefix("net")
            return [
                f"bridge '{missing[0]}' does not exist",
                f"kvm: -netdev type=tap,id={key},ifname=tap{g.vmid}i{index}: network script "
                "/usr/libexec/qemu-server/pve-bridge failed with status 512",
            ]
        # PVE checks no host memory before a start or a migration: qemu-server
        # `src/PVE/QemuServer.pm` `vm_start_nolock` runs `kvm ... -m <memory>` (the size from
        # `src/PVE/QemuServer/Memory.pm` `config`, a plain `memory-backend-ram`) and only a
        # failing QEMU ends the start ("start failed: QEMU exited with code 1"); the migration
        # precondition and `QemuMigrate.pm` `prepare` look at no memory either. QEMU maps guest
        # RAM lazily, so with Linux's default overcommit heuristic (vm.overcommit_memory=0,
        # mm/util.c `__vm_enough_memory`, OVERCOMMIT_GUESS) only a mapping larger than the
        # host's whole RAM plus swap fails; anything smaller starts and overcommits the host
        # (the OOM killer's business later, not the migration's). Emulated nodes have no swap.
        if g.memory_bytes > self.nodes[node].spec.memory_bytes:
            return ["kvm: cannot set up guest memory 'pc.ram': Cannot allocate memory"]
        return []

    # -- tasks -----------------------------------------------------------------------------
    def new_task(self, node: str, ttype: str, tid: str, user: str, vmid: int | None) -> TaskRt:
        n = self.nodes[node]
        n.next_pid += self.rng.randint(1, 40)
        pid = n.next_pid
        start = int(self.now)
        upid = f"UPID:{node}:{pid:08X}:{n.pstart:08X}:{start:08X}:{ttype}:{tid}:{user}:"
        task = TaskRt(upid, node, pid, n.pstart, start, ttype, tid, user, vmid, tz=self.tz)
        self.tasks[upid] = task
        self.task_order.append(task)
        # the exact emulated start (UPIDs and task lists have whole seconds), for benchmarks
        self.events.append({"event": "task-start", "upid": upid, "t": self.now})
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

    def shutdown_needed_s(self, g: GuestRt) -> float:
        """How long the guest OS takes to shut down (the timing model's container shutdown
        time, or what a fault set; math.inf: it ignores the shutdown request)."""
        fixed = self.faults.shutdown_s.get(g.vmid)
        if fixed is not None:
            return fixed
        return self.rng.uniform(self.params.lxc_shutdown_min_s, self.params.lxc_shutdown_max_s)

    def stop_task(self, task: TaskRt) -> None:
        if task.status != "running":
            return
        if task.job is not None and not task.job.done:
            self.engine.throw(task.job, JobInterrupted("interrupted by signal"))
        else:
            self.end_task(task, "interrupted by signal")

    # -- checks PVE makes before it starts a task --------------------------------------------
    def check_lock(self, g: GuestRt) -> None:
        """pve-guest-common AbstractConfig.pm check_lock: "VM is locked (backup)"."""
        if g.lock:
            raise PveError(500, f"{g.kind_word} is locked ({g.lock})")

    def set_lock(self, vmid_or_guest: int | GuestRt, lock: str | None) -> None:
        g = self.guests.get(vmid_or_guest) if isinstance(vmid_or_guest, int) else vmid_or_guest
        if g is None:
            raise PveError(500, f"unknown guest {vmid_or_guest}")
        g.lock = lock
        g.config_version += 1

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
