"""The fleet-wide freeze of scheduled fires (SPEC §4.5): read it, set a window, lift it.
Manual execs are never gated; setting and lifting are audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from kanade.backend.catalog.freeze import clear_freeze, get_freeze, set_freeze
from kanade.backend.errors import Invalid
from kanade.backend.messaging.audit import publish_audit
from kanade.bus.connection import Bus
from kanade.core.freeze import FleetFreeze, is_frozen
from kanade.core.instants import system_clock


def view(freeze: FleetFreeze | None, now: datetime) -> dict[str, Any]:
    return {
        "frozen": is_frozen(freeze, now),
        "freeze": None if freeze is None else freeze.to_dict(),
    }


async def status(bus: Callable[[], Bus]) -> dict[str, Any]:
    """Whether scheduled fires are frozen now, and the stored window if any."""
    return view(await get_freeze(bus()), system_clock())


async def freeze(
    bus: Callable[[], Bus],
    *,
    from_: datetime | None,
    until: datetime | None,
    reason: str,
    actor: str,
) -> dict[str, Any]:
    now = system_clock()
    if until is not None and until <= now:
        raise Invalid.at("until", "is in the past; a freeze must end in the future")
    window = FleetFreeze(from_=from_, until=until, by=actor, reason=reason, set_at=now)
    await set_freeze(bus(), window)
    await publish_audit(bus, "freeze.set", actor, window.to_dict())
    return view(window, now)


async def thaw(bus: Callable[[], Bus], *, actor: str) -> dict[str, Any]:
    """Lift the freeze (idempotent: ``cleared`` says whether there was one)."""
    cleared = await clear_freeze(bus())
    if cleared:
        await publish_audit(bus, "freeze.clear", actor, {})
    return {**view(None, system_clock()), "cleared": cleared}
