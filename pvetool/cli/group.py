"""The `pvetool` click group and its global options. Commands live in sibling modules."""

from __future__ import annotations

import click

from pvetool import __version__
from pvetool.cli.common import CliState, Clocks, apply_verbosity, verbosity_options


@click.group(
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
