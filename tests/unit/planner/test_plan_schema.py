"""`pvetool plan schema`: the JSON Schema of plan files, generated from the loader's own keys
and choices. Every playbook carries the yaml-language-server comment and validates; the shipped
copy is the generated one; schema and loader agree on what they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from pvetool.cli.main import cli
from pvetool.errors import PlanError
from pvetool.planner import loader, plan_schema
from pvetool.planner.loader import load_plan_text
from pvetool.schemas import load_schema

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yaml"))
COMMENT = "# yaml-language-server: $schema=../pvetool/schemas/plan-file.schema.json"


def _validator() -> jsonschema.Draft202012Validator:
    schema = plan_schema.plan_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_plan_schema_prints_the_generated_schema_and_the_package_ships_it() -> None:
    result = CliRunner().invoke(cli, ["plan", "schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == plan_schema.plan_schema()
    assert load_schema("plan-file") == plan_schema.plan_schema(), (
        "pvetool/schemas/plan-file.schema.json is stale: pvetool plan schema > it"
    )


def test_the_schema_lists_exactly_the_loaders_keys() -> None:
    schema = plan_schema.plan_schema()
    assert list(schema["properties"]) == list(loader._TOP_KEYS)
    assert list(schema["properties"]["rules"]["properties"]) == list(loader._RULES_KEYS)
    kinds = [item["title"] for item in schema["properties"]["steps"]["items"]["anyOf"]]
    assert kinds == list(loader.STEP_KINDS)
    assert schema["properties"]["rules"]["properties"]["on_failure"] == {
        "enum": list(loader.FAILURE_POLICIES)
    }


def test_a_loader_key_without_a_description_is_refused() -> None:
    with pytest.raises(KeyError, match="keys without a description \\['new_key'\\]"):
        plan_schema._mapping(("name", "new_key"), {"name": plan_schema.TEXT})


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_every_playbook_has_the_comment_and_validates(playbook: Path) -> None:
    text = playbook.read_text()
    assert text.splitlines()[0] == COMMENT
    target = (playbook.parent / COMMENT.split("=", 1)[1]).resolve()
    assert target.is_file()
    errors = list(_validator().iter_errors(yaml.safe_load(text)))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    load_plan_text(text, str(playbook))  # and the loader reads it


GOOD = """
version: 1
steps:
  - drain: pve2
  - drain: {nodes: [pve1], targets: [pve3], guests: {101: {target: pve3, bwlimit: 500MiB/s}}}
  - rolling:
  - rolling: {nodes: all, before: [/bin/true], after: {command: [/bin/true], timeout: 1h30m}}
  - rebalance: {by: both, weights: {memory: 7, cpu: 3}, threshold: 15%, max_moves: 4}
  - move: {101: pve3, 102: pve1}
rules:
  headroom: {memory: 8GiB, cpu: 10%}
  concurrency: {cluster: auto, per_source: 2}
  migration: {type: insecure, target_storage: {local-lvm: ceph, "*": ceph}, bwlimit: 1Gbit/s}
  task_timeout: 90
"""

BAD = [
    "version: 1\nsteps: [{drain: pve2}]\non_failur: stop\n",  # misspelt top key
    "version: 2\nsteps: [{drain: pve2}]\n",
    "version: 1\nsteps: [{drian: pve2}]\n",
    "version: 1\nsteps: [{drain: pve2, rolling: null}]\n",
    "version: 1\nsteps: []\n",
    "version: 1\nsteps: [{drain: pve2}]\nrules: {on_failure: retry}\n",
    "version: 1\nsteps: [{drain: pve2}]\nrules: {exclude: {vmids: [42]}}\n",
    "version: 1\nsteps: [{drain: pve2}]\nrules: {concurrency: {cluster: 0}}\n",
    "version: 1\nsteps: [{rebalance: {threshold: 15}}]\n",
    "version: 1\nsteps: [{rolling: {before: {timeout: 1h}}}]\n",
    "version: 1\nsteps: [{move: {abc: pve1}}]\n",
]


def test_schema_and_loader_agree_on_good_and_bad_plans() -> None:
    validator = _validator()
    assert not list(validator.iter_errors(yaml.safe_load(GOOD)))
    load_plan_text(GOOD)
    for text in BAD:
        assert list(validator.iter_errors(yaml.safe_load(text))), text
        with pytest.raises(PlanError):
            load_plan_text(text)
