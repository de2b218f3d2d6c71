"""The plan loader: the plan schema of pvetool, turning a plan file into a `PlanSpec`.

A plan (format: docs/plan-format.md, examples in playbooks/) is read by `pvetool.yamlcheck`
(PyYAML's safe loader, keeping the line of every value; nesting deeper than
``yamlcheck.MAX_DEPTH`` is refused first). The whole document is checked before anything is
returned, and *every* problem is collected into one ``PlanError``, each as
``file:line: key.path: what was expected, got what was found`` with a "did you mean" for a
misspelt key, step kind or choice. Units (``8GiB``, ``500MiB/s``, ``10%``, ``30s``) are converted
to base units by `pvetool.units`. A plan that fails to load never reaches a cluster.

What the loader cannot know without a cluster (does node ``pve4`` exist? guest 123?) it leaves to
the checks, and hands them every node name the plan mentions, with its place, in
``PlanSpec.node_refs``; ``suggest`` phrases their "did you mean".

Imports: the standard library, `pvetool.errors`, `pvetool.planner.spec` and the leaves
`pvetool.units` and `pvetool.yamlcheck`. Never the emulator, the API client or the executor.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
from collections.abc import Callable, Collection
from pathlib import PurePath
from typing import Literal, TypeVar

from pvetool import units
from pvetool.errors import PlanError
from pvetool.planner.spec import (
    Amount,
    BalanceBy,
    Concurrency,
    DrainStep,
    Exclusions,
    ExplicitMove,
    FailurePolicy,
    Group,
    GuestOverride,
    GuestSelector,
    Headroom,
    Hook,
    MigrationSettings,
    MoveStep,
    Pin,
    PlanSpec,
    RebalanceStep,
    RollingStep,
    Rules,
    Step,
    Where,
)
from pvetool.yamlcheck import (
    BROKEN,
    MAX_DEPTH,
    Checker,
    Conv,
    Invalid,
    Item,
    Loc,
    Problems,
    describe,
    hint,
    is_scalar,
    join,
    read_document,
    suggest,
    to_bool,
    to_cidr,
    to_enum,
    to_int,
    to_nonempty_str,
    to_number,
    to_pattern,
    to_str,
)

__all__ = ["PLAN_VERSION", "STEP_KINDS", "load_plan", "load_plan_text", "suggest"]

PLAN_VERSION = 1
STEP_KINDS = ("drain", "rolling", "rebalance", "move")
VMID_MIN, VMID_MAX = 100, 999_999_999
# Choices, keyed by their spelling in a plan (the values carry the spec's Literal types).
FAILURE_POLICIES: dict[str, FailurePolicy] = {
    "stop": "stop",
    "continue": "continue",
    "skip-guest": "skip-guest",
}
MIGRATION_TYPES: dict[str, Literal["secure", "insecure"]] = {
    "secure": "secure",
    "insecure": "insecure",
}
BALANCE_BY: dict[str, BalanceBy] = {"memory": "memory", "cpu": "cpu", "both": "both"}
HOOK_EXAMPLE = '["/usr/local/sbin/pve-maintenance-hook", "before"]'

_TOP_KEYS = ("version", "name", "description", "rules", "steps")
_RULES_KEYS = (
    "exclude",
    "anti_affinity",
    "affinity",
    "pins",
    "headroom",
    "cpu_overcommit",
    "concurrency",
    "migration",
    "on_failure",
    "task_timeout",
)
_SELECTOR_KEYS = ("vmids", "tags", "pools")
_EXCLUDE_KEYS = (*_SELECTOR_KEYS, "templates")
_GROUP_KEYS = ("name", *_SELECTOR_KEYS)
_PIN_KEYS = (*_SELECTOR_KEYS, "nodes")
_HEADROOM_KEYS = ("memory", "cpu")
_CONCURRENCY_KEYS = ("cluster", "per_source", "per_target")
_MIGRATION_KEYS = ("type", "network", "bwlimit", "with_local_disks", "target_storage")
_DRAIN_KEYS = (
    "node",
    "nodes",
    "targets",
    "with_local_disks",
    "target_storage",
    "include_stopped",
    "guests",
)
_OVERRIDE_KEYS = ("target", "target_storage", "bwlimit", "offline", "skip")
_ROLLING_KEYS = (
    "nodes",
    "targets",
    "before",
    "after",
    "wait_online_timeout",
    "confirm_between",
    "pause",
    "return_guests",
)
_HOOK_KEYS = ("command", "timeout")
_REBALANCE_KEYS = (
    "by",
    "weights",
    "threshold",
    "max_moves",
    "exclude_nodes",
    "min_improvement",
)
_WEIGHT_KEYS = ("memory", "cpu")
_STEP_KEYS: dict[str, tuple[str, ...]] = {
    "drain": _DRAIN_KEYS,
    "rolling": _ROLLING_KEYS,
    "rebalance": _REBALANCE_KEYS,
    "move": (),
}

# PVE's own formats: node = host name label; tag and pool ids as pve-cluster checks them.
_NODE_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-+.]*")
_POOL_RE = re.compile(r"[A-Za-z0-9.\-_]+")
_STORAGE_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-_.]*[A-Za-z0-9]")
_VMID_KEY_RE = re.compile(r"\d{1,12}")


def _plan_error(problems: Problems) -> PlanError:
    found = problems.sorted()
    noun = "problem" if len(found) == 1 else "problems"
    message = f"The plan {problems.filename} has {len(found)} {noun}: " + "; ".join(found)
    return PlanError(message, problems=found)


T = TypeVar("T")


def _to_name(loc: Loc) -> str:
    """A name (of a plan, a group): not empty, without surrounding blanks."""
    return to_nonempty_str(loc).strip()


_to_move_count = to_int(1, what="a number of moves (1 or more)")
_to_node = to_pattern(_NODE_RE, "a node name")
_to_storage = to_pattern(_STORAGE_RE, "a storage id")
_to_pool = to_pattern(_POOL_RE, "a pool name")


def _to_tag(loc: Loc) -> str:
    text = to_str(loc).strip()  # `tags: [2024]` is a tag PVE allows
    if not _TAG_RE.fullmatch(text):
        raise Invalid(f"expected a tag (letters, digits, _ - + .), got {describe(loc)}")
    return text


def _vmid_range(vmid: int, shown: str) -> int:
    if not VMID_MIN <= vmid <= VMID_MAX:
        raise Invalid(f"expected a vmid from {VMID_MIN} to {VMID_MAX}, got {shown}")
    return vmid


def _to_vmid(loc: Loc) -> int:
    value = loc.value
    if isinstance(value, str) and _VMID_KEY_RE.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected a vmid (a number from {VMID_MIN}), got {describe(loc)}")
    return _vmid_range(value, describe(loc))


def _vmid_key(key: str) -> int:
    """The vmid of a mapping key (its source text, e.g. ``111``)."""
    if not _VMID_KEY_RE.fullmatch(key.strip()):
        raise Invalid(f"expected a vmid (a number from {VMID_MIN}) as the key, got {key!r}")
    return _vmid_range(int(key.strip()), key.strip())


def _unit(parse: Callable[[object], T], what: str) -> Conv[T]:
    """A converter from a `pvetool.units` parser; lists, mappings and null are refused first."""

    def conv(loc: Loc) -> T:
        if not is_scalar(loc) or loc.value is None or isinstance(loc.value, bool):
            raise Invalid(f"expected {what}, got {describe(loc)}")
        try:
            return parse(loc.value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    return conv


_to_rate = _unit(units.parse_rate, "a rate like 500MiB/s or 1Gbit/s")
_to_duration = _unit(units.parse_duration, "a duration like 30s, 10m or 1h")
_to_percent_any = _unit(units.parse_percent, "a percentage like 10%")


def _to_positive_duration(loc: Loc) -> float:
    seconds = _to_duration(loc)
    if seconds <= 0:
        raise Invalid(f"must be longer than 0 seconds, got {describe(loc)}")
    return seconds


def _to_percent(loc: Loc) -> float:
    """A percentage from 0% to 100%, as a fraction."""
    fraction = _to_percent_any(loc)
    if fraction > 1:
        raise Invalid(f"must be at most 100%, got {describe(loc)}")
    return fraction


def _to_memory_amount(loc: Loc) -> Amount:
    if units.is_percent(loc.value):
        return Amount(fraction=_to_percent(loc))
    value = loc.value
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        raise Invalid(
            f"expected a percentage like 10% or a size like 8GiB, got {describe(loc)} "
            f"(give a unit, e.g. {describe(loc)}GiB)"
        )
    try:
        return Amount(absolute=float(_unit(units.parse_size, "a size")(loc)))
    except Invalid:
        raise Invalid(
            f"expected a percentage like 10% or a size like 8GiB, got {describe(loc)}"
        ) from None


def _to_cpu_amount(loc: Loc) -> Amount:
    if units.is_percent(loc.value):
        return Amount(fraction=_to_percent(loc))
    value = loc.value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(
            f"expected a percentage like 10% or a number of CPUs like 4, got {describe(loc)}"
        )
    if value < 0:
        raise Invalid(f"must not be negative, got {describe(loc)}")
    return Amount(absolute=float(value))


def _to_concurrency(loc: Loc) -> int | None:
    """A number of simultaneous migrations (1 or more), or ``auto`` (None)."""
    if loc.value == "auto":
        return None
    value = loc.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected a number of migrations (1 or more) or auto, got {describe(loc)}")
    if value < 1:
        raise Invalid(f"must be at least 1 (or auto), got {value}")
    return value


def _to_weight(loc: Loc) -> float:
    weight = to_number(loc)
    if weight < 0:
        raise Invalid(f"must not be negative, got {describe(loc)}")
    return weight


def _to_overcommit(loc: Loc) -> float:
    ratio = to_number(loc)
    if ratio <= 0:
        raise Invalid(f"must be greater than 0 (4.0 = four vCPUs per CPU), got {describe(loc)}")
    return ratio


# --- the checker -------------------------------------------------------------------------------


class _Checker(Checker):
    """The shared checker, plus what a plan needs: node references with their places."""

    def __init__(self, problems: Problems) -> None:
        super().__init__(problems)
        self.node_refs: list[tuple[str, Where]] = []

    def unknown_key(self, key: str, known: Collection[str], candidates: Collection[str]) -> str:
        """A plan's keys are few: without a close match, list them all."""
        return f"unknown key '{key}'{hint(key, known) or '; expected one of ' + ', '.join(known)}"

    def where(self, loc: Loc | int, path: str) -> Where:
        return Where(self.problems.filename, loc if isinstance(loc, int) else loc.line, path)

    def node(self, loc: Loc, path: str) -> str | None:
        """One node name; recorded in ``node_refs`` for the checks against the cluster."""
        name = self.convert(loc, path, _to_node)
        if name is not None:
            self.node_refs.append((name, self.where(loc, path)))
        return name

    def nodes(
        self, loc: Loc, path: str, *, allow_empty: bool = False, empty_hint: str = ""
    ) -> list[Item[str]] | None:
        """Node names (each recorded in ``node_refs``), without repeats."""
        got = self.items(loc, path, _to_node, "a list of node names")
        if got is None:
            return None
        if loc.value == [] and not allow_empty:
            self.add(loc, path, f"must not be an empty list{empty_hint}")
        seen: dict[str, int] = {}
        out: list[Item[str]] = []
        for item in got:
            name = item.value
            self.node_refs.append((name, self.where(item.loc, item.path)))
            if name in seen:
                self.add(
                    item.loc,
                    item.path,
                    f"node '{name}' is listed twice (first on line {seen[name]})",
                )
                continue
            seen[name] = item.loc.line
            out.append(item)
        return out

    def names(self, values: dict[str, Loc], key: str, path: str, conv: Conv[str]) -> list[str]:
        """Tags or pools, without repeats (a repeat is harmless)."""
        loc = values.get(key)
        if loc is None:
            return []
        got = self.items(loc, join(path, key), conv, f"a list of {key}")
        return list(dict.fromkeys(item.value for item in got or ()))

    def vmids(self, values: dict[str, Loc], key: str, path: str) -> list[int]:
        loc = values.get(key)
        if loc is None:
            return []
        got = self.items(loc, join(path, key), _to_vmid, "a list of vmids")
        return list(dict.fromkeys(item.value for item in got or ()))

    def vmid_key(self, line: int, path: str, key: str) -> int | None:
        try:
            return _vmid_key(key)
        except Invalid as exc:
            self.add(line, path, str(exc))
            return None


# --- rules -------------------------------------------------------------------------------------


def _selector(ck: _Checker, values: dict[str, Loc], path: str) -> GuestSelector:
    return GuestSelector(
        vmids=tuple(ck.vmids(values, "vmids", path)),
        tags=tuple(ck.names(values, "tags", path, _to_tag)),
        pools=tuple(ck.names(values, "pools", path, _to_pool)),
    )


def _exclude(ck: _Checker, loc: Loc, path: str) -> Exclusions:
    values = ck.fields(loc, path, _EXCLUDE_KEYS)
    if values is None:
        return Exclusions()
    return Exclusions(
        members=_selector(ck, values, path),
        templates=ck.get(values, "templates", path, to_bool, True),
        where=ck.where(loc, path),
    )


def _groups(ck: _Checker, loc: Loc, path: str) -> tuple[Group, ...]:
    items = ck.sequence(loc, path, "a list of groups ({name, vmids, tags, pools})")
    groups: list[Group] = []
    names: dict[str, int] = {}
    for i, item in enumerate(items or ()):
        item_path = f"{path}[{i}]"
        values = ck.fields(item, item_path, _GROUP_KEYS, what="a group ({name, vmids|tags|pools})")
        if values is None:
            continue
        name = ck.get(values, "name", item_path, _to_name, item_path)
        if name in names:
            ck.add(
                ck.key_line(item, "name"),
                f"{item_path}.name",
                f"group name '{name}' is used twice (first on line {names[name]})",
            )
        names.setdefault(name, ck.key_line(item, "name"))
        members = _selector(ck, values, item_path)
        if not any(key in values for key in _SELECTOR_KEYS):
            ck.add(item, item_path, "a group needs at least one of vmids, tags or pools")
        elif not (members.tags or members.pools) and len(members.vmids) == 1:
            ck.add(
                values["vmids"],
                f"{item_path}.vmids",
                "a group of one guest has no effect; list at least two vmids (or a tag or pool)",
            )
        groups.append(Group(name=name, members=members, where=ck.where(item, item_path)))
    return tuple(groups)


def _pins(ck: _Checker, loc: Loc, path: str) -> tuple[Pin, ...]:
    items = ck.sequence(loc, path, "a list of pins ({vmids|tags|pools, nodes})")
    pins: list[Pin] = []
    for i, item in enumerate(items or ()):
        item_path = f"{path}[{i}]"
        values = ck.fields(
            item,
            item_path,
            _PIN_KEYS,
            required=("nodes",),
            what="a pin ({vmids|tags|pools, nodes})",
        )
        if values is None:
            continue
        members = _selector(ck, values, item_path)
        if not any(key in values for key in _SELECTOR_KEYS):
            ck.add(item, item_path, "a pin needs at least one of vmids, tags or pools")
        nodes: list[Item[str]] = []
        if "nodes" in values:
            nodes = ck.nodes(values["nodes"], f"{item_path}.nodes") or []
        pins.append(
            Pin(
                members=members,
                nodes=tuple(n.value for n in nodes),
                where=ck.where(item, item_path),
            )
        )
    return tuple(pins)


def _headroom(ck: _Checker, loc: Loc, path: str) -> Headroom:
    values = ck.fields(loc, path, _HEADROOM_KEYS)
    if values is None:
        return Headroom()
    return Headroom(
        memory=ck.get(values, "memory", path, _to_memory_amount, Amount()),
        cpu=ck.get(values, "cpu", path, _to_cpu_amount, Amount()),
    )


def _concurrency(ck: _Checker, loc: Loc, path: str) -> Concurrency:
    values = ck.fields(loc, path, _CONCURRENCY_KEYS)
    if values is None:
        return Concurrency()
    return Concurrency(
        cluster=ck.opt(values, "cluster", path, _to_concurrency),
        per_source=ck.opt(values, "per_source", path, _to_concurrency),
        per_target=ck.opt(values, "per_target", path, _to_concurrency),
    )


def _target_storage(ck: _Checker, loc: Loc, path: str) -> tuple[tuple[str, str], ...] | None:
    """``ceph`` (every disk to ceph) or ``{local-lvm: ceph, ...}`` -> (source, target) pairs."""
    what = "a storage id or a mapping of source storage to target storage"
    if loc.value is BROKEN:
        return None
    if isinstance(loc.value, str):
        target = ck.convert(loc, path, _to_storage)
        return None if target is None else (("*", target),)
    if not isinstance(loc.value, dict):
        ck.add(loc, path, f"expected {what}, got {describe(loc)}")
        return None
    if not loc.value:
        ck.add(loc, path, f"expected {what}, got an empty mapping")
        return None
    pairs: list[tuple[str, str]] = []
    for source, value in loc.value.items():
        line = ck.key_line(loc, source)
        item_path = join(path, source)
        if source != "*" and not _STORAGE_RE.fullmatch(source):
            ck.add(line, item_path, f"expected a storage id (or *) as the key, got {source!r}")
            continue
        target = ck.convert(value, item_path, _to_storage)
        if target is not None:
            pairs.append((source, target))
    return tuple(pairs)


def _migration(ck: _Checker, loc: Loc, path: str) -> MigrationSettings:
    values = ck.fields(loc, path, _MIGRATION_KEYS)
    if values is None:
        return MigrationSettings()
    mtype = ck.opt(values, "type", path, to_enum(MIGRATION_TYPES))
    storage = None
    if "target_storage" in values:
        storage = _target_storage(ck, values["target_storage"], f"{path}.target_storage")
    return MigrationSettings(
        type=None if mtype is None else MIGRATION_TYPES[mtype],
        network=ck.opt(values, "network", path, to_cidr),
        bwlimit_Bps=ck.opt(values, "bwlimit", path, _to_rate),
        with_local_disks=ck.get(values, "with_local_disks", path, to_bool, False),
        target_storage=storage or (),
    )


def _section(
    ck: _Checker,
    values: dict[str, Loc],
    key: str,
    path: str,
    read: Callable[[_Checker, Loc, str], T],
    default: T,
) -> T:
    """A sub-mapping read by `read`, or `default` when the key is absent."""
    loc = values.get(key)
    return default if loc is None else read(ck, loc, join(path, key))


def _rules(ck: _Checker, loc: Loc) -> Rules:
    path = "rules"
    values = ck.fields(loc, path, _RULES_KEYS)
    defaults = Rules()
    if values is None:
        return defaults
    on_failure = ck.get(values, "on_failure", path, to_enum(FAILURE_POLICIES), "stop")
    return Rules(
        exclude=_section(ck, values, "exclude", path, _exclude, defaults.exclude),
        anti_affinity=_section(ck, values, "anti_affinity", path, _groups, ()),
        affinity=_section(ck, values, "affinity", path, _groups, ()),
        pins=_section(ck, values, "pins", path, _pins, ()),
        headroom=_section(ck, values, "headroom", path, _headroom, defaults.headroom),
        cpu_overcommit=ck.get(
            values, "cpu_overcommit", path, _to_overcommit, defaults.cpu_overcommit
        ),
        concurrency=_section(ck, values, "concurrency", path, _concurrency, defaults.concurrency),
        migration=_section(ck, values, "migration", path, _migration, defaults.migration),
        on_failure=FAILURE_POLICIES[on_failure],
        task_timeout_s=ck.get(
            values, "task_timeout", path, _to_positive_duration, defaults.task_timeout_s
        ),
    )


# --- steps -------------------------------------------------------------------------------------


def _drain(ck: _Checker, body: Loc, path: str, where: Where) -> DrainStep | None:
    if body.value is None:
        ck.add(
            body,
            path,
            "expected the node(s) to drain, e.g. 'drain: pve2' or a mapping with 'nodes', "
            "got nothing (null)",
        )
        return None
    if is_scalar(body) or isinstance(body.value, list):  # shorthand: `- drain: pve2`
        nodes = ck.nodes(body, path)
        return DrainStep(nodes=tuple(n.value for n in nodes or ()), where=where)
    values = ck.fields(body, path, _DRAIN_KEYS, what="a mapping of drain settings")
    if values is None:
        return None
    drained: list[Item[str]] = []
    if "node" in values and "nodes" in values:
        ck.add(ck.key_line(body, "nodes"), path, "give either 'node' or 'nodes', not both")
    if "node" in values:
        name = ck.node(values["node"], f"{path}.node")
        if name is not None:
            drained = [Item(name, values["node"], f"{path}.node")]
    elif "nodes" in values:
        drained = ck.nodes(values["nodes"], f"{path}.nodes") or []
    else:
        ck.add(body, path, "missing required key 'nodes' (the node or nodes to drain)")
    drained_names = {n.value for n in drained}
    targets: tuple[str, ...] | None = None
    if "targets" in values:
        got = ck.nodes(
            values["targets"],
            f"{path}.targets",
            empty_hint="; leave 'targets' out to use every other node",
        )
        if got is not None:
            for item in got:
                if item.value in drained_names:
                    ck.add(
                        item.loc,
                        item.path,
                        f"node '{item.value}' is drained by this step and cannot be a target",
                    )
            targets = tuple(n.value for n in got)
    storage = None
    if "target_storage" in values:
        storage = _target_storage(ck, values["target_storage"], f"{path}.target_storage")
    overrides: tuple[GuestOverride, ...] = ()
    if "guests" in values:
        overrides = _overrides(ck, values["guests"], f"{path}.guests", drained_names)
    return DrainStep(
        nodes=tuple(n.value for n in drained),
        targets=targets,
        with_local_disks=ck.opt(values, "with_local_disks", path, to_bool),
        target_storage=storage,
        include_stopped=ck.get(values, "include_stopped", path, to_bool, True),
        overrides=overrides,
        where=where,
    )


def _overrides(ck: _Checker, loc: Loc, path: str, drained: set[str]) -> tuple[GuestOverride, ...]:
    guests = ck.mapping(loc, path, "a mapping of vmid to guest settings")
    out: list[GuestOverride] = []
    seen: dict[int, int] = {}
    for key, value in (guests or {}).items():
        line = ck.key_line(loc, key)
        item_path = join(path, key)
        vmid = ck.vmid_key(line, item_path, key)
        if vmid is None:
            continue
        if vmid in seen:
            ck.add(line, item_path, f"guest {vmid} is listed twice (first on line {seen[vmid]})")
            continue
        seen[vmid] = line
        values = ck.fields(value, item_path, _OVERRIDE_KEYS, what="a mapping of guest settings")
        if values is None:
            continue
        target = ck.node(values["target"], f"{item_path}.target") if "target" in values else None
        if target is not None and target in drained:
            ck.add(
                values["target"],
                f"{item_path}.target",
                f"node '{target}' is drained by this step and cannot be a target",
            )
        storage = None
        if "target_storage" in values:
            storage = _target_storage(ck, values["target_storage"], f"{item_path}.target_storage")
        skip = ck.get(values, "skip", item_path, to_bool, False)
        others = [k for k in ("target", "target_storage", "bwlimit", "offline") if k in values]
        if skip and others:
            ck.add(
                values["skip"],
                f"{item_path}.skip",
                f"skip: true leaves the guest where it is; remove {', '.join(others)} or skip",
            )
        out.append(
            GuestOverride(
                vmid=vmid,
                target=target,
                target_storage=storage,
                bwlimit_Bps=ck.opt(values, "bwlimit", item_path, _to_rate),
                offline=ck.opt(values, "offline", item_path, to_bool),
                skip=skip,
                where=ck.where(line, item_path),
            )
        )
    return tuple(out)


def _argv(ck: _Checker, loc: Loc, path: str) -> tuple[str, ...] | None:
    """A command as a list of arguments; a string is refused with the list it should be."""
    if loc.value is BROKEN:
        return None
    if isinstance(loc.value, str):
        try:
            split = shlex.split(loc.value)
        except ValueError:
            split = []
        example = json.dumps(split) if split else HOOK_EXAMPLE
        ck.add(
            loc,
            path,
            f"expected a command as a list of arguments, got {describe(loc)}: hooks run "
            f"without a shell, so split it into a list, e.g. {example}",
        )
        return None
    items = ck.sequence(loc, path, f"a command as a list of arguments like {HOOK_EXAMPLE}")
    if items is None:
        return None
    if not items:
        ck.add(loc, path, f"expected a command as a list of arguments like {HOOK_EXAMPLE}, got []")
        return None
    argv = [ck.convert(item, f"{path}[{i}]", to_str) for i, item in enumerate(items)]
    if any(arg is None for arg in argv):
        return None
    program = str(argv[0])
    if not program.strip():
        ck.add(items[0], f"{path}[0]", "the program must not be empty")
        return None
    if len(argv) == 1 and len(program.split()) > 1:
        ck.add(
            items[0],
            f"{path}[0]",
            f"the program {program!r} contains spaces: each argument is its own list item, "
            f"e.g. {json.dumps(program.split())}",
        )
        return None
    return tuple(str(arg) for arg in argv)


def _hook(ck: _Checker, loc: Loc, path: str) -> Hook | None:
    default_timeout = Hook(argv=()).timeout_s
    if isinstance(loc.value, dict):
        values = ck.fields(loc, path, _HOOK_KEYS, required=("command",))
        if values is None:
            return None
        timeout = ck.get(values, "timeout", path, _to_positive_duration, default_timeout)
        argv = _argv(ck, values["command"], f"{path}.command") if "command" in values else None
    else:
        timeout = default_timeout
        argv = _argv(ck, loc, path)
    return None if argv is None else Hook(argv=argv, timeout_s=timeout, where=ck.where(loc, path))


def _rolling(ck: _Checker, body: Loc, path: str, where: Where) -> RollingStep | None:
    if body.value is None:
        return RollingStep(where=where)  # `- rolling:` = every node, all defaults
    values = ck.fields(body, path, _ROLLING_KEYS, what="a mapping of rolling maintenance settings")
    if values is None:
        return None
    defaults = RollingStep()
    nodes: tuple[str, ...] | None = None
    if "nodes" in values and values["nodes"].value != "all":
        got = ck.nodes(values["nodes"], f"{path}.nodes", empty_hint="; write 'nodes: all'")
        nodes = tuple(n.value for n in got or ())
    targets = None
    if "targets" in values:
        got = ck.nodes(values["targets"], f"{path}.targets")
        targets = None if got is None else tuple(n.value for n in got)
    before = _hook(ck, values["before"], f"{path}.before") if "before" in values else None
    after = _hook(ck, values["after"], f"{path}.after") if "after" in values else None
    return RollingStep(
        nodes=nodes,
        targets=targets,
        before=before,
        after=after,
        wait_online_timeout_s=ck.get(
            values,
            "wait_online_timeout",
            path,
            _to_positive_duration,
            defaults.wait_online_timeout_s,
        ),
        confirm_between=ck.get(values, "confirm_between", path, to_bool, False),
        pause_s=ck.get(values, "pause", path, _to_duration, 0.0),
        return_guests=ck.get(values, "return_guests", path, to_bool, True),
        where=where,
    )


def _rebalance(ck: _Checker, body: Loc, path: str, where: Where) -> RebalanceStep | None:
    if body.value is None:
        return RebalanceStep(where=where)  # `- rebalance:` = by memory, all defaults
    values = ck.fields(body, path, _REBALANCE_KEYS, what="a mapping of rebalance settings")
    if values is None:
        return None
    defaults = RebalanceStep()
    by = ck.get(values, "by", path, to_enum(BALANCE_BY), "memory")
    memory_weight, cpu_weight = {"memory": (1.0, 0.0), "cpu": (0.0, 1.0)}.get(by, (0.5, 0.5))
    if "weights" in values:
        weights_path = f"{path}.weights"
        weights = ck.fields(values["weights"], weights_path, _WEIGHT_KEYS)
        if weights is not None and by != "both":
            ck.add(
                values["weights"],
                weights_path,
                f"weights apply only with 'by: both' (this step balances by {by})",
            )
        elif weights is not None:
            memory = ck.opt(weights, "memory", weights_path, _to_weight)
            cpu = ck.opt(weights, "cpu", weights_path, _to_weight)
            invalid = ("memory" in weights and memory is None) or ("cpu" in weights and cpu is None)
            invalid = invalid or any(key not in _WEIGHT_KEYS for key in weights)
            total = (memory or 0.0) + (cpu or 0.0)
            if total > 0:  # relative weights: 7 and 3 mean 0.7 and 0.3
                memory_weight, cpu_weight = (memory or 0.0) / total, (cpu or 0.0) / total
            elif not invalid:
                ck.add(values["weights"], weights_path, "at least one weight must be above 0")
    exclude: list[Item[str]] = []
    if "exclude_nodes" in values:
        exclude = ck.nodes(values["exclude_nodes"], f"{path}.exclude_nodes", allow_empty=True) or []
    return RebalanceStep(
        by=BALANCE_BY[by],
        memory_weight=memory_weight,
        cpu_weight=cpu_weight,
        threshold=ck.get(values, "threshold", path, _to_percent, defaults.threshold),
        max_moves=ck.opt(values, "max_moves", path, _to_move_count),
        exclude_nodes=tuple(n.value for n in exclude),
        min_improvement=ck.get(
            values, "min_improvement", path, _to_percent, defaults.min_improvement
        ),
        where=where,
    )


def _move(ck: _Checker, body: Loc, path: str, where: Where) -> MoveStep | None:
    moves = ck.mapping(body, path, "a mapping of vmid to target node, e.g. {101: pve3}")
    if moves is None:
        return None
    if not moves:
        ck.add(body, path, "expected at least one move (vmid: node), got an empty mapping")
        return None
    out: list[ExplicitMove] = []
    seen: dict[int, int] = {}
    for key, value in moves.items():
        line = ck.key_line(body, key)
        item_path = join(path, key)
        vmid = ck.vmid_key(line, item_path, key)
        target = ck.node(value, item_path)
        if vmid is None:
            continue
        if vmid in seen:
            ck.add(line, item_path, f"guest {vmid} is listed twice (first on line {seen[vmid]})")
            continue
        seen[vmid] = line
        if target is not None:
            out.append(ExplicitMove(vmid=vmid, target=target, where=ck.where(line, item_path)))
    return MoveStep(moves=tuple(out), where=where)


_STEP_READERS: dict[str, Callable[[_Checker, Loc, str, Where], Step | None]] = {
    "drain": _drain,
    "rolling": _rolling,
    "rebalance": _rebalance,
    "move": _move,
}


def _step_kind(ck: _Checker, item: Loc, path: str) -> str | None:
    """The kind of a step (its one key), or None after reporting why there is none."""
    what = "a step (a mapping with one key: drain, rolling, rebalance or move)"
    values = ck.mapping(item, path, what)
    if values is None:
        return None
    if not values:
        ck.add(item, path, f"expected {what}, got an empty mapping")
        return None
    kinds = [key for key in values if key in STEP_KINDS]
    others = [key for key in values if key not in STEP_KINDS]
    if len(kinds) > 1:
        ck.add(
            item,
            path,
            f"a step has exactly one kind, got {' and '.join(kinds)}: make each its own list item"
            f" ('- {kinds[0]}: ...', '- {kinds[1]}: ...')",
        )
        return None
    if len(kinds) == 1 and others:
        kind = kinds[0]
        listed = ", ".join(f"'{key}'" for key in others)
        if all(key in _STEP_KEYS[kind] for key in others):
            advice = f"; indent {listed} under '{kind}:'"
        else:
            advice = "".join(hint(key, _STEP_KEYS[kind]) for key in others)
        ck.add(item, path, f"a step has exactly one key ('{kind}'), got also {listed}{advice}")
        return None
    if not kinds:
        for key in others:
            ck.add(
                ck.key_line(item, key),
                path,
                f"unknown step '{key}'{hint(key, STEP_KINDS)}; a step is one of "
                f"{', '.join(STEP_KINDS)}",
            )
        return None
    return kinds[0]


def _steps(ck: _Checker, loc: Loc) -> tuple[Step, ...]:
    items = ck.sequence(loc, "steps", "a list of steps (- drain: ..., - rolling: ..., ...)")
    if items is None:
        return ()
    if not items:
        ck.add(loc, "steps", "a plan needs at least one step, got an empty list")
    steps: list[Step] = []
    for i, item in enumerate(items):
        path = f"steps[{i}]"
        kind = _step_kind(ck, item, path)
        if kind is None:
            continue
        assert isinstance(item.value, dict)
        step_path = f"{path}.{kind}"
        step = _STEP_READERS[kind](ck, item.value[kind], step_path, ck.where(item, step_path))
        if step is not None:
            steps.append(step)
    return tuple(steps)


# --- the plan ----------------------------------------------------------------------------------


def _version(ck: _Checker, root: Loc, values: dict[str, Loc]) -> bool:
    """Whether the plan has the one version this loader reads (else it reports why not)."""
    loc = values.get("version")
    if loc is None:
        ck.add(root, "", f"missing required key 'version' (write 'version: {PLAN_VERSION}')")
        return True  # probably a version 1 plan without the line: check the rest too
    if loc.value == PLAN_VERSION and isinstance(loc.value, int) and not isinstance(loc.value, bool):
        return True
    ck.add(
        loc,
        "version",
        f"expected {PLAN_VERSION} (the only plan format this pvetool reads), got {describe(loc)}",
    )
    # Another number is another format: its other keys would only drown this message.
    return not isinstance(loc.value, int | float) or isinstance(loc.value, bool)


def _default_name(filename: str) -> str:
    stem = PurePath(filename).stem
    return "plan" if not stem or filename.startswith("<") else stem


def _plan(ck: _Checker, root: Loc, text: str, filename: str) -> PlanSpec:
    what = "a plan (a mapping with version and steps)"
    top = ck.mapping(root, "", what)
    if top is None or not _version(ck, root, top):
        raise _plan_error(ck.problems)
    values = ck.fields(root, "", _TOP_KEYS, what=what)
    assert values is not None
    rules = _rules(ck, values["rules"]) if "rules" in values else Rules()
    steps: tuple[Step, ...] = ()
    if "steps" in values:
        steps = _steps(ck, values["steps"])
    else:
        ck.add(root, "", "missing required key 'steps' (a plan needs at least one step)")
    plan = PlanSpec(
        version=PLAN_VERSION,
        name=ck.get(values, "name", "", _to_name, _default_name(filename)),
        description=ck.get(values, "description", "", to_str, "").strip(),
        rules=rules,
        steps=steps,
        source=filename,
        digest=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        node_refs=tuple(sorted(ck.node_refs, key=lambda ref: ref[1].line)),
    )
    if ck.problems:
        raise _plan_error(ck.problems)
    return plan


def load_plan_text(text: str, filename: str = "<string>") -> PlanSpec:
    """Check a plan's text and return it as a `PlanSpec`; `filename` is what problems name.

    Raises `PlanError` listing every problem found (``PlanError.problems``).
    """
    problems = Problems(filename)
    root = read_document(
        text,
        problems,
        what="the plan",
        empty=f"the plan is empty; it needs 'version: {PLAN_VERSION}' and 'steps'",
    )
    if root is None:
        raise _plan_error(problems) from None
    try:
        return _plan(_Checker(problems), root, text, filename)
    except RecursionError:  # aliases can nest deeper than the text does
        problems.add(1, "", f"the plan is nested more than {MAX_DEPTH} levels deep")
        raise _plan_error(problems) from None


def load_plan(path: str | os.PathLike[str]) -> PlanSpec:
    """Read and check a plan file; `PlanSpec.source` is `path` as given.

    Raises `PlanError` if the file cannot be read or has any problem.
    """
    filename = os.fspath(path)
    problems = Problems(filename)
    try:
        with open(filename, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"Cannot read the plan file {filename}: {reason}"
        raise PlanError(
            message, problems=[f"{filename}: cannot read the plan file: {reason}"]
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.add(line, "", f"the file is not UTF-8 text (byte {exc.start}: {exc.reason})")
        raise _plan_error(problems) from None
    return load_plan_text(text, filename)
