"""A result's FULL stdout/stderr: the row holds a capped head, the rest is in OBJ_OUTPUTS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from nats.js.errors import NotFoundError as JsNotFoundError

from kanade.backend.errors import NotFound
from kanade.backend.store import results
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core import subjects

OutputStream = Literal["stdout", "stderr"]


class OutputService:
    def __init__(self, db: Database, bus: Callable[[], Bus]) -> None:
        self._db = db
        self._bus = bus

    async def output(self, result_id: str, stream: OutputStream) -> bytes:
        row = await self._db.read(lambda conn: results.get_result(conn, result_id))
        if row is None:
            raise NotFound(f"result {result_id!r} not found", result_id=result_id)
        ref = row.get(f"{stream}_ref")
        if not ref:
            return str(row.get(stream) or "").encode()
        store = await self._bus().obj(subjects.OBJ_OUTPUTS)
        try:
            obj = await store.get(str(ref))
        except JsNotFoundError:
            raise NotFound(
                f"the full {stream} of result {result_id!r} ({ref}) is no longer in the "
                f"outputs store; the inline head is in GET /api/results/{result_id}",
                result_id=result_id,
                ref=ref,
            ) from None
        return bytes(obj.data or b"")
