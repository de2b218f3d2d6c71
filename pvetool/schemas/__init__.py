"""JSON Schemas of pvetool's output documents (docs/output.md), shipped with the package.

``<kind>.schema.json`` describes the document ``{"format": "pvetool/<kind>", "version": N,
...}``: status, check, plan, report, event (one per line of ``-o json`` while a run goes on),
error and runs. ``plan-file.schema.json`` is the schema of YAML plan files (what ``pvetool plan
schema`` prints; generated from the loader's spec, a test keeps the shipped copy identical).

Imports: the standard library only.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["KINDS", "load_schema"]

KINDS = ("status", "check", "plan", "report", "event", "error", "runs")


def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of the document `kind` (or ``plan-file``)."""
    if kind not in (*KINDS, "plan-file"):
        raise ValueError(f"no schema '{kind}': one of {', '.join(KINDS)}, plan-file")
    text = resources.files(__name__).joinpath(f"{kind}.schema.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
