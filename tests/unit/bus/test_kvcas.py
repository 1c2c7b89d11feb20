"""The one KV compare-and-set, against a real nats-server: no lost update, delete markers,
and nats-py's two ways of reporting a refused revision check."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.errors import APIError

from kanade.bus import Bus, kvcas
from kanade.bus.kvsnapshot import kv_snapshot
from kanade.core import subjects


def _count(raw: bytes | None) -> bytes | None:
    return kvcas.dumps(int(kvcas.json_or(raw, 0)) + 1)


async def test_create_update_delete_and_no_op(bus: Bus) -> None:
    kv = await bus.kv(subjects.KV_CONFIG)
    done = await kvcas.compare_and_set(kv, "k", lambda _: b"1")
    assert (done.old, done.new) == (None, b"1")
    revision = (await kvcas.read(kv, "k")).revision
    same = await kvcas.compare_and_set(kv, "k", lambda raw: raw)
    assert (same.old, same.new) == (b"1", b"1")
    assert (await kvcas.read(kv, "k")).revision == revision  # nothing written
    gone = await kvcas.compare_and_set(kv, "k", lambda _: None)
    assert (gone.old, gone.new) == (b"1", None)
    assert await kvcas.read(kv, "k") == kvcas.KvValue(None, None)
    assert await kv_snapshot(bus.js, subjects.KV_CONFIG) == {}
    again = await kvcas.compare_and_set(kv, "k", lambda raw: b"2")  # over the delete marker
    assert (again.old, again.new) == (None, b"2")
    assert set(await kv_snapshot(bus.js, subjects.KV_CONFIG)) == {"k"}


async def test_concurrent_writers_lose_no_update(bus: Bus) -> None:
    kv = await bus.kv(subjects.KV_CONFIG)
    writers = 5
    await asyncio.gather(*(kvcas.compare_and_set(kv, "n", _count) for _ in range(writers)))
    assert kvcas.json_or((await kvcas.read(kv, "n")).value, None) == writers


async def test_a_refused_delete_is_a_wrong_last_sequence(bus: Bus) -> None:
    kv = await bus.kv(subjects.KV_CONFIG)
    first = await kv.put("d", b"a")
    await kv.put("d", b"b")
    with pytest.raises(APIError) as refused:
        await kv.delete("d", last=first)  # nats-py does not translate this one
    assert kvcas.is_wrong_last_sequence(refused.value)
    with pytest.raises(APIError) as stale:
        await kv.update("d", b"c", last=first)
    assert kvcas.is_wrong_last_sequence(stale.value)


async def test_out_of_attempts_is_a_conflict_naming_the_key(bus: Bus) -> None:
    kv = await bus.kv(subjects.KV_CONFIG)
    await kv.put("c", b"0")
    with pytest.raises(kvcas.CasConflict) as lost:
        await kvcas.compare_and_set(kv, "c", _count, attempts=0)
    assert lost.value.key == "c"
    assert (await kvcas.read(kv, "c")).value == b"0"


def test_json_helpers() -> None:
    assert kvcas.dumps({"b": 1, "a": [2]}) == b'{"a":[2],"b":1}'
    assert kvcas.json_or(None, {}) == {}
    assert kvcas.json_or(b"not json", []) == []
