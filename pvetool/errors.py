"""The exception tree of pvetool: every failure the library reports to its caller.

Imports: the standard library only (this is the bottom of the import graph).

::

    PvetoolError                     base class; ``exit_code`` tells the CLI what to return
    ├── ConfigError                  connection settings or config file unusable        exit 2
    ├── PlanError                    the YAML plan cannot be read or is inconsistent    exit 2
    ├── RunConflict                  another run holds the cluster, or a journal is     exit 2
    │                                another cluster's (`pvetool.state`)
    ├── ValidationError              a value or request fails a check before it is sent exit 2
    ├── ApiError                     PVE answered and refused (HTTP 4xx/5xx + message)  exit 1
    │   ├── AuthError                401: missing, wrong or expired credentials         exit 2
    │   ├── PermissionDenied         403: the user or token lacks a privilege           exit 2
    │   ├── NotFound                 the node, guest, task or endpoint does not exist   exit 1
    │   └── InvalidAnswer            an answer not fit to decide on (shape, redirect)   exit 2
    ├── ApiUnreachable               no usable answer: refused, reset, timeout, TLS     exit 1
    ├── TaskFailed                   a PVE task ended with an error exit status         exit 1
    ├── TaskTimeout                  a task did not finish in time (it keeps running)   exit 1
    ├── VerificationFailed           a task said OK but the cluster shows otherwise     exit 1
    └── Interrupted                  the operator interrupted the run                   exit 1

Transport failures (``ApiUnreachable``, and ``ApiError`` with ``retryable`` set: HTTP 502, 503,
595, 596 or PVE's ``got timeout``) are the only ones the client retries. Answers that refuse are
final.

Every message is a complete sentence for an administrator. None contains a secret: the client
redacts tokens, tickets, passwords and CSRF tokens before it builds one of these exceptions, and
the classes below only ever format the structured fields they are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "ApiError",
    "ApiUnreachable",
    "AuthError",
    "ConfigError",
    "Interrupted",
    "RunConflict",
    "InvalidAnswer",
    "NotFound",
    "PermissionDenied",
    "PlanError",
    "PvetoolError",
    "TaskFailed",
    "TaskTimeout",
    "VerificationFailed",
    "ValidationError",
]

# HTTP statuses PVE (pveproxy / AnyEvent::HTTP) uses for "no answer from the node behind me".
RETRYABLE_STATUSES: frozenset[int] = frozenset({502, 503, 595, 596})


def _sentence(text: str) -> str:
    """Return `text` stripped and ending with a full stop (PVE messages often end in newline)."""
    text = " ".join(text.split())
    if not text:
        return text
    return text if text[-1] in ".!?" else text + "."


class PvetoolError(Exception):
    """Base of every error pvetool raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        self.message = _sentence(message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ConfigError(PvetoolError):
    """Connection settings, a profile or the config file cannot be used."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class PlanError(PvetoolError):
    """A plan file cannot be read or is inconsistent; `problems` lists every one found."""

    exit_code = 2

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(message)


class RunConflict(PvetoolError):
    """A run must not start here: another run holds the cluster, or the journal it would
    continue belongs to another cluster (`pvetool.state`)."""

    exit_code = 2


class ValidationError(PvetoolError, ValueError):
    """A value or request is invalid before anything is sent to PVE."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class ApiError(PvetoolError):
    """PVE answered a request with an error status.

    `reason` is PVE's own message (the HTTP reason phrase), `errors` the per-parameter messages
    from the JSON body (``{"target": "target is local node."}``).
    """

    exit_code = 1

    def __init__(
        self,
        *,
        method: str,
        path: str,
        status: int,
        reason: str,
        errors: Mapping[str, str] | None = None,
        host: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = " ".join(reason.split())
        self.errors: Mapping[str, str] = dict(errors or {})
        self.host = host
        super().__init__(self._describe())

    @property
    def retryable(self) -> bool:
        """True for answers that mean "no answer yet" rather than "no"."""
        return self.status in RETRYABLE_STATUSES or "got timeout" in self.reason.lower()

    def _describe(self) -> str:
        where = f" on {self.host}" if self.host else ""
        text = f"PVE{where} refused {self.method} {self.path} with HTTP {self.status}"
        if self.reason:
            text += f": {self.reason.rstrip('.')}"
        if self.errors:
            details = "; ".join(f"{k}: {v.strip().rstrip('.')}" for k, v in self.errors.items())
            text += f" ({details})"
        return text


class AuthError(ApiError):
    """PVE does not accept the credentials (HTTP 401), or the login itself failed."""

    exit_code = 2

    def _describe(self) -> str:
        where = f" {self.host}" if self.host else ""
        text = f"PVE{where} rejected the credentials for {self.method} {self.path}"
        if self.reason:
            text += f" ({self.reason.rstrip('.')})"
        return text + "; check the token or user and password of this profile"


class PermissionDenied(ApiError):
    """The user or token lacks a privilege (HTTP 403, "Permission check failed (...)")."""

    exit_code = 2

    def _describe(self) -> str:
        text = f"Permission denied for {self.method} {self.path}"
        if self.reason:
            text += f": {self.reason.rstrip('.')}"
        return text + "; grant the missing privilege to the user or token"


class NotFound(ApiError):
    """The node, guest, task or API path does not exist (on this PVE version)."""


class InvalidAnswer(ApiError):
    """An answer nothing may be decided on: not the shape PVE documents for the endpoint (no
    ``data``, ``null`` where a list is documented, a string where a number is, NaN), not JSON
    (HTML, truncated, empty), too large, a redirect (PVE never redirects its API), or data that
    contradicts itself (a guest on a node the cluster does not have).

    `problem` says what was wrong. `retryable` is True for a 2xx answer whose body was unusable
    (a read may be retried; after a POST the request may have been carried out, so the caller
    must check before sending it again), False for a redirect (the request never reached PVE).
    Exit code 2: pvetool refuses to decide rather than act on it.
    """

    exit_code = 2

    def __init__(
        self,
        *,
        method: str,
        path: str,
        problem: str,
        status: int = 200,
        host: str | None = None,
        retryable: bool = True,
    ) -> None:
        self.problem = " ".join(problem.split())
        self._retryable = retryable
        super().__init__(method=method, path=path, status=status, reason=problem, host=host)

    @property
    def retryable(self) -> bool:
        return self._retryable

    def _describe(self) -> str:
        where = f" from {self.host}" if self.host else ""
        return (
            f"The answer{where} to {self.method} {self.path} cannot be used: "
            f"{self.problem.rstrip('.')}; pvetool decides nothing on it"
        )


class ApiUnreachable(PvetoolError):
    """No usable answer from the API: connection refused or reset, timeout, TLS failure."""

    exit_code = 1

    def __init__(
        self,
        *,
        host: str,
        reason: str,
        method: str | None = None,
        path: str | None = None,
        retryable: bool = True,
    ) -> None:
        self.host = host
        self.reason = reason
        self.method = method
        self.path = path
        self.retryable = retryable
        what = f" for {method} {path}" if method and path else ""
        super().__init__(f"Could not reach the PVE API on {host}{what}: {reason}")


class TaskFailed(PvetoolError):
    """A PVE task stopped with an exit status other than ``OK`` or ``WARNINGS: n``."""

    exit_code = 1

    def __init__(
        self,
        *,
        upid: str,
        node: str,
        exitstatus: str,
        last_lines: Sequence[str] = (),
        description: str | None = None,
    ) -> None:
        self.upid = upid
        self.node = node
        self.exitstatus = exitstatus
        self.last_lines = tuple(last_lines)
        self.description = description or "Task"
        what = self.description
        text = f"{what} on node {node} failed with exit status '{exitstatus}' (UPID {upid})"
        if self.last_lines:
            text += ". Last log lines: " + " | ".join(line.strip() for line in self.last_lines)
        super().__init__(text)

    @property
    def reason(self) -> str:
        """PVE's own words for the failure, from the task log (else the exit status)."""
        texts = [ln.split(" ", 2)[-1] if ln[:4].isdigit() else ln for ln in self.last_lines]
        specific = (
            "can't ",
            "does not exist",
            "not available",
            "Cannot allocate",
            "not running",
            "in negative affinity with resource",  # a hamigrate the HA manager refused (D5)
        )
        for text in reversed(texts):
            if any(k in text for k in specific) and "check log" not in text:
                return text.removeprefix("ERROR: ").removeprefix("- ")
        for line in reversed(self.last_lines):
            text = line.split(" ", 2)[-1] if line[:4].isdigit() else line
            if "migration aborted (duration" in text and "): " in text:
                return text.split("): ", 1)[1]
            if text.startswith("ERROR: ") and "finished with problems" not in text:
                return text[len("ERROR: ") :]
        return self.exitstatus


class TaskTimeout(PvetoolError):
    """A task did not finish within the timeout. It is *not* stopped: it keeps running."""

    exit_code = 1

    def __init__(
        self,
        *,
        upid: str,
        node: str,
        timeout_s: float,
        detail: str | None = None,
    ) -> None:
        self.upid = upid
        self.node = node
        self.timeout_s = timeout_s
        text = detail or (
            f"Task {upid} did not finish within {timeout_s:g} s; it is still running on "
            f"node {node} and was not stopped"
        )
        super().__init__(text)


class Interrupted(PvetoolError):
    """The operator interrupted the run; `upid` names a task that may still be running."""

    exit_code = 1

    def __init__(self, message: str = "Interrupted by the operator", *, upid: str | None = None):
        self.upid = upid
        text = message
        if upid:
            text = f"{message.rstrip('.')}; task {upid} may still be running"
        super().__init__(text)


class VerificationFailed(PvetoolError):
    """A task reported success but the cluster does not show the expected result."""

    exit_code = 1

    def __init__(self, message: str, *, upid: str | None = None) -> None:
        self.upid = upid
        super().__init__(message)
