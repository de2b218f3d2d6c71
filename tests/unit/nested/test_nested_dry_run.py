"""`up --dry-run` and `down --dry-run` as the operator runs them: every step, in order, and
nothing touched."""

from __future__ import annotations

import re

from .conftest import Sandbox

STEPS = [
    "config",
    "preflight",
    "credentials",
    "download",
    "answers",
    "prepare-iso",
    "answer-images",
    "network",
    "install",
    "boot",
    "wait-api",
    "check-nodes",
    "cluster",
    "nfs",
    "storage",
    "token",
    "guests",
    "env",
]


def _positions(out: str, needles: list[str]) -> list[int]:
    positions = []
    start = 0
    for needle in needles:
        at = out.find(needle, start)
        assert at >= 0, f"{needle!r} missing (or out of order) after position {start}:\n{out}"
        positions.append(at)
        start = at + 1
    return positions


def test_up_dry_run_prints_every_step_in_order(sandbox: Sandbox) -> None:
    run = sandbox.script("up", "--dry-run")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    headers = re.findall(r"^\[\s*(\d+)/(\d+)\] ([a-z-]+): ", out, flags=re.M)
    assert [h[2] for h in headers] == STEPS
    assert [int(h[0]) for h in headers] == list(range(1, len(STEPS) + 1))
    assert {int(h[1]) for h in headers} == {len(STEPS)}
    assert "dry run: nothing is executed" in out


def test_up_dry_run_shows_the_whole_sequence_of_commands(sandbox: Sandbox) -> None:
    out = sandbox.script("up", "--dry-run").stdout
    _positions(
        out,
        [
            "$ curl --fail --location",
            "https://enterprise.proxmox.com/iso/proxmox-ve_9.0-1.iso",
            "verify SHA-256 of proxmox-ve_9.0-1.iso.part == 228f948ae696f244",
            "answers/pve1/answer.toml",
            "proxmox-auto-install-assistant validate-answer /work/answers/pve1/answer.toml",
            "proxmox-auto-install-assistant validate-answer /work/answers/pve3/answer.toml",
            "prepare-iso /iso/proxmox-ve_9.0-1.iso --fetch-from partition --partition-label "
            "PROXMOX-AIS --on-first-boot /lab/first-boot.sh",
            "$ docker run --rm",
            "$ mkfs.fat -C -n PROXMOX-AIS",
            "::answer.toml",
            "$ ip link add pvelab0 type bridge",
            "-j MASQUERADE",
            "$ dnsmasq ",
            "qemu-system-x86_64 -name pvelab-pve1",
            "qemu-system-x86_64 -name pvelab-pve3",
            "every installer has powered its VM off",
            "-b ",  # the overlay on the installed disk
            "wait until pve1 answers on 10.251.0.11:8006",
            "wait until pve3 answers on 10.251.0.13:8006",
            "first-boot hook",
            "dpkg --compare-versions",
            "ssh pve1: pvecm create pvelab --link0 address=10.251.0.11",
            "ssh pve1: pvesh get /cluster/config/join --output-format json",
            "ssh pve2: IFS= read -r pw && pvesh create /cluster/config/join --hostname 10.251.0.11",
            '--password "$pw"',  # from stdin: the password is in no command line
            "ssh pve3: IFS= read -r pw && pvesh create /cluster/config/join --hostname 10.251.0.11",
            "$ exportfs -o rw,sync,no_subtree_check,no_root_squash,insecure 10.251.0.0/24:",
            "ssh pve1: pvesm add nfs labnfs --server 10.251.0.1",
            "ssh pve1: pveum role add PVEToolMigrate --privs Sys.Audit,Sys.Console,"
            "VM.Audit,VM.Migrate,VM.PowerMgmt",
            "ssh pve1: pveum acl modify / --users pvetool@pve --roles PVEToolMigrate",
            "ssh pve1: pveum user token add pvetool@pve ci --privsep 0",
            "/etc/pve/pve-root-ca.pem",
            "ssh pve1: qm create 101",
            "ssh pve2: ha-manager add vm:104 --state started",
            "--usb0 host=0627:0001",
            "ssh pve3: pct create 106",
            "-kernel /mnt/pve/labnfs/pvelab-alive/vmlinuz",
            "cluster.env",
        ],
    )
    # Three installs and three boots, all with KVM and the host CPU (nested virtualisation).
    qemu = [line for line in out.splitlines() if "$ qemu-system-x86_64" in line]
    assert len(qemu) == 6
    assert all(
        "accel=kvm" in line and "-cpu host" in line and "-daemonize" in line and "-pidfile" in line
        for line in qemu
    )
    assert sum("-no-reboot" in line for line in qemu) == 3
    # The test guests never use KVM: they are a third level of virtualisation.
    creates = [line for line in out.splitlines() if "qm create" in line]
    assert len(creates) == 7 and all("--kvm 0" in line for line in creates)
    # The stopped guest is created but never started.
    assert any("qm create 108" in line for line in creates)
    assert not any("qm start 108" in line for line in out.splitlines())


def test_dry_run_touches_nothing(sandbox: Sandbox) -> None:
    assert sandbox.script("up", "--dry-run").returncode == 0
    assert sandbox.script("down", "--dry-run").returncode == 0
    assert not sandbox.work.exists()
    assert not sandbox.cache.exists()
    assert not (sandbox.root / "cluster.env").exists()
    assert sandbox.recorded() == []


def test_dry_run_uses_the_assistant_directly_when_the_host_has_it(sandbox: Sandbox) -> None:
    tool = sandbox.bin / "proxmox-auto-install-assistant"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    out = sandbox.script("up", "--dry-run").stdout
    assert "$ proxmox-auto-install-assistant validate-answer " in out
    assert "--fetch-from partition" in out
    assert "docker run" not in out


def test_down_dry_run_on_an_empty_work_dir_shows_the_full_teardown(sandbox: Sandbox) -> None:
    run = sandbox.script("down", "--dry-run")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "nothing recorded" in out
    # Processes by pid file first, then the host resources in the reverse order of creation.
    _positions(
        out,
        [
            "stop qemu pve3: pid from",
            "stop qemu pve1: pid from",
            "stop dnsmasq: pid from",
            "cluster.env",
            "$ exportfs -u 10.251.0.0/24:",
            "$ ip link delete pvelab-tap3",
            "$ ip link delete pvelab-tap1",
            "$ iptables -t filter -D FORWARD -o pvelab0 -j ACCEPT",
            "$ iptables -t nat -D POSTROUTING -s 10.251.0.0/24 '!' -o pvelab0 -j MASQUERADE",
            "$ sysctl -w net.ipv4.ip_forward=0",
            "$ ip link delete pvelab0",
            f"$ rm -rf --one-file-system {sandbox.work}",
        ],
    )
    assert "pkill" not in out and "killall" not in out
    assert not sandbox.work.exists()


def test_placeholder_checksum_dry_run_warns_and_continues(sandbox: Sandbox) -> None:
    from .conftest import PLACEHOLDER

    sandbox.set_sha256(PLACEHOLDER)
    run = sandbox.script("up", "--dry-run")
    assert run.returncode == 0
    assert "a real run stops here" in run.stdout
    assert re.search(r"^\[18/18\] env: ", run.stdout, flags=re.M)


def test_dry_run_follows_the_cache_of_installed_disks(sandbox: Sandbox) -> None:
    creds = sandbox.cache / "credentials"
    creds.mkdir(parents=True)
    (creds / "root-password").write_text("a-lab-password\n")
    (creds / "id_ed25519").write_text("private\n")
    (creds / "id_ed25519.pub").write_text("ssh-ed25519 AAAAtest pvelab\n")
    cold = sandbox.script("up", "--dry-run").stdout
    assert "reuse the lab SSH key" in cold and "a-lab-password" not in cold
    images = re.search(r"\$ mkdir -p (\S+/images/[0-9a-f]{16})$", cold, flags=re.M)
    assert images, cold
    (sandbox.cache / images.group(1).split("/cache/", 1)[1]).mkdir(parents=True)
    (sandbox.cache / images.group(1).split("/cache/", 1)[1] / "complete").touch()
    warm = sandbox.script("up", "--dry-run").stdout
    assert "cached installed disks" in warm
    assert "$ docker run" not in warm and "$ mkfs.fat" not in warm and "-no-reboot" not in warm
    assert sum("$ qemu-system-x86_64" in line for line in warm.splitlines()) == 3
    assert "-b " + images.group(1) in warm  # the overlays sit on the cached disks
