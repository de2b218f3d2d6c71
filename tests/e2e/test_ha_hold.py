"""The HA drain hold (issue 13 point 3) end to end through the emulated lab.

The lab's VM 103 (db1) is HA-managed with the strict node-affinity rule ``db-on-1-2``
(``pve1:2,pve2``). With ``failback`` on (PVE's default), PVE 9.2's CRM moves it back to pve1 in
its next round after any migration away (pve-ha-manager ``src/PVE/HA/Manager.pm``
``select_service_node``; the emulator models it, ``pvetool/emulator/ha.py``). A drain of pve1
must therefore hold: failback goes off for the rule's resources before the migrations, the
rule is rewritten to keep pve1 out once they have left, and ``undrain`` puts both back exactly as
they were, after which the guest comes home.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.lab import Cluster, checked, make_cluster, migration_tasks
from tests.emu import Api

CRM_ROUNDS_S = 120.0  # a dozen 10 s CRM rounds (pve-ha-manager CRM.pm l.361-363)


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Cluster]:
    with checked(make_cluster(tmp_path)) as cluster:
        yield cluster


def _rule(lab: Cluster, rule_id: str) -> dict[str, Any]:
    rules = Api(lab.emu).get("/cluster/ha/rules")
    return next(r for r in rules if r["rule"] == rule_id)


def _settle(lab: Cluster) -> None:
    assert lab.stepped is not None
    lab.stepped.advance_until(lambda: False, step_s=5.0, limit_s=CRM_ROUNDS_S)
    lab.finish()


@pytest.mark.emulator_only
def test_a_drain_holds_an_ha_guest_off_its_preferred_node_until_undrain(lab: Cluster) -> None:
    original = _rule(lab, "db-on-1-2")
    assert original["nodes"] == "pve1:2,pve2" and original["strict"] == 1
    assert lab.node_of(103) == "pve1"

    assert Api(lab.emu).get("/cluster/ha/resources/vm:103")["failback"] == 1
    r = lab.pvetool("drain", "pve1", "--with-local-disks", "--yes")
    assert r.code == 0, r.out + r.err
    out = r.out + r.err
    assert "HA rule db-on-1-2: failback off for vm:103 while pve1 is drained" in out
    assert "HA rule db-on-1-2: keeps off pve1; nodes pve2 while pve1 is drained" in out
    # The HA manager moved nothing by itself: pvetool's one migration of 103, where planned.
    assert "moved VM 103 (db1) pve1 -> pve2" in out
    assert Api(lab.emu).get("/cluster/ha/resources/vm:103")["failback"] == 0
    held = _rule(lab, "db-on-1-2")
    assert held["nodes"] == "pve2" and held["strict"] == 1 and not held.get("disable")
    assert held["comment"].startswith("pvetool-hold: ")

    # Many CRM rounds later the guest is still away: the CRM does not fail it back.
    _settle(lab)
    assert lab.node_of(103) == "pve2"
    assert len(migration_tasks(lab.emu, 103)) == 1

    r = lab.pvetool("undrain", "pve1", "--yes")
    assert r.code == 0, r.out + r.err
    out = r.out + r.err
    assert "HA rule db-on-1-2: restored (nodes pve1:2,pve2)" in out
    # Failback comes back only after pvetool's own move home: with it on during the moves, the
    # CRM starts the same migration and pvetool's fails on the lock (seen under load).
    assert "failback stays off for vm:103 until the moves end" in out
    assert out.index("moved VM 103 (db1) pve2 -> pve1") < out.index(
        "HA rule db-on-1-2: failback as it was for vm:103"
    )
    assert len(migration_tasks(lab.emu, 103)) == 2  # pvetool's two, none by the CRM
    restored = _rule(lab, "db-on-1-2")
    assert restored == original | {"digest": restored["digest"]}
    assert "comment" not in restored
    assert Api(lab.emu).get("/cluster/ha/resources/vm:103")["failback"] == 1
    _settle(lab)
    assert lab.node_of(103) == "pve1"
