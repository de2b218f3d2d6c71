"""The session and the funnel: how one API call reaches PVE and how its failures come back.

Imports: proxmoxer, requests, tenacity, the standard library, `pvetool.errors`,
`pvetool.settings` and the package's `schema` and `wire` (the HTTPS request itself: bounded
session, deadline, pinning, strict JSON). This module and `wire` are the only ones that may
import proxmoxer, requests or urllib3. `PveClient`
(`api/client.py`) sends every REST call through `Transport.request(method, path, **params)`,
which

* sends it with proxmoxer's https backend (its session and resource classes, a strict
  serializer of its own) to the current host, over a session whose adapters pin the server
  certificate when a fingerprint is configured;
* translates foreign exceptions into the `pvetool.errors` tree in one context manager
  (``raise ... from exc``), with PVE's message (the HTTP reason phrase) and ``errors`` dict;
* retries transient failures (connection errors, timeouts, HTTP 502/503/595/596, ``got
  timeout``) with one tenacity policy built from `Settings.retry` (exponential backoff with
  jitter, a replaceable sleep), unless the call is not idempotent; on a connection failure it
  moves to the next configured host and stays there;
* logs method, path, status and duration at DEBUG, never parameters, tokens or tickets;
* never follows a redirect (PVE does not redirect its API; a 3xx is an `InvalidAnswer` naming
  only the host it pointed to), so credentials, cookies and tickets go only to the configured
  hosts; refuses every cookie a server tries to set;
* holds each request to one overall deadline of ``Settings.request_timeout_s`` (not per read: a
  watchdog shuts the socket of a server that trickles its answer) and each answer to
  `MAX_ANSWER_BYTES`;
* parses the body as strict JSON (no NaN, no Infinity, no number PVE could not send) and checks
  the ``data`` it carries against the endpoint's documented answer (`pvetool.api.schema`); an
  answer that fails any of it is an `InvalidAnswer` naming the endpoint and what was wrong.

Why not `proxmoxer.ProxmoxAPI(user=..., password=...)` for password logins: proxmoxer posts
``/access/ticket`` (and renews the ticket every hour by re-posting it) with module-level
``requests.post``, outside the session, so a pinned fingerprint would not protect the password;
and an idle client's ticket (valid 2 h) cannot be renewed with itself. The transport therefore
logs in through its own pinned session, renews by logging in again after an hour, and logs in
once more when PVE answers 401. Token authentication uses proxmoxer's
``ProxmoxHTTPApiTokenAuth``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
from proxmoxer.backends.https import (
    ProxmoxHTTPApiTokenAuth,
)
from proxmoxer.core import (
    AuthenticationError as ProxmoxAuthenticationError,
)
from proxmoxer.core import ProxmoxResource, ResourceException
from requests.auth import AuthBase
from requests.cookies import RequestsCookieJar
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from pvetool.api.schema import AnswerSchema
from pvetool.api.wire import (
    MAX_ANSWER_BYTES,
    AnswerProblem,
    BoundedSession,
    DeadlinePassed,
    PinnedAdapter,
    StrictSerializer,
)
from pvetool.api.wire import short_reason as _short_reason
from pvetool.errors import (
    ApiError,
    ApiUnreachable,
    AuthError,
    ConfigError,
    InvalidAnswer,
    NotFound,
    PermissionDenied,
)
from pvetool.settings import HostPort, PasswordAuth, Settings, TokenAuth

__all__ = ["MAX_ANSWER_BYTES", "Transport", "encode_params", "is_transient"]

logger = logging.getLogger(__name__)

# PVE tickets are valid for 2 h; log in again after 1 h, as the web UI does.
TICKET_RENEW_AFTER_S = 3600.0

_NOT_FOUND_RE = re.compile(
    r"does not exist|no such (?:cluster )?(?:node|vm|task|resource|ha rule|group|storage)"
    r"|not found|not implemented",
    re.IGNORECASE,
)


def encode_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None, send booleans as 1/0 (what PVE's schema parser expects)."""
    encoded: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        encoded[key] = int(value) if isinstance(value, bool) else value
    return encoded


def is_transient(exc: BaseException) -> bool:
    """Whether the failure may pass by itself (after a POST: whether it may have been carried
    out, so that the caller must look before sending it again)."""
    if isinstance(exc, ApiUnreachable):
        return exc.retryable
    if isinstance(exc, ApiError):
        return exc.retryable
    return False


def _worth_retrying(exc: BaseException) -> bool:
    """The funnel's retry policy: transient failures, except an answer that did not arrive
    within the whole deadline (trying again would take as long)."""
    return is_transient(exc) and not isinstance(exc, _Overdue)


# --------------------------------------------------------------------------------------------
# Redaction


class _Redactor:
    """Removes credentials from text before it is logged or put into an exception."""

    _PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
        (re.compile(r"(PVEAPIToken=[^\s!=]+![^\s=]+=)[^\s\"',;]+"), r"\1***"),
        (re.compile(r"(PVEAuthCookie=)[^\s;\"',]+"), r"\1***"),
        (re.compile(r"(CSRFPreventionToken[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+", re.I), r"\1***"),
        (re.compile(r"(password[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]+", re.I), r"\1***"),
        (re.compile(r"PVE:[^:\s]+:[0-9A-Fa-f]{8}::[A-Za-z0-9+/=]+"), "PVE:***"),
    )

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        # Very short strings would blank out ordinary words; PVE secrets are long.
        self._secrets.update(s for s in secrets if s and len(s) >= 6)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        for pattern, replacement in self._PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def scrub(self, exc: BaseException, depth: int = 0) -> BaseException:
        """Redact a foreign exception in place before it is chained as ``__cause__`` (its text
        is printed in tracebacks), including the exceptions it wraps."""
        if depth > 4:
            return exc
        for arg in exc.args:
            if isinstance(arg, BaseException):
                self.scrub(arg, depth + 1)
            reason = getattr(arg, "reason", None)
            if isinstance(reason, BaseException):
                self.scrub(reason, depth + 1)
        if exc.__context__ is not None:
            self.scrub(exc.__context__, depth + 1)
        exc.args = tuple(self(a) if isinstance(a, str) else a for a in exc.args)
        for name in ("content", "status_message"):
            value = getattr(exc, name, None)
            if isinstance(value, str):
                setattr(exc, name, self(value))
        errors = getattr(exc, "errors", None)
        if isinstance(errors, dict):
            exc.errors = {  # type: ignore[attr-defined]
                k: self(v) if isinstance(v, str) else v for k, v in errors.items()
            }
        return exc


# --------------------------------------------------------------------------------------------
# Session pieces


class _Overdue(ApiUnreachable):
    """No complete answer within the deadline. Transient for callers that must check whether a
    POST was carried out, but not retried by the funnel: a server that trickles its answer
    would hold pvetool for every attempt."""


class _TicketAuth(AuthBase):
    """Cookie + CSRF header of a PVE ticket, shaped like proxmoxer's auth objects."""

    def __init__(self, *, verify_ssl: bool | str, timeout: float) -> None:
        self.verify_ssl = verify_ssl
        self.timeout = timeout
        self.ticket = ""
        self.csrf_token = ""
        self.obtained_at: float | None = None

    def get_cookies(self) -> RequestsCookieJar:
        jar = RequestsCookieJar()
        jar.set("PVEAuthCookie", self.ticket)
        return jar

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.method != "GET":
            request.headers["CSRFPreventionToken"] = self.csrf_token
        return request

    def __repr__(self) -> str:
        return "_TicketAuth(ticket=***)"


def _errors_dict(errors: Any) -> dict[str, str]:
    if not isinstance(errors, dict):
        return {}
    return {str(k): v for k, v in errors.items() if isinstance(v, str)}


def _connection_lost(exc: BaseException) -> bool:
    """Whether a TLS error is the connection ending early (``SSLEOFError``,
    ``UNEXPECTED_EOF_WHILE_READING``), not a failed handshake or certificate check."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 16:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, ssl.SSLCertVerificationError):
            return False
        todo += [a for a in current.args if isinstance(a, BaseException)]
        for inner in (getattr(current, "reason", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                todo.append(inner)
    if any(isinstance(e, ssl.SSLEOFError | ssl.SSLZeroReturnError) for e in seen):
        return True
    text = " ".join(str(e) for e in seen)
    return "UNEXPECTED_EOF_WHILE_READING" in text or "EOF occurred in violation of protocol" in text


def server_fingerprint(hostport: HostPort, timeout_s: float) -> str | None:
    """The SHA-256 fingerprint (``AB:CD:...``, as PVE shows it) of the certificate the server
    presents, read without trusting it; None when it cannot be had."""
    try:
        pem = ssl.get_server_certificate((hostport.host, hostport.port), timeout=timeout_s)
    except (OSError, ValueError):
        return None
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _untrusted(reason: str, hostport: HostPort, timeout_s: float) -> str:
    """An untrusted certificate, said as such: the server's fingerprint and the two settings
    that make pvetool trust it (a pin, or the cluster's CA)."""
    fingerprint = server_fingerprint(hostport, min(timeout_s, 10.0))
    seen = (
        f"its SHA-256 fingerprint is {fingerprint}"
        if fingerprint
        else "its fingerprint could not be read"
    )
    pin = fingerprint or "<SHA-256 of the node's certificate>"
    return (
        f"the server's certificate is not trusted ({reason}); {seen}. If it is your cluster's "
        "(compare with `pvenode cert info` on the node), either pin it: "
        f"PVETOOL_FINGERPRINT={pin} (profile key `fingerprint`), or trust the cluster's CA: "
        "copy /etc/pve/pve-root-ca.pem here and set PVETOOL_VERIFY=/path/to/pve-root-ca.pem "
        "(profile key `verify`)"
    )


# --------------------------------------------------------------------------------------------
# The transport


class Transport:
    """One authenticated, pinned session to the configured API hosts. Thread-safe.

    `sleep` (retry backoff) and `monotonic` (durations, ticket age) can be replaced in tests.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None],
        monotonic: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._host_index = 0
        self._redact = _Redactor(settings.secret_values())
        self._roots: dict[int, Any] = {}
        self._schema = AnswerSchema.load()
        self._session: Any = BoundedSession(settings.request_timeout_s)
        self._session.headers["accept"] = "application/json"
        self._mount_adapters(self._session)
        self._ticket: _TicketAuth | None = None
        self._login_session: BoundedSession | None = None
        auth = settings.auth
        if isinstance(auth, TokenAuth):
            self._session.auth = ProxmoxHTTPApiTokenAuth(
                auth.user,
                auth.token_name,
                auth.secret.reveal(),
                verify_ssl=settings.verify,
                timeout=settings.request_timeout_s,
                service="PVE",
            )
        else:
            self._ticket = _TicketAuth(
                verify_ssl=settings.verify, timeout=settings.request_timeout_s
            )
            self._session.auth = self._ticket
            self._login_session = BoundedSession(settings.request_timeout_s)
            self._mount_adapters(self._login_session)
        policy = settings.retry
        self._retrying = Retrying(
            stop=stop_after_attempt(max(1, policy.attempts)),
            # Exponential from initial_wait_s, capped at max_wait_s, plus up to jitter_s random
            # (composed, not wait_exponential_jitter, whose arguments changed across releases).
            wait=wait_exponential(multiplier=policy.initial_wait_s, max=policy.max_wait_s)
            + wait_random(0, policy.jitter_s),
            retry=retry_if_exception(_worth_retrying),
            sleep=sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )

    def close(self) -> None:
        self._session.close()
        if self._login_session is not None:
            self._login_session.close()

    def add_response_hook(self, hook: Callable[[requests.Response], None]) -> None:
        """Call `hook` with every HTTP answer, the login's included (``--debug-http``). The hook
        gets requests' response: it must read only the method, the path, the status and the
        duration, never headers or bodies (they carry the token, the ticket, the password)."""

        def call(response: requests.Response, *_: Any, **__: Any) -> None:
            hook(response)

        for session in (self._session, self._login_session):
            if session is not None:
                session.hooks["response"].append(call)

    @property
    def current_host(self) -> HostPort:
        """The host calls currently go to (it changes only on a connection failure)."""
        with self._lock:
            return self._settings.hosts[self._host_index]

    def _mount_adapters(self, session: requests.Session) -> None:
        session.mount("https://", PinnedAdapter())
        for index, host in enumerate(self._settings.hosts):
            fingerprint = self._settings.fingerprint_for(index)
            if fingerprint:
                session.mount(f"https://{host.url_host}:{host.port}/", PinnedAdapter(fingerprint))

    def _base_url(self, index: int) -> str:
        host = self._settings.hosts[index]
        return f"https://{host.url_host}:{host.port}/api2/json"

    def _root(self, index: int) -> Any:
        with self._lock:
            root = self._roots.get(index)
            if root is None:
                root = ProxmoxResource(
                    base_url=self._base_url(index),
                    session=self._session,
                    serializer=StrictSerializer(),
                )
                self._roots[index] = root
            return root

    # -- the funnel

    def request(self, method: str, path: str, *, idempotent: bool = True, **params: Any) -> Any:
        """Send one API call; retry it when it is idempotent and the failure transient."""
        encoded = encode_params(params)
        if not idempotent:
            return self._send(method, path, encoded)
        return self._retrying.copy()(self._send, method, path, encoded)

    def _send(self, method: str, path: str, params: dict[str, Any]) -> Any:
        with self._lock:
            index = self._host_index
        try:
            return self._send_to(index, method, path, params)
        except AuthError as exc:
            if self._ticket is None or exc.path == "/access/ticket":
                raise  # token auth, or the password itself was refused
            # The ticket expired or was revoked: log in once more, then give up.
            logger.info("PVE refused the ticket for %s %s; logging in again", method, path)
            with self._translated("POST", "/access/ticket", index):
                self._login(index)
            return self._send_to(index, method, path, params)

    def _send_to(self, index: int, method: str, path: str, params: dict[str, Any]) -> Any:
        host = self._settings.hosts[index]
        started = self._monotonic()
        outcome = "no answer"
        try:
            with self._translated(method, path, index):
                if self._ticket is not None:
                    self._ensure_ticket(index)
                resource = self._root(index)(path.strip("/"))
                call = getattr(resource, method.lower())
                result = call(**params)
            problems = self._schema.problems(method, path, result)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise InvalidAnswer(
                    method=method,
                    path=self._redact(path),
                    problem=self._redact(f"not what PVE documents: {problems[0]}{more}"),
                    host=str(host),
                )
            outcome = "200"
            return result
        except ApiError as exc:
            outcome = str(exc.status)
            raise
        finally:
            logger.debug(
                "%s %s -> %s in %.3f s via %s",
                method,
                self._redact(path),
                outcome,
                self._monotonic() - started,
                host,
            )

    @contextmanager
    def _translated(self, method: str, path: str, index: int) -> Iterator[None]:
        """Map proxmoxer/requests exceptions into the pvetool tree (the only place that does)."""
        host = str(self._settings.hosts[index])
        safe_path = self._redact(path)
        try:
            yield
        except AnswerProblem as exc:
            raise InvalidAnswer(
                method=method,
                path=safe_path,
                problem=self._redact(exc.problem),
                status=exc.status,
                host=host,
                retryable=exc.retryable,
            ) from None
        except DeadlinePassed:
            raise _Overdue(
                host=host,
                reason=(
                    f"no complete answer within {self._settings.request_timeout_s:g} s (the "
                    "server answered too slowly)"
                ),
                method=method,
                path=safe_path,
                retryable=True,
            ) from None
        except ResourceException as exc:
            error = self._api_error(exc, method, safe_path, host)
            raise error from self._redact.scrub(exc)
        except ProxmoxAuthenticationError as exc:
            raise AuthError(
                method=method,
                path=safe_path,
                status=401,
                reason="authentication failed",
                host=host,
            ) from self._redact.scrub(exc)
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(exc, method, safe_path, index) from self._redact.scrub(exc)
        except requests.exceptions.ConnectionError as exc:
            reason = self._redact(_short_reason(exc))
            self._fail_over(index, reason)
            raise ApiUnreachable(
                host=host, reason=reason, method=method, path=safe_path, retryable=True
            ) from self._redact.scrub(exc)
        except requests.exceptions.Timeout as exc:
            raise ApiUnreachable(
                host=host,
                reason=f"no answer within {self._settings.request_timeout_s:g} s",
                method=method,
                path=safe_path,
                retryable=True,
            ) from self._redact.scrub(exc)
        except requests.exceptions.RequestException as exc:
            raise ApiUnreachable(
                host=host,
                reason=self._redact(_short_reason(exc)),
                method=method,
                path=safe_path,
                retryable=False,
            ) from self._redact.scrub(exc)

    def _tls_error(
        self, exc: requests.exceptions.SSLError, method: str, path: str, index: int
    ) -> ApiUnreachable:
        """A TLS failure: the connection ending early (retried on the next host) or a
        configuration or security problem (never retried; an untrusted certificate is said as
        such, with the server's fingerprint)."""
        host = str(self._settings.hosts[index])
        reason = self._redact(_short_reason(exc))
        if _connection_lost(exc):
            # The peer closed the TLS connection without a close_notify (a host dying or
            # restarting mid-request): a transport failure like a reset, not a TLS problem.
            self._fail_over(index, reason)
            return ApiUnreachable(
                host=host, reason=reason, method=method, path=path, retryable=True
            )
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            reason = _untrusted(
                reason, self._settings.hosts[index], self._settings.request_timeout_s
            )
        return ApiUnreachable(host=host, reason=reason, method=method, path=path, retryable=False)

    def _api_error(self, exc: Any, method: str, path: str, host: str) -> ApiError:
        status = int(exc.status_code)
        reason = self._redact(str(exc.content or exc.status_message or "").strip())
        errors = {k: self._redact(v) for k, v in _errors_dict(exc.errors).items()}
        cls: type[ApiError] = ApiError
        if status == 401:
            cls = AuthError
        elif status == 403:
            cls = PermissionDenied
        elif status in (404, 501) or (status == 500 and _NOT_FOUND_RE.search(reason)):
            cls = NotFound
        elif status == 400 and any(_NOT_FOUND_RE.search(v) for v in errors.values()):
            # pve-manager PVE/API2/Tasks.pm read_task_log/read_task_status (l.316, l.517):
            # raise_param_exc({upid => "no such task"}) - a 400 that means "not found".
            cls = NotFound
        return cls(method=method, path=path, status=status, reason=reason, errors=errors, host=host)

    def _fail_over(self, index: int, reason: str) -> None:
        hosts = self._settings.hosts
        with self._lock:
            if len(hosts) < 2 or self._host_index != index:
                return
            self._host_index = (index + 1) % len(hosts)
            logger.warning(
                "PVE API on %s is unreachable (%s); using %s from now on",
                hosts[index],
                reason,
                hosts[self._host_index],
            )

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait_s = state.next_action.sleep if state.next_action else 0.0
        logger.info(
            "%s; retrying in %.1f s (attempt %d of %d)",
            str(exc).rstrip("."),
            wait_s,
            state.attempt_number + 1,
            self._settings.retry.attempts,
        )

    # -- password login

    def _ensure_ticket(self, index: int) -> None:
        assert self._ticket is not None
        with self._lock:
            born = self._ticket.obtained_at
            if born is not None and self._monotonic() - born < TICKET_RENEW_AFTER_S:
                return
            self._login(index)

    def _login(self, index: int) -> None:
        """``POST /access/ticket`` through the pinned login session (caller maps exceptions)."""
        assert self._ticket is not None and self._login_session is not None
        auth = self._settings.auth
        assert isinstance(auth, PasswordAuth)
        host = str(self._settings.hosts[index])
        with self._lock:
            response = self._login_session.post(
                f"{self._base_url(index)}/access/ticket",
                data={"username": auth.user, "password": auth.password.reveal()},
                verify=self._settings.verify,
                timeout=self._settings.request_timeout_s,
            )
            ticket, csrf = self._ticket_of(response, auth.user, host)
            self._redact.add(ticket, csrf)
            self._ticket.ticket = ticket
            self._ticket.csrf_token = csrf
            self._ticket.obtained_at = self._monotonic()
            logger.debug("logged in to %s as %s", host, auth.user)

    def _ticket_of(self, response: requests.Response, user: str, host: str) -> tuple[str, str]:
        """The ticket and CSRF token of a login answer, or the error that refuses it."""
        if response.status_code != 200:
            cls = AuthError if response.status_code in (401, 403) else ApiError
            raise cls(
                method="POST",
                path="/access/ticket",
                status=response.status_code,
                reason=self._redact(response.reason or ""),
                host=host,
            )
        try:
            data = StrictSerializer().loads(response)
            problems = self._schema.problems("POST", "/access/ticket", data)
            if problems:
                raise AnswerProblem(f"not what PVE documents: {problems[0]}")
        except AnswerProblem as exc:
            raise InvalidAnswer(
                method="POST",
                path="/access/ticket",
                problem=self._redact(exc.problem),
                host=host,
                retryable=False,
            ) from None
        if not isinstance(data, dict):
            data = {}
        if data.get("NeedTFA"):
            raise ConfigError(
                f"the user {user} has two-factor authentication enabled; "
                "use an API token instead of a password"
            )
        ticket = data.get("ticket")
        csrf = data.get("CSRFPreventionToken")
        if not isinstance(ticket, str) or not isinstance(csrf, str):
            raise AuthError(
                method="POST",
                path="/access/ticket",
                status=200,
                reason="no ticket in the answer",
                host=host,
            )
        return ticket, csrf
