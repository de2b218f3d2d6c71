"""The client's copy of PVE's documented answers and the lenient check against them.

Real recorded PVE answers (tests/data/fixtures, and /work/shared/pve-api/fixtures when present)
must pass; what PVE cannot have sent must not.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from pvetool.api.schema import DATA_FILE, RETURNS_SHA256, AnswerSchema

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_SCHEMA = REPO_ROOT.parent / "shared" / "pve-api" / "schema.json"
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "pve-api" / "fixtures"
FIXTURES = REPO_ROOT / "tests" / "data" / "fixtures"
PACKAGED = REPO_ROOT / "pvetool" / "api" / DATA_FILE

# Recorded answers and the endpoint each answers (SOURCES.md in the fixture directories).
RECORDED = {
    "cluster_resources_capture.json": ("GET", "/cluster/resources"),
    "cluster_status_capture.json": ("GET", "/cluster/status"),
    "nodes_capture.json": ("GET", "/nodes"),
    "qemu_status_current_capture.json": ("GET", "/nodes/node1/qemu/100/status/current"),
    "task_status_running.json": ("GET", "/nodes/x/tasks/UPID:x:1:2:3:qmconfig:113:u@pve:/status"),
    "task_status_stopped_warnings.json": ("GET", "/nodes/x/tasks/UPID:x:1:2:3:t:1:u@pve:/status"),
    "ha_status_current_pve9_partial.json": ("GET", "/cluster/ha/status/current"),
    "task_log_response_qmigrate_pve9_DERIVED.json": ("GET", "/nodes/x/tasks/UPID:x/log"),
    "access_ticket_response_capture.json": ("POST", "/access/ticket"),
}


@pytest.fixture(scope="module")
def schema() -> AnswerSchema:
    return AnswerSchema.load()


def _script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "extract_api_returns", REPO_ROOT / "scripts" / "extract_api_returns.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the packaged file ------------------------------------------------------------------------


def test_the_packaged_file_is_the_one_the_script_wrote() -> None:
    """Runs everywhere (also in CI without ../shared): a hand edit changes the digest."""
    assert hashlib.sha256(PACKAGED.read_bytes()).hexdigest() == RETURNS_SHA256


@pytest.mark.skipif(not SHARED_SCHEMA.exists(), reason=f"no official schema at {SHARED_SCHEMA}")
def test_the_packaged_file_is_byte_for_byte_what_the_official_schema_gives() -> None:
    raw = SHARED_SCHEMA.read_bytes()
    script = _script()
    assert script.build(raw, "schema.json").encode("utf-8") == PACKAGED.read_bytes(), (
        "rerun scripts/extract_api_returns.py"
    )
    packaged = json.loads(PACKAGED.read_text(encoding="utf-8"))
    assert packaged["provenance"]["source_sha256"] == hashlib.sha256(raw).hexdigest()
    for returns in packaged["returns"].values():
        assert json.dumps(returns, sort_keys=True).encode() in raw


def test_every_endpoint_the_client_calls_is_packaged(schema: AnswerSchema) -> None:
    assert list(schema.returns) == [f"{m} {t}" for m, t in _script().WANTED]
    assert schema.provenance["endpoint_count"] == len(schema.returns) == 34


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/nodes/pve1/qemu/101/config", "GET /nodes/{node}/qemu/{vmid}/config"),
        ("get", "/cluster/resources", "GET /cluster/resources"),
        ("POST", "/nodes/pve2/lxc/200/migrate", "POST /nodes/{node}/lxc/{vmid}/migrate"),
        (
            "GET",
            "/nodes/pve1/tasks/UPID:pve1:0001:02:03:qmigrate:101:root@pam:/status",
            "GET /nodes/{node}/tasks/{upid}/status",
        ),
        ("DELETE", "/nodes/pve1/tasks/UPID:pve1:x", "DELETE /nodes/{node}/tasks/{upid}"),
        ("GET", "/nodes/pve1/qemu/101/rrddata", None),
    ],
)
def test_templates_of_concrete_paths(
    schema: AnswerSchema, method: str, path: str, template: str | None
) -> None:
    assert schema.template_of(method, path) == template


# --- real answers pass --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_pve_answers_pass(schema: AnswerSchema, name: str) -> None:
    method, path = RECORDED[name]
    for directory in (FIXTURES, SHARED_FIXTURES):
        file = directory / name
        if file.exists():
            data = json.loads(file.read_text(encoding="utf-8"))["data"]
            assert schema.problems(method, path, data) == [], file


def test_pve_habits_are_accepted(schema: AnswerSchema) -> None:
    """Numbers as strings, booleans as 0/1 or "1", optional keys missing or null."""
    answer = [
        {
            "id": "qemu/101",
            "type": "qemu",
            "vmid": "101",
            "node": "pve1",
            "maxmem": "1073741824",
            "cpu": "0.25",
            "template": "0",
            "status": "running",
            "lock": None,
        },
        {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online"},
        {"id": "sdn/pve1/localnetwork", "type": "sdn"},
        {"id": "future/x", "type": "a-type-of-pve-10"},  # PVE adds resource types
    ]
    assert schema.problems("GET", "/cluster/resources", answer) == []
    config = {
        "cores": 2,
        "memory": "2048",
        "net0": "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0",
        "scsi0": "local-lvm:vm-101-disk-0,size=32G,iothread=1,newkey=x",
        "ostype": "a-new-os",
        "digest": "abc",
    }
    assert schema.problems("GET", "/nodes/pve1/qemu/101/config", config) == []
    # PVE 8 answers the HA migrate request with null (the 9.2 schema documents an object).
    assert schema.problems("POST", "/cluster/ha/resources/vm:101/migrate", None) == []


# --- what PVE cannot have sent fails ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "data", "problem"),
    [
        ("GET", "/cluster/resources", None, "$: null where a list is documented"),
        ("GET", "/cluster/resources", {"a": 1}, "$: an object where a list is documented"),
        (
            "GET",
            "/cluster/resources",
            [{"id": "qemu/1", "type": "qemu", "vmid": "abc"}],
            '$[0].vmid: "abc" is not an integer',
        ),
        (
            "GET",
            "/cluster/resources",
            [{"id": "x", "type": "qemu", "maxmem": -5}],
            "$[0].maxmem: -5 is below the minimum 0",
        ),
        (
            "GET",
            "/cluster/resources",
            [{"id": "x", "type": "qemu", "cpu": 2**70}],
            "is out of range",
        ),
        ("GET", "/cluster/resources", [{"type": "qemu"}], "$[0]: id missing"),
        (
            "GET",
            "/nodes",
            [{"node": "pve1", "status": "sleeping"}],
            '$[0].status: "sleeping" is not one of unknown, online, offline',
        ),
        (
            "GET",
            "/nodes/pve1/qemu/1/status/current",
            {"status": "running", "ha": []},
            "$.ha: a list where an object is documented",
        ),
        (
            "GET",
            "/nodes/pve1/tasks/UPID:x/status",
            {"upid": "UPID:x", "status": "done"},
            '"done" is not one of running, stopped',
        ),
        (
            "GET",
            "/nodes/pve1/qemu/101/config",
            {"net0": "garbage", "digest": "d"},
            '$.net0: "garbage": model: "garbage" is not one of',
        ),
        (
            "GET",
            "/nodes/pve1/qemu/101/config",
            {"net0": "bridge=vmbr0", "digest": "d"},
            "model missing",
        ),
        (
            "GET",
            "/nodes/pve1/qemu/101/config",
            {"scsi0": "junk,size=1G", "digest": "d"},
            '"junk" is not a pve-volume-id-or-qm-path',
        ),
        (
            "GET",
            "/nodes/pve1/qemu/101/config",
            {"memory": "lots", "digest": "d"},
            'current: "lots" is not an integer',
        ),
        (
            "GET",
            "/nodes/pve1/qemu/101/config",
            {"net0": "virtio,virtio", "digest": "d"},
            "the key model is given twice",
        ),
        (
            "GET",
            "/nodes/pve1/lxc/200/config",
            {"mp0": "local:subvol-1,size=1G", "digest": "d"},
            "mp missing",
        ),
        (
            "POST",
            "/nodes/pve1/qemu/101/migrate",
            {"upid": "x"},
            "$: an object where a string is documented",
        ),
    ],
)
def test_what_pve_cannot_have_sent_fails(
    schema: AnswerSchema, method: str, path: str, data: Any, problem: str
) -> None:
    found = schema.problems(method, path, data)
    assert any(problem in p for p in found), found


def test_at_most_a_few_problems_are_listed(schema: AnswerSchema) -> None:
    answer = [{"id": f"qemu/{i}", "type": "qemu", "vmid": "x"} for i in range(100, 200)]
    assert len(schema.problems("GET", "/cluster/resources", answer)) == 5
