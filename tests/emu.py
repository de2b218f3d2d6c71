"""Test helpers for driving the emulator over real HTTPS (not a test module).

`Api` is a deliberately plain requests client (not pvetool's): the emulator's tests must not
depend on the code the emulator is there to check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from pvetool.emulator.clusterfile import load_cluster
from pvetool.emulator.server import Emulator

CLUSTERS = Path(__file__).parent / "data" / "clusters"
START_EPOCH = 1_790_000_000.0  # fixed emulated start: logs and UPIDs are reproducible


@dataclass
class Reply:
    status: int
    reason: str
    body: Any

    @property
    def data(self) -> Any:
        assert self.status == 200, f"{self.status} {self.reason}: {self.body}"
        return self.body["data"]


class Api:
    """Minimal PVE API client over HTTPS with certificate verification on."""

    def __init__(
        self, emu: Emulator, token: tuple[str, str] | None = None, port: int | None = None
    ) -> None:
        self.emu = emu
        self.base = f"https://127.0.0.1:{port or emu.port}/api2/json"
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
        self.session.verify = str(emu.tls.ca_file)
        tid, secret = token or emu.admin_token()
        self.session.headers["Authorization"] = f"PVEAPIToken={tid}={secret}"

    def call(self, method: str, path: str, **params: Any) -> Reply:
        if method in ("POST", "PUT"):
            r = self.session.request(method, self.base + path, data=params, timeout=30)
        else:
            r = self.session.request(method, self.base + path, params=params, timeout=30)
        try:
            body = r.json() if r.content else None
        except ValueError:
            body = r.text
        return Reply(r.status_code, r.reason, body)

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params).data

    def post(self, path: str, **params: Any) -> Any:
        return self.call("POST", path, **params).data

    def task_status(self, upid: str) -> dict[str, Any]:
        node = upid.split(":")[1]
        return self.get(f"/nodes/{node}/tasks/{upid}/status")  # type: ignore[no-any-return]

    def task_log(self, upid: str) -> list[str]:
        node = upid.split(":")[1]
        rows = self.get(f"/nodes/{node}/tasks/{upid}/log", limit=0 or 100000)
        return [row["t"] for row in rows]

    def wait_task(self, upid: str, step_s: float = 1.0, max_s: float = 20000.0) -> dict[str, Any]:
        """Advance the (stopped) emulated clock until the task ends."""
        waited = 0.0
        while waited <= max_s:
            st = self.task_status(upid)
            if st["status"] == "stopped":
                return st
            self.emu.clock.advance(step_s)
            waited += step_s
        raise AssertionError(f"task {upid} still running after {max_s} emulated seconds")

    def advance(self, seconds: float) -> None:
        self.emu.clock.advance(seconds)

    def guest(self, vmid: int) -> dict[str, Any]:
        for r in self.get("/cluster/resources", type="vm"):
            if r["vmid"] == vmid:
                return r  # type: ignore[no-any-return]
        raise AssertionError(f"guest {vmid} not in /cluster/resources")


def start(cluster: str = "lab", speed: float = 0.0, **kw: Any) -> Emulator:
    source = cluster if cluster == "lab" or "/" in cluster else str(CLUSTERS / cluster)
    spec = load_cluster(source)
    return Emulator(spec, speed=speed, start_epoch_s=START_EPOCH, **kw).start()


def wait_real(predicate: Any, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
