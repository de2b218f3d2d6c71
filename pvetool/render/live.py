"""Live views of a run: what an operator sees while the executor works.

Each view is an `Observer` (called with one `pvetool.model.events` event at a time, serialised
by the executor) and never blocks the run:

- `PlainView`: one timestamped line per event (no terminal, or output piped into a log);
- `JsonView`: one JSON object per line (``-o json``), progress every 10 %;
- `RichView`: live bars on a terminal, one per running migration (bytes, PVE's own rate, ETA)
  and one overall; finished moves and other events scroll above them.

Every command that runs migrations (drain, undrain, rebalance, plan apply, migrate) uses these.
Imports: the standard library, rich, `pvetool.model` and `pvetool.render` siblings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Task as ProgressTask
from rich.progress_bar import ProgressBar
from rich.table import Column
from rich.text import Text

from pvetool.model import Move
from pvetool.model.events import (
    Event,
    HookFinished,
    HookStarted,
    Interrupt,
    MoveFinished,
    MoveProgressed,
    MoveReplanned,
    MoveStarted,
    NodeWaited,
    Notice,
    RunFinished,
    RunStarted,
    StageStarted,
)
from pvetool.render.fit import short_upid
from pvetool.render.formats import document
from pvetool.render.report import move_line

__all__ = ["JsonView", "PlainView", "RichView", "interrupt_text"]

Echo = Callable[[str], None]


def interrupt_text(event: Interrupt) -> str:
    """What a Ctrl-C did, in one sentence."""
    if event.level == 1:
        return (
            f"interrupted: starting no new migrations; waiting for {len(event.running)} running "
            "one(s) to finish (Ctrl-C again to leave them running)"
        )
    upids = ", ".join(u for _, u in event.running if u) or "none"
    return f"interrupted again: leaving {len(event.running)} migration(s) running: {upids}"


def _percent_step(event: MoveProgressed, step: int) -> int | None:
    if not event.total_bytes:
        return None
    return int(100 * event.transferred_bytes / event.total_bytes) // step * step


class PlainView:
    """One line per event (no terminal, or -o table piped into a log)."""

    def __init__(self, echo: Echo) -> None:
        self._echo = echo
        self._shown: dict[str, int] = {}

    def _line(self, text: str) -> None:
        self._echo(f"{time.strftime('%H:%M:%S')} {text}")

    def __call__(self, event: Event) -> None:
        if isinstance(event, MoveProgressed):
            pct = _percent_step(event, 25)
            if pct is not None and self._shown.get(event.move.id, -1) < pct < 100:
                self._shown[event.move.id] = pct
                self._line(f"progress {event.move.vmid}: {pct}% of {event.phase}")
            return
        text = self._text(event)
        if text is not None:
            self._line(text)

    @staticmethod
    def _text(event: Event) -> str | None:
        if isinstance(event, RunStarted):
            verb = "resuming" if event.resumed else "run"
            journal = f", journal {event.journal_path}" if event.journal_path else ""
            return (
                f"{verb} {event.run_id}: {event.plan.name}, {len(event.plan.moves)} moves{journal}"
            )
        if isinstance(event, StageStarted):
            return f"stage {event.index + 1}: {event.stage.kind} {event.stage.label}"
        if isinstance(event, MoveStarted):
            m = event.move
            verb = "attached to" if event.attached else "started"
            return f"{verb} {m.vmid} {m.name} {m.source} -> {m.target}: {event.upid}"
        if isinstance(event, MoveFinished):
            return move_line(event.result)
        if isinstance(event, MoveReplanned):
            to = event.new_target or "nowhere"
            return f"re-planned {event.move.vmid}: {event.old_target} -> {to} ({event.reason})"
        if isinstance(event, HookStarted):
            return f"hook {event.label} on {event.node}: {' '.join(event.argv)}"
        if isinstance(event, HookFinished):
            hook = event.result
            return f"hook {hook.label} on {hook.node}: {'ok' if hook.ok else hook.reason}"
        if isinstance(event, NodeWaited):
            w = event.result
            return f"node {w.node}: " + (f"online after {w.waited_s:.0f} s" if w.ok else w.reason)
        if isinstance(event, Interrupt):
            return interrupt_text(event)
        if isinstance(event, Notice):
            return event.message
        return None


def _move_data(move: Move) -> dict[str, Any]:
    return {
        "move": move.id,
        "vmid": move.vmid,
        "name": move.name,
        "source": move.source,
        "target": move.target,
    }


def _json_fields(event: Event) -> tuple[str, dict[str, Any]] | None:
    """The JSON line of an event (progress aside): its name and its fields."""
    if isinstance(event, RunStarted):
        return "run-start", {
            "run": event.run_id,
            "plan": event.plan.name,
            "moves": len(event.plan.moves),
            "journal": event.journal_path,
            "resumed": event.resumed,
        }
    if isinstance(event, StageStarted):
        return "stage", {"index": event.index, "kind": event.stage.kind, "label": event.stage.label}
    if isinstance(event, MoveStarted):
        return "move-start", {
            **_move_data(event.move),
            "upid": event.upid,
            "attached": event.attached,
        }
    if isinstance(event, MoveFinished):
        r = event.result
        return "move-end", {
            **_move_data(r.move),
            "status": r.status,
            "reason": r.reason,
            "upid": r.upid,
            "node": r.node,
            "downtime_ms": r.downtime_ms,
            "task_duration_s": r.task_duration_s,
        }
    if isinstance(event, MoveReplanned):
        return "replan", {
            **_move_data(event.move),
            "old_target": event.old_target,
            "new_target": event.new_target,
            "reason": event.reason,
        }
    return _json_other(event)


def _json_other(event: Event) -> tuple[str, dict[str, Any]] | None:
    if isinstance(event, HookStarted):
        return "hook-start", {"label": event.label, "node": event.node, "argv": list(event.argv)}
    if isinstance(event, HookFinished):
        hook = event.result
        return "hook-end", {
            "label": hook.label,
            "node": hook.node,
            "ok": hook.ok,
            "exit_code": hook.exit_code,
            "reason": hook.reason or None,
        }
    if isinstance(event, NodeWaited):
        w = event.result
        return "node-wait", {
            "node": w.node,
            "ok": w.ok,
            "waited_s": round(w.waited_s, 3),
            "reason": w.reason or None,
        }
    if isinstance(event, Interrupt):
        running = [{"vmid": m.vmid, "upid": u} for m, u in event.running]
        return "interrupt", {"level": event.level, "running": running}
    if isinstance(event, Notice):
        return "notice", {"message": event.message}
    return None


class JsonView:
    """JSON lines on stdout, one object per event (progress every 10 %)."""

    def __init__(self, echo: Echo) -> None:
        self._echo = echo
        self._shown: dict[str, int] = {}

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        line = document("event", {"event": name, "t": round(time.time(), 3), **data})
        self._echo(json.dumps(line, default=str))

    def __call__(self, event: Event) -> None:
        if isinstance(event, MoveProgressed):
            pct = _percent_step(event, 10)
            if pct is not None and pct > self._shown.get(event.move.id, -1):
                self._shown[event.move.id] = pct
                self._emit(
                    "move-progress",
                    {
                        "move": event.move.id,
                        "vmid": event.move.vmid,
                        "transferred_bytes": event.transferred_bytes,
                        "total_bytes": event.total_bytes,
                        "rate_bps": event.rate_bps,
                        "phase": event.phase,
                    },
                )
            return
        line = _json_fields(event)
        if line is not None:
            self._emit(*line)


_STATUS_STYLE = {"moved": "green", "skipped": "cyan", "failed": "red"}


def iec(n_bytes: float) -> str:
    """Bytes in binary (IEC) units with one decimal, as PVE writes them: ``17.9 GiB``."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _counting(task: ProgressTask) -> bool:
    """Whether the bar counts towards a known total (not waiting, not re-sending memory)."""
    return task.total is not None and not task.fields.get("resending")


class _Bar(BarColumn):
    """The bar; it pulses instead of standing full while memory is sent again."""

    def render(self, task: ProgressTask) -> ProgressBar:
        if _counting(task):
            return super().render(task)
        return ProgressBar(
            total=None,
            width=None if self.bar_width is None else max(1, self.bar_width),
            pulse=True,
            animation_time=task.get_time(),
            style=self.style,
            pulse_style=self.pulse_style,
        )


class _BytesColumn(ProgressColumn):
    """``5.2 GiB / 16.0 GiB`` in IEC units; while no byte count is known (the HA manager has
    not started the task yet, a container restarts) or memory is sent again, the phase in
    words instead of ``0/?`` or ``17.9/16.0``."""

    def render(self, task: ProgressTask) -> Text:
        if not _counting(task):
            return Text(str(task.fields.get("phase") or "waiting"), style="dim")
        return Text(f"{iec(task.completed)} / {iec(task.total or 0)}", style="green")


class _EtaColumn(ProgressColumn):
    """Time left once PVE's byte counts allow an estimate; nothing before (never ``-:--:--``)."""

    def render(self, task: ProgressTask) -> Text:
        left = task.time_remaining
        if not _counting(task) or left is None:
            return Text("")
        minutes, seconds = divmod(int(left), 60)
        return Text(f"{minutes}:{seconds:02d} left", style="cyan")


class RichView:
    """Live bars on a terminal: one per running migration (bytes, rate, ETA) and an overall
    bar; finished moves and other events scroll above them."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.overall = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.moves = Progress(
            TextColumn("  {task.description}", table_column=Column(no_wrap=True)),
            _Bar(bar_width=24),  # room for the byte counts and the rate at 80 columns
            _BytesColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[rate]}"),  # PVE's own rate from the task log (MiB/s)
            _EtaColumn(),
            console=console,
        )
        self.live = Live(Group(self.overall, self.moves), console=console, refresh_per_second=8)
        self._overall_task: TaskID | None = None
        self._bars: dict[str, TaskID] = {}

    def __enter__(self) -> RichView:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """The bars stopped while a question is asked on the terminal."""
        self.live.stop()
        try:
            yield
        finally:
            self.live.start()

    def _print(self, text: str, style: str = "") -> None:
        self.live.console.print(Text(text, style=style))

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            verb = "Resuming" if event.resumed else "Running"
            self._overall_task = self.overall.add_task(
                f"{verb} {event.plan.name}", total=len(event.plan.moves) or None
            )
            if event.journal_path:
                self._print(f"journal: {event.journal_path}", "dim")
        elif isinstance(event, MoveStarted):
            m = event.move
            label = f"{m.vmid} {m.name} {m.source}\u2192{m.target}"
            waiting = "restart" if m.options.restart else "waiting for PVE"
            self._bars[m.id] = self.moves.add_task(
                label, total=None, rate="", phase=waiting, resending=False
            )
            verb = "attached to" if event.attached else "started"
            # the UPID's node and process id: enough to find the task; -o json has it whole
            self._print(f"{verb} {m.vmid} {m.name}: task {short_upid(event.upid or '-')}", "dim")
        elif isinstance(event, MoveProgressed):
            bar = self._bars.get(event.move.id)
            if bar is not None:
                rate = f"{event.rate_bps / 2**20:.0f} MiB/s" if event.rate_bps else ""
                total = event.total_bytes
                # A live migration re-sends the memory its guest dirtied meanwhile: more bytes
                # than its RAM, and no total left to count to (the bar then pulses).
                resending = total is not None and event.transferred_bytes > total
                phase = event.phase
                if resending:
                    phase = f"{iec(event.transferred_bytes)} sent (RAM {iec(total or 0)})"
                self.moves.update(
                    bar,
                    completed=event.transferred_bytes,
                    total=total,
                    rate=rate,
                    phase=phase,
                    resending=resending,
                )
        elif isinstance(event, MoveFinished):
            self._finished(event)
        elif isinstance(event, RunFinished):
            for bar in list(self._bars.values()):
                self.moves.remove_task(bar)
            self._bars.clear()
        else:
            self._other(event)

    def _finished(self, event: MoveFinished) -> None:
        r = event.result
        bar = self._bars.pop(r.move.id, None)
        if bar is not None:
            self.moves.remove_task(bar)
        if self._overall_task is not None and r.status != "not-started":
            # moves that never started are not progress: after a Ctrl-C the bar says 2/6
            self.overall.advance(self._overall_task)
        self._print(move_line(r), _STATUS_STYLE.get(r.status, "yellow"))

    def _other(self, event: Event) -> None:
        if isinstance(event, StageStarted):
            self._print(f"stage {event.index + 1}: {event.stage.label}", "bold")
        elif isinstance(event, MoveReplanned):
            to = event.new_target or "no other node"
            self._print(
                f"re-planned {event.move.vmid}: {event.old_target} \u2192 {to} ({event.reason})",
                "yellow",
            )
        elif isinstance(event, HookStarted):
            self._print(f"hook {event.label} on {event.node}: {' '.join(event.argv)}")
        elif isinstance(event, HookFinished):
            hook = event.result
            self._print(
                f"hook {hook.label}: {'ok' if hook.ok else hook.reason}",
                "green" if hook.ok else "red",
            )
        elif isinstance(event, NodeWaited):
            w = event.result
            text = f"node {w.node} is back ({w.waited_s:.0f} s)" if w.ok else w.reason
            self._print(text, "green" if w.ok else "red")
        elif isinstance(event, Interrupt):
            self._print(interrupt_text(event), "magenta")
        elif isinstance(event, Notice):
            self._print(event.message)
