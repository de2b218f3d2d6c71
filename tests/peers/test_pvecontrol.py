"""pvecontrol 0.8 (Enix) against the emulated lab: `node evacuate`.

How pvecontrol works, from /work/.mirror/enix+pvecontrol (0.8.0, the published wheel):
`pvecontrol --config FILE node evacuate NODE [TARGET...] --online --wait` asks `Confirm (yes):`
on stdin (`actions/node.py` `evacuate`), evacuates qemu VMs only (`resources_vms` keeps
`type == "qemu"`: containers stay), skips stopped ones, plans first fit with `vm.maxmem +
target.allocatedmem <= target.maxmem - memoryminimum` (8 GiB by default), prints `No target found
for VM ID (NAME), skipping` and `Migrate VM: ID / NAME from A to B`, then `POST .../migrate` and,
with `--wait`, a table of the task (`upid | exitstatus | ...`) polled every second. For an HA
VM that task is the `hamigrate`, which ends at once; the real migration comes later from the
HA stack. Without `--online` PVE refuses every running VM (qemu-server `API2/Qemu.pm`
`migrate_vm`). The exit code is 0 whatever happened, and `ssl_verify` defaults to false: the
config sets it, and the CA comes from REQUESTS_CA_BUNDLE. `--config` layers the file on the
package defaults only (no user config), and click also reads CONFIG and CLUSTER from the
environment, which the harness removes.
"""

from __future__ import annotations

import re
from typing import Any

from tests.peers.conftest import PeerRun, assert_accounted

MIGRATE = re.compile(r"Migrate VM: (\d+) / (\S+) from (\S+) to (\S+)")
NO_TARGET = re.compile(r"No target found for VM (\d+) \((\S+)\), skipping")
ROW = re.compile(r"\| (UPID:[^ |]+) \| ([^|]*?) *\|")


def pvecontrol_config(peer: PeerRun) -> str:
    user, name, secret = peer.token()
    return (
        "clusters:\n"
        "  - name: emu\n"
        f"    host: {peer.host}\n"
        f"    user: {user}\n"
        f"    token_name: {name}\n"
        f"    token_value: {secret}\n"
        "    ssl_verify: true\n"
        "    timeout: 30\n"
    )


def evacuate(peer: PeerRun, *targets: str) -> str:
    path = peer.write_config("pvecontrol.yaml", pvecontrol_config(peer))
    # Never `-d`: pvecontrol logs the credentials at debug level (utils.py run_auth_commands).
    args = ["--config", str(path), "--no-color", "--no-unicode", "node", "evacuate", "pve1"]
    done = peer.run("pvecontrol", [*args, *targets, "--online", "--wait"], stdin="yes\n")
    out = done.stdout + done.stderr
    # rc 0 means only that pvecontrol did not crash; it is 0 after failed tasks too.
    assert done.returncode == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    return out


def claims(out: str) -> tuple[dict[int, tuple[str, str]], dict[int, str]]:
    """({vmid: (from, to)} pvecontrol migrated, {vmid: exit status of its task's last row})."""
    moved = {int(v): (src, dst) for v, _name, src, dst in MIGRATE.findall(out)}
    status: dict[int, str] = {}
    for upid, exitstatus in ROW.findall(out):
        status[int(upid.split(":")[6])] = exitstatus.strip()
    return moved, status


def ha_vmids(peer: PeerRun) -> set[int]:
    return {int(r["sid"].split(":")[1]) for r in peer.api.get("/cluster/ha/resources")}


def check(
    peer: PeerRun,
    before: dict[int, dict[str, Any]],
    after: dict[int, dict[str, Any]],
    moved: dict[int, tuple[str, str]],
    status: dict[int, str],
) -> None:
    ha = ha_vmids(peer)
    for vmid, (src, dst) in moved.items():
        assert before[vmid]["node"] == src
        assert status.get(vmid), (vmid, "no task row after --wait")
        if vmid in ha and status[vmid] == "OK":
            continue  # the hamigrate's OK says only that the request was queued
        if status[vmid] == "OK":
            assert after[vmid]["node"] == dst, (vmid, after[vmid]["node"], dst)
        else:
            assert after[vmid]["node"] == src, (vmid, status[vmid])
    for vmid, row in after.items():
        if vmid not in moved:
            assert row["node"] == before[vmid]["node"], (vmid, "moved without a claim")
    # pvecontrol never evacuates containers, stopped VMs or templates.
    for vmid, row in before.items():
        if row["node"] == "pve1" and (row["type"] != "qemu" or row["status"] != "running"):
            assert vmid not in moved and after[vmid]["node"] == "pve1", vmid


def test_pvecontrol_evacuate_to_pve3(lab: PeerRun) -> None:
    """An explicit single target makes pvecontrol's plan deterministic."""
    before = lab.placement()
    out = evacuate(lab, "pve3")
    lab.wait_quiescent()
    after = lab.placement()
    assert_accounted(before, after)
    moved, status = claims(out)
    assert moved == {v: ("pve1", "pve3") for v in (101, 103, 110, 111)}
    # fw1 (2 GiB) does not fit pvecontrol's rule: pve3's 64 GiB minus 8 GiB memoryminimum
    # are taken by what the plan already put there.
    assert NO_TARGET.findall(out) == [("113", "fw1")]
    assert all(status[v] == "OK" for v in moved), status
    check(lab, before, after, moved, status)
    assert {v: after[v]["node"] for v in (101, 110, 111)} == dict.fromkeys((101, 110, 111), "pve3")
    # db1 (103): the hamigrate is OK, the HA stack migrates it to pve3, and PVE's CRM brings it
    # back to pve1, the preferred node of its strict node-affinity rule (pve-ha-manager
    # src/PVE/HA/Manager.pm `select_service_node`, l.315-386). pvecontrol never learns of it.
    moves_103 = [
        (t["upid"].split(":")[1], t["stats"].get("target"), t["exitstatus"])
        for t in lab.tasks()
        if t["type"] == "qmigrate" and t["vmid"] == 103
    ]
    assert moves_103 == [("pve1", "pve3", "OK"), ("pve3", "pve1", "OK")]
    assert {v for v, r in after.items() if r["node"] == "pve1"} == {103, 113, 200, 900}


def test_pvecontrol_evacuate_lab(lab: PeerRun) -> None:
    """Without targets pvecontrol picks from a set of node objects: the plan changes from run
    to run, so only what holds for every plan is asserted."""
    before = lab.placement()
    out = evacuate(lab)
    lab.wait_quiescent()
    after = lab.placement()
    assert_accounted(before, after)
    moved, status = claims(out)
    assert set(moved) | {int(v) for v, _ in NO_TARGET.findall(out)} == {101, 103, 110, 111, 113}
    check(lab, before, after, moved, status)
    # 101 web1 is kept apart from web2 (pve2) by a negative resource-affinity rule: sent to
    # pve2 its hamigrate fails (pve-ha-manager src/PVE/CLI/ha_manager.pm l.159-175) and it
    # stays; sent to pve3 it moves.
    if 101 in moved:
        assert after[101]["node"] == ("pve1" if moved[101][1] == "pve2" else "pve3")
        if moved[101][1] == "pve2":
            assert status[101] != "OK"
    # 113 fw1 has a NIC on vmbr1, which pve3 lacks: PVE fails that migration inside the task.
    if moved.get(113, ("", ""))[1] == "pve3":
        assert after[113]["node"] == "pve1" and status[113] != "OK"
    assert after[103]["node"] in ("pve1", "pve2")  # never outside its strict rule
