"""Remote kill requests (SPEC §3.4): decoding one, and remembering recent kills so a command
of a killed exec that was already on its way (fetched, not yet admitted) never starts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from kanade.core.models.wire import WireDecodeError, decode

log = logging.getLogger("kanade.agent")

KILL_MEMORY_S: Final = 600.0
"""How long a remote kill keeps applying to commands of that exec that arrive late."""


def kill_request_exec_id(data: bytes) -> str | None:
    """The exec id a kill request names; None (with a warning) when it is malformed."""
    # Not at import: the backend's record models (~150 KB) would stay resident in every
    # idle agent (SPEC §10.2) for a message that rarely comes.
    from kanade.core.models.records import KillRequest

    try:
        return decode(KillRequest, data).exec_id
    except WireDecodeError as exc:
        log.warning("ignored a malformed kill request: %s", exc)
        return None


class KillMemory:
    """The exec ids killed within the last :data:`KILL_MEMORY_S` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._killed: dict[str, float] = {}  # exec_id -> clock time of the kill

    def remember(self, exec_id: str) -> None:
        now = self._clock()
        self._killed[exec_id] = now
        for old, at in list(self._killed.items()):
            if now - at > KILL_MEMORY_S:
                del self._killed[old]

    def __contains__(self, exec_id: object) -> bool:
        return exec_id in self._killed
