"""``GET /api/executions/{exec_id}/live``: a running exec's output as its agents write it,
as server-sent events (SPEC §4.12; docs/live-output.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from sse_starlette import EventSourceResponse

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import ExecId
from kanade.backend.services.live_output import MAX_PCS

router = APIRouter(prefix="/api", tags=["executions"])

PING_S: Final = 15
"""Comment pings keep proxies from closing a quiet stream."""


@router.get("/executions/{exec_id}/live", response_class=EventSourceResponse)
async def live_output(
    exec_id: ExecId,
    services: ServicesDep,
    pc: Annotated[list[str] | None, Query(max_length=MAX_PCS)] = None,
) -> EventSourceResponse:
    """Server-sent events, each with ``event:`` and a JSON ``data:``:

    * ``hello`` — ``{exec_id, status, pcs}``, first;
    * ``chunk`` — ``{exec_id, pc_id, seq, attempt, stdout, stderr, stdout_elided,
      stderr_elided, final}``: output of one pc, in order per pc; ``*_elided`` bytes were
      left out just before this text (the agent's rate cap, or a watch that began after
      them); a gap in ``seq`` is a chunk lost on the way; ``final``: that pc's run ended;
    * ``dropped`` — ``{chunks}``: this stream read too slowly and missed that many;
    * ``end`` — ``{exec_id, status}``: the exec ended; the stream closes.

    ``pc`` (repeatable) narrows it to those pcs. Best effort: the result of each pc holds
    its output whatever this stream missed. ``?access_token=`` is accepted here, as for
    ``/api/events`` (EventSource cannot send headers)."""
    events = await services.live_output.follow(exec_id, pc)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        async for event in events:
            yield {"event": event.kind, "data": json.dumps(event.data, separators=(",", ":"))}

    return EventSourceResponse(
        stream(), ping=PING_S, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
