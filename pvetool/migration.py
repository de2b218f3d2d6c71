"""One migration, done properly: find the guest, start the right PVE call, follow the task
(through HA's `hamigrate` to the real `qmigrate`), then check on `/cluster/resources` that the
guest is where it should be, in its previous run state, with no lock left.

Used by `pvetool migrate`; the executor builds on the same steps. It talks to the cluster only
through the `MigrationApi` protocol and a `follow` callable (the CLI passes `PveClient` and
`pvetool.api.follow_task`), so it does not import the API layer. Imports: pvetool.model,
pvetool.errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from pvetool import model
from pvetool.errors import ValidationError, VerificationFailed
from pvetool.model import ClusterResources, Guest, MigrationProgress, TaskResult, Upid


class MigrationApi(Protocol):
    def cluster_resources(
        self, type_filter: Literal["vm", "storage", "node"] | None = None
    ) -> ClusterResources: ...

    def start_migration(self, req: model.MigrationRequest) -> Upid: ...


Follow = Callable[[Upid, float, Callable[[MigrationProgress], None] | None], TaskResult]


@dataclass(frozen=True)
class MigrationRequest:
    vmid: int
    target: str
    offline: bool = False
    with_local_disks: bool = False
    target_storage: Mapping[str, str] | str | None = None
    bwlimit_Bps: float | None = None
    timeout_s: float = 3600.0


@dataclass(frozen=True)
class MigrationOutcome:
    guest: Guest  # as it was before
    upid: Upid
    result: TaskResult
    after: Guest  # as /cluster/resources shows it afterwards

    @property
    def source(self) -> str:
        return self.guest.node


def find_guest(api: MigrationApi, vmid: int) -> Guest:
    for guest in api.cluster_resources("vm").guests:
        if guest.vmid == vmid:
            return guest
    raise ValidationError(f"There is no guest {vmid} in this cluster", field="vmid")


def start(api: MigrationApi, req: MigrationRequest) -> tuple[Guest, Upid]:
    """Start the migration PVE needs for this guest; returns the guest as it was and the UPID."""
    guest = find_guest(api, req.vmid)
    if guest.node == req.target:
        raise ValidationError(
            f"Guest {req.vmid} is already on {req.target}; nothing to migrate", field="target"
        )
    if guest.kind == "qemu" and guest.running and req.offline:
        # PVE refuses it ("can't migrate running VM without --online"); say what to do instead.
        raise ValidationError(
            f"VM {guest.vmid} is running, and PVE migrates a running VM only live: shut it down "
            f"first (qm shutdown {guest.vmid}), then migrate it with --offline and start it "
            "again; or drop --offline to migrate it live. A plan with the per-guest override "
            "'offline: true' (pvetool plan apply) does the shutdown, the migration and the "
            "start for you",
            field="offline",
        )
    bwlimit = None if req.bwlimit_Bps is None else max(1, int(req.bwlimit_Bps // 1024))
    if guest.kind == "qemu":
        upid = api.start_migration(
            model.MigrationRequest(
                "qemu",
                guest.node,
                guest.vmid,
                req.target,
                online=guest.running and not req.offline,
                with_local_disks=req.with_local_disks or None,
                target_storage=req.target_storage,
                bwlimit_kib_s=bwlimit,
            )
        )
    else:
        # Containers cannot live-migrate: a running one is shut down, moved and started.
        upid = api.start_migration(
            model.MigrationRequest(
                "lxc",
                guest.node,
                guest.vmid,
                req.target,
                restart=guest.running or None,
                target_storage=req.target_storage,
                bwlimit_kib_s=bwlimit,
            )
        )
    return guest, upid


def verify(api: MigrationApi, guest: Guest, target: str, upid: Upid) -> Guest:
    """After a successful task: the guest is on `target`, in its previous state, unlocked."""
    after = find_guest(api, guest.vmid)
    problems = []
    if after.node != target:
        problems.append(f"it is on {after.node}, not on {target}")
    if after.status != guest.status:
        problems.append(f"it is {after.status}, it was {guest.status}")
    if after.lock:
        problems.append(f"it is still locked ({after.lock})")
    if problems:
        raise VerificationFailed(
            f"The migration task of guest {guest.vmid} reported success, but "
            + "; ".join(problems),
            upid=str(upid),
        )
    return after


def migrate(
    api: MigrationApi,
    req: MigrationRequest,
    follow: Follow,
    on_progress: Callable[[MigrationProgress], None] | None = None,
    on_started: Callable[[Guest, Upid], None] | None = None,
) -> MigrationOutcome:
    """Start, follow and verify one migration; raises TaskFailed/TaskTimeout/ApiError on failure."""
    guest, upid = start(api, req)
    if on_started is not None:
        on_started(guest, upid)
    result = follow(upid, req.timeout_s, on_progress)
    after = verify(api, guest, req.target, result.upid)
    return MigrationOutcome(guest, upid, result, after)
