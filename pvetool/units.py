"""Units of plan files and cluster files: sizes, rates, link speeds, percentages and durations.

One language for both files: `planner.loader` and the emulator's `clusterfile` call these on the
values YAML gives them (str, int or float) and get back bytes, bytes per second, bits per second,
a fraction or seconds. A value that cannot be read raises ``ValueError`` whose message completes
``<file>:<line>: <key path>: ...`` for an administrator, e.g.
``expected a duration like 30s, 10m or 1h, got '10 mins'``.

- Sizes are binary: ``8GiB``, ``512MiB``, PVE style ``32G`` (= 32 GiB), units B, K/KiB, M/MiB,
  G/GiB, T/TiB, P/PiB in any case; a plain number is bytes. ``8GB`` is refused with a hint,
  because PVE and pvetool never count in powers of 1000.
- Rates are sizes per second (``500MiB/s``, binary, the ``/s`` required) or bits per second
  (``1Gbit/s``, ``100Mbit``, ``2.5Gbps``: decimal, as network links are counted). A bare number is
  refused unless it is 0: PVE's own ``bwlimit`` counts KiB/s, so ``500`` would be ambiguous.
- Link speeds are bits per second (``10Gbit``, ``2.5Gbit/s``, ``100Mbps``); a plain number is
  bits per second, and a link speed must be positive.
- Percentages need the ``%`` sign (``10%``, ``12.5%``) and become fractions (0.10, 0.125).
- Durations: ``30s``, ``10m``, ``2h``, ``1d``, combined ``1h30m``, or a plain number of seconds.
  A timeout (`parse_timeout`) must also be longer than 0.

Every kind of value has a range, checked here so that no file or flag can carry a number the
rest of pvetool cannot hold (a ``99999999999999999999d`` timeout once validated and then
crashed a run half-way): durations up to 365 days, sizes up to 1024 PiB, rates up to 1 PiB/s,
link speeds up to 1 Pbit/s, percentages up to 1000 %.

Every spelling that is unambiguous is accepted wherever its kind of value is; what differs
between the two files is only which keys take which kind.

Pure functions, no I/O. Imports: the standard library only (a leaf the emulator may import).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import TypeVar

__all__ = [
    "GiB",
    "KiB",
    "MiB",
    "TiB",
    "format_size",
    "is_percent",
    "parse_duration",
    "parse_link",
    "parse_percent",
    "parse_rate",
    "parse_size",
    "parse_timeout",
]

_N = TypeVar("_N", int, float)

KiB: int = 1024
MiB: int = 1024 * KiB
GiB: int = 1024 * MiB
TiB: int = 1024 * GiB
_PiB: int = 1024 * TiB

MAX_DURATION_S = 365 * 86400
MAX_SIZE_BYTES = 1024 * _PiB
MAX_RATE_BPS = _PiB  # bytes per second
MAX_LINK_BITS_PER_S = 10**15
MAX_PERCENT = 1000

# At most 30 digits: enough for any real value, and far from Python's int-from-string limit.
_NUMBER = r"(\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})"

# Binary size units, looked up case-insensitively ("gib" and "GiB" cannot mean anything else).
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kib": KiB,
    "m": MiB,
    "mib": MiB,
    "g": GiB,
    "gib": GiB,
    "t": TiB,
    "tib": TiB,
    "p": _PiB,
    "pib": _PiB,
}
_DECIMAL_SIZE_UNITS = frozenset({"kb", "mb", "gb", "tb", "pb"})
_SIZE_RE = re.compile(rf"\s*{_NUMBER}\s*([A-Za-z]*)\s*")

# Bits per second, decimal (10 Gbit/s = 10^10 bit/s), as link speeds are counted.
_BIT_UNITS: dict[str, int] = {
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "tbit": 10**12,
    "bps": 1,
    "kbps": 10**3,
    "mbps": 10**6,
    "gbps": 10**9,
    "tbps": 10**12,
}
_RATE_RE = re.compile(rf"\s*{_NUMBER}\s*([A-Za-z]*)\s*(/\s*s)?\s*")

_PERCENT_RE = re.compile(rf"\s*([-+]?){_NUMBER}\s*%\s*")

_DURATION_UNITS: tuple[tuple[str, int], ...] = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DURATION_RE = re.compile(
    r"\s*" + "".join(rf"(?:{_NUMBER}\s*{unit}\s*)?" for unit, _ in _DURATION_UNITS), re.IGNORECASE
)
_PLAIN_NUMBER_RE = re.compile(rf"\s*{_NUMBER}\s*")

# Each message is worded as the file that shows it to an administrator words it: sizes and link
# speeds as cluster files (plans word their own size errors), rates, percentages and durations as
# plans.
_SIZE_EXAMPLE = "a size like 8GiB"
_RATE_EXAMPLE = "a rate like 500MiB/s or 1Gbit/s"
_LINK_EXAMPLE = "a link speed like 10Gbit, 2.5Gbit or 100Mbit"
_PERCENT_EXAMPLE = "a percentage like 10%"
_DURATION_EXAMPLE = "a duration like 30s, 10m or 1h"


def _shown(value: object) -> str:
    """The value as an administrator wrote it, quoted if it was text, cut if very long."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: object, what: str, negative: str = "") -> int | float | None:
    """A YAML number, checked to be finite and not negative; None for text; else ValueError.

    `negative` names the kind of value in the "must not be negative" message (e.g. "a size ").
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {what}, got {_shown(value)}")
    if isinstance(value, str):
        return None
    if not math.isfinite(value):
        raise ValueError(f"expected {what}, got {_shown(value)}")
    if value < 0:
        raise ValueError(f"{negative}must not be negative, got {_shown(value)}")
    return value


def _at_most(number: _N, limit: float, value: object, limit_text: str) -> _N:
    if number > limit:
        raise ValueError(f"must be at most {limit_text}, got {_shown(value)}")
    return number


def _finite(number: Fraction | float, value: object, what: str) -> float:
    result = float(number)
    if not math.isfinite(result):
        raise ValueError(f"expected {what}, got {_shown(value)} (too large)")
    return result


def parse_size(value: object) -> int:
    """Bytes of ``8GiB``, ``32G``, ``1.5TiB``, ``512MiB``, ``100B`` or a plain number of bytes.

    Units B, K/KiB, M/MiB, G/GiB, T/TiB, P/PiB (all binary, case-insensitive); fractions round to
    the nearest byte.
    """
    number = _number(value, _SIZE_EXAMPLE, "a size ")
    if number is not None:
        return _at_most(
            number if isinstance(number, int) else round(number), MAX_SIZE_BYTES, value, "1024PiB"
        )
    assert isinstance(value, str)
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"expected {_SIZE_EXAMPLE}, got {_shown(value)}")
    amount, unit = match.group(1), match.group(2)
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        hint = ""
        if unit.lower() in _DECIMAL_SIZE_UNITS:
            hint = f" (sizes are binary: write {amount}{unit[0].upper()}iB)"
        raise ValueError(f"expected {_SIZE_EXAMPLE}, got {_shown(value)}{hint}")
    return _at_most(round(Fraction(amount) * factor), MAX_SIZE_BYTES, value, "1024PiB")


def parse_rate(value: object) -> float:
    """Bytes per second of ``500MiB/s`` (binary) or ``1Gbit/s`` / ``100Mbit`` (decimal bits).

    A bare ``0`` is 0.0 (a plan reads it as "unlimited"); any other bare number is refused
    because it is ambiguous (PVE's ``bwlimit`` option counts KiB/s). At most 1 PiB/s.
    """
    return _at_most(_parse_rate(value), MAX_RATE_BPS, value, "1PiB/s")


def _parse_rate(value: object) -> float:
    number = _number(value, _RATE_EXAMPLE)
    if number is not None:
        if number == 0:
            return 0.0
        raise ValueError(
            f"expected {_RATE_EXAMPLE}, got {_shown(value)} (give a unit: a bare number is "
            "ambiguous, PVE's bwlimit counts KiB/s)"
        )
    assert isinstance(value, str)
    match = _RATE_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"expected {_RATE_EXAMPLE}, got {_shown(value)}")
    amount, unit, per_second = match.group(1), match.group(2).lower(), match.group(3)
    if unit in _BIT_UNITS:
        return _finite(Fraction(amount) * _BIT_UNITS[unit] / 8, value, _RATE_EXAMPLE)
    if unit == "" and per_second is None:
        if Fraction(amount) == 0:
            return 0.0
        raise ValueError(f"expected {_RATE_EXAMPLE}, got {_shown(value)} (give a unit)")
    factor = _SIZE_UNITS.get(unit)
    if factor is None:
        hint = ""
        if unit in _DECIMAL_SIZE_UNITS:
            hint = f" (rates are binary: write {amount}{unit[0].upper()}iB/s)"
        raise ValueError(f"expected {_RATE_EXAMPLE}, got {_shown(value)}{hint}")
    if per_second is None:
        raise ValueError(
            f"expected {_RATE_EXAMPLE}, got {_shown(value)} (a rate needs /s: {value.strip()}/s)"
        )
    return _finite(Fraction(amount) * factor, value, _RATE_EXAMPLE)


def parse_link(value: object) -> float:
    """Bits per second of a nominal link speed: ``10Gbit``, ``2.5Gbit/s``, ``100Mbps``.

    Units bit, Kbit, Mbit, Gbit, Tbit and bps, Kbps, Mbps, Gbps, Tbps (decimal, case-insensitive,
    optional ``/s``); a plain number is bits per second. The speed must be positive.
    """
    number: float | int | None = _number(value, _LINK_EXAMPLE, "a link speed ")
    if number is None:
        assert isinstance(value, str)
        match = _RATE_RE.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or (unit and unit not in _BIT_UNITS):
            raise ValueError(f"expected {_LINK_EXAMPLE}, got {_shown(value)}")
        number = _finite(Fraction(match.group(1)) * _BIT_UNITS.get(unit, 1), value, _LINK_EXAMPLE)
    if number <= 0:
        raise ValueError(f"a link speed must be positive, got {_shown(value)}")
    return _at_most(float(number), MAX_LINK_BITS_PER_S, value, "1000Tbit")


def format_size(size_bytes: int) -> str:
    """The shortest exact spelling of a size in binary units (``8GiB``, ``1536MiB``, ``100``)."""
    for unit, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size_bytes and size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return str(size_bytes)


def is_percent(value: object) -> bool:
    """Whether a value is written as a percentage (text ending in ``%``)."""
    return isinstance(value, str) and value.strip().endswith("%")


def parse_percent(value: object) -> float:
    """The fraction of ``10%`` (0.10) or ``12.5%`` (0.125). The ``%`` sign is required."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {_PERCENT_EXAMPLE}, got {_shown(value)}")
    if not isinstance(value, str):
        shown = _shown(value)
        raise ValueError(f"expected {_PERCENT_EXAMPLE}, got {shown} (write {shown}%)")
    match = _PERCENT_RE.fullmatch(value)
    if match is None:
        hint = f" (write {value.strip()}%)" if _PLAIN_NUMBER_RE.fullmatch(value) else ""
        raise ValueError(f"expected {_PERCENT_EXAMPLE}, got {_shown(value)}{hint}")
    fraction = Fraction(match.group(2)) / 100
    if match.group(1) == "-" and fraction != 0:
        raise ValueError(f"must not be negative, got {_shown(value)}")
    return _at_most(float(fraction), MAX_PERCENT / 100, value, f"{MAX_PERCENT}%")


def parse_duration(value: object) -> float:
    """Seconds of ``30s``, ``10m``, ``2h``, ``1d``, ``1h30m``, ``1.5h`` or a plain number; at
    most 365 days."""
    return _at_most(_parse_duration(value), MAX_DURATION_S, value, "365d")


def parse_timeout(value: object) -> float:
    """A duration (`parse_duration`) that is longer than 0: how long to wait for something."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0 seconds, got {_shown(value)}")
    return seconds


def _parse_duration(value: object) -> float:
    number = _number(value, _DURATION_EXAMPLE)
    if number is not None:
        return float(number)
    assert isinstance(value, str)
    plain = _PLAIN_NUMBER_RE.fullmatch(value)
    if plain is not None:
        return _finite(Fraction(plain.group(1)), value, _DURATION_EXAMPLE)
    match = _DURATION_RE.fullmatch(value)
    if match is None or not any(match.groups()):
        raise ValueError(f"expected {_DURATION_EXAMPLE}, got {_shown(value)}")
    total = Fraction(0)
    for amount, (_, factor) in zip(match.groups(), _DURATION_UNITS, strict=True):
        if amount is not None:
            total += Fraction(amount) * factor
    return _finite(total, value, _DURATION_EXAMPLE)
