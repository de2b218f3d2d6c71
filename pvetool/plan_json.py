"""Frozen dataclasses as JSON and back, exactly: the saved `ExecutionPlan` (``plan show -o json``
-> ``plan apply``) and the run journal's records.

`to_data` turns a dataclass into plain data (tuples become lists, floats keep their exact value:
Python's float repr round-trips); `from_data` checks plain data against a dataclass's annotated
field types and builds it, or raises `DecodeError` naming every problem by its path. Optional
fields may be left out (their default is used).

The saved plan document is ``{"format": "pvetool/plan", "version": 1, "plan": {...}}``, the
plan being every field of the dataclasses in `pvetool.model` by name. `plan_from_json` raises
one `PlanError` that names every problem by its path: ``plan.json: plan.stages[0].moves[2].vmid:
expected an integer, got 'abc'``.

A neutral leaf next to the model, so the planner, the journal and the CLI share one codec
without importing each other. Pure, except `read_saved_plan`, which reads a file within
`pvetool.textfile`'s bounds. Imports: the standard library, `pvetool.errors`,
`pvetool.model` and `pvetool.textfile`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pvetool.errors import PlanError
from pvetool.model import ExecutionPlan
from pvetool.textfile import UnreadableFile, decode_utf8, read_limited

__all__ = [
    "FORMAT",
    "VERSION",
    "DecodeError",
    "from_data",
    "plan_from_dict",
    "plan_from_json",
    "plan_to_dict",
    "plan_to_json",
    "read_saved_plan",
    "to_data",
]

FORMAT = "pvetool/plan"  # the output contract's name (docs/output.md)
LEGACY_FORMATS = ("pvetool-plan",)  # what pvetool 0.1 wrote (saved plans, journals): still read
VERSION = 1

T = TypeVar("T")


def to_data(value: Any) -> Any:
    """`value` as plain JSON-able data: dataclasses by field name, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    return value


class DecodeError(ValueError):
    """Plain data that does not fit the dataclass; `problems` names each by its path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def from_data(cls: type[T], raw: Any, path: str = "", *, ignore_unknown: bool = False) -> T:
    """Build `cls` (a dataclass) from plain data, checking every value against its field's type;
    raises `DecodeError` naming every problem. Keys no field has are problems too, unless
    `ignore_unknown` (data written by a newer version)."""
    decoder = _Decoder(ignore_unknown=ignore_unknown)
    value = decoder.dataclass(cls, raw, path or cls.__name__)
    if decoder.problems or not isinstance(value, cls):
        raise DecodeError(decoder.problems or [f"{path or cls.__name__}: not readable"])
    return value


def plan_to_dict(plan: ExecutionPlan) -> dict[str, Any]:
    """The plan as plain data (what `plan_to_json` writes)."""
    return {"format": FORMAT, "version": VERSION, "plan": to_data(plan)}


def plan_to_json(plan: ExecutionPlan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        # Resolve each class's annotations in its own module (the model is a package of modules).
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


# Numbers beyond 64 bits are no vmid, size or time pvetool writes (and would overflow later).
_INT_LIMIT = 2**63
# Problems kept per document: a hand-edited file can have a million, nobody reads past these.
_MAX_PROBLEMS = 1000
# A saved plan is written by pvetool: about 2 KiB per move, so 32 MiB is over 10,000 moves.
MAX_SAVED_PLAN_BYTES = 32 * 1024 * 1024


def _is_int(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) < _INT_LIMIT


def _is_number(raw: Any) -> bool:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return False
    return math.isfinite(raw) if isinstance(raw, float) else abs(raw) < _INT_LIMIT


# type -> (does the raw value fit, what the message says was expected, the value after a problem)
_SCALARS: dict[Any, tuple[Callable[[Any], bool], str, Any]] = {
    bool: (lambda raw: isinstance(raw, bool), "true or false", False),
    int: (_is_int, "an integer", 0),
    float: (_is_number, "a number", 0.0),
    str: (lambda raw: isinstance(raw, str), "a string", ""),
    type(None): (lambda raw: raw is None, "null", None),
}


class _Decoder:
    def __init__(self, *, ignore_unknown: bool = False) -> None:
        self.problems: list[str] = []
        self.ignore_unknown = ignore_unknown
        self.dropped = 0

    def fail(self, path: str, message: str) -> None:
        if len(self.problems) >= _MAX_PROBLEMS:
            self.dropped += 1
            return
        self.problems.append(f"{path}: {message}")

    def value(self, tp: Any, raw: Any, path: str) -> Any:
        origin = get_origin(tp)
        if tp is Any:
            return raw
        if origin is Union or origin is types.UnionType:
            return self._union(tp, raw, path)
        if origin is Literal:
            choices = get_args(tp)
            if raw in choices and not isinstance(raw, bool):
                return raw
            self.fail(path, f"expected one of {', '.join(map(str, choices))}, got {_describe(raw)}")
            return None
        if origin is tuple:
            return self._tuple(get_args(tp), raw, path)
        if origin in (Mapping, dict) or tp is dict:
            return self._mapping(get_args(tp), raw, path)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.dataclass(tp, raw, path)
        if tp in _SCALARS:
            fits, expected, fallback = _SCALARS[tp]
            if fits(raw):
                return float(raw) if tp is float else raw
            self.fail(path, f"expected {expected}, got {_describe(raw)}")
            return fallback
        self.fail(path, f"cannot read a value of type {tp!r}")
        return None

    def _union(self, tp: Any, raw: Any, path: str) -> Any:
        options = get_args(tp)
        if raw is None and type(None) in options:
            return None
        non_none = [o for o in options if o is not type(None)]
        if len(non_none) == 1:
            return self.value(non_none[0], raw, path)
        for option in non_none:  # e.g. float | int: take the first that fits quietly
            sub = _Decoder(ignore_unknown=self.ignore_unknown)
            result = sub.value(option, raw, path)
            if not sub.problems:
                return result
        self.fail(path, f"expected {self._name(tp)}, got {_describe(raw)}")
        return None

    def _tuple(self, args: tuple[Any, ...], raw: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(raw, list):
            self.fail(path, f"expected a list, got {_describe(raw)}")
            return ()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(self.value(args[0], v, f"{path}[{i}]") for i, v in enumerate(raw))
        if len(raw) != len(args):
            self.fail(path, f"expected a list of {len(args)} items, got {len(raw)}")
            return ()
        return tuple(
            self.value(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, raw, strict=True))
        )

    def _mapping(self, args: tuple[Any, ...], raw: Any, path: str) -> dict[Any, Any]:
        if not isinstance(raw, dict):
            self.fail(path, f"expected an object, got {_describe(raw)}")
            return {}
        key_tp = args[0] if args else str
        val_tp = args[1] if args else Any
        out: dict[Any, Any] = {}
        for k, v in raw.items():
            key: Any = k
            if key_tp is int:
                digits = str(k).lstrip("-")
                if not digits.isdigit() or len(digits) > 18:
                    self.fail(f"{path}.{k}", "expected an integer key")
                    continue
                key = int(k)
            out[key] = self.value(val_tp, v, f"{path}.{k}")
        return out

    def dataclass(self, cls: type, raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            self.fail(path, f"expected an object, got {_describe(raw)}")
            return None
        hints = _hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in fields and not self.ignore_unknown:
                self.fail(f"{path}.{key}", f"unknown key (known: {', '.join(fields)})")
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            if name not in raw:
                has_default = (
                    f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                )
                if not has_default:
                    self.fail(f"{path}.{name}", "missing")
                continue
            kwargs[name] = self.value(hints[name], raw[name], f"{path}.{name}")
        if self.problems:
            return None
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            self.fail(path, str(exc))
            return None

    @staticmethod
    def _name(tp: Any) -> str:
        return getattr(tp, "__name__", str(tp))


def plan_from_dict(data: Any, source: str = "<json>") -> ExecutionPlan:
    """Check plain data as written by `plan_to_dict` and build the plan."""
    problems: list[str] = []
    if not isinstance(data, dict):
        problems.append(f"{source}: expected an object with 'format', 'version' and 'plan'")
    elif data.get("format") != FORMAT and data.get("format") not in LEGACY_FORMATS:
        problems.append(
            f"{source}: format: expected '{FORMAT}' (a plan saved by 'pvetool plan show -o "
            f"json'), got {_describe(data.get('format'))}"
        )
    elif data.get("version") != VERSION:
        problems.append(
            f"{source}: version: expected {VERSION} (the only saved-plan version this pvetool "
            f"reads), got {_describe(data.get('version'))}"
        )
    else:
        decoder = _Decoder()
        plan = decoder.dataclass(ExecutionPlan, data.get("plan"), "plan")
        if not decoder.problems and isinstance(plan, ExecutionPlan):
            problems += _check_references(plan, source)
            if not problems:
                return plan
        problems += [f"{source}: {p}" for p in decoder.problems]
        if decoder.dropped:
            problems.append(f"{source}: ... and {decoder.dropped} more problems")
    noun = "problem" if len(problems) == 1 else "problems"
    raise PlanError(
        f"The saved plan {source} has {len(problems)} {noun}: " + "; ".join(problems),
        problems=problems,
    )


def _check_references(plan: ExecutionPlan, source: str) -> list[str]:
    problems = []
    ids: set[str] = set()
    for si, stage in enumerate(plan.stages):
        for mi, move in enumerate(stage.moves):
            if move.id in ids:
                problems.append(f"{source}: plan.stages[{si}].moves[{mi}].id: '{move.id}' twice")
            ids.add(move.id)
    for si, stage in enumerate(plan.stages):
        for mi, move in enumerate(stage.moves):
            for ai, dep in enumerate(move.after):
                if dep not in ids:
                    problems.append(
                        f"{source}: plan.stages[{si}].moves[{mi}].after[{ai}]: no move '{dep}'"
                    )
    return problems


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a saved plan holds")


def plan_from_json(text: str, source: str = "<json>") -> ExecutionPlan:
    """Read a plan written by `plan_to_json`; a bad file raises `PlanError` naming every
    problem (also for JSON nested absurdly deep, NaN or a number with thousands of digits)."""
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"The saved plan {source} is not valid JSON: line {exc.lineno} column {exc.colno}: "
            f"{exc.msg}",
            problems=[f"{source}:{exc.lineno}: {exc.msg}"],
        ) from None
    except RecursionError:
        message = "it is nested too deeply to be a saved plan"
        raise PlanError(
            f"The saved plan {source} is not usable: {message}", problems=[f"{source}: {message}"]
        ) from None
    except ValueError as exc:  # NaN/Infinity, or more digits than Python converts
        raise PlanError(
            f"The saved plan {source} is not usable: {exc}", problems=[f"{source}: {exc}"]
        ) from None
    try:
        return plan_from_dict(data, source)
    except RecursionError:
        message = "it is nested too deeply to be a saved plan"
        raise PlanError(
            f"The saved plan {source} is not usable: {message}", problems=[f"{source}: {message}"]
        ) from None


def read_saved_plan(path: str) -> str:
    """The text of a saved plan file: a regular file of at most `MAX_SAVED_PLAN_BYTES`, UTF-8
    (a FIFO, a device or a huge file is refused before a byte is read)."""
    try:
        return decode_utf8(read_limited(path, MAX_SAVED_PLAN_BYTES), path)
    except UnreadableFile as exc:
        raise PlanError(
            f"Cannot read the saved plan {path}: it {exc.reason}",
            problems=[f"{path}: cannot read the saved plan: it {exc.reason}"],
        ) from None
