"""`pvetool plan validate|show FILE` and `pvetool check drain NODE`: read-only planning.

Each command loads the plan (a bad file is a PlanError, exit 2, before any connection), reads
the cluster in one snapshot, calls `build_plan`, and renders. `validate` and `check drain` exit
2 when the plan has blockers, naming every one; warnings are shown either way.
"""

from __future__ import annotations

import click

from pvetool.cli.clusterstate import checked_plan, planning_snapshot
from pvetool.cli.common import get_client, output_option, state
from pvetool.cli.group import cli
from pvetool.cli.output import emit
from pvetool.errors import PlanError
from pvetool.model import ExecutionPlan
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
from pvetool.units import parse_rate

__all__ = ["check_group", "plan_group"]


def _link(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        bits = parse_rate(value) * 8
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (e.g. 1Gbit, 10Gbit, 25Gbit)") from None
    if bits <= 0:
        raise click.BadParameter("the link speed must be above 0")
    return bits


link_option = click.option(
    "--link",
    "link_bits_per_s",
    default="10Gbit",
    show_default=True,
    callback=_link,
    metavar="SPEED",
    help="Migration link speed of every node, for the predicted timeline (PVE does not report it).",
)


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
def plan_validate(ctx: click.Context, file: str, output: str, link_bits_per_s: float) -> None:
    """Check FILE against the cluster: every guest, whether it can move, and every reason.

    Exits 0 when the plan can run, 2 when it has blockers (each is named); warnings are shown
    either way.
    """
    spec = load_plan(file)
    snapshot, _ = planning_snapshot(ctx)
    plan = checked_plan(ctx, build_plan(spec, snapshot, link_bits_per_s=link_bits_per_s), spec)
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
def plan_show(ctx: click.Context, file: str, output: str, link_bits_per_s: float) -> None:
    """Show what FILE would do: moves in order, blocked guests, predicted timeline.

    `-o json` writes the complete execution plan (with the fingerprint of the cluster state it
    was computed on); `pvetool plan apply` can run it later and refuses if the state drifted.
    """
    spec = load_plan(file)
    snapshot, _ = planning_snapshot(ctx)
    plan = checked_plan(ctx, build_plan(spec, snapshot, link_bits_per_s=link_bits_per_s), spec)
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
    link_bits_per_s: float,
) -> None:
    """Can NODE be emptied? Every guest on it, where it would go, and every reason it cannot.

    Exits 0 when every guest that must move can, 2 otherwise (each blocker is named).
    """
    allowed = [t.strip() for item in targets for t in item.split(",") if t.strip()]
    spec = drain_spec([node], allowed or None, with_local_disks=with_local_disks)
    client = get_client(ctx)
    snapshot, _ = planning_snapshot(ctx)
    pre = migrate_preconditions(client, snapshot, [g.vmid for g in snapshot.guests_on(node)])
    plan = build_plan(spec, snapshot, link_bits_per_s=link_bits_per_s, preconditions=pre)
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
