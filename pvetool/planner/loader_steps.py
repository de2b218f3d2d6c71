"""A plan's steps: `steps:`, each one of drain, rolling, rebalance or move, read into spec steps.

Each step is a mapping with exactly one key, its kind (docs/plan-format.md): ``- drain: pve2``
or ``- drain: {nodes: [...], targets: [...], guests: {...}}``, ``- rolling: {...}`` (with hooks
run without a shell), ``- rebalance: {...}`` and ``- move: {101: pve3}``.

Imports: the standard library, `pvetool.planner.spec`, `pvetool.planner.loader_values` and the
leaf `pvetool.yamlcheck`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable

from pvetool.planner.loader_values import (
    MAX_MOVES,
    PlanChecker,
    target_storage,
    to_duration,
    to_percent,
    to_positive_duration,
    to_rate,
    to_weight,
)
from pvetool.planner.spec import (
    BalanceBy,
    DrainStep,
    ExplicitMove,
    GuestOverride,
    Hook,
    MoveStep,
    RebalanceStep,
    RollingStep,
    Step,
    Where,
)
from pvetool.yamlcheck import (
    BROKEN,
    Item,
    Loc,
    describe,
    hint,
    is_scalar,
    join,
    to_bool,
    to_enum,
    to_int,
    to_str,
)

__all__ = ["STEP_KINDS", "read_steps"]

STEP_KINDS = ("drain", "rolling", "rebalance", "move")
HOOK_EXAMPLE = '["/usr/local/sbin/pve-maintenance-hook", "before"]'
BALANCE_BY: dict[str, BalanceBy] = {"memory": "memory", "cpu": "cpu", "both": "both"}
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
_HOOK_KEYS = ("command", "timeout", "pass_credentials")
_BEFORE_HOOK_KEYS = (*_HOOK_KEYS, "require_drained")
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


_to_move_count = to_int(1, MAX_MOVES, what="a number of moves (1 or more)")


def _drain(ck: PlanChecker, body: Loc, path: str, where: Where) -> DrainStep | None:
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
        storage = target_storage(ck, values["target_storage"], f"{path}.target_storage")
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


def _overrides(
    ck: PlanChecker, loc: Loc, path: str, drained: set[str]
) -> tuple[GuestOverride, ...]:
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
            storage = target_storage(ck, values["target_storage"], f"{item_path}.target_storage")
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
                bwlimit_Bps=ck.opt(values, "bwlimit", item_path, to_rate),
                offline=ck.opt(values, "offline", item_path, to_bool),
                skip=skip,
                where=ck.where(line, item_path),
            )
        )
    return tuple(out)


def _argv(ck: PlanChecker, loc: Loc, path: str) -> tuple[str, ...] | None:
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


def _hook(ck: PlanChecker, loc: Loc, path: str, *, before: bool = False) -> Hook | None:
    default = Hook(argv=())
    if not isinstance(loc.value, dict):
        argv = _argv(ck, loc, path)
        return None if argv is None else Hook(argv=argv, where=ck.where(loc, path))
    values = ck.fields(loc, path, _BEFORE_HOOK_KEYS, required=("command",))
    if values is None:
        return None
    if not before and "require_drained" in values:
        ck.add(
            values["require_drained"],
            f"{path}.require_drained",
            "applies to the before hook only (it guards the hook that takes the node down)",
        )
    timeout = ck.get(values, "timeout", path, to_positive_duration, default.timeout_s)
    credentials = ck.get(values, "pass_credentials", path, to_bool, default.pass_credentials)
    drained = ck.get(values, "require_drained", path, to_bool, default.require_drained)
    argv = _argv(ck, values["command"], f"{path}.command") if "command" in values else None
    if argv is None:
        return None
    return Hook(
        argv=argv,
        timeout_s=timeout,
        where=ck.where(loc, path),
        pass_credentials=credentials,
        require_drained=drained,
    )


def _rolling(ck: PlanChecker, body: Loc, path: str, where: Where) -> RollingStep | None:
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
    before = (
        _hook(ck, values["before"], f"{path}.before", before=True) if "before" in values else None
    )
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
            to_positive_duration,
            defaults.wait_online_timeout_s,
        ),
        confirm_between=ck.get(values, "confirm_between", path, to_bool, False),
        pause_s=ck.get(values, "pause", path, to_duration, 0.0),
        return_guests=ck.get(values, "return_guests", path, to_bool, True),
        where=where,
    )


def _rebalance(ck: PlanChecker, body: Loc, path: str, where: Where) -> RebalanceStep | None:
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
            memory = ck.opt(weights, "memory", weights_path, to_weight)
            cpu = ck.opt(weights, "cpu", weights_path, to_weight)
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
        threshold=ck.get(values, "threshold", path, to_percent, defaults.threshold),
        max_moves=ck.opt(values, "max_moves", path, _to_move_count),
        exclude_nodes=tuple(n.value for n in exclude),
        min_improvement=ck.get(
            values, "min_improvement", path, to_percent, defaults.min_improvement
        ),
        where=where,
    )


def _move(ck: PlanChecker, body: Loc, path: str, where: Where) -> MoveStep | None:
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


_STEP_READERS: dict[str, Callable[[PlanChecker, Loc, str, Where], Step | None]] = {
    "drain": _drain,
    "rolling": _rolling,
    "rebalance": _rebalance,
    "move": _move,
}


def _step_kind(ck: PlanChecker, item: Loc, path: str) -> str | None:
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


def read_steps(ck: PlanChecker, loc: Loc) -> tuple[Step, ...]:
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
