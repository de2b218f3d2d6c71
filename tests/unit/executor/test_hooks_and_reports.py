"""Hooks (no shell, timeout, PVETOOL_NODE), waiting for a node, rolling stages, and the report
renderers (JSON, Markdown, HTML with an SVG timeline, JUnit)."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

from pvetool.executor import HookOutcome, run_hook, wait_node_online
from pvetool.model import ClusterNodeStatus, ClusterStatus, Stage
from pvetool.render import render_report
from pvetool.render.report import report_junit, summary_lines
from tests.unit.executor.fakes import FakeApi, FakeGuest, make_executor, move, plan_of

GiB = 1024**3
NODES = {"pve1": 64 * GiB, "pve2": 64 * GiB, "pve3": 64 * GiB}


def test_run_hook_uses_no_shell_passes_the_node_and_enforces_the_timeout() -> None:
    script = "import os, sys; print(os.environ['PVETOOL_NODE'], sys.argv[1]); sys.exit(3)"
    out = run_hook([sys.executable, "-c", script, "$HOME;true"], {"PVETOOL_NODE": "pve2"}, 30)
    assert out.exit_code == 3 and not out.timed_out
    assert out.output_tail.strip() == "pve2 $HOME;true"  # no shell expanded anything
    slow = run_hook([sys.executable, "-c", "import time; time.sleep(30)"], {}, 0.2)
    assert slow.timed_out and slow.exit_code is None
    missing = run_hook(["/nonexistent/hook"], {}, 5)
    assert missing.exit_code is None and "could not start" in missing.error


def test_wait_node_online_polls_cluster_status_until_online_and_quorate() -> None:
    answers = iter([(False, True), (True, False), (True, True)])
    now = [0.0]

    def status() -> ClusterStatus:
        online, quorate = next(answers)
        return ClusterStatus("c", quorate, (ClusterNodeStatus("pve2", online),))

    def sleep(seconds: float) -> None:
        now[0] += seconds

    ok, waited, _ = wait_node_online(
        status, "pve2", 60, poll_s=2, sleep=sleep, clock=lambda: now[0]
    )
    assert ok and waited == 4.0

    never = ClusterStatus("c", True, (ClusterNodeStatus("pve2", False),))
    ok, _, reason = wait_node_online(
        lambda: never, "pve2", 10, poll_s=2, sleep=sleep, clock=lambda: now[0]
    )
    assert not ok and "did not come back within 10 s (pve2 is offline)" in reason


def rolling_plan() -> tuple[FakeApi, object]:
    api = FakeApi(NODES, [FakeGuest(101, "qemu", "pve1")])
    stages = (
        Stage("migrate", "drain pve1", node="pve1", moves=(move("d", 101, "pve1", "pve2"),)),
        Stage("hook", "before", node="pve1", argv=("reboot",), timeout_s=60),
        Stage("wait-node", "wait for pve1", node="pve1", timeout_s=60),
        Stage("hook", "after", node="pve1", argv=("check",), timeout_s=60),
        Stage("migrate", "return to pve1", node="pve1", moves=(move("r", 101, "pve2", "pve1"),)),
    )
    return api, plan_of(*stages)


def test_rolling_stages_run_in_order_and_bring_guests_home() -> None:
    api, plan = rolling_plan()
    calls: list[tuple[tuple[str, ...], str]] = []

    def hook(argv: Sequence[str], env: Mapping[str, str], timeout_s: float) -> HookOutcome:
        calls.append((tuple(argv), env["PVETOOL_NODE"]))
        return HookOutcome(0, False, 0.1, "")

    report = make_executor(api, hook_runner=hook).run(
        plan  # type: ignore[arg-type]
    )
    assert calls == [(("reboot",), "pve1"), (("check",), "pve1")]
    assert api.node_of(101) == "pve1"
    assert report.exit_code == 0 and all(w.ok for w in report.node_waits)


def test_a_failing_hook_stops_the_roll_before_anything_else() -> None:
    api, plan = rolling_plan()

    def hook(argv: Sequence[str], env: Mapping[str, str], timeout_s: float) -> HookOutcome:
        return HookOutcome(1, False, 0.1, "upgrade failed")

    report = make_executor(api, hook_runner=hook).run(
        plan  # type: ignore[arg-type]
    )
    assert [h.exit_code for h in report.hooks] == [1]
    assert not report.node_waits
    assert {r.move.id: r.status for r in report.results} == {"d": "moved", "r": "not-started"}
    assert "exited with status 1" in report.stopped_reason
    assert report.exit_code == 1


def test_reports_are_well_formed() -> None:
    api = FakeApi(NODES, [FakeGuest(101, "qemu", "pve1"), FakeGuest(102, "lxc", "pve1")])
    api.fail_next[102] = 'can\'t <migrate> & "fail"'
    plan = plan_of(
        [move("a", 101, "pve1", "pve2"), move("b", 102, "pve1", "pve3", kind="lxc")],
        on_failure="continue",
        blocked=(114,),
    )
    report = make_executor(api).run(plan)
    data = json.loads(render_report(report, "r.json"))
    assert data["summary"]["moved"] == 1 and data["summary"]["failed"] == 1
    assert data["exit_code"] == 1 and data["blocked"][0]["vmid"] == 114
    html = render_report(report, "r.html")
    assert "<svg" in html and "</svg>" in html
    assert "src=" not in html and "href=" not in html  # nothing to fetch
    assert "&lt;migrate&gt;" in html
    ET.fromstring(html[html.index("<svg") : html.index("</svg>") + 6])  # the SVG parses
    md = render_report(report, "r.md")
    assert "| a | VM 101 (g101) | pve1 | pve2 | moved |" in md
    junit = ET.fromstring(report_junit(report).split("\n", 1)[1])
    assert junit.get("tests") == "3" and junit.get("failures") == "2"
    assert any("can't <migrate>" in (f.get("message") or "") for f in junit.iter("failure"))
    assert any("failed" in line for line in summary_lines(report))
