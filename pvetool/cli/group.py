"""The `pvetool` click group and its global options. Commands live in sibling modules."""

from __future__ import annotations

import click

from pvetool import __version__
from pvetool.cli.common import CliState, Clocks


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Examples:\n\n\b\n  pvetool --emulate lab status\n"
    "  pvetool --emulate lab migrate 101 --to pve3\n"
    "  PVETOOL_HOST=pve1.example.com PVETOOL_TOKEN='root@pam!ops=...' pvetool status",
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
@click.pass_context
def cli(
    ctx: click.Context,
    host: str | None,
    profile: str | None,
    token_file: str | None,
    emulate: str | None,
    emulate_speed: float,
    debug: bool,
) -> None:
    """Drain, rebalance and maintain Proxmox VE clusters safely."""
    ctx.obj = CliState(
        host=host,
        profile=profile,
        token_file=token_file,
        emulate=emulate,
        emulate_speed=emulate_speed,
        debug=debug,
        clocks=ctx.find_object(Clocks) or Clocks(),  # `main(argv, clocks=...)`
    )
