"""Rolling-maintenance hook of the chaos campaign: "reboots" the node pvetool maintains.

pvetool runs it without a shell with PVETOOL_NODE set (and its own environment, which is where
the campaign puts CHAOS_CONTROL_URL, CHAOS_CONTROL_TOKEN and CHAOS_CONTROL_CA: one emulator
listener reached directly, never through the proxy that dies in failover trials: the hook is
the operator's script, not the code under test).

    hook.py reboot --down-s 0.4 --pids DIR   node offline, wait, node online; exit 0
    hook.py check --pids DIR                 exit 0 when the node is online, else 1

It writes its PID into DIR while it runs, so that the campaign can wait for a hook whose pvetool
was killed (-9) and stop it by its PID at the end of the trial. It prints nothing secret.

Standard library only: it must run anywhere a hook runs.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def call(method: str, path: str) -> Any:
    request = urllib.request.Request(
        f"{os.environ['CHAOS_CONTROL_URL']}/_emulator/{path}",
        method=method,
        data=b"{}" if method == "POST" else None,
        headers={
            "Authorization": f"PVEAPIToken={os.environ['CHAOS_CONTROL_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    context = ssl.create_default_context(cafile=os.environ["CHAOS_CONTROL_CA"])
    with urllib.request.urlopen(request, context=context, timeout=15) as answer:
        return json.loads(answer.read() or b"null")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["reboot", "check"])
    ap.add_argument("--down-s", type=float, default=0.4)
    ap.add_argument("--pids", required=True)
    args = ap.parse_args()
    node = os.environ["PVETOOL_NODE"]
    mark = Path(args.pids) / str(os.getpid())
    mark.write_text(f"{args.action} {node}\n", encoding="utf-8")
    try:
        if args.action == "reboot":
            call("POST", f"nodes/{node}/offline")
            time.sleep(args.down_s)
            call("POST", f"nodes/{node}/online")
            print(f"{node} rebooted")
            return 0
        online = bool(call("GET", "state")["data"]["nodes"][node]["online"])
        print(f"{node} is {'online' if online else 'offline'}")
        return 0 if online else 1
    finally:
        mark.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
