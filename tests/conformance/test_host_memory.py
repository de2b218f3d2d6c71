"""Host memory: PVE checks none before a start or a migration; only QEMU's own allocation fails.

qemu-server has no host-memory check: the precondition (`API2/Qemu.pm` `migrate_vm_precondition`),
`QemuMigrate.pm` `prepare` and `QemuServer.pm` `vm_start_nolock` never read the host's free
memory; the target's `qm start --migratedfrom` runs `kvm ... -m <memory>` with a plain
`memory-backend-ram` (`QemuServer/Memory.pm` `config`). QEMU maps guest RAM lazily, so under
Linux's default overcommit heuristic only a guest larger than the host's whole RAM (plus swap,
which emulated nodes lack) fails: "cannot set up guest memory 'pc.ram': Cannot allocate memory".
A fuller target is overcommitted, not refused.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pvetool.emulator.clusterfile import load_cluster_text
from pvetool.emulator.server import Emulator
from tests.conformance.conftest import run_task, strip_ts
from tests.emu import START_EPOCH, Api

CLUSTER = """
name: mem
seed: 5
nodes:
  big: {cpus: 32, memory: 64GiB, bridges: [vmbr0]}
  small: {cpus: 32, memory: 16GiB, bridges: [vmbr0]}
storages:
  ceph: {type: rbd, shared: true, size: 10TiB}
guests:
  101: {type: qemu, node: big, memory: 12GiB, used: 8GiB, disks: {scsi0: "ceph:8G"},
        net0: "virtio,bridge=vmbr0"}
  102: {type: qemu, node: small, memory: 8GiB, used: 7GiB, disks: {scsi0: "ceph:8G"},
        net0: "virtio,bridge=vmbr0"}
  103: {type: qemu, node: big, memory: 24GiB, used: 4GiB, disks: {scsi0: "ceph:8G"},
        net0: "virtio,bridge=vmbr0"}
tokens:
  - {id: "root@pam!t", secret: "mem-secret", privileges: all}
users:
  - {id: "root@pam", password: "mem-password"}
"""


@pytest.fixture()
def api() -> Iterator[Api]:
    emu = Emulator(load_cluster_text(CLUSTER), speed=0, start_epoch_s=START_EPOCH).start()
    yield Api(emu, ("root@pam!t", "mem-secret"))
    emu.stop()


@pytest.mark.source("qemu-server", "src/PVE/QemuServer.pm", "vm_start_nolock", "l.5578-5880")
def test_a_target_short_of_free_memory_still_takes_the_guest(api: Api) -> None:
    # small: 16 GiB, 102 already holds 8 GiB configured; 101's 12 GiB overcommit it.
    pre = api.get("/nodes/big/qemu/101/migrate", target="small")
    assert "small" in pre["allowed_nodes"]
    upid = api.post("/nodes/big/qemu/101/migrate", target="small", online=1)
    status, log = run_task(api, upid)
    assert status["exitstatus"] == "OK", strip_ts(log)
    assert api.guest(101)["node"] == "small"
    assert "lock" not in api.guest(101)


@pytest.mark.source("qemu-server", "src/PVE/QemuServer/Memory.pm", "config", "l.357-380")
def test_a_guest_bigger_than_the_targets_ram_fails_at_the_target_start(api: Api) -> None:
    upid = api.post("/nodes/big/qemu/103/migrate", target="small", online=1)
    status, log = run_task(api, upid)
    lines = strip_ts(log)
    assert "[small] kvm: cannot set up guest memory 'pc.ram': Cannot allocate memory" in lines
    assert status["exitstatus"] != "OK"
    assert api.guest(103)["node"] == "big"
    assert "lock" not in api.guest(103)


@pytest.mark.source("qemu-server", "src/PVE/QemuServer.pm", "print_netdev_full", "l.1440-1500")
def test_a_missing_bridge_names_the_nic_that_needs_it() -> None:
    """lab 113 fw1 has vmbr1 on net1, which pve3 lacks: the target's QEMU fails on that NIC's
    tap (id=net1, ifname=tap113i1), after pve-common Network.pm's "bridge ... does not exist"."""
    from tests.emu import start

    emu = start("lab")
    try:
        api = Api(emu)
        upid = api.post("/nodes/pve1/qemu/113/migrate", target="pve3", online=1)
        status, log = run_task(api, upid)
        lines = strip_ts(log)
        assert "[pve3] bridge 'vmbr1' does not exist" in lines
        assert any("-netdev type=tap,id=net1,ifname=tap113i1:" in line for line in lines), lines
        assert status["exitstatus"] != "OK" and api.guest(113)["node"] == "pve1"
    finally:
        emu.stop()
