"""The wire under the funnel: one HTTPS request and what comes back, before any meaning.

`BoundedSession` is proxmoxer's session held to what `pvetool.api.transport` promises: no
redirects (a 3xx is an `AnswerProblem` naming only where it pointed), one overall deadline per
request (`Deadline`: a watchdog shuts the socket of a server that trickles its answer), at most
`MAX_ANSWER_BYTES` read, no cookies from servers. `PinnedAdapter` pins the server certificate's
SHA-256 fingerprint when one is configured. `parse_answer` / `StrictSerializer` read the body
as strict JSON (no NaN, no Infinity, no number PVE could not send).

Imports: the standard library, requests, urllib3 (requests' own HTTP library, for the watched
connections) and proxmoxer's session class. Only `pvetool.api.transport` imports this module;
together they are the only modules that touch proxmoxer, requests or urllib3.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from proxmoxer.backends.https import ProxmoxHttpSession
from requests.adapters import HTTPAdapter

__all__ = [
    "MAX_ANSWER_BYTES",
    "AnswerProblem",
    "BoundedSession",
    "Deadline",
    "DeadlinePassed",
    "PinnedAdapter",
    "StrictSerializer",
    "parse_answer",
    "short_reason",
]

# The largest answer read. The largest PVE answers pvetool asks for are /cluster/resources of
# big clusters: about 450 bytes per guest, under 5 MiB for 10,000 guests.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024


class AnswerProblem(Exception):
    """An answer that cannot be used; `_translated` turns it into `InvalidAnswer`."""

    def __init__(self, problem: str, *, status: int = 200, retryable: bool = True) -> None:
        super().__init__(problem)
        self.problem = problem
        self.status = status
        self.retryable = retryable


class DeadlinePassed(Exception):
    """The whole answer did not arrive within the request's deadline."""


class Deadline:
    """One request's overall deadline: when it passes, a watchdog timer shuts the sockets of the
    connections the request uses, which ends any read blocked on them."""

    def __init__(self, timeout_s: float) -> None:
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._finished = False
        self.expired = False
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True

    def attach(self, connection: Any) -> None:
        with self._lock:
            self._connections.append(connection)

    def start(self) -> None:
        self._timer.start()

    def finish(self) -> None:
        """Before the connection goes back to the pool: the timer must not touch it after."""
        with self._lock:
            self._finished = True
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            for connection in self._connections:
                sock = getattr(connection, "sock", None)
                if sock is None:
                    continue
                try:
                    # socket.socket's own shutdown, not SSLSocket's (which would drop the TLS
                    # object under the thread still reading): the blocked read returns at once.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass


_current = threading.local()


class _WatchedConnection(urllib3.connection.HTTPSConnection):
    """An HTTPS connection that the running request's `Deadline` can cut."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline: Deadline | None = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.attach(self)
        super().request(*args, **kwargs)


class _WatchedPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedConnection


class PinnedAdapter(HTTPAdapter):
    """HTTPS with watched connections; with a fingerprint, refuses any server whose certificate
    does not have that pinned SHA-256 fingerprint (urllib3 checks ``assert_fingerprint`` right
    after the TLS handshake, before a byte of the request or a credential is sent)."""

    def __init__(self, fingerprint: str | None = None) -> None:
        self._fingerprint = fingerprint  # before super().__init__, which builds the pool
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        if self._fingerprint:
            pool_kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            **self.poolmanager.pool_classes_by_scheme,
            "https": _WatchedPool,
        }

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if self._fingerprint:
            proxy_kwargs["assert_fingerprint"] = self._fingerprint
        return super().proxy_manager_for(proxy, **proxy_kwargs)


class BoundedSession(ProxmoxHttpSession):  # type: ignore[misc]  # proxmoxer is untyped
    """proxmoxer's session, held to what the module docstring promises: no redirects, one
    deadline per request, at most `MAX_ANSWER_BYTES`, no cookies from servers."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        if kwargs.get("json") is None:
            kwargs.pop("json", None)  # requests' post() passes it; proxmoxer's session has none
        deadline = Deadline(self.timeout_s)
        _current.deadline = deadline
        deadline.start()
        response: Any = None
        try:
            response = super().request(method, url, *args, **kwargs)
            if 300 <= response.status_code < 400:
                raise AnswerProblem(
                    _redirect_problem(response), status=response.status_code, retryable=False
                )
            body = _read_body(response, deadline)
        except AnswerProblem:
            raise
        except Exception as exc:
            if deadline.expired:
                raise DeadlinePassed() from exc
            raise
        finally:
            _current.deadline = None
            deadline.finish()
            if response is not None:
                response.close()
        response._content = body
        response._content_consumed = True
        return response


def _redirect_problem(response: requests.Response) -> str:
    location = response.headers.get("Location") or ""
    parts = urlsplit(location)
    try:
        port = parts.port
    except ValueError:
        port = None
    target = (parts.hostname or "") + (f":{port}" if port else "")
    where = f" to {parts.scheme + '://' if parts.scheme else ''}{target}" if target else ""
    return (
        f"PVE never redirects its API, but the answer is a redirect (HTTP "
        f"{response.status_code}){where}; it was not followed and no credential was sent there"
    )


def _read_body(response: requests.Response, deadline: Deadline) -> bytes:
    """The body, at most `MAX_ANSWER_BYTES`; a body cut off is an `AnswerProblem`."""
    length = response.headers.get("Content-Length", "")
    if length.strip().isdigit() and int(length) > MAX_ANSWER_BYTES:
        raise AnswerProblem(_too_large(int(length)))
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(_CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise AnswerProblem(_too_large(None))
            chunks.append(chunk)
    except (
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    ) as exc:
        if deadline.expired:
            raise
        raise AnswerProblem(
            f"the answer was cut off after {size} bytes ({short_reason(exc)})"
        ) from exc
    return b"".join(chunks)


def _too_large(length: int | None) -> str:
    what = f"{length} bytes" if length is not None else "larger"
    return f"the answer is {what}, more than the {MAX_ANSWER_BYTES // 2**20} MiB pvetool reads"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number PVE sends")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise ValueError(f"the number {text[:40]}... is out of range")
    return int(text)


def parse_answer(body: bytes) -> Any:
    """The JSON of an answer, strictly: no NaN or Infinity, no number PVE could not send.
    Raises `AnswerProblem` saying what the body is instead."""
    if not body.strip():
        raise AnswerProblem("the answer is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AnswerProblem(f"the answer is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError:
        raise AnswerProblem("the answer is nested too deeply to be a PVE answer") from None
    except json.JSONDecodeError as exc:
        start = text.lstrip()[:15].lower()
        if start.startswith(("<!doctype", "<html", "<")):
            raise AnswerProblem("the answer is an HTML page, not JSON") from None
        raise AnswerProblem(
            f"the answer is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    except ValueError as exc:  # our hooks, or Python's limit on digits
        raise AnswerProblem(f"the answer is not JSON PVE sends: {exc}") from None


class StrictSerializer:
    """proxmoxer's serializer interface: ``data`` of a successful answer, ``errors`` of a
    refusal."""

    def loads(self, response: requests.Response) -> Any:
        envelope = parse_answer(response.content)
        if not isinstance(envelope, dict):
            raise AnswerProblem(
                f"the answer is a JSON {type(envelope).__name__}, not PVE's object with 'data'"
            )
        if "data" not in envelope:
            raise AnswerProblem("the answer has no 'data'")
        return envelope["data"]

    def loads_errors(self, response: requests.Response) -> Any:
        try:
            envelope = parse_answer(response.content)
        except AnswerProblem:
            return None
        return envelope.get("errors") if isinstance(envelope, dict) else None


def short_reason(exc: BaseException) -> str:
    """The innermost, most specific part of a requests/urllib3 error message."""
    text = str(exc)
    inner = re.findall(r"\(Caused by \w+\((.*)\)\)", text)
    if inner:
        text = inner[-1]
    text = re.sub(r"<[^>]*>: ?", "", text).strip("'\" ")
    text = re.sub(r"HTTPSConnectionPool\([^)]*\): ", "", text)
    if "Fingerprints did not match" in text:
        return "the server certificate does not match the pinned SHA-256 fingerprint"
    return text[:300] or type(exc).__name__
