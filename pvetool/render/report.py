"""Run reports: the end-of-run summary (rich and plain text), JSON data, Markdown and JUnit XML.

Pure functions of a `RunReport` (the HTML page is in `report_html`; `pvetool.render.render_report`
picks the format of a report file by its suffix). Imports: the standard
library, rich, `pvetool.model` and `pvetool.render` siblings.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from pvetool.model import MoveResult, RunReport
from pvetool.render.fit import Cell, Col, FitTable
from pvetool.render.formats import duration

__all__ = [
    "interruption",
    "move_line",
    "report_data",
    "report_junit",
    "report_markdown",
    "summary_lines",
    "summary_renderable",
]

STATUS_STYLE = {
    "moved": "green",
    "skipped": "cyan",
    "failed": "red",
    "not-started": "yellow",
    "left-running": "magenta",
}


def _what(r: MoveResult) -> str:
    kind = "VM" if r.move.kind == "qemu" else "CT"
    return f"{kind} {r.move.vmid} ({r.move.name})" if r.move.name else f"{kind} {r.move.vmid}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _secs(value: float | None) -> str:
    return "-" if value is None else duration(value)


def interruption(r: MoveResult) -> str:
    """What the guest went through: a VM's pause at the switch-over (``81 ms``), or for a
    container moved by restart migration the time it was stopped (``restart 25s``)."""
    if r.downtime_ms is None:
        return "-"
    if _restarted(r):
        return f"restart {duration(r.downtime_ms / 1000.0)}"
    return _ms(r.downtime_ms)


def move_line(r: MoveResult) -> str:
    """One line for a finished move: ``moved VM 101 (web1) pve1 -> pve2 in 21s, downtime 59 ms``."""
    route = f"{r.move.source} -> {r.move.target}"
    if r.status == "moved":
        parts = [f"moved {_what(r)} {route}"]
        if r.task_duration_s is not None:
            parts.append(f"in {duration(r.task_duration_s)}")
        if r.downtime_ms is not None:
            word = interruption(r)
            parts.append(word if word.startswith("restart") else f"downtime {word}")
        if r.original_target and r.original_target != r.move.target:
            parts.append(f"(re-planned from {r.original_target})")
        return ", ".join(parts) if len(parts) > 2 else " ".join(parts)
    if r.status == "skipped":
        return f"skipped {_what(r)}: {r.reason}"
    return f"{r.status} {_what(r)} {route}: {r.reason}"


# --------------------------------------------------------------------------------------------
# data (JSON)


def _result_data(report: RunReport, r: MoveResult) -> dict[str, Any]:
    start, end = report.predicted_span(r)
    return {
        "move": r.move.id,
        "vmid": r.move.vmid,
        "name": r.move.name,
        "kind": r.move.kind,
        "source": r.move.source,
        "target": r.move.target,
        "original_target": r.original_target,
        "status": r.status,
        "reason": r.reason,
        "node": r.node,
        "upid": r.upid,
        "ha_upid": r.ha_upid,
        "still_running": r.still_running,
        "stage": r.stage_index,
        "predicted_start_s": round(start, 3),
        "predicted_end_s": round(end, 3),
        "predicted_downtime_ms": r.move.predicted_downtime_ms,
        "task_start": r.task_start,
        "task_duration_s": r.task_duration_s,
        "downtime_ms": r.downtime_ms,
        "wall_start_s": None if r.wall_start_s is None else round(r.wall_start_s, 3),
        "wall_end_s": None if r.wall_end_s is None else round(r.wall_end_s, 3),
        "attempts": [{"target": a.target, "reason": a.reason, "upid": a.upid} for a in r.attempts],
        "resumed": r.resumed,
    }


def report_data(report: RunReport) -> dict[str, Any]:
    """Everything in the report as plain data (``--report FILE.json``, ``-o json``)."""
    window = report.task_window
    return {
        "run": report.run_id,
        "plan": report.plan_name,
        "source": report.plan_source,
        "command": report.command,
        "exit_code": report.exit_code,
        "succeeded": report.succeeded,
        "refused": report.refused or None,
        "interrupted": report.interrupted,
        "resumed": report.resumed,
        "stopped_reason": report.stopped_reason or None,
        "journal": report.journal_path,
        "summary": report.summary_counts(),
        "makespan_s": round(report.makespan_s, 3),
        "predicted_makespan_s": round(report.predicted_makespan_s, 3),
        "wall_duration_s": round(report.wall_duration_s, 3),
        "first_task_start": window[0] if window else None,
        "max_downtime_ms": report.max_downtime_ms,
        "moves": [_result_data(report, r) for r in report.results],
        "blocked": [
            {"vmid": b.vmid, "reason": b.reason, "finding": b.finding_id} for b in report.blocked
        ],
        "hooks": [
            {
                "stage": h.stage_index,
                "label": h.label,
                "node": h.node,
                "argv": list(h.argv),
                "exit_code": h.exit_code,
                "timed_out": h.timed_out,
                "duration_s": round(h.duration_s, 3),
                "ok": h.ok,
                "skipped": h.skipped,
                "reason": h.reason or None,
                "output_tail": h.output_tail,
            }
            for h in report.hooks
        ],
        "node_waits": [
            {
                "stage": w.stage_index,
                "node": w.node,
                "ok": w.ok,
                "waited_s": round(w.waited_s, 3),
                "reason": w.reason or None,
            }
            for w in report.node_waits
        ],
        "left_running": list(report.abandoned_upids),
        "notes": list(report.notes),
    }


# --------------------------------------------------------------------------------------------
# summary


def _headline(report: RunReport) -> str:
    c = report.summary_counts()
    parts = [f"{c['moved']} moved", f"{c['skipped']} skipped", f"{c['failed']} failed"]
    if c["not_started"]:
        parts.append(f"{c['not_started']} not started")
    if c["left_running"]:
        parts.append(f"{c['left_running']} left running")
    parts.append(f"{c['blocked']} blocked")
    if c["hooks_failed"]:
        parts.append(f"{c['hooks_failed']} hook(s) failed")
    return ", ".join(parts)


def _timing_line(report: RunReport) -> str:
    text = f"makespan {_secs(report.makespan_s)} (predicted {_secs(report.predicted_makespan_s)})"
    text += f", run took {_secs(report.wall_duration_s)}"
    restarts = [r for r in report.results if r.downtime_ms is not None and _restarted(r)]
    pauses = [
        r.downtime_ms for r in report.results if r.downtime_ms is not None and not _restarted(r)
    ]
    text += f", max downtime {_ms(max(pauses) if pauses else None)}"
    if restarts:
        longest = max(r.downtime_ms or 0.0 for r in restarts)
        text += f", longest container restart {duration(longest / 1000.0)}"
    return text


def _restarted(r: MoveResult) -> bool:
    return r.move.options.restart or r.move.kind == "lxc"


def _problems(report: RunReport) -> list[tuple[str, str, str]]:
    """(what, status, reason) for every move or step that did not succeed, and blocked guests."""
    rows: list[tuple[str, str, str]] = []
    for r in report.results:
        if r.status in ("failed", "not-started", "left-running"):
            rows.append((_what(r), r.status, r.reason))
        elif r.attempts:
            tried = "; ".join(f"{a.target}: {a.reason}" for a in r.attempts)
            rows.append((_what(r), f"{r.status} (re-planned)", f"earlier attempts: {tried}"))
    for b in report.blocked:
        rows.append((f"guest {b.vmid}", "blocked", b.reason))
    for h in report.hooks:
        if not h.ok:
            rows.append((f"hook {h.label}", "failed", h.reason))
    for w in report.node_waits:
        if not w.ok:
            rows.append((f"node {w.node}", "not back", w.reason))
    return rows


def _grouped(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Problems with the same status and reason as one row naming all of them (a run that
    stopped early would otherwise repeat one sentence for every move it did not start)."""
    order: dict[tuple[str, str], list[str]] = {}
    for what, status, reason in rows:
        order.setdefault((status, reason), []).append(what)
    grouped = []
    for (status, reason), whats in order.items():
        if len(whats) == 1:
            grouped.append((whats[0], status, reason))
        else:
            shown = ", ".join(whats[:8]) + (f" and {len(whats) - 8} more" if len(whats) > 8 else "")
            grouped.append((f"{len(whats)} x ({shown})", status, reason))
    return grouped


def summary_lines(report: RunReport) -> list[str]:
    """The summary as plain lines (non-terminal output)."""
    lines = [f"summary: {_headline(report)}", _timing_line(report)]
    if report.refused:
        lines.append(f"refused before anything started: {report.refused}")
    for what, status, reason in _grouped(_problems(report)):
        lines.append(f"  {status}: {what}: {reason}")
    if report.abandoned_upids:
        lines.append("still running (left at the operator's request):")
        lines.extend(f"  {u}" for u in report.abandoned_upids)
    if report.stopped_reason and not report.refused:
        lines.append(f"stopped early: {report.stopped_reason}")
    if report.journal_path:
        lines.append(f"journal: {report.journal_path}")
    return lines


def summary_renderable(report: RunReport) -> RenderableType:
    """The end-of-run summary: one row per move, then what went wrong and the timings."""
    rows: list[list[Cell]] = []
    for r in report.results:
        route = f"{r.move.source} -> {r.move.target}"
        if r.original_target and r.original_target != r.move.target:
            route += f" (was {r.original_target})"
        rows.append(
            [
                r.move.id,
                _what(r),
                route,
                Text(r.status, style=STATUS_STYLE.get(r.status, "")),
                _secs(r.task_duration_s),
                interruption(r),
                r.reason,
            ]
        )
    for b in report.blocked:
        rows.append(
            ["-", f"guest {b.vmid}", "-", Text("blocked", style="yellow"), "-", "-", b.reason]
        )
    cols = (
        Col("move", keep=20),
        Col("guest"),
        Col("route", keep=90, wrap=True),
        Col("result"),
        Col("task", keep=70),
        Col("downtime", keep=80),
        Col("why", keep=95, wrap=True, min_width=20),
    )
    table = FitTable(cols, rows, title=f"Run {report.run_id}: {report.plan_name}", heavy=True)
    parts: list[RenderableType] = [table, Text(_headline(report), style="bold")]
    parts.append(Text(_timing_line(report)))
    for h in report.hooks:
        style = "green" if h.ok else "red"
        state = "skipped (done before)" if h.skipped else ("ok" if h.ok else h.reason)
        parts.append(Text(f"hook {h.label} on {h.node or '-'}: {state}", style=style))
    for w in report.node_waits:
        if not w.ok:
            parts.append(Text(f"node {w.node}: {w.reason}", style="red"))
    if report.abandoned_upids:
        parts.append(Text("Still running (left at your request):", style="magenta"))
        parts.extend(Text(f"  {u}") for u in report.abandoned_upids)
    if report.refused:
        parts.append(Text(f"Refused before anything started: {report.refused}", style="red"))
    elif report.stopped_reason:
        parts.append(Text(f"Stopped early: {report.stopped_reason}", style="yellow"))
    if report.journal_path:
        parts.append(Text(f"journal: {report.journal_path}", style="dim"))
    return Group(*parts)


# --------------------------------------------------------------------------------------------
# Markdown and JUnit


def _md_cell(text: object) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def report_markdown(report: RunReport) -> str:
    """``--report FILE.md``: headline, timings, a table of moves, problems, hooks."""
    out = [
        f"# pvetool run {report.run_id}: {report.plan_name}",
        "",
        f"- command: `{report.command or '-'}`",
        f"- result: **{'succeeded' if report.succeeded else 'did not succeed'}** "
        f"(exit code {report.exit_code})",
        f"- {_headline(report)}",
        f"- {_timing_line(report)}",
    ]
    if report.refused:
        out.append(f"- refused before anything started: {_md_cell(report.refused)}")
    elif report.stopped_reason:
        out.append(f"- stopped early: {report.stopped_reason}")
    if report.journal_path:
        out.append(f"- journal: `{report.journal_path}`")
    out += [
        "",
        "## Moves",
        "",
        "| move | guest | from | to | result | predicted | task | downtime | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.results:
        start, end = report.predicted_span(r)
        out.append(
            "| "
            + " | ".join(
                _md_cell(x)
                for x in (
                    r.move.id,
                    _what(r),
                    r.move.source,
                    r.move.target,
                    r.status,
                    _secs(end - start),
                    _secs(r.task_duration_s),
                    interruption(r),
                    r.reason,
                )
            )
            + " |"
        )
    problems = _problems(report)
    if problems:
        out += ["", "## Problems", ""]
        out += [
            f"- **{status}** {what}: {_md_cell(reason)}"
            for what, status, reason in _grouped(problems)
        ]
    if report.hooks:
        out += ["", "## Hooks", ""]
        for h in report.hooks:
            state = "ok" if h.ok else h.reason
            out.append(f"- `{' '.join(h.argv)}` ({h.label}, {h.node or '-'}): {state}")
    if report.abandoned_upids:
        out += ["", "## Left running", ""] + [f"- `{u}`" for u in report.abandoned_upids]
    return "\n".join(out) + "\n"


def report_junit(report: RunReport) -> str:
    """``--junit FILE.xml``: one testcase per move (and hook); failures carry the reason."""
    refused = 1 if report.refused else 0
    suite = ET.Element(
        "testsuite",
        name=f"pvetool {report.plan_name}",
        tests=str(len(report.results) + len(report.hooks) + len(report.blocked) + refused),
        failures=str(
            sum(1 for r in report.results if not r.ok)
            + len(report.hooks_failed)
            + len(report.blocked)
            + refused
        ),
        skipped=str(len(report.skipped)),
        time=f"{report.wall_duration_s:.3f}",
    )
    if report.refused:
        case = ET.SubElement(
            suite, "testcase", classname=f"pvetool.{report.plan_name}", name="plan"
        )
        ET.SubElement(case, "failure", message=report.refused, type="refused").text = report.refused
    for r in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"pvetool.{report.plan_name}",
            name=f"{r.move.id} {_what(r)} {r.move.source} -> {r.move.target}",
            time=f"{(r.task_duration_s or 0.0):.3f}",
        )
        if r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.reason)
        elif not r.ok:
            failure = ET.SubElement(case, "failure", message=r.reason, type=r.status)
            failure.text = r.reason + (f"\ntask: {r.upid}" if r.upid else "")
    for b in report.blocked:
        case = ET.SubElement(
            suite, "testcase", classname=f"pvetool.{report.plan_name}", name=f"guest {b.vmid}"
        )
        ET.SubElement(case, "failure", message=b.reason, type="blocked").text = b.reason
    for h in report.hooks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"pvetool.{report.plan_name}.hooks",
            name=f"{h.label} {h.node or ''}".strip(),
            time=f"{h.duration_s:.3f}",
        )
        if not h.ok:
            ET.SubElement(case, "failure", message=h.reason, type="hook").text = h.output_tail
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode")
