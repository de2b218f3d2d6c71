"""The cluster file's checker: the shared YAML checker plus what every section of the file needs.

`ClusterChecker` adds lists of strings and references to names another section defines; `Draft`
holds what the sections learned so far, so that cross-references work even when a section had
errors. Used by `clusterfile` (the file, nodes, storages, access), `clusterfile_guests` (the
guests) and `clusterfile_rules` (the HA rules).

Imports: the standard library and the leaves `pvetool.units` and `pvetool.yamlcheck`, and the
emulator's `specs`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from pvetool.emulator.specs import GuestSpec, MappingSpec, NodeSpec, StorageSpec
from pvetool.units import parse_link, parse_size
from pvetool.yamlcheck import (
    BROKEN,
    Checker,
    Conv,
    Invalid,
    Loc,
    describe,
    hint_or_known,
    join,
    to_str,
)

__all__ = [
    "CONFIG_ID_RE",
    "STORAGE_ID_RE",
    "ClusterChecker",
    "Draft",
    "split_options",
    "to_link",
    "to_size",
]

STORAGE_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-_.]*[A-Za-z0-9]")
CONFIG_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]+")


def to_size(loc: Loc) -> int:
    value = loc.value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(f"expected a size like 8GiB, got {describe(loc)}")
    try:
        return parse_size(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def to_link(loc: Loc) -> float:
    value = loc.value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Invalid(f"expected a link speed like 10Gbit, got {describe(loc)}")
    try:
        return parse_link(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def split_options(text: str) -> list[tuple[str, str | None]]:
    """PVE property string ``a,b=c,d=e`` -> [(a, None), (b, c), (d, e)]."""
    items: list[tuple[str, str | None]] = []
    for part in text.split(","):
        part = part.strip()
        if "=" in part:
            key, _, value = part.partition("=")
            items.append((key.strip(), value.strip()))
        else:
            items.append((part, None))
    return items


class ClusterChecker(Checker):
    """The shared checker, plus lists of strings and references to what a section defines."""

    def str_list(
        self, values: dict[str, Loc], key: str, path: str, conv: Conv[str] = to_str
    ) -> list[tuple[Loc, str]] | None:
        """A list of strings (a single string counts as a one-item list)."""
        loc = values.get(key)
        if loc is None:
            return None
        if loc.value is BROKEN:
            return None
        if isinstance(loc.value, list):
            items = loc.value
        elif isinstance(loc.value, str):
            items = [loc]
        else:
            self.add(loc, join(path, key), f"expected a list, got {describe(loc)}")
            return None
        out: list[tuple[Loc, str]] = []
        for i, item in enumerate(items):
            item_path = f"{join(path, key)}[{i}]" if isinstance(loc.value, list) else path
            value = self.convert(item, item_path, conv)
            if value is not None:
                out.append((item, value))
        return out

    def reference(
        self, loc: Loc, path: str, name: str, known: Collection[str] | None, what: str
    ) -> bool:
        """Whether ``name`` is known; None for ``known`` means the section is unreadable."""
        if known is None or name in known:
            return True
        self.add(loc, path, f"unknown {what} '{name}'{hint_or_known(name, known)}")
        return False


@dataclass
class Draft:
    """What the sections learned; cross-references use it even when a section had errors."""

    node_names: list[str] = field(default_factory=list)
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    storage_names: list[str] = field(default_factory=list)
    storages: dict[str, StorageSpec] = field(default_factory=dict)
    guests: dict[int, GuestSpec] = field(default_factory=dict)
    guest_locs: dict[int, Loc] = field(default_factory=dict)
    mappings: dict[str, MappingSpec] = field(default_factory=dict)
    nodes_broken: bool = False  # the whole section is unreadable: do not flag references to it
    storages_broken: bool = False

    @property
    def known_nodes(self) -> list[str] | None:
        return None if self.nodes_broken else self.node_names

    @property
    def known_storages(self) -> list[str] | None:
        return None if self.storages_broken else self.storage_names
