"""Bridges a guest can use on a node include SDN vnets: PVE's `GET /nodes/{node}/network
?type=any_bridge` lists the node's local vnets (pve-manager API2/Network.pm calls
`PVE::Network::SDN::get_local_vnets()` for any_bridge) with `type: vnet`."""

from __future__ import annotations

from pvetool.api.convert import network_bridges


def test_any_bridge_answer_with_bridges_ovs_and_sdn_vnets() -> None:
    answer = [
        {"iface": "vmbr0", "type": "bridge", "active": 1, "bridge_ports": "eno1"},
        {"iface": "vmbr1", "type": "OVSBridge", "active": 1},
        {"iface": "tenant7", "type": "vnet", "zone": "evpnzone"},
        {"iface": "eno1", "type": "eth"},
        {"iface": "bond0", "type": "bond"},
    ]
    assert network_bridges(answer) == frozenset({"vmbr0", "vmbr1", "tenant7"})


def test_no_bridges() -> None:
    assert network_bridges([]) == frozenset()
    assert network_bridges([{"iface": "eno1", "type": "eth"}]) == frozenset()
