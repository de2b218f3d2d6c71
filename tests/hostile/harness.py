"""The hostile-server harness: pvetool (a real process) -> `HostileProxy` -> the emulator.

Not a test module. `HostileLab` starts the built-in `lab` cluster in-process (with canary
secrets: `CANARY_TOKEN`, `CANARY_PASSWORD`), the proxy in front of it and a private state and
config directory, runs pvetool commands against the proxy, and afterwards lets every task end
and reads where each guest really is. `verdict` holds a finished run to the acceptance
criteria of issue 12:

* no "internal error" (and no traceback) and an exit code pvetool documents;
* no exit 0 that left a movable guest unmoved (or, for read-only commands, that showed or
  planned less than the cluster has);
* no guest moved whose configuration answer was spoiled;
* every report consistent with the emulator's final state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pvetool.emulator.clusterfile import load_cluster_text
from pvetool.emulator.server import Emulator
from tests.hostile.proxy import ACCEPTABLE_MODES, HostileProxy

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "pvetool" / "emulator" / "data" / "lab.yaml"

CANARY_TOKEN_ID = "root@pam!canary"
CANARY_TOKEN = "CANARYtoken-7f3e9a1c-5b2d-4e8f-9a6b-1c2d3e4f5a6b"
CANARY_PASSWORD = "CANARYpassword-b8c1d2e3f4a5"
SOURCE = "pvetool-hostile"

SPEED = 50.0
DRAIN = ("drain", "pve1", "--with-local-disks")
MIGRATE_VMID, MIGRATE_FROM, MIGRATE_TO = 110, "pve1", "pve3"


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    out: str
    err: str
    elapsed_s: float
    report: dict[str, Any] | None = None


def _canary_cluster_text() -> str:
    text = LAB.read_text(encoding="utf-8")
    text = text.replace("lab-root-password", CANARY_PASSWORD)
    return text.replace(
        "tokens:\n",
        f'tokens:\n  - {{id: "{CANARY_TOKEN_ID}", secret: "{CANARY_TOKEN}", privileges: all}}\n',
        1,
    )


@dataclass
class HostileLab:
    root: Path
    password_auth: bool = False
    emu: Emulator = field(init=False)
    proxy: HostileProxy = field(init=False)
    runs: list[Run] = field(default_factory=list)

    def start(self) -> HostileLab:
        spec = load_cluster_text(_canary_cluster_text(), "lab-canary.yaml")
        # The cluster's clock starts at the real time, as a real cluster's (NTP) does: the client
        # looks for tasks "started since a minute ago" after an ambiguous POST.
        self.emu = Emulator(spec, speed=SPEED).start()
        tls = self.emu.tls
        self.proxy = HostileProxy(
            f"https://127.0.0.1:{self.emu.port}", tls.ca_file, tls.cert_file, tls.key_file
        ).start()
        (self.root / "config" / "pvetool").mkdir(parents=True, exist_ok=True)
        # Short request timeout and few retries keep the matrix fast; the behaviour is the same.
        (self.root / "config" / "pvetool" / "config.yaml").write_text(
            "profiles:\n  hostile: {timeout_s: 4, retries: 2}\n", encoding="utf-8"
        )
        (self.root / "config" / "pvetool" / "config.yaml").chmod(0o600)
        return self

    def stop(self) -> None:
        self.proxy.stop()
        self.emu.stop()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))}
        env.update(
            PVETOOL_HOST=f"127.0.0.1:{self.proxy.port}",
            PVETOOL_VERIFY=str(self.emu.tls.ca_file),
            PVETOOL_PROFILE="hostile",
            PVETOOL_STATE_DIR=str(self.root / "state"),
            XDG_CONFIG_HOME=str(self.root / "config"),
            PYTHONPATH=str(ROOT),
        )
        if self.password_auth:
            env.update(PVETOOL_USER="root@pam", PVETOOL_PASSWORD=CANARY_PASSWORD)
        else:
            env["PVETOOL_TOKEN"] = f"{CANARY_TOKEN_ID}={CANARY_TOKEN}"
        return env

    def pvetool(self, *args: str, timeout_s: float = 240, env: dict[str, str] | None = None) -> Run:
        report = self.root / f"report-{len(self.runs)}.json"
        wants_report = args[0] in ("drain", "migrate") and "--dry-run" not in args
        full = (*args, "--report", str(report)) if wants_report else args
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", "from pvetool.cli.main import main; main()", *full],
            capture_output=True,
            text=True,
            env={**self.env(), **(env or {})},
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
        run = Run(full, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        if wants_report and report.exists():
            run.report = json.loads(report.read_text(encoding="utf-8"))
        self.runs.append(run)
        return run

    def settle(self, limit_s: float = 60.0) -> None:
        """No spoiled answers any more; every task ends (the clock runs fast)."""
        self.proxy.clear()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            tasks = self.emu.state()["tasks"]
            if not any(t["status"] == "running" for t in tasks):
                return
            time.sleep(0.1)
        raise AssertionError("tasks still running after the run")

    def placement(self) -> dict[int, str]:
        return {int(v): g["node"] for v, g in self.emu.state()["guests"].items()}

    def outputs(self) -> Iterator[tuple[str, str]]:
        """(what, text) of everything pvetool wrote: outputs, reports, journals."""
        for i, run in enumerate(self.runs):
            yield f"run {i} stdout", run.out
            yield f"run {i} stderr", run.err
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".html", ".xml"):
                yield str(path), path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def hostile_lab(root: Path, *, password_auth: bool = False) -> Iterator[HostileLab]:
    lab = HostileLab(root, password_auth=password_auth).start()
    try:
        yield lab
    finally:
        lab.stop()


# --- what a clean run does (the baseline every hostile run is held to) --------------------------


@dataclass(frozen=True)
class Baseline:
    movable: frozenset[int]  # guests a clean drain of pve1 moves
    guests: dict[int, str]  # where every guest is before anything moves
    check_code: int
    dry_run_code: int


@cache
def baseline(root: str) -> Baseline:
    with hostile_lab(Path(root)) as lab:
        guests = lab.placement()
        dry = lab.pvetool(*DRAIN, "--dry-run", "-o", "json")
        assert dry.code == 0, dry.err
        plan = json.loads(dry.out)["plan"]
        movable = frozenset(m["vmid"] for s in plan["stages"] for m in s["moves"])
        check = lab.pvetool("check", *DRAIN, "-o", "json")
    return Baseline(movable, guests, check.code, dry.code)


# --- the verdict --------------------------------------------------------------------------------


@dataclass
class Verdict:
    crash: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.crash and not self.wrong


def _planned_off(doc: dict[str, Any], kind: str) -> tuple[set[int], set[int]]:
    """(guests planned to leave pve1, guests blocked) of a plan or check-matrix document."""
    if kind == "check":
        moving = {g["vmid"] for g in doc.get("guests", []) if g.get("moves")}
        return moving, set(doc.get("blocked", []))
    plan = doc.get("plan", {})
    moving = {m["vmid"] for s in plan.get("stages", []) for m in s.get("moves", [])}
    return moving, set(plan.get("blocked", []))


def verdict(
    kind: str,
    mode: str,
    run: Run,
    lab: HostileLab,
    base: Baseline,
    spoiled_configs: frozenset[int] = frozenset(),
) -> Verdict:
    """Hold one finished (and settled) run to issue 12's acceptance criteria."""
    v = Verdict()
    if "internal error" in run.err or "Traceback" in run.err:
        v.crash.append(f"internal error: {run.err.strip()[-400:]}")
    if run.code not in (0, 1, 2):
        v.crash.append(f"exit code {run.code}")
    where = lab.placement()
    spoiled_configs = spoiled_configs if mode not in ACCEPTABLE_MODES else frozenset()
    for vmid in spoiled_configs:
        if where.get(vmid) != base.guests.get(vmid):
            v.wrong.append(f"guest {vmid} moved although its config answer was {mode}")
    if kind == "status" and run.code == 0:
        shown = {g["vmid"]: g["node"] for g in json.loads(run.out)["guests"]}
        if shown != where:
            v.wrong.append(f"status exit 0 but shows {len(shown)} guests, not the cluster's")
    elif kind in ("check", "dry-run") and run.code == 0:
        moving, blocked = _planned_off(json.loads(run.out), kind)
        missing = base.movable - moving - blocked
        if missing:
            v.wrong.append(f"{kind} exit 0 without movable guests {sorted(missing)}")
    elif kind == "drain":
        left = sorted(g for g in base.movable if where.get(g) == "pve1")
        if run.code == 0 and left:
            v.wrong.append(f"drain exit 0 but {left} still on pve1")
        v.wrong += _report_problems(run, where)
    elif kind == "migrate":
        if run.code == 0 and where.get(MIGRATE_VMID) != MIGRATE_TO:
            v.wrong.append(f"migrate exit 0 but {MIGRATE_VMID} is on {where.get(MIGRATE_VMID)}")
        v.wrong += _report_problems(run, where)
    return v


def _report_problems(run: Run, where: dict[int, str]) -> list[str]:
    """A report that does not match the cluster (a run that never started writes none)."""
    if run.report is None:
        return []
    problems = []
    if run.report.get("exit_code") != run.code:
        problems.append(f"report exit_code {run.report.get('exit_code')} != {run.code}")
    for move in run.report.get("moves", []):
        vmid, status, now = move["vmid"], move["status"], where.get(move["vmid"])
        if status == "moved" and now not in (move["target"], move.get("node")):
            problems.append(f"report says {vmid} moved to {move['target']}, it is on {now}")
        if status != "moved" and not move.get("still_running") and now != move["source"]:
            problems.append(f"report says {vmid} {status}, but it left {move['source']} ({now})")
    return problems
