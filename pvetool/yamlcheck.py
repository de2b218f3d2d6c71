"""YAML with line numbers: read a document, check it, and report *every* problem with its place.

The toolkit under both schema readers of pvetool: the plan loader (`planner.loader`) and the
emulator's cluster-file loader (`emulator.clusterfile`). It reads a document with PyYAML's safe
loader (``yaml.compose`` with ``CSafeLoader``, or ``SafeLoader`` without libyaml, then the safe
constructor on every scalar: exactly what ``yaml.safe_load`` accepts), keeping the line of every
value in a `Loc` tree. A schema walks that tree with a `Checker`, whose converters (``to_int``,
``to_enum``, ...) turn values into Python ones or record a problem; a value that could not be
read is `BROKEN` and reported once. `Problems` sorts them into lines of the form
``file:line: key.path: what was expected, got what was found``, each with a "did you mean"
(`suggest`) where a close name exists.

Deliberate choices where the two former copies differed:
- `Reader` reports *any* exception of PyYAML's scalar constructor as a problem of that value
  (``!!bool x`` raises KeyError, ``!!int 1e400`` OverflowError...): a tag is input, so it must
  never end in a traceback (the cluster-file copy crashed on ``!!bool x``).
- Documents nested deeper than `MAX_DEPTH` are refused before libyaml's recursive composer sees
  them (it would crash the interpreter), in plans and cluster files alike.
- ``to_bool`` takes 0 and 1 as PVE's own configuration files write them, ``to_number`` takes a
  YAML 1.1 exponent such as ``8.6e8`` (read as text by YAML 1.1).

Imports: the standard library and PyYAML only (a leaf the emulator may import).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import yaml

__all__ = [
    "BROKEN",
    "MAX_DEPTH",
    "MAX_PROBLEMS",
    "Checker",
    "Conv",
    "Invalid",
    "Item",
    "Loc",
    "Problems",
    "Reader",
    "cut",
    "describe",
    "hint",
    "hint_or_known",
    "is_scalar",
    "join",
    "read_document",
    "suggest",
    "to_bool",
    "to_cidr",
    "to_enum",
    "to_int",
    "to_nonempty_str",
    "to_number",
    "to_pattern",
    "to_str",
    "yaml_reason",
]

MAX_DEPTH = 64  # nesting of mappings and lists; a real plan needs about 6, a cluster file 5
MAX_PROBLEMS = 1000  # problems kept per document (all are counted)

T = TypeVar("T")


# --- did you mean ------------------------------------------------------------------------------


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """``did you mean 'pve3'?`` for the choice closest to `name`, or None if none is close.

    A choice that differs only in case wins; otherwise difflib's closest match (ratio >= 0.6).
    """
    options = [c for c in choices if c != name]
    folded = [c for c in options if c.lower() == name.lower()]
    close = folded or difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def hint(name: str, choices: Iterable[str]) -> str:
    """`suggest` as a suffix for a message: `` (did you mean 'pve3'?)`` or nothing."""
    text = suggest(name, choices)
    return f" ({text})" if text else ""


def hint_or_known(name: str, choices: Collection[str]) -> str:
    """A did-you-mean when one is close, else the (first few) known names."""
    suggestion = hint(name, choices)
    if suggestion or not choices:
        return suggestion
    listing = ", ".join(sorted(choices)[:8]) + (", ..." if len(choices) > 8 else "")
    return f" (known: {listing})"


# --- YAML with line numbers --------------------------------------------------------------------


class _Broken:
    """Marks a value that could not be read; its problem is already reported."""

    def __repr__(self) -> str:
        return "<broken>"


BROKEN = _Broken()


@dataclass(eq=False)
class Loc:
    """A YAML value with the (1-based) line it starts on; mappings keep their keys' lines."""

    value: object  # dict[str, Loc] | list[Loc] | scalar | BROKEN
    line: int
    raw: str | None = None  # source text of a scalar
    key_lines: dict[str, int] | None = None


class Problems:
    """Problems in file order, each ``file:line: path: message``.

    At most `MAX_PROBLEMS` are kept (a generated file can have hundreds of thousands, and
    nobody reads past the first screens); `count` counts them all, and `sorted` ends with a
    line saying how many more there were.
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._items: list[tuple[int, int, str]] = []
        self.count = 0

    def add(self, line: int, path: str, message: str) -> None:
        self.count += 1
        if len(self._items) >= MAX_PROBLEMS:
            return
        where = f"{self.filename}:{line}: "
        text = f"{where}{path}: {message}" if path else f"{where}{message}"
        self._items.append((line, len(self._items), text))

    def __bool__(self) -> bool:
        return bool(self._items)

    def sorted(self) -> list[str]:
        found = [text for _, _, text in sorted(self._items)]
        if self.count > len(found):
            more = self.count - len(found)
            found.append(f"{self.filename}: ... and {more} more problem{'s' if more > 1 else ''}")
        return found


class Reader:
    """Turns composed YAML nodes into `Loc` trees (merge keys and aliases resolved)."""

    def __init__(self, problems: Problems) -> None:
        self._problems = problems
        self._constructor = yaml.constructor.SafeConstructor()
        self._done: dict[int, Loc] = {}
        self._active: set[int] = set()

    def read(self, node: yaml.Node, path: str) -> Loc:
        line = node.start_mark.line + 1
        done = self._done.get(id(node))
        if done is not None:
            return done
        if id(node) in self._active:
            self._problems.add(line, path, "a recursive alias is not allowed here")
            return Loc(BROKEN, line)
        self._active.add(id(node))
        try:
            loc = self._read(node, path, line)
        finally:
            self._active.discard(id(node))
        self._done[id(node)] = loc
        return loc

    def _read(self, node: yaml.Node, path: str, line: int) -> Loc:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, line)
        if isinstance(node, yaml.SequenceNode):
            items = [self.read(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            return Loc(items, line)
        try:
            value = self._constructor.construct_object(node, deep=True)
        except Exception as exc:  # any tag or scalar PyYAML cannot build (KeyError for !!bool x)
            reason = yaml_reason(exc) if isinstance(exc, yaml.YAMLError) else str(exc)
            self._problems.add(line, path, f"cannot read value {cut(repr(node.value))}: {reason}")
            return Loc(BROKEN, line, raw=str(node.value))
        return Loc(value, line, raw=str(node.value))

    def _mapping(self, node: yaml.MappingNode, path: str, line: int) -> Loc:
        own_keys = {id(key) for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"}
        try:
            self._constructor.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self._problems.add(line, path, f"invalid merge key: {yaml_reason(exc)}")
            return Loc(BROKEN, line)
        values: dict[str, Loc] = {}
        key_lines: dict[str, int] = {}
        own: set[str] = set()
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self._problems.add(key_line, path, "a key must be a plain value")
                continue
            key = str(key_node.value)
            if key in values and id(key_node) in own_keys and key in own:
                self._problems.add(
                    key_line, path, f"duplicate key '{key}' (first on line {key_lines[key]})"
                )
                continue
            if id(key_node) in own_keys:
                own.add(key)  # a key of this mapping itself overrides one merged with <<
            key_lines[key] = key_line
            values[key] = self.read(value_node, join(path, key))
        return Loc(values, line, key_lines=key_lines)


def yaml_reason(exc: yaml.YAMLError) -> str:
    """PyYAML's complaint without its file excerpt: context (with its line) and problem."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc)
    context = exc.context or ""
    problem_line = exc.problem_mark.line if exc.problem_mark else None
    if context and exc.context_mark is not None and exc.context_mark.line != problem_line:
        context += f" started on line {exc.context_mark.line + 1}"
    parts = [p for p in (context, exc.problem) if p]
    return "; ".join(parts) if parts else str(exc)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _compose(text: str) -> yaml.Node | None:
    """The YAML node tree of `text`, refusing documents nested deeper than `MAX_DEPTH`.

    libyaml's composer recurses in C and would crash the interpreter on absurd nesting, so the
    depth is first measured on its (iterative) event stream.
    """
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise _TooDeep(mark.line + 1 if mark is not None else 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    node: yaml.Node | None = yaml.compose(text, Loader=loader)
    return node


def read_document(text: str, problems: Problems, *, what: str, empty: str) -> Loc | None:
    """The `Loc` tree of `text`, or None after recording why it cannot be read as YAML.

    `what` names the document in the "nested too deep" problem ("the plan"); `empty` is the
    problem of an empty document.
    """
    too_deep = f"{what} is nested more than {MAX_DEPTH} levels deep"
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        reason = yaml_reason(exc)
        if "nesting depth" in reason:
            # Newer libyaml (PyYAML >= 6.0.4) stops absurd nesting itself, in its scanner,
            # before our own depth check sees the events: same problem, same words.
            problems.add(line, "", too_deep)
        else:
            problems.add(line, "", f"invalid YAML: {reason}")
        return None
    except UnicodeEncodeError as exc:  # a lone surrogate: not text libyaml can read
        line = text[: exc.start].count("\n") + 1
        problems.add(line, "", f"invalid YAML: unacceptable character #x{ord(text[exc.start]):x}")
        return None
    except _TooDeep as exc:
        problems.add(exc.line, "", too_deep)
        return None
    if node is None:
        problems.add(1, "", empty)
        return None
    try:
        return Reader(problems).read(node, "")
    except RecursionError:  # aliases can nest deeper than the text does
        problems.add(1, "", too_deep)
        return None


# --- value converters --------------------------------------------------------------------------

Conv = Callable[[Loc], T]


class Invalid(Exception):
    """A value that does not fit; the message completes ``path: ...``."""


def describe(loc: Loc) -> str:
    """What was found, as the administrator wrote it."""
    value = loc.value
    if value is BROKEN:
        return "an unreadable value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return cut(repr(value))
    return cut(loc.raw if loc.raw is not None else repr(value))


def is_scalar(loc: Loc) -> bool:
    return not isinstance(loc.value, dict | list) and loc.value is not BROKEN


def to_str(loc: Loc) -> str:
    value = loc.value
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or not is_scalar(loc) or loc.raw is None:
        raise Invalid(f"expected a string, got {describe(loc)}")
    return loc.raw  # a number or date written without quotes: keep its text


def to_nonempty_str(loc: Loc) -> str:
    """Text with something in it other than blanks, as written (secrets keep their spaces)."""
    text = to_str(loc)
    if not text.strip():
        raise Invalid("must not be empty")
    return text


def to_bool(loc: Loc) -> bool:
    value = loc.value
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)  # as PVE's own configuration files write booleans
    raise Invalid(f"expected true or false, got {describe(loc)}")


def to_int(low: int | None = None, high: int | None = None, what: str = "an integer") -> Conv[int]:
    """An integer from `low` to `high` (each optional); `what` is what the message expects."""

    def conv(loc: Loc) -> int:
        value = loc.value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected {what}, got {describe(loc)}")
        if low is not None and value < low:
            raise Invalid(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise Invalid(f"must be at most {high}, got {value}")
        return value

    return conv


_EXPONENT_RE = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def to_number(loc: Loc) -> float:
    """A finite number (YAML 1.1 reads ``8.6e8``, without a dot and a sign, as text: taken)."""
    value = loc.value
    if isinstance(value, str) and _EXPONENT_RE.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid(f"expected a number, got {describe(loc)}")
    return float(value)


def to_enum(choices: Collection[str]) -> Conv[str]:
    """One of `choices`, spelt exactly (a number's source text counts: ``arch: 1`` is "1")."""

    def conv(loc: Loc) -> str:
        if not is_scalar(loc) or loc.value is None or isinstance(loc.value, bool):
            text = None
        else:
            text = loc.value if isinstance(loc.value, str) else loc.raw
        if text is None or text not in choices:
            suffix = hint(text, choices) if text is not None else ""
            raise Invalid(f"expected one of {', '.join(choices)}, got {describe(loc)}{suffix}")
        return text

    return conv


def to_pattern(regex: re.Pattern[str], what: str, *, numbers: bool = False) -> Conv[str]:
    """Text matching `regex`, without surrounding blanks.

    A plan's names are text only (``12`` is refused, ``"12"`` is text); with `numbers` a number
    counts as its source text (a cluster file's ``version: 9.2``).
    """

    def conv(loc: Loc) -> str:
        if numbers:
            text = to_str(loc)
        elif isinstance(loc.value, str):
            text = loc.value
        else:
            raise Invalid(f"expected {what}, got {describe(loc)}")
        if not regex.fullmatch(text.strip()):
            raise Invalid(f"expected {what}, got {describe(loc)}")
        return text.strip()

    return conv


def to_cidr(loc: Loc) -> str:
    what = "a network in CIDR notation like 10.10.10.0/24"
    if not isinstance(loc.value, str):
        raise Invalid(f"expected {what}, got {describe(loc)}")
    text = loc.value.strip()
    try:
        if "/" not in text:
            raise ValueError(text)
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise Invalid(f"expected {what}, got {describe(loc)}") from None
    return text


# --- the checker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item(Generic[T]):
    """One converted list item: its value, its YAML value and its key path."""

    value: T
    loc: Loc
    path: str


class Checker:
    """Validation helpers that record problems instead of stopping at the first.

    A schema subclasses it for helpers of its own (node references, lists of names...).
    """

    def __init__(self, problems: Problems) -> None:
        self.problems = problems

    def add(self, loc: Loc | int, path: str, message: str) -> None:
        self.problems.add(loc if isinstance(loc, int) else loc.line, path, message)

    def at(self, values: dict[str, Loc], key: str, path: str, message: str) -> None:
        """A problem with the value of ``key`` in ``values`` (a mapping at ``path``)."""
        self.add(values[key], join(path, key), message)

    def key_line(self, parent: Loc, key: str) -> int:
        return (parent.key_lines or {}).get(key, parent.line)

    def mapping(self, loc: Loc, path: str, what: str = "a mapping") -> dict[str, Loc] | None:
        if loc.value is BROKEN:
            return None
        if not isinstance(loc.value, dict):
            self.add(loc, path, f"expected {what}, got {describe(loc)}")
            return None
        return loc.value

    def sequence(self, loc: Loc, path: str, what: str = "a list") -> list[Loc] | None:
        if loc.value is BROKEN:
            return None
        if not isinstance(loc.value, list):
            self.add(loc, path, f"expected {what}, got {describe(loc)}")
            return None
        return loc.value

    def unknown_key(self, key: str, known: Collection[str], candidates: Collection[str]) -> str:
        """The problem of an unknown key; a schema may list the known ones (see the loader)."""
        return f"unknown key '{key}'{hint(key, candidates)}"

    def fields(
        self,
        loc: Loc,
        path: str,
        known: Collection[str],
        required: Collection[str] = (),
        *,
        what: str = "a mapping",
        indexed: Mapping[str, int] | None = None,
        hints: Callable[[str], str | None] | None = None,
    ) -> dict[str, Loc] | None:
        """A mapping whose keys are checked: unknown keys (with a suggestion), missing ones.

        `indexed` allows numbered keys (``{"net": 31}``: net0..net31); `hints` may explain an
        unknown key better than a did-you-mean.
        """
        values = self.mapping(loc, path, what)
        if values is None:
            return None
        indexed = indexed or {}
        candidates = list(known) + [f"{prefix}0" for prefix in indexed]
        for key in values:
            if key in known:
                continue
            match = re.fullmatch(r"([a-z]+)(\d+)", key)
            if match and match.group(1) in indexed:
                top = indexed[match.group(1)]
                if int(match.group(2)) <= top and str(int(match.group(2))) == match.group(2):
                    continue
                message = f"'{key}': the index of {match.group(1)}N must be 0..{top}"
                self.add(self.key_line(loc, key), path, message)
                continue
            special = hints(key) if hints is not None else None
            if special:
                self.add(self.key_line(loc, key), path, f"unknown key '{key}'{special}")
            else:
                self.add(self.key_line(loc, key), path, self.unknown_key(key, known, candidates))
        for key in required:
            if key not in values:
                self.add(loc, path, f"missing required key '{key}'")
        return values

    def convert(self, loc: Loc, path: str, conv: Conv[T]) -> T | None:
        if loc.value is BROKEN:
            return None
        try:
            return conv(loc)
        except Invalid as exc:
            self.add(loc, path, str(exc))
            return None

    def get(self, values: dict[str, Loc], key: str, path: str, conv: Conv[T], default: T) -> T:
        """The converted value of ``key``; ``default`` when absent *or* invalid (reported)."""
        loc = values.get(key)
        if loc is None:
            return default
        result = self.convert(loc, join(path, key), conv)
        return default if result is None else result

    def opt(self, values: dict[str, Loc], key: str, path: str, conv: Conv[T]) -> T | None:
        """The converted value of ``key``; None when absent or invalid (reported)."""
        loc = values.get(key)
        return None if loc is None else self.convert(loc, join(path, key), conv)

    def items(self, loc: Loc, path: str, conv: Conv[T], what: str) -> list[Item[T]] | None:
        """A list converted item by item (a single scalar counts as a one-item list)."""
        if loc.value is BROKEN:
            return None
        if isinstance(loc.value, list):
            pairs = [(item, f"{path}[{i}]") for i, item in enumerate(loc.value)]
        elif is_scalar(loc) and loc.value is not None:
            pairs = [(loc, path)]
        else:
            self.add(loc, path, f"expected {what}, got {describe(loc)}")
            return None
        out: list[Item[T]] = []
        for item, item_path in pairs:
            value = self.convert(item, item_path, conv)
            if value is not None:
                out.append(Item(value, item, item_path))
        return out
