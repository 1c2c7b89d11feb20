"""Tokens from ``kanade login``: a private file, one entry per backend URL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kanade.cli import credentials


def test_credentials_file_is_private_and_per_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cfg" / "credentials.json"
    monkeypatch.setenv("KANADE_CREDENTIALS", str(path))
    credentials.store("http://a:8080/", {"token": "ta"})
    credentials.store("http://b:8080", {"token": "tb"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials.stored_token("http://a:8080") == "ta"
    assert credentials.stored_token("http://b:8080/") == "tb"
    assert credentials.stored_token("http://c:8080") is None
    assert credentials.forget("http://a:8080") and not credentials.forget("http://a:8080")
    assert credentials.stored_token("http://a:8080") is None
    assert credentials.stored_token("http://b:8080") == "tb"
