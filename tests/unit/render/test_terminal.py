"""`pvetool.render.terminal`: nothing from a plan or an answer acts on the terminal."""

from __future__ import annotations

import io
import sys

import pytest
from rich.table import Table
from rich.text import Text

from pvetool.render.terminal import SafeConsole, escape_controls, escaping_streams

HOSTILE = "web\x1b[2J\x1b]0;owned\x07\x9b31m\r\u202eevil\u2066\u200b"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("a\rb", "a\\x0db"),
        ("\x9b31m", "\\x9b31m"),
        ("\u202eabc", "\\u202eabc"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028sep", "line\\u2028sep"),
        ("caf\u00e9 \u2603 \U0001f600", "caf\u00e9 \u2603 \U0001f600"),  # printable: as is
        ("a\tb\nc", "a\tb\nc"),
    ],
)
def test_escape_controls(text: str, shown: str) -> None:
    assert escape_controls(text) == shown


def test_a_value_kept_on_one_line() -> None:
    assert escape_controls("a\nb\tc", keep_newlines=False) == "a\\nb\\tc"


def test_the_console_escapes_text_but_keeps_its_own_styles() -> None:
    out = io.StringIO()
    console = SafeConsole(file=out, force_terminal=True, color_system="standard", width=200)
    table = Table()
    table.add_column("name", style="bold")
    table.add_row(HOSTILE)
    console.print(table)
    console.print(Text(HOSTILE, style="red"))
    text = out.getvalue()
    assert "\x1b[2J" not in text and "\x1b]0" not in text and "\u202e" not in text
    assert "\x9b" not in text and "\r" not in text
    assert "\\x1b[2J" in text and "\\u202eevil" in text
    assert "\x1b[1m" in text and "\x1b[31m" in text  # rich's own bold and red still work


def test_the_console_reads_no_markup_from_data() -> None:
    out = io.StringIO()
    SafeConsole(file=out, width=80).print("guest [/] and [bold]x[/bold]")
    assert out.getvalue() == "guest [/] and [bold]x[/bold]\n"


def test_the_streams_escape_what_click_prints(capsys: pytest.CaptureFixture[str]) -> None:
    with escaping_streams():
        print(HOSTILE)
        print(HOSTILE, file=sys.stderr)
        console = SafeConsole(width=200)
        console.print(Text("styled", style="red"))
    out, err = capsys.readouterr()
    for text in (out, err):
        assert "\x1b" not in text.replace("\x1b[31m", "").replace("\x1b[0m", "")
        assert "\\x1b[2J" in text
    assert sys.stdout is not None and not hasattr(sys.stdout, "rich_proxied_file")
