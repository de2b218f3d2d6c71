"""Root-only migration options with an API token, end to end (issue 10 D2).

PVE accepts ``migration_type`` and ``migration_network`` only from ``root@pam`` itself
(qemu-server ``src/PVE/API2/Qemu.pm`` ``migrate_vm`` l.5577-5585); a token, even
``root@pam!x``, is never root@pam (pve-manager ``PVE/HTTPServer.pm`` ``auth_handler`` l.86).
The lab's admin connection is the token ``root@pam!pvetool``: a drain, a rolling maintenance
whose rules set ``migration.type`` and a single ``pvetool migrate`` must all work, and the plan
must say why the options are not sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lab import Cluster, checked, make_cluster
from tests.emu import Api


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Cluster]:
    with checked(make_cluster(tmp_path)) as cluster:
        yield cluster


def _migration_logs(lab: Cluster) -> list[list[str]]:
    api = Api(lab.emu)
    return [
        api.task_log(t["upid"])
        for t in lab.emu.state()["tasks"]
        if t["type"] in ("qmigrate", "vzmigrate")
    ]


@pytest.mark.emulator_only
def test_rolling_maintenance_with_migration_type_runs_with_a_token(
    lab: Cluster, tmp_path: Path
) -> None:
    assert lab.env["PVETOOL_TOKEN"].startswith("root@pam!")
    plan = tmp_path / "rolling.yaml"
    plan.write_text(
        """version: 1
name: rolling-insecure
rules:
  exclude: {tags: [gpu], vmids: [121, 115]}
  migration: {type: insecure, network: 10.10.10.0/24, with_local_disks: true}
steps:
  - rolling:
      nodes: [pve1, pve2]
      wait_online_timeout: 60s
""",
        encoding="utf-8",
    )
    shown = lab.pvetool("plan", "show", str(plan), "-o", "json")
    assert shown.code == 0, shown.out + shown.err
    body = json.loads(shown.out)
    plan_json = body.get("plan", body)
    (finding,) = [f for f in plan_json["findings"] if f["id"] == "PVT-ROOT-ONLY"]
    text = finding["message"]
    assert finding["severity"] == "warning"
    assert text.startswith("migration type=insecure, network=10.10.10.0/24 is not sent")
    assert "this session is token root@pam!pvetool" in text
    assert "'migration: type=insecure,network=10.10.10.0/24' in datacenter.cfg" in text
    assert "as root@pam with a password" in text

    r = lab.pvetool("plan", "apply", str(plan), "--yes")
    assert r.code == 0, r.out + r.err
    logs = _migration_logs(lab)
    assert logs
    for log in logs:
        assert log[-1] == "TASK OK", log
        # The datacenter's type (secure: an SSH tunnel) was used, never the refused option.
        assert not any("tcp:" in line for line in log), log


@pytest.mark.emulator_only
def test_drain_and_migrate_with_a_token_never_send_root_only_options(lab: Cluster) -> None:
    r = lab.pvetool("drain", "pve2", "--yes")
    assert r.code in (0, 1) and ", 0 failed," in r.out, r.out + r.err  # gpu1 is blocked
    assert "Only root may use this option" not in r.out + r.err
    # pve2 stays drained until undrain (PVT-DRAINED): the single migrate goes to pve3.
    r = lab.pvetool("migrate", "110", "--to", "pve3")
    assert r.code == 0, r.out + r.err
    assert lab.node_of(110) == "pve3"
