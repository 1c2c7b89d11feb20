"""kv_snapshot against a real broker: complete (live keys only, deletes left out) for small
and large key sets, and it never creates a consumer (issue #15 item 1: a consumer per read
outlived the request and the stream's consumer limit turned every read into a 503)."""

from __future__ import annotations

import pytest

from kanade.bus.connection import Bus
from kanade.bus.kv import kv_stream
from kanade.bus.kvsnapshot import _last_of_each, kv_snapshot
from kanade.core import subjects


@pytest.mark.parametrize("count", [5, 300])
async def test_a_snapshot_is_complete_and_creates_no_consumer(bus: Bus, count: int) -> None:
    kv = await bus.kv(subjects.KV_CONFIG)
    for i in range(count):
        await kv.put(f"pc.k{i:04d}", f'{{"n": {i}}}'.encode())
    for i in range(0, count, 5):
        await kv.delete(f"pc.k{i:04d}")
    await kv.put("global", b"{}")
    stream = kv_stream(subjects.KV_CONFIG)
    before = (await bus.js.stream_info(stream)).state.consumer_count

    snapshot = await kv_snapshot(bus.js, subjects.KV_CONFIG)
    filtered = await kv_snapshot(bus.js, subjects.KV_CONFIG, "pc.*")

    want = {f"pc.k{i:04d}" for i in range(count) if i % 5}
    assert set(snapshot) == want | {"global"}
    assert set(filtered) == want
    assert snapshot["pc.k0001"][0] == b'{"n": 1}'
    assert snapshot["pc.k0001"][1] > 0  # the revision
    assert (await bus.js.stream_info(stream)).state.consumer_count == before == 0


async def test_large_sets_are_read_in_batches_not_key_by_key(bus: Bus) -> None:
    kv = await bus.kv(subjects.KV_GROUPS)
    for i in range(40):
        await kv.put(f"pc{i}", b'["g"]')
    await kv.delete("pc3")
    prefix = "$KV." + subjects.KV_GROUPS + "."
    answers = await _last_of_each(
        bus.js, kv_stream(subjects.KV_GROUPS), [prefix + f"pc{i}" for i in range(40)]
    )
    by_subject = {subject: (data, headers) for subject, data, headers, _ in answers}
    assert len(by_subject) == 40  # one batched request answered every key
    assert by_subject[prefix + "pc1"][0] == b'["g"]'
    assert by_subject[prefix + "pc3"][1] is not None  # the delete marker, with its header
