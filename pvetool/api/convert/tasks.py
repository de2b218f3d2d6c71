"""UPIDs, task status, task lists and logs, and the migration log's progress lines -> model.

Imports: the standard library, `pvetool.errors`, `pvetool.model` and the package's `_coerce`.
"""

from __future__ import annotations

import re
from typing import Any, Literal, cast

from pvetool.api.convert._coerce import (
    _int,
    _obj,
    _objects,
    _opt_int,
    _opt_str,
    _str,
    parse_bytes,
)
from pvetool.errors import ValidationError
from pvetool.model import (
    MigrationProgress,
    TaskLogLine,
    TaskStatus,
    TaskSummary,
    Upid,
)


def upid(text: Any) -> Upid:
    """A UPID string (as returned by every task-creating call) -> `Upid`."""
    if not isinstance(text, str):
        raise ValidationError(f"PVE returned {type(text).__name__} where a task id was expected")
    return Upid.parse(text)


def task_status(raw: Any) -> TaskStatus:
    """``GET /nodes/{node}/tasks/{upid}/status`` -> `TaskStatus`."""
    data = _obj(raw, "the task status")
    state = _str(data.get("status"))
    if state not in ("running", "stopped"):
        raise ValidationError(f"PVE reported an unknown task state '{state}'", field="status")
    return TaskStatus(
        upid=upid(data.get("upid")),
        status=cast(Literal["running", "stopped"], state),
        exitstatus=_opt_str(data.get("exitstatus")),
    )


def task_list(raw: Any) -> tuple[TaskSummary, ...]:
    """``GET /nodes/{node}/tasks`` -> summaries, newest first (as PVE sorts them)."""
    result = []
    for entry in _objects(raw, "the task list"):
        text = entry.get("upid")
        if not isinstance(text, str) or not Upid.PATTERN.match(text):
            continue
        endtime = _opt_int(entry.get("endtime"))
        result.append(
            TaskSummary(
                upid=Upid.parse(text),
                exitstatus=_opt_str(entry.get("status")) if endtime is not None else None,
                endtime=endtime,
            )
        )
    return tuple(result)


def task_log(raw: Any) -> tuple[TaskLogLine, ...]:
    """``GET /nodes/{node}/tasks/{upid}/log`` -> lines (``n`` counts from 1)."""
    return tuple(
        TaskLogLine(n=_int(entry.get("n")), text=_str(entry.get("t")))
        for entry in _objects(raw, "the task log")
    )


# Progress lines. The timestamp prefix ("2025-01-04 00:34:30 ") is optional.
_TS = r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d )?"
_NUM_UNIT = r"([\d.]+) ?([KMGTP]?i?B)"
_RAM_ACTIVE = re.compile(
    _TS + rf"migration active, transferred {_NUM_UNIT} of {_NUM_UNIT} VM-state, {_NUM_UNIT}/s"
)
_RAM_COMPLETED = re.compile(_TS + rf"migration completed, transferred {_NUM_UNIT} VM-state")
_RAM_LEGACY = re.compile(
    _TS + r"migration status: active \(transferred (\d+), remaining (\d+)\), total (\d+)\)"
)
_DISK_MIRROR = re.compile(
    _TS + rf"(drive-[\w-]+): transferred {_NUM_UNIT} of {_NUM_UNIT} \(([\d.]+)%\)"
)
_DOWNTIME = re.compile(r"migration speed: .*- downtime (\d+) ms")
_DURATION = re.compile(r"migration finished successfully \(duration (\d+):(\d\d):(\d\d)\)")


def parse_progress_line(
    task: Upid, text: str, line_no: int | None = None
) -> MigrationProgress | None:
    """A migration log line -> `MigrationProgress`, or None when it is not a progress line.

    Formats: ``migration active, transferred 357.9 MiB of 4.0 GiB VM-state, 586.6 MiB/s``
    (PVE 7+), ``migration status: active (transferred N, remaining N), total N)`` (PVE 6),
    ``migration completed, transferred 11.7 GiB VM-state`` and the drive mirror line
    ``drive-scsi0: transferred 1.0 GiB of 32.0 GiB (3.12%) in 5s``.
    """
    match = _RAM_ACTIVE.match(text)
    if match:
        g = match.groups()
        return MigrationProgress(
            upid=task,
            transferred_bytes=parse_bytes(g[0], g[1]),
            total_bytes=parse_bytes(g[2], g[3]),
            rate_bps=float(parse_bytes(g[4], g[5])),
            line_no=line_no,
        )
    match = _RAM_LEGACY.match(text)
    if match:
        return MigrationProgress(
            upid=task,
            transferred_bytes=int(match.group(1)),
            total_bytes=int(match.group(3)),
            line_no=line_no,
        )
    match = _RAM_COMPLETED.match(text)
    if match:
        done = parse_bytes(match.group(1), match.group(2))
        return MigrationProgress(
            upid=task, transferred_bytes=done, total_bytes=done, completed=True, line_no=line_no
        )
    match = _DISK_MIRROR.match(text)
    if match:
        g = match.groups()
        return MigrationProgress(
            upid=task,
            transferred_bytes=parse_bytes(g[1], g[2]),
            total_bytes=parse_bytes(g[3], g[4]),
            phase="disk",
            device=g[0],
            completed=float(g[5]) >= 100.0,
            line_no=line_no,
        )
    return None


def parse_downtime_ms(text: str) -> int | None:
    """``average migration speed: 457.0 MiB/s - downtime 73 ms`` (and the PVE 6 form) -> 73."""
    match = _DOWNTIME.search(text)
    return int(match.group(1)) if match else None


def parse_duration_s(text: str) -> int | None:
    """``migration finished successfully (duration 00:00:18)`` -> 18."""
    match = _DURATION.search(text)
    if not match:
        return None
    hours, minutes, seconds = (int(x) for x in match.groups())
    return hours * 3600 + minutes * 60 + seconds
