"""`pvetool runs`, `runs show RUN` and `report RUN`: the runs pvetool remembers, from their
journals (`pvetool.state.history`); no connection to a cluster is needed.

Imports: click, `pvetool.cli`, `pvetool.journal`, `pvetool.render` and `pvetool.state`.
"""

from __future__ import annotations

import click
from rich.text import Text

from pvetool.cli.common import output_option, state
from pvetool.cli.execution import check_report_paths, print_summary, report_option, write_reports
from pvetool.cli.group import cli
from pvetool.cli.output import emit
from pvetool.journal import state_dir
from pvetool.render.history import runs_markdown, runs_renderable
from pvetool.render.report import report_data, report_markdown
from pvetool.state.history import all_runs, find_run, rebuild_report

__all__ = ["report_cmd", "runs_group"]


@cli.group("runs", invoke_without_command=True)
@click.option("--cluster", metavar="NAME", help="Only runs on this cluster (its name).")
@click.option("--node", metavar="NODE", help="Only runs that drained or moved to/from NODE.")
@output_option()
@click.pass_context
def runs_group(ctx: click.Context, cluster: str | None, node: str | None, output: str) -> None:
    """List past runs (id, command, cluster, start, result, moves), oldest first.

    \b
    Examples:
      pvetool runs --cluster lab --node pve1
      pvetool runs show 20260101T120000Z-3f9a1c
      pvetool report 20260101T120000Z --report run.html
    """
    if ctx.invoked_subcommand is not None:
        return
    entries = [
        e
        for e in all_runs(state_dir())
        if (cluster is None or e.cluster == cluster or e.state.cluster == cluster)
        and (node is None or e.involves(node))
    ]
    rows = [
        {
            "run": e.state.run_id,
            "command": e.state.command,
            "cluster": e.state.cluster or e.cluster,
            "emulated": e.emulated,
            "endpoint": e.state.endpoint,
            "started": e.state.started_t,
            "result": e.result,
            "exit_code": e.state.exit_code,
            "moves": e.moves,
            "journal": str(e.state.path),
        }
        for e in entries
    ]
    if not rows and output == "table":
        click.echo(f"No runs in {state_dir()}.", err=True)
        return
    emit(
        state(ctx),
        output,
        "runs",
        lambda: {"runs": rows},
        table=lambda: runs_renderable(rows),
        markdown=lambda: runs_markdown(rows),
    )


@runs_group.command("show")
@click.argument("run")
@output_option()
@click.pass_context
def runs_show(ctx: click.Context, run: str, output: str) -> None:
    """Show the report of RUN (an id, or the start of one), rebuilt from its journal."""
    entry = find_run(state_dir(), run)
    report = rebuild_report(entry.state)
    if output != "table":
        emit(
            state(ctx),
            output,
            "report",
            lambda: report_data(report),
            table=lambda: Text(""),
            markdown=lambda: report_markdown(report),
        )
        return
    where = entry.state.cluster or entry.cluster
    endpoint = f" at {entry.state.endpoint}" if entry.state.endpoint else ""
    click.echo(
        f"run {entry.state.run_id}: {entry.state.command} on {where}{endpoint}, {entry.result}"
    )
    print_summary(state(ctx), report, "table")


@cli.command("report")
@click.argument("run")
@report_option
@click.pass_context
def report_cmd(ctx: click.Context, run: str, reports: tuple[str, ...], junit: str | None) -> None:
    """Write the report files of RUN again, from its journal.

    \b
    Examples:
      pvetool report 20260101T120000Z-3f9a1c --report drain.html --junit drain.xml
    """
    if not reports and not junit:
        raise click.UsageError("name at least one file: --report FILE.html|.md|.json or --junit")
    check_report_paths(reports, junit)
    entry = find_run(state_dir(), run)
    report = rebuild_report(entry.state)
    ctx.exit(write_reports(state(ctx), report, reports, junit))
