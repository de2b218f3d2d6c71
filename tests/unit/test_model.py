"""The model's value objects: UPID round trip on real task ids, success rules, lookups."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvetool.errors import ValidationError
from pvetool.model import (
    ClusterSnapshot,
    Disk,
    Guest,
    HaRule,
    HaRuleNode,
    MigrationProgress,
    Move,
    MoveOptions,
    Net,
    Node,
    NodeRefusal,
    Precondition,
    PveVersion,
    Storage,
    StorageOnNode,
    TaskResult,
    TaskStatus,
    TaskSummary,
    Upid,
    exitstatus_ok,
)

GiB = 1024**3
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
UPIDS = json.loads((FIXTURES / "upids.json").read_text())


@pytest.mark.parametrize("example", UPIDS["examples"], ids=lambda e: e["decoded"]["type"])
def test_upid_parse_matches_decoded_fields_and_round_trips(example: dict) -> None:
    upid = Upid.parse(example["upid"])
    decoded = example["decoded"]
    assert (upid.node, upid.pid, upid.pstart, upid.starttime, upid.type, upid.id) == (
        decoded["node"],
        decoded["pid"],
        decoded["pstart"],
        decoded["starttime"],
        decoded["type"],
        decoded["id"],
    )
    assert upid.userid == decoded["user"]
    assert str(upid) == example["upid"]


def test_upid_splits_token_from_user() -> None:
    upid = Upid.parse("UPID:pve1:00171399:02C8BD1E:656E69FC:qmigrate:132:root@pam!build:")
    assert (upid.user, upid.token, upid.vmid) == ("root@pam", "build", 132)
    plain = Upid.parse("UPID:dahu-2:00007323:001036A5:6419CAF8:qmstart:100:root@pam:")
    assert plain.token is None and plain.userid == "root@pam"


def test_upid_regex_is_the_one_from_pve_common() -> None:
    assert Upid.PATTERN.pattern == UPIDS["regex_from_pve_common"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "UPID:pve1:0017139:02C8BD1E:656E69FC:qmigrate:132:root@pam:",  # pid too short
        "UPID:pve1:00171399:02C8BD1E:656E69FC:qmigrate:132:root@pam",  # no final colon
        "UPID:-pve:00171399:02C8BD1E:656E69FC:qmigrate:132:root@pam:",  # bad node name
        "UPID:pve1:00171399:02C8BD1E:656E69FC:q/migrate:132:root@pam:",
    ],
)
def test_upid_rejects_malformed_ids(text: str) -> None:
    with pytest.raises(ValidationError):
        Upid.parse(text)


@given(
    node=st.from_regex(r"\A[a-z][a-z0-9\-]{0,10}[a-z0-9]\Z"),
    pid=st.integers(0, 0xFFFFFFFF),
    pstart=st.integers(0, 0xFFFFFFFFF),
    starttime=st.integers(0, 0xFFFFFFFF),
    kind=st.sampled_from(["qmigrate", "vzmigrate", "hamigrate", "qmstart", "vzdump"]),
    ident=st.one_of(st.just(""), st.integers(100, 999_999_999).map(str)),
    token=st.one_of(st.none(), st.from_regex(r"\A[a-z][a-z0-9_\-]{0,8}\Z")),
)
def test_upid_str_parse_round_trip(
    node: str, pid: int, pstart: int, starttime: int, kind: str, ident: str, token: str | None
) -> None:
    upid = Upid(node, pid, pstart, starttime, kind, ident, "root@pam", token)
    assert Upid.parse(str(upid)) == upid


@pytest.mark.parametrize(
    ("status", "exitstatus", "ok"),
    [
        ("stopped", "OK", True),
        ("stopped", "WARNINGS: 1", True),
        ("stopped", "migration aborted", False),
        ("stopped", None, False),
        ("running", None, False),
        ("running", "OK", False),
    ],
)
def test_task_success_only_when_stopped_ok_or_warnings(
    status: str, exitstatus: str | None, ok: bool
) -> None:
    upid = Upid.parse("UPID:dahu-2:00007323:001036A5:6419CAF8:qmstart:100:root@pam:")
    assert TaskStatus(upid, status, exitstatus).ok is ok  # type: ignore[arg-type]
    assert exitstatus_ok("WARNINGS: 3") and not exitstatus_ok("unexpected status")


def test_task_result_counts_warnings_and_summary_running() -> None:
    upid = Upid.parse("UPID:dahu-2:00007323:001036A5:6419CAF8:qmstart:100:root@pam:")
    assert TaskResult(upid, "WARNINGS: 2").warnings == 2
    assert TaskResult(upid, "OK").warnings == 0 and TaskResult(upid, "OK").ok
    assert TaskSummary(upid).running and not TaskSummary(upid, "OK", 1679411970).running


def test_progress_fraction() -> None:
    upid = Upid.parse("UPID:dahu-2:00007323:001036A5:6419CAF8:qmstart:100:root@pam:")
    assert MigrationProgress(upid, 50, 200).fraction == 0.25
    assert MigrationProgress(upid, 50).fraction is None


def test_pve_version_compares_numerically() -> None:
    assert PveVersion("9.0", "9.0.3").at_least(9, 0)
    assert not PveVersion("8.4", "8.4.1").at_least(9)
    assert PveVersion("10.1").major_minor > PveVersion("9.2").major_minor
    assert PveVersion("", "6.4-13").major_minor == (6, 4)


def _snapshot() -> ClusterSnapshot:
    storages = {
        "local-zfs": Storage(
            "local-zfs",
            "zfspool",
            shared=False,
            per_node={
                "pve1": StorageOnNode("pve1", True, 1000, 400),
                "pve2": StorageOnNode("pve2", False, 1000, 0),
            },
        ),
        "ceph": Storage(
            "ceph", "rbd", shared=True, per_node={"pve1": StorageOnNode("pve1", True, 10, 5)}
        ),
    }
    guest = Guest(
        vmid=101,
        kind="qemu",
        name="db",
        node="pve1",
        status="running",
        disks=(
            Disk("scsi0", "local-zfs:vm-101-disk-0", "local-zfs", 32, is_local=True),
            Disk("scsi1", "ceph:vm-101-disk-1", "ceph", 8, is_local=False),
            Disk("ide2", "none", None, None, media="cdrom", is_local=False),
        ),
        nets=(Net("net0", "vmbr0", 10),),
        ha_state="started",
    )
    return ClusterSnapshot(
        cluster_name="lab",
        quorate=True,
        nodes={"pve1": Node("pve1", True), "pve2": Node("pve2", False)},
        guests={101: guest},
        storages=storages,
        ha_rules=(
            HaRule("r1", "node-affinity", ("vm:101",), (HaRuleNode("pve1", 2),)),
            HaRule("r2", "node-affinity", ("vm:101",), disabled=True),
        ),
        bridges={"pve1": frozenset({"vmbr0"})},
    )


def test_snapshot_lookups() -> None:
    snap = _snapshot()
    guest = snap.guest(101)
    assert snap.online_nodes == ("pve1",)
    assert snap.guests_on("pve1") == (guest,) and snap.running_guests_on("pve2") == ()
    assert snap.storage_available_on("local-zfs", "pve1")
    assert not snap.storage_available_on("local-zfs", "pve2")
    assert snap.storage_free_bytes("local-zfs", "pve1") == 600
    assert snap.storage_free_bytes("nope", "pve1") is None
    assert snap.bridges_on("pve1") == {"vmbr0"} and snap.bridges_on("pve2") == frozenset()
    assert [r.rule_id for r in snap.ha_rules_for("vm:101")] == ["r1"]
    assert guest.ha_sid == "vm:101" and guest.ha_managed
    assert [d.key for d in guest.local_disks] == ["scsi0"]
    assert guest.disk_bytes_by_storage == {"local-zfs": 32, "ceph": 8}
    assert guest.bridges == {"vmbr0"}


def test_snapshot_what_if_leaves_the_original_alone() -> None:
    snap = _snapshot()
    guest = snap.guest(101)
    move = Move("m", 101, guest.kind, guest.name, "pve1", "pve2", MoveOptions(), "test")
    moved = snap.after([move])
    assert moved.guest(101).node == "pve2" and snap.guest(101).node == "pve1"


def test_snapshot_after_moves_memory_use_disks_and_replication_jobs() -> None:
    snap = _snapshot()
    guest = replace(snap.guest(101), used_memory_bytes=3 * GiB)
    nodes = {n: replace(node, memory_used_bytes=5 * GiB) for n, node in snap.nodes.items()}
    snap = replace(snap, guests={101: guest}, nodes=nodes, replication={101: ("pve2",)})
    to_ceph = MoveOptions(online=True, with_local_disks=True, target_storage=(("*", "ceph"),))
    after = snap.after([Move("m", 101, "qemu", "db", "pve1", "pve2", to_ceph, "test")])
    assert after.guest(101).node == "pve2"
    assert after.node("pve1").memory_used_bytes == 2 * GiB  # the guest's use left with it
    assert after.node("pve2").memory_used_bytes == 8 * GiB
    disks = {d.key: (d.storage, d.volid, d.is_local) for d in after.guest(101).disks}
    assert disks["scsi0"] == ("ceph", "ceph:vm-101-disk-0", False)  # copied to shared storage
    assert disks["scsi1"] == ("ceph", "ceph:vm-101-disk-1", False)
    assert after.replication[101] == ("pve1",)  # PVE turns the job around
    assert snap.after([]) is snap and snap.guest(101).node == "pve1"


def test_model_objects_are_frozen() -> None:
    guest = _snapshot().guest(101)
    with pytest.raises(dataclasses.FrozenInstanceError):
        guest.node = "pve2"  # type: ignore[misc]


def test_precondition_allows_only_allowed_nodes() -> None:
    pre = Precondition(
        "qemu",
        running=True,
        allowed_nodes=("pve2",),
        not_allowed={"pve3": NodeRefusal("pve3", unavailable_storages=("local-zfs",))},
    )
    assert pre.allows("pve2") and not pre.allows("pve3") and not pre.allows("pve4")


def test_an_ignored_ha_resource_is_not_ha_managed() -> None:
    # D17: pve-ha-manager src/PVE/HA/Config.pm $service_check_ha_state l.352-364.
    guest = _snapshot().guest(101)
    assert replace(guest, ha_state="started").ha_managed
    assert not replace(guest, ha_state="ignored").ha_managed
    assert not replace(guest, ha_state=None).ha_managed
