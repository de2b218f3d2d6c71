"""An in-memory cluster that satisfies the executor's `ClusterApi`, with a matching `follow`.

Migrations start as tasks (the guest is locked `migrate`) and end when `follow` is called for
them: then the guest moves (or the injected fault happens). A test can hold a migration open
with a gate (`hold(vmid)`) to look at the window while it runs. Concurrency maxima are recorded.
Shutdowns and starts (`power`) are tasks too: the guest stops or runs when they are followed,
unless `fail_power[(vmid, action)]` holds a reason for that request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pvetool.errors import ApiError, ApiUnreachable, TaskFailed, TaskTimeout, ValidationError
from pvetool.executor import (
    Confirm,
    Executor,
    ExecutorDeps,
    ExecutorOptions,
    HookRunner,
    Replan,
    run_hook,
)
from pvetool.journal import Journal
from pvetool.model import (
    Caps,
    ClusterNodeStatus,
    ClusterResources,
    ClusterSnapshot,
    ClusterStatus,
    ExecutionPlan,
    Guest,
    GuestKind,
    GuestStatus,
    MigrationProgress,
    MigrationRequest,
    Move,
    MoveOptions,
    Node,
    NodeRefusal,
    Precondition,
    Stage,
    TaskQuery,
    TaskResult,
    TaskStatus,
    TaskSummary,
    Upid,
)
from pvetool.model.events import Observer

GiB = 1024**3
BASE_BYTES = 1 * GiB


@dataclass
class FakeGuest:
    vmid: int
    kind: GuestKind
    node: str
    status: str = "running"
    memory: int = 2 * GiB
    lock: str | None = None
    ha: bool = False
    agent: bool = False
    name: str = ""
    used: int | None = None  # memory the guest really uses (PVE's `mem`); None: all of it

    @property
    def used_bytes(self) -> int:
        return self.memory if self.used is None else self.used


@dataclass
class FakeTask:
    upid: Upid
    vmid: int
    source: str
    target: str
    status: str = "running"
    exitstatus: str | None = None
    params: dict[str, object] = field(default_factory=dict)


class FakeApi:
    """A small cluster: nodes with memory, guests, migration tasks, and faults."""

    def __init__(self, nodes: Mapping[str, int], guests: list[FakeGuest]) -> None:
        self.lock = threading.RLock()
        self.memory = dict(nodes)
        self.online = dict.fromkeys(nodes, True)
        self.guests = {g.vmid: g for g in guests}
        self.task_map: dict[str, FakeTask] = {}
        self.started: list[FakeTask] = []
        self.followed: list[str] = []
        self.clock = 1_800_000_000
        self.pid = 1000
        # faults
        self.fail_next: dict[int, str] = {}
        self.noop_next: set[int] = set()
        self.hang: set[int] = set()
        self.refuse_target: dict[tuple[int, str], str] = {}
        self.agent_silent_pings: dict[int, int] = {}
        self.offline_on_follow: dict[int, str] = {}  # vmid -> node going offline mid-task
        self.fail_power: dict[tuple[int, str], list[str]] = {}  # (vmid, action) -> reasons
        self.fail_resources = 0  # the next N /cluster/resources reads answer HTTP 500
        self.stale_status: dict[int, str] = {}  # vmid -> run state pvestatd still broadcasts
        self.garble_post: set[int] = set()  # the migrate POST starts, its answer is garbage
        self.lose_post: set[int] = set()  # the migrate POST's connection breaks, nothing starts
        self.power: list[FakeTask] = []  # shutdown/start tasks, in order
        # gates and concurrency bookkeeping
        self.gates: dict[int, threading.Event] = {}
        self.ping_gates: dict[int, threading.Event] = {}  # agent pings of vmid wait for it
        self.running: list[FakeTask] = []
        self.max_cluster = 0
        self.max_source: dict[str, int] = {}
        self.max_target: dict[str, int] = {}
        self.overfilled: list[str] = []
        self.pings = 0
        self.snapshots = 0

    # -- helpers for tests

    def hold(self, *vmids: int) -> None:
        for vmid in vmids:
            self.gates[vmid] = threading.Event()

    def release(self, *vmids: int) -> None:
        for vmid in vmids or tuple(self.gates):
            self.gates[vmid].set()

    def used(self, node: str) -> int:
        return BASE_BYTES + sum(
            g.used_bytes for g in self.guests.values() if g.node == node and g.status == "running"
        )

    def committed(self, node: str) -> int:
        """Configured memory of the running guests on `node` (what the chaos check counts)."""
        return sum(
            g.memory for g in self.guests.values() if g.node == node and g.status == "running"
        )

    def node_of(self, vmid: int) -> str:
        return self.guests[vmid].node

    def snapshot(self) -> ClusterSnapshot:
        """The cluster as `fetch_snapshot` would read it (for the planner's re-planning)."""
        self.snapshots += 1
        with self.lock:
            nodes = {
                n: Node(
                    name=n,
                    online=self.online[n],
                    cpus=64,
                    memory_total_bytes=total,
                    memory_used_bytes=self.used(n),
                )
                for n, total in self.memory.items()
            }
            guests = {
                g.vmid: Guest(
                    vmid=g.vmid,
                    kind=g.kind,
                    name=g.name or f"g{g.vmid}",
                    node=g.node,
                    status=g.status,
                    memory_bytes=g.memory,
                    used_memory_bytes=g.used_bytes if g.status == "running" else 0,
                    cores=1,
                    lock=g.lock,
                    ha_state="started" if g.ha else None,
                    agent_enabled=g.agent,
                    config_known=True,
                )
                for g in self.guests.values()
            }
        quorate = sum(self.online.values()) * 2 > len(nodes)
        return ClusterSnapshot("fake", quorate, nodes, guests)

    # -- ClusterApi

    def cluster_resources(
        self, type_filter: Literal["vm", "storage", "node"] | None = None
    ) -> ClusterResources:
        with self.lock:
            if self.fail_resources > 0:
                self.fail_resources -= 1
                raise ApiError(
                    method="GET", path="/cluster/resources", status=500, reason="Internal error"
                )
            nodes = tuple(
                Node(
                    name=n,
                    online=self.online[n],
                    memory_total_bytes=total,
                    memory_used_bytes=self.used(n),
                )
                for n, total in self.memory.items()
            )
            guests = tuple(
                Guest(
                    vmid=g.vmid,
                    kind=g.kind,
                    name=g.name or f"g{g.vmid}",
                    node=g.node,
                    status=self.stale_status.get(g.vmid, g.status),
                    memory_bytes=g.memory,
                    used_memory_bytes=g.used_bytes if g.status == "running" else 0,
                    lock=g.lock,
                    ha_state="started" if g.ha else None,
                    agent_enabled=g.agent,
                )
                for g in self.guests.values()
            )
        return ClusterResources(nodes=() if type_filter == "vm" else nodes, guests=guests)

    def guest_status(self, kind: GuestKind, node: str, vmid: int) -> GuestStatus:
        with self.lock:
            g = self.guests[vmid]
            if g.node != node:
                raise ApiError(
                    method="GET",
                    path=f"/nodes/{node}/{kind}/{vmid}/status/current",
                    status=500,
                    reason=f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does "
                    "not exist",
                )
            return GuestStatus(vmid=vmid, kind=kind, status=g.status, lock=g.lock)

    def cluster_status(self) -> ClusterStatus:
        with self.lock:
            nodes = tuple(ClusterNodeStatus(name=n, online=o) for n, o in self.online.items())
            quorate = sum(nodes_online for nodes_online in self.online.values()) * 2 > len(nodes)
        return ClusterStatus(name="fake", quorate=quorate, nodes=nodes)

    def migrate_precondition(
        self, kind: GuestKind, node: str, vmid: int, target: str | None = None
    ) -> Precondition:
        with self.lock:
            g = self.guests[vmid]
            if g.lock:
                raise ApiError(
                    method="GET",
                    path=f"/nodes/{node}/{kind}/{vmid}/migrate",
                    status=500,
                    reason=f"VM is locked ({g.lock})",
                )
            allowed = [n for n, o in self.online.items() if o and n != node]
            refused = {
                t: NodeRefusal(node=t, unavailable_storages=(why,))
                for (v, t), why in self.refuse_target.items()
                if v == vmid
            }
            allowed = [n for n in allowed if n not in refused]
        return Precondition(
            kind=kind,
            running=g.status == "running",
            allowed_nodes=tuple(allowed),
            not_allowed=refused,
        )

    def start_migration(self, req: MigrationRequest) -> Upid:
        kind, node, vmid = req.kind, req.node, req.vmid
        if vmid in self.lose_post:
            self.lose_post.discard(vmid)
            raise ApiUnreachable(
                host="pve1:8006",
                reason="Connection broken: IncompleteRead(0 bytes read)",
                method="POST",
                path=f"/nodes/{node}/{kind}/{vmid}/migrate",
                retryable=False,
            )
        upid = self._start_migration(req)
        if vmid in self.garble_post:
            self.garble_post.discard(vmid)
            raise ValidationError("PVE returned NoneType where a task id was expected")
        return upid

    def _start_migration(self, req: MigrationRequest) -> Upid:
        kind, node, vmid, target = req.kind, req.node, req.vmid, req.target
        with self.lock:
            g = self.guests[vmid]
            assert g.node == node, f"{vmid} is on {g.node}, not {node}"
            assert not g.lock, f"{vmid} is locked"
            self.clock += 1
            self.pid += 1
            ttype = "hamigrate" if g.ha else ("qmigrate" if kind == "qemu" else "vzmigrate")
            upid = Upid(node, self.pid, 1, self.clock, ttype, str(vmid), "root@pam")
            task = FakeTask(
                upid,
                vmid,
                node,
                target,
                params={
                    "online": req.online,
                    "restart": req.restart,
                    "with_local_disks": req.with_local_disks,
                    "target_storage": req.target_storage,
                    "bwlimit": req.bwlimit_kib_s,
                },
            )
            self.task_map[str(upid)] = task
            self.started.append(task)
            g.lock = "migrate"
            self.running.append(task)
            self.max_cluster = max(self.max_cluster, len(self.running))
            for key, book in ((node, self.max_source), (target, self.max_target)):
                count = sum(
                    1
                    for t in self.running
                    if (t.source if book is self.max_source else t.target) == key
                )
                book[key] = max(book.get(key, 0), count)
            if g.status == "running":
                incoming = sum(
                    self.guests[t.vmid].memory for t in self.running if t.target == target
                )
                if self.used(target) + incoming > self.memory[target]:
                    self.overfilled.append(f"{target} at the start of {vmid}")
        return upid

    def _power_task(self, kind: GuestKind, node: str, vmid: int, action: str) -> Upid:
        with self.lock:
            g = self.guests[vmid]
            assert g.node == node, f"{vmid} is on {g.node}, not {node}"
            self.clock += 1
            self.pid += 1
            prefix = "qm" if kind == "qemu" else "vz"
            ttype = ("hastop" if action == "shutdown" else "hastart") if g.ha else prefix + action
            upid = Upid(node, self.pid, 1, self.clock, ttype, str(vmid), "root@pam")
            task = FakeTask(upid, vmid, node, node, params={"action": action})
            self.task_map[str(upid)] = task
            self.power.append(task)
        return upid

    def shutdown_guest(
        self,
        kind: GuestKind,
        node: str,
        vmid: int,
        *,
        timeout_s: int | None = None,
        force_stop: bool | None = None,
    ) -> Upid:
        upid = self._power_task(kind, node, vmid, "shutdown")
        self.task_map[str(upid)].params.update(timeout=timeout_s, force_stop=force_stop)
        return upid

    def start_guest(self, kind: GuestKind, node: str, vmid: int) -> Upid:
        return self._power_task(kind, node, vmid, "start")

    def power_log(self) -> list[tuple[str, int, str]]:
        """(action, vmid, node) of every shutdown/start requested, in order."""
        return [(str(t.params["action"]), t.vmid, t.source) for t in self.power]

    def _follow_power(self, task: FakeTask) -> TaskResult:
        upid = task.upid
        action = str(task.params["action"])
        with self.lock:
            g = self.guests[task.vmid]
            if task.status == "running":
                reasons = self.fail_power.get((task.vmid, action))
                error = reasons.pop(0) if reasons else None
                if error is None and g.lock:
                    error = f"VM is locked ({g.lock})"
                if error is None and action == "start" and g.status == "running":
                    error = f"VM {task.vmid} already running"
                if error is not None:
                    task.status, task.exitstatus = "stopped", error
                else:
                    task.status, task.exitstatus = "stopped", "OK"
                    g.status = "stopped" if action == "shutdown" else "running"
            if task.exitstatus != "OK":
                raise TaskFailed(
                    upid=str(upid),
                    node=upid.node,
                    exitstatus=str(task.exitstatus),
                    last_lines=(f"TASK ERROR: {task.exitstatus}",),
                    description=f"Task {upid.type} {task.vmid}",
                )
        return TaskResult(upid=upid, exitstatus="OK", duration_s=3.0)

    def agent_ping(self, node: str, vmid: int) -> bool:
        gate = self.ping_gates.get(vmid)
        if gate is not None:
            gate.wait(20)
        with self.lock:
            self.pings += 1
            left = self.agent_silent_pings.get(vmid, 0)
            if left > 0:
                self.agent_silent_pings[vmid] = left - 1
                return False
            return self.guests[vmid].node == node

    def task_status(self, upid: Upid | str) -> TaskStatus:
        task = self.task_map[str(upid)]
        return TaskStatus(
            task.upid, "running" if task.status == "running" else "stopped", task.exitstatus
        )

    def tasks(self, query: TaskQuery) -> tuple[TaskSummary, ...]:
        node, vmid = query.node, query.vmid
        with self.lock:
            found = [
                TaskSummary(
                    t.upid,
                    t.exitstatus,
                    None if t.status == "running" else t.upid.starttime + 10,
                )
                for t in self.task_map.values()
                if t.source == node and (vmid is None or t.vmid == vmid)
            ]
        return tuple(reversed(found))

    # -- follow (what pvetool.api.follow_task does against PVE)

    def follow(
        self,
        upid: Upid,
        timeout_s: float,
        on_progress: Callable[[MigrationProgress], None] | None,
    ) -> TaskResult:
        task = self.task_map[str(upid)]
        self.followed.append(str(upid))
        if "action" in task.params:
            return self._follow_power(task)
        gate = self.gates.get(task.vmid)
        if gate is not None:
            assert gate.wait(30), f"gate of {task.vmid} never opened"
        if on_progress is not None:
            on_progress(MigrationProgress(upid, 512, 1024, 100.0))
        with self.lock:
            g = self.guests[task.vmid]
            if task.vmid in self.hang:
                raise TaskTimeout(upid=str(upid), node=upid.node, timeout_s=timeout_s)
            if task.status == "running":
                self.running.remove(task)
                gone = self.offline_on_follow.pop(task.vmid, None)
                if gone is not None:
                    self.online[gone] = False
                if task.vmid in self.fail_next or gone == task.target:
                    reason = self.fail_next.pop(
                        task.vmid, "Connection to node 'x' lost: No route to host"
                    )
                    task.status, task.exitstatus = "stopped", "migration aborted"
                    g.lock = None
                    raise TaskFailed(
                        upid=str(upid),
                        node=upid.node,
                        exitstatus="migration aborted",
                        last_lines=(f"ERROR: migration aborted (duration 00:00:01): {reason}",),
                        description=f"Migration of VM {task.vmid}",
                    )
                task.status, task.exitstatus = "stopped", "OK"
                g.lock = None
                if task.vmid in self.noop_next:
                    self.noop_next.discard(task.vmid)
                else:
                    g.node = task.target
            elif task.exitstatus != "OK":
                raise TaskFailed(upid=str(upid), node=upid.node, exitstatus=str(task.exitstatus))
        real = upid
        if upid.type == "hamigrate":
            real = replace(upid, type="qmigrate", pid=upid.pid + 5000)
        return TaskResult(
            upid=real,
            exitstatus="OK",
            duration_s=10.0,
            downtime_ms=40 if task.vmid and self.guests[task.vmid].kind == "qemu" else None,
            ha_upid=upid if upid.type == "hamigrate" else None,
        )


def move(
    mid: str,
    vmid: int,
    source: str,
    target: str,
    *,
    kind: GuestKind = "qemu",
    running: bool = True,
    pinned: bool = False,
    after: tuple[str, ...] = (),
    ha: bool = False,
    start_s: float = 0.0,
    shutdown: bool = False,
) -> Move:
    return Move(
        id=mid,
        vmid=vmid,
        kind=kind,
        name=f"g{vmid}",
        source=source,
        target=target,
        options=MoveOptions(
            online=kind == "qemu" and running and not shutdown,
            restart=kind == "lxc" and running,
            ha=ha,
            shutdown=shutdown,
        ),
        reason="test",
        memory_bytes=2 * GiB,
        predicted_start_s=start_s,
        predicted_end_s=start_s + 10.0,
        after=after,
        pinned=pinned,
    )


WIDE = Caps(cluster=4, per_source=4, per_target=4)


def plan_of(
    *stages: Stage | list[Move],
    caps: Caps = WIDE,
    on_failure: Literal["stop", "continue", "skip-guest"] = "stop",
    blocked: tuple[int, ...] = (),
    task_timeout_s: float = 60.0,
) -> ExecutionPlan:
    built = tuple(
        s if isinstance(s, Stage) else Stage(kind="migrate", label="drain", moves=tuple(s))
        for s in stages
    )
    return ExecutionPlan(
        name="test",
        source="<test>",
        stages=built,
        caps=caps,
        blocked=blocked,
        on_failure=on_failure,
        task_timeout_s=task_timeout_s,
        plan_digest="d1",
        fingerprint="f1",
    )


def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll `predicate` (for tests that look at a run from another thread); bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def no_sleep(_seconds: float) -> None:
    return None


class VirtualClock:
    """A monotonic clock that moves only when the code under test sleeps: deadlines run out
    at once, and no test waits real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(seconds, 0.001)


def make_executor(
    api: FakeApi,
    *,
    journal: Journal | None = None,
    replan: Replan | None = None,
    observer: Observer | None = None,
    hook_runner: HookRunner | None = None,
    confirm: Confirm | None = None,
    clock: Callable[[], float] | None = None,
    tick_s: float = 0.01,
    **options: Any,
) -> Executor:
    """An executor on the in-memory cluster that waits no real time."""
    virtual = VirtualClock()
    deps = ExecutorDeps(
        api,
        api.follow,
        journal=journal,
        replan=replan,
        observer=observer,
        confirm=confirm,
        hook_runner=hook_runner or run_hook,
        sleep=virtual.sleep if clock is None else no_sleep,
        clock=clock or virtual,
    )
    agents = frozenset(options.pop("agent_vmids", ()))
    return Executor(deps, ExecutorOptions(agent_vmids=agents, tick_s=tick_s, **options))


def each(fn: Callable[[Move, frozenset[str]], Move | None]) -> Replan:
    """A `Replan` that answers each asked move with `fn(move, avoid)`."""

    def replan(asked: Sequence[tuple[Move, frozenset[str]]]) -> list[Move | None]:
        return [fn(m, avoid) for m, avoid in asked]

    return replan
