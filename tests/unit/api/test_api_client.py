"""PveClient against mocked HTTP answers (`responses`): retries, refusals, host failover, the
never-blindly-resent migrate POST, version-aware parameters, logins, and secrecy."""

from __future__ import annotations

import json
import logging
import re
import traceback
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from pvetool.api import PveClient
from pvetool.errors import (
    ApiError,
    ApiUnreachable,
    AuthError,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from pvetool.model import MigrationRequest, Upid
from pvetool.settings import PasswordAuth, Secret

from .helpers import (
    BASE1,
    BASE2,
    PASSWORD,
    TOKEN_SECRET,
    PveResponse,
    RecordingSleep,
    load_fixture,
    password_settings,
    token_settings,
)

NOW = 1_700_000_000
QMIGRATE = Upid("pve1", 0x1234, 0x5678, NOW + 5, "qmigrate", "101", "root@pam", "pvetool")


def make_client(sleep: RecordingSleep, **kwargs: Any) -> PveClient:
    settings = kwargs.pop("settings", None) or token_settings(**kwargs)
    return PveClient(settings, sleep=sleep, wall_clock=lambda: float(NOW))


def calls_to(api: responses.RequestsMock, method: str, pattern: str) -> list[Any]:
    return [
        c for c in api.calls if c.request.method == method and re.search(pattern, c.request.url)
    ]


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def form(call: Any) -> dict[str, list[str]]:
    body = call.request.body
    return parse_qs(body if isinstance(body, str) else (body or b"").decode())


# -- basics -----------------------------------------------------------------------------------


def test_token_header_and_debug_log(
    api: responses.RequestsMock, sleep: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    api.get(
        f"{BASE1}/version",
        json={"data": {"version": "9.0.3", "release": "9.0", "repoid": "a1b2c3d4"}},
    )
    caplog.set_level(logging.DEBUG, logger="pvetool")
    version = make_client(sleep).version()
    assert version.major_minor == (9, 0)
    headers = api.calls[0].request.headers
    assert headers["Authorization"] == f"PVEAPIToken=root@pam!pvetool={TOKEN_SECRET}"
    assert "CSRFPreventionToken" not in headers
    assert any(
        re.match(r"GET /version -> 200 in [\d.]+ s via pve1:8006", r.getMessage())
        for r in caplog.records
    )


def test_503_is_retried_then_succeeds(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    url = f"{BASE1}/cluster/status"
    api.add(PveResponse("GET", url, status=503, reason="Service Unavailable", body=""))
    api.add(
        PveResponse("GET", url, json={"data": load_fixture("cluster_status_capture.json")["data"]})
    )
    status = make_client(sleep).cluster_status()
    assert status.name == "clustername"
    assert len(api.calls) == 2
    assert len(sleep.calls) == 1 and 0.5 <= sleep.calls[0] <= 1.0  # initial wait + jitter


def test_595_is_retried_with_bounded_backoff(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    reason = "Errors during connection establishment, proxy handshake: No route to host"
    api.add(PveResponse("GET", f"{BASE1}/nodes/node4/status", status=595, reason=reason, body=""))
    with pytest.raises(ApiError) as info:
        make_client(sleep).node_cpu_model("node4")
    assert info.value.status == 595 and info.value.retryable
    assert "No route to host" in str(info.value)
    assert len(api.calls) == 4  # RetryPolicy.attempts
    assert len(sleep.calls) == 3 and all(0.5 <= s <= 8.0 for s in sleep.calls)
    assert sleep.calls[1] >= 1.0 and sleep.calls[2] >= 2.0  # exponential


def test_got_timeout_is_retried(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    url = f"{BASE1}/cluster/ha/status/current"
    api.add(PveResponse("GET", url, status=500, reason="got timeout", body=""))
    api.add(PveResponse("GET", url, json={"data": []}))
    assert make_client(sleep).ha_status().services == {}
    assert len(api.calls) == 2


def test_400_is_not_retried_and_keeps_pve_errors(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    # The recorded exchange: "HTTP/1.1 400 Parameter verification failed." + errors body.
    recorded = load_fixture("http_400_param_verification_token_auth.txt")
    reason = re.search(r"^HTTP/1.1 400 (.*)$", recorded, re.M).group(1)  # type: ignore[union-attr]
    body = recorded.strip().splitlines()[-1]
    api.add(
        PveResponse(
            "POST",
            f"{BASE1}/nodes/pve/lxc/102/status/stop",
            status=400,
            reason=reason,
            body=body,
            content_type="application/json",
        )
    )
    client = make_client(sleep)
    with pytest.raises(ApiError) as info:
        client._request("POST", "/nodes/pve/lxc/102/status/stop", **{"overrule-shutdown": True})
    exc = info.value
    assert type(exc) is ApiError and exc.status == 400
    assert exc.reason == "Parameter verification failed."
    assert exc.errors == {
        "overrule-shutdown": "property is not defined in schema and the schema does not allow "
        "additional properties"
    }
    assert "overrule-shutdown: property is not defined" in str(exc)
    assert str(exc).endswith(".") and exc.exit_code == 1
    assert len(api.calls) == 1 and sleep.calls == []
    assert form(api.calls[0]) == {"overrule-shutdown": ["1"]}  # booleans go out as 1/0


def test_403_is_permission_denied(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    api.add(
        PveResponse(
            "GET",
            f"{BASE1}/nodes/pve1/qemu/100/migrate",
            status=403,
            reason="Permission check failed (/vms/100, VM.Migrate)",
            json={"data": None},
        )
    )
    with pytest.raises(PermissionDenied) as info:
        make_client(sleep).migrate_precondition("qemu", "pve1", 100)
    assert "VM.Migrate" in str(info.value) and info.value.exit_code == 2
    assert len(api.calls) == 1


def test_401_with_a_token_is_an_auth_error(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.add(
        PveResponse(
            "GET",
            f"{BASE1}/cluster/resources",
            status=401,
            reason="authentication failure",
            body="",
        )
    )
    with pytest.raises(AuthError) as info:
        make_client(sleep).cluster_resources()
    assert info.value.exit_code == 2 and len(api.calls) == 1


@pytest.mark.parametrize(
    ("status", "reason", "cls"),
    [
        (500, "Configuration file 'nodes/pve11/qemu-server/11.conf' does not exist", NotFound),
        (500, "VM is locked (migrate)", ApiError),
        (500, "no such cluster node 'pve9'", NotFound),
        (501, "Method 'GET /nodes/pve1/qemu/111/config' not implemented", NotFound),
    ],
)
def test_500_answers_are_refusals(
    api: responses.RequestsMock, sleep: RecordingSleep, status: int, reason: str, cls: type
) -> None:
    api.add(
        PveResponse(
            "GET", f"{BASE1}/nodes/pve1/qemu/111/config", status=status, reason=reason, body=""
        )
    )
    with pytest.raises(ApiError) as info:
        make_client(sleep).guest_config("qemu", "pve1", 111)
    assert type(info.value) is cls and reason in str(info.value)
    assert len(api.calls) == 1 and not info.value.retryable


# -- failover ---------------------------------------------------------------------------------


def test_connection_error_moves_to_the_next_host_and_stays(
    api: responses.RequestsMock, sleep: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    api.get(f"{BASE1}/version", body=requests.exceptions.ConnectionError("Connection refused"))
    api.get(f"{BASE1}/cluster/options", body=requests.exceptions.ConnectionError("refused"))
    api.get(f"{BASE2}/version", json={"data": {"version": "8.2.4", "release": "8.2"}})
    api.get(f"{BASE2}/cluster/options", json={"data": {"max_workers": 3}})
    client = make_client(sleep)
    assert client.version().release == "8.2"
    assert str(client.current_host) == "pve2:8006"
    assert "pve2:8006" in caplog.text
    assert client.datacenter_options().max_workers == 3
    hosts = [urlsplit(c.request.url).hostname for c in api.calls]
    assert hosts == ["pve1", "pve2", "pve2"]


def test_read_timeout_is_retried_on_the_same_host(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.get(f"{BASE1}/version", body=requests.exceptions.ReadTimeout("read timed out"))
    api.get(f"{BASE1}/version", json={"data": {"version": "9.0.3", "release": "9.0"}})
    client = make_client(sleep)
    assert client.version().release == "9.0"
    assert str(client.current_host) == "pve1:8006" and len(api.calls) == 2


def test_tls_failure_is_neither_retried_nor_failed_over(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.get(f"{BASE1}/version", body=requests.exceptions.SSLError("certificate verify failed"))
    client = make_client(sleep)
    with pytest.raises(ApiUnreachable) as info:
        client.version()
    assert not info.value.retryable and "certificate verify failed" in str(info.value)
    assert len(api.calls) == 1 and str(client.current_host) == "pve1:8006"


def test_unreachable_everywhere_gives_up_after_the_attempts(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    for base in (BASE1, BASE2):
        api.get(f"{base}/version", body=requests.exceptions.ConnectionError("No route to host"))
    with pytest.raises(ApiUnreachable) as info:
        make_client(sleep).version()
    assert info.value.exit_code == 1 and len(api.calls) == 4
    assert [urlsplit(c.request.url).hostname for c in api.calls] == ["pve1", "pve2"] * 2


# -- migrate POST -----------------------------------------------------------------------------

MIGRATE = f"{BASE1}/nodes/pve1/qemu/101/migrate"


def _vm_resources(lock: str | None) -> dict[str, Any]:
    entry = {"type": "qemu", "vmid": 101, "node": "pve1", "status": "running", "id": "qemu/101"}
    if lock:
        entry["lock"] = lock
    return {"data": [entry]}


def _version(api: responses.RequestsMock, base: str, release: str) -> None:
    api.get(
        f"{base}/nodes/pve1/version", json={"data": {"version": f"{release}.1", "release": release}}
    )


def test_ambiguous_post_finds_the_started_task_and_does_not_resend(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.post(MIGRATE, body=requests.exceptions.ConnectionError("Connection reset by peer"))
    older = Upid("pve1", 1, 2, NOW - 3600, "qmigrate", "101", "root@pam")  # an earlier one
    api.get(
        f"{BASE2}/nodes/pve1/tasks",
        json={
            "data": [
                {
                    "upid": str(QMIGRATE),
                    "type": "qmigrate",
                    "id": "101",
                    "node": "pve1",
                    "starttime": NOW + 5,
                    "user": "root@pam!pvetool",
                    "pid": 1,
                    "pstart": 2,
                },
                {
                    "upid": str(older),
                    "type": "qmigrate",
                    "id": "101",
                    "node": "pve1",
                    "starttime": NOW - 3600,
                    "endtime": NOW - 3500,
                    "status": "OK",
                },
            ]
        },
    )
    client = make_client(sleep)
    upid = client.start_migration(MigrationRequest("qemu", "pve1", 101, "pve3"))
    assert upid == QMIGRATE
    assert len(calls_to(api, "POST", r"/migrate$")) == 1
    task_query = query(calls_to(api, "GET", r"/tasks\?")[0])
    assert task_query["vmid"] == ["101"] and task_query["source"] == ["all"]
    assert task_query["since"] == [str(NOW - 60)]
    assert sleep.calls[0] == 2  # waited before looking (WaitPolicy.ambiguous_check_delay_s)


def test_ambiguous_post_with_nothing_started_is_sent_once_more(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.add(PveResponse("POST", MIGRATE, status=503, reason="Service Unavailable", body=""))
    api.add(PveResponse("POST", MIGRATE, json={"data": str(QMIGRATE)}))
    api.get(f"{BASE1}/nodes/pve1/tasks", json={"data": []})
    api.get(f"{BASE1}/cluster/resources", json=_vm_resources(None))
    upid = make_client(sleep).start_migration(MigrationRequest("qemu", "pve1", 101, "pve3"))
    assert upid == QMIGRATE
    assert len(calls_to(api, "POST", r"/migrate$")) == 2
    assert query(calls_to(api, "GET", r"/cluster/resources")[0])["type"] == ["vm"]


def test_ambiguous_post_with_lock_but_no_task_is_not_resent(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.add(PveResponse("POST", MIGRATE, status=596, reason="Connection timed out", body=""))
    api.get(f"{BASE1}/nodes/pve1/tasks", json={"data": []})
    api.get(f"{BASE1}/cluster/resources", json=_vm_resources("migrate"))
    with pytest.raises(ApiUnreachable, match="locked 'migrate'") as info:
        make_client(sleep).start_migration(MigrationRequest("qemu", "pve1", 101, "pve3"))
    assert not info.value.retryable
    assert len(calls_to(api, "POST", r"/migrate$")) == 1
    assert len(calls_to(api, "GET", r"/tasks\?")) == 3  # looked three times


def test_ambiguous_post_task_shows_up_on_a_later_look(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.post(MIGRATE, body=requests.exceptions.ReadTimeout("read timed out"))
    tasks = f"{BASE1}/nodes/pve1/tasks"
    api.add(PveResponse("GET", tasks, json={"data": []}))
    api.add(PveResponse("GET", tasks, json={"data": [{"upid": str(QMIGRATE)}]}))
    api.get(f"{BASE1}/cluster/resources", json=_vm_resources("migrate"))
    assert (
        make_client(sleep).start_migration(MigrationRequest("qemu", "pve1", 101, "pve3"))
        == QMIGRATE
    )
    assert len(calls_to(api, "POST", r"/migrate$")) == 1


def test_ambiguous_post_whose_check_fails_is_not_resent(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.add(PveResponse("POST", MIGRATE, status=503, reason="Service Unavailable", body=""))
    api.add(
        PveResponse(
            "GET",
            f"{BASE1}/nodes/pve1/tasks",
            status=403,
            reason="Permission check failed (/nodes/pve1, Sys.Audit)",
            body="",
        )
    )
    with pytest.raises(ApiUnreachable, match="could not be checked") as info:
        make_client(sleep).start_migration(MigrationRequest("qemu", "pve1", 101, "pve3"))
    assert "Sys.Audit" in str(info.value) and not info.value.retryable
    assert len(calls_to(api, "POST", r"/migrate$")) == 1


def test_refused_migration_is_not_checked_or_resent(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.add(
        PveResponse(
            "POST", MIGRATE, status=500, reason="can't migrate running VM without --online", body=""
        )
    )
    with pytest.raises(ApiError, match="without --online"):
        make_client(sleep).start_migration(
            MigrationRequest("qemu", "pve1", 101, "pve3", online=False)
        )
    assert len(api.calls) == 1


def test_hamigrate_upid_counts_as_started(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    ha = Upid("pve1", 9, 9, NOW + 1, "hamigrate", "101", "root@pam", "pvetool")
    api.post(MIGRATE, body=requests.exceptions.ConnectionError("reset"))
    api.get(f"{BASE2}/nodes/pve1/tasks", json={"data": [{"upid": str(ha)}]})
    assert make_client(sleep).start_migration(MigrationRequest("qemu", "pve1", 101, "pve3")) == ha


# -- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(("release", "sent"), [("8.2", False), ("9.0", True)])
def test_conntrack_state_only_sent_to_pve9(
    api: responses.RequestsMock, sleep: RecordingSleep, release: str, sent: bool
) -> None:
    _version(api, BASE1, release)
    api.post(MIGRATE, json={"data": str(QMIGRATE)})
    client = make_client(sleep)
    for _ in range(2):
        client.start_migration(
            MigrationRequest("qemu", "pve1", 101, "pve3", with_conntrack_state=True)
        )
    body = form(calls_to(api, "POST", r"/migrate$")[0])
    assert ("with-conntrack-state" in body) is sent
    if sent:
        assert body["with-conntrack-state"] == ["1"]
    assert len(calls_to(api, "GET", r"/version$")) == 1  # fetched once, cached


@pytest.mark.parametrize("session", ["root@pam", "root@pam!pvetool", "admin@pve"])
def test_qemu_migration_parameters(
    api: responses.RequestsMock, sleep: RecordingSleep, session: str
) -> None:
    # D2: migration_type and migration_network are root@pam-only (qemu-server
    # src/PVE/API2/Qemu.pm migrate_vm l.5577-5585); a token is never root@pam.
    if "!" in session:
        settings = token_settings()
    else:
        api.post(f"{BASE1}/access/ticket", json=_ticket_answer())
        auth = PasswordAuth(user=session, password=Secret(PASSWORD))
        settings = token_settings(("pve1", "pve2"), auth=auth)
    api.post(MIGRATE, json={"data": str(QMIGRATE)})
    make_client(sleep, settings=settings).start_migration(
        MigrationRequest(
            "qemu",
            "pve1",
            101,
            "pve3",
            with_local_disks=True,
            target_storage={"local-lvm": "ceph", "local-zfs": "ceph"},
            bwlimit_kib_s=102400,
            migration_type="insecure",
            migration_network="10.10.1.0/24",
        )
    )
    root_only = {"migration_type": ["insecure"], "migration_network": ["10.10.1.0/24"]}
    assert form(calls_to(api, "POST", r"/migrate$")[0]) == {
        "target": ["pve3"],
        "online": ["1"],
        "with-local-disks": ["1"],
        "targetstorage": ["local-lvm:ceph,local-zfs:ceph"],
        "bwlimit": ["102400"],
        **(root_only if session == "root@pam" else {}),
    }


def test_lxc_migration_parameters(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    vz = Upid("pve1", 1, 2, NOW, "vzmigrate", "200", "root@pam")
    api.post(f"{BASE1}/nodes/pve1/lxc/200/migrate", json={"data": str(vz)})
    upid = make_client(sleep).start_migration(
        MigrationRequest(
            "lxc",
            "pve1",
            200,
            "pve2",
            restart=True,
            target_storage="ceph",
            bwlimit_kib_s=5000,
            shutdown_timeout_s=60,
        )
    )
    assert upid == vz
    assert form(api.calls[0]) == {
        "target": ["pve2"],
        "restart": ["1"],
        "target-storage": ["ceph"],
        "bwlimit": ["5000"],
        "timeout": ["60"],
    }


@pytest.mark.parametrize(
    ("kind", "kwargs", "field"),
    [
        ("lxc", {"online": True}, "online"),
        ("qemu", {"restart": True}, "restart"),
        ("qemu", {"target_storage": {"local lvm": "ceph"}}, "target_storage"),
        ("qemu", {"migration_network": "not-a-cidr"}, "migration_network"),
        ("qemu", {"bwlimit_kib_s": -1}, "bwlimit"),
        ("qemu", {"target": "pve1"}, "target"),
        ("qemu", {"vmid": 5}, "vmid"),
        ("qemu", {"target": "bad/node"}, "node"),
        ("kvm", {}, "kind"),
    ],
)
def test_migration_arguments_are_validated_before_sending(
    api: responses.RequestsMock,
    sleep: RecordingSleep,
    kind: str,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    args = {"node": "pve1", "vmid": 101, "target": "pve3"}
    for key in ("target", "vmid"):
        if key in kwargs:
            args[key] = kwargs.pop(key)
    with pytest.raises(ValidationError) as info:
        make_client(sleep).start_migration(
            MigrationRequest(kind, args["node"], args["vmid"], args["target"], **kwargs)
        )
    assert info.value.field == field and len(api.calls) == 0


# -- password login ---------------------------------------------------------------------------


def _ticket_answer() -> dict[str, Any]:
    return load_fixture("access_ticket_response_capture.json")


def test_password_login_then_cookie_and_csrf(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    answer = _ticket_answer()
    api.post(f"{BASE1}/access/ticket", json=answer)
    api.get(f"{BASE1}/version", json={"data": {"version": "8.0.4", "release": "8.0"}})
    api.delete(re.compile(re.escape(BASE1) + r"/nodes/pve1/tasks/UPID.*"), json={"data": None})
    client = make_client(sleep, settings=password_settings())
    client.version()
    client.stop_task(QMIGRATE)
    login, get, delete = api.calls
    assert form(login) == {"username": ["admin@pve"], "password": [PASSWORD]}
    ticket = answer["data"]["ticket"]
    assert f"PVEAuthCookie={ticket}" in get.request.headers["Cookie"]
    assert "CSRFPreventionToken" not in get.request.headers
    assert delete.request.headers["CSRFPreventionToken"] == answer["data"]["CSRFPreventionToken"]


@pytest.mark.parametrize(
    "reason",
    [
        "permission denied - invalid PVE ticket",  # PVE before 9.1.5
        "Authentication failed!",  # D14: 9.1.5+ says this for an expired ticket too
    ],
)
def test_password_relogin_once_on_401(
    api: responses.RequestsMock, sleep: RecordingSleep, reason: str
) -> None:
    # Any 401 on a ticket session triggers one re-login, whatever its words.
    api.post(f"{BASE1}/access/ticket", json=_ticket_answer())
    url = f"{BASE1}/version"
    api.add(PveResponse("GET", url, status=401, reason=reason, body=""))
    api.add(PveResponse("GET", url, json={"data": {"version": "8.0.4", "release": "8.0"}}))
    assert make_client(sleep, settings=password_settings()).version().release == "8.0"
    assert len(calls_to(api, "POST", r"/access/ticket$")) == 2


def test_password_second_401_is_final(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    api.post(f"{BASE1}/access/ticket", json=_ticket_answer())
    api.add(
        PveResponse("GET", f"{BASE1}/version", status=401, reason="authentication failure", body="")
    )
    with pytest.raises(AuthError):
        make_client(sleep, settings=password_settings()).version()
    assert len(calls_to(api, "POST", r"/access/ticket$")) == 2
    assert len(calls_to(api, "GET", r"/version$")) == 2


def test_wrong_password_is_not_retried(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    api.add(
        PveResponse(
            "POST", f"{BASE1}/access/ticket", status=401, reason="authentication failure", body=""
        )
    )
    with pytest.raises(AuthError) as info:
        make_client(sleep, settings=password_settings()).version()
    assert len(api.calls) == 1 and PASSWORD not in str(info.value)


# -- secrecy ----------------------------------------------------------------------------------


def test_secrets_never_in_exceptions_reprs_or_logs(
    sleep: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = _ticket_answer()
    ticket = answer["data"]["ticket"]
    csrf = answer["data"]["CSRFPreventionToken"]
    texts: list[str] = []
    for settings, secrets in (
        (token_settings(hosts=("pve1",)), [TOKEN_SECRET]),
        (password_settings(), [PASSWORD, ticket, csrf]),
    ):
        # A server (or proxy) that echoes credentials back in its messages.
        echo = f"bad header PVEAPIToken=root@pam!pvetool={secrets[0]} password={secrets[0]}"
        with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
            api.post(f"{BASE1}/access/ticket", json=answer)
            api.add(
                PveResponse(
                    "GET",
                    f"{BASE1}/version",
                    status=400,
                    reason=echo,
                    json={"data": None, "errors": {"x": " ".join(secrets)}},
                )
            )
            api.get(f"{BASE1}/cluster/options", body=requests.exceptions.ConnectionError(echo))
            api.add(PveResponse("GET", f"{BASE1}/storage", status=403, reason=echo, body=""))
            api.add(
                PveResponse(
                    "GET", f"{BASE1}/cluster/status", status=401, reason=" ".join(secrets), body=""
                )
            )
            client = make_client(sleep, settings=settings)
            texts += [repr(client), repr(settings), str(settings)]
            calls = (
                client.version,
                client.datacenter_options,
                client.storage_config,
                client.cluster_status,
            )
            for call in calls:
                with pytest.raises(Exception) as info:
                    call()
                texts += [str(info.value), repr(info.value)]
                texts += traceback.format_exception(info.value)  # with chained causes
    texts += [r.getMessage() for r in caplog.records]
    joined = "\n".join(texts)
    for secret in (TOKEN_SECRET, PASSWORD, ticket, csrf):
        assert secret not in joined
    assert "***" in joined


# -- smaller calls ----------------------------------------------------------------------------


def test_task_log_all_reads_every_page(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    lines = load_fixture("task_log_response_qmigrate_pve9_DERIVED.json")["data"]

    def page(request: Any) -> tuple[int, dict[str, str], str]:
        params = parse_qs(urlsplit(request.url).query)
        start, limit = int(params["start"][0]), int(params["limit"][0])
        return 200, {}, json.dumps({"data": lines[start : start + limit], "total": len(lines)})

    api.add_callback("GET", re.compile(r".*/tasks/UPID.*/log.*"), callback=page)
    result = make_client(sleep).task_log_all(QMIGRATE, page_lines=10)
    assert [line.n for line in result] == list(range(1, 38))
    assert [query(c)["start"] for c in api.calls] == [["0"], ["10"], ["20"], ["30"]]


def test_ha_rules_fall_back_to_groups_on_pve8(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    api.add(
        PveResponse(
            "GET",
            f"{BASE1}/cluster/ha/rules",
            status=501,
            reason="Method 'GET /cluster/ha/rules' not implemented",
            body="",
        )
    )
    api.get(
        f"{BASE1}/cluster/ha/groups",
        json={
            "data": [
                {"group": "prefer-pve1", "nodes": "pve1:2,pve2:1", "restricted": 0, "type": "group"}
            ]
        },
    )
    api.get(
        f"{BASE1}/cluster/ha/resources",
        json={
            "data": [{"sid": "vm:101", "group": "prefer-pve1", "state": "started", "type": "vm"}]
        },
    )
    rules = make_client(sleep).ha_rules()
    assert rules[0].rule_id == "group:prefer-pve1" and rules[0].resources == ("vm:101",)


def test_ha_migrate_and_task_calls(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    api.post(
        f"{BASE1}/cluster/ha/resources/vm:101/migrate",
        json={
            "data": {"sid": "vm:101", "requested-node": "pve2", "comigrated-resources": ["vm:102"]}
        },
    )
    api.get(
        re.compile(re.escape(BASE1) + r"/nodes/pve1/tasks/UPID.*/status"),
        json={
            "data": {"upid": str(QMIGRATE), "status": "stopped", "exitstatus": "OK", "node": "pve1"}
        },
    )
    client = make_client(sleep)
    request = client.ha_migrate("vm:101", "pve2")
    assert request.sid == "vm:101" and request.comigrated == ("vm:102",)
    assert form(api.calls[0]) == {"node": ["pve2"]}
    assert client.task_status(str(QMIGRATE)).ok
    assert "/tasks/UPID:pve1:" in api.calls[1].request.url


def test_synchronous_storage_refusal_is_definite(
    api: responses.RequestsMock, sleep: RecordingSleep
) -> None:
    # D3: qemu-server Qemu.pm migrate_vm l.5631-5636 dies before fork_worker: HTTP 500 with the
    # storage's words, no task, no lock. Envelope as recorded from PVE 9.1
    # (tests/data/fixtures/lxc_migrate_running_500_pve9_1.json: {"message": ..., "data": null}).
    text = "storage 'fast' is not available on node 'pve3'"
    api.add(
        PveResponse(
            "POST", MIGRATE, status=500, reason=text, json={"message": text + "\n", "data": None}
        )
    )
    with pytest.raises(ApiError) as info:
        make_client(sleep).start_migration(MigrationRequest("qemu", "pve1", 101, "pve3"))
    assert info.value.reason == text and not info.value.retryable
    assert len(api.calls) == 1  # not re-sent, no task list looked at
    assert sleep.calls == []


def test_no_such_task_is_not_found(api: responses.RequestsMock, sleep: RecordingSleep) -> None:
    # D9: pve-manager PVE/API2/Tasks.pm read_task_status l.517 raise_param_exc({upid =>
    # "no such task"}): HTTP 400 with the parameter's error; not found, never retried.
    api.add(
        PveResponse(
            "GET",
            re.compile(re.escape(BASE1) + r"/nodes/pve1/tasks/UPID.*/status"),
            status=400,
            reason="Parameter verification failed.",
            json={
                "data": None,
                "errors": {"upid": "no such task"},
                "message": "Parameter verification failed.\n",
            },
        )
    )
    with pytest.raises(NotFound, match="no such task"):
        make_client(sleep).task_status(QMIGRATE)
    assert len(api.calls) == 1


def test_tasks_are_never_looked_up_in_the_cluster_task_list() -> None:
    # D13: /cluster/tasks keeps ~25 rows per node, running ones included (pve-common
    # RESTEnvironment.pm active_workers l.388-394), and shows a token without Sys.Audit
    # nothing: the client looks tasks up on their node only. The one reader of
    # /cluster/tasks is `PveClient.cluster_tasks`, used only to learn link speeds from recent
    # migrations (pvetool.api.links, which falls back to each node's list).
    import inspect
    from pathlib import Path

    from pvetool.api import PveClient, client, tasks

    def code(obj: object) -> list[str]:
        lines = inspect.getsource(obj).splitlines()  # type: ignore[arg-type]
        return [ln for ln in lines if not ln.strip().startswith(("#", "``"))]

    lookups = [tasks, PveClient.tasks, PveClient.task_status, PveClient.task_log]
    lookups += [PveClient._started_migration, PveClient.start_migration]
    for obj in lookups:
        assert not any('"/cluster/tasks' in ln for ln in code(obj)), obj
    readers = [ln for ln in code(client) if '"/cluster/tasks' in ln]
    assert readers == ['        return self._call("GET", "/cluster/tasks", convert.task_list)']
    package = Path(client.__file__).parent.parent
    users = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if ".cluster_tasks(" in p.read_text() and p.name != "client.py"
    )
    assert users == ["api/links.py"]
