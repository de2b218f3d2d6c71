"""Rolling-maintenance hook for the end-to-end tests: "reboots" the node being maintained.

Run by pvetool without a shell, with PVETOOL_NODE (the node), PVETOOL_HOOK (the stage label)
and the connection variables PVETOOL_HOST, PVETOOL_TOKEN, PVETOOL_VERIFY in its environment
(the plan says ``pass_credentials: true``).
It talks to the emulator's HTTPS control API (``/_emulator/nodes/{node}/offline|online``),
appends one line per call to ``--log FILE`` so the test can check what ran, and exits:

    emulator_hook.py reboot [--down-s 0.3] --log FILE   node offline, wait, node online; 0
    emulator_hook.py check --log FILE                   0 when the node is online, else 1
    emulator_hook.py fail --log FILE                    exit 1 (a failed upgrade)

Standard library only (it must run anywhere a hook runs).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.request
from typing import Any


def _context() -> ssl.SSLContext:
    verify = os.environ.get("PVETOOL_VERIFY", "true")
    if verify.lower() in ("0", "false", "no", "off"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if os.path.exists(verify):
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()


def call(method: str, path: str) -> Any:
    host = os.environ["PVETOOL_HOST"].split(",")[0].strip()
    request = urllib.request.Request(
        f"https://{host}/_emulator/{path}",
        method=method,
        data=b"{}" if method == "POST" else None,
        headers={
            "Authorization": f"PVEAPIToken={os.environ['PVETOOL_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, context=_context(), timeout=15) as answer:
        return json.loads(answer.read() or b"null")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["reboot", "check", "fail"])
    ap.add_argument("--down-s", type=float, default=0.3)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    node = os.environ["PVETOOL_NODE"]
    with open(args.log, "a", encoding="utf-8") as log:
        log.write(f"{args.action} {node} {os.environ.get('PVETOOL_HOOK', '')}\n")
    if args.action == "fail":
        print(f"upgrade of {node} failed (simulated)")
        return 1
    if args.action == "reboot":
        call("POST", f"nodes/{node}/offline")
        time.sleep(args.down_s)
        call("POST", f"nodes/{node}/online")
        print(f"{node} rebooted")
        return 0
    state = call("GET", "state")["data"]
    online = bool(state["nodes"][node]["online"])
    print(f"{node} is {'online' if online else 'offline'}")
    return 0 if online else 1


if __name__ == "__main__":
    sys.exit(main())
