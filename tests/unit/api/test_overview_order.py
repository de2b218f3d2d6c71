"""`status` lists nodes as an administrator counts them (`pvetool.api.overview.node_order`)."""

from __future__ import annotations

from pvetool.api.overview import node_order


def test_nodes_are_in_natural_order() -> None:
    names = ["pve10", "pve2", "pve100", "pve1", "node-b", "node-a2", "node-a10", "pve11"]
    assert sorted(names, key=node_order) == [
        "node-a2",
        "node-a10",
        "node-b",
        "pve1",
        "pve2",
        "pve10",
        "pve11",
        "pve100",
    ]


def test_names_with_leading_digits_or_none_still_compare() -> None:
    names = ["7b", "a", "10", "2", "a1"]
    assert sorted(names, key=node_order) == ["2", "7b", "10", "a", "a1"]
