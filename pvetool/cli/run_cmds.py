"""`pvetool drain`, `undrain`, `rebalance` and `plan apply`: plans that really run.

Each command builds (or, with ``--resume``, takes from the journal) an `ExecutionPlan` and hands
it to `pvetool.cli.execution.run_and_report`: shown and confirmed (``--yes`` skips the
question), run by `pvetool.operate.run_plan`, summarised and reported. Exit codes: 0 everything
planned succeeded, 1 anything failed or was left behind (blocked guests included), 2 invalid
plan/arguments or blocked before starting, 130 interrupted (Ctrl-C: the first stops starting
migrations and waits for the running ones, the second leaves them running and prints their
UPIDs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import click

from pvetool.api.ha_hold import released
from pvetool.cli.clusterstate import cluster_state, planning_snapshot
from pvetool.cli.common import get_client
from pvetool.cli.execution import (
    check_report_paths,
    end_not_run,
    journal_problems,
    options_of,
    resumable,
    run_and_report,
    run_options,
    split_names,
)
from pvetool.cli.group import cli
from pvetool.cli.plan_cmds import link_option, plan_group, planned_links
from pvetool.errors import PlanError
from pvetool.journal import journalled_plan
from pvetool.model import ClusterSnapshot, ExecutionPlan, RunReport
from pvetool.operate import JobInfo, homecoming, release_ha_hold, with_local_disks
from pvetool.plan_json import plan_from_json, read_saved_plan
from pvetool.planner import build
from pvetool.planner.fingerprint import drift
from pvetool.planner.loader import load_plan
from pvetool.planner.loader_values import MAX_CONCURRENCY
from pvetool.planner.spec import DrainStep, PlanSpec, RollingStep
from pvetool.state.drained import forget
from pvetool.units import parse_percent

__all__ = ["apply_cmd", "drain_cmd", "rebalance_cmd", "undrain_cmd"]


def _snapshot(ctx: click.Context, configs_on: Sequence[str] | None = None) -> ClusterSnapshot:
    """The cluster as the planner sees it (drained nodes held); with `configs_on`, only those
    nodes' guest configs are read (a drain)."""
    return planning_snapshot(ctx, configs_on=configs_on)[0]


@cli.command("drain")
@click.argument("nodes", nargs=-1, required=True, metavar="NODE[,NODE...]")
@click.option("--to", "targets", metavar="NODE,...", help="Only these target nodes.")
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1, max=MAX_CONCURRENCY),
    help="At most N migrations at once, and at most N from each source node.",
)
@click.option("--with-local-disks", is_flag=True, help="Move guests with local disks too.")
@link_option
@run_options
@click.pass_context
def drain_cmd(
    ctx: click.Context,
    /,
    nodes: tuple[str, ...],
    targets: str | None,
    max_parallel: int | None,
    with_local_disks: bool,
    links: dict[str, float],
    **kw: Any,
) -> None:
    """Move every movable guest off NODE (live for running VMs, restart for containers).

    \b
    Examples:
      pvetool drain pve2 --dry-run
      pvetool drain pve2 --to pve1,pve3 --max-parallel 2 --yes
      pvetool drain pve2 --yes --report drain.html --junit drain.xml
      pvetool drain pve2 --yes --resume        # after a crash or Ctrl-C
    """
    opts = options_of(**kw)
    names = split_names(nodes)
    if not names:  # `drain ""` must not be a successful drain of nothing
        raise click.BadParameter("name the node(s) to drain", param_hint="NODE")
    job = JobInfo(f"drain:{','.join(sorted(names))}", "drain", drained_nodes=names)
    snapshot = _snapshot(ctx, configs_on=names)
    resume = None
    if opts.resume:
        resume = resumable(
            cluster_state(ctx, snapshot), command=job.command, what=f"'drain {' '.join(names)}'"
        )
        plan = journalled_plan(resume)
    else:
        spec = build.drain_spec(
            list(names),
            targets=list(split_names([targets], what="--to")) if targets is not None else None,
            max_parallel=max_parallel,
            with_local_disks=with_local_disks,
        )
        plan = build.build_plan(spec, snapshot, **planned_links(get_client(ctx), snapshot, links))
    run_and_report(ctx, plan=plan, snapshot=snapshot, job=job, opts=opts, resume=resume, hold=names)


@cli.command("undrain")
@click.argument("node")
@link_option
@run_options
@click.pass_context
def undrain_cmd(ctx: click.Context, /, node: str, links: dict[str, float], **kw: Any) -> None:
    """Bring back the guests the latest drain of NODE moved away (from the journal).

    Capacity is checked again first; a guest that was moved elsewhere meanwhile is reported and
    left where it is.

    \b
    Examples:
      pvetool undrain pve2 --dry-run
      pvetool undrain pve2 --yes
    """
    opts = options_of(**kw)
    names = split_names([node])
    if len(names) != 1:
        raise click.BadParameter(f"undrain takes one node, got {', '.join(names)}")
    node = names[0]
    key = f"undrain:{node}"
    snapshot, cluster = planning_snapshot(ctx, release=node)
    if opts.resume:
        resume = resumable(cluster, command=key, what=f"'undrain {node}'")
        job = JobInfo(key, "undrain", undoes=resume.undoes)
        plan = journalled_plan(resume)
        run_and_report(
            ctx, plan=plan, snapshot=snapshot, job=job, opts=opts, resume=resume, release=node
        )
        return
    # The drain's HA hold (pvetool.api.ha_hold) ends before the guests come home: plan with it
    # ended, or HA guests would look barred from their own node.
    snapshot = released(snapshot, node)
    found = cluster.undrain_candidates(node)
    moves, notes = _homecoming(snapshot, node, found[0].run_id, found[1]) if found else ([], [])
    if not moves and not opts.dry_run:
        # Nothing for the executor to bring home: end the HA drain hold here (with moves, the
        # run ends it before they start, after the confirmation).
        for note in release_ha_hold(get_client(ctx), node):
            click.echo(note, err=True)
    if found is None:
        cluster.refuse_drain_elsewhere(node)
        message = (
            f"No drain of {node} to undo on the {cluster.identity.label}: its journals "
            f"({cluster.runs_dir}) show none, or its guests were brought back already."
        )
        legacy = cluster.legacy_drain_of(node)
        if legacy is not None:
            message += (
                f" A journal written before pvetool recorded clusters drained {node}: {legacy}."
                " If it was this cluster's, adopt it with: "
                f"mkdir -p {cluster.runs_dir} && mv {legacy} {cluster.runs_dir}/"
            )
        click.echo(message, err=True)
        check_report_paths(opts.reports, opts.junit)
        if not opts.dry_run:
            freed = forget(cluster, node)
            if freed is not None:
                click.echo(f"{node} is no longer held as {freed.describe()}.", err=True)
        empty = RunReport("", f"undrain {node}", "", key, (), notes=(message,))
        end_not_run(ctx, empty, opts)
    drain_run, _ = found
    journal_problems(drain_run)
    spec = _with_local_disks(build.undrain_spec(moves))
    # The same link figures as a drain (learned, declared, default) and each guest's dirty
    # pages learned from its last migration: the drain that moved them wrote those logs.
    plan = build.build_plan(spec, snapshot, **planned_links(get_client(ctx), snapshot, links))
    job = JobInfo(key, "undrain", undoes=drain_run.run_id)
    run_and_report(ctx, plan=plan, snapshot=snapshot, job=job, opts=opts, notes=notes, release=node)


# Shared with the Python API (pvetool.session): one undrain, however it is asked for.
_homecoming = homecoming
_with_local_disks = with_local_disks


def _percent(_: click.Context, __: click.Parameter, value: str) -> float:
    # `--threshold 15` means 15 %; anything else is parsed (and reported) as typed
    plain = value.strip().replace(".", "", 1).isdigit()
    try:
        return parse_percent(f"{value}%" if plain else value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("rebalance")
@click.option(
    "--by",
    type=click.Choice(["memory", "cpu"]),
    default="memory",
    show_default=True,
    help="What to balance.",
)
@click.option(
    "--threshold",
    default="10%",
    show_default=True,
    callback=_percent,
    metavar="PCT",
    help="Stop when the most and least loaded nodes differ by at most this.",
)
@click.option("--max-moves", type=click.IntRange(min=1), help="At most N migrations.")
@link_option
@run_options
@click.pass_context
def rebalance_cmd(
    ctx: click.Context,
    /,
    by: str,
    threshold: float,
    max_moves: int | None,
    links: dict[str, float],
    **kw: Any,
) -> None:
    """Move guests until node loads are within the threshold of each other.

    \b
    Examples:
      pvetool rebalance --dry-run
      pvetool rebalance --by memory --threshold 15% --max-moves 5 --yes
    """
    opts = options_of(**kw)
    job = JobInfo(f"rebalance:{by}", "rebalance")
    snapshot = _snapshot(ctx)
    resume = None
    if opts.resume:
        resume = resumable(
            cluster_state(ctx, snapshot), command=job.command, what="the last rebalance"
        )
        plan = journalled_plan(resume)
    else:
        spec = build.rebalance_spec(by=by, threshold=threshold, max_moves=max_moves)
        plan = build.build_plan(spec, snapshot, **planned_links(get_client(ctx), snapshot, links))
    run_and_report(ctx, plan=plan, snapshot=snapshot, job=job, opts=opts, resume=resume)


@plan_group.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--ignore-drift", is_flag=True, help="Apply a saved PLAN.json although the cluster changed."
)
@run_options
@click.pass_context
def apply_cmd(ctx: click.Context, /, file: str, ignore_drift: bool, **kw: Any) -> None:
    """Run a YAML plan (drain, rolling maintenance with hooks, rebalance, moves) or a saved
    PLAN.json (refused when the cluster drifted from what it was computed on).

    \b
    Examples:
      pvetool plan apply playbooks/rolling-maintenance.yaml --dry-run
      pvetool plan apply weekend.yaml --yes --report weekend.html
      pvetool plan apply saved-plan.json --yes
      pvetool plan apply weekend.yaml --yes --resume
    """
    opts = options_of(**kw)
    snapshot = _snapshot(ctx)
    if file.lower().endswith(".json"):
        text = read_saved_plan(file)
        saved = plan_from_json(text, file)
        digest = saved.plan_digest or hashlib.sha256(text.encode()).hexdigest()
        if not opts.resume and not ignore_drift:
            _refuse_drift(saved, snapshot, file)
        drained = [s.node for s in saved.stages if s.node and s.kind == "migrate"]
        hold = []
        plan: ExecutionPlan | PlanSpec = saved
    else:
        plan = load_plan(file)
        digest = plan.digest
        drained = _drained_by(plan, snapshot)
        hold = [n for step in plan.steps if isinstance(step, DrainStep) for n in step.nodes]
    job = JobInfo(f"plan:{digest}", "plan", drained_nodes=tuple(dict.fromkeys(drained)))
    resume = None
    spec = plan if isinstance(plan, PlanSpec) else None  # its hooks are checked first
    if opts.resume:
        resume = resumable(
            cluster_state(ctx, snapshot), command=job.command, what=f"the plan {file}"
        )
        plan = journalled_plan(resume, file)
    elif isinstance(plan, PlanSpec):
        links = planned_links(get_client(ctx), snapshot, {}, plan.links)
        plan = build.build_plan(plan, snapshot, **links)
    run_and_report(
        ctx, plan=plan, snapshot=snapshot, job=job, opts=opts, resume=resume, hold=hold, spec=spec
    )


def _refuse_drift(plan: ExecutionPlan, snapshot: ClusterSnapshot, file: str) -> None:
    changes = drift(plan, snapshot)
    if changes:
        for change in changes:
            click.echo(f"  {change}", err=True)
        raise PlanError(
            f"the cluster changed since {file} was computed ({len(changes)} difference(s)); "
            "compute the plan again or pass --ignore-drift"
        )


def _drained_by(spec: PlanSpec, snapshot: ClusterSnapshot) -> list[str]:
    """The nodes a YAML plan drains (what `undrain` may later bring guests back to)."""
    drained: list[str] = []
    for step in spec.steps:
        if isinstance(step, DrainStep):
            drained.extend(step.nodes)
        elif isinstance(step, RollingStep):
            drained.extend(step.nodes or sorted(snapshot.nodes))
    return drained
