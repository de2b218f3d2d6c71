"""Independent clients against the emulator (issue 10): ProxLB, pvecontrol and proxmoxer, run
unmodified, with TLS verification on.

Every test here is marked ``peers`` (the default run includes them; ``-m peers`` selects them
alone). Slower variants are marked ``peers_full`` and are deselected unless ``-m`` names that
marker. The peers come from the ``test`` extra (``pip install -e '.[test]'``); nothing is
installed while the tests run, and a missing peer is a failure, not a skip.

The harness (`PeerRun`) gives each test a fresh emulator on a running clock, writes the peer's
configuration into the test's temporary folder, runs the peer as a child process of this Python
(``python -m proxlb``, ``python -m pvecontrol``) with the emulator's CA in the child's
``REQUESTS_CA_BUNDLE`` only, and then waits until the cluster is quiescent: both peers return
before migrations they asked for (HA ones especially) have ended, and PVE's CRM may move a guest
again afterwards. The tests assert on that final state, never on the peers' exit codes: both
exit 0 after failed migrations, by design.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pvetool.emulator.server import Emulator
from tests.emu import Api, start

SPEED = 40.0  # emulated seconds per real second (the peers sleep in real time: 1 s, 5 s)
QUIET_S = 35.0  # emulated seconds without a running task or HA motion: 3 CRM rounds (10 s)
SCRUBBED_PREFIXES = ("PVETOOL_", "PVECONTROL_")
SCRUBBED = {"CONFIG", "CLUSTER", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wants_full = "peers_full" in (config.getoption("markexpr", "") or "")
    keep, drop = [], []
    for item in items:
        if "tests/peers/" not in str(item.path).replace("\\", "/"):
            keep.append(item)
            continue
        item.add_marker(pytest.mark.peers)
        if item.get_closest_marker("peers_full") and not wants_full:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def require(module: str) -> None:
    """Fail (not skip) when a peer is missing: the test extra brings it."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: install the test extra (pip install -e '.[test]')")


@dataclass
class PeerRun:
    """One emulated cluster and the peer runs against it."""

    emu: Emulator
    home: Path
    api: Api = field(init=False)

    def __post_init__(self) -> None:
        self.api = Api(self.emu)

    # -- credentials and environment
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.emu.port}"

    def token(self) -> tuple[str, str, str]:
        """(user, token name, secret) of the emulator's admin token."""
        token_id, secret = self.emu.admin_token()
        user, name = token_id.split("!", 1)
        return user, name, secret

    def child_env(self) -> dict[str, str]:
        """This environment minus whatever could point a peer elsewhere (pvetool's and
        pvecontrol's variables, click's CONFIG/CLUSTER, CA bundles, proxies), plus the
        emulator's CA. The CA variable is set in the child only: in pytest's own process it
        would override the `verify=` of every other test's requests session."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(SCRUBBED_PREFIXES)
            and k not in SCRUBBED
            and not k.lower().endswith("_proxy")
        }
        env.update(
            HOME=str(self.home),
            NO_PROXY="127.0.0.1,localhost",
            REQUESTS_CA_BUNDLE=str(self.emu.tls.ca_file),
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def write_config(self, name: str, text: str) -> Path:
        path = self.home / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)  # it holds the (lab) token secret
        return path

    def run(
        self, module: str, args: list[str], *, stdin: str | None = None, timeout_s: float = 180
    ) -> subprocess.CompletedProcess[str]:
        require(module)
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.child_env(),
            cwd=self.home,
            timeout=timeout_s,
            check=False,
        )

    # -- the cluster's state
    def placement(self) -> dict[int, dict[str, Any]]:
        """vmid -> its `/cluster/resources` row (each vmid must appear once)."""
        rows = self.api.get("/cluster/resources", type="vm")
        vmids = [r["vmid"] for r in rows]
        assert len(vmids) == len(set(vmids)), f"a guest is listed twice: {sorted(vmids)}"
        return {r["vmid"]: r for r in rows}

    def _busy(self) -> list[str]:
        state = self.emu.state()
        busy = [f"task {t['upid']}" for t in state["tasks"] if t["status"] == "running"]
        busy += [
            f"guest {vmid} locked migrate"
            for vmid, g in state["guests"].items()
            if g["lock"] == "migrate"
        ]
        for row in self.api.get("/cluster/ha/status/current"):
            if row.get("type") == "service" and row.get("state") not in (
                "started",
                "stopped",
                "ignored",
                "disabled",
            ):
                busy.append(f"HA {row['sid']} {row.get('state')}")
        return busy

    def wait_quiescent(self, max_emulated_s: float = 900.0) -> None:
        """Until nothing has run for QUIET_S emulated seconds: no task, no `migrate` lock, no
        HA service moving (the CRM may still move a guest after the peer has exited)."""
        start_s = self.emu.clock.now()
        quiet_since: float | None = None
        while True:
            now = self.emu.clock.now()
            busy = self._busy()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= QUIET_S:
                return
            if now - start_s > max_emulated_s:
                raise AssertionError(f"the cluster never settled: {busy}")
            time.sleep(0.05)

    def tasks(self) -> list[dict[str, Any]]:
        return list(self.emu.state()["tasks"])

    def task_log(self, upid: str) -> list[str]:
        return self.api.task_log(upid)


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[PeerRun]:
    """The built-in lab cluster on a running clock, fresh for each test."""
    emu = start("lab", speed=SPEED)
    try:
        yield PeerRun(emu, tmp_path)
    finally:
        emu.stop()


def assert_accounted(
    before: Mapping[int, Mapping[str, Any]], after: Mapping[int, Mapping[str, Any]]
) -> None:
    """Every guest is still there, on exactly one node, unlocked (but for the locks it started
    with), and running or stopped as before (containers restart after their migration)."""
    assert sorted(after) == sorted(before), "the set of guests changed"
    for vmid, row in after.items():
        assert row.get("lock") == before[vmid].get("lock"), (vmid, row.get("lock"))
        assert row["status"] == before[vmid]["status"], (vmid, row["status"])
