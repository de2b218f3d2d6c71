"""`pvetool.preflight`: hook programs and privileges, found before a plan runs."""

from __future__ import annotations

from pvetool.model import Caps, ExecutionPlan, Move, MoveOptions, Stage
from pvetool.planner.spec import Hook, PlanSpec, RollingStep, Where
from pvetool.preflight import has_privilege, hook_findings, permission_findings


def _spec(*argv: str) -> PlanSpec:
    hook = Hook(argv=argv, where=Where("plan.yaml", 7, "steps[0].rolling.before"))
    return PlanSpec(version=1, name="p", steps=(RollingStep(before=hook),))


def test_a_program_in_path_passes_and_a_missing_one_is_named() -> None:
    assert hook_findings(_spec("true"), which=lambda name: "/usr/bin/true") == []
    [f] = hook_findings(_spec("no-such-tool", "x"), which=lambda name: None)
    assert (f.id, f.severity) == ("PVT-HOOK-MISSING", "blocker")
    assert f.where == "plan.yaml:7: steps[0].rolling.before"
    assert "'no-such-tool' is not in PATH" in f.message and "plan.yaml:7" in f.message


def test_a_shell_with_dash_c_is_a_warning() -> None:
    [f] = hook_findings(_spec("/bin/sh", "-c", "apt full-upgrade && reboot"))
    assert (f.id, f.severity) == ("PVT-HOOK-SHELL", "warning")


def test_privileges_propagate_from_the_nearest_listed_parent() -> None:
    perms = {"/": {"Sys.Audit": 1}, "/vms": {"VM.Migrate": 0}, "/vms/101": {"VM.Audit": 1}}
    assert has_privilege(perms, "/nodes/pve1", "Sys.Audit")
    assert has_privilege(perms, "/vms", "VM.Migrate")
    assert not has_privilege(perms, "/vms/102", "VM.Migrate")  # not propagated below /vms
    assert not has_privilege(perms, "/vms/101", "Sys.Audit")  # listed: exactly what is there


def test_one_finding_per_missing_privilege_naming_every_path() -> None:
    moves = tuple(
        Move(
            id=f"s1:{v}",
            vmid=v,
            name=str(v),
            kind="qemu",
            source="pve1",
            target="pve2",
            options=MoveOptions(shutdown=v == 102),
            reason="test",
        )
        for v in (101, 102)
    )
    stage = Stage(kind="migrate", label="m", moves=moves)
    plan = ExecutionPlan(name="p", source="x", stages=(stage,), caps=Caps())
    perms = {"/": {"Sys.Audit": 1, "VM.Audit": 1}}
    found = permission_findings(plan, perms, who="the token t@pve!x", marker_pool="pvetool-run")
    messages: dict[str, list[str]] = {f.id: [] for f in found}
    for f in found:
        messages[f.id].append(f.message)
    assert len(messages["PVT-PERMISSION"]) == 2  # VM.Migrate, VM.PowerMgmt
    assert any("lacks VM.Migrate on /vms/101, /vms/102" in m for m in messages["PVT-PERMISSION"])
    assert any("lacks VM.PowerMgmt on /vms/102" in m for m in messages["PVT-PERMISSION"])
    assert messages["PVT-PERM-MARKER"]
    full = {"/": {p: 1 for p in ("Sys.Audit", "VM.Migrate", "VM.PowerMgmt", "Pool.Allocate")}}
    assert permission_findings(plan, full, who="x", marker_pool="pvetool-run") == []
