"""The example jobs ship in the package: `kanade up` loads them wherever it runs from."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from kanade.cli.supervisor import EXAMPLE_JOBS

ROOT = Path(__file__).resolve().parents[3]


def test_the_example_jobs_live_in_the_package() -> None:
    assert EXAMPLE_JOBS.is_relative_to(ROOT / "src" / "kanade")
    assert {p.stem for p in EXAMPLE_JOBS.glob("*.yaml")} == {"disk-usage", "hello",
                                                             "uptime-check"}  # fmt: skip


def test_every_example_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["kanade"]
    package = ROOT / "src" / "kanade"
    files = [p.relative_to(package).as_posix() for p in (package / "examples").rglob("*")
             if p.is_file()]  # fmt: skip
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert missing == []
