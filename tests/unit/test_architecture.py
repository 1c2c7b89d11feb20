"""The package layering of docs/ARCHITECTURE.md, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "kanade"

# package -> kanade packages it must never import
FORBIDDEN = {
    "core": {"bus", "agent", "backend", "cli", "bench"},
    "bus": {"agent", "backend", "cli", "bench"},
    "agent": {"backend", "cli", "bench"},
    "backend": {"agent", "cli", "bench"},
}


def _kanade_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "kanade" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    offenders = []
    for path in sorted((SRC / package).rglob("*.py")):
        bad = _kanade_imports(path) & FORBIDDEN[package]
        if bad:
            names = ", ".join(f"kanade.{b}" for b in sorted(bad))
            offenders.append(f"{path.relative_to(SRC)} imports {names}")
    assert not offenders, "\n".join(offenders)
