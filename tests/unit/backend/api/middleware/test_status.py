"""The status capture the after-the-response middlewares share."""

from __future__ import annotations

from starlette.types import Message

from kanade.backend.api.middleware.status import StatusCapture


async def test_remembers_the_status_and_forwards_every_message() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    capture = StatusCapture(send)
    assert capture.status is None and not capture.succeeded
    await capture({"type": "http.response.start", "status": 201, "headers": []})
    await capture({"type": "http.response.body", "body": b"{}"})
    assert capture.status == 201 and capture.succeeded
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


async def test_an_error_status_is_not_a_success() -> None:
    async def send(message: Message) -> None:
        return None

    capture = StatusCapture(send)
    await capture({"type": "http.response.start", "status": 409, "headers": []})
    assert capture.status == 409 and not capture.succeeded
