"""Following a task through errors that pass: a 500/503 burst on the status or the log, a 500
on the re-login, a 500 on the node's task list (HA), a garbled answer. Each is read again until
the task timeout runs out, not given up on after a fixed count (chaos lab-drain 25, gen-drain 90;
reliability campaign finding 4b); only errors that name the request as wrong end the follow.
"""

from __future__ import annotations

import pytest

from pvetool.api import follow_task
from pvetool.errors import (
    ApiError,
    ApiUnreachable,
    PermissionDenied,
    PvetoolError,
    TaskFailed,
    TaskTimeout,
    ValidationError,
)
from pvetool.model import TaskLogLine, TaskQuery, TaskStatus, TaskSummary, Upid
from pvetool.settings import WaitPolicy

T0 = 1_763_156_860
QM = Upid("pve1", 0x1000, 0x2000, T0 + 12, "qmigrate", "101", "root@pam")
HA = Upid("pve1", 0x0FFF, 0x1FFF, T0, "hamigrate", "101", "root@pam")


def http(status: int, path: str, method: str = "GET") -> ApiError:
    return ApiError(method=method, path=path, status=status, reason="Internal Server Error")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Cluster:
    """Tasks that run for `polls` status reads and then stop with their exit status; errors
    queued per call kind are raised first."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.polls: dict[Upid, int] = {}
        self.exit: dict[Upid, str] = {}
        self.logs: dict[Upid, list[str]] = {}
        self.listed: list[Upid] = []
        self.errors: dict[str, list[PvetoolError]] = {"status": [], "log": [], "list": []}
        self.calls: dict[str, int] = {"status": 0, "log": 0, "list": 0}

    def task(self, upid: Upid, polls: int, exitstatus: str, log: list[str]) -> None:
        self.polls[upid], self.exit[upid], self.logs[upid] = polls, exitstatus, log

    def _raise(self, kind: str) -> None:
        self.calls[kind] += 1
        if self.errors[kind]:
            raise self.errors[kind].pop(0)

    def task_status(self, upid: Upid | str) -> TaskStatus:
        task = upid if isinstance(upid, Upid) else Upid.parse(upid)
        self._raise("status")
        self.polls[task] -= 1
        if self.polls[task] > 0:
            return TaskStatus(task, "running", None)
        return TaskStatus(task, "stopped", self.exit[task])

    def task_log(
        self, upid: Upid | str, *, start: int = 0, limit: int = 500
    ) -> tuple[TaskLogLine, ...]:
        task = upid if isinstance(upid, Upid) else Upid.parse(upid)
        self._raise("log")
        lines = self.logs[task]
        return tuple(TaskLogLine(n + 1, lines[n]) for n in range(start, len(lines)))

    def tasks(self, query: TaskQuery) -> tuple[TaskSummary, ...]:
        self._raise("list")
        return tuple(TaskSummary(u) for u in self.listed)


def follow(cluster: Cluster, upid: Upid, timeout_s: float = 60.0) -> object:
    return follow_task(
        cluster,
        upid,
        timeout_s,
        wait=WaitPolicy(poll_interval_s=1.0, max_poll_interval_s=5.0),
        sleep=cluster.clock.sleep,
        clock=cluster.clock,
    )


@pytest.fixture
def cluster() -> Cluster:
    return Cluster(Clock())


def test_a_500_burst_on_the_status_is_read_through(cluster: Cluster) -> None:
    cluster.task(QM, 3, "OK", ["migration finished successfully", "TASK OK"])
    cluster.errors["status"] = [http(500, "/status")] * 6 + [http(503, "/status")] * 3
    result = follow(cluster, QM)
    assert result.ok  # type: ignore[attr-defined]
    assert cluster.calls["status"] == 9 + 3


def test_a_500_burst_on_the_log_does_not_end_the_follow(cluster: Cluster) -> None:
    cluster.task(QM, 4, "OK", ["migration status: active", "TASK OK"])
    cluster.errors["log"] = [http(500, "/log")] * 10
    assert follow(cluster, QM).ok  # type: ignore[attr-defined]


def test_a_500_on_the_re_login_is_read_through(cluster: Cluster) -> None:
    # PveClient raises the login's own error when PVE refuses the ticket request with a 500.
    cluster.task(QM, 2, "OK", ["TASK OK"])
    cluster.errors["status"] = [http(500, "/access/ticket", "POST")] * 2
    assert follow(cluster, QM).ok  # type: ignore[attr-defined]


def test_a_garbled_answer_is_read_again(cluster: Cluster) -> None:
    cluster.task(QM, 2, "OK", ["TASK OK"])
    cluster.errors["status"] = [ValidationError("PVE reported an unknown task state 'x'")]
    assert follow(cluster, QM).ok  # type: ignore[attr-defined]


def test_a_500_on_the_task_list_while_waiting_for_the_ha_migration(cluster: Cluster) -> None:
    cluster.task(HA, 1, "OK", ["TASK OK"])
    cluster.task(QM, 2, "OK", ["TASK OK"])
    cluster.listed = [QM, HA]
    cluster.errors["list"] = [http(500, "/nodes/pve1/tasks")] * 5
    result = follow(cluster, HA)
    assert result.upid == QM and result.ha_upid == HA  # type: ignore[attr-defined]


def test_a_failure_whose_log_was_unreadable_still_names_its_reason(cluster: Cluster) -> None:
    cluster.task(QM, 2, "migration aborted", ["ERROR: migration aborted (duration 00:00:03): boom"])
    cluster.errors["log"] = [http(500, "/log")] * 2
    with pytest.raises(TaskFailed) as info:
        follow(cluster, QM)
    assert info.value.reason == "boom"


def test_a_status_unreadable_until_the_deadline_is_a_timeout_that_says_so(
    cluster: Cluster,
) -> None:
    cluster.task(QM, 1, "OK", ["TASK OK"])
    cluster.errors["status"] = [ApiUnreachable(host="pve1", reason="Connection refused")] * 1000
    started = cluster.clock.now
    with pytest.raises(TaskTimeout) as info:
        follow(cluster, QM, timeout_s=30)
    assert info.value.upid == str(QM)
    assert "could not be read" in str(info.value) and "Connection refused" in str(info.value)
    assert cluster.clock.now - started == pytest.approx(30)


def test_an_error_that_names_the_request_wrong_ends_the_follow_at_once(cluster: Cluster) -> None:
    cluster.task(QM, 3, "OK", ["TASK OK"])
    denied = PermissionDenied(method="GET", path="/status", status=403, reason="no Sys.Audit")
    cluster.errors["status"] = [denied]
    with pytest.raises(PermissionDenied):
        follow(cluster, QM)
    assert cluster.calls["status"] == 1
