"""The rebalance strategy scores groups of alike guests once and merges their members in
lazily (`_Rebalance._scored`): the pairs it yields must be those of scoring every guest on every
target and sorting them, in the same order, at every step of a plan."""

from __future__ import annotations

import re

from pvetool.emulator.fleet import generate_cluster
from pvetool.planner.build import rebalance_spec
from pvetool.planner.resolve import resolve_rules
from pvetool.planner.spec import RebalanceStep
from pvetool.planner.strategies.common import StagePlanner
from pvetool.planner.strategies.rebalance import TOP_TARGETS, _Loads, _Rebalance
from tests.unit.planner.planner_support import snapshot_of_text


def _skewed(nodes: int, guests: int, seed: int) -> str:
    """A generated cluster with every other running guest of the upper half on pve1/pve2."""
    text = generate_cluster(nodes, guests, seed=seed, fleet="mixed")
    lines = text.splitlines()
    moved = 0
    for i, line in enumerate(lines):
        m = re.match(
            r"^(  \d+: \{type: (?:qemu|lxc), .*?node: )(pve\d+)(, status: running.*)$", line
        )
        if m and int(m.group(2)[3:]) > nodes // 2 and "ha" not in line.split("tags")[0]:
            moved += 1
            if moved % 2:
                lines[i] = m.group(1) + ("pve1" if moved % 4 == 1 else "pve2") + m.group(3)
    return "\n".join(lines) + "\n"


def _every_pair(rb: _Rebalance, state: _Loads, targets: list[str]) -> list[tuple[object, ...]]:
    """The reference: each guest scored on its own, all pairs sorted."""
    pairs = []
    for source in state.heavy[:3]:
        for members in rb._groups(source):
            for c in members:
                for key, target, _, _, _, _, spread in rb._group_heads(state, source, [c], targets):
                    pairs.append((key, target, c.vmid, spread))
    pairs.sort(key=lambda p: (p[0], p[1]))
    return pairs


def test_merged_pairs_are_every_pair_sorted_at_every_step() -> None:
    snap = snapshot_of_text(_skewed(6, 150, seed=6), "<skewed>")
    spec = rebalance_spec("memory", 0.10)
    step = spec.steps[0]
    assert isinstance(step, RebalanceStep)
    rules = resolve_rules(spec.rules, snap)
    sp = StagePlanner(1, snap, rules)
    nodes = [n for n, e in snap.nodes.items() if e.online and e.memory_total_bytes]
    rb = _Rebalance(sp, step, spec.rules, nodes, ())
    rb.loads = {n: sp.placement.load(n) for n in nodes}
    steps = 0
    while steps < 40:
        state = _Loads.of(dict(rb.loads))
        if state.spread <= step.threshold:
            break
        for targets in (state.light[:TOP_TARGETS], state.light):
            merged = [(k, t, g.vmid, s) for k, g, t, s, _ in rb._scored(state, targets)]
            assert merged and merged == _every_pair(rb, state, targets)
        best, rejected = rb._first_allowed(rb._scored(state, state.light[:TOP_TARGETS]))
        assert best is not None
        groups = [len(g) for g in rb._groups(state.heavy[0])]
        rb._accept(best, rejected, state)
        steps += 1
    # The plan went somewhere, and groups of more than one guest were merged.
    assert steps >= 5
    assert max(groups) > 1
