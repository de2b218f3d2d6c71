"""The emulator's control routes under /_emulator/: its state, and the faults it can inject.

Not part of PVE: tests, the chaos campaign and benchmarks use these to look at the cluster's
ground truth and to make it misbehave. Only a caller with every privilege may use them
(`routing.dispatch_control`); a POST body is a JSON object. Every value is range-checked: a
bad one is a 400 naming it, never a broken emulator.

- GET state, stats, tasks/{upid}: the state dump, request counts, one task with its stats.
- POST faults/requests {count, status, path, method, reason, drop}, faults/slow {seconds,
  count, path}, faults/clear, tickets/expire.
- POST quorum {quorate: true|false|null}, clock {speed, advance_s}.
- POST nodes/{node}/online|offline, nodes/{node}/maintenance {enabled}: HA node maintenance
  as `ha-manager crm-command node-maintenance enable|disable` would queue it (PVE 9.2 has no
  API for it; it takes a CRM and an LRM round to apply, see `emulator/ha.py`).
- POST guests/{vmid}/lock {lock}|unlock|fail-migration {at_percent, error}|hang-migration|
  unlock-fails (its next migration cannot clear the lock on the target)|shutdown-time
  {seconds} (how long its OS takes to shut down; null: it ignores shutdown requests).
- POST tasks/{upid}/unhang.

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pvetool.emulator.cluster import PveError
from pvetool.emulator.faults import DEFAULT_REASONS
from pvetool.emulator.routing import Ctx, endpoint

MAX_ADVANCE_S = 86400.0  # one call moves the clock by at most a day
MAX_SPEED = 10000.0
MAX_COUNT = 1_000_000
MAX_DELAY_S = 3600.0
_METHODS = ("GET", "POST", "PUT", "DELETE")


def _bad(name: str, what: str, value: Any) -> PveError:
    return PveError(400, f"bad control request: '{name}' must be {what}, got {value!r}")


def _number(p: dict[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = p.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(name, f"a number {low:g}..{high:g}", value)
    if not math.isfinite(value) or not low <= value <= high:
        raise _bad(name, f"a number {low:g}..{high:g}", value)
    return float(value)


def _count(p: dict[str, Any], name: str, default: int) -> int:
    value = p.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise _bad(name, f"an integer 0..{MAX_COUNT}", value)
    return value


def _text(p: dict[str, Any], name: str) -> str | None:
    value = p.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 1000:
        raise _bad(name, "a string of at most 1000 characters", value)
    return value


@endpoint("GET", "/_emulator/state")
def get_state(ctx: Ctx) -> Any:
    return ctx.emulator.state()


@endpoint("GET", "/_emulator/stats")
def get_stats(ctx: Ctx) -> Any:
    stats = ctx.emulator.stats
    return {"requests": stats.requests, "by_endpoint": dict(stats.by_endpoint)}


@endpoint("GET", "/_emulator/tasks/{upid}")
def get_task(ctx: Ctx) -> Any:
    with ctx.emulator.locked() as c:
        state = c.task(ctx.params["upid"]).state()
    return {k: v for k, v in state.items() if k not in ("type", "vmid", "user")}


@endpoint("POST", "/_emulator/faults/requests")
def post_request_faults(ctx: Ctx) -> Any:
    p = ctx.params
    status = _count(p, "status", 503)
    if status not in DEFAULT_REASONS and not 400 <= status <= 599:
        raise _bad("status", "an HTTP error status 400..599", status)
    path = _text(p, "path")
    if path is not None:
        try:
            re.compile(path)
        except re.error as exc:
            raise PveError(
                400, f"bad control request: 'path' is not a valid regular expression: {exc}"
            ) from None
    method = _text(p, "method")
    if method is not None and method.upper() not in _METHODS:
        raise _bad("method", f"one of {', '.join(_METHODS)}", method)
    ctx.emulator.fail_requests(
        _count(p, "count", 1), status, path, method, _text(p, "reason"), bool(p.get("drop"))
    )
    return None


@endpoint("POST", "/_emulator/faults/slow")
def post_slow_requests(ctx: Ctx) -> Any:
    p = ctx.params
    if "seconds" not in p:
        raise PveError(400, "bad control request: 'seconds'")
    path = _text(p, "path")
    if path is not None:
        try:
            re.compile(path)
        except re.error as exc:
            raise PveError(
                400, f"bad control request: 'path' is not a valid regular expression: {exc}"
            ) from None
    ctx.emulator.slow_requests(
        _number(p, "seconds", 0.0, MAX_DELAY_S, 0.0), _count(p, "count", MAX_COUNT), path
    )
    return None


@endpoint("POST", "/_emulator/faults/clear")
def post_clear_faults(ctx: Ctx) -> Any:
    ctx.emulator.clear_faults()
    return None


@endpoint("POST", "/_emulator/tickets/expire")
def post_expire_tickets(ctx: Ctx) -> Any:
    ctx.emulator.expire_tickets()
    return None


@endpoint("POST", "/_emulator/quorum")
def post_quorum(ctx: Ctx) -> Any:
    quorate = ctx.params.get("quorate")
    if quorate is not None and not isinstance(quorate, bool):
        raise _bad("quorate", "true, false or null", quorate)
    with ctx.emulator.locked() as c:
        c.quorate_override = quorate
    return None


@endpoint("POST", "/_emulator/clock")
def post_clock(ctx: Ctx) -> Any:
    emulator = ctx.emulator
    p = ctx.params
    speed = _number(p, "speed", 0.0, MAX_SPEED, 0.0) if "speed" in p else None
    advance = _number(p, "advance_s", 0.0, MAX_ADVANCE_S, 0.0) if "advance_s" in p else None
    if speed is not None:
        emulator.clock.set_speed(speed)
    if advance is not None:
        emulator.clock.advance(advance)
    with emulator.locked() as c:
        return {"time": c.now}


@endpoint("POST", "/_emulator/nodes/{node}/{action}")
def post_node_action(ctx: Ctx) -> Any:
    name, action = ctx.params["node"], ctx.params["action"]
    with ctx.emulator.locked() as c:
        c.node(name)
        if action in ("online", "offline"):
            c.set_node_online(name, action == "online")
        elif action == "maintenance":
            enabled = ctx.params.get("enabled", True)
            if not isinstance(enabled, bool):
                raise _bad("enabled", "true or false", enabled)
            # pve-ha-manager src/PVE/CLI/ha_manager.pm node-maintenance (l.119-148).
            verb = "enable" if enabled else "disable"
            c.ha.commands.append(f"{verb}-node-maintenance {name}")
        else:
            raise PveError(501, f"unknown node action '{action}'")
    return None


@endpoint("POST", "/_emulator/guests/{vmid}/{action}")
def post_guest_action(ctx: Ctx) -> Any:
    vmid, action = int(ctx.params["vmid"]), ctx.params["action"]
    p = ctx.params
    with ctx.emulator.locked() as c:
        if vmid not in c.guests:
            raise PveError(500, f"unknown guest {vmid}")
        if action == "lock":
            c.set_lock(vmid, _text(p, "lock") or None)
        elif action == "unlock":
            c.set_lock(vmid, None)
        elif action == "fail-migration":
            c.fail_next_migration(
                vmid,
                _number(p, "at_percent", 0.0, 100.0, 50.0),
                _text(p, "error") or "migration failed (injected)",
            )
        elif action == "hang-migration":
            c.hang_next_migration(vmid)
        elif action == "unlock-fails":
            c.faults.unlock_fails[vmid] = True
        elif action == "shutdown-time":
            seconds = p.get("seconds")
            if seconds is None:
                c.faults.shutdown_s[vmid] = math.inf
            else:
                c.faults.shutdown_s[vmid] = _number(p, "seconds", 0.0, MAX_DELAY_S, 0.0)
        else:
            raise PveError(501, f"unknown guest action '{action}'")
    return None


@endpoint("POST", "/_emulator/tasks/{upid}/unhang")
def post_unhang_task(ctx: Ctx) -> Any:
    with ctx.emulator.locked() as c:
        c.unhang_task(ctx.params["upid"])
    return None
