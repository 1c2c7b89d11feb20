"""kanade.security.userkeys: only a well-formed nkey *user* public key passes."""

from __future__ import annotations

from kanade.security import nats_jwt
from kanade.security.userkeys import user_key_problem


def test_a_user_public_key_passes() -> None:
    assert user_key_problem(nats_jwt.new_identity("user").public_key) is None


def test_other_keys_and_garbage_are_refused_with_the_reason() -> None:
    user = nats_jwt.new_identity("user")
    flipped = user.public_key[:-1] + ("A" if user.public_key[-1] != "A" else "B")
    assert "checksum" in (user_key_problem(flipped) or "")
    assert "base32" in (user_key_problem("U" + "!" * 55) or "")
    for bad in (
        nats_jwt.new_identity("account").public_key,  # an account key, not a user's
        user.seed,  # a seed must never be accepted as a public key
        "",
        "U" * 10,
    ):
        assert user_key_problem(bad) is not None, bad
