"""`pvetool plan validate|show` and `pvetool check drain` end to end against the emulated lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pvetool.plan_json import plan_from_json
from pvetool.planner.fingerprint import drift
from tests.e2e.inprocess import ROOT
from tests.e2e.lab import Cluster

PLAYBOOKS = ROOT / "playbooks"


@pytest.mark.emulator_only
def test_validate_a_plan_that_can_run(lab: Cluster) -> None:
    r = lab.pvetool("plan", "validate", str(PLAYBOOKS / "drain-node.yaml"))
    assert r.code == 0, r.err
    assert "plan drain-pve2: can run" in r.out
    assert "PVT-EXCLUDED" in r.out  # warnings are shown either way
    assert "114 gpu1" in r.out
    assert r.err == ""


@pytest.mark.emulator_only
def test_validate_names_every_blocker_and_exits_2(lab: Cluster, tmp_path: Path) -> None:
    plan = tmp_path / "drain-pve3.yaml"
    plan.write_text("version: 1\nname: drain-pve3\nsteps:\n  - drain: pve3\n")
    r = lab.pvetool("plan", "validate", str(plan))
    assert r.code == 2
    assert "CANNOT RUN" in r.out
    for vmid, finding in ((115, "PVT-LOCKED"), (120, "PVT-LOCAL-DISK"), (121, "PVT-LOCAL-DEVICE")):
        assert f"{finding}: {vmid} (" in r.err
    assert r.err.startswith("error: The plan drain-pve3 cannot run:")
    assert "Traceback" not in r.err


@pytest.mark.emulator_only
def test_validate_json(lab: Cluster) -> None:
    r = lab.pvetool("plan", "validate", str(PLAYBOOKS / "drain-node.yaml"), "-o", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["can_run"] is True and data["blocked"] == []
    rows = {row["vmid"]: row for row in data["guests"]}
    assert rows[201]["target"] == "pve3"


@pytest.mark.emulator_only
def test_bad_plan_file_is_an_error_not_a_traceback(lab: Cluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsteps:\n  - drian: pve2\n")
    r = lab.pvetool("plan", "validate", str(bad))
    assert r.code == 2
    assert "unknown step 'drian' (did you mean 'drain'?)" in r.err
    assert "Traceback" not in r.err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("version: 1\nsteps:\n  - drain: pve9\n")
    r = lab.pvetool("plan", "show", str(unknown))
    assert r.code == 2
    assert "unknown node 'pve9'" in r.err
    r = lab.pvetool("plan", "show", str(tmp_path / "missing.yaml"))
    assert r.code == 2 and "Cannot read the plan file" in r.err


@pytest.mark.emulator_only
def test_show_table_markdown_and_json_round_trip(lab: Cluster, tmp_path: Path) -> None:
    path = str(PLAYBOOKS / "rolling-maintenance.yaml")
    r = lab.pvetool("plan", "show", path)
    assert r.code == 0, r.err
    assert "Stage 1/" in r.out and "Predicted timeline" in r.out and "fastest possible" in r.out
    r = lab.pvetool("plan", "show", path, "-o", "markdown")
    assert r.code == 0 and r.out.startswith("# Plan rolling-maintenance")
    r = lab.pvetool("plan", "show", str(PLAYBOOKS / "drain-node.yaml"), "-o", "json")
    assert r.code == 0, r.err
    plan = plan_from_json(r.out, "plan.json")
    assert plan.name == "drain-pve2" and plan.fingerprint.startswith("sha256:")
    assert [m.vmid for m in plan.moves]


@pytest.mark.emulator_only
def test_saved_plan_detects_drift(lab: Cluster) -> None:
    r = lab.pvetool("plan", "show", str(PLAYBOOKS / "drain-node.yaml"), "-o", "json")
    plan = plan_from_json(r.out)
    with lab.emu.locked() as c:
        c.set_lock(105, "backup")
    from pvetool.api import PveClient, fetch_snapshot
    from pvetool.settings import load_settings

    with PveClient(load_settings(env=lab.env, config_path=None)) as client:
        snapshot = fetch_snapshot(client)
    assert drift(plan, snapshot) == ["Guest 105 (mon1) is now locked (backup)."]


@pytest.mark.emulator_only
def test_check_drain(lab: Cluster) -> None:
    r = lab.pvetool("check", "drain", "pve2")
    assert r.code == 2
    assert "PVT-LOCAL-DEVICE" in r.out and "hostpci0" in r.out
    assert "PVT-LOCAL-DEVICE: 114 (gpu1)" in r.err
    assert "PVT-LOCAL-DISK: 112 (cache1)" in r.err
    r = lab.pvetool("check", "drain", "pve2", "--with-local-disks", "-o", "json")
    data = json.loads(r.out)
    assert data["blocked"] == [114]
    r = lab.pvetool("check", "drain", "pve22")
    assert r.code == 2 and "did you mean 'pve2'?" in r.err


@pytest.mark.emulator_only
def test_link_option(lab: Cluster) -> None:
    r = lab.pvetool("plan", "show", str(PLAYBOOKS / "drain-node.yaml"), "--link", "1Gbit")
    assert r.code == 0, r.err
    assert "1 Gbit/s per node" in r.out
    r = lab.pvetool("plan", "show", str(PLAYBOOKS / "drain-node.yaml"), "--link", "fast")
    assert r.code == 2 and "--link" in r.err
