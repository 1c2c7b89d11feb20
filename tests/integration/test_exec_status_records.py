"""An operator's decision about an exec (cancel) is a record in KANADE_EXECS, so it
survives a wiped database: re-projection rebuilds the same status, never a later one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_backend_projection import eventually, exec_detail, new_exec, settings_for

from kanade.backend.inprocess import in_process_backend
from kanade.backend.messaging.consumers import EXECS_CONSUMER
from kanade.bus import Bus
from kanade.core import subjects
from pgdb import wipe_store

pytestmark = pytest.mark.stores


async def test_cancelled_exec_stays_cancelled_after_a_db_wipe(
    nats_url: str, bus: Bus, store_url: str
) -> None:
    async with in_process_backend(settings_for(nats_url, store_url)) as first:
        ex = await new_exec(first, ["gone-1", "gone-2"])  # agents that never answer
        r = await first.client.post(f"/api/executions/{ex['exec_id']}/kill")
        assert r.status_code == 200, r.text
        assert (await exec_detail(first, ex["exec_id"]))["status"] == "cancelled"

    await asyncio.to_thread(wipe_store, store_url)

    async with in_process_backend(settings_for(nats_url, store_url)) as second:

        async def rebuilt() -> dict[str, Any] | None:
            resp = await second.client.get(f"/api/executions/{ex['exec_id']}")
            return dict(resp.json()) if resp.status_code == 200 else None

        after = await eventually(rebuilt, what="re-projection after the wipe")

        # The created record and the cancel record are both applied, in stream order.
        async def cancelled() -> dict[str, Any] | None:
            d = await exec_detail(second, ex["exec_id"])
            return d if d["status"] == "cancelled" else None

        await eventually(cancelled, what="cancel re-applied")
        assert after["exec_id"] == ex["exec_id"]


async def test_malformed_status_record_is_poison_not_a_blocker(
    nats_url: str, bus: Bus, store_url: str
) -> None:
    async with in_process_backend(settings_for(nats_url, store_url)) as backend:
        await bus.publish_js(subjects.exec_subject("cancelled", "x"), b'{"status": "nonsense"}')
        await bus.publish_js(subjects.exec_subject("cancelled", "y"), b"not json")
        await new_exec(backend, ["later-1"])  # its created record follows the poison

        async def drained() -> bool | None:
            info = await bus.js.consumer_info(EXECS_CONSUMER.stream, EXECS_CONSUMER.durable)
            # Poison is acked like everything else, so nothing stays pending behind it.
            return (info.num_pending == 0 and info.num_ack_pending == 0) or None

        await eventually(drained, what="exec records consumed past the poison")
