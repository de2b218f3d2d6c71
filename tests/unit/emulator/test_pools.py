"""The emulator's resource pools as pve-manager `PVE/API2/Pool.pm` has them: create-if-absent
under the user.cfg lock (`create_pool`), read with its comment (`index` with ``poolid``), delete
only when empty (`delete_pool`), Pool.Allocate on /pool/{poolid} for writes. What the run
marker of `pvetool.state.lock` relies on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pvetool.emulator.server import Emulator
from tests.emu import Api, start


@pytest.fixture
def lab() -> Iterator[Emulator]:
    emu = start("lab")
    try:
        yield emu
    finally:
        emu.stop()


def test_create_read_delete(lab: Emulator) -> None:
    api = Api(lab)
    assert api.call("POST", "/pools", poolid="pvetool-run", comment='{"run":"x"}').status == 200
    [entry] = api.get("/pools", poolid="pvetool-run")
    assert entry["poolid"] == "pvetool-run" and entry["comment"] == '{"run":"x"}'
    assert entry["members"] == []
    assert "pvetool-run" in [p["poolid"] for p in api.get("/pools")]
    pools = [r["pool"] for r in api.get("/cluster/resources") if r["type"] == "pool"]
    assert "pvetool-run" in pools
    assert api.call("DELETE", "/pools", poolid="pvetool-run").status == 200
    gone = api.call("GET", "/pools", poolid="pvetool-run")
    assert gone.status == 500 and "pool 'pvetool-run' does not exist" in gone.reason


def test_a_second_create_is_refused_as_pve_does(lab: Emulator) -> None:
    api = Api(lab)
    assert api.call("POST", "/pools", poolid="pvetool-run").status == 200
    again = api.call("POST", "/pools", poolid="pvetool-run", comment="other")
    # Pool.pm l.191 under lock_user_config("create pool failed"): AccessControl.pm l.90-91
    assert again.status == 500
    assert again.reason == "create pool failed: pool 'pvetool-run' already exists"
    [entry] = api.get("/pools", poolid="pvetool-run")
    assert "comment" not in entry  # the first create's (empty) record stays


def test_nested_pools_need_their_parent_and_a_letter(lab: Emulator) -> None:
    api = Api(lab)
    orphan = api.call("POST", "/pools", poolid="pvetool/run")
    assert orphan.status == 500
    assert "parent 'pvetool' of pool 'pvetool/run' does not exist" in orphan.reason
    assert api.call("POST", "/pools", poolid="pvetool").status == 200
    assert api.call("POST", "/pools", poolid="pvetool/run").status == 200
    digit = api.call("POST", "/pools", poolid="pvetool/9run")
    assert digit.status == 500 and "pool name must start with a letter" in digit.reason
    busy = api.call("DELETE", "/pools", poolid="pvetool")
    assert busy.status == 500 and "contains pool 'pvetool/run'" in busy.reason


def test_a_pool_with_guests_is_not_deleted(lab: Emulator) -> None:
    api = Api(lab)
    pools = {g["pool"] for g in api.get("/cluster/resources", type="vm") if g.get("pool")}
    assert pools, "the lab has guests in pools"
    pool = sorted(pools)[0]
    refused = api.call("DELETE", "/pools", poolid=pool)
    assert refused.status == 500 and f"pool '{pool}' is not empty (contains VM" in refused.reason


def test_writes_need_pool_allocate(lab: Emulator) -> None:
    ro = Api(lab, token=("auditor@pve!ro", "1ab1ab1a-0000-4000-8000-000000000002"))
    denied = ro.call("POST", "/pools", poolid="pvetool-run")
    assert denied.status == 403
    assert Api(lab).call("POST", "/pools", poolid="pvetool-run").status == 200
    assert ro.call("DELETE", "/pools", poolid="pvetool-run").status == 403
