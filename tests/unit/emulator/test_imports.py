"""The house rule that keeps the emulator an independent check of the client.

The emulator imports nothing from pvetool but standard-library-only leaves (`timing`, `units`,
`yamlcheck`): never the model, the API client, the planner or anything else it is there to
check. The leaves themselves import only the standard library, PyYAML (`yamlcheck`) and each
other. Checked on the source (every import, also inside functions) and on a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "pvetool"
LEAVES = {"pvetool.timing", "pvetool.units", "pvetool.yamlcheck"}
LEAF_THIRD_PARTY = {"pvetool.yamlcheck": {"yaml"}}


def imported_modules(source: str, module: str) -> set[str]:
    """Every module `source` imports (absolute names; relative imports resolved)."""
    names: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def forbidden_pvetool_imports(source: str, module: str) -> set[str]:
    """What `module` (of the emulator) imports from pvetool beyond itself and the leaves."""
    out = set()
    for name in imported_modules(source, module):
        if name == "pvetool" or not name.startswith("pvetool."):
            continue
        if name.startswith("pvetool.emulator") or any(
            name == leaf or name.startswith(leaf + ".") for leaf in LEAVES
        ):
            continue
        out.add(name)
    return out


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


EMULATOR_MODULES = sorted((PACKAGE / "emulator").rglob("*.py"))


def test_the_checker_sees_a_forbidden_import() -> None:
    # The rule below must be able to fail: a lazy import of the model is caught.
    source = "def f():\n    from pvetool.model import Guest\n    import pvetool.api.client\n"
    assert forbidden_pvetool_imports(source, "pvetool.emulator.x") == {
        "pvetool.model",
        "pvetool.model.Guest",
        "pvetool.api.client",
    }
    assert forbidden_pvetool_imports("from pvetool import model\n", "pvetool.emulator.x") == {
        "pvetool.model"
    }
    assert not forbidden_pvetool_imports(
        "from pvetool.units import GiB\nfrom . import engine\n", "pvetool.emulator.x"
    )


@pytest.mark.parametrize("path", EMULATOR_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_emulator_imports_only_itself_and_the_leaves(path: Path) -> None:
    found = forbidden_pvetool_imports(path.read_text(encoding="utf-8"), module_name(path))
    assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_the_leaves_need_only_the_standard_library(leaf: str) -> None:
    path = ROOT / (leaf.replace(".", "/") + ".py")
    allowed = LEAF_THIRD_PARTY.get(leaf, set()) | {"__future__"}
    for name in imported_modules(path.read_text(encoding="utf-8"), leaf):
        top = name.split(".")[0]
        if top == "pvetool":
            assert name in LEAVES or name.rsplit(".", 1)[0] in LEAVES, f"{leaf} imports {name}"
        else:
            assert top in sys.stdlib_module_names or top in allowed, f"{leaf} imports {name}"


def test_a_running_emulator_loads_nothing_else_of_pvetool() -> None:
    code = (
        "import sys\n"
        "import pvetool.emulator.main, pvetool.emulator.server, pvetool.emulator.fleet\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('pvetool'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    others = [
        m for m in out if m not in {"pvetool", *LEAVES} and not m.startswith("pvetool.emulator")
    ]
    assert others == [], f"the emulator loaded {others}"
    assert "pvetool.emulator.endpoints.control" in out
