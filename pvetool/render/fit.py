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

Imports: the standard library and rich.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["Cell", "Col", "FitTable", "short_upid"]

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
        for shortened in (False, True):
            dropped: set[int] = set(empty)
            while True:
                chosen = [i for i in range(len(self.cols)) if i not in dropped]
                needs = [self._needs(i, shortened) for i in chosen]
                overhead = self._overhead(console, options, len(chosen))
                if sum(n for n, _ in needs) + overhead <= width:
                    return chosen, self._widths(chosen, needs, width - overhead), shortened
                candidates = [i for i in order if i not in dropped and self.cols[i].keep < 100]
                if not candidates:
                    break
                dropped.add(candidates[0])
        chosen = [i for i in range(len(self.cols)) if self.cols[i].keep >= 100]
        needs = [self._needs(i, True) for i in chosen]
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
        yield self._table(chosen, widths, shortened)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        chosen, widths, shortened = self.layout(console, options)
        return Measurement.get(console, options, self._table(chosen, widths, shortened))

    def printed(self) -> list[list[str]]:
        """The cells of the last rendering (plain text), row by row."""
        return self._printed
