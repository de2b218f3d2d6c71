"""Fixtures for the API tests (helpers live in `helpers.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from .helpers import RecordingSleep


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()
