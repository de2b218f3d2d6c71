"""The hostile matrix's tally, printed at the end of a session that ran any of the matrix.

Each matrix test hands its runs over in its report's `user_properties`
(`tests/hostile/conftest.py`, fixture `hostile_results`); the hooks here collect them in the
process that prints the summary. They are hooked in by `tests/conftest.py`, which pytest loads
in that process also when the tests run in pytest-xdist workers (a conftest below `tests/` is
loaded only where tests are collected: in the workers, not in the process that reports)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.hostile.harness import Verdict

Entry = tuple[str, str, str, int, Verdict]
PROPERTY = "hostile-run"  # (kind, target, mode, exit code, crash reasons, wrong decisions)
TALLY: list[Entry] = []


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
