"""Every conformance test names the Proxmox source it follows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conformance.sources import COMMITS

HERE = Path(__file__).parent


def _tests_without_source(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    missing = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
            continue
        sources = [
            d
            for d in node.decorator_list
            if isinstance(d, ast.Call) and ast.unparse(d.func) == "pytest.mark.source"
        ]
        ok = bool(sources) and all(
            len(d.args) == 4
            and isinstance(d.args[0], ast.Constant)
            and all(repo.strip() in COMMITS for repo in str(d.args[0].value).split(";"))
            for d in sources
        )
        if not ok:
            missing.append(f"{path.name}::{node.name}")
    return missing


@pytest.mark.source("pve-common", "-", "-", "-")
def test_every_conformance_test_cites_its_source() -> None:
    modules = sorted(p for p in HERE.glob("test_*.py") if p.name != "test_meta.py")
    assert modules, "no conformance modules found"
    missing = [name for path in modules for name in _tests_without_source(path)]
    assert missing == []


@pytest.mark.source("pve-common", "-", "-", "-")
def test_the_checker_sees_a_test_without_a_source(tmp_path: Path) -> None:
    bad = tmp_path / "test_x.py"
    bad.write_text(
        "import pytest\n"
        "def test_a():\n    pass\n"
        "@pytest.mark.source('nope', 'p', 'f', 'l')\ndef test_b():\n    pass\n"
        "@pytest.mark.source('qemu-server', 'p', 'f', 'l')\ndef test_c():\n    pass\n"
        "@pytest.mark.source('qemu-server; pve-common', 'p', 'f', 'l')\ndef test_d():\n    pass\n"
        "@pytest.mark.source('qemu-server; nope', 'p', 'f', 'l')\ndef test_e():\n    pass\n"
    )
    assert _tests_without_source(bad) == [
        "test_x.py::test_a",
        "test_x.py::test_b",
        "test_x.py::test_e",
    ]
