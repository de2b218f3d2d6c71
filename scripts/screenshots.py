#!/usr/bin/env python3
"""Take the README's terminal screenshots (docs/img/) the way an administrator sees pvetool.

Each shot runs pvetool inside a tmux window of a fixed size (80x24 or 120x40), captures the
visible screen with its colours (``tmux capture-pane -e``), turns the ANSI text into an HTML
page with rich (its ANSI decoder and HTML export, DejaVu Sans Mono on a dark background) and
photographs the page with headless Chromium (``--screenshot``). The HTML report of a drain is
photographed the same way. Nothing is drawn by hand: what the PNG shows is what tmux showed.

Needs tmux and Chromium (Debian: ``apt-get install tmux chromium``). Run from the repository
root (pvetool is started as ``python -m pvetool`` from this checkout):

    python scripts/screenshots.py [--out docs/img] [--python .venv/bin/python]

Imports: the standard library and rich.
"""

from __future__ import annotations

import argparse
import html
import io
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.terminal_theme import MONOKAI
from rich.text import Text

ROOT = Path(__file__).resolve().parents[1]
CELL_W_PX = 8.43  # DejaVu Sans Mono at 14 px
LINE_H_PX = 17
PAD_PX = 12
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


@dataclass(frozen=True)
class Shot:
    name: str  # docs/img/<name>-<cols>x<rows>.png
    command: str  # after `pvetool`
    wait_s: float  # how long after starting the command the screen is captured
    until: str = ""  # or: capture as soon as the screen shows this text (after wait_s at most)


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def capture(shot: Shot, cols: int, rows: int, python: str, env: dict[str, str]) -> str:
    """The screen (ANSI text) of `shot` in a cols x rows tmux window."""
    session = f"pvetool-shot-{os.getpid()}"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = f"clear; env {exports} {shlex.quote(python)} -m pvetool {shot.command}"
    _tmux("new-session", "-d", "-s", session, "-x", str(cols), "-y", str(rows), "-c", str(ROOT))
    try:
        _tmux("set-option", "-t", session, "status", "off")
        _tmux("send-keys", "-t", session, command, "Enter")
        deadline = time.monotonic() + shot.wait_s
        screen = ""
        while time.monotonic() < deadline:
            time.sleep(0.25)
            screen = _tmux("capture-pane", "-t", session, "-e", "-p")
            if shot.until and shot.until in Text.from_ansi(screen).plain:
                break
        return _tmux("capture-pane", "-t", session, "-e", "-p")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def screen_html(ansi: str, cols: int, rows: int) -> str:
    """The captured screen as an HTML page of exactly cols x rows cells."""
    console = Console(
        width=cols, file=io.StringIO(), record=True, force_terminal=True, color_system="truecolor"
    )
    # decoded as a whole: tmux carries an attribute (dim, a colour) over a line break
    lines = Text.from_ansi(ansi).split("\n")[:rows]
    lines += [Text("")] * (rows - len(lines))
    for line in lines:
        console.print(line, overflow="crop", no_wrap=True, crop=True)
    page = console.export_html(
        theme=MONOKAI,
        inline_styles=True,
        # a str.format template: {{ }} are braces; {background}, {foreground}, {code} are rich's
        code_format=(
            "<!DOCTYPE html><html><head><meta charset='utf-8'><style>"
            "body{{margin:0;background:{background};}}"
            "pre{{margin:0;padding:PADpx;font-family:'DejaVu Sans Mono',monospace;"
            "font-size:14px;line-height:LINEpx;color:{foreground};}}"
            "</style></head><body><pre><code>{code}</code></pre></body></html>"
        )
        .replace("PAD", str(PAD_PX))
        .replace("LINE", str(LINE_H_PX)),
    )
    return page


def photograph(page: Path, png: Path, width: int, height: int, chromium: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pvetool-shots-"))
    report = work / "drain.html"
    env = {
        "PVETOOL_STATE_DIR": str(work / "state"),
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "PYTHONPATH": str(ROOT),
    }
    lab = "--emulate lab"
    live = f"{lab} --emulate-speed 4 drain pve1 --with-local-disks --yes --report {report}"
    shots = [
        Shot("status", f"{lab} status", 12, until="Guests on pve3"),
        Shot("dry-run", f"{lab} drain pve1 --with-local-disks --dry-run", 12, until="assumptions"),
        Shot("live-drain", live, 14),
        Shot("summary", live, 120, until="makespan"),  # the summary's timing line
    ]
    for cols, rows in ((80, 24), (120, 40)):
        for shot in shots:
            ansi = capture(shot, cols, rows, args.python, env)
            page = work / f"{shot.name}-{cols}x{rows}.html"
            page.write_text(screen_html(ansi, cols, rows), encoding="utf-8")
            width = int(cols * CELL_W_PX + 2 * PAD_PX + 1)
            height = rows * LINE_H_PX + 2 * PAD_PX
            png = out / f"{shot.name}-{cols}x{rows}.png"
            photograph(page, png, width, height, args.chromium)
            print(f"{png}  ({html.escape(shot.command)})")
    if report.exists():
        png = out / "report-html.png"
        photograph(report, png, 1200, 900, args.chromium)
        print(png)
    else:
        print(f"no report at {report}: the live drain did not finish", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
