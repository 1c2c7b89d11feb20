"""Read-modify-write of one KV key as a compare-and-set on its revision.

The one compare-and-set loop for JetStream KV: two writers changing the same key at once
never lose an update, the loser re-reads and re-applies its change. Built on nats-py's
own errors (``KeyNotFoundError`` also covers a delete marker, ``KeyWrongLastSequenceError``
a failed revision check of ``update``). ``delete(last=…)`` is not translated by nats-py,
so its refusal arrives as a plain ``APIError`` with the same JetStream error codes that
nats-py itself checks in ``KeyValue._update``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

CAS_ATTEMPTS: Final = 10
"""Compare-and-set attempts before a concurrent writer is declared the winner."""

WRONG_LAST_SEQUENCE_CODES: Final = (10071, 10164)
"""JetStream error codes of a failed "expected last subject sequence" check (the codes
nats-py maps to ``KeyWrongLastSequenceError`` on update)."""

Mutation = Callable[[bytes | None], bytes | None]


class CasConflict(Exception):
    """Every attempt lost to a concurrent writer of ``key``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key!r} is being changed concurrently")
        self.key = key


@dataclass(frozen=True)
class KvValue:
    """A key's current bytes and revision; both None when it has no live value."""

    value: bytes | None
    revision: int | None


@dataclass(frozen=True)
class CasResult:
    old: bytes | None
    new: bytes | None


def is_wrong_last_sequence(exc: BaseException) -> bool:
    """True for a refused revision check, whichever way nats-py reported it."""
    return isinstance(exc, KeyWrongLastSequenceError) or (
        isinstance(exc, APIError) and exc.err_code in WRONG_LAST_SEQUENCE_CODES
    )


async def read(kv: KeyValue, key: str) -> KvValue:
    """The key's live value, or ``KvValue(None, None)`` (absent or deleted)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return KvValue(None, None)
    return KvValue(entry.value, entry.revision)


async def compare_and_set(
    kv: KeyValue, key: str, mutate: Mutation, *, attempts: int = CAS_ATTEMPTS
) -> CasResult:
    """Apply ``mutate(old) -> new`` (None = delete) atomically; the (old, new) it applied.

    ``mutate`` may run several times (once per attempt) and must be pure. Returning the
    bytes it was given writes nothing. Raises :class:`CasConflict` after ``attempts``
    lost races.
    """
    for _ in range(attempts):
        current = await read(kv, key)
        new = mutate(current.value)
        if new == current.value:
            return CasResult(current.value, new)
        try:
            if new is None:
                await kv.delete(key, last=current.revision)
            elif current.revision is None:
                await kv.create(key, new)  # also re-creates over a delete marker
            else:
                await kv.update(key, new, last=current.revision)
        except APIError as exc:  # KeyWrongLastSequenceError is one
            if is_wrong_last_sequence(exc):
                continue
            raise
        return CasResult(current.value, new)
    raise CasConflict(key)


def json_or(raw: bytes | None, default: Any) -> Any:
    """A KV value decoded as JSON; ``default`` for an absent or unreadable value."""
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces): equal values, equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
