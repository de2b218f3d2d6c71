"""Machine-readable output: JSON and YAML text of plain data (dicts, lists, scalars).

PyYAML is used here only to *write* YAML for `-o yaml`; plans and configs are read elsewhere.
"""

from __future__ import annotations

import json
from typing import Any

import yaml


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
