"""`render_table` (pvetool/render/fit.py) yields exactly the segments rich's own `Table` does.

Random tables of fixed-width columns in the shapes `FitTable` builds (both box styles, titles,
wrapping and ellipsis columns, every justification) with cells that take both of its paths:
plain strings that fit, and the ones it leaves to rich (too long, wrapping prose, wide unicode,
empty, styled `Text`, markup, emoji codes, tabs and new lines, trailing spaces). A difference in
one segment's text or style fails, as does one in the printed bytes with and without colour.
"""

from __future__ import annotations

import random

import pytest
from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from pvetool.render.fit import Col, FitTable, render_table

_WORDS = [
    "pve1",
    "running",
    "stopped",
    "4.0",
    "101",
    "web-frontend-01",
    "database",
    "backup",
    "a",
    "ok",
    "migrate",
    "様々な",
    "名前",
    "ünïcödé",
    "x" * 17,
    "prod dc-east tier1",
    "",
    " ",
    "lead ",
    " trail",
    "[bold]marked[/]",
    "[not markup",
    ":smile:",
    "UPID:pve1:0004631F:0A1B2C3D",
    "tab\there",
    "two\nlines",
    "emoji 😀 here",
    "e\u0301",
    "zero\u200bwidth",
]


def _cell(rnd: random.Random) -> str | Text:
    words = [rnd.choice(_WORDS) for _ in range(rnd.choice([1, 1, 1, 2, 3, 5]))]
    text = " ".join(words)
    if rnd.random() < 0.1:
        return Text(text, style=rnd.choice(["green", "bold red", ""]))
    return text


def _table(rnd: random.Random) -> Table:
    heavy = rnd.random() < 0.5
    table = Table(
        title=rnd.choice([None, "Guests on pve1", "[b]T[/b]", "Nodes"]),
        title_justify="left",
        box=box.HEAVY_HEAD if heavy else box.SIMPLE_HEAD,
        show_edge=heavy,
        pad_edge=heavy,
    )
    count = rnd.randint(1, 6)
    for _ in range(count):
        wrap = rnd.random() < 0.3
        table.add_column(
            rnd.choice(["vmid", "name", "memory GiB", "tags", "HA", "", "様々"]),
            width=rnd.randint(1, 14),
            no_wrap=not wrap,
            overflow="fold" if wrap else "ellipsis",
            justify=rnd.choice(["left", "right", "center"]),
        )
    for _ in range(rnd.randint(0, 12)):
        table.add_row(*(_cell(rnd) for _ in range(count)))
    return table


def _consoles(width: int) -> list[Console]:
    return [
        Console(width=width, file=None, force_terminal=False, color_system=None),
        Console(width=width, force_terminal=True, color_system="truecolor"),
        Console(width=width, force_terminal=True, color_system="standard", safe_box=True),
        # as pvetool's SafeConsole: no markup, no emoji codes
        Console(width=width, force_terminal=True, markup=False, emoji=False),
    ]


def _segments(console: Console, renderable: object) -> list[Segment]:
    """The segments, with each run of unstyled ones joined: a segment without a style (None or
    the null style) prints as its bare text, so such a run prints the same however it is cut
    (`render_table` yields a plain row as one segment)."""
    out: list[Segment] = []
    for segment in console.render(renderable, console.options):  # type: ignore[arg-type]
        plain = not segment.style and not segment.control
        if plain and out and not out[-1].style and not out[-1].control:
            out[-1] = Segment(out[-1].text + segment.text)
        else:
            out.append(Segment(segment.text) if plain else segment)
    return out


def _printed(console: Console, renderable: object) -> str:
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


@pytest.mark.parametrize("seed", range(400))
def test_random_tables_render_as_rich_does(seed: int) -> None:
    rnd = random.Random(seed)
    table = _table(rnd)
    width = rnd.choice([20, 40, 60, 80, 120])
    for console in _consoles(width):
        ours = _segments(console, _Ours(table))
        assert ours == _segments(console, table)
        assert _printed(console, _Ours(table)) == _printed(console, table)


class _Ours:
    def __init__(self, table: Table) -> None:
        self.table = table

    def __rich_console__(self, console: Console, options: object) -> object:
        return render_table(self.table, console, options)  # type: ignore[arg-type]


def test_the_plain_path_is_taken() -> None:
    """The comparison above is worth something only if most cells of a table like `status`'s
    take the fast path: then rich is asked for the styled and long cells alone."""
    table = Table(box=box.HEAVY_HEAD, show_edge=True, pad_edge=True)
    table.add_column("vmid", width=5, no_wrap=True, overflow="ellipsis", justify="right")
    table.add_column("name", width=8, no_wrap=True, overflow="ellipsis")
    for vmid in range(100, 150):
        table.add_row(str(vmid), f"vm-{vmid}")
    console = Console(width=80)
    calls: list[object] = []
    original = console.render_lines

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        return original(*args, **kwargs)  # type: ignore[arg-type]

    console.render_lines = counting  # type: ignore[method-assign]
    assert _segments(console, _Ours(table)) == _segments(Console(width=80), table)
    # the two header cells (bold) only, each a Padding rich renders around its text
    assert [c for c in calls if isinstance(c, Padding)] == calls[::2]
    assert len(calls) == 4


def test_fit_tables_print_as_rich_tables_of_their_layout() -> None:
    """A `FitTable` prints what rich prints for the table of the layout it chose."""
    rnd = random.Random(7)
    cols = [
        Col("vmid", justify="right"),
        Col("name"),
        Col("status", keep=90),
        Col("memory GiB", keep=80, justify="right"),
        Col("tags", keep=30, wrap=True),
    ]
    rows = [
        [str(100 + i), f"guest-{i}", rnd.choice(["running", "stopped"]), "4.0", _tags(rnd)]
        for i in range(200)
    ]
    for heavy in (True, False):
        for width in (40, 60, 80, 120):
            fit = FitTable(cols, rows, title="Guests on pve1", heavy=heavy)
            console = Console(width=width, force_terminal=True, color_system="truecolor")
            chosen, widths, shortened = fit.layout(console, console.options)
            expected = _printed(console, fit._table(chosen, widths, shortened))
            assert _printed(console, fit) == expected


def _tags(rnd: random.Random) -> str:
    return " ".join(rnd.sample(["prod", "web", "db", "backup-daily", "dc-east", "x" * 30], 3))
