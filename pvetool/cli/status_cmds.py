"""`pvetool status`: quorum, nodes and guests."""

from __future__ import annotations

import click

from pvetool.api.overview import fetch_overview
from pvetool.cli.common import get_client, output_option, state
from pvetool.cli.group import cli
from pvetool.cli.output import emit
from pvetool.render.status import status_data, status_markdown, status_renderable


@cli.command()
@output_option()
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """Show cluster quorum, nodes (online, version, guests, memory, CPU, HA) and guests."""
    overview = fetch_overview(get_client(ctx))
    emit(
        state(ctx),
        output,
        "status",
        lambda: status_data(overview),
        table=lambda: status_renderable(overview),
        markdown=lambda: status_markdown(overview),
    )
