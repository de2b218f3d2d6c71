"""The checks around one migration: just before it starts, and after its task ended.

Before (`precheck`): the guest still exists and is still on the move's source (already on the
target: the move is *skipped*; elsewhere: unsafe, it *fails*), it is not locked, the target is
online, PVE's migrate precondition allows the target, nothing pins the guest to its node, and
the target has room for a running guest, counted the way the planner counts it
(`pvetool.planner.placement`): the host's own use (its used memory minus its guests' used
memory), the configured memory of every running guest on it and of every guest this run is
migrating into it, plus this guest, within its memory minus the plan's headroom. The verdict
says whether a failure is the target's (re-plan the moves to it), this guest's on that target
(re-plan this move), or the guest's own (fail); a target that is full only until migrations of
this run into or out of it end makes the move wait (`defer`).

After (`verify_arrival`): `/cluster/resources` shows the guest on the target, in the run state
it had before, with no migrate lock; a running qemu guest with the QEMU guest agent enabled
answers an agent ping within a few seconds. PVE moves the guest's config to the target before
its task ends (qemu-server `QemuMigrate.pm` `phase3_cleanup` `move_config_to_node`, then
`qm unlock` over ssh), and `/cluster/resources` takes the run state from pvestatd's broadcast,
which lags up to ~10 s (pve-manager `PVE/Service/pvestatd.pm`, ``$updatetime = 10``): so the
check looks again for up to `arrival_timeout_s`, sits out API errors meanwhile, and asks the
target for the guest's live state (``status/current``) when the broadcast still shows the old
one. A task that says OK while the guest did not arrive fails here. For an offline move of a
running VM, `wait_for_status` waits for the shutdown (or start) to show, since an HA-managed
guest's request task ends before the HA stack acts.

After a failure: `whereabouts` says where the guest is (and, once the task is over, names a
``migrate`` lock PVE left with the command that clears it: `left_locked`), `still_at_source`
whether another target may be tried, `target_offline` whether the target is the one to blame.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.waiting` and
`pvetool.executor.api`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pvetool.errors import ApiError, NotFound, PvetoolError
from pvetool.executor.api import ClusterApi
from pvetool.model import (
    ClusterResources,
    Guest,
    GuestKind,
    MappedResource,
    Move,
    Node,
    PlanRules,
    Precondition,
)
from pvetool.waiting import is_transient_read, wait_until

__all__ = [
    "Arrival",
    "Check",
    "Room",
    "Verdict",
    "expected_status",
    "find_guest",
    "gib",
    "left_locked",
    "precheck",
    "still_at_source",
    "target_offline",
    "target_trouble",
    "verify_arrival",
    "wait_for_status",
    "HA_MOVING",
    "wait_settled",
    "whereabouts",
]

Verdict = Literal["ready", "skip", "fail", "target-down", "target-refused", "defer"]

# Task failures that are the target node's fault: another target may well work.
TARGET_DOWN_PATTERNS = (
    "Can't connect to destination",
    "No route to host",
    "Connection to node",
    "Cannot allocate memory",
    "no such cluster node",
    "Host key verification failed",
)
TARGET_REFUSED_PATTERNS = (
    "does not exist",  # "bridge 'vmbr1' does not exist" on the target
    "is not available on node",  # a storage missing on the target
    # a hamigrate the HA manager refuses (pve-ha-manager src/PVE/CLI/ha_manager.pm
    # $print_resource_motion_output l.159-175): another target may not have the partner
    "in negative affinity with resource",
    # qemu-server Qemu.pm migrate_vm l.5602 (D16): only a replication target takes it live
    "not a replication target",
)


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 1024**3:.1f} GiB"


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    reason: str = ""
    guest: Guest | None = None
    reserve_bytes: int = 0

    @property
    def ready(self) -> bool:
        return self.verdict == "ready"


def find_guest(resources: ClusterResources, vmid: int) -> Guest | None:
    return next((g for g in resources.guests if g.vmid == vmid), None)


def _node(resources: ClusterResources, name: str) -> Node | None:
    return next((n for n in resources.nodes if n.name == name), None)


def expected_status(move: Move, before: Guest | None) -> str:
    """The run state the guest must have after the move: what it had before, else what the
    plan's options imply (live/restart migration = running)."""
    if before is not None and before.status in ("running", "stopped"):
        return before.status
    return "running" if (move.options.online or move.options.restart) else "stopped"


@dataclass(frozen=True)
class Room:
    """What the room check needs besides the cluster: the plan's rules (headroom), the memory
    the run's other migrations into a node hold there (bytes by vmid), and whether any of the
    run's migrations goes into or out of a node now."""

    rules: PlanRules
    incoming: Callable[[str], Mapping[int, int]]
    busy: Callable[[str], bool]


def precheck(api: ClusterApi, move: Move, *, room: Room) -> Check:
    """Is `move` still safe to start now (see the module docstring)?"""
    resources = api.cluster_resources()
    guest = find_guest(resources, move.vmid)
    what = f"{'VM' if move.kind == 'qemu' else 'CT'} {move.vmid}"
    if guest is None:
        return Check("fail", f"{what} no longer exists in the cluster")
    if guest.node == move.target:
        return Check("skip", f"{what} is already on {move.target}", guest)
    if guest.node != move.source:
        return Check(
            "fail",
            f"{what} is on {guest.node} now, not on {move.source} as planned; not moved",
            guest,
        )
    if guest.lock:
        return Check("fail", f"{what} is locked ({guest.lock}); PVE would refuse to move it", guest)
    refused = _target_member(api, move, guest) or _pve_precondition(api, move, guest, what)
    if refused is not None:
        return refused
    if not guest.running:
        return Check("ready", "", guest)
    return _room(resources, move, guest, room)


def _target_member(api: ClusterApi, move: Move, guest: Guest) -> Check | None:
    """The target is an online member of a quorate cluster, else why not."""
    status = api.cluster_status()
    member = next((n for n in status.nodes if n.name == move.target), None)
    if member is None:
        return Check("target-down", f"{move.target} is not a member of the cluster", guest)
    if not member.online:
        return Check("target-down", f"target {move.target} is offline", guest)
    if not status.quorate:
        return Check("fail", "the cluster is not quorate; PVE refuses migrations", guest)
    return None


def _pve_precondition(api: ClusterApi, move: Move, guest: Guest, what: str) -> Check | None:
    """What PVE's own migrate precondition refuses (the target, local devices or disks)."""
    try:
        pre = api.migrate_precondition(move.kind, move.source, move.vmid, move.target)
    except (ApiError, NotFound) as exc:
        return Check("fail", f"PVE refused the migration check of {what}: {exc.reason}", guest)
    if not pre.allows(move.target):
        refusal = pre.not_allowed.get(move.target)
        if refusal is None:
            return Check("target-down", f"PVE does not offer {move.target} as a target", guest)
        parts = []
        if refusal.unavailable_storages:
            parts.append("storage not available there: " + ", ".join(refusal.unavailable_storages))
        if refusal.unavailable_resources:
            parts.append("resources not mapped there: " + ", ".join(refusal.unavailable_resources))
        if refusal.blocking_ha_resources:
            parts.append(
                "blocked by HA: "
                + ", ".join(f"{b.sid} ({b.cause})" for b in refusal.blocking_ha_resources)
            )
        detail = "; ".join(parts) or "not allowed"
        return Check(
            "target-refused", f"PVE will not move {what} to {move.target}: {detail}", guest
        )
    live = move.kind == "qemu" and guest.running and not move.options.shutdown
    if move.kind == "qemu":
        refused = _devices_and_cdroms(pre, live, what)
        if refused:
            return Check("fail", refused, guest)
    disks = [d.volid for d in pre.local_disks if d.needs_with_local_disks]
    # An offline move (shut down, migrate, start) copies local disks like any offline migration.
    if live and disks and not move.options.with_local_disks:
        return Check(
            "fail",
            f"{what} has local disks ({', '.join(disks)}) and the plan does not move them "
            "(with-local-disks)",
            guest,
        )
    return None


def _devices_and_cdroms(pre: Precondition, live: bool, what: str) -> str | None:
    """Why PVE will refuse this VM whatever the target, from its precondition (None: it will
    not): qemu-server ``QemuMigrate.pm`` ``prepare`` l.270-304 and ``scan_local_volumes``
    l.473-479.

    ``local_resources`` lists mapped USB devices (and mapped PCI devices that cannot
    live-migrate) too (``QemuMigrate/Helpers.pm`` ``check_local_resources`` l.74-108): only
    the ones without a mapping block; mapped ones block a live migration unless the mapping can
    live-migrate (a mapping missing on the target is in ``not_allowed_nodes``, checked before).
    A local CD-ROM image blocks every migration."""
    mapped = {m.key: m for m in pre.mapped_resource_info}
    for key in pre.mapped_resources:
        mapped.setdefault(key, MappedResource(key))
    blocking = [k for k in pre.local_resources if k not in mapped]
    if blocking:
        return f"{what} uses local devices ({', '.join(blocking)}); it cannot migrate"
    not_live = sorted(k for k, m in mapped.items() if not m.live_migration)
    if live and not_live:
        names = ", ".join(f"{k}:{mapped[k].name}" if mapped[k].name else k for k in not_live)
        return (
            f"{what} uses mapped devices that cannot live-migrate ({names}); PVE refuses "
            '("can\'t live migrate running VM which uses following mapped devices"): migrate '
            "it offline"
        )
    cdroms = [d.volid for d in pre.local_disks if d.blocks_migration]
    if cdroms:
        return (
            f"{what} has a local CD-ROM image ({', '.join(cdroms)}); PVE refuses to migrate it "
            '("local cdrom image"): eject it first'
        )
    return None


def _room(resources: ClusterResources, move: Move, guest: Guest, room: Room) -> Check:
    """A running guest fits the target as the planner counts it (see the module docstring);
    if not: wait while the run's migrations into or out of it go on (`defer`), else the target
    is full (re-plan)."""
    target = _node(resources, move.target)
    if target is None or target.memory_total_bytes <= 0:
        return Check("ready", "", guest)  # no numbers to check against
    here = [g for g in resources.guests if g.node == move.target]
    there = {g.vmid for g in here}
    arriving = {v: b for v, b in room.incoming(move.target).items() if v not in there}
    # The host's own use, as the planner estimates it. While a migration arrives its pages are
    # in the node's used memory too and are counted twice here (once more as that migration's
    # memory): that errs on the safe side, and only while this run's migrations go on, when a
    # move that does not fit waits for them anyway.
    guests_used = sum(g.used_memory_bytes for g in here if g.running)
    overhead = 0
    if target.online and target.memory_used_bytes:
        overhead = max(0, target.memory_used_bytes - guests_used)
    committed = overhead + sum(g.memory_bytes for g in here if g.running) + sum(arriving.values())
    total = target.memory_total_bytes
    limit = total - room.rules.memory_headroom_for(total)
    need = guest.memory_bytes or move.memory_bytes
    if committed + need <= limit:
        return Check("ready", "", guest, reserve_bytes=need)
    reason = (
        f"{move.target} has no room for {move.vmid} now: needs {gib(need)}, "
        f"{gib(max(0, limit - committed))} free of {gib(total)} after the host's "
        f"{gib(overhead)}, its running guests"
        + (f", {gib(sum(arriving.values()))} migrating in" if arriving else "")
        + f" and {gib(total - limit)} headroom"
    )
    if room.busy(move.target):
        return Check("defer", reason, guest)
    return Check("target-down", reason, guest)


def target_trouble(reason: str) -> Literal["target-down", "target-refused"] | None:
    """Whether a failed task's reason blames the target node (re-plan) or not."""
    if any(p in reason for p in TARGET_DOWN_PATTERNS):
        return "target-down"
    if any(p in reason for p in TARGET_REFUSED_PATTERNS):
        return "target-refused"
    return None


@dataclass(frozen=True)
class Arrival:
    """Where a guest is after its task ended and what is wrong with it; `checked` is False when
    the cluster could not be read (then nothing is known but the task's word)."""

    ok: bool
    node: str | None
    problems: tuple[str, ...] = ()
    guest: Guest | None = None
    checked: bool = True

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


def verify_arrival(
    api: ClusterApi,
    move: Move,
    status_before: str,
    *,
    agent: bool,
    timeout_s: float = 25.0,
    poll_s: float = 1.0,
    agent_timeout_s: float = 10.0,
    agent_poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Arrival:
    """The guest is on the target, in `status_before`, without a migrate lock (and its agent
    answers); looked at again for up to `timeout_s` (see the module docstring)."""
    last: list[Arrival] = []

    def look() -> Arrival:
        try:
            arrival = _arrival(api, move, status_before)
        except PvetoolError as exc:
            last[:] = [
                Arrival(False, None, (f"where it is could not be read ({exc})",), None, False)
            ]
            raise
        last[:] = [arrival]
        return arrival

    try:
        wait_until(
            look,
            lambda a: a.ok,
            timeout_s=timeout_s,
            poll_s=poll_s,
            clock=clock,
            sleep=sleep,
            transient=is_transient_read,
        )
    except PvetoolError as exc:
        last[:] = [Arrival(False, None, (f"where it is could not be read ({exc})",), None, False)]
    arrival = last[0] if last else Arrival(False, None, ("it was not looked at",), None, False)
    if not arrival.ok:
        guest = arrival.guest
        if guest is not None and guest.lock == "migrate":
            # The task ended but PVE's last cleanup step (`qm unlock`/`pct unlock` over ssh on
            # the target) did not run or failed: nothing will ever clear this lock.
            return Arrival(
                False,
                arrival.node,
                (left_locked(move.kind, move.vmid, guest.node, guest.lock),),
                guest,
            )
        return arrival
    guest = arrival.guest
    if agent and move.kind == "qemu" and guest is not None and guest.running:
        try:
            answered = wait_until(
                lambda: api.agent_ping(move.target, move.vmid),
                bool,
                timeout_s=agent_timeout_s,
                poll_s=agent_poll_s,
                clock=clock,
                sleep=sleep,
            )
        except PvetoolError:
            answered = None
        if not answered:
            return Arrival(
                False,
                arrival.node,
                (f"its QEMU guest agent did not answer a ping within {agent_timeout_s:g} s",),
                guest,
            )
    return arrival


def _arrival(api: ClusterApi, move: Move, status_before: str) -> Arrival:
    """One look at the guest after its task ended."""
    guest = find_guest(api.cluster_resources("vm"), move.vmid)
    if guest is None:
        return Arrival(False, None, (f"guest {move.vmid} is not in /cluster/resources any more",))
    problems = []
    if guest.node != move.target:
        problems.append(f"it is on {guest.node}, not on {move.target}")
    elif guest.lock == "migrate":
        problems.append("it is still locked (migrate)")
    elif guest.status != status_before:
        live = _live_status(api, move)
        if live != status_before:
            problems.append(f"it is {live or guest.status}, it was {status_before}")
    return Arrival(not problems, guest.node, tuple(problems), guest)


def _live_status(api: ClusterApi, move: Move) -> str | None:
    """The guest's run state as its node sees it now (``status/current``), not as the last
    pvestatd broadcast has it; None when the node does not answer."""
    try:
        return api.guest_status(move.kind, move.target, move.vmid).status
    except PvetoolError:
        return None


def wait_for_status(
    api: ClusterApi,
    vmid: int,
    node: str,
    status: str,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Guest | None:
    """The guest once `/cluster/resources` shows it on `node`, in `status` and unlocked; None
    when that does not happen within `timeout_s`. After a shutdown or start task of PVE's own
    this holds at once; an HA-managed guest's ``hastop``/``hastart`` only asks the HA stack,
    which acts a few seconds later."""

    def arrived(guest: Guest | None) -> bool:
        return (
            guest is not None and guest.node == node and guest.status == status and not guest.lock
        )

    return wait_until(
        lambda: find_guest(api.cluster_resources("vm"), vmid),
        arrived,
        timeout_s=timeout_s,
        poll_s=poll_s,
        clock=clock,
        sleep=sleep,
    )


HA_MOVING = ("migrate", "relocate")


def wait_settled(
    api: ClusterApi,
    vmid: int,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Guest | None:
    """The guest once no migration holds it: no ``lock: migrate`` (PVE moves the config to
    the target before the task ends and unlocks it last, qemu-server ``QemuMigrate.pm``
    ``phase3_cleanup`` l.1719-1903) and the HA manager no longer moves it
    (`/cluster/resources` ``hastate`` not ``migrate``/``relocate``); None when that does not
    happen within `timeout_s`.

    The CRM records an LRM's finished migration only in its next round (10 s): until then the
    service still has its old node, and a request to move it back there is dropped as
    "service already on target node" (pve-ha-manager ``src/PVE/HA/Manager.pm``
    ``update_crm_commands`` l.662-668, ``next_state_migrate_relocate`` l.1224-1260): the
    ``hamigrate`` ends OK and no migration ever comes. So an HA move waits for the last one to
    settle."""

    def settled(guest: Guest | None) -> bool:
        return guest is None or (guest.ha_state not in HA_MOVING and guest.lock != "migrate")

    return wait_until(
        lambda: find_guest(api.cluster_resources("vm"), vmid),
        settled,
        timeout_s=timeout_s,
        poll_s=poll_s,
        clock=clock,
        sleep=sleep,
    )


def whereabouts(api: ClusterApi, move: Move, *, ended: bool = False) -> tuple[str | None, str]:
    """(node, sentence) saying where the guest is now, for failure reports. `ended`: the
    move's task is over, so a ``migrate`` lock is one PVE left behind (named with its fix)."""
    try:
        guest = find_guest(api.cluster_resources("vm"), move.vmid)
    except PvetoolError as exc:
        return None, f"where guest {move.vmid} is now could not be checked ({exc})"
    if guest is None:
        return None, f"guest {move.vmid} is not in /cluster/resources"
    if ended and guest.lock == "migrate":
        return guest.node, left_locked(guest.kind, move.vmid, guest.node, guest.lock)
    lock = f" (locked: {guest.lock})" if guest.lock else ""
    return guest.node, f"guest {move.vmid} is on {guest.node}{lock}, {guest.status}"


def left_locked(kind: GuestKind, vmid: int, node: str, lock: str) -> str:
    """Where a guest is that a finished migration left locked, and the one command that frees
    it. PVE clears the ``migrate`` lock as the migration's very last step, over ssh on the
    target (qemu-server `src/PVE/QemuMigrate.pm` `phase3_cleanup` ``qm unlock``, pve-container
    `src/PVE/LXC/Migrate.pm` `final_cleanup` ``pct unlock``, or locally by `phase1_cleanup`);
    when that step fails the task ends "migration finished with problems" (pve-guest-common
    `src/PVE/AbstractMigrate.pm` `migrate`) and the lock stays until an administrator clears it
    on the node that holds the config."""
    word, cli = ("VM", "qm") if kind == "qemu" else ("CT", "pct")
    return f"{word} {vmid} is on {node}, locked ({lock}): run '{cli} unlock {vmid}' on {node}"


def still_at_source(api: ClusterApi, move: Move) -> bool:
    """The guest is still on the move's source, unlocked: another target may be tried."""
    try:
        guest = find_guest(api.cluster_resources("vm"), move.vmid)
    except PvetoolError:
        return False
    return guest is not None and guest.node == move.source and not guest.lock


def target_offline(api: ClusterApi, target: str) -> Literal["target-down"] | None:
    """``target-down`` when `/cluster/status` shows the target offline."""
    try:
        status = api.cluster_status()
    except PvetoolError:
        return None
    entry = next((n for n in status.nodes if n.name == target), None)
    return "target-down" if entry is not None and not entry.online else None
