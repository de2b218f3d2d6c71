"""Conformance suite: the emulator (and the timing model) against Proxmox's own source.

Every test here states the rule it checks with a ``@pytest.mark.source(repo, path, function,
lines)`` marker naming the Proxmox source it was written from (the commit of each repository
is in `sources.COMMITS`), and asserts on what a client sees: HTTP status, reason phrase, body
shape, task log lines. The expectations come from that source (and, where one exists, from a
recorded real answer in ``tests/data/fixtures/``), never from the emulator's own output.

Every test is marked ``conformance`` (the default suite runs them; ``-m conformance`` selects
them alone).
"""

from __future__ import annotations

import pytest

from tests.conformance.sources import COMMITS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "source(repo, path, function, lines): the Proxmox source a conformance test follows",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/conformance/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.conformance)


__all__ = ["COMMITS"]
