"""Connection settings: hosts, credentials, TLS, and the retry and wait policy numbers.

Imports: the standard library, PyYAML, `pvetool.errors` and the leaf `pvetool.textfile`.
PyYAML is read here as well as in `planner/loader.py` because settings sit *below* `api` in
the import graph (the client is built from a `Settings`), so this module cannot borrow the
planner's loader; the config file is a small mapping that needs none of the loader's
line-number reporting.

Sources, highest precedence first (per setting):

1. flags: ``--host``, ``--profile``, ``--token-file`` (passed to `load_settings` as keywords);
2. environment: ``PVETOOL_HOST``, ``PVETOOL_TOKEN`` (``user@realm!tokenid=secret``) or
   ``PVETOOL_USER`` + ``PVETOOL_PASSWORD``, ``PVETOOL_VERIFY`` (true, false or a CA file),
   ``PVETOOL_FINGERPRINT``, ``PVETOOL_PROFILE``; when a ``PVETOOL_`` name is unset, the names
   Ansible's Proxmox modules use: ``PROXMOX_HOST``, ``PROXMOX_USER``, ``PROXMOX_TOKEN_ID``,
   ``PROXMOX_TOKEN_SECRET``, ``PROXMOX_PASSWORD``;
3. the selected profile of ``$XDG_CONFIG_HOME/pvetool/config.yaml``
   (``~/.config/pvetool/config.yaml``)::

       default_profile: prod
       profiles:
         prod:
           host: [pve1.example.com, "pve2.example.com:8006"]
           token_command: [pass, show, pve/prod-token]    # run without a shell
           verify: /etc/pvetool/pve-root-ca.pem
         lab:
           host: 192.0.2.10
           user: root@pam
           password_command: secret-tool lookup pve lab
           fingerprint: "AB:CD:...:EF"                     # SHA-256, as PVE shows it

Secrets are wrapped in `Secret`, whose ``repr``/``str`` is ``***``; no message built here quotes
a secret or a command's output.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import shlex
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pvetool.errors import ConfigError
from pvetool.textfile import UnreadableFile, decode_utf8, read_limited

__all__ = [
    "DEFAULT_PORT",
    "HostPort",
    "PasswordAuth",
    "RetryPolicy",
    "Secret",
    "Settings",
    "TokenAuth",
    "WaitPolicy",
    "default_config_path",
    "load_settings",
    "normalize_fingerprint",
    "run_secret_command",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8006
# Bounds of what is read and waited for (pvetool.textfile refuses FIFOs and devices too).
MAX_SECRET_BYTES = 64 * 1024
MAX_CONFIG_BYTES = 1024 * 1024
MAX_TIMEOUT_S = 3600.0  # one request; a task's timeout is the plan's, not this
MAX_RETRIES = 100

PROFILE_KEYS = frozenset(
    {
        "host",
        "token",
        "token_file",
        "token_command",
        "token_id",
        "user",
        "password",
        "password_command",
        "verify",
        "fingerprint",
        "timeout_s",
        "retries",
    }
)
TOP_LEVEL_KEYS = frozenset({"default_profile", "profiles"})

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

RunCommand = Callable[[Sequence[str], str], str]


class Secret:
    """A string that does not show itself: ``repr`` and ``str`` print ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it is handed to the transport."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class HostPort:
    """One API endpoint: host name or address, and port (8006 by default)."""

    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, text: str, *, source: str = "host") -> HostPort:
        """Parse ``host``, ``host:port``, ``[v6]:port``, a bare IPv6 address, or a URL."""
        raw = text.strip()
        if "://" in raw:
            scheme, _, raw = raw.partition("://")
            if scheme.lower() != "https":
                raise ConfigError(f"'{text}' is not an https address", source=source)
            raw = raw.split("/", 1)[0]
        host, port_text = raw, ""
        if raw.startswith("["):
            end = raw.find("]")
            if end < 0:
                raise ConfigError(f"'{text}' has an unclosed '['", source=source)
            host, rest = raw[1:end], raw[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ConfigError(f"'{text}' is not host[:port]", source=source)
                port_text = rest[1:]
        elif raw.count(":") == 1:
            host, port_text = raw.split(":")
        if not host or any(c.isspace() or c in "/@?#" for c in host):
            raise ConfigError(f"'{text}' is not a valid host name or address", source=source)
        port = DEFAULT_PORT
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ConfigError(f"'{text}' has an invalid port", source=source)
            port = int(port_text)
        return cls(host=host, port=port)

    @property
    def url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def __str__(self) -> str:
        return f"{self.url_host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """API token ``user@realm!token_name=secret`` (sent as ``PVEAPIToken=...``)."""

    user: str
    token_name: str
    secret: Secret

    @property
    def token_id(self) -> str:
        return f"{self.user}!{self.token_name}"

    @property
    def userid(self) -> str:
        return self.token_id

    @classmethod
    def parse(cls, text: str, *, source: str, token_id: str | None = None) -> TokenAuth:
        """Parse a full token, or a bare secret when `token_id` (``user@realm!name``) is given.

        The text is never quoted in an error: it may be the secret.
        """
        value = text.strip()
        if value.startswith("PVEAPIToken="):
            value = value[len("PVEAPIToken=") :]
        ident, sep, secret = value.partition("=")
        if sep and "!" in ident:
            user, _, name = ident.partition("!")
            if "@" in user and name and secret:
                return cls(user=user, token_name=name, secret=Secret(secret))
        elif token_id and value and "=" not in value:
            user, _, name = token_id.partition("!")
            if "@" in user and name:
                return cls(user=user, token_name=name, secret=Secret(value))
            raise ConfigError(f"token id '{token_id}' is not user@realm!tokenid", source=source)
        raise ConfigError(
            "the token is not of the form user@realm!tokenid=secret"
            + (" (or a bare secret with token_id set)" if token_id is None else ""),
            source=source,
        )

    def __repr__(self) -> str:
        return f"TokenAuth(token_id={self.token_id!r}, secret=Secret('***'))"


@dataclass(frozen=True, slots=True)
class PasswordAuth:
    """User and password, exchanged for a ticket (``POST /access/ticket``)."""

    user: str
    password: Secret

    @property
    def userid(self) -> str:
        return self.user

    def __repr__(self) -> str:
        return f"PasswordAuth(user={self.user!r}, password=Secret('***'))"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the client retries transient failures (exponential backoff with jitter)."""

    attempts: int = 4
    initial_wait_s: float = 0.5
    max_wait_s: float = 8.0
    jitter_s: float = 0.5


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How tasks are polled, and how long to wait before checking an ambiguous POST."""

    poll_interval_s: float = 1.0
    max_poll_interval_s: float = 5.0
    ambiguous_check_delay_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `PveClient` needs to connect; `sources` says where each value came from."""

    hosts: tuple[HostPort, ...]
    auth: TokenAuth | PasswordAuth
    verify: bool | str = True
    fingerprints: tuple[str, ...] = ()
    profile: str | None = None
    request_timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    wait: WaitPolicy = field(default_factory=WaitPolicy)
    sources: Mapping[str, str] = field(default_factory=dict)
    # What the operator must know about these settings (printed by the CLI): environment
    # variables an explicit --profile overrode, certificate verification turned off.
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ConfigError("no PVE host is configured")
        if len(self.fingerprints) not in (0, 1, len(self.hosts)):
            raise ConfigError(
                f"{len(self.fingerprints)} fingerprints were given for {len(self.hosts)} hosts; "
                "give one for all hosts or one per host, in the same order"
            )

    def fingerprint_for(self, index: int) -> str | None:
        """The pinned certificate fingerprint of host number `index`, if any."""
        if not self.fingerprints:
            return None
        return self.fingerprints[0] if len(self.fingerprints) == 1 else self.fingerprints[index]

    def secret_values(self) -> tuple[str, ...]:
        """The literal secrets, for redaction (never for display)."""
        if isinstance(self.auth, TokenAuth):
            return (self.auth.secret.reveal(),)
        return (self.auth.password.reveal(),)


# --------------------------------------------------------------------------------------------
# Parsing helpers


def normalize_fingerprint(text: str, *, source: str = "fingerprint") -> str:
    """``ab:cd:...`` or ``abcd...`` -> ``AB:CD:...`` (SHA-256, 32 bytes, as PVE shows it)."""
    hexdigits = text.strip().replace(":", "").upper()
    if not re.fullmatch(r"[0-9A-F]{64}", hexdigits):
        raise ConfigError(
            "not a SHA-256 certificate fingerprint (32 colon-separated hex bytes, as PVE "
            "shows it under Node > System > Certificates)",
            source=source,
        )
    return ":".join(hexdigits[i : i + 2] for i in range(0, 64, 2))


def _parse_hosts(value: Any, source: str) -> tuple[HostPort, ...]:
    items: list[str]
    if isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ConfigError("host must be a string or a list of strings", source=source)
    if not items:
        raise ConfigError("no host given", source=source)
    return tuple(HostPort.parse(item, source=source) for item in items)


def _parse_verify(value: Any, source: str) -> bool | str:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("verify must be true, false or the path of a CA file", source=source)
    text = value.strip()
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    path = Path(text).expanduser()
    if not path.exists():
        raise ConfigError(f"the CA file '{path}' does not exist", source=source)
    if not path.is_file():  # a FIFO would block the TLS library reading it
        raise ConfigError(f"the CA file '{path}' is not a regular file", source=source)
    return str(path)


def _parse_fingerprints(value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s]+", value) if p]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = list(value)
    else:
        raise ConfigError("fingerprint must be a string or a list of strings", source=source)
    return tuple(normalize_fingerprint(p, source=source) for p in parts)


def _argv(value: Any, source: str) -> list[str]:
    if isinstance(value, str):
        argv = shlex.split(value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        argv = list(value)
    else:
        raise ConfigError("a command must be a string or a list of strings", source=source)
    if not argv:
        raise ConfigError("the command is empty", source=source)
    return argv


def run_secret_command(argv: Sequence[str], what: str, *, timeout_s: float = 30.0) -> str:
    """Run `argv` without a shell and return the first non-empty line it prints.

    Errors name the program and the exit status but never the output (it may be the secret).
    """
    program = argv[0]
    try:
        proc = subprocess.run(
            list(argv),
            shell=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ConfigError(f"the command '{program}' was not found", source=what) from exc
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(
            f"the command '{program}' did not finish within {timeout_s:g} s", source=what
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"the command '{program}' could not be run ({exc.strerror})", source=what
        ) from exc
    if proc.returncode != 0:
        raise ConfigError(
            f"the command '{program}' failed with exit status {proc.returncode}", source=what
        )
    for line in proc.stdout.splitlines():
        if line.strip():
            return line.strip()
    raise ConfigError(f"the command '{program}' printed nothing", source=what)


def _warn_if_exposed(path: Path, what: str) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        logger.warning(
            "%s %s is writable by other users (mode %04o): anyone who can write it can make "
            "pvetool run commands or use other credentials; run: chmod 600 %s",
            what,
            path,
            mode,
            path,
        )
    elif mode & (stat.S_IRGRP | stat.S_IROTH):
        logger.warning(
            "%s %s is readable by other users (mode %04o) and may hold secrets; run: chmod 600 %s",
            what,
            path,
            mode,
            path,
        )


def _read_secret_file(path_text: str, source: str) -> str:
    """The first non-blank line of a token file: a regular file of at most `MAX_SECRET_BYTES`
    (a FIFO, ``/dev/zero`` or a directory is refused before a byte is read)."""
    path = Path(path_text).expanduser()
    try:
        content = decode_utf8(read_limited(path, MAX_SECRET_BYTES), str(path))
    except UnreadableFile as exc:
        raise ConfigError(f"the file '{path}' {exc.reason}", source=source) from None
    _warn_if_exposed(path, "Token file")
    for line in content.splitlines():
        if line.strip():
            return line.strip()
    raise ConfigError(f"the file '{path}' is empty", source=source)


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/pvetool/config.yaml``, else ``~/.config/pvetool/config.yaml``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "pvetool" / "config.yaml"


def _read_config(path: Path) -> Mapping[str, Any]:
    if not path.exists():
        return {}
    _warn_if_exposed(path, "Config file")
    try:
        data = yaml.safe_load(decode_utf8(read_limited(path, MAX_CONFIG_BYTES), str(path)))
    except UnreadableFile as exc:
        raise ConfigError(exc.reason, source=str(path)) from None
    except RecursionError:
        raise ConfigError("is nested too deeply", source=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"is not valid YAML{where}", source=str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping with 'profiles'", source=str(path))
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(map(str, unknown))}; expected "
            f"{', '.join(sorted(TOP_LEVEL_KEYS))}",
            source=str(path),
        )
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError("'profiles' must be a mapping of name to settings", source=str(path))
    for name, body in profiles.items():
        where = f"{path}: profile {name}"
        if not isinstance(body, dict):
            raise ConfigError("must be a mapping of settings", source=where)
        unknown = sorted(set(body) - PROFILE_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(map(str, unknown))}; expected one of "
                f"{', '.join(sorted(PROFILE_KEYS))}",
                source=where,
            )
    return data


# --------------------------------------------------------------------------------------------
# Credentials


def _auth_from_env(env: Mapping[str, str]) -> tuple[TokenAuth | PasswordAuth, str] | None:
    token = env.get("PVETOOL_TOKEN")
    user = env.get("PVETOOL_USER")
    password = env.get("PVETOOL_PASSWORD")
    if token:
        return TokenAuth.parse(token, source="PVETOOL_TOKEN"), "PVETOOL_TOKEN"
    if user or password:
        if not (user and password):
            missing = "PVETOOL_PASSWORD" if user else "PVETOOL_USER"
            raise ConfigError(f"PVETOOL_USER and PVETOOL_PASSWORD go together; {missing} is unset")
        return PasswordAuth(user=user, password=Secret(password)), "PVETOOL_USER/PVETOOL_PASSWORD"

    # Ansible's names, only when no PVETOOL_ credential is set at all.
    token_id = env.get("PROXMOX_TOKEN_ID")
    token_secret = env.get("PROXMOX_TOKEN_SECRET")
    px_user = env.get("PROXMOX_USER")
    px_password = env.get("PROXMOX_PASSWORD")
    if token_id or token_secret:
        if not (token_id and token_secret):
            raise ConfigError("PROXMOX_TOKEN_ID and PROXMOX_TOKEN_SECRET go together")
        if "!" not in token_id:
            if not px_user:
                raise ConfigError(
                    "PROXMOX_TOKEN_ID has no user@realm! prefix and PROXMOX_USER is unset"
                )
            token_id = f"{px_user}!{token_id}"
        parsed = TokenAuth.parse(token_secret, source="PROXMOX_TOKEN_SECRET", token_id=token_id)
        return parsed, "PROXMOX_TOKEN_ID/PROXMOX_TOKEN_SECRET"
    if px_password:
        if not px_user:
            raise ConfigError("PROXMOX_PASSWORD is set but PROXMOX_USER is not")
        auth = PasswordAuth(user=px_user, password=Secret(px_password))
        return auth, "PROXMOX_USER/PROXMOX_PASSWORD"
    return None


def _auth_from_profile(
    prof: Mapping[str, Any], where: str, run_command: RunCommand
) -> TokenAuth | PasswordAuth | None:
    token_sources = [k for k in ("token", "token_file", "token_command") if prof.get(k)]
    password_sources = [k for k in ("password", "password_command") if prof.get(k)]
    if len(token_sources) > 1 or len(password_sources) > 1:
        raise ConfigError(
            f"give only one of {', '.join(token_sources + password_sources)}", source=where
        )
    token_id = prof.get("token_id")
    if token_id is not None and not isinstance(token_id, str):
        raise ConfigError("token_id must be a string", source=where)
    if token_sources:
        key = token_sources[0]
        src = f"{where}: {key}"
        value = prof[key]
        if key == "token":
            if not isinstance(value, str):
                raise ConfigError("token must be a string", source=src)
            text = value
        elif key == "token_file":
            if not isinstance(value, str):
                raise ConfigError("token_file must be a path", source=src)
            text = _read_secret_file(value, src)
        else:
            text = run_command(_argv(value, src), src)
        return TokenAuth.parse(text, source=src, token_id=token_id)
    if password_sources:
        user = prof.get("user")
        if not isinstance(user, str) or not user:
            raise ConfigError("a password needs 'user' (user@realm)", source=where)
        key = password_sources[0]
        src = f"{where}: {key}"
        value = prof[key]
        if key == "password":
            if not isinstance(value, str):
                raise ConfigError("password must be a string", source=src)
            password = value
        else:
            password = run_command(_argv(value, src), src)
        return PasswordAuth(user=user, password=Secret(password))
    return None


def _first(*candidates: tuple[Any, str]) -> tuple[Any, str] | None:
    for value, source in candidates:
        if value is not None and value != "":
            return value, source
    return None


# --------------------------------------------------------------------------------------------
# Entry point


# The environment variables that say where and how to connect (an explicit --profile wins).
CONNECTION_ENV = frozenset(
    {
        "PVETOOL_HOST",
        "PVETOOL_TOKEN",
        "PVETOOL_USER",
        "PVETOOL_PASSWORD",
        "PVETOOL_VERIFY",
        "PVETOOL_FINGERPRINT",
        "PROXMOX_HOST",
        "PROXMOX_USER",
        "PROXMOX_TOKEN_ID",
        "PROXMOX_TOKEN_SECRET",
        "PROXMOX_PASSWORD",
    }
)


def load_settings(
    *,
    host: str | None = None,
    profile: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    run_command: RunCommand | None = None,
) -> Settings:
    """Build `Settings` from flags (the keyword arguments), the environment and the config file.

    Precedence is flags > environment > profile, per setting, except that an explicit
    `profile` (``--profile``) wins over the connection variables of the environment
    (`CONNECTION_ENV`, ignored with a warning in `Settings.warnings`). Secret commands run only
    for the source that wins.
    """
    env = os.environ if env is None else env
    run = run_command or (lambda argv, what: run_secret_command(argv, what))
    path = Path(config_path) if config_path is not None else default_config_path(env)
    config = _read_config(path)
    sources: dict[str, str] = {}
    warnings: list[str] = []
    profile_name, prof = _chosen_profile(profile, env, config, path, sources)
    if profile is not None:
        # An explicit --profile names the cluster to act on: connection variables left in the
        # environment (another cluster's host or token) must not silently win over it.
        overridden = sorted(k for k in CONNECTION_ENV if env.get(k))
        if overridden:
            warnings.append(
                f"--profile {profile} was given, so {', '.join(overridden)} from the "
                "environment " + ("is" if len(overridden) == 1 else "are") + " ignored"
            )
            env = {k: v for k, v in env.items() if k not in CONNECTION_ENV}
    where = f"{path}: profile {profile_name}"

    host_value = _first(
        (host, "--host"),
        (env.get("PVETOOL_HOST"), "PVETOOL_HOST"),
        (env.get("PROXMOX_HOST"), "PROXMOX_HOST"),
        (prof.get("host"), where),
    )
    if host_value is None:
        raise ConfigError(
            "no PVE host is configured: pass --host, set PVETOOL_HOST, or select a profile "
            f"with a host in {path}"
        )
    hosts = _parse_hosts(host_value[0], host_value[1])
    sources["host"] = host_value[1]
    auth = _winning_auth(token_file, env, prof, where, run, path, sources)
    verify, fingerprints = _tls(env, prof, where, sources)

    timeout_s, retries = _limits(prof, where)
    if verify is False and not fingerprints:
        warnings.append(
            f"TLS certificate verification is off ({sources.get('verify')}): anyone between "
            "this machine and the cluster can read the API token and act as pvetool. Trust the "
            "cluster's CA instead (PVETOOL_VERIFY=/path/to/pve-root-ca.pem, or `verify:` in "
            "the profile) or pin its certificate (PVETOOL_FINGERPRINT=<SHA-256>)"
        )
    return Settings(
        hosts=hosts,
        auth=auth,
        verify=verify,
        fingerprints=fingerprints,
        profile=profile_name,
        request_timeout_s=float(timeout_s),
        retry=RetryPolicy(attempts=retries),
        sources=sources,
        warnings=tuple(warnings),
    )


def _limits(prof: Mapping[str, Any], where: str) -> tuple[float, int]:
    """The profile's request timeout and retry attempts, range-checked."""
    timeout_s = prof.get("timeout_s", 30.0)
    if (
        not isinstance(timeout_s, int | float)
        or isinstance(timeout_s, bool)
        or not 0 < timeout_s <= MAX_TIMEOUT_S
    ):
        raise ConfigError(
            f"timeout_s must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}",
            source=where,
        )
    retries = prof.get("retries", RetryPolicy().attempts)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 1 <= retries <= MAX_RETRIES:
        raise ConfigError(
            f"retries must be a whole number of attempts from 1 to {MAX_RETRIES}", source=where
        )
    return float(timeout_s), retries


def _chosen_profile(
    profile: str | None,
    env: Mapping[str, str],
    config: Mapping[str, Any],
    path: Path,
    sources: dict[str, str],
) -> tuple[str | None, Mapping[str, Any]]:
    """The profile the flag, the environment or the config file's default selects (its name
    and settings), or none; a selected profile that does not exist is an error."""
    chosen = _first(
        (profile, "--profile"),
        (env.get("PVETOOL_PROFILE"), "PVETOOL_PROFILE"),
        (config.get("default_profile"), f"{path}: default_profile"),
    )
    if chosen is None:
        return None, {}
    profile_name = str(chosen[0])
    profiles = config.get("profiles") or {}
    if profile_name not in profiles:
        if not path.exists():
            raise ConfigError(
                f"profile '{profile_name}' was requested but there is no config file at {path}",
                source=chosen[1],
            )
        known = ", ".join(sorted(map(str, profiles))) or "none"
        raise ConfigError(
            f"profile '{profile_name}' is not defined in {path} (defined: {known})",
            source=chosen[1],
        )
    sources["profile"] = chosen[1]
    return profile_name, profiles[profile_name]


def _winning_auth(
    token_file: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    prof: Mapping[str, Any],
    where: str,
    run: RunCommand,
    path: Path,
    sources: dict[str, str],
) -> TokenAuth | PasswordAuth:
    """The credentials: the first layer (flag, environment, profile) that has any wins as a
    whole."""
    auth: TokenAuth | PasswordAuth | None = None
    if token_file is not None:
        text = _read_secret_file(os.fspath(token_file), "--token-file")
        token_id = prof.get("token_id") if isinstance(prof.get("token_id"), str) else None
        auth = TokenAuth.parse(text, source="--token-file", token_id=token_id)
        sources["auth"] = "--token-file"
    if auth is None:
        from_env = _auth_from_env(env)
        if from_env is not None:
            auth, sources["auth"] = from_env
    if auth is None and prof:
        auth = _auth_from_profile(prof, where, run)
        if auth is not None:
            sources["auth"] = where
    if auth is None:
        raise ConfigError(
            "no credentials are configured: set PVETOOL_TOKEN (user@realm!tokenid=secret), or "
            "PVETOOL_USER and PVETOOL_PASSWORD, or a profile with token_command, token_file or "
            f"password_command in {path}"
        )
    return auth


def _tls(
    env: Mapping[str, str], prof: Mapping[str, Any], where: str, sources: dict[str, str]
) -> tuple[bool | str, tuple[str, ...]]:
    """Certificate verification (True, False or a CA file) and the pinned fingerprints."""
    fp_value = _first(
        (env.get("PVETOOL_FINGERPRINT"), "PVETOOL_FINGERPRINT"),
        (prof.get("fingerprint"), where),
    )
    fingerprints = _parse_fingerprints(fp_value[0], fp_value[1]) if fp_value else ()
    if fp_value:
        sources["fingerprint"] = fp_value[1]
    verify_value = _first(
        (env.get("PVETOOL_VERIFY"), "PVETOOL_VERIFY"),
        (prof.get("verify"), where),
    )
    verify: bool | str
    if verify_value is not None:
        verify = _parse_verify(verify_value[0], verify_value[1])
        sources["verify"] = verify_value[1]
    else:
        # A pinned fingerprint replaces CA validation (PVE's certificates are self-signed by
        # the cluster CA), unless verification is asked for explicitly as well.
        verify = not fingerprints
        sources["verify"] = "default"
    return verify, fingerprints
