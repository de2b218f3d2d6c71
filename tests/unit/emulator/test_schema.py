"""Tests for the emulator's PVE parameter validation and the return-schema contract helper.

Expected message texts come from pve-common ``src/PVE/JSONSchema.pm`` (and the format
registrations in pve-storage, pve-ha-manager, pve-access-control); where a live PVE answer with
the same text was recorded, the test compares against that recording.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvetool.emulator.schema import ApiSchema, ParamError, is_format_supported, parse_idmap
from tests.contract_schema import load_schema_endpoint, return_schema_errors

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_SCHEMA = REPO_ROOT.parent / "shared" / "pve-api" / "schema.json"
PACKAGED = REPO_ROOT / "pvetool" / "emulator" / "data" / "pve-api-schema.json"
# Vendored, so that a clone without ../shared checks the packaged subset too: the official PVE
# 9.2 schema it was extracted from (pvetool/emulator/data/README.md), and the SHA-256 of the
# wanted definitions as extracted from it (`_subset_sha256`). Both are checked against the
# official file whenever it is present.
OFFICIAL_SCHEMA_SHA256 = "d1d290ae989d0a634a10cea005b5df4eb07313624d86b2eeea7e481685d6730a"
OFFICIAL_SCHEMA_BYTES = 1_405_816
SUBSET_SHA256 = "7e88466c5116f1ebee51b97a7802f12a5b899aea05494c79f609bc625c2d534b"
FIXTURES = REPO_ROOT / "tests" / "data" / "fixtures"

QM_MIGRATE = "/nodes/{node}/qemu/{vmid}/migrate"
CT_MIGRATE = "/nodes/{node}/lxc/{vmid}/migrate"
NOT_DEFINED = (
    "property is not defined in schema and the schema does not allow additional properties"
)


@pytest.fixture(scope="module")
def api() -> ApiSchema:
    return ApiSchema.load()


def errors_of(api: ApiSchema, method: str, template: str, params: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ParamError) as info:
        api.validate_params(method, template, params)
    assert str(info.value) == "Parameter verification failed."
    return info.value.errors


def fixture_data(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))["data"]


# --- the packaged subset ----------------------------------------------------------------------


def _extract_script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "extract_schema_subset", REPO_ROOT / "scripts" / "extract_schema_subset.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _subset_sha256(endpoints: dict[str, Any]) -> str:
    """SHA-256 of the definitions in order, each as `METHOD path` and its JSON as schema.json
    serialises it."""
    lines = (f"{key} {json.dumps(defn, sort_keys=True)}" for key, defn in endpoints.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_packaged_subset_is_the_extraction_of_the_official_schema(api: ApiSchema) -> None:
    """Without the official file: the packaged file is the extraction script's output, byte for
    byte, from the official schema of the vendored digest, with the vendored definitions."""
    text = PACKAGED.read_text(encoding="utf-8")
    data = json.loads(text)
    script = _extract_script()
    assert script.render(data["provenance"], data["endpoints"]) == text
    assert data["provenance"]["source_sha256"] == OFFICIAL_SCHEMA_SHA256
    assert data["provenance"]["source_bytes"] == OFFICIAL_SCHEMA_BYTES
    assert data["provenance"]["extracted_by"] == "scripts/extract_schema_subset.py"
    assert list(data["endpoints"]) == [f"{m} {p}" for m, p in script.WANTED]
    assert _subset_sha256(data["endpoints"]) == SUBSET_SHA256, (
        "the packaged definitions differ from the ones extracted from the official schema: "
        "rerun scripts/extract_schema_subset.py, never edit the file by hand"
    )
    assert api.templates() == list(script.WANTED)


@pytest.mark.skipif(
    not SHARED_SCHEMA.exists(), reason=f"official PVE schema not available at {SHARED_SCHEMA}"
)
def test_packaged_subset_is_byte_identical_to_the_official_schema(api: ApiSchema) -> None:
    raw = SHARED_SCHEMA.read_bytes()
    script = _extract_script()
    official = script.index_tree(json.loads(raw))
    assert api.provenance["source_sha256"] == hashlib.sha256(raw).hexdigest(), (
        "schema.json changed: rerun scripts/extract_schema_subset.py"
    )
    # the vendored digests the test above checks without this file
    assert (hashlib.sha256(raw).hexdigest(), len(raw)) == (
        OFFICIAL_SCHEMA_SHA256,
        OFFICIAL_SCHEMA_BYTES,
    )
    wanted = {f"{m} {p}": official[(m, p)] for m, p in script.WANTED}
    assert _subset_sha256(wanted) == SUBSET_SHA256
    assert api.templates() == list(script.WANTED)
    for method, template in api.templates():
        packaged = json.dumps(api.endpoint(method, template), sort_keys=True)
        assert packaged == json.dumps(official[(method, template)], sort_keys=True)
        # schema.json is serialised the same way, so the definition is a literal substring
        assert packaged.encode() in raw, f"{method} {template}"


def test_provenance_is_recorded(api: ApiSchema) -> None:
    prov = api.provenance
    assert prov["source_file"] == "schema.json"
    assert len(prov["source_sha256"]) == 64
    assert prov["pve_version"] == "9.2"
    assert "apidoc" in prov["origin"] and "fivetwenty-io/proxmox-apiclient-go" in prov["origin"]
    assert "AGPL-3.0-or-later" in prov["licence"] and "Proxmox Server Solutions" in prov["licence"]
    assert prov["endpoint_count"] == len(api.templates()) == 61


def test_endpoint_lookup(api: ApiSchema) -> None:
    assert api.endpoint("post", QM_MIGRATE)["name"] == "migrate_vm"
    assert ("GET", "/pools/{poolid}") in api.templates()
    with pytest.raises(KeyError):
        api.endpoint("PUT", QM_MIGRATE)


def _formats(schema: Any) -> list[Any]:
    found = []
    if isinstance(schema, dict):
        if "format" in schema:
            found.append(schema["format"])
        for value in schema.values():
            found += _formats(value)
    return found


def test_every_parameter_format_of_the_served_endpoints_is_implemented(api: ApiSchema) -> None:
    missing = {
        json.dumps(fmt)
        for method, template in api.templates()
        for fmt in _formats(api.endpoint(method, template).get("parameters"))
        if not is_format_supported(fmt)
    }
    assert not missing


# --- validate_params on the migrate endpoints -------------------------------------------------


def test_good_qemu_migrate_params_are_converted(api: ApiSchema) -> None:
    params = {
        "node": "pve1",
        "vmid": "101",
        "target": "pve2",
        "online": "1",
        "with-local-disks": "0",
        "bwlimit": "51200",
        "migration_type": "insecure",
        "migration_network": "10.10.0.0/24",
        "targetstorage": "local-lvm:ceph,local:nfs",
        "with-conntrack-state": "1",
        "force": "0",
    }
    assert api.validate_params("POST", QM_MIGRATE, params) == {
        "node": "pve1",
        "vmid": 101,
        "target": "pve2",
        "online": True,
        "with-local-disks": False,
        "bwlimit": 51200,
        "migration_type": "insecure",
        "migration_network": "10.10.0.0/24",
        "targetstorage": "local-lvm:ceph,local:nfs",
        "with-conntrack-state": True,
        "force": False,
    }


def test_good_lxc_migrate_params_are_converted(api: ApiSchema) -> None:
    params = {
        "node": "pve1",
        "vmid": "200",
        "target": "pve3",
        "restart": "1",
        "timeout": "120",
        "bwlimit": "1024.5",
        "target-storage": "1",
    }
    assert api.validate_params("POST", CT_MIGRATE, params) == {
        "node": "pve1",
        "vmid": 200,
        "target": "pve3",
        "restart": True,
        "timeout": 120,
        "bwlimit": 1024.5,
        "target-storage": "1",
    }


def test_json_body_scalars_are_accepted(api: ApiSchema) -> None:
    params = {"node": "pve1", "vmid": 101, "target": "pve2", "online": True, "force": 0}
    assert api.validate_params("POST", QM_MIGRATE, params) == {
        "node": "pve1",
        "vmid": 101,
        "target": "pve2",
        "online": True,
        "force": False,
    }


def test_get_migrate_precondition_params(api: ApiSchema) -> None:
    assert api.validate_params("GET", QM_MIGRATE, {"node": "n1", "vmid": "100"}) == {
        "node": "n1",
        "vmid": 100,
    }
    assert (
        api.validate_params("GET", CT_MIGRATE, {"node": "n1", "vmid": "100", "target": "n2"})[
            "target"
        ]
        == "n2"
    )


def test_unknown_parameter_uses_the_recorded_pve_message(api: ApiSchema) -> None:
    recorded = json.loads((FIXTURES / "http_errors.json").read_text(encoding="utf-8"))
    stop_error = recorded["errors"][0]["body"]["errors"]["overrule-shutdown"]
    errors = errors_of(
        api, "POST", QM_MIGRATE, {"node": "pve1", "vmid": "101", "target": "pve2", "restart": "1"}
    )
    assert errors == {"restart": stop_error}
    assert stop_error == NOT_DEFINED


def test_missing_target(api: ApiSchema) -> None:
    errors = errors_of(api, "POST", QM_MIGRATE, {"node": "pve1", "vmid": "101"})
    assert errors == {"target": "property is missing and it is not optional"}


def test_bad_enum(api: ApiSchema) -> None:
    errors = errors_of(
        api,
        "POST",
        QM_MIGRATE,
        {"node": "pve1", "vmid": "101", "target": "pve2", "migration_type": "fast"},
    )
    assert errors == {
        "migration_type": "value 'fast' does not have a value in the enumeration 'secure, insecure'"
    }


@pytest.mark.parametrize(
    ("vmid", "message"),
    [
        # pve-vmid's format regex runs before the minimum/maximum checks, as in check_prop
        ("99", "invalid format - value does not look like a valid VM ID\n"),
        ("1000000000", "invalid format - value does not look like a valid VM ID\n"),
        ("abc", "type check ('integer') failed - got 'abc'"),
        ("10.5", "type check ('integer') failed - got '10.5'"),
    ],
)
def test_bad_vmid(api: ApiSchema, vmid: str, message: str) -> None:
    errors = errors_of(api, "POST", QM_MIGRATE, {"node": "pve1", "vmid": vmid, "target": "pve2"})
    assert errors == {"vmid": message}


@pytest.mark.parametrize("value", ["yes", "true", "True", "on", "2", ""])
def test_bad_boolean(api: ApiSchema, value: str) -> None:
    # The API (unlike the CLI and config parsers) takes only "1" and "0": check_type in
    # JSONSchema.pm has the yes/true/on regex commented out.
    errors = errors_of(
        api, "POST", QM_MIGRATE, {"node": "pve1", "vmid": "101", "target": "pve2", "online": value}
    )
    assert errors == {"online": f"type check ('boolean') failed - got '{value}'"}


def test_json_boolean_for_an_integer_is_a_perl_reference(api: ApiSchema) -> None:
    errors = errors_of(api, "POST", QM_MIGRATE, {"node": "pve1", "vmid": True, "target": "pve2"})
    assert errors == {"vmid": "type check ('integer') failed - got JSON::PP::Boolean"}


@pytest.mark.parametrize(
    "value",
    ["local-lvm", "1", "local:ceph", "local:ceph,local-lvm:ceph2", "a.b:c_d", "local:xx,local:yy"],
)
def test_good_targetstorage(api: ApiSchema, value: str) -> None:
    # "local:xx,local:yy" passes too: a -list format checks entries one by one; the duplicate
    # source is caught later by the handler's parse_idmap (see test_parse_idmap_whole_map_rules)
    params = {"node": "pve1", "vmid": "101", "target": "pve2", "targetstorage": value}
    assert api.validate_params("POST", QM_MIGRATE, params)["targetstorage"] == value


def test_bad_target_storage_matches_a_recorded_pve_answer(api: ApiSchema) -> None:
    # Recorded from a live cluster (PegaProx/project-pegaprox issue #808), three newlines and all.
    errors = errors_of(
        api,
        "POST",
        CT_MIGRATE,
        {"node": "pve1", "vmid": "101", "target": "pve2", "target-storage": "rootfs=local-zfs"},
    )
    assert errors == {
        "target-storage": "invalid format - entry 'rootfs=local-zfs' contains "
        "invalid ID - storage ID 'rootfs=local-zfs' contains illegal characters"
        "\n\n\n"
    }


@pytest.mark.parametrize(
    ("value", "bad_id"), [("local:-x", "-x"), ("1x", "1x"), ("a:b:c", "a:b:c"), ("ok,bad!", "bad!")]
)
def test_bad_targetstorage(api: ApiSchema, value: str, bad_id: str) -> None:
    errors = errors_of(
        api,
        "POST",
        QM_MIGRATE,
        {"node": "pve1", "vmid": "101", "target": "pve2", "targetstorage": value},
    )
    entry = value.split(",")[-1]
    assert errors == {
        "targetstorage": f"invalid format - entry '{entry}' contains invalid ID - "
        f"storage ID '{bad_id}' contains illegal characters\n\n\n"
    }


def test_several_errors_are_all_reported(api: ApiSchema) -> None:
    errors = errors_of(
        api,
        "POST",
        QM_MIGRATE,
        {
            "node": "pve_1",
            "vmid": "99",
            "online": "yes",
            "bwlimit": "-5",
            "migration_network": "10.0.0.0/5",
            "migration_type": "x",
            "targetstorage": "a=b",
            "bogus": "1",
        },
    )
    assert errors == {
        "node": "invalid format - value does not look like a valid node name\n",
        "vmid": "invalid format - value does not look like a valid VM ID\n",
        "target": "property is missing and it is not optional",
        "online": "type check ('boolean') failed - got 'yes'",
        "bwlimit": "value must have a minimum value of 0",
        "migration_network": "invalid format - value does not look like a valid CIDR network\n",
        "migration_type": "value 'x' does not have a value in the enumeration 'secure, insecure'",
        "targetstorage": "invalid format - entry 'a=b' contains invalid ID - storage ID 'a=b' "
        "contains illegal characters\n\n\n",
        "bogus": NOT_DEFINED,
    }


@settings(deadline=None)  # the first example pays for loading the schema and compiling regexes
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "node",
                "vmid",
                "target",
                "online",
                "bwlimit",
                "targetstorage",
                "migration_network",
                "x",
            ]
        ),
        st.text(max_size=20) | st.lists(st.text(max_size=5), max_size=3),
    )
)
def test_any_wire_input_either_validates_or_raises_param_error(params: dict[str, Any]) -> None:
    api = ApiSchema.load()
    try:
        result = api.validate_params("POST", QM_MIGRATE, params)
    except ParamError as exc:
        assert exc.errors and all(isinstance(m, str) and m for m in exc.errors.values())
    else:
        assert isinstance(result["vmid"], int) and set(result) <= set(params)


# --- other endpoints, formats and wire details ------------------------------------------------


def test_maximum_and_list_formats_on_migrateall(api: ApiSchema) -> None:
    tpl = "/nodes/{node}/migrateall"
    errors = errors_of(
        api, "POST", tpl, {"node": "n1", "target": "n2", "maxworkers": "65", "vms": "100,1a"}
    )
    assert errors == {
        "maxworkers": "value must have a maximum value of 64",
        "vms": "invalid format - value does not look like a valid VM ID\n",
    }
    # repeated form keys arrive as a list and satisfy a -list format
    assert api.validate_params(
        "POST", tpl, {"node": "n1", "target": "n2", "vms": ["100", "101"], "max-workers": "4"}
    ) == {"node": "n1", "target": "n2", "vms": "100,101", "max-workers": 4}


def test_requires_uses_the_recorded_message_form(api: ApiSchema) -> None:
    # recorded form: {"archive": "missing property - 'force' requires this property"}
    assert errors_of(api, "GET", "/pools", {"type": "qemu"}) == {
        "poolid": "missing property - 'type' requires this property"
    }


def test_length_pattern_and_string_formats(api: ApiSchema) -> None:
    config = "/nodes/{node}/qemu/{vmid}/config"
    assert errors_of(api, "GET", config, {"node": "n1", "vmid": "100", "snapshot": "s" * 41}) == {
        "snapshot": "value may only be 40 characters long"
    }
    assert errors_of(api, "GET", config, {"node": "n1", "vmid": "100", "snapshot": "1st"}) == {
        "snapshot": "invalid format - invalid configuration ID '1st'\n"
    }
    assert errors_of(api, "GET", "/access/permissions", {"userid": "root"}) == {
        "userid": "value does not match the regex pattern"
    }
    assert api.validate_params(
        "GET", "/access/permissions", {"userid": "root@pam!token1", "path": "/vms/100"}
    ) == {"userid": "root@pam!token1", "path": "/vms/100"}
    assert errors_of(
        api,
        "GET",
        "/nodes/{node}/storage",
        {"node": "n1", "content": "images,bogus", "storage": "9x"},
    ) == {
        "content": "invalid format - invalid content type 'bogus'\n",
        "storage": "invalid format - storage ID '9x' contains illegal characters\n",
    }
    assert errors_of(
        api,
        "POST",
        "/access/ticket",
        {
            "username": "root@pam",
            "password": "x",
            "path": "/",
            "privs": "VM.Monitor",
            "realm": "1pam",
        },
    ) == {
        "privs": "invalid format - invalid privilege 'VM.Monitor'\n",
        "realm": "invalid format - value does not look like a valid realm\n",
    }


def test_task_and_ha_path_parameters(api: ApiSchema) -> None:
    upid = "UPID:pve1:00171399:02C8BD1E:656E69FC:qmigrate:132:root@pam!build:"
    assert api.validate_params(
        "GET", "/nodes/{node}/tasks/{upid}/status", {"node": "pve1", "upid": upid}
    ) == {"node": "pve1", "upid": upid}
    assert api.validate_params(
        "GET",
        "/nodes/{node}/tasks/{upid}/log",
        {"node": "pve1", "upid": upid, "start": "0", "limit": "500"},
    ) == {"node": "pve1", "upid": upid, "start": 0, "limit": 500}
    assert errors_of(
        api, "GET", "/nodes/{node}/tasks", {"node": "pve1", "statusfilter": "ok,warning,bogus"}
    ) == {"statusfilter": "invalid format - invalid status 'bogus'\n"}
    tpl = "/cluster/ha/resources/{sid}/migrate"
    for sid in ("vm:100", "ct:200", "100"):
        assert api.validate_params("POST", tpl, {"sid": sid, "node": "n2"})["sid"] == sid
    assert errors_of(api, "POST", tpl, {"sid": "VM:100", "node": "n2"}) == {
        "sid": "invalid format - value does not look like a valid ha resource id\n"
    }


def test_extjs_cache_buster_and_json_null_are_ignored(api: ApiSchema) -> None:
    assert api.validate_params(
        "GET", "/cluster/resources", {"type": "vm", "_dc": "1700000000000"}
    ) == {"type": "vm"}
    assert api.validate_params("GET", "/cluster/resources", {"type": None}) == {}


def test_parameterless_endpoint_rejects_unknown_parameters(api: ApiSchema) -> None:
    assert api.validate_params("GET", "/version", {}) == {}
    assert errors_of(api, "GET", "/version", {"full": "1"}) == {"full": NOT_DEFINED}


def test_property_string_format_given_as_dict(api: ApiSchema) -> None:
    # A real property-string format (the VM 'agent' option) on a synthetic endpoint.
    agent = load_schema_endpoint("GET", "/nodes/{node}/qemu/{vmid}/config")["returns"][
        "properties"
    ]["agent"]
    schema = ApiSchema(
        {
            "POST /x": {
                "parameters": {
                    "additionalProperties": 0,
                    "properties": {
                        "agent": {"type": "string", "format": agent["format"], "optional": 1}
                    },
                }
            }
        }
    )
    assert schema.validate_params("POST", "/x", {"agent": "1,fstrim_cloned_disks=1"}) == {
        "agent": "1,fstrim_cloned_disks=1"
    }
    assert errors_of(schema, "POST", "/x", {"agent": "enabled=maybe"}) == {
        "agent": "invalid format - format error\n"
        "agent.enabled: type check ('boolean') failed - got 'maybe'\n"
    }
    assert errors_of(schema, "POST", "/x", {"agent": "1,colour=red"}) == {
        "agent": "invalid format - invalid key in comma-separated list property: colour\n"
    }
    assert errors_of(schema, "POST", "/x", {"agent": "1,0"}) == {
        "agent": "invalid format - duplicate key in comma-separated list property: enabled\n"
    }


def test_parse_idmap_whole_map_rules() -> None:
    storage_map = parse_idmap("local:ceph,local-lvm:rbd,nfs")
    assert storage_map.map("local") == "ceph"
    assert storage_map.map("zfs") == "nfs"
    assert parse_idmap("1").identity and parse_idmap("1").map("local") == "local"
    for text, message in [
        ("aa:bb,aa:cc", "duplicate mapping for source 'aa'\n"),
        ("xx,yy", "default target ID can only be provided once\n"),
        ("1,aa:bb", "identity mapping cannot be combined with other mappings\n"),
        (
            "aa:b!",
            "entry 'aa:b!' contains invalid ID - storage ID 'b!' contains illegal characters\n\n",
        ),
    ]:
        with pytest.raises(ValueError) as info:
            parse_idmap(text)
        assert str(info.value) == message


# --- return_schema_errors ---------------------------------------------------------------------

RECORDED_ANSWERS = [
    ("GET", "/cluster/resources", "cluster_resources_capture.json"),
    ("GET", "/cluster/status", "cluster_status_capture.json"),
    ("GET", "/nodes", "nodes_capture.json"),
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current", "qemu_status_current_capture.json"),
    ("POST", "/access/ticket", "access_ticket_response_capture.json"),
    ("GET", "/nodes/{node}/tasks/{upid}/status", "task_status_running.json"),
    ("GET", "/nodes/{node}/tasks/{upid}/status", "task_status_stopped_warnings.json"),
    ("GET", "/nodes/{node}/tasks/{upid}/log", "task_log_response_qmigrate_pve9_DERIVED.json"),
    ("GET", "/cluster/ha/status/current", "ha_status_current_pve9_partial.json"),
]


@pytest.mark.parametrize(("method", "template", "name"), RECORDED_ANSWERS)
def test_recorded_answers_conform(method: str, template: str, name: str) -> None:
    assert return_schema_errors(method, template, fixture_data(name)) == []


def test_perl_booleans_as_integers_are_accepted_but_only_zero_and_one() -> None:
    status = fixture_data("cluster_status_capture.json")
    assert status[1]["online"] == 1  # what real PVE sends for a boolean
    status[1]["online"] = True
    assert return_schema_errors("GET", "/cluster/status", status) == []
    status[1]["online"] = 2
    assert return_schema_errors("GET", "/cluster/status", status) == [
        "$[1].online: 2 is greater than the maximum of 1"
    ]


def test_missing_required_key_is_rejected() -> None:
    task = fixture_data("task_status_running.json")
    del task["upid"]
    assert return_schema_errors("GET", "/nodes/{node}/tasks/{upid}/status", task) == [
        "$: 'upid' is a required property"
    ]


def test_wrong_type_is_rejected_with_its_path() -> None:
    resources = fixture_data("cluster_resources_capture.json")
    resources[2]["maxmem"] = "8 GiB"
    resources[0]["vmid"] = 99
    assert return_schema_errors("GET", "/cluster/resources", resources) == [
        "$[0].vmid: 99 is less than the minimum of 100",
        "$[2].maxmem: '8 GiB' is not of type 'integer', 'null'",
    ]


def test_bad_enum_is_rejected() -> None:
    task = fixture_data("task_status_stopped_warnings.json")
    task["status"] = "finished"
    assert return_schema_errors("GET", "/nodes/{node}/tasks/{upid}/status", task) == [
        "$.status: 'finished' is not one of ['running', 'stopped']"
    ]


def test_pve_node_format_is_enforced_on_strings() -> None:
    resources = fixture_data("cluster_resources_capture.json")
    good = copy.deepcopy(resources)
    resources[0]["node"] = "node_1"
    errors = return_schema_errors("GET", "/cluster/resources", resources)
    assert len(errors) == 1 and errors[0].startswith("$[0].node: 'node_1' does not match")
    assert return_schema_errors("GET", "/cluster/resources", good) == []


def test_null_and_scalar_returns() -> None:
    assert return_schema_errors("DELETE", "/nodes/{node}/tasks/{upid}", None) == []
    assert return_schema_errors("DELETE", "/nodes/{node}/tasks/{upid}", "x") == [
        "$: 'x' is not of type 'null'"
    ]
    upid = "UPID:pve1:00171399:02C8BD1E:656E69FC:qmigrate:132:root@pam:"
    assert return_schema_errors("POST", QM_MIGRATE, upid) == []
    assert return_schema_errors("GET", "/cluster/nextid", "100") == [
        "$: '100' is not of type 'integer'"
    ]
