"""A KV compare-and-set as a use case sees it: a lost race is a :class:`Conflict` (409)."""

from __future__ import annotations

from nats.js.kv import KeyValue

from kanade.backend.errors import Conflict
from kanade.bus import kvcas


async def change(kv: KeyValue, key: str, mutate: kvcas.Mutation) -> kvcas.CasResult:
    """:func:`kanade.bus.kvcas.compare_and_set`; every attempt lost raises :class:`Conflict`."""
    try:
        return await kvcas.compare_and_set(kv, key, mutate)
    except kvcas.CasConflict:
        raise Conflict(f"{key!r} is being changed concurrently; retry", key=key) from None
