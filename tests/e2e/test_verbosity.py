"""`--debug-http` shows every API call (method, path, status, duration) and never a secret;
`-q` leaves only results and errors; `-v` adds pvetool's INFO log. Against the emulated lab."""

from __future__ import annotations

import logging
import re

import pytest

from tests.e2e.lab import Cluster


@pytest.mark.emulator_only
def test_debug_http_lists_calls_without_secrets(lab: Cluster) -> None:
    for args in (("--debug-http", "status"), ("status", "--debug-http")):
        r = lab.pvetool(*args)
        assert r.code == 0, r.err
        calls = [line for line in r.err.splitlines() if line.startswith("http: ")]
        assert calls, r.err
        for line in calls:
            assert re.fullmatch(r"http: (GET|POST|PUT|DELETE) /api2/json/\S+ \d{3} \d+ ms", line)
        assert any(" /api2/json/cluster/resources 200 " in line for line in calls)
        assert "?" not in "".join(calls)  # no query strings
    secret = lab.env["PVETOOL_TOKEN"].split("=", 1)[1]
    assert secret not in r.err and secret not in r.out
    r = lab.pvetool("status")
    assert "http: " not in r.err


@pytest.mark.emulator_only
def test_quiet_prints_results_only(lab: Cluster) -> None:
    loud = lab.pvetool("migrate", "117", "--to", "pve3")
    quiet = lab.pvetool("migrate", "117", "--to", "pve1", "-q")
    assert loud.err.strip(), "the plain view prints progress lines"
    assert quiet.code == loud.code
    progress = [line for line in quiet.err.splitlines() if not line.startswith("error")]
    assert progress == [], quiet.err


@pytest.mark.emulator_only
def test_verbosity_ends_with_the_command(lab: Cluster) -> None:
    """pvetool may run in a process that goes on: -q/-v change logging only while they run."""
    logger = logging.getLogger("pvetool")
    before = (logger.level, list(logger.handlers))
    for flag in ("-v", "-q"):
        assert lab.pvetool(flag, "status").code == 0
        assert (logger.level, list(logger.handlers)) == before
    assert lab.pvetool("status").code == 0
    assert (logger.level, list(logger.handlers)) == before
