"""The emulator's HTTPS listener: HTTP/1.1 keep-alive and TLS handshakes as pveproxy does them.

pveproxy (pve-http-server `src/PVE/APIServer/AnyEvent.pm`, configured by pve-manager
`PVE/Service/pveproxy.pm` with `keep_alive => 100`) keeps a client's connection open for up to
100 requests (`$reqstate->{keep_alive}--` per request header, l.1741), closes it after an error
answer (`keep_alive = 0 if $code >= 400`, l.322), on `Connection: close` and for HTTP/1.0
clients without a Connection header (l.1461-1472), and answers with `Connection: Keep-Alive` or
`Connection: close` (l.366-370). Its AnyEvent handles time out after 5 idle seconds
(`$self->{timeout} = 5`, l.2109) and do the TLS handshake inside the event loop, so a client that
connects and never sends a ClientHello holds up nobody.

Here every accepted connection gets its own thread, which does the TLS handshake (bounded by the
same idle timeout) and then serves that connection's requests one after the other; the accept
loop itself never touches TLS. A request is handed to a WSGI application (the `Emulator`), with
its body read completely first, so the next request on the connection starts cleanly.

Imports: the standard library only.
"""

from __future__ import annotations

import http.server
import io
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

__all__ = ["DROP_KEY", "KEEP_ALIVE_REQUESTS", "HttpsServer"]

KEEP_ALIVE_REQUESTS = 100  # pveproxy.pm: keep_alive => 100
IDLE_TIMEOUT_S = 5.0  # AnyEvent.pm: $self->{timeout} = 5
MAX_BODY_BYTES = 64 * 1024  # AnyEvent.pm $limit_max_post (64 KiB)
DROP_KEY = "emulator.drop"  # environ key: a callable that drops the connection without answer

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Dropped(Exception):
    """The application dropped the connection (a fault): write nothing, close."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY (socketserver.StreamRequestHandler.setup): headers and body leave here as
    # separate writes, and with Nagle's algorithm the body of every keep-alive answer after the
    # first waits for the client's delayed ACK (about 40 ms on Linux). pveproxy never waits so:
    # it sends headers and body as one buffer (pve-http-server AnyEvent.pm `response`,
    # `$res .= $content` then one `push_write`, l.372-397).
    disable_nagle_algorithm = True
    server: HttpsServer

    def setup(self) -> None:
        super().setup()
        self.requests_left = KEEP_ALIVE_REQUESTS

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # no access log: callers print what matters themselves

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            self.close_connection = True
            return
        if not self.parse_request():
            self.close_connection = True
            return
        self.requests_left -= 1
        try:
            self._serve()
        except _Dropped:
            self.close_connection = True
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return None
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length)

    def _environ(self, body: bytes) -> dict[str, Any]:
        parts = urlsplit(self.path)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(parts.path).decode("latin-1"),
            "QUERY_STRING": parts.query,
            "REQUEST_URI": self.path,
            "RAW_URI": self.path,
            "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "emulator.listener": self.server.listener_index,
            DROP_KEY: self._drop,
        }
        for key, value in self.headers.items():
            name = key.upper().replace("-", "_")
            if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                continue
            name = f"HTTP_{name}"
            environ[name] = f"{environ[name]},{value}" if name in environ else value
        return environ

    def _drop(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Dropped

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            # pveproxy answers a chunked or oversized body with an error and closes.
            self.send_error(413 if self.headers.get("Content-Length") else 411)
            self.close_connection = True
            return
        environ = self._environ(body)
        status_line: list[str] = []
        headers: list[tuple[str, str]] = []

        def start_response(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            status_line[:] = [status]
            headers[:] = list(response_headers)
            return lambda _data: None

        chunks = self.server.app(environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        code_text, _, reason = status_line[0].partition(" ")
        code = int(code_text)
        keep = (
            not self.close_connection
            and code < 400
            and self.requests_left > 0
            and not self.server.closing
        )
        self.send_response_only(code, reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "Keep-Alive" if keep else "close")
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()
        if not keep:
            self.close_connection = True


class HttpsServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """One listener: plain TCP accept, TLS and requests in a thread per connection."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        host: str,
        port: int,
        app: WsgiApp,
        ssl_context: ssl.SSLContext,
        listener_index: int = 0,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self.app = app
        self.ssl_context = ssl_context
        self.listener_index = listener_index
        self.idle_timeout_s = idle_timeout_s
        self.closing = False
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's own thread: the TLS handshake, then its requests."""
        raw: socket.socket = request
        with self._conns_lock:
            if self.closing:
                return
            self._conns.add(raw)
        try:
            raw.settimeout(self.idle_timeout_s)
            try:
                conn = self.ssl_context.wrap_socket(
                    raw, server_side=True, do_handshake_on_connect=False
                )
                conn.do_handshake()
            except (OSError, ValueError):
                return  # no or a failed ClientHello: the connection just ends
            try:
                _Handler(conn, client_address, self)
            except (OSError, ValueError):
                pass
            finally:
                try:
                    conn.close()
                except OSError:
                    pass
        finally:
            with self._conns_lock:
                self._conns.discard(raw)

    def shutdown_request(self, request: Any) -> None:
        try:
            request.close()
        except OSError:
            pass

    def close_connections(self) -> None:
        """End every open connection (the API host goes away: its clients see it at once)."""
        with self._conns_lock:
            self.closing = True
            conns = list(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
