"""The emulator in the foreground: `pvetool emulator serve` and `python -m pvetool.emulator`.

Prints the shell lines a client needs (`export PVETOOL_HOST=...` etc.), then serves until SIGINT or
SIGTERM. Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pvetool.emulator.clusterfile import ClusterFileError, load_cluster
from pvetool.emulator.fleet import generate_cluster
from pvetool.emulator.server import Emulator


def parse_token(text: str) -> tuple[str, str]:
    """`user@realm!id=secret` -> (token id, secret)."""
    token_id, sep, secret = text.partition("=")
    if not sep or "!" not in token_id or "@" not in token_id or not secret:
        raise ValueError("a token must look like user@realm!tokenid=secret")
    return token_id, secret


def serve(
    cluster: str,
    port: int = 8006,
    speed: float = 1.0,
    tokens: Sequence[str] = (),
    host: str = "127.0.0.1",
    tls_dir: Path | None = None,
    api_hosts: int = 1,
    out: TextIO = sys.stdout,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    auth_failure_delay_s: float = 0.0,
) -> int:
    """Serve `cluster` (a file or `lab`) until a signal or `stop` comes; return the exit code.
    Listener i stands for the pveproxy of the cluster's i-th node."""
    spec = load_cluster(cluster)
    extra = [parse_token(t) for t in tokens]
    emu = Emulator(
        spec,
        speed=speed,
        host=host,
        tls_dir=tls_dir,
        extra_tokens=extra,
        auth_failure_delay_s=auth_failure_delay_s,
    )
    stop = stop or threading.Event()
    try:
        emu.add_listener(port)
        for _ in range(api_hosts - 1):
            emu.add_listener(0)
        token_id, secret = extra[0] if extra else emu.admin_token()
        out.write(f"export PVETOOL_HOST={emu.host_list}\n")
        out.write(f"export PVETOOL_TOKEN='{token_id}={secret}'\n")
        out.write(f"export PVETOOL_VERIFY={emu.tls.ca_file}\n")
        out.write(
            f"# emulated cluster '{spec.name}': {len(spec.nodes)} nodes, "
            f"{len(spec.guests)} guests, clock x{speed:g}; Ctrl-C stops it\n"
        )
        out.flush()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
        if ready is not None:
            ready.set()
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pvetool.emulator",
        description="Serve an emulated Proxmox VE 9.2 cluster over HTTPS.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="serve a cluster until SIGINT/SIGTERM")
    p_serve.add_argument("--cluster", default="lab", help="cluster file, or 'lab' (default)")
    p_serve.add_argument("--port", type=int, default=8006)
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument(
        "--speed", type=float, default=1.0, help="emulated seconds per real second (default 1)"
    )
    p_serve.add_argument("--token", action="append", default=[], metavar="ID=SECRET")
    p_serve.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        help="where to write the CA and certificate (default: a temp folder)",
    )
    p_serve.add_argument(
        "--api-hosts",
        type=int,
        default=1,
        help="number of API listeners (extra ones on free ports), one per node in file order",
    )
    p_serve.add_argument(
        "--auth-failure-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay failed authentications as pveproxy does (PVE: 3; default 0)",
    )
    p_gen = sub.add_parser("generate", help="print a generated cluster file")
    p_gen.add_argument("--nodes", type=int, required=True)
    p_gen.add_argument("--guests", type=int, required=True)
    p_gen.add_argument("--seed", type=int, default=0)
    p_gen.add_argument("--link", default="10Gbit")
    p_gen.add_argument("--migration-type", default="secure", choices=["secure", "insecure"])
    p_gen.add_argument("--fleet", default="mixed", choices=["light", "mixed"])
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            sys.stdout.write(
                generate_cluster(
                    args.nodes, args.guests, args.seed, args.link, args.migration_type, args.fleet
                )
            )
            return 0
        if not 0 <= args.auth_failure_delay <= 60:
            raise ValueError("--auth-failure-delay must be 0..60 seconds")
        return serve(
            args.cluster,
            args.port,
            args.speed,
            args.token,
            args.host,
            args.tls_dir,
            args.api_hosts,
            auth_failure_delay_s=args.auth_failure_delay,
        )
    except (ClusterFileError, ValueError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
