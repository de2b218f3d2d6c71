"""The emulator's one router: a registry of endpoints, for PVE's API and the control routes.

Handlers register with ``@endpoint(method, template)``: PVE's own paths under ``/api2/json``
(``/nodes/{node}/qemu/{vmid}/migrate``, the modules of `endpoints` follow PVE's URL tree) and
the emulator's control routes under ``/_emulator/`` (`endpoints/control.py`). `resolve` maps a
request to its template and path parameters; `dispatch` serves an API call (parameters validated
against the packaged official schema, permissions as the schema's `permissions` entries, the
handler under the cluster lock); `dispatch_control` serves a control call (the caller must have
every privilege; the body is a JSON object).

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
from pvetool.emulator.cluster import Cluster, PveError
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
    "check_permissions",
    "dispatch",
    "dispatch_control",
    "endpoint",
]

CONTROL_PREFIX = "/_emulator/"


@dataclass
class Caller:
    """The authenticated caller: `root@pam` or `root@pam!pvetool`; privileges None = all."""

    authid: str
    privileges: frozenset[str] | None

    @property
    def user(self) -> str:
        return self.authid.split("!", 1)[0]

    def has(self, privs: list[str], any_of: bool = False) -> bool:
        if self.privileges is None:
            return True
        if any_of:
            return any(p in self.privileges for p in privs)
        return all(p in self.privileges for p in privs)


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
    return PveError(501, f"Method '{method} /api2/json{path}' not implemented")


REGISTRY = Registry()
endpoint = REGISTRY.endpoint


def check_permissions(
    schema_def: Mapping[str, Any], caller: Caller, params: Mapping[str, Any]
) -> None:
    """The schema's ``permissions: {check: [perm, path, [privs], any, 1]}`` against the caller."""
    perms = schema_def.get("permissions") or {}
    check = perms.get("check")
    if not check or check[0] != "perm":
        return
    path: str = check[1]
    privs: list[str] = list(check[2])
    any_of = len(check) > 4 and check[3] == "any" and bool(check[4])
    for key, value in params.items():
        path = path.replace("{" + key + "}", str(value))
    if not caller.has(privs, any_of):
        raise PveError(403, f"Permission check failed ({path}, {'|'.join(privs)})")


def dispatch(
    cluster: Cluster,
    schema: ApiSchema,
    caller: Caller,
    method: str,
    path: str,
    raw_params: Mapping[str, Any],
) -> Any:
    """Serve an /api2/json call (`path` without that prefix): the data PVE would answer."""
    template, path_params = REGISTRY.resolve(path, method, control=False)
    definition = schema.endpoint(method, template)
    merged: dict[str, Any] = dict(raw_params)
    merged.update(path_params)
    params = schema.validate_params(method, template, merged)
    check_permissions(definition, caller, params)
    handler = REGISTRY.handlers[(method, template)]
    with cluster.lock:
        cluster.sync()
        return handler(Ctx(cluster, caller, params, method, template))


def dispatch_control(
    target: ControlTarget, caller: Caller, method: str, path: str, body: bytes
) -> Any:
    """Serve a /_emulator/ call (`path` with that prefix; `body` JSON, for POST); the handler
    locks what it needs. A missing or malformed value in the body is a 400."""
    if caller.privileges is not None:
        raise PveError(403, "Permission check failed (/_emulator, all privileges)")
    values: dict[str, Any] = {}
    if method == "POST" and body:
        try:
            loaded = json.loads(body)
        except ValueError:
            raise PveError(400, "control body must be JSON") from None
        if not isinstance(loaded, dict):
            raise PveError(400, "control body must be a JSON object")
        values = loaded
    template, path_params = REGISTRY.resolve(path, method, control=True)
    handler = REGISTRY.handlers[(method, template)]
    try:
        return handler(Ctx(target.cluster, caller, values | path_params, method, template, target))
    except (KeyError, ValueError, TypeError) as exc:
        raise PveError(400, f"bad control request: {exc}") from None
