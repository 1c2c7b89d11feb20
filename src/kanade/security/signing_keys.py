"""The backend's command-signing key directory (SPEC §8.2): create, load, rotate.

One file, ``signing-keys.json`` (0600 in a 0700 directory), holds every key pair the
backend has used: the active one signs, older ones carry the instant they retire, and
until then agents still trust them (the rotation overlap). Written atomically, so a
crash mid-rotation leaves the old set or the new one, never a mix. ``kanade keys init``
and the backend's start-up both call :func:`ensure_key_dir`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from kanade.core.instants import Clock, format_instant, parse_instant, system_clock
from kanade.core.signing import KeyPair, Keyring, Signer, TrustedKey

KEYS_FILE: Final = "signing-keys.json"
ENV_VAR: Final = "KANADE_SIGNING_KEYS"
DEFAULT_OVERLAP: Final = timedelta(hours=24)


class SigningKeysError(Exception):
    """A key directory that cannot be used (the path and the reason in the message)."""


@dataclass(frozen=True)
class StoredKey:
    pair: KeyPair
    created_at: datetime
    retire_at: datetime | None = None


@dataclass(frozen=True)
class KeySet:
    """Every key of a key directory; ``active`` signs."""

    active: str
    keys: tuple[StoredKey, ...]

    def pair(self) -> KeyPair:
        return next(k.pair for k in self.keys if k.pair.kid == self.active)

    def signer(self) -> Signer:
        return Signer(self.pair(), self.keyring())

    def keyring(self, issued_at: datetime | None = None) -> Keyring:
        """The public side, as agents pin it (retired keys left out)."""
        return Keyring.of(
            (TrustedKey(k.pair.kid, k.pair.public_key, k.retire_at) for k in self.keys),
            issued_at,
        )

    def without_retired(self, now: datetime) -> KeySet:
        kept = tuple(k for k in self.keys if k.retire_at is None or k.retire_at > now)
        return replace(self, keys=kept)

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "keys": [
                {
                    "kid": k.pair.kid,
                    "seed": base64.b64encode(k.pair.seed).decode(),
                    "created_at": format_instant(k.created_at),
                    "retire_at": None if k.retire_at is None else format_instant(k.retire_at),
                }
                for k in self.keys
            ],
        }


def default_key_dir(db_url: str) -> Path | None:
    """``<dir of the SQLite file>/keys``; None for a database that is not a file."""
    prefix = "sqlite:///"
    if not db_url.startswith(prefix):
        return None
    return Path(db_url[len(prefix) :]).parent / "keys"


def resolve_key_dir(explicit: str | Path | None, db_url: str) -> Path:
    """Flag or setting > ``$KANADE_SIGNING_KEYS`` > ``<dir of the DB>/keys``."""
    chosen = explicit or os.environ.get(ENV_VAR) or default_key_dir(db_url)
    if not chosen:
        raise SigningKeysError(
            f"no signing-key directory: the database is not a file; pass --signing-keys "
            f"or set {ENV_VAR}"
        )
    return Path(chosen).expanduser()


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _write(path: Path, keys: KeySet) -> None:
    _private_dir(path)
    target = path / KEYS_FILE
    tmp = path / f".{KEYS_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(json.dumps(keys.to_json(), indent=2, sort_keys=True).encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


def load_key_dir(path: Path) -> KeySet:
    file = path / KEYS_FILE
    try:
        doc = json.loads(file.read_bytes())
    except FileNotFoundError:
        raise SigningKeysError(f"{file}: no signing keys (run `kanade keys init`)") from None
    except (OSError, ValueError) as exc:
        raise SigningKeysError(f"{file}: unreadable ({exc})") from exc
    try:
        keys = tuple(_stored(item) for item in doc["keys"])
        active = str(doc["active"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise SigningKeysError(f"{file}: malformed ({exc!r})") from exc
    if active not in {k.pair.kid for k in keys}:
        raise SigningKeysError(f"{file}: active: {active!r} is not one of its keys")
    return KeySet(active, keys)


def _stored(item: dict[str, Any]) -> StoredKey:
    seed = base64.b64decode(item["seed"], validate=True)
    if len(seed) != 32:
        raise ValueError(f"key {item.get('kid')!r}: seed is {len(seed)} bytes, not 32")
    pair = KeyPair(seed)
    if item.get("kid") != pair.kid:
        raise ValueError(f"key {item.get('kid')!r}: kid does not match its seed ({pair.kid})")
    retire = item.get("retire_at")
    return StoredKey(
        pair,
        parse_instant(str(item["created_at"])),
        None if retire is None else parse_instant(str(retire)),
    )


def ensure_key_dir(path: Path, clock: Clock = system_clock) -> tuple[KeySet, bool]:
    """Load the key directory, creating it with one fresh key when it has none;
    ``(keys, created)``. Idempotent: an existing key is never replaced."""
    if (path / KEYS_FILE).exists():
        _private_dir(path)
        return load_key_dir(path), False
    pair = KeyPair.generate()
    keys = KeySet(pair.kid, (StoredKey(pair, clock()),))
    _write(path, keys)
    return keys, True


def plan_rotation(keys: KeySet, now: datetime, *, overlap: timedelta = DEFAULT_OVERLAP) -> KeySet:
    """``keys`` with a new active key; the previous active one retires ``overlap`` from
    ``now``, keys already past their retire instant are dropped. Nothing is written."""
    if overlap < timedelta(0):
        raise SigningKeysError("overlap: must not be negative")
    pair = KeyPair.generate()
    retire = now + overlap
    kept = tuple(
        replace(k, retire_at=retire) if k.pair.kid == keys.active else k
        for k in keys.without_retired(now).keys
    )
    return KeySet(pair.kid, (*kept, StoredKey(pair, now)))


def save_key_dir(path: Path, keys: KeySet) -> None:
    """Replace the key directory's key set (atomically)."""
    _write(path, keys)


def rotate_key_dir(
    path: Path, *, overlap: timedelta = DEFAULT_OVERLAP, clock: Clock = system_clock
) -> tuple[KeySet, KeySet]:
    """:func:`plan_rotation` on the directory's keys, saved; ``(before, after)``."""
    before = load_key_dir(path)
    after = plan_rotation(before, clock(), overlap=overlap)
    _write(path, after)
    return before, after


def write_keyring_file(path: Path, keyring: Keyring) -> None:
    """Write an agent's pinned keyring (``<data_dir>/trust/keyring.json``): 0600 in a 0700
    directory. What enrolment and ``kanade up`` give each agent."""
    _private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(keyring.encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
