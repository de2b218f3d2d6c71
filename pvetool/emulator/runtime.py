"""The emulated cluster's runtime records: nodes, disks, guests and tasks as they are now, and
PVE's own ways of printing bytes, durations and task-log time stamps.

`Cluster` (`cluster.py`) holds them and keeps them consistent; the migration workers, power
and the endpoints read and change them under `Cluster.lock`.

Imports: stdlib, `pvetool.timing`, and the emulator's own modules.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field, fields
from typing import Any

from pvetool.emulator.clusterfile import GuestSpec, NodeSpec
from pvetool.emulator.engine import Job
from pvetool.timing import (
    DirtyProfile,
    GiB,
    MiB,
)


class PveError(Exception):
    """An answer PVE gives instead of data: status, reason phrase, optional `errors` dict."""

    def __init__(self, status: int, reason: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = errors


def render_bytes(value: float) -> str:
    """pve-common src/PVE/Format.pm render_bytes($value, 1) (l.66-80): one decimal, also for
    bytes ("512.0 B"); the unit switches above 1023."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    v = float(value)
    unit = 0
    if v > 1023:
        unit = min(int(math.log(v) / math.log(1024)), len(units) - 1)
        v /= 1024**unit
    return f"{v:.1f} {units[unit]}"


def render_hms(seconds: float) -> str:
    """AbstractMigrate.pm migrate (l.232-238): the "(duration HH:MM:SS)" of a migration."""
    s = int(seconds)
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def render_duration(seconds: float) -> str:
    """pve-common src/PVE/Format.pm render_duration (l.31-58): "5s", "1m 2s", "2m", "1h 5s"."""
    rest = int(math.floor(seconds + 0.5))
    if not rest:
        return "0s"
    parts = []
    for unit, length in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest // length > 0:
            parts.append(f"{rest // length}{unit}")
            rest -= (rest // length) * length
    return " ".join(parts)


def log_timestamp(epoch_s: float, tz: datetime.tzinfo | None = None) -> str:
    """pve-guest-common AbstractMigrate.pm $msg2text (l.21): strftime("%F %H:%M:%S",
    localtime) - the node's local time (the cluster file's `datacenter.timezone`)."""
    moment = datetime.datetime.fromtimestamp(epoch_s, tz or datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _options(text: str) -> dict[str, str]:
    """A PVE property string's `key=value` items (the first plain item as `host`)."""
    out: dict[str, str] = {}
    for i, part in enumerate(text.split(",")):
        key, eq, value = part.partition("=")
        if eq:
            out[key.strip()] = value.strip()
        elif i == 0 and part.strip():
            out["host"] = part.strip()
    return out


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
    cdrom: bool = False  # a CD-ROM drive: `volid` is an ISO image or "none"
    unused: bool = False  # an unusedN volume

    @property
    def attached(self) -> bool:
        return not self.unused

    def config_value(self) -> str:
        if self.cdrom:
            iso_size = f",size={self.size_bytes // MiB}M" if self.size_bytes else ""
            return f"{self.volid},media=cdrom{iso_size}"
        if self.unused:
            return self.volid
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
    # resources.cfg `failback` as changed through PUT /cluster/ha/resources/{sid}; None: the
    # cluster file's (`spec.ha_failback`).
    ha_failback: bool | None = None
    ha_comment: str = ""
    # Targets of the guest's storage replication jobs, by job number (`<vmid>-<n>`). A
    # migration to a job's target switches that job back to the old node (see `_finish`).
    replicate: list[str] = field(default_factory=list)
    # After a (cold) start the guest OS boots; its QEMU guest agent answers from then on.
    agent_ready_at_s: float = 0.0
    # What /cluster/resources shows comes from the RRD data pvestatd broadcasts every 10 s:
    # after a change (status, node) the old values stay visible until the next broadcast of
    # the node the guest is on (see `Cluster.rrd_stats`).
    rrd_snapshot: dict[str, Any] | None = None
    rrd_changed_at_s: float = 0.0

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
    tz: datetime.tzinfo | None = None  # the node's time zone, for log time stamps
    _partial: bool = False  # the last line is still open (begin_raw)

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
        self._partial = False
        for part in msg.split("\n"):
            self.lines.append(f"{log_timestamp(epoch_s, self.tz)} {part}")

    def raw(self, msg: str) -> None:
        self._partial = False
        self.lines.extend(msg.split("\n"))

    def begin_raw(self, text: str) -> None:
        """Output without a newline yet (Perl `print STDERR "Check VM 101: "`)."""
        self.lines.append(text)
        self._partial = True

    def append_raw(self, text: str) -> None:
        """The rest of a line `begin_raw` started, or a line of its own."""
        if self._partial and self.lines:
            first, *rest = text.split("\n")
            self.lines[-1] += first
            self.lines.extend(rest)
            self._partial = False
        else:
            self.raw(text)


@dataclass
class Usage:
    mem_used: dict[str, int]
    mem_committed: dict[str, int]
    cpu_busy: dict[str, float]
    storage_used: dict[tuple[str, str | None], int]
