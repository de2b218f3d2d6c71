"""Trials: a (scenario, seed) pair and the deterministic plan of what happens in it.

A trial is chosen in two steps, both pure functions of the scenario and the seed:

1. `cluster_choice(scenario, seed)`: which cluster the emulator serves (the built-in `lab`, or
   the arguments of `emulator generate`) and how (clock speed, API hosts, authentication);
2. `make_trial(choice, initial_state)`: the pvetool command, its options, the fault schedule and
   the kill -9 moments, given the cluster's initial state (which guests sit where), which is
   itself determined by the cluster choice.

Fault times are seconds after the first pvetool process of the trial was started; one timeline
runs through the kill -9s and the resumed runs. Each fault is one of the emulator's control
calls (`/_emulator/...`); the ones that are undone later (a node back online, quorum back, a
lock released, a hung task let go) carry the moment of their undoing.

Imports: the standard library.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Literal

SCENARIOS = ("lab-drain", "gen-drain", "lab-rolling", "rebalance")
Kind = Literal["drain", "rolling", "rebalance"]

LAB_PASSWORD = "lab-root-password"  # root@pam of the built-in lab (its data/lab.yaml)
LAB_UNMOVABLE = (114, 115, 121)  # gpu passthrough, a running backup, a USB device

# Paths (regular expressions on the API path after /api2/json) and methods that request faults
# are aimed at: every kind of call a drain makes.
FAULT_PATHS: tuple[tuple[str | None, tuple[str | None, ...]], ...] = (
    ("^/cluster/resources", ("GET",)),
    ("^/cluster/status", ("GET",)),
    ("^/cluster/tasks", ("GET",)),
    ("^/cluster/ha/", ("GET",)),
    ("^/nodes$", ("GET",)),
    ("^/nodes/[^/]+/tasks$", ("GET",)),
    ("/tasks/[^/]+/status$", ("GET",)),
    ("/tasks/[^/]+/log$", ("GET",)),
    ("/migrate$", ("GET", "POST", None)),
    ("/config$", ("GET",)),
    ("/status/current$", ("GET",)),
    ("/agent/ping$", ("POST",)),
    ("^/nodes/[^/]+/network", ("GET",)),
    ("^/storage|/storage$", ("GET",)),
    ("^/access/ticket$", ("POST",)),
    (None, (None, "GET", "POST")),
)
BURST_STATUSES = (500, 502, 503, 595, 596)
LOCKS = ("backup", "snapshot", "clone", "migrate")

FaultKind = Literal[
    "burst",
    "drop",
    "slow",
    "fail-migration",
    "hang-migration",
    "node-offline",
    "lock",
    "quorum",
    "ticket-expire",
    "failover",
]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "burst",
    "drop",
    "slow",
    "fail-migration",
    "hang-migration",
    "node-offline",
    "lock",
    "quorum",
    "ticket-expire",
    "failover",
)


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: `kind` at `at_s`, undone at `until_s` (None: kept until cleanup)."""

    kind: FaultKind
    at_s: float
    params: tuple[tuple[str, Any], ...] = ()
    until_s: float | None = None

    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params)
        until = "" if self.until_s is None else f" until {self.until_s:.2f}s"
        return f"{self.at_s:.2f}s {self.kind}({args}){until}"


@dataclass(frozen=True)
class ClusterChoice:
    scenario: str
    seed: int
    cluster: str  # "lab" or "generated"
    generate: tuple[int, int, int] | None  # nodes, guests, seed of `emulator generate`
    speed: float
    auth: Literal["token", "password"]
    failover: bool  # two API hosts, the first behind a proxy that dies mid-run
    token_secret: str
    password: str

    @property
    def token(self) -> str:
        return f"root@pam!chaos={self.token_secret}"


@dataclass(frozen=True)
class Trial:
    choice: ClusterChoice
    kind: Kind
    command: tuple[str, ...]  # pvetool arguments, without --resume/--report
    nodes: tuple[str, ...]  # drained (drain) or maintained (rolling) nodes
    task_timeout_s: float
    horizon_s: float  # roughly how long the undisturbed run takes
    faults: tuple[Fault, ...]
    kills: tuple[float, ...]  # kill -9 of the first run at kills[0] s, of the resume at [1]
    plan_yaml: str | None = None  # rolling: the plan file's text (hooks filled in at run time)
    notes: tuple[str, ...] = field(default=())

    @property
    def scenario(self) -> str:
        return self.choice.scenario

    @property
    def seed(self) -> int:
        return self.choice.seed

    def describe(self) -> list[str]:
        c = self.choice
        cluster = (
            "lab"
            if c.generate is None
            else "generated nodes={} guests={} seed={}".format(*c.generate)
        )
        lines = [
            f"trial {self.scenario} seed {self.seed}: {cluster}, clock x{c.speed:g}, "
            f"{c.auth} auth{', failover' if c.failover else ''}",
            f"  pvetool {' '.join(self.command)} (task timeout {self.task_timeout_s:g}s)",
        ]
        lines += [f"  fault {f.describe()}" for f in self.faults]
        lines += [f"  kill -9 #{i + 1} at {k:.2f}s" for i, k in enumerate(self.kills)]
        return lines


def _rng(*parts: object) -> random.Random:
    # A string seed goes through SHA-512 in `random`: the same on every run and machine.
    return random.Random(":".join(str(p) for p in parts))


def _secret(seed: int, what: str) -> str:
    digest = hashlib.sha256(f"pvetool-chaos:{what}:{seed}".encode()).hexdigest()
    return f"CHAOS{what.upper()}-{digest[:24]}"


def cluster_choice(scenario: str, seed: int) -> ClusterChoice:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    rng = _rng("cluster", scenario, seed)
    if scenario == "gen-drain" or (scenario == "rebalance" and rng.random() < 0.5):
        generate: tuple[int, int, int] | None = (rng.choice((4, 5)), rng.randint(24, 40), seed)
    else:
        generate = None
    auth: Literal["token", "password"] = "password" if rng.random() < 0.35 else "token"
    return ClusterChoice(
        scenario=scenario,
        seed=seed,
        cluster="lab" if generate is None else "generated",
        generate=generate,
        speed=rng.choice((30.0, 50.0, 50.0)),
        auth=auth,
        failover=rng.random() < 0.2,
        token_secret=_secret(seed, "token"),
        password=LAB_PASSWORD if generate is None else _secret(seed, "password"),
    )


def _guests_by_node(state: dict[str, Any]) -> dict[str, list[int]]:
    return {n: sorted(int(v) for v in info["guests"]) for n, info in state["nodes"].items()}


def make_trial(choice: ClusterChoice, state: dict[str, Any]) -> Trial:
    """The trial of `choice` on the cluster whose initial `/_emulator/state` is `state`."""
    rng = _rng("trial", choice.scenario, choice.seed)
    nodes = sorted(state["nodes"])
    by_node = _guests_by_node(state)
    guests = state["guests"]
    movable = [
        v
        for v in sorted(int(x) for x in guests)
        if not (choice.cluster == "lab" and v in LAB_UNMOVABLE) and not guests[str(v)].get("lock")
    ]
    scale = 50.0 / choice.speed  # real seconds stretch when the emulated clock runs slower
    plan_yaml: str | None = None
    if choice.scenario in ("lab-drain", "gen-drain"):
        kind: Kind = "drain"
        if choice.cluster == "lab":
            node = rng.choice(("pve1", "pve1", "pve2", "pve3"))
        else:
            node = rng.choice(nodes)
        chosen: tuple[str, ...] = (node,)
        command = ["drain", node]
        if choice.cluster == "generated" or rng.random() < 0.75:
            command.append("--with-local-disks")
        if rng.random() < 0.4:
            command += ["--max-parallel", str(rng.randint(1, 3))]
        command += ["--on-failure", rng.choice(("stop", "continue", "skip-guest"))]
        targets = [v for v in by_node[node] if v in movable]
        horizon = (2.5 if choice.cluster == "lab" else 3.0) * scale
        task_timeout = 8.0 if choice.cluster == "lab" else 12.0
    elif choice.scenario == "lab-rolling":
        kind = "rolling"
        chosen = tuple(rng.sample(nodes, rng.choice((1, 2, 2))))
        command = ["plan", "apply", "rolling.yaml"]
        targets = [v for n in chosen for v in by_node[n] if v in movable]
        horizon = 4.0 * len(chosen) * scale
        task_timeout = 8.0
        plan_yaml = _rolling_yaml(chosen, rng.choice(("stop", "stop", "continue")), task_timeout)
    else:
        kind = "rebalance"
        chosen = ()
        by = rng.choice(("memory", "memory", "cpu"))
        threshold = rng.choice((5, 8, 10))
        command = ["rebalance", "--by", by, "--threshold", f"{threshold}%"]
        command += ["--max-moves", str(rng.randint(2, 6))]
        command += ["--on-failure", rng.choice(("stop", "continue"))]
        # A rebalance moves guests off the most loaded nodes: aim the guest faults there.
        load = {
            n: state["nodes"][n]["memory_committed"] / state["nodes"][n]["memory_total"]
            for n in nodes
        }
        busiest = sorted(nodes, key=lambda n: -load[n])[:2]
        targets = [
            v
            for n in busiest
            for v in by_node[n]
            if v in movable and guests[str(v)]["status"] == "running"
        ]
        horizon = 1.5 * scale
        task_timeout = 8.0 if choice.cluster == "lab" else 12.0
    if kind != "rolling":
        command += ["--task-timeout", f"{task_timeout:g}s"]

    faults = _faults(rng, choice, kind, nodes, chosen, targets, horizon, task_timeout)
    kills: list[float] = []
    if rng.random() < 0.5:
        kills.append(round(rng.uniform(0.3, horizon * 1.1), 2))
        if rng.random() < 0.3:
            kills.append(round(rng.uniform(0.3, horizon * 0.8), 2))
    return Trial(
        choice=choice,
        kind=kind,
        command=tuple(command),
        nodes=chosen,
        task_timeout_s=task_timeout,
        horizon_s=horizon,
        faults=tuple(sorted(faults, key=lambda f: f.at_s)),
        kills=tuple(kills),
        plan_yaml=plan_yaml,
    )


def _rolling_yaml(nodes: tuple[str, ...], on_failure: str, task_timeout_s: float) -> str:
    """The rolling plan; `{hook}` is replaced by the hook's argv (a JSON list) at run time."""
    listed = ", ".join(nodes)
    return f"""version: 1
name: chaos-rolling
rules:
  exclude: {{tags: [gpu], vmids: [121, 115]}}   # passthrough devices; a guest under backup
  migration: {{with_local_disks: true}}
  on_failure: {on_failure}
  task_timeout: {task_timeout_s:g}s
steps:
  - rolling:
      nodes: [{listed}]
      before:
        command: {{hook_reboot}}
        timeout: 60s
      after: {{hook_check}}
      wait_online_timeout: 60s
"""


def _faults(
    rng: random.Random,
    choice: ClusterChoice,
    kind: Kind,
    nodes: list[str],
    chosen: tuple[str, ...],
    guests: list[int],
    horizon: float,
    task_timeout: float,
) -> list[Fault]:
    kinds = [k for k in FAULT_KINDS if k not in ("failover", "ticket-expire")]
    weights = [4, 3, 2, 2, 2, 2, 2, 1]  # burst, drop, slow, fail, hang, offline, lock, quorum
    if choice.auth == "password":
        kinds.append("ticket-expire")
        weights.append(3)
    if not guests:
        weights = [
            0 if k in ("fail-migration", "hang-migration", "lock") else w
            for k, w in zip(kinds, weights, strict=True)
        ]
    count = rng.randint(1, 4)
    picked = rng.choices(kinds, weights=weights, k=count)
    faults: list[Fault] = []
    if choice.failover:
        faults.append(Fault("failover", round(rng.uniform(0.2, horizon), 2)))

    def at() -> float:
        return round(rng.uniform(0.1, horizon), 2)

    for k in picked:
        t = at()
        if k in ("burst", "drop"):
            path, methods = rng.choice(FAULT_PATHS)
            method = rng.choice(methods)
            params: dict[str, Any] = {"count": rng.randint(1, 6 if k == "burst" else 3)}
            if k == "burst":
                params["status"] = rng.choice(BURST_STATUSES)
            else:
                params["drop"] = True
            if path is not None:
                params["path"] = path
            if method is not None:
                params["method"] = method
            faults.append(Fault(k, t, tuple(params.items())))
        elif k == "slow":
            path, _ = rng.choice(FAULT_PATHS)
            params = {"seconds": round(rng.uniform(0.2, 1.5), 2), "count": rng.randint(1, 5)}
            if path is not None:
                params["path"] = path
            faults.append(Fault(k, t, tuple(params.items())))
        elif k == "fail-migration":
            faults.append(
                Fault(
                    k,
                    t,
                    (
                        ("vmid", rng.choice(guests)),
                        ("at_percent", round(rng.uniform(2, 98), 1)),
                    ),
                )
            )
        elif k == "hang-migration":
            # Let go of it while pvetool still follows it, or never (it outlives the task
            # timeout and the harness lets it go after pvetool ended).
            release = (
                round(rng.uniform(0.3, task_timeout * 0.4), 2) if rng.random() < 0.65 else None
            )
            faults.append(Fault(k, t, (("vmid", rng.choice(guests)), ("release_after_s", release))))
        elif k == "node-offline":
            if kind == "drain" and rng.random() < 0.3:
                node = chosen[0]  # the source itself
            else:
                node = rng.choice([n for n in nodes if n not in chosen] or nodes)
            faults.append(
                Fault(k, t, (("node", node),), until_s=round(t + rng.uniform(0.3, 4.0), 2))
            )
        elif k == "lock":
            held = rng.random() < 0.25
            faults.append(
                Fault(
                    k,
                    t,
                    (("vmid", rng.choice(guests)), ("lock", rng.choice(LOCKS))),
                    until_s=None if held else round(t + rng.uniform(0.3, 4.0), 2),
                )
            )
        elif k == "quorum":
            faults.append(Fault(k, t, until_s=round(t + rng.uniform(0.3, 3.0), 2)))
        elif k == "ticket-expire":
            faults.append(Fault(k, t))
    return faults
