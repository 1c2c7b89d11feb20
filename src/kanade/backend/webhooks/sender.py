"""Sending one notification: a POST with a timeout, no redirects followed, and at most a
few hundred bytes of the answer read (for the error a person sees). Never raises: every
failure becomes a :class:`Sent` with its error, which the outbox turns into a retry."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import httpx

from kanade import __version__
from kanade.core.notify.payloads import Notification, body_for, headers_for
from kanade.core.notify.retry import parse_retry_after

USER_AGENT: Final = f"kanade/{__version__} (+webhook)"
ANSWER_READ: Final = 512
"""Bytes of an error answer kept for the delivery's error text."""


@dataclass(frozen=True)
class Sent:
    status_code: int | None
    error: str | None
    ms: float
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def new_client(timeout_s: float) -> httpx.AsyncClient:
    """One client per sender: connections are reused between deliveries to one host."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
    )


def _snippet(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:200]


async def send(
    client: httpx.AsyncClient,
    *,
    webhook_kind: str,
    url: str,
    secret: str | None,
    notification: Notification,
    timeout_s: float,
    now: datetime,
) -> Sent:
    """POST ``notification`` to ``url`` as a webhook of ``webhook_kind`` wants it."""
    body = body_for(webhook_kind, notification)
    headers = headers_for(
        webhook_kind,
        notification,
        body=body,
        secret=secret,
        timestamp=int(now.timestamp()),
        agent=USER_AGENT,
    )
    t0 = time.monotonic()

    def took() -> float:
        return (time.monotonic() - t0) * 1000

    try:
        # The whole exchange, connection included, is bounded (httpx's timeout is per phase).
        async with asyncio.timeout(timeout_s):
            async with client.stream("POST", url, content=body, headers=headers) as resp:
                code = resp.status_code
                if 200 <= code < 300:
                    return Sent(code, None, took())
                answer = b""
                async for chunk in resp.aiter_bytes():
                    answer += chunk
                    if len(answer) >= ANSWER_READ:
                        break
                retry_after = parse_retry_after(resp.headers.get("retry-after"), now)
                if 300 <= code < 400:
                    where = resp.headers.get("location", "?")[:200]
                    error = f"HTTP {code}: redirect to {where} not followed"
                else:
                    error = f"HTTP {code}" + (f": {_snippet(answer)}" if answer.strip() else "")
                return Sent(code, error, took(), retry_after)
    except TimeoutError:
        return Sent(None, f"no answer within {timeout_s:g}s", took())
    except httpx.TimeoutException:
        return Sent(None, f"no answer within {timeout_s:g}s", took())
    except httpx.ConnectError as exc:
        return Sent(None, f"cannot connect: {exc}"[:300] or "cannot connect", took())
    except httpx.HTTPError as exc:
        return Sent(None, f"{type(exc).__name__}: {exc}"[:300], took())
