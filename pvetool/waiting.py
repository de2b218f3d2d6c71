"""One wait policy for every deadline loop: poll until a condition holds or time runs out.

Following a task, waiting for the HA manager's migration task, for a guest's run state, for an
agent ping and for a node to come back are all the same shape: look, check, sleep, until a
deadline; sit out the API's transient failures meanwhile (a node that reboots, a 503 burst).
`wait_until` is that shape, declared once with tenacity; `clock` and `sleep` are replaceable, so
tests wait no real time.

The API client's retry of a single request is a different thing (its own funnel policy in
`pvetool.api.client`), not this.

Imports: the standard library, tenacity and `pvetool.errors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception, retry_if_result

from pvetool.errors import (
    ApiError,
    ApiUnreachable,
    AuthError,
    NotFound,
    PermissionDenied,
    ValidationError,
)

__all__ = ["is_transient", "is_transient_read", "wait_until"]

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Errors to sit out while waiting: no usable answer, or PVE's retryable ones (502, 503,
    595, 596, "got timeout"); the thing waited for goes on while the API is away."""
    return isinstance(exc, ApiUnreachable | ApiError) and exc.retryable


def is_transient_read(exc: BaseException) -> bool:
    """Errors a *read* of something being waited for sits out until its deadline: no usable
    answer, any error status of PVE's except the ones that name the request itself as wrong
    (credentials, privileges, a thing that does not exist), and an answer that could not be
    understood. PVE answers 500 for a node that is busy or a daemon that restarts; reading again
    is harmless, and giving up on the first one loses track of a migration that goes on."""
    if isinstance(exc, AuthError | PermissionDenied | NotFound):
        return False
    return isinstance(exc, ApiUnreachable | ApiError | ValidationError)


def _never() -> bool:
    return False


def wait_until(
    look: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout_s: float,
    poll_s: float | Callable[[], float],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    transient: Callable[[BaseException], bool] = is_transient,
    should_stop: Callable[[], bool] = _never,
) -> T | None:
    """Call `look` until `done(value)` holds and return that value; None when `timeout_s` ran
    out (or `should_stop()` said so) first.

    `poll_s` is the pause between looks (a callable: asked before each pause, for intervals that
    adapt); a pause never runs past the deadline. Errors `transient` accepts are looked past;
    any other error propagates at once, and a transient one still raised when time runs out
    propagates then.
    """
    deadline = clock() + timeout_s

    def pause(_state: RetryCallState) -> float:
        interval = poll_s() if callable(poll_s) else poll_s
        return max(0.0, min(interval, deadline - clock()))

    retrying = Retrying(
        stop=lambda _state: should_stop() or clock() >= deadline,
        wait=pause,
        retry=retry_if_result(lambda value: not done(value)) | retry_if_exception(transient),
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(look)
    except RetryError:
        return None
