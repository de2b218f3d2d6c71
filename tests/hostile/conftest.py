"""The hostile-server tests: marker ``hostile_full`` (the whole matrix, deselected unless
``-m`` names it) and the tally printed at the end of a session that ran any of the matrix."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.hostile.harness import Verdict

RESULTS = pytest.StashKey[list[tuple[str, str, str, int, Verdict]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "hostile_full: the whole hostile-server matrix (tests/hostile, about half an hour); "
        "run it with -m hostile_full",
    )
    config.stash[RESULTS] = []


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
def hostile_results(request: pytest.FixtureRequest) -> list[tuple[str, str, str, int, Verdict]]:
    return request.config.stash[RESULTS]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    results = config.stash.get(RESULTS, [])
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
