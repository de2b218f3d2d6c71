"""Completion detection (issue 14): the follower polls faster when the log says the migration
is about to end, never slower, so the next migration of a drain starts soon after."""

from __future__ import annotations

from tests.unit.api.test_api_tasks import QM, Clock, FakeApi, FakeTask, follow

RAM = [
    "2026-01-02 10:00:00 start migrate command to unix:/run/qemu-server/100.migrate",
    "2026-01-02 10:00:01 migration active, transferred 1.0 GiB of 8.0 GiB VM-state, 1.0 GiB/s",
    "2026-01-02 10:00:07 migration active, transferred 7.8 GiB of 8.0 GiB VM-state, 1.0 GiB/s",
    "2026-01-02 10:00:08 migration completed, transferred 8.0 GiB VM-state",
    "2026-01-02 10:00:08 migration status: completed",
    "2026-01-02 10:00:10 migration finished successfully (duration 00:00:10)",
    "TASK OK",
]


def test_polls_every_half_second_once_the_ram_phase_completed() -> None:
    # One line becomes visible per poll; the log stands still for three polls at the end.
    task = FakeTask([*RAM[:-1]], exitstatus=None, lines_per_poll=1)
    api = FakeApi({QM: task})
    clock = Clock()
    original = task.status

    def status(upid: object) -> object:
        if task.status_calls >= len(RAM) + 3:
            task.lines, task.exitstatus = RAM, "OK"
        return original(upid)  # type: ignore[arg-type]

    task.status = status  # type: ignore[assignment,method-assign]
    result = follow(api, QM, 120, clock)
    assert result.ok
    # 7.0 GiB left at 1 GiB/s: the usual 1 s; 0.2 GiB left: 0.5 s; after "completed": 0.5 s
    # even while the log stands (it would otherwise grow to 1.5, 2.25, ... s).
    after_completed = clock.sleeps[4:]
    assert after_completed and all(s == 0.5 for s in after_completed), clock.sleeps
    assert clock.sleeps[:3] == [1.5, 1.0, 1.0], clock.sleeps  # empty log, then 7 GiB left


def test_without_progress_lines_the_interval_still_grows() -> None:
    api = FakeApi({QM: FakeTask(["x"], exitstatus=None, lines_per_poll=0)})
    clock = Clock()
    try:
        follow(api, QM, 12, clock)
    except Exception:  # noqa: BLE001 - the timeout is expected; the intervals are the point
        pass
    assert clock.sleeps[:3] == [1.5, 2.25, 3.375]
