"""Fuzzed numbers for every range the plan loader checks (issue 12, finding 5): a value loads
exactly when it is inside its documented range, a loaded value is one the rest of pvetool can
hold (a deadline in the future that Python can represent, a finite number), and a refused one is
named with file:line and its key path, never a crash.

The ranges: durations up to 365 days (timeouts above 0), sizes up to 1024 PiB, rates up to
1 PiB/s, percentages up to 100 % where they are shares, migrations at once 1 to 1000, moves 1 to
1,000,000, ratios up to 1000 (pvetool.units, pvetool.planner.loader_values).
"""

from __future__ import annotations

import datetime
import math
import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvetool.errors import PlanError
from pvetool.planner.loader import load_plan_text
from pvetool.planner.spec import PlanSpec, RebalanceStep, RollingStep

DAY = 86400
UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY}
MAX_DURATION_S = 365 * DAY
PIB = 1024**5

# Numbers from small to absurd, so both sides of every limit are hit often.
magnitudes = st.one_of(
    st.integers(0, 2000),
    st.integers(0, 10**12),
    st.integers(0, 10**30),
    st.sampled_from([0, 1, 365, 366, 1000, 1001, 8760, 8761, 525600, 525601, 31536000]),
)


def _load(text: str) -> PlanSpec | PlanError:
    try:
        return load_plan_text(text, "fuzz.yaml")
    except PlanError as exc:
        return exc


def _refused_at(result: PlanSpec | PlanError, line: int, path: str) -> None:
    assert isinstance(result, PlanError), "loaded although out of range"
    (problem,) = result.problems
    assert re.fullmatch(rf"fuzz\.yaml:{line}: {re.escape(path)}: .+", problem), problem


def _usable_deadline(seconds: float) -> None:
    """What a run does with a timeout: a deadline from now, as a date and a monotonic time."""
    now = datetime.datetime.now(datetime.UTC)
    assert now + datetime.timedelta(seconds=seconds) >= now
    assert math.isfinite(seconds)


@settings(max_examples=300, deadline=None)
@given(magnitudes, st.sampled_from(sorted(UNITS)))
def test_task_timeout(amount: int, unit: str) -> None:
    seconds = amount * UNITS[unit]
    result = _load(f"version: 1\nsteps: [drain: pve2]\nrules:\n  task_timeout: {amount}{unit}\n")
    if 0 < seconds <= MAX_DURATION_S:
        assert isinstance(result, PlanSpec), result
        assert result.rules.task_timeout_s == seconds
        _usable_deadline(result.rules.task_timeout_s)
    else:
        _refused_at(result, 4, "rules.task_timeout")


@settings(max_examples=300, deadline=None)
@given(magnitudes, st.sampled_from(sorted(UNITS)), st.sampled_from(["wait", "hook", "pause"]))
def test_rolling_durations(amount: int, unit: str, which: str) -> None:
    seconds = amount * UNITS[unit]
    value = f"{amount}{unit}"
    body = {
        "wait": f"      wait_online_timeout: {value}\n",
        "hook": f"      before: {{command: [/bin/true], timeout: {value}}}\n",
        "pause": f"      pause: {value}\n",
    }[which]
    result = _load("version: 1\nsteps:\n  - rolling:\n      nodes: [pve1, pve2]\n" + body)
    path = {
        "wait": "steps[0].rolling.wait_online_timeout",
        "hook": "steps[0].rolling.before.timeout",
        "pause": "steps[0].rolling.pause",
    }[which]
    low_ok = seconds >= 0 if which == "pause" else seconds > 0
    if low_ok and seconds <= MAX_DURATION_S:
        assert isinstance(result, PlanSpec), result
        (step,) = result.steps
        assert isinstance(step, RollingStep)
        got = {
            "wait": step.wait_online_timeout_s,
            "hook": step.before.timeout_s if step.before else None,
            "pause": step.pause_s,
        }[which]
        assert got == seconds
        _usable_deadline(float(got or 0))
    else:
        _refused_at(result, 5, path)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(-3, 2000), st.integers(-(10**30), 10**30)))
def test_concurrency(count: int) -> None:
    result = _load(
        f"version: 1\nsteps: [drain: pve2]\nrules:\n  concurrency:\n    cluster: {count}\n"
    )
    if 1 <= count <= 1000:
        assert isinstance(result, PlanSpec), result
        assert result.rules.concurrency.cluster == count
    else:
        _refused_at(result, 5, "rules.concurrency.cluster")


@settings(max_examples=200, deadline=None)
@given(magnitudes)
def test_max_moves(count: int) -> None:
    result = _load(f"version: 1\nsteps:\n  - rebalance:\n      max_moves: {count}\n")
    if 1 <= count <= 1_000_000:
        assert isinstance(result, PlanSpec), result
        (step,) = result.steps
        assert isinstance(step, RebalanceStep) and step.max_moves == count
    else:
        _refused_at(result, 4, "steps[0].rebalance.max_moves")


@settings(max_examples=300, deadline=None)
@given(magnitudes, st.sampled_from(["KiB", "MiB", "GiB", "TiB", "PiB"]))
def test_memory_headroom_sizes(amount: int, unit: str) -> None:
    size = amount * 1024 ** ["KiB", "MiB", "GiB", "TiB", "PiB"].index(unit) * 1024
    result = _load(
        f"version: 1\nsteps: [drain: pve2]\nrules:\n  headroom:\n    memory: {amount}{unit}\n"
    )
    if size <= 1024 * PIB:
        assert isinstance(result, PlanSpec), result
        assert result.rules.headroom.memory.absolute == float(size)
    else:
        _refused_at(result, 5, "rules.headroom.memory")


@settings(max_examples=300, deadline=None)
@given(magnitudes, st.sampled_from(["MiB/s", "GiB/s", "Gbit/s"]))
def test_bandwidth_limits(amount: int, unit: str) -> None:
    factor = {"MiB/s": Fraction(1024**2), "GiB/s": Fraction(1024**3), "Gbit/s": Fraction(10**9, 8)}
    rate = amount * factor[unit]
    result = _load(
        f"version: 1\nsteps: [drain: pve2]\nrules:\n  migration:\n    bwlimit: {amount}{unit}\n"
    )
    if rate <= PIB:
        assert isinstance(result, PlanSpec), result
        assert result.rules.migration.bwlimit_Bps == pytest.approx(float(rate))
    else:
        _refused_at(result, 5, "rules.migration.bwlimit")


@settings(max_examples=300, deadline=None)
@given(st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False))
def test_percentages(value: object) -> None:
    share = Fraction(str(value)) / 100
    result = _load(f"version: 1\nsteps:\n  - rebalance:\n      threshold: {value}%\n")
    if share <= 1:
        assert isinstance(result, PlanSpec), result
        (step,) = result.steps
        assert isinstance(step, RebalanceStep)
        assert step.threshold == pytest.approx(float(share))
    else:
        _refused_at(result, 4, "steps[0].rebalance.threshold")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(0.001, 5000), st.integers(1, 10**20)))
def test_cpu_overcommit(ratio: float) -> None:
    result = _load(f"version: 1\nsteps: [drain: pve2]\nrules:\n  cpu_overcommit: {ratio}\n")
    if ratio <= 1000:
        assert isinstance(result, PlanSpec), result
        assert result.rules.cpu_overcommit == pytest.approx(float(ratio))
    else:
        _refused_at(result, 4, "rules.cpu_overcommit")
