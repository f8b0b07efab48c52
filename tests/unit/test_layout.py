"""The import direction that design.md draws: builder and agent import plada, never each other;
the developer drivers in tools/ (and the benchmarks) may import both, and no product package
imports them (or the tests)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("plada", "builder", "agent", "tools", "bench")
_DEVELOPER = {"tools", "bench", "tests"}
FORBIDDEN: dict[str, set[str]] = {
    "plada": {"builder", "agent", "torch", "paho", "onnxruntime", *_DEVELOPER},
    "builder": {"agent", *_DEVELOPER},
    "agent": {"builder", "torch", *_DEVELOPER},
    "tools": {"bench", "tests"},
    "bench": {"tests"},
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", PACKAGES)
def test_layout_imports_run_one_way(package: str) -> None:
    # Prepare
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules under {package}/"
    # Execute
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules
        for name in sorted(_imported_roots(path) & FORBIDDEN[package])
    ]
    # Assert
    assert violations == []


def test_layout_checker_sees_violations(tmp_path: Path) -> None:
    # The checker itself must be able to fail.
    module = tmp_path / "m.py"
    module.write_text("import torch\nfrom agent.app import AgentApp\n", encoding="utf-8")
    assert _imported_roots(module) >= {"torch", "agent"}
