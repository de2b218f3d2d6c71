"""Secret scan: representative commands against a cluster with canary secrets, and a grep of
everything pvetool wrote (stdout, stderr, reports in every format, JUnit, journals) for the
token, the password and every ticket and CSRF token the cluster issued.

Hook output is left out on purpose: hooks inherit the environment, and redacting their output
is the run path's part of issue 12 (finding 7).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from tests.hostile.harness import (
    CANARY_PASSWORD,
    CANARY_TOKEN,
    DRAIN,
    MIGRATE_TO,
    MIGRATE_VMID,
    HostileLab,
    hostile_lab,
)

# A PVE ticket: PVE:<userid>:<hex time>::<signature> (pve-access-control PVE/Ticket.pm).
TICKET_RE = re.compile(r"PVE:[^:\s]+:[0-9A-Fa-f]{8}::[A-Za-z0-9+/=]{16,}")


def _commands(lab: HostileLab, reports: Path) -> None:
    reports.mkdir(exist_ok=True)
    lab.pvetool("--debug", "status")
    lab.pvetool("status", "-o", "json")
    lab.pvetool("check", *DRAIN)
    lab.pvetool(*DRAIN, "--dry-run", "-o", "json")
    lab.pvetool(
        "--debug",
        *DRAIN,
        "--yes",
        "--report",
        str(reports / "drain.md"),
        "--report",
        str(reports / "drain.html"),
        "--junit",
        str(reports / "drain.xml"),
    )
    lab.pvetool("undrain", "pve1", "--dry-run")
    lab.pvetool(
        "migrate", str(MIGRATE_VMID), "--to", MIGRATE_TO, "--report", str(reports / "migrate.html")
    )
    # Failures print the most: a spoiled answer, a redirect, a refused POST.
    lab.proxy.spoil("garbage_strings", r"^/cluster/resources$", "GET", count=3)
    lab.pvetool("--debug", "status")
    lab.proxy.spoil("redirect_http", r"^/cluster/status$", "GET", count=3)
    lab.pvetool("--debug", "status")
    lab.proxy.spoil("html_500", r"/qemu/\d+/migrate$", "POST")
    lab.pvetool("--debug", "migrate", "101", "--to", "pve2")
    lab.settle()


def _issued(lab: HostileLab) -> set[str]:
    """Every ticket and CSRF token the cluster has issued so far."""
    return {value for t, info in lab.emu.tickets.items() for value in (t, info.csrf)}


def _scan(lab: HostileLab, issued: Collection[str] = ()) -> list[str]:
    secrets = [CANARY_TOKEN, CANARY_PASSWORD, *issued, *_issued(lab)]
    found = []
    scanned = 0
    for what, text in lab.outputs():
        scanned += 1
        for secret in secrets:
            if secret and secret in text:
                found.append(f"{what}: a secret ({secret[:6]}...)")
        if TICKET_RE.search(text):
            found.append(f"{what}: a PVE ticket")
    assert scanned > 20, "the scan saw too little to mean anything"
    return found


def test_no_secret_in_any_output_with_a_token(tmp_path: Path) -> None:
    with hostile_lab(tmp_path) as lab:
        _commands(lab, tmp_path / "reports")
        assert any(r.code == 0 for r in lab.runs)
        assert lab.proxy.http_sink.seen == []
        assert _scan(lab) == []
        # The scan itself finds what it looks for.
        (tmp_path / "planted.json").write_text(f'{{"t": "{CANARY_TOKEN}"}}', encoding="utf-8")
        assert _scan(lab) == [f"{tmp_path / 'planted.json'}: a secret (CANARY...)"]


def test_no_secret_in_any_output_with_a_password(tmp_path: Path) -> None:
    with hostile_lab(tmp_path, password_auth=True) as lab:
        _commands(lab, tmp_path / "reports")
        issued = _issued(lab)
        assert issued, "the runs logged in with the password"
        lab.emu.expire_tickets()  # a refused ticket: pvetool logs in again
        lab.pvetool("--debug", "status")
        assert lab.proxy.http_sink.seen == []
        assert _scan(lab, issued) == []
