"""The hostile-server tests: marker ``hostile_full`` (the whole matrix, deselected unless
``-m`` names it) and the tally printed at the end of a session that ran any of the matrix.

Each matrix test hands its runs to the tally (`tests/hostile/tally.py`, hooked in by
`tests/conftest.py`) through its report's `user_properties`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.tally import PROPERTY, Entry


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
