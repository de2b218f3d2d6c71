"""The planner's working copy of a cluster: where every guest will be, and what each node holds.

A strategy plans moves one after the other; after each one it calls `Placement.commit`, so the
next capacity check sees it (OpenStack Watcher's way). Capacity is counted *cumulatively* over
every move planned before in the same stage:

``host overhead + configured memory of the running guests now on the node
+ every planned incoming running guest - every planned departure <= memory - headroom``

A departure only frees memory once its migration has *ended*, so a move that needs memory freed
by a departure gets that departure in `Move.after` (`Capacity.deps`). The departures counted are
always a prefix (in planned order) of the node's departures, and the prefix needed grows with
every planned arrival; so however a sliding window interleaves the moves, a node never holds more
than its limit at any moment (tests/unit/planner/test_timeline_replay.py replays it).

vCPUs: running guests' vCPUs may use `cpu_overcommit` x CPUs minus the CPU headroom; counted the
same way. Local disks copied with a guest need room on the target storage (shared: once for
the cluster; local: per node); departures do not free disk space until the plan is done.

Pure: no I/O, no clock. Imports: the standard library, `pvetool.model` and `pvetool.units`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pvetool.model import ClusterSnapshot, Guest, PlanRules
from pvetool.units import GiB, MiB

__all__ = [
    "Capacity",
    "Placement",
    "disk_plan",
    "fmt_bytes",
    "guest_label",
    "memory_limit_bytes",
]


def fmt_bytes(n_bytes: float) -> str:
    """Binary GiB/MiB with one decimal, as PVE's GUI shows them."""
    if abs(n_bytes) >= GiB:
        return f"{n_bytes / GiB:.1f} GiB"
    return f"{n_bytes / MiB:.1f} MiB"


def guest_label(guest: Guest) -> str:
    return f"{guest.vmid} ({guest.name})" if guest.name else str(guest.vmid)


def memory_limit_bytes(snapshot: ClusterSnapshot, node: str, rules: PlanRules) -> int:
    """What `node` may hold, its host's own use included: memory - headroom.

    The host's use is counted on the other side (`Placement.committed_memory` starts from it);
    subtracting it here as well counted it twice and left guests that fit on a drained node.
    """
    entry = snapshot.nodes[node]
    return entry.memory_total_bytes - rules.memory_headroom_for(entry.memory_total_bytes)


def disk_plan(guest: Guest, mapping: Iterable[tuple[str, str]]) -> tuple[tuple[str, str, int], ...]:
    """(source storage, target storage, bytes) of each local disk a migration copies.

    `mapping` is PVE's ``targetstorage``: pairs (source, target), ``*`` for every other storage.
    CD-ROMs and host paths are not copied (a host path is a local device, see checks).
    """
    pairs = dict(mapping)
    result = []
    for disk in guest.local_disks:
        if disk.storage is None or disk.media != "disk":
            continue
        target = pairs.get(disk.storage) or pairs.get("*") or disk.storage
        result.append((disk.storage, target, disk.size_bytes or 0))
    return tuple(result)


@dataclass(frozen=True)
class Capacity:
    """Whether a guest fits a target after every move planned so far, and what it waits for."""

    fits_memory: bool
    fits_cpu: bool
    need_bytes: int
    free_bytes: int  # memory left on the target after the planned moves, before this guest
    need_vcpus: int
    free_vcpus: float
    deps: tuple[str, ...] = ()  # departures that must have ended first

    @property
    def fits(self) -> bool:
        return self.fits_memory and self.fits_cpu


@dataclass
class _Flow:
    move_id: str
    vmid: int
    memory_bytes: int
    vcpus: int


@dataclass
class Placement:
    """Mutable planning state of one stage; build a new one for the next stage."""

    snapshot: ClusterSnapshot
    rules: PlanRules
    node_of: dict[int, str] = field(default_factory=dict)
    move_of: dict[int, str] = field(default_factory=dict)  # vmid -> id of its planned move
    _base_memory: dict[str, int] = field(default_factory=dict)
    _base_vcpus: dict[str, int] = field(default_factory=dict)
    _incoming: dict[str, list[_Flow]] = field(default_factory=dict)
    _outgoing: dict[str, list[_Flow]] = field(default_factory=dict)
    _disk_in: dict[tuple[str, str | None], int] = field(default_factory=dict)
    _limits: dict[str, int] = field(default_factory=dict)
    _overhead: dict[str, int] = field(default_factory=dict)
    _undo: dict[str, tuple[int, str, str, str | None, list[tuple[tuple[str, str | None], int]]]] = (
        field(default_factory=dict)
    )

    def __post_init__(self) -> None:
        snap = self.snapshot
        for name in snap.nodes:
            self._overhead[name] = snap.host_overhead_bytes(name)
            self._base_memory[name] = self._overhead[name]
            self._base_vcpus[name] = 0
            self._limits[name] = memory_limit_bytes(snap, name, self.rules)
        for guest in snap.guests.values():
            self.node_of[guest.vmid] = guest.node
            if guest.running and guest.node in self._base_memory:
                self._base_memory[guest.node] += guest.memory_bytes
                self._base_vcpus[guest.node] += guest.cores

    # -- accounting -----------------------------------------------------------------------
    @staticmethod
    def memory_of(guest: Guest) -> int:
        """What a guest occupies on a node: configured memory if running, else nothing."""
        return guest.memory_bytes if guest.running else 0

    @staticmethod
    def vcpus_of(guest: Guest) -> int:
        return guest.cores if guest.running else 0

    def memory_limit(self, node: str) -> int:
        return self._limits.get(node, 0)

    def cpu_limit(self, node: str) -> float:
        entry = self.snapshot.nodes.get(node)
        return self.rules.cpu_limit_for(entry.cpus) if entry is not None else 0.0

    def committed_memory(self, node: str) -> int:
        """Memory held on `node` once every planned move has ended (incl. host overhead)."""
        return (
            self._base_memory.get(node, 0)
            + sum(f.memory_bytes for f in self._incoming.get(node, ()))
            - sum(f.memory_bytes for f in self._outgoing.get(node, ()))
        )

    def committed_vcpus(self, node: str) -> int:
        return (
            self._base_vcpus.get(node, 0)
            + sum(f.vcpus for f in self._incoming.get(node, ()))
            - sum(f.vcpus for f in self._outgoing.get(node, ()))
        )

    def load(self, node: str, memory_weight: float = 1.0, cpu_weight: float = 0.0) -> float:
        """Load after the planned moves: running guests' memory / node memory, and vCPUs /
        (CPUs x overcommit), weighted. Host overhead is not part of the balance."""
        entry = self.snapshot.nodes[node]
        memory = self.committed_memory(node) - self._overhead.get(node, 0)
        mem_load = memory / entry.memory_total_bytes if entry.memory_total_bytes else 1.0
        cpu_cap = entry.cpus * self.rules.cpu_overcommit
        cpu_load = self.committed_vcpus(node) / cpu_cap if cpu_cap else 1.0
        return memory_weight * mem_load + cpu_weight * cpu_load

    def incoming_count(self, node: str) -> int:
        return len(self._incoming.get(node, ()))

    def capacity(self, guest: Guest, target: str) -> Capacity:
        """Does `guest` fit `target` after the planned moves, and after which departures?"""
        need = self.memory_of(guest)
        need_cpu = self.vcpus_of(guest)
        mem_limit = self.memory_limit(target)
        cpu_limit = self.cpu_limit(target)
        arriving_mem = self._base_memory.get(target, 0) + sum(
            f.memory_bytes for f in self._incoming.get(target, ())
        )
        arriving_cpu = self._base_vcpus.get(target, 0) + sum(
            f.vcpus for f in self._incoming.get(target, ())
        )
        outgoing = self._outgoing.get(target, [])
        freed_mem = sum(f.memory_bytes for f in outgoing)
        freed_cpu = sum(f.vcpus for f in outgoing)
        free_mem = mem_limit - (arriving_mem - freed_mem)
        free_cpu = cpu_limit - (arriving_cpu - freed_cpu)
        fits_mem = need == 0 or need <= free_mem
        fits_cpu = need_cpu == 0 or need_cpu <= free_cpu
        deps: list[str] = []
        if fits_mem and fits_cpu and (need or need_cpu):
            # The shortest prefix of departures after which the guest fits at every moment.
            mem, cpu = arriving_mem + need, arriving_cpu + need_cpu
            for flow in outgoing:
                if (need == 0 or mem <= mem_limit) and (need_cpu == 0 or cpu <= cpu_limit):
                    break
                deps.append(flow.move_id)
                mem -= flow.memory_bytes
                cpu -= flow.vcpus
        return Capacity(
            fits_memory=fits_mem,
            fits_cpu=fits_cpu,
            need_bytes=need,
            free_bytes=free_mem,
            need_vcpus=need_cpu,
            free_vcpus=free_cpu,
            deps=tuple(deps),
        )

    def storage_free(self, storage: str, target: str) -> tuple[int | None, tuple[str, str | None]]:
        """Free bytes of `storage` as seen from `target` after the planned disk copies."""
        entry = self.snapshot.storages.get(storage)
        shared = entry is not None and entry.shared
        key = (storage, None if shared else target)
        free = self.snapshot.storage_free_bytes(storage, target)
        if free is None:
            return None, key
        return free - self._disk_in.get(key, 0), key

    def commit(
        self,
        move_id: str,
        guest: Guest,
        target: str,
        disks: Iterable[tuple[str, str, int]] = (),
    ) -> None:
        """Record a planned move: the next checks see the guest on `target`."""
        source = self.node_of.get(guest.vmid, guest.node)
        flow = _Flow(move_id, guest.vmid, self.memory_of(guest), self.vcpus_of(guest))
        self._outgoing.setdefault(source, []).append(flow)
        self._incoming.setdefault(target, []).append(flow)
        added: list[tuple[tuple[str, str | None], int]] = []
        for _, storage, size in disks:
            _, key = self.storage_free(storage, target)
            self._disk_in[key] = self._disk_in.get(key, 0) + size
            added.append((key, size))
        self._undo[move_id] = (guest.vmid, source, target, self.move_of.get(guest.vmid), added)
        self.node_of[guest.vmid] = target
        self.move_of[guest.vmid] = move_id

    def undo(self, move_id: str, vmid: int) -> None:
        """Take back the last commit of `move_id` (used to try a target and look at it)."""
        entry = self._undo.pop(move_id, None)
        if entry is None or entry[0] != vmid:
            return
        _, source, target, previous_move, added = entry
        for flows in (self._outgoing.get(source, []), self._incoming.get(target, [])):
            for i in range(len(flows) - 1, -1, -1):
                if flows[i].move_id == move_id:
                    del flows[i]
                    break
        for key, size in added:
            self._disk_in[key] -= size
        self.node_of[vmid] = source
        if previous_move is None:
            self.move_of.pop(vmid, None)
        else:
            self.move_of[vmid] = previous_move

    def guests_planned_on(self, node: str) -> tuple[int, ...]:
        return tuple(sorted(v for v, n in self.node_of.items() if n == node))
