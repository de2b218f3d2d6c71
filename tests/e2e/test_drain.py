"""`pvetool drain`, `undrain` and `rebalance` end to end: the CLI in this process, the client over
HTTPS, the emulated lab cluster in this process on the stepped clock (`inprocess.py`), so a
drain of emulated minutes takes a fraction of a second.

After every test the cluster is checked: every guest on exactly one node, no guest left locked
by a migration, no migration task still running; during drains a watcher checks that no node
ever holds more than its memory (running guests plus guests migrating into it). The shared
helpers are in `lab.py`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lab import (
    Cluster,
    MemoryWatch,
    checked,
    guests_on,
    journal_records,
    json_events,
    make_cluster,
    migration_tasks,
    summary_of,
)


@pytest.fixture()
def fast_lab(tmp_path: Path) -> Iterator[Cluster]:
    with checked(make_cluster(tmp_path)) as cluster:
        yield cluster


@pytest.mark.emulator_only
def test_drain_pve1_moves_every_movable_guest_without_overfilling(
    fast_lab: Cluster, tmp_path: Path
) -> None:
    before = guests_on(fast_lab.emu, "pve1")
    reports = [str(tmp_path / f"r.{ext}") for ext in ("json", "md", "html")]
    junit = str(tmp_path / "r.xml")
    with MemoryWatch(fast_lab) as watch:
        r = fast_lab.pvetool(
            "drain",
            "pve1",
            "--with-local-disks",
            "--yes",
            *[x for path in reports for x in ("--report", path)],
            "--junit",
            junit,
        )
    assert r.code == 0, r.out + r.err
    assert watch.samples > 5 and not watch.violations, watch.violations
    after = fast_lab.emu.state()["guests"]
    left = guests_on(fast_lab.emu, "pve1")
    assert set(left) == {900}  # the template stays (templates are excluded by default)
    for vmid, guest in before.items():
        if vmid != 900:
            assert after[str(vmid)]["status"] == guest["status"], vmid
            assert len(migration_tasks(fast_lab.emu, vmid)) == 1
    # kinds covered: running/stopped qemu, HA qemu, lxc, local disk
    assert {103, 101, 111, 200} <= set(before)
    assert "summary: 6 moved, 0 skipped, 0 failed, 0 blocked" in r.out

    data = json.loads(Path(reports[0]).read_text())
    assert data["exit_code"] == 0 and data["summary"]["moved"] == 6
    assert all(m["upid"] and m["task_duration_s"] for m in data["moves"])
    ha = next(m for m in data["moves"] if m["vmid"] == 103)
    assert ":qmigrate:" in ha["upid"] and ":hamigrate:" in ha["ha_upid"]
    html = Path(reports[2]).read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "# pvetool run" in Path(reports[1]).read_text()
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "6" and suite.get("failures") == "0"
    journal = journal_records(fast_lab)[0]
    assert journal[0]["type"] == "run-start" and journal[-1]["type"] == "run-end"
    assert {r["vmid"] for r in journal if r["type"] == "origin"} == set(before) - {900}


@pytest.mark.emulator_only
def test_drain_pve2_reports_each_unmovable_guest_with_its_reason(fast_lab: Cluster) -> None:
    before = guests_on(fast_lab.emu, "pve2")
    r = fast_lab.pvetool("drain", "pve2", "--yes", "-o", "json")
    assert r.code == 1, r.err  # guests were left behind
    summary = summary_of(r.out)
    blocked = {b["vmid"]: b["reason"] for b in summary["blocked"]}
    assert set(blocked) == {112, 114}
    assert "hostpci0" in blocked[114]
    assert "local disks" in blocked[112] or "with_local_disks" in blocked[112]
    assert set(guests_on(fast_lab.emu, "pve2")) == {112, 114}
    moved = {m["vmid"] for m in summary["moves"] if m["status"] == "moved"}
    assert moved == set(before) - {112, 114}
    events = {e["event"] for e in json_events(r.out)}
    assert {"run-start", "move-start", "move-end", "summary"} <= events


@pytest.mark.emulator_only
def test_dry_run_and_confirmation(fast_lab: Cluster) -> None:
    r = fast_lab.pvetool("drain", "pve1", "--dry-run")
    assert r.code == 0, r.err
    assert "pve1" in r.out
    r = fast_lab.pvetool("drain", "pve1")  # no terminal, no --yes
    assert r.code == 2
    assert "use" in r.err and "--yes" in r.err and len(r.err.strip().splitlines()) == 1
    assert not [t for t in fast_lab.emu.state()["tasks"] if t["type"] == "qmigrate"]


@pytest.mark.emulator_only
def test_undrain_brings_the_guests_back_and_reports_the_ones_moved_elsewhere(
    fast_lab: Cluster,
) -> None:
    home = set(guests_on(fast_lab.emu, "pve1"))
    r = fast_lab.pvetool("drain", "pve1", "--with-local-disks", "--yes")
    assert r.code == 0, r.out + r.err
    # Someone moves one drained guest elsewhere meanwhile: undrain must leave it there.
    mover = next(v for v in (200, 110) if fast_lab.node_of(v) == "pve3")
    r = fast_lab.pvetool("migrate", str(mover), "--to", "pve2")
    assert r.code == 0, r.err
    # The undrain plans with what the drain's migration logs taught (as a drain does): each
    # running VM's dirty pages.
    r = fast_lab.pvetool("undrain", "pve1", "--dry-run")
    assert "dirty pages of 103: hot, learned from its migration of" in r.out, r.out
    with MemoryWatch(fast_lab) as watch:
        r = fast_lab.pvetool("undrain", "pve1", "--yes")
    assert r.code == 0, r.out + r.err
    assert not watch.violations
    assert set(guests_on(fast_lab.emu, "pve1")) == home - {mover}
    assert f"not moved: guest {mover} is on pve2 now, not on pve3" in r.err
    assert fast_lab.node_of(mover) == "pve2"
    runs = journal_records(fast_lab)
    assert runs[-1][0]["kind"] == "undrain" and runs[-1][0]["undoes"] == runs[0][0]["run"]
    r = fast_lab.pvetool("undrain", "pve1", "--yes")
    assert r.code == 0 and "No drain of pve1 to undo" in r.err


@pytest.mark.emulator_only
def test_rebalance_narrows_the_memory_spread(fast_lab: Cluster) -> None:
    def spread() -> float:
        nodes = fast_lab.emu.state()["nodes"].values()
        loads = [n["memory_committed"] / n["memory_total"] for n in nodes]
        return max(loads) - min(loads)

    before = spread()
    r = fast_lab.pvetool("rebalance", "--by", "memory", "--threshold", "20%", "--yes")
    assert r.code == 0, r.out + r.err
    assert "summary:" in r.out and " moved" in r.out
    assert spread() < before
