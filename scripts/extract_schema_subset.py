#!/usr/bin/env python3
"""Extract the emulator's subset of the official Proxmox VE 9.2 API schema.

Reads the full api-viewer tree (``schema.json``: a JSON array of path nodes, each with an
``info`` map from HTTP method to method definition, see /work/shared/pve-api/README.md) and writes
``pvetool/emulator/data/pve-api-schema.json``:

    {"provenance": {...},
     "endpoints": {"GET /version": <method definition exactly as in schema.json>, ...}}

Each definition is written on its own line with ``json.dumps(..., sort_keys=True)``, which is
the layout of ``schema.json`` itself, so every packaged definition is a byte-identical substring
of the source file (tests/unit/emulator/test_schema.py checks this).

Usage (from the repository root):

    python3 scripts/extract_schema_subset.py [PATH/TO/schema.json]

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
OUTPUT = REPO_ROOT / "pvetool" / "emulator" / "data" / "pve-api-schema.json"

# (method, template path exactly as in schema.json). Grouped by what the emulator serves.
WANTED: tuple[tuple[str, str], ...] = (
    # versions, nodes, cluster
    ("GET", "/version"),
    ("GET", "/nodes"),
    ("GET", "/nodes/{node}/status"),
    ("GET", "/nodes/{node}/time"),
    ("GET", "/nodes/{node}/version"),
    ("GET", "/nodes/{node}/rrddata"),
    ("GET", "/nodes/{node}/network"),
    ("GET", "/cluster/status"),
    ("GET", "/cluster/resources"),
    ("GET", "/cluster/options"),
    ("GET", "/cluster/tasks"),
    ("GET", "/cluster/nextid"),
    ("GET", "/cluster/replication"),
    ("GET", "/cluster/mapping/pci"),
    ("GET", "/cluster/mapping/usb"),
    ("GET", "/cluster/mapping/dir"),
    # storage
    ("GET", "/storage"),
    ("GET", "/nodes/{node}/storage"),
    ("GET", "/nodes/{node}/storage/{storage}/content"),
    # guests
    ("GET", "/nodes/{node}/qemu"),
    ("GET", "/nodes/{node}/lxc"),
    ("GET", "/nodes/{node}/qemu/{vmid}/config"),
    ("GET", "/nodes/{node}/lxc/{vmid}/config"),
    ("GET", "/nodes/{node}/qemu/{vmid}/pending"),
    ("GET", "/nodes/{node}/lxc/{vmid}/pending"),
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current"),
    ("GET", "/nodes/{node}/lxc/{vmid}/status/current"),
    ("GET", "/nodes/{node}/qemu/{vmid}/rrddata"),
    ("GET", "/nodes/{node}/lxc/{vmid}/rrddata"),
    ("POST", "/nodes/{node}/qemu/{vmid}/agent/ping"),
    # power (offline moves: shut down, migrate, start again)
    ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown"),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/shutdown"),
    ("POST", "/nodes/{node}/lxc/{vmid}/status/start"),
    # migration
    ("GET", "/nodes/{node}/qemu/{vmid}/migrate"),
    ("POST", "/nodes/{node}/qemu/{vmid}/migrate"),
    ("GET", "/nodes/{node}/lxc/{vmid}/migrate"),
    ("POST", "/nodes/{node}/lxc/{vmid}/migrate"),
    ("POST", "/nodes/{node}/migrateall"),
    # tasks
    ("GET", "/nodes/{node}/tasks"),
    ("GET", "/nodes/{node}/tasks/{upid}/status"),
    ("GET", "/nodes/{node}/tasks/{upid}/log"),
    ("DELETE", "/nodes/{node}/tasks/{upid}"),
    # HA
    ("GET", "/cluster/ha/resources"),
    ("GET", "/cluster/ha/resources/{sid}"),
    ("PUT", "/cluster/ha/resources/{sid}"),
    ("GET", "/cluster/ha/status/current"),
    ("GET", "/cluster/ha/status/manager_status"),
    ("GET", "/cluster/ha/rules"),
    ("POST", "/cluster/ha/rules"),
    ("GET", "/cluster/ha/rules/{rule}"),
    ("PUT", "/cluster/ha/rules/{rule}"),
    ("DELETE", "/cluster/ha/rules/{rule}"),
    ("POST", "/cluster/ha/resources/{sid}/migrate"),
    # pools, access
    ("GET", "/pools"),
    ("GET", "/pools/{poolid}"),
    ("POST", "/pools"),  # the run marker (pvetool.state.lock)
    ("DELETE", "/pools"),
    ("GET", "/access/permissions"),
    ("GET", "/access/ticket"),
    ("POST", "/access/ticket"),
)

PROVENANCE_ORIGIN = (
    "The apiSchema array that Proxmox publishes as pve-docs/api-viewer/apidoc.js (the data the "
    "official API viewer renders), converted to plain JSON; byte-identical copy of the file "
    "vendored by GitHub fivetwenty-io/proxmox-apiclient-go, path _data/apidoc.json (git blob "
    "540d0feea06a2e3a5f1f2d9d92eae507c8c4b07e, last changed in commit "
    "28aa38dde5f5f995dd175cb40d13a0244d0ee0ae, 2026-06-01, 'feat: cover PVE 9.2 API surface'; "
    "snapshot HEAD 6f4d4bfd4aed8542dcf9f237c67c52b1e3455902, 2026-08-21). The exact 9.2.x point "
    "release is not recorded upstream."
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


def render(provenance: dict[str, Any], endpoints: dict[str, dict[str, Any]]) -> str:
    """One endpoint per line, each serialised exactly like schema.json serialises it."""
    lines = [
        '{"provenance": ' + json.dumps(provenance, indent=2, sort_keys=True) + ",",
        ' "endpoints": {',
    ]
    items = [
        f"  {json.dumps(key)}: {json.dumps(defn, sort_keys=True)}"
        for key, defn in endpoints.items()
    ]
    lines.append(",\n".join(items))
    lines.append(" }}")
    return "\n".join(lines) + "\n"


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
    flat = index_tree(json.loads(raw))

    missing = [f"{m} {p}" for m, p in WANTED if (m, p) not in flat]
    if missing:
        print("not in the source schema: " + ", ".join(missing), file=sys.stderr)
        return 2

    endpoints = {f"{m} {p}": flat[(m, p)] for m, p in WANTED}
    provenance = {
        "source_file": source.name,
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "source_bytes": len(raw),
        "pve_version": "9.2",
        "origin": PROVENANCE_ORIGIN,
        "licence": LICENCE,
        "extracted_by": "scripts/extract_schema_subset.py",
        "endpoint_count": len(endpoints),
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render(provenance, endpoints), encoding="utf-8")
    print(f"wrote {len(endpoints)} endpoint definitions to {OUTPUT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
