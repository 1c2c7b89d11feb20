"""kanade.core is pure (docs/ARCHITECTURE.md): importing all of it pulls in no I/O
library.

Two checks:
* at run time, in a fresh interpreter, ``sys.modules`` after importing every core module
  holds none of the I/O libraries. ``socket`` cannot be checked this way: pydantic's
  plugin loader imports ``importlib.metadata`` → ``email`` → ``socket`` as soon as any
  model class exists, which is harmless and not ours to change;
* statically, no core module has an ``import`` of an I/O module (``socket`` included).
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import kanade.core

RUNTIME_FORBIDDEN = [
    "nats",
    "sqlalchemy",
    "aiosqlite",
    "httpx",
    "fastapi",
    "uvicorn",
    "starlette",
    "asyncio.subprocess",
    "subprocess",
    "psutil",
    "alembic",
]
IMPORT_FORBIDDEN = {
    *RUNTIME_FORBIDDEN,
    "asyncio",
    "socket",
    "shutil",
    "kanade.agent",
    "kanade.backend",
    "kanade.bus",
    "kanade.cli",
}

PROBE = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _core_modules() -> list[str]:
    names = ["kanade.core"]
    for info in pkgutil.walk_packages(kanade.core.__path__, prefix="kanade.core."):
        names.append(info.name)
    return names


def _hits(module: str, forbidden: set[str] | list[str]) -> list[str]:
    return [f for f in forbidden if module == f or module.startswith(f + ".")]


def test_core_modules_found() -> None:
    names = _core_modules()
    for expected in (
        "kanade.core.durations",
        "kanade.core.validation",
        "kanade.core.schemas",
        "kanade.core.dispatch",
        "kanade.core.models.job",
        "kanade.core.models.schedule",
    ):
        assert expected in names


def test_core_imports_no_io_library_at_run_time() -> None:
    names = _core_modules()
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(names)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    loaded = json.loads(out.stdout)
    bad = sorted(mod for mod in loaded if _hits(mod, RUNTIME_FORBIDDEN))
    assert not bad, f"kanade.core pulled in: {bad}"


def test_core_sources_import_no_io_module() -> None:
    root = Path(kanade.core.__path__[0])
    bad: list[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            else:
                continue
            bad += [f"{path.relative_to(root)}: {m}" for m in mods if _hits(m, IMPORT_FORBIDDEN)]
    assert not bad, bad
