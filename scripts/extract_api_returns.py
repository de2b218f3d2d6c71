#!/usr/bin/env python3
"""Extract the ``returns`` schemas the API client checks PVE's answers against.

Reads the official Proxmox VE 9.2 API schema (``schema.json``: the api-viewer tree, see
/work/shared/pve-api/README.md) and writes ``pvetool/api/data/pve-returns.json``:

    {"provenance": {...},
     "returns": {"GET /version": <the method's "returns" exactly as in schema.json>, ...}}

One endpoint per line, each ``returns`` written with ``json.dumps(..., sort_keys=True)``: the
layout of ``schema.json`` itself, so every packaged schema is a byte-identical substring of the
source (tests/unit/api/test_api_schema.py checks this when the source is present, and checks the
packaged file against the SHA-256 recorded in ``pvetool/api/schema.py`` always, so CI without
the source still notices a hand edit). Run it again when the client calls a new endpoint, then
update ``RETURNS_SHA256`` in ``pvetool/api/schema.py`` with the digest it prints.

The client never imports the emulator: this is the client's own copy of the part it needs.

Usage (from the repository root):

    python3 scripts/extract_api_returns.py [PATH/TO/schema.json]

Default source: ``../shared/pve-api/schema.json`` relative to the repository root.
Standard library only. Exit status 2 if the source is missing or lacks a wanted endpoint.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "pve-api" / "schema.json"
OUTPUT = REPO_ROOT / "pvetool" / "api" / "data" / "pve-returns.json"

# Every (method, template path) `pvetool.api.client.PveClient` calls, as schema.json spells it.
WANTED: tuple[tuple[str, str], ...] = (
    ("GET", "/version"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{node}/version"),
    ("GET", "/nodes/{node}/status"),
    ("GET", "/nodes/{node}/network"),
    ("GET", "/nodes/{node}/storage"),
    ("GET", "/cluster/status"),
    ("GET", "/cluster/resources"),
    ("GET", "/cluster/options"),
    ("GET", "/cluster/replication"),
    ("GET", "/storage"),
    ("GET", "/nodes/{node}/qemu/{vmid}/config"),
    ("GET", "/nodes/{node}/lxc/{vmid}/config"),
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current"),
    ("GET", "/nodes/{node}/lxc/{vmid}/status/current"),
    ("POST", "/nodes/{node}/qemu/{vmid}/agent/ping"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/start"),
    ("GET", "/nodes/{node}/qemu/{vmid}/migrate"),
    ("POST", "/nodes/{node}/qemu/{vmid}/migrate"),
    ("GET", "/nodes/{node}/lxc/{vmid}/migrate"),
    ("POST", "/nodes/{node}/lxc/{vmid}/migrate"),
    ("GET", "/cluster/ha/resources"),
    ("GET", "/cluster/ha/status/current"),
    ("GET", "/cluster/ha/rules"),
    ("GET", "/cluster/ha/groups"),
    ("POST", "/cluster/ha/resources/{sid}/migrate"),
    ("GET", "/nodes/{node}/tasks"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"),
    ("DELETE", "/nodes/{node}/tasks/{upid}"),
    ("POST", "/access/ticket"),
)

ORIGIN = (
    "The apiSchema array that Proxmox publishes as pve-docs/api-viewer/apidoc.js (the data the "
    "official API viewer renders), converted to plain JSON; byte-identical copy of the file "
    "vendored by GitHub fivetwenty-io/proxmox-apiclient-go, path _data/apidoc.json (git blob "
    "540d0feea06a2e3a5f1f2d9d92eae507c8c4b07e). Only the 'returns' member of each endpoint the "
    "client calls is kept."
)
LICENCE = (
    "AGPL-3.0-or-later, (c) Proxmox Server Solutions GmbH: the schema text is generated from "
    "Proxmox VE's own source (pve-manager, qemu-server, pve-container, pve-ha-manager, ...)."
)


def index_tree(tree: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Flatten the api-viewer tree into {(METHOD, template path): method definition}."""
    flat: dict[tuple[str, str], dict[str, Any]] = {}
    stack = list(tree)
    while stack:
        node = stack.pop()
        for method, info in (node.get("info") or {}).items():
            flat[(method.upper(), node["path"])] = info
        stack.extend(node.get("children") or [])
    return flat


def render(provenance: dict[str, Any], returns: dict[str, Any]) -> str:
    """One endpoint per line, each ``returns`` serialised exactly like schema.json does."""
    lines = [
        '{"provenance": ' + json.dumps(provenance, indent=2, sort_keys=True) + ",",
        ' "returns": {',
        ",\n".join(
            f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}"
            for key, value in returns.items()
        ),
        " }}",
    ]
    return "\n".join(lines) + "\n"


def build(raw: bytes, source_name: str) -> str:
    """The packaged file's text for the source schema's bytes (SystemExit 2 if incomplete)."""
    flat = index_tree(json.loads(raw))
    missing = [f"{m} {p}" for m, p in WANTED if (m, p) not in flat]
    if missing:
        print("not in the source schema: " + ", ".join(missing), file=sys.stderr)
        raise SystemExit(2)
    returns = {f"{m} {p}": flat[(m, p)].get("returns") or {} for m, p in WANTED}
    provenance = {
        "source_file": source_name,
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "source_bytes": len(raw),
        "pve_version": "9.2",
        "origin": ORIGIN,
        "licence": LICENCE,
        "extracted_by": "scripts/extract_api_returns.py",
        "endpoint_count": len(returns),
    }
    return render(provenance, returns)


def main(argv: list[str]) -> int:
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    source = Path(argv[1]) if len(argv) == 2 else DEFAULT_SOURCE
    try:
        raw = source.read_bytes()
    except OSError as exc:
        print(f"cannot read the PVE schema {source}: {exc.strerror}", file=sys.stderr)
        return 2
    text = build(raw, source.name)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    print(f"wrote {len(WANTED)} return schemas to {OUTPUT.relative_to(REPO_ROOT)}")
    print(f'RETURNS_SHA256 = "{digest}"  (put this into pvetool/api/schema.py)')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
