"""Benchmark: requests/s of the emulator for GET /cluster/resources, and the server's memory.

Generates a cluster (default 50 nodes, 2,000 guests, seed 1), serves it in a separate process
(`python -m pvetool.emulator serve`), then drives it from this process with a few client threads
over HTTPS for a fixed number of requests. Reports requests/s, latency percentiles, response
size and the server's resident memory (idle after start, and peak after the load), as text and
as JSON (--json). A benchmark, not a test: nothing is asserted.

    pip install -e '.[bench]'
    python bench/emulator.py [--nodes 50] [--guests 2000] [--requests 400] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]


def rss_kib(pid: int, peak: bool = False) -> int:
    """Resident memory of the server process (peak: the high-water mark, where known)."""
    proc = psutil.Process(pid)
    info = proc.memory_full_info() if peak else proc.memory_info()
    if peak:
        status = Path(f"/proc/{pid}/status")
        if status.exists():  # Linux keeps the high-water mark; psutil has no portable one
            m = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.M)
            if m:
                return int(m.group(1))
    return int(info.rss // 1024)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--guests", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, default=400, help="total requests (bounded load)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Path(tmp) / "cluster.yaml"
        t0 = time.perf_counter()
        text = subprocess.run(
            [
                sys.executable,
                "-m",
                "pvetool.emulator",
                "generate",
                "--nodes",
                str(args.nodes),
                "--guests",
                str(args.guests),
                "--seed",
                str(args.seed),
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        generate_s = time.perf_counter() - t0
        cluster.write_text(text)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pvetool.emulator",
                "serve",
                "--cluster",
                str(cluster),
                "--port",
                "0",
                "--tls-dir",
                str(Path(tmp) / "tls"),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        exports: dict[str, str] = {}
        assert proc.stdout is not None
        while len(exports) < 3:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit("the emulator did not start")
            m = re.match(r"export (PVETOOL_\w+)=(.*)$", line.strip())
            if m:
                exports[m.group(1)] = m.group(2).strip("'")
        start_s = time.perf_counter() - t0
        try:
            idle_kib = rss_kib(proc.pid)
            url = f"https://{exports['PVETOOL_HOST'].split(',')[0]}/api2/json/cluster/resources"
            headers = {"Authorization": f"PVEAPIToken={exports['PVETOOL_TOKEN']}"}
            latencies: list[float] = []
            sizes: list[int] = []
            lock = threading.Lock()
            counter = iter(range(args.requests))

            def worker() -> None:
                s = requests.Session()
                s.trust_env = False
                s.verify = exports["PVETOOL_VERIFY"]
                for _ in counter:
                    t = time.perf_counter()
                    r = s.get(url, headers=headers, timeout=60)
                    r.raise_for_status()
                    dt = time.perf_counter() - t
                    with lock:
                        latencies.append(dt)
                        sizes.append(len(r.content))

            threads = [threading.Thread(target=worker) for _ in range(args.clients)]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall_s = time.perf_counter() - t0
            peak_kib = rss_kib(proc.pid, peak=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    lat = sorted(latencies)
    result = {
        "nodes": args.nodes,
        "guests": args.guests,
        "seed": args.seed,
        "clients": args.clients,
        "requests": len(lat),
        "requests_per_s": round(len(lat) / wall_s, 1),
        "latency_ms_p50": round(statistics.median(lat) * 1000, 1),
        "latency_ms_p95": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 1),
        "response_bytes": sizes[0] if sizes else 0,
        "server_rss_mib_idle": round(idle_kib / 1024, 1),
        "server_rss_mib_peak": round(peak_kib / 1024, 1),
        "generate_s": round(generate_s, 2),
        "start_s": round(start_s, 2),
        "cpu_count": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
