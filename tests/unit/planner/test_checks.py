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


def test_an_unusable_configuration_blocks_with_its_own_finding() -> None:
    """Finding 3 of issue 12: a guest whose config answer was garbage is blocked, never moved."""
    snap = lab()
    bad = replace(
        snap.guests[113],
        config_known=False,
        disks=(),
        nets=(),
        config_problem='not what PVE documents: $.net0: "x": model missing',
    )
    plan = build_plan(drain_spec(["pve1"]), replace(snap, guests={**snap.guests, 113: bad}))
    assert 113 in plan.blocked
    assert all(m.vmid != 113 for stage in plan.stages for m in stage.moves)
    (finding,) = [f for f in plan.blockers if f.vmid == 113]
    assert finding.id == "PVT-CONFIG-INVALID"
    assert "$.net0" in finding.message
    assert "does not move a guest it cannot check" in finding.message


def test_a_target_whose_network_could_not_be_read_takes_no_guest_with_a_nic() -> None:
    snap = lab()
    bridges = {n: b for n, b in snap.bridges.items() if n != "pve3"}
    snap = replace(snap, bridges=bridges)
    ctx = CheckContext(snapshot=snap, rules=PlanRules(), preconditions={})
    verdict = target_verdict(
        snap.guests[101], "pve3", ctx, Placement(snap, PlanRules()), with_local_disks=False
    )
    assert verdict.blocked
    (issue,) = [i for i in verdict.issues if i.id == "PVT-BRIDGE"]
    assert "network of pve3 could not be read" in issue.text


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
