"""Answers nothing may be decided on (issue 12): the funnel turns each into an `InvalidAnswer`
naming the endpoint and what was wrong, never into an empty list or an internal error.

Mocked with `responses`; the same answers from a real server over HTTPS are in tests/hostile/.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
import responses

from pvetool.api import PveClient, fetch_snapshot
from pvetool.api.wire import MAX_ANSWER_BYTES, Deadline
from pvetool.errors import ApiUnreachable, InvalidAnswer
from pvetool.model import MigrationRequest

from .helpers import BASE1, PASSWORD, RecordingSleep, password_settings, token_settings

NOW = 1_700_000_000
RESOURCES = f"{BASE1}/cluster/resources"


def client(sleep: RecordingSleep, **kwargs: Any) -> PveClient:
    settings = kwargs.pop("settings", None) or token_settings(("pve1",), **kwargs)
    return PveClient(settings, sleep=sleep, wall_clock=lambda: float(NOW))


def invalid(api: responses.RequestsMock, sleep: RecordingSleep, **answer: Any) -> InvalidAnswer:
    api.add(responses.GET, RESOURCES, **answer)
    with pytest.raises(InvalidAnswer) as info, client(sleep) as pve:
        pve.cluster_resources()
    return info.value


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({"body": '{"data": [1, 2,'}, "not valid JSON (line 1 column"),
        ({"body": "<!DOCTYPE html><html>Welcome</html>"}, "an HTML page, not JSON"),
        ({"body": ""}, "the answer is empty"),
        ({"json": {"errors": None}}, "the answer has no 'data'"),
        ({"json": [1, 2]}, "a JSON list, not PVE's object with 'data'"),
        ({"json": {"data": None}}, "$: null where a list is documented"),
        ({"json": {"data": {"0": {}}}}, "$: an object where a list is documented"),
        ({"body": '{"data": [{"id": "qemu/101", "type": "qemu", "cpu": NaN}]}'}, "NaN"),
        ({"body": '{"data": [{"id": "qemu/101", "type": "qemu", "cpu": 1e400}]}'}, "range"),
        ({"body": '{"data": [{"id": "x", "type": "qemu", "mem": ' + "9" * 30 + "}]}"}, "range"),
        ({"body": b'{"data": ["\xff\xfe"]}'}, "not UTF-8 text"),
        ({"body": "[" * 50_000 + "]" * 50_000}, "nested too deeply"),
    ],
)
def test_unusable_answers_are_named_errors(
    api: responses.RequestsMock, sleep: RecordingSleep, answer: dict[str, Any], words: str
) -> None:
    exc = invalid(api, sleep, **answer)
    assert words in exc.problem, exc.problem
    assert "GET /cluster/resources" in str(exc) and exc.exit_code == 2
    assert exc.retryable  # a read may be retried; after a POST: look before re-sending
    assert len(api.calls) == 4  # retried like any transient failure, then refused


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ([{"id": "qemu/101", "type": "qemu", "node": "pve1"}], "None is not a vmid"),
        ([{"id": "qemu/101", "type": "qemu", "vmid": 101}], "has no valid node"),
        ([{"id": "qemu/101", "type": "lxc", "vmid": 101, "node": "pve1"}], "has the type 'lxc'"),
        (
            [
                {"id": "qemu/101", "type": "qemu", "vmid": 101, "node": "pve1"},
                {"id": "qemu/101", "type": "qemu", "vmid": 101, "node": "pve2"},
            ],
            "guest 101 is listed twice",
        ),
    ],
)
def test_a_guest_list_that_contradicts_itself_is_refused(
    api: responses.RequestsMock, sleep: RecordingSleep, entries: list[Any], words: str
) -> None:
    exc = invalid(api, sleep, json={"data": entries})
    assert words in exc.problem, exc.problem


def test_guests_on_a_node_the_cluster_does_not_have(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    """Finding 1: all guests "on" an unknown node made a drain of pve1 see nothing to move."""
    api.add(
        responses.GET,
        f"{BASE1}/cluster/status",
        json={
            "data": [
                {"type": "cluster", "id": "cluster", "name": "c", "quorate": 1},
                {"type": "node", "id": "node/pve1", "name": "pve1", "online": 1},
            ]
        },
    )
    api.add(
        responses.GET,
        RESOURCES,
        json={
            "data": [
                {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online"},
                {
                    "id": "qemu/101",
                    "type": "qemu",
                    "vmid": 101,
                    "node": "ghost",
                    "status": "running",
                },
            ]
        },
    )
    with pytest.raises(InvalidAnswer) as info, client(sleep) as pve:
        fetch_snapshot(pve)
    assert "1 guest(s) on 'ghost', which is not a node of the cluster" in info.value.problem
    assert info.value.path == "/cluster/resources" and info.value.exit_code == 2


def test_a_redirect_is_not_followed_and_names_only_the_host(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    """Finding 2: the redirect target gets nothing, the error names its host and port only."""
    target = "http://evil.example:8080/steal?token=abc"
    api.add(responses.GET, RESOURCES, status=302, headers={"Location": target})
    api.add(responses.GET, target, json={"data": []})
    with pytest.raises(InvalidAnswer) as info, client(sleep) as pve:
        pve.cluster_resources()
    exc = info.value
    assert exc.status == 302 and not exc.retryable
    assert "redirect (HTTP 302) to http://evil.example:8080; it was not followed" in exc.problem
    assert "steal" not in str(exc) and "token=abc" not in str(exc)
    assert [c.request.url for c in api.calls] == [RESOURCES]  # once, never to the target


def test_no_ticket_or_password_follows_a_redirect(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.add(
        responses.POST,
        f"{BASE1}/access/ticket",
        status=307,
        headers={"Location": "http://evil.example/api2/json/access/ticket"},
    )
    api.add(responses.POST, "http://evil.example/api2/json/access/ticket", json={"data": {}})
    with pytest.raises(InvalidAnswer), client(sleep, settings=password_settings()) as pve:
        pve.cluster_resources()
    assert [c.request.url for c in api.calls] == [f"{BASE1}/access/ticket"]
    assert all(PASSWORD not in str(c.request.body or "") for c in api.calls[1:])


def test_cookies_from_the_server_are_refused(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.add(
        responses.GET,
        f"{BASE1}/version",
        json={"data": {"version": "9.2.0"}},
        headers={"Set-Cookie": "PVEAuthCookie=planted; Path=/"},
    )
    api.add(responses.GET, f"{BASE1}/version", json={"data": {"version": "9.2.0"}})
    with client(sleep) as pve:
        pve.version()
        pve.version()
    assert "Cookie" not in api.calls[1].request.headers


def test_an_answer_larger_than_the_limit(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    body = b'{"data": [' + b'"x",' * (MAX_ANSWER_BYTES // 4) + b'"x"]}'
    exc = invalid(api, sleep, body=body)
    assert "more than the 32 MiB pvetool reads" in exc.problem


def test_a_garbled_migrate_answer_is_ambiguous_not_a_refusal(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    """A 200 with an unusable body after a POST: the migration may have started, so the client
    looks for its task (and finds it) instead of reporting a refusal."""
    upid = f"UPID:pve1:00001234:00005678:{NOW + 5:08X}:qmigrate:101:root@pam!pvetool:"
    api.add(responses.GET, f"{BASE1}/nodes/pve1/version", json={"data": {"version": "9.2.0"}})
    api.add(responses.POST, f"{BASE1}/nodes/pve1/qemu/101/migrate", body="<html>oops</html>")
    api.add(
        responses.GET,
        f"{BASE1}/nodes/pve1/tasks",
        json={
            "data": [
                {
                    "upid": upid,
                    "node": "pve1",
                    "pid": 0x1234,
                    "pstart": 0x5678,
                    "starttime": NOW + 5,
                    "type": "qmigrate",
                    "id": "101",
                    "user": "root@pam!pvetool",
                    "status": "running",
                }
            ]
        },
    )
    with client(sleep) as pve:
        got = pve.start_migration(MigrationRequest("qemu", "pve1", 101, "pve3"))
    assert str(got) == upid
    assert len([c for c in api.calls if c.request.method == "POST"]) == 1


def test_the_deadline_cuts_a_read_that_never_ends() -> None:
    """The watchdog shuts the socket of a connection whose request ran out of time: a read
    blocked on it returns at once, however long the per-read timeout."""
    ours, theirs = socket.socketpair()
    ours.settimeout(30)

    class Connection:
        sock = ours

    deadline = Deadline(0.2)
    deadline.attach(Connection())
    started = time.monotonic()
    deadline.start()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(ours.recv(10)))
    reader.start()
    reader.join(5)
    assert not reader.is_alive() and got == [b""] and deadline.expired
    assert time.monotonic() - started < 2
    theirs.close()
    ours.close()


def test_a_finished_request_is_never_cut() -> None:
    ours, theirs = socket.socketpair()

    class Connection:
        sock = ours

    deadline = Deadline(0.05)
    deadline.attach(Connection())
    deadline.start()
    deadline.finish()  # the request ended: its connection may now serve another one
    time.sleep(0.2)
    theirs.sendall(b"ok")
    assert ours.recv(2) == b"ok" and not deadline.expired
    theirs.close()
    ours.close()


def test_overdue_answers_are_not_retried(sleep: RecordingSleep) -> None:
    """A request that used its whole deadline is not tried again (each try would take as
    long); it still counts as transient for a caller that must check a POST."""
    from pvetool.api.transport import _Overdue, _worth_retrying, is_transient

    exc = _Overdue(host="pve1", reason="no complete answer within 30 s")
    assert is_transient(exc) and not _worth_retrying(exc)
    assert isinstance(exc, ApiUnreachable)
