"""Shell completion (scripts and dynamic values from a short-lived cache), the -q/-v/--debug-http
flags on every command, and `python -m pvetool`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from pvetool.cli import complete
from pvetool.cli.group import load_commands
from pvetool.cli.main import cli

ROOT = Path(__file__).resolve().parents[3]


def _values(args: list[str], incomplete: str) -> list[str]:
    sc = ShellComplete(cli, {}, "pvetool", "_PVETOOL_COMPLETE")
    return [c.value for c in sc.get_completions(args, incomplete)]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PVETOOL_HOST", raising=False)
    monkeypatch.delenv("PVETOOL_PROFILE", raising=False)
    return tmp_path / "cache"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert "_PVETOOL_COMPLETE" in result.output
    assert {"bash": "complete -o nosort -F", "zsh": "#compdef pvetool", "fish": "complete "}[
        shell
    ] in result.output
    if shell == "bash":
        check = subprocess.run(["bash", "-n"], input=result.output, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr


def test_nodes_vmids_and_plan_files_complete_from_the_cluster_file() -> None:
    assert _values(["--emulate", "lab", "drain"], "pve") == ["pve1", "pve2", "pve3"]
    assert _values(["--emulate", "lab", "drain", "pve1", "--to"], "pve2,pve") == [
        "pve2,pve1",
        "pve2,pve2",
        "pve2,pve3",
    ]
    assert _values(["--emulate", "lab", "check", "drain"], "pve3") == ["pve3"]
    vmids = _values(["--emulate", "lab", "migrate"], "11")
    assert "111" in vmids and "101" not in vmids
    assert _values(["--emulate", "lab", "migrate", "101", "--to"], "") == ["pve1", "pve2", "pve3"]
    plans = _values(["plan", "show"], f"{ROOT}/playbooks/dr")
    assert f"{ROOT}/playbooks/drain-node.yaml" in plans
    assert all(p.endswith((".yaml", ".yml", ".json", "/")) for p in plans)


def _cached(path: Path, age_s: float, nodes: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"t": time.time() - age_s, "nodes": nodes, "guests": [[4242, "cached", nodes[0]]]}
    path.write_text(json.dumps(data))


def test_a_fresh_cache_is_used_without_asking_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"host": "pve.invalid", "profile": None, "token_file": None, "emulate": None}
    _cached(complete.cache_path(params), 5, ["alpha", "beta"])

    def no_network(_: object) -> complete.Names:
        raise AssertionError("the cluster was asked although the cache is fresh")

    monkeypatch.setattr(complete, "_from_api", no_network)
    assert _values(["--host", "pve.invalid", "drain"], "") == ["alpha", "beta"]
    assert _values(["--host", "pve.invalid", "migrate"], "42") == ["4242"]


def test_a_slow_cluster_never_blocks_the_tab(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale cache is offered when the cluster does not answer within the budget; the answer
    that comes later refreshes the cache for the next TAB."""
    params = {"host": "pve.slow", "profile": None, "token_file": None, "emulate": None}
    path = complete.cache_path(params)
    _cached(path, complete.FRESH_S + 10, ["stale"])
    release = threading.Event()

    def slow(_: object) -> complete.Names:
        release.wait(30)
        return complete.Names(("fresh",), ())

    monkeypatch.setattr(complete, "_from_api", slow)
    assert complete.names(params, budget_s=0.05).nodes == ("stale",)
    release.set()
    for _ in range(200):
        if json.loads(path.read_text())["nodes"] == ["fresh"]:
            break
        time.sleep(0.01)
    assert complete.names(params).nodes == ("fresh",)


def test_no_cluster_and_no_cache_offers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(_: object) -> complete.Names:
        raise OSError("connection refused")

    monkeypatch.setattr(complete, "_from_api", unreachable)
    assert _values(["--host", "pve.down", "drain"], "") == []


def _leaf_commands(group: click.Group) -> list[click.Command]:
    out: list[click.Command] = []
    for command in group.commands.values():
        if isinstance(command, click.Group):
            out += _leaf_commands(command)
        else:
            out.append(command)
    return out


def test_quiet_verbose_and_debug_http_on_every_command() -> None:
    load_commands()  # commands are imported on first use: all of them, whatever ran before
    for flags in (cli.params, *(c.params for c in _leaf_commands(cli))):
        names = {opt for p in flags for opt in getattr(p, "opts", [])}
        assert {"-q", "--quiet", "-v", "--verbose", "--debug-http"} <= names


def test_python_dash_m_pvetool() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pvetool", "--version"], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("pvetool, version ")
