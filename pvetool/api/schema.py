"""PVE's documented answers: every answer is checked against its endpoint's ``returns`` schema
before anything is decided on it.

The schemas are the ``returns`` members of the official PVE 9.2 API schema for the endpoints
the client calls, packaged as ``data/pve-returns.json`` by ``scripts/extract_api_returns.py``
(the client never imports the emulator, whose own copy serves the other side). `AnswerSchema`
finds the template of a concrete path (``/nodes/pve1/qemu/101/config`` ->
``/nodes/{node}/qemu/{vmid}/config``) and lists what in ``data`` does not fit.

The check follows what PVE really sends, not a strict reading of the schema (real answers
recorded in ``tests/data/fixtures/`` and the emulator's answers pass):

* Perl has no separate string and number types: an integer or number may come as a numeric
  string (``"2048"``), a string as a number, a boolean as 1/0, "1"/"0" or true/false. Text that
  is not a number where a number is documented (``"abc"``, ``"NaN"``) is refused, and so are
  numbers beyond 2^63 (PVE cannot send them) and negative values of byte counts and durations.
* A property that is ``null`` counts as absent (Perl's undef). Properties the schema requires
  are not demanded in general (older PVE versions lack keys 9.2 documents: ``has-dbus-vmstate``
  before PVE 9.0); only those pvetool decides on are (`ESSENTIAL`). ``data: null`` where an
  object or a list is documented is refused (except where PVE itself answers null, `NULL_OK`).
* Extra properties are allowed unless the schema forbids them (``additionalProperties: 0``).
* ``enum`` values are checked, except where PVE adds values with its releases and pvetool skips
  those it does not know (`OPEN_ENUMS`). In guest configurations only the leading value of a
  property string is held to its choices (``net0: garbage`` is no NIC model), because every PVE
  release adds machine types, OS types and disk options pvetool never decides on.
* Property strings (``scsi0: local-lvm:vm-101-disk-0,size=32G``) are read as pve-common's
  ``PVE::JSONSchema::parse_property_string`` reads them: a value without a key belongs to the
  default key; a duplicate key, a key without a value or a value without a key where there is no
  default key is an error; sub-keys newer PVE versions added are allowed; required sub-keys and
  the types of the known ones are checked.
* A few string formats pvetool relies on are checked (node names, vmids, storage ids, volume
  ids, bridges, MAC addresses, disk sizes), as pve-common/pve-storage/qemu-server define them.

Imports: the standard library only.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ESSENTIAL", "NULL_OK", "OPEN_ENUMS", "RETURNS_SHA256", "AnswerSchema"]

DATA_FILE = "data/pve-returns.json"
# SHA-256 of DATA_FILE as scripts/extract_api_returns.py wrote it (a test compares).
RETURNS_SHA256 = "7ecf8a748ee1846d54337b3823d74a0e8b3eb8f391ad97e48f2405e078898a4f"

MAX_PROBLEMS = 5  # an answer that is wrong everywhere is described by its first few problems
INT_LIMIT = 2**63  # Perl's integers (IV/UV); PVE cannot send larger ones as integers

# Keys pvetool decides on, by template and by the place of the object in the answer ("" is
# data itself, "[]" each item of a list). PVE documents them as required.
ESSENTIAL: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "GET /version": {"": ("version",)},
    "GET /nodes/{node}/version": {"": ("version",)},
    "GET /nodes": {"[]": ("node", "status")},
    "GET /cluster/status": {"[]": ("type",)},
    "GET /cluster/resources": {"[]": ("id", "type")},
    "GET /cluster/replication": {"[]": ("id", "guest", "target")},
    "GET /storage": {"[]": ("storage",)},
    "GET /nodes/{node}/storage": {"[]": ("storage",)},
    "GET /nodes/{node}/network": {"[]": ("iface", "type")},
    "GET /nodes/{node}/qemu/{vmid}/status/current": {"": ("status",)},
    "GET /nodes/{node}/lxc/{vmid}/status/current": {"": ("status",)},
    "GET /nodes/{node}/qemu/{vmid}/migrate": {"": ("running",)},
    "GET /nodes/{node}/lxc/{vmid}/migrate": {"": ("running",)},
    "GET /cluster/ha/resources": {"[]": ("sid",)},
    "GET /cluster/ha/status/current": {"[]": ("id", "type")},
    "GET /cluster/ha/rules": {"[]": ("rule",)},
    "GET /cluster/ha/groups": {"[]": ("group",)},
    "GET /nodes/{node}/tasks": {"[]": ("upid",)},
    "GET /nodes/{node}/tasks/{upid}/status": {"": ("status", "upid")},
    "GET /nodes/{node}/tasks/{upid}/log": {"[]": ("n", "t")},
}

# Endpoints PVE answers with ``data: null`` although the 9.2 schema documents an object:
# pve-ha-manager before 9.0 (src/PVE/API2/HA/Resources.pm `migrate`) returned nothing.
NULL_OK: frozenset[str] = frozenset({"POST /cluster/ha/resources/{sid}/migrate"})

# Enumerations PVE extends with its releases; pvetool ignores the values it does not know.
OPEN_ENUMS: Mapping[str, frozenset[str]] = {
    "GET /cluster/resources": frozenset({"[].type", "[].host-arch", "[].network-type"}),
    "GET /nodes/{node}/network": frozenset(
        {
            "[].type",
            "[].families[]",
            "[].method",
            "[].method6",
            "[].bond_mode",
            "[].bond_xmit_hash_policy",
            "[].vlan-protocol",
        }
    ),
    "GET /nodes/{node}/storage": frozenset({"[].formats.default", "[].formats.supported[]"}),
    "GET /cluster/ha/status/current": frozenset({"[].type", "[].armed-state", "[].resource_mode"}),
    "GET /version": frozenset({".console"}),
    "GET /nodes/{node}/qemu/{vmid}/status/current": frozenset({".clipboard"}),
}
# In guest configurations only property strings' leading values are held to their choices.
_CONFIG_TEMPLATES = frozenset(
    {"GET /nodes/{node}/qemu/{vmid}/config", "GET /nodes/{node}/lxc/{vmid}/config"}
)

# Renderers of quantities that cannot be negative.
_NON_NEGATIVE_RENDERERS = frozenset({"bytes", "duration", "fraction_as_percentage", "timestamp"})

_INT_TEXT = re.compile(r"[+-]?\d{1,19}")
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][+-]?\d{1,3})?")
_BOOL_TEXT = {"1": True, "true": True, "yes": True, "on": True}
_BOOL_TEXT.update({"0": False, "false": False, "no": False, "off": False})

# pve-common src/PVE/JSONSchema.pm (pve_verify_node_name, pve_verify_vmid, pve_verify_configid,
# pve-storage-id, mac-addr, disk-size), pve-storage src/PVE/Storage/Plugin.pm (volume ids),
# qemu-server src/PVE/QemuServer/Drive.pm (pve-volume-id-or-qm-path), pve-common
# PVE/Network.pm (pve-bridge-id). Formats not listed are not checked.
_STORAGE_ID = r"[a-z][a-z0-9\-_.]*[a-z0-9]"
_FORMATS: Mapping[str, re.Pattern[str]] = {
    "pve-node": re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?"),
    "pve-vmid": re.compile(r"[1-9][0-9]{2,8}"),
    "pve-storage-id": re.compile(_STORAGE_ID, re.IGNORECASE),
    "pve-configid": re.compile(r"[a-z][a-z0-9_-]+", re.IGNORECASE),
    "pve-volume-id": re.compile(rf"{_STORAGE_ID}:.+", re.IGNORECASE | re.DOTALL),
    "pve-volume-id-or-qm-path": re.compile(
        rf"none|cdrom|/.+|{_STORAGE_ID}:.+", re.IGNORECASE | re.DOTALL
    ),
    "pve-bridge-id": re.compile(r"[-_.\w\d]+"),
    "mac-addr": re.compile(r"[a-f0-9]{2}(?::[a-f0-9]{2}){5}", re.IGNORECASE),
    "disk-size": re.compile(r"\d+(?:\.\d+)?[KMGT]?"),
}


@dataclass(frozen=True)
class _Context:
    template: str
    enums: bool  # False inside guest configs (see the module docstring)
    open_enums: frozenset[str]


class AnswerSchema:
    """The packaged ``returns`` schemas and the check of one answer against them."""

    def __init__(self, returns: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
        self.returns = returns
        self.provenance = provenance
        self._templates: list[tuple[str, str, re.Pattern[str]]] = []
        for key in returns:
            method, template = key.split(" ", 1)
            pattern = "".join(
                "[^/]+" if re.fullmatch(r"\{\w+\}", part) else re.escape(part)
                for part in re.split(r"(\{\w+\})", template)
            )
            self._templates.append((method, template, re.compile(pattern)))

    @classmethod
    @functools.cache
    def load(cls) -> AnswerSchema:
        text = importlib.resources.files("pvetool.api").joinpath(DATA_FILE).read_text("utf-8")
        raw = json.loads(text)
        return cls(raw["returns"], raw["provenance"])

    def template_of(self, method: str, path: str) -> str | None:
        """``METHOD /template/{path}`` of a concrete path, or None for an unknown endpoint."""
        path = "/" + path.strip("/")
        for known_method, template, pattern in self._templates:
            if known_method == method.upper() and pattern.fullmatch(path):
                return f"{known_method} {template}"
        return None

    def problems(self, method: str, path: str, data: Any) -> list[str]:
        """What in `data` (the ``data`` member of an answer) does not fit the endpoint's
        documented answer: the first `MAX_PROBLEMS`, each with its JSON path (``$`` is data)."""
        key = self.template_of(method, path)
        if key is None:
            return []  # not a call the client makes: nothing documented to hold it to
        schema = self.returns[key]
        out: list[str] = []
        if data is None:
            kinds = _types(schema)
            if key in NULL_OK or not kinds or "null" in kinds:
                return []
            return [f"$: null where {_noun(schema)} is documented"]
        ctx = _Context(key, key not in _CONFIG_TEMPLATES, OPEN_ENUMS.get(key, frozenset()))
        _check(data, schema, "$", "", ctx, out)
        if not out:
            _check_essential(data, ESSENTIAL.get(key, {}), out)
        return out[:MAX_PROBLEMS]


# --- the check ---------------------------------------------------------------------------------


class _Shape:
    """What `_check` reads from one schema, read once (the 5,000 items of a large cluster's
    ``/cluster/resources`` share a handful of schemas), and `accepts`: a quick verdict on the
    values that are certainly right, a plain string, one of a string's choices, an integer in
    range, a boolean. It only ever answers True where the full check would find nothing (the
    full check decides every other value; tests/unit/api/test_schema_shortcut.py compares the
    two on spoiled answers)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.kinds = _types(schema)
        properties = schema.get("properties")
        self.known: dict[str, Any] = properties if isinstance(properties, dict) else {}
        self.indexed = {k[:-3]: sub for k, sub in self.known.items() if k.endswith("[n]")}
        self.additional = schema.get("additionalProperties")
        fmt, pattern = schema.get("format"), schema.get("pattern")
        choices = schema.get("enum")
        # the text checks of `_check_value`: a property string, a checked format, a pattern
        text_checked = (
            isinstance(fmt, dict)
            or (isinstance(fmt, str) and fmt in _FORMATS)
            or isinstance(pattern, str)
        )
        plain = not isinstance(choices, list) and not text_checked
        # a string that is one of the choices passes whether or not they are checked here
        self.choices = (
            frozenset(str(c) for c in choices)
            if isinstance(choices, list) and self.kinds == ["string"] and not text_checked
            else None
        )
        low = schema.get("minimum")
        if schema.get("renderer") in _NON_NEGATIVE_RENDERERS:
            low = max(low, 0) if isinstance(low, int | float) else 0
        high = schema.get("maximum")
        self.low: float | None = low if isinstance(low, int | float) else None
        self.high: float | None = high if isinstance(high, int | float) else None
        self.kind = self.kinds[0] if len(self.kinds) == 1 and plain else None

    def accepts(self, value: Any) -> bool:
        kind = self.kind
        if kind is None:
            return self.choices is not None and type(value) is str and value in self.choices
        cls = type(value)
        if kind == "string":
            return cls is str
        if kind == "integer" and cls is int:
            return self._in_range(value)
        if kind == "number" and (cls is int or cls is float):
            if cls is int and abs(value) >= INT_LIMIT:
                return False
            return math.isfinite(value) and self._in_range(float(value))
        if kind == "boolean":
            return cls is bool or (cls is int and value in (0, 1))
        return False

    def _in_range(self, number: float) -> bool:
        return (
            abs(number) < INT_LIMIT
            and (self.low is None or not number < self.low)
            and (self.high is None or not number > self.high)
        )


# Schemas by id, with the schema itself (kept alive, so that its id is not reused).
_SHAPES: dict[int, tuple[Mapping[str, Any], _Shape]] = {}


def _shape(schema: Mapping[str, Any]) -> _Shape:
    entry = _SHAPES.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, _Shape(schema))
        _SHAPES[id(schema)] = entry
    return entry[1]


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    return [str(kind)] if isinstance(kind, str) and kind != "any" else []


_NOUNS = {
    "array": "a list",
    "object": "an object",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _noun(schema: Mapping[str, Any]) -> str:
    return " or ".join(_NOUNS.get(k, k) for k in _types(schema)) or "a value"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + '..."'


def _check(
    value: Any, schema: Mapping[str, Any], where: str, spath: str, ctx: _Context, out: list[str]
) -> None:
    if len(out) >= MAX_PROBLEMS or value is None:
        return  # a null property is an absent one (Perl's undef)
    shape = _shape(schema)
    if shape.accepts(value):
        return
    kinds = shape.kinds
    problems = [_scalar_problem(kind, value, schema) for kind in kinds]
    if problems and None not in problems:
        first = problems[0] if len(problems) == 1 else None
        out.append(f"{where}: {first or f'{_shown(value)} where {_noun(schema)} is documented'}")
        return
    if isinstance(value, dict):
        _check_object(value, schema, where, spath, ctx, out)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _check(item, items, f"{where}[{index}]", f"{spath}[]", ctx, out)
                if len(out) >= MAX_PROBLEMS:
                    return
    else:
        _check_value(value, schema, where, spath, ctx, out)


def _scalar_problem(kind: str, value: Any, schema: Mapping[str, Any]) -> str | None:
    """None when `value` is a `kind` as PVE sends one; else what is wrong."""
    if kind == "object":
        return None if isinstance(value, dict) else f"{_shown(value)} where an object is documented"
    if kind == "array":
        return None if isinstance(value, list) else f"{_shown(value)} where a list is documented"
    if isinstance(value, dict | list):
        return f"{_shown(value)} where {_NOUNS.get(kind, kind)} is documented"
    if kind == "null":
        return f"{_shown(value)} where null is documented"
    if kind == "boolean":
        return None if _as_bool(value) is not None else f"{_shown(value)} is not a boolean"
    if kind == "integer":
        number = _as_int(value)
        if number is None:
            return f"{_shown(value)} is not an integer"
        return _range_problem(number, value, schema)
    if kind == "number":
        real = _as_number(value)
        if real is None:
            return f"{_shown(value)} is not a number"
        return _range_problem(real, value, schema)
    if kind == "string":
        if isinstance(value, bool):
            return f"{_shown(value)} is not a string"
        return None  # Perl sends a numeric string as a number
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _BOOL_TEXT.get(value.strip().lower())
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if abs(value) < INT_LIMIT else math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        return float(value.strip())
    return None


def _range_problem(number: float, value: Any, schema: Mapping[str, Any]) -> str | None:
    # the size first: an integer beyond a float's range (``1`` and 400 zeros, which JSON
    # allows) is out of range, not an OverflowError of math.isfinite
    if abs(number) >= INT_LIMIT or not math.isfinite(number):
        return f"{_shown(value)} is out of range"
    low = schema.get("minimum")
    if schema.get("renderer") in _NON_NEGATIVE_RENDERERS:
        low = max(low, 0) if isinstance(low, int | float) else 0
    if isinstance(low, int | float) and number < low:
        return f"{_shown(value)} is below the minimum {low:g}"
    high = schema.get("maximum")
    if isinstance(high, int | float) and number > high:
        return f"{_shown(value)} is above the maximum {high:g}"
    return None


def _check_object(
    value: Mapping[str, Any],
    schema: Mapping[str, Any],
    where: str,
    spath: str,
    ctx: _Context,
    out: list[str],
) -> None:
    shape = _shape(schema)
    known, indexed, additional = shape.known, shape.indexed, shape.additional
    for key, item in value.items():
        sub = known.get(key)
        accepted = sub is not None and (item is None or _shape(sub).accepts(item))
        if accepted and len(out) < MAX_PROBLEMS:
            continue  # what `_check` would find nothing in (the common case, decided quickly)
        if sub is None and indexed:
            match = re.fullmatch(r"([a-z]+)(\d+)", key)
            if match:
                sub = indexed.get(match.group(1))
        if sub is None:
            if isinstance(additional, dict):
                sub = additional
            elif additional is not None and not additional and known:
                out.append(f"{_child(where, key)}: not a documented property")
                continue
            else:
                continue
        _check(item, sub, _child(where, key), f"{spath}.{key}", ctx, out)
        if len(out) >= MAX_PROBLEMS:
            return


def _child(where: str, key: str) -> str:
    return f"{where}.{key}" if re.fullmatch(r"[A-Za-z_][\w-]*", key) else f"{where}[{key!r}]"


def _check_value(
    value: Any, schema: Mapping[str, Any], where: str, spath: str, ctx: _Context, out: list[str]
) -> None:
    """Choices, formats and patterns of a scalar (its type is already right)."""
    text = value if isinstance(value, str) else None
    choices = schema.get("enum")
    if isinstance(choices, list) and ctx.enums and spath not in ctx.open_enums:
        shown = text if text is not None else json.dumps(value)
        if shown not in [str(c) for c in choices]:
            out.append(f"{where}: {_shown(value)} is not one of {_choices(choices)}")
            return
    if text is None:
        return
    fmt = schema.get("format")
    if isinstance(fmt, dict):
        for problem in property_string_problems(fmt, text):
            out.append(f"{where}: {problem}")
            if len(out) >= MAX_PROBLEMS:
                return
        return
    wrong = _format_problem(fmt, schema.get("pattern"), text)
    if wrong:
        out.append(f"{where}: {wrong}")


def _format_problem(fmt: Any, pattern: Any, text: str) -> str | None:
    regex = _FORMATS.get(fmt) if isinstance(fmt, str) else None
    if regex is not None and not regex.fullmatch(text):
        return f"{_shown(text)} is not a {fmt}"
    compiled = _pattern(pattern) if isinstance(pattern, str) else None
    # Long texts are not matched (PVE's patterns are for short ids; no regex backtracking on
    # megabytes of a hostile answer).
    if compiled is not None and len(text) <= 4096 and not compiled.fullmatch(text):
        return f"{_shown(text)} does not match {pattern}"
    return None


@functools.lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    """A PVE (Perl) pattern as a Python regex; None when it does not translate."""
    text = pattern.replace("(?^:", "(?:")
    text = text.removeprefix("^").removesuffix("$") if text.startswith("^") else text
    try:
        return re.compile(text)
    except re.error:
        return None


def _check_essential(data: Any, wanted: Mapping[str, tuple[str, ...]], out: list[str]) -> None:
    objects: list[tuple[str, Any]] = []
    if "" in wanted and isinstance(data, dict):
        objects = [("$", data)]
        keys = wanted[""]
    elif "[]" in wanted and isinstance(data, list):
        objects = [(f"$[{i}]", item) for i, item in enumerate(data)]
        keys = wanted["[]"]
    for where, item in objects:
        if not isinstance(item, dict):
            continue
        missing = [k for k in keys if item.get(k) is None]
        if missing:
            out.append(f"{where}: {', '.join(missing)} missing")
            if len(out) >= MAX_PROBLEMS:
                return


# --- property strings --------------------------------------------------------------------------


def property_string_problems(fmt: Mapping[str, Any], text: str) -> list[str]:
    """What PVE's own parser (pve-common ``parse_property_string``) would refuse in `text`, and
    the sub-values that do not fit their documented types. Sub-keys the format does not know
    are allowed (newer PVE versions add them)."""
    parsed: dict[str, str] = {}
    default_key = next(
        (k for k, s in fmt.items() if isinstance(s, dict) and s.get("default_key")), None
    )
    problems: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, item = part.partition("=")
        if sep:
            if not key or not item:
                return [f"{_shown(text)}: {_shown(part)} has no key or no value"]
            sub = fmt.get(key)
            if isinstance(sub, dict) and "alias" in sub:
                if "keyAlias" in sub:
                    parsed[str(sub["keyAlias"])] = key
                key = str(sub["alias"])
            if key in parsed:
                return [f"{_shown(text)}: the key {key} is given twice"]
            parsed[key] = item
        elif default_key is None:
            return [f"{_shown(text)}: {_shown(part)} has no key"]
        elif default_key in parsed:
            return [f"{_shown(text)}: the key {default_key} is given twice"]
        else:
            parsed[default_key] = part
    for key, sub in fmt.items():
        if not isinstance(sub, dict) or "alias" in sub:
            continue
        if key not in parsed:
            if not sub.get("optional") and "default" not in sub:
                problems.append(f"{_shown(text)}: {key} missing")
            continue
        problem = _sub_value_problem(sub, parsed[key], key == default_key)
        if problem:
            problems.append(f"{_shown(text)}: {key}: {problem}")
    return problems


def _sub_value_problem(sub: Mapping[str, Any], value: str, leading: bool) -> str | None:
    problems = [_scalar_problem(kind, value, sub) for kind in _types(sub) or ["string"]]
    if None not in problems:
        return problems[0]
    choices = sub.get("enum")
    if leading and isinstance(choices, list) and value not in [str(c) for c in choices]:
        return f"{_shown(value)} is not one of {_choices(choices)}"
    return _format_problem(sub.get("format"), sub.get("pattern"), value)


def _choices(choices: list[Any]) -> str:
    shown = ", ".join(map(str, choices[:6]))
    return shown + (f" (or {len(choices) - 6} more)" if len(choices) > 6 else "")
