"""A connected PVE cluster for the portable end-to-end tests: the emulator, or a real cluster.

`Backend.emulated()` starts the emulator in this process on `tests/data/clusters/nested-like.yaml`
(the nested lab of `nested-pve/` as an emulated cluster) with its clock stopped: `pvetool(...)`
runs the CLI in this process on the emulator's stepped clock (`inprocess.py`), and the helpers'
waits step it too; for a test that needs pvetool as a process (`process` mark), `real_time()`
lets the clock run at `EMULATOR_SPEED` meanwhile. `Backend.from_env_file` reads a `cluster.env`
(`export PVETOOL_HOST=...` lines, as `nested-pve/up` and `pvetool emulator serve` print them)
and uses whatever cluster it names, with pvetool as a process in real time. Either way the tests
see the same thing:

- `env`: the `PVETOOL_*` settings `pvetool` runs with (`pvetool(...)`, `spawn(...)`);
- `api`: a plain requests client with the same token and CA (not pvetool's client: the tests must
  not depend on the code they check). Placement (`guests()`, `where()`, `placement()`) and task
  lists are read through the PVE API, never from the emulator's internals;
- the test guests by role: the guests tagged `pvelab` plus their kind (`nodisk`, `shared-disk`,
  `local-disk`, `local-device`, `ha`, `container`, `alive`, `stopped`), exactly as
  `nested-pve/up` tags them.

Safety on a real cluster: only test guests are ever moved (`restore`, `migrate`), nothing is
created or deleted, and `require_only_test_guests` lets a test that would move every guest of a
node (drain, rolling maintenance, rebalance) skip itself when a guest the suite did not create is
in the way.

Imports: requests, pytest, and the emulator and pvetool's CLI (through `tests.e2e.inprocess`)
for the in-process backend.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
import urllib3

from tests.e2e.inprocess import NO_CONFIG, Run, SteppedClock, run_cli

ROOT = Path(__file__).resolve().parents[2]
NESTED_LIKE = ROOT / "tests" / "data" / "clusters" / "nested-like.yaml"
PVELAB = ROOT / "nested-pve" / "pvelab.py"

TEST_TAG = "pvelab"  # nested-pve/pvelab.py: `--tags "pvelab;<kind>"`
ROLES = (
    "nodisk",
    "shared-disk",
    "local-disk",
    "local-device",
    "ha",
    "container",
    "alive",
    "stopped",
)
LAB_TOKEN_ID = "pvetool@pve!ci"  # config.toml [token]: the least-privilege token of the lab

EMULATOR_SPEED = 50.0  # emulated seconds per real second while a `process` test runs
EMULATOR_POLL_S = "0.05"  # pvetool's task poll interval at that speed (real seconds)
STEPPED_POLL_S = "2.5"  # on the stepped clock (emulated seconds): the same cadence
MIGRATION_TYPES = {"qemu": "qmigrate", "lxc": "vzmigrate"}


class ApiRefused(Exception):
    """PVE answered with an error status."""

    def __init__(self, method: str, path: str, status: int, reason: str, body: Any) -> None:
        super().__init__(f"{method} {path}: HTTP {status} {reason}: {body}")
        self.status = status
        self.reason = reason
        self.body = body


@functools.cache
def load_pvelab() -> ModuleType:
    """nested-pve/pvelab.py (a script folder, not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location("pvelab", PVELAB)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("pvelab", module)
    spec.loader.exec_module(module)
    return module


def read_env_file(path: Path) -> dict[str, str]:
    """`export NAME=value` lines (shell quoting, comments): pvelab's own reader."""
    values: dict[str, str] = load_pvelab().read_env_file(path)
    return values


def _base_url(host: str) -> str:
    """`10.0.0.1:8006`, `pve1` (port 8006), `[fd00::1]:8006` -> the API's base URL."""
    if host.startswith("["):
        hostport = host if "]:" in host else f"{host}:8006"
    elif host.count(":") == 1:
        hostport = host
    elif ":" in host:
        hostport = f"[{host}]:8006"
    else:
        hostport = f"{host}:8006"
    return f"https://{hostport}/api2/json"


def _verify(value: str | None) -> bool | str:
    text = (value or "true").strip()
    if text.lower() in ("0", "false", "no", "off"):
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return False
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    return text


class PveApi:
    """The PVE API over HTTPS with an API token, failing over between the listed hosts."""

    def __init__(self, env: Mapping[str, str]) -> None:
        hosts = [h.strip() for h in env["PVETOOL_HOST"].split(",") if h.strip()]
        if not hosts:
            raise ValueError("PVETOOL_HOST names no host")
        self.bases = [_base_url(h) for h in hosts]
        self._current = 0
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
        self.session.verify = _verify(env.get("PVETOOL_VERIFY"))
        self.session.headers["Authorization"] = f"PVEAPIToken={env['PVETOOL_TOKEN']}"

    def call(self, method: str, path: str, **params: Any) -> Any:
        last: Exception | None = None
        for i in range(len(self.bases)):
            index = (self._current + i) % len(self.bases)
            url = self.bases[index] + path
            try:
                if method in ("POST", "PUT"):
                    r = self.session.request(method, url, data=params, timeout=30)
                else:
                    r = self.session.request(method, url, params=params, timeout=30)
            except requests.ConnectionError as exc:
                last = exc
                continue
            self._current = index
            try:
                body = r.json() if r.content else None
            except ValueError:
                body = r.text
            if r.status_code != 200:
                raise ApiRefused(method, path, r.status_code, r.reason, body)
            return body["data"] if isinstance(body, dict) else body
        raise ConnectionError(f"no PVE host answered {method} {path}: {last}")

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def post(self, path: str, **params: Any) -> Any:
        return self.call("POST", path, **params)


def tags_of(resource: Mapping[str, Any]) -> set[str]:
    """PVE's tag list (`a;b`, also `,` or spaces: PVE::Tools::split_list), lower case."""
    return {t.lower() for t in re.split(r"[;,\s]+", str(resource.get("tags") or "")) if t}


@dataclass
class Backend:
    """A cluster the portable tests run against (see the module docstring)."""

    kind: str  # "emulator" | "external"
    env: dict[str, str]
    api: PveApi
    extras: dict[str, str] = field(default_factory=dict)  # PVELAB_* and other env-file lines
    emulator: Any = None  # pvetool.emulator.server.Emulator for the in-process backend
    stepped: SteppedClock | None = None  # the emulator's clock while it stands still
    poll_s: float = 0.5  # the helpers' waits: pause between looks ...
    wait_s: float = 900.0  # ... and how long at most (emulated seconds on the stepped clock)
    state_dir: Path | None = None
    outputs: list[str] = field(default_factory=list)
    homes: dict[int, str] = field(default_factory=dict)  # test guests at the session's start

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def emulated(cls) -> Backend:
        from pvetool.emulator.clusterfile import load_cluster
        from pvetool.emulator.server import Emulator
        from tests.emu import START_EPOCH

        spec = load_cluster(str(NESTED_LIKE))
        emu = Emulator(spec, speed=0.0, start_epoch_s=START_EPOCH).start()
        token = next(t for t in spec.tokens if t.id == LAB_TOKEN_ID)
        env = {
            "PVETOOL_HOST": emu.host_list,
            "PVETOOL_TOKEN": f"{token.id}={token.secret}",
            "PVETOOL_VERIFY": str(emu.tls.ca_file),
            "PVETOOL_POLL_INTERVAL": STEPPED_POLL_S,
        }
        stepped = SteppedClock(emu)
        return cls("emulator", env, PveApi(env), emulator=emu, stepped=stepped, poll_s=1.0)

    @classmethod
    def from_env_file(cls, path: Path) -> Backend:
        values = read_env_file(path)
        missing = [k for k in ("PVETOOL_HOST", "PVETOOL_TOKEN") if not values.get(k)]
        if missing:
            raise ValueError(f"{path}: {', '.join(missing)} not set")
        env = {k: v for k, v in values.items() if k.startswith("PVETOOL_")}
        extras = {k: v for k, v in values.items() if not k.startswith("PVETOOL_")}
        poll = env.get("PVETOOL_POLL_INTERVAL")
        poll_s = min(0.5, float(poll)) if poll else 0.5
        return cls("external", env, PveApi(env), extras=extras, poll_s=poll_s)

    def close(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()

    @property
    def secret(self) -> str:
        return self.env["PVETOOL_TOKEN"].partition("=")[2]

    @contextlib.contextmanager
    def real_time(self) -> Iterator[None]:
        """While in the block, the in-process emulator's clock runs `EMULATOR_SPEED` times real
        time and pvetool runs as a process (for tests that signal it); an external cluster
        always does."""
        stepped = self.stepped
        if stepped is None:
            yield
            return
        saved = (self.env, self.poll_s, self.wait_s)
        self.emulator.clock.set_speed(EMULATOR_SPEED)
        self.stepped = None
        self.env = {**self.env, "PVETOOL_POLL_INTERVAL": EMULATOR_POLL_S}
        self.poll_s, self.wait_s = 0.02, 120.0
        try:
            yield
        finally:
            self.emulator.clock.set_speed(0.0)
            self.stepped = stepped
            self.env, self.poll_s, self.wait_s = saved

    # -- pvetool: in this process on the stepped clock, or as a process ------------------------
    def _process_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))}
        full.update(self.env)
        if self.state_dir is not None:
            full["PVETOOL_STATE_DIR"] = str(self.state_dir)
        full.update(env or {})
        full["PYTHONPATH"] = str(ROOT)
        full["XDG_CONFIG_HOME"] = str(NO_CONFIG)
        return full

    def pvetool(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 0) -> Run:
        if self.stepped is not None:
            settings = dict(self.env)
            if self.state_dir is not None:
                settings["PVETOOL_STATE_DIR"] = str(self.state_dir)
            settings.update(env or {})
            run = run_cli(
                args,
                settings,
                clocks=self.stepped.clocks(),
                stepped=self.stepped,
                limit_s=timeout or 120.0,
            )
            self.outputs += [run.out, run.err]
            return run
        proc = subprocess.run(
            [sys.executable, "-c", "from pvetool.cli.main import main; main()", *args],
            capture_output=True,
            text=True,
            env=self._process_env(env),
            timeout=timeout or self.wait_s,
        )
        self.outputs += [proc.stdout, proc.stderr]
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """`pvetool` in the background, its stdout readable line by line (`real_time()`)."""
        assert self.stepped is None, "a pvetool process needs the emulator's clock running"
        return subprocess.Popen(
            [sys.executable, "-c", "from pvetool.cli.main import main; main()", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._process_env(env),
        )

    def interrupt(self, proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGINT)

    def collect(self, proc: subprocess.Popen[str], seen: list[str]) -> Run:
        out, err = proc.communicate(timeout=self.wait_s)
        text = "".join(seen) + out
        self.outputs += [text, err]
        return Run(proc.returncode, text, err)

    @staticmethod
    def read_until(proc: subprocess.Popen[str], needle: str, seen: list[str]) -> str | None:
        """Read stdout lines until one contains `needle` (returned) or the process ends."""
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if needle in line:
                return line
        return None

    def report_args(self, name: str) -> list[str]:
        """`--report DIR/name.html` when PVETOOL_E2E_REPORTS names a folder (CI artifacts)."""
        folder = os.environ.get("PVETOOL_E2E_REPORTS")
        if not folder:
            return []
        Path(folder).mkdir(parents=True, exist_ok=True)
        return ["--report", str(Path(folder) / f"{self.kind}-{name}.html")]

    # -- the cluster, read through the API -----------------------------------------------------
    def guests(self) -> dict[int, dict[str, Any]]:
        """Every guest of `/cluster/resources?type=vm`, by vmid."""
        return {int(r["vmid"]): r for r in self.api.get("/cluster/resources", type="vm")}

    def where(self, vmid: int) -> str:
        return str(self.guests()[vmid]["node"])

    def placement(self) -> dict[int, str]:
        return {vmid: str(g["node"]) for vmid, g in self.guests().items()}

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {str(r["node"]): r for r in self.api.get("/cluster/resources", type="node")}

    def online_nodes(self) -> list[str]:
        return sorted(n for n, r in self.nodes().items() if r.get("status") == "online")

    def roles(self) -> dict[str, int]:
        """Role (kind tag) -> vmid of the test guests."""
        found: dict[str, int] = {}
        for vmid, g in sorted(self.guests().items()):
            tags = tags_of(g)
            if TEST_TAG not in tags:
                continue
            for role in ROLES:
                if role in tags:
                    found.setdefault(role, vmid)
        return found

    def test_vmids(self) -> set[int]:
        return {vmid for vmid, g in self.guests().items() if TEST_TAG in tags_of(g)}

    def role(self, role: str) -> int:
        """The vmid of the test guest with this role; skips the test when there is none."""
        vmid = self.roles().get(role)
        if vmid is None:
            pytest.skip(f"this cluster has no test guest tagged '{TEST_TAG};{role}'")
        return vmid

    def other_node(self, node: str) -> str:
        """The first online node (by name) other than `node`."""
        return next(n for n in self.online_nodes() if n != node)

    def foreign_guests(self, node: str | None = None) -> set[int]:
        """Guests the suite did not create (on `node`, or anywhere)."""
        return {
            vmid
            for vmid, g in self.guests().items()
            if TEST_TAG not in tags_of(g) and (node is None or g["node"] == node)
        }

    def require_only_test_guests(self, node: str | None = None) -> None:
        """Skip when a guest the suite did not create would be moved (drain, rebalance)."""
        foreign = self.foreign_guests(node)
        if foreign:
            where = f"node {node}" if node else "the cluster"
            pytest.skip(
                f"{where} holds guests this suite did not create ({sorted(foreign)}): "
                "the test would move them"
            )

    def migration_tasks(self, node: str, vmid: int) -> list[dict[str, Any]]:
        """The migration tasks of `vmid` in `node`'s task list (running ones too)."""
        gtype = str(self.guests()[vmid]["type"])
        rows: list[dict[str, Any]] = self.api.get(
            f"/nodes/{node}/tasks",
            vmid=vmid,
            typefilter=MIGRATION_TYPES[gtype],
            source="all",
            limit=500,
        )
        return rows

    def task_upids(self, nodes: Iterable[str], vmids: Iterable[int]) -> set[str]:
        return {
            str(t["upid"])
            for node in nodes
            for vmid in vmids
            for t in self.migration_tasks(node, vmid)
        }

    def memory_loads(self) -> dict[str, float]:
        """Configured memory of the running guests / the node's memory, per online node."""
        nodes = {n: r for n, r in self.nodes().items() if r.get("status") == "online"}
        used = dict.fromkeys(nodes, 0)
        for g in self.guests().values():
            if g.get("status") == "running" and g["node"] in used:
                used[str(g["node"])] += int(g.get("maxmem") or 0)
        return {n: used[n] / int(r["maxmem"]) for n, r in nodes.items()}

    # -- moving test guests through the API (restore) ------------------------------------------
    def _wait(self, what: str, done: Callable[[], bool]) -> None:
        """Look until `done()`: stepping the emulator's clock while it stands still, else in
        real time."""
        clock, sleep = time.monotonic, time.sleep
        if self.stepped is not None:
            clock, sleep = self.stepped.monotonic, self.stepped.sleep
        deadline = clock() + self.wait_s
        while not done():
            if clock() > deadline:
                raise AssertionError(f"timed out after {self.wait_s:.0f} s waiting for {what}")
            sleep(self.poll_s)

    def _wait_task(self, upid: str) -> None:
        node = upid.split(":")[1]
        status: dict[str, Any] = {}

        def stopped() -> bool:
            status.update(self.api.get(f"/nodes/{node}/tasks/{upid}/status"))
            return status.get("status") == "stopped"

        self._wait(f"task {upid}", stopped)
        exit_status = str(status.get("exitstatus"))
        if exit_status != "OK" and not exit_status.startswith("WARNINGS"):
            log = self.api.get(f"/nodes/{node}/tasks/{upid}/log", limit=500)
            lines = "\n".join(str(row.get("t")) for row in log[-10:])
            raise AssertionError(f"task {upid} ended with '{exit_status}':\n{lines}")

    def settled(self, vmids: Iterable[int]) -> bool:
        """No migration lock, no HA migration and no migration task in flight on any of
        `vmids`. The lock alone does not say it: PVE sets it only in phase 1, after the task's
        prepare step (qemu-server ``src/PVE/QemuMigrate.pm`` ``phase1`` l.835-837), so a
        migration just requested shows no lock yet."""
        guests = self.guests()
        wanted = [v for v in vmids if v in guests]
        if not all(
            not guests[v].get("lock") and guests[v].get("hastate") not in ("migrate", "relocate")
            for v in wanted
        ):
            return False
        busy = {
            int(t["id"])
            for node in self.online_nodes()
            for t in self.api.get(f"/nodes/{node}/tasks", source="active", limit=500)
            if t.get("type") in (*MIGRATION_TYPES.values(), "hamigrate")
            and str(t.get("id", "")).isdigit()
        }
        return not busy & set(wanted)

    def wait_settled(self, vmids: Iterable[int]) -> None:
        wanted = list(vmids)
        self._wait(f"the migrations of {wanted} to end", lambda: self.settled(wanted))

    def settle(self) -> None:
        """Wait until no test guest is being migrated (after an interrupted run, say)."""
        self.wait_settled(self.test_vmids())

    def start_migration(self, vmid: int, target: str) -> str:
        """POST the migration a test guest needs (live, restart or offline); its UPID."""
        if vmid not in self.test_vmids():
            raise AssertionError(f"refusing to move guest {vmid}: it is not a test guest")
        g = self.guests()[vmid]
        gtype, node, running = str(g["type"]), str(g["node"]), g.get("status") == "running"
        params: dict[str, Any] = {"target": target}
        if gtype == "qemu":
            if running:
                params["online"] = 1
            params["with-local-disks"] = 1
        elif running:
            params["restart"] = 1
        return str(self.api.post(f"/nodes/{node}/{gtype}/{vmid}/migrate", **params))

    def restore(self, placement: Mapping[int, str]) -> list[int]:
        """Move every test guest back to its node in `placement` (in parallel); the moved ones."""
        self.settle()
        now = self.placement()
        tests = self.test_vmids()
        moves = {v: n for v, n in placement.items() if v in tests and now.get(v) not in (None, n)}
        started = [(v, n, self.start_migration(v, n)) for v, n in sorted(moves.items())]
        for vmid, target, upid in started:
            self._wait_task(upid)  # an HA guest's hamigrate ends before its qmigrate starts

            def arrived(vmid: int = vmid, target: str = target) -> bool:
                return self.where(vmid) == target and self.settled([vmid])

            self._wait(f"guest {vmid} on {target}", arrived)
        return sorted(moves)

    def check_no_secret_leaked(self) -> None:
        secret = self.secret
        for text in self.outputs:
            assert secret not in text, "the API token's secret appeared in pvetool's output"
        self.outputs.clear()
