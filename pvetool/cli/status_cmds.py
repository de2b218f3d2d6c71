"""`pvetool status`: quorum, nodes and guests."""

from __future__ import annotations

import click

from pvetool.api.overview import fetch_overview
from pvetool.cli.common import get_client, output_option, state
from pvetool.cli.group import cli
from pvetool.render.formats import to_json, to_yaml
from pvetool.render.status import status_data, status_renderable


@cli.command()
@output_option()
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """Show cluster quorum, nodes (online, version, guests, memory, CPU, HA) and guests."""
    overview = fetch_overview(get_client(ctx))
    st = state(ctx)
    if output == "json":
        click.echo(to_json(status_data(overview)))
    elif output == "yaml":
        click.echo(to_yaml(status_data(overview)), nl=False)
    else:
        st.stdout.print(status_renderable(overview))
