"""Access endpoints: /access/permissions (pve-access-control `src/PVE/API2/AccessControl.pm`
`permissions`, l.509-574).

/access/ticket (login) is the server's, not a registered endpoint: it runs before a caller is
known.

Imports: stdlib and the emulator's own modules.
"""

from __future__ import annotations

from typing import Any

from pvetool.emulator.cluster import PveError
from pvetool.emulator.permissions import Caller
from pvetool.emulator.routing import Ctx, endpoint


@endpoint("GET", "/access/permissions")
def get_permissions(ctx: Ctx) -> Any:
    """Each caller may dump its own permissions (a user also its tokens'), others' need
    Sys.Audit on /access (l.549-558); with `path` only that path (even without privileges),
    else RPCEnvironment.pm get_effective_permissions."""
    caller = ctx.caller
    userid = str(ctx.params.get("userid") or caller.authid)
    if userid != caller.authid and userid.split("!", 1)[0] != caller.authid:
        caller.check("/access", ["Sys.Audit"])
    model = caller.model
    if model is None:
        raise PveError(500, "no access model")
    path = ctx.params.get("path")
    if path:
        return {str(path): dict(sorted(model.permissions(userid, str(path)).items()))}
    return model.effective(userid)


__all__ = ["Caller"]
