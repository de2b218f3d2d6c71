"""The Python API: `pvetool.connect(...)` and the `Session` it returns (docs/python-api.md).

A session is what the CLI does, for a script: one connection (a real cluster from the same
settings as the CLI — flags, environment, profile — or an emulated one started in-process) and
the use cases on top of it, each built from the same functions the commands call
(`pvetool.planner.build`, `pvetool.operate`, `pvetool.journal`):

    with pvetool.connect(emulate="lab") as pve:
        print(pve.status().status.quorate)
        plan = pve.plan_drain("pve2")
        report = pve.run(plan, observer=print)
        pve.undrain("pve2")

Plans are `ExecutionPlan`s and results `RunReport`s (`pvetool.model`); `pvetool.render` turns
them into the same tables, JSON and Markdown as the CLI. A run is journalled like a CLI run, in the
cluster's own folder (`pvetool.state`), so `pvetool undrain NODE`, `pvetool drain NODE
--resume` and `pvetool runs` work on a drain a script started, and the other way round. Like a
command, a run holds the cluster (`pvetool.state.lock`: local lock and cluster marker; a run
already holding it raises `RunConflict`), and a drained node stays held (never a target of any
plan) until `undrain` releases it (`pvetool.state.drained`). Nothing is asked: `run` starts
what the plan says (check `plan.can_run` and `plan.blocked` first, or pass `confirm`); a plan
with plan-level blockers is refused with `PlanError`, blocked guests stay where they are.

Imports: the standard library, `pvetool.settings`, `pvetool.api`, `pvetool.planner`,
`pvetool.journal`, `pvetool.model`, `pvetool.operate`, `pvetool.state` and (for `emulate=`
only) the emulator. Never the CLI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pvetool.api import PveClient, fetch_snapshot
from pvetool.api.ha_hold import released
from pvetool.api.overview import ClusterOverview, fetch_overview
from pvetool.errors import ConfigError
from pvetool.executor import Confirm
from pvetool.journal import new_run_id, state_dir
from pvetool.model import ClusterSnapshot, ExecutionPlan, RunReport
from pvetool.model.events import Observer
from pvetool.operate import (
    JobInfo,
    RunSetup,
    homecoming,
    job_on,
    migrate_preconditions,
    open_journal,
    poll_policy,
    release_ha_hold,
    run_plan,
    undrain_plan,
)
from pvetool.planner import build
from pvetool.planner.loader import load_plan
from pvetool.planner.spec import DrainStep
from pvetool.settings import load_settings
from pvetool.state import ClusterState
from pvetool.state.cluster import cluster_of, with_held
from pvetool.state.drained import DrainHold, forget, holds, remember
from pvetool.state.lock import Holder, hold_cluster

__all__ = ["Session", "connect"]


class Session:
    """A connection to one cluster and what pvetool does on it (see the module docstring).

    `client` is the underlying `PveClient` (PVE's API, read and migrate); `journal_dir` the
    state folder (the CLI's state directory unless given): runs are journalled, drained nodes
    remembered and the run lock taken in the cluster's folder under it
    (``clusters/<name>/``, ``emulated/<name>/`` for ``emulate=``)."""

    def __init__(
        self,
        client: PveClient,
        *,
        journal_dir: Path | None = None,
        emulator: Any = None,
        speed: float | None = None,
    ) -> None:
        self.client = client
        self.journal_dir = journal_dir if journal_dir is not None else state_dir()
        self._emulator = emulator
        self._speed = speed
        self._jobs: dict[int, JobInfo] = {}  # id(plan) -> what it is, for the journal
        self._holds: dict[int, tuple[str, ...]] = {}  # id(plan) -> a file's drain steps' nodes

    # -- housekeeping

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (and stop the emulated cluster of ``emulate=``)."""
        self.client.close()
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None

    @property
    def emulator(self) -> Any:
        """The in-process emulator of ``connect(emulate=...)`` (None for a real cluster)."""
        return self._emulator

    # -- reading

    def status(self) -> ClusterOverview:
        """Quorum, nodes, guests and HA: what ``pvetool status`` shows."""
        return fetch_overview(self.client)

    def snapshot(self) -> ClusterSnapshot:
        """Everything the planner looks at, read in one go, with the nodes pvetool drained
        (`ClusterSnapshot.held_nodes`: never a target)."""
        return self._planning()[0]

    def cluster_state(self, snapshot: ClusterSnapshot | None = None) -> ClusterState:
        """The cluster this session reaches (`pvetool.state.ClusterState`: its identity, the
        endpoint that answered and its folder under `journal_dir`), from `snapshot` (read now
        when not given)."""
        if snapshot is None:
            snapshot = fetch_snapshot(self.client)
        return cluster_of(
            snapshot,
            str(self.client.current_host),
            emulated=self._emulator is not None,
            base=self.journal_dir,
        )

    def drained(self) -> dict[str, DrainHold]:
        """The nodes pvetool drained on this cluster and no undrain released yet (what
        ``pvetool status`` lists as "drained by pvetool")."""
        return holds(self.cluster_state())

    def _planning(self, release: str | None = None) -> tuple[ClusterSnapshot, ClusterState]:
        """The snapshot the planner must see (drained nodes held, but `release`) and the
        cluster's state, as the CLI's `planning_snapshot`."""
        snapshot = fetch_snapshot(self.client)
        cluster = self.cluster_state(snapshot)
        return with_held(snapshot, cluster, release=release), cluster

    # -- planning (read-only)

    def check_drain(
        self,
        node: str,
        *,
        targets: Sequence[str] | None = None,
        with_local_disks: bool = False,
    ) -> ExecutionPlan:
        """What ``pvetool check drain NODE`` checks: the drain plan with PVE's own migrate
        precondition of every guest merged into the checks (`plan.blocked`, `plan.findings`)."""
        snapshot = self.snapshot()
        spec = build.drain_spec([node], targets, with_local_disks=with_local_disks)
        vmids = [g.vmid for g in snapshot.guests_on(node)]
        return build.build_plan(
            spec, snapshot, preconditions=migrate_preconditions(self.client, snapshot, vmids)
        )

    def plan_drain(
        self,
        nodes: str | Sequence[str],
        *,
        targets: Sequence[str] | None = None,
        max_parallel: int | None = None,
        with_local_disks: bool = False,
    ) -> ExecutionPlan:
        """What ``pvetool drain NODE --dry-run`` shows: every movable guest off `nodes`."""
        names = [nodes] if isinstance(nodes, str) else list(nodes)
        spec = build.drain_spec(
            names, targets, max_parallel=max_parallel, with_local_disks=with_local_disks
        )
        plan = build.build_plan(spec, self.snapshot())
        # the journal key of `pvetool drain`: undrain and --resume find a script's drain too
        key = f"drain:{','.join(sorted(names))}"
        self._jobs[id(plan)] = JobInfo(key, "drain", drained_nodes=tuple(names))
        return plan

    def plan_rebalance(
        self, *, by: str = "memory", threshold: float = 0.10, max_moves: int | None = None
    ) -> ExecutionPlan:
        """What ``pvetool rebalance --dry-run`` shows (`threshold` as a fraction: 0.10 = 10 %)."""
        spec = build.rebalance_spec(by=by, threshold=threshold, max_moves=max_moves)
        plan = build.build_plan(spec, self.snapshot())
        self._jobs[id(plan)] = JobInfo(f"rebalance:{by}", "rebalance")
        return plan

    def plan_file(self, path: str | os.PathLike[str]) -> ExecutionPlan:
        """What ``pvetool plan show FILE`` shows (a `PlanError` names every problem of the file)."""
        spec = load_plan(path)
        plan = build.build_plan(spec, self.snapshot())
        drains = [n for step in spec.steps if isinstance(step, DrainStep) for n in step.nodes]
        if drains:  # as `plan apply`: a file's drain steps stay drained until undrain
            self._holds[id(plan)] = tuple(dict.fromkeys(drains))
        return plan

    # -- running

    def run(
        self,
        plan: ExecutionPlan,
        *,
        observer: Observer | None = None,
        confirm: Confirm | None = None,
    ) -> RunReport:
        """Run `plan` and report (`RunReport.results`, `.exit_code`, `.succeeded`).

        `observer` is called with every event of `pvetool.model.events` (e.g. `MoveFinished`),
        one at a time; `confirm(question) -> bool` answers a plan's confirm steps (without it
        they are refused). The run is journalled: a drain can be undone with `undrain`."""
        job = self._jobs.get(id(plan))
        if job is None:  # a plan from a file, or built by the caller
            drained = tuple(
                dict.fromkeys(s.node for s in plan.stages if s.node and s.kind == "migrate")
            )
            job = JobInfo(f"plan:{plan.name}", "plan", drained_nodes=drained)
        # what stays drained until undrain: a drain's nodes (a file's drain steps are in
        # `_jobs` too); a rebalance or a caller's plan holds nothing, as `plan apply` of JSON
        hold = job.drained_nodes if job.kind == "drain" else self._holds.get(id(plan), ())
        return self._run(plan, job, observer=observer, confirm=confirm, hold=hold)

    def undrain(
        self,
        node: str,
        *,
        observer: Observer | None = None,
        dry_run: bool = False,
    ) -> RunReport | ExecutionPlan | None:
        """Bring back the guests the latest drain of `node` moved away, as ``pvetool undrain``.

        Returns the `RunReport` (notes name guests left where they are), the plan with
        `dry_run`, or None when no drain of `node` is left to undo."""
        snapshot, cluster = self._planning(release=node)
        # The drain's HA hold (pvetool.api.ha_hold) ends before the guests come home: plan with
        # it ended, or HA guests would look barred from their own node (as `pvetool undrain`).
        snapshot = released(snapshot, node)
        found = cluster.undrain_candidates(node)
        moves, notes = homecoming(snapshot, node, found[0].run_id, found[1]) if found else ([], [])
        if not moves and not dry_run:
            # nothing for the executor to bring home: end the HA hold and release the node here
            # (with moves, the run ends the hold before they start and releases the node)
            release_ha_hold(self.client, node)
            forget(cluster, node)
        if found is None:
            cluster.refuse_drain_elsewhere(node)
            return None
        plan = undrain_plan(snapshot, moves)
        if dry_run:
            return plan
        job = JobInfo(f"undrain:{node}", "undrain", undoes=found[0].run_id)
        report = self._run(plan, job, observer=observer, confirm=None, release=node)
        return _with_notes(report, notes)

    def _run(
        self,
        plan: ExecutionPlan,
        job: JobInfo,
        *,
        observer: Observer | None,
        confirm: Confirm | None,
        hold: Sequence[str] = (),
        release: str | None = None,
    ) -> RunReport:
        """Run `plan` as the CLI's `run_and_report` does: the cluster held for the run, the
        journal in its folder, `hold` remembered as drained, `release` forgotten."""
        snapshot, cluster = self._planning(release=release)
        emulated = self._emulator is not None
        setup = RunSetup(
            # an emulated clock runs `speed` times real time: poll that much more often
            wait=poll_policy(self.client.settings.wait, speed=self._speed) if emulated else None,
            agent_vmids=frozenset(g.vmid for g in snapshot.guests.values() if g.agent_enabled),
            hook_env=dict(self._emulator.env()) if emulated else {},
            held_nodes=snapshot.held_nodes,
        )
        job = job_on(job, cluster)
        run_id = new_run_id()
        notices: list[str] = []
        with (
            hold_cluster(cluster, self.client, Holder.here(run_id, job.command), notices=notices),
            open_journal(cluster.ensure(), plan, job, None, run_id=run_id) as journal,
        ):
            if hold:
                remember(cluster, hold, run_id, job.command, time.time())
            if release is not None:
                forget(cluster, release)
            report = run_plan(
                self.client,
                plan,
                journal=journal,
                observer=observer,
                confirm=confirm or _refuse,
                setup=setup,
            )
        # the lock's notices and warnings (a marker that could not be set, ...) go with it
        return replace(report, command=job.command, notes=(*report.notes, *notices))


def _refuse(question: str) -> bool:
    """A plan's confirm step without a `confirm` callback: refused (nothing asks a script)."""
    return False


def _with_notes(report: RunReport, notes: Sequence[str]) -> RunReport:
    return replace(report, notes=(*report.notes, *notes))


def connect(
    profile: str | None = None,
    host: str | None = None,
    *,
    emulate: str | None = None,
    token_file: str | None = None,
    env: Mapping[str, str] | None = None,
    emulate_speed: float = 20.0,
    journal_dir: str | os.PathLike[str] | None = None,
) -> Session:
    """A `Session` on the cluster the arguments name, as the CLI's ``--profile``, ``--host``,
    ``--token-file`` and ``--emulate`` would (the environment `env`, default ``os.environ``,
    fills in the rest, e.g. PVETOOL_TOKEN). ``emulate="lab"`` (or a cluster file) starts the
    emulator in this process, `emulate_speed` emulated seconds per real second.

    Raises `ConfigError` when the settings are incomplete (it names what is missing)."""
    emulator = None
    if emulate is not None:
        from pvetool.emulator.clusterfile import ClusterFileError, load_cluster
        from pvetool.emulator.server import Emulator

        try:
            spec = load_cluster(emulate)
        except ClusterFileError as exc:
            raise ConfigError(str(exc), source="emulate") from None
        emulator = Emulator(spec, speed=emulate_speed).start()
        settings = load_settings(env=emulator.env(), config_path=None)
    else:
        settings = load_settings(
            host=host,
            profile=profile,
            token_file=token_file,
            env=os.environ if env is None else env,
        )
    try:
        client = PveClient(settings)
    except Exception:
        if emulator is not None:
            emulator.stop()
        raise
    directory = Path(journal_dir) if journal_dir is not None else None
    return Session(client, journal_dir=directory, emulator=emulator, speed=emulate_speed)
