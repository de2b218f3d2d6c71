"""Benchmark: the CLI at fleet size (issue 14): `check drain`, `drain --dry-run` and `status`
against one emulator serving a generated 100-node / 5,000-guest cluster, and `pvetool --help`.

The emulator runs in its own process (`python -m pvetool.emulator serve`, clock stopped: only
reads are measured); each command runs as a fresh `pvetool` process, as a user would run it.
Per command: wall time, the emulator's request count for it (`GET /_emulator/stats` before and
after), and the exit code. `--help` is timed over a few runs (best of), with the modules
`python -X importtime` reports as the costliest. A benchmark, not a test: nothing is asserted.

    python bench/fleet.py [--nodes 100] [--guests 5000] [--seed 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
# What the `pvetool` console script runs (`python -m pvetool` may not exist in every version).
PVETOOL = [sys.executable, "-c", "import sys; from pvetool.cli.main import main; sys.exit(main())"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def serve(cluster: Path, tls_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pvetool.emulator", "serve", "--cluster", str(cluster),
         "--port", "0", "--tls-dir", str(tls_dir), "--speed", "0"],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    exports: dict[str, str] = {}
    assert proc.stdout is not None
    while len(exports) < 3:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the emulator did not start")
        m = re.match(r"export (PVETOOL_\w+)=(.*)$", line.strip())
        if m:
            exports[m.group(1)] = m.group(2).strip("'")
    return proc, exports


def request_count(exports: dict[str, str]) -> int:
    host = exports["PVETOOL_HOST"].split(",")[0]
    s = requests.Session()
    s.trust_env = False
    answer = s.get(
        f"https://{host}/_emulator/stats",
        verify=exports["PVETOOL_VERIFY"],
        headers={"Authorization": f"PVEAPIToken={exports['PVETOOL_TOKEN']}"},
        timeout=30,
    )
    answer.raise_for_status()
    body = answer.json()
    return int(body.get("data", body)["requests"])


def run_cli(args: list[str], exports: dict[str, str], state_dir: Path) -> dict[str, Any]:
    env = {**_env(), **exports, "PVETOOL_STATE_DIR": str(state_dir)}
    before = request_count(exports)
    started = time.perf_counter()
    done = subprocess.run([*PVETOOL, *args], env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    calls = request_count(exports) - before - 0  # the stats call itself is counted after
    return {
        "command": "pvetool " + " ".join(args),
        "wall_s": round(wall_s, 2),
        "requests": calls,
        "exit": done.returncode,
        "stderr_tail": done.stderr.strip().splitlines()[-1:] if done.returncode else [],
    }


def help_time(runs: int = 5) -> dict[str, Any]:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([*PVETOOL, "--help"], env=_env(), capture_output=True, check=True)
        best = min(best, time.perf_counter() - started)
    bare = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)
        bare = min(bare, time.perf_counter() - started)
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", *PVETOOL[1:], "--help"],
        env=_env(), capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    top: list[tuple[int, str]] = []
    total_us = 0
    for line in trace.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) <= 1:  # top-level imports only: their cumulative time
            top.append((int(m.group(2)), m.group(4)))
            total_us += int(m.group(2))
    top.sort(reverse=True)
    return {
        "help_s": round(best, 3),
        "python_startup_s": round(bare, 3),
        "imports_s": round(total_us / 1e6, 3),
        "top_imports": [f"{name} {us / 1000:.0f} ms" for us, name in top[:6]],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--guests", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    result: dict[str, Any] = {"nodes": args.nodes, "guests": args.guests, "seed": args.seed}
    result["help"] = help_time()
    print(json.dumps(result["help"], indent=1), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Path(tmp) / "cluster.yaml"
        cluster.write_text(
            subprocess.run(
                [sys.executable, "-m", "pvetool.emulator", "generate", "--nodes",
                 str(args.nodes), "--guests", str(args.guests), "--seed", str(args.seed)],
                check=True, capture_output=True, text=True, env=_env(),
            ).stdout
        )  # fmt: skip
        proc, exports = serve(cluster, Path(tmp) / "tls")
        rows = []
        try:
            for cli in (["status"], ["check", "drain", "pve1"], ["drain", "pve1", "--dry-run"]):
                rows.append(run_cli(cli, exports, Path(tmp) / "state"))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        result["commands"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
