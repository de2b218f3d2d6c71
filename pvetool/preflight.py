"""What a plan needs beyond what the planner checks, found before anything starts: the hook
programs it would run on this machine, and the privileges of the connection.

`hook_findings(spec)` looks at every ``before``/``after`` hook of a rolling maintenance the way
`pvetool.executor.hooks.run_hook` will start it (no shell: ``argv[0]`` is the program, a path or
a name looked up in ``PATH``), and names the plan line of each problem:

=================  ========  ================================================================
PVT-HOOK-MISSING   blocker   the hook's program does not exist (or is not in ``PATH``); a
                             whole command line in one string gets a hint to split it
PVT-HOOK-EXEC      blocker   the program exists but is not an executable file
PVT-HOOK-SHELL     warning   the hook runs a shell with ``-c``: quoting and failures hide
                             behind it (run the program itself)
=================  ========  ================================================================

`permission_findings(plan, perms, ...)` compares what the plan will ask of PVE with the
answer of ``GET /access/permissions`` (privilege -> propagate flag, per ACL path; for a token
its own privileges, intersected with its user's when privilege-separated):

=================  ========  ================================================================
PVT-PERMISSION     blocker   a privilege the run needs is missing: ``VM.Migrate`` on each
                             guest it moves, ``VM.PowerMgmt`` on a running VM moved offline,
                             ``Sys.Console`` on ``/`` for HA-managed guests (PVE's HA migrate),
                             ``Sys.Audit`` on ``/`` (cluster state, tasks); one finding per
                             privilege, naming every path
PVT-PERM-MARKER    warning   no ``Pool.Allocate`` for the run marker on the cluster
                             (`pvetool.state.lock`): only this machine's lock will hold
=================  ========  ================================================================

A path not listed in the answer gets the privileges its nearest listed parent propagates (PVE's
own rule: pve-access-control ``RPCEnvironment.pm`` ``permissions``, which the endpoint computes
for each path it lists).

Imports: the standard library, `pvetool.model` and `pvetool.planner.spec`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pvetool.model import ExecutionPlan, Finding
from pvetool.planner.spec import Hook, PlanSpec, RollingStep

__all__ = ["has_privilege", "hook_findings", "permission_findings"]

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "fish", "csh", "tcsh"})


def _where(hook: Hook) -> str | None:
    """``file:line: key`` of the hook in its plan (None for a built-in plan)."""
    return str(hook.where) if hook.where.line else None


def _hooks(spec: PlanSpec) -> Iterable[tuple[str, Hook]]:
    for step in spec.steps:
        if isinstance(step, RollingStep):
            if step.before is not None:
                yield "before", step.before
            if step.after is not None:
                yield "after", step.after


def hook_findings(
    spec: PlanSpec, *, which: Callable[[str], str | None] = shutil.which
) -> list[Finding]:
    """Problems of the hooks of `spec` on this machine (module docstring)."""
    out: list[Finding] = []
    for role, hook in _hooks(spec):
        if not hook.argv:
            continue
        program = hook.argv[0]
        where = _where(hook)
        at = f" ({where})" if where else ""
        name = f"the {role} hook{at}"
        if os.sep in program:
            path: Path | None = Path(program)
        else:
            found = which(program)
            path = Path(found) if found else None
        if path is None or not path.exists():
            hint = ""
            if " " in program.strip():
                hint = (
                    "; hooks run without a shell, so a whole command line in one string is "
                    f"one program name: write it as a list, e.g. {program.split()!r}"
                )
            looked = "does not exist" if os.sep in program else "is not in PATH"
            out.append(
                Finding(
                    "PVT-HOOK-MISSING",
                    "blocker",
                    f"{name}: the program {program!r} {looked}{hint}",
                    where=where,
                )
            )
            continue
        if not path.is_file() or not os.access(path, os.X_OK):
            out.append(
                Finding(
                    "PVT-HOOK-EXEC",
                    "blocker",
                    f"{name}: {path} is not an executable file (chmod +x {path})",
                    where=where,
                )
            )
            continue
        if path.name in SHELLS and "-c" in hook.argv[1:]:
            out.append(
                Finding(
                    "PVT-HOOK-SHELL",
                    "warning",
                    f"{name} runs a shell ({' '.join(hook.argv[:2])} ...): pvetool runs hooks "
                    "without a shell on purpose; call the program itself so that its exit code "
                    "and arguments reach pvetool unchanged",
                    where=where,
                )
            )
    return out


def has_privilege(perms: Mapping[str, Mapping[str, object]], path: str, priv: str) -> bool:
    """True when `perms` (the answer of ``GET /access/permissions``) grants `priv` on `path`:
    listed there, or propagated from the nearest listed parent."""
    if path in perms:
        return priv in perms[path]
    walk = path
    while walk not in ("", "/"):
        walk = walk.rsplit("/", 1)[0] or "/"
        if walk in perms:
            return bool(perms[walk].get(priv))
    return False


def permission_findings(
    plan: ExecutionPlan,
    perms: Mapping[str, Mapping[str, object]],
    *,
    who: str,
    marker_pool: str | None = None,
) -> list[Finding]:
    """The privileges `plan` needs that `perms` lacks (module docstring); `who` names the
    user or token in the messages; `marker_pool`: the pool of the run marker, if one is set."""
    needed: dict[str, list[str]] = {}

    def need(priv: str, path: str) -> None:
        paths = needed.setdefault(priv, [])
        if path not in paths:
            paths.append(path)

    need("Sys.Audit", "/")
    for move in sorted(plan.moves, key=lambda m: m.vmid):
        need("VM.Migrate", f"/vms/{move.vmid}")
        if move.options.shutdown:
            need("VM.PowerMgmt", f"/vms/{move.vmid}")
        if move.options.ha:
            need("Sys.Console", "/")
    out: list[Finding] = []
    for priv, paths in needed.items():
        missing = [p for p in paths if not has_privilege(perms, p, priv)]
        if not missing:
            continue
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        out.append(
            Finding(
                "PVT-PERMISSION",
                "blocker",
                f"{who} lacks {priv} on {shown}: PVE would refuse "
                + (f"{len(missing)} of the plan's requests" if len(missing) > 1 else "the request")
                + f"; grant {priv} there (e.g. a role that has it) before running the plan",
            )
        )
    if marker_pool is not None and not has_privilege(
        perms, f"/pool/{marker_pool}", "Pool.Allocate"
    ):
        out.append(
            Finding(
                "PVT-PERM-MARKER",
                "warning",
                f"{who} lacks Pool.Allocate on /pool/{marker_pool}: the run cannot be marked on "
                "the cluster, so a pvetool on another machine would not see it (only this "
                "machine's lock holds)",
            )
        )
    return out
