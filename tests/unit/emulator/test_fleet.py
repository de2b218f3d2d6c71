"""Tests for the emulator's fleet generator (`emulator.fleet.generate_cluster`)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pvetool.emulator import clusterfile as cf
from pvetool.emulator.clusterfile import ClusterSpec, load_cluster_text
from pvetool.emulator.fleet import generate_cluster
from pvetool.units import GiB, parse_link


def commitment(spec: ClusterSpec) -> dict[str, float]:
    used = dict.fromkeys(spec.nodes, 0)
    for g in spec.guests.values():
        if g.status == "running":
            used[g.node] += g.memory_bytes
    return {n: used[n] / spec.nodes[n].memory_bytes for n in spec.nodes}


def test_generator_is_deterministic() -> None:
    one = generate_cluster(5, 60, seed=11)
    assert one == generate_cluster(5, 60, seed=11)
    assert one != generate_cluster(5, 60, seed=12)
    assert generate_cluster(5, 60, 11, fleet="light") != one


@pytest.mark.parametrize(
    ("nodes", "guests", "seed", "fleet", "link", "migration_type"),
    [
        (3, 30, 1, "mixed", "10Gbit", "secure"),
        (4, 80, 2, "light", "1Gbit", "insecure"),
        (8, 300, 3, "mixed", "25Gbit", "secure"),
        (20, 600, 4, "light", "2.5Gbit", "secure"),
    ],
)
def test_generated_clusters_load(
    nodes: int, guests: int, seed: int, fleet: str, link: str, migration_type: str
) -> None:
    spec = load_cluster_text(
        generate_cluster(nodes, guests, seed, link=link, migration_type=migration_type, fleet=fleet)
    )
    assert list(spec.nodes) == [f"pve{i}" for i in range(1, nodes + 1)]
    assert len(spec.guests) == guests
    assert spec.seed == seed and spec.datacenter.migration_type == migration_type
    assert {n.link_bits_per_s for n in spec.nodes.values()} == {parse_link(link)}
    for node, ratio in commitment(spec).items():
        assert 0.40 <= ratio <= 0.70, (node, ratio)


def test_mixed_fleet_has_the_mix() -> None:
    spec = load_cluster_text(generate_cluster(6, 200, seed=5))
    guests = list(spec.guests.values())
    rates = {g.dirty_rate_Bps for g in guests}
    assert {cf.DIRTY_PROFILES[p][0] for p in ("idle", "moderate", "hot")} <= rates
    assert any(g.type == "lxc" for g in guests)
    assert any(g.status == "stopped" and not g.template for g in guests)
    assert any(g.template for g in guests)
    assert any(d.storage == "local-lvm" for g in guests for d in g.disks)
    assert 3 <= sum(g.ha for g in guests) <= 20
    assert {r.type for r in spec.ha_rules} == {"node-affinity", "resource-affinity"}
    sizes = {g.memory_bytes for g in guests if g.type == "qemu"}
    assert min(sizes) <= 2 * GiB and max(sizes) >= 32 * GiB


def test_light_fleet_is_light() -> None:
    spec = load_cluster_text(generate_cluster(4, 200, seed=5, fleet="light"))
    guests = list(spec.guests.values())
    idle = sum(g.dirty_rate_Bps == cf.DIRTY_PROFILES["idle"][0] for g in guests)
    assert idle >= 0.8 * len(guests)
    assert max(g.memory_bytes for g in guests) <= 4 * GiB
    assert not any(g.dirty_rate_Bps == cf.DIRTY_PROFILES["hot"][0] for g in guests)


def test_big_cluster_is_fast() -> None:
    start = time.perf_counter()
    text = generate_cluster(50, 2000, seed=42)
    spec = load_cluster_text(text, "big.yaml")
    elapsed = time.perf_counter() - start
    assert len(spec.nodes) == 50 and len(spec.guests) == 2000
    assert all(0.40 <= r <= 0.70 for r in commitment(spec).values())
    assert elapsed < 10, f"50 x 2000 took {elapsed:.1f} s"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nodes": 0, "guests": 1}, "node"),
        ({"nodes": 1, "guests": -1}, "guests"),
        ({"nodes": 1, "guests": 1, "fleet": "heavy"}, "fleet"),
        ({"nodes": 1, "guests": 1, "migration_type": "fast"}, "migration_type"),
        ({"nodes": 1, "guests": 1, "link": "fast"}, "link"),
    ],
)
def test_generator_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_cluster(seed=0, **kwargs)
