"""Capture a live cluster as an emulator cluster file (`pvetool emulator capture`).

Reads a cluster with GET requests only, through pvetool's API client (the same settings, profile
and `--emulate` as every command), and writes a cluster file in the emulator's own format
(`pvetool/emulator/data/lab.yaml` documents every key): nodes, storages, resource mappings,
pools, guests, HA rules, replication targets and datacenter options. The emulator can then serve
a twin of the cluster (`pvetool --emulate FILE ...`, `pvetool emulator serve --cluster FILE`).

What PVE does not expose is not invented: link speeds (no NIC speed in the API) come from
`--link`, and every gap (an offline node, an unused volume without a size, a section the token
may not read) is listed in the file's header. Secrets never go in: no tokens, users, ACLs,
tickets, and no guest descriptions unless asked for (admins keep notes there). The file is
deterministic (sorted nodes, storages and guests, no time stamps), so capturing a served capture
gives the same bytes again.

Where each key comes from (research: PVE 9.2 API schema and pve-manager's source):
`GET /cluster/status` (name, nodes, online), `/nodes/{n}/status` (cpus, memory, CPU model,
version), `/nodes/{n}/network?type=any_bridge` (bridges), `/nodes/{n}/time` (time zone),
`/cluster/ha/status/manager_status` (HA maintenance), `/cluster/options` (migration, bwlimit,
max_workers, HA shutdown policy), `/storage` and `/cluster/resources?type=storage` (storages and
sizes), `/cluster/mapping/{pci,usb,dir}`, `/pools`, `/cluster/resources?type=vm` (placement,
status, tags, pool, lock, template, used memory), `/nodes/{n}/{qemu,lxc}/{vmid}/config?current=1`
(size, disks, NICs, devices), `.../rrddata` (CPU load, for the dirty-page class),
`/nodes/{n}/storage/{s}/content` (the size of an unused volume), `/cluster/ha/resources`,
`/cluster/ha/rules`, `/cluster/replication`, and `/access/permissions` (what may be missing).

Imports: the standard library, PyYAML, `pvetool.errors`, `pvetool.units` and (for typing) the API
client. Never the emulator: `pvetool.cli.emulator_cmds` checks the result with the emulator's
loader.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from pvetool.errors import ApiError, InvalidAnswer
from pvetool.units import GiB, KiB, MiB, TiB, parse_size

if TYPE_CHECKING:
    from pvetool.api import PveClient

__all__ = ["Capture", "capture_cluster", "dirty_class", "render_cluster_file"]

# The planner's rule for a dirty-page class from a guest's CPU load (pvetool/planner/sequencer.py
# `estimate_profile`); a unit test keeps the two in step.
HOT_CPU_FRACTION = 0.25
MODERATE_CPU_FRACTION = 0.06

# The emulator's vocabulary (pvetool/emulator/specs.py); values outside it are noted, not written.
STORAGE_TYPES = frozenset(
    "rbd cephfs nfs cifs pbs iscsi iscsidirect zfs esxi drbd lvmthin zfspool btrfs dir lvm".split()
)
ALWAYS_SHARED = frozenset("rbd cephfs nfs cifs pbs iscsi iscsidirect zfs esxi drbd".split())
CONTENT_TYPES = frozenset("images rootdir iso vztmpl backup snippets import".split())
QEMU_LOCKS = frozenset(
    "backup clone create migrate rollback snapshot snapshot-delete suspending suspended".split()
)
LXC_LOCKS = frozenset(
    "backup create destroyed disk fstrim migrate mounted rollback snapshot snapshot-delete".split()
)
HA_STATES = frozenset("started stopped enabled disabled ignored".split())
SHUTDOWN_POLICIES = frozenset("freeze failover conditional migrate".split())

_QEMU_DISK_RE = re.compile(r"(?:scsi|virtio|sata|ide)\d+|efidisk0|tpmstate0|unused\d+")
_LXC_DISK_RE = re.compile(r"rootfs|mp\d+|unused\d+")
_PASSTHROUGH_RE = re.compile(r"(?:net|hostpci|usb|serial|parallel|virtiofs)\d+")


def dirty_class(cpu_fraction: float) -> str:
    """The dirty-page class of a guest with this mean CPU load (fraction of its vCPUs)."""
    if cpu_fraction >= HOT_CPU_FRACTION:
        return "hot"
    if cpu_fraction >= MODERATE_CPU_FRACTION:
        return "moderate"
    return "idle"


def _size_text(size_bytes: int) -> str | int:
    """A size the cluster file reads back exactly: ``64GiB``, ``6TiB``, or a number of bytes."""
    for unit, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size_bytes and size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return size_bytes


@dataclass
class Capture:
    """A captured cluster: the cluster file's data and what could not be captured."""

    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.data["name"])

    def counts(self) -> tuple[int, int]:
        return len(self.data["nodes"]), len(self.data.get("guests", {}))


class _Reader:
    """GETs through the client, each answer's shape checked where the capture relies on it."""

    def __init__(self, client: PveClient) -> None:
        self.client = client
        self.notes: list[str] = []
        self._volumes: dict[tuple[str, str, int], dict[str, int]] = {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.read(path, **params)

    def optional(self, what: str, path: str, **params: Any) -> Any:
        """A section the capture can do without: on a refusal (no privilege, an older PVE, an
        offline node) it is noted in the file's header and None is returned."""
        try:
            return self.get(path, **params)
        except InvalidAnswer:
            raise
        except ApiError as exc:
            self.notes.append(f"{what}: not captured ({exc.status} {exc.reason})")
            return None

    def volume_size(self, node: str, storage: str, vmid: int, volid: str) -> int | None:
        """The size of a guest's volume from `GET /nodes/{node}/storage/{storage}/content`
        (pve-storage Content.pm `index`; it needs Datastore.Audit on the storage and
        VM.Config.Disk on the guest), or None when the listing is refused or lacks it."""
        key = (node, storage, vmid)
        if key not in self._volumes:
            path = f"/nodes/{node}/storage/{storage}/content"
            try:
                rows = self.rows(path, self.get(path, vmid=vmid))
            except InvalidAnswer:
                raise
            except ApiError:
                rows = []
            self._volumes[key] = {
                str(r.get("volid")): _int(r["size"], path, "size")
                for r in rows
                if r.get("size") is not None
            }
        return self._volumes[key].get(volid)

    def rows(self, path: str, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InvalidAnswer(method="GET", path=path, problem="expected a list of objects")
        return data

    def obj(self, path: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise InvalidAnswer(method="GET", path=path, problem="expected an object")
        return data


def _bad(path: str, problem: str) -> InvalidAnswer:
    return InvalidAnswer(method="GET", path=path, problem=problem)


def _int(value: Any, path: str, what: str) -> int:
    if isinstance(value, bool):
        raise _bad(path, f"{what} is not a number: {value!r}")
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        raise _bad(path, f"{what} is not a number: {value!r}") from None


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _options(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if eq:
            out[key.strip()] = value.strip()
    return out


# --- sections ------------------------------------------------------------------------------------


def _datacenter(rd: _Reader, first_node: str | None) -> dict[str, Any]:
    options = rd.optional("datacenter options", "/cluster/options")
    dc: dict[str, Any] = {}
    opts = rd.obj("/cluster/options", options) if options is not None else {}
    migration = opts.get("migration")
    mig: dict[str, Any] = {"type": "secure"}
    if isinstance(migration, str):  # a property string on some versions
        migration = _options(migration if "=" in migration else f"type={migration}")
    if isinstance(migration, dict):
        if migration.get("type") in ("secure", "insecure"):
            mig["type"] = migration["type"]
        if migration.get("network"):
            mig["network"] = str(migration["network"])
    dc["migration"] = mig
    bw = opts.get("bwlimit")
    if isinstance(bw, str):
        bw = _options(bw)
    bw = bw if isinstance(bw, dict) else {}
    dc["bwlimit"] = {
        "migration": _int(bw.get("migration", 0), "/cluster/options", "bwlimit.migration"),
        "default": _int(bw.get("default", 0), "/cluster/options", "bwlimit.default"),
    }
    if opts.get("max_workers") is not None:
        dc["max_workers"] = _int(opts["max_workers"], "/cluster/options", "max_workers")
    ha = opts.get("ha")
    if isinstance(ha, str):
        ha = _options(ha)
    policy = ha.get("shutdown_policy") if isinstance(ha, dict) else None
    dc["ha"] = {"shutdown_policy": policy if policy in SHUTDOWN_POLICIES else "conditional"}
    if first_node is not None:
        time = rd.optional("time zone", f"/nodes/{first_node}/time")
        if isinstance(time, dict) and isinstance(time.get("timezone"), str):
            dc["timezone"] = time["timezone"]
    return dc


def _nodes(
    rd: _Reader, status_rows: list[dict[str, Any]], resources: list[dict[str, Any]], link: str
) -> dict[str, dict[str, Any]]:
    res_by_node = {r.get("node"): r for r in resources if r.get("type") == "node"}
    maintenance: set[str] = set()
    manager = rd.optional("HA maintenance", "/cluster/ha/status/manager_status")
    if isinstance(manager, dict):
        node_status = (manager.get("manager_status") or {}).get("node_status") or {}
        maintenance |= {n for n, s in node_status.items() if s == "maintenance"}
        for n, lrm in (manager.get("lrm_status") or {}).items():
            if isinstance(lrm, dict) and lrm.get("mode") == "maintenance":
                maintenance.add(n)
    out: dict[str, dict[str, Any]] = {}
    names = sorted(str(r["name"]) for r in status_rows if r.get("type") == "node")
    online_of = {
        str(r["name"]): _flag(r.get("online", 0)) for r in status_rows if r.get("type") == "node"
    }
    for name in names:
        res = res_by_node.get(name, {})
        node: dict[str, Any] = {}
        status = rd.optional(f"node {name}", f"/nodes/{name}/status") if online_of[name] else None
        if isinstance(status, dict):
            path = f"/nodes/{name}/status"
            cpuinfo = status.get("cpuinfo") or {}
            node["cpus"] = _int(cpuinfo.get("cpus"), path, "cpuinfo.cpus")
            node["memory"] = _size_text(
                _int((status.get("memory") or {}).get("total"), path, "memory.total")
            )
        else:
            if not online_of[name]:  # (an online node whose status failed is noted already)
                rd.notes.append(
                    f"node {name}: offline; cpus and memory from /cluster/resources, "
                    "CPU model, version and bridges not captured"
                )
            node["cpus"] = _int(res.get("maxcpu", 1), "/cluster/resources", "maxcpu")
            maxmem = _int(res.get("maxmem", GiB), "/cluster/resources", "maxmem")
            node["memory"] = _size_text(maxmem)
        node["link"] = link
        if isinstance(status, dict):
            version = str(status.get("pveversion", ""))
            match = re.match(r"pve-manager/(\d+\.\d+(?:\.\d+)?)", version)
            if match:
                node["version"] = match.group(1)
            model = (status.get("cpuinfo") or {}).get("model")
            if isinstance(model, str) and model.strip():
                node["cpu_model"] = model.strip()
        node["online"] = online_of[name]
        if res.get("host-arch") in ("x86_64", "aarch64"):
            node["arch"] = res["host-arch"]
        if online_of[name]:
            net = rd.optional(f"bridges of {name}", f"/nodes/{name}/network", type="any_bridge")
            if net is not None:
                bridges = sorted(
                    str(r["iface"])
                    for r in rd.rows(f"/nodes/{name}/network", net)
                    if r.get("type") in ("bridge", "OVSBridge") and r.get("iface")
                )
                node["bridges"] = bridges
        node["maintenance"] = name in maintenance
        out[name] = node
    return out


def _storages(rd: _Reader, resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    data = rd.optional("storages", "/storage")
    if data is None:
        return {}
    sizes: dict[str, int] = {}
    for r in resources:
        if r.get("type") == "storage" and r.get("storage"):
            size = _int(r.get("maxdisk", 0), "/cluster/resources", "maxdisk")
            sizes[str(r["storage"])] = max(sizes.get(str(r["storage"]), 0), size)
    out: dict[str, dict[str, Any]] = {}
    for st in sorted(rd.rows("/storage", data), key=lambda s: str(s.get("storage"))):
        sid = str(st.get("storage", ""))
        stype = str(st.get("type", ""))
        if not sid:
            continue
        shared = stype in ALWAYS_SHARED or _flag(st.get("shared", 0))
        if stype not in STORAGE_TYPES:
            rd.notes.append(
                f"storage {sid}: type {stype} is not emulated; written as "
                f"{'nfs' if shared else 'dir'}"
            )
            stype = "nfs" if shared else "dir"
        entry: dict[str, Any] = {"type": stype, "shared": shared}
        if sid in sizes:
            entry["size"] = _size_text(sizes[sid])
        else:
            rd.notes.append(f"storage {sid}: no size reported (disabled or inactive); 1GiB written")
            entry["size"] = "1GiB"
        if st.get("nodes"):
            entry["nodes"] = sorted(n for n in str(st["nodes"]).split(",") if n)
        content = [c for c in str(st.get("content", "")).split(",") if c in CONTENT_TYPES]
        entry["content"] = sorted(content) if content else ["images", "rootdir"]
        if _flag(st.get("disable", 0)):
            entry["disable"] = True
        out[sid] = entry
    return out


def _mappings(rd: _Reader, known_nodes: set[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for mtype in ("pci", "usb", "dir"):
        path = f"/cluster/mapping/{mtype}"
        data = rd.optional(f"{mtype} mappings", path)
        if data is None:
            continue
        for m in rd.rows(path, data):
            mid = str(m.get("id", ""))
            if not mid:
                continue
            nodes: list[str] = []
            for entry in m.get("map") or []:
                node = _options(str(entry)).get("node")
                if node and node in known_nodes and node not in nodes:
                    nodes.append(node)
            item: dict[str, Any] = {"type": mtype, "nodes": sorted(nodes)}
            if mtype == "pci" and _flag(m.get("live-migration-capable", 0)):
                item["live_migration"] = True
            out[mid] = item
    return dict(sorted(out.items()))


def _pools(rd: _Reader, used_pools: set[str]) -> dict[str, dict[str, str]]:
    data = rd.optional("pools", "/pools")
    if data is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    for p in sorted(rd.rows("/pools", data), key=lambda p: str(p.get("poolid"))):
        name = str(p.get("poolid", ""))
        comment = str(p.get("comment") or "")
        if name and (comment or name not in used_pools):
            out[name] = {"comment": comment}
    return out


def _disk(key: str, text: str, vmid: int, node: str, rd: _Reader) -> str | None:
    """The cluster file's spelling of a drive: ``STORAGE:SIZE`` for a volume, the drive itself
    for a CD-ROM; None (noted) when the size is unknown."""
    head, _, rest = text.partition(",")
    options = _options(rest)
    if options.get("media") == "cdrom":
        if head in ("none", "cdrom"):
            return "none,media=cdrom"
        iso_size = f",size={options['size']}" if options.get("size") else ""
        return f"{head},media=cdrom{iso_size}"
    storage, colon, _volume = head.partition(":")
    if not colon:
        rd.notes.append(f"guest {vmid} {key}: {head} is not a storage volume; left out")
        return None
    size = options.get("size")
    if not size:
        # An unusedN line has no size: the storage's content listing has it.
        found = rd.volume_size(node, storage, vmid, head)
        if found is None:
            rd.notes.append(f"guest {vmid} {key} ({head}): no size in the config; left out")
            return None
        return f"{storage}:{_pve_size(found)}"
    try:
        size_bytes = parse_size(size)
    except ValueError:
        rd.notes.append(f"guest {vmid} {key}: unreadable size {size!r}; left out")
        return None
    return f"{storage}:{_pve_size(size_bytes)}"


def _pve_size(size_bytes: int) -> str:
    """PVE's own spelling of a volume size (``32G``, ``4M``, ``512K``; bytes otherwise)."""
    for unit, factor in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return str(size_bytes)


def _guest(
    rd: _Reader,
    row: dict[str, Any],
    ha: Mapping[int, dict[str, Any]],
    replicate: Mapping[int, list[str]],
    with_descriptions: bool,
) -> dict[str, Any] | None:
    vmid = _int(row.get("vmid"), "/cluster/resources", "vmid")
    gtype = str(row.get("type"))
    node = str(row.get("node"))
    base = f"/nodes/{node}/{gtype}/{vmid}"
    config_data = rd.optional(f"guest {vmid} config", f"{base}/config", current=1)
    if config_data is None:
        return None
    config = rd.obj(f"{base}/config", config_data)
    template = _flag(row.get("template", config.get("template", 0)))
    status = str(row.get("status", "stopped"))
    running = status in ("running", "paused") and not template
    g: dict[str, Any] = {"type": gtype}
    if row.get("name"):
        g["name"] = str(row["name"])
    g["node"] = node
    g["status"] = "running" if running else "stopped"
    # A container without `cores` may use every host CPU; /cluster/resources says how many.
    cores = _int(config.get("cores", row.get("maxcpu", 1)), f"{base}/config", "cores")
    sockets = _int(config.get("sockets", 1), f"{base}/config", "sockets")
    g["cores"] = max(1, cores * max(1, sockets))
    memory = config.get("memory")
    if memory is not None:
        text = str(memory)
        text = _options(text).get("current", text) if "=" in text else text
        g["memory"] = _size_text(_int(text, f"{base}/config", "memory") * MiB)
    if running and row.get("mem") is not None:
        used = _int(row["mem"], "/cluster/resources", "mem")
        maxmem = _int(row.get("maxmem", used), "/cluster/resources", "maxmem")
        if 0 < used <= maxmem:
            g["used"] = _size_text(used)
    if running:
        dirty = _dirty(rd, vmid, base)
        if dirty is not None:
            g["dirty"] = dirty
    g.update(_hardware(rd, config, gtype, vmid, node, base))
    tags = [t for t in re.split(r"[;, ]+", str(row.get("tags", ""))) if t]
    if tags:
        g["tags"] = tags
    if row.get("pool"):
        g["pool"] = str(row["pool"])
    if vmid in ha:
        g["ha"] = ha[vmid]
    lock = row.get("lock") or config.get("lock")
    if lock:
        allowed = QEMU_LOCKS if gtype == "qemu" else LXC_LOCKS
        if lock in allowed:
            g["lock"] = str(lock)
        else:
            rd.notes.append(f"guest {vmid}: lock {lock!r} is not emulated; left out")
    if template:
        g["template"] = True
    if vmid in replicate:
        g["replicate"] = sorted(replicate[vmid])
    if _flag(config.get("onboot", 0)):
        g["onboot"] = True
    if with_descriptions and config.get("description"):
        g["description"] = str(config["description"])
    return g


def _dirty(rd: _Reader, vmid: int, base: str) -> str | None:
    """The guest's dirty class from its average CPU load over the last hour (RRD)."""
    rrd = rd.optional(f"guest {vmid} load", f"{base}/rrddata", timeframe="hour", cf="AVERAGE")
    loads = [
        float(p["cpu"])
        for p in (rrd if isinstance(rrd, list) else [])
        if isinstance(p, dict) and isinstance(p.get("cpu"), int | float)
    ]
    return dirty_class(sum(loads) / len(loads)) if loads else None


def _hardware(
    rd: _Reader, config: Mapping[str, Any], gtype: str, vmid: int, node: str, base: str
) -> dict[str, Any]:
    """Disks, passthrough devices and the QEMU settings a migration depends on."""
    g: dict[str, Any] = {}
    disk_re = _QEMU_DISK_RE if gtype == "qemu" else _LXC_DISK_RE
    disks: dict[str, str] = {}
    for key in sorted(config, key=_key_order):
        if disk_re.fullmatch(key):
            spelled = _disk(key, str(config[key]), vmid, node, rd)
            if spelled is not None:
                disks[key] = spelled
    if disks:
        g["disks"] = disks
    for key in sorted(config, key=_key_order):
        if _PASSTHROUGH_RE.fullmatch(key):
            g[key] = str(config[key])
    if gtype == "qemu":
        agent = str(config.get("agent", "0"))
        if _flag(_options(agent).get("enabled", agent.split(",")[0])):
            g["agent"] = True
        if config.get("cpu"):
            g["cpu"] = str(config["cpu"])
        if config.get("migrate_speed") is not None:
            g["migrate_speed"] = _int(config["migrate_speed"], f"{base}/config", "migrate_speed")
        if config.get("migrate_downtime") is not None:
            g["migrate_downtime"] = float(config["migrate_downtime"])
    return g


def _key_order(key: str) -> tuple[str, int]:
    match = re.fullmatch(r"([a-z]+)(\d+)", key)
    return (match.group(1), int(match.group(2))) if match else (key, -1)


def _ha(rd: _Reader) -> dict[int, dict[str, Any]]:
    data = rd.optional("HA resources", "/cluster/ha/resources")
    out: dict[int, dict[str, Any]] = {}
    for r in rd.rows("/cluster/ha/resources", data) if data is not None else []:
        match = re.fullmatch(r"(?:vm|ct):(\d+)", str(r.get("sid", "")))
        if not match:
            continue
        state = str(r.get("state", "started"))
        out[int(match.group(1))] = {
            "state": state if state in HA_STATES else "started",
            "max_relocate": _int(r.get("max_relocate", 1), "/cluster/ha/resources", "max_relocate"),
            "max_restart": _int(r.get("max_restart", 1), "/cluster/ha/resources", "max_restart"),
            "failback": _flag(r.get("failback", 1)),
        }
    return out


def _ha_rules(rd: _Reader) -> list[dict[str, Any]]:
    data = rd.optional("HA rules", "/cluster/ha/rules")
    rules = rd.rows("/cluster/ha/rules", data) if data is not None else []
    out: list[dict[str, Any]] = []

    def order(r: dict[str, Any]) -> tuple[int, str]:
        return _int(r.get("order", 0), "/cluster/ha/rules", "order"), str(r.get("rule"))

    for r in sorted(rules, key=order):
        rtype = str(r.get("type", ""))
        if rtype not in ("node-affinity", "resource-affinity"):
            rd.notes.append(f"HA rule {r.get('rule')}: type {rtype!r} is not emulated; left out")
            continue
        rule: dict[str, Any] = {
            "rule": str(r.get("rule")),
            "type": rtype,
            "resources": [s for s in str(r.get("resources", "")).split(",") if s],
        }
        if rtype == "resource-affinity":
            rule["affinity"] = str(r.get("affinity", "positive"))
        else:
            rule["nodes"] = [n for n in str(r.get("nodes", "")).split(",") if n]
            rule["strict"] = _flag(r.get("strict", 0))
        if _flag(r.get("disable", 0)):
            rule["disable"] = True
        if r.get("comment"):
            rule["comment"] = str(r["comment"])
        out.append(rule)
    return out


def _replication(rd: _Reader) -> dict[int, list[str]]:
    data = rd.optional("replication jobs", "/cluster/replication")
    out: dict[int, list[str]] = {}
    for job in rd.rows("/cluster/replication", data) if data is not None else []:
        if _flag(job.get("disable", 0)) or job.get("guest") is None or not job.get("target"):
            continue
        targets = out.setdefault(_int(job["guest"], "/cluster/replication", "guest"), [])
        if str(job["target"]) not in targets:
            targets.append(str(job["target"]))
    return out


# What each section needs on / (pve-access-control: the PVEAuditor role has them all). Without
# one PVE filters the answer silently, so the header says which sections may be incomplete.
_NEEDED = (
    ("Sys.Audit", "nodes, datacenter options, HA resources and rules"),
    ("VM.Audit", "guests and replication jobs"),
    ("Datastore.Audit", "storages"),
    ("Pool.Audit", "pools and the guests' pools"),
    ("SDN.Audit", "node bridges"),
    ("Mapping.Audit", "resource mappings"),
)


def _check_privileges(rd: _Reader) -> None:
    perms = rd.optional("privileges", "/access/permissions")
    if not isinstance(perms, dict):
        return
    mine = perms.get("/")
    have = set(mine) if isinstance(mine, dict) else set()
    for priv, what in _NEEDED:
        if priv not in have:
            rd.notes.append(f"{what}: may be incomplete (the token lacks {priv} on /)")


# --- the whole cluster ---------------------------------------------------------------------------


def capture_cluster(
    client: PveClient,
    *,
    link: str = "10Gbit",
    with_descriptions: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Capture:
    """Read the cluster behind `client` (GET requests only) into a cluster file's data."""
    rd = _Reader(client)
    say = progress or (lambda _msg: None)
    status_rows = rd.rows("/cluster/status", rd.get("/cluster/status"))
    cluster_row = next((r for r in status_rows if r.get("type") == "cluster"), None)
    node_rows = [r for r in status_rows if r.get("type") == "node"]
    if not node_rows:
        raise _bad("/cluster/status", "no node is listed")
    name = str((cluster_row or node_rows[0]).get("name", ""))
    if not re.fullmatch(r"[A-Za-z0-9\-]{1,15}", name):
        rd.notes.append(f"cluster name {name!r} cannot be a cluster-file name; 'captured' written")
        name = "captured"
    _check_privileges(rd)
    say("nodes")
    resources = rd.rows("/cluster/resources", rd.get("/cluster/resources"))
    nodes = _nodes(rd, status_rows, resources, link)
    first_online = next((n for n, v in nodes.items() if v["online"]), None)
    data: dict[str, Any] = {
        "name": name,
        # Seeds the emulator's random choices; derived from the name so a re-capture is equal.
        "seed": zlib.crc32(name.encode()),
        "datacenter": _datacenter(rd, first_online),
        "nodes": nodes,
    }
    say("storages")
    storages = _storages(rd, resources)
    if storages:
        data["storages"] = storages
    mappings = _mappings(rd, set(nodes))
    if mappings:
        data["mappings"] = mappings
    guests_rows = sorted(
        (r for r in resources if r.get("type") in ("qemu", "lxc")),
        key=lambda r: _int(r.get("vmid"), "/cluster/resources", "vmid"),
    )
    pools = _pools(rd, {str(r["pool"]) for r in guests_rows if r.get("pool")})
    if pools:
        data["pools"] = pools
    ha = _ha(rd)
    replicate = _replication(rd)
    guests: dict[int, dict[str, Any]] = {}
    say(f"{len(guests_rows)} guests")
    for row in guests_rows:
        if str(row.get("node")) not in nodes:
            raise _bad("/cluster/resources", f"guest {row.get('vmid')} is on an unknown node")
        g = _guest(rd, row, ha, replicate, with_descriptions)
        if g is not None:
            guests[_int(row["vmid"], "/cluster/resources", "vmid")] = g
    if guests:
        data["guests"] = guests
    rules = _ha_rules(rd)
    if rules:
        data["ha_rules"] = rules
    return Capture(data, rd.notes)


# --- the file ------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style for sections and guests; one line (a flow mapping) per node, storage,
    mapping, pool and rule, and for a guest's disks, HA settings and lists."""


def _flow_map(dumper: yaml.SafeDumper, value: _Flow) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=True)


class _Flow(dict[str, Any]):
    pass


_Dumper.add_representer(_Flow, _flow_map)


def _one_line(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def render_cluster_file(cap: Capture) -> str:
    """The cluster file's text: a header of what was not captured, then the data."""
    header = [
        f"# Cluster {cap.name}, captured by `pvetool emulator capture` (GET requests only).",
        "# Serve it: pvetool emulator serve --cluster FILE, or pvetool --emulate FILE <command>.",
        "# Format: pvetool/emulator/data/lab.yaml. Not captured: link speeds (PVE does not report",
        "# NIC speeds: `link` is the --link value), tokens, users, ACLs and any secret (the",
        "# emulator makes its own root@pam!pvetool token), timing parameters.",
    ]
    if cap.notes:
        header.append("# Incomplete:")
        # Notes quote the cluster's own names and PVE's messages: one printable line each, so
        # nothing a server sends can end the comment and add keys to the file.
        header += [f"#   - {_one_line(note)}" for note in cap.notes]
    body: dict[str, Any] = {}
    for key, value in cap.data.items():
        if key in ("nodes", "storages", "mappings", "pools"):
            body[key] = {k: _Flow(v) for k, v in value.items()}
        elif key == "guests":
            body[key] = {
                vmid: {k: _Flow(v) if isinstance(v, dict) else v for k, v in g.items()}
                for vmid, g in value.items()
            }
        elif key == "ha_rules":
            body[key] = [_Flow(r) for r in value]
        else:
            body[key] = value
    text = yaml.dump(
        body,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=None,  # lists of scalars on one line
        allow_unicode=True,
        width=1 << 16,  # never fold a line: one entry stays one line
    )
    return "\n".join(header) + "\n" + text
