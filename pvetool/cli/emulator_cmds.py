"""`pvetool emulator serve|generate`: the PVE API emulator from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pvetool.cli.group import cli

# The emulator (werkzeug, cryptography) is imported inside the commands: every other pvetool
# command starts faster without it.


@cli.group()
def emulator() -> None:
    """Run an emulated Proxmox VE 9.2 cluster (HTTPS API) for trials and tests."""


@emulator.command("serve")
@click.option(
    "--cluster",
    "cluster_file",
    default="lab",
    show_default=True,
    help="Cluster file (YAML), or 'lab' for the built-in 3-node lab.",
)
@click.option("--port", default=8006, show_default=True, type=click.IntRange(0, 65535))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Emulated seconds per real second (0 stops the clock).",
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    metavar="ID=SECRET",
    help="Add an API token with all privileges, e.g. root@pam!ci=s3cret.",
)
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the generated CA and certificate (default: a temporary folder).",
)
@click.option(
    "--api-hosts",
    default=1,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Number of API listeners (extra ones on free ports), for failover trials.",
)
def emulator_serve(
    cluster_file: str,
    port: int,
    host: str,
    speed: float,
    tokens: tuple[str, ...],
    tls_dir: Path | None,
    api_hosts: int,
) -> None:
    """Serve an emulated cluster until Ctrl-C.

    Prints the `export PVETOOL_...` lines that point pvetool (or curl) at it:

    \b
      pvetool emulator serve --port 8443 > emulator.env &
      . ./emulator.env
      curl --cacert "$PVETOOL_VERIFY" -H "Authorization: PVEAPIToken=$PVETOOL_TOKEN" \\
           "https://$PVETOOL_HOST/api2/json/cluster/resources"
    """
    from pvetool.emulator.clusterfile import ClusterFileError
    from pvetool.emulator.main import parse_token, serve

    for t in tokens:
        try:
            parse_token(t)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--token") from None
    try:
        code = serve(cluster_file, port, speed, tokens, host, tls_dir, api_hosts)
    except ClusterFileError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sys.exit(code)


@emulator.command("generate")
@click.option("--nodes", required=True, type=click.IntRange(1, 1000))
@click.option("--guests", required=True, type=click.IntRange(0, 100000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--link", default="10Gbit", show_default=True, help="Node link speed, e.g. 1Gbit.")
@click.option(
    "--migration-type",
    type=click.Choice(["secure", "insecure"]),
    default="secure",
    show_default=True,
)
@click.option(
    "--fleet",
    type=click.Choice(["light", "mixed"]),
    default="mixed",
    show_default=True,
    help="light: small idle guests; mixed: a realistic mix.",
)
def emulator_generate(
    nodes: int, guests: int, seed: int, link: str, migration_type: str, fleet: str
) -> None:
    """Print a generated cluster file (deterministic for a seed)."""
    from pvetool.emulator.fleet import generate_cluster

    try:
        click.echo(generate_cluster(nodes, guests, seed, link, migration_type, fleet), nl=False)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@emulator.command("capture")
@click.option(
    "-o",
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the cluster file here (default: standard output).",
)
@click.option(
    "--link",
    default="10Gbit",
    show_default=True,
    help="Link speed written for every node (PVE does not report NIC speeds).",
)
@click.option(
    "--with-descriptions",
    is_flag=True,
    help="Also copy guest descriptions (free text: admins sometimes keep secrets there).",
)
@click.pass_context
def emulator_capture(
    ctx: click.Context, output_file: Path | None, link: str, with_descriptions: bool
) -> None:
    """Capture a cluster (read-only) as a cluster file the emulator can serve.

    Reads the cluster pvetool is pointed at (--host, --profile, PVETOOL_* or --emulate) with
    GET requests only and writes its nodes, storages, guests, HA rules and datacenter options,
    without any secret. Rehearse on the twin:

    \b
      pvetool emulator capture -o mycluster.yaml
      pvetool --emulate mycluster.yaml drain pve2 --dry-run
    """
    from pvetool.capture import capture_cluster, render_cluster_file
    from pvetool.cli.common import get_client, state
    from pvetool.emulator.clusterfile import ClusterFileError, load_cluster_text
    from pvetool.units import parse_link

    try:
        parse_link(link)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--link") from None
    st = state(ctx)
    cap = capture_cluster(
        get_client(ctx),
        link=link,
        with_descriptions=with_descriptions,
        progress=lambda what: st.stderr.print(f"Reading {what}...", markup=False),
    )
    text = render_cluster_file(cap)
    try:
        load_cluster_text(text, str(output_file or "<capture>"))
    except ClusterFileError as exc:
        # What the cluster holds that the emulator cannot model: say so, write nothing.
        raise click.ClickException(
            f"the captured cluster cannot be served by the emulator: {exc}"
        ) from None
    nodes, guests = cap.counts()
    if output_file is None:
        click.echo(text, nl=False)
    else:
        try:
            output_file.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {output_file}: {exc.strerror}") from None
    where = "standard output" if output_file is None else str(output_file)
    st.stderr.print(
        f"Captured cluster {cap.name}: {nodes} nodes, {guests} guests -> {where}"
        + (f" ({len(cap.notes)} gaps listed in its header)" if cap.notes else ""),
        markup=False,
    )
