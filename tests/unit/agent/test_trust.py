"""The agent's keyring (kanade.agent.trust): no keyring trusts nothing; a key set is
pinned only when newer; a swarm's verdict cache answers repeated commands once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from kanade.agent.trust import Trust, read_keyring, write_keyring
from kanade.core.signing import KeyPair, Keyring, Signer, TrustedKey, Verdict

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PAIR = KeyPair.generate()
SUBJECT = "kanade.cmd.all.hello"


def ring(*pairs: KeyPair, issued_at: datetime | None = None) -> Keyring:
    return Keyring.of([TrustedKey(p.kid, p.public_key) for p in pairs], issued_at)


def test_without_a_keyring_every_command_is_refused(tmp_path: Path) -> None:
    trust = Trust(tmp_path / "missing.json", clock=lambda: NOW)
    header = Signer(PAIR).command_headers(SUBJECT, b"{}")["Kanade-Signature"]
    assert trust.verify_command(SUBJECT, b"{}", header).verdict is Verdict.UNKNOWN_KEY


def test_a_newer_key_set_is_pinned_to_disk_and_an_older_one_ignored(tmp_path: Path) -> None:
    path = tmp_path / "trust" / "keyring.json"
    write_keyring(path, ring(PAIR))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    trust = Trust(path, clock=lambda: NOW)
    new = KeyPair.generate()
    assert trust.announce(ring(PAIR, new, issued_at=NOW).encode())
    assert set(read_keyring(path).keys) == {PAIR.kid, new.kid}
    older = ring(KeyPair.generate(), issued_at=NOW - timedelta(hours=1))
    assert not trust.announce(older.encode())
    assert not trust.announce(b"{not json")
    assert set(trust.keyring.keys) == {PAIR.kid, new.kid}


def test_a_swarm_cache_keys_verdicts_by_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    write_keyring(path, ring(PAIR))
    trust = Trust(path, clock=lambda: NOW, cache=True)
    header = Signer(PAIR).command_headers(SUBJECT, b"{}")["Kanade-Signature"]
    assert trust.verify_command(SUBJECT, b"{}", header).ok
    assert trust.verify_command(SUBJECT, b"{}", header).ok
    assert not trust.verify_command(SUBJECT, b"{ }", header).ok
    assert not trust.verify_command("kanade.cmd.all.other", b"{}", header).ok
