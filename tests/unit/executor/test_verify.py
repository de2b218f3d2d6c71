"""How the executor reads PVE's refusals (`pvetool.executor.verify.target_trouble`) on PVE's
real words: a synchronous storage refusal (D3) and a hamigrate the HA manager refuses (D5)."""

from __future__ import annotations

from pvetool.errors import TaskFailed
from pvetool.executor.verify import target_trouble
from tests.unit.api.helpers import load_fixture


def test_a_storage_refusal_blames_the_target() -> None:
    # qemu-server QemuServer.pm check_storage_availability -> pve-storage storage_check_node.
    reason = "PVE refused to start the migration: storage 'fast' is not available on node 'pve3'"
    assert target_trouble(reason) == "target-refused"


def test_a_refused_hamigrate_is_a_failed_move_with_pves_words() -> None:
    # Recorded 9.x task log (SOURCES.md: proxcenter-ui#674): the HA manager's CLI dies on a
    # negative resource-affinity partner on the target (ha_manager.pm l.159-175).
    lines = load_fixture("hamigrate_blocked_negative_affinity_pve9.log").splitlines()
    failed = TaskFailed(
        upid="UPID:PVE-2-1:0001:0002:6A000000:hamigrate:20026:root@pam:",
        node="PVE-2-1",
        exitstatus=lines[-1].removeprefix("TASK ERROR: "),
        last_lines=lines,
        description="HA migration request for 20026",
    )
    assert failed.reason == (
        "resource 'vm:20027' on target node 'PVE-2-2' in negative affinity with resource 'vm:20026'"
    )
    assert target_trouble(failed.reason) == "target-refused"  # another target may do
