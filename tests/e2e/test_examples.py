"""examples/: the systemd units are valid, and the commands they and the Ansible playbook run
give what they read (exit codes, JSON fields), checked against the emulated lab."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from tests.e2e.inprocess import ROOT
from tests.e2e.lab import Cluster

EXAMPLES = ROOT / "examples"


def _service() -> str:
    return (EXAMPLES / "systemd" / "pvetool-rebalance-report.service").read_text()


def _report_commands() -> list[list[str]]:
    """The pvetool command lines of the service's ExecStart (without the redirections)."""
    text = _service().replace("\\\n", " ")
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    found = re.findall(r"/usr/local/bin/pvetool ([^>;']+)", exec_start)
    assert found, exec_start
    return [shlex.split(cmd) for cmd in found]


def test_systemd_units_verify() -> None:
    service = _service()
    assert "SuccessExitStatus=2" in service and "EnvironmentFile=/etc/pvetool/env" in service
    timer = (EXAMPLES / "systemd" / "pvetool-rebalance-report.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=yes" in timer
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:  # Debian has it; the checks above hold without it
        run = subprocess.run(
            [analyze, "verify", *(EXAMPLES / "systemd").glob("pvetool-*")],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr


@pytest.mark.emulator_only
def test_the_nightly_report_commands_work(lab: Cluster) -> None:
    commands = _report_commands()
    assert {c[-1] for c in commands} == {"markdown", "json"}
    for argv in commands:
        r = lab.pvetool(*argv)
        assert r.code in (0, 2), r.err  # the service's success exit codes
        assert r.err.strip() == "", "--quiet: nothing on stderr for a report"
        if argv[-1] == "json":
            assert json.loads(r.out)["format"] == "pvetool/plan"
        else:
            assert r.out.startswith("# Plan rebalance")


@pytest.mark.emulator_only
def test_the_ansible_playbook_reads_what_pvetool_prints(lab: Cluster) -> None:
    play = yaml.safe_load((EXAMPLES / "ansible" / "drain-node.yml").read_text())[0]
    tasks = {t["name"].split(" {{")[0]: t for t in play["tasks"]}
    node = play["vars"]["node"]

    def argv(task: str) -> list[str]:
        raw = tasks[task]["ansible.builtin.command"]["argv"]
        return [a.replace("{{ node }}", node) for a in raw[1:]]

    r = lab.pvetool(*argv("Check that"))
    assert r.code in (0, 2)
    matrix = json.loads(r.out)
    assert isinstance(matrix["can_run"], bool)
    assert all({"vmid", "blocked"} <= set(g) for g in matrix["guests"])

    r = lab.pvetool(*argv("Drain"))
    lines = r.out.splitlines()
    summary = json.loads(lines[-1])
    assert summary["event"] == "summary"
    assert isinstance(summary["summary"]["moved"], int)
    assert all({"vmid", "node"} <= set(m) for m in summary["moves"])
