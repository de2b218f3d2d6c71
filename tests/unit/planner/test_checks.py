"""The checks on their own: ids, sentences, and the cases the emulator cannot show."""

from __future__ import annotations

import re
from dataclasses import replace

from pvetool.model import (
    Disk,
    LocalDevice,
    MappedResource,
    NodeRefusal,
    PlanRules,
    Precondition,
)
from pvetool.planner import checks
from pvetool.planner.build import build_plan, drain_spec
from pvetool.planner.checks import CheckContext, guest_issues, target_verdict
from pvetool.planner.placement import Placement
from tests.unit.planner.planner_support import ROOT, lab


def _ctx(preconditions: dict[int, Precondition] | None = None) -> CheckContext:
    return CheckContext(snapshot=lab(), rules=PlanRules(), preconditions=preconditions or {})


def test_every_id_is_documented_in_the_module_and_in_docs() -> None:
    doc = checks.__doc__ or ""
    findings_md = (ROOT / "docs" / "findings.md").read_text()
    for finding_id in checks.FINDING_IDS:
        assert re.search(rf"\b{finding_id}\b", doc), finding_id
        assert f"`{finding_id}`" in findings_md, finding_id


def test_unknown_target_node() -> None:
    snap = lab()
    verdict = target_verdict(
        snap.guests[101], "pve9", _ctx(), Placement(snap, PlanRules()), with_local_disks=False
    )
    assert verdict.blocked
    assert [i.id for i in verdict.issues] == ["PVT-UNKNOWN-NODE"]
    finding = checks.to_finding(verdict.issues[0], snap.guests[101], "pve9")
    assert finding.message == "101 (web1) cannot move to pve9: pve9 is not a node of this cluster."


def test_unknown_configuration_blocks() -> None:
    snap = lab()
    guests = {**snap.guests, 117: replace(snap.guests[117], config_known=False)}
    plan = build_plan(drain_spec(["pve2"]), replace(snap, guests=guests))
    assert 117 in plan.blocked
    assert any(f.id == "PVT-CONFIG-UNKNOWN" and f.vmid == 117 for f in plan.blockers)


def test_local_cdrom_blocks_live_migration() -> None:
    snap = lab()
    guest = snap.guests[105]
    cdrom = Disk("ide2", "local:iso/debian.iso", "local", None, media="cdrom", is_local=True)
    guest = replace(guest, disks=(*guest.disks, cdrom))
    issues = guest_issues(guest, _ctx(), with_local_disks=False)
    assert any(i.id == "PVT-LOCAL-DISK" and "CD-ROM" in i.text for i in issues)


def test_pve_preconditions_are_merged() -> None:
    snap = lab()
    guest = snap.guests[105]
    pre = Precondition(
        kind="qemu",
        running=True,
        allowed_nodes=("pve1",),
        not_allowed={"pve3": NodeRefusal("pve3", unavailable_storages=("ceph",))},
    )
    verdict = target_verdict(
        guest,
        "pve3",
        _ctx(preconditions={105: pre}),
        Placement(snap, PlanRules()),
        with_local_disks=False,
    )
    assert [i.id for i in verdict.blockers] == ["PVT-STORAGE"]
    assert "PVE reports" in verdict.blockers[0].text


def test_mapped_device_live_capable_per_pve() -> None:
    snap = lab()
    guest = replace(
        snap.guests[105],
        local_devices=(LocalDevice("hostpci0", "pci", "gpu", mapping="gpu"),),
    )
    plain = guest_issues(guest, _ctx(), with_local_disks=False)
    assert any(i.id == "PVT-MAPPED-DEVICE" and i.severity == "blocker" for i in plain)
    pre = Precondition(
        kind="qemu",
        running=True,
        mapped_resources=("hostpci0",),
        mapped_resource_info=(MappedResource("hostpci0", live_migration=True),),
    )
    told = guest_issues(guest, _ctx(preconditions={105: pre}), with_local_disks=False)
    assert [i.severity for i in told if i.id == "PVT-MAPPED-DEVICE"] == ["warning"]


def test_shutdown_override_lifts_live_only_blockers() -> None:
    snap = lab()
    guest = snap.guests[111]  # ci-runner: local disk
    assert any(
        i.id == "PVT-LOCAL-DISK" for i in guest_issues(guest, _ctx(), with_local_disks=False)
    )
    assert not any(
        i.id == "PVT-LOCAL-DISK"
        for i in guest_issues(guest, _ctx(), with_local_disks=False, shutdown=True)
    )


def test_rejection_sentence_names_the_numbers() -> None:
    snap = lab()
    placement = Placement(snap, PlanRules(memory_headroom_fraction=0.5))
    verdict = target_verdict(snap.guests[103], "pve2", _ctx(), placement, with_local_disks=False)
    memory = [i for i in verdict.blockers if i.id == "PVT-MEMORY"]
    assert memory and re.match(
        r"needs 16\.0 GiB, .* free after planned moves \(64\.0 GiB minus 32\.0 GiB headroom",
        memory[0].text,
    )
