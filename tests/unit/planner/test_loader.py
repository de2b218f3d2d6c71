"""Tests for `pvetool.planner.loader`: the plan format, every kind of problem, and robustness."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvetool.errors import PlanError, PvetoolError
from pvetool.planner.loader import STEP_KINDS, load_plan, load_plan_text, suggest
from pvetool.planner.spec import (
    Amount,
    DrainStep,
    MoveStep,
    PlanSpec,
    RebalanceStep,
    RollingStep,
    Where,
)
from pvetool.units import GiB, MiB

ROOT = Path(__file__).resolve().parents[3]
PLANS = ROOT / "tests" / "data" / "plans"
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yaml"))
DOC = ROOT / "docs" / "plan-format.md"

# `file:line: path: message` (the path is left out for problems of the whole document).
PROBLEM_RE = re.compile(r"(?P<file>[^:]+):(?P<line>\d+): (?:(?P<path>[\w.\[\]*-]+): )?(?P<msg>.+)")


def problems_of(text: str, filename: str = "p.yaml") -> list[str]:
    with pytest.raises(PlanError) as info:
        load_plan_text(text, filename)
    problems = list(info.value.problems)
    assert problems, "a PlanError always lists its problems"
    for problem in problems:
        assert PROBLEM_RE.fullmatch(problem), problem
        assert problem.startswith(f"{filename}:")
    return problems


def only_problem(text: str) -> str:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


def plan(body: str) -> str:
    """A plan whose first line is `version: 1`; `body` starts on line 2."""
    return "version: 1\n" + body


# --- the documented examples -------------------------------------------------------------------


def doc_examples() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_has_examples_for_every_section() -> None:
    text = "\n".join(doc_examples())
    for key in ("exclude:", "anti_affinity:", "pins:", "headroom:", "concurrency:", "migration:"):
        assert key in text
    for kind in STEP_KINDS:
        assert f"- {kind}:" in text
    assert len(doc_examples()) >= 15


@pytest.mark.parametrize("index", range(len(doc_examples())))
def test_doc_example_loads(index: int) -> None:
    text = doc_examples()[index]
    if not re.search(r"^version:", text, flags=re.M):
        text = "version: 1\n" + text
    if not re.search(r"^steps:", text, flags=re.M):
        text += "steps: [drain: pve2]\n"
    spec = load_plan_text(text, f"plan-format.md#{index}")
    assert spec.version == 1 and spec.steps


def test_doc_error_examples_match_the_loader() -> None:
    """The problems shown in docs/plan-format.md are what the loader really says."""
    text = DOC.read_text(encoding="utf-8")
    assert "steps[0].drain.targets[1]: expected a node name, got 12" in text
    got = only_problem(
        "version: 1\nsteps:\n  - drain:\n      targets: [pve1, 12]\n      node: pve2"
    )
    assert got.endswith("steps[0].drain.targets[1]: expected a node name, got 12")
    got = only_problem("version: 1\nsteps:\n  - drain:\n    nodes: [pve2]")
    assert got.split(": ", 1)[1] in text


# --- a complete plan ---------------------------------------------------------------------------

FULL = """\
version: 1
name: full
description: every key once
rules:
  exclude: {vmids: [115, 121], tags: [gpu], pools: [dev], templates: false}
  anti_affinity:
    - {name: web, tags: [web]}
  affinity:
    - {vmids: [103, 104]}
  pins:
    - {vmids: [103], nodes: [pve1, pve2]}
  headroom: {memory: 8GiB, cpu: 10%}
  cpu_overcommit: 2.5
  concurrency: {cluster: 4, per_source: 2, per_target: auto}
  migration:
    type: insecure
    network: 10.10.10.0/24
    bwlimit: 500MiB/s
    with_local_disks: true
    target_storage: {local-lvm: ceph, "*": ceph}
  on_failure: skip-guest
  task_timeout: 1h30m
steps:
  - drain:
      nodes: [pve2, pve3]
      targets: [pve1]
      with_local_disks: false
      target_storage: ceph
      include_stopped: false
      guests:
        112: {target: pve1, target_storage: {local-lvm: ceph}, bwlimit: 1Gbit/s, offline: true}
        114: {skip: true}
  - rolling:
      nodes: all
      targets: [pve1, pve2]
      before: ["/usr/local/sbin/hook", "before"]
      after: {command: ["/usr/local/sbin/hook", "after"], timeout: 10m}
      wait_online_timeout: 20m
      confirm_between: true
      pause: 30s
      return_guests: false
  - rebalance:
      by: both
      weights: {memory: 7, cpu: 3}
      threshold: 5%
      max_moves: 10
      exclude_nodes: [pve3]
      min_improvement: 2%
  - move: {101: pve3, 102: pve1}
"""


def test_full_plan_maps_onto_the_spec() -> None:
    spec = load_plan_text(FULL, "full.yaml")
    assert isinstance(spec, PlanSpec)
    assert (spec.version, spec.name, spec.description) == (1, "full", "every key once")
    assert spec.source == "full.yaml"
    assert spec.digest == hashlib.sha256(FULL.encode()).hexdigest()

    rules = spec.rules
    assert rules.exclude.members.vmids == (115, 121)
    assert rules.exclude.members.tags == ("gpu",) and rules.exclude.members.pools == ("dev",)
    assert rules.exclude.templates is False
    assert rules.exclude.where == Where("full.yaml", 5, "rules.exclude")
    assert [g.name for g in rules.anti_affinity] == ["web"]
    assert rules.anti_affinity[0].members.tags == ("web",)
    assert rules.affinity[0].name == "rules.affinity[0]"  # default name: its key path
    assert rules.affinity[0].where.line == 9
    assert rules.pins[0].nodes == ("pve1", "pve2") and rules.pins[0].members.vmids == (103,)
    assert rules.headroom.memory == Amount(absolute=8 * GiB)
    assert rules.headroom.cpu == Amount(fraction=0.10)
    assert rules.cpu_overcommit == 2.5
    assert (rules.concurrency.cluster, rules.concurrency.per_source) == (4, 2)
    assert rules.concurrency.per_target is None
    migration = rules.migration
    assert (migration.type, migration.network) == ("insecure", "10.10.10.0/24")
    assert migration.bwlimit_Bps == 500 * MiB
    assert migration.with_local_disks is True
    assert migration.target_storage == (("local-lvm", "ceph"), ("*", "ceph"))
    assert rules.on_failure == "skip-guest"
    assert rules.task_timeout_s == 5400

    drain, rolling, rebalance, move = spec.steps
    assert isinstance(drain, DrainStep)
    assert drain.nodes == ("pve2", "pve3") and drain.targets == ("pve1",)
    assert drain.with_local_disks is False and drain.include_stopped is False
    assert drain.target_storage == (("*", "ceph"),)
    assert drain.where == Where("full.yaml", 24, "steps[0].drain")
    o112, o114 = drain.overrides
    assert (o112.vmid, o112.target, o112.offline, o112.skip) == (112, "pve1", True, False)
    assert o112.target_storage == (("local-lvm", "ceph"),)
    assert o112.bwlimit_Bps == pytest.approx(125e6)
    assert o112.where == Where("full.yaml", 31, "steps[0].drain.guests.112")
    assert (o114.vmid, o114.skip, o114.target) == (114, True, None)

    assert isinstance(rolling, RollingStep)
    assert rolling.nodes is None and rolling.targets == ("pve1", "pve2")
    assert rolling.before is not None and rolling.before.argv == ("/usr/local/sbin/hook", "before")
    assert rolling.before.timeout_s == 1800
    assert rolling.after is not None and rolling.after.timeout_s == 600
    assert rolling.after.where == Where("full.yaml", 37, "steps[1].rolling.after")
    assert (rolling.wait_online_timeout_s, rolling.pause_s) == (1200, 30)
    assert rolling.confirm_between is True and rolling.return_guests is False

    assert isinstance(rebalance, RebalanceStep)
    assert rebalance.by == "both"
    assert (rebalance.memory_weight, rebalance.cpu_weight) == pytest.approx((0.7, 0.3))
    assert (rebalance.threshold, rebalance.min_improvement) == pytest.approx((0.05, 0.02))
    assert rebalance.max_moves == 10 and rebalance.exclude_nodes == ("pve3",)

    assert isinstance(move, MoveStep)
    assert [(m.vmid, m.target, m.where.line) for m in move.moves] == [
        (101, "pve3", 49),
        (102, "pve1", 49),
    ]


def test_defaults_of_a_minimal_plan() -> None:
    spec = load_plan_text("version: 1\nsteps:\n  - drain: pve2\n  - rolling:\n  - rebalance:\n")
    assert spec.name == "plan" and spec.description == ""
    assert spec.rules.on_failure == "stop" and spec.rules.task_timeout_s == 3600
    assert spec.rules.exclude.templates is True
    drain, rolling, rebalance = spec.steps
    assert isinstance(drain, DrainStep) and drain.nodes == ("pve2",) and drain.targets is None
    assert drain.with_local_disks is None and drain.include_stopped is True
    assert isinstance(rolling, RollingStep) and rolling.nodes is None
    assert rolling.before is None and rolling.return_guests is True
    assert isinstance(rebalance, RebalanceStep)
    assert (rebalance.by, rebalance.memory_weight, rebalance.cpu_weight) == ("memory", 1.0, 0.0)
    assert rebalance.threshold == pytest.approx(0.10) and rebalance.max_moves is None


@pytest.mark.parametrize(
    ("by", "weights", "expected"),
    [
        ("memory", "", (1.0, 0.0)),
        ("cpu", "", (0.0, 1.0)),
        ("both", "", (0.5, 0.5)),
        ("both", ", weights: {memory: 0.7, cpu: 0.3}", (0.7, 0.3)),
        ("both", ", weights: {cpu: 2}", (0.0, 1.0)),
    ],
)
def test_rebalance_weights(by: str, weights: str, expected: tuple[float, float]) -> None:
    spec = load_plan_text(plan(f"steps:\n  - rebalance: {{by: {by}{weights}}}\n"))
    step = spec.steps[0]
    assert isinstance(step, RebalanceStep)
    assert (step.memory_weight, step.cpu_weight) == pytest.approx(expected)


def test_drain_shorthands_and_name_from_file(tmp_path: Path) -> None:
    path = tmp_path / "weekend.yaml"
    path.write_text("version: 1\nsteps:\n  - drain: [pve1, pve2]\n  - drain: {node: pve3}\n")
    spec = load_plan(path)
    assert spec.name == "weekend" and spec.source == str(path)
    assert [s.nodes for s in spec.steps if isinstance(s, DrainStep)] == [
        ("pve1", "pve2"),
        ("pve3",),
    ]
    assert spec.digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_anchors_aliases_and_merge_keys() -> None:
    spec = load_plan(PLANS / "anchors.yaml")
    first, second = spec.steps
    assert isinstance(first, DrainStep) and isinstance(second, DrainStep)
    assert first.targets == ("pve1", "pve2")
    assert (second.nodes, second.targets, second.include_stopped) == (
        ("pve1",),
        ("pve2", "pve3"),
        False,
    )


# --- node_refs and suggest ---------------------------------------------------------------------


def test_node_refs_list_every_node_with_its_line() -> None:
    spec = load_plan_text(FULL, "full.yaml")
    refs = [(name, where.line, where.path) for name, where in spec.node_refs]
    assert refs == [
        ("pve1", 11, "rules.pins[0].nodes[0]"),
        ("pve2", 11, "rules.pins[0].nodes[1]"),
        ("pve2", 25, "steps[0].drain.nodes[0]"),
        ("pve3", 25, "steps[0].drain.nodes[1]"),
        ("pve1", 26, "steps[0].drain.targets[0]"),
        ("pve1", 31, "steps[0].drain.guests.112.target"),
        ("pve1", 35, "steps[1].rolling.targets[0]"),
        ("pve2", 35, "steps[1].rolling.targets[1]"),
        ("pve3", 47, "steps[2].rebalance.exclude_nodes[0]"),
        ("pve3", 49, "steps[3].move.101"),
        ("pve1", 49, "steps[3].move.102"),
    ]
    assert all(where.file == "full.yaml" for _, where in spec.node_refs)
    assert str(spec.node_refs[0][1]) == "full.yaml:11: rules.pins[0].nodes[0]"


def test_node_refs_of_shorthand_steps() -> None:
    spec = load_plan_text("version: 1\nsteps:\n  - drain: pve4\n  - drain: {node: pve5}\n")
    assert [(n, w.line, w.path) for n, w in spec.node_refs] == [
        ("pve4", 3, "steps[0].drain"),
        ("pve5", 4, "steps[1].drain.node"),
    ]


@pytest.mark.parametrize(
    ("name", "choices", "expected"),
    [
        ("pve4", ["pve1", "pve2", "pve3"], "did you mean 'pve3'?"),
        ("PVE2", ["pve1", "pve2"], "did you mean 'pve2'?"),
        ("taregts", ["nodes", "targets"], "did you mean 'targets'?"),
        ("storage", ["pve1", "pve2"], None),
        ("pve1", ["pve1"], None),
        ("x", [], None),
    ],
)
def test_suggest(name: str, choices: list[str], expected: str | None) -> None:
    assert suggest(name, iter(choices)) == expected


# --- problems ----------------------------------------------------------------------------------


def test_broken_plan_reports_every_problem_in_file_order() -> None:
    path = PLANS / "broken_many.yaml"
    with pytest.raises(PlanError) as info:
        load_plan(path)
    name = str(path)
    problems = list(info.value.problems)
    expected = [
        (5, "rules.exclude.vmids[0]: expected a vmid from 100 to 999999999, got 42"),
        (6, "rules.headroom.memory: expected a percentage like 10% or a size like 8GiB, got 8"),
        (7, "rules.cpu_overcommit: must be greater than 0"),
        (8, "rules.concurrency.cluster: must be at least 1 (or auto), got 0"),
        (9, "rules.migration.type: expected one of secure, insecure, got 'fast'"),
        (9, "rules.migration.network: expected a network in CIDR notation like 10.10.10.0/24"),
        (9, "rules.migration.bwlimit: expected a rate like 500MiB/s or 1Gbit/s, got 500"),
        (
            10,
            "rules.on_failure: expected one of stop, continue, skip-guest, got 'skip_guest' "
            "(did you mean 'skip-guest'?)",
        ),
        (11, "rules.task_timeout: expected a duration like 30s, 10m or 1h, got '10 mins'"),
        (13, "rules.anti_affinity[0].vmids: a group of one guest has no effect"),
        (17, "steps[0].drain: unknown key 'taregts' (did you mean 'targets'?)"),
        (20, "steps[1].drain.targets[1]: expected a node name, got 12"),
        (20, "steps[1].drain.targets[2]: node 'pve2' is drained by this step"),
        (22, "steps[1].drain.guests.111.skip: skip: true leaves the guest where it is"),
        (23, "steps[1].drain.guests.abc: expected a vmid"),
        (24, "steps[2]: unknown step 'rebalnce' (did you mean 'rebalance'?)"),
        (25, "steps[3].rebalance.weights: weights apply only with 'by: both'"),
        (25, "steps[3].rebalance.threshold: must be at most 100%, got '150%'"),
        (27, "steps[4].rolling.before: expected a command as a list of arguments"),
        (28, "steps[4].rolling.pause: expected a duration like 30s, 10m or 1h, got 'soon'"),
        (29, "steps[5].move.7: expected a vmid from 100 to 999999999, got 7"),
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for problem, (line, start) in zip(problems, expected, strict=True):
        assert problem.startswith(f"{name}:{line}: {start}"), problem
    assert info.value.exit_code == 2
    assert isinstance(info.value, PvetoolError)
    assert info.value.message.startswith(f"The plan {name} has 21 problems: {name}:5: ")


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(PlanError) as info:
        load_plan(PLANS / "broken_syntax.yaml")
    (problem,) = info.value.problems
    assert re.fullmatch(r".*broken_syntax\.yaml:5: invalid YAML: .*flow sequence.*", problem)


def test_unknown_version_is_the_only_problem() -> None:
    with pytest.raises(PlanError) as info:
        load_plan(PLANS / "wrong_version.yaml")
    (problem,) = info.value.problems
    assert problem.endswith(
        "wrong_version.yaml:2: version: expected 1 (the only plan format this pvetool reads), got 2"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the document as a whole
        ("", "p.yaml:1: the plan is empty; it needs 'version: 1' and 'steps'"),
        (
            "- drain: pve2",
            "p.yaml:1: expected a plan (a mapping with version and steps), got a list",
        ),
        ("steps: [drain: pve2]", "p.yaml:1: missing required key 'version' (write 'version: 1')"),
        ("version: 1", "p.yaml:1: missing required key 'steps' (a plan needs at least one step)"),
        (
            "version: '1'\nsteps: [drain: pve2]",
            "p.yaml:1: version: expected 1 (the only plan format this pvetool reads), got '1'",
        ),
        (plan("steps: []"), "p.yaml:2: steps: a plan needs at least one step, got an empty list"),
        (
            plan("steps: {drain: pve2}"),
            "p.yaml:2: steps: expected a list of steps (- drain: ..., "
            "- rolling: ..., ...), got a mapping",
        ),
        (
            plan("stpes: []\nsteps: [drain: pve2]"),
            "p.yaml:2: unknown key 'stpes' (did you mean 'steps'?)",
        ),
        (
            plan("steps: [drain: pve2]\nsteps: [drain: pve1]"),
            "p.yaml:3: duplicate key 'steps' (first on line 2)",
        ),
        (plan("name: ''\nsteps: [drain: pve2]"), "p.yaml:2: name: must not be empty"),
        (plan("name: [a]\nsteps: [drain: pve2]"), "p.yaml:2: name: expected a string, got a list"),
        (
            plan("steps: [drain: !!python/name:os.system pve2]"),
            "p.yaml:2: steps[0].drain: cannot "
            "read value 'pve2': could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/name:os.system'",
        ),
        (
            plan("steps: [drain: !!bool maybe]"),
            "p.yaml:2: steps[0].drain: cannot read value 'maybe': 'maybe'",
        ),
        (plan("steps: &a [*a]"), "p.yaml:2: steps[0]: a recursive alias is not allowed here"),
        (
            plan("a: 1\nsteps: [drain: pve2]"),
            "p.yaml:2: unknown key 'a'; expected one of version, name, description, rules, "
            "steps, links",
        ),
        # steps
        (
            plan("steps:\n  - drian: pve2"),
            "p.yaml:3: steps[0]: unknown step 'drian' (did you mean 'drain'?); a step is one of "
            "drain, rolling, rebalance, move",
        ),
        (
            plan("steps:\n  - drain:\n    nodes: [pve2]"),
            "p.yaml:3: steps[0]: a step has exactly one key ('drain'), got also 'nodes'; indent "
            "'nodes' under 'drain:'",
        ),
        (
            plan("steps:\n  - {drain: pve2, targest: [pve1]}"),
            "p.yaml:3: steps[0]: a step has exactly one key ('drain'), got also 'targest' (did you "
            "mean 'targets'?)",
        ),
        (
            plan("steps:\n  - {drain: pve2, move: {101: pve1}}"),
            "p.yaml:3: steps[0]: a step has exactly one kind, got drain and move: make each "
            "its own list item ('- drain: ...', '- move: ...')",
        ),
        (
            plan("steps:\n  - drain"),
            "p.yaml:3: steps[0]: expected a step (a mapping with one key: "
            "drain, rolling, rebalance or move), got 'drain'",
        ),
        (
            plan("steps:\n  - {}"),
            "p.yaml:3: steps[0]: expected a step (a mapping with one key: "
            "drain, rolling, rebalance or move), got an empty mapping",
        ),
        # drain
        (
            plan("steps:\n  - drain:"),
            "p.yaml:3: steps[0].drain: expected the node(s) to drain, "
            "e.g. 'drain: pve2' or a mapping with 'nodes', got nothing (null)",
        ),
        (
            plan("steps:\n  - drain: {targets: [pve1]}"),
            "p.yaml:3: steps[0].drain: missing required key 'nodes' (the node or nodes to drain)",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, nodes: [pve2]}"),
            "p.yaml:3: steps[0].drain: give either 'node' or 'nodes', not both",
        ),
        (
            plan("steps:\n  - drain: {node: [pve1, pve2]}"),
            "p.yaml:3: steps[0].drain.node: expected a node name, got a list",
        ),
        (
            plan("steps:\n  - drain: {nodes: [pve1, pve1]}"),
            "p.yaml:3: steps[0].drain.nodes[1]: node 'pve1' is listed twice (first on line 3)",
        ),
        (
            plan("steps:\n  - drain: {nodes: []}"),
            "p.yaml:3: steps[0].drain.nodes: must not be an empty list",
        ),
        (
            plan("steps:\n  - drain: {nodes: [pve1], targets: []}"),
            "p.yaml:3: steps[0].drain.targets: must not be an empty list; leave 'targets' "
            "out to use every other node",
        ),
        (
            plan("steps:\n  - drain: {nodes: ['pve 2']}"),
            "p.yaml:3: steps[0].drain.nodes[0]: expected a node name, got 'pve 2'",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, include_stopped: yes please}"),
            "p.yaml:3: steps[0].drain.include_stopped: expected true or false, got 'yes please'",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, target_storage: [ceph]}"),
            "p.yaml:3: steps[0].drain.target_storage: expected a storage id or a mapping of source "
            "storage to target storage, got a list",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, target_storage: {}}"),
            "p.yaml:3: steps[0].drain.target_storage: expected a storage id or a mapping of source "
            "storage to target storage, got an empty mapping",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, target_storage: {local-lvm: 7}}"),
            "p.yaml:3: steps[0].drain.target_storage.local-lvm: expected a storage id, got 7",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, guests: [111]}"),
            "p.yaml:3: steps[0].drain.guests: expected a mapping of vmid to guest settings, got a "
            "list",
        ),
        (
            plan(
                "steps:\n  - drain:\n      node: pve1\n      guests:\n        111: {}\n     "
                "   0111: {}"
            ),
            "p.yaml:7: steps[0].drain.guests.0111: guest 111 is listed twice (first on line 6)",
        ),
        (
            plan(
                "steps:\n  - drain:\n      node: pve1\n      guests:\n        111: {}\n     "
                "   111: {}"
            ),
            "p.yaml:7: steps[0].drain.guests: duplicate key '111' (first on line 6)",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, guests: {111: {target: pve1}}}"),
            "p.yaml:3: steps[0].drain.guests.111.target: node 'pve1' is drained by this step and "
            "cannot be a target",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, guests: {111: {offlne: true}}}"),
            "p.yaml:3: steps[0].drain.guests.111: unknown key 'offlne' (did you mean 'offline'?)",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, guests: {111: skip}}"),
            "p.yaml:3: steps[0].drain.guests.111: expected a mapping of guest settings, got 'skip'",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, guests: {111: {bwlimit: 10MB/s}}}"),
            "p.yaml:3: steps[0].drain.guests.111.bwlimit: expected a rate like 500MiB/s or "
            "1Gbit/s, got '10MB/s' (rates are binary: write 10MiB/s)",
        ),
        (
            plan("steps:\n  - drain: {node: pve1, guests: {99: {skip: true}}}"),
            "p.yaml:3: steps[0].drain.guests.99: expected a vmid from 100 to 999999999, got 99",
        ),
        # rolling
        (
            plan("steps:\n  - rolling: {nodes: 5}"),
            "p.yaml:3: steps[0].rolling.nodes: expected a node name, got 5",
        ),
        (
            plan("steps:\n  - rolling: {nodes: []}"),
            "p.yaml:3: steps[0].rolling.nodes: must not be an empty list; write 'nodes: all'",
        ),
        (
            plan("steps:\n  - rolling: {before: 'apt-get -y dist-upgrade'}"),
            "p.yaml:3: steps[0].rolling.before: expected a command as a list of arguments, got "
            "'apt-get -y dist-upgrade': hooks run without a shell, so split it into a list, e.g. "
            '["apt-get", "-y", "dist-upgrade"]',
        ),
        (
            plan("steps:\n  - rolling: {after: {command: '/usr/bin/check \"a b\"'}}"),
            "p.yaml:3: steps[0].rolling.after.command: expected a command as a list of arguments, "
            "got '/usr/bin/check \"a b\"': hooks run without a shell, so split it into a "
            "list, e.g. "
            '["/usr/bin/check", "a b"]',
        ),
        (
            plan("steps:\n  - rolling: {before: []}"),
            "p.yaml:3: steps[0].rolling.before: expected a command as a list of arguments like "
            '["/usr/local/sbin/pve-maintenance-hook", "before"], got []',
        ),
        (
            plan("steps:\n  - rolling: {before: ['/usr/bin/hook before']}"),
            "p.yaml:3: steps[0].rolling.before[0]: the program '/usr/bin/hook before' contains "
            'spaces: each argument is its own list item, e.g. ["/usr/bin/hook", "before"]',
        ),
        (
            plan("steps:\n  - rolling: {before: ['', x]}"),
            "p.yaml:3: steps[0].rolling.before[0]: the program must not be empty",
        ),
        (
            plan("steps:\n  - rolling: {before: [hook, [x]]}"),
            "p.yaml:3: steps[0].rolling.before[1]: expected a string, got a list",
        ),
        (
            plan("steps:\n  - rolling: {before: {timeout: 5m}}"),
            "p.yaml:3: steps[0].rolling.before: missing required key 'command'",
        ),
        (
            plan("steps:\n  - rolling: {before: {command: [hook], timeout: 0}}"),
            "p.yaml:3: steps[0].rolling.before.timeout: must be longer than 0 seconds, got 0",
        ),
        (
            plan("steps:\n  - rolling: {before: 12}"),
            "p.yaml:3: steps[0].rolling.before: expected a command as a list of arguments like "
            '["/usr/local/sbin/pve-maintenance-hook", "before"], got 12',
        ),
        (
            plan("steps:\n  - rolling: {wait_online_timeout: 20 minutes}"),
            "p.yaml:3: steps[0].rolling.wait_online_timeout: expected a duration like 30s, 10m or "
            "1h, got '20 minutes'",
        ),
        (
            plan("steps:\n  - rolling: {confirm: true}"),
            "p.yaml:3: steps[0].rolling: unknown key 'confirm' (did you mean 'confirm_between'?)",
        ),
        # rebalance
        (
            plan("steps:\n  - rebalance: {by: ram}"),
            "p.yaml:3: steps[0].rebalance.by: expected one of memory, cpu, both, got 'ram'",
        ),
        (
            plan("steps:\n  - rebalance: {by: both, weights: {memory: 0, cpu: 0}}"),
            "p.yaml:3: steps[0].rebalance.weights: at least one weight must be above 0",
        ),
        (
            plan("steps:\n  - rebalance: {by: both, weights: {memory: -1, cpu: 1}}"),
            "p.yaml:3: steps[0].rebalance.weights.memory: must not be negative, got -1",
        ),
        (
            plan("steps:\n  - rebalance: {by: both, weights: {memroy: 1}}"),
            "p.yaml:3: steps[0].rebalance.weights: unknown key 'memroy' (did you mean 'memory'?)",
        ),
        (
            plan("steps:\n  - rebalance: {threshold: 10}"),
            "p.yaml:3: steps[0].rebalance.threshold: expected a percentage like 10%, got 10 "
            "(write 10%)",
        ),
        (
            plan("steps:\n  - rebalance: {threshold: -1%}"),
            "p.yaml:3: steps[0].rebalance.threshold: must not be negative, got '-1%'",
        ),
        (
            plan("steps:\n  - rebalance: {max_moves: 0}"),
            "p.yaml:3: steps[0].rebalance.max_moves: must be at least 1, got 0",
        ),
        (
            plan("steps:\n  - rebalance: {max_moves: many}"),
            "p.yaml:3: steps[0].rebalance.max_moves: expected a number of moves (1 or more), got "
            "'many'",
        ),
        (
            plan("steps:\n  - rebalance: {min_improvement: 101%}"),
            "p.yaml:3: steps[0].rebalance.min_improvement: must be at most 100%, got '101%'",
        ),
        (
            plan("steps:\n  - rebalance: {exclude_nodes: [pve1, 3]}"),
            "p.yaml:3: steps[0].rebalance.exclude_nodes[1]: expected a node name, got 3",
        ),
        (
            plan("steps:\n  - rebalance: by memory"),
            "p.yaml:3: steps[0].rebalance: expected a mapping of rebalance settings, got "
            "'by memory'",
        ),
        # move
        (
            plan("steps:\n  - move: {}"),
            "p.yaml:3: steps[0].move: expected at least one move (vmid: node), got an empty "
            "mapping",
        ),
        (
            plan("steps:\n  - move: [101, pve3]"),
            "p.yaml:3: steps[0].move: expected a mapping of vmid to target node, e.g. {101: pve3}, "
            "got a list",
        ),
        (
            plan("steps:\n  - move: {web1: pve3}"),
            "p.yaml:3: steps[0].move.web1: expected a vmid (a number from 100) as the key, got "
            "'web1'",
        ),
        (
            plan("steps:\n  - move: {101: [pve3]}"),
            "p.yaml:3: steps[0].move.101: expected a node name, got a list",
        ),
        (
            plan("steps:\n  - move:\n      101: pve3\n      0101: pve2"),
            "p.yaml:5: steps[0].move.0101: guest 101 is listed twice (first on line 4)",
        ),
        (
            plan("steps:\n  - move: {1000000000: pve3}"),
            "p.yaml:3: steps[0].move.1000000000: expected a vmid from 100 to 999999999, got "
            "1000000000",
        ),
        # rules
        (
            plan("rules: []\nsteps: [drain: pve2]"),
            "p.yaml:2: rules: expected a mapping, got a list",
        ),
        (
            plan("rules: {exclud: {}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules: unknown key 'exclud' (did you mean 'exclude'?)",
        ),
        (
            plan("rules: {exclude: {vmids: [abc]}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.exclude.vmids[0]: expected a vmid (a number from 100), got 'abc'",
        ),
        (
            plan("rules: {exclude: {vmids: [true]}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.exclude.vmids[0]: expected a vmid (a number from 100), got true",
        ),
        (
            plan("rules: {exclude: {tags: ['a b']}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.exclude.tags[0]: expected a tag (letters, digits, _ - + .), got 'a b'",
        ),
        (
            plan("rules: {exclude: {pools: {prod: 1}}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.exclude.pools: expected a list of pools, got a mapping",
        ),
        (
            plan("rules: {exclude: {templates: no thanks}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.exclude.templates: expected true or false, got 'no thanks'",
        ),
        (
            plan("rules:\n  anti_affinity:\n    - {name: x}\nsteps: [drain: pve2]"),
            "p.yaml:4: rules.anti_affinity[0]: a group needs at least one of vmids, tags or pools",
        ),
        (
            plan(
                "rules:\n  affinity:\n    - {name: x, vmids: [101, 102]}\n    - {name: x, "
                "tags: [a]}\nsteps: [drain: pve2]"
            ),
            "p.yaml:5: rules.affinity[1].name: group name 'x' is used twice (first on line 4)",
        ),
        (
            plan("rules:\n  anti_affinity: {web: [101, 102]}\nsteps: [drain: pve2]"),
            "p.yaml:3: rules.anti_affinity: expected a list of groups ({name, vmids, tags, "
            "pools}), got a mapping",
        ),
        (
            plan("rules:\n  anti_affinity: [[101, 102]]\nsteps: [drain: pve2]"),
            "p.yaml:3: rules.anti_affinity[0]: expected a group ({name, vmids|tags|pools}), got a "
            "list",
        ),
        (
            plan("rules:\n  pins:\n    - {vmids: [101]}\nsteps: [drain: pve2]"),
            "p.yaml:4: rules.pins[0]: missing required key 'nodes'",
        ),
        (
            plan("rules:\n  pins:\n    - {nodes: [pve1]}\nsteps: [drain: pve2]"),
            "p.yaml:4: rules.pins[0]: a pin needs at least one of vmids, tags or pools",
        ),
        (
            plan("rules:\n  pins:\n    - {tags: [db], nodes: []}\nsteps: [drain: pve2]"),
            "p.yaml:4: rules.pins[0].nodes: must not be an empty list",
        ),
        (
            plan("rules: {headroom: {memory: 8GB}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.headroom.memory: expected a percentage like 10% or a size like 8GiB, "
            "got '8GB'",
        ),
        (
            plan("rules: {headroom: {memory: 120%}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.headroom.memory: must be at most 100%, got '120%'",
        ),
        (
            plan("rules: {headroom: {cpu: two}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.headroom.cpu: expected a percentage like 10% or a number of CPUs like "
            "4, got 'two'",
        ),
        (
            plan("rules: {headroom: {cpu: -1}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.headroom.cpu: must not be negative, got -1",
        ),
        (
            plan("rules: {headroom: {disk: 10%}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.headroom: unknown key 'disk'; expected one of memory, cpu",
        ),
        (
            plan("rules: {cpu_overcommit: lots}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.cpu_overcommit: expected a number, got 'lots'",
        ),
        (
            plan("rules: {cpu_overcommit: .inf}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.cpu_overcommit: expected a number, got .inf",
        ),
        (
            plan("rules: {concurrency: 4}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.concurrency: expected a mapping, got 4",
        ),
        (
            plan("rules: {concurrency: {per_source: 1.5}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.concurrency.per_source: expected a number of migrations (1 or "
            "more) or auto, got 1.5",
        ),
        (
            plan("rules: {concurrency: {per_node: 1}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.concurrency: unknown key 'per_node' (did you mean 'per_source'?)",
        ),
        (
            plan("rules: {concurrency: {max: 1}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.concurrency: unknown key 'max'; expected one of cluster, per_source, "
            "per_target",
        ),
        (
            plan("rules: {migration: {network: 10.10.10.0/33}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.migration.network: expected a network in CIDR notation like "
            "10.10.10.0/24, got '10.10.10.0/33'",
        ),
        (
            plan("rules: {migration: {type: Secure}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.migration.type: expected one of secure, insecure, got 'Secure' "
            "(did you mean 'secure'?)",
        ),
        (
            plan("rules: {migration: {target_storage: {'bad id!': ceph}}}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.migration.target_storage.bad id!: expected a storage id (or *) as the "
            "key, got 'bad id!'",
        ),
        (
            plan("rules: {on_failure: abort}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.on_failure: expected one of stop, continue, skip-guest, got 'abort'",
        ),
        (
            plan("rules: {task_timeout: 0s}\nsteps: [drain: pve2]"),
            "p.yaml:2: rules.task_timeout: must be longer than 0 seconds, got '0s'",
        ),
    ],
)
def test_problem(text: str, expected: str) -> None:
    assert only_problem(text) == expected


def test_several_problems_are_collected_at_once() -> None:
    text = plan(
        "rules:\n"
        "  headroom: {memory: lots}\n"  # 3
        "  on_failure: never\n"  # 4
        "steps:\n"
        "  - drain: {nodes: [pve2], targets: [pve1, 12]}\n"  # 6
        "  - drian: pve1\n"  # 7
        "  - move: {101: pve3, 5: pve1}\n"  # 8
    )
    problems = problems_of(text)
    assert [int(p.split(":")[1]) for p in problems] == [3, 4, 6, 7, 8]
    assert "did you mean 'drain'?" in problems[3]


def test_plan_error_message_lists_the_problems() -> None:
    with pytest.raises(PlanError) as info:
        load_plan_text(plan("steps:\n  - drian: pve1\n  - move: {5: pve1}"), "x.yaml")
    assert str(info.value) == (
        "The plan x.yaml has 2 problems: x.yaml:3: steps[0]: unknown step 'drian' (did you mean "
        "'drain'?); a step is one of drain, rolling, rebalance, move; x.yaml:4: steps[1].move.5: "
        "expected a vmid from 100 to 999999999, got 5."
    )


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PlanError) as info:
        load_plan(missing)
    (problem,) = info.value.problems
    assert problem == f"{missing}: cannot read the plan file: it does not exist"
    assert info.value.exit_code == 2


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\nsteps: [drain: pve2]\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:2: the file is not UTF-8 text")


@pytest.mark.parametrize("depth", [65, 1000, 1_000_000])
def test_deep_nesting_is_a_plan_error(depth: int) -> None:
    with pytest.raises(PlanError) as info:
        load_plan_text("version: 1\nsteps:\n  " + "[" * depth + "]" * depth, "deep.yaml")
    assert info.value.problems == ("deep.yaml:3: the plan is nested more than 64 levels deep",)


def test_deep_nesting_through_aliases_is_read_without_recursion() -> None:
    lines = ["version: 1", "a0: &a0 [x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 900)]
    lines.append("steps: [drain: *a899]")
    problems = problems_of("\n".join(lines), "deep.yaml")
    assert len(problems) == 901
    assert problems[0].startswith("deep.yaml:2: unknown key 'a0'")
    # the alias's item is `*a898`, whose list starts on line 900
    assert "deep.yaml:900: steps[0].drain[0]: expected a node name, got a list" in problems


def test_problems_beyond_the_cap_are_counted_not_listed() -> None:
    text = "version: 1\nsteps: [drain: pve2]\n" + "".join(f"k{i}: 1\n" for i in range(1500))
    with pytest.raises(PlanError) as info:
        load_plan_text(text, "many.yaml")
    problems = info.value.problems
    assert len(problems) == 1001
    assert problems[-1] == "many.yaml: ... and 500 more problems"
    assert info.value.message.startswith("The plan many.yaml has 1500 problems: ")


def test_text_that_is_not_unicode() -> None:
    assert only_problem(plan("name: a\ud800\nsteps: [drain: pve2]")) == (
        "p.yaml:2: invalid YAML: unacceptable character #xd800"
    )


# --- robustness (hypothesis) -------------------------------------------------------------------

KEYS = sorted(
    {
        "version", "name", "description", "rules", "steps", "exclude", "anti_affinity",
        "affinity", "pins", "headroom", "cpu_overcommit", "concurrency", "migration",
        "on_failure", "task_timeout", "vmids", "tags", "pools", "templates", "nodes", "node",
        "memory", "cpu", "cluster", "per_source", "per_target", "type", "network", "bwlimit",
        "with_local_disks", "target_storage", "targets", "include_stopped", "guests", "target",
        "offline", "skip", "before", "after", "command", "timeout", "wait_online_timeout",
        "confirm_between", "pause", "return_guests", "by", "weights", "threshold", "max_moves",
        "exclude_nodes", "min_improvement", *STEP_KINDS,
    }
)  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "pve1", "pve2", "all", "auto", "10%", "150%", "-3%", "8GiB", "8GB", "500MiB/s",
            "1Gbit/s", "30s", "1h30m", "10 mins", "memory", "both", "stop", "skip-guest",
            "secure", "ceph", "local-lvm", "10.10.10.0/24", "*", "", "0111", "101",
        ]
    ),
)  # fmt: skip
keys = st.one_of(st.sampled_from(KEYS), st.integers(0, 1200).map(str), st.text(max_size=8))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)


DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # only the tests' speed depends on it


def dump(document: object) -> str:
    return yaml.dump(document, Dumper=DUMPER, allow_unicode=True, sort_keys=False)


def load_or_plan_error(text: str) -> PlanSpec | None:
    """Load `text`: a PlanSpec, or None after a PlanError; any other exception fails the test."""
    try:
        spec = load_plan_text(text, "fuzz.yaml")
    except PlanError as exc:
        assert exc.problems and all(p.startswith("fuzz.yaml") for p in exc.problems)
        return None
    assert isinstance(spec, PlanSpec) and spec.steps
    return spec


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents_load_or_raise_plan_error(document: object) -> None:
    load_or_plan_error(dump(document))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "description", "rules", "steps"]), documents))
def test_random_plans_with_version_load_or_raise_plan_error(document: dict[str, Any]) -> None:
    load_or_plan_error(dump({"version": 1, **document}))


PLAYBOOK_DOCS = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in PLAYBOOKS]


def _paths(node: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (sequence of keys and indexes) into a parsed document."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated_playbooks(draw: st.DrawFn) -> object:
    doc = copy.deepcopy(draw(st.sampled_from(PLAYBOOK_DOCS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        key = path[-1]
        action = draw(st.sampled_from(["drop", "rename", "scalar", "wrap", "document", "dup"]))
        if action == "drop":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(keys)] = parent.pop(key)
        elif action == "scalar":
            parent[key] = draw(scalars)
        elif action == "wrap":  # a value of the wrong shape
            parent[key] = draw(
                st.sampled_from([[parent[key]], {"x": parent[key]}, str(parent[key])])
            )
        elif action == "document":
            parent[key] = draw(documents)
        elif action == "dup" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return doc


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_playbooks())
def test_mutated_playbooks_load_or_raise_plan_error(document: object) -> None:
    load_or_plan_error(dump(document))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PLAYBOOKS), st.data())
def test_text_mutations_of_playbooks_load_or_raise_plan_error(
    path: Path, data: st.DataObject
) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["delete", "insert", "indent", "dedent", "cut"]))
        if action == "delete":
            del lines[i]
        elif action == "insert":
            lines.insert(i, data.draw(st.text(max_size=20)) + "\n")
        elif action == "indent":
            lines[i] = "  " + lines[i]
        elif action == "dedent":
            lines[i] = lines[i].lstrip(" ")
        else:
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))] + "\n"
        if not lines:
            break
    load_or_plan_error("".join(lines))
