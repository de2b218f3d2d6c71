"""A TLS connection that ends early (the API host dies mid-request) is a transport failure:
retried, and failed over to the next host; a certificate that fails verification is not.

The chaos campaign's lab-rolling 79: the proxy in front of host 1 died while a keep-alive
connection was in use, the read ended in ``SSLEOFError`` (``UNEXPECTED_EOF_WHILE_READING``),
and pvetool treated it as a TLS configuration error: no retry, no failover, "lost track".
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import responses
import urllib3

from pvetool.api import PveClient
from pvetool.errors import ApiUnreachable

from .helpers import BASE1, BASE2, RecordingSleep, token_settings

VERSION = {"data": {"version": "9.0.3", "release": "9.0"}}


def client(sleep: RecordingSleep) -> PveClient:
    return PveClient(token_settings(), sleep=sleep, wall_clock=lambda: 1_700_000_000.0)


def eof_error(message: str) -> requests.exceptions.SSLError:
    """What requests raises when the peer closes the TLS stream mid-request."""
    inner = ssl.SSLEOFError(8, message)
    wrapped = urllib3.exceptions.SSLError(inner)
    return requests.exceptions.SSLError(
        urllib3.exceptions.MaxRetryError(None, "/api2/json/version", wrapped)  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "message",
    [
        "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol (_ssl.c:1006)",
        "EOF occurred in violation of protocol (_ssl.c:2427)",
    ],
)
def test_tls_eof_fails_over_to_the_next_host(
    api: responses.RequestsMock, sleep: RecordingSleep, message: str
) -> None:
    api.get(f"{BASE1}/version", body=eof_error(message))
    api.get(f"{BASE2}/version", json=VERSION)
    pve = client(sleep)
    assert pve.version().release == "9.0"
    assert str(pve.current_host) == "pve2:8006"
    assert [urlsplit(c.request.url).hostname for c in api.calls] == ["pve1", "pve2"]


def test_tls_eof_without_a_message_is_still_a_lost_connection(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.get(f"{BASE1}/version", body=requests.exceptions.SSLError(ssl.SSLEOFError()))
    api.get(f"{BASE2}/version", json=VERSION)
    assert client(sleep).version().release == "9.0"


def test_certificate_failure_stays_final(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    verify: Any = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate"
    )
    api.get(f"{BASE1}/version", body=requests.exceptions.SSLError(verify))
    pve = client(sleep)
    with pytest.raises(ApiUnreachable) as info:
        pve.version()
    assert not info.value.retryable and "certificate verify failed" in str(info.value)
    assert len(api.calls) == 1 and str(pve.current_host) == "pve1:8006"
