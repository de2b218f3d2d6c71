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
them into the same tables, JSON and Markdown as the CLI. A run is journalled like a CLI run, so
`pvetool undrain NODE` and `pvetool drain NODE --resume` work on a drain a script started, and
the other way round. Nothing is asked: `run` starts what the plan says (check `plan.can_run`
and `plan.blocked` first, or pass `confirm`); a plan with plan-level blockers is refused with
`PlanError`, blocked guests stay where they are.

Imports: the standard library, `pvetool.settings`, `pvetool.api`, `pvetool.planner`,
`pvetool.journal`, `pvetool.model`, `pvetool.operate` and (for `emulate=` only) the emulator.
Never the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pvetool.api import PveClient, fetch_snapshot
from pvetool.api.overview import ClusterOverview, fetch_overview
from pvetool.errors import ConfigError
from pvetool.executor import Confirm
from pvetool.journal import state_dir, undrain_candidates
from pvetool.model import ClusterSnapshot, ExecutionPlan, RunReport
from pvetool.model.events import Observer
from pvetool.operate import (
    JobInfo,
    RunSetup,
    homecoming,
    migrate_preconditions,
    open_journal,
    poll_policy,
    run_plan,
    undrain_plan,
)
from pvetool.planner import build
from pvetool.planner.loader import load_plan
from pvetool.settings import load_settings

__all__ = ["Session", "connect"]


class Session:
    """A connection to one cluster and what pvetool does on it (see the module docstring).

    `client` is the underlying `PveClient` (PVE's API, read and migrate); `journal_dir` where
    runs are journalled (the CLI's state directory unless given)."""

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
        """Everything the planner looks at, read in one go."""
        return fetch_snapshot(self.client)

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
        return build.build_plan(load_plan(path), self.snapshot())

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
        return self._run(plan, job, observer=observer, confirm=confirm)

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
        found = undrain_candidates(self.journal_dir, node)
        if found is None:
            return None
        drain_run, origins = found
        snapshot = self.snapshot()
        moves, notes = homecoming(snapshot, node, drain_run.run_id, origins)
        plan = undrain_plan(snapshot, moves)
        if dry_run:
            return plan
        job = JobInfo(f"undrain:{node}", "undrain", undoes=drain_run.run_id)
        report = self._run(plan, job, observer=observer, confirm=None)
        return _with_notes(report, notes)

    def _run(
        self,
        plan: ExecutionPlan,
        job: JobInfo,
        *,
        observer: Observer | None,
        confirm: Confirm | None,
    ) -> RunReport:
        snapshot = self.snapshot()
        emulated = self._emulator is not None
        setup = RunSetup(
            # an emulated clock runs `speed` times real time: poll that much more often
            wait=poll_policy(self.client.settings.wait, speed=self._speed) if emulated else None,
            agent_vmids=frozenset(g.vmid for g in snapshot.guests.values() if g.agent_enabled),
            hook_env=dict(self._emulator.env()) if emulated else {},
        )
        with open_journal(self.journal_dir, plan, job, None) as journal:
            return run_plan(
                self.client,
                plan,
                journal=journal,
                observer=observer,
                confirm=confirm or _refuse,
                setup=setup,
            )


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
