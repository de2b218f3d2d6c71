"""`pvetool status`: which cluster (name, nodes, endpoint), quorum, nodes and guests, and the
nodes pvetool drained ("drained by pvetool (run ..., since ...)") until `undrain`."""

from __future__ import annotations

from typing import Any

import click

from pvetool.api.overview import fetch_overview
from pvetool.cli.clusterstate import endpoint_of, state_of
from pvetool.cli.common import get_client, output_option, state
from pvetool.cli.group import cli
from pvetool.cli.output import emit
from pvetool.render.status import status_data, status_markdown, status_renderable
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

    def data() -> dict[str, Any]:
        doc = status_data(overview)
        doc["pvetool"] = {
            "cluster": identity.name,
            "cluster_nodes": list(identity.nodes),
            "endpoint": identity.endpoint,
            "drained": {
                node: {"run": h.run_id, "since": h.since_t, "command": h.command}
                for node, h in sorted(drained.items())
            },
        }
        return doc

    held = [
        f"{node}: {hold.describe()}; `pvetool undrain {node}` releases it"
        for node, hold in sorted(drained.items())
    ]
    if output == "table":
        click.echo(f"{identity.label[0].upper()}{identity.label[1:]}")
    emit(
        st,
        output,
        "status",
        data,
        table=lambda: status_renderable(overview),
        markdown=lambda: status_markdown(overview) + "".join(f"\n{line}\n" for line in held),
    )
    if output == "table":
        for line in held:
            click.echo(line)
