"""Task endpoints: /cluster/tasks and /nodes/{node}/tasks[/{upid}/{status,log}], DELETE a task.

After pve-manager `PVE/API2/Tasks.pm` and `PVE/API2/Cluster.pm` `tasks`.

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import re
from typing import Any

from pvetool.emulator.cluster import PveError
from pvetool.emulator.endpoints.common import proxied_node
from pvetool.emulator.routing import Caller, Ctx, endpoint

__all__ = ["task_entry"]


def task_entry(t: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "upid": t.upid,
        "node": t.node,
        "pid": t.pid,
        "pstart": t.pstart,
        "starttime": t.starttime,
        "type": t.type,
        "id": t.id,
        "user": t.user,
    }
    if t.status == "stopped":
        entry["endtime"] = t.endtime
        entry["status"] = t.exitstatus
    if "!" in t.user:
        entry["user"], entry["tokenid"] = t.user.split("!", 1)
    return entry


@endpoint("GET", "/cluster/tasks")
def get_cluster_tasks(ctx: Ctx) -> Any:
    c = ctx.cluster
    out = []
    for t in reversed(c.task_order[-500:]):
        out.append(task_entry(t) | {"saved": "1" if t.status == "stopped" else "0"})
    return out


# -- tasks ------------------------------------------------------------------------------------
def _task_on(ctx: Ctx) -> Any:
    node = proxied_node(ctx)
    upid = str(ctx.params["upid"])
    t = ctx.cluster.task(upid)
    if t.node != node:
        raise PveError(
            400, "Parameter verification failed.", {"upid": "unable to parse worker upid"}
        )
    if not ctx.caller.has(["Sys.Audit"]) and not _task_visible(ctx.caller, t.user):
        raise PveError(403, f"Permission check failed (/nodes/{node}, Sys.Audit)")
    return t


def _task_status_type(exitstatus: str | None) -> str:
    """PVE::Tools::upid_normalize_status_type: ok, warning, error or unknown (running tasks)."""
    if not exitstatus:
        return "unknown"
    if exitstatus == "OK":
        return "ok"
    if re.fullmatch(r"WARNINGS: \d+", exitstatus):
        return "warning"
    if exitstatus == "unexpected status":
        return "unknown"
    return "error"


def _task_visible(caller: Caller, task_user: str) -> bool:
    """pve-manager's check_task_user: a token sees its own tasks, a user its own and its
    tokens' tasks."""
    return caller.authid == task_user or caller.authid == task_user.split("!", 1)[0]


@endpoint("GET", "/nodes/{node}/tasks")
def get_node_tasks(ctx: Ctx) -> Any:
    """pve-manager PVE/API2/Tasks.pm `node_tasks`: the active tasks first (source active|all,
    status "RUNNING"), then the archive, newest first. `typefilter` is the exact task type,
    `userfilter` a case-insensitive part of the user (without the token), and running tasks
    count as status type "unknown". One known difference is kept: `limit=0` lists every task
    here (PVE's `$limit // 50` lists none), because callers of the emulator rely on it."""
    c = ctx.cluster
    node = proxied_node(ctx)
    p = ctx.params
    source = p.get("source", "archive")
    vmid = p.get("vmid")
    typefilter = p.get("typefilter")
    userfilter = str(p["userfilter"]).lower() if p.get("userfilter") else None
    since = p.get("since")
    until = p.get("until")
    errors_only = bool(p.get("errors", False))
    start = int(p.get("start", 0))
    limit = int(p.get("limit", 50))
    wanted = {"ok", "warning", "error", "unknown"}
    if p.get("statusfilter") and not errors_only:
        wanted = {s.strip().lower() for s in str(p["statusfilter"]).split(",") if s.strip()}
    elif errors_only:
        wanted.discard("ok")
    auditor = ctx.caller.has(["Sys.Audit"])
    count = 0

    def keep(t: Any) -> bool:
        nonlocal count
        user = t.user.split("!", 1)[0]
        if userfilter and userfilter not in user.lower():
            return False
        if not auditor and not _task_visible(ctx.caller, t.user):
            return False
        if typefilter and t.type != typefilter:
            return False
        if vmid is not None and t.id != str(vmid):
            return False
        if since is not None and t.starttime < int(since):
            return False
        if until is not None and t.starttime > int(until):
            return False
        running = t.status == "running"
        if _task_status_type(None if running else t.exitstatus) not in wanted:
            return False
        count += 1
        return count > start and (not limit or len(rows) < limit)

    rows: list[dict[str, Any]] = []
    newest_first = [t for t in reversed(c.task_order) if t.node == node]
    if source in ("active", "all"):
        for t in newest_first:
            if t.status == "running" and keep(t):
                rows.append(task_entry(t) | {"status": "RUNNING"})
    if source != "active":
        for t in newest_first:
            if t.status != "running" and keep(t):
                rows.append(task_entry(t))
    return rows


@endpoint("GET", "/nodes/{node}/tasks/{upid}/status")
def get_task_status(ctx: Ctx) -> Any:
    t = _task_on(ctx)
    e = task_entry(t)
    e["status"] = t.status
    if t.status == "stopped":
        e["exitstatus"] = t.exitstatus
    e.pop("endtime", None)
    return e


@endpoint("GET", "/nodes/{node}/tasks/{upid}/log")
def get_task_log(ctx: Ctx) -> Any:
    t = _task_on(ctx)
    start = int(ctx.params.get("start", 0))
    limit = int(ctx.params.get("limit", 50))
    lines = t.lines
    if ctx.params.get("download"):
        return "\n".join(lines) + "\n"
    selected = lines[start : start + limit] if limit else []
    return [{"n": start + i + 1, "t": text} for i, text in enumerate(selected)]


@endpoint("DELETE", "/nodes/{node}/tasks/{upid}")
def delete_task(ctx: Ctx) -> Any:
    t = _task_on(ctx)
    ctx.cluster.stop_task(t)
    return None
