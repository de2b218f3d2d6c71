#!/usr/bin/env python3
"""pvelab: bring a real three-node Proxmox VE 9 cluster up inside QEMU/KVM, and take it down.

Role: the provisioning behind ``nested-pve/up`` and ``nested-pve/down`` (see README.md here).
Imports: the standard library only, so that it runs on a fresh CI runner before pvetool itself is
installed; it imports nothing from pvetool.

How it works, in the order of `up`:

* the pinned installer ISO (config.toml) is downloaded once and checked against its SHA-256;
* one answer file per node is rendered (a small TOML writer below: tomllib only reads) and
  checked with ``proxmox-auto-install-assistant validate-answer``; the ISO is prepared once with
  ``prepare-iso --fetch-from partition`` (in a Debian container unless the host has the tool);
* each node gets a tiny FAT image labelled PROXMOX-AIS holding its answer.toml, plugged in as a
  USB stick; QEMU installs the three nodes in parallel and powers off (reboot-mode = power-off);
  the installed disks are kept in the cache, later runs boot copy-on-write overlays of them;
* the nodes boot on a host bridge with NAT; `up` waits for port 8006 and the first-boot hook,
  creates the cluster (pvecm create, then the join API through pvesh on each joining node, over
  SSH with a key generated for the lab), exports an NFS share from the host, adds it as shared
  storage, creates a least-privilege API token and the test guests, and writes cluster.env.

Every external action goes through `Runner.run`; with ``--dry-run`` it prints the command
(``shlex.join``) instead of running it, and the dry run walks exactly the same code as the real
run (pyinfra's rule). What `up` creates on the host is recorded in ``<work>/state.json`` before it
is created, so `down` removes exactly that, processes by pid file (never by name), and can run any
number of times.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import io
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "config.toml"
FIRST_BOOT_SCRIPT = HERE / "first-boot.sh"
ALIVE_INIT_SCRIPT = HERE / "alive-init.sh"

GUEST_KINDS = (
    "nodisk",
    "stopped",
    "shared-disk",
    "local-disk",
    "local-device",
    "ha",
    "container",
    "alive",
)
# QEMU's software emulation migrates dirty memory correctly from 9.0 on; the test guests run
# with kvm=0, so the nodes' pve-qemu-kvm must be at least this.
MIN_PVE_QEMU = "9.0"
# The node's emulated USB tablet (vendor:product of QEMU's usb-tablet): the local device that the
# local-device guest takes, so PVE reports it in local_resources and refuses to migrate it.
QEMU_USB_TABLET = "0627:0001"
FIRST_BOOT_MARKER = "/var/lib/pvelab/first-boot.done"
ALIVE_DIR = "pvelab-alive"
HEX64 = re.compile(r"[0-9a-f]{64}")
MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")
NAME = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class LabError(Exception):
    """A step failed; the message is a complete sentence for the operator (exit 1)."""


class ConfigError(LabError):
    """The configuration or the command line is wrong (exit 2)."""


# ---------------------------------------------------------------------------------------------
# TOML writing (tomllib only reads). Enough for answer files: strings, booleans, integers,
# floats, arrays of those, and tables (nested tables become [a.b] sub-tables).


def _toml_string(value: str) -> str:
    out = ['"']
    escapes = {
        '"': '\\"',
        "\\": "\\\\",
        "\b": "\\b",
        "\t": "\\t",
        "\n": "\\n",
        "\f": "\\f",
        "\r": "\\r",
    }
    for ch in value:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{where}: TOML answer files take finite numbers only")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, f"{where}[]") for v in value) + "]"
    raise ValueError(f"{where}: cannot write a {type(value).__name__} as a TOML value")


def toml_dumps(doc: Mapping[str, Any]) -> str:
    """Write `doc` as TOML: one ``[table]`` per mapping, scalars first.

    Inside a table, a mapping of scalars is written with dotted keys (``filter.ID_SERIAL = ...``),
    the form PVE's answer-file documentation uses; deeper mappings become ``[a.b]`` tables.
    """
    lines: list[str] = []

    def is_leaf_table(value: Any) -> bool:
        return (
            isinstance(value, Mapping)
            and bool(value)
            and not any(isinstance(v, Mapping) for v in value.values())
        )

    def table(prefix: tuple[str, ...], body: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in body.items() if not isinstance(v, Mapping)]
        dotted = [(k, v) for k, v in body.items() if prefix and is_leaf_table(v)]
        tables = [
            (k, v)
            for k, v in body.items()
            if isinstance(v, Mapping) and not (prefix and is_leaf_table(v))
        ]
        if prefix and (scalars or dotted or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
        for key, value in scalars:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, '.'.join((*prefix, key)))}")
        for key, sub in dotted:
            for subkey, value in sub.items():
                where = ".".join((*prefix, key, subkey))
                lines.append(f"{_toml_key(key)}.{_toml_key(subkey)} = {_toml_value(value, where)}")
        for key, value in tables:
            table((*prefix, key), value)

    table((), doc)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    mac: str
    index: int

    @property
    def mac_hex(self) -> str:
        return self.mac.replace(":", "")


@dataclass(frozen=True)
class Guest:
    vmid: int
    node: str
    kind: str
    memory_mib: int


@dataclass(frozen=True)
class Timeouts:
    download_s: int
    install_s: int
    api_s: int
    cluster_s: int
    command_s: int


@dataclass(frozen=True)
class Config:
    path: Path
    iso_version: str
    iso_file: str
    iso_url: str
    iso_sha256: str
    container_engine: str
    assistant_image: str
    assistant_repository: str
    keyring_url: str
    keyring_sha256: str
    partition_label: str
    work_dir: Path
    cache_dir: Path
    nfs_dir: Path
    bridge: str
    tap_prefix: str
    ovmf_code: Path
    ovmf_vars: Path
    busybox: Path
    network: ipaddress.IPv4Network
    gateway: str
    dns: str
    domain: str
    keyboard: str
    country: str
    timezone: str
    mailto: str
    filesystem: str
    disk: str
    first_boot_ordering: str
    node_memory_mib: int
    node_cores: int
    node_disk_gib: int
    nodes: tuple[Node, ...]
    cluster_name: str
    storage: str
    nfs_options: str
    token_user: str
    token_name: str
    role: str
    privileges: tuple[str, ...]
    timeouts: Timeouts
    guests: tuple[Guest, ...]

    @property
    def host_ip(self) -> str:
        return self.gateway

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def checksum_problem(self) -> str | None:
        """Why the pinned ISO checksum cannot be used, or None when it is a SHA-256."""
        if HEX64.fullmatch(self.iso_sha256):
            return None
        return (
            f"the SHA-256 of {self.iso_file} is not set (iso.sha256 in {self.path} is "
            f"{self.iso_sha256!r}); copy it from Proxmox's SHA256SUMS for that ISO, or pass "
            "--iso-sha256 / set PVELAB_ISO_SHA256"
        )


class _Reader:
    """Typed access to the parsed TOML that collects every problem with its key path."""

    def __init__(self, data: Mapping[str, Any], path: Path) -> None:
        self.data = data
        self.path = path
        self.problems: list[str] = []

    def get(self, dotted: str, kind: type, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is not None:
                    return default
                self.problems.append(f"{dotted}: missing")
                return kind()
            node = node[part]
        if kind is int and isinstance(node, bool) or not isinstance(node, kind):
            self.problems.append(f"{dotted}: expected {kind.__name__}, got {node!r}")
            return kind()
        return node

    def path_of(self, dotted: str) -> Path:
        value = Path(self.get(dotted, str))
        return value if value.is_absolute() else (self.path.parent / value)


def load_config(path: Path = DEFAULT_CONFIG, **overrides: str | None) -> Config:
    """Read config.toml. Overrides (iso_url, iso_sha256, work_dir, cache_dir) win when set."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    r = _Reader(data, path)
    problems = r.problems

    network_text = r.get("network.cidr", str)
    try:
        network = ipaddress.IPv4Network(network_text)
    except ValueError:
        problems.append(f"network.cidr: {network_text!r} is not an IPv4 network like 10.251.0.0/24")
        network = ipaddress.IPv4Network("10.251.0.0/24")

    def in_network(key: str, value: str) -> None:
        try:
            if ipaddress.IPv4Address(value) not in network:
                problems.append(f"{key}: {value} is outside network.cidr {network}")
        except ValueError:
            problems.append(f"{key}: {value!r} is not an IPv4 address")

    gateway = r.get("network.gateway", str)
    dns = r.get("network.dns", str)
    in_network("network.gateway", gateway)
    try:
        ipaddress.IPv4Address(dns)
    except ValueError:
        problems.append(f"network.dns: {dns!r} is not an IPv4 address")

    nodes: list[Node] = []
    for i, raw in enumerate(r.get("nodes.list", list)):
        key = f"nodes.list[{i}]"
        if not isinstance(raw, Mapping) or set(raw) != {"name", "ip", "mac"}:
            problems.append(f"{key}: expected {{ name, ip, mac }}, got {raw!r}")
            continue
        name, ip, mac = str(raw["name"]), str(raw["ip"]), str(raw["mac"]).lower()
        if not NAME.fullmatch(name):
            problems.append(f"{key}.name: {name!r} is not a host name")
        in_network(f"{key}.ip", ip)
        if ip == gateway:
            problems.append(f"{key}.ip: {ip} is the gateway (the host's address on the bridge)")
        if not MAC.fullmatch(mac):
            problems.append(f"{key}.mac: {mac!r} is not a MAC address like 52:54:00:fb:00:11")
        nodes.append(Node(name=name, ip=ip, mac=mac, index=i + 1))
    if len(nodes) < 2:
        problems.append("nodes.list: a cluster needs at least two nodes")
    for attr in ("name", "ip", "mac"):
        values = [getattr(n, attr) for n in nodes]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            problems.append(f"nodes.list: duplicate {attr} {', '.join(dupes)}")

    guests: list[Guest] = []
    raw_guests = data.get("guests", [])
    if not isinstance(raw_guests, list):
        problems.append("guests: expected an array of tables ([[guests]])")
        raw_guests = []
    node_names = {n.name for n in nodes}
    for i, raw in enumerate(raw_guests):
        key = f"guests[{i}]"
        if not isinstance(raw, Mapping) or set(raw) != {"vmid", "node", "kind", "memory_mib"}:
            problems.append(f"{key}: expected vmid, node, kind, memory_mib; got {raw!r}")
            continue
        vmid, gnode, kind, mem = raw["vmid"], raw["node"], raw["kind"], raw["memory_mib"]
        if not isinstance(vmid, int) or isinstance(vmid, bool) or not 100 <= vmid <= 999_999_999:
            problems.append(f"{key}.vmid: {vmid!r} is not a VMID (100 to 999999999)")
        if gnode not in node_names:
            known = ", ".join(sorted(node_names))
            problems.append(f"{key}.node: {gnode!r} is not one of the nodes ({known})")
        if kind not in GUEST_KINDS:
            problems.append(f"{key}.kind: {kind!r} is not one of {', '.join(GUEST_KINDS)}")
        if not isinstance(mem, int) or isinstance(mem, bool) or mem < 16:
            problems.append(f"{key}.memory_mib: {mem!r} is not a memory size in MiB (>= 16)")
        guests.append(Guest(vmid=int(vmid), node=str(gnode), kind=str(kind), memory_mib=int(mem)))
    vmids = [g.vmid for g in guests]
    if len(set(vmids)) != len(vmids):
        problems.append("guests: duplicate vmid")

    label = r.get("assistant.partition_label", str)
    if not 1 <= len(label) <= 11:
        problems.append(f"assistant.partition_label: {label!r} must be 1 to 11 characters (FAT)")
    sha_override = overrides.get("iso_sha256")
    work_override, cache_override = overrides.get("work_dir"), overrides.get("cache_dir")
    iso_sha = (sha_override or r.get("iso.sha256", str)).strip().lower()
    timeouts = Timeouts(
        download_s=r.get("timeouts.download_s", int),
        install_s=r.get("timeouts.install_s", int),
        api_s=r.get("timeouts.api_s", int),
        cluster_s=r.get("timeouts.cluster_s", int),
        command_s=r.get("timeouts.command_s", int),
    )
    privileges = r.get("token.privileges", list)
    if not all(isinstance(p, str) and p for p in privileges):
        problems.append(f"token.privileges: expected privilege names, got {privileges!r}")

    cfg = Config(
        path=path,
        iso_version=r.get("iso.version", str),
        iso_file=r.get("iso.file", str),
        iso_url=overrides.get("iso_url") or r.get("iso.url", str),
        iso_sha256=iso_sha,
        container_engine=r.get("assistant.container_engine", str),
        assistant_image=r.get("assistant.image", str),
        assistant_repository=r.get("assistant.repository", str),
        keyring_url=r.get("assistant.keyring_url", str),
        keyring_sha256=r.get("assistant.keyring_sha256", str).lower(),
        partition_label=label,
        work_dir=Path(work_override).resolve() if work_override else r.path_of("host.work_dir"),
        cache_dir=Path(cache_override).resolve() if cache_override else r.path_of("host.cache_dir"),
        nfs_dir=r.path_of("host.nfs_dir"),
        bridge=r.get("host.bridge", str),
        tap_prefix=r.get("host.tap_prefix", str),
        ovmf_code=r.path_of("host.ovmf_code"),
        ovmf_vars=r.path_of("host.ovmf_vars"),
        busybox=r.path_of("host.busybox"),
        network=network,
        gateway=gateway,
        dns=dns,
        domain=r.get("network.domain", str),
        keyboard=r.get("install.keyboard", str),
        country=r.get("install.country", str),
        timezone=r.get("install.timezone", str),
        mailto=r.get("install.mailto", str),
        filesystem=r.get("install.filesystem", str),
        disk=r.get("install.disk", str),
        first_boot_ordering=r.get("install.first_boot_ordering", str),
        node_memory_mib=r.get("nodes.memory_mib", int),
        node_cores=r.get("nodes.cores", int),
        node_disk_gib=r.get("nodes.disk_gib", int),
        nodes=tuple(nodes),
        cluster_name=r.get("cluster.name", str),
        storage=r.get("cluster.storage", str),
        nfs_options=r.get("cluster.nfs_options", str),
        token_user=r.get("token.user", str),
        token_name=r.get("token.name", str),
        role=r.get("token.role", str),
        privileges=tuple(str(p) for p in privileges),
        timeouts=timeouts,
        guests=tuple(guests),
    )
    # The NFS directory defaults to a path under the work dir; follow a --work-dir override.
    default_nfs = r.path_of("host.work_dir")
    if overrides.get("work_dir") and cfg.nfs_dir.is_relative_to(default_nfs):
        cfg = dataclasses.replace(cfg, nfs_dir=cfg.work_dir / cfg.nfs_dir.relative_to(default_nfs))
    if cfg.keyring_sha256 and not HEX64.fullmatch(cfg.keyring_sha256):
        problems.append("assistant.keyring_sha256: not a SHA-256 (64 hex digits)")
    if cfg.first_boot_ordering not in ("before-network", "network-online", "fully-up"):
        problems.append(
            "install.first_boot_ordering: expected before-network, network-online or fully-up"
        )
    if len(cfg.tap_prefix) + len(str(len(nodes))) > 15 or len(cfg.bridge) > 15:
        problems.append(
            "host.bridge / host.tap_prefix: Linux interface names are at most 15 characters"
        )
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return cfg


# ---------------------------------------------------------------------------------------------
# Answer files


def answer_document(
    cfg: Config, node: Node, *, root_password: str, ssh_public_key: str
) -> dict[str, Any]:
    """The answer file of one node, with the key names of the current (PVE 8.4+/9) installer."""
    return {
        "global": {
            "keyboard": cfg.keyboard,
            "country": cfg.country,
            "fqdn": f"{node.name}.{cfg.domain}",
            "mailto": cfg.mailto,
            "timezone": cfg.timezone,
            "root-password": root_password,
            "root-ssh-keys": [ssh_public_key],
            # Power off instead of rebooting, so QEMU exits when the install is done and `up`
            # can boot the node without the ISO (and cache the installed disk).
            "reboot-mode": "power-off",
            "reboot-on-error": False,
        },
        "network": {
            "source": "from-answer",
            "cidr": f"{node.ip}/{cfg.network.prefixlen}",
            "dns": cfg.dns,
            "gateway": cfg.gateway,
            # udev's ID_NET_NAME_MAC is "enx" + the MAC without colons.
            "filter": {"ID_NET_NAME_MAC": f"*{node.mac_hex}"},
        },
        "disk-setup": {
            "filesystem": cfg.filesystem,
            "disk-list": [cfg.disk],
        },
        "first-boot": {
            "source": "from-iso",
            "ordering": cfg.first_boot_ordering,
        },
    }


def render_answer(cfg: Config, node: Node, *, root_password: str, ssh_public_key: str) -> str:
    header = (
        f"# answer.toml for {node.name}: written by nested-pve/pvelab.py; see the Proxmox wiki,\n"
        '# "Automated Installation". Holds the lab\'s root password: keep it in the work dir.\n'
    )
    doc = answer_document(cfg, node, root_password=root_password, ssh_public_key=ssh_public_key)
    return header + toml_dumps(doc)


# ---------------------------------------------------------------------------------------------
# The env file the test suite reads


def env_file_text(values: Mapping[str, str], *, comment: str = "") -> str:
    """``export NAME=value`` lines (shell-quoted), the same shape the emulator prints."""
    lines = [f"# {line}" for line in comment.splitlines()]
    for name, value in values.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            raise ValueError(f"{name!r} is not an environment variable name")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def read_env_file(path: Path) -> dict[str, str]:
    """Read what `env_file_text` wrote (shlex does the quoting rules; comments are skipped)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            words = words[1:]
        if len(words) != 1 or "=" not in words[0]:
            raise ValueError(f"{path}:{number}: expected 'export NAME=value'")
        name, _, value = words[0].partition("=")
        values[name] = value
    return values


def cluster_env_values(
    cfg: Config, *, token_id: str, token_secret: str, ca_file: Path, ssh_config: Path
) -> dict[str, str]:
    alive = [g.vmid for g in cfg.guests if g.kind == "alive"]
    values = {
        "PVETOOL_HOST": ",".join(f"{n.ip}:8006" for n in cfg.nodes),
        "PVETOOL_TOKEN": f"{token_id}={token_secret}",
        "PVETOOL_VERIFY": str(ca_file),
        "PVELAB_NODES": ",".join(n.name for n in cfg.nodes),
        "PVELAB_SSH_CONFIG": str(ssh_config),
        "PVELAB_STORAGE": cfg.storage,
    }
    if alive:
        values["PVELAB_ALIVE_VMID"] = str(alive[0])
    return values


# ---------------------------------------------------------------------------------------------
# Running things


@dataclass
class Completed:
    returncode: int
    stdout: str


class Runner:
    """The one funnel for external actions; prints them, and in a dry run only prints them."""

    def __init__(
        self,
        *,
        dry_run: bool,
        out: TextIO,
        log_path: Path | None = None,
        total_steps: int = 0,
        command_timeout_s: int = 600,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dry_run = dry_run
        self.out = out
        self.log_path = log_path
        self.total_steps = total_steps
        self.command_timeout_s = command_timeout_s
        self.sleep = sleep
        self.clock = clock
        self.step_number = 0
        self._secrets: list[str] = []

    def hide(self, *values: str) -> None:
        self._secrets.extend(v for v in values if v)

    def redact(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, "***")
        return text

    def say(self, text: str) -> None:
        self.out.write(self.redact(text) + "\n")
        self.out.flush()
        self._log(text)

    def _log(self, text: str) -> None:
        if self.dry_run or self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(self.redact(text) + "\n")

    def step(self, name: str, title: str) -> None:
        self.step_number += 1
        width = len(str(self.total_steps or self.step_number))
        self.say(f"[{self.step_number:>{width}}/{self.total_steps}] {name}: {title}")

    def note(self, text: str) -> None:
        self.say(f"    - {text}")

    def warn(self, text: str) -> None:
        self.say(f"    ! {text}")

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        check: bool = True,
        input_text: str | None = None,
        cwd: Path | None = None,
        stdout_path: Path | None = None,
        timeout_s: int | None = None,
        dry_output: str = "",
        display: str | None = None,
        daemon: bool = False,
    ) -> Completed:
        """Run `argv` (never through a shell). `display` replaces shlex.join(argv) in the output,
        for ssh: ``ssh pve1: CMD`` stands for ``ssh -F <work>/ssh_config pve1 'CMD'``."""
        args = [str(a) for a in argv]
        shown = display if display is not None else shlex.join(args)
        if cwd is not None:
            shown = f"(cd {shlex.quote(str(cwd))} && {shown})"
        if stdout_path is not None:
            shown += f" > {shlex.quote(str(stdout_path))}"
        if input_text is not None:
            shown += (
                " <<'EOF'\n"
                + "".join(f"      {line}\n" for line in input_text.splitlines())
                + "      EOF"
            )
        self.say(f"    $ {shown}")
        if self.dry_run:
            return Completed(0, dry_output)
        stdout_file = stdout_path.open("wb") if stdout_path is not None else None
        try:
            stdin: dict[str, Any] = (
                {"input": input_text.encode()}
                if input_text is not None
                else {"stdin": subprocess.DEVNULL}
            )
            if daemon:
                # A daemonizing command (qemu -daemonize, dnsmasq): its child must not hold
                # pipes of ours open, or run() would wait for it; its output goes to the log.
                stdout_file = (
                    self.log_path.open("ab")
                    if self.log_path is not None
                    else open(os.devnull, "wb")
                )
            proc = subprocess.run(
                args,
                **stdin,
                stdout=stdout_file if stdout_file is not None else subprocess.PIPE,
                stderr=stdout_file if daemon else subprocess.PIPE,
                cwd=cwd,
                timeout=timeout_s or self.command_timeout_s,
                check=False,
            )
        except FileNotFoundError as exc:
            raise LabError(
                f"{args[0]} is not installed (needed for: {self.redact(shown)})"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise LabError(
                f"this command did not finish within {exc.timeout:.0f} s: {self.redact(shown)}"
            ) from exc
        finally:
            if stdout_file is not None:
                stdout_file.close()
        stdout = proc.stdout.decode(errors="replace") if proc.stdout is not None else ""
        stderr = proc.stderr.decode(errors="replace") if proc.stderr is not None else ""
        if stderr.strip():
            self._log(stderr.rstrip())
        if check and proc.returncode != 0:
            tail = "\n".join(stderr.strip().splitlines()[-15:])
            raise LabError(
                f"this command failed with exit code {proc.returncode}: {self.redact(shown)}"
                + (f"\n{self.redact(tail)}" if tail else "")
            )
        return Completed(proc.returncode, stdout)

    def capture_json(
        self,
        argv: Sequence[str | Path],
        *,
        dry_value: Any,
        check: bool = True,
        display: str | None = None,
    ) -> Any:
        """Run a command that prints JSON (pvesh/pveum --output-format json, qemu-img ...)."""
        done = self.run(argv, check=check, dry_output=json.dumps(dry_value), display=display)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise LabError(
                f"expected JSON from {shlex.join(map(str, argv))}, got: {done.stdout[:200]!r}"
            ) from exc

    def write_text(self, path: Path, text: str, *, mode: int = 0o600, show: bool = False) -> None:
        self.note(f"write {path} ({len(text.encode())} bytes, mode {mode:o})")
        if show:
            for line in text.splitlines():
                self.say(f"        | {line}")
        if self.dry_run:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def wait(
        self, what: str, ready: Callable[[], bool], *, timeout_s: float, interval_s: float = 5.0
    ) -> None:
        """Poll `ready` until it is true; the one waiting loop of this tool."""
        self.note(f"wait until {what} (every {interval_s:g} s, at most {timeout_s:g} s)")
        if self.dry_run:
            return
        deadline = self.clock() + timeout_s
        while True:
            if ready():
                return
            if self.clock() >= deadline:
                raise LabError(f"gave up after {timeout_s:g} s waiting until {what}")
            self.sleep(interval_s)


# ---------------------------------------------------------------------------------------------
# What `up` created: recorded before it is created, removed by `down`.


class State:
    def __init__(self, path: Path, *, persist: bool) -> None:
        self.path = path
        self.persist = persist
        self.resources: list[dict[str, Any]] = []
        if path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise LabError(f"the lab state {path} is unreadable: {exc}") from exc
            self.resources = list(loaded.get("resources", []))

    def record(self, kind: str, **data: Any) -> None:
        entry = {"kind": kind, **data}
        if entry in self.resources:
            return
        self.resources.append(entry)
        self._save()

    def forget(self, entry: Mapping[str, Any]) -> None:
        self.resources = [r for r in self.resources if r != entry]
        self._save()

    def _save(self) -> None:
        if not self.persist:
            return
        if not self.resources:
            # After `down`: no file, and no directory recreated for it.
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resources": self.resources}, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


# ---------------------------------------------------------------------------------------------
# Paths


@dataclass(frozen=True)
class Paths:
    cfg: Config

    @property
    def work(self) -> Path:
        return self.cfg.work_dir

    @property
    def state(self) -> Path:
        return self.work / "state.json"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    @property
    def run(self) -> Path:
        return self.work / "run"

    def node_dir(self, node: Node) -> Path:
        return self.work / "nodes" / node.name

    def answer(self, node: Node) -> Path:
        return self.work / "answers" / node.name / "answer.toml"

    @property
    def assistant(self) -> Path:
        return self.work / "assistant"

    @property
    def ssh_config(self) -> Path:
        return self.work / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.work / "known_hosts"

    @property
    def ca_file(self) -> Path:
        return self.work / "pve-root-ca.pem"

    @property
    def env_file(self) -> Path:
        return self.cfg.path.parent / "cluster.env"

    @property
    def iso_dir(self) -> Path:
        return self.cfg.cache_dir / "iso"

    @property
    def iso(self) -> Path:
        return self.iso_dir / self.cfg.iso_file

    @property
    def credentials(self) -> Path:
        return self.cfg.cache_dir / "credentials"

    @property
    def ssh_key(self) -> Path:
        return self.credentials / "id_ed25519"

    @property
    def root_password(self) -> Path:
        return self.credentials / "root-password"

    def images(self, key: str) -> Path:
        return self.cfg.cache_dir / "images" / key

    @property
    def alive_host_dir(self) -> Path:
        return self.cfg.nfs_dir / ALIVE_DIR

    def alive_node_dir(self) -> str:
        return f"/mnt/pve/{self.cfg.storage}/{ALIVE_DIR}"


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def _file_bytes(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


# ---------------------------------------------------------------------------------------------
# up


UP_STEPS: tuple[tuple[str, str], ...] = (
    ("config", "check the configuration and the pinned ISO checksum"),
    ("preflight", "check the host (root, /dev/kvm, nested virtualisation, tools)"),
    ("credentials", "lab credentials: SSH key, root password, ssh_config"),
    ("download", "download the ISO and verify its SHA-256"),
    ("answers", "render one answer file per node"),
    ("prepare-iso", "validate the answer files, prepare the ISO (proxmox-auto-install-assistant)"),
    ("answer-images", "build one answer image per node (FAT, label PROXMOX-AIS)"),
    ("network", "host bridge, NAT and DNS for the nodes"),
    ("install", "install Proxmox VE on the nodes (QEMU/KVM, powers off when done)"),
    ("boot", "start the nodes"),
    ("wait-api", "wait for the API on port 8006 and the first-boot hook"),
    ("check-nodes", f"check the nodes (pve-qemu-kvm >= {MIN_PVE_QEMU} for the TCG test guests)"),
    ("cluster", "create the cluster and join the other nodes"),
    ("nfs", "export an NFS share from the host"),
    ("storage", "add the NFS share as shared storage"),
    ("token", "create the pvetool user, role and API token; fetch the cluster CA"),
    ("guests", "create the test guests"),
    ("env", "write cluster.env"),
)


@dataclass
class Lab:
    cfg: Config
    runner: Runner
    state: State
    paths: Paths
    out: TextIO
    root_password: str = "<root-password>"
    ssh_public_key: str = "ssh-ed25519 <public key of the lab> pvelab"
    token_id: str = ""
    token_secret: str = ""
    direct_assistant: bool = False

    # -- helpers -------------------------------------------------------------------------------

    def ssh(self, node: Node, remote: Sequence[str] | str, **kw: Any) -> Completed:
        command = remote if isinstance(remote, str) else shlex.join(remote)
        return self.runner.run(
            ["ssh", "-F", self.paths.ssh_config, node.name, command],
            display=f"ssh {node.name}: {command}",
            **kw,
        )

    def ssh_json(self, node: Node, remote: Sequence[str], *, dry_value: Any) -> Any:
        command = shlex.join(remote)
        return self.runner.capture_json(
            ["ssh", "-F", self.paths.ssh_config, node.name, command],
            dry_value=dry_value,
            display=f"ssh {node.name}: {command}",
        )

    def _probe(
        self, node: Node, remote: Sequence[str]
    ) -> subprocess.CompletedProcess[bytes] | None:
        """For waiting: a quiet ssh call (not printed; the wait itself is). None on timeout."""
        try:
            return subprocess.run(
                ["ssh", "-F", str(self.paths.ssh_config), node.name, shlex.join(remote)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None

    def ssh_ok(self, node: Node, remote: Sequence[str]) -> bool:
        proc = self._probe(node, remote)
        return proc is not None and proc.returncode == 0

    def ssh_json_quiet(self, node: Node, remote: Sequence[str]) -> Any:
        proc = self._probe(node, remote)
        if proc is None or proc.returncode != 0:
            return None
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            return None

    @property
    def first(self) -> Node:
        return self.cfg.nodes[0]

    def prepared_iso(self) -> Path:
        key = _digest(
            self.cfg.iso_sha256, _file_bytes(FIRST_BOOT_SCRIPT), self.cfg.partition_label
        )[:12]
        return self.paths.iso_dir / f"{Path(self.cfg.iso_file).stem}-pvelab-{key}.iso"

    def answer_text(self, node: Node) -> str:
        return render_answer(
            self.cfg, node, root_password=self.root_password, ssh_public_key=self.ssh_public_key
        )

    def image_key(self) -> str:
        parts: list[bytes | str] = [self.prepared_iso().name, str(self.cfg.node_disk_gib)]
        parts += [self.answer_text(n) for n in self.cfg.nodes]
        return _digest(*parts)[:16]

    def installed_images(self) -> Path | None:
        """The cached installed disks for exactly these answer files and ISO, if complete."""
        images = self.paths.images(self.image_key())
        return images if (images / "complete").exists() else None

    def tap(self, node: Node) -> str:
        return f"{self.cfg.tap_prefix}{node.index}"

    def qemu_name(self, node: Node) -> str:
        return f"pvelab-{node.name}"

    def begin(self) -> None:
        """Record the work directory first: `down` removes it last, with all `up` put in it."""
        self.state.record("path", path=str(self.paths.work))

    # -- the steps -----------------------------------------------------------------------------

    def step_config(self) -> None:
        cfg = self.cfg
        self.runner.note(f"configuration {cfg.path}")
        self.runner.note(f"ISO {cfg.iso_file} (Proxmox VE {cfg.iso_version}) from {cfg.iso_url}")
        problem = cfg.checksum_problem()
        if problem is None:
            self.runner.note(f"pinned SHA-256 {cfg.iso_sha256}")
        elif self.runner.dry_run:
            self.runner.warn(problem + " -- a real run stops here")
        else:
            raise ConfigError(problem)
        self.runner.note(
            f"nodes {', '.join(f'{n.name} {n.ip}' for n in cfg.nodes)} on {cfg.network} "
            f"(bridge {cfg.bridge}, host {cfg.host_ip}); work dir {cfg.work_dir}; "
            f"cache {cfg.cache_dir}"
        )

    def step_preflight(self) -> None:
        cfg = self.cfg
        tools = [
            "qemu-system-x86_64",
            "qemu-img",
            "ip",
            "iptables",
            "sysctl",
            "exportfs",
            "dnsmasq",
            "ssh",
            "scp",
            "ssh-keygen",
            "curl",
            "mkfs.fat",
            "mcopy",
        ]
        if any(g.kind == "alive" for g in cfg.guests):
            tools.append("cpio")
        self.direct_assistant = shutil.which("proxmox-auto-install-assistant") is not None
        if not self.direct_assistant:
            tools.append(cfg.container_engine)
        files = [cfg.ovmf_code, cfg.ovmf_vars]
        if any(g.kind == "alive" for g in cfg.guests):
            files.append(cfg.busybox)
        self.runner.note("running as root (bridge, NAT, NFS export and taps need it)")
        self.runner.note("/dev/kvm is a read-write character device")
        self.runner.note(f"tools on PATH: {' '.join(tools)}")
        self.runner.note(f"files: {' '.join(map(str, files))}")
        self.runner.note(
            "proxmox-auto-install-assistant: "
            + (
                "on this host"
                if self.direct_assistant
                else f"in a {cfg.assistant_image} container ({cfg.container_engine})"
            )
        )
        if self.runner.dry_run:
            return
        problems: list[str] = []
        if os.geteuid() != 0:
            problems.append(
                "run as root (sudo nested-pve/up): the bridge, NAT, NFS export "
                "and tap devices need it"
            )
        if not (Path("/dev/kvm").exists() and os.access("/dev/kvm", os.R_OK | os.W_OK)):
            problems.append("/dev/kvm is missing or not read-writable: this host cannot run KVM")
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            problems.append(f"missing tools: {', '.join(missing)} (README.md, Requirements)")
        absent = [str(f) for f in files if not f.exists()]
        if absent:
            problems.append(f"missing files: {', '.join(absent)}")
        if problems:
            raise LabError("the host is not ready: " + "; ".join(problems))
        nested = [
            p
            for p in (
                Path("/sys/module/kvm_intel/parameters/nested"),
                Path("/sys/module/kvm_amd/parameters/nested"),
            )
            if p.exists()
        ]
        if nested and nested[0].read_text().strip() in ("Y", "1"):
            self.runner.note(f"nested virtualisation is on ({nested[0]})")
        else:
            self.runner.warn(
                "nested virtualisation is off or unknown: the nodes run, and the "
                "test guests run anyway (kvm=0), only slower guests are affected"
            )

    def step_credentials(self) -> None:
        paths = self.paths
        if not self.runner.dry_run:
            paths.credentials.mkdir(parents=True, exist_ok=True)
            os.chmod(paths.credentials, 0o700)
        if paths.ssh_key.exists():
            self.runner.note(f"reuse the lab SSH key {paths.ssh_key}")
        else:
            self.runner.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pvelab", "-f", paths.ssh_key]
            )
        if paths.root_password.exists():
            self.runner.note(f"reuse the lab root password in {paths.root_password}")
        else:
            self.runner.write_text(paths.root_password, secrets.token_urlsafe(18) + "\n")
        # Read back what exists (a dry run too: the cache key of the installed disks depends
        # on the answer files, which hold these).
        public_key = paths.ssh_key.with_suffix(".pub")
        if paths.root_password.exists() and public_key.exists():
            self.root_password = paths.root_password.read_text(encoding="utf-8").strip()
            self.ssh_public_key = public_key.read_text(encoding="utf-8").strip()
            self.runner.hide(self.root_password)
        lines = [f"# written by nested-pve/pvelab.py: ssh -F {paths.ssh_config} pve1"]
        for n in self.cfg.nodes:
            lines += [f"Host {n.name}", f"    HostName {n.ip}"]
        lines += [
            "Host *",
            "    User root",
            f"    IdentityFile {paths.ssh_key}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {paths.known_hosts}",
            "    StrictHostKeyChecking accept-new",
            "    BatchMode yes",
            "    ConnectTimeout 10",
            "    ServerAliveInterval 15",
            "    LogLevel ERROR",
        ]
        self.runner.write_text(paths.ssh_config, "\n".join(lines) + "\n", mode=0o644)
        self.runner.note(
            f"below, 'ssh pveN: CMD' runs CMD as root on pveN: ssh -F {paths.ssh_config} pveN 'CMD'"
        )

    def step_download(self) -> None:
        iso = self.paths.iso
        cfg = self.cfg
        if iso.exists():
            self.runner.note(f"cached: {iso}")
        else:
            part = iso.with_name(iso.name + ".part")
            self.runner.run(["mkdir", "-p", self.paths.iso_dir])
            self.runner.run(
                [
                    "curl",
                    "--fail",
                    "--location",
                    "--retry",
                    "3",
                    "--silent",
                    "--show-error",
                    "--output",
                    part,
                    cfg.iso_url,
                ],
                timeout_s=cfg.timeouts.download_s,
            )
            self._verify_sha256(part, cfg.iso_sha256, drop_on_mismatch=True)
            self.runner.note(f"rename {part.name} -> {iso.name}")
            if not self.runner.dry_run:
                os.replace(part, iso)
            return
        self._verify_sha256(iso, cfg.iso_sha256, drop_on_mismatch=False)

    def _verify_sha256(self, path: Path, expected: str, *, drop_on_mismatch: bool) -> None:
        self.runner.note(f"verify SHA-256 of {path.name} == {expected}")
        if self.runner.dry_run:
            return
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != expected:
            if drop_on_mismatch:
                path.unlink()
            raise LabError(
                f"{path} has SHA-256 {h.hexdigest()}, not the pinned {expected}: "
                + (
                    "the download was removed; check iso.url and iso.sha256 in config.toml"
                    if drop_on_mismatch
                    else "delete it and run up again"
                )
            )

    def step_answers(self) -> None:
        for node in self.cfg.nodes:
            self.runner.write_text(self.paths.answer(node), self.answer_text(node))

    def step_prepare_iso(self) -> None:
        cfg, paths = self.cfg, self.paths
        prepared = self.prepared_iso()
        if self.installed_images() is not None:
            # The cache key covers the answer files: they were validated for that install.
            self.runner.note(
                "the nodes' installed disks are cached for these answer files: "
                "nothing to validate or prepare"
            )
            return
        need_prepare = not prepared.exists()
        if not need_prepare:
            self.runner.note(f"cached: {prepared}")
        if self.direct_assistant:
            for node in cfg.nodes:
                self.runner.run(
                    ["proxmox-auto-install-assistant", "validate-answer", paths.answer(node)]
                )
            if need_prepare:
                self.runner.run(self._prepare_argv(paths.iso, prepared, FIRST_BOOT_SCRIPT))
            return
        # In a Debian 13 container: the tool, and Proxmox's repository key checked by SHA-256.
        keyring = "/usr/share/keyrings/proxmox-archive-keyring.gpg"
        self.runner.write_text(
            paths.assistant / "keyring.sha256", f"{cfg.keyring_sha256}  {keyring}\n", mode=0o644
        )
        self.runner.write_text(
            paths.assistant / "pve.list", cfg.assistant_repository + "\n", mode=0o644
        )
        inner: list[list[str]] = [
            ["apt-get", "update", "-qq"],
            [
                "apt-get",
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "ca-certificates",
                "curl",
                "xorriso",
            ],
            ["curl", "-fsSL", "-o", keyring, cfg.keyring_url],
            ["sha256sum", "--check", "--strict", "/work/assistant/keyring.sha256"],
            ["cp", "/work/assistant/pve.list", "/etc/apt/sources.list.d/pve.list"],
            ["apt-get", "update", "-qq"],
            [
                "apt-get",
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "proxmox-auto-install-assistant",
            ],
            ["proxmox-auto-install-assistant", "--version"],
        ]
        for node in cfg.nodes:
            inner.append(
                [
                    "proxmox-auto-install-assistant",
                    "validate-answer",
                    f"/work/answers/{node.name}/answer.toml",
                ]
            )
        if need_prepare:
            inner.append(
                self._prepare_argv(
                    f"/iso/{cfg.iso_file}", f"/iso/{prepared.name}", "/lab/first-boot.sh"
                )
            )
        script = "set -euo pipefail\nexport DEBIAN_FRONTEND=noninteractive\n" + "".join(
            shlex.join(c) + "\n" for c in inner
        )
        self.runner.write_text(paths.assistant / "run.sh", script, mode=0o644, show=True)
        self.runner.run(
            [
                cfg.container_engine,
                "run",
                "--rm",
                "-v",
                f"{paths.iso_dir}:/iso",
                "-v",
                f"{paths.work}:/work",
                "-v",
                f"{HERE}:/lab:ro",
                cfg.assistant_image,
                "bash",
                "/work/assistant/run.sh",
            ],
            timeout_s=cfg.timeouts.download_s,
        )

    def _prepare_argv(
        self, iso: Path | str, output: Path | str, first_boot: Path | str
    ) -> list[str]:
        return [
            "proxmox-auto-install-assistant",
            "prepare-iso",
            str(iso),
            "--fetch-from",
            "partition",
            "--partition-label",
            self.cfg.partition_label,
            "--on-first-boot",
            str(first_boot),
            "--output",
            str(output),
        ]

    def step_answer_images(self) -> None:
        if self.installed_images() is not None:
            self.runner.note("the nodes' installed disks are cached: no installation, no images")
            return
        for node in self.cfg.nodes:
            image = self.paths.node_dir(node) / "answer.img"
            self.runner.run(["mkdir", "-p", image.parent])
            self.runner.run(["rm", "-f", image])
            # A whole-disk FAT file system; the installer finds it by label under
            # /dev/disk/by-label and reads answer.toml from its root.
            self.runner.run(["mkfs.fat", "-C", "-n", self.cfg.partition_label, image, "1024"])
            # MTOOLS_SKIP_CHECK: mtools would object to the geometry of a file-backed image.
            self.runner.run(
                [
                    "env",
                    "MTOOLS_SKIP_CHECK=1",
                    "mcopy",
                    "-i",
                    image,
                    self.paths.answer(node),
                    "::answer.toml",
                ]
            )

    def step_network(self) -> None:
        cfg, paths, st = self.cfg, self.paths, self.state
        self.runner.run(["mkdir", "-p", paths.run, paths.logs])
        st.record("link", name=cfg.bridge)
        self.runner.run(["ip", "link", "add", cfg.bridge, "type", "bridge"])
        self.runner.run(
            ["ip", "address", "add", f"{cfg.host_ip}/{cfg.network.prefixlen}", "dev", cfg.bridge]
        )
        self.runner.run(["ip", "link", "set", cfg.bridge, "up"])
        previous = self.runner.run(
            ["sysctl", "-n", "net.ipv4.ip_forward"], dry_output="0\n"
        ).stdout.strip()
        if previous != "1":
            st.record("sysctl", key="net.ipv4.ip_forward", previous=previous)
            self.runner.run(["sysctl", "-w", "net.ipv4.ip_forward=1"])
        # iptables (iptables-nft on current distributions) rather than a separate nftables
        # table: Docker's FORWARD policy DROP, present on CI runners, would win over an accept
        # in another table; inserting into the same FORWARD chain does not have that problem.
        rules = [
            (
                "nat",
                "POSTROUTING",
                ["-s", str(cfg.network), "!", "-o", cfg.bridge, "-j", "MASQUERADE"],
            ),
            ("filter", "FORWARD", ["-i", cfg.bridge, "-j", "ACCEPT"]),
            ("filter", "FORWARD", ["-o", cfg.bridge, "-j", "ACCEPT"]),
        ]
        for table, chain, rule in rules:
            st.record("iptables", table=table, chain=chain, rule=rule)
            self.runner.run(["iptables", "-t", table, "-I", chain, "1", *rule])
        for node in cfg.nodes:
            tap = self.tap(node)
            st.record("link", name=tap)
            self.runner.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
            self.runner.run(["ip", "link", "set", tap, "master", cfg.bridge, "up"])
        pidfile = paths.run / "dnsmasq.pid"
        st.record("process", name="dnsmasq", pidfile=str(pidfile), marker=str(pidfile))
        self.runner.run(
            [
                "dnsmasq",
                "--conf-file=/dev/null",
                f"--interface={cfg.bridge}",
                "--except-interface=lo",
                "--bind-interfaces",
                f"--no-dhcp-interface={cfg.bridge}",
                f"--local=/{cfg.domain}/",
                f"--pid-file={pidfile}",
                "--user=nobody",
                *[f"--host-record={n.name}.{cfg.domain},{n.name},{n.ip}" for n in cfg.nodes],
            ],
            daemon=True,
        )

    def _qemu_argv(
        self, node: Node, *, install: bool, disk: Path, vars_fd: Path, pidfile: Path
    ) -> list[str]:
        cfg, paths = self.cfg, self.paths
        name = self.qemu_name(node)
        argv = [
            "qemu-system-x86_64",
            "-name",
            f"{name},process={name}",
            "-machine",
            "q35,accel=kvm",
            "-cpu",
            "host",
            "-smp",
            str(cfg.node_cores),
            "-m",
            str(cfg.node_memory_mib),
            # UEFI: SeaBIOS + q35 + a SATA CD-ROM is known to fault in PVE's GRUB.
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={cfg.ovmf_code}",
            "-drive",
            f"if=pflash,format=raw,file={vars_fd}",
            "-drive",
            f"if=none,id=disk0,file={disk},format=qcow2,discard=unmap,"
            f"cache={'unsafe' if install else 'writeback'}",
            "-device",
            f"virtio-blk-pci,drive=disk0,bootindex={2 if install else 1}",
            "-device",
            "qemu-xhci,id=xhci",
            "-device",
            "usb-tablet,bus=xhci.0",
            "-netdev",
            f"tap,id=net0,ifname={self.tap(node)},script=no,downscript=no",
            "-device",
            f"virtio-net-pci,netdev=net0,mac={node.mac}",
            "-chardev",
            f"socket,id=serial0,path={paths.run / f'{node.name}-serial.sock'},"
            f"server=on,wait=off,logfile={paths.logs / f'{node.name}-serial.log'},"
            "logappend=on",
            "-serial",
            "chardev:serial0",
            "-qmp",
            f"unix:{paths.run / f'{node.name}-qmp.sock'},server=on,wait=off",
            "-vnc",
            f"unix:{paths.run / f'{node.name}-vnc.sock'}",
        ]
        if install:
            answer_img = paths.node_dir(node) / "answer.img"
            argv += [
                "-drive",
                f"if=none,id=cd0,media=cdrom,readonly=on,file={self.prepared_iso()}",
                "-device",
                "ide-cd,bus=ide.0,drive=cd0,bootindex=1",
                # The answer image as a USB stick, the way the documentation describes it.
                "-drive",
                f"if=none,id=ais,format=raw,readonly=on,file={answer_img}",
                "-device",
                "usb-storage,bus=xhci.0,drive=ais",
                "-no-reboot",
            ]
        argv += ["-daemonize", "-pidfile", str(pidfile)]
        return argv

    def step_install(self) -> None:
        cfg, paths = self.cfg, self.paths
        images = paths.images(self.image_key())
        if self.installed_images() is not None:
            self.runner.note(f"cached installed disks: {images} (delete it to reinstall)")
            return
        self.runner.run(["rm", "-rf", images])
        self.runner.run(["mkdir", "-p", images])
        pids: list[tuple[Path, str]] = []
        for node in cfg.nodes:
            disk = images / f"{node.name}.qcow2"
            vars_fd = images / f"{node.name}.vars.fd"
            self.runner.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", disk, f"{cfg.node_disk_gib}G"]
            )
            self.runner.run(["cp", cfg.ovmf_vars, vars_fd])
            pidfile = paths.run / f"{node.name}-install.pid"
            self.state.record(
                "process",
                name=f"qemu {node.name} (install)",
                pidfile=str(pidfile),
                marker=self.qemu_name(node),
            )
            self.runner.run(
                self._qemu_argv(node, install=True, disk=disk, vars_fd=vars_fd, pidfile=pidfile),
                daemon=True,
            )
            pids.append((pidfile, self.qemu_name(node)))
        self.runner.note(
            f"watch an install: vncviewer {paths.run}/<node>-vnc.sock "
            f"(or socat it to a TCP port); serial log in {paths.logs}"
        )
        self.runner.wait(
            "every installer has powered its VM off",
            lambda: not any(_pid_alive(p, m) for p, m in pids),
            timeout_s=cfg.timeouts.install_s,
            interval_s=10,
        )
        for node in cfg.nodes:
            disk = images / f"{node.name}.qcow2"
            info = self.runner.capture_json(
                ["qemu-img", "info", "--output=json", disk], dry_value={"actual-size": 4 << 30}
            )
            if int(info.get("actual-size", 0)) < (1 << 30):
                raise LabError(
                    f"the installer on {node.name} stopped without writing the disk "
                    f"({info.get('actual-size', 0)} bytes): read {paths.logs}/"
                    f"{node.name}-serial.log or watch it over VNC in a new run"
                )
        self.runner.run(["touch", images / "complete"])

    def step_boot(self) -> None:
        cfg, paths = self.cfg, self.paths
        images = paths.images(self.image_key())
        for node in cfg.nodes:
            nd = paths.node_dir(node)
            disk, vars_fd = nd / "disk.qcow2", nd / "vars.fd"
            self.runner.run(["mkdir", "-p", nd])
            # A copy-on-write overlay: the installed disk in the cache stays untouched, so the
            # next `up` skips the installation.
            self.runner.run(
                [
                    "qemu-img",
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-F",
                    "qcow2",
                    "-b",
                    images / f"{node.name}.qcow2",
                    disk,
                ]
            )
            self.runner.run(["cp", images / f"{node.name}.vars.fd", vars_fd])
            pidfile = paths.run / f"{node.name}.pid"
            self.state.record(
                "process",
                name=f"qemu {node.name}",
                pidfile=str(pidfile),
                marker=self.qemu_name(node),
            )
            self.runner.run(
                self._qemu_argv(node, install=False, disk=disk, vars_fd=vars_fd, pidfile=pidfile),
                daemon=True,
            )

    def step_wait_api(self) -> None:
        for node in self.cfg.nodes:
            self.runner.wait(
                f"{node.name} answers on {node.ip}:8006",
                functools.partial(_port_open, node.ip, 8006),
                timeout_s=self.cfg.timeouts.api_s,
                interval_s=5,
            )
        for node in self.cfg.nodes:
            self.runner.wait(
                f"{node.name} ran its first-boot hook ({FIRST_BOOT_MARKER})",
                functools.partial(self.ssh_ok, node, ["test", "-e", FIRST_BOOT_MARKER]),
                timeout_s=self.cfg.timeouts.api_s,
                interval_s=5,
            )

    def step_check_nodes(self) -> None:
        paths = self.paths
        for node in self.cfg.nodes:
            self.ssh(
                node,
                ["pveversion", "--verbose"],
                stdout_path=paths.logs / f"{node.name}-pveversion.txt",
            )
            version = self.ssh(
                node,
                ["dpkg-query", "--show", "--showformat=${Version}", "pve-qemu-kvm"],
                dry_output="10.0.2-4",
            ).stdout.strip()
            ok = self.ssh(
                node, ["dpkg", "--compare-versions", version, "ge", MIN_PVE_QEMU], check=False
            )
            if ok.returncode != 0:
                raise LabError(
                    f"{node.name} has pve-qemu-kvm {version}; the test guests run under QEMU's "
                    f"software emulation, which migrates dirty memory correctly only from "
                    f"{MIN_PVE_QEMU} on: use a newer ISO"
                )
            self.runner.note(f"{node.name}: pve-qemu-kvm {version}")

    def _cluster_ready(self, expected: int) -> bool:
        status = self.ssh_json_quiet(
            self.first, ["pvesh", "get", "/cluster/status", "--output-format", "json"]
        )
        return _cluster_quorate(status, expected)

    def step_cluster(self) -> None:
        cfg, first = self.cfg, self.first
        self.ssh(first, ["pvecm", "create", cfg.cluster_name, "--link0", f"address={first.ip}"])
        self.runner.wait(
            f"the cluster {cfg.cluster_name} is quorate with 1 node",
            lambda: self._cluster_ready(1),
            timeout_s=cfg.timeouts.cluster_s,
        )
        info = self.ssh_json(
            first,
            ["pvesh", "get", "/cluster/config/join", "--output-format", "json"],
            dry_value={
                "nodelist": [
                    {"name": first.name, "pve_addr": first.ip, "pve_fp": "<fingerprint of pve1>"}
                ]
            },
        )
        fingerprint = _join_fingerprint(info, first.name)
        for count, node in enumerate(cfg.nodes[1:], start=2):
            # Through the join API on the joining node: `pvecm add` would prompt for the
            # password on a terminal. The password (the lab's throwaway root password) goes
            # over SSH's stdin, so it is in no command line on the host.
            join = shlex.join(
                [
                    "pvesh",
                    "create",
                    "/cluster/config/join",
                    "--hostname",
                    first.ip,
                    "--fingerprint",
                    fingerprint,
                    "--link0",
                    f"address={node.ip}",
                ]
            )
            self.ssh(
                node,
                f'IFS= read -r pw && {join} --password "$pw"',
                input_text=self.root_password + "\n",
                timeout_s=cfg.timeouts.cluster_s,
            )
            self.runner.wait(
                f"the cluster is quorate with {count} nodes online",
                functools.partial(self._cluster_ready, count),
                timeout_s=cfg.timeouts.cluster_s,
            )

    def step_nfs(self) -> None:
        cfg = self.cfg
        if not cfg.nfs_dir.exists() and not cfg.nfs_dir.is_relative_to(cfg.work_dir):
            self.state.record("path", path=str(cfg.nfs_dir))
        self.runner.run(["mkdir", "-p", cfg.nfs_dir])
        client = str(cfg.network)
        self.state.record("nfs-export", client=client, path=str(cfg.nfs_dir))
        self.runner.run(
            [
                "exportfs",
                "-o",
                "rw,sync,no_subtree_check,no_root_squash,insecure",
                f"{client}:{cfg.nfs_dir}",
            ]
        )

    def step_storage(self) -> None:
        cfg = self.cfg
        self.ssh(
            self.first,
            [
                "pvesm",
                "add",
                "nfs",
                cfg.storage,
                "--server",
                cfg.host_ip,
                "--export",
                str(cfg.nfs_dir),
                "--content",
                "images,rootdir,vztmpl,iso,snippets",
                "--options",
                cfg.nfs_options,
            ],
        )
        for node in cfg.nodes:
            self.runner.wait(
                f"{cfg.storage} is active on {node.name}",
                functools.partial(self._storage_ready, node),
                timeout_s=cfg.timeouts.cluster_s,
            )

    def _storage_ready(self, node: Node) -> bool:
        return _storage_active(
            self.ssh_json_quiet(
                node,
                [
                    "pvesh",
                    "get",
                    f"/nodes/{node.name}/storage/{self.cfg.storage}/status",
                    "--output-format",
                    "json",
                ],
            )
        )

    def step_token(self) -> None:
        cfg, first, paths = self.cfg, self.first, self.paths
        self.ssh(first, ["pveum", "role", "add", cfg.role, "--privs", ",".join(cfg.privileges)])
        self.ssh(
            first,
            [
                "pveum",
                "user",
                "add",
                cfg.token_user,
                "--comment",
                "pvetool end-to-end tests (nested-pve)",
            ],
        )
        self.ssh(
            first, ["pveum", "acl", "modify", "/", "--users", cfg.token_user, "--roles", cfg.role]
        )
        # privsep 0: the token has exactly the user's privileges, i.e. the role above.
        token = self.ssh_json(
            first,
            [
                "pveum",
                "user",
                "token",
                "add",
                cfg.token_user,
                cfg.token_name,
                "--privsep",
                "0",
                "--comment",
                "nested-pve CI",
                "--output-format",
                "json",
            ],
            dry_value={
                "full-tokenid": f"{cfg.token_user}!{cfg.token_name}",
                "info": {"privsep": 0},
                "value": "<secret>",
            },
        )
        try:
            self.token_id, self.token_secret = str(token["full-tokenid"]), str(token["value"])
        except (KeyError, TypeError) as exc:
            raise LabError(
                f"pveum user token add answered without full-tokenid/value: {exc}"
            ) from exc
        self.runner.hide(self.token_secret)
        self.runner.run(
            ["scp", "-F", paths.ssh_config, f"{first.name}:/etc/pve/pve-root-ca.pem", paths.ca_file]
        )

    def step_guests(self) -> None:
        for guest in self.cfg.guests:
            node = self.cfg.node(guest.node)
            if guest.kind == "container":
                self._create_container(guest, node)
                continue
            if guest.kind == "alive":
                self._prepare_alive(node)
            argv = [
                "qm",
                "create",
                str(guest.vmid),
                "--name",
                f"{guest.kind}-{guest.vmid}",
                "--memory",
                str(guest.memory_mib),
                "--cores",
                "1",
                "--kvm",
                "0",
                "--ostype",
                "other",
                "--net0",
                "virtio,bridge=vmbr0",
                "--tags",
                f"pvelab;{guest.kind}",
            ]
            argv += self._guest_options(guest)
            self.ssh(node, argv)
            if guest.kind == "ha":
                self.ssh(node, ["ha-manager", "add", f"vm:{guest.vmid}", "--state", "started"])
                continue
            if guest.kind == "stopped":
                continue  # never started: the offline-migration test guest
            started = self.ssh(
                node, ["qm", "start", str(guest.vmid)], check=guest.kind != "local-device"
            )
            if started.returncode != 0:
                self.runner.warn(
                    f"{guest.vmid} ({guest.kind}) did not start; it stays as a "
                    "stopped guest with a local device"
                )

    def _guest_options(self, guest: Guest) -> list[str]:
        storage = self.cfg.storage
        if guest.kind in ("nodisk", "stopped"):
            return ["--boot", "order=net0"]
        if guest.kind in ("shared-disk", "ha"):
            return ["--scsihw", "virtio-scsi-single", "--scsi0", f"{storage}:1,format=qcow2"]
        if guest.kind == "local-disk":
            return ["--scsihw", "virtio-scsi-single", "--scsi0", "local-lvm:1"]
        if guest.kind == "local-device":
            return ["--usb0", f"host={QEMU_USB_TABLET}"]
        if guest.kind == "alive":
            d = self.paths.alive_node_dir()
            return [
                "--serial0",
                "socket",
                "--args",
                f"-kernel {d}/vmlinuz -initrd {d}/initrd.img "
                '-append "console=ttyS0 panic=-1 pvelab.buf_kib=32768"',
            ]
        raise LabError(f"no options for guest kind {guest.kind!r}")

    def _prepare_alive(self, node: Node) -> None:
        """Kernel (the node's own) and a busybox initramfs on the shared storage."""
        paths = self.paths
        root = paths.work / "alive-root"
        self.runner.run(["rm", "-rf", root])
        self.runner.run(["install", "-D", "-m", "0755", self.cfg.busybox, root / "bin/busybox"])
        self.runner.run(["install", "-D", "-m", "0755", ALIVE_INIT_SCRIPT, root / "init"])
        self.runner.run(["mkdir", "-p", root / "proc", root / "dev", paths.alive_host_dir])
        self.runner.run(
            ["cpio", "--create", "--format=newc", "--quiet"],
            cwd=root,
            input_text="\n".join([".", "bin", "bin/busybox", "init", "proc", "dev"]) + "\n",
            stdout_path=paths.alive_host_dir / "initrd.img",
        )
        self.ssh(node, f'cp "/boot/vmlinuz-$(uname -r)" {paths.alive_node_dir()}/vmlinuz')

    def _create_container(self, guest: Guest, node: Node) -> None:
        cfg = self.cfg
        sample = [
            {
                "section": "system",
                "template": "alpine-3.22-default_20250617_amd64.tar.xz",
                "os": "alpine",
            }
        ]
        # A fresh node has no appliance index until pve-daily-update runs: fetch it now.
        self.ssh(node, ["pveam", "update"], check=False)
        apps = self.ssh_json(
            node,
            ["pvesh", "get", f"/nodes/{node.name}/aplinfo", "--output-format", "json"],
            dry_value=sample,
        )
        template = _pick_template(apps)
        if template is None:
            self.runner.warn(
                f"no Alpine system template in {node.name}'s appliance list: "
                f"container {guest.vmid} skipped"
            )
            return
        fetched = self.ssh(
            node,
            [
                "pvesh",
                "create",
                f"/nodes/{node.name}/aplinfo",
                "--storage",
                cfg.storage,
                "--template",
                template,
            ],
            check=False,
        )
        if fetched.returncode != 0:
            self.runner.warn(f"could not download {template}: container {guest.vmid} skipped")
            return
        self.ssh(
            node,
            [
                "pct",
                "create",
                str(guest.vmid),
                f"{cfg.storage}:vztmpl/{template}",
                "--hostname",
                f"ct{guest.vmid}",
                "--memory",
                str(guest.memory_mib),
                "--cores",
                "1",
                "--rootfs",
                f"{cfg.storage}:1",
                "--net0",
                "name=eth0,bridge=vmbr0",
                "--unprivileged",
                "1",
                "--tags",
                "pvelab;container",
            ],
        )
        if self.ssh(node, ["pct", "start", str(guest.vmid)], check=False).returncode != 0:
            self.runner.warn(f"container {guest.vmid} did not start; it stays stopped")

    def step_env(self) -> None:
        paths = self.paths
        values = cluster_env_values(
            self.cfg,
            token_id=self.token_id or "<token id>",
            token_secret=self.token_secret or "<secret>",
            ca_file=paths.ca_file,
            ssh_config=paths.ssh_config,
        )
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        text = env_file_text(
            values,
            comment=(
                f"Written by nested-pve/up at {stamp}: the nested Proxmox VE "
                f"{self.cfg.iso_version} cluster.\n"
                "Use: PVETOOL_E2E_ENV=nested-pve/cluster.env pytest tests/e2e, or source it."
            ),
        )
        self.state.record("path", path=str(paths.env_file))
        self.runner.write_text(paths.env_file, text)
        self._give_to_invoking_user(
            [
                paths.env_file,
                paths.ca_file,
                paths.ssh_config,
                paths.known_hosts,
                paths.credentials,
                paths.ssh_key,
            ]
        )
        self.runner.note(f"pvetool: . {paths.env_file} && pvetool status")

    def _give_to_invoking_user(self, files: Iterable[Path]) -> None:
        """Under sudo, hand the files the test suite reads to the user who ran sudo."""
        uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
        if uid is None or gid is None:
            return
        for f in files:
            self.runner.run(["chown", f"{uid}:{gid}", f], check=False)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def _cluster_quorate(status: Any, expected: int) -> bool:
    """From ``pvesh get /cluster/status``: quorate, `expected` nodes, all online."""
    if not isinstance(status, list):
        return False
    cluster = [e for e in status if isinstance(e, dict) and e.get("type") == "cluster"]
    nodes = [e for e in status if isinstance(e, dict) and e.get("type") == "node"]
    online = [n for n in nodes if int(n.get("online", 0)) == 1]
    if expected == 1 and not cluster:
        return False
    return (
        bool(cluster)
        and int(cluster[0].get("quorate", 0)) == 1
        and int(cluster[0].get("nodes", 0)) == expected
        and len(online) == expected
    )


def _join_fingerprint(info: Any, node_name: str) -> str:
    """The API certificate fingerprint of `node_name` from ``GET /cluster/config/join``."""
    for entry in (info or {}).get("nodelist", []) if isinstance(info, dict) else []:
        if isinstance(entry, dict) and entry.get("name") == node_name and entry.get("pve_fp"):
            return str(entry["pve_fp"])
    raise LabError(f"the join information of the cluster does not list {node_name}'s fingerprint")


def _storage_active(status: Any) -> bool:
    return isinstance(status, dict) and int(status.get("active", 0)) == 1


def _pick_template(apps: Any) -> str | None:
    """The newest Alpine system template in PVE's appliance list, if there is one."""
    names = (
        sorted(
            str(a["template"])
            for a in apps
            if isinstance(a, dict)
            and a.get("section") == "system"
            and str(a.get("template", "")).startswith("alpine-")
        )
        if isinstance(apps, list)
        else []
    )
    return names[-1] if names else None


def _pid_alive(pidfile: Path, marker: str) -> bool:
    """Whether the process named in `pidfile` runs, and (with a marker) is the one we started."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline


def up(cfg: Config, *, dry_run: bool, out: TextIO) -> int:
    paths = Paths(cfg)
    runner = Runner(
        dry_run=dry_run,
        out=out,
        log_path=paths.logs / "up.log",
        total_steps=len(UP_STEPS),
        command_timeout_s=cfg.timeouts.command_s,
    )
    # The checksum is checked before anything else exists: a real run with a placeholder
    # changes nothing on the host.
    if not dry_run and cfg.checksum_problem() is not None:
        raise ConfigError(str(cfg.checksum_problem()))
    state = State(paths.state, persist=not dry_run)
    if not dry_run and state.resources:
        raise LabError(
            f"a lab is already up or half up ({paths.state} lists what it created): "
            "run nested-pve/down first"
        )
    lab = Lab(cfg=cfg, runner=runner, state=state, paths=paths, out=out)
    runner.say(
        f"pvelab up: a {len(cfg.nodes)}-node Proxmox VE {cfg.iso_version} cluster in "
        f"{cfg.work_dir}" + (" (dry run: nothing is executed)" if dry_run else "")
    )
    if not dry_run:
        lab.begin()
    started = time.monotonic()
    for name, title in UP_STEPS:
        runner.step(name, title)
        step_started = time.monotonic()
        getattr(lab, "step_" + name.replace("-", "_"))()
        if not dry_run:
            runner.note(f"{name} took {time.monotonic() - step_started:.0f} s")
    if not dry_run:
        runner.say(
            f"pvelab up: done in {time.monotonic() - started:.0f} s; "
            f"the suite's settings are in {paths.env_file}"
        )
    return 0


# ---------------------------------------------------------------------------------------------
# down


def _teardown_one(runner: Runner, entry: Mapping[str, Any], cfg: Config) -> None:
    kind = entry["kind"]
    if kind == "process":
        _stop_process(runner, Path(entry["pidfile"]), str(entry["marker"]), str(entry["name"]))
    elif kind == "link":
        runner.run(["ip", "link", "delete", entry["name"]], check=False)
    elif kind == "iptables":
        runner.run(
            ["iptables", "-t", entry["table"], "-D", entry["chain"], *entry["rule"]], check=False
        )
    elif kind == "sysctl":
        runner.run(["sysctl", "-w", f"{entry['key']}={entry['previous']}"], check=False)
    elif kind == "nfs-export":
        runner.run(["exportfs", "-u", f"{entry['client']}:{entry['path']}"], check=False)
    elif kind == "path":
        path = Path(entry["path"])
        allowed = (cfg.work_dir, cfg.nfs_dir, Paths(cfg).env_file)
        if path == Path("/") or not any(path == a or path.is_relative_to(a) for a in allowed):
            runner.warn(f"not removing {path}: outside the lab's directories")
            return
        runner.run(["rm", "-rf", "--one-file-system", path], check=False)
    else:
        runner.warn(f"unknown resource in the state file, left alone: {dict(entry)}")


def _stop_process(runner: Runner, pidfile: Path, marker: str, name: str) -> None:
    runner.note(
        f"stop {name}: pid from {pidfile}, if that process still carries '{marker}' "
        "(SIGTERM, SIGKILL after 30 s)"
    )
    if runner.dry_run:
        return
    if not _pid_alive(pidfile, marker):
        runner.note(f"{name} is not running")
        return
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _pid_alive(pidfile, marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _pid_alive(pidfile, marker):
        os.kill(pid, signal.SIGKILL)


def down(cfg: Config, *, dry_run: bool, out: TextIO, purge_cache: bool = False) -> int:
    paths = Paths(cfg)
    runner = Runner(dry_run=dry_run, out=out, log_path=None)
    state = State(paths.state, persist=not dry_run)
    resources = list(state.resources)
    header = f"pvelab down: {cfg.work_dir}" + (" (dry run: nothing is executed)" if dry_run else "")
    runner.say(header)
    if not resources:
        if not dry_run:
            runner.say(f"nothing recorded in {paths.state}: nothing to stop or remove")
            if purge_cache:
                runner.run(["rm", "-rf", "--one-file-system", cfg.cache_dir], check=False)
            return 0
        # Show what down would remove after a complete `up`: the same code, collecting only.
        runner.say(
            f"nothing recorded in {paths.state}; this is the teardown of a complete "
            "lab as configured:"
        )
        resources = _planned_resources(cfg)
    for entry in _teardown_order(resources):
        _teardown_one(runner, entry, cfg)
        state.forget(entry)
    if purge_cache:
        runner.run(["rm", "-rf", "--one-file-system", cfg.cache_dir], check=False)
    if not dry_run and paths.state.exists() and not state.resources:
        paths.state.unlink()
    runner.say("pvelab down: done")
    return 0


def _teardown_order(resources: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Processes first (they hold the taps and sockets), then the rest in reverse order."""
    rev = list(reversed(resources))
    return [r for r in rev if r["kind"] == "process"] + [r for r in rev if r["kind"] != "process"]


def _planned_resources(cfg: Config) -> list[dict[str, Any]]:
    paths = Paths(cfg)
    sink = io.StringIO()
    runner = Runner(dry_run=True, out=sink, total_steps=len(UP_STEPS))
    state = State(paths.work / "state.planned.json", persist=False)
    state.resources = []
    lab = Lab(cfg=cfg, runner=runner, state=state, paths=paths, out=sink)
    lab.begin()
    for name, _ in UP_STEPS:
        getattr(lab, "step_" + name.replace("-", "_"))()
    return state.resources


# ---------------------------------------------------------------------------------------------
# Small commands for CI and for humans


def collect_logs(cfg: Config, *, dry_run: bool, out: TextIO) -> int:
    """PVE's task logs and journals of the nodes into <work>/logs (for CI artifacts)."""
    paths = Paths(cfg)
    runner = Runner(dry_run=dry_run, out=out)
    lab = Lab(cfg=cfg, runner=runner, state=State(paths.state, persist=False), paths=paths, out=out)
    runner.run(["mkdir", "-p", paths.logs])
    for node in cfg.nodes:
        lab.ssh(
            node,
            ["tar", "-C", "/var/log/pve", "-czf", "-", "tasks"],
            check=False,
            stdout_path=paths.logs / f"{node.name}-tasks.tar.gz",
        )
        lab.ssh(
            node,
            ["journalctl", "--boot", "--no-pager"],
            check=False,
            stdout_path=paths.logs / f"{node.name}-journal.log",
        )
    return 0


def write_answers(
    cfg: Config, directory: Path, *, root_password: str, ssh_public_key: str
) -> list[Path]:
    """Render every node's answer.toml into `directory`/<node>/answer.toml (for review, tests)."""
    written = []
    for node in cfg.nodes:
        target = directory / node.name / "answer.toml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            render_answer(cfg, node, root_password=root_password, ssh_public_key=ssh_public_key),
            encoding="utf-8",
        )
        written.append(target)
    return written


def config_value(cfg: Config, dotted: str) -> str:
    """One configuration value, for shell and CI (e.g. iso.version for a cache key)."""
    table = {
        "iso.version": cfg.iso_version,
        "iso.file": cfg.iso_file,
        "iso.url": cfg.iso_url,
        "iso.sha256": cfg.iso_sha256,
        "host.work_dir": str(cfg.work_dir),
        "host.cache_dir": str(cfg.cache_dir),
    }
    if dotted not in table:
        raise ConfigError(f"unknown key {dotted!r}; known: {', '.join(sorted(table))}")
    return table[dotted]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="configuration file (default: nested-pve/config.toml)",
    )
    common.add_argument("--work-dir", help="state, disks, sockets and logs (default: config)")
    common.add_argument("--cache-dir", help="ISO, installed disks, credentials (default: config)")
    dry = argparse.ArgumentParser(add_help=False)
    dry.add_argument(
        "--dry-run",
        action="store_true",
        help="print every step and command without running anything",
    )
    parser = argparse.ArgumentParser(
        prog="pvelab",
        description="A real nested Proxmox VE 9 cluster for pvetool's tests.",
        epilog="examples: nested-pve/up --dry-run; sudo nested-pve/up; sudo nested-pve/down",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", parents=[common, dry], help="bring the cluster up")
    p_up.add_argument(
        "--iso-url",
        default=os.environ.get("PVELAB_ISO_URL"),
        help="ISO URL (default: config; env PVELAB_ISO_URL)",
    )
    p_up.add_argument(
        "--iso-sha256",
        default=os.environ.get("PVELAB_ISO_SHA256"),
        help="the ISO's SHA-256 (default: config; env PVELAB_ISO_SHA256)",
    )
    p_down = sub.add_parser(
        "down", parents=[common, dry], help="stop and delete everything `up` created"
    )
    p_down.add_argument(
        "--purge-cache",
        action="store_true",
        help="also delete the cache (ISO, installed disks, credentials)",
    )
    sub.add_parser(
        "collect-logs",
        parents=[common, dry],
        help="copy the nodes' task logs and journals into <work>/logs",
    )
    p_ans = sub.add_parser(
        "render-answers",
        parents=[common],
        help="write the answer files (placeholder secrets) into a directory",
    )
    p_ans.add_argument("directory", type=Path)
    p_val = sub.add_parser("config-value", parents=[common], help="print one configuration value")
    p_val.add_argument("key")
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Exit codes: 0 done, 1 a step failed, 2 configuration or usage error."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code not in (0, None) else 0
    try:
        cfg = load_config(
            args.config,
            work_dir=args.work_dir,
            cache_dir=args.cache_dir,
            iso_url=getattr(args, "iso_url", None),
            iso_sha256=getattr(args, "iso_sha256", None),
        )
        if args.command == "up":
            return up(cfg, dry_run=args.dry_run, out=out)
        if args.command == "down":
            return down(cfg, dry_run=args.dry_run, out=out, purge_cache=args.purge_cache)
        if args.command == "collect-logs":
            return collect_logs(cfg, dry_run=args.dry_run, out=out)
        if args.command == "render-answers":
            for path in write_answers(
                cfg,
                args.directory,
                root_password="<root-password>",
                ssh_public_key="ssh-ed25519 <public key> pvelab",
            ):
                out.write(f"{path}\n")
            return 0
        out.write(config_value(cfg, args.key) + "\n")
        return 0
    except ConfigError as exc:
        err.write(f"pvelab: error: {exc}\n")
        return 2
    except LabError as exc:
        err.write(f"pvelab: failed: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
