"""One chaos trial, end to end: emulator up, pvetool runs under faults and kill -9, evidence.

`run_trial(scenario, seed, workdir)`:

1. starts the emulator on the trial's cluster (`python -m pvetool.emulator serve`, a generated
   cluster file written with `python -m pvetool.emulator generate`), with a canary token secret
   (and password) that must never show up in anything pvetool writes;
2. asks pvetool for the plan once without faults (`--dry-run -o json`): the reference of what
   a fully successful run must achieve;
3. runs pvetool (`--yes --report rN.json`) while a scheduler thread fires the trial's faults
   through `/_emulator/` and a watcher thread samples `/_emulator/state` for memory overcommit;
   a run scheduled for kill -9 is killed and followed by `--resume` (which may be killed once
   more); a resume that finds nothing to resume after a kill is followed by what an operator
   would do (`drain` again; a rolling plan or rebalance that already migrated is left as is);
4. cleans up like an operator after the storm: faults cleared, nodes online, quorum back, the
   schedule's temporary locks released, hung tasks let go, orphaned hooks waited for, and then
   waits until no task runs and no HA migration is pending;
5. collects the emulator's own state (`/_emulator/state`, `/cluster/resources`,
   `/cluster/tasks`) and everything pvetool printed or wrote, and checks the invariants
   (invariants.py).

Imports: the standard library, requests (through cluster.py) and the chaos package.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.cluster import ROOT, ApiError, EmulatorProcess, Http, TcpProxy
from tests.chaos.schedule import ClusterChoice, Fault, Trial, cluster_choice, make_trial

RUN_HARD_TIMEOUT_S = 180.0  # a pvetool run longer than this is a hang (invariant "terminates")
CLEANUP_TIMEOUT_S = 60.0
POLL_INTERVAL = "0.05"  # PVETOOL_POLL_INTERVAL: pvetool's task poll for a fast emulated clock
WATCH_INTERVAL_S = 0.05
MIGRATION_TYPES = ("qmigrate", "vzmigrate")
HOOK = Path(__file__).resolve().parent / "hook.py"
# The line pvetool prints when its executor starts (PlainView: `run ID: ...`, `resuming ID: ...`).
RUN_BANNER = re.compile(r"^\d\d:\d\d:\d\d (?:run|resuming) \S+: ", re.MULTILINE)

_generated: dict[tuple[int, int, int], str] = {}
_references: dict[tuple[Any, ...], Reference] = {}


@dataclass
class Reference:
    """What the undisturbed plan moves (from `--dry-run -o json`)."""

    moves: list[tuple[int, str, str]]  # (vmid, source, target) in plan order
    blocked: list[int]
    code: int
    error: str = ""


@dataclass
class PvetoolRun:
    index: int
    argv: list[str]
    resume: bool
    started_s: float  # since the trial's first pvetool process started
    ended_s: float = 0.0
    code: int | None = None  # None: killed (or hung and killed)
    killed: bool = False
    hung: bool = False
    stdout: str = ""
    stderr: str = ""
    report: dict[str, Any] | None = None
    report_error: str = ""
    tasks_before: set[str] = field(default_factory=set)
    tasks_after: set[str] = field(default_factory=set)
    exit_state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evidence:
    trial: Trial
    initial: dict[str, Any]
    reference: Reference | None
    runs: list[PvetoolRun] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)  # what the schedule did, in order
    faults_fired: int = 0
    schedule_locks: dict[int, str] = field(default_factory=dict)  # set and still held
    held_on_purpose: dict[int, str] = field(default_factory=dict)
    memory_violations: list[str] = field(default_factory=list)
    memory_samples: int = 0
    final: dict[str, Any] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)
    cluster_tasks: list[dict[str, Any]] = field(default_factory=list)
    cleanup_idle: bool = True
    cleanup_notes: list[str] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (where, text) to scan
    secrets: list[str] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)
    emulator_stderr: str = ""
    pvetool_user: str = ""

    @property
    def final_run(self) -> PvetoolRun | None:
        return self.runs[-1] if self.runs else None

    @property
    def kills(self) -> int:
        return sum(1 for r in self.runs if r.killed)


def pvetool_command() -> list[str]:
    """The installed `pvetool` console script next to this interpreter, else its entry point."""
    script = Path(sys.executable).with_name("pvetool")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from pvetool.cli.main import main; main()"]


def reproducer(scenario: str, seed: int) -> str:
    return f"python bench/chaos.py --scenario {scenario} --seed {seed} --runs 1 -v"


# --------------------------------------------------------------------------------------------
# the cluster


def _generated_file(choice: ClusterChoice, workdir: Path) -> str:
    assert choice.generate is not None
    key = choice.generate
    text = _generated.get(key)
    if text is None:
        nodes, guests, seed = key
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pvetool.emulator",
                "generate",
                "--nodes",
                str(nodes),
                "--guests",
                str(guests),
                "--seed",
                str(seed),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=True,
        )
        text = _generated[key] = proc.stdout
    # Users of our own (the generated file has none): root@pam with the trial's canary
    # password, for the trials that log in with a password (and whose tickets expire).
    path = workdir / "cluster.yaml"
    path.write_text(
        text + f'users:\n  - {{id: "root@pam", password: "{choice.password}"}}\n',
        encoding="utf-8",
    )
    return str(path)


class Trialrunner:
    def __init__(self, scenario: str, seed: int, workdir: Path, log: Callable[[str], None]):
        self.choice = cluster_choice(scenario, seed)
        self.workdir = workdir
        self.log = log
        self.emu: EmulatorProcess | None = None
        self.http: Http | None = None
        self.proxy: TcpProxy | None = None
        self.t0 = 0.0
        self.chain_done = threading.Event()
        self.watch_done = threading.Event()
        self._lock = threading.Lock()
        self.ev: Evidence | None = None
        self.ctl: Http | None = None  # the scheduler thread's own session

    # -- setup ---------------------------------------------------------------------------------
    def start(self) -> Evidence:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        (self.workdir / "state").mkdir(parents=True)
        (self.workdir / "config").mkdir()
        (self.workdir / "hook-pids").mkdir()
        c = self.choice
        cluster = "lab" if c.generate is None else _generated_file(c, self.workdir)
        self.emu = EmulatorProcess.start(
            cluster,
            self.workdir,
            speed=c.speed,
            token=c.token,
            api_hosts=2 if c.failover else 1,
        )
        self.http = self.emu.http(0)
        initial = self.http.state()
        trial = make_trial(c, initial)
        if trial.plan_yaml is not None:
            hook = [sys.executable, str(HOOK)]
            pids = ["--pids", str(self.workdir / "hook-pids")]
            text = trial.plan_yaml.replace(
                "{hook_reboot}", json.dumps([*hook, "reboot", "--down-s", "0.4", *pids])
            ).replace("{hook_check}", json.dumps([*hook, "check", *pids]))
            (self.workdir / "rolling.yaml").write_text(text, encoding="utf-8")
        if c.failover:
            port = int(self.emu.hosts[0].rpartition(":")[2])
            self.proxy = TcpProxy(("127.0.0.1", port))
        self.ev = Evidence(trial, initial, None, secrets=[c.token_secret, c.password])
        self.ev.pvetool_user = "root@pam" if c.auth == "password" else c.token.partition("=")[0]
        self.ev.reference = self._reference(trial)
        return self.ev

    def env(self) -> dict[str, str]:
        assert self.emu is not None
        c = self.choice
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))}
        hosts = list(self.emu.hosts)
        if self.proxy is not None:
            hosts[0] = self.proxy.host
        env["PVETOOL_HOST"] = ",".join(hosts)
        if c.auth == "token":
            env["PVETOOL_TOKEN"] = c.token
        else:
            env["PVETOOL_USER"] = "root@pam"
            env["PVETOOL_PASSWORD"] = c.password
        env["PVETOOL_VERIFY"] = self.emu.ca_file
        env["PVETOOL_STATE_DIR"] = str(self.workdir / "state")
        env["PVETOOL_POLL_INTERVAL"] = POLL_INTERVAL
        env["XDG_CONFIG_HOME"] = str(self.workdir / "config")  # no operator config file
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["COLUMNS"] = "200"
        # For the rolling hook (the operator's script), not for pvetool.
        env["CHAOS_CONTROL_URL"] = f"https://{self.emu.hosts[0]}"
        env["CHAOS_CONTROL_TOKEN"] = c.token
        env["CHAOS_CONTROL_CA"] = self.emu.ca_file
        return env

    def _reference(self, trial: Trial) -> Reference:
        key = (self.choice.cluster, self.choice.generate, trial.command, trial.plan_yaml)
        cached = _references.get(key)
        if cached is not None:
            return cached
        proc = subprocess.run(
            [*pvetool_command(), *trial.command, "--dry-run", "-o", "json"],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=str(self.workdir),
            timeout=120,
        )
        assert self.ev is not None
        self.ev.texts += [("dry-run stdout", proc.stdout), ("dry-run stderr", proc.stderr)]
        try:
            plan = json.loads(proc.stdout)["plan"]
            moves = [
                (int(m["vmid"]), str(m["source"]), str(m["target"]))
                for stage in plan["stages"]
                for m in stage.get("moves") or ()
            ]
            blocked = [int(v) for v in plan.get("blocked") or ()]
            ref = Reference(moves, blocked, proc.returncode)
        except (ValueError, KeyError, TypeError) as exc:
            ref = Reference([], [], proc.returncode, f"{type(exc).__name__}: {exc}")
            self.ev.harness_errors.append(
                f"the dry-run plan could not be read ({ref.error}); exit {proc.returncode}: "
                + proc.stderr[-500:]
            )
        _references[key] = ref
        return ref

    # -- the runs ------------------------------------------------------------------------------
    def run_chain(self) -> None:
        assert self.ev is not None
        trial = self.ev.trial
        base = [*trial.command, "--yes"]
        kills = list(trial.kills)
        resume = False
        fresh_done = False
        retried = False
        index = 0
        self.t0 = time.monotonic()
        while True:
            kill_at = kills.pop(0) if kills else None
            report = self.workdir / f"r{index}.json"
            args = [*base, *(["--resume"] if resume else []), "--report", str(report)]
            args += ["--report", str(report.with_suffix(".md"))]  # scanned for secrets too
            run = self._run(index, args, resume, kill_at, report)
            self.ev.runs.append(run)
            index += 1
            if run.hung:
                break
            if run.killed:
                resume = True
                continue
            if (
                run.code == 1
                and run.report is None
                and not retried
                and not RUN_BANNER.search(run.stdout)
            ):
                # It could not even read the cluster (an API error through every retry): what
                # an operator does is run the same command again, once.
                retried = True
                self.ev.fired.append(f"{self._now():.2f}s run {run.index} failed early: again")
                continue
            refused = resume and run.code == 2 and "no unfinished run" in run.stderr
            if refused and not fresh_done:
                # What an operator does next: a drain is simply run again (it only moves what
                # is still on the node); a rolling plan or rebalance whose killed run already
                # migrated is not started afresh (it would be a new maintenance).
                started = self._chain_tasks()
                if trial.kind == "drain" or not started:
                    self.ev.fired.append(
                        f"{self._now():.2f}s resume refused (no unfinished run); "
                        f"{len(started)} migration task(s) so far: {trial.kind} again"
                    )
                    resume = False
                    fresh_done = True
                    kills = []
                    continue
            break

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _task_ids(self) -> set[str]:
        assert self.http is not None
        return {str(t["upid"]) for t in self.http.state()["tasks"]}

    def _chain_tasks(self) -> list[str]:
        assert self.http is not None
        return [
            str(t["upid"])
            for t in self.http.state()["tasks"]
            if t["type"] in (*MIGRATION_TYPES, "hamigrate")
        ]

    def _run(
        self, index: int, args: list[str], resume: bool, kill_at: float | None, report: Path
    ) -> PvetoolRun:
        run = PvetoolRun(index, args, resume, self._now() if index else 0.0)
        run.tasks_before = self._task_ids()
        out_path = self.workdir / f"run{index}.out"
        err_path = self.workdir / f"run{index}.err"
        if index == 0:
            self.t0 = time.monotonic()
            run.started_s = 0.0
        started = time.monotonic()
        with open(out_path, "w", encoding="utf-8") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(
                [*pvetool_command(), *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                cwd=str(self.workdir),
                start_new_session=True,
            )
        if index == 0:
            self._start_schedule()
        try:
            if kill_at is not None:
                try:
                    proc.wait(max(0.0, kill_at - (time.monotonic() - started)))
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)  # kill -9 of pvetool itself, by its PID
                    proc.wait(10)
                    run.killed = True
                    self.ev.fired.append(  # type: ignore[union-attr]
                        f"{self._now():.2f}s kill -9 of run {index} (pid {proc.pid})"
                    )
            if not run.killed:
                try:
                    proc.wait(max(1.0, RUN_HARD_TIMEOUT_S - (time.monotonic() - started)))
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                    run.hung = True
        finally:
            # Anything pvetool itself started in its session (not hooks: they have their own).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        run.code = None if run.killed or run.hung else proc.returncode
        run.ended_s = self._now()
        run.stdout = out_path.read_text(encoding="utf-8", errors="replace")
        run.stderr = err_path.read_text(encoding="utf-8", errors="replace")
        assert self.http is not None
        run.exit_state = self.http.state()
        run.tasks_after = {str(t["upid"]) for t in run.exit_state["tasks"]}
        if report.exists():
            text = report.read_text(encoding="utf-8", errors="replace")
            try:
                run.report = json.loads(text)
            except ValueError as exc:
                run.report_error = f"{report.name} is not JSON: {exc}"
        self.log(
            f"  run {index}{' --resume' if resume else ''}: "
            + ("killed -9" if run.killed else "HUNG" if run.hung else f"exit {run.code}")
            + f" at {run.ended_s:.2f}s"
        )
        return run

    # -- the fault schedule -------------------------------------------------------------------
    def _start_schedule(self) -> None:
        assert self.ev is not None
        events: list[tuple[float, int, Callable[[], str | None]]] = []
        for i, f in enumerate(self.ev.trial.faults):
            events.append((f.at_s, i, functools.partial(self._fire, f)))
            if f.until_s is not None:
                events.append((f.until_s, i, functools.partial(self._undo, f)))
        events.sort(key=lambda e: (e[0], e[1]))
        threading.Thread(target=self._schedule, args=(events,), daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _schedule(self, events: list[tuple[float, int, Callable[[], str | None]]]) -> None:
        assert self.ev is not None and self.emu is not None
        self.ctl = self.emu.http(0)  # a session of its own: requests.Session is not thread-safe
        for at_s, _, action in events:
            if self.chain_done.wait(max(0.0, at_s - self._now())):
                return
            try:
                what = action()
            except (ApiError, OSError) as exc:
                what = f"control call failed: {exc}"
            if what:
                with self._lock:
                    self.ev.fired.append(f"{self._now():.2f}s {what}")

    def _fire(self, f: Fault) -> str | None:
        assert self.ctl is not None and self.ev is not None
        p = f.p
        http = self.ctl
        self.ev.faults_fired += 1
        if f.kind in ("burst", "drop"):
            http.control("faults/requests", p)
        elif f.kind == "slow":
            http.control("faults/slow", p)
        elif f.kind == "fail-migration":
            http.control(f"guests/{p['vmid']}/fail-migration", {"at_percent": p["at_percent"]})
        elif f.kind == "hang-migration":
            http.control(f"guests/{p['vmid']}/hang-migration")
            threading.Thread(
                target=self._release_hang, args=(int(p["vmid"]), p["release_after_s"]), daemon=True
            ).start()
        elif f.kind == "node-offline":
            http.control(f"nodes/{p['node']}/offline")
        elif f.kind == "lock":
            vmid = int(p["vmid"])
            guest = http.state()["guests"][str(vmid)]
            if guest["lock"]:
                # A backup (or snapshot) cannot start on a locked guest: PVE's config lock.
                self.ev.faults_fired -= 1
                return f"lock {p['lock']} on {vmid} not set: it is locked ({guest['lock']})"
            http.control(f"guests/{vmid}/lock", {"lock": p["lock"]})
            with self._lock:
                self.ev.schedule_locks[vmid] = str(p["lock"])
                if f.until_s is None:
                    self.ev.held_on_purpose[vmid] = str(p["lock"])
        elif f.kind == "quorum":
            http.control("quorum", {"quorate": False})
        elif f.kind == "ticket-expire":
            http.control("tickets/expire")
        elif f.kind == "failover":
            if self.proxy is not None:
                self.proxy.close()
        return f"fired {f.describe()}"

    def _undo(self, f: Fault) -> str | None:
        assert self.ctl is not None
        p = f.p
        if f.kind == "node-offline":
            self.ctl.control(f"nodes/{p['node']}/online")
            return f"node {p['node']} online again"
        if f.kind == "quorum":
            self.ctl.control("quorum", {"quorate": None})
            return "quorum back"
        if f.kind == "lock":
            return self._release_lock(int(p["vmid"]), self.ctl)
        return None

    def _release_lock(self, vmid: int, http: Http) -> str | None:
        """Release the schedule's lock on `vmid`, if the guest still carries that lock."""
        assert self.ev is not None
        with self._lock:
            ours = self.ev.schedule_locks.pop(vmid, None)
        if ours is None:
            return None
        now = http.state()["guests"][str(vmid)]["lock"]
        if now != ours:
            return f"lock {ours} on {vmid} already gone (now {now})"
        http.control(f"guests/{vmid}/unlock")
        return f"lock {ours} on {vmid} released"

    def _release_hang(self, vmid: int, after_s: float | None) -> None:
        """Let the hung migration of `vmid` go `after_s` seconds after it started to hang."""
        assert self.emu is not None and self.ev is not None
        if after_s is None:
            return  # let go of in the cleanup, after pvetool ended
        http = self.emu.http(0)
        while not self.chain_done.is_set():
            hung = [
                t
                for t in http.state()["tasks"]
                if t["vmid"] == vmid and t["status"] == "running" and t["stats"].get("hung")
            ]
            if hung:
                if self.chain_done.wait(after_s):
                    return
                with contextlib.suppress(ApiError, OSError):
                    http.control(f"tasks/{hung[0]['upid']}/unhang")
                    with self._lock:
                        self.ev.fired.append(f"{self._now():.2f}s unhung {hung[0]['upid']}")
                return
            time.sleep(0.05)

    # -- memory watcher ------------------------------------------------------------------------
    def _watch(self) -> None:
        """No node may hold more memory than it has: the running guests on it plus the guests
        migrating into it (the target QEMU holds the guest's memory while pages arrive)."""
        assert self.emu is not None and self.ev is not None
        http = self.emu.http(0)  # a session of its own: requests.Session is not thread-safe
        over_at_start = _over_committed(self.ev.initial)
        seen: set[str] = set()
        try:
            while not self.watch_done.is_set():
                try:
                    state = http.state()
                except (ApiError, OSError):
                    time.sleep(WATCH_INTERVAL_S)
                    continue
                self.ev.memory_samples += 1
                for node, text in _over_committed(state).items():
                    if node in over_at_start or node in seen:
                        continue
                    seen.add(node)
                    with self._lock:
                        self.ev.memory_violations.append(f"{self._now():.2f}s {text}")
                time.sleep(WATCH_INTERVAL_S)
        finally:
            http.close()

    # -- cleanup and evidence ------------------------------------------------------------------
    def finish(self) -> None:
        assert self.http is not None and self.ev is not None and self.emu is not None
        self.chain_done.set()
        http = self.http
        notes = self.ev.cleanup_notes
        http.control("faults/clear")
        state = http.state()
        for node, info in state["nodes"].items():
            if not info["online"] and self.ev.initial["nodes"][node]["online"]:
                http.control(f"nodes/{node}/online")
                notes.append(f"{node} brought online")
        http.control("quorum", {"quorate": None})
        for vmid in list(self.ev.schedule_locks):
            if vmid not in self.ev.held_on_purpose:
                what = self._release_lock(vmid, http)
                if what:
                    notes.append(what)
        self._wait_hooks()
        deadline = time.monotonic() + CLEANUP_TIMEOUT_S
        while True:
            state = http.state()
            running = [t for t in state["tasks"] if t["status"] == "running"]
            for t in running:
                if t["stats"].get("hung"):
                    http.control(f"tasks/{t['upid']}/unhang")
                    notes.append(f"unhung {t['upid']}")
            pending_ha = [
                v for v, g in state["guests"].items() if g["ha_state"] in ("migrate", "relocate")
            ]
            if not running and not pending_ha:
                break
            if time.monotonic() > deadline:
                self.ev.cleanup_idle = False
                notes.append(
                    f"still busy after {CLEANUP_TIMEOUT_S:g} s: tasks "
                    f"{[t['upid'] for t in running]}, HA migrations of {pending_ha}"
                )
                break
            time.sleep(0.05)
        self.watch_done.set()
        self.ev.final = http.state()
        self.ev.resources = list(http.get("/cluster/resources", type="vm"))
        self.ev.cluster_tasks = list(http.get("/cluster/tasks"))
        for run in self.ev.runs:
            self.ev.texts += [
                (f"run {run.index} stdout", run.stdout),
                (f"run {run.index} stderr", run.stderr),
            ]
        for path in sorted([*self.workdir.glob("r[0-9]*.json"), *self.workdir.glob("r[0-9]*.md")]):
            self.ev.texts.append((path.name, path.read_text(encoding="utf-8", errors="replace")))
        for path in sorted((self.workdir / "state").rglob("*")):
            if path.is_file():
                self.ev.texts.append(
                    (
                        f"state/{path.relative_to(self.workdir / 'state')}",
                        path.read_text(encoding="utf-8", errors="replace"),
                    )
                )

    def _wait_hooks(self) -> None:
        """Hooks of a killed pvetool run on (their own session): let them end, then stop any
        that did not, by the PID each wrote down."""
        folder = self.workdir / "hook-pids"
        deadline = time.monotonic() + 15
        while any(folder.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for mark in folder.iterdir():
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.kill(int(mark.name), signal.SIGKILL)
                assert self.ev is not None
                self.ev.cleanup_notes.append(f"hook pid {mark.name} killed")
            mark.unlink(missing_ok=True)

    def close(self) -> None:
        self.chain_done.set()
        self.watch_done.set()
        if self.proxy is not None:
            self.proxy.close()
        if self.http is not None:
            self.http.close()
        if self.emu is not None:
            self.emu.stop()
            if self.ev is not None:
                self.ev.emulator_stderr = self.emu.stderr_text()


def _over_committed(state: dict[str, Any]) -> dict[str, str]:
    incoming: dict[str, int] = {}
    for task in state["tasks"]:
        target = task["stats"].get("target")
        if task["status"] == "running" and target and task["vmid"] is not None:
            guest = state["guests"][str(task["vmid"])]
            if guest["node"] != target and (
                guest["status"] == "running" or task["type"] == "vzmigrate"
            ):
                incoming[target] = incoming.get(target, 0) + int(guest["memory"])
    over: dict[str, str] = {}
    for name, node in state["nodes"].items():
        total = int(node["memory_committed"]) + incoming.get(name, 0)
        if total > int(node["memory_total"]):
            gib = 2**30
            over[name] = (
                f"{name} holds {total / gib:.1f} GiB (running "
                f"{int(node['memory_committed']) / gib:.1f} + incoming "
                f"{incoming.get(name, 0) / gib:.1f}) of {int(node['memory_total']) / gib:.0f} GiB"
            )
    return over


@dataclass
class TrialResult:
    scenario: str
    seed: int
    evidence: Evidence | None
    violations: list[Any]
    duration_s: float
    description: list[str]

    @property
    def passed(self) -> bool:
        return not self.violations


def run_trial(
    scenario: str,
    seed: int,
    workdir: Path,
    *,
    log: Callable[[str], None] = lambda _line: None,
    keep: bool = False,
) -> TrialResult:
    """Run one trial and check it; `workdir` is removed afterwards unless `keep` or it failed."""
    from tests.chaos.invariants import Violation, check

    started = time.monotonic()
    runner = Trialrunner(scenario, seed, workdir, log)
    violations: list[Violation] = []
    description: list[str] = []
    ev: Evidence | None = None
    try:
        ev = runner.start()
        description = ev.trial.describe()
        for line in description:
            log(line)
        log(f"  set up in {time.monotonic() - started:.1f}s")
        runner.run_chain()
        mark = time.monotonic()
        runner.finish()
        for line in ev.fired:
            log(f"  {line}")
        for line in ev.cleanup_notes:
            log(f"  cleanup: {line}")
        log(f"  cleanup and evidence in {time.monotonic() - mark:.1f}s")
    except Exception as exc:  # the harness itself broke: a failed trial, never a pass
        violations.append(Violation("harness", f"{type(exc).__name__}: {exc}"))
    finally:
        mark = time.monotonic()
        runner.close()
        log(f"  emulator stopped in {time.monotonic() - mark:.1f}s")
    if ev is not None and not violations:
        violations = check(ev)
    duration = time.monotonic() - started
    if not violations and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return TrialResult(scenario, seed, ev, violations, duration, description)


def describe_trial(scenario: str, seed: int, workdir: Path) -> list[str]:
    """The trial's cluster, command, faults and kills, without running pvetool."""
    choice = cluster_choice(scenario, seed)
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = "lab" if choice.generate is None else _generated_file(choice, workdir)
    emu = EmulatorProcess.start(cluster, workdir, speed=0.0, token=choice.token)
    try:
        http = emu.http(0)
        lines = make_trial(choice, http.state()).describe()
        http.close()
    finally:
        emu.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return lines


def summary_line(result: TrialResult) -> str:
    ev = result.evidence
    runs = (
        ", ".join("killed" if r.killed else "hung" if r.hung else f"exit {r.code}" for r in ev.runs)
        if ev
        else "-"
    )
    return (
        f"{result.scenario} seed {result.seed}: "
        f"{'PASS' if result.passed else 'FAIL'} in {result.duration_s:.1f}s ({runs})"
    )
