"""What every command that runs a plan does around `pvetool.operate.run_plan`: the shared run
options, showing the plan and asking first, the live view while it runs, the summary and the
report files afterwards, and the exit code.

Before anything starts: ``--dry-run`` shows the plan and exits (2 when it is blocked); a report
file that could not be written is refused (exit 2) before anything moves; a plan with
plan-level blockers (or a move no planner makes, like a target that is its source) is shown and
refused (exit 2); a plan with nothing to run says so (exit 1 when guests were blocked); without
``--yes`` the plan is shown and the operator asked (without a terminal: refused, exit 2). Every
one of these that is a run (not ``--dry-run``) still writes its ``--report``/``--junit`` files.
While it runs: live bars on a terminal, one line per event otherwise, JSON lines with ``-o
json`` (`pvetool.render.live`). Afterwards: a summary, the report files, and the run's exit code
(0 all succeeded, 1 something failed or was left behind or a report could not be written, 130
interrupted).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import click

from pvetool.cli.clusterstate import checked_plan, cluster_state, holding, job_on
from pvetool.cli.common import OUTPUT_CHOICES, CliState, get_client, state
from pvetool.cli.output import emit
from pvetool.executor import Confirm
from pvetool.journal import RunState, new_run_id
from pvetool.model import ClusterSnapshot, ExecutionPlan, RunReport
from pvetool.model.events import Observer
from pvetool.operate import (
    JobInfo,
    Overrides,
    RunSetup,
    not_run_report,
    nothing_to_run,
    open_journal,
    plan_level_blockers,
    poll_policy,
    run_plan,
)
from pvetool.planner.fingerprint import drift
from pvetool.planner.spec import PlanSpec
from pvetool.render import REPORT_SUFFIXES, render_report
from pvetool.render.formats import document, to_yaml
from pvetool.render.live import JsonView, PlainView, RichView
from pvetool.render.plan import plan_data, plan_markdown, plan_renderable
from pvetool.render.report import (
    report_data,
    report_junit,
    report_markdown,
    summary_lines,
    summary_renderable,
)
from pvetool.render.terminal import stdout_written
from pvetool.state import ClusterState
from pvetool.state.drained import forget, remember
from pvetool.units import parse_timeout

__all__ = [
    "Output",
    "RunOptions",
    "check_report_paths",
    "confirm_run",
    "end_not_run",
    "journal_problems",
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
Output = Literal["table", "json", "yaml", "markdown"]


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
    force_lock: bool = False

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


def force_lock_option(func: F) -> F:
    """``--force-lock``: run although another run holds the cluster (recovery)."""
    return click.option(
        "--force-lock",
        is_flag=True,
        help=(
            "Run although another pvetool run holds this cluster (its lock file or the marker "
            "on the cluster): only when that run is gone, e.g. its machine crashed."
        ),
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
            type=click.Choice(OUTPUT_CHOICES),
            default="table",
            show_default=True,
            help="table: live bars (plain lines without a terminal); json: JSON lines; yaml, "
            "markdown: the plan or the final report as one document (progress on stderr).",
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
        force_lock_option,
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
        force_lock=bool(kw.get("force_lock", False)),
    )


def split_names(values: Sequence[str], *, what: str = "NODE") -> tuple[str, ...]:
    """``pve1,pve2 pve3`` -> (pve1, pve2, pve3), each once, in order; none at all (``""``) is a
    usage error."""
    names = tuple(dict.fromkeys(v.strip() for item in values for v in item.split(",") if v.strip()))
    if not names:
        raise click.BadParameter(
            f"expected at least one node name, got {list(values)!r}", param_hint=what
        )
    return names


def resumable(cluster: ClusterState, *, command: str, what: str) -> RunState:
    """The unfinished run of `command` on this cluster (refused, exit 2, with why not)."""
    found = cluster.resumable(command, what)
    journal_problems(found)
    return found


def journal_problems(run: RunState) -> None:
    """Say which lines of a journal about to be used were skipped (file:line: why)."""
    for problem in run.problems:
        click.echo(f"warning: journal line skipped: {problem}", err=True)


# --------------------------------------------------------------------------------------------
# before the run


def show_plan(st: CliState, plan: ExecutionPlan, output: Output) -> None:
    emit(
        st,
        output,
        "plan",
        lambda: plan_data(plan),
        table=lambda: plan_renderable(plan),
        markdown=lambda: plan_markdown(plan),
    )


def confirm_run(
    st: CliState, plan: ExecutionPlan, opts: RunOptions, where: str = "the cluster"
) -> bool:
    """Ask before anything moves, naming the cluster (`where`: its label and endpoint)."""
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
    return click.confirm(f"Start {count} migration(s) on the {where}?", default=False)


def preflight(
    ctx: click.Context,
    plan: ExecutionPlan,
    opts: RunOptions,
    *,
    command: str = "",
    notes: Sequence[str] = (),
    where: str = "the cluster",
) -> None:
    """Everything before the run that may end the command (see the module docstring); a run
    that ends here writes its report files too. `where` names the cluster in the question."""
    st = state(ctx)

    def _not_run(report: RunReport) -> NoReturn:
        end_not_run(ctx, replace(report, command=command, notes=tuple(notes)), opts)

    blockers = plan_level_blockers(plan)
    if opts.dry_run:
        show_plan(st, plan, opts.output)
        ctx.exit(2 if blockers else 0)
    check_report_paths(opts.reports, opts.junit)
    if blockers:
        show_plan(st, plan, opts.output)
        for text in blockers:
            click.echo(f"error: the plan is blocked: {text}", err=True)
        reason = "the plan is blocked: " + "; ".join(blockers)
        _not_run(not_run_report(plan, reason, refused=True))
    if nothing_to_run(plan):
        click.echo("Nothing to migrate.", err=True)
        for vmid in plan.blocked:
            reasons = [f.message for f in plan.findings if f.vmid == vmid and f.blocks]
            click.echo(f"  blocked {vmid}: {'; '.join(reasons) or 'see the plan'}", err=True)
        _not_run(not_run_report(plan, "", refused=False))
    try:
        confirmed = confirm_run(st, plan, opts, where)
    except click.exceptions.Exit:
        reason = "refused to migrate without confirmation (stdin is not a terminal; use --yes)"
        _not_run(not_run_report(plan, reason, refused=True))
    if not confirmed:
        click.echo("Cancelled; nothing was changed.", err=True)
        _not_run(not_run_report(plan, "cancelled by the operator", refused=False))


def end_not_run(ctx: click.Context, report: RunReport, opts: RunOptions) -> NoReturn:
    """End a run that did not start: its report files, its exit code (and with ``-o json``
    its summary, unless the plan's own document was the answer)."""
    code = write_reports(state(ctx), report, opts.reports, opts.junit)
    if opts.output == "json" and not stdout_written():
        print_summary(state(ctx), report, "json")
    ctx.exit(report.exit_code or code)
    raise AssertionError("unreachable")  # pragma: no cover - ctx.exit raises


def check_report_paths(reports: Sequence[str], junit: str | None) -> None:
    """Refuse (exit 2) report files that could not be written, before anything starts."""
    problems = [p for p in (_unwritable(path) for path in (*reports, *filter(None, [junit]))) if p]
    if problems:
        raise click.UsageError("; ".join(problems))


def _unwritable(path: str) -> str | None:
    """Why a report could not be written to `path` (None: it can)."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        return f"cannot write the report {path}: it is a directory"
    if not folder.is_dir():
        return f"cannot write the report {path}: the directory {folder} does not exist"
    if target.exists():
        if not os.access(target, os.W_OK):
            return f"cannot write the report {path}: permission denied"
    elif not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write the report {path}: the directory {folder} is not writable"
    return None


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
        sleep=st.clocks.sleep,
        clock=st.clocks.monotonic,
        held_nodes=snapshot.held_nodes,
    )


# --------------------------------------------------------------------------------------------
# during and after the run


def _silent(_: Any) -> None:
    """The live view of ``-q``: nothing while the run goes on."""


@contextmanager
def live_view(
    st: CliState, output: Output, *, yes: bool, lines_to_stderr: bool = False
) -> Iterator[tuple[Observer, Confirm]]:
    """The run's live view (and how it asks a question without breaking the bars)."""

    def echo(line: str) -> None:
        # yaml and markdown print one document at the end: progress goes to stderr
        click.echo(line, err=lines_to_stderr or output in ("yaml", "markdown"))

    rich: RichView | None = None
    view: Observer
    if output == "json":
        view = JsonView(echo)
    elif st.quiet:  # -q: the summary and errors only
        view = _silent
    elif not st.stderr.is_terminal or output != "table":
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
        click.echo(
            json.dumps(document("event", {"event": "summary", **report_data(report)}), default=str)
        )
    elif output == "yaml":
        click.echo(to_yaml(document("report", report_data(report))), nl=False)
    elif output == "markdown":
        click.echo(report_markdown(report), nl=False)
    elif not st.stderr.is_terminal:
        for line in summary_lines(report):
            click.echo(line)
    else:
        st.stdout.print(summary_renderable(report))


def write_reports(
    st: CliState, report: RunReport, reports: Sequence[str], junit: str | None
) -> int:
    """Write the report files; 0, or 1 when one could not be written (said on stderr)."""
    failed = 0
    for path in reports:
        try:
            Path(path).write_text(render_report(report, path), encoding="utf-8")
        except OSError as exc:
            click.echo(f"error: could not write the report {path}: {exc.strerror}", err=True)
            failed = 1
    if junit:
        try:
            Path(junit).write_text(report_junit(report), encoding="utf-8")
        except OSError as exc:
            click.echo(f"error: could not write the JUnit report {junit}: {exc.strerror}", err=True)
            failed = 1
    return failed


def run_and_report(
    ctx: click.Context,
    *,
    plan: ExecutionPlan,
    snapshot: ClusterSnapshot,
    job: JobInfo,
    opts: RunOptions,
    resume: RunState | None = None,
    notes: Sequence[str] = (),
    hold: Sequence[str] = (),
    release: str | None = None,
    spec: PlanSpec | None = None,
) -> None:
    """Show or confirm `plan`, run it, report; exits with the run's exit code.

    `hold`: the nodes this run drains, remembered as drained until undrain
    (`pvetool.state.drained`); `release`: the node an undrain releases; `spec`: the YAML plan
    (its hooks are checked first, `pvetool.preflight`)."""
    st = state(ctx)
    plan = checked_plan(ctx, opts.overrides.apply(plan), spec)
    for note in notes:
        st.stderr.print(note)
    cluster = cluster_state(ctx, snapshot)
    where = cluster.identity.label
    if resume is not None:
        # What changed since the run was planned (its own moves aside, `drift`): said, not
        # refused; the executor checks every move against the cluster before starting it.
        for change in drift(plan, snapshot):
            click.echo(f"warning: since the run was planned: {change}", err=True)
    if release is not None and not opts.dry_run and nothing_to_run(plan):
        # Nothing comes home (the guests are back already): the node is released all the same.
        freed = forget(cluster, release)
        if freed is not None:
            st.stderr.print(f"{release} is no longer held as {freed.describe()}.")
    preflight(ctx, plan, opts, command=job.command, notes=notes, where=where)
    st.stderr.print(f"Running on the {where}.")
    client = get_client(ctx)
    job = job_on(replace(job, argv=tuple(sys.argv[1:])), cluster)
    run_id = resume.run_id if resume is not None else new_run_id()
    with (
        holding(ctx, cluster, job, run_id, force=opts.force_lock),
        open_journal(cluster.ensure(), plan, job, resume, run_id=run_id) as journal,
        live_view(st, opts.output, yes=opts.yes) as (view, confirm),
    ):
        if hold:
            remember(cluster, hold, run_id, job.command, time.time())
        if release is not None:
            forget(cluster, release)
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
    failed = write_reports(st, report, opts.reports, opts.junit)
    for line in next_steps(job, plan, report):
        click.echo(line, err=True)
    ctx.exit(report.exit_code or failed)


def resume_command(job: JobInfo, plan: ExecutionPlan) -> str:
    """The command line that continues this run (`--resume`), from its command key."""
    kind, _, rest = job.command.partition(":")
    if kind == "drain":
        return f"pvetool drain {' '.join(rest.split(','))} --resume"
    if kind == "undrain":
        return f"pvetool undrain {rest} --resume"
    if kind == "rebalance":
        return f"pvetool rebalance --by {rest} --resume"
    if kind == "migrate":
        target = plan.moves[0].target if plan.moves else "NODE"
        return f"pvetool migrate {rest} --to {target} --resume"
    return f"pvetool plan apply {plan.source} --resume"


def next_steps(job: JobInfo, plan: ExecutionPlan, report: RunReport) -> list[str]:
    """What the operator does next, after any run that stopped short (and after a drain):
    continue it with ``--resume`` once the cause is fixed, or bring the guests back."""
    lines: list[str] = []
    home: dict[int, str] = {}
    now: dict[int, str] = {}
    for r in report.results:  # in plan order: a guest's first move leaves its home
        home.setdefault(r.vmid, r.move.source)
        if r.status == "moved" and r.node:
            now[r.vmid] = r.node
    away = sorted(
        {home[v] for v, node in now.items() if node != home[v] and home[v] in job.drained_nodes}
    )
    if report.exit_code != 0 and report.run_id:
        lines.append(
            f"Next: fix the cause above, then continue this run from where it stopped: "
            f"{resume_command(job, plan)} (add --yes to run it without asking)"
        )
        if job.kind != "undrain" and away:
            nodes = " and ".join(f"pvetool undrain {n}" for n in away)
            lines.append(f"Or give up and bring the guests that left back: {nodes}")
    if job.kind == "drain" and report.run_id:
        for node in job.drained_nodes:
            lines.append(
                f"{node} stays drained (no guest is placed on it) until: pvetool undrain {node}"
            )
    return lines
