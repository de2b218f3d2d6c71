"""`pvetool plan validate|show FILE` and `pvetool check drain NODE`: read-only planning.

Each command loads the plan (a bad file is a PlanError, exit 2, before any connection), reads
the cluster in one snapshot, calls `build_plan`, and renders. `validate` and `check drain` exit
2 when the plan has blockers, naming every one; warnings are shown either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import click

from pvetool.api import PveClient
from pvetool.cli.clusterstate import checked_plan, planning_snapshot
from pvetool.cli.common import get_client, output_option, state
from pvetool.cli.group import cli
from pvetool.cli.output import emit
from pvetool.errors import PlanError
from pvetool.links import cluster_links, parse_links
from pvetool.model import ClusterSnapshot, ExecutionPlan
from pvetool.operate import migrate_preconditions
from pvetool.planner.build import build_plan, drain_spec
from pvetool.planner.loader import load_plan
from pvetool.planner.plan_schema import plan_schema_text
from pvetool.render.plan import (
    matrix_data,
    matrix_markdown,
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
    return {
        "link_bits_per_s": figures.bits_per_s,
        "link_origin": figures.origin,
        "learned_dirty": figures.dirty,
        "link_pairs": figures.pairs,
    }


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
    """YAML maintenance plans: validate and show (read-only), apply, schema."""


@plan_group.command(
    "schema",
    epilog="Examples:\n\n\b\n  pvetool plan schema > plan.schema.json\n"
    "  # first line of a plan, for editors with yaml-language-server:\n"
    "  # yaml-language-server: $schema=plan.schema.json",
)
def plan_schema_cmd() -> None:
    """Print the JSON Schema of plan files (for editors: completion and checks as you type).

    It is generated from the plan loader's own keys and choices; `pvetool plan validate` stays
    the full check (file:line messages, and what a schema cannot express).
    """
    click.echo(plan_schema_text(), nl=False)


@plan_group.command(
    "validate",
    epilog="Examples:\n\n\b\n  pvetool plan validate playbooks/drain-node.yaml\n"
    "  pvetool plan validate maintenance.yaml -o json",
)
@click.argument("file", type=click.Path(dir_okay=False))
@output_option()
@link_option
@click.pass_context
def plan_validate(ctx: click.Context, file: str, output: str, links: dict[str, float]) -> None:
    """Check FILE against the cluster: every guest, whether it can move, and every reason.

    Exits 0 when the plan can run, 2 when it has blockers (each is named); warnings are shown
    either way.
    """
    spec = load_plan(file)
    client = get_client(ctx)
    snapshot, _ = planning_snapshot(ctx)
    plan = build_plan(spec, snapshot, **planned_links(client, snapshot, links, spec.links))
    plan = checked_plan(ctx, plan, spec)
    _matrix(ctx, plan, output)
    _refuse_blocked(plan)


@plan_group.command(
    "show",
    epilog="Examples:\n\n\b\n  pvetool plan show playbooks/rolling-maintenance.yaml\n"
    "  pvetool plan show drain.yaml -o json > plan.json\n"
    "  pvetool plan show drain.yaml -o markdown > CHANGE-1234.md",
)
@click.argument("file", type=click.Path(dir_okay=False))
@output_option()
@link_option
@click.pass_context
def plan_show(ctx: click.Context, file: str, output: str, links: dict[str, float]) -> None:
    """Show what FILE would do: moves in order, blocked guests, predicted timeline.

    `-o json` writes the complete execution plan (with the fingerprint of the cluster state it
    was computed on); `pvetool plan apply` can run it later and refuses if the state drifted.
    """
    spec = load_plan(file)
    client = get_client(ctx)
    snapshot, _ = planning_snapshot(ctx)
    plan = build_plan(spec, snapshot, **planned_links(client, snapshot, links, spec.links))
    plan = checked_plan(ctx, plan, spec)
    emit(
        state(ctx),
        output,
        "plan",
        lambda: plan_data(plan),
        table=lambda: plan_renderable(plan),
        markdown=lambda: plan_markdown(plan),
    )


@cli.group("check")
def check_group() -> None:
    """Pre-flight checks without a plan file (read-only)."""


@check_group.command(
    "drain",
    epilog="Examples:\n\n\b\n  pvetool check drain pve2\n"
    "  pvetool check drain pve2 --to pve1 --to pve3 -o json",
)
@click.argument("node")
@click.option(
    "--to",
    "targets",
    multiple=True,
    metavar="NODE,...",
    help="Only these target nodes (NODE,NODE or repeat --to), as for drain.",
)
@click.option("--with-local-disks", is_flag=True, help="Move local disks along (live).")
@output_option()
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
    allowed = [t.strip() for item in targets for t in item.split(",") if t.strip()]
    spec = drain_spec([node], allowed or None, with_local_disks=with_local_disks)
    client = get_client(ctx)
    snapshot, _ = planning_snapshot(ctx, configs_on=[node])
    pre = migrate_preconditions(client, snapshot, [g.vmid for g in snapshot.guests_on(node)])
    plan = build_plan(spec, snapshot, preconditions=pre, **planned_links(client, snapshot, links))
    plan = checked_plan(ctx, plan)
    _matrix(ctx, plan, output)
    _refuse_blocked(plan)


def _matrix(ctx: click.Context, plan: ExecutionPlan, output: str) -> None:
    """The check matrix (``plan validate``, ``check drain``) in the format asked for."""
    emit(
        state(ctx),
        output,
        "check",
        lambda: matrix_data(plan),
        table=lambda: matrix_renderable(plan),
        markdown=lambda: matrix_markdown(plan),
    )
