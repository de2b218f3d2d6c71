"""`pvetool plan validate|show FILE` and `pvetool check drain NODE`: read-only planning.

Each command loads the plan (a bad file is a PlanError, exit 2, before any connection), reads
the cluster in one snapshot, calls `build_plan`, and renders. `validate` and `check drain` exit
2 when the plan has blockers, naming every one; warnings are shown either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from pvetool.api import PveClient, fetch_snapshot
from pvetool.cli.common import get_client, output_option, state
from pvetool.cli.group import cli
from pvetool.errors import ApiError, ApiUnreachable, PlanError
from pvetool.links import cluster_links, parse_links
from pvetool.model import ClusterSnapshot, ExecutionPlan, Precondition
from pvetool.planner.build import build_plan, drain_spec
from pvetool.planner.loader import load_plan
from pvetool.render.formats import to_json
from pvetool.render.plan import (
    matrix_data,
    matrix_renderable,
    plan_data,
    plan_markdown,
    plan_renderable,
)

__all__ = ["check_group", "plan_group"]


def _link(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, float]:
    try:
        return parse_links(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


link_option = click.option(
    "--link",
    "links",
    multiple=True,
    callback=_link,
    metavar="[NODE=]SPEED",
    help="Migration link speed for the predicted timeline: of every node (10Gbit) or of one "
    "(pve3=1Gbit; repeatable). Undeclared nodes: learned from recent migrations, else 10Gbit.",
)


def planned_links(
    client: PveClient | None,
    snapshot: ClusterSnapshot,
    declared: Mapping[str, float],
    in_plan: Iterable[tuple[str, float]] = (),
) -> dict[str, Any]:
    """`build_plan`'s link arguments: each node's speed and where the figure came from.
    `declared` (``--link``) wins over the plan's ``links:`` (`in_plan`); ``--link SPEED`` for
    every node replaces the plan's section as a whole."""
    if "default" not in declared:
        declared = {**dict(in_plan), **declared}
    figures = cluster_links(client, snapshot, declared)
    return {"link_bits_per_s": figures.bits_per_s, "link_origin": figures.origin}


def _refuse_blocked(plan: ExecutionPlan) -> None:
    """Exit 2 naming every blocker (the one error boundary prints it)."""
    if plan.can_run:
        return
    problems = [f"{f.id}: {f.message}" for f in plan.blockers]
    raise PlanError(
        f"The plan {plan.name} cannot run: {len(problems)} blocker(s): " + " ".join(problems),
        problems=problems,
    )


@cli.group("plan")
def plan_group() -> None:
    """Check and show YAML maintenance plans against the cluster (read-only)."""


@plan_group.command(
    "validate",
    epilog="Examples:\n\n\b\n  pvetool plan validate playbooks/drain-node.yaml\n"
    "  pvetool plan validate maintenance.yaml -o json",
)
@click.argument("file", type=click.Path(dir_okay=False))
@output_option(choices=("table", "json"))
@link_option
@click.pass_context
def plan_validate(ctx: click.Context, file: str, output: str, links: dict[str, float]) -> None:
    """Check FILE against the cluster: every guest, whether it can move, and every reason.

    Exits 0 when the plan can run, 2 when it has blockers (each is named); warnings are shown
    either way.
    """
    spec = load_plan(file)
    client = get_client(ctx)
    snapshot = fetch_snapshot(client)
    plan = build_plan(spec, snapshot, **planned_links(client, snapshot, links, spec.links))
    if output == "json":
        click.echo(to_json(matrix_data(plan)))
    else:
        state(ctx).stdout.print(matrix_renderable(plan))
    _refuse_blocked(plan)


@plan_group.command(
    "show",
    epilog="Examples:\n\n\b\n  pvetool plan show playbooks/rolling-maintenance.yaml\n"
    "  pvetool plan show drain.yaml -o json > plan.json\n"
    "  pvetool plan show drain.yaml -o markdown > CHANGE-1234.md",
)
@click.argument("file", type=click.Path(dir_okay=False))
@output_option(choices=("table", "json", "markdown"))
@link_option
@click.pass_context
def plan_show(ctx: click.Context, file: str, output: str, links: dict[str, float]) -> None:
    """Show what FILE would do: moves in order, blocked guests, predicted timeline.

    `-o json` writes the complete execution plan (with the fingerprint of the cluster state it
    was computed on); `pvetool plan apply` can run it later and refuses if the state drifted.
    """
    spec = load_plan(file)
    client = get_client(ctx)
    snapshot = fetch_snapshot(client)
    plan = build_plan(spec, snapshot, **planned_links(client, snapshot, links, spec.links))
    if output == "json":
        click.echo(to_json(plan_data(plan)))
    elif output == "markdown":
        click.echo(plan_markdown(plan), nl=False)
    else:
        state(ctx).stdout.print(plan_renderable(plan))


PRECONDITION_WORKERS = 8  # requests in flight at once, as `fetch_snapshot` reads configs


@cli.group("check")
def check_group() -> None:
    """Pre-flight checks without a plan file (read-only)."""


def _preconditions(
    client: PveClient, snapshot: ClusterSnapshot, nodes: Sequence[str]
) -> Mapping[int, Precondition]:
    """PVE's own migrate precondition of every guest on `nodes` (what PVE would refuse).

    Read a few at a time (the client is thread-safe and keeps its connections alive): one call
    per guest, sequentially, cost a round trip each on a node with a hundred guests."""
    asked = [
        (node, guest)
        for node in nodes
        if (entry := snapshot.nodes.get(node)) is not None and entry.online
        for guest in snapshot.guests_on(node)
    ]
    found: dict[int, Precondition] = {}
    with ThreadPoolExecutor(max_workers=PRECONDITION_WORKERS, thread_name_prefix="pre") as pool:
        futures = {
            guest.vmid: pool.submit(client.migrate_precondition, guest.kind, node, guest.vmid)
            for node, guest in asked
        }
        for vmid, future in futures.items():
            try:
                found[vmid] = future.result()
            except (ApiError, ApiUnreachable):
                continue  # e.g. a locked guest: the checks report the lock themselves
    return found


@check_group.command(
    "drain",
    epilog="Examples:\n\n\b\n  pvetool check drain pve2\n"
    "  pvetool check drain pve2 --to pve1 --to pve3 -o json",
)
@click.argument("node")
@click.option("--to", "targets", multiple=True, metavar="NODE", help="Allowed target (repeat).")
@click.option("--with-local-disks", is_flag=True, help="Move local disks along (live).")
@output_option(choices=("table", "json"))
@link_option
@click.pass_context
def check_drain(
    ctx: click.Context,
    node: str,
    targets: tuple[str, ...],
    with_local_disks: bool,
    output: str,
    links: dict[str, float],
) -> None:
    """Can NODE be emptied? Every guest on it, where it would go, and every reason it cannot.

    Exits 0 when every guest that must move can, 2 otherwise (each blocker is named).
    """
    spec = drain_spec([node], targets or None, with_local_disks=with_local_disks)
    client = get_client(ctx)
    snapshot = fetch_snapshot(client, configs_on=[node])
    pre = _preconditions(client, snapshot, [node]) if node in snapshot.nodes else {}
    plan = build_plan(spec, snapshot, preconditions=pre, **planned_links(client, snapshot, links))
    if output == "json":
        click.echo(to_json(matrix_data(plan)))
    else:
        state(ctx).stdout.print(matrix_renderable(plan))
    _refuse_blocked(plan)
