"""`pvetool migrate VMID --to NODE`: one migration, planned and run like every other.

The request becomes a one-move plan (`pvetool.planner.build.migrate_spec`, PVE's own migrate
precondition of the guest merged into the checks) and runs through `pvetool.operate.run_plan`:
the planner's checks before anything is asked of PVE, the journal (``--resume``), the reports
and the shared live view (on stderr; stdout gets the one-line result). A guest the checks
refuse is named with every reason (exit 2: refused before starting) and nothing is sent to
PVE. ``--no-wait`` requests
the migration, prints its UPID and does not follow it.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import click

from pvetool.api import PveClient
from pvetool.cli.clusterstate import (
    checked_plan,
    cluster_state,
    holding,
    job_on,
    planning_snapshot,
)
from pvetool.cli.common import OUTPUT_CHOICES, CliState, get_client, state
from pvetool.cli.execution import (
    Output,
    check_report_paths,
    force_lock_option,
    live_view,
    print_summary,
    report_option,
    resumable,
    setup_of,
    show_plan,
    write_reports,
)
from pvetool.cli.group import cli
from pvetool.errors import ApiError, ApiUnreachable, ValidationError
from pvetool.journal import RunState, journalled_plan, new_run_id
from pvetool.model import ClusterSnapshot, ExecutionPlan, Precondition, RunReport
from pvetool.operate import JobInfo, not_run_report, open_journal, plan_level_blockers, run_plan
from pvetool.planner.build import build_plan, migrate_spec
from pvetool.render.formats import duration
from pvetool.render.report import interruption
from pvetool.units import parse_rate, parse_timeout


def _storage_map(text: str | None) -> tuple[tuple[str, str], ...]:
    """`local-lvm:ceph,local:ceph` -> pairs; `ceph` (one storage for all) or `1` (PVE: the
    same storage ID on the target) -> ("*", text)."""
    if not text:
        return ()
    if ":" not in text:
        return (("*", text),)
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        src, sep, dst = item.strip().partition(":")
        if not sep or not src or not dst:
            raise click.BadParameter(
                f"expected SOURCE:TARGET[,SOURCE:TARGET...] or one storage, got '{text}'",
                param_hint="--target-storage",
            )
        pairs.append((src, dst))
    return tuple(pairs)


def _rate(_: click.Context, __: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _seconds(_: click.Context, __: click.Parameter, value: str) -> float:
    try:
        return parse_timeout(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _check_request(snapshot: ClusterSnapshot, vmid: int, target: str, offline: bool) -> None:
    """Arguments that make no sense for this cluster (exit 2)."""
    guest = snapshot.guests.get(vmid)
    if guest is None:
        raise ValidationError(f"There is no guest {vmid} in this cluster", field="vmid")
    if guest.node == target:
        raise ValidationError(
            f"Guest {vmid} is already on {target}; nothing to migrate", field="target"
        )
    if guest.kind == "qemu" and guest.running and offline:
        # PVE refuses it ("can't migrate running VM without --online"); say what to do instead.
        raise ValidationError(
            f"VM {vmid} is running, and PVE migrates a running VM only live: shut it down "
            f"first (qm shutdown {vmid}), then migrate it with --offline and start it "
            "again; or drop --offline to migrate it live. A plan with the per-guest override "
            "'offline: true' (pvetool plan apply) does the shutdown, the migration and the "
            "start for you",
            field="offline",
        )


def _precondition(
    client: PveClient, snapshot: ClusterSnapshot, vmid: int
) -> dict[int, Precondition]:
    """PVE's own migrate precondition of the guest (read only), for the checks."""
    guest = snapshot.guests[vmid]
    node = snapshot.nodes.get(guest.node)
    if node is None or not node.online:
        return {}
    try:
        return {vmid: client.migrate_precondition(guest.kind, guest.node, vmid)}
    except (ApiError, ApiUnreachable):
        return {}  # e.g. a locked guest: the checks report the lock themselves


def _refused(plan: ExecutionPlan, vmid: int, target: str) -> list[str]:
    """Every reason the checks give for not moving the guest (empty: it moves)."""
    if plan.moves or vmid not in plan.blocked:
        return []
    findings = [f for f in (*plan.findings, *plan.rejections) if f.vmid == vmid and f.blocks]
    return list(dict.fromkeys(f"{f.id}: {f.message}" for f in findings)) or [
        f"no check lets it move to {target} (see --dry-run)"
    ]


def _result_line(st: CliState, report: RunReport, wait: bool) -> int:
    """The one-line result on stdout (errors on stderr); the exit code."""
    if not report.results:
        return report.exit_code
    r = report.results[0]
    if r.status == "left-running" and not wait and r.upid:
        click.echo(f"started: {r.upid}")
        return 0
    if r.status == "moved":
        parts = [f"migrated {r.vmid} {r.move.source} -> {r.node}"]
        if r.task_duration_s is not None:
            parts.append(f"in {duration(r.task_duration_s)}")
        if r.downtime_ms is not None:  # a container's is its restart
            word = interruption(r)
            parts.append(word if word.startswith("restart") else f"downtime {word}")
        click.echo(" ".join(parts))
        return 0
    click.echo(f"error: {r.reason or r.status}", err=True)
    return report.exit_code or 1


@cli.command("migrate")
@click.argument("vmid", type=click.IntRange(100, 999_999_999))
@click.option("--to", "target", required=True, metavar="NODE", help="Target node.")
@click.option(
    "--offline",
    is_flag=True,
    help=(
        "Migrate offline, not live. For a stopped VM (offline anyway) or a container; a running "
        "VM is refused (PVE migrates it only live): shut it down first, or use a plan with "
        "'offline: true', which shuts it down, migrates it and starts it again."
    ),
)
@click.option("--with-local-disks", is_flag=True, help="Copy local disks along (live).")
@click.option(
    "--target-storage",
    metavar="MAP",
    help="Storage map for local disks: SRC:DST[,SRC:DST] or one storage for all.",
)
@click.option(
    "--bwlimit",
    metavar="RATE",
    callback=_rate,
    help="Bandwidth limit, e.g. 500MiB/s or 2Gbit/s.",
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the task.")
@click.option(
    "--timeout",
    default="1h",
    show_default=True,
    callback=_seconds,
    help="How long to follow the task (it is not stopped when this runs out).",
)
@click.option("--dry-run", is_flag=True, help="Show the one-move plan and its checks; exit.")
@click.option(
    "--yes", "-y", is_flag=True, help="Do not ask on a terminal (without one it never asks)."
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_CHOICES),
    default="table",
    show_default=True,
    help="table: progress on stderr, the result on stdout; json: JSON lines; yaml, markdown: "
    "the report as one document.",
)
@report_option
@click.option("--resume", is_flag=True, help="Continue the last unfinished migrate of VMID.")
@force_lock_option
@click.pass_context
def migrate_cmd(ctx: click.Context, /, vmid: int, target: str, **kw: Any) -> None:
    """Migrate one guest to NODE (live for running VMs; restart migration for containers).

    The planner checks the move first (the same checks as a drain): a refused move names every
    reason and sends nothing to PVE. A running VM is never shut down by this command:
    `--offline` is for stopped VMs. A plan with the per-guest override `offline: true`
    (`pvetool plan apply`) shuts a running VM down, migrates it offline and starts it on NODE.

    \b
    Examples:
      pvetool migrate 101 --to pve3
      pvetool migrate 111 --to pve3 --with-local-disks --target-storage local-lvm:ceph
      pvetool migrate 200 --to pve2 --no-wait
      pvetool migrate 116 --to pve1 --offline
    """
    st = state(ctx)
    client = get_client(ctx)
    snapshot, _ = planning_snapshot(ctx, configs_of=[vmid])
    job = JobInfo(f"migrate:{vmid}", "migrate", argv=tuple(sys.argv[1:]))
    plan, resume = _plan_or_resume(ctx, client, snapshot, job, vmid, target, kw)
    output: Output = kw["output"]
    if kw["dry_run"]:
        show_plan(st, plan, output)
        ctx.exit(2 if plan.blocked or not plan.can_run else 0)
    check_report_paths(kw["reports"], kw["junit"])
    _exit_if_refused(ctx, plan, job, vmid, target, kw)
    cluster = cluster_state(ctx, snapshot)
    job = job_on(job, cluster)
    run_id = resume.run_id if resume is not None else new_run_id()
    where = cluster.identity.label
    if not kw["yes"] and sys.stdin.isatty() and resume is None:
        _confirm_or_exit(ctx, plan, job, vmid, where, kw)
    st.stderr.print(f"Running on the {where}.")
    with (
        holding(ctx, cluster, job, run_id, force=kw["force_lock"]),
        open_journal(cluster.ensure(), plan, job, resume, run_id=run_id) as journal,
        live_view(st, output, yes=True, lines_to_stderr=True) as (view, _),
    ):
        report = run_plan(
            client,
            plan,
            journal=journal,
            observer=view,
            resume=resume,
            setup=setup_of(st, snapshot, start_only=not kw["wait"]),
        )
    failed = write_reports(st, report, kw["reports"], kw["junit"])
    if report.exit_code not in (0, 130) and report.run_id and kw["wait"]:
        click.echo(
            f"Next: fix the cause, then continue with: pvetool migrate {vmid} --to {target} "
            "--resume",
            err=True,
        )
    if output != "table":
        print_summary(st, report, output)
        ctx.exit(report.exit_code or failed)
    ctx.exit(_result_line(st, report, kw["wait"]) or failed)


def _plan_or_resume(
    ctx: click.Context,
    client: PveClient,
    snapshot: ClusterSnapshot,
    job: JobInfo,
    vmid: int,
    target: str,
    kw: dict[str, Any],
) -> tuple[ExecutionPlan, RunState | None]:
    """The one-move plan (checked like a drain's), or the journalled plan `--resume` continues."""
    if kw["resume"]:
        resume = resumable(
            cluster_state(ctx, snapshot), command=job.command, what=f"'migrate {vmid}'"
        )
        return journalled_plan(resume), resume
    _check_request(snapshot, vmid, target, kw["offline"])
    spec = migrate_spec(
        vmid,
        target,
        with_local_disks=kw["with_local_disks"],
        target_storage=_storage_map(kw["target_storage"]),
        bwlimit_Bps=kw["bwlimit"],
        task_timeout_s=kw["timeout"],
    )
    plan = build_plan(spec, snapshot, preconditions=_precondition(client, snapshot, vmid))
    return checked_plan(ctx, plan), None  # privileges (pvetool.preflight)


def _exit_if_refused(
    ctx: click.Context,
    plan: ExecutionPlan,
    job: JobInfo,
    vmid: int,
    target: str,
    kw: dict[str, Any],
) -> None:
    """A move the checks refuse: every reason named, a report written, exit 2 (nothing sent)."""
    refused = plan_level_blockers(plan) or _refused(plan, vmid, target)
    if not refused:
        return
    click.echo(f"error: guest {vmid} cannot be migrated to {target}:", err=True)
    for reason in refused:
        click.echo(f"  {reason}", err=True)
    report = replace(not_run_report(plan, "; ".join(refused), refused=True), command=job.command)
    write_reports(state(ctx), report, kw["reports"], kw["junit"])
    ctx.exit(2)  # refused before anything started


def _confirm_or_exit(
    ctx: click.Context, plan: ExecutionPlan, job: JobInfo, vmid: int, where: str, kw: dict[str, Any]
) -> None:
    """On a terminal: the plan, then the question naming the cluster; no means exit 1."""
    st = state(ctx)
    show_plan(st, plan, "table")
    move = plan.moves[0] if plan.moves else None
    what = f"{vmid} {move.source} -> {move.target}" if move else str(vmid)
    if not click.confirm(f"Migrate {what} on the {where}?", default=False):
        click.echo("Cancelled; nothing was changed.", err=True)
        report = replace(
            not_run_report(plan, "cancelled by the operator", refused=False),
            command=job.command,
        )
        ctx.exit(write_reports(st, report, kw["reports"], kw["junit"]) or 1)
