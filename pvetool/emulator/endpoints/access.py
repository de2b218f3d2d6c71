"""Access endpoints: /access/permissions (pve-access-control `PVE/API2/AccessControl.pm`).

/access/ticket (login) is the server's, not a registered endpoint: it runs before a caller is
known.

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

from typing import Any

from pvetool.emulator.routing import Ctx, endpoint

__all__ = ["ALL_PRIVS"]


ALL_PRIVS = (
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.Audit",
    "Mapping.Audit",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "SDN.Audit",
    "SDN.Use",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "VM.Audit",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Monitor",
    "VM.GuestAgent.Audit",
)


@endpoint("GET", "/access/permissions")
def get_permissions(ctx: Ctx) -> Any:
    privs = ctx.caller.privileges
    names = sorted(ALL_PRIVS) if privs is None else sorted(privs)
    path = ctx.params.get("path")
    paths = [path] if path else ["/", "/vms", "/nodes", "/storage"]
    return {p: {name: 1 for name in names} for p in paths}
