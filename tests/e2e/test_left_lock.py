"""A migration PVE finished "with problems", leaving the guest locked on its target: the run
says where the guest is, names the lock and the command that clears it, in the terminal
summary, the journal and the report - and never calls the guest moved.

PVE clears the ``migrate`` lock last, over ssh on the target (qemu-server
`src/PVE/QemuMigrate.pm` `phase3_cleanup` ``qm unlock``, pve-container `src/PVE/LXC/Migrate.pm`
`final_cleanup` ``pct unlock``); a failure there is logged and the task ends "migration
finished with problems" (pve-guest-common `src/PVE/AbstractMigrate.pm` `migrate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pvetool.emulator.cluster import GuestRt
from tests.e2e.lab import Cluster, checked, journal_records, make_cluster
from tests.e2e.test_faults import drain_with, moves_by_vmid


@pytest.fixture()
def fast_lab(tmp_path: Path) -> Iterator[Cluster]:
    with checked(make_cluster(tmp_path)) as cluster:
        yield cluster


@pytest.mark.emulator_only
def test_a_lock_left_by_pve_is_named_with_its_fix(fast_lab: Cluster, tmp_path: Path) -> None:
    with fast_lab.emu.locked() as c:
        c.faults.unlock_fails[110] = True  # `qm unlock 110` on the target fails
        c.faults.unlock_fails[200] = True  # `pct unlock 200` likewise
    code, out, data = drain_with(fast_lab, tmp_path, lambda _: None, "--on-failure", "continue")
    assert code == 1, out
    moves = moves_by_vmid(data)
    state = fast_lab.emu.state()["guests"]
    for vmid, word, cli in ((110, "VM", "qm"), (200, "CT", "pct")):
        node = state[str(vmid)]["node"]
        assert node != "pve1" and state[str(vmid)]["lock"] == "migrate"
        fix = f"{word} {vmid} is on {node}, locked (migrate): run '{cli} unlock {vmid}' on {node}"
        assert moves[vmid]["status"] == "failed", moves[vmid]
        assert moves[vmid]["node"] == node
        assert fix in moves[vmid]["reason"]
        assert fix in " ".join(out.split()), out  # the terminal summary (wrapped to its width)
        outcomes = [r for run in journal_records(fast_lab) for r in run if r.get("vmid") == vmid]
        assert any(fix in str(r.get("reason")) for r in outcomes), outcomes
    assert data["summary"]["moved"] == 4
    with fast_lab.emu.locked() as c:  # the operator runs the fix; the fixture checks the rest
        c.set_lock(110, None)
        c.set_lock(200, None)


@pytest.mark.emulator_only
def test_a_target_lost_after_the_config_moved(fast_lab: Cluster, tmp_path: Path) -> None:
    """The chaos finding (lab-rolling 127): the target goes offline the moment PVE moved the
    VM's config to it, and stays away. PVE's task ends with problems, the VM on the target,
    locked; the report says so with the fix; no other guest is lost."""
    lost: list[str] = []
    with fast_lab.emu.locked() as c:
        move_config = c.set_node

        def set_node(g: GuestRt, node: str) -> None:
            move_config(g, node)
            if g.vmid == 110 and g.migrating and not lost:
                lost.append(node)  # offline right after this step of the task (not inside it)
                c.engine.call_later(0.0, lambda: c.set_node_online(node, False))

        c.set_node = set_node  # type: ignore[method-assign]
    code, out, data = drain_with(fast_lab, tmp_path, lambda _: None, "--on-failure", "continue")
    assert code == 1, out
    assert lost, "110 never reached phase 3"
    target = lost[0]
    moved = moves_by_vmid(data)[110]
    fix = f"VM 110 is on {target}, locked (migrate): run 'qm unlock 110' on {target}"
    assert (moved["status"], moved["node"]) == ("failed", target), moved
    assert fix in moved["reason"] and fix in " ".join(out.split())
    with fast_lab.emu.locked() as c:
        task = c.task(moved["upid"])
        assert (task.status, task.exitstatus) == ("stopped", "migration problems")
        assert (c.guests[110].node, c.guests[110].lock) == (target, "migrate")
        c.set_node = move_config  # type: ignore[method-assign]
        c.set_node_online(target, True)  # the node is back, the operator runs the fix
        c.set_lock(110, None)
