"""``kanade agent build``: the single-file agent (SPEC §3.9, issue #17 item 1).

A zipapp an operator copies to a machine that has nothing but CPython 3.11+ and runs with
``python3 kanade-agent.pyz run`` (or installs with ``… install``). Inside it:

* ``__main__.py`` — the bootstrap (:data:`BOOTSTRAP`, stdlib only);
* ``kanade-release.json`` — version, platform tag, build id, the distributions inside;
* ``lib/`` — the agent's part of kanade (``agent``, ``bus``, ``core``, ``security``, the
  top-level modules they import) and every distribution the agent needs, with their
  ``dist-info``.

Binary modules (pydantic-core, PyNaCl, psutil, PyYAML's loader) cannot be imported from a
zip, so the bootstrap unpacks ``lib/`` once per build next to the archive and runs from
there; an unpacked tree also imports faster than a zip and costs no zip index in memory.
Because of them a build is for one platform tag (OS, machine, CPython minor:
:func:`kanade.core.releases.platform_tag`). The default build copies the distributions
installed in the running interpreter (offline, the same versions the tests ran);
``--wheels DIR`` takes every wheel in DIR instead, e.g. one ``pip download`` made for
another platform.

Builds are reproducible: entries sorted, fixed timestamps, so the same inputs give the same
sha256. No byte code is shipped: the unpacked tree is the agent's own, so the interpreter
writes ``__pycache__`` there for the modules the agent actually imports (a fifth of them).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import kanade
from kanade.core.releases import platform_tag

# The agent's distributions: pyproject.toml's base dependencies, by name
# (tests/unit/test_packaging.py keeps the two lists equal).
AGENT_DISTRIBUTIONS = (
    "nats-py",
    "pydantic",
    "PyYAML",
    "cronsim",
    "tzdata",
    "tzlocal",
    "psutil",
    "httpx",
    "nkeys",
    "PyNaCl",
)
# The parts of the kanade package an agent imports; the backend, the CLI and the
# benchmarks stay out (import-linter keeps the agent from importing them).
KANADE_PARTS = ("agent", "bus", "core", "security")
KANADE_MODULES = (
    "__init__.py", "worker.py", "logsetup.py", "extras.py", "deathsig.py", "py.typed",
)
MANIFEST = "kanade-release.json"
LIB = "lib"
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__"}


class BuildError(Exception):
    """The artefact cannot be built; the message says why."""


@dataclass(frozen=True)
class Built:
    path: Path
    version: str
    platform: str
    build_id: str
    sha256: str
    size: int
    files: int
    seconds: float
    distributions: dict[str, str]


BOOTSTRAP = '''\
"""kanade single-file agent: unpacks its libraries once per build, then runs kanade-agent."""
import os
import sys

_BUILD = __loader__.get_data("BUILD_ID").decode().strip()
_ARCHIVE = os.path.dirname(os.path.abspath(__file__))
_MARK = ".complete"


def _candidates():
    env = os.environ.get("KANADE_AGENT_UNPACK_DIR")
    if env:
        yield env
    yield os.path.join(os.path.dirname(_ARCHIVE), ".kanade-agent-lib")
    home = os.path.expanduser("~")
    if home and home != "~":
        yield os.path.join(home, ".cache", "kanade-agent")


def _unpack(root):
    import zipfile  # first start of a build only: zipfile pulls in shutil, bz2, lzma

    os.makedirs(root, mode=0o755, exist_ok=True)
    target = os.path.join(root, _BUILD)
    tmp = "%s.tmp-%d" % (target, os.getpid())
    with zipfile.ZipFile(_ARCHIVE) as zf:
        for name in zf.namelist():
            if name.startswith("lib/") and not name.endswith("/"):
                zf.extract(name, tmp)
    open(os.path.join(tmp, "lib", _MARK), "w").close()
    try:
        os.replace(tmp, target)
    except OSError:  # another process unpacked it first: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(target, "lib")


def _lib():
    errors = []
    for root in _candidates():
        lib = os.path.join(root, _BUILD, "lib")
        if os.path.exists(os.path.join(lib, _MARK)):
            return lib, False
        try:
            return _unpack(root), True
        except OSError as exc:
            errors.append("%s: %s" % (root, exc))
    sys.exit("kanade-agent: cannot unpack the agent's libraries (" + "; ".join(errors)
             + "); set KANADE_AGENT_UNPACK_DIR to a writable directory")


def main():
    lib, fresh = _lib()
    if fresh and os.name == "posix" and not os.environ.get("KANADE_AGENT_REEXEC"):
        # A clean process: the unpacking modules would stay resident in the agent for good.
        os.environ["KANADE_AGENT_REEXEC"] = "1"
        sys.stdout.flush()
        os.execv(sys.executable, sys.orig_argv)
    os.environ.pop("KANADE_AGENT_REEXEC", None)
    os.environ["KANADE_AGENT_ARTEFACT"] = _ARCHIVE
    sys.path[:] = [lib] + [p for p in sys.path if p != _ARCHIVE]
    sys.path_importer_cache.pop(_ARCHIVE, None)
    sys.argv[0] = _ARCHIVE
    from kanade.agent.cli import main as agent_main

    sys.exit(agent_main(sys.argv[1:]))


main()
'''


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_env() -> Callable[[str], bool]:
    try:
        from packaging.markers import Marker
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.markers import Marker  # type: ignore[assignment]

    def holds(marker: str) -> bool:
        return bool(Marker(marker).evaluate({"extra": ""}))

    return holds


def _requirement_name(requirement: str) -> tuple[str, str | None]:
    spec, _, marker = requirement.partition(";")
    name = re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0]
    return name, (marker.strip() or None)


def closure(roots: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``roots`` need, with their dependencies (markers evaluated
    for this interpreter; extras never followed)."""
    holds = _marker_env()
    found: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if _norm(name) in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise BuildError(
                f"{name} is not installed in this interpreter ({sys.executable}); install "
                "kanade here first, or build from wheels: --wheels DIR"
            ) from None
        found[_norm(name)] = dist
        for requirement in dist.requires or []:
            dep, marker = _requirement_name(requirement)
            if marker is None or holds(marker):
                todo.append(dep)
    return found


def _copy_distribution(dist: metadata.Distribution, lib: Path) -> None:
    for file in dist.files or []:
        parts = Path(str(file)).parts
        if not parts or parts[0] == ".." or _SKIP_DIRS & set(parts) or file.suffix == ".pyc":
            continue
        source = Path(str(dist.locate_file(file)))
        if source.is_file():
            target = lib / Path(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _unpack_wheel(wheel: Path, lib: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            parts = Path(info.filename).parts
            # <name>.data/ holds scripts and headers: nothing the agent imports.
            if info.is_dir() or not parts or parts[0].endswith(".data"):
                continue
            zf.extract(info, lib)


def _copy_kanade(source: Path, lib: Path) -> None:
    target = lib / "kanade"
    for part in KANADE_PARTS:
        shutil.copytree(
            source / part, target / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    for module in KANADE_MODULES:
        if (source / module).exists():
            shutil.copy2(source / module, target / module)


def _set_version(lib: Path, version: str) -> None:
    init = lib / "kanade" / "__init__.py"
    text, count = re.subn(
        r'^__version__ = "[^"]*"$', f'__version__ = "{version}"', init.read_text(), flags=re.M
    )
    if count != 1:
        raise BuildError(f"{init}: no __version__ line to set")
    init.write_text(text)


def _read_version(lib: Path) -> str:
    found = re.search(r'^__version__ = "([^"]*)"$', (lib / "kanade" / "__init__.py").read_text(),
                      flags=re.M)
    if found is None:
        raise BuildError("the kanade package in the build has no __version__")
    return found.group(1)


def _files(lib: Path) -> list[Path]:
    return sorted(p for p in lib.rglob("*") if p.is_file())


def _build_id(lib: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(lib).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _write_zip(out: Path, lib: Path, files: list[Path], manifest: dict[str, Any],
               build_id: str) -> None:
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:

            def add(name: str, data: bytes, mode: int = 0o644) -> None:
                info = zipfile.ZipInfo(name, date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o100000 | mode) << 16
                zf.writestr(info, data)

            add("__main__.py", BOOTSTRAP.encode())
            add("BUILD_ID", build_id.encode() + b"\n")
            add(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
            for path in files:
                mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                add(f"{LIB}/{path.relative_to(lib).as_posix()}", path.read_bytes(), mode)
    tmp.chmod(0o755)
    tmp.replace(out)


def build(
    out: Path,
    *,
    wheels: Path | None = None,
    kanade_source: Path | None = None,
    version: str | None = None,
    patch: Callable[[Path], None] | None = None,
) -> Built:
    """Build the single-file agent at ``out``.

    ``kanade_source`` is the kanade package directory to take (default: the one running);
    ``version`` overrides its ``__version__`` and ``patch`` edits the staged ``lib/`` before
    it is packed (tests build distinct, and broken, releases with them).
    """
    started = time.monotonic()
    source = kanade_source or Path(kanade.__file__).parent
    with tempfile.TemporaryDirectory(prefix="kanade-agent-build-") as tmp:
        lib = Path(tmp) / LIB
        lib.mkdir()
        versions: dict[str, str] = {}
        if wheels is not None:
            found = sorted(wheels.glob("*.whl"))
            if not found:
                raise BuildError(f"{wheels}: no wheel (*.whl) in it")
            for wheel in found:
                name, dist_version = wheel.name.split("-")[:2]
                if _norm(name) == "kanade":
                    continue  # the kanade package comes from source, agent parts only
                _unpack_wheel(wheel, lib)
                versions[_norm(name)] = dist_version
            target = _wheel_platform(found)
        else:
            for key, dist in sorted(closure(AGENT_DISTRIBUTIONS).items()):
                _copy_distribution(dist, lib)
                versions[key] = dist.version
            target = platform_tag(sys.platform, _machine(), sys.version_info[:2])
        _copy_kanade(source, lib)
        if version is not None:
            _set_version(lib, version)
        if patch is not None:
            patch(lib)
        files = _files(lib)
        build_id = _build_id(lib, files)
        manifest = {
            "name": "kanade-agent",
            "version": _read_version(lib),
            "platform": target,
            "build_id": build_id,
            "distributions": versions,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_zip(out, lib, files, manifest, build_id)
    data = out.read_bytes()
    return Built(
        path=out,
        version=str(manifest["version"]),
        platform=target,
        build_id=build_id,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        files=len(files),
        seconds=time.monotonic() - started,
        distributions=versions,
    )


def _machine() -> str:
    import platform

    return platform.machine()


def _wheel_platform(wheels: list[Path]) -> str:
    """The platform tag of a wheel set, from its binary wheels' tags."""
    for wheel in wheels:
        python, abi, plat = wheel.stem.split("-")[-3:]
        if plat == "any" or abi in ("abi3", "none"):
            continue  # a version-specific binary wheel names the CPython minor
        system = (
            "win32" if plat.startswith("win")
            else "darwin" if plat.startswith("macosx")
            else "linux"
        )
        machine = re.sub(r"^(manylinux|musllinux|macosx)_[0-9]+_[0-9]+_|^win_?", "", plat)
        machine = machine.split(".")[0] or "unknown"
        cp = re.match(r"cp(\d)(\d+)", python)
        if cp is None:
            continue
        return platform_tag(system, machine, (int(cp.group(1)), int(cp.group(2))))
    raise BuildError("no binary wheel in the set names a platform (cpXY-…-PLATFORM)")


def read_manifest(artefact: Path) -> dict[str, Any]:
    """The release manifest inside a built artefact."""
    try:
        with zipfile.ZipFile(artefact) as zf:
            manifest: dict[str, Any] = json.loads(zf.read(MANIFEST))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise BuildError(f"{artefact} is not a kanade agent artefact ({exc})") from None
    return manifest
