"""PveClient: every REST call pvetool makes to PVE, and `fetch_snapshot`.

Imports: proxmoxer and requests (this is the only module that may), tenacity, the standard
library, `pvetool.errors`, `pvetool.model`, `pvetool.settings` and `pvetool.api.convert`.

Every call goes through one funnel, `PveClient._request(method, path, **params)`, which

* sends it with proxmoxer's https backend (its session, serializer and resource classes) to the
  current host, over a session whose adapters pin the server certificate when a fingerprint is
  configured;
* translates foreign exceptions into the `pvetool.errors` tree in one context manager
  (``raise ... from exc``), with PVE's message (the HTTP reason phrase) and ``errors`` dict;
* retries transient failures (connection errors, timeouts, HTTP 502/503/595/596, ``got
  timeout``) with one tenacity policy built from `Settings.retry` (exponential backoff with
  jitter, a replaceable sleep), and on a connection failure moves to the next configured host
  and stays there;
* logs method, path, status and duration at DEBUG, never parameters, tokens or tickets.

``POST .../migrate`` is not idempotent and is never re-sent blindly: after an ambiguous failure
the client looks for the migration task in the source node's task list and at the guest's lock,
and sends the request once more only if nothing started.

Why not `proxmoxer.ProxmoxAPI(user=..., password=...)` for password logins: proxmoxer posts
``/access/ticket`` (and renews the ticket every hour by re-posting it) with module-level
``requests.post``, outside the session, so a pinned fingerprint would not protect the password;
and an idle client's ticket (valid 2 h) cannot be renewed with itself. The client therefore logs
in through its own pinned session, renews by logging in again after an hour, and logs in once
more when PVE answers 401. Token authentication uses proxmoxer's ``ProxmoxHTTPApiTokenAuth``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import requests
from proxmoxer.backends.https import (
    JsonSerializer,
    ProxmoxHTTPApiTokenAuth,
    ProxmoxHttpSession,
)
from proxmoxer.core import (
    AuthenticationError as ProxmoxAuthenticationError,
)
from proxmoxer.core import ProxmoxResource, ResourceException
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.cookies import RequestsCookieJar
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_fixed,
    wait_random,
)

from pvetool.api import convert
from pvetool.errors import (
    ApiError,
    ApiUnreachable,
    AuthError,
    ConfigError,
    NotFound,
    PermissionDenied,
    PvetoolError,
    ValidationError,
)
from pvetool.model import (
    ClusterResources,
    ClusterSnapshot,
    ClusterStatus,
    DatacenterOptions,
    GuestConfig,
    GuestKind,
    GuestStatus,
    HaMigrateRequest,
    HaResource,
    HaRule,
    HaStatus,
    MigrationRequest,
    Node,
    Precondition,
    PveVersion,
    ReplicationJob,
    StorageConfig,
    StorageStatus,
    TaskLogLine,
    TaskQuery,
    TaskStatus,
    TaskSummary,
    Upid,
    migrate_call_task_types,
)
from pvetool.settings import HostPort, PasswordAuth, Settings, TokenAuth

__all__ = [
    "PARAM_MIN_VERSION",
    "POWER_TASK_TYPES",
    "PveClient",
    "fetch_snapshot",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Parameters that older PVE versions reject ("property is not defined in schema"), by the
# version of the node that receives the call: (guest kind, parameter) -> (major, minor).
PARAM_MIN_VERSION: Mapping[tuple[str, str], tuple[int, int]] = {
    ("qemu", "with-conntrack-state"): (9, 0),  # conntrack migration via dbus-vmstate, PVE 9.0
}

# The tasks a shutdown or start request creates (HA-managed guests: the HA request task).
POWER_TASK_TYPES: Mapping[tuple[str, str], frozenset[str]] = {
    ("qemu", "shutdown"): frozenset({"qmshutdown", "hastop"}),
    ("qemu", "start"): frozenset({"qmstart", "hastart"}),
    ("lxc", "shutdown"): frozenset({"vzshutdown", "hastop"}),
    ("lxc", "start"): frozenset({"vzstart", "hastart"}),
}

# PVE tickets are valid for 2 h; log in again after 1 h, as the web UI does.
TICKET_RENEW_AFTER_S = 3600.0
# Allowance for clock skew between this machine and the node when searching the task list.
CLOCK_SKEW_S = 60
LOG_PAGE_LINES = 500

_NODE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_STORAGE_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]$")
_SID_RE = re.compile(r"^(?:(?:vm|ct):)?\d+$")
_NOT_FOUND_RE = re.compile(
    r"does not exist|no such (?:cluster )?(?:node|vm|task|resource|ha rule|group|storage)"
    r"|not found|not implemented",
    re.IGNORECASE,
)


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
# Transport pieces


class _PinnedAdapter(HTTPAdapter):
    """Refuses any server whose certificate does not have the pinned SHA-256 fingerprint.

    urllib3 checks ``assert_fingerprint`` on the peer certificate right after the TLS
    handshake, before a byte of the request (or a credential) is sent.
    """

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint  # before super().__init__, which builds the pool
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["assert_fingerprint"] = self._fingerprint
        return super().proxy_manager_for(proxy, **proxy_kwargs)


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


def _encode_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None, send booleans as 1/0 (what PVE's schema parser expects)."""
    encoded: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        encoded[key] = int(value) if isinstance(value, bool) else value
    return encoded


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiUnreachable):
        return exc.retryable
    if isinstance(exc, ApiError):
        return exc.retryable
    return False


def _errors_dict(errors: Any) -> dict[str, str]:
    if not isinstance(errors, dict):
        return {}
    return {str(k): v for k, v in errors.items() if isinstance(v, str)}


def _short_reason(exc: BaseException) -> str:
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


def _check_node(node: str) -> str:
    if not _NODE_RE.match(node):
        raise ValidationError(f"'{node}' is not a valid PVE node name", field="node")
    return node


def _check_vmid(vmid: int) -> int:
    if isinstance(vmid, bool) or not isinstance(vmid, int) or not 100 <= vmid <= 999_999_999:
        raise ValidationError(f"'{vmid}' is not a valid VMID (100 to 999999999)", field="vmid")
    return vmid


def _check_kind(kind: str) -> GuestKind:
    if kind == "qemu":
        return "qemu"
    if kind == "lxc":
        return "lxc"
    raise ValidationError(f"'{kind}' is not a guest kind (qemu or lxc)", field="kind")


def _as_upid(upid: Upid | str) -> Upid:
    return upid if isinstance(upid, Upid) else Upid.parse(upid)


def _storage_pairs(value: Mapping[str, str] | str, field: str) -> str:
    """{'local-lvm': 'ceph'} -> 'local-lvm:ceph' (PVE's storage-pair-list)."""
    if isinstance(value, str):
        if value != "1" and not _STORAGE_RE.match(value):
            raise ValidationError(f"'{value}' is not a storage ID", field=field)
        return value
    pairs = []
    for src, dst in value.items():
        for storage in (src, dst):
            if not _STORAGE_RE.match(storage):
                raise ValidationError(f"'{storage}' is not a storage ID", field=field)
        pairs.append(f"{src}:{dst}")
    if not pairs:
        raise ValidationError("the storage mapping is empty", field=field)
    return ",".join(pairs)


# --------------------------------------------------------------------------------------------
# The client


class PveClient:
    """A PVE API client built from `Settings`. Thread-safe; one per cluster.

    `sleep` (used for retry backoff and the ambiguous-POST check), `wall_clock` (epoch seconds,
    for task-list searches) and `monotonic` (durations, ticket age) can be replaced in tests.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._host_index = 0
        self._redact = _Redactor(settings.secret_values())
        self._versions: dict[str, PveVersion] = {}

        self._session: Any = ProxmoxHttpSession()
        self._session.headers["accept"] = "application/json"
        self._mount_pins(self._session)
        self._ticket: _TicketAuth | None = None
        self._login_session: requests.Session | None = None
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
            self._login_session = requests.Session()
            self._mount_pins(self._login_session)
        self._roots: dict[int, Any] = {}

        policy = settings.retry
        self._retrying = Retrying(
            stop=stop_after_attempt(max(1, policy.attempts)),
            # Exponential from initial_wait_s, capped at max_wait_s, plus up to jitter_s random
            # (composed, not wait_exponential_jitter, whose arguments changed across releases).
            wait=wait_exponential(multiplier=policy.initial_wait_s, max=policy.max_wait_s)
            + wait_random(0, policy.jitter_s),
            retry=retry_if_exception(_is_transient),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )

    # -- housekeeping

    def __repr__(self) -> str:
        return f"PveClient(host={self.current_host}, auth={self._settings.auth!r})"

    def __enter__(self) -> PveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()
        if self._login_session is not None:
            self._login_session.close()

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def current_host(self) -> HostPort:
        """The host calls currently go to (it changes only on a connection failure)."""
        with self._lock:
            return self._settings.hosts[self._host_index]

    def _mount_pins(self, session: requests.Session) -> None:
        for index, host in enumerate(self._settings.hosts):
            fingerprint = self._settings.fingerprint_for(index)
            if fingerprint:
                session.mount(f"https://{host.url_host}:{host.port}/", _PinnedAdapter(fingerprint))

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
                    serializer=JsonSerializer(),
                )
                self._roots[index] = root
            return root

    # -- the funnel

    def _request(self, method: str, path: str, *, idempotent: bool = True, **params: Any) -> Any:
        """Send one API call; retry it when it is idempotent and the failure transient."""
        encoded = _encode_params(params)
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
            # A TLS failure is a configuration or security problem: never retried.
            raise ApiUnreachable(
                host=host,
                reason=self._redact(_short_reason(exc)),
                method=method,
                path=safe_path,
                retryable=False,
            ) from self._redact.scrub(exc)
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
                data = response.json().get("data") or {}
            except ValueError as exc:
                raise ApiError(
                    method="POST",
                    path="/access/ticket",
                    status=200,
                    reason="the answer is not JSON",
                    host=host,
                ) from exc
            if data.get("NeedTFA"):
                raise ConfigError(
                    f"the user {auth.user} has two-factor authentication enabled; "
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
            self._redact.add(ticket, csrf)
            self._ticket.ticket = ticket
            self._ticket.csrf_token = csrf
            self._ticket.obtained_at = self._monotonic()
            logger.debug("logged in to %s as %s", host, auth.user)

    # -- versions

    def version(self) -> PveVersion:
        """``GET /version``: the version of the node that answers."""
        return convert.version(self._request("GET", "/version"))

    def node_version(self, node: str) -> PveVersion:
        """``GET /nodes/{node}/version``, fetched once per node and cached."""
        with self._lock:
            cached = self._versions.get(node)
        if cached is not None:
            return cached
        ver = convert.version(self._request("GET", f"/nodes/{_check_node(node)}/version"))
        with self._lock:
            self._versions[node] = ver
        return ver

    def known_versions(self) -> Mapping[str, PveVersion]:
        with self._lock:
            return dict(self._versions)

    def _supported_params(self, kind: str, node: str, params: dict[str, Any]) -> dict[str, Any]:
        """Drop parameters the receiving node's PVE version does not know."""
        result = dict(params)
        for name in list(result):
            needed = PARAM_MIN_VERSION.get((kind, name))
            if needed is None:
                continue
            have = self.node_version(node)
            if have.major_minor < needed:
                log = logger.warning if result[name] not in (0, False) else logger.debug
                log(
                    "Not sending %s=%s to %s: it needs PVE %d.%d, the node runs %s",
                    name,
                    result[name],
                    node,
                    needed[0],
                    needed[1],
                    have,
                )
                del result[name]
        return result

    # -- cluster

    def cluster_status(self) -> ClusterStatus:
        """``GET /cluster/status``: quorum and which nodes are online."""
        return convert.cluster_status(self._request("GET", "/cluster/status"))

    def nodes(self) -> tuple[Node, ...]:
        """``GET /nodes``: nodes with usage and certificate fingerprint (``ssl_fingerprint``)."""
        return convert.node_index(self._request("GET", "/nodes"))

    def cluster_resources(
        self, type_filter: Literal["vm", "storage", "node"] | None = None
    ) -> ClusterResources:
        """``GET /cluster/resources`` (one call for the whole cluster)."""
        return convert.cluster_resources(
            self._request("GET", "/cluster/resources", type=type_filter)
        )

    def datacenter_options(self) -> DatacenterOptions:
        """``GET /cluster/options``: migration type/network, bandwidth limits, max_workers."""
        return convert.datacenter_options(self._request("GET", "/cluster/options"))

    def storage_config(self) -> tuple[StorageConfig, ...]:
        """``GET /storage``: storage definitions (shared flag, node restriction, content)."""
        return convert.storage_config(self._request("GET", "/storage"))

    def node_storage_status(self, node: str) -> tuple[StorageStatus, ...]:
        """``GET /nodes/{node}/storage``: status and free space of each storage on a node."""
        return convert.node_storage_status(
            node, self._request("GET", f"/nodes/{_check_node(node)}/storage")
        )

    def node_bridges(self, node: str) -> frozenset[str]:
        """``GET /nodes/{node}/network?type=any_bridge``: bridge names on a node."""
        return convert.network_bridges(
            self._request("GET", f"/nodes/{_check_node(node)}/network", type="any_bridge")
        )

    def replication_jobs(self) -> tuple[ReplicationJob, ...]:
        """``GET /cluster/replication``: storage replication jobs (only those of guests the
        caller may audit)."""
        return convert.replication_jobs(self._request("GET", "/cluster/replication"))

    def node_cpu_model(self, node: str) -> str | None:
        """``GET /nodes/{node}/status``: the CPU model (``cpuinfo.model``)."""
        return convert.node_cpu_model(self._request("GET", f"/nodes/{_check_node(node)}/status"))

    # -- guests

    def _guest_path(self, kind: str, node: str, vmid: int) -> str:
        return f"/nodes/{_check_node(node)}/{_check_kind(kind)}/{_check_vmid(vmid)}"

    def guest_config(
        self, kind: GuestKind, node: str, vmid: int, *, current: bool = True
    ) -> GuestConfig:
        """``GET /nodes/{node}/{kind}/{vmid}/config`` (current values, not pending ones)."""
        raw = self._request("GET", f"{self._guest_path(kind, node, vmid)}/config", current=current)
        return convert.guest_config(kind, raw)

    def agent_ping(self, node: str, vmid: int) -> bool:
        """``POST /nodes/{node}/qemu/{vmid}/agent/ping``: does the QEMU guest agent answer?

        True when it answers; False when PVE says it does not (not running, not configured,
        timeout). Transport failures still raise (they say nothing about the guest).
        """
        try:
            self._request("POST", f"{self._guest_path('qemu', node, vmid)}/agent/ping")
        except ApiError as exc:
            if exc.status == 500:
                return False
            raise
        return True

    def guest_status(self, kind: GuestKind, node: str, vmid: int) -> GuestStatus:
        """``GET /nodes/{node}/{kind}/{vmid}/status/current``."""
        raw = self._request("GET", f"{self._guest_path(kind, node, vmid)}/status/current")
        return convert.guest_status(kind, raw)

    def shutdown_guest(
        self,
        kind: GuestKind,
        node: str,
        vmid: int,
        *,
        timeout_s: int | None = None,
        force_stop: bool | None = None,
    ) -> Upid:
        """``POST /nodes/{node}/{kind}/{vmid}/status/shutdown``: a clean shutdown (ACPI power
        button, or the guest agent); returns the task's UPID.

        The guest runs until the task ends: follow it. `timeout_s` is how long PVE waits for
        the guest (PVE's default: 60 s); after it the task fails, unless `force_stop`, which
        makes PVE stop the guest hard. An HA-managed guest gets a ``hastop`` task that only asks
        the HA stack, which shuts the guest down shortly after.
        """
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 0
        ):
            raise ValidationError("timeout_s must be a whole number >= 0", field="timeout")
        return self._power(
            _check_kind(kind), node, vmid, "shutdown", timeout=timeout_s, forceStop=force_stop
        )

    def start_guest(self, kind: GuestKind, node: str, vmid: int) -> Upid:
        """``POST /nodes/{node}/{kind}/{vmid}/status/start``; returns the task's UPID.

        The guest runs once the task has ended successfully. An HA-managed guest gets a
        ``hastart`` task that sets its HA state to started; the HA stack starts it shortly after.
        """
        return self._power(_check_kind(kind), node, vmid, "start")

    def _power(
        self,
        kind: GuestKind,
        node: str,
        vmid: int,
        action: Literal["shutdown", "start"],
        **params: Any,
    ) -> Upid:
        """Send a shutdown/start request once; after an ambiguous failure, look for its task
        in the node's task list and send it again only if none started."""
        path = f"{self._guest_path(kind, node, vmid)}/status/{action}"
        since = int(self._wall_clock()) - CLOCK_SKEW_S
        wanted = POWER_TASK_TYPES[(kind, action)]
        for attempt in (1, 2):
            try:
                return convert.upid(self._request("POST", path, idempotent=False, **params))
            except (ApiError, ApiUnreachable) as exc:
                if not _is_transient(exc):
                    raise
                logger.warning(
                    "The %s request for %s %s got no clear answer: %s", action, kind, vmid, exc
                )
                self._sleep(self._settings.wait.ambiguous_check_delay_s)
                try:
                    tasks = self.tasks(TaskQuery(node, vmid=vmid, since=since))
                except (ApiError, ApiUnreachable) as look_exc:
                    raise ApiUnreachable(
                        host=str(self.current_host),
                        reason=(
                            f"the {action} request for {kind} {vmid} got no clear answer ({exc}) "
                            f"and whether it started could not be checked ({look_exc}); it was "
                            f"not sent again: check the task list of {node}"
                        ),
                        retryable=False,
                    ) from look_exc
                found = [
                    t.upid for t in tasks if t.upid.type in wanted and t.upid.starttime >= since
                ]
                if found:
                    return max(found, key=lambda u: (u.starttime, u.pstart))
                if attempt == 2:
                    raise
                logger.warning(
                    "No %s task of %s %s started; sending it once more", action, kind, vmid
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def migrate_precondition(
        self, kind: GuestKind, node: str, vmid: int, target: str | None = None
    ) -> Precondition:
        """``GET /nodes/{node}/{kind}/{vmid}/migrate``: allowed nodes, local disks/resources."""
        raw = self._request(
            "GET",
            f"{self._guest_path(kind, node, vmid)}/migrate",
            target=_check_node(target) if target else None,
        )
        return convert.precondition(kind, raw)

    def start_migration(self, req: MigrationRequest) -> Upid:
        """``POST /nodes/{node}/{kind}/{vmid}/migrate``; returns the task's UPID.

        The parameters are `MigrationRequest`'s; `with_conntrack_state` is dropped for nodes
        older than PVE 9. For an HA-managed guest PVE returns a ``hamigrate`` UPID.

        The POST is never re-sent blindly: after an ambiguous failure the source node's task
        list and the guest's lock tell whether the migration started; only if nothing started
        is it sent once more.
        """
        kind = _check_kind(req.kind)
        node, vmid, target = req.node, req.vmid, req.target
        params = self._migration_params(req)
        if _check_node(node) == target:
            raise ValidationError(f"guest {vmid} is already on node {target}", field="target")
        path = f"{self._guest_path(kind, node, vmid)}/migrate"
        params = self._supported_params(kind, node, _encode_params(params))
        since = int(self._wall_clock()) - CLOCK_SKEW_S

        try:
            return convert.upid(self._request("POST", path, idempotent=False, **params))
        except (ApiError, ApiUnreachable) as exc:
            if not _is_transient(exc):
                raise
            logger.warning("Migration request for %s %s got no clear answer: %s", kind, vmid, exc)
            found = self._started_migration(kind, node, vmid, since, exc)
        if found is not None:
            return found

        logger.warning("No migration of %s %s started; sending the request once more", kind, vmid)
        try:
            return convert.upid(self._request("POST", path, idempotent=False, **params))
        except (ApiError, ApiUnreachable) as exc:
            if not _is_transient(exc):
                raise
            found = self._started_migration(kind, node, vmid, since, exc)
            if found is None:
                raise
            return found

    def _migration_params(self, req: MigrationRequest) -> dict[str, Any]:
        target = _check_node(req.target)
        bwlimit_kib_s = req.bwlimit_kib_s
        if bwlimit_kib_s is not None and (
            isinstance(bwlimit_kib_s, bool)
            or not isinstance(bwlimit_kib_s, int)
            or bwlimit_kib_s < 0
        ):
            raise ValidationError("bwlimit_kib_s must be a whole number >= 0", field="bwlimit")
        storage = (
            _storage_pairs(req.target_storage, "target_storage") if req.target_storage else None
        )
        if req.kind == "lxc":
            given = {
                "online": req.online,
                "with_local_disks": req.with_local_disks,
                "migration_type": req.migration_type,
                "migration_network": req.migration_network,
                "with_conntrack_state": req.with_conntrack_state,
            }
            bad = [name for name, value in given.items() if value]
            if bad:
                raise ValidationError(
                    f"{', '.join(bad)} cannot be used for a container (containers migrate "
                    "offline or with restart=True)",
                    field=bad[0],
                )
            if req.shutdown_timeout_s is not None and req.shutdown_timeout_s < 0:
                raise ValidationError("shutdown_timeout_s must be >= 0", field="timeout")
            return {
                "target": target,
                "restart": req.restart,
                "target-storage": storage,
                "bwlimit": bwlimit_kib_s,
                "timeout": req.shutdown_timeout_s,
            }
        if req.restart is not None or req.shutdown_timeout_s is not None:
            raise ValidationError(
                "restart and shutdown_timeout_s apply to containers only", field="restart"
            )
        if req.migration_type is not None and req.migration_type not in ("secure", "insecure"):
            raise ValidationError(
                f"migration_type '{req.migration_type}' is neither secure nor insecure",
                field="migration_type",
            )
        if req.migration_network is not None:
            try:
                ipaddress.ip_network(req.migration_network, strict=False)
            except ValueError as exc:
                raise ValidationError(
                    f"migration_network '{req.migration_network}' is not a CIDR",
                    field="migration_network",
                ) from exc
        return {
            "target": target,
            "online": True if req.online is None else req.online,
            "with-local-disks": req.with_local_disks,
            "targetstorage": storage,
            "bwlimit": bwlimit_kib_s,
            "migration_type": req.migration_type,
            "migration_network": req.migration_network,
            "with-conntrack-state": req.with_conntrack_state,
        }

    def _started_migration(
        self, kind: GuestKind, node: str, vmid: int, since: int, cause: PvetoolError
    ) -> Upid | None:
        """After an ambiguous POST: the migration task if one started, None if none did.

        Raises when the guest is locked for migration but no task can be found: re-sending
        would be unsafe and returning nothing would be wrong.
        """
        wanted = migrate_call_task_types(kind)

        def look() -> tuple[Upid | None, bool]:
            tasks = self.tasks(TaskQuery(node, vmid=vmid, since=since))
            candidates = [
                t.upid for t in tasks if t.upid.type in wanted and t.upid.starttime >= since
            ]
            if candidates:
                return max(candidates, key=lambda u: (u.starttime, u.pstart)), True
            return None, self._guest_lock(vmid) == "migrate"

        delay = self._settings.wait.ambiguous_check_delay_s
        self._sleep(delay)  # give a request still in flight time to create its task
        checking = Retrying(
            stop=stop_after_attempt(3),
            wait=wait_fixed(delay),
            retry=retry_if_result(lambda found: found[0] is None and found[1]),
            sleep=self._sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        try:
            upid, locked = checking(look)
        except (ApiError, ApiUnreachable) as exc:
            raise ApiUnreachable(
                host=str(self.current_host),
                reason=(
                    f"the migration request for {kind} {vmid} got no clear answer ({cause}) and "
                    f"whether it started could not be checked ({exc}); it was not sent again: "
                    f"check the task list of {node}"
                ),
                retryable=False,
            ) from exc
        if upid is not None:
            logger.warning("The migration of %s %s had started: %s", kind, vmid, upid)
            return upid
        if locked:
            raise ApiUnreachable(
                host=str(self.current_host),
                reason=(
                    f"the migration request for {kind} {vmid} got no clear answer ({cause}); "
                    f"the guest is locked 'migrate' but no migration task was found on {node}, "
                    "so the request was not sent again: check the node's task list"
                ),
                retryable=False,
            )
        return None

    def _guest_lock(self, vmid: int) -> str | None:
        for guest in self.cluster_resources("vm").guests:
            if guest.vmid == vmid:
                return guest.lock
        return None

    # -- HA

    def ha_resources(self) -> tuple[HaResource, ...]:
        """``GET /cluster/ha/resources``."""
        return convert.ha_resources(self._request("GET", "/cluster/ha/resources"))

    def ha_status(self) -> HaStatus:
        """``GET /cluster/ha/status/current``."""
        return convert.ha_status(self._request("GET", "/cluster/ha/status/current"))

    def ha_rules(self, ha_resources: tuple[HaResource, ...] | None = None) -> tuple[HaRule, ...]:
        """``GET /cluster/ha/rules`` (PVE 9); on PVE 8, HA groups as node-affinity rules.

        PVE 8 has no rules endpoint (501 -> NotFound); a PVE 9 cluster whose groups were not
        migrated yet (nodes still on 8) has no rules but still has groups.
        """
        try:
            rules = convert.ha_rules(self._request("GET", "/cluster/ha/rules"))
        except NotFound:
            rules = ()
        if rules:
            return rules
        try:
            groups = self._request("GET", "/cluster/ha/groups")
        except ApiError as exc:
            if exc.retryable:
                raise
            logger.debug("no HA groups either: %s", exc)
            return rules
        resources = ha_resources if ha_resources is not None else self.ha_resources()
        return convert.ha_groups_as_rules(groups, resources)

    def ha_migrate(self, sid: str | int, target: str) -> HaMigrateRequest:
        """``POST /cluster/ha/resources/{sid}/migrate``: ask the HA manager to migrate.

        Re-sending this request is harmless (it sets the same request again), so it is retried
        like a read. No task is returned: find the ``qmigrate`` with `tasks()` or follow it
        with `pvetool.api.tasks.find_ha_migration`.
        """
        sid_text = str(sid)
        if not _SID_RE.match(sid_text):
            raise ValidationError(f"'{sid}' is not an HA resource id (vm:100, ct:101)", field="sid")
        raw = self._request(
            "POST", f"/cluster/ha/resources/{sid_text}/migrate", node=_check_node(target)
        )
        return convert.ha_migrate_request(raw, sid_text, target)

    # -- tasks

    def tasks(self, query: TaskQuery) -> tuple[TaskSummary, ...]:
        """``GET /nodes/{node}/tasks`` (``source=all``: running ones too), newest first."""
        raw = self._request(
            "GET",
            f"/nodes/{_check_node(query.node)}/tasks",
            vmid=_check_vmid(query.vmid) if query.vmid is not None else None,
            typefilter=query.typefilter,
            since=query.since,
            until=query.until,
            source=query.source,
            limit=query.limit,
            start=query.start or None,
            errors=True if query.errors_only else None,
        )
        return convert.task_list(raw)

    def task_status(self, upid: Upid | str) -> TaskStatus:
        """``GET /nodes/{node}/tasks/{upid}/status``."""
        task = _as_upid(upid)
        return convert.task_status(self._request("GET", f"/nodes/{task.node}/tasks/{task}/status"))

    def task_log(
        self, upid: Upid | str, *, start: int = 0, limit: int = LOG_PAGE_LINES
    ) -> tuple[TaskLogLine, ...]:
        """``GET /nodes/{node}/tasks/{upid}/log?start=&limit=``: one page (start skips lines)."""
        task = _as_upid(upid)
        raw = self._request("GET", f"/nodes/{task.node}/tasks/{task}/log", start=start, limit=limit)
        return convert.task_log(raw)

    def task_log_all(
        self, upid: Upid | str, *, start: int = 0, page_lines: int = LOG_PAGE_LINES
    ) -> tuple[TaskLogLine, ...]:
        """Every log line from `start` on, page by page."""
        lines: list[TaskLogLine] = []
        while True:
            page = self.task_log(upid, start=start + len(lines), limit=page_lines)
            lines.extend(page)
            if len(page) < page_lines:
                return tuple(lines)

    def stop_task(self, upid: Upid | str) -> None:
        """``DELETE /nodes/{node}/tasks/{upid}``: stop a running task."""
        task = _as_upid(upid)
        self._request("DELETE", f"/nodes/{task.node}/tasks/{task}")


# --------------------------------------------------------------------------------------------
# Snapshot


def _collect(
    futures: Mapping[Any, Future[T]], what: str, tolerate: tuple[type[BaseException], ...]
) -> dict[Any, T]:
    results: dict[Any, T] = {}
    for key, future in futures.items():
        try:
            results[key] = future.result()
        except tolerate as exc:
            logger.warning("Could not read %s for %s: %s", what, key, exc)
    return results


def fetch_snapshot(
    client: PveClient, *, max_workers: int = 8, cpu_models: bool | None = None
) -> ClusterSnapshot:
    """Read the whole cluster into a `ClusterSnapshot` in few calls.

    ``/cluster/status``, ``/cluster/resources`` (once), ``/storage``, ``/cluster/options``,
    the HA resources, status and rules, ``/cluster/replication``; then, concurrently with at
    most `max_workers` calls in flight, for each *online* node its version and bridges, and
    each guest's config. Node status (for the CPU model) is read only when a guest uses
    ``cpu: host`` or `cpu_models` is True. Offline nodes get no per-node call (PVE would answer
    595). A guest whose config cannot be read (it moved, or its node went away meanwhile) is
    kept with ``config_known=False`` and a warning. Replication jobs PVE refuses to list are
    left out with a warning.
    """
    fetched_at = client._wall_clock()
    status = client.cluster_status()
    resources = client.cluster_resources()
    storage_configs = client.storage_config()
    datacenter = client.datacenter_options()
    ha_resource_list = client.ha_resources()
    ha = client.ha_status()

    member_online = {n.name: n.online for n in status.nodes}
    online = [n.name for n in resources.nodes if n.online and member_online.get(n.name, True)]
    online_set = set(online)
    per_node_errors: tuple[type[BaseException], ...] = (ApiUnreachable, ApiError)

    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="pve") as pool:
        try:
            version_futures = {n: pool.submit(client.node_version, n) for n in online}
            bridge_futures = {n: pool.submit(client.node_bridges, n) for n in online}
            config_futures = {
                g.vmid: pool.submit(client.guest_config, g.kind, g.node, g.vmid)
                for g in resources.guests
                if g.node in online_set
            }
            versions = _collect(version_futures, "the PVE version", per_node_errors)
            bridges = _collect(bridge_futures, "the network bridges", per_node_errors)
            configs: dict[int, GuestConfig] = _collect(
                config_futures, "the guest configuration", per_node_errors
            )
            want_cpu = (
                cpu_models
                if cpu_models is not None
                else any((c.cpu_type or "").lower() == "host" for c in configs.values())
            )
            cpu_by_node: dict[str, str] = {}
            if want_cpu:
                cpu_futures = {n: pool.submit(client.node_cpu_model, n) for n in online}
                found = _collect(cpu_futures, "the CPU model", per_node_errors)
                cpu_by_node = {n: m for n, m in found.items() if m}
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise

    rules = client.ha_rules(ha_resource_list)
    replication = _replication_jobs(client)
    return convert.build_snapshot(
        status=status,
        resources=resources,
        storage_configs=storage_configs,
        datacenter=datacenter,
        ha_resource_list=ha_resource_list,
        ha=ha,
        rules=rules,
        configs=configs,
        versions=versions,
        cpu_models=cpu_by_node,
        bridges=bridges,
        fetched_at=fetched_at,
        replication=replication,
    )


def _replication_jobs(client: PveClient) -> tuple[ReplicationJob, ...]:
    """The replication jobs, or none when PVE refuses to list them (the planner then does not
    know about replication; it is not a reason to stop planning)."""
    try:
        return client.replication_jobs()
    except ApiError as exc:
        if exc.retryable:
            raise
        logger.warning("Could not read the storage replication jobs: %s", exc)
        return ()
