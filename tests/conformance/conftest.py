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


# -- fixtures and helpers shared by the conformance modules ------------------------------------
import re  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from pvetool.emulator.server import Emulator  # noqa: E402
from tests.emu import Api, start  # noqa: E402

TS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
OPS = ("ops@pve!t", "probe-ops-secret")
AUDITOR = ("auditor@pve!ro", "probe-audit-secret")


@pytest.fixture()
def probe() -> Iterator[Emulator]:
    """A fresh probe cluster (tests/data/clusters/probe.yaml), clock stopped."""
    emu = start("probe.yaml")
    yield emu
    emu.stop()


@pytest.fixture()
def api(probe: Emulator) -> Api:
    """root@pam!pvetool: an API token of root@pam (privilege-separated, every privilege)."""
    return Api(probe, ("root@pam!pvetool", "probe-root-secret"))


@pytest.fixture()
def ops(probe: Emulator) -> Api:
    """ops@pve!t: VM.Audit, VM.Migrate, Datastore.Audit - no Sys.Audit, no Sys.Modify."""
    return Api(probe, OPS)


def strip_ts(lines: list[str]) -> list[str]:
    """Task-log lines without their time stamps."""
    return [TS.sub("", line) for line in lines]


def is_stamped(line: str) -> bool:
    return bool(TS.match(line))


def run_task(api: Api, upid: str, step_s: float = 0.5) -> tuple[dict[str, object], list[str]]:
    """Advance the clock until the task ends: (status, log lines)."""
    status = api.wait_task(upid, step_s=step_s)
    return status, api.task_log(upid)


def login(emu: Emulator, user: str, password: str) -> tuple[str, str]:
    """(ticket, CSRF token) of a password login."""
    import requests

    s = requests.Session()
    s.trust_env = False
    s.verify = str(emu.tls.ca_file)
    r = s.post(
        f"https://127.0.0.1:{emu.port}/api2/json/access/ticket",
        data={"username": user, "password": password},
        timeout=30,
    )
    data = r.json()["data"]
    return data["ticket"], data["CSRFPreventionToken"]


def ticket_api(emu: Emulator, user: str, password: str) -> Api:
    """An Api that authenticates with a ticket cookie (and sends the CSRF token)."""
    ticket, csrf = login(emu, user, password)
    a = Api(emu)
    del a.session.headers["Authorization"]
    a.session.cookies.set("PVEAuthCookie", ticket)
    a.session.headers["CSRFPreventionToken"] = csrf
    return a
