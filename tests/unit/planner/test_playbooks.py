"""The example plans in playbooks/ load, and name only nodes, guests, tags, pools and storages
that exist in the emulator's `lab` cluster, so the examples cannot rot.

(Tests may read the emulator's cluster file; the planner package itself never imports it.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pvetool.emulator.clusterfile import ClusterSpec, load_cluster
from pvetool.planner.loader import load_plan
from pvetool.planner.spec import (
    DrainStep,
    GuestSelector,
    MoveStep,
    PlanSpec,
    RollingStep,
)

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"
REQUIRED = {
    "drain-node.yaml": DrainStep,
    "rolling-maintenance.yaml": RollingStep,
    "rebalance-memory.yaml": None,
    "drain-local-disks.yaml": DrainStep,
    "relayout-anti-affinity.yaml": MoveStep,
}
ALL = sorted(PLAYBOOKS.glob("*.yaml"))


@pytest.fixture(scope="module")
def lab() -> ClusterSpec:
    return load_cluster("lab")


def selectors(spec: PlanSpec) -> list[GuestSelector]:
    rules = spec.rules
    return [
        rules.exclude.members,
        *(g.members for g in (*rules.anti_affinity, *rules.affinity)),
        *(p.members for p in rules.pins),
    ]


def vmids_of(spec: PlanSpec) -> set[int]:
    found = {vmid for selector in selectors(spec) for vmid in selector.vmids}
    for step in spec.steps:
        if isinstance(step, DrainStep):
            found |= {o.vmid for o in step.overrides}
        elif isinstance(step, MoveStep):
            found |= {m.vmid for m in step.moves}
    return found


def storages_of(spec: PlanSpec) -> set[str]:
    maps = [spec.rules.migration.target_storage]
    for step in spec.steps:
        if isinstance(step, DrainStep):
            maps += [step.target_storage or (), *(o.target_storage or () for o in step.overrides)]
    return {name for pairs in maps for pair in pairs for name in pair if name != "*"}


def test_the_required_examples_exist() -> None:
    names = {path.name for path in ALL}
    assert set(REQUIRED) <= names
    assert len(ALL) >= 5


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_playbook_loads_and_matches_the_lab(path: Path, lab: ClusterSpec) -> None:
    spec = load_plan(path)
    assert spec.source == str(path) and len(spec.digest) == 64
    assert spec.description, "say what the plan is for"
    kind = REQUIRED.get(path.name)
    if kind is not None:
        assert any(isinstance(step, kind) for step in spec.steps)

    for name, where in spec.node_refs:
        assert name in lab.nodes, f"{where}: unknown node {name!r}"
    assert vmids_of(spec) <= set(lab.guests), vmids_of(spec) - set(lab.guests)
    lab_tags = {tag for guest in lab.guests.values() for tag in guest.tags}
    lab_pools = {guest.pool for guest in lab.guests.values() if guest.pool}
    for selector in selectors(spec):
        assert set(selector.tags) <= lab_tags, selector
        assert set(selector.pools) <= lab_pools, selector
    assert storages_of(spec) <= set(lab.storages)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_playbook_is_commented(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# "), "start with what the plan does"
    assert sum("#" in line for line in lines) >= 8


def test_rolling_maintenance_documents_the_hook_environment() -> None:
    text = (PLAYBOOKS / "rolling-maintenance.yaml").read_text(encoding="utf-8")
    assert "PVETOOL_NODE" in text
    spec = load_plan(PLAYBOOKS / "rolling-maintenance.yaml")
    (step,) = spec.steps
    assert isinstance(step, RollingStep)
    assert step.before is not None and step.before.argv[0] == "/usr/local/sbin/pve-maintenance-hook"
    assert step.after is not None


def test_drain_local_disks_moves_the_lab_guests_with_local_disks(lab: ClusterSpec) -> None:
    spec = load_plan(PLAYBOOKS / "drain-local-disks.yaml")
    overridden = {
        o.vmid for step in spec.steps if isinstance(step, DrainStep) for o in step.overrides
    }
    assert {111, 112} <= overridden
    for vmid in (111, 112):
        assert any(disk.storage == "local-lvm" for disk in lab.guests[vmid].disks)
    assert all(s.with_local_disks for s in spec.steps if isinstance(s, DrainStep))


def test_relayout_keeps_web_apart() -> None:
    spec = load_plan(PLAYBOOKS / "relayout-anti-affinity.yaml")
    assert any("web" in g.members.tags for g in spec.rules.anti_affinity)
