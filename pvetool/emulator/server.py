"""The emulator's HTTPS server: PVE wire format, authentication, fault injection, control API.

`Emulator` bundles a `Cluster` with one or more HTTPS listeners (several listeners stand for
several API hosts of one cluster, so clients can fail over). It runs in-process in a thread
(`start()` / `stop()`), which is how tests use it, or in the foreground (`serve_forever()`), which
is what `pvetool emulator serve` does.

Wire format as in ../shared/pve-api/README.md: `/api2/json/...`, `{"data": ...}`, errors in the
HTTP reason phrase with `{"data": null, "errors": {...}, "message": "..."}`, API tokens
(`Authorization: PVEAPIToken=user@realm!id=secret`) and tickets (`PVEAuthCookie` cookie plus
`CSRFPreventionToken` header on writes).

Fault injection and a read-only state dump live under `/_emulator/`, outside `/api2`; both trees
are served from the one endpoint registry (`routing`, handlers in `endpoints`).

Imports: stdlib, werkzeug, and the emulator's own modules.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from pvetool.emulator.certs import TlsFiles, make_tls_files
from pvetool.emulator.clock import Clock
from pvetool.emulator.cluster import Cluster, PveError
from pvetool.emulator.endpoints import ALL_PRIVS
from pvetool.emulator.faults import RequestFaults
from pvetool.emulator.routing import Caller, RequestStats, dispatch, dispatch_control
from pvetool.emulator.schema import ApiSchema, ParamError
from pvetool.emulator.specs import ClusterSpec, TokenSpec, UserSpec

TICKET_LIFETIME_S = 7200.0
SERVER_HEADER = "pve-api-daemon/3.0"


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the emulator's callers print what matters themselves."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


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
        self._ticket_key = secrets.token_bytes(32)
        self.tickets: dict[str, Ticket] = {}
        self._tickets_lock = threading.Lock()
        self.request_faults = RequestFaults()
        self.stats = RequestStats()
        self._servers: list[BaseWSGIServer | None] = []
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.tls.cert_file), str(self.tls.key_file))
        return ctx

    def add_listener(self, port: int = 0) -> int:
        """Start one more HTTPS listener (another API host of the same cluster)."""
        server = make_server(
            self.host,
            port,
            self.wsgi,
            threaded=True,
            ssl_context=self._ssl_context(),
            request_handler=_QuietHandler,
        )
        server.timeout = 0.5
        self._servers.append(server)
        thread = threading.Thread(
            target=server.serve_forever, name=f"emulator-{server.port}", daemon=True
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

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def host_list(self) -> str:
        return ",".join(f"{self.host}:{p}" for p in self.ports)

    def admin_token(self) -> tuple[str, str]:
        """(token id, secret) of the first token with every privilege."""
        for t in self.tokens.values():
            if t.privileges is None:
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
        try:
            response = self._api(request, api_path)
        except PveError as exc:
            response = self._error(exc)
        except ParamError as exc:
            response = self._error(PveError(400, "Parameter verification failed.", exc.errors))
        return response(environ, start_response)

    def _drop(self, environ: Mapping[str, Any]) -> None:
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

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
        reason = exc.reason.replace("\n", " ").strip()
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

    def _api(self, request: Request, api_path: str) -> Response:
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
        data = dispatch(self.cluster, self.schema, caller, method, path, params)
        key = f"{method} {path}"
        self.stats.by_endpoint[key] = self.stats.by_endpoint.get(key, 0) + 1
        return self._json(200, "OK", {"data": data})

    # -- auth -------------------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> Caller:
        header = request.headers.get("Authorization", "")
        if header.startswith("PVEAPIToken"):
            value = header[len("PVEAPIToken") :].lstrip("=: ").strip()
            token_id, sep, secret = value.partition("=")
            token = self.tokens.get(token_id)
            if not sep or token is None or not hmac.compare_digest(token.secret, secret):
                raise PveError(401, "Authentication failed!")
            return Caller(
                token_id, None if token.privileges is None else frozenset(token.privileges)
            )
        cookie = request.cookies.get("PVEAuthCookie")
        if not cookie:
            raise PveError(401, "No ticket")
        with self._tickets_lock:
            ticket = self.tickets.get(cookie)
        if ticket is None or time.monotonic() - ticket.issued_real_s > TICKET_LIFETIME_S:
            raise PveError(401, "permission denied - invalid PVE ticket")
        if request.method != "GET":
            csrf = request.headers.get("CSRFPreventionToken", "")
            if not hmac.compare_digest(csrf, ticket.csrf):
                raise PveError(401, "Permission denied - invalid csrf token")
        user = self.users.get(ticket.authid)
        privs = None if user is None or user.privileges is None else frozenset(user.privileges)
        return Caller(ticket.authid, privs)

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
        privs = sorted(ALL_PRIVS) if user.privileges is None else sorted(user.privileges)
        cap = {
            "vms": {p: 1 for p in privs if p.startswith("VM.")},
            "nodes": {p: 1 for p in privs if p.startswith("Sys.")},
            "storage": {p: 1 for p in privs if p.startswith("Datastore.")},
        }
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
