"""The runs pvetool remembers (`pvetool runs`), as a table and as Markdown.

Pure functions of plain rows (one dict per run, built by the CLI from the journals); the JSON
and YAML documents are the same rows in the ``pvetool/runs`` envelope (docs/output.md).

Imports: the standard library, rich and `pvetool.render`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import RenderableType

from pvetool.render.fit import Col, FitTable
from pvetool.render.formats import md_cell

__all__ = ["runs_markdown", "runs_renderable"]

_COLS = (
    Col("run"),
    Col("command", wrap=True, min_width=12),
    Col("cluster", keep=80),
    Col("started (UTC)", keep=70),
    Col("result", keep=90),
    Col("moves", keep=60, justify="right"),
)


def _started(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def _cells(run: Mapping[str, Any]) -> list[str]:
    where = str(run.get("cluster") or "?") + (" (emulated)" if run.get("emulated") else "")
    return [
        str(run["run"]),
        str(run["command"]),
        where,
        _started(run.get("started")),
        str(run["result"]),
        str(run["moves"]),
    ]


def runs_renderable(runs: Sequence[Mapping[str, Any]]) -> RenderableType:
    """The runs as a table that fits the terminal."""
    return FitTable(_COLS, [_cells(r) for r in runs], title="Runs")


def runs_markdown(runs: Sequence[Mapping[str, Any]]) -> str:
    """The runs as a Markdown table."""
    lines = [
        "| " + " | ".join(c.header for c in _COLS) + " |",
        "|" + "---|" * len(_COLS),
    ]
    lines += ["| " + " | ".join(md_cell(c) for c in _cells(r)) + " |" for r in runs]
    return "\n".join(lines) + "\n"
