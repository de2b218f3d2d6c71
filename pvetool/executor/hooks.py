"""Rolling-maintenance helpers: run a hook command, wait for a node to come back.

Hooks run without a shell (an argument list), in their own session (a Ctrl-C at the terminal
does not reach them), with a timeout after which the whole process group is killed, and with
``PVETOOL_NODE`` (and ``PVETOOL_HOOK``, ``PVETOOL_RUN_ID``) added to pvetool's environment,
less its secrets (`SECRET_ENV`: a hook gets the connection's credentials only when its plan
says ``pass_credentials: true``). What a hook prints is kept (its tail) for the journal and the
report only after `redactor` has taken out every secret pvetool knows.
Waiting for a node polls ``/cluster/status`` until the node is online and the cluster quorate,
with the one wait policy (`pvetool.waiting.wait_until`) whose clock and sleep tests replace.

Imports: the standard library, `pvetool.errors`, `pvetool.model` and `pvetool.waiting`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pvetool.errors import ApiError, ApiUnreachable
from pvetool.model import ClusterStatus
from pvetool.waiting import wait_until

__all__ = [
    "SECRET_ENV",
    "HookOutcome",
    "HookRunner",
    "redactor",
    "run_hook",
    "wait_node_online",
]

OUTPUT_TAIL_CHARS = 2000

# pvetool's own secrets in its environment, and Ansible's names it reads (pvetool.settings):
# never inherited by a hook.
SECRET_ENV = frozenset(
    {"PVETOOL_TOKEN", "PVETOOL_PASSWORD", "PROXMOX_TOKEN_SECRET", "PROXMOX_PASSWORD"}
)

# Secrets by their shape, whoever made them: an API token in a header or environment line, a
# ticket (``PVE:user@realm:4EEC61E2::signature``) or its cookie, a CSRF token, a password field.
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"([\w.-]+@[\w.-]+![\w.-]+=)[^\s\"',;]+"), r"\1***"),
    (re.compile(r"PVE:[^:\s]+:[0-9A-Fa-f]{8}::[A-Za-z0-9+/=]+"), "PVE:***"),
    (re.compile(r"(PVEAuthCookie=)[^\s;\"',]+"), r"\1***"),
    (re.compile(r"(CSRFPreventionToken[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+", re.I), r"\1***"),
    (re.compile(r"((?:PVETOOL_|PROXMOX_)(?:PASSWORD|TOKEN_SECRET)=)\S+"), r"\1***"),
)
# Shorter "secrets" would blank out ordinary words; real ones are long.
MIN_SECRET_CHARS = 6


def redactor(secrets: Sequence[str]) -> Callable[[str], str]:
    """A function that replaces each of `secrets` (and anything shaped like a PVE token, ticket,
    CSRF token or password variable) by ``***``."""
    known = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in known:
            text = text.replace(secret, "***")
        for pattern, replacement in _SHAPES:
            text = pattern.sub(replacement, text)
        return text

    return redact


@dataclass(frozen=True)
class HookOutcome:
    exit_code: int | None
    timed_out: bool
    duration_s: float
    output_tail: str
    error: str = ""


HookRunner = Callable[[Sequence[str], Mapping[str, str], float], HookOutcome]


def run_hook(argv: Sequence[str], env: Mapping[str, str], timeout_s: float) -> HookOutcome:
    """Run `argv` (no shell) with `env` added to pvetool's environment less its secrets
    (`SECRET_ENV`); kill it after `timeout_s`."""
    started = time.monotonic()
    inherited = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    full_env = {**inherited, **env}
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,  # the operator's Ctrl-C is for pvetool, not the hook
            text=True,
            errors="replace",
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return HookOutcome(None, False, 0.0, "", f"could not start {argv[0]!r}: {reason}")
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout_s if timeout_s > 0 else None)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        output, _ = proc.communicate()
    return HookOutcome(
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        output_tail=(output or "")[-OUTPUT_TAIL_CHARS:],
    )


def wait_node_online(
    cluster_status: Callable[[], ClusterStatus],
    node: str,
    timeout_s: float,
    *,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[bool, float, str]:
    """Wait until `node` is online and the cluster quorate: (ok, waited seconds, why not)."""
    started = clock()
    last: list[str] = ["no answer yet"]

    def look() -> bool:
        status = cluster_status()
        entry = next((n for n in status.nodes if n.name == node), None)
        if entry is None:
            last[0] = f"{node} is not a member of the cluster"
            return False
        if not entry.online:
            last[0] = f"{node} is offline"
            return False
        if not status.quorate:
            last[0] = "the cluster is not quorate"
            return False
        return True

    # While a node reboots, the API host itself may answer 595/503 or drop connections: the
    # wait looks past those (`pvetool.waiting.is_transient`).
    try:
        ok = bool(
            wait_until(
                look,
                bool,
                timeout_s=timeout_s,
                poll_s=poll_s,
                clock=clock,
                sleep=sleep,
                should_stop=should_stop,
            )
        )
    except (ApiUnreachable, ApiError) as exc:
        ok = False
        last[0] = str(exc)
    waited = clock() - started
    if ok:
        return True, waited, ""
    if should_stop():
        return False, waited, f"stopped waiting for {node}: the run was interrupted"
    return False, waited, f"{node} did not come back within {timeout_s:g} s ({last[0]})"
