"""Tests for `pvetool.yamlcheck`, the YAML-with-line-numbers toolkit under plans and cluster files.

The plan loader's and the cluster-file loader's own tests cover the toolkit through their
schemas; these pin what both share, and the choices made where the two former copies differed.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import pytest

from pvetool.emulator.clusterfile import ClusterFileError, load_cluster_text
from pvetool.errors import PlanError
from pvetool.planner.loader import load_plan_text
from pvetool.yamlcheck import (
    BROKEN,
    MAX_DEPTH,
    Checker,
    Loc,
    Problems,
    hint_or_known,
    read_document,
    suggest,
    to_bool,
    to_int,
    to_number,
    to_pattern,
)


def doc(text: str) -> tuple[Loc | None, list[str]]:
    problems = Problems("t.yaml")
    root = read_document(text, problems, what="the test file", empty="empty")
    return root, problems.sorted()


def loc(text: str) -> Loc:
    root, problems = doc(f"v: {text}\n")
    assert root is not None and not problems, problems
    assert isinstance(root.value, dict)
    value = root.value["v"]
    assert isinstance(value, Loc)
    return value


def test_lines_of_values_and_keys() -> None:
    root, problems = doc("a: 1\nb:\n  - x\n  - {c: 2}\n")
    assert root is not None and not problems
    assert isinstance(root.value, dict)
    assert root.key_lines == {"a": 1, "b": 2}
    items = root.value["b"].value
    assert isinstance(items, list)
    assert [item.line for item in items] == [3, 4]


@pytest.mark.parametrize("tagged", ["!!bool x", "!!int x", "!!float x", "!!timestamp 2024-13-45"])
def test_a_value_no_constructor_can_build_is_a_problem_not_a_crash(tagged: str) -> None:
    root, problems = doc(f"a: {tagged}\n")
    assert root is not None
    assert isinstance(root.value, dict) and root.value["a"].value is BROKEN
    (problem,) = problems
    assert problem.startswith("t.yaml:1: a: cannot read value ")


def test_both_loaders_report_a_bad_tag() -> None:
    # The cluster-file copy caught only some exceptions and crashed on `!!bool x` (KeyError).
    with pytest.raises(ClusterFileError) as cluster:
        load_cluster_text("name: t\nnodes: {pve1: {cpus: !!bool x, memory: 8GiB}}\n", "c.yaml")
    assert cluster.value.problems == ["c.yaml:2: nodes.pve1.cpus: cannot read value 'x': 'x'"]
    with pytest.raises(PlanError) as plan:
        load_plan_text("version: 1\nsteps: [{drain: !!bool x}]\n", "p.yaml")
    assert plan.value.problems == ("p.yaml:2: steps[0].drain: cannot read value 'x': 'x'",)


def test_deep_documents_are_refused_in_both_files() -> None:
    deep = "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n"
    _, problems = doc(deep)
    assert problems == [f"t.yaml:1: the test file is nested more than {MAX_DEPTH} levels deep"]
    with pytest.raises(ClusterFileError) as info:
        load_cluster_text("name: t\n" + deep, "c.yaml")
    assert info.value.problems == [
        f"c.yaml:2: the cluster file is nested more than {MAX_DEPTH} levels deep"
    ]


def test_recursive_alias_is_a_problem() -> None:
    root, problems = doc("a: &x [1, *x]\n")
    assert problems == ["t.yaml:1: a[1]: a recursive alias is not allowed here"]


def test_empty_and_invalid_documents() -> None:
    assert doc("") == (None, ["t.yaml:1: empty"])
    root, problems = doc("a: [1\n")
    assert root is None
    assert re.fullmatch(
        r"t\.yaml:2: invalid YAML: .*flow sequence started on line 1.*", problems[0]
    )


@pytest.mark.parametrize(
    ("text", "expected"), [("true", True), ("no", False), ("1", True), ("0", False)]
)
def test_to_bool_takes_pve_style_numbers(text: str, expected: bool) -> None:
    assert to_bool(loc(text)) is expected


@pytest.mark.parametrize("text", ["2", "'yes please'", "[]"])
def test_to_bool_refuses(text: str) -> None:
    checker = Checker(Problems("t.yaml"))
    assert checker.convert(loc(text), "v", to_bool) is None
    assert "expected true or false" in checker.problems.sorted()[0]


@pytest.mark.parametrize(("text", "expected"), [("8.6e8", 8.6e8), ("1e3", 1000.0), ("2", 2.0)])
def test_to_number_takes_yaml_1_1_exponents(text: str, expected: float) -> None:
    assert to_number(loc(text)) == expected


def test_to_number_and_to_int_messages() -> None:
    checker = Checker(Problems("t.yaml"))
    checker.convert(loc(".inf"), "a", to_number)
    checker.convert(loc("four"), "b", to_int(1, 8))
    checker.convert(loc("9"), "c", to_int(1, 8))
    checker.convert(loc("0"), "d", to_int(1, what="a number of moves"))
    checker.convert(loc("x"), "e", to_int(1, what="a number of moves"))
    assert checker.problems.sorted() == [
        "t.yaml:1: a: expected a number, got .inf",
        "t.yaml:1: b: expected an integer, got 'four'",
        "t.yaml:1: c: must be at most 8, got 9",
        "t.yaml:1: d: must be at least 1, got 0",
        "t.yaml:1: e: expected a number of moves, got 'x'",
    ]


def test_to_pattern_numbers_are_text_only_where_asked() -> None:
    version = re.compile(r"\d+\.\d+")
    assert to_pattern(version, "a version", numbers=True)(loc("9.2")) == "9.2"
    checker = Checker(Problems("t.yaml"))
    assert checker.convert(loc("9.2"), "v", to_pattern(version, "a version")) is None
    assert checker.problems.sorted() == ["t.yaml:1: v: expected a version, got 9.2"]
    assert to_pattern(version, "a version")(loc("' 9.2 '")) == "9.2"


def test_suggestions() -> None:
    assert suggest("PVE2", ["pve1", "pve2"]) == "did you mean 'pve2'?"
    assert suggest("zzz", ["pve1"]) is None
    assert hint_or_known("zzz", ["b", "a"]) == " (known: a, b)"
    assert hint_or_known("pve", ["pve1"]) == " (did you mean 'pve1'?)"


def test_fields_indexed_keys_hints_and_the_unknown_key_message() -> None:
    class Listing(Checker):
        def unknown_key(self, key: str, known: Collection[str], candidates: Collection[str]) -> str:
            return f"unknown key '{key}'; listed"

    root, _ = doc("net0: a\nnet40: b\nmemroy: 1\nscsi0: c\nzzz: d\n")
    assert root is not None
    plain = Checker(Problems("t.yaml"))
    plain.fields(
        root,
        "g",
        ("memory", "name"),
        required=("name",),
        indexed={"net": 31},
        hints=lambda key: " (disks go under 'disks')" if key == "scsi0" else None,
    )
    assert plain.problems.sorted() == [
        "t.yaml:1: g: missing required key 'name'",
        "t.yaml:2: g: 'net40': the index of netN must be 0..31",
        "t.yaml:3: g: unknown key 'memroy' (did you mean 'memory'?)",
        "t.yaml:4: g: unknown key 'scsi0' (disks go under 'disks')",
        "t.yaml:5: g: unknown key 'zzz'",
    ]
    listing = Listing(Problems("t.yaml"))
    listing.fields(root, "g", ("memory",), indexed={"net": 31})
    assert "t.yaml:5: g: unknown key 'zzz'; listed" in listing.problems.sorted()
