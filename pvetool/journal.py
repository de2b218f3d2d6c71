"""The run journal: an append-only, fsync'd JSON-lines record of what a run intended and did.

Imports: the standard library and `pvetool.model` only. The planner's serializer is passed in by
the caller (`plan_json`), so this module does not import the planner.

One file per run, ``<state dir>/runs/<run-id>.jsonl``. The state directory is
``$PVETOOL_STATE_DIR``, else ``$XDG_STATE_HOME/pvetool``, else ``~/.local/state/pvetool``.
Every record is one JSON object on one line with ``type``, ``t`` (epoch seconds of this
machine) and the fields below; each write is flushed and fsync'd before the call returns, so a
record that was written survives a crash (``kill -9``) of pvetool. A torn last line (the
process died while writing it) is ignored by the reader.

=============  ===========================================================================
type           fields
=============  ===========================================================================
run-start      run, pid, command (key: drain:pve2, plan:<digest>), argv, kind,
               plan {name, digest, fingerprint, source}, drained_nodes,
               undoes (run id an undrain reverses), plan_json (the whole ExecutionPlan)
resume         pid: a later process continues this run (appends to the same file)
stage          index, kind, label, node, event ("start" | "end")
intent         move, vmid, source, target, shutdown (an offline move of a running VM: shut
               down, migrate, start): written BEFORE anything is requested
started        move, vmid, upid, cluster_t (the task's start time on the cluster's clock)
power          move, vmid, action (shutdown | start), node, upid: an offline move's shutdown or
               start was requested (or, found=true, found running by a resumed run)
outcome        move, vmid, status (moved | skipped | failed | not-started), reason, upid,
               real_upid, source, target, node (where the guest is), still_running,
               task_start, task_duration_s, downtime_ms, wall_start, wall_end
origin         vmid, home (the node it left), now (where it went), move
replan         move, vmid, old_target, new_target (null: no other target), reason,
               new_source (a guest this run had already moved elsewhere)
hook           index, label, node, argv, exit_code, timed_out, duration_s, output, event
wait-node      index, node, ok, waited_s, reason
interrupt      level (1: stop starting, 2: leave running tasks), running [{move, vmid, upid}]
run-end        exit_code, interrupted, summary {moved, skipped, failed, not_started, blocked}
=============  ===========================================================================

`read_run` rebuilds a `RunState` from a file; `find_resumable` finds the last unfinished run of
a plan (by plan digest) or of a command (``drain:pve2``); `undrain_candidates` finds the guests
the latest not-yet-undone drain of a node moved away.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pvetool.model import ExecutionPlan

__all__ = [
    "JOURNAL_VERSION",
    "Journal",
    "MoveRecord",
    "Origin",
    "RunState",
    "find_resumable",
    "list_runs",
    "read_run",
    "state_dir",
    "undrain_candidates",
]

JOURNAL_VERSION = 1


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where journals live: $PVETOOL_STATE_DIR, $XDG_STATE_HOME/pvetool, ~/.local/state/pvetool."""
    env = os.environ if env is None else env
    explicit = env.get("PVETOOL_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "pvetool"


def new_run_id(now: float | None = None) -> str:
    """A sortable, unique run id: ``20260101T120000Z-3f9a1c``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


class Journal:
    """An open run journal. Thread-safe: every record is written under one lock."""

    def __init__(self, path: Path, run_id: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.run_id = run_id
        self._clock = clock
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None

    # -- opening

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        run_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Journal:
        """A new, empty journal under ``directory/runs`` (created with mode 0700)."""
        runs = directory / "runs"
        runs.mkdir(parents=True, exist_ok=True, mode=0o700)
        rid = run_id or new_run_id(clock())
        return cls(runs / f"{rid}.jsonl", rid, clock=clock)

    @classmethod
    def reopen(cls, state: RunState, *, clock: Callable[[], float] = time.time) -> Journal:
        """Append to the journal of an earlier run (``--resume``)."""
        return cls(state.path, state.run_id, clock=clock)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing

    def write(self, rtype: str, **fields: Any) -> dict[str, Any]:
        """Append one record and fsync it; returns the record as written."""
        record: dict[str, Any] = {"type": rtype, "t": round(self._clock(), 3), **fields}
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._handle is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._handle = os.fdopen(fd, "a", encoding="utf-8")
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        return record

    def start_run(
        self,
        plan: ExecutionPlan,
        *,
        command: str,
        kind: str,
        plan_json: str,
        drained_nodes: Sequence[str] = (),
        undoes: str | None = None,
        argv: Sequence[str] = (),
    ) -> dict[str, Any]:
        """The first record of a run: what runs, on which cluster state, and the whole plan."""
        return self.write(
            "run-start",
            v=JOURNAL_VERSION,
            run=self.run_id,
            pid=os.getpid(),
            command=command,
            argv=list(argv),
            kind=kind,
            plan={
                "name": plan.name,
                "digest": plan.plan_digest,
                "fingerprint": plan.fingerprint,
                "source": plan.source,
            },
            drained_nodes=list(drained_nodes),
            undoes=undoes,
            plan_json=plan_json,
        )


# --------------------------------------------------------------------------------------------
# Reading


@dataclass
class MoveRecord:
    """What the journal knows about one move of a run (the latest attempt wins)."""

    move_id: str
    vmid: int
    source: str | None = None
    target: str | None = None
    intent_t: float | None = None
    upid: str | None = None
    upid_t: float | None = None
    cluster_t: int | None = None
    outcome: dict[str, Any] | None = None
    abandoned: bool = False
    upids: list[str] = field(default_factory=list)  # every task of every attempt
    shutdown: bool = False  # an offline move of a running VM (shut down, migrate, start)
    power_action: str | None = None  # its latest shutdown/start request ...
    power_upid: str | None = None  # ... and that request's task

    @property
    def status(self) -> str | None:
        return None if self.outcome is None else str(self.outcome.get("status"))


@dataclass(frozen=True)
class Origin:
    """A guest a run moved away from its home node."""

    vmid: int
    home: str
    now: str
    move_id: str
    run_id: str


@dataclass
class RunState:
    """A run as rebuilt from its journal."""

    path: Path
    run_id: str
    started_t: float = 0.0
    command: str = ""
    kind: str = ""
    plan_name: str = ""
    plan_digest: str = ""
    fingerprint: str = ""
    plan_source: str = ""
    plan_json: str = ""
    drained_nodes: tuple[str, ...] = ()
    undoes: str | None = None
    moves: dict[str, MoveRecord] = field(default_factory=dict)
    origins: list[Origin] = field(default_factory=list)
    hooks_done: set[int] = field(default_factory=set)  # stage indexes whose hook succeeded
    hooks_failed: set[int] = field(default_factory=set)
    stages_ended: set[int] = field(default_factory=set)
    replans: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[dict[str, Any]] = field(default_factory=list)
    resumes: int = 0
    ended: bool = False
    exit_code: int | None = None
    interrupted: bool = False
    records: int = 0
    torn_lines: int = 0

    @property
    def finished(self) -> bool:
        """Ended by itself (not killed, not interrupted)."""
        return self.ended and not self.interrupted

    @property
    def all_upids(self) -> frozenset[str]:
        return frozenset(u for m in self.moves.values() for u in m.upids)

    def cluster_offset_s(self) -> float | None:
        """Cluster clock minus this machine's clock, from a task this run started."""
        for rec in self.moves.values():
            if rec.cluster_t is not None and rec.upid_t is not None:
                return rec.cluster_t - rec.upid_t
        return None


def _records(path: Path) -> Iterator[tuple[dict[str, Any] | None, str]]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            text = line.strip()
            if not text:
                continue
            try:
                value = json.loads(text)
            except ValueError:
                yield None, text
                continue
            yield (value if isinstance(value, dict) else None), text


def read_run(path: Path) -> RunState:
    """Rebuild a run's state from its journal file (torn or foreign lines are skipped)."""
    state = RunState(path=path, run_id=path.stem)
    for rec, _ in _records(path):
        if rec is None:
            state.torn_lines += 1
            continue
        state.records += 1
        _apply(state, rec)
    return state


def _move(state: RunState, rec: Mapping[str, Any]) -> MoveRecord:
    move_id = str(rec.get("move"))
    entry = state.moves.get(move_id)
    if entry is None:
        entry = MoveRecord(move_id=move_id, vmid=int(rec.get("vmid") or 0))
        state.moves[move_id] = entry
    return entry


def _apply(state: RunState, rec: Mapping[str, Any]) -> None:
    rtype = rec.get("type")
    t = float(rec.get("t") or 0.0)
    if rtype == "run-start":
        plan = rec.get("plan") or {}
        state.run_id = str(rec.get("run") or state.run_id)
        state.started_t = t
        state.command = str(rec.get("command") or "")
        state.kind = str(rec.get("kind") or "")
        state.plan_name = str(plan.get("name") or "")
        state.plan_digest = str(plan.get("digest") or "")
        state.fingerprint = str(plan.get("fingerprint") or "")
        state.plan_source = str(plan.get("source") or "")
        state.plan_json = str(rec.get("plan_json") or "")
        state.drained_nodes = tuple(str(n) for n in rec.get("drained_nodes") or ())
        undoes = rec.get("undoes")
        state.undoes = str(undoes) if undoes else None
    elif rtype == "resume":
        state.resumes += 1
        state.ended = False
        state.interrupted = False
        state.exit_code = None
    elif rtype == "intent":
        entry = _move(state, rec)
        entry.source = rec.get("source")
        entry.target = rec.get("target")
        entry.intent_t = t
        entry.upid = None
        entry.upid_t = None
        entry.outcome = None
        entry.abandoned = False
        entry.shutdown = bool(rec.get("shutdown"))
        entry.power_action = None
        entry.power_upid = None
    elif rtype == "started":
        entry = _move(state, rec)
        entry.upid = str(rec.get("upid"))
        entry.upid_t = t
        cluster_t = rec.get("cluster_t")
        entry.cluster_t = int(cluster_t) if isinstance(cluster_t, int | float) else None
        entry.upids.append(entry.upid)
    elif rtype == "power":
        entry = _move(state, rec)
        entry.power_action = str(rec.get("action") or "") or None
        entry.power_upid = str(rec.get("upid") or "") or None
        if entry.power_upid and entry.power_upid not in entry.upids:
            entry.upids.append(entry.power_upid)
    elif rtype == "outcome":
        entry = _move(state, rec)
        entry.outcome = dict(rec)
        entry.abandoned = False
        if rec.get("source"):
            entry.source = rec.get("source")
        if rec.get("target"):
            entry.target = rec.get("target")
        for key in ("upid", "real_upid"):
            value = rec.get(key)
            if value and value not in entry.upids:
                entry.upids.append(str(value))
    elif rtype == "origin":
        state.origins.append(
            Origin(
                vmid=int(rec.get("vmid") or 0),
                home=str(rec.get("home")),
                now=str(rec.get("now")),
                move_id=str(rec.get("move")),
                run_id=state.run_id,
            )
        )
    elif rtype == "replan":
        state.replans.append(dict(rec))
        entry = _move(state, rec)
        if rec.get("new_target"):
            entry.target = str(rec.get("new_target"))
        if rec.get("new_source"):
            entry.source = str(rec.get("new_source"))
    elif rtype == "hook":
        index = int(rec.get("index") or 0)
        if rec.get("event") == "end":
            (state.hooks_done if rec.get("exit_code") == 0 else state.hooks_failed).add(index)
    elif rtype == "stage":
        if rec.get("event") == "end":
            state.stages_ended.add(int(rec.get("index") or 0))
    elif rtype == "interrupt":
        state.interrupts.append(dict(rec))
        if int(rec.get("level") or 0) >= 2:
            for item in rec.get("running") or ():
                if isinstance(item, dict) and item.get("move") in state.moves:
                    state.moves[str(item["move"])].abandoned = True
    elif rtype == "run-end":
        state.ended = True
        code = rec.get("exit_code")
        state.exit_code = int(code) if isinstance(code, int) else None
        state.interrupted = bool(rec.get("interrupted"))


def list_runs(directory: Path) -> list[RunState]:
    """Every readable run under ``directory/runs``, oldest first."""
    runs_dir = directory / "runs"
    if not runs_dir.is_dir():
        return []
    states = []
    for path in sorted(runs_dir.glob("*.jsonl")):
        try:
            states.append(read_run(path))
        except OSError:
            continue
    states.sort(key=lambda s: (s.started_t, s.run_id))
    return states


def find_resumable(
    directory: Path, *, digest: str | None = None, command: str | None = None
) -> RunState | None:
    """The last unfinished run (killed, or interrupted) of this plan digest or command key."""
    for state in reversed(list_runs(directory)):
        if digest and state.plan_digest != digest:
            continue
        if command and state.command != command:
            continue
        if not digest and not command:
            continue
        return None if state.finished else state
    return None


def undrain_candidates(directory: Path, node: str) -> tuple[RunState, list[Origin]] | None:
    """The latest drain of `node` that a successful undrain has not reversed yet.

    Returns the drain run and the guests it moved away from `node` (with where it put them),
    or None when there is nothing to bring back.
    """
    runs = list_runs(directory)
    undone = {
        s.undoes for s in runs if s.kind == "undrain" and s.undoes and s.ended and s.exit_code == 0
    }
    for state in reversed(runs):
        if state.kind == "undrain" or node not in state.drained_nodes:
            continue
        if state.run_id in undone:
            return None
        origins = [o for o in state.origins if o.home == node]
        # A guest this run brought home again (rolling maintenance) is not away any more.
        returned = {
            rec.vmid for rec in state.moves.values() if rec.status == "moved" and rec.target == node
        }
        away = [o for o in origins if o.vmid not in returned]
        if not away:
            return None  # the latest drain of this node left nothing away
        last: dict[int, Origin] = {}
        for o in away:
            last[o.vmid] = o  # the latest record of a guest wins
        return state, sorted(last.values(), key=lambda o: o.vmid)
    return None
