"""Chaos campaign: many seeded trials of drains, rolling maintenance and rebalances under faults.

Each trial (scenario, seed) starts the emulator as a process, runs pvetool through its command
line while a seeded schedule of the emulator's faults fires and pvetool may be killed (-9) and
resumed, then checks the invariants against the emulator's own state (tests/chaos/README.md).
Trial i of a campaign uses seed `--seed + i` and the scenarios in turn.

    python bench/chaos.py --runs 200                      # every scenario, seeds 1..200
    python bench/chaos.py --runs 40 --seed 1000 --jobs 2
    python bench/chaos.py --scenario lab-drain --seed 17 --runs 1 -v    # one trial, verbose

Prints one line per trial, then a table per scenario (runs, passes, trials with a violation of
each invariant, kills, faults fired, mean duration) and every violation with its reproducer.
Exits 1 when any trial violated an invariant. Failed trials keep their folder (pvetool's
outputs, reports, journals, the emulator's stderr) under `--workdir`.

The emulator's clock runs 30-50x faster than real time here (a test of behaviour, not a
measurement of speed). Imports: the standard library and tests.chaos.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chaos.cluster import reap_all  # noqa: E402
from tests.chaos.invariants import INVARIANTS  # noqa: E402
from tests.chaos.schedule import SCENARIOS  # noqa: E402
from tests.chaos.trial import (  # noqa: E402
    TrialResult,
    describe_trial,
    reproducer,
    run_trial,
    summary_line,
)

SHORT = {
    "exactly-once": "once",
    "no-double-migration": "twice",
    "memory": "mem",
    "report-truth": "report",
    "exit-code": "exit",
    "no-leftovers": "left",
    "clean-output": "crash",
    "no-secret": "secret",
    "terminates": "hang",
    "harness": "harness",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="number of trials (default 20)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the first trial (default 1)")
    ap.add_argument(
        "--scenario",
        default="all",
        help=f"all (default), or a comma list of: {', '.join(SCENARIOS)}",
    )
    ap.add_argument(
        "--trial",
        action="append",
        default=[],
        metavar="SCENARIO:SEED",
        help="run exactly these trials (repeatable) instead of --runs/--seed/--scenario",
    )
    ap.add_argument("--repeat", type=int, default=1, help="run each trial this many times")
    ap.add_argument("--jobs", type=int, default=1, help="trials at once (default 1)")
    ap.add_argument("--workdir", type=Path, help="where trial folders go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the folders of passing trials too")
    ap.add_argument("--json", type=Path, help="write every trial's result to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each trial's schedule")
    ap.add_argument(
        "--describe", action="store_true", help="only print each trial's schedule, run nothing"
    )
    args = ap.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if args.runs < 1 or args.jobs < 1 or args.repeat < 1:
        ap.error("--runs, --repeat and --jobs must be at least 1")
    args.scenarios = names
    args.trials = []
    for item in args.trial:
        scenario, _, seed = item.partition(":")
        if scenario not in SCENARIOS or not seed.isdigit():
            ap.error(f"--trial {item!r}: expected SCENARIO:SEED, e.g. lab-drain:17")
        args.trials.append((scenario, int(seed)))
    if args.trials:
        args.scenarios = [n for n in SCENARIOS if any(t[0] == n for t in args.trials)]
    return args


def table(results: list[TrialResult], scenarios: list[str]) -> list[str]:
    cols = [
        "scenario",
        "runs",
        "pass",
        *[SHORT[i] for i in INVARIANTS],
        "kills",
        "faults",
        "mean s",
    ]
    rows: list[list[str]] = []
    for name in [*scenarios, "total"]:
        chosen = [r for r in results if name == "total" or r.scenario == name]
        if not chosen:
            continue
        per = Counter(inv for r in chosen for inv in {v.invariant for v in r.violations})
        kills = sum(r.evidence.kills for r in chosen if r.evidence)
        faults = sum(r.evidence.faults_fired for r in chosen if r.evidence)
        rows.append(
            [
                name,
                str(len(chosen)),
                str(sum(r.passed for r in chosen)),
                *[str(per.get(i, 0)) for i in INVARIANTS],
                str(kills),
                str(faults),
                f"{statistics.mean(r.duration_s for r in chosen):.1f}",
            ]
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cols, widths, strict=True))
        )
    ]
    for r in rows:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pvetool-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    trials = args.trials or [
        (args.scenarios[i % len(args.scenarios)], args.seed + i) for i in range(args.runs)
    ]
    trials = [t for t in trials for _ in range(args.repeat)]
    print_lock = threading.Lock()
    count = [0]
    if args.describe:
        try:
            for scenario, seed in trials:
                for line in describe_trial(scenario, seed, workdir / f"{scenario}-{seed}"):
                    print(line)
        finally:
            reap_all()
        return 0

    def say(line: str) -> None:
        with print_lock:
            print(line, flush=True)

    def one(trial: tuple[str, int]) -> TrialResult:
        scenario, seed = trial
        log = say if args.verbose else (lambda _line: None)
        with print_lock:
            count[0] += 1
            folder = workdir / f"{scenario}-{seed}-{count[0]}"
        result = run_trial(scenario, seed, folder, log=log, keep=args.keep)
        say(summary_line(result))
        for v in result.violations:
            say(f"    {v}")
        if not result.passed:
            say(f"    reproduce: {reproducer(scenario, seed)}")
        return result

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(one, trials))
    finally:
        reap_all()
    wall = time.monotonic() - started

    print()
    for line in table(results, args.scenarios):
        print(line)
    failed = [r for r in results if not r.passed]
    print(
        f"\n{len(results)} trials in {wall:.0f} s: {len(results) - len(failed)} passed, "
        f"{len(failed)} with violations; folders of failed trials under {workdir}"
    )
    for r in failed:
        print(f"\n{r.scenario} seed {r.seed}: {reproducer(r.scenario, r.seed)}")
        for line in r.description:
            print(f"  {line}")
        for v in r.violations:
            print(f"  VIOLATION {v}")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "scenario": r.scenario,
                        "seed": r.seed,
                        "passed": r.passed,
                        "duration_s": round(r.duration_s, 2),
                        "kills": r.evidence.kills if r.evidence else 0,
                        "faults_fired": r.evidence.faults_fired if r.evidence else 0,
                        "violations": [
                            {"invariant": v.invariant, "detail": v.detail} for v in r.violations
                        ],
                        "trial": r.description,
                    }
                    for r in results
                ],
                indent=2,
            ),
            encoding="utf-8",
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
