"""pvetool: drain, rebalance and maintain Proxmox VE clusters safely.

`pvetool.connect(...)` opens a `pvetool.session.Session` (the Python API, docs/python-api.md).
The version is defined here and nowhere else (pyproject.toml reads it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pvetool.session import Session

__version__ = "0.1.0"

__all__ = ["__version__", "connect"]


def connect(*args: Any, **kwargs: Any) -> Session:
    """`pvetool.session.connect`: a session on a cluster (imported on first use, so that
    ``import pvetool`` stays cheap)."""
    from pvetool.session import connect as _connect

    return _connect(*args, **kwargs)
