"""Saved plans: exact JSON round trip, clear errors for bad files, fingerprint and drift."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pvetool.errors import PlanError
from pvetool.plan_json import plan_from_json, plan_to_json
from pvetool.planner.build import build_plan, drain_spec, rebalance_spec
from pvetool.planner.fingerprint import drift, fingerprint
from pvetool.planner.loader import load_plan
from tests.unit.planner.planner_support import ROOT, lab, move_of

PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yaml"))


@pytest.mark.parametrize("path", PLAYBOOKS, ids=[p.stem for p in PLAYBOOKS])
def test_round_trip_is_exact(path: Path) -> None:
    plan = build_plan(load_plan(path), lab())
    text = plan_to_json(plan)
    again = plan_from_json(text, "plan.json")
    assert again == plan
    assert plan_to_json(again) == text


def test_round_trip_of_command_plans() -> None:
    for spec in (drain_spec(["pve1"], ["pve2", "pve3"], 2, True), rebalance_spec("cpu", 0.2)):
        plan = build_plan(spec, lab())
        assert plan_from_json(plan_to_json(plan)) == plan


def _broken(mutate: object) -> str:
    data = json.loads(plan_to_json(build_plan(drain_spec(["pve2"]), lab())))
    assert callable(mutate)
    mutate(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(format="x"), "format: expected 'pvetool/plan'"),
        (lambda d: d.update(version=7), "version: expected 1"),
        (
            lambda d: d["plan"]["stages"][0]["moves"][0].update(vmid="abc"),
            'plan.stages[0].moves[0].vmid: expected an integer, got "abc"',
        ),
        (
            lambda d: d["plan"]["stages"][0].update(kind="teleport"),
            "plan.stages[0].kind: expected one of migrate, hook",
        ),
        (lambda d: d["plan"].pop("caps"), "plan.caps: missing"),
        (lambda d: d["plan"].update(colour="red"), "plan.colour: unknown key"),
        (
            lambda d: d["plan"]["stages"][0]["moves"][0].update(after=["s9:1"]),
            "plan.stages[0].moves[0].after[0]: no move 's9:1'",
        ),
    ],
)
def test_bad_saved_plans_name_the_problem(mutate: object, expected: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan_from_json(_broken(mutate), "plan.json")
    assert expected in str(caught.value)
    assert "plan.json" in str(caught.value)


def test_not_json_at_all() -> None:
    with pytest.raises(PlanError, match=r"plan\.json is not valid JSON: line 1"):
        plan_from_json("{nope", "plan.json")


def test_fingerprint_is_stable_and_sensitive() -> None:
    snap = lab()
    assert fingerprint(snap, [101, 102]) == fingerprint(snap, [102, 101])
    moved = snap.after([move_of(snap, 101, "pve3")])
    assert fingerprint(moved, [101]) != fingerprint(snap, [101])
    # Memory *usage* changes all the time and is not part of it.
    busy = replace(
        snap, nodes={**snap.nodes, "pve1": replace(snap.nodes["pve1"], memory_used_bytes=1)}
    )
    assert fingerprint(busy, [101]) == fingerprint(snap, [101])


def test_drift_says_what_changed() -> None:
    snap = lab()
    plan = build_plan(drain_spec(["pve2"]), snap)
    assert plan.fingerprint.startswith("sha256:")
    assert drift(plan, snap) == []
    changed = replace(
        snap,
        nodes={**snap.nodes, "pve3": replace(snap.nodes["pve3"], online=False)},
        guests={
            **snap.guests,
            105: replace(snap.guests[105], lock="backup"),
            117: replace(snap.guests[117], memory_bytes=16 * 1024**3),
            102: replace(snap.guests[102], status="stopped"),
            114: replace(snap.guests[114], node="pve1"),
        },
    )
    sentences = drift(plan, changed)
    text = " ".join(sentences)
    assert "Node pve3 is offline (it was online when the plan was computed)." in sentences
    assert "Guest 105 (mon1) is now locked (backup)." in sentences
    assert "Guest 117 (mail1) now has 16.0 GiB of memory (it had 4.0 GiB)." in sentences
    assert "Guest 102 (web2) is now stopped (it was running)." in sentences
    assert "Guest 114 (gpu1) is now on pve1 (it was on pve2)." in text


def test_moves_made_by_the_plan_itself_are_not_drift() -> None:
    snap = lab()
    plan = build_plan(drain_spec(["pve2"]), snap)
    done = snap.after(plan.moves[:2])
    assert drift(plan, done) == []


def test_a_new_guest_on_an_involved_node_is_drift() -> None:
    snap = lab()
    plan = build_plan(drain_spec(["pve2"]), snap)
    newcomer = replace(snap.guests[105], vmid=555, name="new", node="pve3")
    sentences = drift(plan, replace(snap, guests={**snap.guests, 555: newcomer}))
    assert sentences == ["Guest 555 (new) is new on pve3."]


def test_saved_plan_survives_drift_check_after_round_trip() -> None:
    snap = lab()
    plan = plan_from_json(plan_to_json(build_plan(drain_spec(["pve1"]), snap)))
    assert drift(plan, snap) == []
