"""The README's two commands: `make up` installs only what running kanade needs; `make test`
adds the test and lint tools (issue #18, item 9: Playwright alone is ~165 MB)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _dry_run(target: str, venv: Path) -> str:
    # A venv path that does not exist: make plans the whole install, runs nothing.
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_up_installs_the_runtime_only(tmp_path: Path) -> None:
    plan = _dry_run("up", tmp_path / "venv")
    assert "pip install --quiet --disable-pip-version-check -e '.[server]'" in plan
    assert ".[dev]" not in plan


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_adds_the_dev_tools(tmp_path: Path) -> None:
    plan = _dry_run("test", tmp_path / "venv")
    assert "-e '.[dev]'" in plan
    # Files in parallel workers, a file's tests together (they share a module's stack).
    assert '-m "not slow" -n 3 --dist loadfile' in plan


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_installs_postgresql_when_missing(tmp_path: Path) -> None:
    # The store suites run on PostgreSQL too (tests/pgdb.py): the server comes from apt.
    for target in ("test", "test-all"):
        plan = _dry_run(target, tmp_path / "venv")
        assert "apt-get install -y -qq postgresql" in plan
