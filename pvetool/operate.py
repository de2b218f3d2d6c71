"""The run use case: run an `ExecutionPlan` on a cluster, as a library function.

`run_plan(client, plan, ...)` is what every command that migrates (drain, undrain, rebalance,
plan apply, migrate) and the benchmarks call. It applies the operator's overrides, refuses a
plan with plan-level blockers, wires the executor to the cluster (task following at the given
wait policy; re-planning that fetches one fresh snapshot per target failure and re-plans every
move to that target against it, each seeing where the previous went), runs it, with Ctrl-C
handling when asked, and returns the `RunReport`. Showing the plan, asking, rendering and exit
codes stay in the CLI; opening the journal is `open_journal`, closing it the caller's.

`execute_plan` is the same with the cluster's calls passed in (`ClusterApi`, `Follow`, a
snapshot fetcher): what unit tests drive with an in-memory cluster.

Imports: the standard library, `pvetool.errors`, `pvetool.model`, `pvetool.settings`,
`pvetool.api`, `pvetool.planner`, `pvetool.executor`, `pvetool.journal` and `pvetool.state`
(the cluster a run is on, `job_on`). Like the CLI it
wires the layers; nothing in them imports it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pvetool.api import PveClient, TaskApi, fetch_snapshot, follow_task
from pvetool.api.ha_hold import activate_nodes, finish_release, hold_nodes, release_node
from pvetool.errors import ApiError, ApiUnreachable, PlanError, PvetoolError
from pvetool.executor import (
    SECRET_ENV,
    ClusterApi,
    Confirm,
    Executor,
    ExecutorDeps,
    ExecutorOptions,
    Follow,
    Replan,
    blocked_guests,
    redactor,
)
from pvetool.journal import Journal, Origin, RunState
from pvetool.model import (
    ClusterSnapshot,
    ExecutionPlan,
    MigrationProgress,
    Move,
    MoveResult,
    Precondition,
    RunReport,
    Stage,
    TaskResult,
    Upid,
)
from pvetool.model.events import Observer
from pvetool.planner import build
from pvetool.planner.spec import PlanSpec
from pvetool.settings import Settings, TokenAuth, WaitPolicy
from pvetool.state import ClusterState

__all__ = [
    "JobInfo",
    "homecoming",
    "job_on",
    "migrate_preconditions",
    "undrain_plan",
    "Overrides",
    "RunSetup",
    "credentials_env",
    "execute_plan",
    "HaHold",
    "ha_hold_stage",
    "release_ha_hold",
    "follow_with",
    "not_run_report",
    "nothing_to_run",
    "open_journal",
    "plan_level_blockers",
    "plan_problems",
    "poll_policy",
    "replanner",
    "run_plan",
]

FailurePolicy = Literal["stop", "continue", "skip-guest"]


def _satisfies_cluster_api(client: PveClient) -> ClusterApi:
    """Never called: lets mypy check that `PveClient` fits the executor's `ClusterApi`."""
    return client


@dataclass(frozen=True)
class Overrides:
    """What the operator changes on a plan for this run (``--on-failure``, ``--task-timeout``)."""

    on_failure: FailurePolicy | None = None
    task_timeout_s: float | None = None

    def apply(self, plan: ExecutionPlan) -> ExecutionPlan:
        if self.on_failure is not None:
            plan = replace(plan, on_failure=self.on_failure)
        if self.task_timeout_s is not None:
            plan = replace(plan, task_timeout_s=self.task_timeout_s)
        return plan


@dataclass(frozen=True)
class RunSetup:
    """How a run talks to the cluster and the operator.

    `wait`: how tasks are polled (None: the client's settings). `agent_vmids`: guests whose
    guest agent must answer after the move. `hook_env`: added to the hooks' environment (no
    secrets); `hook_credentials`: added for hooks whose plan passes them (``run_plan`` fills it
    from the client's settings when empty); `secrets`: taken out of hook output (``run_plan``
    adds the client's own and those in the environment).
    `start_only`: request the migrations and do not follow them (``migrate --no-wait``).
    `catch_sigint`: Ctrl-C interrupts the run (first: no new migrations; second: leave the
    running ones; third: raise `KeyboardInterrupt`); only from the main thread.
    `sleep` and `clock` (monotonic seconds): the time the run waits on and measures with, this
    machine's unless the caller runs it on another clock (`pvetool.cli.common.Clocks`).
    """

    wait: WaitPolicy | None = None
    agent_vmids: frozenset[int] = frozenset()
    hook_env: Mapping[str, str] = field(default_factory=dict)
    hook_credentials: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    tick_s: float = 0.2
    start_only: bool = False
    catch_sigint: bool = False
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    # Nodes pvetool drained (`ClusterSnapshot.held_nodes`): re-planning never targets them.
    held_nodes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobInfo:
    """What the journal's first record says about a run: the key `--resume` finds it by
    (``drain:pve2``, ``plan:<digest>``), its kind, the nodes it drains (for undrain), the run
    an undrain reverses, and the command line."""

    command: str
    kind: str
    drained_nodes: tuple[str, ...] = ()
    undoes: str | None = None
    argv: tuple[str, ...] = ()
    # The cluster it runs on (`pvetool.state.identity.ClusterIdentity`, flattened): its name,
    # sorted node names, the endpoint that answered and its state folder's name.
    cluster: str | None = None
    cluster_nodes: tuple[str, ...] = ()
    endpoint: str = ""
    cluster_key: str = ""


def credentials_env(settings: Settings) -> dict[str, str]:
    """The connection as environment variables, for a hook that is to reach the same cluster
    the same way (``pass_credentials: true``)."""
    env = {"PVETOOL_HOST": ",".join(str(h) for h in settings.hosts)}
    verify = settings.verify
    env["PVETOOL_VERIFY"] = verify if isinstance(verify, str) else str(verify).lower()
    if settings.fingerprints:
        env["PVETOOL_FINGERPRINT"] = ",".join(settings.fingerprints)
    auth = settings.auth
    if isinstance(auth, TokenAuth):
        env["PVETOOL_TOKEN"] = f"{auth.token_id}={auth.secret.reveal()}"
    else:
        env["PVETOOL_USER"] = auth.user
        env["PVETOOL_PASSWORD"] = auth.password.reveal()
    return env


def plan_level_blockers(plan: ExecutionPlan) -> list[str]:
    """Blockers of the whole plan (not of one guest), and moves that make no sense (a saved
    plan edited by hand): the plan must not run."""
    return [f"{f.id}: {f.message}" for f in plan.blockers if f.vmid is None] + plan_problems(plan)


def plan_problems(plan: ExecutionPlan) -> list[str]:
    """Moves no planner makes: a target that is the move's own source (nothing would move, and
    "skipped" would hide the mistake), a move id used twice."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, stage in enumerate(plan.stages):
        for move in stage.moves:
            where = f"stage {index + 1} ({stage.label}), move {move.id} of {move.vmid}"
            if move.target == move.source:
                problems.append(f"{where}: its target {move.target} is its source")
            if move.id in seen:
                problems.append(f"{where}: the move id {move.id} is used twice")
            seen.add(move.id)
    return problems


def not_run_report(plan: ExecutionPlan, reason: str, *, refused: bool) -> RunReport:
    """The report of a run that did not start (refused: exit 2; not confirmed: exit 1): every
    planned move not started, its guest where the plan found it (the source of its first move:
    a later stage's source is only where the plan expected it to be by then)."""
    home: dict[int, str] = {}
    for stage in plan.stages:
        for move in stage.moves:
            home.setdefault(move.vmid, move.source)
    results = tuple(
        MoveResult(
            move=move,
            status="not-started",
            reason=f"not started: {reason}",
            stage_index=index,
            node=home[move.vmid],
        )
        for index, stage in enumerate(plan.stages)
        for move in stage.moves
    )
    return RunReport(
        run_id="",
        plan_name=plan.name,
        plan_source=plan.source,
        command="",
        results=results,
        blocked=blocked_guests(plan),
        stopped_reason=reason,
        predicted_makespan_s=plan.predicted_makespan_s,
        refused=reason if refused else "",
    )


def nothing_to_run(plan: ExecutionPlan) -> bool:
    """No move, and no stage that is not a migration (a hook, a wait) either."""
    return not plan.moves and all(s.kind == "migrate" for s in plan.stages)


def job_on(job: JobInfo, cluster: ClusterState) -> JobInfo:
    """`job` with the cluster it runs on (recorded in its journal's first record)."""
    identity = cluster.identity
    return replace(
        job,
        cluster=identity.name,
        cluster_nodes=identity.nodes,
        endpoint=identity.endpoint,
        cluster_key=identity.key,
    )


def open_journal(
    directory: Path,
    plan: ExecutionPlan,
    job: JobInfo,
    resume: RunState | None,
    *,
    run_id: str | None = None,
) -> Journal:
    """The run's journal: the interrupted run's when resuming, else a new one (named `run_id`
    when given) that starts with the whole plan."""
    if resume is not None:
        return Journal.reopen(resume, cluster_key=job.cluster_key)
    journal = Journal.create(directory, run_id=run_id, cluster_key=job.cluster_key)
    journal.start_run(
        plan,
        command=job.command,
        kind=job.kind,
        drained_nodes=job.drained_nodes,
        undoes=job.undoes,
        argv=job.argv,
        cluster=job.cluster,
        cluster_nodes=job.cluster_nodes,
        endpoint=job.endpoint,
    )
    return journal


def poll_policy(
    base: WaitPolicy, *, interval_s: float | None = None, speed: float | None = None
) -> WaitPolicy:
    """`base` polled every `interval_s` seconds (growing to five times that while a log stands
    still), or, for an emulated cluster whose clock runs `speed` times real time, that much
    more often."""
    if interval_s is not None:
        seconds = max(0.01, interval_s)
        return replace(base, poll_interval_s=seconds, max_poll_interval_s=5 * seconds)
    if speed:
        return replace(
            base,
            poll_interval_s=max(0.02, base.poll_interval_s / speed),
            max_poll_interval_s=max(0.05, base.max_poll_interval_s / speed),
        )
    return base


def follow_with(
    client: TaskApi,
    wait: WaitPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Follow:
    """`follow_task` bound to the client, the wait policy and the clock."""

    def follow(
        upid: Upid, timeout_s: float, on_progress: Callable[[MigrationProgress], None] | None
    ) -> TaskResult:
        return follow_task(
            client, upid, timeout_s, on_progress=on_progress, wait=wait, sleep=sleep, clock=clock
        )

    return follow


class _Replanner:
    """The executor's `Replan`: one snapshot per question, and the plan kept up to date with
    every new target, so later re-plans count the moves re-planned before."""

    def __init__(self, plan: ExecutionPlan, snapshot: Callable[[], ClusterSnapshot]) -> None:
        self.plan = plan
        self._snapshot = snapshot

    def __call__(self, asked: Sequence[tuple[Move, frozenset[str]]]) -> list[Move | None]:
        answers = build.replan(self.plan, asked, self._snapshot())
        self.plan = self.plan.with_moves(m for m in answers if m is not None)
        return answers


def replanner(plan: ExecutionPlan, snapshot: Callable[[], ClusterSnapshot]) -> Replan:
    """Re-planning for a run of `plan`, reading the cluster with `snapshot` when asked."""
    return _Replanner(plan, snapshot)


@contextmanager
def _ctrl_c(executor: Executor) -> Iterator[None]:
    def on_sigint(_signum: int, _frame: object) -> None:
        if executor.interrupt() >= 3:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ha_hold_stage(plan: ExecutionPlan, stage: Stage) -> tuple[str, tuple[str, ...]] | None:
    """What the HA drain hold does before `stage`: ("hold", nodes) before a drain stage,
    ("release", nodes) before the stage that brings guests home (rolling maintenance's
    "return guests to X", an undrain); None otherwise."""
    if stage.kind != "migrate":
        return None
    if stage.label.startswith("drain "):
        return "hold", tuple(n.strip() for n in stage.label[len("drain ") :].split(","))
    if stage.label.startswith("return guests to ") and stage.node is not None:
        return "release", (stage.node,)
    if plan.name == "undrain":
        return "release", tuple(sorted({m.target for m in stage.moves}))
    return None


def release_ha_hold(client: PveClient, node: str, *, keep_failback: bool = False) -> list[str]:
    """End the HA drain hold on `node` (`pvetool.api.ha_hold`); notes say what changed.
    `keep_failback`: before moves that bring guests home (the rules only; the stage's end
    restores failback)."""
    try:
        return release_node(client, node, keep_failback=keep_failback)
    except PvetoolError as exc:
        return [f"the HA rules could not be read to end the drain hold on {node}: {exc}"]


class HaHold:
    """The executor's `before_stage`/`after_stage` for `plan`: the HA drain hold
    (`pvetool.api.ha_hold`): failback off before each drain stage, the drained node out of the
    rules after it; the rules as they were before guests come home, failback after. A rule or
    resource that cannot be changed is a note, never the end of the run: the guests still
    move, and the CRM may move some back."""

    def __init__(self, client: PveClient, plan: ExecutionPlan) -> None:
        self._client = client
        self._plan = plan

    def before(self, _index: int, stage: Stage) -> list[str]:
        action = ha_hold_stage(self._plan, stage)
        if action is None:
            return []
        verb, nodes = action
        if verb == "release":
            # Failback stays off during the moves home: with it on, the CRM would start the
            # same migrations in its next round and pvetool's would fail on the lock.
            return [
                note
                for node in nodes
                for note in release_ha_hold(self._client, node, keep_failback=True)
            ]
        try:
            return hold_nodes(self._client, nodes)
        except PvetoolError as exc:
            return [f"the HA rules could not be read to hold {', '.join(nodes)}: {exc}"]

    def after(self, _index: int, stage: Stage) -> list[str]:
        action = ha_hold_stage(self._plan, stage)
        if action is None:
            return []
        if action[0] == "release":
            try:
                return finish_release(self._client)
            except PvetoolError as exc:
                return [f"the HA rules could not be read to turn failback back on: {exc}"]
        try:
            return activate_nodes(self._client, action[1])
        except PvetoolError as exc:
            return [f"the HA rules could not be read to keep {', '.join(action[1])}: {exc}"]


def execute_plan(
    api: ClusterApi,
    plan: ExecutionPlan,
    *,
    follow: Follow,
    snapshot: Callable[[], ClusterSnapshot],
    before_stage: Callable[[int, Stage], Sequence[str]] | None = None,
    after_stage: Callable[[int, Stage], Sequence[str]] | None = None,
    journal: Journal | None = None,
    observer: Observer | None = None,
    confirm: Confirm | None = None,
    resume: RunState | None = None,
    overrides: Overrides | None = None,
    setup: RunSetup | None = None,
) -> RunReport:
    """`run_plan` with the cluster's calls passed in; raises `PlanError` for a plan with
    plan-level blockers (nothing is started)."""
    setup = setup or RunSetup()
    plan = (overrides or Overrides()).apply(plan)
    blockers = plan_level_blockers(plan)
    if blockers:
        raise PlanError(
            f"The plan {plan.name} is blocked: " + "; ".join(blockers), problems=blockers
        )
    deps = ExecutorDeps(
        api,
        follow,
        journal=journal,
        replan=replanner(plan, snapshot),
        observer=observer,
        confirm=confirm,
        sleep=setup.sleep,
        clock=setup.clock,
        before_stage=before_stage,
        after_stage=after_stage,
    )
    secrets = [*setup.secrets, *(os.environ.get(name, "") for name in sorted(SECRET_ENV))]
    secrets += [v for k, v in setup.hook_credentials.items() if k in SECRET_ENV]
    options = ExecutorOptions(
        agent_vmids=setup.agent_vmids,
        hook_env={k: v for k, v in setup.hook_env.items() if k not in SECRET_ENV},
        hook_credentials=setup.hook_credentials,
        redact=redactor([s for s in secrets if s]),
        tick_s=setup.tick_s,
        start_only=setup.start_only,
    )
    executor = Executor(deps, options)
    with _ctrl_c(executor) if setup.catch_sigint else nullcontext():
        return executor.run(plan, resume=resume)


def run_plan(
    client: PveClient,
    plan: ExecutionPlan,
    *,
    journal: Journal | None = None,
    observer: Observer | None = None,
    confirm: Confirm | None = None,
    resume: RunState | None = None,
    overrides: Overrides | None = None,
    setup: RunSetup | None = None,
) -> RunReport:
    """Run `plan` on the cluster `client` reaches and report what happened (see the module
    docstring); `resume` continues an interrupted run of the same plan from its journal."""
    setup = setup or RunSetup()
    wait = setup.wait or client.settings.wait
    setup = replace(
        setup,
        hook_credentials=setup.hook_credentials or credentials_env(client.settings),
        secrets=(*setup.secrets, *client.settings.secret_values()),
    )
    hold = HaHold(client, plan)
    return execute_plan(
        client,
        plan,
        follow=follow_with(client, wait, sleep=setup.sleep, clock=setup.clock),
        snapshot=lambda: replace(fetch_snapshot(client), held_nodes=setup.held_nodes),
        before_stage=hold.before,
        after_stage=hold.after,
        journal=journal,
        observer=observer,
        confirm=confirm,
        resume=resume,
        overrides=overrides,
        setup=setup,
    )


# --------------------------------------------------------------------------------------------
# planning helpers shared by the CLI and the Python API (pvetool.session)


PRECONDITION_WORKERS = 8  # requests in flight at once, as `fetch_snapshot` reads configs


def migrate_preconditions(
    client: PveClient, snapshot: ClusterSnapshot, vmids: Sequence[int]
) -> dict[int, Precondition]:
    """PVE's own migrate precondition of each guest (read only; what PVE would refuse), for
    the checks. A guest whose node is offline, or whose answer cannot be had (a locked guest),
    has none: the checks report the lock themselves.

    Read a few at a time (the client is thread-safe and keeps its connections alive): one call
    per guest, one after the other, cost a round trip each on a node with a hundred guests."""
    asked = []
    for vmid in vmids:
        guest = snapshot.guests.get(vmid)
        node = snapshot.nodes.get(guest.node) if guest is not None else None
        if guest is not None and node is not None and node.online:
            asked.append(guest)
    found: dict[int, Precondition] = {}
    with ThreadPoolExecutor(max_workers=PRECONDITION_WORKERS, thread_name_prefix="pre") as pool:
        futures = {
            g.vmid: pool.submit(client.migrate_precondition, g.kind, g.node, g.vmid) for g in asked
        }
        for vmid, future in futures.items():
            try:
                found[vmid] = future.result()
            except (ApiError, ApiUnreachable):
                continue
    return found


def homecoming(
    snapshot: ClusterSnapshot, node: str, run_id: str, origins: Sequence[Origin]
) -> tuple[list[tuple[int, str]], list[str]]:
    """The guests a drain moved away that can come home to `node` as they are, and a note for
    every other one."""
    moves: list[tuple[int, str]] = []
    notes: list[str] = []
    for origin in origins:
        guest = snapshot.guests.get(origin.vmid)
        if guest is None:
            notes.append(f"not moved: guest {origin.vmid} no longer exists")
        elif guest.node == node:
            notes.append(f"already home: guest {origin.vmid} is on {node}")
        elif guest.node != origin.now:
            notes.append(
                f"not moved: guest {origin.vmid} is on {guest.node} now, not on {origin.now} "
                f"where the drain ({run_id}) put it; move it yourself if you want it on {node}"
            )
        else:
            moves.append((origin.vmid, node))
    return moves, notes


def with_local_disks(spec: PlanSpec) -> PlanSpec:
    """Guests whose local disks went along with them come back the same way."""
    rules = spec.rules
    migration = replace(rules.migration, with_local_disks=True)
    return replace(spec, rules=replace(rules, migration=migration))


def undrain_plan(snapshot: ClusterSnapshot, moves: Sequence[tuple[int, str]]) -> ExecutionPlan:
    """The plan that brings the guests of `homecoming` back (local disks along)."""
    return build.build_plan(with_local_disks(build.undrain_spec(moves)), snapshot)
