"""The handles most services hold: the database, the broker (as a getter) and a clock."""

from __future__ import annotations

from collections.abc import Callable

from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core.instants import Clock, system_clock


class Service:
    """A service on the database and the broker, reading time through an injected clock."""

    def __init__(
        self, db: Database, bus: Callable[[], Bus], *, clock: Clock = system_clock
    ) -> None:
        self._db = db
        self._bus = bus  # a getter: raises Unavailable while the broker is away
        self._clock = clock
