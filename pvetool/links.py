"""The migration link speed the planner assumes for each node, and where each figure came from
(issue 14: "know the links").

Per node, the first that applies:

1. declared for that node: ``--link pve3=1Gbit`` or a plan's ``links: {pve3: 1Gbit}``;
2. declared for every node: ``--link 10Gbit`` (or ``--link default=10Gbit``, ``links: {default:
   ...}``) -- a declaration always wins over what was learned;
3. learned from the cluster's recent migrations (`pvetool.api.links`): "learned from N
   migrations";
4. the built-in default, 10 Gbit/s.

Per node pair, where the data supports it: the path between two nodes can be slower than both
nodes' links (two racks joined by a slower uplink, a routed or tunnelled path). A pair's figure
is learned from its own migrations, both ways (`pvetool.api.links.learn_links`: the fastest RAM
rate of those that shared neither end's link with another migration, as far as the task list
and the kept samples show, below the stream cap), and used only when it is clearly below what
both ends' figures allow (under `PAIR_BELOW_ENDS` of the slower end's usable rate): otherwise
the node figures already say it.
In the planner (`pvetool.planner.sequencer.Network`) a pair figure is the capacity of the path
each way, shared max-min fairly by the streams between the two nodes in that direction, as a
node's link is shared by its streams; a stream crosses its source's uplink, its target's
downlink and, where there is one, the pair's path.

Declarations win over what was learned, for pairs too: an administrator who declares a node's
speed (``--link pve3=25Gbit``, ``links: {pve3: 25Gbit}``) says what that node's migrations run
at, typically after changing its network, when what was learned about it is stale; and there
is no way to declare a pair. So a learned pair figure is dropped when either of its nodes is
declared, and with ``default`` (or every node) declared nothing learned is used at all.

The same task logs say what each guest dirtied during its last migration: `LinkFigures.dirty`
holds, per running VM whose newest successful migration is known, the dirty profile that
reproduces it (`pvetool.timing.fit_dirty_profile`, from the RAM bytes it sent at the rate it
had, with the guest's used memory now), and the planner uses it instead of the CPU-load guess.
Guests are learned from even when every link is declared.

Learned samples are kept in the state directory, one file per cluster name
(``link-samples-<cluster>.json``, newest `MAX_KEPT_SAMPLES`; node names like pve1 repeat across
clusters), keyed by task UPID, so each task log is read once and the figures improve
with every run (the executor's own migrations are among the next run's samples).

Imports: the standard library, `pvetool.api`, `pvetool.journal` (the state directory),
`pvetool.model`, `pvetool.timing` and `pvetool.units`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from pvetool.api import PveClient
from pvetool.api.links import LearnedLink, LinkSample, fetch_link_samples, learn_links
from pvetool.journal import state_dir
from pvetool.model import ClusterSnapshot
from pvetool.timing import (
    TimingParams,
    fit_dirty_profile,
    link_bits_for_goodput,
    link_goodput_Bps,
    stream_cap_Bps,
)
from pvetool.units import parse_rate

__all__ = [
    "DEFAULT_LINK_BITS_PER_S",
    "LinkFigures",
    "cluster_links",
    "learned_dirty",
    "parse_links",
]

logger = logging.getLogger(__name__)

DEFAULT_LINK_BITS_PER_S = 10e9
# A learned pair figure under this share of the slower end's usable rate says something the
# node figures do not (a measured rate varies by a few per cent from one migration to the next).
PAIR_BELOW_ENDS = 0.8
MAX_KEPT_SAMPLES = 2000
SAMPLES_FILE = "link-samples-{cluster}.json"


@dataclass(frozen=True)
class LinkFigures:
    """Nominal link speed (bits/s) of every node, and where each figure came from."""

    bits_per_s: Mapping[str, float]
    origin: Mapping[str, str]  # "declared", "learned from N migrations", "default"
    # vmid -> (dirty profile, where it came from), for guests learned from their last migration
    dirty: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    # (a, b) with a < b -> (bits/s of the path each way, where it came from): only pairs whose
    # path is clearly slower than both nodes' figures (module docstring)
    pairs: Mapping[tuple[str, str], tuple[float, str]] = field(default_factory=dict)


def parse_links(values: Iterable[str]) -> dict[str, float]:
    """``["10Gbit"]``, ``["pve3=1Gbit", "default=25Gbit"]`` or ``["pve3=1Gbit,pve4=1Gbit"]`` ->
    {node or "default": bits/s}. Raises ValueError naming the bad item."""
    out: dict[str, float] = {}
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            node, sep, speed = item.rpartition("=")
            name = node.strip() if sep else "default"
            try:
                bits = parse_rate(speed.strip()) * 8
            except ValueError as exc:
                raise ValueError(f"'{item}': {exc} (e.g. 10Gbit or pve3=1Gbit)") from None
            if bits <= 0:
                raise ValueError(f"'{item}': the link speed must be above 0")
            if not name:
                raise ValueError(f"'{item}': name the node before '=' (or 'default')")
            out[name] = bits
    return out


def resolve(
    nodes: Iterable[str],
    declared: Mapping[str, float],
    learned: Mapping[str, LearnedLink],
    pairs: Mapping[tuple[str, str], LearnedLink] | None = None,
) -> LinkFigures:
    """Each node's figure by the order in the module docstring, and the learned pair figures
    (`pairs`: per (source, target), as `learn_links` gives them) that are used."""
    bits: dict[str, float] = {}
    origin: dict[str, str] = {}
    for node in nodes:
        if node in declared:
            bits[node], origin[node] = declared[node], "declared"
        elif "default" in declared:
            bits[node], origin[node] = declared["default"], "declared"
        elif (found := learned.get(node)) is not None and found.goodput_Bps is not None:
            bits[node] = link_bits_for_goodput(found.goodput_Bps)
            many = "migration" if found.tasks == 1 else "migrations"
            origin[node] = f"learned from {found.tasks} {many}"
        else:
            bits[node], origin[node] = DEFAULT_LINK_BITS_PER_S, "default"
    used: dict[tuple[str, str], tuple[float, str]] = {}
    if "default" not in declared:
        for (a, b), found in _both_ways(pairs or {}).items():
            if found.goodput_Bps is None or a in declared or b in declared:
                continue
            if a not in bits or b not in bits:
                continue
            ends_Bps = min(link_goodput_Bps(bits[a]), link_goodput_Bps(bits[b]))
            if found.goodput_Bps >= PAIR_BELOW_ENDS * ends_Bps:
                continue
            many = "migration" if found.tasks == 1 else "migrations"
            used[(a, b)] = (
                link_bits_for_goodput(found.goodput_Bps),
                f"learned from {found.tasks} {many}",
            )
    return LinkFigures(bits, origin, pairs=used)


def _both_ways(
    pairs: Mapping[tuple[str, str], LearnedLink],
) -> dict[tuple[str, str], LearnedLink]:
    """Directed pair figures -> one per unordered pair (a < b): the path is the same both
    ways, so its fastest rate either way is the best lower bound of its speed; the migrations
    of both directions count."""
    out: dict[tuple[str, str], LearnedLink] = {}
    for (source, target), found in pairs.items():
        if source == target:
            continue
        key = (source, target) if source < target else (target, source)
        other = out.get(key)
        if other is None:
            out[key] = found
            continue
        best = found if found.fastest_Bps > other.fastest_Bps else other
        out[key] = LearnedLink(best.goodput_Bps, found.tasks + other.tasks, best.fastest_Bps)
    return out


def cluster_links(
    client: PveClient | None,
    snapshot: ClusterSnapshot,
    declared: Mapping[str, float] | None = None,
    *,
    params: TimingParams | None = None,
    state: Path | None = None,
) -> LinkFigures:
    """The figures for `snapshot`'s nodes; learns from the cluster unless every node's figure is
    declared (or `client` is None). A failure to learn is logged, never fatal."""
    declared = dict(declared or {})
    nodes = list(snapshot.nodes)
    learned: dict[str, LearnedLink] = {}
    pairs: dict[tuple[str, str], LearnedLink] = {}
    dirty: dict[int, tuple[str, str]] = {}
    if client is not None:
        params = params or TimingParams()
        links_declared = "default" in declared or set(nodes) <= set(declared)
        cluster = re.sub(r"[^A-Za-z0-9_.-]", "_", snapshot.cluster_name or "cluster")
        path = (state or state_dir()) / SAMPLES_FILE.format(cluster=cluster)
        kept = _load(path)
        online = [n for n, e in snapshot.nodes.items() if e.online]
        vms = [g.vmid for g in snapshot.guests.values() if g.kind == "qemu" and g.running]
        try:
            new = fetch_link_samples(
                client, online, known=set(kept), per_node=0 if links_declared else 5, vmids=vms
            )
        except Exception as exc:  # learning is an optimisation: plan with the defaults
            logger.warning("Could not learn from recent migrations: %s", exc)
            new = []
        if new:
            kept.update({s.upid: s for s in new})
            _save(path, kept)
        if not links_declared:
            learned, pairs = learn_links(
                kept.values(), lambda secure: stream_cap_Bps(params, secure)
            )
        dirty = learned_dirty(snapshot, kept.values(), params)
    return replace(resolve(nodes, declared, learned, pairs), dirty=dirty)


def learned_dirty(
    snapshot: ClusterSnapshot, samples: Iterable[LinkSample], params: TimingParams
) -> dict[int, tuple[str, str]]:
    """vmid -> (dirty profile, origin) for each running VM of `snapshot` whose newest sample
    says how many RAM bytes it sent and at what rate (`LinkFigures.dirty`)."""
    newest: dict[int, LinkSample] = {}
    for sample in samples:
        if sample.vmid and sample.ram_sent_bytes > 0 and sample.ram_Bps:
            if sample.vmid not in newest or sample.endtime > newest[sample.vmid].endtime:
                newest[sample.vmid] = sample
    out: dict[int, tuple[str, str]] = {}
    for vmid, sample in newest.items():
        guest = snapshot.guests.get(vmid)
        if guest is None or guest.kind != "qemu" or not guest.running or not sample.ram_Bps:
            continue
        # The figure the planner predicts with (`sequencer.move_timing`), so its error cancels.
        ram = float(guest.used_memory_bytes or guest.memory_bytes * 0.7)
        if ram <= 0:
            continue
        profile = fit_dirty_profile(
            ram,
            float(sample.ram_sent_bytes),
            sample.ram_Bps,
            params,
            converged_hardly=sample.dirties_lots or sample.downtime_raised,
        )
        when = datetime.fromtimestamp(sample.endtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
        out[vmid] = (profile, f"learned from its migration of {when}")
    return out


def _load(path: Path) -> dict[str, LinkSample]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            str(k): LinkSample(
                **{f: v for f, v in row.items() if f in LinkSample.__dataclass_fields__}
            )
            for k, row in raw.get("samples", {}).items()
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        logger.warning("Ignoring unreadable %s: %s", path, exc)
        return {}


def _save(path: Path, samples: Mapping[str, LinkSample]) -> None:
    newest = sorted(samples.values(), key=lambda s: -s.endtime)[:MAX_KEPT_SAMPLES]
    body = json.dumps({"version": 1, "samples": {s.upid: asdict(s) for s in newest}}, indent=1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".link-samples-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("Could not keep the learned link samples in %s: %s", path, exc)
