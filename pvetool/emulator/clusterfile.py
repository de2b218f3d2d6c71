"""Cluster files for the emulator: the schema, read from YAML into frozen specs.

A cluster file describes what the emulated Proxmox VE cluster holds: nodes, storages, guests,
HA rules, API tokens and users, datacenter options and timing overrides (format: the built-in
``lab`` in ``data/lab.yaml`` documents every key). ``load_cluster`` / ``load_cluster_text``
check the whole file and raise one ``ClusterFileError`` that lists *every* problem, each as
``file:line: key.path: message``, so a scenario author fixes them in one go. What PVE itself would
only refuse at migration or start time (a bridge missing on one node, a PCI device, a local disk)
is *not* an error here: the emulator must be able to show those refusals.

Defaults worth knowing: a guest is ``running`` (a template ``stopped``), ``idle``, not HA
(``ha_state`` ""), with ``used_bytes`` None (the emulator derives it). Without ``tokens`` and
``users`` the cluster has token ``root@pam!pvetool`` and user ``root@pam``, their secrets derived
from ``seed``. A token without ``privileges`` has its user's; a user other than root@pam without
``privileges`` has none. Secrets never appear in a repr.

This module reads the file as a whole (top level, datacenter, nodes, storages, tokens and users,
timing) and loads it; `clusterfile_guests` checks the guests, `clusterfile_rules` the HA rules,
`clusterfile_checker` holds what all sections share, `specs` the frozen specs (re-exported
here). Big cluster files for benchmarks come from `emulator.fleet.generate_cluster`.

Imports: the standard library, the standard-library-only leaves ``pvetool.units``,
``pvetool.yamlcheck`` and, lazily, ``pvetool.timing`` (for the names and limits of timing
overrides), and the emulator's own cluster-file modules; nothing else from pvetool.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import random
import re
import uuid
import zoneinfo
from typing import Any

from pvetool.emulator.clusterfile_checker import (
    CONFIG_ID_RE,
    STORAGE_ID_RE,
    ClusterChecker,
    Draft,
    to_link,
    to_size,
)
from pvetool.emulator.clusterfile_guests import check_guests, parse_disk
from pvetool.emulator.clusterfile_rules import check_ha_rules
from pvetool.emulator.specs import (
    ALWAYS_SHARED,
    ARCHES,
    BUILTIN_ROLES,
    CONTENT_TYPES,
    DIRTY_PROFILES,
    MAPPING_TYPES,
    MIGRATION_TYPES,
    NEVER_SHARED,
    PRIVILEGES,
    SHUTDOWN_POLICIES,
    STORAGE_TYPES,
    AclSpec,
    ClusterFileError,
    ClusterSpec,
    DatacenterSpec,
    DiskSpec,
    GuestSpec,
    HaRuleSpec,
    MappingSpec,
    NodeSpec,
    PoolSpec,
    StorageSpec,
    TokenSpec,
    UserSpec,
)
from pvetool.units import GiB, format_size
from pvetool.yamlcheck import (
    BROKEN,
    Invalid,
    Loc,
    Problems,
    describe,
    hint,
    read_document,
    to_bool,
    to_cidr,
    to_enum,
    to_int,
    to_nonempty_str,
    to_number,
    to_pattern,
    to_str,
)

__all__ = [
    "BUILTIN_CLUSTERS",
    "DIRTY_PROFILES",
    "ClusterFileError",
    "ClusterSpec",
    "DatacenterSpec",
    "DiskSpec",
    "GuestSpec",
    "HaRuleSpec",
    "NodeSpec",
    "StorageSpec",
    "TokenSpec",
    "UserSpec",
    "load_cluster",
    "load_cluster_text",
    "parse_disk",
]

BUILTIN_CLUSTERS = ("lab",)
_TOP_KEYS = tuple(
    """
    name seed datacenter nodes storages mappings pools guests ha_rules tokens users acls timing
    """.split()
)
_NODE_KEYS = tuple(
    """
    cpus memory link version cpu_model online arch bridges maintenance
    """.split()
)
_STORAGE_KEYS = ("type", "shared", "size", "nodes", "content", "disable")
_NODE_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_CLUSTER_NAME_RE = re.compile(r"[A-Za-z0-9\-]{1,15}")
_BRIDGE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,14}")
_VERSION_RE = re.compile(r"\d+\.\d+(\.\d+)?([~+\-][A-Za-z0-9.~+\-]*)?")
_USER_RE = re.compile(r"[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]*")
_TOKEN_RE = re.compile(r"([^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]*)!([A-Za-z][A-Za-z0-9.\-_]*)")


# --- sections ----------------------------------------------------------------------------------


def _check_datacenter(ck: ClusterChecker, loc: Loc | None) -> DatacenterSpec:
    if loc is None:
        return DatacenterSpec()
    path = "datacenter"
    values = ck.fields(loc, path, ("migration", "bwlimit", "max_workers", "ha", "timezone"))
    if values is None:
        return DatacenterSpec()
    migration_type, network = "secure", None
    if "migration" in values:
        mig = ck.fields(values["migration"], f"{path}.migration", ("type", "network"))
        if mig is not None:
            migration_type = ck.get(
                mig, "type", f"{path}.migration", to_enum(MIGRATION_TYPES), "secure"
            )
            network = ck.opt(mig, "network", f"{path}.migration", to_cidr)
    bwlimit = bw_default = 0
    if "bwlimit" in values:
        bw = ck.fields(values["bwlimit"], f"{path}.bwlimit", ("migration", "default"))
        if bw is not None:
            bwlimit = ck.get(bw, "migration", f"{path}.bwlimit", to_int(0), 0)
            bw_default = ck.get(bw, "default", f"{path}.bwlimit", to_int(0), 0)
    policy = "conditional"
    if "ha" in values:
        ha = ck.fields(values["ha"], f"{path}.ha", ("shutdown_policy",))
        if ha is not None:
            policy = ck.get(
                ha, "shutdown_policy", f"{path}.ha", to_enum(SHUTDOWN_POLICIES), "conditional"
            )
    return DatacenterSpec(
        migration_type=migration_type,
        migration_network=network,
        bwlimit_migration_KiBps=bwlimit,
        bwlimit_default_KiBps=bw_default,
        max_workers=ck.opt(values, "max_workers", path, to_int(1, 1024)),
        ha_shutdown_policy=policy,
        timezone=ck.get(values, "timezone", path, _to_timezone, "UTC"),
    )


def _to_timezone(loc: Loc) -> str:
    name = to_nonempty_str(loc)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r} (expected e.g. Europe/Vienna or UTC)") from None
    return name


def _check_nodes(ck: ClusterChecker, loc: Loc | None, top_line: int, draft: Draft) -> None:
    if loc is None:
        ck.add(top_line, "", "missing required key 'nodes'")
        return
    nodes = ck.mapping(loc, "nodes", "a mapping of node name to node")
    if nodes is None:
        draft.nodes_broken = True
        return
    if not nodes:
        ck.add(loc, "nodes", "a cluster needs at least one node")
    for name, node_loc in nodes.items():
        path = f"nodes.{name}"
        key_line = (loc.key_lines or {}).get(name, node_loc.line)
        if not _NODE_NAME_RE.fullmatch(name):
            ck.add(key_line, path, f"'{name}' is not a valid node (host) name")
            continue
        draft.node_names.append(name)
        values = ck.fields(node_loc, path, _NODE_KEYS, required=("cpus", "memory"))
        if values is None:
            continue
        memory = ck.opt(values, "memory", path, to_size)
        if memory is not None and memory < GiB:
            ck.at(
                values,
                "memory",
                path,
                f"{format_size(memory)} is too little for a node (did you forget a unit?)",
            )
        bridges = ["vmbr0"]
        listed = ck.str_list(
            values, "bridges", path, to_pattern(_BRIDGE_RE, "a bridge name", numbers=True)
        )
        if listed is not None:
            bridges = []
            for item, bridge in listed:
                if bridge in bridges:
                    ck.add(item, f"{path}.bridges", f"bridge '{bridge}' is listed twice")
                bridges.append(bridge)
        draft.nodes[name] = NodeSpec(
            name=name,
            cpus=ck.get(values, "cpus", path, to_int(1, 8192), 1),
            memory_bytes=memory or GiB,
            link_bits_per_s=ck.get(values, "link", path, to_link, 10e9),
            version=ck.get(
                values,
                "version",
                path,
                to_pattern(_VERSION_RE, "a PVE version like 9.2.4", numbers=True),
                "9.2.4",
            ),
            cpu_model=ck.get(
                values, "cpu_model", path, to_nonempty_str, "QEMU Virtual CPU version 2.5+"
            ),
            online=ck.get(values, "online", path, to_bool, True),
            arch=ck.get(values, "arch", path, to_enum(ARCHES), "x86_64"),
            bridges=tuple(dict.fromkeys(bridges)),
            maintenance=ck.get(values, "maintenance", path, to_bool, False),
        )


def _check_storages(ck: ClusterChecker, loc: Loc | None, draft: Draft) -> None:
    if loc is None:
        return
    storages = ck.mapping(loc, "storages", "a mapping of storage id to storage")
    if storages is None:
        draft.storages_broken = True
        return
    for name, st_loc in storages.items():
        path = f"storages.{name}"
        key_line = (loc.key_lines or {}).get(name, st_loc.line)
        if not STORAGE_ID_RE.fullmatch(name):
            ck.add(key_line, path, f"'{name}' is not a valid storage id")
            continue
        draft.storage_names.append(name)
        values = ck.fields(st_loc, path, _STORAGE_KEYS, required=("type", "size"))
        if values is None:
            continue
        stype = ck.opt(values, "type", path, to_enum(sorted(STORAGE_TYPES)))
        shared = ck.opt(values, "shared", path, to_bool)
        if stype is not None and shared is not None:
            if shared and stype in NEVER_SHARED:
                ck.at(
                    values,
                    "shared",
                    path,
                    f"a {stype} storage is local to one node and cannot be shared",
                )
            if not shared and stype in ALWAYS_SHARED:
                ck.at(values, "shared", path, f"a {stype} storage is always shared")
        if shared is None:
            shared = stype in ALWAYS_SHARED
        nodes: tuple[str, ...] | None = None
        listed = ck.str_list(values, "nodes", path)
        if listed is not None:
            nodes = tuple(dict.fromkeys(n for _, n in listed))
            for i, (item, node) in enumerate(listed):
                ck.reference(item, f"{path}.nodes[{i}]", node, draft.known_nodes, "node")
        content: tuple[str, ...] = ("images", "rootdir")
        listed = ck.str_list(values, "content", path, to_enum(sorted(CONTENT_TYPES)))
        if listed is not None:
            content = tuple(dict.fromkeys(c for _, c in listed))
        draft.storages[name] = StorageSpec(
            name=name,
            type=stype or "dir",
            shared=shared,
            size_bytes=ck.get(values, "size", path, to_size, 0),
            nodes=nodes,
            content=content,
            disable=ck.get(values, "disable", path, to_bool, False),
        )


def _check_privileges(
    ck: ClusterChecker, values: dict[str, Loc], path: str, default: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    loc = values.get("privileges")
    if loc is None or loc.value is BROKEN:
        return default
    if loc.value == "all":
        return None
    if not isinstance(loc.value, list):
        ck.add(
            loc,
            f"{path}.privileges",
            f"expected 'all' or a list of privileges, got {describe(loc)}",
        )
        return default
    out: list[str] = []
    for i, item in enumerate(loc.value):
        priv = ck.convert(item, f"{path}.privileges[{i}]", to_str)
        if priv is None:
            continue
        if priv not in PRIVILEGES:
            note = " (PVE 9 removed it)" if priv == "VM.Monitor" else hint(priv, PRIVILEGES)
            ck.add(item, f"{path}.privileges[{i}]", f"unknown privilege '{priv}'{note}")
            continue
        if priv not in out:
            out.append(priv)
    return tuple(out)


def _check_auth(
    ck: ClusterChecker, tokens_loc: Loc | None, users_loc: Loc | None, seed: int
) -> tuple[tuple[TokenSpec, ...], tuple[UserSpec, ...]]:
    if tokens_loc is None and users_loc is None:
        rng = random.Random(seed)
        secret = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        password = f"{rng.getrandbits(96):024x}"
        return (TokenSpec("root@pam!pvetool", secret, None),), (
            UserSpec("root@pam", password, None),
        )
    users: list[UserSpec] = []
    user_privs: dict[str, tuple[str, ...] | None] = {"root@pam": None}
    user_items = ck.sequence(users_loc, "users") if users_loc is not None else None
    for i, u_loc in enumerate(user_items or ()):
        path = f"users[{i}]"
        values = ck.fields(
            u_loc, path, ("id", "password", "privileges"), required=("id", "password")
        )
        if values is None:
            continue
        uid = ck.opt(
            values, "id", path, to_pattern(_USER_RE, "a user id like auditor@pve", numbers=True)
        )
        if uid is not None:
            if any(u.id == uid for u in users):
                ck.at(values, "id", path, f"user {uid} is listed twice")
        privs = _check_privileges(ck, values, path, None if uid == "root@pam" else ())
        if uid == "root@pam" and privs is not None:
            ck.at(values, "privileges", path, "root@pam always has all privileges")
        users.append(
            UserSpec(uid or "", ck.get(values, "password", path, to_nonempty_str, ""), privs)
        )
        if uid:
            user_privs[uid] = privs
    tokens: list[TokenSpec] = []
    token_items = ck.sequence(tokens_loc, "tokens") if tokens_loc is not None else None
    for i, t_loc in enumerate(token_items or ()):
        path = f"tokens[{i}]"
        values = ck.fields(
            t_loc, path, ("id", "secret", "privileges", "privsep"), required=("id", "secret")
        )
        if values is None:
            continue
        tid = ck.opt(
            values,
            "id",
            path,
            to_pattern(_TOKEN_RE, "a token id like root@pam!pvetool", numbers=True),
        )
        owner_privs: tuple[str, ...] | None = ()
        if tid is not None:
            owner = tid.split("!", 1)[0]
            if any(t.id == tid for t in tokens):
                ck.at(values, "id", path, f"token {tid} is listed twice")
            if owner not in user_privs:
                ck.at(values, "id", path, f"its user {owner} is not in 'users'")
            owner_privs = user_privs.get(owner, ())
        # Without `privileges` a token has its user's (PVE: privsep=0); with them it is
        # privilege-separated: its ACL on / holds them (intersected with its user's).
        privs = _check_privileges(ck, values, path, owner_privs)
        privsep = ck.get(values, "privsep", path, to_bool, "privileges" in values)
        if "privileges" in values and not privsep:
            ck.at(values, "privsep", path, "a token with its own 'privileges' is privsep")
        tokens.append(
            TokenSpec(
                tid or "",
                ck.get(values, "secret", path, to_nonempty_str, ""),
                privs,
                privsep=privsep,
            )
        )
    return tuple(tokens), tuple(users)


_ACL_PATH_RE = re.compile(r"/|(/[A-Za-z0-9\-_.:]+)+")


def _check_acls(
    ck: ClusterChecker,
    loc: Loc | None,
    tokens: tuple[TokenSpec, ...],
    users: tuple[UserSpec, ...],
) -> tuple[AclSpec, ...]:
    """`acls:` (user.cfg `acl:` lines): roles or privileges of a user or token on a path."""
    if loc is None:
        return ()
    items = ck.sequence(loc, "acls", "a list of ACL entries")
    if items is None:
        return ()
    known_users = [u.id for u in users] + ["root@pam"]
    known_tokens = [t.id for t in tokens]
    out: list[AclSpec] = []
    for i, a_loc in enumerate(items):
        path = f"acls[{i}]"
        values = ck.fields(
            a_loc,
            path,
            ("path", "user", "token", "roles", "privileges", "propagate"),
            required=("path",),
        )
        if values is None:
            continue
        acl_path = ck.get(
            values, "path", path, to_pattern(_ACL_PATH_RE, "an ACL path like /vms/101"), "/"
        )
        if ("user" in values) == ("token" in values):
            ck.add(a_loc, path, "give exactly one of 'user' and 'token'")
            continue
        if "user" in values:
            subject = ck.get(values, "user", path, to_str, "")
            ck.reference(values["user"], f"{path}.user", subject, known_users, "user")
        else:
            subject = ck.get(values, "token", path, to_str, "")
            ck.reference(values["token"], f"{path}.token", subject, known_tokens, "token")
        roles: list[str] = []
        for item, role in ck.str_list(values, "roles", path) or ():
            if role not in BUILTIN_ROLES:
                ck.add(item, f"{path}.roles", f"unknown role '{role}'{hint(role, BUILTIN_ROLES)}")
            else:
                roles.append(role)
        privileges = None
        if "privileges" in values:
            privileges = _check_privileges(ck, values, path, ())
            if privileges is None:
                roles.append("Administrator")
        if "roles" not in values and "privileges" not in values:
            ck.add(a_loc, path, "give 'roles' (e.g. [PVEVMAdmin]) or 'privileges'")
        out.append(
            AclSpec(
                path=acl_path,
                subject=subject,
                roles=tuple(roles),
                privileges=privileges,
                propagate=ck.get(values, "propagate", path, to_bool, True),
            )
        )
    return tuple(out)


_POOL_RE = re.compile(r"[A-Za-z0-9.\-_]+(/[A-Za-z0-9.\-_]+){0,2}")


def _check_pools(ck: ClusterChecker, loc: Loc | None) -> dict[str, PoolSpec]:
    """`pools:` resource pools beyond those the guests name (empty ones, comments)."""
    if loc is None:
        return {}
    pools = ck.mapping(loc, "pools", "a mapping of pool name to {comment: ...}")
    if pools is None:
        return {}
    out: dict[str, PoolSpec] = {}
    for name, p_loc in pools.items():
        path = f"pools.{name}"
        if not _POOL_RE.fullmatch(name):
            ck.add(ck.key_line(loc, name), path, f"'{name}' is not a valid pool name")
            continue
        comment = ""
        if p_loc.value is not None:
            values = ck.fields(p_loc, path, ("comment",))
            if values is not None:
                comment = ck.get(values, "comment", path, to_str, "")
        out[name] = PoolSpec(name, comment)
    return out


def _check_mappings(ck: ClusterChecker, loc: Loc | None, draft: Draft) -> None:
    """`mappings:` resource mappings (PCI, USB, directories) and the nodes that have them."""
    if loc is None:
        return
    mappings = ck.mapping(loc, "mappings", "a mapping of mapping id to mapping")
    if mappings is None:
        return
    for name, m_loc in mappings.items():
        path = f"mappings.{name}"
        if not CONFIG_ID_RE.fullmatch(name):
            ck.add(ck.key_line(loc, name), path, f"'{name}' is not a valid mapping id")
            continue
        values = ck.fields(m_loc, path, ("type", "nodes", "live_migration"), required=("type",))
        if values is None:
            continue
        mtype = ck.get(values, "type", path, to_enum(MAPPING_TYPES), "pci")
        nodes: list[str] = []
        for i, (item, node) in enumerate(ck.str_list(values, "nodes", path) or ()):
            if ck.reference(item, f"{path}.nodes[{i}]", node, draft.known_nodes, "node"):
                nodes.append(node)
        live = ck.get(values, "live_migration", path, to_bool, False)
        if live and mtype != "pci":
            ck.at(values, "live_migration", path, "only PCI mappings can be live-migration-capable")
        draft.mappings[name] = MappingSpec(name, mtype, tuple(nodes), live)


def _check_timing(ck: ClusterChecker, loc: Loc | None) -> dict[str, float]:
    if loc is None:
        return {}
    values = ck.mapping(loc, "timing", "a mapping of timing parameter to number")
    if values is None:
        return {}
    from pvetool import timing  # lazily: only cluster files that tune the model need it

    fields_by_name = {f.name: f for f in dataclasses.fields(timing.TimingParams)}
    overrides: dict[str, float] = {}
    for name, v_loc in values.items():
        if name not in fields_by_name:
            line = (loc.key_lines or {}).get(name, loc.line)
            ck.add(line, "timing", f"unknown timing parameter '{name}'{hint(name, fields_by_name)}")
            continue
        number = ck.convert(v_loc, f"timing.{name}", to_number)
        if number is None:
            continue
        if number < 0:
            ck.add(v_loc, f"timing.{name}", f"must not be negative, got {number}")
            continue
        if isinstance(fields_by_name[name].default, int) and not number.is_integer():
            ck.add(v_loc, f"timing.{name}", f"must be an integer, got {number}")
            continue
        overrides[name] = number
    if overrides and not ck.problems:
        # The model's own cross-checks (e.g. min <= max) on the combined parameters.
        clean: dict[str, Any] = {
            k: int(v) if isinstance(fields_by_name[k].default, int) else v
            for k, v in overrides.items()
        }
        try:
            dataclasses.replace(timing.TimingParams(), **clean)
        except (ValueError, TypeError) as exc:
            ck.add(loc, "timing", str(exc))
    return overrides


def _check_cluster(root: Loc, problems: Problems) -> ClusterSpec:
    ck = ClusterChecker(problems)
    top = ck.fields(root, "", _TOP_KEYS, required=("name", "nodes"))
    if top is None:
        raise ClusterFileError(problems.sorted())
    name = ck.get(
        top,
        "name",
        "",
        to_pattern(
            _CLUSTER_NAME_RE, "a cluster name of up to 15 letters, digits and -", numbers=True
        ),
        "",
    )
    seed = ck.get(top, "seed", "", to_int(0), 0)
    datacenter = _check_datacenter(ck, top.get("datacenter"))
    draft = Draft()
    _check_nodes(ck, top.get("nodes"), root.line, draft)
    _check_storages(ck, top.get("storages"), draft)
    _check_mappings(ck, top.get("mappings"), draft)
    pools = _check_pools(ck, top.get("pools"))
    check_guests(ck, top.get("guests"), draft)
    rules = check_ha_rules(ck, top.get("ha_rules"), draft)
    tokens, users = _check_auth(ck, top.get("tokens"), top.get("users"), seed)
    acls = _check_acls(ck, top.get("acls"), tokens, users)
    timing_overrides = _check_timing(ck, top.get("timing"))
    if problems:
        raise ClusterFileError(problems.sorted())
    return ClusterSpec(
        name=name,
        seed=seed,
        datacenter=datacenter,
        nodes=draft.nodes,
        storages=draft.storages,
        guests=draft.guests,
        ha_rules=rules,
        tokens=tokens,
        users=users,
        timing_overrides=timing_overrides,
        acls=acls,
        pools=pools,
        mappings=draft.mappings,
    )


# --- loading -----------------------------------------------------------------------------------


def load_cluster_text(text: str, filename: str = "<string>") -> ClusterSpec:
    """Validate a cluster file's text; ``filename`` is what problem messages name."""
    problems = Problems(filename)
    root = read_document(
        text,
        problems,
        what="the cluster file",
        empty="the file is empty; a cluster needs at least 'name' and 'nodes'",
    )
    if root is None:
        raise ClusterFileError(problems.sorted())
    if not isinstance(root.value, dict):
        problems.add(root.line, "", f"expected a mapping at the top, got {describe(root)}")
        raise ClusterFileError(problems.sorted())
    return _check_cluster(root, problems)


def load_cluster(source: str | os.PathLike[str]) -> ClusterSpec:
    """Load a built-in cluster by name (``lab``) or a cluster file by path."""
    if isinstance(source, str) and source in BUILTIN_CLUSTERS:
        resource = importlib.resources.files("pvetool.emulator").joinpath(f"data/{source}.yaml")
        return load_cluster_text(resource.read_text(encoding="utf-8"), f"{source}.yaml")
    filename = os.fspath(source)
    try:
        with open(filename, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        builtin = f" (built-in clusters: {', '.join(BUILTIN_CLUSTERS)})"
        problem = f"{filename}: cannot read the cluster file: {reason}{builtin}"
        raise ClusterFileError([problem]) from None
    return load_cluster_text(text, filename)
