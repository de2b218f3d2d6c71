"""The emulator's migration timing: link sharing, auto-converge and escalation, calibration
against a recorded PVE 9 log, determinism. Clock stopped; advanced by the test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.emu import Api, start

RECORDED = Path(__file__).parents[2] / "data" / "fixtures" / "qmigrate_online_pve9_ha_ok.log"


def _durations(api: Api, upids: list[str]) -> list[int]:
    out = []
    for upid in upids:
        api.wait_task(upid, step_s=2.0)
        node = upid.split(":")[1]
        row = next(
            t
            for t in api.get(f"/nodes/{node}/tasks", source="all", limit=1000)
            if t["upid"] == upid
        )
        assert row["status"] == "OK"
        out.append(row["endtime"] - row["starttime"])
    return out


def test_two_migrations_sharing_a_1gbe_uplink_each_take_about_twice_as_long() -> None:
    with start("gbe.yaml") as emu:
        api = Api(emu)
        (solo,) = _durations(
            api, [api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1)]
        )
    with start("gbe.yaml") as emu:
        api = Api(emu)
        a = api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1)
        b = api.post("/nodes/pve1/qemu/102/migrate", target="pve3", online=1)
        pair = _durations(api, [a, b])
    # 12 GiB each at 0.117 GB/s: ~110 s alone; the shared uplink halves each one's rate.
    assert 100 <= solo <= 125
    for d in pair:
        assert 1.8 <= d / solo <= 2.1, (solo, pair)


def test_hot_guest_on_1gbe_triggers_auto_converge_and_downtime_escalation() -> None:
    with start("gbe.yaml") as emu:
        api = Api(emu)
        upid = api.post("/nodes/pve2/qemu/103/migrate", target="pve3", online=1)
        st = api.wait_task(upid, step_s=10.0)
        assert st["exitstatus"] == "OK"
        log = api.task_log(upid)
        stats = emu.state()["tasks"][-1]["stats"]
    dirty = [line for line in log if ", VM dirties lots of memory: " in line]
    assert dirty, "a hot guest on 1 GbE must show that it dirties faster than the link"
    escalations = [
        line
        for line in log
        if re.search(r"auto-increased downtime to continue migration: \d+ ms$", line)
    ]
    assert escalations and escalations[0].endswith(": 200 ms")
    assert stats["throttle"] >= 0.2  # QEMU auto-converge throttled the vCPUs
    # The throttle shows in the log as a falling dirty rate.
    rates = [
        float(re.search(r"memory: ([\d.]+) MiB/s", line).group(1))  # type: ignore[union-attr]
        for line in dirty
        if "MiB/s" in line.split("memory: ")[1]
    ]
    assert rates and min(rates) < 400 * 0.85


def _shape(line: str) -> str:
    """A log line without its timestamp and numbers, to compare formats."""
    text = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", line)
    text = re.sub(r"\(\d+\.\d+\.\d+\.\d+\)", "(IP)", text)
    text = re.sub(r"[\d.]+ (B|KiB|MiB|GiB|TiB)", "N U", text)
    text = re.sub(r"\d+", "N", text)
    return re.sub(r"'[^']*'", "'X'", text)


def test_reproduces_the_recorded_pve9_log() -> None:
    recorded = RECORDED.read_text().splitlines()
    with start("pve9-log.yaml") as emu:
        api = Api(emu)
        upid = api.post("/nodes/pivoine/qemu/20057/migrate", target="dalia", online=1)
        assert api.wait_task(upid, step_s=1.0)["exitstatus"] == "OK"
        log = api.task_log(upid)
    # Every line format of the recorded PVE 9 log that a non-HA API migration prints appears.
    ours = {_shape(x) for x in log}
    expected = {_shape(x) for x in recorded if re.match(r"^\d{4}-", x)} | {"TASK OK"}
    plugin_or_ha = {s for s in expected if "NOTICE" in s or "HA resource agent" in s}
    assert expected - plugin_or_ha - ours == set()

    def grab(pattern: str, lines: list[str]) -> re.Match[str]:
        found = [m for m in (re.search(pattern, x) for x in lines) if m]
        assert found, pattern
        return found[-1]

    dur = r"migration finished successfully \(duration (\d\d):(\d\d):(\d\d)\)"
    h, m, s = (int(x) for x in grab(dur, log).groups())
    rh, rm, rs = (int(x) for x in grab(dur, recorded).groups())
    ours_s, theirs_s = h * 3600 + m * 60 + s, rh * 3600 + rm * 60 + rs
    assert theirs_s == 20
    assert abs(ours_s - theirs_s) <= 0.15 * theirs_s
    down = r"downtime (\d+) ms"
    ours_ms, theirs_ms = int(grab(down, log).group(1)), int(grab(down, recorded).group(1))
    assert theirs_ms == 59
    assert abs(ours_ms - theirs_ms) <= 0.15 * theirs_ms, ours_ms
    sent = r"migration completed, transferred ([\d.]+) GiB VM-state"
    assert float(grab(sent, log).group(1)) == pytest.approx(
        float(grab(sent, recorded).group(1)), rel=0.15
    )
    total = r"of ([\d.]+ GiB) VM-state"
    assert grab(total, log).group(1) == grab(total, recorded).group(1) == "12.6 GiB"


def test_same_cluster_file_and_seed_give_the_same_run() -> None:
    def run() -> list[list[str]]:
        with start("behaviour.yaml") as emu:
            api = Api(emu)
            upids = [
                api.post("/nodes/pve1/qemu/101/migrate", target="pve2", online=1),
                api.post("/nodes/pve2/lxc/200/migrate", target="pve3", restart=1),
                api.post("/nodes/pve2/qemu/106/migrate", target="pve1", online=1),
            ]
            for u in upids:
                api.wait_task(u)
            api.advance(120)
            tasks = api.get("/nodes/pve2/tasks", source="all", limit=1000)
            return [api.task_log(u) for u in upids] + [[t["upid"] for t in tasks]]

    assert run() == run()
