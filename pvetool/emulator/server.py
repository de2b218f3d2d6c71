"""The emulator's HTTPS server: PVE wire format, authentication, fault injection, control API.

`Emulator` bundles a `Cluster` with one or more HTTPS listeners (several listeners stand for
several API hosts of one cluster, so clients can fail over). It runs in-process in a thread
(`start()` / `stop()`), which is how tests use it, or in the foreground (`serve_forever()`), which
is what `pvetool emulator serve` does.

Wire format as in ../shared/pve-api/README.md: `/api2/json/...`, `{"data": ...}` (plus `total`
where PVE sets it), errors in the HTTP reason phrase (the message's first line, pve-http-server
`src/PVE/APIServer/AnyEvent.pm` `response` l.306-315) with `{"data": null, "errors": {...},
"message": "..."}`, API tokens (`Authorization: PVEAPIToken=user@realm!id=secret`) and tickets
(`PVEAuthCookie` cookie or `Authorization: PVEAuthCookie=...`, plus `CSRFPreventionToken` on
writes). Connections are kept alive and TLS handshakes run off the accept loop (`httpd`).

Each listener stands for one node's pveproxy (`listener i` -> the i-th node unless given):
`/version` answers with that node's version and calls for that node are not proxied.

Fault injection and a read-only state dump live under `/_emulator/`, outside `/api2`; both trees
are served from the one endpoint registry (`routing`, handlers in `endpoints`).

Imports: stdlib, werkzeug, and the emulator's own modules.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from pvetool.emulator import endpoints  # noqa: F401  (importing it registers every handler)
from pvetool.emulator.certs import TlsFiles, make_tls_files
from pvetool.emulator.clock import Clock
from pvetool.emulator.cluster import Cluster, PveError
from pvetool.emulator.faults import RequestFaults
from pvetool.emulator.httpd import DROP_KEY, HttpsServer
from pvetool.emulator.permissions import AccessModel, Caller
from pvetool.emulator.routing import RequestStats, dispatch, dispatch_control
from pvetool.emulator.schema import ApiSchema, ParamError
from pvetool.emulator.specs import ClusterSpec, TokenSpec, UserSpec

TICKET_LIFETIME_S = 7200.0
SERVER_HEADER = "pve-api-daemon/3.0"

# pve-http-server AnyEvent.pm (l.1617-1618): "always delay unauthorized calls by 3 seconds".
# The emulator's default is 0 so that tests stay fast; `auth_failure_delay_s` restores it.
PVE_AUTH_FAILURE_DELAY_S = 3.0


@dataclass
class Ticket:
    authid: str
    csrf: str
    issued_real_s: float


class Emulator:
    """A running emulated PVE cluster: state, HTTPS listeners, faults."""

    def __init__(
        self,
        spec: ClusterSpec,
        speed: float = 1.0,
        start_epoch_s: float | None = None,
        host: str = "127.0.0.1",
        tls_dir: Path | None = None,
        extra_tokens: Iterable[tuple[str, str]] = (),
        auth_failure_delay_s: float = 0.0,
        keepalive_timeout_s: float = 5.0,
    ) -> None:
        self.spec = spec
        self.clock = Clock(speed=speed, start_epoch_s=start_epoch_s)
        self.cluster = Cluster(spec, self.clock)
        self.schema = ApiSchema.load()
        self.host = host
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if tls_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pvetool-emulator-")
            tls_dir = Path(self._tmp.name)
        self.tls: TlsFiles = make_tls_files(tls_dir, ("localhost", host))
        self.tokens: dict[str, TokenSpec] = {t.id: t for t in spec.tokens}
        for token_id, secret in extra_tokens:
            self.tokens[token_id] = TokenSpec(id=token_id, secret=secret, privileges=None)
        self.users: dict[str, UserSpec] = {u.id: u for u in spec.users}
        # A token given on the command line has every privilege; its user is implied.
        implied = tuple(
            UserSpec(owner, secrets.token_hex(16), None)
            for owner in {t.split("!", 1)[0] for t, _ in extra_tokens}
            if owner not in self.users and owner != "root@pam"
        )
        self.access = AccessModel.from_spec(
            dataclasses.replace(
                spec, tokens=tuple(self.tokens.values()), users=spec.users + implied
            )
        )
        self.auth_failure_delay_s = auth_failure_delay_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self._ticket_key = secrets.token_bytes(32)
        self.tickets: dict[str, Ticket] = {}
        self._tickets_lock = threading.Lock()
        self.request_faults = RequestFaults()
        self.stats = RequestStats()
        self._servers: list[HttpsServer | None] = []
        self._threads: list[threading.Thread] = []
        self.listener_nodes: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.tls.cert_file), str(self.tls.key_file))
        return ctx

    def add_listener(self, port: int = 0, node: str | None = None) -> int:
        """Start one more HTTPS listener (another API host of the same cluster): the pveproxy of
        `node` (default: the next node in cluster-file order)."""
        names = list(self.cluster.nodes)
        if node is None:
            node = names[len(self._servers) % len(names)]
        elif node not in self.cluster.nodes:
            raise ValueError(f"no such node {node!r} to serve the API from")
        server = HttpsServer(
            self.host,
            port,
            self.wsgi,
            self._ssl_context(),
            listener_index=len(self._servers),
            idle_timeout_s=self.keepalive_timeout_s,
        )
        self._servers.append(server)
        self.listener_nodes.append(node)
        thread = threading.Thread(
            target=server.serve_forever,
            # How often the accept loop looks at shutdown(): stopping a listener (every test's
            # teardown, failover trials) waits up to this long.
            kwargs={"poll_interval": 0.05},
            name=f"emulator-{server.port}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()
        return int(server.port)

    def start(self, ports: Iterable[int] = (0,)) -> Emulator:
        for port in ports:
            self.add_listener(port)
        return self

    def close_listener(self, index: int) -> None:
        """Take one API host away (its clients get connection refused)."""
        server = self._servers[index]
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
            self._servers[index] = None

    def stop(self) -> None:
        for i in range(len(self._servers)):
            self.close_listener(i)
        for thread in self._threads:
            thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ports(self) -> list[int]:
        return [int(s.port) for s in self._servers if s is not None]

    def node_of_port(self, port: int) -> str:
        """The node whose pveproxy the listener on `port` stands for."""
        for server, node in zip(self._servers, self.listener_nodes, strict=True):
            if server is not None and server.port == port:
                return node
        raise KeyError(port)

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def host_list(self) -> str:
        return ",".join(f"{self.host}:{p}" for p in self.ports)

    def admin_token(self) -> tuple[str, str]:
        """(token id, secret) of the first token with every privilege."""
        for t in self.tokens.values():
            if Caller(t.id, self.access).is_superuser:
                return t.id, t.secret
        raise RuntimeError("the cluster file defines no token with all privileges")

    def env(self) -> dict[str, str]:
        token_id, secret = self.admin_token()
        return {
            "PVETOOL_HOST": self.host_list,
            "PVETOOL_TOKEN": f"{token_id}={secret}",
            "PVETOOL_VERIFY": str(self.tls.ca_file),
        }

    # -- Python fault API (the same as over HTTP) ----------------------------------------------
    def fail_requests(
        self,
        count: int,
        status: int = 503,
        path: str | None = None,
        method: str | None = None,
        reason: str | None = None,
        drop: bool = False,
    ) -> None:
        """Fail the next `count` matching API requests with `status` (or drop the connection)."""
        self.request_faults.fail(count, status, path, method, reason, drop)

    def slow_requests(
        self, seconds: float, count: int = 1_000_000, path: str | None = None
    ) -> None:
        """Hold the next `count` matching API answers back by `seconds` (real time)."""
        self.request_faults.slow_down(seconds, count, path)

    def clear_faults(self) -> None:
        self.request_faults.clear()

    def expire_tickets(self) -> None:
        with self._tickets_lock:
            self.tickets.clear()

    @contextlib.contextmanager
    def locked(self) -> Iterator[Cluster]:
        """The cluster, synced and locked, for direct manipulation (tests, control API)."""
        with self.cluster.lock:
            self.cluster.sync()
            yield self.cluster

    def state(self) -> dict[str, Any]:
        with self.locked() as c:
            return c.dump()

    # -- WSGI -----------------------------------------------------------------------------------
    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        path = request.path
        if path.startswith("/_emulator/") or path == "/_emulator":
            response = self._control(request)
            return response(environ, start_response)
        if not path.startswith("/api2/json/") and path != "/api2/json":
            response = self._error(
                PveError(501, f"Method '{request.method} {path}' not implemented")
            )
            return response(environ, start_response)
        api_path = path[len("/api2/json") :] or "/"
        self.stats.requests += 1
        fault = self.request_faults.take_failure(request.method, api_path)
        if fault is not None:
            if fault.drop:
                self._drop(environ)
                return []
            return self._error(PveError(fault.status, fault.reason))(environ, start_response)
        delay = self.request_faults.take_delay_s(api_path)
        if delay:
            time.sleep(delay)
        index = environ.get("emulator.listener", 0)
        node = self.listener_nodes[index] if index < len(self.listener_nodes) else None
        try:
            response = self._api(request, api_path, node)
        except PveError as exc:
            if exc.status == 401 and self.auth_failure_delay_s:
                time.sleep(self.auth_failure_delay_s)
            response = self._error(exc)
        except ParamError as exc:
            response = self._error(PveError(400, "Parameter verification failed.", exc.errors))
        return response(environ, start_response)

    def _drop(self, environ: Mapping[str, Any]) -> None:
        drop = environ.get(DROP_KEY)
        if callable(drop):
            drop()  # raises: the connection ends without an answer

    def _json(self, status: int, reason: str, body: Any) -> Response:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        resp = Response(payload, status=f"{status} {reason}")
        resp.headers["Server"] = SERVER_HEADER
        resp.headers["Cache-Control"] = "max-age=0"
        resp.headers["Pragma"] = "no-cache"
        resp.headers["Expires"] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
        if payload:
            resp.headers["Content-Type"] = "application/json;charset=UTF-8"
        return resp

    def _error(self, exc: PveError) -> Response:
        # pve-http-server AnyEvent.pm response (l.306-315): the reason phrase is the first line
        # of the message; one that still holds a CR becomes a plain "400 Bad Request".
        reason = exc.reason.split("\n", 1)[0]
        if "\r" in reason:
            return self._json(400, "Bad Request", None)
        if exc.status in (401, 595, 596):
            return self._json(exc.status, reason, None)
        body: dict[str, Any] = {"data": None, "message": exc.reason.rstrip("\n") + "\n"}
        if exc.errors:
            body["errors"] = exc.errors
        return self._json(exc.status, reason, body)

    def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key in request.args:
            values = request.args.getlist(key)
            params[key] = values if len(values) > 1 else values[0]
        if request.method in ("POST", "PUT"):
            ctype = request.mimetype or ""
            if ctype == "application/json":
                try:
                    body = json.loads(request.get_data() or b"{}")
                except ValueError:
                    raise PveError(
                        400,
                        "Parameter verification failed.",
                        {"_root": "unable to parse JSON body"},
                    ) from None
                if isinstance(body, dict):
                    params.update(body)
            else:
                for key in request.form:
                    values = request.form.getlist(key)
                    params[key] = values if len(values) > 1 else values[0]
        return params

    def _api(self, request: Request, api_path: str, node: str | None = None) -> Response:
        method = request.method
        if method == "HEAD":
            raise PveError(501, "method 'HEAD' not available")
        if api_path.rstrip("/") == "/access/ticket":
            if method == "POST":
                return self._login(request)
            if method == "GET":
                return self._json(200, "OK", {"data": None})
        caller = self._authenticate(request)
        params = self._params(request)
        path = unquote(api_path)
        result = dispatch(self.cluster, self.schema, caller, method, path, params, node)
        key = f"{method} {path}"
        self.stats.by_endpoint[key] = self.stats.by_endpoint.get(key, 0) + 1
        body: dict[str, Any] = {"data": result.data}
        if result.total:
            body["total"] = result.total
        return self._json(200, "OK", body)

    # -- auth -------------------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> Caller:
        """pve-http-server AnyEvent.pm (l.1573-1596): the ticket from the PVEAuthCookie cookie,
        else from `Authorization: PVEAuthCookie=...`, else an API token from `Authorization:
        PVEAPIToken=...`, each URI-unescaped (Formatter.pm extract_auth_value, l.78-88); then
        pve-manager PVE/HTTPServer.pm auth_handler (l.84-131): any failed token or ticket check
        is "Authentication failed!", no credentials "No ticket"."""
        cookie_header = request.headers.get("Cookie", "")
        auth_header = request.headers.get("Authorization", "")
        ticket = _auth_value(cookie_header, "PVEAuthCookie") or _auth_value(
            auth_header, "PVEAuthCookie"
        )
        if not ticket:
            api_token = _auth_value(auth_header, "PVEAPIToken")
            if api_token:
                token_id, sep, secret = api_token.partition("=")
                token = self.tokens.get(token_id)
                if not sep or token is None or not hmac.compare_digest(token.secret, secret):
                    raise PveError(401, "Authentication failed!")
                return Caller(token_id, self.access)
            raise PveError(401, "No ticket")
        with self._tickets_lock:
            known = self.tickets.get(ticket)
        if known is None or time.monotonic() - known.issued_real_s > TICKET_LIFETIME_S:
            raise PveError(401, "Authentication failed!")
        if request.method != "GET":
            csrf = request.headers.get("CSRFPreventionToken", "")
            if not hmac.compare_digest(csrf, known.csrf):
                raise PveError(401, "Permission denied - invalid csrf token")
        return Caller(known.authid, self.access)

    def _login(self, request: Request) -> Response:
        params = self._params(request)
        self.schema.validate_params("POST", "/access/ticket", params)
        username = str(params.get("username", ""))
        realm = params.get("realm")
        if realm and "@" not in username:
            username = f"{username}@{realm}"
        user = self.users.get(username)
        password = str(params.get("password", ""))
        if user is None or not hmac.compare_digest(user.password, password):
            raise PveError(401, "authentication failure")
        now_hex = f"{int(self.cluster.now):08X}"
        plain = f"PVE:{username}:{now_hex}"
        sig = base64.b64encode(hmac.new(self._ticket_key, plain.encode(), hashlib.sha256).digest())
        ticket = f"{plain}::{sig.decode()}"
        csrf_sig = (
            base64.b64encode(
                hmac.new(self._ticket_key, f"csrf:{ticket}".encode(), hashlib.sha256).digest()
            )
            .decode()
            .rstrip("=")
        )
        csrf = f"{now_hex}:{csrf_sig}"
        with self._tickets_lock:
            self.tickets[ticket] = Ticket(username, csrf, time.monotonic())
        cap = _api_capabilities(self.access, username)
        return self._json(
            200,
            "OK",
            {
                "data": {
                    "username": username,
                    "ticket": ticket,
                    "CSRFPreventionToken": csrf,
                    "clustername": self.spec.name,
                    "cap": cap,
                }
            },
        )

    # -- control API ---------------------------------------------------------------------------
    def _control(self, request: Request) -> Response:
        try:
            caller = self._authenticate(request)
            data = dispatch_control(
                self, caller, request.method, unquote(request.path), request.get_data()
            )
            return self._json(200, "OK", {"data": data})
        except PveError as exc:
            return self._error(exc)


def _auth_value(header: str, key: str) -> str | None:
    """pve-http-server Formatter.pm extract_auth_value (l.78-88)."""
    if not header:
        return None
    match = re.search(rf"(?:^|\s){re.escape(key)}(?:=| )([^;]*)", header)
    if match is None or not match.group(1):
        return None
    return unquote(match.group(1))


# pve-access-control RPCEnvironment.pm compute_api_permission (l.178-239): the `cap` of a login.
_CAP_RE = {
    "vms": r"VM\.|Permissions\.Modify",
    "access": r"(User|Group)\.|Permissions\.Modify",
    "storage": r"Datastore\.|Permissions\.Modify",
    "nodes": r"Sys\.|Permissions\.Modify",
    "sdn": r"SDN\.|Permissions\.Modify",
    "dc": r"Sys\.Audit|Sys\.Modify|SDN\.",
    "mapping": r"Mapping\.|Permissions.Modify",
}


def _api_capabilities(access: AccessModel, authid: str) -> dict[str, dict[str, int]]:
    res: dict[str, dict[str, int]] = {key: {} for key in _CAP_RE}
    paths = ["/", "/nodes", "/access/groups", "/vms", "/storage", "/sdn", "/mapping"]
    paths += [a.path for a in access.acls if a.path not in paths]
    for path in dict.fromkeys(paths):
        privs = access.permissions(authid, path)
        match = re.match(r"^/(\w+)", path)
        top = match.group(1) if match else "dc"
        if top == "pool":
            for priv in privs:
                if priv.startswith("VM."):
                    res["vms"][priv] = 1
                elif priv.startswith("Datastore."):
                    res["storage"][priv] = 1
                elif priv == "Permissions.Modify":
                    res["storage"][priv] = res["vms"][priv] = 1
            continue
        pattern = _CAP_RE.get(top)
        if pattern is None:
            continue
        for priv in privs:
            if re.match(rf"^({pattern})", priv):
                res[top][priv] = 1
    return {key: dict(sorted(value.items())) for key, value in res.items()}
