"""The one thing the after-the-response middlewares need to know: the status sent."""

from __future__ import annotations

from starlette.types import Message, Send


class StatusCapture:
    """Wraps ``send`` and remembers the response's status code (None until it starts)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.status is None:
            self.status = int(message["status"])
        await self._send(message)

    @property
    def succeeded(self) -> bool:
        return self.status is not None and self.status < 400
