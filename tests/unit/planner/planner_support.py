"""Helpers for the planner tests (not a test module).

Snapshots come from the emulator through the real client (`fetch_snapshot` over HTTPS), cached
per cluster text for the whole session. `replay_memory` checks a plan's predicted timeline the
way the executor would live it: a guest counts on its target from its move's start and leaves
its source only at the end.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pvetool.api import PveClient, fetch_snapshot
from pvetool.emulator.clusterfile import load_cluster, load_cluster_text
from pvetool.emulator.server import Emulator
from pvetool.model import ClusterSnapshot, ExecutionPlan, Move, MoveOptions, PlanRules
from pvetool.planner.placement import memory_limit_bytes
from pvetool.settings import load_settings
from tests.emu import CLUSTERS, START_EPOCH

ROOT = Path(__file__).resolve().parents[3]
SCENARIOS = ROOT / "tests" / "data" / "scenarios"


def _fetch(emu: Emulator) -> ClusterSnapshot:
    emu.start()
    try:
        with PveClient(load_settings(env=emu.env(), config_path=None)) as client:
            return fetch_snapshot(client)
    finally:
        emu.stop()


@functools.cache
def snapshot_of_text(text: str, filename: str = "<scenario>") -> ClusterSnapshot:
    """The snapshot of an inline cluster document (cached per text)."""
    spec = load_cluster_text(text, filename)
    return _fetch(Emulator(spec, speed=0.0, start_epoch_s=START_EPOCH))


@functools.cache
def snapshot_of(name: str) -> ClusterSnapshot:
    """The snapshot of 'lab' or a file in tests/data/clusters (cached)."""
    source = name if name == "lab" or "/" in name else str(CLUSTERS / name)
    return _fetch(Emulator(load_cluster(source), speed=0.0, start_epoch_s=START_EPOCH))


def move_of(snapshot: ClusterSnapshot, vmid: int, target: str) -> Move:
    """A plain move of a guest to `target` (for `ClusterSnapshot.after` in tests)."""
    guest = snapshot.guests[vmid]
    return Move(
        f"{vmid}-{target}", vmid, guest.kind, guest.name, guest.node, target, MoveOptions(), "test"
    )


def lab() -> ClusterSnapshot:
    return snapshot_of("lab")


def replay_memory(plan: ExecutionPlan, snapshot: ClusterSnapshot) -> list[str]:
    """Every moment at which a node would hold more than its limit; [] when none.

    Stages run one after the other. Within a migrate stage, at every predicted start and end
    (ends first at equal times), a node holds its host's own use + the configured memory of the
    running guests on it + every incoming running guest whose move has started; a leaving guest
    stops counting on its source only when its move has ended.
    """
    rules = plan.rules or PlanRules()
    limits = {n: memory_limit_bytes(snapshot, n, rules) for n in snapshot.nodes}
    where = {g.vmid: g.node for g in snapshot.guests.values()}
    running = {g.vmid: g.running for g in snapshot.guests.values()}
    memory = {g.vmid: g.memory_bytes for g in snapshot.guests.values()}
    problems: list[str] = []
    for si, stage in enumerate(plan.stages, 1):
        if stage.kind != "migrate":
            continue
        committed = {n: snapshot.host_overhead_bytes(n) for n in snapshot.nodes}
        for vmid, node in where.items():
            if running[vmid] and node in committed:
                committed[node] += memory[vmid]
        events: list[tuple[float, int, str, int, str]] = []
        for m in stage.moves:
            mem = memory[m.vmid] if running[m.vmid] else 0
            events.append((m.predicted_start_s, 1, m.target, mem, m.id))
            events.append((m.predicted_end_s, 0, m.source, -mem, m.id))
        for t, _, node, delta, move_id in sorted(events):
            committed[node] += delta
            if delta > 0 and committed[node] > limits[node]:
                problems.append(
                    f"stage {si} at {t:.1f}s: {node} holds {committed[node] / 1024**3:.2f} GiB "
                    f"> limit {limits[node] / 1024**3:.2f} GiB when {move_id} starts"
                )
        for m in stage.moves:
            where[m.vmid] = m.target
    return problems
