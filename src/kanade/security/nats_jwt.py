"""NATS decentralized-auth material: nkeys and the JWTs that bind them (SPEC §8.1).

The broker trusts one *operator*; the operator signs *account* JWTs (the system account
the broker reports through, and the KANADE account everything runs in); an account signs
*user* JWTs — one per agent, one for the backend — each carrying that user's subject
permissions. The broker verifies the chain on every connect, so adding an agent needs no
broker reload, and revoking one is a new account JWT pushed through the system account.

Why this mechanism and not config users or auth callout: docs/security.md.
The encoding follows the NATS JWT v2 format (header ``ed25519-nkey``, base64url without
padding, the issuer's nkey signing ``header.claims``); nkeys does the key encoding.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Final

import nkeys

__all__ = [
    "Identity",
    "account_claims",
    "creds_text",
    "decode_claims",
    "encode_jwt",
    "new_identity",
    "operator_claims",
    "parse_creds",
    "user_claims",
]

_HEADER: Final = {"typ": "JWT", "alg": "ed25519-nkey"}
_VERSION: Final = 2
UNLIMITED: Final = -1

_PREFIXES: Final = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}


@dataclass(frozen=True)
class Identity:
    """An nkey pair: ``seed`` (secret, ``S…``) and ``public_key`` (``O…``/``A…``/``U…``)."""

    seed: str
    public_key: str

    @classmethod
    def from_seed(cls, seed: str) -> Identity:
        pair = nkeys.from_seed(seed.encode())
        return cls(seed=seed, public_key=pair.public_key.decode())

    def sign(self, data: bytes) -> bytes:
        signature: bytes = nkeys.from_seed(self.seed.encode()).sign(data)
        return signature


def new_identity(kind: str) -> Identity:
    """A fresh nkey pair of ``kind`` ("operator", "account" or "user")."""
    seed = nkeys.encode_seed(os.urandom(32), _PREFIXES[kind]).decode()
    return Identity.from_seed(seed)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(
    issuer: Identity,
    subject: str,
    name: str,
    nats: dict[str, Any],
    *,
    expires: int | None = None,
    issued_at: int | None = None,
) -> str:
    """A signed NATS JWT: ``issuer`` vouches for ``subject`` with the ``nats`` claims."""
    claims: dict[str, Any] = {
        "jti": "",
        "iat": int(time.time()) if issued_at is None else issued_at,
        "iss": issuer.public_key,
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": _VERSION},
    }
    if expires is not None:
        claims["exp"] = expires
    # The id is the hash of the claims without it (what the reference tooling does);
    # the broker does not check it, humans and logs use it to tell JWTs apart.
    digest = hashlib.sha512(json.dumps(claims, sort_keys=True).encode()).digest()[:32]
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signature = issuer.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{_b64(signature)}"


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, *unverified* (for display and bookkeeping only)."""
    try:
        _head, body, _sig = token.split(".")
        claims = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a NATS JWT: {exc}") from None
    if not isinstance(claims, dict):
        raise ValueError("not a NATS JWT: claims are not an object")
    return claims


def operator_claims(system_account: str) -> dict[str, Any]:
    return {"type": "operator", "system_account": system_account}


def account_claims(*, jetstream: bool, revocations: dict[str, int] | None = None) -> dict[str, Any]:
    """An account's claims; ``revocations`` maps a user public key to the instant (unix
    seconds) before which every JWT issued to it is refused."""
    limits: dict[str, Any] = {
        "subs": UNLIMITED,
        "data": UNLIMITED,
        "payload": UNLIMITED,
        "imports": UNLIMITED,
        "exports": UNLIMITED,
        "wildcards": True,
        "conn": UNLIMITED,
        "leaf": UNLIMITED,
    }
    if jetstream:
        # Storage is bounded by the server's own JetStream limits (broker config) and by
        # each stream's max_bytes (bus/topology.py); the account adds no tighter cap.
        limits |= {
            "mem_storage": UNLIMITED,
            "disk_storage": UNLIMITED,
            "streams": UNLIMITED,
            "consumer": UNLIMITED,
        }
    claims: dict[str, Any] = {"type": "account", "limits": limits}
    if revocations:
        claims["revocations"] = dict(sorted(revocations.items()))
    return claims


def user_claims(
    *,
    pub_allow: list[str] | None,
    sub_allow: list[str] | None,
    allow_responses: bool = False,
) -> dict[str, Any]:
    """A user's claims. ``None`` lists mean "no restriction" (trusted roles only);
    an empty list allows nothing. ``allow_responses`` lets the user answer requests
    it received (one reply each), without a standing right to publish on inboxes."""
    claims: dict[str, Any] = {
        "type": "user",
        "subs": UNLIMITED,
        "data": UNLIMITED,
        "payload": UNLIMITED,
    }
    if pub_allow is not None:
        claims["pub"] = {"allow": sorted(pub_allow)} if pub_allow else {"deny": [">"]}
    if sub_allow is not None:
        claims["sub"] = {"allow": sorted(sub_allow)} if sub_allow else {"deny": [">"]}
    if allow_responses:
        claims["resp"] = {"max": 1, "ttl": 0}
    return claims


_JWT_BEGIN: Final = "-----BEGIN NATS USER JWT-----"
_JWT_END: Final = "------END NATS USER JWT------"
_SEED_BEGIN: Final = "-----BEGIN USER NKEY SEED-----"
_SEED_END: Final = "------END USER NKEY SEED------"


def creds_text(user_jwt: str, seed: str) -> str:
    """A ``.creds`` file (the format nats clients read): the user JWT and its seed."""
    return (
        f"{_JWT_BEGIN}\n{user_jwt}\n{_JWT_END}\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"{_SEED_BEGIN}\n{seed}\n{_SEED_END}\n"
    )


def parse_creds(text: str) -> tuple[str, str]:
    """``(user_jwt, seed)`` of a creds file; ValueError naming what is missing."""
    lines = [line.strip() for line in text.splitlines()]

    def between(begin: str, end: str, what: str) -> str:
        try:
            start = lines.index(begin)
            stop = lines.index(end, start)
        except ValueError:
            raise ValueError(f"creds file has no {what} block") from None
        body = "".join(lines[start + 1 : stop])
        if not body:
            raise ValueError(f"creds file has an empty {what} block")
        return body

    return between(_JWT_BEGIN, _JWT_END, "user JWT"), between(_SEED_BEGIN, _SEED_END, "seed")
