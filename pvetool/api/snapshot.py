"""`fetch_snapshot`: read the whole cluster into one `ClusterSnapshot` in few calls.

Imports: the standard library, `pvetool.errors`, `pvetool.model` and the package's `client`
and `convert`. The calls go through `PveClient`'s public methods; the answers are joined by the
pure `convert.build_snapshot`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from pvetool.api import convert
from pvetool.api.client import PveClient
from pvetool.api.convert import RawCluster
from pvetool.errors import ApiError, ApiUnreachable, InvalidAnswer
from pvetool.model import (
    ClusterResources,
    ClusterSnapshot,
    ClusterStatus,
    GuestConfig,
    PveVersion,
    ReplicationJob,
)

__all__ = ["check_guest_nodes", "fetch_snapshot"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def fetch_snapshot(
    client: PveClient,
    *,
    max_workers: int = 8,
    cpu_models: bool | None = None,
    configs_on: Collection[str] | None = None,
    configs_of: Collection[int] | None = None,
) -> ClusterSnapshot:
    """Read the whole cluster into a `ClusterSnapshot` in few calls.

    ``/cluster/status``, ``/cluster/resources`` (once), ``/storage``, ``/cluster/options``,
    the HA resources, status and rules, ``/cluster/replication``; then, concurrently with at
    most `max_workers` calls in flight, for each *online* node its version and bridges, and
    each guest's config. Node status (for the CPU model) is read only when a guest uses
    ``cpu: host`` or `cpu_models` is True. Offline nodes get no per-node call (PVE would answer
    595). A guest whose config cannot be read (it moved, or its node went away meanwhile) is
    kept with ``config_known=False`` and a warning, and with ``config_problem`` when PVE's
    answer was unusable (the planner blocks it either way). Replication jobs PVE refuses to
    list are left out with a warning.

    `configs_on` (node names) and `configs_of` (VMIDs) narrow the configs read to what a plan
    can move: a drain of pve7 moves only pve7's guests, so on a 100-node cluster it reads 50
    configs, not 5,000 (issue 14). Every other guest is still in the snapshot, from
    ``/cluster/resources`` (node, status, configured memory, vCPUs: what capacity and the rules
    count), with ``config_known=False``; the planner never moves a guest whose config it has not
    read. Both None (the default) reads every config.

    A guest list that names nodes the cluster does not have is an `InvalidAnswer`: nothing is
    planned on it.
    """
    fetched_at = client.now_s()
    status = client.cluster_status()
    resources = client.cluster_resources()
    check_guest_nodes(client, status, resources)
    storage_configs = client.storage_config()
    datacenter = client.datacenter_options()
    ha_resource_list = client.ha_resources()
    ha = client.ha_status()

    member_online = {n.name: n.online for n in status.nodes}
    online = [n.name for n in resources.nodes if n.online and member_online.get(n.name, True)]
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="pve") as pool:
        try:
            wanted = _wanted_configs(resources, configs_on, configs_of)
            raw = _per_node_answers(client, pool, online, resources, cpu_models, wanted)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise

    return convert.build_snapshot(
        RawCluster(
            status=status,
            resources=resources,
            storage_configs=storage_configs,
            datacenter=datacenter,
            ha_resource_list=ha_resource_list,
            ha=ha,
            rules=client.ha_rules(ha_resource_list),
            configs=raw.configs,
            config_problems=raw.config_problems,
            versions=raw.versions,
            cpu_models=raw.cpu_models,
            bridges=raw.bridges,
            fetched_at=fetched_at,
            replication=_replication_jobs(client),
            session_user=client.session_user,
        )
    )


@dataclass(frozen=True)
class _PerNode:
    """The answers read per online node and per guest on one."""

    versions: Mapping[str, PveVersion]
    bridges: Mapping[str, frozenset[str]]
    configs: Mapping[int, GuestConfig]
    cpu_models: Mapping[str, str]
    config_problems: Mapping[int, str]


def _wanted_configs(
    resources: ClusterResources, nodes: Collection[str] | None, vmids: Collection[int] | None
) -> frozenset[int] | None:
    """The VMIDs whose config to read (None: all)."""
    if nodes is None and vmids is None:
        return None
    on = set(nodes or ())
    return frozenset(g.vmid for g in resources.guests if g.node in on) | frozenset(vmids or ())


def _per_node_answers(
    client: PveClient,
    pool: ThreadPoolExecutor,
    online: list[str],
    resources: ClusterResources,
    cpu_models: bool | None,
    wanted: frozenset[int] | None,
) -> _PerNode:
    """Versions, bridges and guest configs of the online nodes, all in flight at once; then
    the CPU models when a guest's ``cpu: host`` makes them matter (or the caller asks)."""
    online_set = set(online)
    version_futures = _submit(pool, client.node_version, online)
    bridge_futures = _submit(pool, client.node_bridges, online)
    config_futures = {
        g.vmid: pool.submit(client.guest_config, g.kind, g.node, g.vmid)
        for g in resources.guests
        if g.node in online_set and (wanted is None or g.vmid in wanted)
    }
    versions, _ = _collect(version_futures, "the PVE version")
    bridges, _ = _collect(bridge_futures, "the network bridges")
    configs, failures = _collect(config_futures, "the guest configuration")
    problems = {
        vmid: f"{exc.method} {exc.path}: {exc.problem}"
        for vmid, exc in failures.items()
        if isinstance(exc, InvalidAnswer)
    }
    want_cpu = (
        cpu_models
        if cpu_models is not None
        else any((c.cpu_type or "").lower() == "host" for c in configs.values())
    )
    cpu_by_node: dict[str, str] = {}
    if want_cpu:
        found, _ = _collect(_submit(pool, client.node_cpu_model, online), "the CPU model")
        cpu_by_node = {n: m for n, m in found.items() if m}
    return _PerNode(versions, bridges, configs, cpu_by_node, problems)


def _submit(
    pool: ThreadPoolExecutor, call: Callable[[str], T], nodes: Iterable[str]
) -> dict[str, Future[T]]:
    return {node: pool.submit(call, node) for node in nodes}


def _collect(
    futures: Mapping[K, Future[T]], what: str
) -> tuple[dict[K, T], dict[K, ApiError | ApiUnreachable]]:
    """The results, and the failures (each logged) by key."""
    results: dict[K, T] = {}
    failures: dict[K, ApiError | ApiUnreachable] = {}
    for key, future in futures.items():
        try:
            results[key] = future.result()
        except (ApiUnreachable, ApiError) as exc:  # that node or guest is left out
            logger.warning("Could not read %s for %s: %s", what, key, exc)
            failures[key] = exc
    return results, failures


def check_guest_nodes(
    client: PveClient, status: ClusterStatus, resources: ClusterResources
) -> None:
    """`convert.check_membership` as an `InvalidAnswer` of ``/cluster/resources``."""
    try:
        convert.check_membership(status, resources)
    except ValueError as exc:
        raise InvalidAnswer(
            method="GET",
            path="/cluster/resources",
            problem=str(exc),
            host=str(client.current_host),
        ) from None


def _replication_jobs(client: PveClient) -> tuple[ReplicationJob, ...]:
    """The replication jobs, or none when PVE refuses to list them (the planner then does not
    know about replication; it is not a reason to stop planning)."""
    try:
        return client.replication_jobs()
    except ApiError as exc:
        if exc.retryable:
            raise
        logger.warning("Could not read the storage replication jobs: %s", exc)
        return ()
