"""Benchmark: how close pvetool's drains come to the physical limit, next to PVE's `migrateall`.

For each generated cluster (`pvetool.emulator.clusterfile.generate_cluster`: link 1/10/25 GbE,
secure or insecure migration, light or mixed fleet) the emulator runs in this process with its
clock at `--speed` times real time, and pve1 is drained three ways on a fresh copy each:

* ``pvetool``: `build_plan(drain_spec(["pve1"], with_local_disks=True))` run by the executor
  over HTTPS (the same code as `pvetool drain`), polling tasks every `--poll` real seconds;
* ``migrateall-1`` / ``migrateall-4``: PVE's own ``POST /nodes/pve1/migrateall`` to the node
  with the most free memory, ``maxworkers`` 1 and 4 (PVE's sliding window, VMID string order).

Measured from the emulator's own task start/end times (emulated seconds): the makespan (first
task start to last migration end) and its ratio to LB_dirty (docs/timing-model.md, computed
from the emulator's ground truth: each guest's RAM in use, dirty profile and local-disk bytes),
the mean completion time per guest, the max guest-visible downtime, bytes sent / bytes needed
(RAM + local disks; live qemu migrations), API calls per migration, and failed migrations.
A benchmark, not a test: nothing is asserted.

pvetool talks HTTPS to the emulator (each call costs real milliseconds, i.e. `speed` times as
many emulated ones), while `migrateall` runs inside it; keep `--speed` low (default 5, with a
0.2 s poll = PVE's own 1 s) or pvetool's per-call overhead is inflated in the results.

    python bench/drain.py                       # a small matrix (4 nodes, 24 guests, 10 GbE)
    python bench/drain.py --full --json out.json  # 1/10/25 GbE x secure/insecure x light/mixed
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pvetool.api import PveClient, fetch_snapshot  # noqa: E402
from pvetool.emulator.clusterfile import load_cluster_text  # noqa: E402
from pvetool.emulator.fleet import generate_cluster  # noqa: E402
from pvetool.emulator.server import Emulator  # noqa: E402
from pvetool.operate import RunSetup, run_plan  # noqa: E402
from pvetool.planner.build import build_plan, drain_spec  # noqa: E402
from pvetool.settings import WaitPolicy, load_settings  # noqa: E402
from pvetool.timing import (  # noqa: E402
    LbGuest,
    TimingParams,
    drain_lower_bounds,
    link_goodput_Bps,
    stream_cap_Bps,
)

# bench/peers.py counts what a copy of a local volume sends (a live drive-mirror of a block
# device sends all of it); the lower bounds here count the same.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import disk_copy_bytes  # noqa: E402

MIGRATIONS = ("qmigrate", "vzmigrate")
START_EPOCH = 1_790_000_000.0


@dataclass
class Result:
    config: str
    strategy: str
    guests: int = 0
    moved: int = 0
    failed: int = 0
    makespan_s: float = 0.0
    lb_dirty_s: float = 0.0
    lb_pure_s: float = 0.0
    bound_by: str = ""
    mean_completion_s: float = 0.0
    max_downtime_s: float = 0.0
    bytes_ratio: float | None = None
    api_calls_per_migration: float = 0.0
    real_s: float = 0.0
    predicted_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        return self.makespan_s / self.lb_dirty_s if self.lb_dirty_s else None


def lower_bounds(emu: Emulator, node: str, secure: bool) -> tuple[float, float, str]:
    """LB_pure and LB_dirty of draining `node`, from the emulator's ground truth."""
    c = emu.cluster
    params: TimingParams = c.params
    uplink = link_goodput_Bps(c.spec.nodes[node].link_bits_per_s)
    others = [n for n in c.spec.nodes if n != node]
    downlink = max(link_goodput_Bps(c.spec.nodes[n].link_bits_per_s) for n in others)
    cap = min(stream_cap_Bps(params, secure, None), uplink, downlink)
    guests = []
    for g in c.guests.values():
        if g.node != node or g.spec.template:
            continue
        local = float(sum(disk_copy_bytes(emu, g, d) for d in c.local_disks(g)))
        ram = float(g.used_bytes) if (g.type == "qemu" and g.status == "running") else 0.0
        if ram == 0.0 and local == 0.0:
            continue
        guests.append(LbGuest(ram, local, g.dirty, cap))
    if not guests:
        return 0.0, 0.0, "-"
    lb = drain_lower_bounds(guests, uplink, params, secure)
    return lb.lb_pure_s, lb.lb_dirty_s, lb.bound_by


def measure(emu: Emulator, result: Result, since_event: int, requests_before: int) -> None:
    """Fill `result` from the emulator's tasks and events after `since_event`."""
    c = emu.cluster
    with emu.locked():
        events = c.events[since_event:]
        starts = {e["upid"]: e["t"] for e in events if e["event"] == "migration-start"}
        ends = {e["upid"]: e["t"] for e in events if e["event"] == "task-end"}
        first_any = min(
            (t.starttime for t in c.task_order if t.upid in ends or t.upid in starts),
            default=None,
        )
        tasks = [c.tasks[u] for u in starts]
        requests_after = emu.stats.requests
        guests = {g.vmid: g for g in c.guests.values()}
        sent = needed = 0.0
        downtimes = []
        completions = []
        for t in tasks:
            end = ends.get(t.upid)
            if t.exitstatus == "OK":
                result.moved += 1
            else:
                result.failed += 1
            downtimes.append(float(t.stats.get("guest_downtime_s", 0.0) or 0.0))
            if "sent_bytes" in t.stats and t.vmid is not None:
                g = guests[t.vmid]
                sent += float(t.stats["sent_bytes"])
                needed += g.used_bytes + sum(disk_copy_bytes(emu, g, d) for d in c.local_disks(g))
            if end is not None:
                completions.append(end)
        hamigrate_starts = [
            t.starttime
            for t in c.task_order[-len(c.task_order) :]
            if t.type == "hamigrate" and t.upid in ends
        ]
    if not starts:
        return
    begin = min([*starts.values(), *hamigrate_starts])
    if first_any is not None:
        begin = min(begin, float(first_any))
    last = max(completions) if completions else begin
    result.guests = len(tasks)
    result.makespan_s = last - begin
    result.mean_completion_s = (
        statistics.fmean(e - begin for e in completions) if completions else 0.0
    )
    result.max_downtime_s = max(downtimes, default=0.0)
    result.bytes_ratio = sent / needed if needed else None
    calls = requests_after - requests_before
    result.api_calls_per_migration = calls / max(1, len(tasks))


def run_pvetool(emu: Emulator, node: str, poll_s: float, result: Result) -> None:
    settings = load_settings(env=emu.env(), config_path="/nonexistent")
    client = PveClient(settings)
    snapshot = fetch_snapshot(client)
    plan = build_plan(drain_spec([node], with_local_disks=True), snapshot)
    result.predicted_s = plan.predicted_makespan_s
    if plan.blocked:
        result.notes.append(f"{len(plan.blocked)} blocked")
    since, before = len(emu.cluster.events), emu.stats.requests
    t0 = time.monotonic()
    # The same run path as `pvetool drain` (pvetool.operate), with the bench's poll interval.
    setup = RunSetup(
        wait=WaitPolicy(poll_interval_s=poll_s, max_poll_interval_s=poll_s * 2),
        agent_vmids=frozenset(g.vmid for g in snapshot.guests.values() if g.agent_enabled),
        tick_s=poll_s,
    )
    report = run_plan(client, plan, setup=setup)
    result.real_s = time.monotonic() - t0
    client.close()
    measure(emu, result, since, before)
    bad = [r for r in report.results if not r.ok]
    if bad:
        result.notes.append(f"{len(bad)} not moved: {bad[0].reason[:60]}")


def run_migrateall(emu: Emulator, node: str, workers: int, result: Result) -> None:
    env = emu.env()
    session = requests.Session()
    session.trust_env = False
    session.verify = env["PVETOOL_VERIFY"]
    session.headers["Authorization"] = f"PVEAPIToken={env['PVETOOL_TOKEN']}"
    base = f"https://{env['PVETOOL_HOST'].split(',')[0]}/api2/json"
    state = emu.state()
    target = max(
        (n for n in state["nodes"] if n != node and state["nodes"][n]["online"]),
        key=lambda n: state["nodes"][n]["memory_total"] - state["nodes"][n]["memory_committed"],
    )
    since, before = len(emu.cluster.events), emu.stats.requests
    t0 = time.monotonic()
    answer = session.post(
        f"{base}/nodes/{node}/migrateall",
        data={"target": target, "maxworkers": workers, "with-local-disks": 1},
        timeout=30,
    )
    answer.raise_for_status()
    upid = answer.json()["data"]
    while True:  # what an administrator's script around migrateall does: poll the task
        status = session.get(f"{base}/nodes/{node}/tasks/{upid}/status", timeout=30).json()
        if status["data"]["status"] == "stopped":
            break
        time.sleep(0.05)
    result.real_s = time.monotonic() - t0
    session.close()
    measure(emu, result, since, before)
    result.notes.append(f"all to {target}")


def one_config(
    nodes: int, guests: int, seed: int, link: str, mtype: str, fleet: str, args: Any
) -> list[Result]:
    text = generate_cluster(nodes, guests, seed, link=link, migration_type=mtype, fleet=fleet)
    spec = load_cluster_text(text, "bench.yaml")
    name = f"{nodes}n/{guests}g {link} {mtype} {fleet}"
    results = []
    strategies = ["pvetool"] + ([] if args.no_migrateall else ["migrateall-1", "migrateall-4"])
    for strategy in strategies:
        emu = Emulator(spec, speed=args.speed, start_epoch_s=START_EPOCH).start()
        try:
            result = Result(name, strategy)
            pure, dirty, bound = lower_bounds(emu, "pve1", mtype == "secure")
            result.lb_pure_s, result.lb_dirty_s, result.bound_by = pure, dirty, bound
            if strategy == "pvetool":
                run_pvetool(emu, "pve1", args.poll, result)
            else:
                run_migrateall(emu, "pve1", int(strategy.split("-")[1]), result)
        finally:
            emu.stop()
        results.append(result)
        print(row(result), flush=True)
    return results


HEADER = (
    f"{'cluster':32} {'strategy':13} {'n':>3} {'ok':>3} {'fail':>4} {'makespan':>9} "
    f"{'LB_dirty':>9} {'ratio':>6} {'mean':>7} {'maxdown':>8} {'bytes':>6} {'api/mig':>7} "
    f"{'pred':>7}  notes"
)


def row(r: Result) -> str:
    ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
    data = f"{r.bytes_ratio:.2f}" if r.bytes_ratio is not None else "-"
    pred = f"{r.predicted_s:.0f}" if r.predicted_s is not None else "-"
    return (
        f"{r.config:32} {r.strategy:13} {r.guests:>3} {r.moved:>3} {r.failed:>4} "
        f"{r.makespan_s:>8.0f}s {r.lb_dirty_s:>8.0f}s {ratio:>6} {r.mean_completion_s:>6.0f}s "
        f"{r.max_downtime_s:>7.2f}s {data:>6} {r.api_calls_per_migration:>7.1f} {pred:>7}  "
        + "; ".join(r.notes)
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--guests", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--links", default="10Gbit", help="comma list: 1Gbit,10Gbit,25Gbit")
    ap.add_argument("--types", default="secure,insecure", help="comma list: secure,insecure")
    ap.add_argument("--fleets", default="light,mixed", help="comma list: light,mixed")
    ap.add_argument("--full", action="store_true", help="1/10/25 GbE x both types x both fleets")
    ap.add_argument("--speed", type=float, default=5.0, help="emulated seconds per real second")
    ap.add_argument("--poll", type=float, default=0.2, help="pvetool's task poll in real seconds")
    ap.add_argument("--no-migrateall", action="store_true", help="only pvetool")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    links = ["1Gbit", "10Gbit", "25Gbit"] if args.full else args.links.split(",")
    types = ["secure", "insecure"] if args.full else args.types.split(",")
    fleets = ["light", "mixed"] if args.full else args.fleets.split(",")
    print(
        f"drain of pve1, emulator clock x{args.speed:g}, pvetool polls every {args.poll:g} s "
        f"({args.poll * args.speed:g} emulated s); times in emulated seconds"
    )
    print(HEADER)
    results: list[Result] = []
    for link, mtype, fleet in itertools.product(links, types, fleets):
        results += one_config(args.nodes, args.guests, args.seed, link, mtype, fleet, args)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [{**r.__dict__, "ratio": r.ratio} for r in results],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
