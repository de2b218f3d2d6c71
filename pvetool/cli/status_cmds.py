"""`pvetool status`: which cluster (name, nodes, endpoint), quorum, nodes and guests, and the
nodes pvetool drained ("drained by pvetool (run ..., since ...)") until `undrain`."""

from __future__ import annotations

import click

from pvetool.api.overview import fetch_overview
from pvetool.cli.clusterstate import endpoint_of, state_of
from pvetool.cli.common import get_client, output_option, state
from pvetool.cli.group import cli
from pvetool.render.formats import to_json, to_yaml
from pvetool.render.status import status_data, status_renderable
from pvetool.state import ClusterIdentity
from pvetool.state.drained import holds


@cli.command()
@output_option()
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """Show cluster quorum, nodes (online, version, guests, memory, CPU, HA) and guests."""
    overview = fetch_overview(get_client(ctx))
    st = state(ctx)
    identity = ClusterIdentity(
        overview.status.name or None,
        tuple(sorted(n.name for n in overview.nodes)),
        endpoint_of(ctx),
    )
    drained = holds(state_of(ctx, identity))
    if output in ("json", "yaml"):
        data = status_data(overview)
        data["pvetool"] = {
            "cluster": identity.name,
            "cluster_nodes": list(identity.nodes),
            "endpoint": identity.endpoint,
            "drained": {
                node: {"run": h.run_id, "since": h.since_t, "command": h.command}
                for node, h in sorted(drained.items())
            },
        }
        click.echo(to_json(data) if output == "json" else to_yaml(data), nl=output == "json")
        return
    click.echo(f"{identity.label[0].upper()}{identity.label[1:]}")
    st.stdout.print(status_renderable(overview))
    for node, hold in sorted(drained.items()):
        click.echo(f"{node}: {hold.describe()}; `pvetool undrain {node}` releases it")
