"""Following a PVE task to its end: adaptive polling, incremental log, progress, HA hand-over.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.settings`,
`pvetool.waiting` (the one wait policy) and `pvetool.api.convert`. Never proxmoxer or requests:
PVE is reached only through the small `TaskApi` protocol, which `PveClient` satisfies and tests
fake.

A task succeeded only when ``status == "stopped"`` and ``exitstatus`` is ``OK`` or
``WARNINGS: n``. Each poll is one status call plus an incremental log read (``start=`` the
number of lines already read), so a long log is never read twice. The poll interval is
`WaitPolicy.poll_interval_s` (1 s) while the log moves and grows to `max_poll_interval_s` when it
does not. A task that outlives the timeout is *not* stopped: `TaskTimeout` carries its UPID.

Reading a task's status, log or list is retried until the task timeout runs out whatever goes
wrong on the way that may pass (`pvetool.waiting.is_transient_read`: no answer, a 500 or 503
burst, a failed re-login, a garbled answer): the migration goes on meanwhile, and giving up
after a fixed number of errors would lose track of it. A log that cannot be read does not stop
the follow either: the status decides; the log only adds progress and the failure's last
lines. When the status still cannot be read at the deadline, `TaskTimeout` says so.

An HA-managed guest's migrate call returns a ``hamigrate`` task that only hands the request to
the HA manager; the real ``qmigrate``/``vzmigrate`` starts later on the same node, run by the
HA agent. `follow_task` follows the first, finds the second in the node's task list (by VMID,
started at or after the ``hamigrate``) and returns the second's outcome.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Protocol

from pvetool.api import convert
from pvetool.errors import Interrupted, PvetoolError, TaskFailed, TaskTimeout
from pvetool.model import (
    MIGRATION_TASK_TYPES,
    MigrationProgress,
    TaskLogLine,
    TaskQuery,
    TaskResult,
    TaskStatus,
    TaskSummary,
    Upid,
)
from pvetool.settings import WaitPolicy
from pvetool.waiting import is_transient_read, wait_until

__all__ = ["TaskApi", "find_migration_task", "follow_task"]

logger = logging.getLogger(__name__)

FAILURE_TAIL_LINES = 10

# How long after an OK ``hamigrate`` the real migration may take to start: the request is read
# by the CRM in its next round, handed to the source LRM in the one after (10 s each,
# pve-ha-manager CRM.pm l.361-363, LRM.pm l.467-469), and the LRM may wait for a free worker.
# The CRM drops a request silently for a target that is not HA-online, or while it still moves
# the guest (Manager.pm update_crm_commands l.642-668): no migration then ever comes, and
# waiting for the plan's task timeout (an hour) would only hide that.
HA_START_TIMEOUT_S = 120.0


class TaskApi(Protocol):
    """What task following needs from the API client."""

    def task_status(self, upid: Upid | str) -> TaskStatus: ...

    def task_log(
        self, upid: Upid | str, *, start: int = 0, limit: int = 500
    ) -> tuple[TaskLogLine, ...]: ...

    def tasks(self, query: TaskQuery) -> tuple[TaskSummary, ...]: ...


def _describe(upid: Upid) -> str:
    names = {
        "qmigrate": "Migration of VM",
        "vzmigrate": "Migration of CT",
        "hamigrate": "HA migration request for",
        "qmshutdown": "Shutdown of VM",
        "vzshutdown": "Shutdown of CT",
        "qmstart": "Start of VM",
        "vzstart": "Start of CT",
        "hastop": "HA stop request for",
        "hastart": "HA start request for",
    }
    if upid.type in names:
        return f"{names[upid.type]} {upid.id}"
    return f"Task {upid.type} {upid.id}".rstrip()


class _Follower:
    """State of one followed task: log position, tail, values parsed from the log."""

    def __init__(
        self,
        client: TaskApi,
        upid: Upid,
        *,
        on_progress: Callable[[MigrationProgress], None] | None,
        on_log_line: Callable[[TaskLogLine], None] | None,
        wait: WaitPolicy,
        tail_lines: int,
        page_lines: int,
    ) -> None:
        self.client = client
        self.upid = upid
        self.on_progress = on_progress
        self.on_log_line = on_log_line
        self.wait = wait
        self.page_lines = page_lines
        self.lines_read = 0
        self.tail: deque[str] = deque(maxlen=max(tail_lines, FAILURE_TAIL_LINES))
        self.moved = True
        self.interval = wait.poll_interval_s
        self.near_end_s: float | None = None  # the log says the task ends within this
        self.downtime_ms: int | None = None
        self.logged_duration_s: int | None = None
        self.log_error: PvetoolError | None = None

    def poll(self) -> TaskStatus:
        status = self.client.task_status(self.upid)
        try:
            self.read_new_lines()
            self.log_error = None
        except PvetoolError as exc:
            if not is_transient_read(exc):
                raise
            self.log_error = exc  # the status decides; the log is read again next time
        return status

    def catch_up(
        self, deadline: float, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        """The task ended while its log could not be read: read the rest (its last lines say
        why it failed), for as long as the deadline allows; without it the status still
        stands."""
        if self.log_error is None:
            return

        def read() -> bool:
            self.read_new_lines()
            return True

        try:
            wait_until(
                read,
                bool,
                timeout_s=max(0.0, deadline - clock()),
                poll_s=self.wait.poll_interval_s,
                clock=clock,
                sleep=sleep,
                transient=is_transient_read,
            )
        except PvetoolError as exc:
            logger.info("The log of %s could not be read: %s", self.upid, exc)

    def read_new_lines(self) -> None:
        self.moved = False
        while True:
            page = self.client.task_log(self.upid, start=self.lines_read, limit=self.page_lines)
            if self.lines_read == 0 and len(page) == 1 and _placeholder(page[0].text):
                return  # PVE's placeholder for a log that has no line yet (or no file)
            for line in page:
                self._handle(line)
            if page:
                self.lines_read = max(self.lines_read + len(page), page[-1].n)
                self.moved = True
            if len(page) < self.page_lines:
                return

    def _handle(self, line: TaskLogLine) -> None:
        self.tail.append(line.text)
        if self.on_log_line is not None:
            self.on_log_line(line)
        progress = convert.parse_progress_line(self.upid, line.text, line.n)
        if progress is not None:
            self.near_end_s = _time_left_s(progress, self.near_end_s)
            if self.on_progress is not None:
                self.on_progress(progress)
        elif _FINISHING.search(line.text):
            self.near_end_s = NEAR_END_POLL_S
        downtime = convert.parse_downtime_ms(line.text)
        if downtime is not None:
            self.downtime_ms = downtime
        duration = convert.parse_duration_s(line.text)
        if duration is not None:
            self.logged_duration_s = duration

    def next_interval(self) -> float:
        """The pause before the next poll: short while the log moves, growing while it stands."""
        if self.moved:
            self.interval = self.wait.poll_interval_s
        else:
            self.interval = min(self.wait.max_poll_interval_s, self.interval * 1.5)
        if self.near_end_s is not None:  # poll faster near the end, not slower (issue 14)
            return max(NEAR_END_POLL_S, min(self.interval, self.near_end_s))
        return self.interval

    def last_lines(self, count: int = FAILURE_TAIL_LINES) -> tuple[str, ...]:
        meaningful = [line for line in self.tail if line.strip()]
        return tuple(meaningful[-count:])


def _placeholder(text: str) -> bool:
    """PVE's stand-ins for a log without lines: ``no content`` for an empty file, and
    ``unable to open file - <errno text>`` when the file is not there (yet): pve-common
    ``src/PVE/Tools.pm`` ``dump_logfile`` (l.794, l.806). Neither is a line of the task."""
    return text == "no content" or text.startswith("unable to open file")


# Once the log says the end is near, the status is read this often: the next migration of a
# drain starts as soon as a slot frees, instead of up to a whole poll interval later.
NEAR_END_POLL_S = 0.5
# After these lines only the switch-over and cleanup remain (qemu-server QemuMigrate.pm
# phase2: "migration status: completed", then phase3 / phase3_cleanup; BlockJob.pm: "all
# 'mirror' jobs are ready" before the RAM phase of a local-disk move is the other long part, so
# it is not one of them).
_FINISHING = re.compile(
    r"migration (?:status: )?completed|migration finished successfully|"
    r"start container on target node|stopping NBD storage migration server"
)


def _time_left_s(progress: MigrationProgress, before: float | None) -> float | None:
    """How long the log says the migration still needs: the RAM phase's remaining bytes at its
    current rate (a drive mirror's by its percentage is not known here without its duration;
    the RAM phase follows it anyway), or None when it does not say."""
    if progress.completed:
        return NEAR_END_POLL_S
    if progress.phase != "ram" or not progress.rate_bps or progress.total_bytes is None:
        return before
    left = max(0, progress.total_bytes - progress.transferred_bytes)
    return left / progress.rate_bps


def _follow_one(
    client: TaskApi,
    upid: Upid,
    *,
    deadline: float,
    timeout_s: float,
    on_progress: Callable[[MigrationProgress], None] | None,
    on_log_line: Callable[[TaskLogLine], None] | None,
    wait: WaitPolicy,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    tail_lines: int,
    page_lines: int,
) -> TaskResult:
    started = clock()
    follower = _Follower(
        client,
        upid,
        on_progress=on_progress,
        on_log_line=on_log_line,
        wait=wait,
        tail_lines=tail_lines,
        page_lines=page_lines,
    )
    try:
        status = wait_until(
            follower.poll,
            lambda answer: not answer.running,
            timeout_s=deadline - clock(),
            poll_s=follower.next_interval,
            clock=clock,
            sleep=sleep,
            transient=is_transient_read,
        )
    except KeyboardInterrupt:
        raise Interrupted(upid=str(upid)) from None
    except PvetoolError as exc:
        if not is_transient_read(exc):
            raise
        raise _unreadable(upid, timeout_s, exc) from exc
    if status is None:
        raise TaskTimeout(upid=str(upid), node=upid.node, timeout_s=timeout_s)
    follower.catch_up(deadline, clock, sleep)

    exitstatus = status.exitstatus or "unknown"
    if not status.ok:
        raise TaskFailed(
            upid=str(upid),
            node=upid.node,
            exitstatus=exitstatus,
            last_lines=follower.last_lines(),
            description=_describe(upid),
        )
    duration = follower.logged_duration_s
    return TaskResult(
        upid=upid,
        exitstatus=exitstatus,
        duration_s=float(duration) if duration is not None else clock() - started,
        downtime_ms=follower.downtime_ms,
        log_tail=tuple(follower.tail)[-tail_lines:] if tail_lines else (),
    )


def _unreadable(upid: Upid, timeout_s: float, exc: PvetoolError) -> TaskTimeout:
    """The deadline came while the task's status could not be read."""
    return TaskTimeout(
        upid=str(upid),
        node=upid.node,
        timeout_s=timeout_s,
        detail=(
            f"The status of task {upid} could not be read before the {timeout_s:g} s timeout "
            f"ran out ({exc}); it may still be running on node {upid.node} and was not stopped"
        ),
    )


def find_migration_task(
    client: TaskApi,
    node: str,
    vmid: int,
    since: int,
    timeout_s: float,
    *,
    types: Collection[str] = MIGRATION_TASK_TYPES,
    wait: WaitPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Upid:
    """Wait for a migration task of `vmid` started on `node` at or after `since` (epoch).

    Used after an HA migration request, whose ``qmigrate`` the HA agent starts later (up to
    two 10 s manager rounds). Raises `TaskTimeout` when none appears within `timeout_s`.
    """
    policy = wait or WaitPolicy()
    wanted = frozenset(types)
    interval = [policy.poll_interval_s]

    def look() -> Upid | None:
        found = [
            t.upid
            for t in client.tasks(TaskQuery(node, vmid=vmid, since=since))
            if t.upid.type in wanted and t.upid.starttime >= since and t.upid.vmid == vmid
        ]
        return min(found, key=lambda u: (u.starttime, u.pstart)) if found else None

    def next_interval() -> float:
        current = interval[0]
        interval[0] = min(policy.max_poll_interval_s, current * 1.5)
        return current

    try:
        found = wait_until(
            look,
            lambda upid: upid is not None,
            timeout_s=timeout_s,
            poll_s=next_interval,
            clock=clock,
            sleep=sleep,
            transient=is_transient_read,
        )
    except KeyboardInterrupt:
        raise Interrupted() from None
    except PvetoolError as exc:
        if not is_transient_read(exc):
            raise
        raise TaskTimeout(
            upid="",
            node=node,
            timeout_s=timeout_s,
            detail=(
                f"The task list of {node} could not be read to find the migration task of "
                f"guest {vmid} within {timeout_s:g} s ({exc}); the HA manager may have started "
                "it (see ha-manager status)"
            ),
        ) from exc
    if found is None:
        raise TaskTimeout(
            upid="",
            node=node,
            timeout_s=timeout_s,
            detail=(
                f"No migration task for guest {vmid} started on node {node} within "
                f"{timeout_s:g} s; the HA manager dropped the request or has not acted on it "
                "(it drops one for a target that is not HA-online, or while it still moves "
                "the guest; see ha-manager status)"
            ),
        )
    return found


def follow_task(
    client: TaskApi,
    upid: Upid | str,
    timeout_s: float,
    *,
    on_progress: Callable[[MigrationProgress], None] | None = None,
    on_log_line: Callable[[TaskLogLine], None] | None = None,
    wait: WaitPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    tail_lines: int = 20,
    page_lines: int = 500,
) -> TaskResult:
    """Follow a task until it ends; return its `TaskResult` or raise.

    Raises `TaskFailed` (exit status and the last log lines), `TaskTimeout` (the task keeps
    running; its UPID is in the exception), `Interrupted` on Ctrl-C, or the client's error
    when the API stays unreachable past the deadline. `on_progress` receives each migration
    progress line as a `MigrationProgress`, `on_log_line` every log line. `sleep` and `clock`
    (monotonic seconds) are replaceable for tests.
    """
    task = upid if isinstance(upid, Upid) else Upid.parse(upid)
    policy = wait or WaitPolicy()
    deadline = clock() + timeout_s

    def follow(one: Upid) -> TaskResult:
        return _follow_one(
            client,
            one,
            deadline=deadline,
            timeout_s=timeout_s,
            on_progress=on_progress,
            on_log_line=on_log_line,
            wait=policy,
            sleep=sleep,
            clock=clock,
            tail_lines=tail_lines,
            page_lines=page_lines,
        )

    first = follow(task)
    if task.type != "hamigrate" or task.vmid is None:
        return first

    real = find_migration_task(
        client,
        task.node,
        task.vmid,
        task.starttime,
        max(0.0, min(deadline - clock(), HA_START_TIMEOUT_S)),
        wait=policy,
        sleep=sleep,
        clock=clock,
    )
    logger.info("The HA manager started %s for guest %s", real, task.vmid)
    try:
        result = follow(real)
    except TaskTimeout as exc:
        raise TaskTimeout(upid=str(real), node=real.node, timeout_s=timeout_s) from exc
    return replace(result, ha_upid=task)
