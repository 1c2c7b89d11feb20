"""NATS credentials: JWT claims round-trip, signatures verify, creds files parse."""

from __future__ import annotations

import base64

import nkeys
import pytest

from kanade.security import nats_jwt


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_jwt_is_signed_by_the_issuer_and_carries_the_claims() -> None:
    account = nats_jwt.new_identity("account")
    user = nats_jwt.new_identity("user")
    token = nats_jwt.encode_jwt(
        account,
        user.public_key,
        "agent-a",
        nats_jwt.user_claims(pub_allow=["a.b"], sub_allow=[], allow_responses=True),
    )
    claims = nats_jwt.decode_claims(token)
    assert claims["iss"] == account.public_key and claims["sub"] == user.public_key
    assert claims["nats"]["pub"] == {"allow": ["a.b"]}
    assert claims["nats"]["sub"] == {"deny": [">"]}  # an empty allow list allows nothing
    assert claims["nats"]["resp"] == {"max": 1, "ttl": 0}
    assert claims["nats"]["type"] == "user" and claims["nats"]["version"] == 2
    head, body, sig = token.split(".")
    verifier = nkeys.from_seed(account.seed.encode())
    assert verifier.verify(f"{head}.{body}".encode(), _unb64(sig))
    with pytest.raises(nkeys.ErrInvalidSignature):
        verifier.verify(f"{head}.{body}x".encode(), _unb64(sig))


def test_identities_have_the_right_prefix() -> None:
    assert nats_jwt.new_identity("operator").public_key.startswith("O")
    assert nats_jwt.new_identity("account").public_key.startswith("A")
    user = nats_jwt.new_identity("user")
    assert user.public_key.startswith("U") and user.seed.startswith("SU")


def test_creds_round_trip_and_bad_creds_name_the_missing_block() -> None:
    user = nats_jwt.new_identity("user")
    text = nats_jwt.creds_text("head.body.sig", user.seed)
    assert nats_jwt.parse_creds(text) == ("head.body.sig", user.seed)
    with pytest.raises(ValueError, match="seed"):
        nats_jwt.parse_creds(text.split("-----BEGIN USER NKEY SEED-----")[0])
    with pytest.raises(ValueError, match="not a NATS JWT"):
        nats_jwt.decode_claims("garbage")


def test_revocations_are_account_claims() -> None:
    claims = nats_jwt.account_claims(jetstream=True, revocations={"UB": 5, "UA": 7})
    assert claims["revocations"] == {"UA": 7, "UB": 5}
    assert claims["limits"]["disk_storage"] == -1
    assert "revocations" not in nats_jwt.account_claims(jetstream=False)
