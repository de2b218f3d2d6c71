"""The output contract (docs/output.md): every command that prints data takes
``-o table|json|yaml|markdown``; every JSON or YAML document it prints (errors included) carries
``{"format": "pvetool/<kind>", "version": N}`` and validates against the JSON Schema shipped in
the package.

pvetool runs in this process against the emulated lab on the stepped clock (`inprocess.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from pvetool.cli.common import OUTPUT_CHOICES
from pvetool.cli.group import load_commands
from pvetool.cli.main import cli
from pvetool.schemas import KINDS, load_schema
from tests.e2e.inprocess import ROOT
from tests.e2e.lab import Cluster

PLAYBOOK = str(ROOT / "playbooks" / "drain-node.yaml")


def _valid(doc: Any, kind: str) -> dict[str, Any]:
    assert isinstance(doc, dict), doc
    assert doc.get("format") == f"pvetool/{kind}" and doc.get("version") == 1, doc
    jsonschema.validate(doc, load_schema(kind))
    return doc


def test_every_schema_is_a_valid_json_schema() -> None:
    for kind in KINDS:
        schema = load_schema(kind)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["format"] == {"const": f"pvetool/{kind}"}


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out += _commands(command, f"{prefix}{name} ")
        else:
            out.append((f"{prefix}{name}", command))
    return out


def test_every_command_that_prints_data_has_the_same_output_choices() -> None:
    load_commands()  # the group imports its commands on first use: every one, whatever ran before
    with_output = {}
    for name, command in _commands(cli):
        for param in command.params:
            if param.name == "output":
                assert isinstance(param.type, click.Choice), name
                with_output[name] = tuple(param.type.choices)
    printing = {
        "status",
        "check drain",
        "plan validate",
        "plan show",
        "plan apply",
        "drain",
        "undrain",
        "rebalance",
        "migrate",
    }
    assert printing <= set(with_output), printing - set(with_output)
    for name, choices in with_output.items():
        assert choices == OUTPUT_CHOICES, name


@pytest.mark.emulator_only
def test_read_only_commands_in_every_format(lab: Cluster) -> None:
    cases = [
        (("status",), "status", 0),
        (("check", "drain", "pve2"), "check", 2),
        (("plan", "validate", PLAYBOOK), "check", 0),
        (("plan", "show", PLAYBOOK), "plan", 0),
        (("drain", "pve1", "--dry-run"), "plan", None),  # its exit code is not this test's
        (("rebalance", "--dry-run"), "plan", 0),
    ]
    for args, kind, expected in cases:
        r = lab.pvetool(*args, "-o", "json")
        code = r.code if expected is None else expected
        assert r.code == code, (args, r.err)
        _valid(json.loads(r.out), kind)
        r = lab.pvetool(*args, "-o", "yaml")
        assert r.code == code, (args, r.err)
        _valid(yaml.safe_load(r.out), kind)
        r = lab.pvetool(*args, "-o", "markdown")
        assert r.code == code, (args, r.err)
        assert r.out.startswith("# "), (args, r.out[:200])
        assert "| " in r.out and "\x1b[" not in r.out


@pytest.mark.emulator_only
def test_runs_print_json_lines_and_a_report(lab: Cluster, tmp_path: Path) -> None:
    report = tmp_path / "drain.json"
    r = lab.pvetool("drain", "pve2", "--yes", "-o", "json", "--report", str(report))
    lines = [json.loads(line) for line in r.out.splitlines() if line.strip()]
    assert lines, r.err
    for line in lines:
        _valid(line, "event")
    names = [line["event"] for line in lines]
    assert names[0] == "run-start" and names[-1] == "summary", names
    assert lines[-1]["exit_code"] == r.code
    _valid(json.loads(report.read_text()), "report")

    # 202 proxy1 (a container on pve3): the drain of pve2 leaves it where it is
    r = lab.pvetool("migrate", "202", "--to", "pve1", "-o", "json")
    lines = [json.loads(line) for line in r.out.splitlines()]
    assert lines and lines[-1]["event"] == "summary", r.err
    for line in lines:
        _valid(line, "event")
    r = lab.pvetool("migrate", "202", "--to", "pve3", "-o", "yaml")
    _valid(yaml.safe_load(r.out), "report")


@pytest.mark.emulator_only
def test_errors_under_json_are_json(lab: Cluster, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nname: x\nsteps:\n  - drian: {node: pve1}\n")
    for args, code in [
        (("plan", "validate", str(tmp_path / "missing.yaml")), 2),
        (("plan", "validate", str(broken)), 2),
        (("plan", "show", str(broken)), 2),
        (("migrate", "999", "--to", "pve1"), 2),
    ]:
        r = lab.pvetool(*args, "-o", "json")
        assert r.code == code, (args, r.out, r.err)
        doc = _valid(json.loads(r.out), "error")
        assert doc["error"]["exit_code"] == code
        assert doc["error"]["message"]


@pytest.mark.emulator_only
def test_runs_that_do_not_start_still_answer_in_json(lab: Cluster) -> None:
    """Nothing to undo, nothing to migrate: still one JSON document on stdout."""
    r = lab.pvetool("undrain", "pve3", "--yes", "-o", "json")
    lines = [json.loads(line) for line in r.out.splitlines() if line.strip()]
    assert len(lines) == 1, r.out
    summary = _valid(lines[0], "event")
    assert summary["event"] == "summary" and summary["exit_code"] == r.code
    r = lab.pvetool("plan", "apply", PLAYBOOK, "--dry-run", "-o", "json")
    _valid(json.loads(r.out), "plan")
