"""The cluster a command acts on, as the CLI sees it: its identity and its state folder.

`cluster_state(ctx, snapshot)` names the cluster the connected client reaches (name and node
names from the snapshot, the endpoint that answered) and its folder under the state directory
(``emulated/`` for ``--emulate``; the core of both is `pvetool.state.cluster`, shared with the
Python API); `job_on` (`pvetool.operate`) stamps a `JobInfo` with it, so that every journal
records where it ran.

`holding` holds the cluster for a run (one run at a time, `pvetool.state.lock`).

Imports: click, the standard library, `pvetool.cli.common`, `pvetool.journal`,
`pvetool.model`, `pvetool.operate` and `pvetool.state`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace

import click

from pvetool.api import fetch_snapshot
from pvetool.cli.common import get_client, state
from pvetool.errors import ApiError, ApiUnreachable
from pvetool.model import ClusterSnapshot, ExecutionPlan
from pvetool.operate import JobInfo, job_on
from pvetool.planner.spec import PlanSpec
from pvetool.preflight import hook_findings, permission_findings
from pvetool.settings import TokenAuth
from pvetool.state import ClusterIdentity, ClusterState
from pvetool.state.cluster import cluster_of, state_for, with_held
from pvetool.state.lock import Holder, hold_cluster, marker_pool

__all__ = [
    "checked_plan",
    "cluster_state",
    "endpoint_of",
    "holding",
    "job_on",
    "planning_snapshot",
    "state_of",
]


def endpoint_of(ctx: click.Context) -> str:
    """``host:port`` the client talks to now."""
    return str(get_client(ctx).current_host)


def cluster_state(ctx: click.Context, snapshot: ClusterSnapshot) -> ClusterState:
    """The state of the cluster `snapshot` was read from."""
    return cluster_of(snapshot, endpoint_of(ctx), emulated=state(ctx).emulator is not None)


def state_of(ctx: click.Context, identity: ClusterIdentity) -> ClusterState:
    """The state folder of the cluster `identity` names (``emulated/`` for ``--emulate``)."""
    return state_for(identity, emulated=state(ctx).emulator is not None)


def planning_snapshot(
    ctx: click.Context,
    *,
    release: str | None = None,
    configs_on: Collection[str] | None = None,
    configs_of: Collection[int] | None = None,
) -> tuple[ClusterSnapshot, ClusterState]:
    """The cluster as the planner must see it: read from PVE, with the nodes pvetool drained
    (`ClusterSnapshot.held_nodes`; `release`: the node an undrain is about to release).
    `configs_on` / `configs_of`: read only the guest configs of those nodes / guests (what a
    drain / a single migration needs; `fetch_snapshot`)."""
    snapshot = fetch_snapshot(get_client(ctx), configs_on=configs_on, configs_of=configs_of)
    cluster = cluster_state(ctx, snapshot)
    return with_held(snapshot, cluster, release=release), cluster


@contextmanager
def holding(
    ctx: click.Context, cluster: ClusterState, job: JobInfo, run_id: str, *, force: bool
) -> Iterator[None]:
    """Hold `cluster` for the run `run_id` of `job` (`pvetool.state.lock`: local lock and the
    marker on the cluster); its notices and warnings on stderr as they come."""
    notices: list[str] = []
    shown = 0

    def show() -> None:
        nonlocal shown
        for text in notices[shown:]:
            click.echo(text, err=True)
        shown = len(notices)

    try:
        with hold_cluster(
            cluster, get_client(ctx), Holder.here(run_id, job.command), force=force, notices=notices
        ):
            show()
            yield
    finally:
        show()


def checked_plan(
    ctx: click.Context, plan: ExecutionPlan, spec: PlanSpec | None = None
) -> ExecutionPlan:
    """`plan` with what the planner cannot see (`pvetool.preflight`): the hooks of `spec` on
    this machine, and the privileges of this connection (``GET /access/permissions``) for every
    request the plan will make, the run marker's included. A permissions answer that cannot be
    had adds nothing (PVE still refuses what is not allowed, move by move)."""
    extra = list(hook_findings(spec)) if spec is not None else []
    client = get_client(ctx)
    auth = client.settings.auth
    who = f"the token {auth.token_id}" if isinstance(auth, TokenAuth) else f"the user {auth.user}"
    try:
        perms = client.permissions()
    except (ApiError, ApiUnreachable):
        perms = {}
    try:
        pool: str | None = marker_pool(client)
    except (ApiError, ApiUnreachable):
        pool = None
    if perms:
        extra += permission_findings(plan, perms, who=who, marker_pool=pool)
    if not extra:
        return plan
    return replace(plan, findings=(*plan.findings, *extra))
