"""TLS against a real HTTPS server on 127.0.0.1 with a self-signed certificate: a pinned
fingerprint admits the right certificate and refuses any other before a request (or a
credential) is sent; CA verification is on by default and accepts a CA file."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pvetool.api import PveClient
from pvetool.errors import ApiUnreachable
from pvetool.settings import HostPort, RetryPolicy

from .helpers import PASSWORD, TOKEN_SECRET, RecordingSleep, password_settings, token_settings


@dataclass
class Server:
    port: int
    fingerprint: str
    cert_file: Path
    requests: list[tuple[str, str, str]] = field(default_factory=list)


def _certificate(tmp: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pve-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return cert_file, key_file, ":".join(digest[i : i + 2] for i in range(0, 64, 2))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    cert_file, key_file, fingerprint = _certificate(tmp_path)
    seen: list[tuple[str, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, data: object) -> None:
            body = json.dumps({"data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(("GET", self.path, self.headers.get("Authorization", "")))
            self._answer({"version": "9.0.3", "release": "9.0", "repoid": "a1b2c3d4"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            seen.append(("POST", self.path, self.rfile.read(length).decode()))
            self._answer(
                {
                    "ticket": "PVE:admin@pve:6900AAAA::c2lnbmF0dXJl",
                    "CSRFPreventionToken": "6900AAAA:Y3NyZg",
                    "username": "admin@pve",
                }
            )

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(httpd.server_address[1], fingerprint, cert_file, seen)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _client(server: Server, *, password: bool = False, **kwargs: object) -> PveClient:
    base = password_settings() if password else token_settings()
    values = {
        "hosts": (HostPort("127.0.0.1", server.port),),
        "auth": base.auth,
        "request_timeout_s": 5.0,
        "retry": RetryPolicy(attempts=2, initial_wait_s=0, max_wait_s=0, jitter_s=0),
        **kwargs,
    }
    return PveClient(type(base)(**values), sleep=RecordingSleep())  # type: ignore[arg-type]


def test_pinned_fingerprint_accepts_the_right_certificate(server: Server) -> None:
    client = _client(server, verify=False, fingerprints=(server.fingerprint,))
    assert client.version().release == "9.0"
    assert server.requests[0][:2] == ("GET", "/api2/json/version")


def test_pinned_fingerprint_refuses_another_certificate_before_sending(server: Server) -> None:
    wrong = ":".join(["AB"] * 32)
    client = _client(server, verify=False, fingerprints=(wrong,))
    with pytest.raises(ApiUnreachable) as info:
        client.version()
    assert not info.value.retryable
    assert "does not match the pinned SHA-256 fingerprint" in str(info.value)
    assert TOKEN_SECRET not in str(info.value)
    assert server.requests == []  # the token never left this machine


def test_password_login_goes_through_the_pin(server: Server) -> None:
    wrong = ":".join(["CD"] * 32)
    with pytest.raises(ApiUnreachable):
        _client(server, password=True, verify=False, fingerprints=(wrong,)).version()
    assert server.requests == []  # no /access/ticket: the password was not sent

    client = _client(server, password=True, verify=False, fingerprints=(server.fingerprint,))
    assert client.version().release == "9.0"
    login, get = server.requests
    assert login[:2] == ("POST", "/api2/json/access/ticket") and PASSWORD in login[2]
    assert get[:2] == ("GET", "/api2/json/version")


def test_ca_verification_is_on_by_default(server: Server) -> None:
    with pytest.raises(ApiUnreachable) as info:
        _client(server).version()
    assert not info.value.retryable and "certificate" in str(info.value).lower()
    assert server.requests == []


def test_ca_file_is_accepted(server: Server) -> None:
    client = _client(server, verify=str(server.cert_file))
    assert client.version().release == "9.0"
