"""The API client: which token it sends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kanade.cli import credentials
from kanade.cli.client import QUERY_OPTIONS, ApiClient, error_for, option_for


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


def test_error_details_name_the_cli_options_not_api_fields() -> None:
    options = {**QUERY_OPTIONS, "target.pcs": "--pc"}
    assert option_for("query.n", options) == "-n"
    assert option_for("target.pcs[0]", options) == "--pc"
    assert option_for("target.pcsx", options) == "target.pcsx"  # a prefix is not a field
    err = error_for(400, "Bad Request", json.dumps({
        "error": "unknown pc 'nosuch'", "overridable_by": "force",
        "errors": [{"path": "target.pcs[0]", "reason": "no pc named 'nosuch' is known"}],
    }).encode(), options)  # fmt: skip
    assert err.details == ["--pc: no pc named 'nosuch' is known"]
    assert err.message.endswith("pass --force to use it anyway") and err.status == 400
    assert err.to_dict()["errors"][0]["path"] == "target.pcs[0]"  # the API's, for scripts
