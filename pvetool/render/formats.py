"""Machine-readable output: JSON and YAML text of plain data (dicts, lists, scalars), and the
envelope every document carries.

Every JSON (and YAML) document pvetool prints starts with ``{"format": "pvetool/<kind>",
"version": N}``: `document(kind, data)`. A consumer checks both and knows the shape from
docs/output.md and the JSON Schema shipped in ``pvetool/schemas/<kind>.schema.json``. A version
changes only when a field is removed, renamed or changes meaning; new fields may appear in any
release.

PyYAML is used here only to *write* YAML for `-o yaml`; plans and configs are read elsewhere.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

# kind -> version of its document (docs/output.md). "plan" is the saved plan of plan_json.
VERSIONS: dict[str, int] = {
    "status": 1,
    "check": 1,
    "plan": 1,
    "report": 1,
    "event": 1,
    "error": 1,
    "runs": 1,
}


def document(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` in its envelope: ``{"format": "pvetool/<kind>", "version": N, ...data}``."""
    if kind not in VERSIONS:
        raise ValueError(f"unknown document kind '{kind}'")
    body = {k: v for k, v in data.items() if k not in ("format", "version")}
    return {"format": f"pvetool/{kind}", "version": VERSIONS[kind], **body}


def md_cell(value: object) -> str:
    """A value for a Markdown table cell: pipes escaped, one line."""
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(headers: list[str], rows: list[list[object]]) -> list[str]:
    """A GitHub-flavoured Markdown table, one line per row."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return out


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def to_yaml(data: Any) -> str:
    # allow_unicode=False: YAML then escapes what is not ASCII (a bidi override in a guest
    # name) in double quotes, as JSON does, instead of writing it raw.
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=False)


def gib(n_bytes: float) -> str:
    """Bytes as binary GiB/MiB with one decimal, as PVE's GUI shows them."""
    if abs(n_bytes) >= 1024**3:
        return f"{n_bytes / 1024**3:.1f} GiB"
    return f"{n_bytes / 1024**2:.1f} MiB"


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
