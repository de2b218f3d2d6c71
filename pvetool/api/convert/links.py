"""Migration throughput from finished ``qmigrate`` task logs: what PVE's API never states (a
node's link speed) but every live migration's log shows.

A log yields one `LinkSample`: source node (from the UPID), target node (``starting migration of
VM N to node 'T'``, qemu-server `QemuMigrate.pm` `phase1`), the RAM rate and the local-disk copy
rate. Formats accepted, with or without the timestamp prefix (D20: BlockJob lines are raw):

* RAM, PVE 7+ (`QemuMigrate.pm` `phase2`, l.1400-1500): ``migration active, transferred 515.4
  MiB of 12.6 GiB VM-state, 428.3 MiB/s`` -- the rate is QEMU's own measure of the stream
  (``mbps``); the sample's RAM rate is the median of these lines (one per second), which ignores
  the first ramp-up and the last short interval. Without such lines, the bytes of ``migration
  completed, transferred X VM-state`` over the seconds between ``start migrate command`` and
  that line. ``average migration speed: S/s - downtime N ms`` is *not* used for the rate: PVE
  divides the guest's whole RAM size by the time (``$memstat->{total} / $delay``, l.1486), so an
  idle guest's zero pages make it look faster than the link.
* RAM, PVE 6: ``migration status: active (transferred N, remaining N), total N)`` at one-second
  timestamps: transferred bytes over elapsed seconds between the first and last such line.
* Local disks (qemu-server `QemuServer/BlockJob.pm` `monitor`, l.135-160): the last
  ``drive-scsi0: transferred 64.0 GiB of 64.0 GiB (100.00%) in 36s`` line of each drive gives
  the configured bytes copied per second (sparse disks copy faster than the link: that is the
  figure a prediction from configured sizes needs). Durations as pve-common
  `PVE::Format::render_duration` prints them: ``36s``, ``1m 2s``, ``2m``, ``1h 5s``.
* What the guest dirtied (for its own dirty-page estimate, `pvetool.timing.fit_dirty_profile`):
  the RAM bytes sent, from ``migration completed, transferred X VM-state`` (l.1493; PVE 8.2+),
  else the last ``migration active, transferred X of Y`` line (a lower bound); whether QEMU's
  dirty rate exceeded the transfer rate at some poll (``, VM dirties lots of memory: R/s``,
  l.1541-1544) and whether PVE had to raise the downtime limit (``auto-increased downtime to
  continue migration``, `increase_migrate_downtime`): both mean the pre-copy hardly converged.

Pure: no I/O. Imports: the standard library, `pvetool.model` and `_coerce`.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pvetool.api.convert._coerce import parse_bytes
from pvetool.model import Upid

__all__ = ["LinkSample", "parse_migration_log", "parse_render_duration"]

_TS_RE = r"^(?:(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) )?"
_NUM_UNIT = r"([\d.]+) ?([KMGTP]?i?B)"
_TARGET = re.compile(_TS_RE + r"starting migration of (?:VM|CT) \d+ to node '([^']+)'")
_START_CMD = re.compile(_TS_RE + r"start migrate command to ")
_ONLINE_ON = re.compile(_TS_RE + r"starting online/live migration on (\w+):")
_ACTIVE = re.compile(
    _TS_RE + rf"migration active, transferred {_NUM_UNIT} of {_NUM_UNIT} VM-state, {_NUM_UNIT}/s"
)
_COMPLETED = re.compile(_TS_RE + rf"migration completed, transferred {_NUM_UNIT} VM-state")
_LEGACY = re.compile(
    _TS_RE + r"migration status: active \(transferred (\d+), remaining (\d+)\), total (\d+)\)"
)
_DIRTIES_LOTS = re.compile(r"VM dirties lots of memory: ")
_DOWNTIME_RAISED = re.compile(_TS_RE + r"auto-increased downtime to continue migration")
_DRIVE = re.compile(
    _TS_RE + rf"(drive-[\w-]+): transferred {_NUM_UNIT} of {_NUM_UNIT} \(([\d.]+)%\) in (.+?)"
    r"(?:, (?:ready|still busy))?$"
)
_DURATION_PART = re.compile(r"(\d+)([dhms])")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class LinkSample:
    """What one finished migration says about the link between `source` and `target`.

    `ram_Bps`: bytes/second of the live RAM stream (None: not a live qemu migration, or too
    short to tell). `disk_Bps`: configured bytes of local disks copied per second (None: none
    copied). `endtime` is the task's end, epoch seconds, for recency.
    """

    upid: str
    source: str
    target: str
    endtime: int
    ram_Bps: float | None = None
    disk_Bps: float | None = None
    disk_bytes: int = 0
    secure: bool = True  # RAM over the SSH tunnel (unix: URI), not plain TCP (tcp: URI)
    vmid: int = 0  # the migrated guest (the UPID's id); 0: unknown
    ram_sent_bytes: int = 0  # RAM bytes QEMU sent (0: not logged)
    dirties_lots: bool = False  # "VM dirties lots of memory" at some poll
    downtime_raised: bool = False  # PVE raised the downtime limit to converge
    # another migration from the same node ran meanwhile (from the task list: it shared the
    # uplink, so the rate says little about the path to `target`)
    shared_source: bool = False


def parse_render_duration(text: str) -> float | None:
    """``1m 2s`` -> 62.0 (pve-common `render_duration`); None when it is not one."""
    parts = text.strip().split()
    if not parts:
        return None
    total = 0
    for part in parts:
        match = _DURATION_PART.fullmatch(part)
        if match is None:
            return None
        total += int(match.group(1)) * _UNIT_S[match.group(2)]
    return float(total)


def _epoch(stamp: str | None) -> float | None:
    # Only differences are used, so the node's (unknown) time zone does not matter (D20 row 12).
    if stamp is None:
        return None
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp()


def parse_migration_log(upid: Upid | str, lines: Iterable[str], endtime: int) -> LinkSample | None:
    """The `LinkSample` of a finished migration's log, or None when it names no target."""
    task = upid if isinstance(upid, Upid) else Upid.parse(upid)
    target: str | None = None
    rates: list[float] = []
    start_at: float | None = None
    completed: tuple[float | None, int] | None = None
    legacy: list[tuple[float, int]] = []
    drives: dict[str, tuple[int, float]] = {}
    secure = True
    active_sent = 0
    dirties_lots = downtime_raised = False
    for text in lines:
        if target is None and (m := _TARGET.match(text)):
            target = m.group(2)
        elif m := _ACTIVE.match(text):
            rates.append(float(parse_bytes(m.group(6), m.group(7))))
            active_sent = max(active_sent, parse_bytes(m.group(2), m.group(3)))
            dirties_lots = dirties_lots or _DIRTIES_LOTS.search(text) is not None
        elif _DOWNTIME_RAISED.match(text):
            downtime_raised = True
        elif m := _ONLINE_ON.match(text):
            secure = m.group(2) != "tcp"  # D20 row 5: insecure migrations use tcp:<ip>:<port>
        elif m := _START_CMD.match(text):
            start_at = _epoch(m.group(1))
        elif m := _COMPLETED.match(text):
            completed = (_epoch(m.group(1)), parse_bytes(m.group(2), m.group(3)))
        elif m := _LEGACY.match(text):
            at = _epoch(m.group(1))
            if at is not None:
                legacy.append((at, int(m.group(2))))
        elif m := _DRIVE.match(text):
            seconds = parse_render_duration(m.group(8))
            if seconds is not None:
                drives[m.group(2)] = (parse_bytes(m.group(3), m.group(4)), seconds)
    if target is None:
        return None
    disk_bytes = sum(b for b, _ in drives.values())
    # Drives are mirrored one after the other by QemuMigrate (each `mirror` call waits for it).
    disk_s = sum(s for _, s in drives.values())
    return LinkSample(
        upid=str(task),
        source=task.node,
        target=target,
        endtime=endtime,
        ram_Bps=_ram_rate(rates, start_at, completed, legacy),
        disk_Bps=disk_bytes / disk_s if disk_bytes and disk_s >= 1 else None,
        disk_bytes=disk_bytes,
        secure=secure,
        vmid=int(task.id) if task.id.isdigit() else 0,
        ram_sent_bytes=completed[1] if completed is not None else active_sent,
        dirties_lots=dirties_lots,
        downtime_raised=downtime_raised,
    )


def _ram_rate(
    rates: list[float],
    start_at: float | None,
    completed: tuple[float | None, int] | None,
    legacy: list[tuple[float, int]],
) -> float | None:
    if rates:
        return statistics.median(rates)
    if completed is not None and completed[0] is not None and start_at is not None:
        seconds = completed[0] - start_at
        if seconds >= 2:  # one-second timestamps: shorter runs say little
            return completed[1] / seconds
    if len(legacy) >= 2 and legacy[-1][0] - legacy[0][0] >= 1:
        (t0, b0), (t1, b1) = legacy[0], legacy[-1]
        return (b1 - b0) / (t1 - t0)
    return None
