"""Tasks: UPIDs, task status and summaries, log lines, migration progress and results, and the
two requests that start or find tasks (`MigrationRequest`, `TaskQuery`).

Imports: the standard library, `pvetool.errors` and `pvetool.model.types`. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from pvetool.errors import ValidationError
from pvetool.model.types import GuestKind, MigrationType, TaskState

# The task that moves a guest: ``qmigrate`` for a VM (qemu-server `PVE::API2::Qemu`
# `migrate_vm`), ``vzmigrate`` for a container (pve-container `PVE::API2::LXC` `migrate_vm`).
MIGRATION_TASK_TYPES: frozenset[str] = frozenset({"qmigrate", "vzmigrate"})
# An HA-managed guest's migrate call only queues a request for the HA manager, in a task of this
# type; the HA agent starts the real qmigrate/vzmigrate later (pve-ha-manager
# `PVE::API2::HA::Resources` via `PVE::API2::Qemu::migrate_vm`'s HA branch).
HA_MIGRATE_TASK_TYPE = "hamigrate"


def migrate_call_task_types(kind: GuestKind | None = None) -> frozenset[str]:
    """The task types a migrate call may start: the migration task of `kind` (both kinds when
    None) or, for an HA-managed guest, the ``hamigrate`` request."""
    own = {"qemu": "qmigrate", "lxc": "vzmigrate"}
    moving = MIGRATION_TASK_TYPES if kind is None else frozenset({own[kind]})
    return moving | {HA_MIGRATE_TASK_TYPE}


def exitstatus_ok(exitstatus: str | None) -> bool:
    """True for the exit statuses PVE uses for success: ``OK`` and ``WARNINGS: n``."""
    return exitstatus is not None and (exitstatus == "OK" or exitstatus.startswith("WARNINGS"))


# --------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class MigrationRequest:
    """``POST /nodes/{node}/{kind}/{vmid}/migrate``: one migration as PVE's API takes it.

    qemu: `online` (None: live, PVE ignores it for a stopped VM), `with_local_disks`,
    `target_storage` (``{"local-lvm": "ceph"}``, one storage ID, or ``"1"``), `bwlimit_kib_s`,
    `migration_type`, `migration_network` (CIDR), `with_conntrack_state` (PVE 9+). lxc:
    `restart`, `target_storage`, `bwlimit_kib_s`, `shutdown_timeout_s`. None leaves a parameter
    out (PVE's default).
    """

    kind: GuestKind
    node: str
    vmid: int
    target: str
    online: bool | None = None
    with_local_disks: bool | None = None
    target_storage: Mapping[str, str] | str | None = None
    bwlimit_kib_s: int | None = None
    migration_type: MigrationType | None = None
    migration_network: str | None = None
    with_conntrack_state: bool | None = None
    restart: bool | None = None
    shutdown_timeout_s: int | None = None


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """``GET /nodes/{node}/tasks``: which of a node's tasks to list (newest first).

    `source` ``all`` includes the running ones; `since`/`until` are epoch seconds of the task's
    start; `errors_only` lists failed tasks only.
    """

    node: str
    vmid: int | None = None
    typefilter: str | None = None
    since: int | None = None
    until: int | None = None
    source: Literal["archive", "active", "all"] = "all"
    limit: int = 50
    start: int = 0
    errors_only: bool = False


# --------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True, slots=True)
class Upid:
    """A PVE task id, ``UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user[!token]>:``."""

    # From proxmox/pve-common src/PVE/UPID.pm (see tests/data/fixtures/upids.json).
    PATTERN: ClassVar[re.Pattern[str]] = re.compile(
        r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
        r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$"
    )

    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str
    token: str | None = None

    @classmethod
    def parse(cls, text: str) -> Upid:
        """Parse a UPID string; raise `ValidationError` when it is not one."""
        match = cls.PATTERN.match(text.strip())
        if not match:
            raise ValidationError(f"'{text}' is not a PVE task id (UPID)", field="upid")
        userid = match.group(8)
        user, _, token = userid.partition("!")
        return cls(
            node=match.group(1),
            pid=int(match.group(3), 16),
            pstart=int(match.group(4), 16),
            starttime=int(match.group(5), 16),
            type=match.group(6),
            id=match.group(7),
            user=user,
            token=token or None,
        )

    @property
    def userid(self) -> str:
        """``user@realm`` or ``user@realm!tokenid`` as PVE prints it."""
        return f"{self.user}!{self.token}" if self.token else self.user

    @property
    def vmid(self) -> int | None:
        """The guest id for guest tasks (qmigrate, vzmigrate, hamigrate ...), else None."""
        return int(self.id) if self.id.isdigit() else None

    def __str__(self) -> str:
        return (
            f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:{self.starttime:08X}:"
            f"{self.type}:{self.id}:{self.userid}:"
        )


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """Answer of ``GET /nodes/{node}/tasks/{upid}/status``."""

    upid: Upid
    status: TaskState
    exitstatus: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ok(self) -> bool:
        """Success: stopped with ``OK`` or ``WARNINGS: n``."""
        return self.status == "stopped" and exitstatus_ok(self.exitstatus)


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One entry of a node's task list; `exitstatus` and `endtime` are None while running."""

    upid: Upid
    exitstatus: str | None = None
    endtime: int | None = None

    @property
    def running(self) -> bool:
        return self.endtime is None


@dataclass(frozen=True, slots=True)
class TaskLogLine:
    """One task log line; `n` counts from 1 like PVE does."""

    n: int
    text: str


@dataclass(frozen=True, slots=True)
class MigrationProgress:
    """A progress line of a migration log.

    `phase` is ``ram`` for the VM state (``migration active, transferred X of Y VM-state, Z/s``
    and the pre-7.0 ``migration status: active (transferred ...)``) or ``disk`` for a drive
    mirror (``drive-scsi0: transferred X of Y (p%) in Ns``). Values from the newer formats are
    rounded by PVE to one decimal of the unit shown.
    """

    upid: Upid
    transferred_bytes: int
    total_bytes: int | None = None
    rate_bps: float | None = None
    phase: Literal["ram", "disk"] = "ram"
    device: str | None = None
    completed: bool = False
    line_no: int | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total_bytes:
            return None
        return min(1.0, self.transferred_bytes / self.total_bytes)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """The outcome of a task that finished successfully (``OK`` or ``WARNINGS: n``).

    For an HA migration `upid` is the real ``qmigrate``/``vzmigrate`` task and `ha_upid` the
    ``hamigrate`` task that requested it.
    """

    upid: Upid
    exitstatus: str
    duration_s: float | None = None
    downtime_ms: int | None = None
    log_tail: tuple[str, ...] = ()
    ha_upid: Upid | None = None

    @property
    def ok(self) -> bool:
        return exitstatus_ok(self.exitstatus)

    @property
    def warnings(self) -> int:
        """Number of warnings PVE counted (``WARNINGS: 2`` -> 2)."""
        if self.exitstatus.startswith("WARNINGS"):
            digits = self.exitstatus.partition(":")[2].strip()
            return int(digits) if digits.isdigit() else 1
        return 0
