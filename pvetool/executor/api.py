"""What the executor needs from the outside world, as small protocols and callable types.

`ClusterApi` lists the PVE calls the executor makes; `pvetool.api.PveClient` satisfies it
(mypy checks that in `pvetool/operate.py`) and unit tests fake it. Task following, the
planner's re-planning and hooks come in as plain callables, so this package imports neither the
API layer nor the planner. Imports: the standard library and `pvetool.model`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from pvetool.model import (
    ClusterResources,
    ClusterStatus,
    GuestKind,
    GuestStatus,
    MigrationProgress,
    MigrationRequest,
    Move,
    Precondition,
    TaskQuery,
    TaskResult,
    TaskStatus,
    TaskSummary,
    Upid,
)

__all__ = ["ClusterApi", "Confirm", "Follow", "Replan"]


class ClusterApi(Protocol):
    """The PVE calls the executor makes (one method per REST call)."""

    def cluster_resources(
        self, type_filter: Literal["vm", "storage", "node"] | None = None
    ) -> ClusterResources: ...

    def cluster_status(self) -> ClusterStatus: ...

    def migrate_precondition(
        self, kind: GuestKind, node: str, vmid: int, target: str | None = None
    ) -> Precondition: ...

    def start_migration(self, req: MigrationRequest) -> Upid: ...

    def shutdown_guest(
        self,
        kind: GuestKind,
        node: str,
        vmid: int,
        *,
        timeout_s: int | None = None,
        force_stop: bool | None = None,
    ) -> Upid: ...

    def start_guest(self, kind: GuestKind, node: str, vmid: int) -> Upid: ...

    def agent_ping(self, node: str, vmid: int) -> bool: ...

    def guest_status(self, kind: GuestKind, node: str, vmid: int) -> GuestStatus: ...

    def task_status(self, upid: Upid | str) -> TaskStatus: ...

    def tasks(self, query: TaskQuery) -> tuple[TaskSummary, ...]: ...


# follow(upid, timeout_s, on_progress) -> TaskResult; raises TaskFailed / TaskTimeout / ApiError.
# `pvetool.api.follow_task` bound to the client (HA: follows hamigrate through to qmigrate). It
# follows any task: also the qmshutdown/qmstart (hastop/hastart) of an offline move.
Follow = Callable[[Upid, float, Callable[[MigrationProgress], None] | None], TaskResult]

# replan([(move, avoid), ...]) -> one answer per move, in order: the move to another target
# (avoiding the nodes given), or None when no other node can take it. Every move asked at once
# had its target fail together; the planner re-plans them against one fresh snapshot, each
# seeing where the previous ones went (`pvetool.operate` binds `pvetool.planner.build.replan`).
Replan = Callable[[Sequence[tuple[Move, frozenset[str]]]], Sequence[Move | None]]

# confirm(question) -> True to go on (rolling maintenance's confirm_between).
Confirm = Callable[[str], bool]
