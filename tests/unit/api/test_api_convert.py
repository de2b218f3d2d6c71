"""The converters (`pvetool.api.convert`) on the recorded PVE answers in tests/data/fixtures
(see SOURCES.md there), and on the config-string syntax PVE documents."""

from __future__ import annotations

import pytest

from pvetool.api import convert
from pvetool.errors import ValidationError
from pvetool.model import GuestKind, HaResource, Upid

from .helpers import load_fixture

UPID9 = Upid.parse("UPID:pve1:00171399:02C8BD1E:656E69FC:qmigrate:20057:root@pam:")


# -- recorded answers -------------------------------------------------------------------------


def test_cluster_resources_capture() -> None:
    res = convert.cluster_resources(load_fixture("cluster_resources_capture.json")["data"])
    assert [n.name for n in res.nodes] == ["node1", "node2", "node3", "node4"]
    node2 = res.nodes[1]
    assert node2.online and node2.cpus == 12
    assert node2.memory_total_bytes == 33567911936 and node2.memory_used_bytes == 8127873024
    assert node2.memory_free_bytes == 33567911936 - 8127873024

    guests = {g.vmid: g for g in res.guests}
    assert sorted(guests) == [100, 101, 102, 200]
    g100 = guests[100]
    assert (g100.kind, g100.node, g100.status, g100.name) == ("qemu", "node2", "running", "server1")
    assert g100.memory_bytes == 1073741824 and g100.used_memory_bytes == 842551296
    assert g100.cores == 1 and g100.uptime_s == 874350 and not g100.template
    assert guests[101].template and guests[101].status == "stopped"
    # '+' is a legal character inside a PVE tag: this is one tag, not two.
    assert guests[102].tags == ("go-proxmox+cloud-init",)
    assert not g100.config_known and g100.disks == ()

    by_key = {(s.name, s.node): s for s in res.storages}
    zfs = by_key[("local-zfs", "node2")]
    assert zfs.type == "zfspool" and not zfs.shared and zfs.available
    assert zfs.total_bytes == 962664386560 and zfs.used_bytes == 25294921728
    assert zfs.content == {"images", "rootdir"}
    assert {s.name for s in res.storages} == {"local", "local-zfs", "cloud-init"}


def test_cluster_status_capture() -> None:
    status = convert.cluster_status(load_fixture("cluster_status_capture.json")["data"])
    assert status.name == "clustername" and status.quorate
    assert status.online_nodes == ("node1", "node2", "node3", "node4")
    node1 = next(n for n in status.nodes if n.name == "node1")
    assert node1.local and node1.node_id == 1 and node1.ip == "192.168.1.1"


def test_single_node_without_cluster_is_quorate() -> None:
    status = convert.cluster_status([{"type": "node", "name": "pve", "online": 1, "local": 1}])
    assert status.name is None and status.quorate


def test_nodes_capture_keeps_fingerprints() -> None:
    nodes = convert.node_index(load_fixture("nodes_capture.json")["data"])
    assert [n.name for n in nodes] == ["node1", "node2", "node3", "node4"]
    assert nodes[0].ssl_fingerprint is not None and nodes[0].ssl_fingerprint.startswith("80:D4")
    assert nodes[0].cpus == 12 and nodes[0].online


def test_qemu_status_current_capture() -> None:
    status = convert.guest_status("qemu", load_fixture("qemu_status_current_capture.json")["data"])
    assert status.vmid == 101 and status.running and status.name == "matt"
    assert status.qmpstatus == "running" and status.lock is None
    assert not status.ha_managed and status.agent_enabled
    assert status.memory_bytes == 2097152000 and status.used_memory_bytes == 1127792640
    assert status.running_machine == "pc-i440fx-8.0+pve0" and status.running_qemu == "8.0.2"


def test_task_status_fixtures() -> None:
    running = convert.task_status(load_fixture("task_status_running.json")["data"])
    assert running.running and not running.ok and running.exitstatus is None
    assert running.upid.type == "qmconfig" and running.upid.pid == 14790
    done = convert.task_status(load_fixture("task_status_stopped_warnings.json")["data"])
    assert done.ok and done.exitstatus == "WARNINGS: 1" and done.upid.node == "dahu-2"


def test_task_status_with_unknown_state_is_rejected() -> None:
    with pytest.raises(ValidationError):
        convert.task_status({"status": "zombie", "upid": str(UPID9)})


def test_upids_fixture() -> None:
    for example in load_fixture("upids.json")["examples"]:
        upid = convert.upid(example["upid"])
        assert upid.starttime == example["decoded"]["starttime"]
    with pytest.raises(ValidationError):
        convert.upid(None)


def test_ha_status_partial_capture() -> None:
    ha = convert.ha_status(load_fixture("ha_status_current_pve9_partial.json")["data"])
    # The second entry has an empty node name: nothing to attach it to.
    assert list(ha.lrm) == ["dedicated-zap106363-1"]
    assert ha.lrm["dedicated-zap106363-1"].startswith("dedicated-zap106363-1 (idle")
    assert ha.services == {} and ha.quorate is None


def test_task_log_derived_answer() -> None:
    lines = convert.task_log(load_fixture("task_log_response_qmigrate_pve9_DERIVED.json")["data"])
    assert [line.n for line in lines] == list(range(1, 38))
    assert lines[-1].text == "TASK OK" and lines[31].text == ""


# -- task log lines ---------------------------------------------------------------------------


def _parse_log(name: str) -> tuple[list, list[int], list[int]]:
    progress, downtimes, durations = [], [], []
    for n, text in enumerate(load_fixture(name).splitlines(), start=1):
        event = convert.parse_progress_line(UPID9, text, n)
        if event is not None:
            progress.append(event)
        if (d := convert.parse_downtime_ms(text)) is not None:
            downtimes.append(d)
        if (s := convert.parse_duration_s(text)) is not None:
            durations.append(s)
    return progress, downtimes, durations


def test_progress_pve9_log() -> None:
    progress, downtimes, durations = _parse_log("qmigrate_online_pve9_ha_ok.log")
    active = [p for p in progress if not p.completed]
    assert len(active) == 15 and progress[-1].completed
    first = active[0]
    assert first.transferred_bytes == int(515.4 * 1024**2)
    assert first.total_bytes == int(12.6 * 1024**3)
    assert first.rate_bps == float(int(428.3 * 1024**2)) and first.phase == "ram"
    assert active[2].rate_bps == float(int(1.1 * 1024**3))  # "1.1 GiB/s"
    assert first.line_no == 14  # as n in the derived log answer
    assert progress[-1].transferred_bytes == int(11.7 * 1024**3)
    assert downtimes == [59] and durations == [20]


def test_progress_pve8_log() -> None:
    progress, downtimes, durations = _parse_log("qmigrate_online_pve8_ha_ok.log")
    assert len(progress) == 8 and progress[-1].transferred_bytes == int(2.5 * 1024**3)
    assert all(p.total_bytes == 4 * 1024**3 for p in progress)
    assert downtimes == [73] and durations == [18]


def test_progress_pve6_legacy_log() -> None:
    progress, downtimes, durations = _parse_log("qmigrate_online_pve6_legacy_format_ok.log")
    assert len(progress) == 1
    assert progress[0].transferred_bytes == 294227312 and progress[0].total_bytes == 554508288
    assert progress[0].rate_bps is None
    assert downtimes == [57] and durations == [8]


def test_failed_log_has_no_progress() -> None:
    assert _parse_log("qmigrate_failed_local_disk.log") == ([], [], [])


def test_drive_mirror_progress_line() -> None:
    event = convert.parse_progress_line(
        UPID9, "2025-01-04 00:34:30 drive-scsi0: transferred 1.0 GiB of 32.0 GiB (3.12%) in 5s"
    )
    assert event is not None and event.phase == "disk" and event.device == "drive-scsi0"
    assert event.transferred_bytes == 1024**3 and event.total_bytes == 32 * 1024**3
    assert not event.completed


# -- config strings ---------------------------------------------------------------------------


QEMU_CONFIG = {
    "name": "db1",
    "memory": "4096",
    "cores": 2,
    "sockets": 2,
    "cpu": "host,flags=+aes",
    "agent": "enabled=1,fstrim_cloned_disks=1",
    "scsi0": "ceph:vm-101-disk-0,iothread=1,size=32G",
    "scsi1": "local-lvm:vm-101-disk-1,size=512M",
    "virtio2": "/dev/disk/by-id/ata-ST4000,size=3726G",
    "ide2": "none,media=cdrom",
    "ide0": "local:iso/debian-12.iso,media=cdrom,size=628M",
    "efidisk0": "local-lvm:vm-101-disk-2,efitype=4m,pre-enrolled-keys=1,size=4M",
    "unused0": "local-lvm:vm-101-disk-3",
    "net0": "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr1,tag=10,firewall=1",
    "net1": "model=e1000,macaddr=AA:BB:CC:00:11:22,bridge=vmbr0",
    "hostpci0": "0000:01:00.0,pcie=1",
    "hostpci1": "mapping=gpu-a,pcie=1",
    "usb0": "host=1234:5678",
    "usb1": "spice",
    "serial0": "socket",
    "serial1": "/dev/ttyS1",
    "parallel0": "/dev/parport0",
    "virtiofs0": "dirid=shared-docs,cache=auto",
    "lock": "migrate",
    "tags": "prod;db",
    "template": 0,
    "digest": "0123456789abcdef",
}


def test_qemu_config_strings() -> None:
    conf = convert.guest_config("qemu", QEMU_CONFIG)
    assert conf.memory_bytes == 4096 * 1024**2 and conf.cores == 2 and conf.sockets == 2
    assert conf.cpu_type == "host" and conf.agent_enabled and conf.lock == "migrate"
    assert conf.tags == ("prod", "db") and conf.name == "db1" and not conf.template

    disks = {d.key: d for d in conf.disks}
    assert disks["scsi0"].storage == "ceph" and disks["scsi0"].size_bytes == 32 * 1024**3
    assert disks["scsi0"].volid == "ceph:vm-101-disk-0" and disks["scsi0"].is_local is None
    assert disks["scsi1"].size_bytes == 512 * 1024**2
    assert disks["virtio2"].storage is None and disks["virtio2"].is_local is True
    assert disks["ide2"].media == "cdrom" and disks["ide2"].volid == "none"
    assert disks["ide0"].media == "cdrom" and disks["ide0"].storage == "local"
    assert disks["efidisk0"].size_bytes == 4 * 1024**2
    assert disks["unused0"].unused and disks["unused0"].size_bytes is None

    nets = {n.key: n for n in conf.nets}
    assert (nets["net0"].model, nets["net0"].mac, nets["net0"].bridge, nets["net0"].vlan_tag) == (
        "virtio",
        "AA:BB:CC:DD:EE:FF",
        "vmbr1",
        10,
    )
    assert nets["net1"].model == "e1000" and nets["net1"].vlan_tag is None

    devices = {d.key: d for d in conf.local_devices}
    assert set(devices) == {"hostpci0", "hostpci1", "usb0", "serial1", "parallel0", "virtiofs0"}
    assert devices["hostpci0"].kind == "pci" and devices["hostpci0"].blocks_migration
    assert devices["hostpci1"].mapping == "gpu-a" and not devices["hostpci1"].blocks_migration
    assert devices["usb0"].value == "1234:5678" and devices["serial1"].kind == "serial"
    assert devices["virtiofs0"].mapping == "shared-docs"


def test_lxc_config_strings() -> None:
    conf = convert.guest_config(
        "lxc",
        {
            "hostname": "web",
            "memory": 512,
            "cores": 1,
            "rootfs": "local-zfs:subvol-200-disk-0,size=8G",
            "mp0": "local-zfs:subvol-200-disk-1,mp=/data,size=16G,backup=1",
            "mp1": "/srv/share,mp=/share",
            "mp2": "/mnt/nfs,mp=/nfs,shared=1",
            "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,tag=20,type=veth",
            "dev0": "/dev/ttyUSB0,mode=0660",
            "unused0": "local-zfs:subvol-200-disk-2",
        },
    )
    assert conf.name == "web" and conf.memory_bytes == 512 * 1024**2
    assert [d.key for d in conf.disks] == ["mp0", "rootfs", "unused0"]
    assert {d.key: d.size_bytes for d in conf.disks}["rootfs"] == 8 * 1024**3
    net = conf.nets[0]
    assert (net.bridge, net.vlan_tag, net.name, net.mac) == (
        "vmbr0",
        20,
        "eth0",
        "BC:24:11:00:00:01",
    )
    devices = {d.key: d for d in conf.local_devices}
    assert set(devices) == {"mp1", "dev0"}  # mp2 is a bind mount marked shared
    assert devices["mp1"].kind == "bind-mount" and devices["dev0"].kind == "dev"


def test_memory_as_property_string() -> None:
    assert convert.guest_config("qemu", {"memory": "current=2048"}).memory_bytes == 2048 * 1024**2


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("32G", 32 * 1024**3),
        ("4M", 4 * 1024**2),
        ("1.5T", int(1.5 * 1024**4)),
        ("100", 100),
        ("512K", 512 * 1024),
        ("x", None),
    ],
)
def test_parse_pve_size(text: str, size: int | None) -> None:
    assert convert.parse_pve_size(text) == size


def test_config_answer_of_wrong_shape() -> None:
    with pytest.raises(ValidationError, match="where an object was expected"):
        convert.guest_config("qemu", ["not", "a", "dict"])


# -- precondition, options, HA ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["qemu", "lxc"])
def test_precondition_both_spellings(kind: GuestKind) -> None:
    # Shape per the schema of GET .../migrate (no public recording exists, see SOURCES.md):
    # qemu uses underscores, lxc hyphens; not_allowed_nodes is keyed by node name.
    sep = "_" if kind == "qemu" else "-"
    raw = {
        "running": 1,
        f"allowed{sep}nodes": ["pve2"],
        f"not{sep}allowed{sep}nodes": {
            "pve3": {
                "unavailable_storages": ["local-lvm"],
                "blocking-ha-resources": [{"sid": "vm:102", "cause": "resource-affinity"}],
            }
        },
        "local_disks": [
            {"volid": "local-lvm:vm-101-disk-0", "size": 34359738368, "cdrom": 0, "is_unused": 0}
        ],
        "local_resources": ["hostpci0"],
        "mapped-resources": ["hostpci1"],
        "mapped-resource-info": {"hostpci1": {"live-migration": 1}},
        "dependent-ha-resources": ["vm:103"],
        "has-dbus-vmstate": 1,
    }
    pre = convert.precondition(kind, raw)
    assert pre.running and pre.allowed_nodes == ("pve2",) and pre.allows("pve2")
    refusal = pre.not_allowed["pve3"]
    assert refusal.unavailable_storages == ("local-lvm",)
    assert refusal.blocking_ha_resources[0].sid == "vm:102"
    assert pre.local_disks[0].size_bytes == 34359738368 and not pre.local_disks[0].cdrom
    assert pre.local_resources == ("hostpci0",) and pre.mapped_resources == ("hostpci1",)
    assert pre.mapped_resource_info[0].live_migration is True
    assert pre.dependent_ha_resources == ("vm:103",) and pre.has_dbus_vmstate is True


def test_datacenter_options_parsed_object_or_property_string() -> None:
    parsed = convert.datacenter_options(
        {
            "migration": {"type": "insecure", "network": "10.0.0.0/24"},
            "bwlimit": {"migration": 102400},
            "max_workers": 4,
            "ha": {"shutdown_policy": "migrate"},
            "crs": {"ha": "static"},
        }
    )
    raw = convert.datacenter_options(
        {
            "migration": "insecure,network=10.0.0.0/24",
            "bwlimit": "migration=102400",
            "max_workers": "4",
            "ha": "shutdown_policy=migrate",
            "crs": "ha=static",
        }
    )
    assert parsed == raw
    assert parsed.migration_type == "insecure" and parsed.migration_network == "10.0.0.0/24"
    assert parsed.bwlimit_migration_kib_s == 102400 and parsed.max_workers == 4
    assert convert.datacenter_options({}).migration_type == "secure"
    assert convert.datacenter_options({"migration_unsecure": 1}).migration_type == "insecure"


def test_ha_rules_strings_and_objects() -> None:
    rules = convert.ha_rules(
        [
            {
                "rule": "keep-db",
                "type": "node-affinity",
                "resources": "vm:100,vm:101",
                "nodes": "pve1:2,pve2",
                "strict": 1,
                "disable": 0,
                "order": 1,
            },
            {
                "rule": "apart",
                "type": "resource-affinity",
                "resources": {"vm:100": 1, "vm:102": 1},
                "affinity": "negative",
            },
            {"rule": "future", "type": "something-new", "resources": "vm:1"},
        ]
    )
    assert [r.rule_id for r in rules] == ["keep-db", "apart"]
    assert rules[0].resources == ("vm:100", "vm:101") and rules[0].strict
    assert rules[0].node_priorities == {"pve1": 2, "pve2": 0}
    assert rules[1].affinity == "negative" and rules[1].resources == ("vm:100", "vm:102")


def test_ha_groups_become_node_affinity_rules() -> None:
    resources = [
        HaResource("vm:100", group="g1"),
        HaResource("ct:200", group="g1"),
        HaResource("vm:300"),
    ]
    rules = convert.ha_groups_as_rules(
        [{"group": "g1", "nodes": "pve1:2,pve2:1", "restricted": 1, "type": "group"}], resources
    )
    assert len(rules) == 1
    rule = rules[0]
    assert rule.from_group and rule.strict and rule.type == "node-affinity"
    assert rule.resources == ("ct:200", "vm:100")


def test_ha_migrate_request_object_or_null() -> None:
    assert convert.ha_migrate_request(None, "vm:100", "pve2").requested_node == "pve2"
    req = convert.ha_migrate_request(
        {
            "sid": "vm:100",
            "requested-node": "pve2",
            "blocking-resources": [{"sid": "vm:101", "cause": "node-affinity"}],
            "comigrated-resources": ["vm:102"],
        },
        "vm:100",
        "pve2",
    )
    assert req.blocking[0].cause == "node-affinity" and req.comigrated == ("vm:102",)


# -- snapshot assembly ------------------------------------------------------------------------


def test_build_snapshot_from_captures() -> None:
    resources = convert.cluster_resources(load_fixture("cluster_resources_capture.json")["data"])
    status = convert.cluster_status(load_fixture("cluster_status_capture.json")["data"])
    storage_configs = convert.storage_config(
        [
            {"storage": "local-zfs", "type": "zfspool", "content": "images,rootdir"},
            {"storage": "ceph", "type": "rbd", "shared": 1, "content": "images"},
        ]
    )
    config = convert.guest_config(
        "qemu",
        {
            "memory": "1024",
            "scsi0": "local-zfs:vm-100-disk-0,size=32G",
            "scsi1": "ceph:vm-100-disk-1,size=8G",
            "net0": "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0",
        },
    )
    ha_res = convert.ha_resources([{"sid": "vm:100", "state": "started", "type": "vm"}])
    ha = convert.ha_status(
        [
            {
                "id": "service:vm:100",
                "type": "service",
                "sid": "vm:100",
                "node": "node2",
                "state": "started",
                "crm_state": "started",
                "status": "started",
            }
        ]
    )
    snap = convert.build_snapshot(
        convert.RawCluster(
            status=status,
            resources=resources,
            storage_configs=storage_configs,
            ha_resource_list=ha_res,
            ha=ha,
            configs={100: config},
            bridges={"node2": frozenset({"vmbr0"})},
        )
    )
    assert snap.cluster_name == "clustername" and snap.quorate
    assert snap.online_nodes == ("node1", "node2", "node3", "node4")
    g100 = snap.guest(100)
    assert g100.config_known and g100.ha_state == "started" and g100.ha_managed
    disks = {d.key: d for d in g100.disks}
    assert disks["scsi0"].is_local is True and disks["scsi1"].is_local is False
    assert not snap.guest(101).config_known and snap.guest(101).ha_state is None
    assert snap.storages["local-zfs"].available_on("node3")
    assert snap.storages["ceph"].shared and snap.storages["ceph"].per_node == {}
    assert snap.ha_resources["vm:100"].node == "node2"


def test_precondition_empty_entries_are_not_refusals() -> None:
    # D1: PVE 9.2 lists every other node in not_allowed_nodes, {} for the allowed ones
    # (qemu-server src/PVE/API2/Qemu.pm migrate_vm_precondition l.5439-5465, QemuServer.pm
    # check_local_storage_availability l.2301 seeds {} per node).
    raw = {
        "running": 1,
        "allowed_nodes": ["pve2"],
        "not_allowed_nodes": {"pve2": {}, "pve3": {"unavailable_storages": ["fast"]}},
        "local_disks": [],
        "local_resources": [],
    }
    pre = convert.precondition("qemu", raw)
    assert pre.allows("pve2")
    assert not pre.not_allowed["pve2"].blocks
    assert not pre.allows("pve3") and pre.not_allowed["pve3"].blocks
    assert not pre.allows("pve4")


def test_precondition_recorded_every_node_refused() -> None:
    # Recorded 9.x answer (SOURCES.md): every node listed with a storage it lacks.
    pre = convert.precondition("qemu", load_fixture("qemu_precondition_all_refused_2026.json"))
    assert pre.allowed_nodes == ()
    for node in ("FwNode", "workstation1", "workstation2"):
        assert pre.not_allowed[node].blocks and not pre.allows(node)
        assert pre.not_allowed[node].unavailable_storages == ("docker-data",)


def test_cluster_resources_node_hastate_and_unknown_rows() -> None:
    # D12: pve-manager PVE/API2/Cluster.pm resources l.633-635 adds the CRM's node_status as
    # a node's `hastate`; pools, sdn and network rows (and any new type) are not ours to read.
    raw = [
        {"id": "pool/prod", "type": "pool", "pool": "prod"},
        {
            "id": "node/pve1",
            "type": "node",
            "node": "pve1",
            "status": "online",
            "hastate": "maintenance",
            "maxmem": 1024,
            "mem": 512,
            "maxcpu": 4,
        },
        {"id": "sdn/pve1/zone1", "type": "sdn", "sdn": "zone1", "node": "pve1"},
        {"id": "network/pve1/vmbr0", "type": "network", "network": "vmbr0", "node": "pve1"},
        {"id": "future/x", "type": "future-thing"},
        {
            "id": "qemu/101",
            "type": "qemu",
            "vmid": 101,
            "node": "pve1",
            "status": "running",
            "hastate": "ignored",
        },
    ]
    res = convert.cluster_resources(raw)
    assert [n.name for n in res.nodes] == ["pve1"] and res.nodes[0].ha_state == "maintenance"
    assert [g.vmid for g in res.guests] == [101] and not res.guests[0].ha_managed
