"""Recorded real PVE answers (tests/data/fixtures, sources in SOURCES.md there) against the
emulator's answers to the same kind of request: same envelope, same keys, same texts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.emu import Api

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.source(
    "qemu-server; pve-common",
    "src/PVE/API2/Qemu.pm; src/PVE/Exception.pm",
    "migrate_vm; raise_param_exc",
    "l.5577-5585; l.78-96",
)
def test_root_only_refusal_matches_the_recorded_400(api: Api) -> None:
    recorded = json.loads(_fixture("token_root_pam_skiplock_400.json"))
    reply = api.call("POST", "/nodes/pve1/qemu/110/migrate", target="pve2", online=1, force=1)
    assert reply.status == 400
    # The 7.x recording lacks `message` (added to the envelope later, see the 9.x one below).
    assert set(recorded) <= set(reply.body)
    assert reply.body["data"] is recorded["data"] is None
    assert list(reply.body["errors"].values()) == list(recorded["errors"].values())
    mangled = _fixture("ha_rules_400_param_verification_pve9.txt")
    plain = re.sub(r"[”“‘’]", '"', mangled)
    body = json.loads(plain.split(": ", 1)[1].replace('" Parameter', '"Parameter'))
    assert set(body) == set(reply.body) == {"data", "errors", "message"}
    assert body["message"] == reply.body["message"] == "Parameter verification failed.\n"


@pytest.mark.source("pve-container", "src/PVE/API2/LXC.pm", "migrate_vm", "l.1695-1698")
def test_a_synchronous_500_matches_the_recorded_envelope(api: Api) -> None:
    recorded = json.loads(_fixture("lxc_migrate_running_500_pve9_1.json"))
    reply = api.call("POST", "/nodes/pve1/lxc/200/migrate", target="pve2")
    assert (reply.status, reply.reason) == (
        500,
        "can't migrate running container without --online or --restart",
    )
    assert reply.body == recorded


@pytest.mark.source("qemu-server", "src/PVE/API2/Qemu.pm", "migrate_vm_precondition", "l.5439-5473")
def test_the_precondition_has_the_recorded_shape(api: Api) -> None:
    recorded = json.loads(_fixture("qemu_precondition_all_refused_2026.json"))
    # The recording: a running VM with a local ISO, a USB device and a storage no other node
    # has; every other node listed in not_allowed_nodes.
    ours = api.get("/nodes/pve1/qemu/305/migrate")
    assert set(recorded) <= set(ours)  # the recording was trimmed, never extended
    assert set(ours["not_allowed_nodes"]) == {"pve2", "pve3"}
    assert all(set(v) <= {"unavailable_storages"} for v in recorded["not_allowed_nodes"].values())
    iso = next(d for d in recorded["local_disks"] if d["cdrom"])
    ours_iso = next(d for d in ours["local_disks"] if d["cdrom"])
    assert set(iso) <= set(ours_iso) and ours_iso["volid"].startswith("local:iso/")
    usb = api.get("/nodes/pve1/qemu/301/migrate")
    assert usb["local_resources"] == recorded["local_resources"] == ["usb0"]
