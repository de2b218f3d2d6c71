"""The cluster a command acts on, as the CLI sees it: its identity and its state folder.

`cluster_state(ctx, snapshot)` names the cluster the connected client reaches (name and node
names from the snapshot, the endpoint that answered) and its folder under the state directory
(``emulated/`` for ``--emulate``); `job_on` stamps a `JobInfo` with it, so that every journal
records where it ran.

Imports: click, the standard library, `pvetool.cli.common`, `pvetool.journal`,
`pvetool.model`, `pvetool.operate` and `pvetool.state`.
"""

from __future__ import annotations

from dataclasses import replace

import click

from pvetool.cli.common import get_client, state
from pvetool.journal import state_dir
from pvetool.model import ClusterSnapshot
from pvetool.operate import JobInfo
from pvetool.state import ClusterState, identity_of

__all__ = ["cluster_state", "endpoint_of", "job_on"]


def endpoint_of(ctx: click.Context) -> str:
    """``host:port`` the client talks to now."""
    return str(get_client(ctx).current_host)


def cluster_state(ctx: click.Context, snapshot: ClusterSnapshot) -> ClusterState:
    """The state of the cluster `snapshot` was read from."""
    st = state(ctx)
    identity = identity_of(snapshot, endpoint_of(ctx))
    return ClusterState(state_dir(), identity, emulated=st.emulator is not None)


def job_on(job: JobInfo, cluster: ClusterState) -> JobInfo:
    """`job` with the cluster it runs on (recorded in its journal's first record)."""
    identity = cluster.identity
    return replace(
        job,
        cluster=identity.name,
        cluster_nodes=identity.nodes,
        endpoint=identity.endpoint,
        cluster_key=identity.key,
    )
