"""Command and KV-document signatures (kanade.core.signing): what verifies and what never
does, for any input."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kanade.core.signing import (
    SIGNATURE_HEADER,
    KeyPair,
    Keyring,
    KeyringError,
    Signer,
    TrustedKey,
    Verdict,
    command_message,
    key_id,
    kv_message,
    verify,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PAIR = KeyPair.generate()
OTHER = KeyPair.generate()
RING = Keyring.of([TrustedKey(PAIR.kid, PAIR.public_key)])
SUBJECT = "kanade.cmd.pc.pc-1.hello"
BODY = b'{"request_id":"r1","job_id":"hello"}'


def signed(subject: str = SUBJECT, body: bytes = BODY, pair: KeyPair = PAIR) -> str:
    return Signer(pair).command_headers(subject, body)[SIGNATURE_HEADER]


def test_kid_is_16_hex_of_the_sha256_of_the_public_key() -> None:
    assert PAIR.kid == key_id(PAIR.public_key)
    assert len(PAIR.kid) == 16 and int(PAIR.kid, 16) >= 0
    assert PAIR.kid != OTHER.kid


def test_a_signed_command_verifies_and_names_its_key() -> None:
    v = verify(RING, command_message(SUBJECT, BODY), signed(), NOW)
    assert v.ok and v.kid == PAIR.kid


def test_unsigned_unknown_key_and_wrong_subject_are_each_named() -> None:
    message = command_message(SUBJECT, BODY)
    assert verify(RING, message, None, NOW).verdict is Verdict.UNSIGNED
    assert verify(RING, message, "", NOW).verdict is Verdict.UNSIGNED
    assert verify(RING, message, signed(pair=OTHER), NOW).verdict is Verdict.UNKNOWN_KEY
    elsewhere = command_message("kanade.cmd.pc.pc-2.hello", BODY)
    assert verify(RING, elsewhere, signed(), NOW).verdict is Verdict.BAD_SIGNATURE


def test_a_retired_key_is_unknown_from_its_retire_instant() -> None:
    ring = Keyring.of([TrustedKey(PAIR.kid, PAIR.public_key, retire_at=NOW)])
    message = command_message(SUBJECT, BODY)
    assert verify(ring, message, signed(), NOW - timedelta(seconds=1)).ok
    v = verify(ring, message, signed(), NOW)
    assert v.verdict is Verdict.UNKNOWN_KEY and "retired" in v.reason


def test_kv_signature_binds_bucket_key_operation_and_value() -> None:
    header = Signer(PAIR).kv_headers("kanade_revocations", "job", "DEL", b"")[SIGNATURE_HEADER]
    assert verify(RING, kv_message("kanade_revocations", "job", "DEL", b""), header, NOW).ok
    for bucket, key, op in [
        ("kanade_pins", "job", "DEL"),
        ("kanade_revocations", "job2", "DEL"),
        ("kanade_revocations", "job", "PURGE"),
        ("kanade_revocations", "job", "PUT"),
    ]:
        assert not verify(RING, kv_message(bucket, key, op, b""), header, NOW).ok


def test_the_keyring_document_round_trips_and_rejects_a_kid_that_is_not_its_key() -> None:
    ring = Keyring.of(
        [TrustedKey(PAIR.kid, PAIR.public_key, NOW), TrustedKey(OTHER.kid, OTHER.public_key)],
        issued_at=NOW,
    )
    assert Keyring.decode(ring.encode()) == ring
    doc = ring.to_json()
    doc["keys"][1]["kid"] = PAIR.kid
    with pytest.raises(KeyringError, match=r"keys\.1\.kid"):
        Keyring.from_json(doc)
    doc["keys"][1] = {"kid": "x", "public_key": base64.b64encode(b"short").decode()}
    with pytest.raises(KeyringError, match=r"keys\.1\.public_key: 5 bytes"):
        Keyring.from_json(doc)
    with pytest.raises(KeyringError, match="not JSON"):
        Keyring.decode(b"{")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_flipping_any_byte_of_subject_body_or_signature_never_verifies(data: st.DataObject) -> None:
    header = signed()
    kid, sig = header.split(" ")
    raw_sig = bytearray(base64.b64decode(sig))
    part = data.draw(st.sampled_from(["subject", "body", "signature"]))
    subject, body = bytearray(SUBJECT.encode()), bytearray(BODY)
    target = {"subject": subject, "body": body, "signature": raw_sig}[part]
    index = data.draw(st.integers(0, len(target) - 1))
    target[index] ^= data.draw(st.integers(1, 255))
    tampered = f"{kid} {base64.b64encode(bytes(raw_sig)).decode()}"
    message = command_message(subject.decode("latin-1"), bytes(body))
    assert not verify(RING, message, tampered, NOW).ok


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=400)), st.binary(max_size=200))
def test_garbage_headers_never_raise_and_never_verify(header: str | None, body: bytes) -> None:
    v = verify(RING, command_message(SUBJECT, body), header, NOW)
    assert not v.ok
    assert v.reason


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60), st.binary(max_size=200))
def test_a_signature_verifies_only_for_the_subject_it_was_made_for(
    subject: str, body: bytes
) -> None:
    header = signed(SUBJECT, body)
    assert verify(RING, command_message(SUBJECT, body), header, NOW).ok
    if subject != SUBJECT:
        assert not verify(RING, command_message(subject, body), header, NOW).ok
