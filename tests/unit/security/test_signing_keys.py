"""The backend's signing-key directory (kanade.security.signing_keys): created owner-only
and only once, rotated with an overlap, refused with the path and reason when broken."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kanade.cli.main import build_app
from kanade.core.signing import Keyring
from kanade.security.signing_keys import (
    KEYS_FILE,
    SigningKeysError,
    ensure_key_dir,
    load_key_dir,
    resolve_key_dir,
    rotate_key_dir,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_ensure_creates_one_key_owner_only_and_never_replaces_it(tmp_path: Path) -> None:
    keys, created = ensure_key_dir(tmp_path / "keys", clock=lambda: NOW)
    assert created
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "keys" / KEYS_FILE).stat().st_mode & 0o777 == 0o600
    again, created_again = ensure_key_dir(tmp_path / "keys")
    assert not created_again and again == keys


def test_rotation_keeps_the_old_key_until_its_retire_instant(tmp_path: Path) -> None:
    ensure_key_dir(tmp_path, clock=lambda: NOW)
    before, after = rotate_key_dir(tmp_path, overlap=timedelta(hours=2), clock=lambda: NOW)
    assert after.active != before.active
    retire = {k.pair.kid: k.retire_at for k in after.keys}
    assert retire == {before.active: NOW + timedelta(hours=2), after.active: None}
    assert load_key_dir(tmp_path) == after
    ring = after.keyring()
    assert ring.trusted(before.active, NOW + timedelta(hours=1)) is not None
    assert ring.trusted(before.active, NOW + timedelta(hours=2)) is None
    # A later rotation drops keys already retired.
    _, third = rotate_key_dir(tmp_path, clock=lambda: NOW + timedelta(hours=3))
    assert before.active not in {k.pair.kid for k in third.keys}


def test_a_broken_key_file_is_refused_with_its_path(tmp_path: Path) -> None:
    ensure_key_dir(tmp_path)
    doc = json.loads((tmp_path / KEYS_FILE).read_text())
    doc["active"] = "0123456789abcdef"
    (tmp_path / KEYS_FILE).write_text(json.dumps(doc))
    with pytest.raises(SigningKeysError, match=r"signing-keys.json: active"):
        load_key_dir(tmp_path)
    (tmp_path / KEYS_FILE).write_text("{")
    with pytest.raises(SigningKeysError, match="unreadable"):
        load_key_dir(tmp_path)


def test_the_key_dir_defaults_next_to_a_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KANADE_SIGNING_KEYS", raising=False)
    assert resolve_key_dir(None, f"sqlite:///{tmp_path}/kanade.db") == tmp_path / "keys"
    assert resolve_key_dir("/k", f"sqlite:///{tmp_path}/kanade.db") == Path("/k")
    with pytest.raises(SigningKeysError, match="--signing-keys"):
        resolve_key_dir(None, "postgresql://db/kanade")
    monkeypatch.setenv("KANADE_SIGNING_KEYS", str(tmp_path / "env"))
    assert resolve_key_dir(None, "postgresql://db/kanade") == tmp_path / "env"


def test_kanade_keys_init_is_idempotent_and_writes_the_agents_keyring(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["keys", "init", str(tmp_path / "keys"), "--keyring", str(tmp_path / "ring.json")]
    first = runner.invoke(build_app(), [*args, "--json"])
    assert first.exit_code == 0, first.output
    view = json.loads(first.output)
    assert view["created"] is True
    second = json.loads(runner.invoke(build_app(), [*args, "--json"]).output)
    assert second == {**view, "created": False}
    ring = Keyring.decode((tmp_path / "ring.json").read_bytes())
    assert list(ring.keys) == [view["active"]]
    assert (tmp_path / "ring.json").stat().st_mode & 0o777 == 0o600
