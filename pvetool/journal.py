"""The run journal: an append-only, fsync'd JSON-lines record of what a run intended and did.

One file per run, ``<state dir>/runs/<run-id>.jsonl``. The state directory is
``$PVETOOL_STATE_DIR``, else ``$XDG_STATE_HOME/pvetool``, else ``~/.local/state/pvetool``.
Every record is one JSON object on one line (`pvetool.journal_records` lists the record types;
each is a frozen dataclass, written with ``journal.write(Outcome(...))`` and read back through
the same class). Each write is flushed and fsync'd before the call returns, so a record that was
written survives a crash (``kill -9``) of pvetool. A torn last line (the process died while
writing it) is ignored by the reader.

`read_run` rebuilds a `RunState` from a file; `find_resumable` finds the last unfinished run of
a plan (by plan digest) or of a command (``drain:pve2``); `undrain_candidates` finds the guests
the latest not-yet-undone drain of a node moved away.

Imports: the standard library, `pvetool.model`, `pvetool.plan_json` (the run's plan is kept in
its first record) and `pvetool.journal_records`.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from pvetool.journal_records import (
    JOURNAL_VERSION,
    RECORD_TYPES,
    MoveRecord,
    Origin,
    PlanRef,
    Record,
    RunStart,
    RunState,
)
from pvetool.model import ExecutionPlan
from pvetool.plan_json import DecodeError, from_data, plan_from_json, plan_to_json, to_data

__all__ = [
    "JOURNAL_VERSION",
    "Journal",
    "MoveRecord",
    "Origin",
    "RunState",
    "find_resumable",
    "list_runs",
    "read_run",
    "journalled_plan",
    "state_dir",
    "undrain_candidates",
]


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

    def write(self, record: Record) -> None:
        """Append one record and fsync it."""
        data: dict[str, Any] = {"type": record.TYPE, "t": round(self._clock(), 3)}
        data.update(to_data(record))
        line = json.dumps(data, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._handle is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._handle = os.fdopen(fd, "a", encoding="utf-8")
            self._handle.write(line)
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def start_run(
        self,
        plan: ExecutionPlan,
        *,
        command: str,
        kind: str,
        drained_nodes: Sequence[str] = (),
        undoes: str | None = None,
        argv: Sequence[str] = (),
    ) -> None:
        """The first record of a run: what runs, on which cluster state, and the whole plan."""
        self.write(
            RunStart(
                run=self.run_id,
                pid=os.getpid(),
                command=command,
                argv=tuple(argv),
                kind=kind,
                plan=PlanRef(plan.name, plan.plan_digest, plan.fingerprint, plan.source),
                drained_nodes=tuple(drained_nodes),
                undoes=undoes,
                plan_json=plan_to_json(plan),
            )
        )


# --------------------------------------------------------------------------------------------
# Reading


def journalled_plan(state: RunState, source: str | None = None) -> ExecutionPlan:
    """The plan a journalled run runs (raises `PlanError` when its JSON cannot be read)."""
    return plan_from_json(state.plan_json, source or state.plan_source or state.command)


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
    """Rebuild a run's state from its journal file (torn, foreign or unreadable lines are
    counted and skipped)."""
    state = RunState(path=path, run_id=path.stem)
    for raw, _ in _records(path):
        if raw is None:
            state.torn_lines += 1
            continue
        state.records += 1
        cls = RECORD_TYPES.get(str(raw.pop("type", "")))
        t = raw.pop("t", 0.0)
        if cls is None:
            continue  # a record type this version does not know
        try:
            record: Record = from_data(cls, raw, cls.TYPE, ignore_unknown=True)
        except DecodeError:
            state.unreadable += 1
            continue
        record.apply(state, float(t) if isinstance(t, int | float) else 0.0)
    return state


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
