"""The emulator's control routes under /_emulator/: its state, and the faults it can inject.

Not part of PVE: tests, the chaos campaign and benchmarks use these to look at the cluster's
ground truth and to make it misbehave. Only a caller with every privilege may use them
(`routing.dispatch_control`); a POST body is a JSON object.

- GET state, stats, tasks/{upid}: the state dump, request counts, one task with its stats.
- POST faults/requests {count, status, path, method, reason, drop}, faults/slow {seconds,
  count, path}, faults/clear, tickets/expire.
- POST quorum {quorate: true|false|null}, clock {speed, advance_s}.
- POST nodes/{node}/online|offline|maintenance {enabled}.
- POST guests/{vmid}/lock {lock}|unlock|fail-migration {at_percent, error}|hang-migration.
- POST tasks/{upid}/unhang.

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

from typing import Any

from pvetool.emulator.cluster import PveError
from pvetool.emulator.routing import Ctx, endpoint


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
    ctx.emulator.fail_requests(
        int(p.get("count", 1)),
        int(p.get("status", 503)),
        p.get("path"),
        p.get("method"),
        p.get("reason"),
        bool(p.get("drop", False)),
    )
    return None


@endpoint("POST", "/_emulator/faults/slow")
def post_slow_requests(ctx: Ctx) -> Any:
    p = ctx.params
    ctx.emulator.slow_requests(float(p["seconds"]), int(p.get("count", 1_000_000)), p.get("path"))
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
    with ctx.emulator.locked() as c:
        quorate = ctx.params.get("quorate")
        c.quorate_override = None if quorate is None else bool(quorate)
    return None


@endpoint("POST", "/_emulator/clock")
def post_clock(ctx: Ctx) -> Any:
    emulator = ctx.emulator
    if "speed" in ctx.params:
        emulator.clock.set_speed(float(ctx.params["speed"]))
    if "advance_s" in ctx.params:
        emulator.clock.advance(float(ctx.params["advance_s"]))
    with emulator.locked() as c:
        return {"time": c.now}


@endpoint("POST", "/_emulator/nodes/{node}/{action}")
def post_node_action(ctx: Ctx) -> Any:
    name, action = ctx.params["node"], ctx.params["action"]
    with ctx.emulator.locked() as c:
        if action in ("online", "offline"):
            c.set_node_online(name, action == "online")
        elif action == "maintenance":
            c.node(name).maintenance = bool(ctx.params.get("enabled", True))
        else:
            raise PveError(501, f"unknown node action '{action}'")
    return None


@endpoint("POST", "/_emulator/guests/{vmid}/{action}")
def post_guest_action(ctx: Ctx) -> Any:
    vmid, action = int(ctx.params["vmid"]), ctx.params["action"]
    p = ctx.params
    with ctx.emulator.locked() as c:
        if action == "lock":
            c.set_lock(vmid, p.get("lock") or None)
        elif action == "unlock":
            c.set_lock(vmid, None)
        elif action == "fail-migration":
            c.fail_next_migration(
                vmid,
                float(p.get("at_percent", 50)),
                str(p.get("error", "migration failed (injected)")),
            )
        elif action == "hang-migration":
            c.hang_next_migration(vmid)
        else:
            raise PveError(501, f"unknown guest action '{action}'")
    return None


@endpoint("POST", "/_emulator/tasks/{upid}/unhang")
def post_unhang_task(ctx: Ctx) -> Any:
    with ctx.emulator.locked() as c:
        c.unhang_task(ctx.params["upid"])
    return None
