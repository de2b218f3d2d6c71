"""`pvetool --help` lists every command without importing the command modules (issue 14:
deferred imports), and its one-line summaries are the commands' own."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from pvetool.cli.group import COMMAND_MODULES, SUMMARIES, cli, load_commands

PROBE = """
import sys
from pvetool.cli.main import main
try:
    main(["--help"])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[:2] in (
    ["pvetool", "api"], ["pvetool", "planner"], ["pvetool", "executor"], ["pvetool", "operate"])
    or m in COMMANDS)
print("HEAVY", heavy, "EXIT", code)
"""


def test_summaries_are_the_commands_own() -> None:
    load_commands()
    assert set(SUMMARIES) == set(cli.commands), "add the new command to SUMMARIES in cli/group.py"
    for name, command in cli.commands.items():
        assert SUMMARIES[name] == command.get_short_help_str(1000), name


def test_help_imports_no_command_module() -> None:
    probe = PROBE.replace("COMMANDS", repr(set(COMMAND_MODULES)))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "HEAVY [] EXIT 0" in done.stdout, done.stdout
    for name in SUMMARIES:
        assert f"\n  {name} " in done.stdout, name


def test_help_lists_the_same_commands_once_loaded() -> None:
    load_commands()
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in cli.commands:
        assert f"\n  {name} " in result.output


def test_a_command_runs_after_lazy_lookup() -> None:
    result = CliRunner().invoke(cli, ["emulator", "generate", "--nodes", "2", "--guests", "1"])
    assert result.exit_code == 0, result.output
    assert "nodes:" in result.output
