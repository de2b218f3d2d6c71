"""Tests for the emulator's cluster files: units, the built-in lab, validation, robustness."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvetool.emulator import clusterfile as cf
from pvetool.emulator.clusterfile import (
    ClusterFileError,
    ClusterSpec,
    load_cluster,
    load_cluster_text,
)
from pvetool.units import parse_link, parse_rate, parse_size

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4
CLUSTERS = Path(__file__).resolve().parents[2] / "data" / "clusters"
LAB_TEXT = Path(cf.__file__).parent.joinpath("data", "lab.yaml").read_text(encoding="utf-8")

# A valid base document for error cases; line numbers below refer to it.
BASE = """\
name: t
nodes:
  pve1: {cpus: 8, memory: 32GiB, bridges: [vmbr0, vmbr1]}
  pve2: {cpus: 8, memory: 32GiB}
storages:
  ceph: {type: rbd, size: 1TiB}
  local-lvm: {type: lvmthin, size: 1TiB, nodes: [pve1]}
guests:
"""


def problems_of(text: str, filename: str = "t.yaml") -> list[str]:
    with pytest.raises(ClusterFileError) as info:
        load_cluster_text(text, filename)
    assert str(info.value).count("\n") == len(info.value.problems)
    return info.value.problems


# --- units (pvetool.units, as cluster files use them) --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8GiB", 8 * GiB),
        ("32G", 32 * GiB),
        ("512MiB", 512 * MiB),
        ("512M", 512 * MiB),
        ("4K", 4 * KiB),
        ("4KiB", 4 * KiB),
        ("2TiB", 2 * TiB),
        ("2T", 2 * TiB),
        ("100B", 100),
        ("4096", 4096),
        (4096, 4096),
        (0, 0),
        ("12.6GiB", round(12.6 * GiB)),
        ("0.5G", GiB // 2),
        (" 8 GiB ", 8 * GiB),
        (1.6, 2),
        ("8gib", 8 * GiB),  # one language with plans: units in any case
    ],
)
def test_parse_size(text: str | int | float, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["8 gigs", "8GB", "", "GiB", "-1G", -5, "1e3G", float("inf"), "1.2.3G"]
)
def test_parse_size_rejects(text: str | int | float) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_parse_size_hints_binary_units() -> None:
    with pytest.raises(ValueError, match="8GiB"):
        parse_size("8GB")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10Gbit", 10e9),
        ("1Gbit", 1e9),
        ("2.5Gbit", 2.5e9),
        ("100Mbit", 100e6),
        ("25gbit", 25e9),
        ("10Gbit/s", 10e9),
        (1e9, 1e9),
        ("1000000", 1e6),
    ],
)
def test_parse_link(text: str | int | float, expected: float) -> None:
    assert parse_link(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["10GB", "fast", "0Gbit", "", "10 Gigabit", -1, True])
def test_parse_link_rejects(text: Any) -> None:
    with pytest.raises(ValueError, match="link speed"):
        parse_link(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("120MiB/s", 120 * MiB),
        ("1GiB/s", GiB),
        ("1.5 MiB / s", 1.5 * MiB),
        ("40M/s", 40 * MiB),
        ("0B/s", 0),
        ("120Mbit/s", 120e6 / 8),  # one language with plans: bits per second too
    ],
)
def test_parse_rate(text: str | int, expected: float) -> None:
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["120MiB", "fast", "/s", "-1MiB/s", 1000])
def test_parse_rate_rejects(text: str | int) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_a_cluster_file_speaks_the_plan_units() -> None:
    # The spellings a plan accepts work in a cluster file too (issue 9: 100Mbit/s was an error).
    spec = load_cluster_text(
        "name: t\nnodes:\n  pve1: {cpus: 8, memory: 32gib, link: 10Gbps}\n"
        "guests:\n  100: {type: qemu, node: pve1, memory: 1GiB, dirty: 100Mbit/s}\n"
    )
    assert spec.nodes["pve1"].memory_bytes == 32 * GiB
    assert spec.nodes["pve1"].link_bits_per_s == 10e9
    assert spec.guests[100].dirty_rate_Bps == pytest.approx(100e6 / 8)


def test_a_bare_dirty_rate_needs_a_unit() -> None:
    (problem,) = problems_of(BASE + "  100: {type: qemu, node: pve1, dirty: 1000}\n")
    assert problem == (
        f"t.yaml:{len(BASE.splitlines()) + 1}: guests.100.dirty: expected idle, moderate, hot or "
        "a rate like 120MiB/s, got 1000"
    )


def test_dirty_profiles_match_the_timing_model() -> None:
    timing = pytest.importorskip("pvetool.timing")
    for name, (rate, wss) in cf.DIRTY_PROFILES.items():
        profile = timing.DIRTY_PROFILES[name]
        assert (profile.rate_Bps, profile.wss_bytes) == (rate, wss)


# --- the built-in lab --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> ClusterSpec:
    return load_cluster("lab")


def test_lab_nodes(lab: ClusterSpec) -> None:
    assert lab.name == "lab"
    assert list(lab.nodes) == ["pve1", "pve2", "pve3"]
    assert {n.link_bits_per_s for n in lab.nodes.values()} == {10e9}
    assert all(n.version.startswith("9.2.") for n in lab.nodes.values())
    assert lab.nodes["pve3"].cpu_model != lab.nodes["pve1"].cpu_model
    assert lab.nodes["pve1"].cpu_model == lab.nodes["pve2"].cpu_model
    assert "vmbr1" in lab.nodes["pve1"].bridges and "vmbr1" in lab.nodes["pve2"].bridges
    assert lab.nodes["pve3"].bridges == ("vmbr0",)
    assert lab.datacenter.migration_type == "secure"
    assert lab.datacenter.max_workers == 4


def test_lab_storages(lab: ClusterSpec) -> None:
    assert lab.storages["ceph"].shared and lab.storages["ceph"].type == "rbd"
    assert not lab.storages["local-lvm"].shared and lab.storages["local-lvm"].type == "lvmthin"
    assert lab.storages["local"].type == "dir" and not lab.storages["local"].shared


def test_lab_has_every_feature(lab: ClusterSpec) -> None:
    guests = list(lab.guests.values())
    shared = {name for name, s in lab.storages.items() if s.shared}
    assert 15 <= len(guests) <= 25
    assert any(g.disks and all(d.storage in shared for d in g.disks) for g in guests)
    assert any(g.type == "qemu" and any(d.storage not in shared for d in g.disks) for g in guests)
    assert [g.vmid for g in guests if g.hostpci] == [114]
    assert 3 <= sum(g.ha for g in guests) <= 4
    containers = [g for g in guests if g.type == "lxc"]
    assert 3 <= len(containers) <= 4
    assert any(g.status == "stopped" for g in containers)
    assert any(g.type == "qemu" and g.status == "stopped" and not g.template for g in guests)
    assert any(g.template for g in guests)
    assert any(g.lock == "backup" for g in guests)
    hot = [g for g in guests if g.dirty_rate_Bps == cf.DIRTY_PROFILES["hot"][0]]
    assert [g.name for g in hot] == ["db1"]
    assert any(g.cpu == "host" for g in guests)
    assert any(g.agent for g in guests)
    assert {g.pool for g in guests} >= {"prod", "dev"}
    assert any(g.tags for g in guests)
    # A NIC on vmbr1 keeps one guest off pve3.
    assert any("bridge=vmbr1" in raw for g in guests for _, raw in g.nets if g.node != "pve3")


def test_lab_ha_rules(lab: ClusterSpec) -> None:
    kinds = {(r.type, r.affinity) for r in lab.ha_rules}
    assert ("resource-affinity", "negative") in kinds
    assert ("node-affinity", None) in kinds
    node_rule = next(r for r in lab.ha_rules if r.type == "node-affinity")
    assert node_rule.nodes == (("pve1", 2), ("pve2", 0)) and node_rule.strict
    for rule in lab.ha_rules:
        for res in rule.resources:
            assert lab.guests[int(res.split(":")[1])].ha


def test_lab_auth(lab: ClusterSpec) -> None:
    tokens = {t.id: t for t in lab.tokens}
    assert tokens["root@pam!pvetool"].privileges is None
    assert tokens["auditor@pve!ro"].privileges == ("Sys.Audit", "VM.Audit", "Datastore.Audit")
    assert {u.id for u in lab.users} == {"root@pam", "auditor@pve"}


def test_lab_nodes_are_drainable(lab: ClusterSpec) -> None:
    """The running guests that can move fit on the two other nodes, for every node."""
    for drained in lab.nodes:
        moving = sum(
            g.memory_bytes
            for g in lab.guests.values()
            if g.node == drained and g.status == "running" and not g.hostpci and not g.usb
        )
        staying = sum(
            g.memory_bytes
            for g in lab.guests.values()
            if g.status == "running" and g.node != drained
        )
        room = sum(n.memory_bytes for name, n in lab.nodes.items() if name != drained)
        assert staying + moving <= 0.8 * room, drained


def test_secrets_never_in_repr(lab: ClusterSpec) -> None:
    text = repr(lab) + str(lab.tokens) + str(lab.users)
    for token in lab.tokens:
        assert token.secret and token.secret not in text
    for user in lab.users:
        assert user.password and user.password not in text


def test_default_credentials_are_derived_from_the_seed() -> None:
    text = (CLUSTERS / "tiny.yaml").read_text()
    one = load_cluster_text(text)
    again = load_cluster_text(text)
    other = load_cluster_text(text.replace("seed: 7", "seed: 8"))
    assert [t.id for t in one.tokens] == ["root@pam!pvetool"]
    assert [u.id for u in one.users] == ["root@pam"]
    assert one.tokens[0].privileges is None
    assert one.tokens[0].secret == again.tokens[0].secret
    assert one.users[0].password == again.users[0].password
    assert one.tokens[0].secret != other.tokens[0].secret
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        one.tokens[0].secret)  # fmt: skip
    assert one.tokens[0].secret not in repr(one)


# --- test cluster files ------------------------------------------------------------------------


def test_tiny() -> None:
    spec = load_cluster(CLUSTERS / "tiny.yaml")
    assert len(spec.nodes) == 2 and len(spec.guests) == 3
    assert spec.guests[100].used_bytes == 2 * GiB
    assert spec.guests[101].used_bytes is None
    assert spec.guests[200].type == "lxc"


def test_calibration() -> None:
    spec = load_cluster(str(CLUSTERS / "calibration.yaml"))
    vm = spec.guests[20057]
    assert len(spec.nodes) == 2
    assert all(n.link_bits_per_s == 10e9 for n in spec.nodes.values())
    assert vm.memory_bytes == round(12.6 * GiB)
    assert vm.used_bytes == round(11.6 * GiB)
    assert (vm.dirty_rate_Bps, vm.wss_bytes) == cf.DIRTY_PROFILES["moderate"]
    assert vm.status == "running"
    assert all(spec.storages[d.storage].shared for d in vm.disks)


def test_defaults() -> None:
    spec = load_cluster_text(
        BASE
        + "  100: {type: qemu, node: pve1}\n"
        + '  200: {type: lxc, node: pve2, disks: {rootfs: "ceph:8G"}}\n'
    )
    vm, ct = spec.guests[100], spec.guests[200]
    assert (vm.name, ct.name) == ("VM 100", "CT200")
    assert vm.status == "running" and not vm.agent and not vm.ha and vm.ha_state == ""
    assert (vm.dirty_rate_Bps, vm.wss_bytes) == cf.DIRTY_PROFILES["idle"]
    assert vm.used_bytes is None and vm.lock is None and vm.cpu is None
    node = spec.nodes["pve2"]
    assert node.bridges == ("vmbr0",) and node.arch == "x86_64" and node.online
    assert not node.maintenance
    assert spec.storages["ceph"].nodes is None
    assert spec.storages["ceph"].content == ("images", "rootdir")
    assert spec.datacenter == cf.DatacenterSpec()
    assert spec.seed == 0 and spec.timing_overrides == {}


def test_extra_keys() -> None:
    spec = load_cluster_text(
        """\
name: t
seed: 3
datacenter: {migration: {type: insecure}, bwlimit: {migration: 102400}, max_workers: 2,
             ha: {shutdown_policy: migrate}}
nodes:
  pve1: {cpus: 8, memory: 32GiB, maintenance: true, online: false, arch: aarch64}
  pve2: {cpus: 8, memory: 32GiB}
storages:
  zfs: {type: zfspool, size: 1TiB}
guests:
  100: {type: qemu, node: pve1, cpu: host, usb0: "host=1050:0407", serial0: /dev/ttyS0,
        hostpci0: "mapping=gpu1", hostpci1: "01:00.0,pcie=1", onboot: true, description: hi,
        dirty: 120MiB/s, ha: {state: started, max_relocate: 3}, disks: {virtio0: "zfs:8G"},
        replicate: [pve2], tags: [a, b]}
  101: {type: qemu, node: pve1, status: stopped, dirty: hot, wss: 2GiB}
timing: {t_pre_s: 2.5, stream_cap_secure_Bps: 8.6e8}
"""
    )
    dc = spec.datacenter
    assert (dc.migration_type, dc.bwlimit_migration_KiBps, dc.max_workers) == (
        "insecure",
        102400,
        2,
    )
    assert dc.ha_shutdown_policy == "migrate"
    assert spec.nodes["pve1"].maintenance and not spec.nodes["pve1"].online
    vm = spec.guests[100]
    assert vm.cpu == "host" and vm.onboot and vm.description == "hi"
    assert vm.usb == (("usb0", "host=1050:0407"),) and vm.serial == (("serial0", "/dev/ttyS0"),)
    assert vm.hostpci == (("hostpci0", "mapping=gpu1"), ("hostpci1", "01:00.0,pcie=1"))
    assert (vm.dirty_rate_Bps, vm.wss_bytes) == (120 * MiB, 1 * GiB)
    assert (vm.ha, vm.ha_state, vm.ha_max_relocate) == (True, "started", 3)
    assert vm.replicate == ("pve2",) and vm.tags == ("a", "b")
    assert spec.guests[101].wss_bytes == 2 * GiB
    assert spec.guests[101].dirty_rate_Bps == cf.DIRTY_PROFILES["hot"][0]
    assert spec.timing_overrides == {"t_pre_s": 2.5, "stream_cap_secure_Bps": 8.6e8}


def test_bridge_missing_on_own_node_is_allowed() -> None:
    spec = load_cluster_text(
        BASE + '  100: {type: qemu, node: pve2, net0: "virtio,bridge=vmbr1"}\n'
    )
    assert spec.guests[100].nets == (("net0", "virtio,bridge=vmbr1"),)


def test_duplicate_guest_names_are_allowed() -> None:
    spec = load_cluster_text(
        BASE
        + "  100: {type: qemu, node: pve1, name: a}\n  101: {type: qemu, node: pve2, name: a}\n"
    )
    assert [g.name for g in spec.guests.values()] == ["a", "a"]


def test_anchors_and_merge_keys() -> None:
    spec = load_cluster_text(
        BASE
        + "  100: &vm {type: qemu, node: pve1, memory: 1GiB}\n"
        + "  101: {<<: *vm, node: pve2}\n"
    )
    assert spec.guests[101].memory_bytes == GiB and spec.guests[101].node == "pve2"


# --- validation: one case per kind of error ------------------------------------------------------

G = len(BASE.splitlines()) + 1  # line of the first guest

ERROR_CASES: list[tuple[str, str, int, str, str]] = [
    # (id, guests text appended to BASE, line, key path, message fragment)
    (
        "size",
        "  100: {type: qemu, node: pve1, memory: 8 gigs}",
        G,
        "guests.100.memory",
        "expected a size like 8GiB, got '8 gigs'",
    ),
    (
        "did-you-mean",
        "  100: {type: qemu, node: pve1, memroy: 8GiB}",
        G,
        "guests.100",
        "unknown key 'memroy' (did you mean 'memory'?)",
    ),
    (
        "unknown-node",
        "  100: {type: qemu, node: pve3}",
        G,
        "guests.100.node",
        "unknown node 'pve3'",
    ),
    (
        "unknown-storage",
        '  100: {type: qemu, node: pve1, disks: {scsi0: "cepf:8G"}}',
        G,
        "guests.100.disks.scsi0",
        "unknown storage 'cepf' (did you mean 'ceph'?)",
    ),
    (
        "local-storage",
        '  100: {type: qemu, node: pve2, disks: {scsi0: "local-lvm:8G"}}',
        G,
        "guests.100.disks.scsi0",
        "local storage 'local-lvm' is not available on node pve2",
    ),
    ("vmid-low", "  99: {type: qemu, node: pve1}", G, "guests.99", "100..999999999"),
    (
        "vmid-high",
        "  1000000000: {type: qemu, node: pve1}",
        G,
        "guests.1000000000",
        "100..999999999",
    ),
    ("vmid-text", "  web: {type: qemu, node: pve1}", G, "guests.web", "100..999999999"),
    (
        "status",
        "  100: {type: qemu, node: pve1, status: paused}",
        G,
        "guests.100.status",
        "expected one of running, stopped, got 'paused'",
    ),
    (
        "type",
        "  100: {type: kvm, node: pve1}",
        G,
        "guests.100.type",
        "expected one of qemu, lxc, got 'kvm'",
    ),
    (
        "lxc-disk-key",
        '  100: {type: lxc, node: pve1, disks: {rootfs: "ceph:8G", scsi0: "ceph:8G"}}',
        G,
        "guests.100.disks.scsi0",
        "not a container disk",
    ),
    (
        "qemu-disk-key",
        '  100: {type: qemu, node: pve1, disks: {rootfs: "ceph:8G"}}',
        G,
        "guests.100.disks.rootfs",
        "not a VM disk",
    ),
    (
        "disk-index",
        '  100: {type: qemu, node: pve1, disks: {ide4: "ceph:8G"}}',
        G,
        "guests.100.disks.ide4",
        "not a VM disk",
    ),
    (
        "lxc-rootfs",
        '  100: {type: lxc, node: pve1, disks: {mp0: "ceph:8G"}}',
        G,
        "guests.100.disks",
        "needs a 'rootfs'",
    ),
    (
        "disk-format",
        '  100: {type: qemu, node: pve1, disks: {scsi0: "32G"}}',
        G,
        "guests.100.disks.scsi0",
        "expected STORAGE:SIZE",
    ),
    (
        "net-bridge",
        '  100: {type: qemu, node: pve1, net0: "virtio"}',
        G,
        "guests.100.net0",
        "bridge= is required",
    ),
    (
        "net-lxc-name",
        '  100: {type: lxc, node: pve1, disks: {rootfs: "ceph:8G"}, net0: "bridge=vmbr0"}',
        G,
        "guests.100.net0",
        "needs name=",
    ),
    (
        "net-model",
        '  100: {type: qemu, node: pve1, net0: "bridge=vmbr0"}',
        G,
        "guests.100.net0",
        "NIC model",
    ),
    (
        "bridge-nowhere",
        '  100: {type: qemu, node: pve1, net0: "virtio,bridge=vmbr5"}',
        G,
        "guests.100.net0",
        "bridge 'vmbr5' is not defined on any node",
    ),
    (
        "net-index",
        '  100: {type: qemu, node: pve1, net32: "virtio,bridge=vmbr0"}',
        G,
        "guests.100",
        "0..31",
    ),
    (
        "used",
        "  100: {type: qemu, node: pve1, memory: 2GiB, used: 3GiB}",
        G,
        "guests.100.used",
        "more than the 2GiB of memory",
    ),
    (
        "used-lxc",
        '  100: {type: lxc, node: pve1, memory: 1GiB, used: 2GiB, disks: {rootfs: "ceph:8G"}}',
        G,
        "guests.100.used",
        "more than",
    ),
    (
        "memory-unitless",
        "  100: {type: qemu, node: pve1, memory: 2048}",
        G,
        "guests.100.memory",
        "did you forget a unit",
    ),
    (
        "dirty",
        "  100: {type: qemu, node: pve1, dirty: hott}",
        G,
        "guests.100.dirty",
        "(did you mean 'hot'?)",
    ),
    (
        "cores",
        "  100: {type: qemu, node: pve1, cores: 64}",
        G,
        "guests.100.cores",
        "exceed the 8 CPUs",
    ),
    (
        "integer",
        "  100: {type: qemu, node: pve1, cores: four}",
        G,
        "guests.100.cores",
        "expected an integer, got 'four'",
    ),
    (
        "bool",
        "  100: {type: qemu, node: pve1, agent: maybe}",
        G,
        "guests.100.agent",
        "expected true or false",
    ),
    (
        "vm-option-on-ct",
        '  100: {type: lxc, node: pve1, disks: {rootfs: "ceph:8G"}, cpu: host}',
        G,
        "guests.100",
        "'cpu' is a VM option",
    ),
    (
        "hostpci",
        "  100: {type: qemu, node: pve1, hostpci0: gpu}",
        G,
        "guests.100.hostpci0",
        "PCI address",
    ),
    (
        "serial",
        "  100: {type: qemu, node: pve1, serial0: tty}",
        G,
        "guests.100.serial0",
        "'socket'",
    ),
    (
        "lock",
        "  100: {type: qemu, node: pve1, lock: mounted}",
        G,
        "guests.100.lock",
        "expected one of backup",
    ),
    (
        "template-running",
        "  100: {type: qemu, node: pve1, template: true, status: running}",
        G,
        "guests.100.status",
        "a template cannot be running",
    ),
    (
        "ha-bad",
        "  100: {type: qemu, node: pve1, ha: {state: up}}",
        G,
        "guests.100.ha.state",
        "expected one of started",
    ),
    (
        "ha-template",
        "  100: {type: qemu, node: pve1, template: true, ha: {state: stopped}}",
        G,
        "guests.100.ha",
        "template",
    ),
    (
        "replicate",
        '  100: {type: qemu, node: pve1, disks: {scsi0: "ceph:8G"}, replicate: [pve2]}',
        G,
        "guests.100.replicate",
        "zfspool",
    ),
    (
        "disks-at-top",
        '  100: {type: qemu, node: pve1, scsi0: "ceph:8G"}',
        G,
        "guests.100",
        "disks go under 'disks'",
    ),
    ("missing-node", "  100: {type: qemu}", G, "guests.100", "missing required key 'node'"),
]


@pytest.mark.parametrize(
    ("guests", "line", "path", "fragment"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_guest_errors(guests: str, line: int, path: str, fragment: str) -> None:
    problems = problems_of(BASE + guests + "\n")
    prefix = f"t.yaml:{line}: {path}: "
    assert any(p.startswith(prefix) and fragment in p for p in problems), problems


ONE_NODE = "nodes: {pve1: {cpus: 1, memory: 4GiB}}\n"

SECTION_CASES: list[tuple[str, str, int, str, str]] = [
    # (id, document, line, key path ("" for the top level), message fragment)
    (
        "node-memory",
        "name: t\nnodes:\n  pve1: {cpus: 8, memory: lots}\n",
        3,
        "nodes.pve1.memory",
        "expected a size",
    ),
    (
        "node-link",
        "name: t\nnodes:\n  pve1: {cpus: 8, memory: 8GiB, link: 10GB}\n",
        3,
        "nodes.pve1.link",
        "expected a link speed",
    ),
    (
        "node-name",
        "name: t\nnodes:\n  pve_1: {cpus: 8, memory: 8GiB}\n",
        3,
        "nodes.pve_1",
        "'pve_1' is not a valid node",
    ),
    (
        "node-arch",
        "name: t\nnodes:\n  pve1: {cpus: 8, memory: 8GiB, arch: arm}\n",
        3,
        "nodes.pve1.arch",
        "expected one of x86_64, aarch64",
    ),
    ("no-nodes", "name: t\n", 1, "", "missing required key 'nodes'"),
    (
        "top-key",
        "name: t\nnodse: {}\n" + ONE_NODE,
        2,
        "",
        "unknown key 'nodse' (did you mean 'nodes'?)",
    ),
    (
        "storage-type",
        BASE.replace("type: rbd", "type: ceph"),
        6,
        "storages.ceph.type",
        "expected one of",
    ),
    (
        "storage-shared",
        BASE.replace("lvmthin, size", "lvmthin, shared: true, size"),
        7,
        "storages.local-lvm.shared",
        "cannot be shared",
    ),
    (
        "storage-node",
        BASE.replace("nodes: [pve1]", "nodes: [pve1, pve4]"),
        7,
        "storages.local-lvm.nodes[1]",
        "unknown node 'pve4'",
    ),
    (
        "storage-content",
        BASE.replace("size: 1TiB}", "size: 1TiB, content: [disks]}", 1),
        6,
        "storages.ceph.content[0]",
        "expected one of",
    ),
    (
        "migration-type",
        "name: t\ndatacenter: {migration: {type: fast}}\n" + ONE_NODE,
        2,
        "datacenter.migration.type",
        "expected one of secure, insecure",
    ),
    (
        "migration-network",
        "name: t\ndatacenter: {migration: {network: 10.1.1.1}}\n" + ONE_NODE,
        2,
        "datacenter.migration.network",
        "CIDR",
    ),
    (
        "bwlimit",
        "name: t\ndatacenter: {bwlimit: {migration: -1}}\n" + ONE_NODE,
        2,
        "datacenter.bwlimit.migration",
        "at least 0",
    ),
    (
        "shutdown-policy",
        "name: t\ndatacenter: {ha: {shutdown_policy: migrat}}\n" + ONE_NODE,
        2,
        "datacenter.ha.shutdown_policy",
        "(did you mean 'migrate'?)",
    ),
    (
        "duplicate-key",
        "name: t\nname: u\n" + ONE_NODE,
        2,
        "",
        "duplicate key 'name' (first on line 1)",
    ),
    (
        "timing-name",
        "name: t\n" + ONE_NODE + "timing: {t_pre: 2}\n",
        3,
        "timing",
        "unknown timing parameter 't_pre' (did you mean 't_pre_s'?)",
    ),
    (
        "timing-value",
        "name: t\n" + ONE_NODE + "timing: {stream_cap_secure_Bps: fast}\n",
        3,
        "timing.stream_cap_secure_Bps",
        "expected a number",
    ),
    ("seed", "name: t\nseed: lucky\n" + ONE_NODE, 2, "seed", "expected an integer"),
    ("cluster-name", "name: a-very-long-cluster-name\n" + ONE_NODE, 1, "name", "up to 15"),
]


@pytest.mark.parametrize(
    ("text", "line", "path", "fragment"),
    [case[1:] for case in SECTION_CASES],
    ids=[case[0] for case in SECTION_CASES],
)
def test_section_errors(text: str, line: int, path: str, fragment: str) -> None:
    problems = problems_of(text)
    prefix = f"t.yaml:{line}: {path}: " if path else f"t.yaml:{line}: "
    assert any(p.startswith(prefix) and fragment in p for p in problems), problems


def test_yaml_syntax_error() -> None:
    (problem,) = problems_of("name: t\nnodes: {pve1: {cpus: 1\n")
    assert re.match(r"t\.yaml:\d+: invalid YAML: ", problem)


HA_BASE = (
    BASE
    + """\
  101: {type: qemu, node: pve1, ha: true}
  102: {type: qemu, node: pve2, ha: true}
  103: {type: qemu, node: pve2}
  200: {type: lxc, node: pve1, disks: {rootfs: "ceph:8G"}, ha: true}
ha_rules:
"""
)
R = len(HA_BASE.splitlines()) + 1  # line of the first rule

RULE_CASES: list[tuple[str, str, str, str]] = [
    (
        "rule-type",
        "{rule: a, type: anti-affinity, resources: [vm:101]}",
        "ha_rules[0].type",
        "expected one of node-affinity, resource-affinity",
    ),
    (
        "affinity",
        "{rule: a, type: resource-affinity, resources: [vm:101, vm:102], affinity: no}",
        "ha_rules[0].affinity",
        "expected one of positive, negative",
    ),
    (
        "no-guest",
        "{rule: a, type: resource-affinity, resources: [vm:101, vm:999], affinity: negative}",
        "ha_rules[0].resources[1]",
        "there is no guest 999",
    ),
    (
        "not-ha",
        "{rule: a, type: resource-affinity, resources: [vm:101, vm:103], affinity: negative}",
        "ha_rules[0].resources[1]",
        "not HA-managed",
    ),
    (
        "ct-as-vm",
        "{rule: a, type: node-affinity, resources: [vm:200], nodes: [pve1]}",
        "ha_rules[0].resources[0]",
        "write ct:200",
    ),
    (
        "resource-format",
        "{rule: a, type: node-affinity, resources: [101], nodes: [pve1]}",
        "ha_rules[0].resources[0]",
        "expected a resource like vm:101",
    ),
    (
        "rule-node",
        '{rule: a, type: node-affinity, resources: ["ct:200"], nodes: ["pve1:2", pve7]}',
        "ha_rules[0].nodes[1]",
        "unknown node 'pve7'",
    ),
    (
        "priority",
        '{rule: a, type: node-affinity, resources: ["ct:200"], nodes: ["pve1:high"]}',
        "ha_rules[0].nodes[0]",
        "NODE:PRIORITY",
    ),
    (
        "strict-type",
        "{rule: a, type: node-affinity, resources: [vm:101], nodes: [pve1], strict: maybe}",
        "ha_rules[0].strict",
        "expected true or false",
    ),
    (
        "wrong-key",
        "{rule: a, type: resource-affinity, resources: [vm:101, vm:102], "
        "affinity: negative, nodes: [pve1]}",
        "ha_rules[0]",
        "applies only to node-affinity",
    ),
    (
        "one-resource",
        "{rule: a, type: resource-affinity, resources: [vm:101], affinity: positive}",
        "ha_rules[0].resources",
        "at least two",
    ),
    (
        "too-many-apart",
        "{rule: a, type: resource-affinity, resources: [vm:101, vm:102, ct:200], "
        "affinity: negative}",
        "ha_rules[0].resources",
        "cannot be kept apart on 2 nodes",
    ),
]


@pytest.mark.parametrize(
    ("rule", "path", "fragment"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_ha_rule_errors(rule: str, path: str, fragment: str) -> None:
    problems = problems_of(HA_BASE + f"  - {rule}\n")
    assert any(p.startswith(f"t.yaml:{R}: {path}: ") and fragment in p for p in problems), problems


def test_ha_rule_conflicts() -> None:
    rules = [
        "{rule: r1, type: node-affinity, resources: [vm:101], nodes: [pve1]}",
        "{rule: r1, type: node-affinity, resources: [vm:101], nodes: [pve2]}",
        "{rule: r3, type: resource-affinity, resources: [vm:101, vm:102], affinity: positive}",
        "{rule: r4, type: resource-affinity, resources: [vm:102, vm:101], affinity: negative}",
    ]
    problems = problems_of(HA_BASE + "".join(f"  - {rule}\n" for rule in rules))
    text = "\n".join(problems)
    assert f"t.yaml:{R + 1}: ha_rules[1].rule: rule id 'r1' is used twice" in text
    assert f"t.yaml:{R + 1}: ha_rules[1].resources: vm:101 is already in node-affinity" in text
    assert (
        f"t.yaml:{R + 3}: ha_rules[3]: vm:101 and vm:102 are kept apart here but together" in text
    )
    assert len(problems) == 3


AUTH_CASES: list[tuple[str, str, str, str]] = [
    ("token-id", 'tokens: [{id: "root@pam", secret: x}]', "tokens[0].id", "root@pam!pvetool"),
    ("user-id", "users: [{id: root, password: x}]", "users[0].id", "auditor@pve"),
    (
        "privilege",
        'users: [{id: "a@pve", password: x, privileges: [VM.Adit]}]',
        "users[0].privileges[0]",
        "unknown privilege 'VM.Adit' (did you mean 'VM.Audit'?)",
    ),
    (
        "vm-monitor",
        'users: [{id: "a@pve", password: x, privileges: [VM.Monitor]}]',
        "users[0].privileges[0]",
        "PVE 9 removed it",
    ),
    (
        "privileges-type",
        'users: [{id: "a@pve", password: x, privileges: most}]',
        "users[0].privileges",
        "expected 'all' or a list",
    ),
    (
        "token-owner",
        'tokens: [{id: "bob@pve!t", secret: x}]',
        "tokens[0].id",
        "its user bob@pve is not in 'users'",
    ),
    (
        "secret-missing",
        'tokens: [{id: "root@pam!t"}]',
        "tokens[0]",
        "missing required key 'secret'",
    ),
    (
        "root-restricted",
        'users: [{id: "root@pam", password: x, privileges: [VM.Audit]}]',
        "users[0].privileges",
        "root@pam always has all privileges",
    ),
]


@pytest.mark.parametrize(
    ("auth", "path", "fragment"), [c[1:] for c in AUTH_CASES], ids=[c[0] for c in AUTH_CASES]
)
def test_auth_errors(auth: str, path: str, fragment: str) -> None:
    line = len(BASE.splitlines()) + 2
    problems = problems_of(BASE + "  100: {type: qemu, node: pve1}\n" + auth + "\n")
    assert any(p.startswith(f"t.yaml:{line}: {path}: ") and fragment in p for p in problems), (
        problems
    )


def test_every_problem_is_collected() -> None:
    path = CLUSTERS / "broken_many.yaml"
    with pytest.raises(ClusterFileError) as info:
        load_cluster(path)
    problems = info.value.problems
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == [5, 10, 11, 12, 13, 14, 15]
    assert all(p.startswith(f"{path}:") for p in problems)
    message = str(info.value)
    assert message.startswith("The cluster file has 7 problems:")
    assert all(p in message for p in problems)
    assert f"{path}:10: guests.101.memory: expected a size like 8GiB, got '8 gigs'" in problems
    assert f"{path}:15: guests.105: unknown key 'memroy' (did you mean 'memory'?)" in problems


def test_a_broken_section_does_not_cascade() -> None:
    text = (CLUSTERS / "tiny.yaml").read_text()
    text = re.sub(r"nodes:\n(  pve.*\n)+", "nodes: [pve1, pve2]\n", text)
    text = re.sub(r"storages:\n(  .*\n)+?guests", "storages: 5\nguests", text)
    problems = problems_of(text)
    assert [p.split(": ", 2)[1] for p in problems] == ["nodes", "storages"]


def test_broken_references() -> None:
    with pytest.raises(ClusterFileError) as info:
        load_cluster(CLUSTERS / "broken_refs.yaml")
    text = str(info.value)
    for fragment in (
        "broken_refs.yaml:13: ha_rules[0].resources[1]: guest 102 is not HA-managed",
        "broken_refs.yaml:14: ha_rules[1].resources[0]: guest 200 is a container",
        "broken_refs.yaml:14: ha_rules[1].resources[1]: there is no guest 999",
        "broken_refs.yaml:14: ha_rules[1].nodes[1]: unknown node 'pve5'",
        "broken_refs.yaml:15: ha_rules[2].type:",
        "broken_refs.yaml:17: tokens[0].privileges[1]: unknown privilege 'VM.Auditt'",
        "broken_refs.yaml:18: tokens[1].id:",
        "broken_refs.yaml:20: users[0].id:",
    ):
        assert fragment in text


def test_broken_syntax_names_the_line() -> None:
    with pytest.raises(ClusterFileError) as info:
        load_cluster(CLUSTERS / "broken_syntax.yaml")
    (problem,) = info.value.problems
    assert re.search(r"broken_syntax\.yaml:4: invalid YAML: .*line 3", problem)


def test_builtin_name_and_missing_file() -> None:
    assert load_cluster("lab").name == "lab"
    with pytest.raises(ClusterFileError, match="cannot read the cluster file"):
        load_cluster(CLUSTERS / "no-such-cluster.yaml")


def test_builtin_problems_name_lab_yaml() -> None:
    broken = LAB_TEXT.replace("memory: 8GiB, used: 5GiB", "memory: 8 gigs, used: 5GiB", 1)
    problems = problems_of(broken, "lab.yaml")
    assert re.fullmatch(
        r"lab\.yaml:\d+: guests\.101\.memory: expected a size like 8GiB, got '8 gigs'",
        problems[0],
    )


@pytest.mark.parametrize(
    "text", ["", "# only a comment\n", "- a\n- b\n", "just text", "a: 1\n---\nb: 2\n"]
)
def test_not_a_cluster(text: str) -> None:
    assert problems_of(text)


# --- robustness --------------------------------------------------------------------------------

LAB_DOC: dict[str, Any] = yaml.safe_load(LAB_TEXT)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["8GiB", "ceph:8G", "vm:101", "pve1", "all", "hot", "qemu", "lxc", "vmbr1"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


ALL_PATHS = _paths(LAB_DOC)


@st.composite
def mutated_lab(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(LAB_DOC)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["delete", "rename", "replace"]))
        if action == "delete":
            del parent[last]
        elif action == "rename" and isinstance(parent, dict):
            new_key = draw(st.one_of(st.text(min_size=1, max_size=10), st.integers(0, 10**10)))
            if new_key not in parent:
                parent[new_key] = parent.pop(last)
        else:
            parent[last] = draw(values)
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_lab())
def test_mutated_lab_never_crashes(doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    try:
        spec = load_cluster_text(text, "mutated.yaml")
    except ClusterFileError as exc:
        assert exc.problems
        assert all(p.startswith("mutated.yaml:") for p in exc.problems)
    else:
        assert isinstance(spec, ClusterSpec)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        load_cluster_text(text)
    except ClusterFileError:
        pass
