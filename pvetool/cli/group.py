"""The `pvetool` click group and its global options. Commands live in sibling modules.

The command modules import the client, the planner and the executor (most of pvetool's start-up
time); they are imported only when a command runs, not for ``pvetool --help`` or ``--version``
(issue 14: --help took 0.55 s, 0.45 s of it in imports). `COMMAND_MODULES` lists them and
`SUMMARIES` is the one line ``--help`` shows for each top-level command; a unit test
(tests/unit/cli/test_lazy_commands.py) checks both against the loaded commands, so a command
added to a module without a line here fails it.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from pvetool import __version__
from pvetool.cli.common import CliState, Clocks, apply_verbosity, verbosity_options

# Imported, in this order, the first time a command is looked up (they register on `cli`).
COMMAND_MODULES = (
    "pvetool.cli.completion_cmds",
    "pvetool.cli.emulator_cmds",
    "pvetool.cli.history_cmds",
    "pvetool.cli.migrate_cmds",
    "pvetool.cli.plan_cmds",
    "pvetool.cli.run_cmds",
    "pvetool.cli.status_cmds",
)

SUMMARIES = {
    "check": "Pre-flight checks without a plan file (read-only).",
    "completion": "Print the completion script for SHELL.",
    "drain": "Move every movable guest off NODE (live for running VMs, restart for containers).",
    "emulator": "Run an emulated Proxmox VE 9.2 cluster (HTTPS API) for trials and tests.",
    "migrate": (
        "Migrate one guest to NODE (live for running VMs; restart migration for containers)."
    ),
    "plan": "YAML maintenance plans: validate and show (read-only), apply, schema.",
    "rebalance": "Move guests until node loads are within the threshold of each other.",
    "report": "Write the report files of RUN again, from its journal.",
    "runs": "List past runs (id, command, cluster, start, result, moves), oldest first.",
    "status": "Show cluster quorum, nodes (online, version, guests, memory, CPU, HA) and guests.",
    "undrain": "Bring back the guests the latest drain of NODE moved away (from the journal).",
}


_loaded: list[bool] = []


def load_commands() -> None:
    """Import every command module (each registers its commands on `cli`), then give every
    command ``-q``/``-v``/``--debug-http`` after its name and the dynamic completion of node
    names, VMIDs and plan files; idempotent."""
    if _loaded:
        return
    for name in COMMAND_MODULES:
        importlib.import_module(name)
    _loaded.append(True)
    from pvetool.cli.completion_cmds import attach_completions  # a command module itself

    add_verbosity_options(cli)
    attach_completions(cli)


class LazyGroup(click.Group):
    """A group whose command modules are imported on first use, not for its own --help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(SUMMARIES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            load_commands()
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, Any]] = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name) or click.Command(name, short_help=SUMMARIES.get(name))
            if not cmd.hidden:
                rows.append((name, cmd))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Examples:\n\n\b\n  pvetool --emulate lab status\n"
    "  pvetool --emulate lab migrate 101 --to pve3\n"
    "  PVETOOL_HOST=pve1.example.com PVETOOL_TOKEN='root@pam!ops=...' pvetool status\n"
    "  pvetool completion bash > ~/.local/share/bash-completion/completions/pvetool",
)
@click.version_option(__version__, prog_name="pvetool")
@click.option("--host", metavar="HOST[:PORT],...", help="API host(s); overrides PVETOOL_HOST.")
@click.option("--profile", metavar="NAME", help="Profile of ~/.config/pvetool/config.yaml.")
@click.option(
    "--token-file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="File holding user@realm!tokenid=secret.",
)
@click.option(
    "--emulate",
    metavar="CLUSTER",
    help="Run against an emulated cluster started in-process: 'lab' or a cluster file.",
)
@click.option(
    "--emulate-speed",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    help="Emulated seconds per real second with --emulate.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.option("-q", "--quiet", is_flag=True, help="Print results and errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Also print what pvetool logs at INFO.")
@click.option(
    "--debug-http",
    is_flag=True,
    help="Print every API call: method, path, status, duration (never a secret).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    host: str | None,
    profile: str | None,
    token_file: str | None,
    emulate: str | None,
    emulate_speed: float,
    debug: bool,
    quiet: bool,
    verbose: bool,
    debug_http: bool,
) -> None:
    """Drain, rebalance and maintain Proxmox VE clusters safely."""
    ctx.obj = CliState(
        host=host,
        profile=profile,
        token_file=token_file,
        emulate=emulate,
        emulate_speed=emulate_speed,
        debug=debug,
        quiet=quiet,
        verbose=verbose,
        debug_http=debug_http,
        clocks=ctx.find_object(Clocks) or Clocks(),  # `main(argv, clocks=...)`
    )
    apply_verbosity(ctx.obj, ctx)


def add_verbosity_options(group: click.Group) -> None:
    """``-q``, ``-v`` and ``--debug-http`` on every command below `group` as well."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            add_verbosity_options(command)
            continue
        names = {p.name for p in command.params}
        if "quiet" not in names:
            command.params.extend(verbosity_options())
