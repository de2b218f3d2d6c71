"""Every view at 80 and 120 columns: no line wider than the terminal, no cell that splits a word
or a number (`8.0 / GiB`, `moderat / e`), prose wrapped at word boundaries on a terminal."""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterator

import pytest
from rich.console import Console, Group, RenderableType
from rich.text import Text

from pvetool.api import PveClient
from pvetool.api.overview import ClusterOverview, fetch_overview
from pvetool.emulator.clusterfile import load_cluster
from pvetool.emulator.server import Emulator
from pvetool.model import MoveResult, RunReport
from pvetool.model.events import MoveProgressed, MoveStarted, RunStarted
from pvetool.planner.build import build_plan, drain_spec
from pvetool.planner.loader import load_plan
from pvetool.render.fit import Col, FitTable, short_upid
from pvetool.render.live import RichView
from pvetool.render.plan import limited_by, matrix_renderable, plan_renderable
from pvetool.render.report import summary_renderable
from pvetool.render.status import status_renderable
from pvetool.render.terminal import SafeConsole
from pvetool.settings import load_settings
from tests.emu import START_EPOCH
from tests.unit.planner.planner_support import ROOT, lab

WIDTHS = (80, 120)
UPID = "UPID:pve1:0004631F:0A1B2C3D:6750A1B2:qmigrate:103:root@pam!ops:"


@functools.cache
def _overview() -> ClusterOverview:
    emu = Emulator(load_cluster("lab"), speed=0.0, start_epoch_s=START_EPOCH).start()
    try:
        with PveClient(load_settings(env=emu.env(), config_path=None)) as client:
            return fetch_overview(client)
    finally:
        emu.stop()


def _report() -> RunReport:
    plan = build_plan(drain_spec(["pve1"]), lab())
    results = []
    for n, move in enumerate(plan.moves):
        status = ("moved", "failed", "not-started")[n % 3]
        results.append(
            MoveResult(
                move,
                status,  # type: ignore[arg-type]
                reason="" if status == "moved" else "online migrate failure at 40 % of RAM",
                upid=UPID,
                node=move.target if status == "moved" else move.source,
                task_duration_s=61.4,
                downtime_ms=25_000.0 if move.kind == "lxc" else 81.0,
            )
        )
    return RunReport(
        "20261203T140843Z-d42a86", plan.name, "<command line>", "drain", tuple(results)
    )


def _views() -> dict[str, RenderableType]:
    rolling = load_plan(ROOT / "playbooks" / "rolling-maintenance.yaml")
    return {
        "status": status_renderable(_overview()),
        "dry-run": plan_renderable(build_plan(drain_spec(["pve1"]), lab())),
        "dry-run-disks": plan_renderable(
            build_plan(drain_spec(["pve1"], with_local_disks=True), lab())
        ),
        "rolling": plan_renderable(build_plan(rolling, lab())),
        "check": matrix_renderable(build_plan(drain_spec(["pve2"]), lab())),
        "summary": summary_renderable(_report()),
    }


def _tables(renderable: RenderableType) -> Iterator[FitTable]:
    if isinstance(renderable, FitTable):
        yield renderable
    elif isinstance(renderable, Group):
        for part in renderable.renderables:
            yield from _tables(part)


def _render(renderable: RenderableType, width: int) -> list[str]:
    console = SafeConsole(
        file=io.StringIO(), width=width, force_terminal=True, color_system=None, record=True
    )
    console.print(renderable)
    return console.export_text().splitlines()


def _words(cell: str) -> Iterator[str]:
    # A number with its decimals (16.0), a word with its hyphen (ci-runner), a UPID's pieces.
    yield from (w for w in re.split(r"\s+", cell) if w)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(
    "name", ["status", "dry-run", "dry-run-disks", "rolling", "check", "summary"]
)
def test_no_line_is_wider_and_no_cell_splits_a_word(name: str, width: int) -> None:
    view = _views()[name]
    lines = _render(view, width)
    assert lines, name
    too_wide = [line for line in lines if len(line) > width]
    assert not too_wide, f"{name} at {width}: {too_wide[:3]}"
    rendered = "\n".join(lines)
    tables = list(_tables(view))
    assert tables, f"{name} has no fitted table"
    for table in tables:
        printed = table.printed()
        assert printed, f"{name}: a table printed no rows"
        for row in printed:
            for cell in row:
                for word in _words(cell):
                    # each word is on one line, whole; a word cut by the column would not be
                    assert word in rendered, f"{name} at {width}: '{word}' split in {row}"


@pytest.mark.parametrize("width", WIDTHS)
def test_prose_wraps_at_word_boundaries_on_a_terminal(width: int) -> None:
    plan = build_plan(drain_spec(["pve1"], with_local_disks=True), lab())
    lines = _render(plan_renderable(plan), width)
    text = " ".join(" ".join(lines).split())
    for long_line in ("assumptions: link: 10 Gbit/s per node", "fastest possible:"):
        assert long_line in text
    words = set(" ".join(lines).split())
    for token in ("sha256:", "RAM", "sent:", "headroom:"):
        assert any(w.startswith(token) or w == token for w in words), token


def test_narrow_tables_keep_essential_columns_and_drop_the_others() -> None:
    lines80 = "\n".join(_render(status_renderable(_overview()), 80))
    lines120 = "\n".join(_render(status_renderable(_overview()), 120))
    for must in ("vmid", "name", "memory GiB", "used GiB", "allocated GiB", "tmpl-debian12"):
        assert must in lines80
    assert "tags" in lines120 and "monitoring" in lines120
    assert "8.0 GiB" not in lines80  # the unit is in the header, never in a cell


def test_container_moves_say_restart_and_bounds_are_in_words() -> None:
    plan = build_plan(drain_spec(["pve1"]), lab())
    text = " ".join(" ".join(_render(plan_renderable(plan), 120)).split())
    assert re.search(r"restart \d+s", text)
    assert "LB_" not in text
    assert re.search(r"fastest possible: \S+, limited by ", text)
    assert limited_by("uplink of pve2") == "pve2's uplink"
    assert limited_by("stream of 103 (db1)") == "the migration of 103 (db1) alone"
    summary = " ".join(" ".join(_render(summary_renderable(_report()), 120)).split())
    assert "restart 25s" in summary and "25000 ms" not in summary


def test_short_upids_on_a_terminal() -> None:
    assert short_upid(UPID) == "pve1:0004631F"
    assert short_upid("not a upid") == "not a upid"
    table = FitTable([Col("task", short=short_upid, keep=100)], [[UPID]])
    lines = _render(table, 40)
    assert "pve1:0004631F" in "\n".join(lines) and all(len(line) <= 40 for line in lines)


def test_progress_bars_in_iec_units_never_past_their_end() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None, record=True)
    view = RichView(console)
    plan = build_plan(drain_spec(["pve1"]), lab())
    move = plan.moves[0]
    view(RunStarted(plan, "run", None, False))
    view(MoveStarted(move, UPID, False))
    waiting = Text.from_ansi(_plain_progress(view, console))
    assert "waiting for PVE" in waiting.plain or "restart" in waiting.plain
    gib = 1024**3
    view(MoveProgressed(move, int(5.2 * gib), 16 * gib, 558 * 2**20, "memory"))
    text = _plain_progress(view, console)
    assert "5.2 GiB / 16.0 GiB" in text and "558 MiB/s" in text
    view(MoveProgressed(move, int(17.9 * gib), 16 * gib, 558 * 2**20, "memory"))
    text = _plain_progress(view, console)
    assert "17.9 GiB sent (RAM 16.0 GiB)" in text
    assert "17.9 GiB / 16.0 GiB" not in text and "left" not in text  # never past the end
    assert "GB/s" not in text and "TB/s" not in text and "?" not in text


def _plain_progress(view: RichView, console: Console) -> str:
    with console.capture() as capture:
        console.print(view.moves.get_renderable())
    return capture.get()
