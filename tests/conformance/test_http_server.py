"""pveproxy's connection handling (issues 12 and 14) and the emulator's control API limits.

pve-http-server `src/PVE/APIServer/AnyEvent.pm` serves HTTP/1.1 keep-alive connections (up to
`keep_alive => 100` requests, pve-manager `PVE/Service/pveproxy.pm` l.100; closed after an
error answer, l.322; `Connection: Keep-Alive|close`, l.366-370) and does TLS inside its event
loop, so one client that never speaks holds up nobody. (The control API's own limits are
tested in tests/unit/emulator/test_control.py.)"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time

import pytest

from pvetool.emulator.server import Emulator
from tests.emu import Api

TOKEN = "PVEAPIToken=root@pam!pvetool=probe-root-secret"


def _connection(emu: Emulator) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(emu.tls.ca_file))
    return http.client.HTTPSConnection("127.0.0.1", emu.port, context=ctx, timeout=10)


@pytest.mark.source("pve-http-server", "src/PVE/APIServer/AnyEvent.pm", "response", "l.322-370")
def test_two_requests_share_one_tls_connection(probe: Emulator) -> None:
    conn = _connection(probe)
    conn.request("GET", "/api2/json/version", headers={"Authorization": TOKEN})
    first = conn.getresponse()
    assert first.status == 200 and first.getheader("Connection") == "Keep-Alive"
    first.read()
    sock = conn.sock
    conn.request("GET", "/api2/json/nodes", headers={"Authorization": TOKEN})
    second = conn.getresponse()
    assert second.status == 200 and json.loads(second.read())["data"]
    assert conn.sock is sock  # the same TLS connection served both
    # An error answer closes the connection (keep_alive = 0 if $code >= 400).
    conn.request("GET", "/api2/json/nodes/pve1/nothing", headers={"Authorization": TOKEN})
    third = conn.getresponse()
    assert third.status == 501 and third.getheader("Connection") == "close"
    conn.close()


@pytest.mark.source(
    "pve-http-server", "src/PVE/APIServer/AnyEvent.pm", "accept_connections", "l.1940-1990"
)
def test_an_idle_connection_without_a_client_hello_stalls_nobody(probe: Emulator) -> None:
    idle = socket.create_connection(("127.0.0.1", probe.port))
    try:
        t0 = time.monotonic()
        api = Api(probe, ("root@pam!pvetool", "probe-root-secret"))
        assert api.call("GET", "/version").status == 200
        assert time.monotonic() - t0 < 2.0
    finally:
        idle.close()
