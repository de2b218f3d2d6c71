"""The output contract of every command that prints data: ``-o table|json|yaml|markdown``.

`table` is for people (rich tables fitted to the terminal); `json` and `yaml` print one document
in its envelope ``{"format": "pvetool/<kind>", "version": N, ...}`` (docs/output.md, JSON
Schemas in ``pvetool/schemas/``); `markdown` is for a change request or a wiki. An error under
``-o json`` is a JSON document too (``pvetool/error``, printed by `pvetool.cli.main`).

Imports: click, rich, `pvetool.render` and `pvetool.cli.common`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.console import RenderableType

from pvetool.cli.common import CliState
from pvetool.render.formats import document, to_json, to_yaml

__all__ = ["emit"]


def emit(
    st: CliState,
    output: str,
    kind: str,
    data: Callable[[], dict[str, Any]],
    *,
    table: Callable[[], RenderableType],
    markdown: Callable[[], str],
) -> None:
    """Print one command's answer in the format `output` names (`data` in its envelope)."""
    if output == "json":
        click.echo(to_json(document(kind, data())))
    elif output == "yaml":
        click.echo(to_yaml(document(kind, data())), nl=False)
    elif output == "markdown":
        click.echo(markdown(), nl=False)
    else:
        st.stdout.print(table())
