"""The run journal: an append-only, fsync'd JSON-lines record of what a run intended and did.

One file per run, ``<state dir>/runs/<run-id>.jsonl``. The state directory is
``$PVETOOL_STATE_DIR``, else ``$XDG_STATE_HOME/pvetool``, else ``~/.local/state/pvetool``.
Every record is one JSON object on one line (`pvetool.journal_records` lists the record types;
each is a frozen dataclass, written with ``journal.write(Outcome(...))`` and read back through
the same class). Each write is flushed and fsync'd before the call returns, so a record that was
written survives a crash (``kill -9``) of pvetool. A torn last line (the process died while
writing it) is ignored by the reader; any other line that is not a record of its type is
skipped and named, with its file and line number, in `RunState.problems`: the rest of the
journal still counts.

Journals drive `undrain` and `--resume`, so where they live is checked (`secure_dir`): the state
directory and ``runs/`` are created mode 0700 and journals 0600 whatever the umask, and a
state directory or ``runs/`` that is a symbolic link, is writable by every user or belongs to
another user is refused (`ConfigError`): a journal planted there would move guests.

`read_run` rebuilds a `RunState` from a file; `find_resumable` finds the last run of a plan (by
plan digest) or of a command (``drain:pve2``) that did not complete (killed, interrupted, or
failed); `undrain_candidates` finds the guests
the latest not-yet-undone drain of a node moved away.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.plan_json` (the
run's plan is kept in its first record) and `pvetool.journal_records`.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from pvetool.errors import ConfigError
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
    "secure_dir",
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


def _make_dirs(path: Path) -> None:
    """Create `path` and its missing parents with mode 0700, whatever the umask."""
    missing: list[Path] = []
    walk = path
    while not walk.exists() and not walk.is_symlink() and walk != walk.parent:
        missing.append(walk)
        walk = walk.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)


def secure_dir(path: Path, *, create: bool = False) -> Path:
    """`path` as a directory pvetool may trust with its journals (see the module docstring);
    created (0700) when `create` and missing. Raises `ConfigError` naming what is wrong."""
    what = f"the pvetool state directory {path}"
    if path.is_symlink():
        raise ConfigError(
            f"{what} is a symbolic link; journals decide what undrain and --resume move, so "
            "pvetool keeps them only in a real directory: remove the link, or set "
            "PVETOOL_STATE_DIR to a directory of your own"
        )
    if not path.exists():
        if create:
            _make_dirs(path)
        return path
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} is not a directory")
    if info.st_mode & stat.S_IWOTH:
        raise ConfigError(
            f"{what} is writable by every user (mode {stat.S_IMODE(info.st_mode):04o}); anyone "
            f"could plant a journal there that undrain would act on: chmod 700 {path}"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigError(
            f"{what} belongs to another user (uid {info.st_uid}); use a directory of your own "
            "(PVETOOL_STATE_DIR)"
        )
    return path


def new_run_id(now: float | None = None) -> str:
    """A sortable, unique run id: ``20260101T120000Z-3f9a1c``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


class Journal:
    """An open run journal. Thread-safe: every record is written under one lock."""

    def __init__(
        self,
        path: Path,
        run_id: str,
        *,
        clock: Callable[[], float] = time.time,
        cluster_key: str = "",
    ) -> None:
        self.path = path
        self.run_id = run_id
        self.cluster_key = cluster_key  # stamped on every origin record
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
        cluster_key: str = "",
    ) -> Journal:
        """A new, empty journal under ``directory/runs`` (both checked, or created with mode
        0700)."""
        secure_dir(directory, create=True)
        runs = secure_dir(directory / "runs", create=True)
        rid = run_id or new_run_id(clock())
        return cls(runs / f"{rid}.jsonl", rid, clock=clock, cluster_key=cluster_key)

    @classmethod
    def reopen(
        cls, state: RunState, *, clock: Callable[[], float] = time.time, cluster_key: str = ""
    ) -> Journal:
        """Append to the journal of an earlier run (``--resume``)."""
        return cls(state.path, state.run_id, clock=clock, cluster_key=cluster_key)

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
        if isinstance(record, Origin) and not record.cluster and self.cluster_key:
            record = replace(record, cluster=self.cluster_key)
        data: dict[str, Any] = {"type": record.TYPE, "t": round(self._clock(), 3)}
        data.update(to_data(record))
        line = json.dumps(data, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._handle is None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
                fd = os.open(self.path, flags, 0o600)
                os.fchmod(fd, 0o600)  # the umask may have taken bits off, never put them on
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
        cluster: str | None = None,
        cluster_nodes: Sequence[str] = (),
        endpoint: str = "",
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
                cluster=cluster,
                cluster_nodes=tuple(cluster_nodes),
                endpoint=endpoint,
            )
        )


# --------------------------------------------------------------------------------------------
# Reading


def journalled_plan(state: RunState, source: str | None = None) -> ExecutionPlan:
    """The plan a journalled run runs (raises `PlanError` when its JSON cannot be read)."""
    return plan_from_json(state.plan_json, source or state.plan_source or state.command)


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, bool]]:
    """(line number, the record's JSON object or None, whether it is the torn last line)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        torn = number == len(lines) and not line.endswith("\n")
        try:
            value = json.loads(text)
        except ValueError:
            yield number, None, torn
            continue
        yield number, (value if isinstance(value, dict) else None), torn


def read_run(path: Path) -> RunState:
    """Rebuild a run's state from its journal file. Lines that are not records of their type
    are skipped and named in `RunState.problems` (a torn last line, left by a killed process,
    only counted)."""
    state = RunState(path=path, run_id=path.stem)
    for number, raw, torn in _records(path):
        if raw is None:
            state.torn_lines += 1
            if not torn:
                state.problems.append(f"{path}:{number}: not a journal record (not a JSON object)")
            continue
        state.records += 1
        kind = str(raw.pop("type", ""))
        cls = RECORD_TYPES.get(kind)
        t = raw.pop("t", 0.0)
        if cls is None:
            continue  # a record type this version does not know
        try:
            record: Record = from_data(cls, raw, cls.TYPE, ignore_unknown=True)
            when = float(t) if isinstance(t, int | float) else 0.0
            record.apply(state, when)
            state.last_t = max(state.last_t, when)
        except (DecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            state.unreadable += 1
            state.problems.append(f"{path}:{number}: a '{kind}' record that does not fit: {exc}")
    return state


def list_runs(directory: Path) -> list[RunState]:
    """Every readable run under ``directory/runs``, oldest first."""
    secure_dir(directory)
    runs_dir = secure_dir(directory / "runs")
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
    """The last run of this plan digest or command key that did not complete: killed,
    interrupted, or ended with a failure (exit code not 0: `--resume` continues it from the
    failed step once the cause is fixed). None when the last one succeeded."""
    for state in reversed(list_runs(directory)):
        if digest and state.plan_digest != digest:
            continue
        if command and state.command != command:
            continue
        if not digest and not command:
            continue
        return None if state.finished and state.exit_code == 0 else state
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
