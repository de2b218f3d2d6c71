"""proxmoxer 2.3 used directly, as an admin's script would: list, check, migrate, follow.

`ProxmoxAPI(host, port=, user=, token_name=, token_value=, verify_ssl=<CA file>)`: proxmoxer hands
`verify_ssl` to requests as `verify`, so a CA bundle path keeps verification on
(`proxmoxer/backends/https.py`). `proxmoxer.tools.Tasks.blocking_status` polls
`GET /nodes/{node}/tasks/{upid}/status` until the task stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks

from tests.peers.conftest import PeerRun, assert_accounted


@pytest.fixture()
def px(lab: PeerRun) -> Iterator[Any]:
    user, name, secret = lab.token()
    yield ProxmoxAPI(
        "127.0.0.1",
        port=lab.emu.port,
        user=user,
        token_name=name,
        token_value=secret,
        verify_ssl=str(lab.emu.tls.ca_file),
        timeout=30,
    )


def test_proxmoxer_lists_migrates_and_follows(lab: PeerRun, px: Any) -> None:
    rows = px.cluster.resources.get(type="vm")
    where = {r["vmid"]: r["node"] for r in rows}
    assert len(where) == len(rows) == 20 and where[117] == "pve2"
    assert {r["node"] for r in px.nodes.get()} == {"pve1", "pve2", "pve3"}
    before = lab.placement()

    # The precondition lists every other node, `{}` for an allowed one (qemu-server
    # API2/Qemu.pm `migrate_vm_precondition`); `target` does not narrow it.
    pre = px.nodes("pve2").qemu(117).migrate.get(target="pve3")
    assert sorted(pre["allowed_nodes"]) == ["pve1", "pve3"]
    assert pre["not_allowed_nodes"] == {"pve1": {}, "pve3": {}}
    assert pre["local_disks"] == [] and pre["running"] == 1

    upid = px.nodes("pve2").qemu(117).migrate.post(target="pve3", online=1)
    assert Tasks.decode_upid(upid)["type"] == "qmigrate"
    status = Tasks.blocking_status(px, upid, timeout=120, polling_interval=0.2)
    assert status is not None, "the migration task did not end within 120 s"
    assert status["status"] == "stopped" and status["exitstatus"] == "OK"

    # The whole log (limit=0 reads to the end: pve-common Tools.pm dump_logfile_by_filehandle).
    log = px.nodes("pve2").tasks(upid).log.get(limit=0)
    assert [row["n"] for row in log] == list(range(1, len(log) + 1))
    assert log[-1]["t"] == "TASK OK"
    assert any("migration finished successfully" in row["t"] for row in log)

    lab.wait_quiescent()
    after = lab.placement()
    assert_accounted(before, after)
    assert after[117]["node"] == "pve3"
    assert {v: r["node"] for v, r in after.items() if v != 117} == {
        v: r["node"] for v, r in before.items() if v != 117
    }


def test_proxmoxer_sees_pves_refusal(lab: PeerRun, px: Any) -> None:
    """A running VM without `online` is refused before any task (API2/Qemu.pm `migrate_vm`:
    "can't migrate running VM without --online"); proxmoxer raises with PVE's message."""
    from proxmoxer.core import ResourceException

    with pytest.raises(ResourceException) as err:
        px.nodes("pve2").qemu(117).migrate.post(target="pve3")
    assert "can't migrate running VM without --online" in str(err.value)
    assert lab.placement()[117]["node"] == "pve2"
    assert not [t for t in lab.tasks() if t["vmid"] == 117]
