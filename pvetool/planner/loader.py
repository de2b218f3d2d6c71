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

This module reads the plan as a whole and its `rules:`; `loader_steps` reads `steps:`, and
`loader_values` holds the plan checker and the converters both use.

Imports: the standard library, `pvetool.errors`, `pvetool.planner.spec`, the loader's own
`loader_steps` and `loader_values`, and the leaves `pvetool.textfile`, `pvetool.units` and
`pvetool.yamlcheck`. A plan file is read only when it is a regular file of at most
`MAX_PLAN_BYTES` (a FIFO, a device or a huge file is refused before a byte is parsed).
Never the emulator, the API client or the executor.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import PurePath
from typing import Literal, TypeVar

from pvetool.errors import PlanError
from pvetool.planner.loader_steps import STEP_KINDS, read_steps
from pvetool.planner.loader_values import (
    PlanChecker,
    target_storage,
    to_concurrency,
    to_cpu_amount,
    to_memory_amount,
    to_name,
    to_overcommit,
    to_pool,
    to_positive_duration,
    to_rate,
    to_tag,
)
from pvetool.planner.spec import (
    Amount,
    Concurrency,
    Exclusions,
    FailurePolicy,
    Group,
    GuestSelector,
    Headroom,
    MigrationSettings,
    Pin,
    PlanSpec,
    Rules,
    Step,
)
from pvetool.textfile import UnreadableFile, read_limited
from pvetool.yamlcheck import (
    MAX_DEPTH,
    Item,
    Loc,
    Problems,
    describe,
    join,
    read_document,
    suggest,
    to_bool,
    to_cidr,
    to_enum,
    to_str,
)

__all__ = ["MAX_PLAN_BYTES", "PLAN_VERSION", "STEP_KINDS", "load_plan", "load_plan_text", "suggest"]

T = TypeVar("T")

PLAN_VERSION = 1
# A plan is written by hand (a few KiB); a larger file is refused before it is parsed.
MAX_PLAN_BYTES = 1024 * 1024
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

_TOP_KEYS = ("version", "name", "description", "rules", "steps", "links")
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


def _plan_error(problems: Problems) -> PlanError:
    found = problems.sorted()
    count = max(problems.count, len(found))
    noun = "problem" if count == 1 else "problems"
    message = f"The plan {problems.filename} has {count} {noun}: " + "; ".join(found)
    return PlanError(message, problems=found)


# --- the checker -------------------------------------------------------------------------------


# --- rules -------------------------------------------------------------------------------------


def _selector(ck: PlanChecker, values: dict[str, Loc], path: str) -> GuestSelector:
    return GuestSelector(
        vmids=tuple(ck.vmids(values, "vmids", path)),
        tags=tuple(ck.names(values, "tags", path, to_tag)),
        pools=tuple(ck.names(values, "pools", path, to_pool)),
    )


def _exclude(ck: PlanChecker, loc: Loc, path: str) -> Exclusions:
    values = ck.fields(loc, path, _EXCLUDE_KEYS)
    if values is None:
        return Exclusions()
    return Exclusions(
        members=_selector(ck, values, path),
        templates=ck.get(values, "templates", path, to_bool, True),
        where=ck.where(loc, path),
    )


def _groups(ck: PlanChecker, loc: Loc, path: str) -> tuple[Group, ...]:
    items = ck.sequence(loc, path, "a list of groups ({name, vmids, tags, pools})")
    groups: list[Group] = []
    names: dict[str, int] = {}
    for i, item in enumerate(items or ()):
        item_path = f"{path}[{i}]"
        values = ck.fields(item, item_path, _GROUP_KEYS, what="a group ({name, vmids|tags|pools})")
        if values is None:
            continue
        name = ck.get(values, "name", item_path, to_name, item_path)
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


def _pins(ck: PlanChecker, loc: Loc, path: str) -> tuple[Pin, ...]:
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


def _headroom(ck: PlanChecker, loc: Loc, path: str) -> Headroom:
    values = ck.fields(loc, path, _HEADROOM_KEYS)
    if values is None:
        return Headroom()
    return Headroom(
        memory=ck.get(values, "memory", path, to_memory_amount, Amount()),
        cpu=ck.get(values, "cpu", path, to_cpu_amount, Amount()),
    )


def _concurrency(ck: PlanChecker, loc: Loc, path: str) -> Concurrency:
    values = ck.fields(loc, path, _CONCURRENCY_KEYS)
    if values is None:
        return Concurrency()
    return Concurrency(
        cluster=ck.opt(values, "cluster", path, to_concurrency),
        per_source=ck.opt(values, "per_source", path, to_concurrency),
        per_target=ck.opt(values, "per_target", path, to_concurrency),
    )


def _migration(ck: PlanChecker, loc: Loc, path: str) -> MigrationSettings:
    values = ck.fields(loc, path, _MIGRATION_KEYS)
    if values is None:
        return MigrationSettings()
    mtype = ck.opt(values, "type", path, to_enum(MIGRATION_TYPES))
    storage = None
    if "target_storage" in values:
        storage = target_storage(ck, values["target_storage"], f"{path}.target_storage")
    return MigrationSettings(
        type=None if mtype is None else MIGRATION_TYPES[mtype],
        network=ck.opt(values, "network", path, to_cidr),
        bwlimit_Bps=ck.opt(values, "bwlimit", path, to_rate),
        with_local_disks=ck.get(values, "with_local_disks", path, to_bool, False),
        target_storage=storage or (),
    )


def _section(
    ck: PlanChecker,
    values: dict[str, Loc],
    key: str,
    path: str,
    read: Callable[[PlanChecker, Loc, str], T],
    default: T,
) -> T:
    """A sub-mapping read by `read`, or `default` when the key is absent."""
    loc = values.get(key)
    return default if loc is None else read(ck, loc, join(path, key))


def _rules(ck: PlanChecker, loc: Loc) -> Rules:
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
            values, "cpu_overcommit", path, to_overcommit, defaults.cpu_overcommit
        ),
        concurrency=_section(ck, values, "concurrency", path, _concurrency, defaults.concurrency),
        migration=_section(ck, values, "migration", path, _migration, defaults.migration),
        on_failure=FAILURE_POLICIES[on_failure],
        task_timeout_s=ck.get(
            values, "task_timeout", path, to_positive_duration, defaults.task_timeout_s
        ),
    )


# --- steps -------------------------------------------------------------------------------------


# --- the plan ----------------------------------------------------------------------------------


def _version(ck: PlanChecker, root: Loc, values: dict[str, Loc]) -> bool:
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


def _links(ck: PlanChecker, loc: Loc) -> tuple[tuple[str, float], ...]:
    """``links: {default: 10Gbit, pve4: 1Gbit}``: each node's migration link speed (bits/s);
    ``--link`` on the command line wins, learned figures lose to it (`pvetool.links`)."""
    values = ck.mapping(loc, "links", "a mapping of node name (or default) to a link speed")
    if values is None:
        return ()
    out: list[tuple[str, float]] = []
    for key, value in values.items():
        path = f"links.{key}"
        line = (loc.key_lines or {}).get(key, value.line)
        if key != "default" and ck.node(Loc(key, line), path) is None:
            continue
        rate = ck.convert(value, path, to_rate)
        if rate is None:
            continue
        if rate <= 0:
            ck.add(value, path, "the link speed must be above 0")
            continue
        out.append((key, rate * 8))
    return tuple(out)


def _default_name(filename: str) -> str:
    stem = PurePath(filename).stem
    return "plan" if not stem or filename.startswith("<") else stem


def _plan(ck: PlanChecker, root: Loc, text: str, filename: str) -> PlanSpec:
    what = "a plan (a mapping with version and steps)"
    top = ck.mapping(root, "", what)
    if top is None or not _version(ck, root, top):
        raise _plan_error(ck.problems)
    values = ck.fields(root, "", _TOP_KEYS, what=what)
    assert values is not None
    rules = _rules(ck, values["rules"]) if "rules" in values else Rules()
    steps: tuple[Step, ...] = ()
    if "steps" in values:
        steps = read_steps(ck, values["steps"])
    else:
        ck.add(root, "", "missing required key 'steps' (a plan needs at least one step)")
    links = _links(ck, values["links"]) if "links" in values else ()
    plan = PlanSpec(
        version=PLAN_VERSION,
        name=ck.get(values, "name", "", to_name, _default_name(filename)),
        description=ck.get(values, "description", "", to_str, "").strip(),
        rules=rules,
        steps=steps,
        source=filename,
        digest=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        node_refs=tuple(sorted(ck.node_refs, key=lambda ref: ref[1].line)),
        links=links,
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
        return _plan(PlanChecker(problems), root, text, filename)
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
        data = read_limited(filename, MAX_PLAN_BYTES)
    except UnreadableFile as exc:
        message = f"Cannot read the plan file {filename}: it {exc.reason}"
        raise PlanError(
            message, problems=[f"{filename}: cannot read the plan file: it {exc.reason}"]
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.add(line, "", f"the file is not UTF-8 text (byte {exc.start}: {exc.reason})")
        raise _plan_error(problems) from None
    return load_plan_text(text, filename)
