"""Text bound for a terminal: control characters from plans and API answers made visible.

A guest name, a tag, a task log line, PVE's reason for a refusal or a plan's description can
carry characters a terminal acts on: ANSI/ECMA-48 escape sequences (clear the screen, move the
cursor, set the window title with OSC), other C0 and C1 controls (a carriage return that
overwrites a line), and Unicode formatting characters such as the bidi override U+202E that
makes text read backwards. `escape_controls` is the one helper that turns every such character
into its visible escape (``\\x1b``, ``\\u202e``); it is applied where text leaves pvetool for a
terminal:

* `SafeConsole`, the rich console every command prints through, escapes the text of every
  segment it writes (never rich's own styling, which is not text), and reads no markup from
  strings (a guest named ``[/]`` is text, not a broken style tag);
* `escaping_streams` wraps ``sys.stdout`` and ``sys.stderr`` for everything else (``click.echo``,
  warnings of the logging module, ``--debug`` tracebacks); rich consoles write past the wrapper
  to the real stream.

JSON output needs nothing: ``json.dumps`` escapes control characters itself.

Imports: the standard library and rich.
"""

from __future__ import annotations

import io
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from rich.console import Console
from rich.segment import Segment

__all__ = ["SafeConsole", "escape_controls", "escaping_streams", "stdout_written"]

# Controls (Cc), formatting characters (Cf: bidi overrides and isolates, zero-width ones),
# line and paragraph separators (Zl, Zp) and lone surrogates (Cs).
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Everything outside printable ASCII is looked at; most text never reaches the lookup.
_SUSPECT = re.compile(r"[^\x20-\x7e\n\t]")


def _visible(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _replace(match: re.Match[str]) -> str:
    char = match.group()
    return _visible(char) if unicodedata.category(char) in _CONTROL_CATEGORIES else char


def escape_controls(text: str, *, keep_newlines: bool = True) -> str:
    """`text` with every control or formatting character shown as its escape.

    Newlines and tabs are kept unless `keep_newlines` is False (for a value that must stay on
    one line, such as a name inside a message).
    """
    escaped = _SUSPECT.sub(_replace, text)
    if not keep_newlines:
        escaped = escaped.replace("\n", "\\n").replace("\t", "\\t")
    return escaped


class SafeConsole(Console):
    """A rich console whose text cannot act on the terminal (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)
        soft_wrap = kwargs.pop("soft_wrap", None)
        super().__init__(**kwargs)
        # On a terminal prose is wrapped at word boundaries to its width (the terminal would cut
        # words); into a file or a pipe a line stays one line, for grep and logs.
        self.soft_wrap = (not self.is_terminal) if soft_wrap is None else soft_wrap

    @property
    def file(self) -> IO[str]:
        """The real stream: past `escaping_streams`' wrapper and rich's own proxies."""
        stream = Console.file.fget(self)  # type: ignore[attr-defined]
        for _ in range(4):
            inner = getattr(stream, "rich_proxied_file", None)
            if inner is None:
                break
            stream = inner
        return stream  # type: ignore[no-any-return]

    @file.setter
    def file(self, new_file: IO[str]) -> None:
        Console.file.fset(self, new_file)  # type: ignore[attr-defined]

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(_escaped_segments(buffer))


def _escaped_segments(buffer: Iterable[Segment]) -> Iterator[Segment]:
    for text, style, control in buffer:
        if control:
            yield Segment(text, style, control)  # rich's own cursor movements
        else:
            yield Segment(escape_controls(text), style, control)


class _EscapingStream(io.TextIOBase):
    """A text stream that escapes control characters before they reach `raw`."""

    def __init__(self, raw: IO[str]) -> None:
        super().__init__()
        self._raw = raw
        self.written = False  # whether anything went out through this wrapper

    @property
    def rich_proxied_file(self) -> IO[str]:
        """Where rich consoles write instead (they escape their own text)."""
        return self._raw

    def write(self, text: str) -> int:
        self.written = self.written or bool(text)
        self._raw.write(escape_controls(text))
        return len(text)

    def flush(self) -> None:
        self._raw.flush()

    def isatty(self) -> bool:
        return self._raw.isatty()

    def fileno(self) -> int:
        return self._raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._raw, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._raw, "errors", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def stdout_written() -> bool:
    """Whether something was printed to stdout inside `escaping_streams` (True outside it)."""
    return getattr(sys.stdout, "written", True) is not False


@contextmanager
def escaping_streams() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` escape control characters while the block runs."""
    saved = sys.stdout, sys.stderr
    sys.stdout = _EscapingStream(saved[0])
    sys.stderr = _EscapingStream(saved[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = saved
