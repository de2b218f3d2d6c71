"""The hostile-server tests: marker ``hostile_full`` (the whole matrix, deselected unless
``-m`` names it) and the tally printed at the end of a session that ran any of the matrix.

Each matrix test hands its runs to the tally through its report's `user_properties`, so the tally
is complete whether the tests ran in this process or in pytest-xdist workers (the default run
uses `-n 2`): the reports reach this process either way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests.hostile.harness import Verdict

Entry = tuple[str, str, str, int, Verdict]
PROPERTY = "hostile-run"  # (kind, target, mode, exit code, crash reasons, wrong decisions)
TALLY: list[Entry] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "hostile_full: the whole hostile-server matrix (tests/hostile, about half an hour); "
        "run it with -m hostile_full",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "hostile_full" in (config.getoption("markexpr", "") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("hostile_full") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture()
def hostile_results(request: pytest.FixtureRequest) -> Iterator[list[Entry]]:
    runs: list[Entry] = []
    yield runs
    for kind, target, mode, code, v in runs:
        run = (kind, target, mode, code, list(v.crash), list(v.wrong))
        request.node.user_properties.append((PROPERTY, run))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == PROPERTY:
            kind, target, mode, code, crash, wrong = value
            TALLY.append((kind, target, mode, code, Verdict(list(crash), list(wrong))))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    results = TALLY
    if not results:
        return
    codes = Counter(code for *_, code, _ in results)
    crashes = sum(1 for *_, v in results if v.crash)
    wrong = sum(1 for *_, v in results if v.wrong)
    terminalreporter.section("hostile-server matrix")
    terminalreporter.line(
        f"runs {len(results)}; exit codes {dict(sorted(codes.items()))}; clean (no crash, no "
        f"wrong decision) {sum(1 for *_, v in results if v.clean)}; crashes {crashes}; "
        f"wrong decisions {wrong}"
    )
    for kind in ("status", "check", "dry-run", "drain", "migrate"):
        mine = [r for r in results if r[0] == kind]
        if mine:
            terminalreporter.line(
                f"  {kind}: {len(mine)} runs, exit 0: {sum(1 for r in mine if r[3] == 0)}, "
                f"non-zero: {sum(1 for r in mine if r[3] != 0)}"
            )
