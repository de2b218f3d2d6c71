"""Issue 13 end to end: runs bound to their cluster, one run at a time, drained nodes stay
drained, plans that fail early, resume after a failure, and the truth about where it runs.

Every test runs pvetool in this process on the emulator's stepped clock (`inprocess.py`),
except those marked `process` (two real pvetool processes racing for the same node).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from pvetool.emulator.clusterfile import load_cluster
from pvetool.emulator.server import Emulator
from pvetool.emulator.specs import TokenSpec
from pvetool.schemas import load_schema
from pvetool.state.lock import MARKER_POOL, Holder
from tests.e2e.inprocess import SteppedClock
from tests.e2e.lab import (
    STEPPED_POLL,
    Cluster,
    check_consistent,
    guests_on,
    journal_records,
    make_cluster,
    migration_tasks,
    read_until,
)
from tests.emu import START_EPOCH, Api

pytestmark = pytest.mark.emulator_only


def _other_lab(tmp_path: Path, name: str = "lab2") -> Cluster:
    """A second cluster, the lab under another name, sharing the first one's state folder."""
    spec = replace(load_cluster("lab"), name=name)
    emu = Emulator(spec, speed=0.0, start_epoch_s=START_EPOCH).start()
    env = emu.env()
    env["PVETOOL_STATE_DIR"] = str(tmp_path / "state")
    env["PVETOOL_POLL_INTERVAL"] = STEPPED_POLL
    return Cluster(emu, env, stepped=SteppedClock(emu))


def _journals(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state").glob("*/*/runs/*.jsonl"))


def _kill_after_the_fact(path: Path) -> None:
    """What kill -9 leaves of a run: its journal without the run-end record."""
    lines = [line for line in path.read_text().splitlines() if '"type":"run-end"' not in line]
    path.write_text("\n".join(lines) + "\n")


# -- 1. cluster identity ------------------------------------------------------------------------


def test_journal_records_the_cluster_and_lives_in_its_folder(lab: Cluster, tmp_path: Path) -> None:
    r = lab.pvetool("drain", "pve3", "--yes", "-o", "json")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    [path] = _journals(tmp_path)
    assert path.parent == tmp_path / "state" / "clusters" / "lab" / "runs"
    start = journal_records(lab)[0][0]
    assert start["type"] == "run-start"
    assert start["cluster"] == "lab"
    assert start["cluster_nodes"] == ["pve1", "pve2", "pve3"]
    assert start["endpoint"] == lab.env["PVETOOL_HOST"]
    origins = [rec for rec in journal_records(lab)[0] if rec["type"] == "origin"]
    assert origins and all(o["cluster"] == "lab" for o in origins)


def test_resume_against_another_cluster_is_refused_naming_both(
    lab: Cluster, tmp_path: Path
) -> None:
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    [path] = _journals(tmp_path)
    _kill_after_the_fact(path)
    other = _other_lab(tmp_path)
    try:
        before = other.emu.state()["tasks"]
        r = other.pvetool("drain", "pve3", "--resume", "--yes")
        assert r.code == 2, r.out + r.err
        assert "Traceback" not in r.err
        assert "cluster 'lab' (pve1, pve2, pve3)" in r.err
        assert "cluster 'lab2' (pve1, pve2, pve3)" in r.err
        assert "not resumed here" in r.err
        assert other.emu.state()["tasks"] == before  # nothing was asked of the other cluster
    finally:
        other.emu.stop()
    # On its own cluster the run resumes (and finds nothing left to do).
    r = lab.pvetool("drain", "pve3", "--resume", "--yes")
    assert r.code in (0, 1) and "resum" in (r.out + r.err).lower(), r.out + r.err
    check_consistent(lab.emu)


def test_undrain_uses_only_its_own_clusters_drain(lab: Cluster, tmp_path: Path) -> None:
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    other = _other_lab(tmp_path)
    try:
        r = other.pvetool("undrain", "pve3", "--yes")
        # The drain of pve3 was lab's: refused naming both clusters, nothing moved on lab2.
        assert r.code == 2, r.out + r.err
        assert "was on the cluster 'lab' (pve1, pve2, pve3)" in r.err
        assert "not on the cluster 'lab2' (pve1, pve2, pve3)" in r.err
        assert "Traceback" not in r.err
        assert not [t for t in other.emu.state()["tasks"] if t["type"] == "qmigrate"]
    finally:
        other.emu.stop()


def test_a_journal_moved_into_another_clusters_folder_is_refused(
    lab: Cluster, tmp_path: Path
) -> None:
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    [path] = _journals(tmp_path)
    _kill_after_the_fact(path)
    other_runs = tmp_path / "state" / "clusters" / "lab2" / "runs"
    other_runs.mkdir(parents=True, mode=0o700)
    path.rename(other_runs / path.name)
    other = _other_lab(tmp_path)
    try:
        r = other.pvetool("drain", "pve3", "--resume", "--yes")
        assert r.code == 2, r.out + r.err
        assert "cluster 'lab' (pve1, pve2, pve3)" in r.err and "cluster 'lab2'" in r.err
    finally:
        other.emu.stop()


def test_an_old_layout_journal_is_not_resumed_but_named(lab: Cluster, tmp_path: Path) -> None:
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    [path] = _journals(tmp_path)
    _kill_after_the_fact(path)
    # As pvetool wrote it before journals recorded their cluster: state/runs/, no identity.
    legacy = tmp_path / "state" / "runs"
    legacy.mkdir(mode=0o700)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in records:
        for key in ("cluster", "cluster_nodes", "endpoint"):
            rec.pop(key, None)
    (legacy / path.name).write_text("".join(json.dumps(rec) + "\n" for rec in records))
    path.unlink()
    r = lab.pvetool("drain", "pve3", "--resume", "--yes")
    assert r.code == 2, r.out + r.err
    assert "written before pvetool recorded which cluster" in r.err
    assert f"mv {legacy / path.name}" in r.err


def test_emulated_runs_live_in_their_own_namespace(tmp_path: Path) -> None:
    from tests.e2e.inprocess import run_cli

    env = {"PVETOOL_STATE_DIR": str(tmp_path / "state")}
    r = run_cli(["--emulate", "lab", "drain", "pve3", "--yes"], env, clocks=None, limit_s=300)
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    assert sorted(p.relative_to(tmp_path / "state").parts[:2] for p in _journals(tmp_path)) == [
        ("emulated", "lab")
    ]


# -- 2. one run at a time per cluster -----------------------------------------------------------

OTHER = Holder("20260101T000000Z-abcdef", 4242, "admin-laptop", "drain:pve1", START_EPOCH)


def _pools(emu: Emulator) -> dict[str, str]:
    with emu.locked() as c:
        return {name: c.pool_comment(name) for name in c.pool_names()}


def _migrations(emu: Emulator) -> list[dict[str, object]]:
    return [t for t in emu.state()["tasks"] if t["type"] in ("qmigrate", "vzmigrate")]


def test_the_run_is_marked_on_the_cluster_while_it_runs(lab: Cluster) -> None:
    assert lab.stepped is not None
    seen: list[str] = []
    with lab.stepped.once(
        lambda: bool(_migrations(lab.emu)),
        lambda: seen.append(_pools(lab.emu).get(MARKER_POOL, "<none>")),
    ):
        r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    [record] = seen
    holder = Holder.from_text(record)
    assert holder is not None and holder.command == "drain:pve3"
    assert journal_records(lab)[0][0]["run"] == holder.run_id
    assert MARKER_POOL not in _pools(lab.emu)  # released at the end


def test_a_run_marked_by_another_machine_is_refused_naming_it(lab: Cluster) -> None:
    Api(lab.emu).call("POST", "/pools", poolid=MARKER_POOL, comment=OTHER.to_text())
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code == 2, r.out + r.err
    assert "Traceback" not in r.err
    assert "another pvetool run is marked on the cluster 'lab'" in r.err
    assert "run 20260101T000000Z-abcdef (drain:pve1, pid 4242 on admin-laptop" in r.err
    assert "--force-lock" in r.err
    assert not _migrations(lab.emu)
    assert _pools(lab.emu)[MARKER_POOL] == OTHER.to_text()  # not ours to remove
    # --force-lock: recovery, with a warning naming the run it overrides
    r = lab.pvetool("drain", "pve3", "--yes", "--force-lock")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    assert "warning: --force-lock: replacing the run marker 'pvetool-run' of run 2026" in r.err
    assert _migrations(lab.emu)
    assert MARKER_POOL not in _pools(lab.emu)


def test_a_local_lock_held_by_a_live_run_refuses(lab: Cluster, tmp_path: Path) -> None:
    folder = tmp_path / "state" / "clusters" / "lab"
    folder.mkdir(parents=True, mode=0o700)
    (tmp_path / "state").chmod(0o700)
    (tmp_path / "state" / "clusters").chmod(0o700)
    holder = Holder("20260101T000000Z-123456", os.getpid(), "here", "plan:abc", START_EPOCH)
    with open(folder / "run.lock", "w") as handle:
        handle.write(holder.to_text())
        handle.flush()
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code == 2, r.out + r.err
    assert "another pvetool run holds the cluster 'lab'" in r.err
    assert "run 20260101T000000Z-123456 (plan:abc, pid" in r.err
    assert not _migrations(lab.emu)


def test_a_lock_left_by_a_dead_run_is_taken_over_with_a_notice(
    lab: Cluster, tmp_path: Path
) -> None:
    folder = tmp_path / "state" / "clusters" / "lab"
    folder.mkdir(parents=True, mode=0o700)
    (tmp_path / "state").chmod(0o700)
    (tmp_path / "state" / "clusters").chmod(0o700)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = Holder("20260101T000000Z-0dead0", dead.pid, "here", "drain:pve3", START_EPOCH)
    (folder / "run.lock").write_text(holder.to_text())
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    assert "notice: took over the run lock left by run 20260101T000000Z-0dead0" in r.err
    assert _migrations(lab.emu)


def test_a_token_without_pool_allocate_runs_with_the_local_lock_and_says_so(
    tmp_path: Path,
) -> None:
    spec = load_cluster("lab")
    token = TokenSpec(
        "root@pam!migrate",
        "1ab1ab1a-0000-4000-8000-0000000000aa",
        ("Sys.Audit", "Sys.Console", "VM.Audit", "VM.Migrate", "VM.PowerMgmt", "Datastore.Audit"),
    )
    emu = Emulator(replace(spec, tokens=(*spec.tokens, token)), speed=0.0).start()
    try:
        env = emu.env()
        env["PVETOOL_TOKEN"] = f"{token.id}={token.secret}"
        env["PVETOOL_STATE_DIR"] = str(tmp_path / "state")
        env["PVETOOL_POLL_INTERVAL"] = STEPPED_POLL
        cluster = Cluster(emu, env, stepped=SteppedClock(emu))
        r = cluster.pvetool("drain", "pve3", "--yes")
        assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
        assert "warning: this token may not create the pool 'pvetool-run' (Pool.Allocate" in r.err
        assert _migrations(emu)
    finally:
        emu.stop()


@pytest.mark.process
def test_two_concurrent_drains_of_one_node_the_second_refuses_naming_the_first(
    tmp_path: Path,
) -> None:
    # Slow enough (2x real time) that the first drain's container moves (13-19 emulated
    # seconds each) are still under way when the second starts.
    cluster = make_cluster(tmp_path, speed=2.0)
    cluster.env["PVETOOL_POLL_INTERVAL"] = "0.1"
    try:
        first = cluster.spawn("drain", "pve3", "--yes")
        seen: list[str] = []
        assert read_until(first, " started ", seen) is not None, seen
        second = cluster.pvetool("drain", "pve3", "--yes")
        assert second.code == 2, second.out + second.err
        assert "Traceback" not in second.err
        run_id = journal_records(cluster)[0][0]["run"]
        assert f"run {run_id} (drain:pve3, pid {first.pid}" in second.err
        assert first.wait(120) in (0, 1)
        assert len(journal_records(cluster)) == 1  # the second never started a run
        for vmid in {int(t["vmid"]) for t in _migrations(cluster.emu)}:
            assert len(migration_tasks(cluster.emu, vmid)) == 1, vmid
        check_consistent(cluster.emu)
    finally:
        cluster.emu.stop()


# -- 3. drained nodes stay drained ---------------------------------------------------------------


def test_drain_pve1_then_drain_pve3_never_targets_pve1(lab: Cluster) -> None:
    r = lab.pvetool("drain", "pve1", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    drain_run = journal_records(lab)[0][0]["run"]
    arrived_before = set(guests_on(lab.emu, "pve1"))
    r = lab.pvetool("drain", "pve3", "--yes", "-o", "json")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    intents = [rec for rec in journal_records(lab)[1] if rec["type"] == "intent"]
    assert intents, "the second drain moved nothing"
    assert {rec["target"] for rec in intents} == {"pve2"}
    assert set(guests_on(lab.emu, "pve1")) <= arrived_before  # nothing arrived on pve1
    # The plan says why pve1 was not chosen, with the run that drained it.
    r = lab.pvetool("check", "drain", "pve2", "-o", "json")
    assert "PVT-DRAINED" in r.out and drain_run in r.out
    # status says so too
    r = lab.pvetool("status")
    assert r.code == 0, r.err
    assert f"pve1: drained by pvetool (run {drain_run}, since " in r.out


def test_migrate_to_a_drained_node_is_refused_and_undrain_releases_it(lab: Cluster) -> None:
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1), r.out + r.err
    mover = next(v for v in guests_on(lab.emu, "pve1") if v in (101, 103, 110, 113))
    r = lab.pvetool("migrate", str(mover), "--to", "pve3", "--yes")
    assert r.code in (1, 2) and "PVT-DRAINED" in r.err, r.out + r.err
    assert mover in guests_on(lab.emu, "pve1")
    r = lab.pvetool("undrain", "pve3", "--yes")
    assert r.code in (0, 1) and "Traceback" not in r.err, r.out + r.err
    r = lab.pvetool("status", "-o", "json")
    assert json.loads(r.out)["pvetool"]["drained"] == {}


@pytest.mark.emulator_only
def test_undrain_releases_the_node_when_every_guest_is_home_already(lab: Cluster) -> None:
    """The guests the drain moved were brought home outside pvetool (another administrator,
    the GUI): undrain has nothing to move and still releases the node (it would otherwise
    stay drained for ever)."""
    r = lab.pvetool("drain", "pve3", "--yes")
    assert r.code in (0, 1), r.out + r.err
    origins = [rec for rec in journal_records(lab)[0] if rec.get("type") == "origin"]
    assert origins, "the drain of pve3 moved something"
    cluster = lab.emu.cluster
    with cluster.lock:  # as a migration PVE ran for someone else would leave them
        cluster.sync()
        for rec in origins:
            cluster.set_node(cluster.guests[rec["vmid"]], "pve3")
    assert "pve3" in json.loads(lab.pvetool("status", "-o", "json").out)["pvetool"]["drained"]
    r = lab.pvetool("undrain", "pve3", "--yes")
    assert r.code == 0 and "pve3 is no longer held" in r.err, r.out + r.err
    assert "Nothing to migrate." in r.err
    assert json.loads(lab.pvetool("status", "-o", "json").out)["pvetool"]["drained"] == {}


# -- 4/5. plans fail early: hooks and permissions -----------------------------------------------

HOOK = Path(__file__).resolve().parents[1] / "data" / "hooks" / "emulator_hook.py"
RO_TOKEN = "auditor@pve!ro=1ab1ab1a-0000-4000-8000-000000000002"  # lab.yaml: read-only


def _rolling_plan(tmp: Path, before: list[str], nodes: str = "[pve1, pve2]") -> Path:
    log = tmp / "hooks.log"
    plan = tmp / "rolling.yaml"
    after = [sys.executable, str(HOOK), "check", "--log", str(log)]
    plan.write_text(
        f"""version: 1
name: rolling-lab
rules:
  exclude: {{tags: [gpu], vmids: [121, 115]}}
  migration: {{with_local_disks: true}}
  on_failure: stop
steps:
  - rolling:
      nodes: {nodes}
      before:
        command: {json.dumps(before)}
        timeout: 60s
        pass_credentials: true
      after:
        command: {json.dumps(after)}
        pass_credentials: true
      wait_online_timeout: 60s
""",
        encoding="utf-8",
    )
    return plan


def test_a_missing_hook_fails_plan_validate_with_its_file_and_line(
    lab: Cluster, tmp_path: Path
) -> None:
    plan = _rolling_plan(tmp_path, ["/usr/local/sbin/no-such-hook", "before"])
    for command in ("validate", "show"):
        r = lab.pvetool("plan", command, str(plan), "-o", "json")  # json: lines not wrapped
        text = r.out + r.err
        assert "PVT-HOOK-MISSING" in text, text
        assert f"{plan}:11: steps[0].rolling.before" in text
        assert "'/usr/local/sbin/no-such-hook' does not exist" in text
        assert "Traceback" not in r.err
    r = lab.pvetool("plan", "validate", str(plan))
    assert r.code == 2
    # plan apply refuses it before anything moves
    r = lab.pvetool("plan", "apply", str(plan), "--yes")
    assert r.code == 2, r.out + r.err
    assert "PVT-HOOK-MISSING" in r.out + r.err
    assert not _migrations(lab.emu)


def test_a_hook_that_is_not_executable_is_named(lab: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    plan = _rolling_plan(tmp_path, [str(script), "before"])
    r = lab.pvetool("plan", "validate", str(plan), "-o", "json")
    assert r.code == 2
    assert "PVT-HOOK-EXEC" in r.out and f"chmod +x {script}" in r.out
    script.chmod(0o755)
    r = lab.pvetool("plan", "validate", str(plan), "-o", "json")
    assert "PVT-HOOK" not in r.out


def test_a_read_only_token_fails_check_drain_naming_the_privilege(lab: Cluster) -> None:
    env = {**lab.env, "PVETOOL_TOKEN": RO_TOKEN}
    r = lab.pvetool("check", "drain", "pve3", env=env)
    assert r.code == 2, r.out + r.err
    assert "PVT-PERMISSION" in r.out + r.err
    assert "the token auditor@pve!ro lacks VM.Migrate on /vms/" in r.out + r.err
    assert "Traceback" not in r.err
    r = lab.pvetool("drain", "pve3", "--yes", env=env)
    assert r.code == 2, r.out + r.err
    assert "lacks VM.Migrate" in r.out + r.err
    assert not _migrations(lab.emu)  # refused up front, not move by move


def test_a_full_token_has_no_permission_findings(lab: Cluster) -> None:
    r = lab.pvetool("check", "drain", "pve3", "-o", "json")
    assert "PVT-PERMISSION" not in r.out and "PVT-PERM-MARKER" not in r.out


# -- 5. a failed run resumed after the cause is fixed --------------------------------------------

_FAILING_HOOK = """import sys
print("apt full-upgrade failed: unmet dependencies (simulated)")
sys.exit(1)
"""
_FIXED_HOOK = """import runpy, sys
sys.argv = [{hook!r}, "reboot", "--down-s", "0.3", "--log", {log!r}]
runpy.run_path({hook!r}, run_name="__main__")
"""


def test_a_failed_rolling_maintenance_resumed_after_the_fix_brings_every_guest_home(
    lab: Cluster, tmp_path: Path
) -> None:
    home = {int(v): g["node"] for v, g in lab.emu.state()["guests"].items()}
    script = tmp_path / "maintenance_hook.py"
    script.write_text(_FAILING_HOOK)
    plan = _rolling_plan(tmp_path, [sys.executable, str(script)])
    r = lab.pvetool("plan", "apply", str(plan), "--yes")
    assert r.code == 1, r.out + r.err
    assert "Traceback" not in r.err
    # The run stopped at pve1's hook, with pve1 drained; it says what to do next.
    assert f"pvetool plan apply {plan} --resume" in r.err
    assert "pvetool undrain pve1" in r.err, r.out
    away = {v for v, n in home.items() if n == "pve1" and v not in guests_on(lab.emu, "pve1")}
    assert away, "the drain of pve1 moved nothing before the hook"
    assert "pvetool undrain pve2" not in r.err  # pve2's guests never left
    # The moves the stop left behind (every later stage's) are announced in one line.
    stopped = [line for line in r.out.splitlines() if "moves not started" in line]
    assert len(stopped) == 1 and "exited with status 1" in stopped[0], stopped

    script.write_text(_FIXED_HOOK.format(hook=str(HOOK), log=str(tmp_path / "hooks.log")))
    r = lab.pvetool("plan", "apply", str(plan), "--yes", "--resume")
    assert r.code == 0, r.out + r.err
    assert len(journal_records(lab)) == 1  # the failed run continued, in its own journal
    end = {int(v): g["node"] for v, g in lab.emu.state()["guests"].items()}
    assert end == home, {v: (home[v], end[v]) for v in home if home[v] != end[v]}
    check_consistent(lab.emu)


# -- 6. the truth about where it runs -----------------------------------------------------------


def test_an_untrusted_certificate_is_reported_with_its_fingerprint(lab: Cluster) -> None:
    env = {**lab.env, "PVETOOL_VERIFY": "true"}  # the system's CAs: the lab's CA is not one
    r = lab.pvetool("status", env=env)
    assert r.code == 1 and "Traceback" not in r.err, r.out + r.err
    assert "the server's certificate is not trusted" in r.err
    assert lab.emu.tls.fingerprint_sha256 in r.err
    assert f"PVETOOL_FINGERPRINT={lab.emu.tls.fingerprint_sha256}" in r.err
    assert "PVETOOL_VERIFY=/path/to/pve-root-ca.pem" in r.err
    # Pinning it, as the message says, works.
    pinned = {
        **env,
        "PVETOOL_FINGERPRINT": lab.emu.tls.fingerprint_sha256,
        "PVETOOL_VERIFY": "false",
    }
    r = lab.pvetool("status", env=pinned)
    assert r.code == 0, r.err
    assert "verification is off" not in r.err


def test_verify_false_warns(lab: Cluster) -> None:
    r = lab.pvetool("status", env={**lab.env, "PVETOOL_VERIFY": "false"})
    assert r.code == 0, r.err
    assert "warning: TLS certificate verification is off (PVETOOL_VERIFY)" in r.err


def test_status_and_the_run_name_the_cluster_and_endpoint(lab: Cluster) -> None:
    where = f"cluster 'lab' (pve1, pve2, pve3) at {lab.env['PVETOOL_HOST']}"
    r = lab.pvetool("status")
    assert r.out.startswith(f"Cluster 'lab' (pve1, pve2, pve3) at {lab.env['PVETOOL_HOST']}")
    data = json.loads(lab.pvetool("status", "-o", "json").out)["pvetool"]
    assert data["cluster"] == "lab" and data["endpoint"] == lab.env["PVETOOL_HOST"]
    r = lab.pvetool("drain", "pve3", "--yes")
    assert f"Running on the {where}." in r.err
    assert "pve3 stays drained (no guest is placed on it) until: pvetool undrain pve3" in r.err


def test_migrate_refusals_exit_2_before_any_write(lab: Cluster) -> None:
    before = lab.emu.state()["tasks"]
    # PCI passthrough: the planner's checks, nothing sent to PVE
    r = lab.pvetool("migrate", "114", "--to", "pve1", "--yes")
    assert r.code == 2 and "PVT-LOCAL-DEVICE" in r.err and "Traceback" not in r.err
    # An HA move PVE's rules forbid: refused naming the rule
    r = lab.pvetool("migrate", "103", "--to", "pve3", "--yes")
    assert r.code == 2 and "PVT-HA-NODE-AFFINITY" in r.err and "db-on-1-2" in r.err, r.err
    assert lab.emu.state()["tasks"] == before
    assert MARKER_POOL not in _pools(lab.emu)  # not even the run marker was set


def test_migrate_json_output_and_journal(lab: Cluster) -> None:
    r = lab.pvetool("migrate", "200", "--to", "pve3", "--yes", "-o", "json")
    assert r.code in (0, 1), r.out + r.err
    events = [json.loads(line) for line in r.out.splitlines() if line.startswith("{")]
    assert events and events[-1]["event"] == "summary"
    assert journal_records(lab)[0][0]["cluster"] == "lab"
    assert "Running on the cluster 'lab'" in r.err


# -- 7. history: runs, runs show, report RUN (issue 11, point 3) --------------------------------


def test_runs_are_listed_shown_and_reported_again_from_the_journal(
    lab: Cluster, tmp_path: Path
) -> None:
    live = tmp_path / "live.json"
    r = lab.pvetool("drain", "pve3", "--yes", "--report", str(live))
    assert r.code in (0, 1), r.out + r.err
    run_id = journal_records(lab)[0][0]["run"]
    document = json.loads(lab.pvetool("runs", "-o", "json").out)
    jsonschema.validate(document, load_schema("runs"))
    assert (document["format"], document["version"]) == ("pvetool/runs", 1)
    assert [(e["run"], e["command"], e["cluster"]) for e in document["runs"]] == [
        (run_id, "drain:pve3", "lab")
    ]

    def listed(*args: str) -> list[dict[str, object]]:
        runs: list[dict[str, object]] = json.loads(lab.pvetool("runs", *args, "-o", "json").out)[
            "runs"
        ]
        return runs

    assert listed("--node", "pve3")
    assert listed("--node", "pve9") == []
    assert listed("--cluster", "other") == []
    markdown = lab.pvetool("runs", "-o", "markdown").out
    assert markdown.startswith("| run | command |") and run_id in markdown
    table = lab.pvetool("runs")
    assert run_id in table.out and "drain:pve3" in table.out
    shown = lab.pvetool("runs", "show", run_id[:20])
    assert shown.code == 0 and f"run {run_id}: drain:pve3 on lab" in shown.out
    rebuilt = tmp_path / "rebuilt.json"
    html = tmp_path / "rebuilt.html"
    r = lab.pvetool("report", run_id, "--report", str(rebuilt), "--report", str(html))
    assert r.code == 0, r.err
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    was, now = json.loads(live.read_text()), json.loads(rebuilt.read_text())
    assert now["summary"] == was["summary"]
    assert [(m["vmid"], m["status"], m["node"]) for m in now["moves"]] == [
        (m["vmid"], m["status"], m["node"]) for m in was["moves"]
    ]
    r = lab.pvetool("runs", "show", "no-such-run")
    assert r.code == 2 and "there is no run no-such-run" in r.err and "Traceback" not in r.err


def _on_a_terminal(cluster: Cluster, args: list[str], answer: bytes) -> tuple[int, str]:
    """`pvetool ARGS` as a process whose stdin is a terminal (a pty); `answer` is typed once the
    question is asked. Its exit code and everything it printed."""
    from tests.e2e.lab import _process_env

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from pvetool.cli.main import main; main()", *args],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_process_env(cluster.env),
    )
    os.close(secondary)
    seen = b""
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + 60
    while b"[y/N]" not in seen and time.monotonic() < deadline and proc.poll() is None:
        chunk = proc.stdout.read() or b""
        seen += chunk
        time.sleep(0.05)
    os.write(primary, answer)
    os.set_blocking(proc.stdout.fileno(), True)
    rest = proc.communicate(timeout=60)[0] or b""
    os.close(primary)
    return proc.returncode, (seen + rest).decode("utf-8", "replace")


@pytest.mark.process
def test_the_questions_name_the_cluster_and_its_endpoint(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path, speed=20.0)
    try:
        where = f"cluster 'lab' (pve1, pve2, pve3) at {cluster.env['PVETOOL_HOST']}"
        code, text = _on_a_terminal(cluster, ["drain", "pve3"], b"n\n")
        assert f"on the {where}? [y/N]" in text, text
        assert code == 1 and "Cancelled; nothing was changed." in text
        code, text = _on_a_terminal(cluster, ["migrate", "200", "--to", "pve3"], b"n\n")
        assert f"Migrate 200 pve1 -> pve3 on the {where}? [y/N]" in text, text
        assert code == 1 and "Cancelled" in text
        assert not _migrations(cluster.emu)
    finally:
        cluster.emu.stop()
