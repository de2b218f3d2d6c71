"""A plan's values: the plan checker and the converters of names, vmids, units and amounts.

What `planner.loader` (rules, the plan) and `planner.loader_steps` (steps) both read: node,
storage, tag and pool names in PVE's own formats (pve-cluster, pve-storage), vmids, rates,
durations, percentages, memory and CPU amounts, concurrency, and target storage maps. The
`PlanChecker` adds to the shared YAML checker what a plan needs: every node name it mentions,
with its place, for the checks against a cluster.

Imports: the standard library, `pvetool.planner.spec` and the leaves `pvetool.units` and
`pvetool.yamlcheck`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from typing import TypeVar

from pvetool import units
from pvetool.planner.spec import Amount, Where
from pvetool.yamlcheck import (
    BROKEN,
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
    to_nonempty_str,
    to_number,
    to_pattern,
    to_str,
)

__all__ = [
    "STORAGE_RE",
    "MAX_CONCURRENCY",
    "MAX_MOVES",
    "VMID_MAX",
    "VMID_MIN",
    "PlanChecker",
    "target_storage",
    "to_concurrency",
    "to_cpu_amount",
    "to_duration",
    "to_memory_amount",
    "to_name",
    "to_node",
    "to_overcommit",
    "to_percent",
    "to_pool",
    "to_positive_duration",
    "to_rate",
    "to_storage",
    "to_tag",
    "to_vmid",
    "to_weight",
    "vmid_key",
]

VMID_MIN, VMID_MAX = 100, 999_999_999
# Ranges of the plain numbers a plan holds (units have theirs in `pvetool.units`): far beyond
# any real cluster, and well inside what the planner's arithmetic can hold.
MAX_CONCURRENCY = 1000  # migrations at once
MAX_MOVES = 1_000_000
MAX_RATIO = 1000.0  # cpu_overcommit, weights
MAX_CPUS = 1_000_000.0  # a CPU headroom in CPUs
# PVE's own formats: node = host name label; tag and pool ids as pve-cluster checks them.
_NODE_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-+.]*")
_POOL_RE = re.compile(r"[A-Za-z0-9.\-_]+")
STORAGE_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-_.]*[A-Za-z0-9]")
_VMID_KEY_RE = re.compile(r"\d{1,12}")

T = TypeVar("T")


def to_name(loc: Loc) -> str:
    """A name (of a plan, a group): not empty, without surrounding blanks."""
    return to_nonempty_str(loc).strip()


to_node = to_pattern(_NODE_RE, "a node name")


to_storage = to_pattern(STORAGE_RE, "a storage id")


to_pool = to_pattern(_POOL_RE, "a pool name")


def to_tag(loc: Loc) -> str:
    text = to_str(loc).strip()  # `tags: [2024]` is a tag PVE allows
    if not _TAG_RE.fullmatch(text):
        raise Invalid(f"expected a tag (letters, digits, _ - + .), got {describe(loc)}")
    return text


def _vmid_range(vmid: int, shown: str) -> int:
    if not VMID_MIN <= vmid <= VMID_MAX:
        raise Invalid(f"expected a vmid from {VMID_MIN} to {VMID_MAX}, got {shown}")
    return vmid


def to_vmid(loc: Loc) -> int:
    value = loc.value
    if isinstance(value, str) and _VMID_KEY_RE.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected a vmid (a number from {VMID_MIN}), got {describe(loc)}")
    return _vmid_range(value, describe(loc))


def vmid_key(key: str) -> int:
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


to_rate = _unit(units.parse_rate, "a rate like 500MiB/s or 1Gbit/s")


to_duration = _unit(units.parse_duration, "a duration like 30s, 10m or 1h")


_to_percent_any = _unit(units.parse_percent, "a percentage like 10%")


to_positive_duration = _unit(units.parse_timeout, "a duration like 30s, 10m or 1h")


def to_percent(loc: Loc) -> float:
    """A percentage from 0% to 100%, as a fraction."""
    fraction = _to_percent_any(loc)
    if fraction > 1:
        raise Invalid(f"must be at most 100%, got {describe(loc)}")
    return fraction


def to_memory_amount(loc: Loc) -> Amount:
    if units.is_percent(loc.value):
        return Amount(fraction=to_percent(loc))
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


def to_cpu_amount(loc: Loc) -> Amount:
    if units.is_percent(loc.value):
        return Amount(fraction=to_percent(loc))
    value = loc.value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(
            f"expected a percentage like 10% or a number of CPUs like 4, got {describe(loc)}"
        )
    if value < 0:
        raise Invalid(f"must not be negative, got {describe(loc)}")
    if value > MAX_CPUS:
        raise Invalid(f"must be at most {MAX_CPUS:g} CPUs, got {describe(loc)}")
    return Amount(absolute=float(value))


def to_concurrency(loc: Loc) -> int | None:
    """A number of simultaneous migrations (1 or more), or ``auto`` (None)."""
    if loc.value == "auto":
        return None
    value = loc.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected a number of migrations (1 or more) or auto, got {describe(loc)}")
    if value < 1:
        raise Invalid(f"must be at least 1 (or auto), got {value}")
    if value > MAX_CONCURRENCY:
        raise Invalid(f"must be at most {MAX_CONCURRENCY} (or auto), got {describe(loc)}")
    return value


def to_weight(loc: Loc) -> float:
    weight = to_number(loc)
    if weight < 0:
        raise Invalid(f"must not be negative, got {describe(loc)}")
    if weight > MAX_RATIO:
        raise Invalid(f"must be at most {MAX_RATIO:g}, got {describe(loc)}")
    return weight


def to_overcommit(loc: Loc) -> float:
    ratio = to_number(loc)
    if ratio <= 0:
        raise Invalid(f"must be greater than 0 (4.0 = four vCPUs per CPU), got {describe(loc)}")
    if ratio > MAX_RATIO:
        raise Invalid(f"must be at most {MAX_RATIO:g}, got {describe(loc)}")
    return ratio


class PlanChecker(Checker):
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
        name = self.convert(loc, path, to_node)
        if name is not None:
            self.node_refs.append((name, self.where(loc, path)))
        return name

    def nodes(
        self, loc: Loc, path: str, *, allow_empty: bool = False, empty_hint: str = ""
    ) -> list[Item[str]] | None:
        """Node names (each recorded in ``node_refs``), without repeats."""
        got = self.items(loc, path, to_node, "a list of node names")
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
        got = self.items(loc, join(path, key), to_vmid, "a list of vmids")
        return list(dict.fromkeys(item.value for item in got or ()))

    def vmid_key(self, line: int, path: str, key: str) -> int | None:
        try:
            return vmid_key(key)
        except Invalid as exc:
            self.add(line, path, str(exc))
            return None


def target_storage(ck: PlanChecker, loc: Loc, path: str) -> tuple[tuple[str, str], ...] | None:
    """``ceph`` (every disk to ceph) or ``{local-lvm: ceph, ...}`` -> (source, target) pairs."""
    what = "a storage id or a mapping of source storage to target storage"
    if loc.value is BROKEN:
        return None
    if isinstance(loc.value, str):
        target = ck.convert(loc, path, to_storage)
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
        if source != "*" and not STORAGE_RE.fullmatch(source):
            ck.add(line, item_path, f"expected a storage id (or *) as the key, got {source!r}")
            continue
        target = ck.convert(value, item_path, to_storage)
        if target is not None:
            pairs.append((source, target))
    return tuple(pairs)
