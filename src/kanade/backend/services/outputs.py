"""A result's FULL stdout/stderr: the row holds a capped head, the rest is in OBJ_OUTPUTS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import structlog
from nats.js.errors import NotFoundError as JsNotFoundError

from kanade.backend.errors import Conflict, NotFound
from kanade.backend.store import results
from kanade.backend.store.database import Database
from kanade.bus.connection import Bus
from kanade.core import subjects
from kanade.core.digests import sha256_hex
from kanade.core.results import output_object_digest

log = structlog.get_logger(__name__)

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
        data = bytes(obj.data or b"")
        promised = output_object_digest(str(ref))
        if promised is not None and sha256_hex(data) != promised:
            # Another identity overwrote it (every agent may write to the store):
            # never serve content that is not what the pc reported.
            log.warning("output object does not match its digest", result_id=result_id,
                        ref=ref)
            raise Conflict(
                f"the full {stream} of result {result_id!r} ({ref}) in the outputs store "
                "does not match the sha256 its agent reported: it was overwritten; the "
                f"inline head is in GET /api/results/{result_id}",
                result_id=result_id,
                ref=ref,
            )
        return data
