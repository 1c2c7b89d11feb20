"""The fleet freeze record in KV (``kanade_freeze`` / ``fleet``; SPEC §4.5).

The record is JSON so agents and both schedulers read it without kanade's models; the one
model and its decoder are :mod:`kanade.core.freeze`. Clearing deletes the key: "no key"
is the one unambiguous "not frozen" every reader understands.
"""

from __future__ import annotations

import json

import structlog
from nats.js.errors import KeyNotFoundError

from kanade.bus.connection import Bus
from kanade.bus.kvsigned import SignedKeyValue, signed_by
from kanade.core import subjects
from kanade.core.freeze import (
    FREEZE_KEY,
    FleetFreeze,
    Freeze,
    decode_fleet_freeze,
    unreadable_freeze,
)
from kanade.core.instants import system_clock

log = structlog.get_logger(__name__)


async def get_freeze(bus: Bus) -> FleetFreeze | None:
    kv = await bus.kv(subjects.KV_FREEZE)
    if isinstance(kv, SignedKeyValue):
        # The record's last write, set or clear, must be this backend's (SPEC §8.2): an
        # unsigned one reads as frozen, so an unsigned delete never un-freezes.
        change = await kv.last(FREEZE_KEY)
        if change is None:
            return None
        if not signed_by(bus.signer, subjects.KV_FREEZE, change, system_clock()):
            _log_unreadable(ValueError("the freeze record is not signed by this backend"))
            return unreadable_freeze()
        return decode_fleet_freeze(change.value, _log_unreadable)
    try:
        entry = await kv.get(FREEZE_KEY)
    except KeyNotFoundError:
        return None
    return decode_fleet_freeze(entry.value, _log_unreadable)


def _log_unreadable(exc: Exception) -> None:
    # A damaged record must not read as "not frozen": freezing is the safe side.
    log.error("unreadable freeze record; treating the fleet as frozen", error=str(exc))


async def read_freeze(bus: Bus) -> Freeze | None:
    """The fleet freeze as the window the schedulers gate on (unreadable reads as frozen)."""
    record = await get_freeze(bus)
    return None if record is None else record.window


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
