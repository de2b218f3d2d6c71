"""The emulated cluster of one trial: the emulator as a process, a plain HTTPS client, a proxy.

- `EmulatorProcess` starts `python -m pvetool.emulator serve` (its own process, fresh state, a
  CA of its own in the trial's folder), reads the `export ...` lines it prints, and stops it by
  its PID;
- `Http` is a deliberately plain requests client (not pvetool's: the campaign must not trust
  the code it checks) for the PVE API (`/api2/json/...`) and the control API (`/_emulator/...`);
  it always talks to a listener directly, never through the proxy;
- `TcpProxy` forwards a local port to one API listener at the TCP level (TLS passes through
  untouched). Closing it resets every connection and refuses new ones: an API host that dies in
  the middle of a run, which pvetool must fail over from (`PVETOOL_HOST=proxy,host2`).

Imports: the standard library and requests.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
_stopping: list[subprocess.Popen[str]] = []  # emulators told to stop, not yet seen to exit


class EmulatorError(RuntimeError):
    """The emulator did not start, or stopped answering."""


@dataclass
class EmulatorProcess:
    """`python -m pvetool.emulator serve` for one trial."""

    proc: subprocess.Popen[str]
    hosts: list[str]  # "127.0.0.1:port", one per API listener
    token: str  # "user@realm!id=secret", every privilege
    ca_file: str
    stderr_path: Path

    @classmethod
    def start(
        cls,
        cluster: str,
        workdir: Path,
        *,
        speed: float,
        token: str,
        api_hosts: int = 1,
    ) -> EmulatorProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        stderr_path = workdir / "emulator.err"
        argv = [
            sys.executable,
            "-m",
            "pvetool.emulator",
            "serve",
            "--cluster",
            cluster,
            "--port",
            "0",
            "--speed",
            f"{speed:g}",
            "--token",
            token,
            "--api-hosts",
            str(api_hosts),
            "--tls-dir",
            str(workdir / "tls"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(stderr_path, "w", encoding="utf-8") as err:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                cwd=str(workdir),
            )
        exports: dict[str, str] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        assert proc.stdout is not None
        while "PVETOOL_VERIFY" not in exports:
            line = proc.stdout.readline()
            if not line:
                proc.wait(5)
                raise EmulatorError(
                    f"the emulator exited with {proc.returncode} before it was ready: "
                    + stderr_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                )
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                exports[name] = value.strip("'\"")
            if time.monotonic() > deadline:
                _kill(proc)
                raise EmulatorError("the emulator did not print its settings in time")
        emu = cls(
            proc,
            [h.strip() for h in exports["PVETOOL_HOST"].split(",")],
            exports["PVETOOL_TOKEN"],
            exports["PVETOOL_VERIFY"],
            stderr_path,
        )
        # Its stdout is not read any more: drain it so that it can never block on a full pipe.
        threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
        return emu

    def http(self, listener: int = 0) -> Http:
        return Http(self.hosts[listener], self.token, self.ca_file)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (the emulator's documented way to stop) by its PID; a reaper thread waits for
        it and sends SIGKILL after 10 s, so that the next trial need not wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            _stopping.append(self.proc)
            threading.Thread(target=_reap, args=(self.proc,), daemon=True).start()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


def _drain(stream: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        for _ in stream:
            pass


def reap_all() -> None:
    """Wait for every emulator this process stopped (SIGKILL after 10 s): none outlives us."""
    while _stopping:
        _reap(_stopping.pop())


def _reap(proc: subprocess.Popen[str]) -> None:
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        _kill(proc)


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, reason: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status} {reason}")
        self.status = status


class Http:
    """The PVE API and the control API of one listener, with the all-privileges token."""

    def __init__(self, host: str, token: str, ca_file: str) -> None:
        self.base = f"https://{host}"
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would replace `verify`
        self.session.verify = ca_file
        self.session.headers["Authorization"] = f"PVEAPIToken={token}"

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        r = self.session.request(method, self.base + url, timeout=30, **kw)
        if r.status_code != 200:
            raise ApiError(method, url, r.status_code, r.reason)
        body = r.json() if r.content else None
        return body.get("data") if isinstance(body, dict) else body

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", "/api2/json" + path, params=params)

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", "/_emulator/state")
        return data

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", "/_emulator/" + path.lstrip("/"), json=body or {})

    def close(self) -> None:
        self.session.close()


@dataclass
class TcpProxy:
    """127.0.0.1:<port> -> `upstream`, byte for byte, until `close()`."""

    upstream: tuple[str, int]
    listener: socket.socket = field(init=False)
    port: int = field(init=False)
    _conns: list[socket.socket] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _closed: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed.is_set():
                    client.close()
                    server.close()
                    return
                self._conns += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        try:
            a.setblocking(False)
            b.setblocking(False)
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while not self._closed.is_set():
                for key, _ in sel.select(timeout=0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    key.data.setblocking(True)
                    key.data.sendall(data)
                    key.data.setblocking(False)
        except OSError:
            return
        finally:
            sel.close()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        """The host dies: refuse new connections, reset the open ones."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: close with RST, as a crashed host's kernel (or a firewall) would.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                s.close()
