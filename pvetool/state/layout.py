"""Where a cluster's state lives, and which journals a command may act on.

Layout under the state folder (`pvetool.journal.state_dir`)::

    clusters/<key>/runs/<run-id>.jsonl   journals of runs on that cluster
    clusters/<key>/run.lock              the local run lock (`pvetool.state.lock`)
    clusters/<key>/drained.json          nodes drained by pvetool (`pvetool.state.drained`)
    emulated/<key>/...                   the same for ``--emulate`` clusters
    runs/*.jsonl                         journals written before runs recorded their cluster

``<key>`` is `ClusterIdentity.key` (the cluster's name, ``node-<name>`` for a single node).

Journals of the old layout (``runs/`` directly under the state folder) carry no cluster, and
nothing in them proves which cluster they were written on: they are not moved (a guess could
hand one cluster's plan to another, the very accident this layout prevents). They are never
resumed or undrained automatically; when one of them is what a command looks for, the refusal
names the file and the ``mv`` that adopts it for the cluster at hand.

`--resume` and `undrain` use only the journals in the cluster's own folder, and refuse, naming
both clusters, a journal whose recorded cluster differs from the one the command reaches (moved
by hand), or an unfinished run of the same command that lives in another cluster's folder.

Imports: the standard library, `pvetool.errors`, `pvetool.journal` and the package's
`identity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pvetool.errors import ConfigError, RunConflict
from pvetool.journal import (
    Origin,
    RunState,
    find_resumable,
    list_runs,
    secure_dir,
    undrain_candidates,
)
from pvetool.state.identity import UNKNOWN, ClusterIdentity

__all__ = ["ClusterState", "run_identity"]

CLUSTERS = "clusters"
EMULATED = "emulated"


def run_identity(run: RunState) -> ClusterIdentity:
    """The cluster a journal says its run was on (`UNKNOWN` for an old journal)."""
    if not run.cluster and not run.cluster_nodes:
        return UNKNOWN
    return ClusterIdentity(run.cluster, tuple(run.cluster_nodes), run.endpoint)


@dataclass(frozen=True)
class ClusterState:
    """The state of one cluster under the state folder `base`."""

    base: Path
    identity: ClusterIdentity
    emulated: bool = False

    @property
    def root(self) -> Path:
        return self.base / (EMULATED if self.emulated else CLUSTERS) / self.identity.key

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def ensure(self) -> Path:
        """The cluster's folder, created (0700, every level checked) when missing."""
        secure_dir(self.base, create=True)
        secure_dir(self.base / (EMULATED if self.emulated else CLUSTERS), create=True)
        return secure_dir(self.root, create=True)

    def runs(self) -> list[RunState]:
        if not self.root.is_dir():
            return []
        return list_runs(self.root)

    # -- what --resume and undrain may use

    def check_run(self, run: RunState) -> None:
        """Refuse a journal of this folder whose recorded cluster is another one."""
        recorded = run_identity(run)
        if recorded.known and not recorded.same_cluster(self.identity):
            raise RunConflict(
                f"the run {run.run_id} ({run.path}) was on the {recorded.label}, but this "
                f"command reaches the {self.identity.label}; it is not continued here. Point "
                f"pvetool at the {recorded.label} (--host/--profile), or start a new run "
                "without --resume"
            )

    def resumable(self, command: str, what: str) -> RunState:
        """The unfinished run of `command` on this cluster, or a refusal that says why not
        (none here; one on another cluster; one in the old layout)."""
        found = find_resumable(self.root, command=command) if self.root.is_dir() else None
        if found is not None:
            self.check_run(found)
            return found
        elsewhere = self._elsewhere(command)
        if elsewhere is not None:
            other, identity = elsewhere
            if identity.known:
                raise RunConflict(
                    f"the unfinished run {other.run_id} of {what} was on the {identity.label}, "
                    f"not on the {self.identity.label} this command reaches; it is not resumed "
                    f"here. Resume it against the {identity.label} (--host/--profile), or "
                    "start a new run without --resume"
                )
            raise RunConflict(
                f"the unfinished run {other.run_id} of {what} ({other.path}) was written "
                "before pvetool recorded which cluster a run is on, so it is not resumed "
                f"automatically. If it was on the {self.identity.label}, adopt it with: "
                f"mkdir -p {self.runs_dir} && mv {other.path} {self.runs_dir}/"
            )
        raise RunConflict(
            f"there is no unfinished run of {what} to resume on the {self.identity.label} "
            f"(journals in {self.runs_dir})"
        )

    def undrain_candidates(self, node: str) -> tuple[RunState, list[Origin]] | None:
        """The latest drain of `node` on this cluster not undone yet (see
        `pvetool.journal.undrain_candidates`); a drain journal of another cluster is refused."""
        found = undrain_candidates(self.root, node) if self.root.is_dir() else None
        if found is not None:
            self.check_run(found[0])
        return found

    def refuse_drain_elsewhere(self, node: str) -> None:
        """Refuse an undrain of `node` that has nothing to undo on this cluster when another
        cluster's folder holds a drain of a node of that name not undone yet: naming both
        clusters, so the operator points pvetool at the right one."""
        parent = self.root.parent  # the same namespace: real clusters, or emulated ones
        if parent.is_dir() and not parent.is_symlink():
            for folder in sorted(parent.iterdir()):
                if folder == self.root or not folder.is_dir():
                    continue
                try:
                    found = undrain_candidates(folder, node)
                except (ConfigError, OSError):
                    continue
                if found is None:
                    continue
                other = run_identity(found[0])
                raise RunConflict(
                    f"the drain of {node} to undo (run {found[0].run_id}) was on the "
                    f"{other.label}, not on the {self.identity.label} this command reaches; "
                    f"nothing was moved. Point pvetool at the {other.label} (--host/--profile) "
                    f"to bring {node}'s guests back"
                )

    def legacy_drain_of(self, node: str) -> Path | None:
        """A journal of the old layout that drained `node` (for the "nothing to undrain"
        message: it may be this cluster's, nothing proves it)."""
        legacy = self.base / "runs"
        if not legacy.is_dir() or (self.base / "runs").is_symlink():
            return None
        found = undrain_candidates(self.base, node)
        return found[0].path if found is not None else None

    def _elsewhere(self, command: str) -> tuple[RunState, ClusterIdentity] | None:
        """An unfinished run of `command` in another cluster's folder or the old layout."""
        folders: list[Path] = []
        parent = self.root.parent  # the same namespace: real clusters, or emulated ones
        if parent.is_dir() and not parent.is_symlink():
            folders += [p for p in sorted(parent.iterdir()) if p != self.root and p.is_dir()]
        if (self.base / "runs").is_dir() and not self.emulated:
            folders.append(self.base)
        for folder in folders:
            try:
                run = find_resumable(folder, command=command)
            except (ConfigError, OSError):  # a folder not to be trusted or read: not ours
                continue
            if run is not None:
                return run, run_identity(run)
        return None
