"""Benchmark: drains side by side with every peer, and rebalancing against an optimum (issue 14).

Regenerate everything (scenarios, runs, bench/RESULTS.md and bench/results.svg) with:

    python bench/peers.py --generate --all --speed 4 --write

Drains. Each scenario of `bench/scenarios/` (seeded cluster files written by ``--generate``) is
served by a fresh in-process emulator for every tool, with its clock at ``--speed`` (1-4), and
node pve1 is drained by:

* ``pvetool``: ``pvetool drain pve1 --with-local-disks --yes`` as a child process (the real CLI),
  with ``--link`` declaring the scenario's link speeds (a fresh emulator has no migration history
  for pvetool to learn them from; on a real cluster they are learned);
* ``migrateall-1`` / ``migrateall-4``: PVE's own ``POST /nodes/pve1/migrateall`` to the node with
  the most free memory, ``max-workers`` 1 and 4, ``with-local-disks=1``;
* ``proxlb``: ProxLB one-shot maintenance (``maintenance_nodes: [pve1]``, ``daemon: false``,
  ``parallel: true``, ``parallel_jobs: 4``, documented options only; its pass may rebalance other
  nodes too, /work/notes/peers.md section 2);
* ``pvecontrol``: ``pvecontrol node evacuate pve1 --online --wait`` (``yes`` on stdin), with
  ``node.memoryminimum`` 1 GiB instead of its 8 GiB default (which refuses every target of the
  light scenarios' 8 GiB nodes).

After the tool exits the bench waits until the cluster is quiescent (no running task, no migrate
lock, no HA service moving), then measures from the emulator's own task records (emulated
seconds): makespan (first migration task start -> last end), makespan / LB_dirty (the lower
bound of docs/timing-model.md from the emulator's ground truth, each node's real link), mean
completion, max guest downtime, bytes sent / bytes needed, API requests per migration, guests
failed and left on pve1, targets overfilled at any moment (the configured memory of the running
guests on a node, counting an incoming guest from its migration's start, above the node's
memory), and the exit code next to the outcome. pvetool's predicted makespan is shown next to it.

Rebalance (``--rebalance``): on generated clusters made unbalanced (seeded), pvetool's plan (by
memory, threshold 10 %) vs an OR-Tools CP-SAT model that minimises the memory moved to bring every
node within the same threshold (same capacity; each guest moves at most once), and ProxLB's
balancing plan (``--dry-run --json``): spread, moves, GiB moved, planning time.

A benchmark, not a test: nothing is asserted. The machine it ran on is shared (2 cores);
timings are emulated seconds unless marked real.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pvetool.emulator.clusterfile import load_cluster  # noqa: E402
from pvetool.emulator.fleet import generate_cluster  # noqa: E402
from pvetool.emulator.qemu_migrate import mirror_bytes  # noqa: E402
from pvetool.emulator.server import Emulator  # noqa: E402
from pvetool.timing import (  # noqa: E402
    LbGuest,
    drain_lower_bounds,
    link_goodput_Bps,
    stream_cap_Bps,
)

SCENARIOS_DIR = ROOT / "bench" / "scenarios"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
RESULTS_SVG = ROOT / "bench" / "results.svg"
RESULTS_JSON = ROOT / "bench" / "results.json"
START_EPOCH = 1_790_000_000.0
MIGRATIONS = ("qmigrate", "vzmigrate")
QUIET_S = 35.0  # emulated seconds without motion: three HA manager rounds
TOOLS = ("pvetool", "migrateall-1", "migrateall-4", "proxlb", "pvecontrol")
GiB = 1024**3

# name -> (generate_cluster arguments, per-node link overrides, node memory factor)
SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, str], float]] = {
    "n3-10g-light-secure": (dict(nodes=3, guests=15, seed=11, fleet="light"), {}, 1.0),
    "n8-10g-light-secure": (dict(nodes=8, guests=40, seed=12, fleet="light"), {}, 1.0),
    "n8-10g-mixed-secure": (dict(nodes=8, guests=48, seed=13, fleet="mixed"), {}, 1.0),
    "n8-10g-mixed-insecure": (
        dict(nodes=8, guests=48, seed=13, fleet="mixed", migration_type="insecure"),
        {},
        1.0,
    ),
    "n8-1g-light-secure": (dict(nodes=8, guests=40, seed=14, fleet="light", link="1Gbit"), {}, 1.0),
    "n8-25g-light-insecure": (
        dict(nodes=8, guests=40, seed=15, fleet="light", link="25Gbit", migration_type="insecure"),
        {},
        1.0,
    ),
    "n8-hetero-mixed-secure": (
        dict(nodes=8, guests=48, seed=16, fleet="mixed"),
        {"pve2": "1Gbit"},
        1.0,
    ),
    "n8-tight-mixed-secure": (dict(nodes=8, guests=48, seed=17, fleet="mixed"), {}, 0.72),
    "n24-10g-light-secure": (dict(nodes=24, guests=120, seed=18, fleet="light"), {}, 1.0),
}


# --------------------------------------------------------------------------------------------
# Scenarios


def scenario_text(name: str) -> str:
    """The cluster file of scenario `name`: generated, then the documented edits."""
    gen, slow, mem_factor = SCENARIOS[name]
    text = generate_cluster(**gen)
    for node, link in slow.items():
        text = re.sub(
            rf'(^  {node}: \{{[^\n]*?)link: "[^"]*"', rf'\1link: "{link}"', text, flags=re.M
        )
    if mem_factor != 1.0:

        def shrink(m: re.Match[str]) -> str:
            gib = int(m.group(2))
            return f"{m.group(1)}memory: {max(4, round(gib * mem_factor))}GiB"

        text = re.sub(r"(^  pve\d+: \{cpus: \d+, )memory: (\d+)GiB", shrink, text, flags=re.M)
    header = f"# bench scenario {name}: links {slow or 'uniform'}, node memory x{mem_factor}\n"
    return header + text


def generate_scenarios() -> None:
    SCENARIOS_DIR.mkdir(parents=True, exist_ok=True)
    for name in SCENARIOS:
        (SCENARIOS_DIR / f"{name}.yaml").write_text(scenario_text(name))


# --------------------------------------------------------------------------------------------
# One run


@dataclass
class Run:
    scenario: str
    tool: str
    speed: float
    exit_code: int | None = None
    real_s: float = 0.0
    migrations: int = 0
    failed: int = 0
    left_on_node: int = 0
    movable: int = 0
    makespan_s: float = 0.0
    lb_dirty_s: float = 0.0
    lb_pure_s: float = 0.0
    bound_by: str = ""
    lb_link_s: float = 0.0  # LB_link (timing.drain_lower_bounds): + the fixed lead and tail
    exact_makespan_s: float = 0.0  # from the emulator's exact clock, not PVE's whole seconds
    longest_task_s: float = 0.0  # the longest single migration task, exact clock
    # LB_link of only the guests this run moved, when it left some (tight memory: a guest that
    # fits nowhere is not part of what a drain that leaves it can be held to)
    lb_link_moved_s: float | None = None
    # Slot hand-offs (exact clock): from the latest task end before a later task's start to
    # that start, for every task that started after another ended (issue 14: completion seen
    # within ~1 s); [] when every task started at once.
    handoffs_s: list[float] = field(default_factory=list)
    mean_completion_s: float = 0.0
    max_downtime_s: float = 0.0
    bytes_ratio: float | None = None
    requests_per_migration: float = 0.0
    overfilled_nodes: int = 0
    predicted_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def span_s(self) -> float:
        """The makespan the ratios use: the exact clock's when measured (PVE's task times have
        whole seconds, 8-14 % of a 7-12 s drain), else PVE's."""
        return self.exact_makespan_s or self.makespan_s

    @property
    def ratio(self) -> float | None:
        return self.span_s / self.lb_dirty_s if self.lb_dirty_s and self.span_s else None

    @property
    def prediction_error(self) -> float | None:
        """(predicted - actual) / actual, against the exact makespan when it was measured."""
        actual = self.exact_makespan_s or self.makespan_s
        return (self.predicted_s - actual) / actual if self.predicted_s and actual else None

    @property
    def link_ratio(self) -> float | None:
        return self.span_s / self.lb_link_s if self.lb_link_s and self.span_s else None


def child_env(emu: Emulator, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PVETOOL_", "PVECONTROL_"))
        and k not in ("CONFIG", "CLUSTER", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
        and not k.lower().endswith("_proxy")
    }
    env.update(
        HOME=str(home),
        NO_PROXY="127.0.0.1,localhost",
        REQUESTS_CA_BUNDLE=str(emu.tls.ca_file),
        PYTHONPATH=str(ROOT),
        XDG_CONFIG_HOME=str(home / "config"),
        PVETOOL_STATE_DIR=str(home / "state"),
    )
    return env


def lb_figures(emu: Emulator, node: str) -> tuple[dict[int, LbGuest], float, bool]:
    """Each guest of `node` as the lower bound sees it now (the emulator's ground truth: used
    RAM, dirty profile, the local-disk bytes a copy sends, each node's real link), `node`'s
    uplink and whether migrations are secure."""
    c = emu.cluster
    secure = c.spec.datacenter.migration_type != "insecure"
    uplink = link_goodput_Bps(c.spec.nodes[node].link_bits_per_s)
    others = [n for n in c.spec.nodes if n != node]
    downlink = max(link_goodput_Bps(c.spec.nodes[n].link_bits_per_s) for n in others)
    cap = min(stream_cap_Bps(c.params, secure, None), uplink, downlink)
    figures: dict[int, LbGuest] = {}
    for g in c.guests.values():
        if g.node != node or g.spec.template:
            continue
        local = float(sum(disk_copy_bytes(emu, g, d) for d in c.local_disks(g)))
        ram = float(g.used_bytes) if (g.type == "qemu" and g.status == "running") else 0.0
        if ram or local:
            kind = "lxc" if g.type == "lxc" and g.status == "running" else "qemu"
            figures[g.vmid] = LbGuest(ram, local, g.dirty, cap, kind=kind)
    return figures, uplink, secure


def lower_bounds(emu: Emulator, node: str) -> tuple[float, float, str, int, float]:
    """LB_pure, LB_dirty, what bounds it, the guests on `node` and LB_link for draining it."""
    figures, uplink, secure = lb_figures(emu, node)
    movable = sum(1 for g in emu.cluster.guests.values() if g.node == node)
    if not figures:
        return 0.0, 0.0, "-", movable, 0.0
    lb = drain_lower_bounds(list(figures.values()), uplink, emu.cluster.params, secure)
    return lb.lb_pure_s, lb.lb_dirty_s, lb.bound_by.split(" (")[0], movable, lb.lb_link_s


def lower_bounds_by_guest(emu: Emulator, node: str) -> Callable[[set[int]], float]:
    """LB_link of a subset of `node`'s guests, their figures read now (before a run moves
    them): `of(vmids)`."""
    figures, uplink, secure = lb_figures(emu, node)
    params = emu.cluster.params

    def of(vmids: set[int]) -> float:
        guests = [figures[v] for v in sorted(vmids) if v in figures]
        return drain_lower_bounds(guests, uplink, params, secure).lb_link_s if guests else 0.0

    return of


def disk_copy_bytes(emu: Emulator, g: Any, d: Any) -> int:
    """Bytes moving local volume `d` of guest `g` sends: a running VM's drive-mirror sends a
    block device's whole size (the emulator's `mirror_bytes`), any other copy the allocated."""
    if g.type == "qemu" and g.status == "running" and not d.unused:
        return mirror_bytes(emu.cluster.spec.storages[d.storage].type, d)
    return int(d.alloc_bytes)


def busy(emu: Emulator) -> bool:
    state = emu.state()
    if any(t["status"] == "running" for t in state["tasks"]):
        return True
    if any(g["lock"] == "migrate" for g in state["guests"].values()):
        return True
    return any(g.get("ha_state") in ("migrate", "relocate") for g in state["guests"].values())


def wait_quiescent(emu: Emulator, max_real_s: float = 900.0) -> None:
    started = time.monotonic()
    quiet_since: float | None = None
    while time.monotonic() - started < max_real_s:
        now = emu.clock.now()
        if busy(emu):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= QUIET_S:
            return
        time.sleep(0.1)


def measure(emu: Emulator, run: Run, tasks_before: int, requests_before: int, node: str) -> None:
    c = emu.cluster
    with emu.locked():
        tasks = [t for t in c.task_order[tasks_before:] if t.type in MIGRATIONS]
        memory = {g.vmid: g.memory_bytes for g in c.guests.values()}
        where = {g.vmid: g.node for g in c.guests.values()}
        used = {g.vmid: g.used_bytes for g in c.guests.values()}
        alloc = {
            g.vmid: sum(disk_copy_bytes(emu, g, d) for d in c.local_disks(g))
            for g in c.guests.values()
        }
        node_mem = {n.name: n.spec.memory_bytes for n in c.nodes.values()}
        requests_after = emu.stats.requests
        mine = {t.upid for t in tasks}
        exact: dict[str, dict[str, float]] = {}
        for ev in c.events:
            if ev.get("upid") in mine and ev.get("event") in ("task-start", "task-end"):
                exact.setdefault(ev["upid"], {})[ev["event"]] = float(ev["t"])
    run.migrations = len(tasks)
    run.failed = sum(1 for t in tasks if t.exitstatus != "OK")
    run.left_on_node = sum(1 for n in where.values() if n == node)
    run.requests_per_migration = (requests_after - requests_before) / max(1, len(tasks))
    if not tasks:
        return
    begin = min(float(t.starttime) for t in tasks)
    ends = [float(t.endtime) for t in tasks if t.endtime is not None]
    run.makespan_s = max(ends) - begin if ends else 0.0
    starts = [e["task-start"] for e in exact.values() if "task-start" in e]
    finished = [e["task-end"] for e in exact.values() if "task-end" in e]
    if starts and finished:
        run.exact_makespan_s = round(max(finished) - min(starts), 2)
        run.longest_task_s = round(
            max(e["task-end"] - e["task-start"] for e in exact.values() if len(e) == 2), 2
        )
        run.handoffs_s = handoffs(exact)
    run.mean_completion_s = statistics.fmean(e - begin for e in ends) if ends else 0.0
    run.max_downtime_s = max(
        float(t.stats.to_json().get("guest_downtime_s", 0.0) or 0.0) for t in tasks
    )
    sent = sum(float(t.stats.to_json().get("sent_bytes", 0.0) or 0.0) for t in tasks)
    needed = sum(
        used.get(t.vmid or 0, 0) + alloc.get(t.vmid or 0, 0) for t in tasks if t.exitstatus == "OK"
    )
    run.bytes_ratio = sent / needed if needed else None
    run.overfilled_nodes = overfilled(emu, tasks, memory, node_mem)


def handoffs(exact: dict[str, dict[str, float]]) -> list[float]:
    """Each later start's distance from the latest task end at or before it (exact clock)."""
    ends = sorted(e["task-end"] for e in exact.values() if "task-end" in e)
    out: list[float] = []
    for e in exact.values():
        start = e.get("task-start")
        before = [end for end in ends if start is not None and end <= start + 1e-9]
        if before:
            out.append(round(start - before[-1], 2))  # type: ignore[operator]
    return sorted(out)


def overfilled(
    emu: Emulator, tasks: list[Any], memory: dict[int, int], node_mem: dict[str, int]
) -> int:
    """Nodes whose running guests' configured memory exceeded their memory at some moment, an
    incoming guest counting from its migration's start (PVE starts the target VM first)."""
    spec_guests = emu.cluster.spec.guests
    load: dict[str, int] = {n: 0 for n in node_mem}
    for vmid, g in spec_guests.items():
        if g.status == "running" and g.node in load:
            load[g.node] += memory.get(vmid, 0)
    events: list[tuple[float, int, str, int]] = []
    for t in tasks:
        target = t.stats.to_json().get("target")
        source = t.upid.split(":")[1]
        mem = memory.get(t.vmid or 0, 0)
        if not target or t.endtime is None:
            continue
        events.append((float(t.starttime), 1, target, mem))
        if t.exitstatus == "OK":
            events.append((float(t.endtime), 0, source, -mem))
        else:
            events.append((float(t.endtime), 0, target, -mem))
    over: set[str] = {n for n, v in load.items() if v > node_mem[n]}  # overfilled before: not ours
    already = set(over)
    for _, _, n, delta in sorted(events):
        load[n] += delta
        if load[n] > node_mem[n]:
            over.add(n)
    return len(over - already)


def pvetool_args(scenario: str) -> list[str]:
    gen, slow, _ = SCENARIOS.get(scenario, ({}, {}, 1.0))
    # Declared, as an administrator would (or as pvetool learns from the cluster's past
    # migrations; a fresh emulator has none): the scenario's link and its slower nodes.
    links = [f"--link={gen.get('link', '10Gbit')}"] + [f"--link={n}={v}" for n, v in slow.items()]
    return ["drain", "pve1", "--with-local-disks", "--yes", *links]


PVETOOL = [sys.executable, "-c", "import sys; from pvetool.cli.main import main; main()"]


def predict_pvetool(emu: Emulator, home: Path, run: Run) -> None:
    """pvetool's predicted makespan for the same drain (its dry run, before the real one)."""
    env = {**child_env(emu, home), **emu.env()}
    args = [a for a in pvetool_args(run.scenario) if a != "--yes"]
    plan = subprocess.run(
        [*PVETOOL, *args, "--dry-run", "-o", "json"],
        env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    try:
        body = json.loads(plan.stdout)
        run.predicted_s = float(body["plan"]["predicted_makespan_s"])
    except (ValueError, KeyError, TypeError):
        run.notes.append("no dry-run plan")


def run_pvetool(emu: Emulator, home: Path, run: Run) -> None:
    env = {**child_env(emu, home), **emu.env()}
    done = subprocess.run(
        [*PVETOOL, *pvetool_args(run.scenario), "--report", str(home / "report.json")],
        env=env, capture_output=True, text=True, check=False, timeout=3600,
    )  # fmt: skip
    run.exit_code = done.returncode
    if done.returncode and done.stderr.strip():
        run.notes.append(done.stderr.strip().splitlines()[-1][:120])
    try:
        report = json.loads((home / "report.json").read_text())
        run.notes.append(f"report: {len(report.get('report', report).get('results', []))} moves")
    except (OSError, ValueError, AttributeError):
        pass


def run_migrateall(emu: Emulator, home: Path, run: Run, workers: int) -> None:
    env = emu.env()
    s = requests.Session()
    s.trust_env = False
    s.verify = env["PVETOOL_VERIFY"]
    s.headers["Authorization"] = f"PVEAPIToken={env['PVETOOL_TOKEN']}"
    base = f"https://{env['PVETOOL_HOST'].split(',')[0]}/api2/json"
    state = emu.state()
    target = max(
        (n for n in state["nodes"] if n != "pve1" and state["nodes"][n]["online"]),
        key=lambda n: state["nodes"][n]["memory_total"] - state["nodes"][n]["memory_committed"],
    )
    answer = s.post(
        f"{base}/nodes/pve1/migrateall",
        data={"target": target, "max-workers": workers, "with-local-disks": 1},
        timeout=30,
    )
    run.exit_code = 0 if answer.ok else answer.status_code
    if answer.ok:
        upid = answer.json()["data"]
        while (
            s.get(f"{base}/nodes/pve1/tasks/{upid}/status", timeout=30).json()["data"]["status"]
            != "stopped"
        ):
            time.sleep(0.25)
    s.close()
    run.notes.append(f"all to {target}")


def run_proxlb(emu: Emulator, home: Path, run: Run) -> None:
    token_id, secret = emu.admin_token()
    user, name = token_id.split("!", 1)
    cfg = home / "proxlb.yaml"
    cfg.write_text(
        json.dumps(
            {
                "proxmox_api": {
                    "hosts": [f"127.0.0.1:{emu.port}"],
                    "user": user,
                    "token_id": name,
                    "token_secret": secret,
                    "ssl_verification": True,
                    "timeout": 30,
                },
                "proxmox_cluster": {"maintenance_nodes": ["pve1"]},
                "balancing": {
                    "enable": True,
                    "balance_types": ["vm", "ct"],
                    "balanciness": 100,
                    "method": "memory",
                    "mode": "used",
                    "live": True,
                    "with_local_disks": True,
                    "parallel": True,
                    "parallel_jobs": 4,
                    "max_job_validation": 200,
                },
                "service": {"daemon": False, "log_level": "INFO"},
            }
        )
    )
    cfg.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "proxlb", "-c", str(cfg)],
        env=child_env(emu, home), capture_output=True, text=True, check=False, timeout=3600,
        cwd=home,
    )  # fmt: skip
    run.exit_code = done.returncode


def run_pvecontrol(emu: Emulator, home: Path, run: Run) -> None:
    token_id, secret = emu.admin_token()
    user, name = token_id.split("!", 1)
    cfg = home / "pvecontrol.yaml"
    cfg.write_text(
        json.dumps(
            {
                "clusters": [
                    {
                        "name": "emu",
                        "host": f"127.0.0.1:{emu.port}",
                        "user": user,
                        "token_name": name,
                        "token_value": secret,
                        "ssl_verify": True,
                        "timeout": 30,
                    }
                ],
                # Its default keeps 8 GiB free on every target, which refuses every move on
                # the small nodes of the light scenarios; 1 GiB is closer to pvetool's 5 %.
                "node": {"cpufactor": 2.5, "memoryminimum": GiB},
            }
        )
    )
    cfg.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "pvecontrol", "--config", str(cfg), "--no-color", "--no-unicode",
         "-c", "emu", "node", "evacuate", "pve1", "--online", "--wait"],
        input="yes\n", env=child_env(emu, home), capture_output=True, text=True, check=False,
        timeout=3600, cwd=home,
    )  # fmt: skip
    run.exit_code = done.returncode


def one_run(scenario: str, tool: str, speed: float) -> Run:
    spec = load_cluster(str(SCENARIOS_DIR / f"{scenario}.yaml"))
    emu = Emulator(spec, speed=speed, start_epoch_s=START_EPOCH).start()
    run = Run(scenario, tool, speed)
    try:
        run.lb_pure_s, run.lb_dirty_s, run.bound_by, run.movable, run.lb_link_s = lower_bounds(
            emu, "pve1"
        )
        before = lower_bounds_by_guest(emu, "pve1")
        with tempfile.TemporaryDirectory(prefix="pvetool-peers-") as tmp:
            home = Path(tmp)
            if tool == "pvetool":
                predict_pvetool(emu, home, run)  # before the counts: not part of the drain
            tasks_before, requests_before = len(emu.cluster.task_order), emu.stats.requests
            started = time.monotonic()
            if tool == "pvetool":
                run_pvetool(emu, home, run)
            elif tool.startswith("migrateall"):
                run_migrateall(emu, home, run, int(tool.split("-")[1]))
            elif tool == "proxlb":
                run_proxlb(emu, home, run)
            elif tool == "pvecontrol":
                run_pvecontrol(emu, home, run)
            wait_quiescent(emu)
            run.real_s = time.monotonic() - started
        measure(emu, run, tasks_before, requests_before, "pve1")
        moved = {
            t.vmid
            for t in emu.cluster.task_order[tasks_before:]
            if t.type in MIGRATIONS
            and t.exitstatus == "OK"
            and emu.cluster.guests[t.vmid].node != "pve1"
        }
        if moved and len(moved) < run.movable:
            run.lb_link_moved_s = before(moved)
    finally:
        emu.stop()
    return run


def available(tool: str) -> bool:
    module = {"proxlb": "proxlb", "pvecontrol": "pvecontrol"}.get(tool)
    return module is None or importlib.util.find_spec(module) is not None


# --------------------------------------------------------------------------------------------
# Rebalance: pvetool vs CP-SAT vs ProxLB

REBALANCE_SIZES = ((8, 200), (24, 800), (50, 2000), (100, 5000))
THRESHOLD = 0.10


def skewed_text(nodes: int, guests: int, seed: int) -> str:
    """A generated cluster made unbalanced: running guests moved (seeded) from the upper three
    quarters of the nodes onto the first quarter while those stay under 90 % committed."""
    import random

    text = generate_cluster(nodes, guests, seed=seed, fleet="mixed")
    rng = random.Random(seed)
    node_mem = {
        m.group(1): int(m.group(2)) * GiB
        for m in re.finditer(r"^  (pve\d+): \{cpus: \d+, memory: (\d+)GiB", text, re.M)
    }
    guest_re = re.compile(r"^(  \d+: \{type: (qemu|lxc), [^\n]*?node: )(pve\d+)(, status: (\w+))")
    mem_re = re.compile(r"memory: (\d+)(MiB|GiB)")
    committed = dict.fromkeys(node_mem, 0)
    lines = text.splitlines()
    parsed: list[tuple[int, str, int]] = []
    for i, line in enumerate(lines):
        m, mm = guest_re.match(line), mem_re.search(line)
        if m and mm and m.group(5) == "running" and "ha" not in line.split("tags")[0]:
            mem = int(mm.group(1)) * (GiB if mm.group(2) == "GiB" else 1024**2)
            committed[m.group(3)] += mem
            parsed.append((i, m.group(3), mem))
    heavy = [f"pve{i}" for i in range(1, max(2, nodes // 4) + 1)]
    for i, node, mem in parsed:
        if node in heavy or rng.random() > 0.35:
            continue
        target = rng.choice(heavy)
        if committed[target] + mem > 0.9 * node_mem[target]:
            continue
        committed[target] += mem
        committed[node] -= mem
        found = guest_re.match(lines[i])
        assert found is not None
        lines[i] = found.group(1) + target + found.group(4) + lines[i][found.end() :]
    return "\n".join(lines) + "\n"


def snapshot_of(text: str) -> Any:
    from pvetool.api import PveClient, fetch_snapshot
    from pvetool.emulator.clusterfile import load_cluster_text
    from pvetool.settings import load_settings

    emu = Emulator(load_cluster_text(text, "<skewed>"), speed=0.0).start()
    try:
        with PveClient(load_settings(env=emu.env(), config_path=None)) as client:
            return fetch_snapshot(client, max_workers=8)
    finally:
        emu.stop()


def loads_of(snap: Any, where: dict[int, str]) -> dict[str, float]:
    mem = {n: 0 for n, e in snap.nodes.items() if e.online}
    for g in snap.guests.values():
        if g.running and where[g.vmid] in mem:
            mem[where[g.vmid]] += g.memory_bytes
    return {n: mem[n] / snap.nodes[n].memory_total_bytes for n in mem}


def pvetool_rebalance(snap: Any, repeat: int = 3) -> dict[str, Any]:
    """pvetool's rebalance plan (strategy, checks and sequencing, as `rebalance --dry-run`
    plans it) on the snapshot; planning time = the best of `repeat` runs, wall and CPU (the
    machine is shared: the best run is the one least disturbed)."""
    from pvetool.planner.build import build_plan, rebalance_spec

    elapsed = cpu = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        plan = build_plan(rebalance_spec("memory", THRESHOLD), snap)
        elapsed = min(elapsed, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    where = {g.vmid: g.node for g in snap.guests.values()}
    for m in plan.moves:
        where[m.vmid] = m.target
    loads = loads_of(snap, where)
    return {
        "moves": len(plan.moves),
        "moved_gib": sum(snap.guests[m.vmid].memory_bytes for m in plan.moves) / GiB,
        "spread": max(loads.values()) - min(loads.values()),
        "plan_s": elapsed,
        "plan_cpu_s": cpu,
        "predicted_s": plan.predicted_makespan_s,
    }


def cpsat_rebalance(snap: Any, time_limit_s: float) -> dict[str, Any] | None:
    """Minimum configured memory moved so that every node's memory load is within THRESHOLD of
    every other's, under each node's limit (memory - 5 % headroom - host use); each running
    guest on an online node may move (HA and affinity rules are not modelled)."""
    try:
        from ortools.sat.python import cp_model
    except ImportError:
        return None
    from pvetool.model import PlanRules
    from pvetool.planner.placement import memory_limit_bytes

    rules = PlanRules()
    nodes = [n for n, e in snap.nodes.items() if e.online]
    guests = [g for g in snap.guests.values() if g.running and g.node in nodes]
    mib = {g.vmid: max(1, g.memory_bytes // 1024**2) for g in guests}
    model = cp_model.CpModel()
    x = {(g.vmid, n): model.new_bool_var(f"x{g.vmid}_{n}") for g in guests for n in nodes}
    for g in guests:
        model.add_exactly_one(x[g.vmid, n] for n in nodes)
    hi, lo = model.new_int_var(0, 2000, "hi"), model.new_int_var(0, 2000, "lo")
    for n in nodes:
        total_mib = snap.nodes[n].memory_total_bytes // 1024**2
        limit_mib = (memory_limit_bytes(snap, n, rules) - snap.host_overhead_bytes(n)) // 1024**2
        load = sum(mib[g.vmid] * x[g.vmid, n] for g in guests)
        model.add(load <= limit_mib)
        model.add(load * 1000 <= hi * total_mib)
        model.add(load * 1000 >= lo * total_mib)
    model.add(hi - lo <= int(THRESHOLD * 1000))
    model.minimize(sum(mib[g.vmid] * (1 - x[g.vmid, g.node]) for g in guests))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 2
    started = time.perf_counter()
    status = solver.solve(model)
    elapsed = time.perf_counter() - started
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return {"status": solver.status_name(status), "plan_s": elapsed}
    where = {g.vmid: g.node for g in snap.guests.values()}
    for g in guests:
        where[g.vmid] = next(n for n in nodes if solver.value(x[g.vmid, n]))
    moved = [g for g in guests if where[g.vmid] != g.node]
    loads = loads_of(snap, where)
    return {
        "status": solver.status_name(status),
        "moves": len(moved),
        "moved_gib": sum(g.memory_bytes for g in moved) / GiB,
        "bound_gib": solver.best_objective_bound / 1024,
        "spread": max(loads.values()) - min(loads.values()),
        "plan_s": elapsed,
    }


def proxlb_rebalance(text: str, snap: Any) -> dict[str, Any] | None:
    if importlib.util.find_spec("proxlb") is None:
        return None
    from pvetool.emulator.clusterfile import load_cluster_text

    emu = Emulator(load_cluster_text(text, "<skewed>"), speed=0.0).start()
    try:
        with tempfile.TemporaryDirectory(prefix="pvetool-proxlb-") as tmp:
            home = Path(tmp)
            token_id, secret = emu.admin_token()
            user, name = token_id.split("!", 1)
            cfg = home / "proxlb.yaml"
            cfg.write_text(
                json.dumps(
                    {
                        "proxmox_api": {
                            "hosts": [f"127.0.0.1:{emu.port}"], "user": user, "token_id": name,
                            "token_secret": secret, "ssl_verification": True, "timeout": 60,
                        },
                        "balancing": {
                            "enable": True, "balance_types": ["vm", "ct"],
                            "balanciness": int(THRESHOLD * 100), "method": "memory",
                            "mode": "assigned", "live": True,
                        },
                        "service": {"daemon": False, "log_level": "WARNING"},
                    }
                )
            )  # fmt: skip
            cfg.chmod(0o600)
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "proxlb", "-c", str(cfg), "--dry-run", "--json"],
                env=child_env(emu, home), capture_output=True, text=True, check=False,
                timeout=1800, cwd=home,
            )  # fmt: skip
            elapsed = time.perf_counter() - started
    finally:
        emu.stop()
    # Its log shares stdout with the JSON: decode the object that starts a line, ignore the rest.
    start = done.stdout.find("\n{") + 1 if not done.stdout.startswith("{") else 0
    try:
        body, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
    except ValueError:
        return {"status": f"unparsed output (rc {done.returncode})", "plan_s": elapsed}
    where = {g.vmid: g.node for g in snap.guests.values()}
    moved = []
    for entry in (body.get("guests") or {}).values():
        vmid, target = int(entry.get("id", 0)), entry.get("node_target")
        if vmid in where and target and target != where[vmid]:
            where[vmid] = target
            moved.append(vmid)
    loads = loads_of(snap, where)
    return {
        "status": f"rc {done.returncode}",
        "moves": len(moved),
        "moved_gib": sum(snap.guests[v].memory_bytes for v in moved) / GiB,
        "spread": max(loads.values()) - min(loads.values()),
        "plan_s": elapsed,
    }


def rebalance_rows(sizes: tuple[tuple[int, int], ...], cpsat_s: float) -> list[dict[str, Any]]:
    rows = []
    for nodes, guests in sizes:
        text = skewed_text(nodes, guests, seed=nodes)
        snap = snapshot_of(text)
        where = {g.vmid: g.node for g in snap.guests.values()}
        before = loads_of(snap, where)
        row: dict[str, Any] = {
            "nodes": nodes,
            "guests": len(snap.guests),
            "spread_before": max(before.values()) - min(before.values()),
            "pvetool": pvetool_rebalance(snap),
        }
        row["cpsat"] = cpsat_rebalance(snap, cpsat_s) if guests <= 2000 else None
        row["proxlb"] = proxlb_rebalance(text, snap) if guests <= 800 else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# Output


def fmt(value: float | None, spec: str = ".0f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def drain_table(runs: list[Run]) -> list[str]:
    out = [
        "| scenario | tool | clock | exit | migr. | failed | left on pve1 | makespan | exact | "
        "longest task | / LB_dirty | / LB_link | predicted | error | mean compl. | "
        "max downtime | sent/needed | req/migr. | overfilled |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # The bound is the scenario's (the emulator's ground truth), whichever tool's run found it.
    link_lb = {r.scenario: r.lb_link_s for r in runs if r.lb_link_s}
    order = {name: i for i, name in enumerate(SCENARIOS)}
    runs = sorted(
        runs,
        key=lambda r: (
            order.get(r.scenario, len(order)),
            TOOLS.index(r.tool) if r.tool in TOOLS else 0,
        ),
    )
    for r in runs:
        r.lb_link_s = r.lb_link_s or link_lb.get(r.scenario, 0.0)
        out.append(
            f"| {r.scenario} | {r.tool} | x{r.speed:g} | {r.exit_code} | {r.migrations} | "
            f"{r.failed} | {r.left_on_node}/{r.movable} | {fmt(r.makespan_s, '.0f', ' s')} | "
            f"{fmt(r.exact_makespan_s or None, '.1f', ' s')} | "
            f"{fmt(r.longest_task_s or None, '.1f', ' s')} | {fmt(r.ratio, '.2f')} | "
            f"{fmt(r.link_ratio, '.2f')} | "
            f"{fmt(r.predicted_s, '.0f', ' s')} | {fmt(r.prediction_error, '+.0%')} | "
            f"{fmt(r.mean_completion_s, '.0f', ' s')} | {fmt(r.max_downtime_s, '.2f', ' s')} | "
            f"{fmt(r.bytes_ratio, '.2f')} | {fmt(r.requests_per_migration, '.1f')} | "
            f"{r.overfilled_nodes} |"
        )
    return out


def rebalance_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| nodes / guests | spread before | tool | status | moves | GiB moved | spread after | "
        "planning |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for tool in ("pvetool", "cpsat", "proxlb"):
            r = row.get(tool)
            if r is None:
                out.append(
                    f"| {row['nodes']} / {row['guests']} | {row['spread_before']:.1%} | {tool} "
                    "| not run | | | | |"
                )
                continue
            bound = f" (bound {r['bound_gib']:.1f})" if "bound_gib" in r else ""
            out.append(
                f"| {row['nodes']} / {row['guests']} | {row['spread_before']:.1%} | {tool} | "
                f"{r.get('status', 'ok')} | {r.get('moves', '-')} | "
                f"{fmt(r.get('moved_gib'), '.1f')}{bound} | {fmt(r.get('spread'), '.1%')} | "
                f"{r['plan_s']:.2f} s |"
            )
    return out


def svg_chart(runs: list[Run]) -> str:
    """Makespan / LB_dirty per scenario and tool, as grouped horizontal bars."""
    scenarios = list(dict.fromkeys(r.scenario for r in runs))
    colors = dict(zip(TOOLS, ("#1f77b4", "#ff7f0e", "#ffbb78", "#2ca02c", "#d62728"), strict=True))
    bar_h, gap, left, width = 9, 10, 200, 460
    rows = [(s, [r for r in runs if r.scenario == s and r.ratio]) for s in scenarios]
    height = 40 + sum(len(rs) * bar_h + gap for _, rs in rows) + 30
    top = max((r.ratio or 0.0) for r in runs if r.ratio) if any(r.ratio for r in runs) else 1.0
    scale = width / max(1.5, top * 1.05)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 140}" height="{height}" '
        'font-family="sans-serif" font-size="10">',
        f'<text x="{left}" y="14" font-size="12">Drain makespan / LB_dirty '
        "(lower is better; 1.0 = physical bound)</text>",
    ]
    y = 30
    for scenario, rs in rows:
        parts.append(f'<text x="{left - 6}" y="{y + 8}" text-anchor="end">{scenario}</text>')
        for r in rs:
            w = (r.ratio or 0.0) * scale
            parts.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 1}" '
                f'fill="{colors.get(r.tool, "#999")}"/>'
            )
            parts.append(f'<text x="{left + w + 3:.1f}" y="{y + 7}">{r.tool} {r.ratio:.2f}</text>')
            y += bar_h
        y += gap
    one = left + scale
    parts.append(
        f'<line x1="{one:.1f}" y1="24" x2="{one:.1f}" y2="{y}" stroke="#000" '
        'stroke-dasharray="3,3"/>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_results(data: dict[str, Any]) -> None:
    runs = [Run(**{k: v for k, v in r.items()}) for r in data.get("drains", [])]
    lines = [
        "# pvetool vs peers: drains and rebalancing (issue 14)",
        "",
        "Regenerated by one command (scenarios, runs, this file and `results.svg`):",
        "",
        "```sh",
        data.get("command", "python bench/peers.py --generate --all --speed 4 --write"),
        "```",
        "",
        f"Run on {data.get('when', '?')} on a shared 2-core machine; emulator clock x"
        f"{data.get('speed', '?')} (each row's clock in its `clock` column when rows of several "
        "runs are merged). Emulated seconds unless said otherwise. Scenario files: "
        "`bench/scenarios/` (seeded; `--generate` rewrites them identically).",
        "",
        "![makespan / lower bound](results.svg)",
        "",
        "## Drains of pve1",
        "",
        *drain_table(runs),
        "",
        "Columns: `migr.` migration tasks started (qmigrate/vzmigrate), `left on pve1` guests",
        "still there after quiescence / guests there before, `makespan` from the first task's",
        "start to the last one's end in PVE's whole-second task times, `exact` the same on the",
        "emulator's exact clock, `longest task` the longest single migration of the run (with",
        "`migrateall-1`, which runs one at a time: the longest guest's migration alone),",
        "`/ LB_dirty` the exact makespan over the lower",
        "bound (docs/timing-model.md, each node's real link), `/ LB_link` over the tighter",
        "bound that also counts the fixed time before the first and after the last byte",
        "(`timing.drain_lower_bounds`), `predicted` pvetool's dry-run",
        "makespan and `error` its error against the makespan on the emulator's exact clock",
        "(the makespan column has PVE's whole-second task times), `overfilled` nodes whose",
        "running guests' configured memory exceeded their",
        "memory at some moment (an incoming guest counted from its migration's start).",
        "",
    ]
    if data.get("rebalance"):
        lines += [
            "## Rebalance by memory, threshold 10 %",
            "",
            *rebalance_table(data["rebalance"]),
            "",
            "CP-SAT: minimum configured memory moved so that every node is within the",
            "threshold of every other, under each node's limit; HA and affinity rules are not",
            "modelled (pvetool's plan honours them, so it may have to move more). ProxLB's",
            "planning time includes its data collection (it sleeps 0.1 s per RRD/version call).",
            "",
        ]
    notes = ROOT / "bench" / "results-notes.md"  # the hand-written reading of these numbers
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    RESULTS_MD.write_text("\n".join(lines) + "\n")
    RESULTS_SVG.write_text(svg_chart(runs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generate", action="store_true", help="(re)write bench/scenarios/")
    ap.add_argument("--all", action="store_true", help="every scenario, tool and rebalance size")
    ap.add_argument("--scenarios", default="", help="comma list (default: all with --all)")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma list of " + ",".join(TOOLS))
    ap.add_argument("--speed", type=float, default=4.0, help="emulator clock (1-4)")
    ap.add_argument("--rebalance", default="", help="sizes NODESxGUESTS,... (e.g. 8x200,24x800)")
    ap.add_argument("--cpsat-s", type=float, default=30.0, help="CP-SAT time limit per size")
    ap.add_argument("--write", action="store_true", help="write RESULTS.md, results.svg/json")
    ap.add_argument("--merge", action="store_true", help="keep earlier results.json rows")
    args = ap.parse_args()
    if args.generate:
        generate_scenarios()
    names = [s for s in args.scenarios.split(",") if s] or (list(SCENARIOS) if args.all else [])
    tools = [t for t in args.tools.split(",") if t]
    data: dict[str, Any] = {"drains": [], "rebalance": []}
    if args.merge and RESULTS_JSON.exists():
        data = json.loads(RESULTS_JSON.read_text())
    for name in names:
        for tool in tools:
            if not available(tool):
                print(f"{name} {tool}: not installed (pip install -e '.[bench]')", flush=True)
                continue
            run = one_run(name, tool, args.speed)
            data["drains"] = [
                r for r in data["drains"] if (r["scenario"], r["tool"]) != (name, tool)
            ] + [asdict(run)]
            print(json.dumps(asdict(run)), flush=True)
    sizes = (
        REBALANCE_SIZES
        if args.all and not args.rebalance
        else tuple(
            (int(a), int(b)) for a, b in (s.split("x") for s in args.rebalance.split(",") if s)
        )
    )
    if sizes:
        data["rebalance"] = rebalance_rows(sizes, args.cpsat_s)
    data["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    data["speed"] = args.speed
    if args.write:
        RESULTS_JSON.write_text(json.dumps(data, indent=1) + "\n")
        write_results(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
