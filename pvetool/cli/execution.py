"""What every command that runs a plan does around `pvetool.operate.run_plan`: the shared run
options, showing the plan and asking first, the live view while it runs, the summary and the
report files afterwards, and the exit code.

Before anything starts: ``--dry-run`` shows the plan and exits (2 when it is blocked); a plan
with plan-level blockers is shown and refused (exit 2); a plan with nothing to run says so (exit
1 when guests were blocked); without ``--yes`` the plan is shown and the operator asked (without
a terminal: refused, exit 2). While it runs: live bars on a terminal, one line per event
otherwise, JSON lines with ``-o json`` (`pvetool.render.live`). Afterwards: a summary, the
``--report``/``--junit`` files, and the run's exit code (0 all succeeded, 1 something failed or
was left behind, 130 interrupted).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from pvetool.cli.common import CliState, get_client, state
from pvetool.executor import Confirm
from pvetool.journal import RunState, find_resumable, state_dir
from pvetool.model import ClusterSnapshot, ExecutionPlan, RunReport
from pvetool.model.events import Observer
from pvetool.operate import (
    JobInfo,
    Overrides,
    RunSetup,
    nothing_to_run,
    open_journal,
    plan_level_blockers,
    poll_policy,
    run_plan,
)
from pvetool.render import REPORT_SUFFIXES, render_report
from pvetool.render.formats import to_json
from pvetool.render.live import JsonView, PlainView, RichView
from pvetool.render.plan import plan_data, plan_renderable
from pvetool.render.report import report_data, report_junit, summary_lines, summary_renderable
from pvetool.units import parse_timeout

__all__ = [
    "Output",
    "RunOptions",
    "confirm_run",
    "live_view",
    "options_of",
    "preflight",
    "print_summary",
    "report_option",
    "resumable",
    "run_and_report",
    "run_options",
    "setup_of",
    "show_plan",
    "split_names",
    "write_reports",
]

F = TypeVar("F", bound=Callable[..., Any])
Output = Literal["table", "json"]


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

    @property
    def overrides(self) -> Overrides:
        return Overrides(on_failure=self.on_failure, task_timeout_s=self.task_timeout_s)


def _duration(_: click.Context, __: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_timeout(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _reports(_: click.Context, __: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for path in value:
        if Path(path).suffix.lower() not in (*REPORT_SUFFIXES, ".htm"):
            raise click.BadParameter(
                f"'{path}': the format is chosen by the extension: .json, .md or .html"
            )
    return value


def report_option(func: F) -> F:
    """``--report FILE`` (repeatable) and ``--junit FILE.xml``."""
    func = click.option("--junit", metavar="FILE.xml", help="Write a JUnit XML report for CI.")(
        func
    )
    return click.option(
        "--report",
        "reports",
        multiple=True,
        metavar="FILE",
        callback=_reports,
        help="Write a report: FILE.json, FILE.md or FILE.html (repeatable).",
    )(func)


def run_options(func: F) -> F:
    """The options every plan-running command shares."""
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
        report_option,
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


def options_of(**kw: Any) -> RunOptions:
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


def split_names(values: Sequence[str]) -> tuple[str, ...]:
    """``pve1,pve2 pve3`` -> (pve1, pve2, pve3), each once, in order."""
    return tuple(dict.fromkeys(v.strip() for item in values for v in item.split(",") if v.strip()))


def resumable(directory: Path, *, command: str, what: str) -> RunState:
    found = find_resumable(directory, command=command)
    if found is None:
        raise click.UsageError(
            f"there is no unfinished run of {what} to resume in {directory / 'runs'}"
        )
    return found


# --------------------------------------------------------------------------------------------
# before the run


def show_plan(st: CliState, plan: ExecutionPlan, output: Output) -> None:
    if output == "json":
        click.echo(to_json(plan_data(plan)))
    else:
        st.stdout.print(plan_renderable(plan))


def confirm_run(st: CliState, plan: ExecutionPlan, opts: RunOptions) -> bool:
    if opts.yes:
        return True
    if not sys.stdin.isatty():
        click.echo(
            "error: refusing to migrate without confirmation: stdin is not a terminal; use --yes "
            "(review the plan first with --dry-run)",
            err=True,
        )
        raise click.exceptions.Exit(2)
    show_plan(st, plan, "table")
    count = len(plan.moves)
    return click.confirm(f"Start {count} migration(s) on the cluster?", default=False)


def preflight(ctx: click.Context, plan: ExecutionPlan, opts: RunOptions) -> None:
    """Everything before the run that may end the command (see the module docstring)."""
    st = state(ctx)
    blockers = plan_level_blockers(plan)
    if opts.dry_run:
        show_plan(st, plan, opts.output)
        ctx.exit(2 if blockers else 0)
    if blockers:
        show_plan(st, plan, opts.output)
        for text in blockers:
            click.echo(f"error: the plan is blocked: {text}", err=True)
        ctx.exit(2)
    if nothing_to_run(plan):
        click.echo("Nothing to migrate.", err=True)
        for vmid in plan.blocked:
            reasons = [f.message for f in plan.findings if f.vmid == vmid and f.blocks]
            click.echo(f"  blocked {vmid}: {'; '.join(reasons) or 'see the plan'}", err=True)
        ctx.exit(1 if plan.blocked else 0)
    if not confirm_run(st, plan, opts):
        click.echo("Cancelled; nothing was changed.", err=True)
        ctx.exit(1)


def setup_of(st: CliState, snapshot: ClusterSnapshot, *, start_only: bool = False) -> RunSetup:
    """How this command's run talks to the cluster: task polls at the settings' interval,
    divided by the clock speed of an `--emulate`d cluster, or every PVETOOL_POLL_INTERVAL
    seconds (for emulators run faster than real time by tests); Ctrl-C handled."""
    if st.client is None:  # pragma: no cover - the commands connect first
        raise click.UsageError("internal: not connected")
    poll = os.environ.get("PVETOOL_POLL_INTERVAL")
    interval: float | None = None
    if poll:
        try:
            interval = float(poll)
        except ValueError:
            raise click.BadParameter(
                f"PVETOOL_POLL_INTERVAL must be a number of seconds, got '{poll}'"
            ) from None
    speed = st.emulate_speed if st.emulator is not None else None
    return RunSetup(
        wait=poll_policy(st.client.settings.wait, interval_s=interval, speed=speed),
        agent_vmids=frozenset(g.vmid for g in snapshot.guests.values() if g.agent_enabled),
        hook_env=dict(st.emulator.env()) if st.emulator is not None else {},
        start_only=start_only,
        catch_sigint=True,
    )


# --------------------------------------------------------------------------------------------
# during and after the run


@contextmanager
def live_view(
    st: CliState, output: Output, *, yes: bool, lines_to_stderr: bool = False
) -> Iterator[tuple[Observer, Confirm]]:
    """The run's live view (and how it asks a question without breaking the bars)."""

    def echo(line: str) -> None:
        click.echo(line, err=lines_to_stderr)

    rich: RichView | None = None
    view: Observer
    if output == "json":
        view = JsonView(echo)
    elif not st.stderr.is_terminal:
        view = PlainView(echo)
    else:
        view = rich = RichView(st.stderr)

    def confirm(question: str) -> bool:
        if yes:
            return True
        with rich.suspended() if rich is not None else nullcontext():
            return click.confirm(f"{question}: go on?", default=False)

    with rich if rich is not None else nullcontext():
        yield view, confirm


def print_summary(st: CliState, report: RunReport, output: Output) -> None:
    if output == "json":
        click.echo(json.dumps({"event": "summary", **report_data(report)}, default=str))
    elif not st.stderr.is_terminal:
        for line in summary_lines(report):
            click.echo(line)
    else:
        st.stdout.print(summary_renderable(report))


def write_reports(
    st: CliState, report: RunReport, reports: Sequence[str], junit: str | None
) -> None:
    for path in reports:
        try:
            Path(path).write_text(render_report(report, path), encoding="utf-8")
        except OSError as exc:
            st.stderr.print(f"warning: could not write the report {path}: {exc.strerror}")
    if junit:
        try:
            Path(junit).write_text(report_junit(report), encoding="utf-8")
        except OSError as exc:
            st.stderr.print(f"warning: could not write the JUnit report {junit}: {exc}")


def run_and_report(
    ctx: click.Context,
    *,
    plan: ExecutionPlan,
    snapshot: ClusterSnapshot,
    job: JobInfo,
    opts: RunOptions,
    resume: RunState | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Show or confirm `plan`, run it, report; exits with the run's exit code."""
    st = state(ctx)
    plan = opts.overrides.apply(plan)
    for note in notes:
        st.stderr.print(note)
    preflight(ctx, plan, opts)
    client = get_client(ctx)
    job = replace(job, argv=tuple(sys.argv[1:]))
    with (
        open_journal(state_dir(), plan, job, resume) as journal,
        live_view(st, opts.output, yes=opts.yes) as (view, confirm),
    ):
        report = run_plan(
            client,
            plan,
            journal=journal,
            observer=view,
            confirm=confirm,
            resume=resume,
            setup=setup_of(st, snapshot),
        )
    report = replace(report, command=job.command, notes=tuple(notes))
    print_summary(st, report, opts.output)
    write_reports(st, report, opts.reports, opts.junit)
    ctx.exit(report.exit_code)
