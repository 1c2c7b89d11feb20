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


# --- core never reads a clock ---------------------------------------------------------------
# ``now`` is always a parameter (an injected kanade.core.instants.Clock); the one real clock,
# system_clock, is defined in kanade.core.instants and only called by the processes.
CLOCK_READS = {
    "datetime.now",
    "datetime.datetime.now",
    "datetime.utcnow",
    "datetime.datetime.utcnow",
    "datetime.today",
    "datetime.datetime.today",
    "date.today",
    "datetime.date.today",
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.perf_counter",
    "time.localtime",
    "time.gmtime",
}
CLOCK_IMPORTS = {("time", n) for n in ("time", "time_ns", "monotonic", "monotonic_ns")}
CLOCK_ALLOWED = {("instants.py", "system_clock")}


def _clock_reads(path: Path, root: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = str(path.relative_to(root))
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and (rel, node.name) in CLOCK_ALLOWED:
            allowed |= {id(sub) for sub in ast.walk(node)}
    bad: list[str] = []
    for node in ast.walk(tree):
        if id(node) in allowed:
            continue
        if isinstance(node, ast.Attribute):
            dotted = ast.unparse(node)
            if dotted in CLOCK_READS or node.attr == "utcnow":
                bad.append(f"{rel}:{node.lineno}: {dotted}")
        elif isinstance(node, ast.Name) and node.id == "utcnow":
            bad.append(f"{rel}:{node.lineno}: utcnow")
        elif isinstance(node, ast.FunctionDef) and node.name == "utcnow":
            bad.append(f"{rel}:{node.lineno}: def utcnow")
        elif isinstance(node, ast.ImportFrom) and node.module:
            bad += [
                f"{rel}:{node.lineno}: from {node.module} import {a.name}"
                for a in node.names
                if (node.module, a.name) in CLOCK_IMPORTS
            ]
    return bad


def test_core_never_reads_a_clock() -> None:
    root = Path(kanade.core.__path__[0])
    bad = [hit for path in sorted(root.rglob("*.py")) for hit in _clock_reads(path, root)]
    assert not bad, bad


def test_clock_scan_sees_a_clock_read(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import time\nfrom datetime import date, datetime\n"
        "a = datetime.now()\nb = time.monotonic()\nc = date.today()\n"
        "def system_clock():\n    return datetime.now()\n"
    )
    hits = _clock_reads(sample, tmp_path)
    assert [h.split(": ", 1)[1] for h in hits] == [
        "datetime.now", "time.monotonic", "date.today", "datetime.now"
    ]  # fmt: skip  (system_clock is allowed in instants.py only)
