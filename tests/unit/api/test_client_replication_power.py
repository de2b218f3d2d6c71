"""`PveClient.replication_jobs`, `shutdown_guest` and `start_guest`: on recorded-shape answers
(`responses`) and against the emulator (fetch_snapshot fills `ClusterSnapshot.replication`; a
shutdown/start is a task that follow_task follows to its end)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from pvetool.api import PveClient, convert, fetch_snapshot, follow_task
from pvetool.emulator.clusterfile import load_cluster_text
from pvetool.emulator.server import Emulator
from pvetool.errors import ApiError, ValidationError
from pvetool.model import MigrationRequest, ReplicationJob, Upid
from pvetool.settings import WaitPolicy, load_settings
from tests.emu import START_EPOCH

from .helpers import BASE1, PveResponse, RecordingSleep, token_settings

NOW = 1_700_000_000
SHUTDOWN = f"{BASE1}/nodes/pve1/qemu/101/status/shutdown"
QMSHUTDOWN = Upid("pve1", 0x1234, 0x5678, NOW + 1, "qmshutdown", "101", "root@pam", "pvetool")

# Shaped like pve-manager's ReplicationConfig index (the replication.cfg sections plus `id`):
# a plain job, a disabled one with a rate limit and comment, and one marked for removal.
REPLICATION_ANSWER = {
    "data": [
        {
            "id": "102-1",
            "type": "local",
            "guest": 102,
            "jobnum": 1,
            "target": "pve1",
            "source": "pve2",
            "schedule": "*/15",
        },
        {
            "id": "102-0",
            "type": "local",
            "guest": 102,
            "jobnum": 0,
            "target": "pve3",
            "source": "pve2",
            "schedule": "*/30",
            "rate": 100,
        },
        {
            "id": "100-0",
            "type": "local",
            "guest": 100,
            "jobnum": 0,
            "target": "pve2",
            "disable": 1,
            "comment": "off while pve2 gets new disks",
        },
        {
            "id": "101-0",
            "type": "local",
            "guest": 101,
            "jobnum": 0,
            "target": "pve3",
            "source": "pve1",
            "remove_job": "full",
        },
    ]
}


def make_client(sleep: RecordingSleep) -> PveClient:
    return PveClient(token_settings(), sleep=sleep, wall_clock=lambda: float(NOW))


def form(call: Any) -> dict[str, list[str]]:
    body = call.request.body
    return parse_qs(body if isinstance(body, str) else (body or b"").decode())


def test_replication_jobs(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    api.get(f"{BASE1}/cluster/replication", json=REPLICATION_ANSWER)
    jobs = make_client(sleep).replication_jobs()
    assert jobs == (
        ReplicationJob("100-0", 100, "pve2", None, disabled=True),
        ReplicationJob("101-0", 101, "pve3", "pve1", disabled=True),  # marked for removal
        ReplicationJob("102-0", 102, "pve3", "pve2"),
        ReplicationJob("102-1", 102, "pve1", "pve2"),
    )
    assert convert.replication_targets(jobs) == {102: ("pve3", "pve1")}


def test_replication_jobs_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValidationError):
        convert.replication_jobs({"id": "100-0"})


def test_shutdown_and_start_parameters(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    api.post(SHUTDOWN, json={"data": str(QMSHUTDOWN)})
    qmstart = Upid("pve2", 1, 2, NOW + 9, "qmstart", "101", "root@pam", "pvetool")
    api.post(f"{BASE1}/nodes/pve2/qemu/101/status/start", json={"data": str(qmstart)})
    vzstart = Upid("pve2", 1, 2, NOW + 9, "vzstart", "200", "root@pam", "pvetool")
    api.post(f"{BASE1}/nodes/pve2/lxc/200/status/start", json={"data": str(vzstart)})
    client = make_client(sleep)
    assert client.shutdown_guest("qemu", "pve1", 101, timeout_s=120, force_stop=True) == QMSHUTDOWN
    assert form(api.calls[0]) == {"timeout": ["120"], "forceStop": ["1"]}
    assert client.start_guest("qemu", "pve2", 101) == qmstart
    assert form(api.calls[1]) == {}
    assert client.start_guest("lxc", "pve2", 200) == vzstart
    for bad in ({"timeout_s": -1}, {"timeout_s": True}):
        with pytest.raises(ValidationError):
            client.shutdown_guest("qemu", "pve1", 101, **bad)
    with pytest.raises(ValidationError):
        client.start_guest("vm", "pve1", 101)  # type: ignore[arg-type]
    assert len(api.calls) == 3


def test_a_refused_start_is_not_retried(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    url = f"{BASE1}/nodes/pve2/lxc/200/status/start"
    api.add(PveResponse("POST", url, status=500, reason="CT 200 already running", body=""))
    with pytest.raises(ApiError, match="CT 200 already running"):
        make_client(sleep).start_guest("lxc", "pve2", 200)
    assert len(api.calls) == 1 and sleep.calls == []


def test_ambiguous_shutdown_finds_its_task_and_is_not_resent(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.post(SHUTDOWN, body=requests.exceptions.ConnectionError("Connection reset by peer"))
    api.get(
        f"{BASE1}/nodes/pve1/tasks",
        json={
            "data": [
                {"upid": str(QMSHUTDOWN), "type": "qmshutdown", "id": "101", "node": "pve1"},
                {
                    "upid": str(Upid("pve1", 1, 2, NOW - 900, "qmshutdown", "101", "root@pam")),
                    "endtime": NOW - 880,
                    "status": "OK",
                },
            ]
        },
    )
    assert make_client(sleep).shutdown_guest("qemu", "pve1", 101) == QMSHUTDOWN
    posts = [c for c in api.calls if c.request.method == "POST"]
    assert len(posts) == 1 and sleep.calls[0] == 2


def test_ambiguous_start_with_nothing_started_is_sent_once_more(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    url = f"{BASE1}/nodes/pve1/qemu/101/status/start"
    qmstart = Upid("pve1", 1, 2, NOW + 3, "qmstart", "101", "root@pam", "pvetool")
    api.add(PveResponse("POST", url, status=503, reason="Service Unavailable", body=""))
    api.add(PveResponse("POST", url, json={"data": str(qmstart)}))
    api.get(f"{BASE1}/nodes/pve1/tasks", json={"data": []})
    assert make_client(sleep).start_guest("qemu", "pve1", 101) == qmstart
    assert len([c for c in api.calls if c.request.method == "POST"]) == 2
    task_query = [c for c in api.calls if re.search(r"/tasks\?", str(c.request.url))][0]
    assert "vmid=101" in str(task_query.request.url)


# -- against the emulator ---------------------------------------------------------------------

CLUSTER = """
name: repl
seed: 3
nodes:
  pve1: {cpus: 16, memory: 64GiB}
  pve2: {cpus: 16, memory: 64GiB}
  pve3: {cpus: 16, memory: 64GiB}
storages:
  local-zfs: {type: zfspool, shared: false, size: 1TiB}
  ceph: {type: rbd, shared: true, size: 4TiB}
guests:
  100: {type: qemu, node: pve1, memory: 2GiB, dirty: idle, disks: {scsi0: "local-zfs:8G"},
        net0: "virtio,bridge=vmbr0", replicate: [pve2, pve3]}
  101: {type: qemu, node: pve1, memory: 2GiB, dirty: idle, disks: {scsi0: "ceph:8G"},
        net0: "virtio,bridge=vmbr0"}
"""


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    e = Emulator(
        load_cluster_text(CLUSTER, "repl.yaml"), speed=200.0, start_epoch_s=START_EPOCH
    ).start()
    yield e
    e.stop()


def test_snapshot_and_power_against_the_emulator(emu: Emulator) -> None:
    wait = WaitPolicy(poll_interval_s=0.02, max_poll_interval_s=0.05)
    with PveClient(load_settings(env=emu.env(), config_path=None)) as client:
        snap = fetch_snapshot(client)
        assert snap.replication == {100: ("pve2", "pve3")}
        assert [j.id for j in client.replication_jobs()] == ["100-0", "100-1"]

        upid = client.shutdown_guest("qemu", "pve1", 101, timeout_s=60)
        assert upid.type == "qmshutdown" and upid.vmid == 101
        assert follow_task(client, upid, 30.0, wait=wait).ok
        assert client.guest_status("qemu", "pve1", 101).status == "stopped"
        upid = client.start_guest("qemu", "pve1", 101)
        assert upid.type == "qmstart"
        assert follow_task(client, upid, 30.0, wait=wait).ok
        assert client.guest_status("qemu", "pve1", 101).status == "running"

        # After a migration to a replication target, the job replicates back.
        upid = client.start_migration(
            MigrationRequest("qemu", "pve1", 100, "pve2", with_local_disks=True)
        )
        assert follow_task(client, upid, 60.0, wait=wait).ok
        jobs = client.replication_jobs()
        assert [(j.target, j.source) for j in jobs] == [("pve1", "pve2"), ("pve3", "pve2")]
        assert fetch_snapshot(client).replication == {100: ("pve1", "pve3")}
