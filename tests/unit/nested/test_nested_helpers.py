"""The pure helpers behind the waits and the cluster steps, on recorded-shape PVE answers."""

from __future__ import annotations

import io
from pathlib import Path
from types import ModuleType

import pytest

STATUS_3 = [
    {"type": "cluster", "name": "pvelab", "nodes": 3, "quorate": 1, "version": 3, "id": "cluster"},
    {"type": "node", "name": "pve1", "online": 1, "local": 1, "nodeid": 1, "ip": "10.251.0.11"},
    {"type": "node", "name": "pve2", "online": 1, "local": 0, "nodeid": 2, "ip": "10.251.0.12"},
    {"type": "node", "name": "pve3", "online": 1, "local": 0, "nodeid": 3, "ip": "10.251.0.13"},
]


def test_cluster_quorate(pvelab: ModuleType) -> None:
    assert pvelab._cluster_quorate(STATUS_3, 3)
    assert not pvelab._cluster_quorate(STATUS_3, 2)
    offline = [dict(e, online=0) if e.get("name") == "pve3" else e for e in STATUS_3]
    assert not pvelab._cluster_quorate(offline, 3)
    no_quorum = [dict(e, quorate=0) if e["type"] == "cluster" else e for e in STATUS_3]
    assert not pvelab._cluster_quorate(no_quorum, 3)
    # A node without a cluster lists only itself.
    assert not pvelab._cluster_quorate([{"type": "node", "name": "pve1", "online": 1}], 1)
    assert not pvelab._cluster_quorate(None, 1)


def test_join_fingerprint(pvelab: ModuleType) -> None:
    fp = ":".join(["AB"] * 32)
    info = {
        "nodelist": [{"name": "pve1", "pve_fp": fp, "pve_addr": "10.251.0.11"}],
        "config_digest": "x",
        "preferred_node": "pve1",
        "totem": {},
    }
    assert pvelab._join_fingerprint(info, "pve1") == fp
    with pytest.raises(pvelab.LabError):
        pvelab._join_fingerprint(info, "pve2")
    with pytest.raises(pvelab.LabError):
        pvelab._join_fingerprint(None, "pve1")


def test_pick_template(pvelab: ModuleType) -> None:
    apps = [
        {"section": "system", "template": "alpine-3.21-default_20241217_amd64.tar.xz"},
        {"section": "system", "template": "alpine-3.22-default_20250617_amd64.tar.xz"},
        {"section": "system", "template": "debian-13-standard_13.1-2_amd64.tar.zst"},
        {"section": "turnkeylinux", "template": "alpine-turnkey.tar.gz"},
    ]
    assert pvelab._pick_template(apps) == "alpine-3.22-default_20250617_amd64.tar.xz"
    assert pvelab._pick_template([]) is None
    assert pvelab._pick_template(None) is None


def test_storage_active(pvelab: ModuleType) -> None:
    assert pvelab._storage_active({"active": 1, "enabled": 1, "type": "nfs"})
    assert not pvelab._storage_active({"active": 0})
    assert not pvelab._storage_active(None)


def test_teardown_order_stops_processes_first(pvelab: ModuleType) -> None:
    recorded = [
        {"kind": "path", "path": "/w"},
        {"kind": "link", "name": "br"},
        {"kind": "process", "name": "a"},
        {"kind": "link", "name": "tap"},
        {"kind": "process", "name": "b"},
    ]
    order = [r.get("name", r.get("path")) for r in pvelab._teardown_order(recorded)]
    assert order == ["b", "a", "tap", "br", "/w"]


def test_wait_gives_up_after_its_timeout(pvelab: ModuleType) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    runner = pvelab.Runner(dry_run=False, out=io.StringIO(), sleep=sleep, clock=lambda: now[0])
    calls = []

    def never() -> bool:
        calls.append(now[0])
        return False

    with pytest.raises(pvelab.LabError, match="gave up after 30 s"):
        runner.wait("it happens", never, timeout_s=30, interval_s=10)
    assert calls == [0.0, 10.0, 20.0, 30.0]
    ready_at_2 = iter([False, True])
    runner.wait("it happens", lambda: next(ready_at_2), timeout_s=30, interval_s=10)


def test_runner_redacts_secrets_and_reports_failures(pvelab: ModuleType) -> None:
    out = io.StringIO()
    runner = pvelab.Runner(dry_run=False, out=out)
    runner.hide("s3cret")
    with pytest.raises(pvelab.LabError) as caught:
        runner.run(["sh", "-c", "echo oops s3cret >&2; exit 3", "x", "s3cret"])
    assert "exit code 3" in str(caught.value) and "s3cret" not in str(caught.value)
    assert "s3cret" not in out.getvalue() and "***" in out.getvalue()
    with pytest.raises(pvelab.LabError, match="is not installed"):
        runner.run(["pvelab-no-such-tool-xyz"])
    assert runner.run(["sh", "-c", "exit 4"], check=False).returncode == 4
    assert runner.capture_json(["echo", '{"a": 1}'], dry_value=None) == {"a": 1}


def test_state_round_trip_and_removal(pvelab: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "w" / "state.json"
    state = pvelab.State(path, persist=True)
    state.record("link", name="pvelab0")
    state.record("link", name="pvelab0")  # recorded once
    assert pvelab.State(path, persist=True).resources == [{"kind": "link", "name": "pvelab0"}]
    state.forget({"kind": "link", "name": "pvelab0"})
    assert not path.exists()


def test_daemonizing_commands_do_not_hold_the_runner(pvelab: ModuleType, tmp_path: Path) -> None:
    import time

    log = tmp_path / "up.log"
    runner = pvelab.Runner(dry_run=False, out=io.StringIO(), log_path=log)
    started = time.monotonic()
    # Like qemu -daemonize: the command returns while its child lives on with inherited fds.
    runner.run(["sh", "-c", "sleep 5 & echo daemonized"], daemon=True)
    assert time.monotonic() - started < 3
    assert "daemonized" in log.read_text()
