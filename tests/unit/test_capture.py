"""`pvetool emulator capture`: a cluster read into a cluster file the emulator serves again.

The round trip is the contract: capture an emulated cluster, serve the capture, capture again,
and the two files are byte-identical. Captures read with GETs only and carry no secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pvetool.api import PveClient
from pvetool.capture import capture_cluster, dirty_class, render_cluster_file
from pvetool.emulator.clusterfile import DIRTY_PROFILES, load_cluster, load_cluster_text
from pvetool.emulator.fleet import generate_cluster
from pvetool.emulator.server import Emulator
from pvetool.planner.sequencer import estimate_profile
from pvetool.settings import load_settings
from tests.e2e.inprocess import run_cli
from tests.emu import CLUSTERS, START_EPOCH

# Keys the file format has, and a cluster that uses the ones lab does not: an offline node, HA
# maintenance, a time zone, an ISO CD-ROM, an unused volume, a rule with disable/comment,
# replication, a directory mapping, virtiofs, parallel, migrate_speed/downtime, container locks.
EDGES = """
name: edges
seed: 7
datacenter: {migration: {type: insecure}, bwlimit: {migration: 51200, default: 102400},
             ha: {shutdown_policy: failover}, timezone: Europe/Vienna}
nodes:
  a1: {cpus: 16, memory: 96GiB, link: 25Gbit, version: "9.1.7", cpu_model: "Xeon",
       bridges: [vmbr0, vmbr9]}
  a2: {cpus: 16, memory: 96GiB, link: 25Gbit, maintenance: true, bridges: [vmbr0]}
  a3: {cpus: 8, memory: 32GiB, online: false}
storages:
  tank: {type: zfspool, size: 2TiB, nodes: [a1, a2]}
  nfs1: {type: nfs, size: 10TiB, content: [images, rootdir, iso, backup]}
  old: {type: lvmthin, shared: false, size: 1TiB, disable: true}
mappings:
  share: {type: dir, nodes: [a1, a2]}
  nic: {type: pci, nodes: [a1]}
guests:
  101: {type: qemu, node: a1, memory: 4GiB, used: 3GiB, dirty: hot, cores: 2,
        disks: {scsi0: "tank:16G", unused0: "tank:8G"},
        net0: "virtio,bridge=vmbr9", replicate: [a2], migrate_speed: 100, migrate_downtime: 0.5,
        virtiofs0: "dirid=share", parallel0: /dev/parport0, cpu: "x86-64-v3",
        description: "root password is hunter2"}
  102: {type: qemu, node: a2, memory: 8GiB, net0: "virtio,bridge=vmbr0", hostpci0: "mapping=nic",
        disks: {scsi0: "nfs1:32G", ide2: "nfs1:iso/debian-13.iso,media=cdrom"},
        ha: {state: started, max_relocate: 0, max_restart: 2, failback: false}}
  103: {type: qemu, node: a3, status: stopped, memory: 1GiB, disks: {scsi0: "nfs1:8G"},
        net0: "virtio,bridge=vmbr0"}
  200: {type: lxc, node: a1, memory: 1GiB, lock: mounted, disks: {rootfs: "nfs1:8G"},
        net0: "name=eth0,bridge=vmbr0,ip=dhcp", tags: [a, b], pool: ops}
ha_rules:
  - {rule: pin, type: node-affinity, resources: ["vm:102"], nodes: ["a2:3", "a1"], disable: true,
     comment: "maintenance window"}
tokens:
  - {id: "root@pam!cap", secret: "edges-token-secret", privileges: all}
users:
  - {id: "root@pam", password: "edges-root-password"}
"""


def _emulator(text: str) -> Emulator:
    return Emulator(load_cluster_text(text), speed=0, start_epoch_s=START_EPOCH).start()


@pytest.fixture()
def lab() -> Iterator[Emulator]:
    emu = Emulator(load_cluster("lab"), speed=0, start_epoch_s=START_EPOCH).start()
    yield emu
    emu.stop()


def _capture(emu: Emulator, **kw: object) -> tuple[str, list[str]]:
    with PveClient(load_settings(env=emu.env(), config_path=None)) as client:
        cap = capture_cluster(client, **kw)  # type: ignore[arg-type]
    return render_cluster_file(cap), cap.notes


def _round_trip(text: str) -> tuple[str, str, list[str]]:
    emu = _emulator(text)
    try:
        first, notes = _capture(emu)
    finally:
        emu.stop()
    emu = _emulator(first)
    try:
        second, _ = _capture(emu)
    finally:
        emu.stop()
    return first, second, notes


def test_lab_round_trip_is_byte_identical_through_the_cli(tmp_path: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    run = run_cli(["--emulate", "lab", "emulator", "capture", "-o", str(one)], {}, clocks=None)
    assert run.code == 0, run.err
    assert "Captured cluster lab: 3 nodes, 20 guests" in run.err
    run = run_cli(["--emulate", str(one), "emulator", "capture", "-o", str(two)], {}, clocks=None)
    assert run.code == 0, run.err
    assert one.read_bytes() == two.read_bytes()
    # And the twin is a usable cluster: pvetool plans a drain on it.
    run = run_cli(["--emulate", str(one), "drain", "pve2", "--dry-run"], {}, clocks=None)
    assert run.code == 0, run.err


def test_lab_capture_holds_what_lab_holds(lab: Emulator) -> None:
    text, notes = _capture(lab)
    assert notes == []
    data = yaml.safe_load(text)
    spec, lab_spec = load_cluster_text(text), lab.spec
    assert set(data) == {
        "name", "seed", "datacenter", "nodes", "storages", "mappings", "pools", "guests",
        "ha_rules",
    }  # fmt: skip
    assert spec.name == "lab" and list(spec.nodes) == ["pve1", "pve2", "pve3"]
    for name, node in lab_spec.nodes.items():
        got = spec.nodes[name]
        assert (got.cpus, got.memory_bytes, got.cpu_model, got.version, got.bridges) == (
            node.cpus,
            node.memory_bytes,
            node.cpu_model,
            node.version,
            node.bridges,
        )
    for sid, st in lab_spec.storages.items():
        got_st = spec.storages[sid]
        assert (got_st.type, got_st.shared, got_st.size_bytes, got_st.nodes) == (
            st.type,
            st.shared,
            st.size_bytes,
            st.nodes,
        )
        assert set(got_st.content) == set(st.content)
    assert spec.mappings == lab_spec.mappings
    assert set(spec.pools) == {"spare"}
    assert spec.datacenter == lab_spec.datacenter
    assert set(spec.guests) == set(lab_spec.guests)
    for vmid, g in lab_spec.guests.items():
        got_g = spec.guests[vmid]
        same = ("type", "name", "node", "status", "cores", "memory_bytes", "agent", "tags")
        same += ("pool", "ha", "ha_state", "ha_max_relocate", "ha_failback", "hostpci", "usb")
        same += ("serial", "lock", "template", "cpu", "replicate", "onboot")
        for attr in same:
            assert getattr(got_g, attr) == getattr(g, attr), (vmid, attr)
        assert [(d.key, d.storage, d.size_bytes, d.cdrom) for d in got_g.disks] == sorted(
            ((d.key, d.storage, d.size_bytes, d.cdrom) for d in g.disks),
            key=lambda d: (
                d[0].rstrip("0123456789"),
                int("0" + d[0][len(d[0].rstrip("0123456789")) :]),
            ),
        ), vmid
        assert [b for _, raw in got_g.nets for b in raw.split(",") if b.startswith("bridge=")] == [
            b for _, raw in g.nets for b in raw.split(",") if b.startswith("bridge=")
        ]
        if g.used_bytes is not None:
            assert got_g.used_bytes == g.used_bytes
        # The dirty class comes back from the CPU load the emulator shows for it: the class of
        # lab's own rate (110's 120MiB/s is a moderate one).
        if g.status == "running":
            rates = {name: rate for name, (rate, _wss) in DIRTY_PROFILES.items()}
            expected = (
                "hot"
                if g.dirty_rate_Bps >= rates["hot"]
                else "moderate"
                if g.dirty_rate_Bps >= rates["moderate"]
                else "idle"
            )
            assert got_g.dirty_rate_Bps == rates[expected], (vmid, expected)
    assert spec.ha_rules == lab_spec.ha_rules


def test_no_secret_and_no_description_unless_asked(lab: Emulator) -> None:
    text, _ = _capture(lab)
    for token in lab.spec.tokens:
        assert token.secret not in text
    for user in lab.spec.users:
        assert user.password not in text
    data = yaml.safe_load(text)
    assert not {"tokens", "users", "acls", "timing"} & set(data)
    assert all("description" not in g for g in data["guests"].values())
    with_text, _ = _capture(lab, with_descriptions=True)
    described = yaml.safe_load(with_text)["guests"]
    assert described[101]["description"] == lab.spec.guests[101].description


def test_capture_only_reads(lab: Emulator) -> None:
    before = lab.stats.requests
    _capture(lab)
    methods = {key.split()[0] for key in lab.stats.by_endpoint}
    assert lab.stats.requests > before and methods == {"GET"}
    assert lab.state()["tasks"] == []


def _body(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


def test_edge_cluster_round_trip_and_its_gaps() -> None:
    first, second, notes = _round_trip(EDGES)
    # What the first capture could not take (noted in its header) is not in the file, so the
    # second capture has less to say; the cluster itself comes back byte for byte.
    assert _body(first) == _body(second)
    assert first.startswith(second.split("# Incomplete:")[0])
    spec = load_cluster_text(first)
    assert spec.datacenter.timezone == "Europe/Vienna"
    assert spec.datacenter.migration_type == "insecure"
    assert (spec.datacenter.bwlimit_migration_KiBps, spec.datacenter.bwlimit_default_KiBps) == (
        51200,
        102400,
    )
    assert spec.datacenter.ha_shutdown_policy == "failover"
    assert spec.nodes["a2"].maintenance and not spec.nodes["a3"].online
    assert spec.nodes["a1"].bridges == ("vmbr0", "vmbr9") and spec.nodes["a1"].version == "9.1.7"
    assert spec.storages["old"].disable and spec.storages["tank"].nodes == ("a1", "a2")
    assert spec.mappings["share"].type == "dir" and spec.mappings["nic"].nodes == ("a1",)
    g101 = spec.guests[101]
    assert g101.replicate == ("a2",) and g101.virtiofs == (("virtiofs0", "dirid=share"),)
    assert g101.parallel == (("parallel0", "/dev/parport0"),) and g101.cpu == "x86-64-v3"
    assert (g101.migrate_speed_MiBps, g101.migrate_downtime_s) == (100.0, 0.5)
    assert [(d.key, d.storage, d.size_bytes, d.unused) for d in g101.disks] == [
        ("scsi0", "tank", 16 << 30, False),
        ("unused0", "tank", 8 << 30, True),  # its size from the storage's content listing
    ]
    assert [(d.key, d.cdrom, d.iso) for d in spec.guests[102].disks] == [
        ("ide2", True, "iso/debian-13.iso"),
        ("scsi0", False, None),
    ]
    assert g101.dirty_rate_Bps == load_cluster_text(EDGES).guests[101].dirty_rate_Bps  # hot
    assert not spec.guests[102].ha_failback and spec.guests[102].ha_max_restart == 2
    assert spec.guests[200].lock == "mounted" and spec.guests[200].tags == ("a", "b")
    assert spec.ha_rules[0].disable and spec.ha_rules[0].comment == "maintenance window"
    assert "hunter2" not in first and "edges-token-secret" not in first
    # What PVE does not give is said in the header, not made up.
    assert 103 not in spec.guests  # on the offline node: its config cannot be read
    assert any(n.startswith("node a3: offline") for n in notes)
    assert any(n.startswith("storage old:") for n in notes)
    assert any(n.startswith("guest 103 config: not captured") for n in notes)
    for note in notes:
        assert f"#   - {note}" in first


def test_generated_and_probe_clusters_round_trip() -> None:
    first, second, _ = _round_trip(generate_cluster(5, 60, 4, "10Gbit", "secure", "mixed"))
    assert first == second and len(load_cluster_text(first).guests) == 60
    probe = (CLUSTERS / "probe.yaml").read_text(encoding="utf-8")
    first, second, _ = _round_trip(probe)
    assert first == second


@pytest.mark.parametrize("load", [0.0, 0.03, 0.059, 0.06, 0.1, 0.249, 0.25, 0.9])
def test_dirty_class_is_the_planners_rule(load: float) -> None:
    class Guest:
        cpu_fraction = load

    assert dirty_class(load) == estimate_profile(Guest())  # type: ignore[arg-type]


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    run = run_cli(["--emulate", "lab", "emulator", "capture", "--link", "fast"], {}, clocks=None)
    assert run.code == 2 and "--link" in run.err and "Traceback" not in run.err
    target = tmp_path / "missing" / "c.yaml"
    run = run_cli(["--emulate", "lab", "emulator", "capture", "-o", str(target)], {}, clocks=None)
    assert run.code == 1 and f"cannot write {target}" in run.err and "Traceback" not in run.err
    assert not target.exists()


def test_a_token_with_fewer_privileges_says_what_is_incomplete(lab: Emulator) -> None:
    env = {**lab.env(), "PVETOOL_TOKEN": "auditor@pve!ro=1ab1ab1a-0000-4000-8000-000000000002"}
    with PveClient(load_settings(env=env, config_path=None)) as client:
        cap = capture_cluster(client)
    text = render_cluster_file(cap)
    for priv in ("Pool.Audit", "SDN.Audit", "Mapping.Audit"):
        assert any(f"lacks {priv} on /" in note for note in cap.notes), priv
    assert "mappings" not in yaml.safe_load(text)
    load_cluster_text(text)  # still a cluster file the emulator serves


def test_a_hostile_name_in_a_note_cannot_add_keys() -> None:
    from pvetool.capture import Capture

    cap = Capture(
        {"name": "x", "seed": 1, "nodes": {"n1": {"cpus": 1, "memory": "1GiB"}}},
        ["storage evil\ntokens: [{id: 'root@pam!x', secret: s}]\r: no size"],
    )
    data = yaml.safe_load(render_cluster_file(cap))
    assert set(data) == {"name", "seed", "nodes"}


class _Stub:
    """A client whose answers are given: what a broken or hostile server could send."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers

    def read(self, path: str, **params: object) -> object:
        from pvetool.errors import ApiError

        if path not in self.answers:
            raise ApiError(method="GET", path=path, status=501, reason="not implemented")
        return self.answers[path]


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ({"/cluster/status": {"not": "a list"}}, "expected a list of objects"),
        ({"/cluster/status": [{"type": "cluster", "name": "c"}]}, "no node is listed"),
        (
            {
                "/cluster/status": [{"type": "node", "name": "n1", "online": 0}],
                "/access/permissions": {},
                "/cluster/resources": [
                    {"type": "node", "node": "n1", "maxcpu": "lots", "maxmem": 1 << 30}
                ],
            },
            "maxcpu is not a number",
        ),
    ],
)
def test_unusable_answers_are_named_errors(answers: dict[str, object], problem: str) -> None:
    from pvetool.errors import InvalidAnswer

    with pytest.raises(InvalidAnswer) as err:
        capture_cluster(_Stub(answers))  # type: ignore[arg-type]
    assert problem in str(err.value) and "GET /" in str(err.value)
