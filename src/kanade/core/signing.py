"""Ed25519 signatures on commands and on the KV documents agents obey (SPEC §8.2).

The backend signs the exact bytes it publishes, bound to where they go: a command's
signed message is its subject and body, a KV write's is bucket, key, operation and
value. The signature travels in the ``Kanade-Signature`` header as ``<kid> <base64>``,
so a body is never re-encoded between signing and verifying. Verification never raises
on bad input: it returns a typed :class:`Verification`. Why a header and why these
messages: docs/signing.md.

PyNaCl only: the agent imports this module, and ``cryptography`` would cost it 9 MB RSS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any, Final

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from kanade.core.bounds import loads as json_loads
from kanade.core.instants import format_instant, parse_instant

SIGNATURE_HEADER: Final = "Kanade-Signature"
COMMAND_CONTEXT: Final = b"kanade-command-v1\0"
KV_CONTEXT: Final = b"kanade-kv-v1\0"
RELEASE_CONTEXT: Final = b"kanade-release-v1\0"
MAX_HEADER_CHARS: Final = 256
"""A longer header is not ours: refused before any decoding (bounded work on input)."""

KV_PUT: Final = "PUT"
"""The operation of a KV value write (deletes use nats-py's ``DEL`` / ``PURGE``)."""


def key_id(public_key: bytes) -> str:
    """A key's id: 16 hex digits of the sha256 of its raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def command_message(subject: str, body: bytes) -> bytes:
    """What is signed for a command: its subject (its recipient scope) and exact body."""
    return COMMAND_CONTEXT + subject.encode() + b"\0" + body


def kv_message(bucket: str, key: str, operation: str, value: bytes) -> bytes:
    """What is signed for a KV write; a delete or purge signs its operation and no value."""
    return KV_CONTEXT + b"\0".join((bucket.encode(), key.encode(), operation.encode(), value))


def release_message(name: str, manifest: bytes) -> bytes:
    """What is signed for an agent release (SPEC §3.8): its object name and exact manifest
    (version, platform, sha256), so a manifest cannot be moved to another name."""
    return RELEASE_CONTEXT + name.encode() + b"\0" + manifest


@dataclass(frozen=True)
class KeyPair:
    """A signing key (the backend's): its 32-byte seed is the secret."""

    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(bytes(SigningKey.generate()))

    @cached_property
    def _key(self) -> SigningKey:
        # Derived once: deriving it costs as much as a signature (a fan-out signs thousands).
        return SigningKey(self.seed)

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    @cached_property
    def kid(self) -> str:
        return key_id(self.public_key)

    def header(self, message: bytes) -> str:
        """The ``Kanade-Signature`` value for ``message``."""
        signature = self._key.sign(message).signature
        return f"{self.kid} {base64.b64encode(signature).decode()}"


@dataclass(frozen=True)
class TrustedKey:
    """A public key the agent trusts, until ``retire_at`` when set (rotation overlap)."""

    kid: str
    public_key: bytes
    retire_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.retire_at is None or now < self.retire_at

    @cached_property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.public_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "public_key": base64.b64encode(self.public_key).decode(),
            "retire_at": None if self.retire_at is None else format_instant(self.retire_at),
        }


class KeyringError(ValueError):
    """A keyring document that cannot be read (its path in the message)."""


@dataclass(frozen=True)
class Keyring:
    """The public keys commands and KV documents may be signed with, by kid."""

    keys: Mapping[str, TrustedKey] = field(default_factory=dict)
    issued_at: datetime | None = None
    """When the backend announced this set (a rotation never goes back to an older set)."""

    @classmethod
    def of(cls, keys: Iterable[TrustedKey], issued_at: datetime | None = None) -> Keyring:
        return cls({k.kid: k for k in keys}, issued_at)

    def trusted(self, kid: str, now: datetime) -> TrustedKey | None:
        key = self.keys.get(kid)
        return key if key is not None and key.active(now) else None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"keys": [k.to_json() for k in self.keys.values()]}
        if self.issued_at is not None:
            doc["issued_at"] = format_instant(self.issued_at)
        return doc

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, doc: Any) -> Keyring:
        """Strict: every key must be whole and consistent (kid = hash of its public key)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeyringError("keys: missing or not a list")
        keys = [_trusted_key(i, item) for i, item in enumerate(doc["keys"])]
        issued = doc.get("issued_at")
        try:
            issued_at = None if issued is None else parse_instant(str(issued))
        except ValueError as exc:
            raise KeyringError(f"issued_at: {exc}") from exc
        return cls.of(keys, issued_at)

    @classmethod
    def decode(cls, raw: bytes) -> Keyring:
        try:
            doc = json_loads(raw)
        except ValueError as exc:
            raise KeyringError(f"(document): not JSON ({exc})") from exc
        return cls.from_json(doc)


def _trusted_key(index: int, item: Any) -> TrustedKey:
    where = f"keys.{index}"
    if not isinstance(item, dict):
        raise KeyringError(f"{where}: not an object")
    try:
        public_key = base64.b64decode(str(item.get("public_key", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyringError(f"{where}.public_key: not base64 ({exc})") from exc
    if len(public_key) != 32:
        raise KeyringError(f"{where}.public_key: {len(public_key)} bytes, an Ed25519 key is 32")
    kid = key_id(public_key)
    if item.get("kid") != kid:
        raise KeyringError(f"{where}.kid: {item.get('kid')!r} is not the id of its key ({kid})")
    retire = item.get("retire_at")
    try:
        retire_at = None if retire is None else parse_instant(str(retire))
    except ValueError as exc:
        raise KeyringError(f"{where}.retire_at: {exc}") from exc
    return TrustedKey(kid, public_key, retire_at)


class Verdict(StrEnum):
    OK = "ok"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True)
class Verification:
    verdict: Verdict
    kid: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    @property
    def reason(self) -> str:
        """One line for a log, a warning or a refused result's stderr."""
        text = {
            Verdict.OK: f"signed by key {self.kid}",
            Verdict.UNSIGNED: "unsigned (no Kanade-Signature header)",
            Verdict.UNKNOWN_KEY: f"signed by unknown key {self.kid}",
            Verdict.BAD_SIGNATURE: f"bad signature (key {self.kid})",
        }[self.verdict]
        return f"{text}: {self.detail}" if self.detail else text


def parse_header(header: str | None) -> tuple[str, bytes] | None:
    """``(kid, signature)`` of a header value; None for anything malformed."""
    if header is None or len(header) > MAX_HEADER_CHARS:
        return None
    parts = header.strip().split(" ")
    if len(parts) != 2 or not parts[0]:
        return None
    try:
        signature = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(signature) != 64:
        return None
    return parts[0], signature


def verify(keyring: Keyring, message: bytes, header: str | None, now: datetime) -> Verification:
    """Whether ``header`` is a signature of ``message`` by a key ``keyring`` trusts at
    ``now``. Never raises."""
    if header is None or not header.strip():
        return Verification(Verdict.UNSIGNED)
    parsed = parse_header(header)
    if parsed is None:
        return Verification(Verdict.BAD_SIGNATURE, detail="malformed Kanade-Signature header")
    kid, signature = parsed
    key = keyring.keys.get(kid)
    if key is None:
        return Verification(Verdict.UNKNOWN_KEY, kid)
    if not key.active(now):
        assert key.retire_at is not None
        return Verification(Verdict.UNKNOWN_KEY, kid, f"retired at {format_instant(key.retire_at)}")
    try:
        key.verify_key.verify(message, signature)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return Verification(Verdict.BAD_SIGNATURE, kid)
    return Verification(Verdict.OK, kid)


def header_of(headers: Mapping[str, str] | None) -> str | None:
    """The signature header among a message's headers (None when absent)."""
    return None if headers is None else headers.get(SIGNATURE_HEADER)


class Signer:
    """The backend's signer: the active key, the headers for what it publishes, and the
    keys it still accepts on documents it reads back (the active one and those in their
    rotation overlap)."""

    def __init__(self, active: KeyPair, trusted: Keyring | None = None) -> None:
        self.active = active
        self.trusted = trusted or Keyring.of([TrustedKey(active.kid, active.public_key)])

    def switch(self, active: KeyPair, trusted: Keyring) -> None:
        """Sign with ``active`` from now on (a rotation)."""
        self.active, self.trusted = active, trusted

    def command_headers(self, subject: str, body: bytes) -> dict[str, str]:
        return {SIGNATURE_HEADER: self.active.header(command_message(subject, body))}

    def release_signature(self, name: str, manifest: bytes) -> str:
        return self.active.header(release_message(name, manifest))

    def kv_headers(self, bucket: str, key: str, operation: str, value: bytes) -> dict[str, str]:
        return {SIGNATURE_HEADER: self.active.header(kv_message(bucket, key, operation, value))}

    def verify_kv(
        self,
        bucket: str,
        key: str,
        operation: str,
        value: bytes,
        header: str | None,
        now: datetime,
    ) -> Verification:
        return verify(self.trusted, kv_message(bucket, key, operation, value), header, now)


# --- command lifetime (SPEC §8.2) ------------------------------------------------------------
COMMAND_LIFETIME: Final = timedelta(days=7)
"""How long a command stays valid after it is issued: the command stream's max age, so a
command never outlives the stream that carries it, and shorter than the agent ledger's
retention, so a replay of an admitted command always meets its ledger entry."""
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
"""A command issued further ahead than this (by the agent's clock) is refused."""


def command_expiry(issued_at: datetime) -> datetime:
    return issued_at + COMMAND_LIFETIME


def lifetime_refusal(issued_at: datetime, expires_at: datetime | None, now: datetime) -> str | None:
    """Why a command is outside its signed lifetime at ``now`` (None: inside it)."""
    if expires_at is None:
        return "refused: the command carries no expires_at"
    if expires_at - issued_at > COMMAND_LIFETIME:
        return (
            f"refused: the command's lifetime {expires_at - issued_at} exceeds the "
            f"maximum {COMMAND_LIFETIME}"
        )
    if now > expires_at:
        return f"refused: expired at {format_instant(expires_at)} (now {format_instant(now)})"
    if issued_at - now > MAX_FUTURE_SKEW:
        return (
            f"refused: issued in the future at {format_instant(issued_at)} "
            f"(now {format_instant(now)}, tolerance {MAX_FUTURE_SKEW})"
        )
    return None
