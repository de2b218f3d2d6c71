"""follow_task with a fake clock: success, WARNINGS, failure with the last log lines, timeout,
adaptive polling, incremental log reads, progress from real migration logs, and an HA
``hamigrate`` followed to the real ``qmigrate``."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from pvetool.api import PveClient, follow_task
from pvetool.api.tasks import NEAR_END_POLL_S
from pvetool.errors import ApiUnreachable, Interrupted, TaskFailed, TaskTimeout
from pvetool.model import (
    MigrationProgress,
    TaskLogLine,
    TaskQuery,
    TaskStatus,
    TaskSummary,
    Upid,
)
from pvetool.settings import WaitPolicy

from .helpers import BASE1, RecordingSleep, load_fixture, token_settings

T0 = 1_763_156_860
QM = Upid("pve1", 0x1000, 0x2000, T0 + 12, "qmigrate", "20057", "root@pam")
HA = Upid("pve1", 0x0FFF, 0x1FFF, T0, "hamigrate", "20057", "root@pam", "pvetool")


class Clock:
    """Monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 5000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeTask:
    """A task whose log grows by `lines_per_poll` per status call and that stops, with
    `exitstatus`, once the whole log is visible (or never, if `exitstatus` is None)."""

    def __init__(
        self,
        lines: list[str],
        exitstatus: str | None = "OK",
        lines_per_poll: int = 4,
        first_lines: int = 0,
    ) -> None:
        self.lines = lines
        self.exitstatus = exitstatus
        self.lines_per_poll = lines_per_poll
        self.visible = first_lines
        self.status_calls = 0

    def status(self, upid: Upid) -> TaskStatus:
        self.status_calls += 1
        if self.status_calls > 1:
            self.visible = min(len(self.lines), self.visible + self.lines_per_poll)
        done = self.exitstatus is not None and self.visible >= len(self.lines)
        return TaskStatus(upid, "stopped" if done else "running", self.exitstatus if done else None)


class FakeApi:
    def __init__(self, tasks: dict[Upid, FakeTask]) -> None:
        self.tasks_by_upid = tasks
        self.log_calls: list[tuple[Upid, int, int]] = []  # (task, start, lines returned)
        self.list_calls: list[dict[str, Any]] = []
        self.task_lists: list[list[Upid]] = []
        self.failures: list[BaseException] = []

    def task_status(self, upid: Upid | str) -> TaskStatus:
        if self.failures:
            raise self.failures.pop(0)
        task = upid if isinstance(upid, Upid) else Upid.parse(upid)
        return self.tasks_by_upid[task].status(task)

    def task_log(
        self, upid: Upid | str, *, start: int = 0, limit: int = 500
    ) -> tuple[TaskLogLine, ...]:
        task = upid if isinstance(upid, Upid) else Upid.parse(upid)
        fake = self.tasks_by_upid[task]
        if fake.visible == 0:
            self.log_calls.append((task, start, 0))
            return (TaskLogLine(1, "no content"),)  # what PVE answers for an empty log
        end = min(fake.visible, start + limit)
        page = tuple(TaskLogLine(n + 1, fake.lines[n]) for n in range(start, end))
        self.log_calls.append((task, start, len(page)))
        return page

    def tasks(self, query: TaskQuery) -> tuple[TaskSummary, ...]:
        self.list_calls.append(
            {
                "node": query.node,
                "vmid": query.vmid,
                "since": query.since,
                "source": query.source,
                "limit": query.limit,
            }
        )
        found = self.task_lists.pop(0) if self.task_lists else []
        return tuple(TaskSummary(u) for u in found)


def log_lines(name: str) -> list[str]:
    return load_fixture(name).splitlines()


def follow(api: FakeApi, upid: Upid, timeout_s: float, clock: Clock, **kwargs: Any) -> Any:
    return follow_task(
        api, upid, timeout_s, sleep=clock.sleep, clock=clock, wait=WaitPolicy(), **kwargs
    )


def test_success_reads_the_log_incrementally_and_reports_progress() -> None:
    lines = log_lines("qmigrate_online_pve9_ha_ok.log")
    api = FakeApi({QM: FakeTask(lines)})
    clock = Clock()
    events: list[MigrationProgress] = []
    seen: list[TaskLogLine] = []
    result = follow(api, QM, 600, clock, on_progress=events.append, on_log_line=seen.append)

    assert result.ok and result.exitstatus == "OK" and result.upid == QM
    assert result.downtime_ms == 59 and result.duration_s == 20.0
    assert result.log_tail[-1] == "TASK OK" and len(result.log_tail) == 20
    assert len(events) == 16 and events[-1].completed and events[0].total_bytes
    assert [line.text for line in seen] == lines  # every line once, in order
    starts = [start for _, start, _ in api.log_calls]
    assert starts == sorted(starts)
    assert sum(n for *_, n in api.log_calls) == len(lines)  # nothing read twice
    assert api.tasks_by_upid[QM].status_calls == len(clock.sleeps) + 1  # one status per poll
    # 1 s while the log moves, 0.5 s once it says the end is near (issue 14)
    assert set(clock.sleeps[1:]) == {1.0, NEAR_END_POLL_S}


def test_warnings_is_success() -> None:
    status = load_fixture("task_status_stopped_warnings.json")["data"]
    upid = Upid.parse(status["upid"])
    api = FakeApi(
        {
            upid: FakeTask(
                ["starting VM", "WARN: something", "TASK WARNINGS: 1"],
                exitstatus=status["exitstatus"],
                first_lines=3,
            )
        }
    )
    result = follow(api, upid, 60, Clock())
    assert result.ok and result.warnings == 1 and result.exitstatus == "WARNINGS: 1"


def test_failure_raises_with_exit_status_and_last_lines() -> None:
    lines = log_lines("qmigrate_failed_local_disk.log")
    upid = Upid("prxm-j", 1, 2, T0, "qmigrate", "100", "root@pam")
    api = FakeApi({upid: FakeTask(lines, exitstatus="migration aborted")})
    with pytest.raises(TaskFailed) as info:
        follow(api, upid, 60, Clock())
    exc = info.value
    assert exc.exitstatus == "migration aborted" and exc.upid == str(upid)
    assert exc.exit_code == 1 and exc.node == "prxm-j"
    assert any("can't migrate local disk" in line for line in exc.last_lines)
    assert exc.last_lines[-1] == "TASK ERROR: migration aborted"
    assert str(exc).startswith("Migration of VM 100 on node prxm-j failed")


def test_timeout_leaves_the_task_running_and_names_it() -> None:
    api = FakeApi({QM: FakeTask(["start"] * 3, exitstatus=None, lines_per_poll=0)})
    clock = Clock()
    started = clock.now
    with pytest.raises(TaskTimeout) as info:
        follow(api, QM, 30, clock)
    assert info.value.upid == str(QM) and info.value.timeout_s == 30
    assert "still running" in str(info.value) and str(QM) in str(info.value)
    assert clock.now - started == pytest.approx(30)
    # nothing new in the log: the interval grows from 1 s to at most 5 s
    assert clock.sleeps[:4] == [1.5, 2.25, 3.375, 5.0] and max(clock.sleeps) <= 5.0


def test_polling_speeds_up_again_when_the_log_moves() -> None:
    lines = [f"line {i}" for i in range(12)]
    task = FakeTask(lines, lines_per_poll=0)
    api = FakeApi({QM: task})
    clock = Clock()
    original = task.status

    def status(upid: Upid) -> TaskStatus:
        task.lines_per_poll = 4 if task.status_calls >= 3 else 0
        return original(upid)

    task.status = status  # type: ignore[method-assign]
    follow(api, QM, 120, clock)
    assert clock.sleeps == [1.5, 2.25, 3.375, 1.0, 1.0]


def test_transient_errors_are_sat_out() -> None:
    api = FakeApi({QM: FakeTask(["TASK OK"], first_lines=1)})
    api.failures = [
        ApiUnreachable(host="pve1:8006", reason="Connection refused"),
        ApiUnreachable(host="pve2:8006", reason="Connection refused"),
    ]
    result = follow(api, QM, 60, Clock())
    assert result.ok


def test_interrupt_names_the_running_task() -> None:
    api = FakeApi({QM: FakeTask(["x"], exitstatus=None, lines_per_poll=0)})

    def sleep(_: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        follow_task(api, QM, 60, sleep=sleep, clock=Clock())
    assert info.value.upid == str(QM) and str(QM) in str(info.value)


def test_legacy_progress_format() -> None:
    upid = Upid("pve1", 1, 2, T0, "qmigrate", "101", "root@pam")
    api = FakeApi({upid: FakeTask(log_lines("qmigrate_online_pve6_legacy_format_ok.log"))})
    events: list[MigrationProgress] = []
    result = follow(api, upid, 60, Clock(), on_progress=events.append)
    assert [e.transferred_bytes for e in events] == [294227312]
    assert result.downtime_ms == 57 and result.duration_s == 8.0


# -- HA -----------------------------------------------------------------------------------


def test_hamigrate_is_followed_to_the_real_qmigrate() -> None:
    ha_log = ["requesting HA migration for VM 20057 to node dalia", "TASK OK"]
    older = Upid("pve1", 5, 6, T0 - 100, "qmigrate", "20057", "root@pam")
    api = FakeApi(
        {
            HA: FakeTask(ha_log, lines_per_poll=2),
            QM: FakeTask(log_lines("qmigrate_online_pve9_ha_ok.log")),
        }
    )
    api.task_lists = [[HA], [HA, older], [QM, HA, older]]
    clock = Clock()
    result = follow(api, HA, 600, clock)
    assert result.upid == QM and result.ha_upid == HA and result.ok
    assert result.downtime_ms == 59
    assert len(api.list_calls) == 3
    assert api.list_calls[0] == {
        "node": "pve1",
        "vmid": 20057,
        "since": T0,
        "source": "all",
        "limit": 50,
    }


def test_hamigrate_failure_is_reported_as_such() -> None:
    api = FakeApi({HA: FakeTask(["service 'vm:20057' not in HA config"], exitstatus="error")})
    with pytest.raises(TaskFailed, match="HA migration request for 20057"):
        follow(api, HA, 60, Clock())
    assert api.list_calls == []


def test_hamigrate_without_migration_times_out() -> None:
    api = FakeApi({HA: FakeTask(["TASK OK"], first_lines=1)})
    clock = Clock()
    with pytest.raises(TaskTimeout, match="No migration task for guest 20057 started on node"):
        follow(api, HA, 30, clock)
    assert clock.now - 5000.0 == pytest.approx(30)


# -- against the real client --------------------------------------------------------------


def test_follow_task_through_pve_client(api: responses.RequestsMock) -> None:
    lines = load_fixture("task_log_response_qmigrate_pve9_DERIVED.json")["data"]
    polls = {"n": 0}

    def status(request: Any) -> tuple[int, dict[str, str], str]:
        polls["n"] += 1
        done = polls["n"] >= 3
        data = {"upid": str(QM), "node": "pve1", "status": "stopped" if done else "running"}
        if done:
            data["exitstatus"] = "OK"
        return 200, {}, json.dumps({"data": data})

    def log(request: Any) -> tuple[int, dict[str, str], str]:
        params = parse_qs(urlsplit(request.url).query)
        start, limit = int(params["start"][0]), int(params["limit"][0])
        visible = min(len(lines), 15 * polls["n"])
        return 200, {}, json.dumps({"data": lines[start : min(visible, start + limit)]})

    api.add_callback(
        "GET", re.compile(re.escape(BASE1) + r"/nodes/pve1/tasks/UPID.*/status"), callback=status
    )
    api.add_callback(
        "GET", re.compile(re.escape(BASE1) + r"/nodes/pve1/tasks/UPID.*/log.*"), callback=log
    )
    client = PveClient(token_settings(), sleep=RecordingSleep())
    clock = Clock()
    result = follow_task(client, str(QM), 300, sleep=clock.sleep, clock=clock)
    assert result.ok and result.duration_s == 20.0 and result.downtime_ms == 59
    log_starts = [
        parse_qs(urlsplit(c.request.url).query)["start"][0]
        for c in api.calls
        if "/log" in c.request.url
    ]
    assert log_starts == ["0", "15", "30"]
    assert polls["n"] == 3


def test_hamigrate_without_migration_is_not_waited_for_an_hour() -> None:
    # D5: the CRM drops a request for a target that is not HA-online, or while it still moves
    # the guest (pve-ha-manager Manager.pm update_crm_commands l.642-668): no qmigrate ever.
    api = FakeApi({HA: FakeTask(["TASK OK"], first_lines=1)})
    clock = Clock()
    with pytest.raises(TaskTimeout, match="dropped the request or has not acted on it"):
        follow(api, HA, 3600, clock)
    assert clock.now - 5000.0 <= 130


def test_a_missing_log_file_is_no_log_line() -> None:
    # D9: pve-common src/PVE/Tools.pm dump_logfile l.806 answers one line "unable to open file
    # - <errno>" for a log file that is not there (yet); it is not a line of the task.
    class NoFile(FakeApi):
        def task_log(
            self, upid: Upid | str, *, start: int = 0, limit: int = 500
        ) -> tuple[TaskLogLine, ...]:
            if start == 0 and self.tasks_by_upid[QM].status_calls < 2:
                return (TaskLogLine(1, "unable to open file - No such file or directory"),)
            return super().task_log(upid, start=start, limit=limit)

    api = NoFile({QM: FakeTask(["line one", "TASK OK"], first_lines=0)})
    seen: list[str] = []
    clock = Clock()
    result = follow_task(
        api, QM, 60, on_log_line=lambda ln: seen.append(ln.text), sleep=clock.sleep, clock=clock
    )
    assert result.ok and "unable to open file" not in " ".join(seen)
