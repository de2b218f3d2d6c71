"""``--report FILE.html``: a self-contained page with the summary and an SVG timeline.

One timeline row per migration: the predicted bar (outlined) above the actual bar (filled,
coloured by outcome). Actual times are the tasks' start and duration on the cluster's clock,
counted from the first task's start; predicted times come from the plan. Inline CSS and SVG
only: no script, no font, no external resource, so the page opens offline and in mail clients.

Imports: the standard library, `pvetool.model`, `pvetool.render.report`.
"""

from __future__ import annotations

from html import escape

from pvetool.model import MoveResult, RunReport
from pvetool.render.formats import duration
from pvetool.render.report import report_data, summary_lines

__all__ = ["report_html"]

COLOURS = {
    "moved": "#2e9d4f",
    "skipped": "#3a8fb7",
    "failed": "#d64541",
    "not-started": "#c9a227",
    "left-running": "#8e44ad",
}
ROW_H = 26
LABEL_W = 260
CHART_W = 760
AXIS_H = 28

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.moved{color:#2e9d4f}.failed{color:#d64541}.skipped{color:#3a8fb7}
.not-started{color:#a8860f}.left-running{color:#8e44ad}
.legend span{display:inline-block;margin-right:1.2em}
.sw{display:inline-block;width:1em;height:.8em;margin-right:.3em;vertical-align:middle}
pre{background:#f7f7f7;padding:.6em;overflow:auto}
svg text{font-family:system-ui,sans-serif;font-size:11px}
"""


def _actual_span(r: MoveResult, t0: float | None) -> tuple[float, float] | None:
    end = r.task_end
    if t0 is None or r.task_start is None or end is None:
        return None
    return r.task_start - t0, end - t0


def _timeline_svg(report: RunReport) -> str:
    rows = [r for r in report.results if r.status != "not-started" or r.attempts]
    rows = rows or list(report.results)
    window = report.task_window
    t0 = window[0] if window else None
    horizon = 1.0
    for r in rows:
        horizon = max(horizon, report.predicted_span(r)[1])
        span = _actual_span(r, t0)
        if span is not None:
            horizon = max(horizon, span[1])
    scale = CHART_W / horizon
    height = AXIS_H + ROW_H * max(1, len(rows)) + 10
    width = LABEL_W + CHART_W + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="migration timeline">'
    ]
    # axis with ~8 ticks
    step = _nice_step(horizon / 8)
    tick = 0.0
    while tick <= horizon + 1e-9:
        x = LABEL_W + tick * scale
        out.append(
            f'<line x1="{x:.1f}" y1="{AXIS_H - 6}" x2="{x:.1f}" y2="{height - 6}" '
            'stroke="#e3e3e3"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{AXIS_H - 10}" text-anchor="middle">'
            f"{escape(duration(tick))}</text>"
        )
        tick += step
    for i, r in enumerate(rows):
        y = AXIS_H + i * ROW_H
        label = f"{r.move.vmid} {r.move.name} {r.move.source}\u2192{r.move.target}"
        out.append(f'<text x="4" y="{y + 16}">{escape(label[:40])}</text>')
        p_start, p_end = report.predicted_span(r)
        out.append(
            f'<rect x="{LABEL_W + p_start * scale:.1f}" y="{y + 3}" '
            f'width="{max(1.0, (p_end - p_start) * scale):.1f}" height="8" fill="none" '
            f'stroke="#777" stroke-dasharray="3,2"><title>predicted {escape(duration(p_start))}'
            f" \u2013 {escape(duration(p_end))}</title></rect>"
        )
        span = _actual_span(r, t0)
        colour = COLOURS.get(r.status, "#999")
        if span is not None:
            a_start, a_end = span
            out.append(
                f'<rect x="{LABEL_W + a_start * scale:.1f}" y="{y + 13}" '
                f'width="{max(2.0, (a_end - a_start) * scale):.1f}" height="9" '
                f'fill="{colour}"><title>{escape(r.status)} {escape(duration(a_start))}'
                f" \u2013 {escape(duration(a_end))}: {escape(r.reason or 'ok')}</title></rect>"
            )
        else:
            # No task ran (refused before it started, not started, taken from the journal):
            # a marker where it was to start, and what happened in words beside it, not only
            # in a tooltip.
            x = LABEL_W + p_start * scale
            words = f"{r.status}: {r.reason}" if r.reason else r.status
            out.append(
                f'<rect x="{x:.1f}" y="{y + 13}" width="9" height="9" fill="{colour}">'
                f"<title>{escape(words)}</title></rect>"
            )
            out.append(
                f'<text x="{x + 13:.1f}" y="{y + 21}" fill="{colour}">{escape(words[:90])}</text>'
            )
    out.append("</svg>")
    return "\n".join(out)


def _nice_step(raw: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if step >= raw:
            return float(step)
    return float(int(raw / 3600 + 1) * 3600)


def report_html(report: RunReport) -> str:
    """The whole HTML page (UTF-8 text)."""
    data = report_data(report)
    title = f"pvetool run {report.run_id}: {report.plan_name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<pre>" + escape("\n".join(summary_lines(report))) + "</pre>",
        "<h2>Timeline</h2>",
        '<p class="legend">'
        + "".join(
            f'<span><i class="sw" style="background:{c}"></i>{escape(s)}</span>'
            for s, c in COLOURS.items()
        )
        + '<span><i class="sw" style="border:1px dashed #777"></i>predicted</span></p>',
        _timeline_svg(report),
        "<h2>Moves</h2>",
        "<table><tr><th>move</th><th>guest</th><th>from</th><th>to</th><th>result</th>"
        "<th>task</th><th>downtime</th><th>reason</th><th>UPID</th></tr>",
    ]
    for m in data["moves"]:
        downtime = "-" if m["downtime_ms"] is None else f"{m['downtime_ms']:.0f} ms"
        if m["downtime_ms"] is not None and m["kind"] == "lxc":  # restart migration
            downtime = f"restart {duration(m['downtime_ms'] / 1000.0)}"
        task = "-" if m["task_duration_s"] is None else duration(m["task_duration_s"])
        parts.append(
            "<tr>"
            + "".join(
                f"<td>{escape(str(v))}</td>"
                for v in (m["move"], f"{m['vmid']} {m['name']}", m["source"], m["target"])
            )
            + f'<td class="{escape(m["status"])}">{escape(m["status"])}</td>'
            + f"<td>{escape(task)}</td><td>{escape(downtime)}</td>"
            + f"<td>{escape(m['reason'] or '')}</td><td><code>{escape(m['upid'] or '')}</code>"
            + "</td></tr>"
        )
    parts.append("</table>")
    if data["blocked"]:
        parts.append("<h2>Blocked</h2><ul>")
        parts += [f"<li>{b['vmid']}: {escape(b['reason'])}</li>" for b in data["blocked"]]
        parts.append("</ul>")
    if data["hooks"]:
        parts.append("<h2>Hooks</h2><ul>")
        for h in data["hooks"]:
            state = "ok" if h["ok"] else (h["reason"] or "failed")
            parts.append(
                f"<li><code>{escape(' '.join(h['argv']))}</code> ({escape(h['label'])}, "
                f"{escape(h['node'] or '-')}): {escape(state)}</li>"
            )
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
