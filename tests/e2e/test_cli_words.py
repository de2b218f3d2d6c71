"""Small things an administrator reads: errors echo what was typed, `check drain --to` takes
the same NODE,NODE list as `drain --to`, help sentences parse, container moves say restart."""

from __future__ import annotations

import json

import pytest

from tests.e2e.lab import Cluster


@pytest.mark.emulator_only
def test_threshold_error_echoes_the_input(lab: Cluster) -> None:
    r = lab.pvetool("rebalance", "--threshold", "abc", "--dry-run")
    assert r.code == 2
    assert "got 'abc'" in r.err and "abc%" not in r.err
    assert lab.pvetool("rebalance", "--threshold", "15", "--dry-run").code == 0


@pytest.mark.emulator_only
def test_check_drain_to_takes_a_list_like_drain(lab: Cluster) -> None:
    listed = lab.pvetool("check", "drain", "pve1", "--to", "pve2,pve3", "-o", "json")
    repeated = lab.pvetool("check", "drain", "pve1", "--to", "pve2", "--to", "pve3", "-o", "json")
    assert "unknown node" not in listed.err
    assert json.loads(listed.out)["guests"] == json.loads(repeated.out)["guests"]
    only = json.loads(lab.pvetool("check", "drain", "pve1", "--to", "pve3", "-o", "json").out)
    assert {g["target"] for g in only["guests"] if g["target"]} <= {"pve3"}


@pytest.mark.emulator_only
def test_help_reads_well(lab: Cluster) -> None:
    text = " ".join(lab.pvetool("migrate", "--help").out.split())
    assert "shuts a running VM down, migrates it offline and starts it on NODE" in text
    plan = " ".join(lab.pvetool("plan", "--help").out.split())
    assert "validate and show (read-only), apply, schema" in plan
