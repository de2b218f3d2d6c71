"""Learned link speeds: read recent finished migrations' task logs and say, per node, how fast
its migration link carried a live RAM stream (issue 14: PVE's API has no link speed).

`fetch_link_samples` finds the recent ``qmigrate`` tasks of every online node (``GET
/cluster/tasks``, or each node's ``GET /nodes/{n}/tasks?typefilter=qmigrate`` when that is
refused) and reads the logs of the newest successful ones it has not seen before (`known`: UPIDs
already parsed, kept by the caller), and of each listed guest's newest one (what that guest
dirtied: `pvetool.links.learned_dirty`), at most `max_workers` calls in flight.
`learn_links` turns samples into a per-node figure:

* a node's figure is the fastest RAM rate of its recent migrations, as source or target: a
  migration runs at the slower end's speed, and sharing a link with other migrations only slows
  it, so the fastest is the best lower bound of that node's link;
* it is the link's speed only when the other end of that migration was seen faster (this node
  was the bottleneck) and the rate is below the migration's per-stream cap (one SSH or QEMU
  stream, `stream_cap_Bps`); otherwise it says only that the link is *at least* that fast, and
  no figure is learned (the declared or default speed stays);
* per node pair (source, target), the pair's own fastest rate among its migrations that ran
  alone on their links as far as PVE shows (no other migration left the same source meanwhile,
  by the task list's start and end times, and no other sample from the same source or into the
  same target overlapped it: the task list does not name targets), below the stream cap: a
  migration that shared its source's uplink or its target's downlink says nothing about the
  path between the two. Pairs whose migrations all overlapped others are not learned.

Imports: the standard library, `pvetool.model`, `pvetool.errors` and the package's `client` and
`convert`. The caller composes declared, learned and default figures (`pvetool.links`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from pvetool.api.client import PveClient
from pvetool.api.convert.links import LinkSample, parse_migration_log
from pvetool.errors import ApiError, ApiUnreachable
from pvetool.model import TaskQuery, TaskSummary

__all__ = ["LearnedLink", "LinkSample", "fetch_link_samples", "learn_links"]

logger = logging.getLogger(__name__)

# A rate this close to the stream cap says "the link is at least this fast", not its speed.
CAP_BOUND_FRACTION = 0.85
# A peer seen this much faster shows that the slow end of a migration was the other node.
PEER_FASTER = 1.2


@dataclass(frozen=True)
class LearnedLink:
    """What recent migrations say about one node's link (or one node pair)."""

    goodput_Bps: float | None  # None: only "at least `fastest_Bps`" (stream-bound)
    tasks: int  # samples it is learned from
    fastest_Bps: float


def fetch_link_samples(
    client: PveClient,
    nodes: Iterable[str],
    *,
    known: Collection[str] = (),
    per_node: int = 5,
    max_workers: int = 8,
    vmids: Collection[int] = (),
    max_guest_logs: int = 64,
) -> list[LinkSample]:
    """Samples of the newest `per_node` successful migrations from each node not in `known`,
    and of the newest successful migration of each guest in `vmids` (what it dirtied), at most
    `max_guest_logs` of those per call (the newest first; the rest come with the next runs).

    One ``GET /cluster/tasks`` finds them on every node at once (a 100-node cluster costs one
    call, not a hundred); only when PVE refuses it, each node's own list is read."""
    nodes = list(nodes)
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="pve") as pool:
        try:
            listed = {"*": client.cluster_tasks()}
        except (ApiError, ApiUnreachable) as exc:
            logger.info("Could not list the cluster's tasks (%s); reading each node's", exc)
            # a listing long enough for the guests' own migrations too
            listed = _per_node_lists(client, pool, nodes, max(per_node, 5))
        wanted: list[TaskSummary] = []
        guests: list[TaskSummary] = []
        for tasks in listed.values():
            finished = [
                t
                for t in tasks
                if t.upid.type == "qmigrate"
                and t.upid.node in nodes
                and t.exitstatus == "OK"
                and t.endtime is not None
            ]
            finished.sort(key=lambda t: -(t.endtime or 0))
            done = [t for t in finished if str(t.upid) not in known]
            count: dict[str, int] = {}
            for task in done:
                if count.get(task.upid.node, 0) < per_node:
                    count[task.upid.node] = count.get(task.upid.node, 0) + 1
                    wanted.append(task)
            guests += [
                t for t in _newest_per_guest(finished, set(vmids)) if str(t.upid) not in known
            ]
        taken = {str(t.upid) for t in wanted}
        guests.sort(key=lambda t: -(t.endtime or 0))
        wanted += [t for t in guests if str(t.upid) not in taken][: max(0, max_guest_logs)]
        shared = _shared_source(wanted, [t for tasks in listed.values() for t in tasks])
        logs = {str(t.upid): (t, pool.submit(client.task_log_all, t.upid)) for t in wanted}
        samples: list[LinkSample] = []
        for task, log_future in logs.values():
            try:
                lines = log_future.result()
            except (ApiError, ApiUnreachable) as exc:
                logger.info("Could not read the log of %s: %s", task.upid, exc)
                continue
            sample = parse_migration_log(task.upid, (ln.text for ln in lines), task.endtime or 0)
            if sample is not None:
                if str(task.upid) in shared:
                    sample = replace(sample, shared_source=True)
                samples.append(sample)
    return samples


_MIGRATIONS = frozenset({"qmigrate", "vzmigrate"})


def _shared_source(wanted: list[TaskSummary], listed: Iterable[TaskSummary]) -> set[str]:
    """UPIDs of the `wanted` migrations during which another migration (of any outcome, or
    still running) left the same node: the task list names a migration's source (the UPID's
    node), not its target."""
    by_node: dict[str, list[tuple[int, float, str]]] = {}
    for t in listed:
        if t.upid.type in _MIGRATIONS:
            end = math.inf if t.endtime is None else float(t.endtime)
            by_node.setdefault(t.upid.node, []).append((t.upid.starttime, end, str(t.upid)))
    out: set[str] = set()
    for task in wanted:
        me, start, end = str(task.upid), task.upid.starttime, float(task.endtime or 0)
        for other_start, other_end, other in by_node.get(task.upid.node, ()):
            if other != me and other_start < end and start < other_end:
                out.add(me)
                break
    return out


def _newest_per_guest(done: list[TaskSummary], vmids: set[int]) -> list[TaskSummary]:
    """The newest task of each guest in `vmids` (`done` is newest first)."""
    out: list[TaskSummary] = []
    seen: set[int] = set()
    for task in done:
        vmid = int(task.upid.id) if task.upid.id.isdigit() else None
        if vmid is not None and vmid in vmids and vmid not in seen:
            seen.add(vmid)
            out.append(task)
    return out


def _per_node_lists(
    client: PveClient, pool: ThreadPoolExecutor, nodes: list[str], per_node: int
) -> dict[str, tuple[TaskSummary, ...]]:
    futures = {
        node: pool.submit(
            client.tasks,
            TaskQuery(node=node, typefilter="qmigrate", source="archive", limit=per_node * 4),
        )
        for node in nodes
    }
    out: dict[str, tuple[TaskSummary, ...]] = {}
    for node, future in futures.items():
        try:
            out[node] = future.result()
        except (ApiError, ApiUnreachable) as exc:  # e.g. no Sys.Audit: nothing learned there
            logger.info("Could not list the migrations of %s: %s", node, exc)
    return out


def learn_links(
    samples: Iterable[LinkSample],
    stream_cap_Bps: Callable[[bool], float],
    *,
    recent: int = 10,
) -> tuple[dict[str, LearnedLink], dict[tuple[str, str], LearnedLink]]:
    """Per node and per (source, target) pair, from the `recent` newest RAM rates of each.

    A migration runs at its slower end's speed, so a slow rate alone does not say which end was
    slow. A node's figure is its fastest rate (`fastest_Bps`, a lower bound of its link); it is
    learned as the link's speed (`goodput_Bps`) only when that rate is below the stream cap and
    one of those migrations went to or from a node seen faster (by `PEER_FASTER`): then this
    node was the bottleneck. Otherwise it is only "at least" (None).
    """
    by_node: dict[str, list[LinkSample]] = {}
    by_pair: dict[tuple[str, str], list[LinkSample]] = {}
    for sample in sorted(samples, key=lambda s: -s.endtime):
        if sample.ram_Bps is None or sample.ram_Bps <= 0:
            continue
        for node in {sample.source, sample.target}:
            by_node.setdefault(node, []).append(sample)
        by_pair.setdefault((sample.source, sample.target), []).append(sample)
    by_node = {n: s[:recent] for n, s in by_node.items()}
    fastest = {n: max(s.ram_Bps or 0.0 for s in found) for n, found in by_node.items()}
    nodes: dict[str, LearnedLink] = {}
    for node, found in by_node.items():
        rate = fastest[node]
        best = [s for s in found if (s.ram_Bps or 0.0) >= 0.9 * rate]
        stream_bound = any(rate >= CAP_BOUND_FRACTION * stream_cap_Bps(s.secure) for s in best)
        peers = {s.target if s.source == node else s.source for s in best}
        bottleneck = any(fastest.get(p, 0.0) > PEER_FASTER * rate for p in peers)
        learned = rate if bottleneck and not stream_bound else None
        nodes[node] = LearnedLink(learned, len(found), rate)
    pairs: dict[tuple[str, str], LearnedLink] = {}
    shared = _overlapping(s for found in by_pair.values() for s in found)
    shared |= {s.upid for found in by_pair.values() for s in found if s.shared_source}
    for pair, found in by_pair.items():
        found = [s for s in found if s.upid not in shared][:recent]
        if not found:
            continue
        top = max(found, key=lambda s: s.ram_Bps or 0.0)
        rate = top.ram_Bps or 0.0
        bound = rate >= CAP_BOUND_FRACTION * stream_cap_Bps(top.secure)
        pairs[pair] = LearnedLink(None if bound else rate, len(found), rate)
    return nodes, pairs


def _start_s(sample: LinkSample) -> int:
    """The task's start (epoch seconds, the UPID's fifth field, hex); its end when unreadable."""
    parts = sample.upid.split(":")
    try:
        return min(int(parts[4], 16), sample.endtime)
    except (IndexError, ValueError):
        return sample.endtime


def _overlapping(samples: Iterable[LinkSample]) -> set[str]:
    """UPIDs of the samples that ran while another one from the same source or into the same
    target did (they shared an uplink or a downlink): one sweep per link, by start."""
    by_link: dict[str, list[tuple[int, int, str]]] = {}
    for s in samples:
        span = (_start_s(s), s.endtime, s.upid)
        by_link.setdefault(f"up:{s.source}", []).append(span)
        by_link.setdefault(f"down:{s.target}", []).append(span)
    out: set[str] = set()
    for spans in by_link.values():
        if len(spans) < 2:
            continue
        spans.sort()
        end_s, holder = spans[0][1], spans[0][2]
        for start_s, stop_s, upid in spans[1:]:
            if start_s < end_s:  # it began before the longest-running earlier one ended
                out.update((upid, holder))
            if stop_s > end_s:
                end_s, holder = stop_s, upid
    return out
