"""An `ExecutionPlan` for people: rich tables, Markdown, and plain data for JSON.

`plan_renderable`: the moves stage by stage in the order they start (with predicted start, end
and downtime, why each guest goes where it goes, what it waits for), the hook / wait / pause
stages, every blocked guest with all its reasons, warnings, the predicted timeline (makespan,
the fastest possible time and which link or stream limits it), caps and assumptions. Every
table is a `FitTable`: it fits the terminal's width without splitting a word.
`matrix_renderable`: the check matrix (guest, blocked?, every reason per target).
`plan_data` is `plan_to_dict` (``plan show -o json`` can be read back by `plan_from_json`).

Pure functions of the plan (no I/O). Imports: rich, `pvetool.model`, `pvetool.plan_json`
and `pvetool.render.formats`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pvetool.model import Caps, ExecutionPlan, Finding, Move, Stage
from pvetool.plan_json import plan_to_dict
from pvetool.render.fit import Cell, Col, FitTable
from pvetool.render.formats import duration, gib, md_table

__all__ = [
    "matrix_data",
    "matrix_markdown",
    "matrix_renderable",
    "plan_data",
    "plan_markdown",
    "plan_renderable",
    "limited_by",
    "plan_summary",
]

_SEVERITY_STYLE = {"blocker": "bold red", "warning": "yellow", "info": "dim"}


def _mode(move: Move) -> str:
    o = move.options
    if o.online:
        text = "live"
        if o.with_local_disks:
            text += " + disks"
    elif o.restart:
        text = "restart"
    elif o.shutdown:
        text = "shutdown, offline"
    else:
        text = "offline"
    if o.ha:
        text += " (HA)"
    return text


def _downtime(move: Move) -> str:
    """The predicted interruption: a VM's pause at the switch-over (``81 ms``), or for a
    container moved by restart migration the time it is stopped (``restart 25s``)."""
    if move.predicted_downtime_ms is None:
        return "-"
    ms = move.predicted_downtime_ms
    if move.options.restart or move.kind == "lxc":
        return f"restart {duration(ms / 1000.0)}"
    return f"{ms:.0f} ms" if ms < 1000 else duration(ms / 1000.0)


def _guest(move: Move) -> str:
    return f"{move.vmid} {move.name}".strip()


def _after(move: Move) -> str:
    return ", ".join(a.split(":")[-1] for a in move.after) or "-"


def plan_summary(plan: ExecutionPlan) -> str:
    """One line: can it run, how many moves, blockers, warnings, predicted time."""
    n_moves = len(plan.moves)
    verdict = (
        "can run"
        if plan.can_run
        else f"CANNOT RUN: {len(plan.blockers)} blocker(s), {len(plan.blocked)} guest(s) blocked"
    )
    return (
        f"plan {plan.name}: {verdict}; {n_moves} migration(s) in "
        f"{sum(1 for s in plan.stages if s.kind == 'migrate')} migrate stage(s), "
        f"{len(plan.warnings)} warning(s), predicted {duration(plan.predicted_makespan_s)}"
        + (
            " plus hooks and waits"
            if any(s.kind in ("hook", "wait-node") for s in plan.stages)
            else ""
        )
    )


def _stage_title(i: int, total: int, stage: Stage) -> str:
    head = f"Stage {i}/{total} {stage.kind}: {stage.label}"
    if stage.kind == "migrate":
        head += (
            f" - {len(stage.moves)} migration(s), predicted {duration(stage.predicted_makespan_s)}"
        )
    elif stage.kind == "hook":
        head += (
            f" - runs {' '.join(stage.argv)} (PVETOOL_NODE={stage.node}, "
            f"timeout {duration(stage.timeout_s)})"
        )
    elif stage.kind in ("wait-node", "pause"):
        head += f" - up to {duration(stage.timeout_s)}" if stage.kind == "wait-node" else ""
    return head


def limited_by(bound_by: str) -> str:
    """The planner's name of the binding term in words: ``uplink of pve2`` -> ``pve2's
    uplink``, ``stream of 103 db1`` -> ``the migration of 103 db1 alone``."""
    for link in ("uplink", "downlink"):
        prefix = f"{link} of "
        if bound_by.startswith(prefix):
            return f"{bound_by[len(prefix) :]}'s {link}"
    if bound_by.startswith("stream of "):
        return f"the migration of {bound_by[len('stream of ') :]} alone"
    if bound_by.startswith("path "):  # a node pair's own (slower) path: ``path pve2 -> pve5``
        return f"the path {bound_by[len('path ') :]}"
    return bound_by


def _bounds_line(stage: Stage) -> str | None:
    """The stage's physical lower bound in words (docs/timing-model.md: LB_dirty, which counts
    the memory a running guest dirties again during its copy)."""
    b = stage.bounds
    if b is None or not stage.moves:
        return None
    return (
        f"fastest possible: {duration(b.lb_dirty_s)}, limited by {limited_by(b.bound_by)} "
        f"(every link used to the full; predicted {duration(stage.predicted_makespan_s)})"
    )


_MOVE_COLS = (
    Col("#", justify="right"),
    Col("guest"),
    Col("from -> to"),
    Col("how", keep=90, wrap=True, min_width=14),
    Col("memory GiB", keep=60, justify="right"),
    Col("sent GiB", keep=50, justify="right"),
    Col("start-end", keep=70),
    Col("downtime", keep=80),
    Col("after", keep=40, wrap=True),
)


def _moves_table(stage: Stage) -> FitTable:
    rows: list[list[Cell]] = []
    for n, m in enumerate(stage.moves, 1):
        rows.append(
            [
                str(n),
                Text(_guest(m)),
                Text(f"{m.source} -> {m.target}" + (" pinned" if m.pinned else "")),
                Text(_mode(m) + (f", {m.profile}" if m.profile else "")),
                _gib(m.memory_bytes),
                _gib(m.predicted_sent_bytes or m.send_bytes),
                f"{duration(m.predicted_start_s)}-{duration(m.predicted_end_s)}",
                _downtime(m),
                Text(_after(m)),
            ]
        )
    return FitTable(_MOVE_COLS, rows)


def _gib(n_bytes: float) -> str:
    """A number of GiB for a cell under a ``GiB`` header."""
    return f"{n_bytes / 1024**3:.1f}"


def _reasons(stage: Stage) -> Table:
    """Why each guest goes where it goes, and the targets it could not take: a grid, so that a
    long reason wraps under its own start (a hanging indent), not under the number."""
    grid = Table.grid(padding=(0, 1), pad_edge=False)
    grid.add_column(justify="right", no_wrap=True, min_width=4)
    grid.add_column()
    for n, m in enumerate(stage.moves, 1):
        grid.add_row(
            Text(f"{n}.", style="bold"),
            Text.assemble((f"{m.vmid} -> {m.target}: ", "bold"), m.reason),
        )
        for line in m.rejected:
            grid.add_row(Text("x", style="dim"), Text(line, style="dim"))
    return grid


def _short(f: Finding) -> str:
    """The finding's sentence without the guest's name (shown next to it already):
    "(pve3) bridge vmbr1 ... does not exist there." instead of "112 (cache1) cannot move ..."."""
    if f.vmid is None:
        return f.message
    text = f.message
    for marker in (f" cannot move to {f.target}: ", f" to {f.target}: ", ": "):
        head, sep, rest = text.partition(marker)
        label = re.fullmatch(rf"{f.vmid}( \([^)]*\))?", head)
        if sep and label and (marker == ": " or f.target):
            return f"({f.target}) {rest}" if f.target else rest
    return text


def _by_guest(findings: Iterable[Finding]) -> dict[int | None, list[Finding]]:
    out: dict[int | None, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.vmid, []).append(f)
    return out


def _findings_table(findings: Sequence[Finding], title: str) -> FitTable:
    cols = (Col("id"), Col("guest", keep=80), Col("target", keep=70), Col("what", wrap=True))
    rows: list[list[Cell]] = [
        [
            Text(f.id, style=_SEVERITY_STYLE.get(f.severity, "")),
            str(f.vmid) if f.vmid is not None else "-",
            Text(f.target or "-"),
            Text(f.message + (f" [{f.where}]" if f.where else "")),
        ]
        for f in findings
    ]
    return FitTable(cols, rows, title=title)


def _blocked_table(plan: ExecutionPlan) -> FitTable:
    by_guest = _by_guest(plan.blockers)
    rows: list[list[Cell]] = []
    for vmid in plan.blocked:
        reasons = Text()
        for f in by_guest.get(vmid, []):
            if reasons:
                reasons.append("\n")
            reasons.append(f.id, style="bold red")
            reasons.append(" " + _short(f))
        rows.append([str(vmid), reasons])
    return FitTable(
        (Col("guest"), Col("reasons", wrap=True)),
        rows,
        title=f"Blocked guests ({len(plan.blocked)}): they stay where they are",
    )


def caps_text(caps: Caps) -> str:
    """``4 in the cluster, 2 per source, 2 per target``; caps the sequencer chose limit only
    the moves that copy bytes (`Caps.copies_only`): ``2 copying per source``."""
    each = "copying " if caps.copies_only else ""
    return (
        f"{caps.cluster} in the cluster, {caps.per_source} {each}per source, "
        f"{caps.per_target} {each}per target"
    )


def plan_renderable(plan: ExecutionPlan) -> RenderableType:
    """The whole plan for a terminal."""
    parts: list[RenderableType] = []
    style = "bold green" if plan.can_run else "bold red"
    parts.append(Text(plan_summary(plan), style=style))
    parts.append(
        Text(
            f"source {plan.source}; caps: {caps_text(plan.caps)}; "
            f"on failure: {plan.on_failure}; task timeout {duration(plan.task_timeout_s)}; "
            f"cluster state {plan.fingerprint[:19]}",
            style="dim",
        )
    )
    total = len(plan.stages)
    for i, stage in enumerate(plan.stages, 1):
        parts.append(Text(""))
        parts.append(Text(_stage_title(i, total, stage), style="bold"))
        if stage.kind == "migrate":
            if stage.moves:
                parts.append(_moves_table(stage))
                parts.append(_reasons(stage))
                line = _bounds_line(stage)
                if line:
                    parts.append(Text(line, style="dim"))
            else:
                parts.append(Text("  nothing to move", style="dim"))
    blockers_without_guest = [
        f for f in plan.blockers if f.vmid is None or f.vmid not in plan.blocked
    ]
    if plan.blocked:
        parts += [Text(""), _blocked_table(plan)]
    if blockers_without_guest:
        parts += [Text(""), _findings_table(blockers_without_guest, "Blockers")]
    if plan.warnings:
        parts += [Text(""), _findings_table(plan.warnings, f"Warnings ({len(plan.warnings)})")]
    infos = [f for f in plan.findings if f.severity == "info"]
    if infos:
        parts += [Text(""), _findings_table(infos, "Notes")]
    parts += [Text(""), _timeline(plan)]
    if plan.assumptions:
        parts.append(
            Text(
                "assumptions: " + "; ".join(f"{k}: {v}" for k, v in plan.assumptions),
                style="dim",
            )
        )
    return Group(*parts)


def _timeline(plan: ExecutionPlan) -> Text:
    text = Text("Predicted timeline: ", style="bold")
    pieces = []
    for i, stage in enumerate(plan.stages, 1):
        if stage.kind == "migrate" and stage.moves:
            b = stage.bounds
            extra = f" (fastest possible {duration(b.lb_dirty_s)})" if b is not None else ""
            pieces.append(f"stage {i} {duration(stage.predicted_makespan_s)}{extra}")
        elif stage.kind == "pause":
            pieces.append(f"stage {i} pause {duration(stage.timeout_s)}")
        elif stage.kind in ("hook", "wait-node", "confirm"):
            pieces.append(f"stage {i} {stage.kind} (not predicted)")
    text.append("; ".join(pieces) if pieces else "nothing to do")
    text.append(f"; total {duration(plan.predicted_makespan_s)}")
    return text


# --------------------------------------------------------------------------------------------
# The check matrix


def _matrix_rows(plan: ExecutionPlan) -> list[dict[str, Any]]:
    moves: dict[int, list[Move]] = {}
    for m in plan.moves:
        moves.setdefault(m.vmid, []).append(m)
    by_guest = _by_guest(plan.findings)
    rejected = _by_guest(dict.fromkeys(plan.rejections))
    vmids = sorted({v for v in (*by_guest, *rejected, *moves) if v is not None})
    rows = []
    for vmid in vmids:
        move = moves.get(vmid)
        reasons = [
            {
                "id": f.id,
                "severity": f.severity,
                "target": f.target,
                "message": f.message,
                "short": _short(f),
            }
            for f in by_guest.get(vmid, [])
        ] + [
            {
                "id": f.id,
                "severity": "rejected",
                "target": f.target,
                "message": f.message,
                "short": _short(f),
            }
            for f in rejected.get(vmid, [])
        ]
        rows.append(
            {
                "vmid": vmid,
                "name": move[0].name if move else _name_from(by_guest.get(vmid, []), vmid),
                "blocked": vmid in plan.blocked,
                "source": move[0].source if move else None,
                "target": move[0].target if move else None,
                "moves": [{"id": m.id, "source": m.source, "target": m.target} for m in move or []],
                "reasons": reasons,
            }
        )
    return rows


def _name_from(findings: Sequence[Finding], vmid: int) -> str:
    for f in findings:
        prefix = f"{vmid} ("
        if f.message.startswith(prefix):
            return f.message[len(prefix) :].split(")", 1)[0]
    return ""


def matrix_data(plan: ExecutionPlan) -> dict[str, Any]:
    """The check matrix as plain data (``plan validate -o json``)."""
    return {
        "plan": plan.name,
        "can_run": plan.can_run,
        "blocked": list(plan.blocked),
        "blockers": len(plan.blockers),
        "warnings": len(plan.warnings),
        "cluster": [
            {"id": f.id, "severity": f.severity, "message": f.message}
            for f in plan.findings
            if f.vmid is None
        ],
        "guests": _matrix_rows(plan),
    }


def matrix_renderable(plan: ExecutionPlan) -> RenderableType:
    """Guest | blocked? | where it goes | every reason (blockers, warnings, rejected targets)."""
    rows: list[list[Cell]] = []
    for row in _matrix_rows(plan):
        reasons = Text()
        for r in row["reasons"]:
            if reasons:
                reasons.append("\n")
            severity = r["severity"]
            style = _SEVERITY_STYLE.get(severity, "dim")
            reasons.append(f"{r['id']}", style=style)
            label = "" if severity in ("blocker", "warning", "info") else " (target rejected)"
            reasons.append(f"{label} {r['short']}", style="" if not label else "dim")
        move = ", ".join(f"{m['source']} -> {m['target']}" for m in row["moves"]) or "stays"
        rows.append(
            [
                Text(f"{row['vmid']} {row['name']}".strip()),
                Text("BLOCKED", style="bold red") if row["blocked"] else Text("no", style="green"),
                Text(move),
                reasons,
            ]
        )
    cols = (Col("guest"), Col("blocked?"), Col("move", wrap=True), Col("reasons", wrap=True))
    table = FitTable(cols, rows)
    parts: list[RenderableType] = [
        Text(plan_summary(plan), style="bold green" if plan.can_run else "bold red")
    ]
    for f in plan.findings:
        if f.vmid is None:
            parts.append(Text(f"{f.id} {f.message}", style=_SEVERITY_STYLE.get(f.severity, "")))
    parts.append(table)
    return Group(*parts)


# --------------------------------------------------------------------------------------------
# Markdown and JSON


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def matrix_markdown(plan: ExecutionPlan) -> str:
    """The check matrix as Markdown (``check drain`` / ``plan validate -o markdown``)."""
    out = [f"# Check {_md(plan.name)}", "", f"**{_md(plan_summary(plan))}**", ""]
    for f in plan.findings:
        if f.vmid is None:
            out.append(f"- {f.severity} `{f.id}`: {_md(f.message)}")
    rows: list[list[object]] = []
    for row in _matrix_rows(plan):
        reasons = "; ".join(
            r["id"]
            + ("" if r["severity"] in ("blocker", "warning", "info") else " (target rejected)")
            + f" {r['short']}"
            for r in row["reasons"]
        )
        move = ", ".join(f"{m['source']} -> {m['target']}" for m in row["moves"]) or "stays"
        rows.append(
            [
                f"{row['vmid']} {row['name']}".strip(),
                "BLOCKED" if row["blocked"] else "no",
                move,
                reasons,
            ]
        )
    out += ["", *md_table(["guest", "blocked?", "move", "reasons"], rows)]
    return "\n".join(out) + "\n"


def plan_markdown(plan: ExecutionPlan) -> str:
    """The plan as a Markdown document (for a change request or a wiki)."""
    out = [f"# Plan {_md(plan.name)}", "", f"**{_md(plan_summary(plan))}**", ""]
    out.append(
        f"Source `{plan.source}`; caps {caps_text(plan.caps)}; on failure "
        f"`{plan.on_failure}`; state `{plan.fingerprint}`."
    )
    total = len(plan.stages)
    for i, stage in enumerate(plan.stages, 1):
        out += ["", f"## {_md(_stage_title(i, total, stage))}", ""]
        if stage.kind != "migrate":
            continue
        if not stage.moves:
            out.append("Nothing to move.")
            continue
        out.append(
            "| # | guest | from | to | how | memory | send | start | end | downtime | after | why |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n, m in enumerate(stage.moves, 1):
            cells = [
                str(n),
                _guest(m),
                m.source,
                m.target + (" (pinned)" if m.pinned else ""),
                _mode(m) + (f", {m.profile}" if m.profile else ""),
                gib(m.memory_bytes),
                gib(m.predicted_sent_bytes or m.send_bytes),
                duration(m.predicted_start_s),
                duration(m.predicted_end_s),
                _downtime(m),
                _after(m),
                m.reason,
            ]
            out.append("| " + " | ".join(_md(c) for c in cells) + " |")
        line = _bounds_line(stage)
        if line:
            out += ["", f"_{line}_"]
    if plan.blocked:
        out += ["", f"## Blocked guests ({len(plan.blocked)})", ""]
        by_guest = _by_guest(plan.blockers)
        for vmid in plan.blocked:
            out.append(f"- **{vmid}**")
            for f in by_guest.get(vmid, []):
                out.append(f"  - `{f.id}` {_md(f.message)}")
    other = [
        f for f in plan.findings if f.vmid is None or f.vmid not in plan.blocked or not f.blocks
    ]
    if other:
        out += ["", "## Findings", ""]
        for f in other:
            where = f" ({_md(f.where)})" if f.where else ""
            out.append(f"- {f.severity} `{f.id}`: {_md(f.message)}{where}")
    out += ["", "## Predicted timeline", "", _timeline(plan).plain]
    if plan.assumptions:
        out += ["", "Assumptions:", ""]
        out += [f"- {k}: {_md(v)}" for k, v in plan.assumptions]
    return "\n".join(out) + "\n"


def plan_data(plan: ExecutionPlan) -> dict[str, Any]:
    """Plain data for ``-o json``: exactly what `plan_from_json` reads back."""
    return plan_to_dict(plan)
