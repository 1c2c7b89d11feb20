"""The API client: which token it sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanade.cli import credentials
from kanade.cli.client import ApiClient


def test_api_client_token_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANADE_CREDENTIALS", str(tmp_path / "c.json"))
    monkeypatch.delenv("KANADE_TOKEN", raising=False)
    credentials.store("http://h:1", {"token": "stored"})

    def auth_of(token: str | None = None) -> str | None:
        with ApiClient("http://h:1", token=token) as api:
            header: str | None = api.headers.get("authorization")
            return header

    assert auth_of() == "Bearer stored"
    monkeypatch.setenv("KANADE_TOKEN", "env")
    assert auth_of() == "Bearer env"
    assert auth_of(token="explicit") == "Bearer explicit"
