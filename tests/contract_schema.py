"""Contract-test helper: check response data against the official PVE ``returns`` schema.

Not a test module (pytest does not collect it). It reads the emulator's packaged schema subset
(``pvetool/emulator/data/pve-api-schema.json``) directly, converts an endpoint's ``returns``
from PVE's JSON-schema dialect into standard JSON Schema and validates with ``jsonschema``
(a test dependency; the emulator itself never imports it).

Conversion rules, chosen so that real recorded PVE answers pass (real data wins):

* properties without ``optional: 1`` are required; an optional property whose value is null
  counts as absent, as ``PVE::JSONSchema::check_prop`` treats undef;
* ``boolean`` accepts JSON true/false and the integers 0 and 1 (Perl emits 1/0);
  ``integer`` accepts JSON integers; ``number`` accepts integers and floats; ``null`` only null;
* ``items``, ``properties`` and ``additionalProperties`` are followed; extra keys are allowed
  unless the schema explicitly says ``additionalProperties: 0``;
* ``enum``, ``minimum`` and ``maximum`` are checked; of PVE's ``format`` values only
  ``pve-node`` and ``pve-vmid`` are enforced (as patterns, on strings); ``pattern``,
  ``maxLength`` and ``requires`` are not (PVE itself does not verify results by default).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from typing import Any

import jsonschema

DATA_FILE = "data/pve-api-schema.json"

# pve-common src/PVE/JSONSchema.pm: pve_verify_node_name, pve_verify_vmid
_FORMAT_PATTERNS = {
    "pve-node": r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$",
    "pve-vmid": r"^[1-9][0-9]{2,8}$",
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@functools.cache
def _endpoints() -> dict[str, dict[str, Any]]:
    text = importlib.resources.files("pvetool.emulator").joinpath(DATA_FILE).read_text("utf-8")
    endpoints: dict[str, dict[str, Any]] = json.loads(text)["endpoints"]
    return endpoints


def load_schema_endpoint(method: str, template: str) -> dict[str, Any]:
    """The PVE method definition of ``METHOD template``; KeyError if it is not packaged."""
    return _endpoints()[f"{method.upper()} {template}"]


def _number(value: Any) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() else number


def to_json_schema(pve: dict[str, Any]) -> dict[str, Any]:
    """Convert one PVE schema node (and everything below it) to JSON Schema."""
    out: dict[str, Any] = {}
    pve_type = pve.get("type")
    types = pve_type if isinstance(pve_type, list) else [pve_type] if pve_type else []
    json_types: list[str] = []
    for one in types:
        if one == "boolean":
            json_types += ["boolean", "integer"]  # integers limited to 0/1 below
        elif one in ("integer", "number", "string", "null", "array", "object"):
            json_types.append(one)
        else:  # "any" or unknown
            json_types = []
            break
    if json_types:
        out["type"] = sorted(set(json_types)) if len(json_types) > 1 else json_types[0]
    if "boolean" in types and json_types:
        out["minimum"], out["maximum"] = 0, 1  # applies to the integer branch only
    elif pve.get("type") in ("integer", "number"):
        if pve.get("minimum") is not None:
            out["minimum"] = _number(pve["minimum"])
        if pve.get("maximum") is not None:
            out["maximum"] = _number(pve["maximum"])
    if pve.get("enum"):
        out["enum"] = list(pve["enum"])
    fmt = pve.get("format")
    pattern = _FORMAT_PATTERNS.get(fmt) if isinstance(fmt, str) else None
    if pattern:
        out["pattern"] = pattern  # JSON Schema applies it to strings only
    if isinstance(pve.get("items"), dict):
        out["items"] = to_json_schema(pve["items"])
    properties = pve.get("properties")
    if isinstance(properties, dict):
        converted: dict[str, Any] = {}
        required = []
        for key, sub in properties.items():
            sub_schema = to_json_schema(sub)
            if sub.get("optional"):
                sub_schema = _allow_null(sub_schema)
            else:
                required.append(key)
            converted[key] = sub_schema
        out["properties"] = converted
        if required:
            out["required"] = required
    additional = pve.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = to_json_schema(additional)
    elif additional is not None and not additional:
        out["additionalProperties"] = False
    return out


def _allow_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Let an optional property be null (PVE treats undef like an absent key)."""
    schema = dict(schema)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = sorted(set(types) | {"null"})
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _json_path(path: Any) -> str:
    text = "$"
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def return_schema_errors(method: str, template: str, data: Any) -> list[str]:
    """Problems of ``data`` (the ``data`` member of an answer) against the endpoint's returns.

    Empty list when it conforms. Each message starts with the JSON path of the offending value
    (``$`` is ``data`` itself), e.g. ``$[3].vmid: 'x' is not of type 'integer'``.
    """
    returns = load_schema_endpoint(method, template).get("returns") or {}
    validator = jsonschema.Draft202012Validator(to_json_schema(returns))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_json_path(error.absolute_path)}: {error.message}" for error in errors]
