"""D19: the migration timing model follows qemu-server's poll loop and QEMU's auto-converge.

qemu-server `src/PVE/QemuMigrate.pm` `phase2` (9.2.6): `query-migrate` every second, every
100 ms once the remaining RAM is below the average bytes transferred per poll (l.1447, l.1525);
the downtime counter counts only polls on which `ram.transferred` changed (l.1515-1518) and
whose `remaining` grew or is 0 (l.1563-1565), is never reset by progress, and more than 5 such
polls double the downtime limit (l.1568-1571), capped once at 2000 s (l.1177-1212). There is no
time limit: the loop ends only on QEMU's completed/failed/cancelled. QEMU (upstream
`migration/ram.c` `migration_trigger_throttle`) throttles at the second high-dirty period,
consecutive or not. These tests drive `pvetool.timing.Precopy` directly (no HTTP).
"""

from __future__ import annotations

import math

import pytest

from pvetool.timing import DIRTY_PROFILES, GiB, MiB, Precopy, TimingParams

PARAMS = TimingParams()


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "phase2", "l.1440-1447, l.1525")
def test_polls_every_second_then_every_100_ms_once_remaining_is_below_the_average() -> None:
    hot = DIRTY_PROFILES["hot"]
    precopy = Precopy(14 * GiB, hot.rate_Bps, hot.wss_bytes, PARAMS, give_up_s=math.inf)
    rate_Bps = 0.6e9
    seen: list[tuple[int, float, float]] = []  # (poll, interval after it, elapsed)
    last_sent_at_poll = 0.0
    switched_at: int | None = None
    while not precopy.finished and precopy.elapsed_s < 600:
        polls_before = precopy.polls
        rem_before = precopy.remaining_bytes
        sent_before = precopy.sent_bytes
        precopy.step(rate_Bps, 0.1)
        if precopy.polls != polls_before:
            seen.append((precopy.polls, precopy.poll_interval_s, precopy.elapsed_s))
            average = last_sent_at_poll / precopy.polls
            if switched_at is None and precopy.poll_interval_s == 0.1:
                switched_at = precopy.polls
                # The switch happens on the first poll whose remaining is below the average
                # per poll computed from the previous poll's transferred bytes.
                assert average > 0
                assert min(rem_before, precopy.remaining_bytes) < average
            last_sent_at_poll = precopy.sent_bytes if precopy.polls else sent_before
    assert switched_at is not None, "the poll interval never dropped to 100 ms"
    before = [t for n, _, t in seen if n <= switched_at]
    after = [t for n, _, t in seen if n >= switched_at]
    gaps_before = {round(b - a, 6) for a, b in zip(before, before[1:], strict=False)}
    gaps_after = {round(b - a, 6) for a, b in zip(after, after[1:], strict=False)}
    assert gaps_before == {1.0}
    assert gaps_after <= {0.1}
    # Once fast, PVE never goes back to 1 s polls.
    assert all(interval == 0.1 for n, interval, _ in seen if n >= switched_at)


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "phase2", "l.1515-1518, l.1563")
def test_polls_without_transfer_progress_are_not_counted() -> None:
    hot = DIRTY_PROFILES["hot"]
    precopy = Precopy(2 * GiB, hot.rate_Bps, hot.wss_bytes, PARAMS, give_up_s=math.inf)
    # A hot guest on a slow link: remaining grows at every pass end.
    while precopy.stalled_polls < PARAMS.stall_polls:
        precopy.step(0.117e9, 0.1)
    counted, limit_s = precopy.stalled_polls, precopy.downtime_limit_s
    # No bandwidth: the polls go on but see no transferred change, so they count nothing,
    # however long it lasts.
    assert precopy.step(0.0, 300.0) == []
    assert precopy.stalled_polls == counted
    assert precopy.downtime_limit_s == limit_s


@pytest.mark.source("qemu", "migration/ram.c", "migration_trigger_throttle", "upstream")
def test_auto_converge_counts_high_periods_that_are_not_consecutive() -> None:
    # ram 2 GiB, 100 MiB/s dirty into a large working set; the bandwidth per pass makes the
    # periods high (150 MB/s: 67 % re-dirtied), low (400 MB/s: 25 %), high again.
    precopy = Precopy(2 * GiB, 100 * MiB, 16 * GiB, PARAMS, give_up_s=math.inf)
    rates = {0: 150e6, 1: 400e6, 2: 150e6}
    events = []
    while precopy.passes < 3 and not precopy.finished:
        events += precopy.step(rates[precopy.passes], 0.01)
    throttles = [(e.value, e.at_s) for e in events if e.kind == "auto-converge"]
    # The second high period (the third pass) starts the throttle at 20 %: the low period in
    # between did not reset QEMU's dirty_rate_high_cnt.
    assert [round(v, 2) for v, _ in throttles] == [0.2]
    assert precopy.throttle == pytest.approx(0.2)


@pytest.mark.source("qemu-server", "src/PVE/QemuMigrate.pm", "phase2", "l.1445-1576")
def test_pve_never_gives_up_a_slow_migration() -> None:
    # 1 MB/s for 1 GiB of a moderately dirty guest: hours, but it converges (no deadline).
    moderate = DIRTY_PROFILES["moderate"]
    precopy = Precopy(1 * GiB, moderate.rate_Bps, moderate.wss_bytes, PARAMS, give_up_s=math.inf)
    events = []
    while not precopy.finished:
        events += precopy.step(1e6, 60.0)
        assert precopy.elapsed_s < 48 * 3600
    assert not precopy.aborted
    assert "aborted" not in {e.kind for e in events}
    assert precopy.escalations >= 1


@pytest.mark.source(
    "qemu-server",
    "src/PVE/QemuMigrate.pm",
    "increase_migrate_downtime, cap_migrate_downtime",
    "l.1177-1212",
)
def test_the_downtime_limit_is_capped_once_and_then_stays() -> None:
    params = PARAMS.replace(downtime_limit_max_s=0.3)
    hot = DIRTY_PROFILES["hot"]
    precopy = Precopy(2 * GiB, hot.rate_Bps, hot.wss_bytes, params, give_up_s=math.inf)
    events = []
    while not precopy.finished and precopy.elapsed_s < 20000:
        events += precopy.step(0.05e9, 1.0)
    kinds = [e.kind for e in events]
    assert kinds.count("downtime-capped") == 1
    capped_at = kinds.index("downtime-capped")
    # The capping line comes right before the increase that reaches the maximum.
    assert events[capped_at + 1].kind == "downtime-limit"
    assert events[capped_at + 1].value == pytest.approx(0.3)
    limits = [e.value for e in events if e.kind == "downtime-limit"]
    assert limits == [pytest.approx(0.2), pytest.approx(0.3)]
