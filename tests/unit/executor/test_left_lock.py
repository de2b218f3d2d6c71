"""A migration that ends with PVE's ``migrate`` lock left on the guest: the outcome says where
the guest is, names the lock and the command that clears it, and never calls it moved.

PVE clears the lock as the migration's last step, over ssh on the target (qemu-server
`src/PVE/QemuMigrate.pm` `phase3_cleanup` ``qm unlock``, pve-container `src/PVE/LXC/Migrate.pm`
`final_cleanup` ``pct unlock``); when that fails, pve-guest-common `src/PVE/AbstractMigrate.pm`
`migrate` logs it and ends the task "migration finished with problems" (exit status
``migration problems``), the config already on the target.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pvetool.errors import TaskFailed
from pvetool.model import GuestKind, MigrationProgress, TaskResult, Upid
from tests.unit.executor.fakes import FakeApi, FakeGuest, move, plan_of
from tests.unit.executor.test_truth import NODES, executor_following, follow_then, plan_with, roll

TS = "2026-12-03 17:00:00"


def problems_on_the_target(
    api: FakeApi, vmid: int, *, target_gone: bool
) -> Callable[..., TaskResult]:
    """A follow whose task (of `vmid`) moved the config, could not unlock it and ended with
    problems; with `target_gone` the target is offline by then."""

    def follow(
        upid: Upid, timeout_s: float, on_progress: Callable[[MigrationProgress], None] | None
    ) -> TaskResult:
        task = api.task_map[str(upid)]
        if task.vmid != vmid or task.target == "pve1":
            return api.follow(upid, timeout_s, on_progress)
        with api.lock:
            api.running.remove(task)
            task.status, task.exitstatus = "stopped", "migration problems"
            g = api.guests[vmid]
            g.node, g.lock = task.target, "migrate"
            if target_gone:
                api.online[task.target] = False
        cli = "qm" if g.kind == "qemu" else "pct"
        raise TaskFailed(
            upid=str(upid),
            node=upid.node,
            exitstatus="migration problems",
            last_lines=(
                f"{TS} # /usr/bin/ssh -e none -o 'BatchMode=yes' root@10.0.0.12 "
                f"{cli} unlock {vmid}",
                f"{TS} ERROR: failed to clear migrate lock: ssh: connect to host 10.0.0.12 port "
                "22: No route to host",
                f"{TS} ERROR: migration finished with problems (duration 00:01:40)",
            ),
            description=f"Migration of {'VM' if g.kind == 'qemu' else 'CT'} {vmid}",
        )

    return follow


@pytest.mark.parametrize(("kind", "word", "cli"), [("qemu", "VM", "qm"), ("lxc", "CT", "pct")])
@pytest.mark.parametrize("target_gone", [True, False])
def test_the_outcome_names_the_lock_and_its_fix(
    kind: GuestKind, word: str, cli: str, target_gone: bool
) -> None:
    api = FakeApi(NODES, [FakeGuest(101, kind, "pve1")])
    follow = problems_on_the_target(api, 101, target_gone=target_gone)
    report = executor_following(api, follow).run(
        plan_of([move("a", 101, "pve1", "pve2", kind=kind)])
    )
    r = report.results[0]
    assert (r.status, r.node) == ("failed", "pve2")
    assert f"{word} 101 is on pve2, locked (migrate): run '{cli} unlock 101' on pve2" in r.reason
    assert report.exit_code == 1


def test_a_later_move_of_the_locked_guest_repeats_the_fix() -> None:
    api = FakeApi(NODES, [FakeGuest(101, "qemu", "pve1"), FakeGuest(102, "qemu", "pve1")])

    def unlock_failed(upid: Upid) -> None:
        if upid.vmid == 101 and upid.node == "pve1":
            api.guests[101].lock = "migrate"

    plan = plan_with(roll(), on_failure="continue")
    report = executor_following(api, follow_then(api, unlock_failed)).run(plan)
    fix = "VM 101 is on pve2, locked (migrate): run 'qm unlock 101' on pve2"
    by_id = {r.move.id: r for r in report.results}
    assert by_id["a"].status == "failed" and fix in by_id["a"].reason
    assert by_id["c"].status == "failed" and by_id["c"].node == "pve2"
    assert by_id["c"].reason.endswith(fix)
    assert (by_id["b"].status, by_id["d"].status) == ("moved", "moved")
    assert not api.started or all(t.vmid != 101 or t.target != "pve1" for t in api.started)


def test_a_lock_of_a_migration_still_running_is_not_advised_away() -> None:
    api = FakeApi(NODES, [FakeGuest(101, "qemu", "pve1")])
    api.hang.add(101)
    report = executor_following(api, api.follow).run(
        plan_of([move("a", 101, "pve1", "pve2")], task_timeout_s=5)
    )
    r = report.results[0]
    assert r.still_running and "unlock" not in r.reason
