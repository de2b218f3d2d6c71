"""One run at a time per cluster: a lock file on this machine and a marker on the cluster.

**Local lock.** ``<cluster folder>/run.lock`` (`pvetool.state.layout`), held with ``flock``
for the whole run and naming its holder (pid, run id, command, host, start time). ``flock``
dies with its process, so a lock file whose holder is gone (kill -9, a crash) is free: it is
taken over, and the notice names the run that left it.

**Cluster marker.** Two administrators on two machines do not share a lock file, so the run is
also announced on the cluster itself, where every client sees it: an empty PVE resource pool
whose comment is the holder's record (research: /work/notes/fidelity/run-marker.md). PVE creates
a pool only when it does not exist, under its user.cfg lock (pve-manager ``PVE/API2/Pool.pm``
``create_pool``: ``die "pool '$pool' already exists"``): exactly one of two racing runs gets it.
The pool is ``pvetool/run`` when the pool ``pvetool`` exists (an administrator's one-time setup:
``pveum pool add pvetool`` and the role PVEPoolAdmin for pvetool's token on ``/pool/pvetool``,
which survives the child's deletion), else ``pvetool-run`` (then Pool.Allocate on
``/pool/pvetool-run`` or ``/pool``; deleting a top-level pool also deletes the ACLs on its own
path, pve-access-control ``AccessControl.pm`` ``delete_pool_acl``, so grant it one level up).
The pool never gets members and is deleted when the run ends.

A token without Pool.Allocate cannot set the marker: the run goes on with the local lock only,
and a warning says that another machine could not see it (decided so because refusing would
make the marker a new privilege every existing setup lacks; `plan validate` lists it as the
finding PVT-PERM-MARKER beforehand).

**Held by another run.** Refused (`RunConflict`, exit 2) naming the other run. ``--force-lock``
takes the lock anyway, with a warning naming the run it overrides: for a marker left on the
cluster by a run that died on another machine, or a lock the operator knows to be stale.

Imports: the standard library, `pvetool.errors` and the package's `layout`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Protocol

from pvetool.errors import ApiError, ApiUnreachable, PermissionDenied, RunConflict
from pvetool.state.layout import ClusterState

try:  # POSIX; elsewhere the local lock is the marker's job alone
    import fcntl
except ImportError:  # pragma: no cover - pvetool runs on Linux and macOS
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MARKER_PARENT",
    "MARKER_POOL",
    "Holder",
    "MarkerApi",
    "hold_cluster",
    "marker_pool",
]

MARKER_PARENT = "pvetool"
MARKER_POOL = "pvetool-run"
_RECORD_KEY = "pvetool-run"


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) the lock: a run of pvetool."""

    run_id: str
    pid: int
    host: str
    command: str
    started_t: float

    @classmethod
    def here(cls, run_id: str, command: str) -> Holder:
        return cls(run_id, os.getpid(), socket.gethostname(), command, time.time())

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started_t))
        return (
            f"run {self.run_id or '(unnamed)'} ({self.command or 'unknown command'}, pid "
            f"{self.pid} on {self.host or 'an unknown host'}, since {since})"
        )

    def to_text(self) -> str:
        data = {_RECORD_KEY: self.run_id, **asdict(self)}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(
                str(data["run_id"]),
                int(data["pid"]),
                str(data["host"]),
                str(data["command"]),
                float(data["started_t"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def alive_here(self) -> bool:
        """True when this is a process of this machine that still exists."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class MarkerApi(Protocol):
    """What the marker needs of the client (`pvetool.api.PveClient` has it)."""

    def create_pool(self, poolid: str, comment: str) -> None: ...

    def pool_comment(self, poolid: str) -> str | None: ...

    def delete_pool(self, poolid: str) -> None: ...


# -- the local lock --------------------------------------------------------------------------


def _open_lock(path: Path) -> IO[str]:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    return os.fdopen(fd, "r+", encoding="utf-8")


def _write(handle: IO[str], holder: Holder) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(holder.to_text() + "\n")
    handle.flush()
    os.fsync(handle.fileno())


@contextmanager
def _local_lock(
    cluster: ClusterState, holder: Holder, force: bool, notices: list[str]
) -> Iterator[None]:
    path = cluster.ensure() / "run.lock"
    handle = _open_lock(path)
    locked = True
    try:
        previous = Holder.from_text(handle.read())
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                locked = False
        if not locked:
            other = previous.describe() if previous else "another pvetool run"
            if not force:
                raise RunConflict(
                    f"another pvetool run holds the {cluster.identity.label}: {other} (lock "
                    f"file {path}). Wait for it to end; if you are sure it is gone, run again "
                    "with --force-lock"
                )
            notices.append(
                f"warning: --force-lock: running although {other} holds the lock file {path}; "
                "two runs on one cluster can move the same guests"
            )
        elif previous is not None and previous.run_id != holder.run_id:
            notices.append(
                f"notice: took over the run lock left by {previous.describe()}, which ended "
                "without releasing it"
            )
        if locked:
            _write(handle, holder)
        yield
    finally:
        if locked:
            try:  # an empty lock file: nobody holds it
                handle.seek(0)
                handle.truncate()
            except OSError:
                pass
        handle.close()  # releases the flock


# -- the cluster marker ----------------------------------------------------------------------


def marker_pool(api: MarkerApi) -> str:
    """``pvetool/run`` when the administrator made the parent pool ``pvetool``, else
    ``pvetool-run`` (module docstring)."""
    try:
        return (
            f"{MARKER_PARENT}/run" if api.pool_comment(MARKER_PARENT) is not None else MARKER_POOL
        )
    except PermissionDenied:
        return MARKER_POOL


def _read_marker(api: MarkerApi, pool: str) -> tuple[bool, Holder | None, str]:
    """(exists, its holder if readable, how it reads)."""
    try:
        comment = api.pool_comment(pool)
    except (ApiError, ApiUnreachable) as exc:
        return True, None, f"its record could not be read: {exc}"
    if comment is None:
        return False, None, ""
    holder = Holder.from_text(comment)
    return True, holder, holder.describe() if holder else f"comment '{comment[:80]}'"


@contextmanager
def _cluster_marker(
    api: MarkerApi, cluster: ClusterState, holder: Holder, force: bool, notices: list[str]
) -> Iterator[None]:
    where = cluster.identity.label
    try:
        pool = marker_pool(api)
    except (ApiError, ApiUnreachable) as exc:
        notices.append(f"warning: the run marker on the {where} could not be checked: {exc}")
        yield
        return
    held = False
    for attempt in range(2):
        try:
            api.create_pool(pool, holder.to_text())
            held = True
            break
        except PermissionDenied:
            notices.append(
                f"warning: this token may not create the pool '{pool}' (Pool.Allocate on "
                f"/pool/{pool}), so the run is not marked on the {where}: a pvetool on another "
                "machine would not see it; only this machine's lock protects it"
            )
            break
        except ApiError as exc:
            if "already exists" not in exc.reason or attempt:
                notices.append(
                    f"warning: the run marker '{pool}' could not be set on the {where}: {exc}"
                )
                break
        except ApiUnreachable as exc:
            notices.append(f"warning: the run marker could not be set on the {where}: {exc}")
            break
        exists, other, text = _read_marker(api, pool)
        if not exists:
            continue  # released meanwhile: try once more
        stale = other is not None and (
            other.run_id == holder.run_id or (other.host == holder.host and not other.alive_here())
        )
        if not stale and not force:
            raise RunConflict(
                f"another pvetool run is marked on the {where} (pool '{pool}'): {text}. Wait "
                f"for it to end; if it is gone (its machine crashed), run again with "
                "--force-lock, or delete the marker: pveum pool delete " + pool
            )
        if stale:
            notices.append(f"notice: took over the run marker '{pool}' left by {text}")
        else:
            notices.append(
                f"warning: --force-lock: replacing the run marker '{pool}' of {text}; two runs "
                "on one cluster can move the same guests"
            )
        try:
            api.delete_pool(pool)
        except (ApiError, ApiUnreachable) as exc:
            notices.append(f"warning: the old run marker '{pool}' could not be removed: {exc}")
            break
    try:
        yield
    finally:
        if held:
            _release_marker(api, pool, holder, notices)


def _release_marker(api: MarkerApi, pool: str, holder: Holder, notices: list[str]) -> None:
    exists, other, _ = _read_marker(api, pool)
    if not exists:
        return
    if other is not None and (other.run_id, other.pid) != (holder.run_id, holder.pid):
        return  # someone forced it over: theirs now
    try:
        api.delete_pool(pool)
    except (ApiError, ApiUnreachable) as exc:
        notices.append(
            f"warning: the run marker '{pool}' could not be removed ({exc}); remove it with: "
            f"pveum pool delete {pool}"
        )


@contextmanager
def hold_cluster(
    cluster: ClusterState,
    api: MarkerApi | None,
    holder: Holder,
    *,
    force: bool = False,
    notices: list[str],
) -> Iterator[None]:
    """Hold the cluster for one run: the local lock, then the marker on the cluster (when `api`
    is given). `notices` gets every notice and warning to show; `RunConflict` when another
    run holds either and `force` is not set."""
    with _local_lock(cluster, holder, force, notices):
        if api is None:
            yield
            return
        with _cluster_marker(api, cluster, holder, force, notices):
            yield
