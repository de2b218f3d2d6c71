"""Tests for `pvetool.units`: every spelling a plan or a cluster file may use, and every refusal.

Plans and cluster files share one language: whatever one of them accepts for a kind of value, the
other accepts too (the union, where it is unambiguous).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from pvetool.units import (
    GiB,
    KiB,
    MiB,
    TiB,
    format_size,
    is_percent,
    parse_duration,
    parse_link,
    parse_percent,
    parse_rate,
    parse_size,
    parse_timeout,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8GiB", 8 * GiB),
        ("8 GiB", 8 * GiB),
        ("8gib", 8 * GiB),
        ("32G", 32 * GiB),
        ("512MiB", 512 * MiB),
        ("512M", 512 * MiB),
        ("4KiB", 4 * KiB),
        ("4K", 4 * KiB),
        ("1.5TiB", 3 * TiB // 2),
        ("2T", 2 * TiB),
        ("100B", 100),
        ("100", 100),
        (".5GiB", GiB // 2),
        (4096, 4096),
        (0, 0),
        (1.4, 1),
    ],
)
def test_parse_size(value: object, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("8GB", "expected a size like 8GiB, got '8GB' (sizes are binary: write 8GiB)"),
        ("8 mb", "got '8 mb' (sizes are binary: write 8MiB)"),
        ("eight", "expected a size like 8GiB, got 'eight'"),
        ("8PB", "got '8PB' (sizes are binary: write 8PiB)"),
        ("-1GiB", "got '-1GiB'"),
        (-5, "must not be negative, got -5"),
        (True, "got True"),
        (None, "got None"),
        (float("inf"), "got inf"),
        ([8], "got [8]"),
    ],
)
def test_parse_size_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500MiB/s", 500 * MiB),
        ("500 MiB / s", 500 * MiB),
        ("1GiB/s", GiB),
        ("64K/s", 64 * KiB),
        ("100/s", 100),
        ("1Gbit/s", 1e9 / 8),
        ("1Gbit", 1e9 / 8),
        ("100Mbit/s", 100e6 / 8),
        ("2.5Gbps", 2.5e9 / 8),
        ("10gbit/s", 10e9 / 8),
        (0, 0.0),
        ("0", 0.0),
        (0.0, 0.0),
    ],
)
def test_parse_rate(value: object, expected: float) -> None:
    assert parse_rate(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (500, "got 500 (give a unit: a bare number is ambiguous, PVE's bwlimit counts KiB/s)"),
        ("500", "got '500' (give a unit)"),
        ("500MiB", "(a rate needs /s: 500MiB/s)"),
        ("10MB/s", "(rates are binary: write 10MiB/s)"),
        ("fast", "expected a rate like 500MiB/s or 1Gbit/s, got 'fast'"),
        ("5 furlongs/s", "got '5 furlongs/s'"),
        (-1, "must not be negative"),
        (False, "got False"),
    ],
)
def test_parse_rate_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rate(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10%", 0.10), ("12.5%", 0.125), (" 0 % ", 0.0), ("100%", 1.0), ("250%", 2.5), ("-0%", 0)],
)
def test_parse_percent(value: object, expected: float) -> None:
    assert parse_percent(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (10, "expected a percentage like 10%, got 10 (write 10%)"),
        (0.1, "got 0.1 (write 0.1%)"),
        ("10", "got '10' (write 10%)"),
        ("ten%", "got 'ten%'"),
        ("-5%", "must not be negative, got '-5%'"),
        (None, "got None"),
        (True, "got True"),
    ],
)
def test_parse_percent_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_percent(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10%", True), (" 5 % ", True), ("10", False), (10, False), (None, False)],
)
def test_is_percent(value: object, expected: bool) -> None:
    assert is_percent(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", 30),
        ("10m", 600),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1h 30m 15s", 5415),
        ("1.5h", 5400),
        ("90", 90),
        ("0s", 0),
        ("2H", 7200),
        (90, 90),
        (2.5, 2.5),
        (0, 0),
    ],
)
def test_parse_duration(value: object, expected: float) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 mins", "expected a duration like 30s, 10m or 1h, got '10 mins'"),
        ("500ms", "got '500ms'"),
        ("30m1h", "got '30m1h'"),
        ("", "got ''"),
        ("h", "got 'h'"),
        (-1, "must not be negative, got -1"),
        (math.nan, "got nan"),
        (None, "got None"),
        (True, "got True"),
        ("9" * 40 + "d", "got '" + "9" * 40),
    ],
)
def test_parse_duration_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        # Issue 12, finding 5: a 10^20-day timeout validated, then crashed a run half-way.
        (parse_duration, "99999999999999999999d", "must be at most 365d"),
        (parse_duration, 366 * 86400, "must be at most 365d"),
        (parse_duration, 1e308, "must be at most 365d"),
        (parse_size, 10**20, "must be at most 1024PiB"),
        (parse_size, "2048PiB", "must be at most 1024PiB"),
        (parse_rate, "2PiB/s", "must be at most 1PiB/s"),
        (parse_percent, "100000%", "must be at most 1000%"),
        (parse_timeout, "0s", "must be longer than 0 seconds, got '0s'"),
        (parse_timeout, 0, "must be longer than 0 seconds"),
    ],
)
def test_values_out_of_range_are_refused(parse: Any, value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse(value)
    assert message in str(info.value)


def test_the_limits_themselves_are_accepted() -> None:
    assert parse_duration("365d") == 365 * 86400
    assert parse_size("1024PiB") == 1024**6
    assert parse_timeout("1s") == 1.0


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("x" * 500)
    assert len(str(info.value)) < 120
    assert str(info.value).endswith("...")


# --- one language for plans and cluster files ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Spellings a cluster file took and a plan did not (and the other way round).
        ("8PiB", 8 * 1024 * TiB),
        ("2P", 2 * 1024 * TiB),
        ("12.6GiB", round(12.6 * GiB)),
        ("8gib", 8 * GiB),
        ("5.", 5),
        (10**18 + 1, 10**18 + 1),  # an exact integer, not rounded through a float
    ],
)
def test_parse_size_takes_the_union(value: object, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100Mbit/s", 100e6 / 8),  # was refused in cluster files
        ("120MiB/s", 120 * MiB),
        ("120mib/s", 120 * MiB),
        ("0B/s", 0.0),
        ("1PiB/s", 1024 * TiB),
        ("1.5 MiB / s", 1.5 * MiB),
    ],
)
def test_parse_rate_takes_the_union(value: object, expected: float) -> None:
    assert parse_rate(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [1000, 1000.0, "1000"])
def test_a_bare_rate_is_ambiguous_everywhere(value: object) -> None:
    # A cluster file read a bare number as B/s, a plan refused it (PVE's bwlimit counts KiB/s):
    # ambiguous, so both refuse it now.
    with pytest.raises(ValueError, match="give a unit"):
        parse_rate(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10Gbit", 10e9),
        ("2.5Gbit", 2.5e9),
        ("100Mbit", 100e6),
        ("25gbit", 25e9),
        ("10Gbit/s", 10e9),
        ("10 Gbit / s", 10e9),
        ("10Gbps", 10e9),  # the bit spellings of rates are link spellings too
        ("100mbps", 100e6),
        ("1Tbit", 1e12),
        (1e9, 1e9),
        (1000, 1000.0),
        ("1000000", 1e6),
    ],
)
def test_parse_link(value: object, expected: float) -> None:
    assert parse_link(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10GB", "expected a link speed like 10Gbit, 2.5Gbit or 100Mbit, got '10GB'"),
        ("10GiB/s", "got '10GiB/s'"),
        ("fast", "got 'fast'"),
        ("0Gbit", "a link speed must be positive, got '0Gbit'"),
        (0, "a link speed must be positive, got 0"),
        (-1, "a link speed must not be negative, got -1"),
        ("", "got ''"),
        (True, "got True"),
        (float("nan"), "got nan"),
    ],
)
def test_parse_link_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_link(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (8 * GiB, "8GiB"),
        (1536 * MiB, "1536MiB"),
        (3 * TiB, "3TiB"),
        (4 * KiB, "4KiB"),
        (100, "100"),
        (0, "0"),
        (GiB + 1, str(GiB + 1)),
    ],
)
def test_format_size_round_trips(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size
