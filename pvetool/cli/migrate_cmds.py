"""`pvetool migrate VMID --to NODE`: one migration with live progress, verified at the end."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from pvetool.api import follow_task
from pvetool.cli.common import get_client, state
from pvetool.cli.group import cli
from pvetool.migration import MigrationRequest, migrate, start
from pvetool.model import Guest, MigrationProgress, TaskResult, Upid
from pvetool.render.formats import duration
from pvetool.units import parse_duration, parse_rate


def _parse_storage_map(text: str | None) -> dict[str, str] | str | None:
    """`local-lvm:ceph,local:ceph` -> mapping; `ceph` (one storage for all) or `1` stay text."""
    if not text:
        return None
    if ":" not in text:
        return text
    mapping: dict[str, str] = {}
    for item in text.split(","):
        src, sep, dst = item.strip().partition(":")
        if not sep or not src or not dst:
            raise click.BadParameter(
                f"expected SOURCE:TARGET[,SOURCE:TARGET...] or one storage, got '{text}'",
                param_hint="--target-storage",
            )
        mapping[src] = dst
    return mapping


def _rate(_: click.Context, __: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _seconds(_: click.Context, __: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("migrate")
@click.argument("vmid", type=click.IntRange(100, 999_999_999))
@click.option("--to", "target", required=True, metavar="NODE", help="Target node.")
@click.option(
    "--offline",
    is_flag=True,
    help=(
        "Migrate offline, not live. For a stopped VM (offline anyway) or a container; a running "
        "VM is refused (PVE migrates it only live): shut it down first, or use a plan with "
        "'offline: true', which shuts it down, migrates it and starts it again."
    ),
)
@click.option("--with-local-disks", is_flag=True, help="Copy local disks along (live).")
@click.option(
    "--target-storage",
    metavar="MAP",
    help="Storage map for local disks: SRC:DST[,SRC:DST] or one storage for all.",
)
@click.option(
    "--bwlimit",
    metavar="RATE",
    callback=_rate,
    help="Bandwidth limit, e.g. 500MiB/s or 2Gbit/s.",
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the task.")
@click.option(
    "--timeout",
    default="1h",
    show_default=True,
    callback=_seconds,
    help="How long to follow the task (it is not stopped when this runs out).",
)
@click.pass_context
def migrate_cmd(
    ctx: click.Context,
    vmid: int,
    target: str,
    offline: bool,
    with_local_disks: bool,
    target_storage: str | None,
    bwlimit: float | None,
    wait: bool,
    timeout: float,
) -> None:
    """Migrate one guest to NODE (live for running VMs; restart migration for containers).

    A running VM is never shut down by this command: `--offline` is for stopped VMs. To shut a
    running VM down, migrate it offline and start it on NODE, use a plan with the per-guest
    override `offline: true` (`pvetool plan apply`).

    \b
    Examples:
      pvetool migrate 101 --to pve3
      pvetool migrate 111 --to pve3 --with-local-disks --target-storage local-lvm:ceph
      pvetool migrate 200 --to pve2 --no-wait
      pvetool migrate 116 --to pve1 --offline
    """
    st = state(ctx)
    client = get_client(ctx)
    req = MigrationRequest(
        vmid=vmid,
        target=target,
        offline=offline,
        with_local_disks=with_local_disks,
        target_storage=_parse_storage_map(target_storage),
        bwlimit_Bps=bwlimit,
        timeout_s=timeout,
    )
    if not wait:
        guest, upid = start(client, req)
        click.echo(f"started: {upid}")
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    progress = Progress(*columns, console=st.stderr, transient=False)
    bars: dict[str, TaskID] = {}
    plain = not st.stderr.is_terminal

    def on_started(guest: Guest, upid: Upid) -> None:
        what = "VM" if guest.kind == "qemu" else "CT"
        mode = (
            "live"
            if guest.running and guest.kind == "qemu" and not offline
            else ("restart" if guest.running else "offline")
        )
        st.stderr.print(f"{what} {guest.vmid} ({guest.name}): {guest.node} -> {target}, {mode}")
        st.stderr.print(f"task {upid}")

    def on_progress(p: MigrationProgress) -> None:
        label = "RAM" if p.phase == "ram" else (p.device or "disk")
        if plain:
            pct = f"{100 * p.fraction:.0f}%" if p.fraction is not None else "?"
            st.stderr.print(f"{label}: {pct}")
            return
        if label not in bars:
            bars[label] = progress.add_task(label, total=p.total_bytes)
        progress.update(bars[label], completed=p.transferred_bytes, total=p.total_bytes)

    def follow(
        upid: Upid, timeout_s: float, cb: Callable[[MigrationProgress], None] | None
    ) -> TaskResult:
        return follow_task(client, upid, timeout_s, on_progress=cb)

    with progress if not plain else _nullcontext():
        outcome = migrate(client, req, follow, on_progress, on_started)
    res = outcome.result
    parts = [f"migrated {outcome.guest.vmid} {outcome.source} -> {outcome.after.node}"]
    if res.duration_s is not None:
        parts.append(f"in {duration(res.duration_s)}")
    if res.downtime_ms is not None:
        parts.append(f"downtime {res.downtime_ms} ms")
    parts.append(f"({res.exitstatus})")
    click.echo(" ".join(parts))
    sys.stdout.flush()


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
