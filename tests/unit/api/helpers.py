"""Helpers for the API tests: recorded fixtures, a `responses` answer that can set PVE's reason
phrase, settings with known secrets, and a sleep that only records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import responses
from urllib3 import HTTPResponse

from pvetool.settings import (
    HostPort,
    PasswordAuth,
    RetryPolicy,
    Secret,
    Settings,
    TokenAuth,
    WaitPolicy,
)

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "fixtures"

TOKEN_SECRET = "5f0b6f4c-1d2e-4a8b-9c3d-7e6f5a4b3c2d"
PASSWORD = "correct-horse-battery-staple"
BASE1 = "https://pve1:8006/api2/json"
BASE2 = "https://pve2:8006/api2/json"


def load_fixture(name: str) -> Any:
    """A recorded fixture: parsed JSON for .json files, text otherwise."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else text


class PveResponse(responses.Response):
    """A mocked answer whose HTTP reason phrase carries PVE's message, as pveproxy sends it."""

    def __init__(self, method: str, url: Any, *, reason: str | None = None, **kwargs: Any):
        super().__init__(method, url, **kwargs)
        self.reason_phrase = reason

    def get_response(self, request: Any) -> HTTPResponse:
        response = super().get_response(request)
        if self.reason_phrase is not None:
            response.reason = self.reason_phrase
        return response


class RecordingSleep:
    """Stands in for time.sleep: records the waits, never sleeps."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def token_settings(hosts: tuple[str, ...] = ("pve1", "pve2"), **kwargs: Any) -> Settings:
    values: dict[str, Any] = {
        "hosts": tuple(HostPort.parse(h) for h in hosts),
        "auth": TokenAuth(user="root@pam", token_name="pvetool", secret=Secret(TOKEN_SECRET)),
        "retry": RetryPolicy(attempts=4, initial_wait_s=0.5, max_wait_s=8.0, jitter_s=0.5),
        "wait": WaitPolicy(poll_interval_s=1.0, max_poll_interval_s=5.0, ambiguous_check_delay_s=2),
    }
    values.update(kwargs)
    return Settings(**values)


def password_settings(hosts: tuple[str, ...] = ("pve1",)) -> Settings:
    return token_settings(hosts, auth=PasswordAuth(user="admin@pve", password=Secret(PASSWORD)))
