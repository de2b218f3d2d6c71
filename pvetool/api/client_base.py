"""The part of `PveClient` every call shares: construction, the funnel, conversion, and the
checks of the arguments a call sends (node names, VMIDs, storage IDs, UPIDs).

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.settings` and
`pvetool.api.transport`. `PveClient` (`api/client.py`) adds one method per REST call.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar

from pvetool.api.transport import Transport
from pvetool.errors import InvalidAnswer, ValidationError
from pvetool.model import GuestKind, PveVersion, Upid
from pvetool.settings import HostPort, Settings, TokenAuth

__all__ = [
    "SID_RE",
    "ClientBase",
    "as_upid",
    "check_kind",
    "check_node",
    "check_vmid",
    "storage_pairs",
]

T = TypeVar("T")

_NODE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_STORAGE_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]$")
SID_RE = re.compile(r"^(?:(?:vm|ct):)?\d+$")


def check_node(node: str) -> str:
    if not _NODE_RE.match(node):
        raise ValidationError(f"'{node}' is not a valid PVE node name", field="node")
    return node


def check_vmid(vmid: int) -> int:
    if isinstance(vmid, bool) or not isinstance(vmid, int) or not 100 <= vmid <= 999_999_999:
        raise ValidationError(f"'{vmid}' is not a valid VMID (100 to 999999999)", field="vmid")
    return vmid


def check_kind(kind: str) -> GuestKind:
    if kind == "qemu":
        return "qemu"
    if kind == "lxc":
        return "lxc"
    raise ValidationError(f"'{kind}' is not a guest kind (qemu or lxc)", field="kind")


def as_upid(upid: Upid | str) -> Upid:
    return upid if isinstance(upid, Upid) else Upid.parse(upid)


def storage_pairs(value: Mapping[str, str] | str, field: str) -> str:
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


class ClientBase:
    """Construction, housekeeping and the one funnel of `PveClient` (see there)."""

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
        self._lock = threading.RLock()
        self._versions: dict[str, PveVersion] = {}
        self._transport = Transport(settings, sleep=sleep, monotonic=monotonic)

    # -- housekeeping

    def __repr__(self) -> str:
        return f"PveClient(host={self.current_host}, auth={self._settings.auth!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def trace_http(self, hook: Callable[[Any], None]) -> None:
        """Call `hook` with every HTTP answer (requests' response; see
        `Transport.add_response_hook`: method, path, status and duration only)."""
        self._transport.add_response_hook(hook)

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def session_user(self) -> str:
        """Who this session is to PVE: the token id (``user@realm!name``) for a token, the
        user of a password login (which uses a ticket). Only ``root@pam`` itself may send
        ``force``, ``migration_type`` and ``migration_network`` (qemu-server
        ``src/PVE/API2/Qemu.pm`` ``migrate_vm`` l.5577-5585)."""
        auth = self._settings.auth
        return auth.token_id if isinstance(auth, TokenAuth) else auth.user

    @property
    def current_host(self) -> HostPort:
        """The host calls currently go to (it changes only on a connection failure)."""
        return self._transport.current_host

    def now_s(self) -> float:
        """Epoch seconds by this client's wall clock (what snapshots are stamped with)."""
        return self._wall_clock()

    def _request(self, method: str, path: str, *, idempotent: bool = True, **params: Any) -> Any:
        """Send one API call through the funnel (retried only when `idempotent`)."""
        return self._transport.request(method, path, idempotent=idempotent, **params)

    def read(self, path: str, **params: Any) -> Any:
        """``GET path``: the raw ``data`` of an answer, through the same funnel (retries,
        failover, the documented-shape check of the endpoints the client knows) but not
        converted. For readers that need PVE's own fields as they are (`pvetool.capture`)."""
        return self._request("GET", path, **params)

    def _call(
        self,
        method: str,
        path: str,
        conv: Callable[[Any], T],
        *,
        idempotent: bool = True,
        **params: Any,
    ) -> T:
        """One API call and the conversion of its (already shape-checked) answer."""
        raw = self._request(method, path, idempotent=idempotent, **params)
        return self._converted(method, path, conv, raw)

    def _converted(self, method: str, path: str, conv: Callable[[Any], T], raw: Any) -> T:
        """`conv(raw)`; what the converter cannot read (a vmid that is no vmid, a UPID that is
        no UPID, a guest listed twice) is an `InvalidAnswer` naming the endpoint, never a crash
        and never a guess."""
        try:
            return conv(raw)
        except ValueError as exc:  # the converters' own words (ValidationError is one)
            problem = str(exc) or type(exc).__name__
        except (TypeError, KeyError, IndexError, AttributeError, ArithmeticError) as exc:
            problem = f"it could not be read ({type(exc).__name__}: {exc})"
        raise InvalidAnswer(method=method, path=path, problem=problem, host=str(self.current_host))
