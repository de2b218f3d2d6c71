"""Faults the emulator can inject: failed and hung migrations, failing, dropped and slow requests.

What real clusters do to a maintenance tool, on demand: a migration that fails part-way or hangs,
API answers of 500/502/503/595/596 or a dropped connection, slow answers. This module holds the
*books* of armed faults; they fire where the behaviour lives (a migration job in `engine`, a
request in `server`).

The Python fault API that tests use is `Cluster.set_node_online`, `set_lock`,
`fail_next_migration`, `hang_next_migration`, `unhang_task` (state changes with their
consequences, as a node going down ends the tasks it takes part in) and `Emulator.fail_requests`,
`slow_requests`, `clear_faults`, `expire_tickets`, `close_listener`; the same faults over HTTP
are the control routes under `/_emulator/` (`endpoints/control.py`).

Imports: stdlib and the emulator's `engine`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from pvetool.emulator.engine import Job

__all__ = ["DEFAULT_REASONS", "MigrationFault", "MigrationFaults", "RequestFault", "RequestFaults"]

# Reason phrases of injected failures. 595 and 596 are AnyEvent::HTTP's pseudo-statuses
# (connection establishment; request and timeout errors, per its documentation), which clients
# see when pveproxy proxies a call to a node it cannot reach.
DEFAULT_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    595: "Errors during connection establishment, proxy handshake: Connection refused",
    596: "Connection timed out",
}


@dataclass
class MigrationFault:
    """Fail the next migration of a guest once this fraction of its bytes is sent."""

    at_fraction: float
    message: str


@dataclass
class MigrationFaults:
    """Armed migration faults, by vmid; each fires on the guest's next migration only."""

    failing: dict[int, MigrationFault] = field(default_factory=dict)
    hanging: set[int] = field(default_factory=set)
    # The next migration of these guests cannot clear its lock on the target
    # (QemuMigrate.pm phase3_cleanup l.1902-1903, LXC/Migrate.pm final_cleanup l.554-555).
    unlock_fails: dict[int, bool] = field(default_factory=dict)
    # How long these guests take to shut down (math.inf: they ignore it), in place of the
    # timing model's random time.
    shutdown_s: dict[int, float] = field(default_factory=dict)

    def fail_next(self, vmid: int, at_percent: float, message: str) -> None:
        self.failing[vmid] = MigrationFault(at_percent / 100.0, message)

    def hang_next(self, vmid: int) -> None:
        self.hanging.add(vmid)

    def arm(self, job: Job, vmid: int) -> bool:
        """Give a new migration job the faults armed for `vmid`; whether it hangs."""
        fault = self.failing.pop(vmid, None)
        if fault is not None:
            job.fail_at_fraction = fault.at_fraction
            job.fail_message = fault.message
        if vmid not in self.hanging:
            return False
        self.hanging.discard(vmid)
        job.hung = True
        return True


@dataclass
class RequestFault:
    """Fail the next `count` requests matching `path` (regex) and `method`."""

    count: int
    status: int = 503
    reason: str = "Service Unavailable"
    path: str | None = None
    method: str | None = None
    drop: bool = False
    delay_s: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.count <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not (self.path and not re.search(self.path, path))


class RequestFaults:
    """Armed request faults: failing (or dropped) requests and slow answers; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failing: list[RequestFault] = []
        self.slow: list[RequestFault] = []

    def fail(
        self,
        count: int,
        status: int = 503,
        path: str | None = None,
        method: str | None = None,
        reason: str | None = None,
        drop: bool = False,
    ) -> None:
        fault = RequestFault(
            count, status, reason or DEFAULT_REASONS.get(status, "Error"), path, method, drop
        )
        with self._lock:
            self.failing.append(fault)

    def slow_down(self, seconds: float, count: int = 1_000_000, path: str | None = None) -> None:
        with self._lock:
            self.slow.append(RequestFault(count, 200, "", path, None, False, seconds))

    def clear(self) -> None:
        with self._lock:
            self.failing.clear()
            self.slow.clear()

    def take_failure(self, method: str, path: str) -> RequestFault | None:
        """The fault this request meets (one of its count used up), or None."""
        with self._lock:
            for f in self.failing:
                if f.matches(method, path):
                    f.count -= 1
                    return f
            self.failing = [f for f in self.failing if f.count > 0]
        return None

    def take_delay_s(self, path: str) -> float:
        """Seconds this request is to be held back (0 if no slow fault matches)."""
        with self._lock:
            for f in self.slow:
                if f.matches("GET", path):
                    f.count -= 1
                    return f.delay_s
        return 0.0
