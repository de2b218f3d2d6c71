"""One test per finding of issue 12 that the hardening fixes (reliability campaign,
/work/shared/research/reliability-campaign.md), each reproducing what the campaign did.

1. ``drain pve1 --yes`` printed "Nothing to migrate." and exited 0 while pve1 ran 6 guests
   when ``/cluster/resources`` could not be trusted; ``status`` showed "0 guests".
2. With password auth, pvetool followed redirects and sent its ``PVEAuthCookie`` there.
3. A guest whose config answer was garbage was planned and moved.
5. "internal error" exits: an answer without ``data``, NaN, 1e400; a deeply nested, a non-UTF-8
   and a 5000-digit saved plan; a 10^20-day timeout that validated and crashed mid-run.
6. Unbounded reads: a FIFO plan hung, ``/dev/zero`` as plan or token file ate memory, a server
   trickling bytes held pvetool for 90 s.
8. (the parts fixed here) ``--task-timeout 0s`` accepted, ANSI escapes from plans and the API
   printed raw, all plan problems on one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.harness import DRAIN, ROOT, HostileLab, hostile_lab
from tests.hostile.proxy import TRICKLE_INTERVAL_S

RESOURCES = r"^/cluster/resources$"


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[HostileLab]:
    """A cluster of its own, for tests that move guests or change the cluster."""
    with hostile_lab(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def _module_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileLab]:
    with hostile_lab(tmp_path_factory.mktemp("shared")) as running:
        yield running


@pytest.fixture()
def shared(_module_lab: HostileLab) -> HostileLab:
    """One cluster for the tests that only read (no spoiled answer left over)."""
    _module_lab.proxy.clear()
    return _module_lab


def _on_pve1(lab: HostileLab) -> list[int]:
    return sorted(v for v, node in lab.placement().items() if node == "pve1")


def _clean(err: str) -> None:
    assert "internal error" not in err and "Traceback" not in err, err


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 60
) -> tuple[int, str, str]:
    """pvetool as a process without a cluster (file and argument checks come first)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PVETOOL_", "PROXMOX_"))}
    full_env.update(PVETOOL_HOST="127.0.0.1:1", PVETOOL_TOKEN="root@pam!x=00000000-dead")
    full_env.update(env or {}, PYTHONPATH=str(ROOT))
    full_env["XDG_CONFIG_HOME"] = str(ROOT / "tests" / "data" / "no-config")
    proc = subprocess.run(
        [sys.executable, "-c", "from pvetool.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout, proc.stderr


# --- finding 1: a drain on an untrustworthy guest list refuses ----------------------------------


@pytest.mark.parametrize("mode", ["data_null", "garbage_strings", "redirect_http", "unknown_node"])
def test_finding_1_drain_refuses_an_untrustworthy_guest_list(lab: HostileLab, mode: str) -> None:
    before = _on_pve1(lab)
    lab.proxy.spoil(mode, RESOURCES, "GET")
    run = lab.pvetool(*DRAIN, "--yes")
    lab.settle()
    _clean(run.err)
    assert run.code == 2, run.err
    assert "Nothing to migrate" not in run.err + run.out
    assert "/cluster/resources" in run.err
    assert _on_pve1(lab) == before  # nothing was decided, nothing moved


def test_finding_1_status_refuses_an_untrustworthy_guest_list(shared: HostileLab) -> None:
    for mode in ("data_null", "unknown_node"):
        shared.proxy.clear()
        shared.proxy.spoil(mode, RESOURCES, "GET")
        run = shared.pvetool("status")
        _clean(run.err)
        assert run.code == 2, (mode, run.out, run.err)
        assert "0 guests" not in run.out
        assert "GET /cluster/resources cannot be used" in run.err


# --- finding 2: redirects are never followed ---------------------------------------------------


@pytest.mark.parametrize("mode", ["redirect_other_port", "redirect_http"])
def test_finding_2_no_redirect_is_followed_and_no_ticket_leaves(tmp_path: Path, mode: str) -> None:
    with hostile_lab(tmp_path, password_auth=True) as lab:
        lab.proxy.spoil(mode, RESOURCES, "GET")
        run = lab.pvetool("status")
        _clean(run.err)
        assert run.code == 2, run.err
        assert "redirect" in run.err and "was not followed" in run.err
        port = lab.proxy.https_sink_port if mode == "redirect_other_port" else None
        assert f"127.0.0.1:{port or lab.proxy.http_sink_port}" in run.err
        assert "/api2/json" not in run.err.split("redirect", 1)[1]  # the host only
        # Nothing at all reached the redirect targets: no request, no cookie, no password.
        assert lab.proxy.https_sink.seen == [] and lab.proxy.http_sink.seen == []


def test_finding_2_the_login_itself_is_never_redirected(tmp_path: Path) -> None:
    with hostile_lab(tmp_path, password_auth=True) as lab:
        lab.proxy.spoil("redirect_http", r"^/access/ticket$", "POST")
        run = lab.pvetool("status")
        _clean(run.err)
        assert run.code != 0
        assert lab.proxy.http_sink.seen == []


# --- finding 3: a guest whose config cannot be used is blocked, never moved ---------------------


def test_finding_3_an_unusable_config_blocks_the_guest(shared: HostileLab) -> None:
    for mode in ("malformed_json", "html_200", "garbage_strings"):
        shared.proxy.clear()
        shared.proxy.spoil(mode, r"^/nodes/pve1/qemu/113/config$", "GET")
        dry = shared.pvetool(*DRAIN, "--dry-run", "-o", "json")
        _clean(dry.err)
        plan = json.loads(dry.out)["plan"]
        assert 113 in plan["blocked"], mode
        (finding,) = [
            f for f in plan["findings"] if f["vmid"] == 113 and f["severity"] == "blocker"
        ]
        assert finding["id"] == "PVT-CONFIG-INVALID"
        assert "GET /nodes/pve1/qemu/113/config" in finding["message"]


def test_finding_3_a_guest_with_an_unusable_config_is_never_moved(lab: HostileLab) -> None:
    lab.proxy.spoil("garbage_strings", r"^/nodes/pve1/qemu/113/config$", "GET")
    run = lab.pvetool(*DRAIN, "--yes")
    lab.settle()
    _clean(run.err)
    assert run.code == 1, run.err  # the others moved, 113 was left behind: not a success
    assert run.report is not None
    assert {"vmid": 113, "finding": "PVT-CONFIG-INVALID"}.items() <= run.report["blocked"][
        0
    ].items()
    assert 113 not in {m["vmid"] for m in run.report["moves"]}
    assert lab.placement()[113] == "pve1"


# --- finding 5: no "internal error", the endpoint named ----------------------------------------


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("no_data", "has no 'data'"),
        ("nan", "NaN is not a number PVE sends"),
        ("huge_number", "is out of range"),
    ],
)
def test_finding_5_answers_that_crashed_are_named_errors(
    shared: HostileLab, mode: str, words: str
) -> None:
    shared.proxy.spoil(mode, RESOURCES, "GET")
    run = shared.pvetool("status")
    _clean(run.err)
    assert run.code == 2
    assert "GET /cluster/resources" in run.err and words in run.err, run.err


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"format": "pvetool-plan", "name": "caf\xe9"}', "not UTF-8"),
        (b'{"format": "pvetool-plan", "version": ' + b"9" * 5000 + b"}", "digits"),
        (b'{"format": "pvetool-plan", "version": NaN}', "NaN"),
    ],
)
def test_finding_5_saved_plans_that_crashed(shared: HostileLab, content: bytes, words: str) -> None:
    path = shared.root / "PLAN.json"
    path.write_bytes(content)
    run = shared.pvetool("plan", "apply", str(path), "--dry-run")
    _clean(run.err)
    assert run.code == 2, run.err
    assert str(path) in run.err and words in run.err, run.err


def test_finding_5_absurd_timeouts_are_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "rolling.yaml"
    path.write_text(
        "version: 1\nsteps:\n  - rolling:\n      nodes: [pve1, pve2]\n"
        "      wait_online_timeout: 99999999999999999999d\n"
        "      before: {command: [/bin/true], timeout: 99999999999999999999d}\n",
        encoding="utf-8",
    )
    code, _, err = _cli("plan", "validate", str(path))
    _clean(err)
    assert code == 2
    lines = err.strip().splitlines()
    assert f"{path}:5: steps[0].rolling.wait_online_timeout: must be at most 365d" in err
    assert any(line.startswith(f"{path}:6: steps[0].rolling.before.timeout") for line in lines)


# --- finding 6: bounded reads and requests ------------------------------------------------------


def test_finding_6_a_fifo_plan_is_refused_without_waiting(shared: HostileLab) -> None:
    fifo = shared.root / "plan.yaml"
    os.mkfifo(fifo)
    saved = shared.root / "plan.json"
    os.mkfifo(saved)
    for args in (
        ("plan", "validate", str(fifo)),
        ("plan", "apply", str(fifo), "--dry-run"),
        ("plan", "apply", str(saved), "--dry-run"),
    ):
        run = shared.pvetool(*args, timeout_s=30)
        _clean(run.err)
        assert run.code == 2 and "a FIFO (named pipe), not a regular file" in run.err, run.err


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_finding_6_dev_zero_as_plan_or_token_file_is_refused(tmp_path: Path) -> None:
    code, _, err = _cli("plan", "validate", "/dev/zero", timeout_s=30)
    _clean(err)
    assert code == 2 and "a character device, not a regular file" in err, err
    code, _, err = _cli("--token-file", "/dev/zero", "status", timeout_s=30)
    _clean(err)
    assert code == 2 and "character device" in err, err


def test_finding_6_a_huge_plan_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("version: 1\nsteps: [drain: pve1]\nrules:\n  exclude:\n    vmids: [")
        handle.write("100, " * 1_000_000 + "100]\n")
    started = time.monotonic()
    code, _, err = _cli("plan", "validate", str(path), timeout_s=60)
    _clean(err)
    assert code == 2 and "files larger than 1 MiB are refused" in err, err
    assert time.monotonic() - started < 20


def test_finding_6_a_trickling_server_does_not_hold_pvetool(shared: HostileLab) -> None:
    # The profile of HostileLab sets timeout_s: 4. Every byte arrives within the per-read
    # timeout, so only the whole request's deadline can end it.
    shared.proxy.spoil("slow_trickle", RESOURCES, "GET")
    run = shared.pvetool("status")
    _clean(run.err)
    assert run.code == 1
    assert "no complete answer within 4 s" in run.err
    assert run.elapsed_s < 4 * 2 + 5  # one deadline (not one per read), no retry; startup
    assert TRICKLE_INTERVAL_S < 4  # the server did send, just slowly


def test_finding_6_an_answer_larger_than_pvetool_reads(shared: HostileLab) -> None:
    shared.proxy.spoil("huge_answer", RESOURCES, "GET", count=3)
    run = shared.pvetool("status")
    _clean(run.err)
    assert run.code == 2
    assert "more than the 32 MiB pvetool reads" in run.err


# --- finding 8: timeouts, terminals, one problem per line --------------------------------------


@pytest.mark.parametrize("flag", [("--task-timeout", "0s"), ("--task-timeout", "400d")])
def test_finding_8_task_timeout_out_of_range(flag: tuple[str, str]) -> None:
    code, _, err = _cli("drain", "pve1", "--dry-run", *flag)
    _clean(err)
    assert code == 2 and "--task-timeout" in err, err


def test_finding_8_migrate_timeout_out_of_range() -> None:
    code, _, err = _cli("migrate", "110", "--to", "pve3", "--timeout", "0")
    assert code == 2 and "must be longer than 0 seconds" in err, err


def test_finding_8_control_characters_from_the_api_are_escaped(lab: HostileLab) -> None:
    # A guest name with ANSI clear-screen, an OSC window title and a bidi override.
    evil = "web\x1b[2J\x1b]0;owned\x07\u202eevil"
    with lab.emu.locked() as cluster:
        cluster.guests[101].name = evil
    run = lab.pvetool("status", env={"COLUMNS": "400"})
    assert run.code == 0, run.err
    assert "\x1b" not in run.out and "\u202e" not in run.out
    assert "web\\x1b[2J\\x1b]0;owned\\u202eevil" in run.out
    data = json.loads(lab.pvetool("status", "-o", "json").out)  # JSON escapes by itself
    assert {g["vmid"]: g["name"] for g in data["guests"]}[101] == evil


def test_finding_8_control_characters_from_a_plan_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(
        'version: 1\nname: "x\\e[2J\\e]0;t\\a\\u202Ey"\nsteps: [drain: pve1]\n'
        'rules:\n  "bogus\\e[31m": 1\n',
        encoding="utf-8",
    )
    code, out, err = _cli("plan", "validate", str(path))
    assert code == 2
    assert "\x1b" not in out + err and "\u202e" not in out + err
    assert "bogus\\x1b[31m" in err


def test_finding_8_plan_problems_one_per_line_and_as_json(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "version: 1\nsteps:\n  - drain:\n      nodes: [pve1, 12]\n      taregts: [pve2]\n"
        "rules:\n  task_timeout: 10 mins\n  concurrency: {cluster: " + "9" * 200 + "}\n",
        encoding="utf-8",
    )
    code, out, err = _cli("plan", "validate", str(path))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[0] == f"error: The plan {path} has 4 problems:"
    assert [line.split(":")[1] for line in lines[1:]] == ["4", "5", "7", "8"]
    assert all(line.startswith(f"{path}:") for line in lines[1:])
    code, out, _ = _cli("plan", "validate", str(path), "-o", "json")
    error = json.loads(out)["error"]
    assert code == 2 and error["type"] == "PlanError" and error["exit_code"] == 2
    assert error["problems"] == lines[1:]
