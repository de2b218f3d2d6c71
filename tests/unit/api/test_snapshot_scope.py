"""fetch_snapshot reads only the guest configs a plan can use (issue 14): a drain of pve1 reads
pve1's guests' configs and no other guest's, and still sees every guest of the cluster."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from pvetool.api import PveClient, fetch_snapshot
from pvetool.emulator.server import Emulator
from pvetool.settings import load_settings
from tests.emu import start

CONFIG = re.compile(r"^GET /nodes/([^/]+)/(qemu|lxc)/(\d+)/config$")


@pytest.fixture
def lab() -> Iterator[Emulator]:
    emu = start("lab")
    try:
        yield emu
    finally:
        emu.stop()


def _configs_read(emu: Emulator) -> set[int]:
    return {
        int(m.group(3)) for key in emu.stats.by_endpoint if (m := CONFIG.match(key)) is not None
    }


def test_configs_on_reads_only_that_nodes_guests(lab: Emulator) -> None:
    with PveClient(load_settings(env=lab.env(), config_path=None)) as client:
        snap = fetch_snapshot(client, configs_on=["pve1"])
    on_pve1 = {g.vmid for g in snap.guests.values() if g.node == "pve1"}
    assert on_pve1 and len(snap.guests) > len(on_pve1)  # the others are still there
    assert _configs_read(lab) == on_pve1
    for guest in snap.guests.values():
        assert guest.config_known == (guest.vmid in on_pve1), guest.vmid
        assert guest.memory_bytes > 0  # from /cluster/resources for every guest


def test_configs_of_reads_one_guest(lab: Emulator) -> None:
    with PveClient(load_settings(env=lab.env(), config_path=None)) as client:
        snap = fetch_snapshot(client, configs_of=[113])
    assert _configs_read(lab) == {113}
    assert snap.guests[113].config_known


def test_default_reads_every_config(lab: Emulator) -> None:
    with PveClient(load_settings(env=lab.env(), config_path=None)) as client:
        snap = fetch_snapshot(client)
    online = {n for n, e in snap.nodes.items() if e.online}
    assert _configs_read(lab) == {g.vmid for g in snap.guests.values() if g.node in online}
