"""The invariants every chaos trial must hold, checked against the emulator's own state.

pvetool's word (its exit code, its JSON report) is what is checked, never what checks: the
truth is the emulator's state dump (`/_emulator/state`), `/cluster/resources` and
`/cluster/tasks` after the cleanup, the state samples taken during the run, and the state at
the moment each pvetool process ended.

- exactly-once: every guest exists exactly once, on one node, in the state dump and in
  `/cluster/resources`; none appeared or vanished;
- no-double-migration: per guest at most as many successful qmigrate/vzmigrate tasks as the
  plan intends (drain: 1 for a guest of the drained node; rolling: 2, out and back, for a guest
  of a maintained node; rebalance: 1; any other guest: 0), and no more `hamigrate` requests
  than intents plus failed tasks plus re-planned attempts;
- memory: no node ever holds more memory than it has (running guests plus guests migrating
  into it), sampled every 50 ms during the runs and the cleanup;
- report-truth: every guest the JSON report calls moved reached its target by a successful
  task and (its last move) is there; every skipped one is on its target; every failed or
  not-started one is where the report says, unless the report says its task is still running
  and that task really outlived the task timeout;
- exit-code: the exit code is the report's; 0 only when everything planned succeeded (and then
  the reference plan's guests are really off the drained node, or back home); 2 only when
  nothing was started; a run that ran a plan writes its report;
- no-leftovers: after the cleanup no guest is locked (except locks present at the start or set
  and kept by the schedule, and a ``migrate`` lock PVE's own migration left when the last
  report that speaks of the guest names it: where the guest is and the exact ``qm unlock`` /
  ``pct unlock`` to run there), no task runs, no HA migration is pending;
- clean-output: no "Traceback" and no "internal error" in anything pvetool printed;
- no-secret: neither the token secret nor the password nor a PVE ticket in anything pvetool
  printed or wrote (stdout, stderr, reports, journals);
- terminates: every pvetool run ended on its own within the hard limit;
- harness: the campaign itself worked (emulator up, dry-run readable, no emulator traceback).

Imports: the standard library and the chaos package.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.chaos.trial import RUN_BANNER, Evidence, PvetoolRun

INVARIANTS = (
    "exactly-once",
    "no-double-migration",
    "memory",
    "report-truth",
    "exit-code",
    "no-leftovers",
    "clean-output",
    "no-secret",
    "terminates",
    "harness",
)
MIGRATIONS = ("qmigrate", "vzmigrate")
TICKET = re.compile(r"PVE:[^:\s]+@[^:\s]+:[0-9A-F]{8}::")
SLACK_S = 1.0  # real seconds of slack when comparing a task's run time with the task timeout


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.detail}"


def check(ev: Evidence) -> list[Violation]:
    out: list[Violation] = []
    for fn in (
        _harness,
        _terminates,
        _exactly_once,
        _no_double_migration,
        _memory,
        _report_truth,
        _exit_code,
        _no_leftovers,
        _clean_output,
        _no_secret,
    ):
        out += fn(ev)
    return out


# --------------------------------------------------------------------------------------------
# helpers


def _ok(task: dict[str, Any]) -> bool:
    """PVE's success: stopped, exit status OK or WARNINGS (pve-common upid_status_is_error)."""
    status = str(task.get("exitstatus") or "")
    return task["status"] == "stopped" and (status == "OK" or status.startswith("WARNINGS"))


def _tasks_of(ev: Evidence, vmid: int, types: tuple[str, ...]) -> list[dict[str, Any]]:
    return [t for t in ev.final["tasks"] if t["vmid"] == vmid and t["type"] in types]


def _node_of(ev: Evidence, vmid: int) -> str:
    return str(ev.final["guests"][str(vmid)]["node"])


def _initial_node(ev: Evidence, vmid: int) -> str:
    return str(ev.initial["guests"][str(vmid)]["node"])


def _report_run(ev: Evidence) -> PvetoolRun | None:
    """The final run, when it ended on its own (its report is the trial's verdict)."""
    run = ev.final_run
    if run is None or run.killed or run.hung:
        return None
    return run


def _intents(ev: Evidence, vmid: int) -> int:
    """How many times the plan may migrate `vmid` (by the cluster, not by pvetool's word)."""
    trial = ev.trial
    home = _initial_node(ev, vmid)
    if trial.kind == "drain":
        return 1 if home in trial.nodes else 0
    if trial.kind == "rolling":
        return 2 if home in trial.nodes else 0
    return 1


# --------------------------------------------------------------------------------------------
# the invariants


# What werkzeug prints when the emulator's `drop` fault closes the socket without an answer
# (`Emulator.wsgi` returns no response): the client sees the dropped connection it should, the
# server logs this. Known and harmless for the campaign; any other emulator traceback counts.
DROP_NOISE = re.compile(
    r"Error on request:\nTraceback \(most recent call last\):\n(?:  .*\n)+"
    r"AssertionError: write\(\) before start_response\n"
)


def _harness(ev: Evidence) -> list[Violation]:
    out = [Violation("harness", e) for e in ev.harness_errors]
    stderr = DROP_NOISE.sub("", ev.emulator_stderr)
    if "Traceback" in stderr:
        tail = stderr[stderr.index("Traceback") :][:1500]
        out.append(Violation("harness", f"the emulator printed a traceback: {tail}"))
    return out


def _terminates(ev: Evidence) -> list[Violation]:
    return [
        Violation(
            "terminates",
            f"run {r.index} ({' '.join(r.argv)}) did not end within the hard limit and was killed",
        )
        for r in ev.runs
        if r.hung
    ]


def _exactly_once(ev: Evidence) -> list[Violation]:
    out: list[Violation] = []
    start = set(ev.initial["guests"])
    end = set(ev.final["guests"])
    if start != end:
        out.append(
            Violation(
                "exactly-once",
                f"guests vanished {sorted(start - end)} / appeared {sorted(end - start)}",
            )
        )
    placed: dict[str, list[str]] = {}
    for node, info in ev.final["nodes"].items():
        for vmid in info["guests"]:
            placed.setdefault(str(vmid), []).append(node)
    for vmid, guest in ev.final["guests"].items():
        if placed.get(vmid) != [guest["node"]]:
            out.append(
                Violation(
                    "exactly-once",
                    f"guest {vmid} is listed on {placed.get(vmid)}, its node says {guest['node']}",
                )
            )
    counts = Counter(str(r["vmid"]) for r in ev.resources)
    for vmid, n in counts.items():
        if n != 1:
            out.append(Violation("exactly-once", f"/cluster/resources lists {vmid} {n} times"))
    if set(counts) != end:
        out.append(
            Violation(
                "exactly-once",
                f"/cluster/resources and the state disagree on the guests: "
                f"{sorted(set(counts) ^ end)}",
            )
        )
    for r in ev.resources:
        vmid = str(r["vmid"])
        if vmid in ev.final["guests"] and r["node"] != ev.final["guests"][vmid]["node"]:
            out.append(
                Violation(
                    "exactly-once",
                    f"/cluster/resources puts {vmid} on {r['node']}, the state on "
                    f"{ev.final['guests'][vmid]['node']}",
                )
            )
    return out


def _no_double_migration(ev: Evidence) -> list[Violation]:
    out: list[Violation] = []
    report = _final_report(ev)
    attempts: Counter[int] = Counter()
    for m in (report or {}).get("moves") or ():
        attempts[int(m["vmid"])] += len(m.get("attempts") or ())
    for vmid_text in ev.final["guests"]:
        vmid = int(vmid_text)
        intents = _intents(ev, vmid)
        moves = _tasks_of(ev, vmid, MIGRATIONS)
        ok = [t for t in moves if _ok(t)]
        failed = [t for t in moves if t["status"] == "stopped" and not _ok(t)]
        if len(ok) > intents:
            out.append(
                Violation(
                    "no-double-migration",
                    f"guest {vmid} migrated {len(ok)} times, the plan intends {intents}: "
                    + ", ".join(
                        f"{t['stats'].get('source')}->{t['stats'].get('target')} {t['upid']}"
                        for t in ok
                    ),
                )
            )
        ha = _tasks_of(ev, vmid, ("hamigrate",))
        allowed = intents + len(failed) + attempts[vmid]
        if len(ha) > allowed:
            out.append(
                Violation(
                    "no-double-migration",
                    f"guest {vmid}: {len(ha)} hamigrate requests for {intents} intended "
                    f"move(s), {len(failed)} failed task(s), {attempts[vmid]} re-planned "
                    f"attempt(s): {[t['upid'] for t in ha]}",
                )
            )
    return out


def _memory(ev: Evidence) -> list[Violation]:
    out = [Violation("memory", v) for v in ev.memory_violations]
    if ev.runs and ev.memory_samples == 0:
        out.append(Violation("harness", "the memory watcher took no sample"))
    return out


def _final_report(ev: Evidence) -> dict[str, Any] | None:
    run = _report_run(ev)
    return None if run is None else run.report


def _legit_timeout(ev: Evidence, run: PvetoolRun, move: dict[str, Any]) -> bool:
    """True when the move's migration really outlived the task timeout: it ran at least that
    long (emulated seconds = real seconds x clock speed), or had run that long when pvetool
    ended. Then pvetool was right to stop following it and to report it still running."""
    speed = ev.trial.choice.speed
    vmid = int(move["vmid"])
    target = str(move["target"])
    exit_now = float(run.exit_state.get("time") or 0)
    running_at_exit = {t["upid"] for t in run.exit_state["tasks"] if t["status"] == "running"}
    related = [
        t
        for t in ev.final["tasks"]
        if t["vmid"] == vmid
        and (
            t["upid"] in (move.get("upid"), move.get("ha_upid"))
            or (t["type"] in MIGRATIONS and t["stats"].get("target") == target)
        )
    ]
    limit = (ev.trial.task_timeout_s - SLACK_S) * speed

    def end_of(t: dict[str, Any]) -> float:
        if t["upid"] in running_at_exit or t["status"] != "stopped" or not t["endtime"]:
            return exit_now
        return float(t["endtime"])

    real = [t for t in related if t["type"] in MIGRATIONS]
    if any(end_of(t) - float(t["starttime"]) >= limit for t in real):
        return True
    ha = [t for t in related if t["type"] == "hamigrate"]
    if ha and real:
        # HA: pvetool follows from the request through the HA stack's delay to the migration.
        first = min(float(t["starttime"]) for t in ha)
        return max(end_of(t) for t in real) - first >= limit
    return False


def _report_truth(ev: Evidence) -> list[Violation]:
    run = _report_run(ev)
    if run is None or run.report is None:
        return []
    out: list[Violation] = []
    moves = run.report.get("moves") or []
    last: dict[int, int] = {}
    for i, m in enumerate(moves):
        last[int(m["vmid"])] = i
    for i, m in enumerate(moves):
        vmid = int(m["vmid"])
        status = m["status"]
        target = str(m["target"])
        final = _node_of(ev, vmid)
        is_last = last[vmid] == i
        what = f"{vmid} {m['source']}->{target} ({status}"
        what += f": {m['reason']})" if m.get("reason") else ")"
        if status == "moved":
            ok_to_target = [
                t
                for t in _tasks_of(ev, vmid, MIGRATIONS)
                if _ok(t) and t["stats"].get("target") == target
            ]
            if not ok_to_target:
                out.append(
                    Violation(
                        "report-truth",
                        f"report says moved {what}, but no migration of it to {target} succeeded",
                    )
                )
            if is_last and final != target:
                out.append(
                    Violation("report-truth", f"report says moved {what}, but it is on {final}")
                )
        elif status == "skipped":
            if is_last and final != target:
                out.append(
                    Violation(
                        "report-truth",
                        f"report says skipped (already there) {what}, but it is on {final}",
                    )
                )
        elif is_last:
            said = m.get("node") or m["source"]
            allowed = {said}
            # A migration of the guest that the report calls still running (this move's or an
            # earlier one's, e.g. a drain whose "return home" was then not started) may land
            # it on that migration's target, if it really outlived the task timeout.
            for earlier in moves[: i + 1]:
                if int(earlier["vmid"]) != vmid or not earlier.get("still_running"):
                    continue
                if _legit_timeout(ev, run, earlier):
                    allowed.add(str(earlier["target"]))
            if final not in allowed:
                running = " (task said to be still running)" if m.get("still_running") else ""
                out.append(
                    Violation(
                        "report-truth",
                        f"report says {status} {what}{running} on {said}, but it ended on {final}",
                    )
                )
    for b in run.report.get("blocked") or ():
        vmid = int(b["vmid"])
        if vmid not in last and _node_of(ev, vmid) != _initial_node(ev, vmid):
            out.append(
                Violation(
                    "report-truth",
                    f"report says {vmid} was blocked (never attempted), but it moved from "
                    f"{_initial_node(ev, vmid)} to {_node_of(ev, vmid)}",
                )
            )
    return out


def _started_by(ev: Evidence, run: PvetoolRun) -> list[str]:
    """Migration tasks pvetool's own user started during `run` (not the HA stack's)."""
    new = run.tasks_after - run.tasks_before
    return [
        str(t["upid"])
        for t in run.exit_state["tasks"]
        if t["upid"] in new
        and t["type"] in (*MIGRATIONS, "hamigrate")
        and t["user"] == ev.pvetool_user
        and not t["stats"].get("ha")
    ]


def _exit_code(ev: Evidence) -> list[Violation]:
    run = _report_run(ev)
    if run is None:
        return []
    out: list[Violation] = []
    code = run.code
    report = run.report
    trial = ev.trial
    if code not in (0, 1, 2):
        out.append(Violation("exit-code", f"run {run.index} exited {code} (expected 0, 1 or 2)"))
    if run.report_error:
        out.append(Violation("exit-code", run.report_error))
    if report is not None:
        if report.get("exit_code") != code:
            out.append(
                Violation(
                    "exit-code",
                    f"the report says exit code {report.get('exit_code')}, the process exited "
                    f"{code}",
                )
            )
        moves = report.get("moves") or []
        everything = (
            all(m["status"] in ("moved", "skipped") for m in moves)
            and not report.get("blocked")
            and all(h.get("ok") for h in report.get("hooks") or ())
            and all(w.get("ok") for w in report.get("node_waits") or ())
            and not report.get("interrupted")
        )
        if code == 0 and not everything:
            out.append(
                Violation("exit-code", "exit 0 although the report lists failures or blocks")
            )
        if code == 1 and everything:
            out.append(Violation("exit-code", "exit 1 although the report lists no failure"))
        if code == 2 and _started_by(ev, run):
            out.append(
                Violation(
                    "exit-code",
                    f"exit 2 (nothing started) but the run started {_started_by(ev, run)}",
                )
            )
    elif code in (0, 1) and (RUN_BANNER.search(run.stdout) or _started_by(ev, run)):
        # It ran (part of) a plan: the report it was asked for must exist. (A run that stopped
        # before that, on an API error or with "Nothing to migrate.", has nothing to report.)
        out.append(
            Violation(
                "exit-code",
                f"run {run.index} exited {code} after starting its plan without writing its "
                f"report ({run.stderr.strip()[-300:] or 'no message'})",
            )
        )
    elif code == 0 and "Nothing to migrate." not in run.stderr:
        out.append(Violation("exit-code", f"run {run.index} exited 0 and wrote no report"))
    elif code == 2 and _started_by(ev, run):
        out.append(Violation("exit-code", f"exit 2 but the run started {_started_by(ev, run)}"))
    if code == 0 and ev.reference is not None and not ev.reference.error:
        for vmid, source, _target in ev.reference.moves:
            final = _node_of(ev, vmid)
            if trial.kind == "drain" and final in trial.nodes:
                out.append(
                    Violation(
                        "exit-code",
                        f"exit 0, but guest {vmid}, which the plan moves off {source}, is still "
                        f"on {final}",
                    )
                )
            if trial.kind == "rolling" and final != _initial_node(ev, vmid):
                out.append(
                    Violation(
                        "exit-code",
                        f"exit 0, but guest {vmid} is on {final}, not back home on "
                        f"{_initial_node(ev, vmid)}",
                    )
                )
    return out


def _no_leftovers(ev: Evidence) -> list[Violation]:
    out: list[Violation] = []
    if not ev.cleanup_idle:
        out.append(Violation("no-leftovers", "; ".join(ev.cleanup_notes[-3:])))
    for vmid, guest in ev.final["guests"].items():
        lock = guest["lock"]
        if not lock:
            continue
        if ev.initial["guests"][vmid]["lock"] == lock:
            continue
        if ev.held_on_purpose.get(int(vmid)) == lock:
            continue
        if _named_by_report(ev, int(vmid), guest):
            continue
        out.append(Violation("no-leftovers", f"guest {vmid} is left locked ({lock})"))
    running = [t["upid"] for t in ev.final["tasks"] if t["status"] == "running"]
    if running:
        out.append(Violation("no-leftovers", f"tasks still running: {running}"))
    listed = [t["upid"] for t in ev.cluster_tasks if t.get("status") == "running"]
    if listed:
        out.append(Violation("no-leftovers", f"/cluster/tasks lists running tasks: {listed}"))
    return out


def _named_by_report(ev: Evidence, vmid: int, guest: dict[str, Any]) -> bool:
    """A ``migrate`` lock PVE itself left (its last cleanup step, ``qm unlock``/``pct unlock``
    over ssh on the target, failed: qemu-server `QemuMigrate.pm` `phase3_cleanup`,
    pve-container `LXC/Migrate.pm` `final_cleanup`) is no leftover of pvetool's when the last
    report that speaks of the guest says so: a move of it that failed on the node it is on,
    naming this lock and the command that clears it there, and no later move of it called
    moved. Any other lock stays a violation."""
    if guest["lock"] != "migrate":
        return False
    node = guest["node"]
    word, cli = ("VM", "qm") if guest["type"] == "qemu" else ("CT", "pct")
    fix = f"{word} {vmid} is on {node}, locked (migrate): run '{cli} unlock {vmid}' on {node}"
    for run in reversed(ev.runs):
        moves = [m for m in (run.report or {}).get("moves") or [] if int(m["vmid"]) == vmid]
        if not moves:
            continue
        named = [
            i
            for i, m in enumerate(moves)
            if m["status"] == "failed"
            and m.get("node") == node
            and fix in str(m.get("reason") or "")
        ]
        return bool(named) and all(m["status"] != "moved" for m in moves[named[0] :])
    return False


def _clean_output(ev: Evidence) -> list[Violation]:
    out: list[Violation] = []
    for r in ev.runs:
        for stream, text in (("stdout", r.stdout), ("stderr", r.stderr)):
            for needle in ("Traceback", "internal error"):
                if needle in text:
                    at = text.index(needle)
                    out.append(
                        Violation(
                            "clean-output",
                            f"run {r.index} {stream}: {text[max(0, at - 200) : at + 600]!r}",
                        )
                    )
    return out


def _no_secret(ev: Evidence) -> list[Violation]:
    out: list[Violation] = []
    for where, text in ev.texts:
        for secret in ev.secrets:
            if secret and secret in text:
                out.append(Violation("no-secret", f"a secret appears in {where}"))
        if TICKET.search(text):
            out.append(Violation("no-secret", f"a PVE ticket appears in {where}"))
    return out
