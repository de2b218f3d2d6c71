"""The JSON Schema of plan files (``pvetool plan schema``), generated from the loader's own spec.

Editors with yaml-language-server (VS Code, Neovim, Helix...) complete and check a plan with it
(``# yaml-language-server: $schema=...`` at the top of a playbook). It cannot drift from what
`pvetool.planner.loader` reads, because everything it lists is taken from the loader:

* the keys of every mapping (top level, ``rules:`` and its sections, each step kind, hooks,
  guest overrides, weights) are the loader's own key tuples, and no other key is allowed;
* the choices (``on_failure``, ``migration.type``, ``rebalance.by``, the step kinds) are the
  loader's choice tables, the version its `PLAN_VERSION`;
* names, vmids and units use the loader's and `pvetool.units`' patterns and ranges.

What the value of each key is (a node list, a duration...) is said once here, in `_VALUES`; the
generator refuses a loader key without an entry and an entry without a loader key, so a key
added to the loader fails `tests/unit/planner/test_plan_schema.py` until it is described.
The loader stays the authority: it also checks what a schema cannot say (a node drained and
targeted by one step, a group of one guest) and gives the file:line messages.

Imports: the standard library, the loader modules and `pvetool.units`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pvetool import units
from pvetool.planner import loader, loader_steps, loader_values

__all__ = ["SCHEMA_ID", "plan_schema", "plan_schema_text"]

SCHEMA_ID = "urn:pvetool:plan-file"
Schema = dict[str, Any]


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _duration_pattern() -> str:
    # units' duration regex is case-insensitive; JSON Schema patterns have no flags
    number = units._NUMBER
    parts = "".join(
        rf"(?:{number}\s*[{unit.lower()}{unit.upper()}]\s*)?" for unit, _ in units._DURATION_UNITS
    )
    return _anchored(rf"\s*(?:{parts}|{number}\s*)")


NODE: Schema = {
    "type": "string",
    "pattern": _anchored(loader_values._NODE_RE.pattern),
    "description": "a node name",
}
NODES: Schema = {
    "description": "a node name or a list of node names",
    "anyOf": [NODE, {"type": "array", "items": NODE, "uniqueItems": True}],
}
VMID: Schema = {
    "type": "integer",
    "minimum": loader_values.VMID_MIN,
    "maximum": loader_values.VMID_MAX,
}
VMID_KEY = {"pattern": _anchored(loader_values._VMID_KEY_RE.pattern)}
STORAGE: Schema = {"type": "string", "pattern": _anchored(loader_values.STORAGE_RE.pattern)}
TAG: Schema = {"type": ["string", "integer"], "pattern": _anchored(loader_values._TAG_RE.pattern)}
POOL: Schema = {"type": "string", "pattern": _anchored(loader_values._POOL_RE.pattern)}
BOOL: Schema = {"type": "boolean"}
TEXT: Schema = {"type": "string", "minLength": 1}
DURATION: Schema = {
    "description": "a duration like 30s, 10m, 1h30m or a number of seconds",
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": _duration_pattern()},
    ],
}
PERCENT: Schema = {
    "type": "string",
    "pattern": _anchored(units._PERCENT_RE.pattern),
    "description": "a percentage like 10%",
}
RATE: Schema = {
    "description": "a rate like 500MiB/s or 1Gbit/s",
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": _anchored(units._RATE_RE.pattern)},
    ],
}
SIZE_OR_PERCENT: Schema = {
    "description": "a percentage like 10% or a size like 8GiB",
    "anyOf": [PERCENT, {"type": "string", "pattern": _anchored(units._SIZE_RE.pattern)}],
}
CPUS_OR_PERCENT: Schema = {
    "description": "a percentage like 10% or a number of CPUs",
    "anyOf": [PERCENT, {"type": "number", "minimum": 0, "maximum": loader_values.MAX_CPUS}],
}
RATIO: Schema = {"type": "number", "minimum": 0, "maximum": loader_values.MAX_RATIO}
CONCURRENCY: Schema = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": loader_values.MAX_CONCURRENCY},
        {"const": "auto"},
    ]
}
TARGET_STORAGE: Schema = {
    "description": "one storage for every disk, or a mapping of source storage to target",
    "anyOf": [
        STORAGE,
        {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {
                "anyOf": [{"const": "*"}, {"pattern": STORAGE["pattern"]}],
            },
            "additionalProperties": STORAGE,
        },
    ],
}
COMMAND: Schema = {
    "description": "the hook's command as a list of arguments (no shell)",
    "type": "array",
    "items": {"type": "string"},
    "minItems": 1,
}


def _choice(choices: Mapping[str, object] | Sequence[str]) -> Schema:
    return {"enum": list(choices)}


def _list(item: Schema) -> Schema:
    return {"anyOf": [item, {"type": "array", "items": item}]}


def _mapping(
    keys: Sequence[str], values: Mapping[str, Schema], *, required: Sequence[str] = ()
) -> Schema:
    """A mapping with exactly the loader's `keys`, each described by `values`."""
    missing = [k for k in keys if k not in values]
    extra = [k for k in values if k not in keys]
    if missing or extra:
        raise KeyError(
            f"the plan schema and the loader disagree: keys without a description {missing}, "
            f"descriptions of keys the loader does not read {extra}"
        )
    out: Schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {k: values[k] for k in keys},
    }
    if required:
        out["required"] = list(required)
    return out


def _selector_values() -> dict[str, Schema]:
    return {
        "vmids": _list(VMID),
        "tags": _list(TAG),
        "pools": _list(POOL),
    }


def _rules() -> Schema:
    selector = _selector_values()
    group = _mapping(loader._GROUP_KEYS, {"name": TEXT, **selector}, required=("name",))
    pin = _mapping(loader._PIN_KEYS, {**selector, "nodes": NODES}, required=("nodes",))
    return _mapping(
        loader._RULES_KEYS,
        {
            "exclude": _mapping(loader._EXCLUDE_KEYS, {**selector, "templates": BOOL}),
            "anti_affinity": {"type": "array", "items": group},
            "affinity": {"type": "array", "items": group},
            "pins": {"type": "array", "items": pin},
            "headroom": _mapping(
                loader._HEADROOM_KEYS, {"memory": SIZE_OR_PERCENT, "cpu": CPUS_OR_PERCENT}
            ),
            "cpu_overcommit": {**RATIO, "exclusiveMinimum": 0},
            "concurrency": _mapping(
                loader._CONCURRENCY_KEYS,
                {k: CONCURRENCY for k in loader._CONCURRENCY_KEYS},
            ),
            "migration": _mapping(
                loader._MIGRATION_KEYS,
                {
                    "type": _choice(loader.MIGRATION_TYPES),
                    "network": {"type": "string", "description": "a CIDR like 10.10.0.0/24"},
                    "bwlimit": RATE,
                    "with_local_disks": BOOL,
                    "target_storage": TARGET_STORAGE,
                },
            ),
            "on_failure": _choice(loader.FAILURE_POLICIES),
            "task_timeout": DURATION,
        },
    )


def _hook(*, before: bool) -> Schema:
    """A hook: its command as a list (the shorthand) or a mapping with the command."""
    keys = loader_steps._BEFORE_HOOK_KEYS if before else loader_steps._HOOK_KEYS
    values = {"command": COMMAND, "timeout": DURATION, "pass_credentials": BOOL}
    if before:
        values["require_drained"] = BOOL
    return {"anyOf": [COMMAND, _mapping(keys, values, required=("command",))]}


def _steps() -> dict[str, Schema]:
    """The body of each step kind, by the loader's `STEP_KINDS`."""
    override = _mapping(
        loader_steps._OVERRIDE_KEYS,
        {
            "target": NODE,
            "target_storage": TARGET_STORAGE,
            "bwlimit": RATE,
            "offline": BOOL,
            "skip": BOOL,
        },
    )
    drain = _mapping(
        loader_steps._DRAIN_KEYS,
        {
            "node": NODE,
            "nodes": NODES,
            "targets": NODES,
            "with_local_disks": BOOL,
            "target_storage": TARGET_STORAGE,
            "include_stopped": BOOL,
            "guests": {
                "type": "object",
                "propertyNames": VMID_KEY,
                "additionalProperties": override,
            },
        },
    )
    rolling = _mapping(
        loader_steps._ROLLING_KEYS,
        {
            "nodes": {"anyOf": [{"const": "all"}, NODES]},
            "targets": NODES,
            "before": _hook(before=True),
            "after": _hook(before=False),
            "wait_online_timeout": DURATION,
            "confirm_between": BOOL,
            "pause": DURATION,
            "return_guests": BOOL,
        },
    )
    rebalance = _mapping(
        loader_steps._REBALANCE_KEYS,
        {
            "by": _choice(loader_steps.BALANCE_BY),
            "weights": _mapping(loader_steps._WEIGHT_KEYS, {"memory": RATIO, "cpu": RATIO}),
            "threshold": PERCENT,
            "max_moves": {"type": "integer", "minimum": 1, "maximum": loader_values.MAX_MOVES},
            "exclude_nodes": {"anyOf": [NODE, {"type": "array", "items": NODE}]},
            "min_improvement": PERCENT,
        },
    )
    move = {
        "type": "object",
        "description": "vmid: target node",
        "minProperties": 1,
        "propertyNames": VMID_KEY,
        "additionalProperties": NODE,
    }
    bodies: dict[str, Schema] = {
        "drain": {"anyOf": [NODES, drain]},
        "rolling": {"anyOf": [{"type": "null"}, rolling]},
        "rebalance": {"anyOf": [{"type": "null"}, rebalance]},
        "move": move,
    }
    if set(bodies) != set(loader.STEP_KINDS):
        raise KeyError(
            f"step kinds: the loader reads {loader.STEP_KINDS}, the schema {list(bodies)}"
        )
    return bodies


def plan_schema() -> Schema:
    """The JSON Schema (draft 2020-12) of a plan file, as `load_plan` reads it."""
    steps = [
        {
            "type": "object",
            "title": kind,
            "required": [kind],
            "additionalProperties": False,
            "properties": {kind: body},
        }
        for kind, body in _steps().items()
    ]
    top = _mapping(
        loader._TOP_KEYS,
        {
            "version": {"const": loader.PLAN_VERSION},
            "name": TEXT,
            "description": {"type": "string"},
            "rules": _rules(),
            "steps": {"type": "array", "minItems": 1, "items": {"anyOf": steps}},
            "links": {
                "type": "object",
                "description": "each node's migration link speed (or `default` for every "
                "node); `--link` on the command line wins",
                "propertyNames": {"anyOf": [{"const": "default"}, NODE]},
                "additionalProperties": RATE,
            },
        },
        required=("version", "steps"),
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "pvetool plan file",
        "description": "A pvetool maintenance plan (docs/plan-format.md).",
        **top,
    }


def plan_schema_text() -> str:
    """The schema as the text `pvetool plan schema` prints and the package ships."""
    return json.dumps(plan_schema(), indent=2) + "\n"
