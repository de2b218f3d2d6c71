"""The emulator's listener sockets: answers leave without Nagle's delay, keep-alive holds."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator

import pytest

from pvetool.emulator import httpd
from pvetool.emulator.server import Emulator
from tests.emu import start


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    with start() as emulator:
        yield emulator


def test_answers_leave_without_nagle_delay(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers and body are separate writes: with Nagle's algorithm every keep-alive answer
    after the first would wait for the client's delayed ACK. The server side of each
    connection has TCP_NODELAY set, and keep-alive still serves several requests on it."""
    seen: list[int] = []
    setup = httpd._Handler.setup

    def recording_setup(self: httpd._Handler) -> None:
        setup(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(httpd._Handler, "setup", recording_setup)
    token_id, secret = emu.admin_token()
    ctx = ssl.create_default_context(cafile=str(emu.tls.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", emu.port, context=ctx, timeout=10)
    for _ in range(3):
        conn.request(
            "GET",
            "/api2/json/version",
            headers={"Authorization": f"PVEAPIToken={token_id}={secret}"},
        )
        reply = conn.getresponse()
        assert reply.status == 200 and reply.getheader("Connection") == "Keep-Alive"
        reply.read()
    conn.close()
    assert len(seen) == 1 and seen[0] != 0  # one connection, Nagle off
