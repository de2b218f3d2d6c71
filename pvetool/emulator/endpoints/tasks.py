"""Task endpoints: /cluster/tasks and /nodes/{node}/tasks[/{upid}/{status,log}], DELETE a task.

After pve-manager `PVE/API2/Tasks.pm` (14a22df: `node_tasks` l.39-259, `stop_task` l.291-330,
`read_task_log` l.332-449, `read_task_status` l.453-546) and `PVE/API2/Cluster.pm` `tasks`
(l.749-770) with pve-common `src/PVE/RESTEnvironment.pm` `active_workers` (l.296-404) and
`src/PVE/Tools.pm` `dump_logfile` (l.751-821).

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import re
from typing import Any

from pvetool.emulator.cluster import PveError, TaskRt
from pvetool.emulator.endpoints.common import proxied_node
from pvetool.emulator.routing import Caller, Ctx, WithTotal, endpoint

__all__ = ["parse_upid", "task_entry"]

# pve-common src/PVE/UPID.pm decode (l.35-37).
_UPID_RE = re.compile(
    r"UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):"
    r"([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):"
)
MAX_FINISHED_PER_NODE = 25  # RESTEnvironment.pm active_workers: $MAX_FINISHED = 25


def parse_upid(upid: str) -> dict[str, Any] | None:
    """PVE::UPID::decode: the task a UPID names (node, pid, pstart, starttime, type, id, user)."""
    m = _UPID_RE.fullmatch(upid)
    if m is None:
        return None
    return {
        "node": m.group(1),
        "pid": int(m.group(3), 16),
        "pstart": int(m.group(4), 16),
        "starttime": int(m.group(5), 16),
        "type": m.group(6),
        "id": m.group(7),
        "user": m.group(8),
    }


def task_entry(t: TaskRt) -> dict[str, Any]:
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
    if "!" in t.user:  # Tasks.pm $convert_token_task
        entry["user"], entry["tokenid"] = t.user.split("!", 1)
    return entry


def _is_task_user(caller: Caller, task_user: str) -> bool:
    """Tasks.pm $check_task_user (l.27-37): a token sees its own tasks, a user its own and its
    tokens' tasks."""
    return caller.authid == task_user or caller.authid == task_user.split("!", 1)[0]


@endpoint("GET", "/cluster/tasks")
def get_cluster_tasks(ctx: Ctx) -> Any:
    """The nodes' broadcast task lists (pve-cluster Cluster.pm get_tasklist, node by node): per
    node every running task (pid, no pstart) and then the newest finished ones, 25 rows in all
    (active_workers l.388-394; finished rows lose `pid`). Without Sys.Audit on / only rows
    whose user equals the caller's id (Cluster.pm tasks l.758-766): a token sees none."""
    c = ctx.cluster
    caller = ctx.caller
    see_all = caller.has("/", ["Sys.Audit"])
    out: list[dict[str, Any]] = []
    for node in c.nodes:
        tasks = [t for t in c.task_order if t.node == node]
        running = [t for t in tasks if t.status == "running"]
        finished = sorted((t for t in tasks if t.status != "running"), key=lambda t: -t.starttime)
        room = max(0, MAX_FINISHED_PER_NODE - len(running))
        for t in running + finished[:room]:
            row = task_entry(t)
            del row["pstart"]
            if t.status != "running":
                del row["pid"]
                row["saved"] = "1"
            if see_all or row["user"] == caller.authid:
                out.append(row)
    return out


# -- tasks ------------------------------------------------------------------------------------
def _decoded(ctx: Ctx) -> dict[str, Any]:
    upid = str(ctx.params["upid"])
    task = parse_upid(upid)
    if task is None:
        raise PveError(
            400, "Parameter verification failed.", {"upid": "unable to parse worker upid"}
        )
    return task


def _task_file(ctx: Ctx, node: str) -> TaskRt | None:
    """The task's log file on the node that serves the call (another node's UPID: none)."""
    t = ctx.cluster.tasks.get(str(ctx.params["upid"]))
    return t if t is not None and t.node == node else None


def _check_owner_or(ctx: Ctx, node: str, task_user: str, priv: str) -> None:
    if not _is_task_user(ctx.caller, task_user):
        ctx.caller.check(f"/nodes/{node}", [priv])


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


@endpoint("GET", "/nodes/{node}/tasks")
def get_node_tasks(ctx: Ctx) -> Any:
    """Tasks.pm node_tasks (l.141-258): the active tasks first (source active|all, status
    "RUNNING"), then the archive, newest first. `typefilter` is the exact task type,
    `userfilter` a case-insensitive part of the user (without the token), running tasks count
    as status type "unknown". Every matching task counts towards `total`; `start` skips and
    `limit` (0: none at all) cuts the rows (`$filter_task`, l.186-206)."""
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
    auditor = ctx.caller.has(f"/nodes/{node}", ["Sys.Audit"])
    count = 0
    rows: list[dict[str, Any]] = []

    def keep(t: TaskRt) -> bool:
        nonlocal count, limit
        user = t.user.split("!", 1)[0]
        if userfilter and userfilter not in user.lower():
            return False
        if not auditor and not _is_task_user(ctx.caller, t.user):
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
        if count <= start or limit <= 0:
            return False
        limit -= 1
        return True

    newest_first = [t for t in reversed(c.task_order) if t.node == node]
    if source in ("active", "all"):
        for t in newest_first:
            if t.status == "running" and keep(t):
                rows.append(task_entry(t) | {"status": "RUNNING"})
    if source != "active":
        for t in newest_first:
            if t.status != "running" and keep(t):
                rows.append(task_entry(t))
    return WithTotal(rows, count)


@endpoint("GET", "/nodes/{node}/tasks/{upid}/status")
def get_task_status(ctx: Ctx) -> Any:
    """read_task_status (l.512-545): a malformed UPID and one without a log file on this node
    are 400s; a non-owner needs Sys.Audit on the node."""
    node = proxied_node(ctx)
    decoded = _decoded(ctx)
    t = _task_file(ctx, node)
    if t is None:
        raise PveError(400, "Parameter verification failed.", {"upid": "no such task"})
    _check_owner_or(ctx, node, decoded["user"], "Sys.Audit")
    e = task_entry(t)
    e["status"] = t.status
    if t.status == "stopped":
        e["exitstatus"] = t.exitstatus
    e.pop("endtime", None)
    return e


@endpoint("GET", "/nodes/{node}/tasks/{upid}/log")
def get_task_log(ctx: Ctx) -> Any:
    """read_task_log (l.393-448) with Tools.pm dump_logfile (l.751-821): lines `n` from 1,
    `total` = the whole file's line count, `limit=0` = to the end, an empty file = one
    "no content" line, no file = "unable to open file - No such file or directory"."""
    node = proxied_node(ctx)
    decoded = _decoded(ctx)
    _check_owner_or(ctx, node, decoded["user"], "Sys.Audit")
    p = ctx.params
    t = _task_file(ctx, node)
    if p.get("download"):
        if "start" in p or "limit" in p:
            raise PveError(
                500, "'download' cannot be used together with 'start' or 'limit' parameters"
            )
        if t is None:
            raise PveError(500, f"Could not open file '{p['upid']}' - No such file or directory")
        return "\n".join(t.lines) + "\n"
    if t is None:
        return WithTotal([{"n": 1, "t": "unable to open file - No such file or directory"}], 1)
    start = int(p.get("start", 0))
    limit = int(p.get("limit", 50))
    lines = t.lines
    if not lines:
        return WithTotal([{"n": 1, "t": "no content"}], 1)
    selected = lines[start:] if limit == 0 else lines[start : start + limit]
    rows = [{"n": start + i + 1, "t": text} for i, text in enumerate(selected)]
    return WithTotal(rows, len(lines))


@endpoint("DELETE", "/nodes/{node}/tasks/{upid}")
def delete_task(ctx: Ctx) -> Any:
    """stop_task (l.311-330): parse, no such task (400), then a non-owner needs Sys.Modify on
    the node."""
    node = proxied_node(ctx)
    decoded = _decoded(ctx)
    t = _task_file(ctx, node)
    if t is None:
        raise PveError(400, "Parameter verification failed.", {"upid": "no such task"})
    _check_owner_or(ctx, node, decoded["user"], "Sys.Modify")
    ctx.cluster.stop_task(t)
    return None
