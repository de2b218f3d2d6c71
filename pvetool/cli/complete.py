"""Shell completion: the script (`pvetool completion bash|zsh|fish`) and the dynamic values it
asks pvetool for: node names, VMIDs (with the guest's name and node as help) and plan files.

Node names and VMIDs come from a short-lived cache, one file per connection
(``$XDG_CACHE_HOME/pvetool/complete-<hash>.json``, at most `FRESH_S` old): when it is fresh no
network is used; otherwise one ``GET /cluster/resources`` is tried in a background thread and
waited for at most `BUDGET_S` seconds (a stale cache, or nothing, is offered when it does not
answer in time), so a TAB never blocks the shell for more than a second. With ``--emulate
CLUSTER`` the values come from the cluster file itself (no emulator is started). Completion
never prints an error: a value it cannot find is simply not offered.

Imports: the standard library, click, `pvetool.settings`, `pvetool.api` and (for ``--emulate``
only) the emulator's cluster-file reader.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

__all__ = [
    "BUDGET_S",
    "FRESH_S",
    "Names",
    "cache_path",
    "complete_node",
    "complete_plan_file",
    "complete_vmid",
    "names",
]

FRESH_S = 60.0  # a cache younger than this is used without asking the cluster
BUDGET_S = 0.9  # the longest a TAB waits for the cluster (below the one second promised)


@dataclass(frozen=True)
class Names:
    nodes: tuple[str, ...]
    guests: tuple[tuple[int, str, str], ...]  # (vmid, name, node)


def _root_params(ctx: click.Context) -> dict[str, Any]:
    return dict(ctx.find_root().params)


def cache_path(params: dict[str, Any]) -> Path:
    """The cache file of the connection the command line (and the environment) points at."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pvetool"
    key = json.dumps(
        [
            params.get("host"),
            params.get("profile"),
            params.get("token_file"),
            params.get("emulate"),
            os.environ.get("PVETOOL_HOST"),
            os.environ.get("PVETOOL_PROFILE"),
        ]
    )
    return base / f"complete-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _read(path: Path) -> tuple[float, Names] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        nodes = tuple(str(n) for n in data["nodes"])
        guests = tuple((int(v), str(name), str(node)) for v, name, node in data["guests"])
        return float(data["t"]), Names(nodes, guests)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path, found: Names) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        data = {"t": time.time(), "nodes": found.nodes, "guests": found.guests}
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # no cache: the next TAB asks again


def _from_cluster_file(source: str) -> Names:
    from pvetool.emulator.clusterfile import load_cluster

    spec = load_cluster(source)
    guests = tuple((g.vmid, g.name, g.node) for g in spec.guests.values())
    return Names(tuple(spec.nodes), guests)


def _from_api(params: dict[str, Any]) -> Names:
    from pvetool.api import PveClient
    from pvetool.settings import load_settings

    settings = load_settings(
        host=params.get("host"),
        profile=params.get("profile"),
        token_file=params.get("token_file"),
        env=os.environ,
    )
    with PveClient(settings) as client:
        resources = client.cluster_resources()
    guests = tuple(sorted((g.vmid, g.name, g.node) for g in resources.guests))
    return Names(tuple(sorted(n.name for n in resources.nodes)), guests)


def names(params: dict[str, Any], *, budget_s: float = BUDGET_S) -> Names:
    """Node names and guests for completion: the fresh cache, or the cluster within
    `budget_s`, or the stale cache, or nothing."""
    path = cache_path(params)
    cached = _read(path)
    if cached is not None and time.time() - cached[0] < FRESH_S:
        return cached[1]
    result: list[Names] = []

    def fetch() -> None:
        try:
            emulate = params.get("emulate")
            found = _from_cluster_file(emulate) if emulate else _from_api(params)
        except Exception:  # completion must never fail the shell: offer nothing
            return
        _write(path, found)
        result.append(found)

    worker = threading.Thread(target=fetch, name="pvetool-complete", daemon=True)
    worker.start()
    worker.join(budget_s)
    if result:
        return result[0]
    return cached[1] if cached is not None else Names((), ())


def complete_node(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Node names (``NODE[,NODE...]`` completes the part after the last comma)."""
    head, _sep, tail = incomplete.rpartition(",")
    prefix = f"{head}," if _sep else ""
    found = names(_root_params(ctx))
    return [CompletionItem(prefix + n) for n in found.nodes if n.startswith(tail)]


def complete_vmid(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[CompletionItem]:
    found = names(_root_params(ctx))
    return [
        CompletionItem(str(vmid), help=f"{name} on {node}")
        for vmid, name, node in found.guests
        if str(vmid).startswith(incomplete)
    ]


def complete_plan_file(
    ctx: click.Context, _: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """YAML plans and saved JSON plans, and directories to descend into."""
    head, sep, stem = incomplete.rpartition("/")
    prefix = head + sep  # what the user typed up to the last slash, kept as typed
    items: list[CompletionItem] = []
    try:
        entries = sorted(Path(prefix or ".").iterdir())
    except OSError:
        return items
    for entry in entries:
        if not entry.name.startswith(stem) or (entry.name.startswith(".") and not stem):
            continue
        if entry.is_dir():
            items.append(CompletionItem(f"{prefix}{entry.name}/"))
        elif entry.suffix.lower() in (".yaml", ".yml", ".json"):
            items.append(CompletionItem(f"{prefix}{entry.name}"))
    return items
