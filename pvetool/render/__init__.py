"""Rendering: pure functions from model objects to rich tables, JSON-able dicts and text.

Modules: `plan` (the plan, the check matrix), `report` (the end-of-run summary, JSON data,
Markdown, JUnit), `report_html` (the HTML report with its timeline), `live` (the views shown
while a run goes on), `status`, `formats`. `render_report` here writes a report file's text in
the format its suffix names; it sits above `report` and `report_html`, which keeps those two
from importing each other.

Imports: the standard library, rich, `pvetool.model` and the `pvetool.render` modules.
"""

from __future__ import annotations

from pathlib import PurePath

from pvetool.model import RunReport
from pvetool.render.formats import document, to_json
from pvetool.render.report import report_data, report_markdown
from pvetool.render.report_html import report_html

__all__ = ["REPORT_SUFFIXES", "render_report"]

REPORT_SUFFIXES = (".json", ".md", ".html")


def render_report(report: RunReport, path: str) -> str:
    """The report text for `path`, chosen by its suffix (.json, .md, .html)."""
    suffix = PurePath(path).suffix.lower()
    if suffix == ".json":
        return to_json(document("report", report_data(report))) + "\n"
    if suffix == ".md":
        return report_markdown(report)
    if suffix in (".html", ".htm"):
        return report_html(report)
    raise ValueError(f"unknown report format '{suffix}': use .json, .md or .html")
