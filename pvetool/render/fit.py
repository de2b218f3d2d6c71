"""Tables that fit the terminal they are printed on, without splitting a word or a number.

A `FitTable` is a rich renderable that decides its layout when it is printed, from the width it
is given (80 columns in a small terminal, 200 in a log): every column says how important it is
(`Col.keep`), whether its cells may wrap (prose, at word boundaries) or never (names, numbers,
UPIDs), and how to write a cell when the column is short of space (`Col.short`, e.g. a UPID
cut to its unique part). An optional column whose cells are all empty is left out. Columns are
dropped, least important first, until the narrowest layout in which no cell splits a word
fits; the space left goes to the prose columns. A table that cannot fit even with its
essential columns alone is printed at their natural width (the terminal then wraps the line,
but rich never cuts a word).

`FitTable.printed()` tells what was printed (for the tests that check no word is split).

Rendering: rich's `Table` renders every cell through its whole text machinery (markup, wrapping,
padding, cropping), seconds for the 5,000 guests of a large cluster. As every column's width is
fixed here, `render_table` yields the same segments as rich's `Table` for such a table, writing
a cell itself when it is a plain string that fits on one line (the common case: names, numbers)
and letting rich render every other cell (wrapped prose, `Text` with styles, anything cut with an
ellipsis, markup or emoji codes, control characters). A table it cannot mirror (footers, row
lines, row styles...) is left to rich whole. tests/unit/render/test_fast_table.py holds it to
rich's output on many random tables.

Imports: the standard library and rich.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

__all__ = ["Cell", "Col", "FitTable", "render_table", "short_upid"]

Cell = str | Text
Justify = Literal["left", "right", "center"]


@dataclass(frozen=True)
class Col:
    """One column: its header (with the unit of its cells, e.g. ``memory GiB``), its
    importance (`keep`: the highest survive on a narrow terminal; 100 = never dropped), whether
    its cells may wrap at spaces, and an optional shorter form of a cell for narrow widths."""

    header: str
    keep: int = 100
    wrap: bool = False
    justify: Justify = "left"
    short: Callable[[Cell], Cell] | None = None
    min_width: int = 0  # a wrapping column is kept at least this wide (or as its widest cell)


def short_upid(upid: Cell) -> Cell:
    """``UPID:pve1:0004631F:0A1B2C3D:6750A1B2:qmigrate:101:root@pam!ops:`` -> ``pve1:0004631F``
    (node and process id: unique on the cluster at any one time; JSON keeps the full UPID)."""
    text = upid.plain if isinstance(upid, Text) else upid
    parts = text.split(":")
    if len(parts) >= 3 and parts[0] == "UPID":
        return f"{parts[1]}:{parts[2]}"
    return upid


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _longest_word(cell: Cell) -> int:
    return max((cell_len(w) for w in _plain(cell).split()), default=0)


def _widest_line(cell: Cell) -> int:
    return max((cell_len(line) for line in _plain(cell).splitlines()), default=0)


class FitTable:
    """A table laid out for the width it is printed at (see the module docstring)."""

    def __init__(
        self,
        cols: Sequence[Col],
        rows: Iterable[Sequence[Cell]],
        *,
        title: str | None = None,
        heavy: bool = False,
    ) -> None:
        self.cols = list(cols)
        self.rows = [list(r) for r in rows]
        for row in self.rows:
            if len(row) != len(self.cols):
                raise ValueError(f"a row has {len(row)} cells for {len(self.cols)} columns")
        self.title = title
        self.heavy = heavy  # the boxed look of `status`; plans use the lighter one
        self._printed: list[list[str]] = []

    # -- layout

    def _cells(self, index: int, shortened: bool) -> list[Cell]:
        col = self.cols[index]
        cells = [row[index] for row in self.rows]
        if shortened and col.short is not None:
            cells = [col.short(c) for c in cells]
        return cells

    def _needs(self, index: int, shortened: bool) -> tuple[int, int]:
        """(narrowest, widest) width of a column's text without splitting a word."""
        col = self.cols[index]
        cells = self._cells(index, shortened)
        header = cell_len(col.header)
        widest = max([header, *(_widest_line(c) for c in cells)])
        if not col.wrap:
            return widest, widest
        words = max([max(cell_len(w) for w in col.header.split()), *map(_longest_word, cells)])
        return max(words, min(col.min_width, widest)), widest

    def _table(
        self, chosen: Sequence[int], widths: Sequence[int], shortened: bool, *, rows: bool = True
    ) -> Table:
        table = Table(
            title=self.title,
            title_justify="left",
            box=box.HEAVY_HEAD if self.heavy else box.SIMPLE_HEAD,
            show_edge=self.heavy,
            pad_edge=self.heavy,
        )
        for index, width in zip(chosen, widths, strict=True):
            col = self.cols[index]
            table.add_column(
                col.header,
                width=width,
                no_wrap=not col.wrap,
                overflow="ellipsis" if not col.wrap else "fold",
                justify=col.justify,
            )
        if not rows:
            return table
        columns = [self._cells(i, shortened) for i in chosen]
        self._printed = [[_plain(c) for c in row] for row in zip(*columns, strict=True)]
        for row in zip(*columns, strict=True):
            table.add_row(*row)
        return table

    def _overhead(self, console: Console, options: ConsoleOptions, count: int) -> int:
        # Borders and padding only: the columns' widths are fixed, so the rows change nothing
        # (measuring with them made `status` at 5,000 guests spend seconds here).
        probe = self._table(list(range(count)), [1] * count, False, rows=False) if count else None
        if probe is None:
            return 0
        return Measurement.get(console, options.update_width(10_000), probe).maximum - count

    def layout(
        self, console: Console, options: ConsoleOptions
    ) -> tuple[list[int], list[int], bool]:
        """The columns kept, their widths and whether cells were shortened, for this width."""
        width = options.max_width
        order = sorted(range(len(self.cols)), key=lambda i: self.cols[i].keep)
        # an optional column with nothing in it (no lock, no tags, no reason) is left out
        empty = {
            i
            for i, col in enumerate(self.cols)
            if col.keep < 100
            and self.rows
            and all(_plain(row[i]).strip() in ("", "-") for row in self.rows)
        }
        # a column's needs do not change while others are dropped: each is measured once
        known: dict[tuple[int, bool], tuple[int, int]] = {}

        def needs_of(i: int, shortened: bool) -> tuple[int, int]:
            key = (i, shortened and self.cols[i].short is not None)
            if key not in known:
                known[key] = self._needs(*key)
            return known[key]

        for shortened in (False, True):
            dropped: set[int] = set(empty)
            while True:
                chosen = [i for i in range(len(self.cols)) if i not in dropped]
                needs = [needs_of(i, shortened) for i in chosen]
                overhead = self._overhead(console, options, len(chosen))
                if sum(n for n, _ in needs) + overhead <= width:
                    return chosen, self._widths(chosen, needs, width - overhead), shortened
                candidates = [i for i in order if i not in dropped and self.cols[i].keep < 100]
                if not candidates:
                    break
                dropped.add(candidates[0])
        chosen = [i for i in range(len(self.cols)) if self.cols[i].keep >= 100]
        needs = [needs_of(i, True) for i in chosen]
        return chosen, [n for n, _ in needs], True

    def _widths(
        self, chosen: Sequence[int], needs: Sequence[tuple[int, int]], room: int
    ) -> list[int]:
        """Every column at its narrowest, then the room left shared among the wrapping ones
        (one cell at a time, the most short of space first) up to their widest."""
        widths = [n for n, _ in needs]
        spare = room - sum(widths)
        while spare > 0:
            short = [
                k for k, i in enumerate(chosen) if self.cols[i].wrap and widths[k] < needs[k][1]
            ]
            if not short:
                break
            k = max(short, key=lambda k: needs[k][1] - widths[k])
            widths[k] += 1
            spare -= 1
        return widths

    # -- rich protocol

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        chosen, widths, shortened = self.layout(console, options)
        yield from render_table(self._table(chosen, widths, shortened), console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        chosen, widths, shortened = self.layout(console, options)
        return Measurement.get(console, options, self._table(chosen, widths, shortened))

    def printed(self) -> list[list[str]]:
        """The cells of the last rendering (plain text), row by row."""
        return self._printed


# --- rendering ---------------------------------------------------------------------------------


def _rich_major() -> int:
    try:
        return int(version("rich").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return 0


# `render_table` copies rich 15's private table internals; any other rich renders its own
# tables (same output, slower) rather than risk a difference no test here has seen.
_MIRRORED_RICH = _rich_major() == 15


def _mirrorable(table: Table) -> bool:
    """Whether `render_table` yields exactly what rich would for `table`: fixed-width columns
    and none of the features it does not copy (written after rich 15.0's
    `Table.__rich_console__` and `_render`; the random tables of test_fast_table.py hold it to
    the rich that is installed)."""
    return (
        _MIRRORED_RICH
        and bool(table.columns)
        and all(c.width is not None and not c.ratio for c in table.columns)
        and table.width is None
        and table.min_width is None
        and not table.show_footer
        and not table.show_lines
        and not table.leading
        and not table.row_styles
        and not table.caption
        and all(row.style is None and not row.end_section for row in table.rows)
    )


def _plain_cell(text: object, markup: bool, emoji: bool) -> bool:
    """A string rich would print as it is: no markup (``[``) or emoji code (``:``) where the
    console reads them, nothing its wrapping changes (controls, tabs, new lines, trailing
    spaces)."""
    return (
        isinstance(text, str)
        and text.isprintable()
        and not (markup and "[" in text)
        and not (emoji and ":" in text)
        and not text[-1:].isspace()
    )


def render_table(table: Table, console: Console, options: ConsoleOptions) -> RenderResult:
    """The segments rich's ``Table.__rich_console__`` yields for `table`, computed faster for a
    table of fixed-width columns (see the module docstring)."""
    if not _mirrorable(table):
        yield table
        return
    extra_width = table._extra_width
    widths = table._calculate_column_widths(
        console, options.update_width(options.max_width - extra_width)
    )
    render_options = options.update(
        width=sum(widths) + extra_width, highlight=table.highlight, height=None
    )
    if table.title:
        title = (
            console.render_str(
                table.title,
                style=Style.pick_first(table.title_style, "table.title"),
                highlight=False,
            )
            if isinstance(table.title, str)
            else table.title
        )
        yield from console.render(title, render_options.update(justify=table.title_justify))
    yield from _rows(table, console, render_options, widths)


def _rows(
    table: Table, console: Console, options: ConsoleOptions, widths: list[int]
) -> RenderResult:
    # A copy of rich's Table._render for the tables `_mirrorable` admits, with plain cells
    # written directly (what Padding around a one-line Text renders to).
    border_style = console.get_style(table.style or "") + console.get_style(
        table.border_style or ""
    )
    columns = table.columns
    column_cells = [list(table._get_cells(console, i, c)) for i, c in enumerate(columns)]
    the_box = (
        table.box.substitute(
            options, safe=table.safe_box if table.safe_box is not None else console.safe_box
        )
        if table.box
        else None
    )
    if the_box and not table.show_header:
        the_box = the_box.get_plain_headed_box()
    new_line = Segment.line()
    show_edge = table.show_edge
    show_header = table.show_header
    get_style = console.get_style
    null = Style.null()
    markup, emoji = bool(console._markup), bool(console._emoji)
    column_options = [
        options.update(
            width=width,
            justify=column.justify,
            no_wrap=column.no_wrap,
            overflow=column.overflow,
            height=None,
            highlight=column.highlight,
        )
        for width, column in zip(widths, columns, strict=True)
    ]
    if the_box:
        edges = [
            (the_box.head_left, the_box.head_right, the_box.head_vertical),
            (the_box.mid_left, the_box.mid_right, the_box.mid_vertical),
            (the_box.foot_left, the_box.foot_right, the_box.foot_vertical),
        ]
        if show_edge:
            yield Segment(the_box.get_top(widths), border_style)
            yield new_line
    count = len(column_cells[0])
    highlights = [o.highlight for o in column_options]
    justifies = [c.justify for c in columns]
    for index in range(count):
        first, last = index == 0, index == count - 1
        header_row = first and show_header
        # a cell's lines, or a plain cell's (left padding, text, right padding, their style)
        parts: list[list[list[Segment]] | tuple[int, str, int, Style]] = []
        fast = True  # every cell a plain one
        unstyled = not border_style  # and no style anywhere on the row
        for c, width in enumerate(widths):
            cell = column_cells[c][index]
            style = cell.style if isinstance(cell.style, Style) else get_style(cell.style)
            padding = cell.renderable if isinstance(cell.renderable, Padding) else None
            shown = None
            if (
                padding is not None
                and not style
                and not header_row
                and not highlights[c]
                and padding.expand
                and not padding.top
                and not padding.bottom
                and _plain_cell(padding.renderable, markup, emoji)
            ):
                shown = _plain_text(
                    str(padding.renderable), width - padding.left - padding.right, justifies[c]
                )
            if shown is None or padding is None:
                fast = False
                parts.append(
                    console.render_lines(cell.renderable, column_options[c], style=style + null)
                )
            else:
                pad_style = get_style(padding.style)
                unstyled = unstyled and not pad_style
                parts.append((padding.left, shown, padding.right, pad_style))
        if the_box and fast and unstyled:
            # Segments without a style print as their bare text: one segment for the row prints
            # the same bytes (rich's Console writes a segment's style around it only when it
            # has one) and spares the console 30 segments a row.
            left, right, divider = edges[0 if first else (2 if last else 1)]
            texts = [
                f"{' ' * part[0]}{part[1]}{' ' * part[2]}"
                for part in parts
                if isinstance(part, tuple)
            ]
            edge = (left, right) if show_edge else ("", "")
            yield Segment(edge[0] + divider.join(texts) + edge[1])
            yield new_line
            continue
        cells = [part if not isinstance(part, tuple) else _plain_lines(*part) for part in parts]
        height = max(len(lines) for lines in cells)
        if not fast or height != 1:
            vertical_of = [column_cells[c][index].vertical for c in range(len(widths))]
            cells = [
                Segment.set_shape(
                    _align(
                        lines,
                        "bottom" if header_row else vertical_of[c],
                        width,
                        height,
                        get_style(column_cells[c][index].style) + null,
                    ),
                    width,
                    height,
                )
                for c, (width, lines) in enumerate(zip(widths, cells, strict=True))
            ]
        if the_box:
            left, right, divider = edges[0 if first else (2 if last else 1)]
            left_s = Segment(left, border_style)
            right_s = Segment(right, border_style)
            divider_s = (
                Segment(divider, border_style)
                if divider.strip()
                else Segment(divider, null.background_style + border_style)
            )
            for line_no in range(height):
                if show_edge:
                    yield left_s
                for c, rendered in enumerate(cells):
                    yield from rendered[line_no]
                    if c < len(cells) - 1:
                        yield divider_s
                if show_edge:
                    yield right_s
                yield new_line
        else:
            for line_no in range(height):
                for rendered in cells:
                    yield from rendered[line_no]
                yield new_line
        if the_box and header_row:
            yield Segment(the_box.get_row(widths, "head", edge=show_edge), border_style)
            yield new_line
    if the_box and show_edge:
        yield Segment(the_box.get_bottom(widths), border_style)
        yield new_line


def _align(
    lines: list[list[Segment]], vertical: str, width: int, height: int, style: Style
) -> list[list[Segment]]:
    if vertical == "top":
        return Segment.align_top(lines, width, height, style)
    if vertical == "middle":
        return Segment.align_middle(lines, width, height, style)
    return Segment.align_bottom(lines, width, height, style)


def _plain_text(text: str, room: int, justify: str) -> str | None:
    """What rich writes for `text` (a `_plain_cell`) in `room` columns (a cell without its
    padding) when it fits on one line; None when it does not (rich then renders it)."""
    excess = room - cell_len(text)
    if room < 1 or excess < 0:
        return None
    if justify == "left":
        return text + " " * excess
    if justify == "right":
        return " " * excess + text
    if justify == "center":
        return " " * (excess // 2) + text + " " * (excess - excess // 2)
    return None


def _plain_lines(left: int, shown: str, right: int, pad_style: Style) -> list[list[Segment]]:
    """The line rich renders for a plain cell: Padding's spaces around the text."""
    line = [Segment(shown)]
    if left:
        line.insert(0, Segment(" " * left, pad_style))
    if right:
        line.append(Segment(" " * right, pad_style))
    return [line]
