"""The agent's pinned keyring and every signature check it makes (SPEC §8.2).

The keyring (``<data_dir>/trust/keyring.json``, 0600 in a 0700 dir) holds the backend's
command-signing public keys; it is written at enrolment and changes only through a
``signing_keys`` document signed by a key it already trusts (rotation). An agent without
a keyring trusts nothing: every command is refused, every KV document ignored.

A swarm shares one :class:`Trust` between its identities: a fleet-wide command reaches
every identity as the same (subject, body, header), so verdicts are cached by those exact
bytes and 10 000 identities verify it once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Final

from kanade.agent.durable.fsutil import atomic_write, private_dir
from kanade.bus.credentials import AGENT_KEYRING, AGENT_TRUST_DIR
from kanade.core import subjects
from kanade.core.instants import Clock, format_instant, system_clock
from kanade.core.signing import (
    Keyring,
    KeyringError,
    Verification,
    command_message,
    kv_message,
    verify,
)

log = logging.getLogger("kanade.agent.trust")

SIGNING_KEYS_KEY: Final = subjects.SIGNING_KEYS_KEY
_CACHE_MAX: Final = 4096


def default_keyring_path(data_dir: Path) -> Path:
    return data_dir / AGENT_TRUST_DIR / AGENT_KEYRING


def write_keyring(path: Path, keyring: Keyring) -> None:
    """Write a keyring file owner-only (its dir 0700): enrolment, rotation, tests."""
    private_dir(path.parent)
    atomic_write(path, keyring.encode())


def read_keyring(path: Path) -> Keyring:
    """The keyring at ``path``; an empty one (trusting nothing) when absent or unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        log.error("no keyring at %s: every command will be refused (enrol this agent)", path)
        return Keyring()
    except OSError as exc:
        log.error("cannot read the keyring %s (%s): every command will be refused", path, exc)
        return Keyring()
    try:
        return Keyring.decode(raw)
    except KeyringError as exc:
        log.error("keyring %s is unreadable: %s; every command will be refused", path, exc)
        return Keyring()


class Trust:
    def __init__(self, path: Path, *, clock: Clock = system_clock, cache: bool = False) -> None:
        self.path = path
        self._clock = clock
        self.keyring = read_keyring(path)
        self._cache: OrderedDict[tuple[str, bytes, str | None], Verification] | None = (
            OrderedDict() if cache else None
        )
        self.rejected_docs = 0
        """KV documents ignored because their signature did not verify."""

    def _now(self) -> datetime:
        return self._clock()

    def verify_command(self, subject: str, body: bytes, header: str | None) -> Verification:
        if self._cache is None:
            return verify(self.keyring, command_message(subject, body), header, self._now())
        key = (subject, body, header)
        hit = self._cache.get(key)
        if hit is None:
            hit = verify(self.keyring, command_message(subject, body), header, self._now())
            self._cache[key] = hit
            if len(self._cache) > _CACHE_MAX:
                self._cache.popitem(last=False)
        return hit

    def verify_kv(
        self, bucket: str, key: str, operation: str, value: bytes, header: str | None
    ) -> Verification:
        return verify(self.keyring, kv_message(bucket, key, operation, value), header, self._now())

    def reject_doc(self, bucket: str, key: str, verification: Verification) -> None:
        self.rejected_docs += 1
        log.warning(
            "ignored KV %s/%s: %s (keeping the previous value)",
            bucket,
            key,
            verification.reason,
        )

    def announce(self, raw: bytes) -> bool:
        """Apply a verified ``signing_keys`` document (rotation): the new key set replaces
        the pinned one unless it is not newer. True when the keyring changed."""
        try:
            announced = Keyring.decode(raw)
        except KeyringError as exc:
            log.warning("ignored an unreadable signing-keys document: %s", exc)
            return False
        if announced.issued_at is None or not announced.keys:
            log.warning("ignored a signing-keys document without issued_at or keys")
            return False
        current = self.keyring.issued_at
        if current is not None and announced.issued_at <= current:
            return False
        if announced.keys == self.keyring.keys:
            self.keyring = announced
            return False
        self.keyring = announced
        if self._cache is not None:
            self._cache.clear()
        try:
            write_keyring(self.path, announced)
        except OSError as exc:
            log.error("cannot save the rotated keyring to %s: %s", self.path, exc)
        log.warning(
            "signing keys rotated (announced %s): now trusting %s",
            format_instant(announced.issued_at),
            ", ".join(sorted(announced.keys)),
        )
        return True
