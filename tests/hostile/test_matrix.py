"""The hostile-server matrix: every way of spoiling an answer, on every endpoint a command
decides on, for status, check drain, drain --dry-run, drain --yes and migrate.

Each run is held to issue 12's acceptance criteria by `harness.verdict` (no internal error, no
exit 0 that left a movable guest unmoved or showed less than the cluster has, no guest moved
whose config answer was spoiled, every report consistent with the emulator's final state).

The whole matrix (~550 runs, about half an hour) is marked ``hostile_full`` and runs only when
asked for (``pytest tests/hostile -m hostile_full``); the default run keeps `FAST`, one run for
each failure the reliability campaign found (under a minute). The numbers of a run of the
matrix are printed at the end of the session (runs, clean exits, crashes, wrong decisions).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.harness import (
    DRAIN,
    MIGRATE_TO,
    MIGRATE_VMID,
    Baseline,
    HostileLab,
    Verdict,
    baseline,
    hostile_lab,
    verdict,
)
from tests.hostile.proxy import MODES

# (regex on the API path, method, guests whose config answer it spoils)
TARGETS: dict[str, tuple[str, str, frozenset[int]]] = {
    "resources": (r"^/cluster/resources$", "GET", frozenset()),
    "cluster_status": (r"^/cluster/status$", "GET", frozenset()),
    "config_113": (r"^/nodes/pve1/qemu/113/config$", "GET", frozenset({113})),
    "config_110": (r"^/nodes/pve1/qemu/110/config$", "GET", frozenset({110})),
    "configs": (
        r"^/nodes/pve1/(qemu|lxc)/\d+/config$",
        "GET",
        frozenset({101, 103, 110, 111, 113, 200, 900}),
    ),
    "network": (r"^/nodes/pve\d/network$", "GET", frozenset()),
    "storage": (r"^/storage$", "GET", frozenset()),
    "options": (r"^/cluster/options$", "GET", frozenset()),
    "ha_status": (r"^/cluster/ha/status/current$", "GET", frozenset()),
    "ha_resources": (r"^/cluster/ha/resources$", "GET", frozenset()),
    "version": (r"^/nodes/pve\d/version$", "GET", frozenset()),
    "precondition": (r"^/nodes/pve1/qemu/\d+/migrate$", "GET", frozenset()),
    "migrate_post": (r"^/nodes/pve1/qemu/110/migrate$", "POST", frozenset()),
    "task_status": (r"^/nodes/pve\d/tasks/[^/]+/status$", "GET", frozenset()),
    "task_list": (r"^/nodes/pve1/tasks$", "GET", frozenset()),
}
COMMAND_TARGETS: dict[str, tuple[str, ...]] = {
    "status": ("resources", "cluster_status", "ha_status", "version"),
    "check": ("resources", "configs", "network", "precondition"),
    "dry-run": (
        "resources",
        "cluster_status",
        "config_113",
        "configs",
        "network",
        "storage",
        "options",
        "ha_status",
        "ha_resources",
        "version",
    ),
    "drain": ("resources", "config_113", "network", "migrate_post", "task_status", "task_list"),
    "migrate": ("config_110", "precondition", "migrate_post", "task_status"),
}
# Modes that only make sense on some answers.
ONLY_ON = {
    "task_never_ends": {"task_status"},
    "unknown_node": {"resources"},
    "duplicate_vmids": {"resources"},
}
READ_ONLY = ("status", "check", "dry-run")


def _args(kind: str) -> tuple[str, ...]:
    if kind == "status":
        return ("status", "-o", "json")
    if kind == "check":
        return ("check", *DRAIN, "-o", "json")
    if kind == "dry-run":
        return (*DRAIN, "--dry-run", "-o", "json")
    if kind == "drain":
        return (*DRAIN, "--yes", "--task-timeout", "10s")
    return ("migrate", str(MIGRATE_VMID), "--to", MIGRATE_TO, "--timeout", "10s")


def _cases() -> list[tuple[str, str, str]]:
    return [
        (kind, target, mode)
        for kind, targets in COMMAND_TARGETS.items()
        for target in targets
        for mode in MODES
        if target in ONLY_ON.get(mode, {target})
    ]


# The default run's subset: what test_findings.py does not already cover, one per command
# (the findings' own cases are there), and the leniency PVE needs (numbers as strings).
FAST = [
    ("status", "cluster_status", "data_null"),
    ("dry-run", "resources", "duplicate_vmids"),
    ("dry-run", "configs", "strings_for_numbers"),
    ("dry-run", "network", "malformed_json"),
    ("check", "precondition", "wrong_container"),
    ("migrate", "migrate_post", "truncated"),
    ("drain", "migrate_post", "drop_after_forward"),
]
_FULL = [case for case in _cases() if case not in FAST]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    return baseline(str(tmp_path_factory.mktemp("baseline")))


@pytest.fixture(scope="module")
def read_only_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileLab]:
    """One cluster for every read-only run: they change nothing."""
    with hostile_lab(tmp_path_factory.mktemp("read-only")) as lab:
        yield lab


Results = list[tuple[str, str, str, int, Verdict]]


def _run_case(
    case: tuple[str, str, str],
    base: Baseline,
    read_only_lab: HostileLab,
    tmp: Path,
    results: Results,
) -> None:
    kind = case[0]
    if kind in READ_ONLY:
        _check(case, read_only_lab, base, results)
        return
    with hostile_lab(tmp) as lab:
        _check(case, lab, base, results)


def _check(case: tuple[str, str, str], lab: HostileLab, base: Baseline, results: Results) -> None:
    kind, target, mode = case
    path, method, configs = TARGETS[target]
    lab.proxy.clear()
    lab.proxy.spoil(mode, path, method)
    run = lab.pvetool(*_args(kind))
    lab.settle()
    result = verdict(kind, mode, run, lab, base, configs)
    results.append((kind, target, mode, run.code, result))
    detail = f"{kind} / {target} / {mode}: exit {run.code}\n{run.err[-1500:]}"
    assert not result.crash, f"{result.crash}\n{detail}"
    assert not result.wrong, f"{result.wrong}\n{detail}"
    if mode == "strings_for_numbers":  # PVE's own habit: must be accepted as a clean run is
        assert run.code in (0, base.dry_run_code), detail


@pytest.mark.parametrize("case", FAST, ids="/".join)
def test_fast(
    case: tuple[str, str, str],
    base: Baseline,
    read_only_lab: HostileLab,
    tmp_path: Path,
    hostile_results: Results,
) -> None:
    _run_case(case, base, read_only_lab, tmp_path, hostile_results)


@pytest.mark.hostile_full
@pytest.mark.parametrize("case", _FULL, ids="/".join)
def test_full(
    case: tuple[str, str, str],
    base: Baseline,
    read_only_lab: HostileLab,
    tmp_path: Path,
    hostile_results: Results,
) -> None:
    _run_case(case, base, read_only_lab, tmp_path, hostile_results)


def test_the_baseline_moves_every_movable_guest_of_pve1(base: Baseline) -> None:
    """What every verdict is measured against: a clean drain of pve1 plans these guests."""
    assert base.movable == {101, 103, 110, 111, 113, 200}
    assert base.dry_run_code == 0 and base.check_code == 0
