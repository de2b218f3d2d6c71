"""Benchmark: how fast the planner plans, and how good its predicted schedules are.

Part 1, planning cost: generated clusters of 10, 50 and 100 nodes with 20 guests per node
(mixed fleet, 10 GbE, secure), served by the emulator and read through the real client
(`fetch_snapshot`); then the time of `build_plan` for a drain of one node and for a rebalance
by memory (threshold 10 %), and its peak Python memory (tracemalloc, a second run: tracing slows
Python down). The snapshot itself is not counted (it is the same for every plan).

Part 2, schedule quality: generated clusters of 10 nodes x 20 guests on 1, 10 and 25 GbE,
secure and insecure migration, light and mixed fleets; drains of pve1..pve3 with caps and
order chosen by the planner. Reports the predicted makespan, LB_dirty and LB_pure of the drain
(docs/timing-model.md), which link or stream bounds it, the caps chosen, and makespan / LB_dirty.

A benchmark, not a test: nothing is asserted. Deterministic (seeded) apart from the timings.

    python bench/plan.py [--sizes 10,50,100] [--guests-per-node 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pvetool.api import PveClient, fetch_snapshot  # noqa: E402
from pvetool.emulator.clusterfile import load_cluster_text  # noqa: E402
from pvetool.emulator.fleet import generate_cluster  # noqa: E402
from pvetool.emulator.server import Emulator  # noqa: E402
from pvetool.model import ClusterSnapshot, ExecutionPlan  # noqa: E402
from pvetool.planner.build import build_plan, drain_spec, rebalance_spec  # noqa: E402
from pvetool.planner.spec import PlanSpec  # noqa: E402
from pvetool.settings import load_settings  # noqa: E402

LINKS = {"1GbE": 1e9, "10GbE": 10e9, "25GbE": 25e9}


def snapshot_of(text: str) -> tuple[ClusterSnapshot, float]:
    emu = Emulator(load_cluster_text(text, "<generated>"), speed=0.0).start()
    try:
        started = time.perf_counter()
        with PveClient(load_settings(env=emu.env(), config_path=None)) as client:
            snap = fetch_snapshot(client, max_workers=16)
        return snap, time.perf_counter() - started
    finally:
        emu.stop()


def measured(
    spec: PlanSpec, snap: ClusterSnapshot, link: float
) -> tuple[ExecutionPlan, float, int]:
    # Timed without tracemalloc (it slows Python down several times), then measured with it.
    started = time.perf_counter()
    plan = build_plan(spec, snap, link_bits_per_s=link)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    build_plan(spec, snap, link_bits_per_s=link)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return plan, elapsed, peak


def part1(sizes: list[int], per_node: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for nodes in sizes:
        text = generate_cluster(nodes, nodes * per_node, seed=seed, fleet="mixed")
        snap, fetch_s = snapshot_of(text)
        for what, spec in (
            ("drain pve1", drain_spec(["pve1"])),
            ("rebalance memory 10%", rebalance_spec("memory", 0.10)),
        ):
            plan, elapsed, peak = measured(spec, snap, 10e9)
            rows.append(
                {
                    "nodes": nodes,
                    "guests": len(snap.guests),
                    "plan": what,
                    "fetch_s": round(fetch_s, 2),
                    "plan_s": round(elapsed, 3),
                    "peak_mib": round(peak / 1024**2, 1),
                    "moves": len(plan.moves),
                    "blocked": len(plan.blocked),
                    "makespan_s": plan.predicted_makespan_s,
                    "caps": f"{plan.caps.cluster}/{plan.caps.per_source}/{plan.caps.per_target}",
                }
            )
            print_row(rows[-1], PART1_COLUMNS)
    return rows


def part2(per_node: int, seed: int, drains: int) -> list[dict[str, Any]]:
    rows = []
    for fleet in ("light", "mixed"):
        for mtype in ("secure", "insecure"):
            for link_name, link in LINKS.items():
                text = generate_cluster(
                    10,
                    10 * per_node,
                    seed=seed,
                    link=f"{link / 1e9:g}Gbit",
                    migration_type=mtype,
                    fleet=fleet,
                )
                snap, _ = snapshot_of(text)
                ratios = []
                first: dict[str, Any] | None = None
                for node in list(snap.nodes)[:drains]:
                    plan = build_plan(drain_spec([node]), snap, link_bits_per_s=link)
                    stage = plan.stages[0]
                    if not stage.moves or stage.bounds is None:
                        continue
                    ratio = stage.predicted_makespan_s / stage.bounds.lb_dirty_s
                    ratios.append(ratio)
                    if first is None:
                        first = {
                            "node": node,
                            "moves": len(stage.moves),
                            "makespan_s": stage.predicted_makespan_s,
                            "lb_dirty_s": round(stage.bounds.lb_dirty_s, 1),
                            "lb_pure_s": round(stage.bounds.lb_pure_s, 1),
                            "bound_by": stage.bounds.bound_by.split(" (")[0],
                            "caps": f"{plan.caps.cluster}/{plan.caps.per_source}/"
                            f"{plan.caps.per_target}",
                        }
                if first is None:
                    continue
                row = {
                    "fleet": fleet,
                    "migration": mtype,
                    "link": link_name,
                    **first,
                    "ratio": round(ratios[0], 2),
                    "mean_ratio": round(statistics.mean(ratios), 2),
                    "max_ratio": round(max(ratios), 2),
                }
                rows.append(row)
                print_row(row, PART2_COLUMNS)
    return rows


PART1_COLUMNS = [
    ("nodes", 5),
    ("guests", 6),
    ("plan", 21),
    ("fetch_s", 7),
    ("plan_s", 7),
    ("peak_mib", 8),
    ("moves", 5),
    ("blocked", 7),
    ("makespan_s", 10),
    ("caps", 7),
]
PART2_COLUMNS = [
    ("fleet", 5),
    ("migration", 9),
    ("link", 5),
    ("node", 4),
    ("moves", 5),
    ("makespan_s", 10),
    ("lb_dirty_s", 10),
    ("lb_pure_s", 9),
    ("bound_by", 17),
    ("caps", 6),
    ("ratio", 5),
    ("mean_ratio", 10),
    ("max_ratio", 9),
]


def print_header(columns: list[tuple[str, int]]) -> None:
    print("  ".join(name.ljust(width) for name, width in columns))
    print("  ".join("-" * width for _, width in columns))


def print_row(row: dict[str, Any], columns: list[tuple[str, int]]) -> None:
    print("  ".join(str(row.get(name, "")).ljust(width) for name, width in columns), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,50,100", help="node counts for part 1")
    ap.add_argument("--guests-per-node", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--drains", type=int, default=3, help="nodes drained per cluster in part 2")
    ap.add_argument("--skip-part1", action="store_true")
    ap.add_argument("--skip-part2", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    result: dict[str, Any] = {"seed": args.seed, "guests_per_node": args.guests_per_node}
    if not args.skip_part1:
        print("Planning time and peak memory (build_plan; 10 GbE, secure, mixed fleet)")
        print_header(PART1_COLUMNS)
        result["planning"] = part1(sizes, args.guests_per_node, args.seed)
        print()
    if not args.skip_part2:
        print(f"Predicted drain makespan vs LB_dirty (10 nodes, drains of pve1..pve{args.drains})")
        print_header(PART2_COLUMNS)
        result["schedules"] = part2(args.guests_per_node, args.seed, args.drains)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
