"""The answer files: valid TOML with the sections and kebab-case keys of the current (PVE 8.4+
and 9) installer, one fqdn and address per node, and the TOML writer behind them.

The key sets below are those of proxmox-auto-installer's answer.rs (structs Answer, Global,
NetworkInAnswer, DiskSetup, FirstBootHookInfo; serde rename_all = "kebab-case", with the old
snake_case names only as aliases) and the wiki page "Automated Installation".
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .conftest import CONFIG

SECTIONS = {
    "global": (
        {"country", "fqdn", "keyboard", "mailto", "timezone"},
        {
            "country",
            "fqdn",
            "keyboard",
            "mailto",
            "timezone",
            "root-password",
            "root-password-hashed",
            "reboot-on-error",
            "reboot-mode",
            "root-ssh-keys",
        },
    ),
    "network": ({"source"}, {"source", "cidr", "dns", "gateway", "filter"}),
    "disk-setup": (
        {"filesystem"},
        {"filesystem", "disk-list", "filter", "filter-match", "zfs", "lvm", "btrfs"},
    ),
    "first-boot": ({"source"}, {"source", "ordering", "url", "cert-fingerprint"}),
}
TOP_LEVEL = set(SECTIONS) | {"post-installation-webhook"}
KEBAB = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def _answers(pvelab: ModuleType, tmp_path: Path) -> dict[str, dict[str, Any]]:
    cfg = pvelab.load_config(CONFIG)
    paths = pvelab.write_answers(
        cfg, tmp_path, root_password="lab-password-1", ssh_public_key="ssh-ed25519 AAAAC3Nza test"
    )
    return {p.parent.name: tomllib.loads(p.read_text()) for p in paths}


def test_every_node_gets_an_answer_file_that_parses(pvelab: ModuleType, tmp_path: Path) -> None:
    answers = _answers(pvelab, tmp_path)
    assert sorted(answers) == ["pve1", "pve2", "pve3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pve1", "pve2", "pve3"]


def test_sections_and_keys_are_the_documented_ones(pvelab: ModuleType, tmp_path: Path) -> None:
    for node, answer in _answers(pvelab, tmp_path).items():
        assert set(answer) <= TOP_LEVEL, node
        for section, (required, allowed) in SECTIONS.items():
            assert section in answer, f"{node}: [{section}] missing"
            keys = set(answer[section])
            assert required <= keys, f"{node}: [{section}] lacks {required - keys}"
            assert keys <= allowed, f"{node}: [{section}] has unknown {keys - allowed}"
            assert all(KEBAB.fullmatch(k) for k in keys), f"{node}: [{section}] not kebab-case"


def test_values_are_what_the_installer_accepts(pvelab: ModuleType, tmp_path: Path) -> None:
    for answer in _answers(pvelab, tmp_path).values():
        g, net, disk, fb = (answer[s] for s in ("global", "network", "disk-setup", "first-boot"))
        # exactly one of the two password keys, at least 8 characters
        assert ("root-password" in g) != ("root-password-hashed" in g)
        assert len(g["root-password"]) >= 8
        assert g["root-ssh-keys"] == ["ssh-ed25519 AAAAC3Nza test"]
        assert g["reboot-mode"] in ("reboot", "power-off")
        assert g["keyboard"] == "en-us" and re.fullmatch(r"[a-z]{2}", g["country"])
        assert "@" in g["mailto"] and "/" in g["timezone"]
        # from-answer needs cidr, dns, gateway and a NIC filter
        assert net["source"] == "from-answer"
        assert {"cidr", "dns", "gateway", "filter"} <= set(net)
        assert set(net["filter"]) == {"ID_NET_NAME_MAC"}
        assert disk["filesystem"] in ("ext4", "xfs", "zfs", "btrfs")
        assert disk["disk-list"] == ["vda"] and "filter" not in disk
        assert fb["source"] in ("from-iso", "from-url")
        assert fb["ordering"] in ("before-network", "network-online", "fully-up")


def test_each_node_has_its_own_fqdn_address_and_nic(pvelab: ModuleType, tmp_path: Path) -> None:
    cfg = pvelab.load_config(CONFIG)
    answers = _answers(pvelab, tmp_path)
    network = ipaddress.IPv4Network(cfg.network)
    seen: set[str] = set()
    for node in cfg.nodes:
        a = answers[node.name]
        assert a["global"]["fqdn"] == f"{node.name}.{cfg.domain}"
        iface = ipaddress.IPv4Interface(a["network"]["cidr"])
        assert str(iface.ip) == node.ip and iface.network == network
        assert a["network"]["gateway"] == cfg.gateway
        mac = node.mac.replace(":", "")
        assert a["network"]["filter"]["ID_NET_NAME_MAC"] == f"*{mac}"
        seen |= {a["global"]["fqdn"], a["network"]["cidr"], mac}
    assert len(seen) == 3 * len(cfg.nodes)


def test_answer_uses_the_documented_dotted_filter_form(pvelab: ModuleType) -> None:
    cfg = pvelab.load_config(CONFIG)
    text = pvelab.render_answer(
        cfg, cfg.nodes[0], root_password="x" * 12, ssh_public_key="ssh-ed25519 K c"
    )
    assert 'filter.ID_NET_NAME_MAC = "*525400fb0011"' in text
    assert re.search(r"^\[disk-setup\]$", text, flags=re.M)
    assert "root_password" not in text and "disk_list" not in text


# -- the TOML writer ------------------------------------------------------------------------


def test_toml_writer_escapes_strings(pvelab: ModuleType) -> None:
    tricky = 'quote " backslash \\ tab \t newline \n bell \x07 del \x7f unicode é ☃'
    doc = {
        "global": {
            "root-password": tricky,
            "a key": "spaces",
            "n": 3,
            "f": 1.5,
            "b": False,
            "l": ["x", 'y"'],
        }
    }
    assert tomllib.loads(pvelab.toml_dumps(doc)) == doc


def test_toml_writer_nests_tables(pvelab: ModuleType) -> None:
    doc = {
        "top": 1,
        "disk-setup": {"filesystem": "zfs", "zfs": {"raid": "raid10"}, "deep": {"a": {"b": 1}}},
    }
    text = pvelab.toml_dumps(doc)
    assert 'zfs.raid = "raid10"' in text
    assert "[disk-setup.deep]\na.b = 1" in text
    assert tomllib.loads(text) == doc


def test_toml_writer_rejects_what_it_cannot_write(pvelab: ModuleType) -> None:
    with pytest.raises(ValueError):
        pvelab.toml_dumps({"a": {"b": object()}})
    with pytest.raises(ValueError):
        pvelab.toml_dumps({"a": {"b": float("nan")}})


keys = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
)
scalars = (
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
)
values = scalars | st.lists(st.text(max_size=10), max_size=4)
tables = st.dictionaries(keys, values | st.dictionaries(keys, values, max_size=3), max_size=5)


@given(st.dictionaries(keys, tables, min_size=1, max_size=4))
def test_toml_writer_round_trips(pvelab: ModuleType, doc: dict[str, Any]) -> None:
    assert tomllib.loads(pvelab.toml_dumps(doc)) == doc
