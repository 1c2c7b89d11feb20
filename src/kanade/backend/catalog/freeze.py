"""The fleet freeze record in KV (``kanade_freeze`` / ``fleet``; SPEC §4.5).

The record is JSON so agents and both schedulers read it without kanade's models;
:func:`kanade.core.freeze.is_frozen` decides. Clearing deletes the key: "no key"
is the one unambiguous "not frozen" every reader understands.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import structlog
from nats.js.errors import KeyNotFoundError

from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.freeze import FREEZE_KEY, FleetFreeze

log = structlog.get_logger(__name__)


async def get_freeze(bus: Bus) -> FleetFreeze | None:
    kv = await bus.kv(subjects.KV_FREEZE)
    try:
        entry = await kv.get(FREEZE_KEY)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    try:
        return FleetFreeze.model_validate(json.loads(entry.value))
    except ValueError as exc:
        # A damaged record must not read as "not frozen": freezing is the safe side.
        log.error("unreadable freeze record; treating the fleet as frozen", error=str(exc))
        return FleetFreeze(
            by="unknown", reason="unreadable freeze record", set_at=datetime.min.replace(tzinfo=UTC)
        )


async def set_freeze(bus: Bus, freeze: FleetFreeze) -> None:
    kv = await bus.kv(subjects.KV_FREEZE)
    await kv.put(FREEZE_KEY, json.dumps(freeze.to_dict(), sort_keys=True).encode())


async def clear_freeze(bus: Bus) -> bool:
    """Delete the record; False when there was none."""
    if await get_freeze(bus) is None:
        return False
    kv = await bus.kv(subjects.KV_FREEZE)
    await kv.delete(FREEZE_KEY)
    return True
