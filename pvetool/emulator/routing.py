"""The emulator's one router: a registry of endpoints, for PVE's API and the control routes.

Handlers register with ``@endpoint(method, template)``: PVE's own paths under ``/api2/json``
(``/nodes/{node}/qemu/{vmid}/migrate``, the modules of `endpoints` follow PVE's URL tree) and
the emulator's control routes under ``/_emulator/`` (`endpoints/control.py`). `resolve` maps a
request to its template and path parameters; `dispatch` serves an API call in pve-manager's order
(`PVE/HTTPServer.pm` `rest_handler`, l.143-215): the handler is found (501 otherwise), the
caller's permissions are checked against the schema's `permissions` entry with the raw parameters
(`check_api2_permissions`, before any validation), a call proxied to an offline node fails there
(595), and only then are the parameters validated against the packaged official schema and the
handler run under the cluster lock. A handler may return `WithTotal(data, total)`: the answer
then carries `total` (pve-manager `rest_handler` l.208-210, only when nonzero).
`dispatch_control` serves a control call (the caller must have every privilege; the body is a
JSON object).

Imports: stdlib, werkzeug routing, and the emulator's own modules.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from pvetool.emulator.clock import Clock
from pvetool.emulator.cluster import OFFLINE_REASON, Cluster, PveError
from pvetool.emulator.permissions import Caller
from pvetool.emulator.schema import ApiSchema

__all__ = [
    "CONTROL_PREFIX",
    "REGISTRY",
    "Caller",
    "ControlTarget",
    "Ctx",
    "Handler",
    "Registry",
    "RequestStats",
    "WithTotal",
    "check_permissions",
    "dispatch",
    "dispatch_control",
    "endpoint",
]

CONTROL_PREFIX = "/_emulator/"


@dataclass
class WithTotal:
    """A handler's data plus PVE's `total` result attribute (task logs, task lists)."""

    data: Any
    total: int


@dataclass
class RequestStats:
    """Requests served under /api2/json, in all and per endpoint (``GET /nodes``)."""

    requests: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)


class ControlTarget(Protocol):
    """What the control routes act on: the running emulator (`server.Emulator`)."""

    cluster: Cluster
    clock: Clock
    stats: RequestStats

    def locked(self) -> contextlib.AbstractContextManager[Cluster]: ...

    def state(self) -> dict[str, Any]: ...

    def fail_requests(
        self,
        count: int,
        status: int = 503,
        path: str | None = None,
        method: str | None = None,
        reason: str | None = None,
        drop: bool = False,
    ) -> None: ...

    def slow_requests(
        self, seconds: float, count: int = 1_000_000, path: str | None = None
    ) -> None: ...

    def clear_faults(self) -> None: ...

    def expire_tickets(self) -> None: ...


@dataclass
class Ctx:
    """One call: the cluster, the caller, its parameters (path, query and body together)."""

    cluster: Cluster
    caller: Caller
    params: dict[str, Any]
    method: str
    template: str
    target: ControlTarget | None = None  # control routes only
    serving_node: str | None = None  # the node whose pveproxy serves the call

    @property
    def emulator(self) -> ControlTarget:
        if self.target is None:
            raise RuntimeError(f"{self.template} is not a control route")
        return self.target


Handler = Callable[[Ctx], Any]


class Registry:
    """Every endpoint by (method, template); a template under /_emulator/ is a control route."""

    def __init__(self) -> None:
        self.handlers: dict[tuple[str, str], Handler] = {}
        self._map: Map | None = None

    def endpoint(self, method: str, template: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.handlers[(method, template)] = fn
            self._map = None
            return fn

        return register

    def api_routes(self) -> set[tuple[str, str]]:
        """(method, template) of every PVE API endpoint (the control routes left out)."""
        return {key for key in self.handlers if not _is_control(key[1])}

    def resolve(self, path: str, method: str, *, control: bool) -> tuple[str, dict[str, str]]:
        """(template, path parameters) of a call; PVE's 501 for unknown paths and methods."""
        if self._map is None:
            templates = dict.fromkeys(template for _, template in self.handlers)
            rules = [Rule(t.replace("{", "<").replace("}", ">"), endpoint=t) for t in templates]
            self._map = Map(rules, strict_slashes=False, merge_slashes=False)
        adapter = self._map.bind("localhost")
        try:
            template, args = adapter.match(path, method="GET")
        except (NotFound, MethodNotAllowed):
            raise _not_implemented(method, path, control) from None
        if (method, template) not in self.handlers or _is_control(template) != control:
            raise _not_implemented(method, path, control)
        return template, {k: str(v) for k, v in args.items()}


def _is_control(template: str) -> bool:
    return template.startswith(CONTROL_PREFIX)


def _not_implemented(method: str, path: str, control: bool) -> PveError:
    if control:
        return PveError(501, f"no control endpoint {method} {path}")
    # pve-manager PVE/HTTPServer.pm rest_handler (l.148-151): the path without /api2/json.
    return PveError(501, f"Method '{method} {path}' not implemented")


REGISTRY = Registry()
endpoint = REGISTRY.endpoint


def check_permissions(
    schema_def: Mapping[str, Any], caller: Caller, params: Mapping[str, Any]
) -> None:
    """pve-access-control `RPCEnvironment.pm` `check_api2_permissions` (l.549-566) and
    `exec_api2_perm_check` (l.459-492): root@pam passes, `user => 'all'` passes, else the
    `check` (`perm`, `and`, `or`) with the path's `{param}`s filled from the raw parameters."""
    perms = schema_def.get("permissions") or {}
    if caller.authid == "root@pam":
        return
    if perms.get("user") in ("all", "world"):
        return
    check = perms.get("check")
    if not check:
        raise PveError(403, "Permission check failed (user != root@pam)")
    _exec_check(check, caller, params, noerr=False)


def _exec_check(check: list[Any], caller: Caller, params: Mapping[str, Any], noerr: bool) -> bool:
    test = check[0]
    if test == "and":
        return all(_exec_check(sub, caller, params, noerr) for sub in check[1:])
    if test == "or":
        if any(_exec_check(sub, caller, params, True) for sub in check[1:]):
            return True
        if noerr:
            return False
        raise PveError(403, "Permission check failed")
    if test != "perm":
        return True  # userid-group and friends: not on any endpoint the emulator serves
    path: str = check[1]
    privs: list[str] = list(check[2])
    options = dict(zip(check[3::2], check[4::2], strict=False))
    require = options.get("require_param")
    if require and params.get(require) is None:
        if noerr:
            return False
        raise PveError(403, "Permission check failed")
    for key, value in params.items():
        path = path.replace("{" + key + "}", str(value))
    if noerr:
        return caller.has(path, privs, any_of=bool(options.get("any")))
    caller.check(path, privs, any_of=bool(options.get("any")))
    return True


def dispatch(
    cluster: Cluster,
    schema: ApiSchema,
    caller: Caller,
    method: str,
    path: str,
    raw_params: Mapping[str, Any],
    serving_node: str | None = None,
) -> WithTotal:
    """Serve an /api2/json call (`path` without that prefix): the data PVE would answer, and
    its `total` (0: none)."""
    template, path_params = REGISTRY.resolve(path, method, control=False)
    definition = schema.endpoint(method, template)
    merged: dict[str, Any] = dict(raw_params)
    for key, value in path_params.items():
        if key in merged and str(merged[key]) != value:
            # pve-manager PVE/HTTPServer.pm rest_handler (l.160-168)
            raise PveError(
                400,
                "Parameter verification failed.",
                {key: "duplicate parameter (already defined in URI) with conflicting values!"},
            )
        merged[key] = value
    check_permissions(definition, caller, merged)
    proxyto = definition.get("proxyto")
    if proxyto and proxyto in merged and str(merged[proxyto]) != serving_node:
        # rest_handler l.176-190: proxied before the target node validates anything.
        with cluster.lock:
            node = cluster.nodes.get(str(merged[proxyto]))
            if node is not None and not node.online:
                raise PveError(595, OFFLINE_REASON)
    params = schema.validate_params(method, template, merged)
    handler = REGISTRY.handlers[(method, template)]
    with cluster.lock:
        cluster.sync()
        result = handler(Ctx(cluster, caller, params, method, template, serving_node=serving_node))
    if isinstance(result, WithTotal):
        return result
    return WithTotal(result, 0)


def _reject_constant(name: str) -> Any:
    """json.loads would accept NaN and Infinity; the control API does not."""
    raise ValueError(f"{name} is not a number")


def dispatch_control(
    target: ControlTarget, caller: Caller, method: str, path: str, body: bytes
) -> Any:
    """Serve a /_emulator/ call (`path` with that prefix; `body` JSON, for POST); the handler
    locks what it needs. A missing or malformed value in the body is a 400."""
    if not caller.is_superuser:
        raise PveError(403, "Permission check failed (/_emulator, all privileges)")
    values: dict[str, Any] = {}
    if method == "POST" and body:
        try:
            loaded = json.loads(body, parse_constant=_reject_constant)
        except ValueError as exc:
            raise PveError(400, f"control body must be JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise PveError(400, "control body must be a JSON object")
        values = loaded
    template, path_params = REGISTRY.resolve(path, method, control=True)
    handler = REGISTRY.handlers[(method, template)]
    try:
        return handler(Ctx(target.cluster, caller, values | path_params, method, template, target))
    except (KeyError, ValueError, TypeError) as exc:
        raise PveError(400, f"bad control request: {exc}") from None
