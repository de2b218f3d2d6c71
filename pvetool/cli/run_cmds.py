"""`pvetool drain`, `undrain`, `rebalance` and `plan apply`: plans that really run.

Each command builds (or loads) an `ExecutionPlan` with the planner, shows it and asks for
confirmation (``--yes`` skips the question; without a terminal and without ``--yes`` it refuses,
exit 2), then runs it with the executor: live progress bars on a terminal, one plain line per
event otherwise, JSON lines with ``-o json``; a summary at the end, ``--report FILE.json|md|html``
and ``--junit FILE.xml``. Exit codes: 0 everything planned succeeded, 1 anything failed or was
left behind (blocked guests included), 2 invalid plan/arguments or blocked before starting,
130 interrupted (Ctrl-C: the first stops starting migrations and waits for the running ones,
the second leaves them running and prints their UPIDs).

This module wires the layers: `PveClient` (as the executor's `ClusterApi`), `follow_task`, the
planner's `build_plan`/`replan_move`/serializer, and the journal in the state directory.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from pvetool.api import PveClient, fetch_snapshot, follow_task
from pvetool.cli.common import CliState, get_client, state
from pvetool.cli.group import cli
from pvetool.errors import PlanError
from pvetool.executor import (
    ClusterApi,
    Executor,
    RunReport,
)
from pvetool.journal import Journal, RunState, find_resumable, state_dir, undrain_candidates
from pvetool.model import ClusterSnapshot, ExecutionPlan, MigrationProgress, Move, TaskResult, Upid
from pvetool.planner.units import parse_duration, parse_percent
from pvetool.render import REPORT_SUFFIXES, render_report
from pvetool.render.formats import to_json
from pvetool.render.live import JsonView, PlainView, RichView
from pvetool.render.report import (
    report_data,
    report_junit,
    summary_lines,
    summary_renderable,
)


def _plan_group() -> click.Group:
    """The planner's `plan` group (pvetool/cli/plan_cmds.py) when it exists, else our own."""
    if importlib.util.find_spec("pvetool.cli.plan_cmds") is not None:
        importlib.import_module("pvetool.cli.plan_cmds")
    existing = cli.commands.get("plan")
    if isinstance(existing, click.Group):
        return existing

    @cli.group("plan")
    def plan() -> None:
        """Maintenance plans: apply a YAML plan or a saved PLAN.json."""

    return plan


plan_group = _plan_group()


F = TypeVar("F", bound=Callable[..., Any])
Output = Literal["table", "json"]

__all__ = ["apply_cmd", "drain_cmd", "rebalance_cmd", "undrain_cmd"]


def _satisfies_cluster_api(client: PveClient) -> ClusterApi:
    """Never called: lets mypy check that `PveClient` fits the executor's `ClusterApi`."""
    return client


# --------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class RunOptions:
    yes: bool
    dry_run: bool
    output: Output
    reports: tuple[str, ...]
    junit: str | None
    resume: bool
    on_failure: Literal["stop", "continue", "skip-guest"] | None
    task_timeout_s: float | None


def _duration(_: click.Context, __: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _reports(_: click.Context, __: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for path in value:
        if Path(path).suffix.lower() not in (*REPORT_SUFFIXES, ".htm"):
            raise click.BadParameter(
                f"'{path}': the format is chosen by the extension: .json, .md or .html"
            )
    return value


def run_options(func: F) -> F:
    """The options every executing command shares."""
    decorators = [
        click.option("--yes", "-y", is_flag=True, help="Run without asking for confirmation."),
        click.option(
            "--dry-run", is_flag=True, help="Show the plan and exit (the same planning code)."
        ),
        click.option(
            "-o",
            "--output",
            type=click.Choice(["table", "json"]),
            default="table",
            show_default=True,
            help="table: live bars (plain lines without a terminal); json: JSON lines.",
        ),
        click.option(
            "--report",
            "reports",
            multiple=True,
            metavar="FILE",
            callback=_reports,
            help="Write a report: FILE.json, FILE.md or FILE.html (repeatable).",
        ),
        click.option("--junit", metavar="FILE.xml", help="Write a JUnit XML report for CI."),
        click.option(
            "--resume",
            is_flag=True,
            help="Continue the last unfinished run of the same command or plan.",
        ),
        click.option(
            "--on-failure",
            type=click.Choice(["stop", "continue", "skip-guest"]),
            help="Override the plan's failure policy.",
        ),
        click.option(
            "--task-timeout",
            metavar="DURATION",
            callback=_duration,
            help="How long to follow one migration task (it is not stopped after it).",
        ),
    ]
    for deco in reversed(decorators):
        func = deco(func)
    return func


def _options(**kw: Any) -> RunOptions:
    return RunOptions(
        yes=bool(kw["yes"]),
        dry_run=bool(kw["dry_run"]),
        output=kw["output"],
        reports=tuple(kw["reports"]),
        junit=kw["junit"],
        resume=bool(kw["resume"]),
        on_failure=kw["on_failure"],
        task_timeout_s=kw["task_timeout"],
    )


def _split(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for item in values for v in item.split(",") if v.strip()))


# --------------------------------------------------------------------------------------------
# the shared run path


def _planner() -> Any:
    """The planner's entry points (imported late: the planner is the heaviest import)."""
    from pvetool.planner import build

    return build


def _plan_renderables(plan: ExecutionPlan, output: Output) -> Any:
    from pvetool.render.plan import plan_data, plan_renderable

    return plan_data(plan) if output == "json" else plan_renderable(plan)


def _show_plan(st: CliState, plan: ExecutionPlan, output: Output) -> None:
    shown = _plan_renderables(plan, output)
    if output == "json":
        click.echo(to_json(shown))
    else:
        st.stdout.print(shown)


def _plan_level_blockers(plan: ExecutionPlan) -> list[str]:
    return [f"{f.id}: {f.message}" for f in plan.blockers if f.vmid is None]


def _with_overrides(plan: ExecutionPlan, opts: RunOptions) -> ExecutionPlan:
    if opts.on_failure is not None:
        plan = replace(plan, on_failure=opts.on_failure)
    if opts.task_timeout_s is not None:
        plan = replace(plan, task_timeout_s=opts.task_timeout_s)
    return plan


def _plan_to_json(plan: ExecutionPlan) -> str:
    from pvetool.plan_json import plan_to_json

    return str(plan_to_json(plan))


def _plan_from_json(text: str, source: str) -> ExecutionPlan:
    from pvetool.plan_json import plan_from_json

    plan: ExecutionPlan = plan_from_json(text, source)
    return plan


def _resumable(
    directory: Path, *, digest: str | None = None, command: str | None = None, what: str
) -> RunState:
    found = find_resumable(directory, digest=digest, command=command)
    if found is None:
        raise click.UsageError(
            f"there is no unfinished run of {what} to resume in {directory / 'runs'}"
        )
    return found


def _confirm_run(st: CliState, plan: ExecutionPlan, opts: RunOptions) -> bool:
    if opts.yes:
        return True
    if not sys.stdin.isatty():
        click.echo(
            "error: refusing to migrate without confirmation: stdin is not a terminal; use --yes "
            "(review the plan first with --dry-run)",
            err=True,
        )
        raise click.exceptions.Exit(2)
    _show_plan(st, plan, "table")
    count = len(plan.moves)
    return click.confirm(f"Start {count} migration(s) on the cluster?", default=False)


def _write_reports(st: CliState, report: RunReport, opts: RunOptions) -> None:
    for path in opts.reports:
        try:
            Path(path).write_text(render_report(report, path), encoding="utf-8")
        except OSError as exc:
            st.stderr.print(f"warning: could not write the report {path}: {exc.strerror}")
    if opts.junit:
        try:
            Path(opts.junit).write_text(report_junit(report), encoding="utf-8")
        except OSError as exc:
            st.stderr.print(f"warning: could not write the JUnit report {opts.junit}: {exc}")


def _wire_follow(
    client: PveClient, emulate_speed: float | None
) -> Callable[[Upid, float, Callable[[MigrationProgress], None] | None], TaskResult]:
    """`follow_task` bound to the client. The poll interval is the settings' (1 s, growing to
    5 s while a log stands still), divided by the clock speed of an `--emulate`d cluster, or
    PVETOOL_POLL_INTERVAL seconds (for emulators run faster than real time by tests)."""
    wait = client.settings.wait
    poll = os.environ.get("PVETOOL_POLL_INTERVAL")
    if poll:
        try:
            seconds = max(0.01, float(poll))
        except ValueError:
            raise click.BadParameter(
                f"PVETOOL_POLL_INTERVAL must be a number of seconds, got '{poll}'"
            ) from None
        wait = replace(wait, poll_interval_s=seconds, max_poll_interval_s=5 * seconds)
    elif emulate_speed:
        wait = replace(
            wait,
            poll_interval_s=max(0.02, wait.poll_interval_s / emulate_speed),
            max_poll_interval_s=max(0.05, wait.max_poll_interval_s / emulate_speed),
        )

    def follow(
        upid: Upid, timeout_s: float, on_progress: Callable[[MigrationProgress], None] | None
    ) -> TaskResult:
        return follow_task(client, upid, timeout_s, on_progress=on_progress, wait=wait)

    return follow


def _wire_replan(
    client: PveClient, plan_ref: list[ExecutionPlan]
) -> Callable[[Move, Collection[str]], Move | None]:
    def replan(move: Move, avoid: Collection[str]) -> Move | None:
        build = _planner()
        snapshot = fetch_snapshot(client)
        new: Move | None = build.replan_move(plan_ref[0], move, snapshot, avoid)
        return new

    return replan


def execute(
    ctx: click.Context,
    *,
    plan: ExecutionPlan,
    snapshot: ClusterSnapshot,
    command: str,
    kind: str,
    opts: RunOptions,
    drained_nodes: Sequence[str] = (),
    undoes: str | None = None,
    resume: RunState | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Show or confirm `plan`, run it, report; exits with the run's exit code."""
    st = state(ctx)
    client = get_client(ctx)
    plan = _with_overrides(plan, opts)
    for note in notes:
        st.stderr.print(note)
    blockers = _plan_level_blockers(plan)
    if opts.dry_run:
        _show_plan(st, plan, opts.output)
        ctx.exit(2 if blockers else 0)
    if blockers:
        _show_plan(st, plan, "table" if opts.output == "table" else "json")
        for text in blockers:
            click.echo(f"error: the plan is blocked: {text}", err=True)
        ctx.exit(2)
    if not plan.moves and not any(s.kind != "migrate" for s in plan.stages):
        click.echo("Nothing to migrate.", err=True)
        for vmid in plan.blocked:
            reasons = [f.message for f in plan.findings if f.vmid == vmid and f.blocks]
            click.echo(f"  blocked {vmid}: {'; '.join(reasons) or 'see the plan'}", err=True)
        ctx.exit(1 if plan.blocked else 0)
    if not _confirm_run(st, plan, opts):
        click.echo("Cancelled; nothing was changed.", err=True)
        ctx.exit(1)

    directory = state_dir()
    if resume is not None:
        journal = Journal.reopen(resume)
    else:
        journal = Journal.create(directory)
        journal.start_run(
            plan,
            command=command,
            kind=kind,
            plan_json=_plan_to_json(plan),
            drained_nodes=drained_nodes,
            undoes=undoes,
            argv=sys.argv[1:],
        )

    plain = opts.output == "json" or not st.stderr.is_terminal
    view: Any
    if opts.output == "json":
        view = JsonView(lambda line: click.echo(line))
    elif plain:
        view = PlainView(lambda line: click.echo(line))
    else:
        view = RichView(st.stderr)

    def confirm(question: str) -> bool:
        if opts.yes:
            return True
        if isinstance(view, RichView):
            with view.suspended():
                return click.confirm(f"{question}: go on?", default=False)
        return click.confirm(f"{question}: go on?", default=False)

    hook_env = dict(st.emulator.env()) if st.emulator is not None else {}
    plan_ref = [plan]
    executor = Executor(
        client,
        _wire_follow(client, st.emulate_speed if st.emulator is not None else None),
        journal=journal,
        replan=_wire_replan(client, plan_ref),
        observer=view,
        agent_vmids={g.vmid for g in snapshot.guests.values() if g.agent_enabled},
        hook_env=hook_env,
        confirm=confirm,
    )

    def on_sigint(_signum: int, _frame: object) -> None:
        if executor.interrupt() >= 3:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if isinstance(view, RichView):
            with view:
                report = executor.run(plan, resume=resume)
        else:
            report = executor.run(plan, resume=resume)
    finally:
        signal.signal(signal.SIGINT, previous)
        journal.close()
    report = replace(report, command=command, notes=tuple(notes))

    if opts.output == "json":
        click.echo(json.dumps({"event": "summary", **report_data(report)}, default=str))
    elif plain:
        for line in summary_lines(report):
            click.echo(line)
    else:
        st.stdout.print(summary_renderable(report))
    _write_reports(st, report, opts)
    ctx.exit(report.exit_code)


def _snapshot(ctx: click.Context) -> ClusterSnapshot:
    return fetch_snapshot(get_client(ctx))


# --------------------------------------------------------------------------------------------
# commands


@cli.command("drain")
@click.argument("nodes", nargs=-1, required=True, metavar="NODE[,NODE...]")
@click.option("--to", "targets", metavar="NODE,...", help="Only these target nodes.")
@click.option("--max-parallel", type=click.IntRange(min=1), help="At most N migrations at once.")
@click.option("--with-local-disks", is_flag=True, help="Move guests with local disks too.")
@run_options
@click.pass_context
def drain_cmd(
    ctx: click.Context,
    /,
    nodes: tuple[str, ...],
    targets: str | None,
    max_parallel: int | None,
    with_local_disks: bool,
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
    opts = _options(**kw)
    names = _split(nodes)
    key = f"drain:{','.join(sorted(names))}"
    snapshot = _snapshot(ctx)
    resume = None
    if opts.resume:
        resume = _resumable(state_dir(), command=key, what=f"'drain {' '.join(names)}'")
        plan = _plan_from_json(resume.plan_json, resume.plan_source or key)
    else:
        build = _planner()
        spec = build.drain_spec(
            list(names),
            targets=list(_split([targets])) if targets else None,
            max_parallel=max_parallel,
            with_local_disks=with_local_disks,
        )
        plan = build.build_plan(spec, snapshot)
    execute(
        ctx,
        plan=plan,
        snapshot=snapshot,
        command=key,
        kind="drain",
        opts=opts,
        drained_nodes=names,
        resume=resume,
    )


@cli.command("undrain")
@click.argument("node")
@run_options
@click.pass_context
def undrain_cmd(ctx: click.Context, /, node: str, **kw: Any) -> None:
    """Bring back the guests the latest drain of NODE moved away (from the journal).

    Capacity is checked again first; a guest that was moved elsewhere meanwhile is reported and
    left where it is.

    \b
    Examples:
      pvetool undrain pve2 --dry-run
      pvetool undrain pve2 --yes
    """
    opts = _options(**kw)
    key = f"undrain:{node}"
    directory = state_dir()
    snapshot = _snapshot(ctx)
    if opts.resume:
        resume = _resumable(directory, command=key, what=f"'undrain {node}'")
        plan = _plan_from_json(resume.plan_json, resume.plan_source or key)
        execute(
            ctx,
            plan=plan,
            snapshot=snapshot,
            command=key,
            kind="undrain",
            opts=opts,
            undoes=resume.undoes,
            resume=resume,
        )
        return
    found = undrain_candidates(directory, node)
    if found is None:
        click.echo(
            f"No drain of {node} to undo: the journals in {directory / 'runs'} show none, or "
            "its guests were brought back already.",
            err=True,
        )
        ctx.exit(0)
    drain_run, origins = found
    moves: list[tuple[int, str]] = []
    notes: list[str] = []
    for origin in origins:
        guest = snapshot.guests.get(origin.vmid)
        if guest is None:
            notes.append(f"not moved: guest {origin.vmid} no longer exists")
        elif guest.node == node:
            notes.append(f"already home: guest {origin.vmid} is on {node}")
        elif guest.node != origin.now:
            notes.append(
                f"not moved: guest {origin.vmid} is on {guest.node} now, not on {origin.now} "
                f"where the drain ({drain_run.run_id}) put it; move it yourself if you want it "
                f"on {node}"
            )
        else:
            moves.append((origin.vmid, node))
    build = _planner()
    spec = build.undrain_spec(moves)
    # Guests whose local disks went along with them come back the same way.
    rules = spec.rules
    spec = replace(
        spec, rules=replace(rules, migration=replace(rules.migration, with_local_disks=True))
    )
    plan = build.build_plan(spec, snapshot)
    execute(
        ctx,
        plan=plan,
        snapshot=snapshot,
        command=key,
        kind="undrain",
        opts=opts,
        undoes=drain_run.run_id,
        notes=notes,
    )


def _percent(_: click.Context, __: click.Parameter, value: str) -> float:
    try:
        return parse_percent(value if "%" in value else f"{value}%")
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
@run_options
@click.pass_context
def rebalance_cmd(
    ctx: click.Context, /, by: str, threshold: float, max_moves: int | None, **kw: Any
) -> None:
    """Move guests until node loads are within the threshold of each other.

    \b
    Examples:
      pvetool rebalance --dry-run
      pvetool rebalance --by memory --threshold 15% --max-moves 5 --yes
    """
    opts = _options(**kw)
    key = f"rebalance:{by}"
    snapshot = _snapshot(ctx)
    resume = None
    if opts.resume:
        resume = _resumable(state_dir(), command=key, what="the last rebalance")
        plan = _plan_from_json(resume.plan_json, resume.plan_source or key)
    else:
        build = _planner()
        plan = build.build_plan(
            build.rebalance_spec(by=by, threshold=threshold, max_moves=max_moves), snapshot
        )
    execute(
        ctx, plan=plan, snapshot=snapshot, command=key, kind="rebalance", opts=opts, resume=resume
    )


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
    opts = _options(**kw)
    snapshot = _snapshot(ctx)
    directory = state_dir()
    build = _planner()
    drained: list[str] = []
    if file.lower().endswith(".json"):
        text = Path(file).read_text(encoding="utf-8")
        plan = _plan_from_json(text, file)
        digest = plan.plan_digest or _digest(text)
        if not opts.resume and not ignore_drift:
            from pvetool.planner.fingerprint import drift

            changes = drift(plan, snapshot)
            if changes:
                for change in changes:
                    click.echo(f"  {change}", err=True)
                raise PlanError(
                    f"the cluster changed since {file} was computed ({len(changes)} "
                    "difference(s)); compute the plan again or pass --ignore-drift"
                )
        for stage in plan.stages:
            if stage.node and stage.kind == "migrate":
                drained.append(stage.node)
    else:
        from pvetool.planner.loader import load_plan
        from pvetool.planner.spec import DrainStep, RollingStep

        spec = load_plan(file)
        digest = spec.digest
        for step in spec.steps:
            if isinstance(step, DrainStep):
                drained.extend(step.nodes)
            elif isinstance(step, RollingStep):
                drained.extend(step.nodes or sorted(snapshot.nodes))
    key = f"plan:{digest}"
    resume = None
    if opts.resume:
        resume = _resumable(directory, command=key, what=f"the plan {file}")
        plan = _plan_from_json(resume.plan_json, file)
    elif not file.lower().endswith(".json"):
        plan = build.build_plan(spec, snapshot)
    execute(
        ctx,
        plan=plan,
        snapshot=snapshot,
        command=key,
        kind="plan",
        opts=opts,
        drained_nodes=tuple(dict.fromkeys(drained)),
        resume=resume,
    )


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
