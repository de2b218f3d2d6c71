"""Tests for `pvetool.planner.units`: every spelling a plan may use, and every refusal."""

from __future__ import annotations

import math

import pytest

from pvetool.planner.units import (
    GiB,
    KiB,
    MiB,
    TiB,
    is_percent,
    parse_duration,
    parse_percent,
    parse_rate,
    parse_size,
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
        ("8GB", "expected a size like 8GiB or 512MiB, got '8GB' (sizes are binary: write 8GiB)"),
        ("8 mb", "got '8 mb' (sizes are binary: write 8MiB)"),
        ("eight", "expected a size like 8GiB or 512MiB, got 'eight'"),
        ("8PiB", "got '8PiB'"),
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


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("x" * 500)
    assert len(str(info.value)) < 120
    assert str(info.value).endswith("...")
