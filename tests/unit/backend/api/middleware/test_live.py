"""Live invalidation: only a successful mutating request announces its topics."""

from __future__ import annotations

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanade.backend.api.middleware.live import LiveMiddleware
from kanade.backend.messaging.live import hub


def _app(status: int) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def _call(method: str, path: str, status: int) -> list[tuple[str, dict[str, object]]]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    with hub.subscribe() as sub:
        scope: Scope = {"type": "http", "method": method, "path": path}
        await LiveMiddleware(_app(status))(scope, receive, send)
        events = sub.take()
    assert sent[0]["status"] == status  # the response passes through untouched
    return events


async def test_a_successful_write_announces_its_topics() -> None:
    events = await _call("POST", "/api/schedules/nightly/enable", 200)
    assert [topic for topic, _ in events] == ["schedules", "audit"]


@pytest.mark.parametrize(
    ("method", "status"), [("GET", 200), ("POST", 400), ("DELETE", 404), ("PUT", 500)]
)
async def test_reads_and_failures_announce_nothing(method: str, status: int) -> None:
    assert await _call(method, "/api/schedules/nightly", status) == []
