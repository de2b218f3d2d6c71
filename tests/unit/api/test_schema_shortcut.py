"""The quick verdicts of `pvetool.api.schema` (`_Shape.accepts`: a plain string, an integer in
range, a boolean) change no verdict: every answer, right or spoiled, gets the same problems with
them as with the full check alone.

Answers: the recorded PVE answers of tests/data/fixtures and, for every endpoint of the packaged
returns schema, values made from its schema; each then spoiled many times at random (a value
replaced by a wrong type, text that is no number, numbers out of range or below zero, huge
integers, NaN and infinity, nulls, lists and objects, a long string; keys removed and added).
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest

from pvetool.api import schema as schema_mod
from pvetool.api.schema import AnswerSchema

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"

HOSTILE: list[Any] = [
    "abc",
    "NaN",
    " 42 ",
    "",
    "1",
    "0",
    "yes",
    "-5",
    "1e400",
    "x" * 5000,
    -1,
    0,
    1,
    2,
    -(2**63),
    2**63,
    2**64,
    10**400,
    1.5,
    -0.5,
    1e300,
    math.nan,
    math.inf,
    True,
    False,
    None,
    {},
    [],
    {"a": 1},
    [1, "x"],
    "pve1",
    "local-lvm:vm-101-disk-0",
    "virtio,bridge=vmbr0",
    "aa:bb:cc:dd:ee:ff",
    "32G",
]


def _sample(schema: Any, rnd: random.Random, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 6:
        return rnd.choice(HOSTILE)
    kinds = schema_mod._types(schema)
    kind = rnd.choice(kinds) if kinds else rnd.choice(["string", "integer", "object"])
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {"k": rnd.choice(HOSTILE)}
        return {
            k.replace("[n]", str(rnd.randint(0, 3))): _sample(sub, rnd, depth + 1)
            for k, sub in props.items()
            if rnd.random() < 0.8
        }
    if kind == "array":
        return [_sample(schema.get("items"), rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    choices = schema.get("enum")
    if isinstance(choices, list) and choices and rnd.random() < 0.7:
        return rnd.choice(choices)
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, int) and isinstance(high, int) and rnd.random() < 0.6:
            return rnd.randint(low, high)
        return rnd.choice([0, 1, 7, 4096, -3, 2**40])
    if kind == "number":
        return rnd.choice([0.25, 1, 3.5, -1.0, 100])
    if kind == "boolean":
        return rnd.choice([True, False, 0, 1])
    return rnd.choice(["pve1", "101", "local", "running", "text with spaces", "a=b,c=d"])


def _spoil(data: Any, rnd: random.Random) -> Any:
    data = copy.deepcopy(data)
    for _ in range(rnd.randint(1, 4)):
        holder, key = _pick(data, rnd)
        if holder is None:
            return rnd.choice(HOSTILE)
        if isinstance(holder, dict) and rnd.random() < 0.15:
            holder.pop(key, None)
        elif isinstance(holder, dict) and rnd.random() < 0.1:
            holder[rnd.choice(["extra", "net7", "scsi99", "weird key"])] = rnd.choice(HOSTILE)
        else:
            holder[key] = rnd.choice(HOSTILE)
    return data


def _pick(data: Any, rnd: random.Random) -> tuple[Any, Any]:
    """A random place in `data`: the container and the key or index in it."""
    holder, key = None, None
    node = data
    while isinstance(node, dict | list) and node:
        key = rnd.choice(list(node)) if isinstance(node, dict) else rnd.randrange(len(node))
        holder = node
        node = node[key]
        if rnd.random() < 0.3:
            break
    return holder, key


def _concrete(template: str) -> str:
    names = {"node": "pve1", "vmid": "101"}
    return re.sub(r"\{(\w+)\}", lambda m: names.get(m.group(1), "x"), template)


def _answers() -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    rnd = random.Random(14)
    for key, returns in AnswerSchema.load().returns.items():
        method, template = key.split(" ", 1)
        for _ in range(3):
            out.append((method, _concrete(template), _sample(returns, rnd)))
    recorded = {
        "cluster_resources_capture.json": ("GET", "/cluster/resources"),
        "cluster_status_capture.json": ("GET", "/cluster/status"),
        "nodes_capture.json": ("GET", "/nodes"),
        "qemu_status_current_capture.json": ("GET", "/nodes/node1/qemu/100/status/current"),
        "ha_status_current_pve9_partial.json": ("GET", "/cluster/ha/status/current"),
    }
    for name, (method, path) in recorded.items():
        file = FIXTURES / name
        if file.exists():
            raw = json.loads(file.read_text("utf-8"))
            out.append((method, path, raw.get("data", raw) if isinstance(raw, dict) else raw))
    return out


def _verdicts(
    monkeypatch: pytest.MonkeyPatch, answers: list[tuple[str, str, Any]], quick: bool
) -> list[list[str]]:
    with monkeypatch.context() as patch:
        if not quick:
            patch.setattr(schema_mod._Shape, "accepts", lambda self, value: False)
        checker = AnswerSchema.load()
        return [checker.problems(method, path, data) for method, path, data in answers]


def test_quick_verdicts_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(2026)
    answers: list[tuple[str, str, Any]] = []
    for method, path, data in _answers():
        answers.append((method, path, data))
        answers += [(method, path, _spoil(data, rnd)) for _ in range(12)]
    quick = _verdicts(monkeypatch, answers, quick=True)
    full = _verdicts(monkeypatch, answers, quick=False)
    assert quick == full
    # the comparison means something only if the answers are both passed and refused, and
    # the quick verdicts are reached
    assert sum(1 for v in full if v) > len(full) // 4
    assert sum(1 for v in full if not v) > len(full) // 10


def test_quick_verdicts_are_taken() -> None:
    """A plain string, an integer in range and a boolean are accepted without the full check;
    what the full check would refuse is not."""
    shape = schema_mod._Shape
    assert shape({"type": "string"}).accepts("pve1")
    assert not shape({"type": "string"}).accepts(True)
    assert shape({"type": "string", "enum": ["a"]}).accepts("a")
    assert not shape({"type": "string", "enum": ["a"]}).accepts("b")
    assert not shape({"type": "string", "enum": ["a"], "pattern": "b"}).accepts("a")
    assert not shape({"type": "string", "format": "pve-node"}).accepts("pve1")
    assert shape({"type": "integer", "minimum": 0}).accepts(5)
    assert not shape({"type": "integer", "minimum": 0}).accepts(-1)
    assert not shape({"type": "integer", "renderer": "bytes"}).accepts(-1)
    assert not shape({"type": "integer"}).accepts(2**63)
    assert not shape({"type": "integer"}).accepts(True)
    assert not shape({"type": "integer"}).accepts("5")
    assert shape({"type": "number", "maximum": 1}).accepts(0.5)
    assert not shape({"type": "number"}).accepts(math.nan)
    assert not shape({"type": "number"}).accepts(math.inf)
    assert shape({"type": "boolean"}).accepts(0)
    assert not shape({"type": "boolean"}).accepts(2)
    assert not shape({"type": ["string", "null"]}).accepts("x")


def test_an_integer_beyond_a_float_is_out_of_range() -> None:
    """JSON carries integers of any size; one beyond a float's range is refused as out of
    range (it made math.isfinite raise OverflowError before)."""
    problems = AnswerSchema.load().problems(
        "GET", "/cluster/resources", [{"id": "qemu/100", "type": "qemu", "maxmem": 10**400}]
    )
    assert problems == [f'$[0].maxmem: {str(10**400)[:37]}..." is out of range']
