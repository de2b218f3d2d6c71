"""A hostile PVE API: an HTTPS proxy in front of the emulator that spoils selected answers.

Not a test module. `HostileProxy` listens on 127.0.0.1 with the emulator's own certificate (so
pvetool, trusting the emulator's CA, trusts it too), forwards every request to the emulator
and, for requests that match a `Rule` (method, path regex, how many times), replaces or bends
the answer in one of the `MODES`. `Sink` is a server that only records what reaches it: the
target of the redirect modes, to prove no credential ever does.

The modes are what a broken proxy, a wrong server or a hostile network can send instead of
PVE's answer (reliability campaign 4, /work/shared/research/reliability-campaign.md):
malformed and truncated JSON, no ``data``, ``data: null``, the wrong container, numbers as
strings (which PVE itself does: must be accepted), garbage strings, wrong types, NaN, 1e400,
negative numbers, HTML with 200 and 500, an empty 200, an answer larger than pvetool reads,
redirects (to another port, to plain http, to itself), a slow trickle, a task that never ends,
a dropped connection after the request was forwarded, guests on an unknown node and guests
listed twice.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

# What each mode does to the answer of a matching request.
MODES = (
    "malformed_json",
    "no_data",
    "data_null",
    "wrong_container",
    "strings_for_numbers",
    "garbage_strings",
    "wrong_types",
    "nan",
    "huge_number",
    "negative_numbers",
    "html_200",
    "html_500",
    "truncated",
    "empty_200",
    "huge_answer",
    "redirect_other_port",
    "redirect_http",
    "redirect_self",
    "slow_trickle",
    "task_never_ends",
    "drop_after_forward",
    "unknown_node",
    "duplicate_vmids",
)

# Modes whose answers a correct client must accept (PVE itself answers like that).
ACCEPTABLE_MODES = frozenset({"strings_for_numbers"})

HUGE_ANSWER_BYTES = 33 * 1024 * 1024  # beyond pvetool.api.transport.MAX_ANSWER_BYTES
TRICKLE_INTERVAL_S = 0.5


@dataclass
class Rule:
    mode: str
    path: str  # regex searched in the request path (after /api2/json)
    method: str | None = None
    count: int = -1  # how many matching requests to spoil; -1: all
    hits: int = 0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Sink:
    """A server that answers 404 to everything and remembers every request it got."""

    tls: ssl.SSLContext | None
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> int:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _any(self) -> None:
                sink.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
                self.send_response(404, "nothing here")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class HostileProxy:
    """HTTPS proxy to `upstream` (``https://127.0.0.1:PORT``) that applies `rules`."""

    def __init__(self, upstream: str, ca_file: Path, cert_file: Path, key_file: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_file = ca_file
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(str(cert_file), str(key_file))
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        self.spoiled: list[tuple[str, str, str]] = []  # (mode, method, path)
        self.https_sink = Sink(self.tls)
        self.http_sink = Sink(None)
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self._local = threading.local()

    # -- control ------------------------------------------------------------------------------

    def start(self) -> HostileProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.https_sink_port = self.https_sink.start()
        self.http_sink_port = self.http_sink.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.https_sink.stop()
        self.http_sink.stop()

    def spoil(self, mode: str, path: str, method: str | None = None, count: int = -1) -> Rule:
        assert mode in MODES, mode
        rule = Rule(mode, path, method, count)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.method and rule.method != method:
                    continue
                if not re.search(rule.path, path):
                    continue
                if rule.count == 0:
                    continue
                if rule.count > 0:
                    rule.count -= 1
                rule.hits += 1
                self.spoiled.append((rule.mode, method, path))
                return rule
        return None

    # -- one request --------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = str(self.ca_file)
            self._local.session = session
        return session

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> requests.Response:
        headers = {
            k: v
            for k, v in h.headers.items()
            if k.lower() in ("authorization", "cookie", "csrfpreventiontoken", "content-type")
        }
        return self._session().request(
            h.command,
            self.upstream + h.path,
            data=body or None,
            headers=headers,
            allow_redirects=False,
            timeout=60,
        )

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        api_path = h.path.split("?", 1)[0].removeprefix("/api2/json")
        rule = self._rule_for(h.command, api_path)
        mode = rule.mode if rule else None
        if mode in ("redirect_other_port", "redirect_http", "redirect_self"):
            self._redirect(h, mode)
            return
        if mode in ("html_500",):
            self._send(
                h, 500, b"<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html"
            )
            return
        upstream = self._forward(h, body)
        if mode == "drop_after_forward":
            self._drop(h)
            return
        status, content = upstream.status_code, upstream.content
        if mode is None or status != 200:
            self._send(
                h, status, content, upstream.headers.get("Content-Type", ""), reason=upstream.reason
            )
            return
        self._spoiled_answer(h, mode, content)

    def _spoiled_answer(self, h: BaseHTTPRequestHandler, mode: str, content: bytes) -> None:
        if mode == "html_200":
            self._send(h, 200, b"<!DOCTYPE html><html><body>Welcome</body></html>", "text/html")
        elif mode == "empty_200":
            self._send(h, 200, b"", "application/json")
        elif mode == "malformed_json":
            self._send(h, 200, content[: max(1, len(content) // 2)] + b"]}{", "application/json")
        elif mode == "truncated":
            self._truncated(h, content)
        elif mode == "huge_answer":
            self._huge(h)
        elif mode == "slow_trickle":
            self._trickle(h, content)
        else:
            envelope = json.loads(content)
            text = _REWRITES[mode](envelope)
            self._send(h, 200, text.encode(), "application/json")

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        reason: str | None = None,
    ) -> None:
        h.send_response(status, reason)
        h.send_header("Content-Type", ctype or "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    def _redirect(self, h: BaseHTTPRequestHandler, mode: str) -> None:
        if mode == "redirect_other_port":
            location = f"https://127.0.0.1:{self.https_sink_port}{h.path}"
        elif mode == "redirect_http":
            location = f"http://127.0.0.1:{self.http_sink_port}{h.path}"
        else:
            location = f"https://127.0.0.1:{self.port}{h.path}"
        h.send_response(302 if mode != "redirect_self" else 307)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
        h.wfile.flush()

    def _drop(self, h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _truncated(self, h: BaseHTTPRequestHandler, content: bytes) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(content)))
        h.end_headers()
        h.wfile.write(content[: len(content) // 2])
        h.wfile.flush()
        self._drop(h)

    def _huge(self, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")  # no Content-Length: read until the limit
        h.end_headers()
        chunk = b'"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", ' * 1000
        sent = 0
        try:
            head = b'{"data": ['
            h.wfile.write(b"%x\r\n%s\r\n" % (len(head), head))
            while sent < HUGE_ANSWER_BYTES:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            tail = b'"end"]}'
            h.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
            h.wfile.flush()
        except OSError:
            pass  # the client stopped reading at its limit: that is the point
        h.close_connection = True

    def _trickle(self, h: BaseHTTPRequestHandler, content: bytes) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(content)}\r\n\r\n"
        ).encode()
        try:
            for byte in head + content:  # the headers too: one byte at a time
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(TRICKLE_INTERVAL_S)
        except OSError:
            pass  # the client gave up: that is the point
        h.close_connection = True


# --- rewriting JSON answers --------------------------------------------------------------------


def _walk(value: Any, leaf: Callable[[Any], Any]) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, leaf) for v in value]
    return leaf(value)


def _numbers(value: Any, change: Callable[[Any], Any]) -> Any:
    return _walk(
        value,
        lambda v: change(v) if isinstance(v, int | float) and not isinstance(v, bool) else v,
    )


def _no_data(env: Any) -> str:
    return json.dumps({"result": env.get("data")})


def _data_null(env: Any) -> str:
    return json.dumps({"data": None})


def _wrong_container(env: Any) -> str:
    data = env.get("data")
    if isinstance(data, list):
        return json.dumps({"data": {str(i): v for i, v in enumerate(data)}})
    if isinstance(data, dict):
        return json.dumps({"data": [data]})
    return json.dumps({"data": {"value": data}})


def _strings_for_numbers(env: Any) -> str:
    return json.dumps({**env, "data": _numbers(env.get("data"), str)})


_counter = iter(range(10**9))


def _garbage(value: Any) -> Any:
    return f"x#{next(_counter)}!garbage"


def _garbage_strings(env: Any) -> str:
    return json.dumps({**env, "data": _walk(env.get("data"), _garbage)})


def _wrong_types(env: Any) -> str:
    return json.dumps({**env, "data": _numbers(env.get("data"), lambda v: [v])})


def _nan(env: Any) -> str:
    return json.dumps({**env, "data": _numbers(env.get("data"), lambda v: float("nan"))})


def _huge_number(env: Any) -> str:
    text = json.dumps({**env, "data": _numbers(env.get("data"), lambda v: 1234567.5)})
    return text.replace("1234567.5", "1e400")


def _negative(env: Any) -> str:
    return json.dumps({**env, "data": _numbers(env.get("data"), lambda v: -abs(v) - 1)})


def _task_never_ends(env: Any) -> str:
    data = dict(env.get("data") or {})
    data["status"] = "running"
    data.pop("exitstatus", None)
    return json.dumps({**env, "data": data})


def _unknown_node(env: Any) -> str:
    data = [
        {**e, "node": "ghost"} if isinstance(e, dict) and e.get("type") in ("qemu", "lxc") else e
        for e in env.get("data") or []
    ]
    return json.dumps({**env, "data": data})


def _duplicate_vmids(env: Any) -> str:
    data = list(env.get("data") or [])
    guests = [e for e in data if isinstance(e, dict) and e.get("type") in ("qemu", "lxc")]
    nodes = sorted({e.get("node") for e in data if isinstance(e, dict) and e.get("type") == "node"})
    for e in guests[: len(guests) // 2]:
        other = next((n for n in nodes if n != e.get("node")), e.get("node"))
        data.append({**e, "node": other})
    return json.dumps({**env, "data": data})


_REWRITES: dict[str, Callable[[Any], str]] = {
    "no_data": _no_data,
    "data_null": _data_null,
    "wrong_container": _wrong_container,
    "strings_for_numbers": _strings_for_numbers,
    "garbage_strings": _garbage_strings,
    "wrong_types": _wrong_types,
    "nan": _nan,
    "huge_number": _huge_number,
    "negative_numbers": _negative,
    "task_never_ends": _task_never_ends,
    "unknown_node": _unknown_node,
    "duplicate_vmids": _duplicate_vmids,
}
