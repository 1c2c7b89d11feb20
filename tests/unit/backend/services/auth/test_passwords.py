"""Password hashing (kanade.backend.services.auth.passwords): argon2id, verify, reject."""

from __future__ import annotations

from kanade.backend.services.auth.passwords import hash_password, verify_password


def test_password_hashes() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$") and "correct" not in h
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong horse")
    assert not verify_password(None, "kanade-no-such-user")  # unknown user never matches
    assert not verify_password("garbage", "x")
