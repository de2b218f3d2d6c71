"""Coercion of PVE's loosely typed JSON values, and its size and property-string syntax.

Imports: the standard library and `pvetool.errors`. The helpers are private to
`pvetool.api.convert`: its modules import them by their underscore names.

PVE encodes booleans as 0/1 (sometimes as strings), omits keys that are unset, and packs
structured values into "property strings" (``local-lvm:vm-100-disk-0,size=32G``). The helpers
accept all of those forms. An answer of the wrong *shape* (a list where an object is expected)
raises `ValidationError`; a missing optional key never does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pvetool.errors import ValidationError

MIB = 1024**2


def _obj(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise ValidationError(
            f"PVE answered {what} with {type(raw).__name__}, where an object was expected",
            field=what,
        )
    return raw


def _list(raw: Any, what: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError(
            f"PVE answered {what} with {type(raw).__name__}, where a list was expected",
            field=what,
        )
    return raw


def _objects(raw: Any, what: str) -> list[Mapping[str, Any]]:
    return [item for item in _list(raw, what) if isinstance(item, dict)]


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return default
    return default


def _opt_int(value: Any) -> int | None:
    return None if value is None or value == "" else _int(value)


def _float(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return default
    return default


def _opt_float(value: Any) -> float | None:
    return None if value is None or value == "" else _float(value)


def _bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
    return default


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else _bool(value)


def _str(value: Any, default: str = "") -> str:
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _str(value)


def _strings(value: Any) -> tuple[str, ...]:
    """A list of strings, or a comma-separated string, as a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, list):
        return tuple(_str(v) for v in value if v is not None and _str(v))
    if isinstance(value, dict):
        return tuple(str(k) for k in value)
    return ()


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str):
        return ()
    return tuple(t for t in re.split(r"[;,\s]+", value) if t)


def _content(value: Any) -> frozenset[str]:
    return frozenset(_strings(value))


_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_pve_size(text: str) -> int | None:
    """PVE disk size (``32G``, ``4M``, ``512K``, ``1.5T``, plain bytes) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTPB]?)\s*", text.upper())
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def parse_bytes(number: str, unit: str) -> int:
    """``357.9`` + ``MiB`` -> bytes, for the units PVE's render_bytes prints (B, KiB ... PiB)."""
    factor = _SIZE_UNITS.get(unit.strip().upper().replace("IB", "").replace("B", "") or "", 1)
    return int(float(number) * factor)


def parse_property_string(text: str, default_key: str | None = None) -> dict[str, str]:
    """``local-lvm:vm-100-disk-0,size=32G`` -> {default_key: 'local-lvm:...', 'size': '32G'}.

    An item without ``=`` is the value of `default_key` (first one only); without a default key
    it is stored with an empty value (``spice`` in ``usb0: spice``).
    """
    result: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if sep:
            result[key.strip()] = value.strip()
        elif default_key is not None and default_key not in result:
            result[default_key] = part
        else:
            result[part] = ""
    return result
