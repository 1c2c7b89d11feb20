"""kanade.core.models: documents people write (job, schedule, target) and wire messages.

The names below are loaded on first use (PEP 562): importing one submodule, say
:mod:`kanade.core.models.wire` in the agent, must not build every document model (the
schedule models pull in cronsim and the time-zone rules), which costs resident memory in
every agent of the fleet (SPEC §10.2).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kanade.core.models.base import DocModel, WireModel
    from kanade.core.models.constraints import (
        ActiveRange,
        Constraints,
        OnFailure,
        Retry,
        TimeWindow,
    )
    from kanade.core.models.job import Check, Execute, Inventory, JobManifest, Staleness
    from kanade.core.models.schedule import Schedule
    from kanade.core.models.target import Target
    from kanade.core.models.waves import Rollout, Wave
    from kanade.core.models.when import Calendar, DaySpec, Reconcile, When
    from kanade.core.models.wire import (
        CheckHint,
        Command,
        CommandAddress,
        EventStarted,
        Heartbeat,
        InventoryHint,
        Result,
        RetryWire,
        StalenessWire,
        WireDecodeError,
        decode,
        encode,
    )

_SUBMODULE: dict[str, str] = {
    **dict.fromkeys(("DocModel", "WireModel"), "base"),
    **dict.fromkeys(("Check", "Execute", "Inventory", "JobManifest", "Staleness"), "job"),
    **dict.fromkeys(
        ("ActiveRange", "Constraints", "OnFailure", "Retry", "TimeWindow"), "constraints"
    ),
    **dict.fromkeys(("Calendar", "DaySpec", "Reconcile", "When"), "when"),
    **dict.fromkeys(("Rollout", "Wave"), "waves"),
    "Schedule": "schedule",
    "Target": "target",
    **dict.fromkeys(
        (
            "CheckHint",
            "Command",
            "CommandAddress",
            "EventStarted",
            "Heartbeat",
            "InventoryHint",
            "Result",
            "RetryWire",
            "StalenessWire",
            "WireDecodeError",
            "decode",
            "encode",
        ),
        "wire",
    ),
}


if not TYPE_CHECKING:  # hidden from mypy, which then checks every imported name

    def __getattr__(name: str) -> Any:
        submodule = _SUBMODULE.get(name)
        if submodule is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_SUBMODULE})


__all__ = [
    "ActiveRange",
    "Calendar",
    "Check",
    "CheckHint",
    "Command",
    "CommandAddress",
    "Constraints",
    "DaySpec",
    "DocModel",
    "EventStarted",
    "Execute",
    "Heartbeat",
    "Inventory",
    "InventoryHint",
    "JobManifest",
    "OnFailure",
    "Reconcile",
    "Result",
    "Retry",
    "RetryWire",
    "Rollout",
    "Schedule",
    "Staleness",
    "StalenessWire",
    "Target",
    "TimeWindow",
    "Wave",
    "When",
    "WireDecodeError",
    "WireModel",
    "decode",
    "encode",
]
