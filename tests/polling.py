"""Waiting in tests: poll a condition until it holds, failing at a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest


async def eventually(
    check: Callable[[], Awaitable[Any]],
    what: str = "",
    *,
    timeout: float = 15.0,
    interval: float = 0.02,
    tolerate_errors: bool = False,
) -> Any:
    """Await ``check()`` until it returns something truthy (returned); fail after ``timeout``.

    ``tolerate_errors``: an exception (e.g. the broker restarting) means "not yet".
    """
    give_up = time.monotonic() + timeout
    while True:
        try:
            got = await check()
        except Exception:
            if not tolerate_errors:
                raise
            got = None
        if got:
            return got
        if time.monotonic() >= give_up:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], Any],
    what: str = "",
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    tolerate: tuple[type[BaseException], ...] = (),
) -> Any:
    """The synchronous :func:`eventually`: call ``check()`` until it returns something truthy
    (returned); fail after ``timeout``. Exceptions in ``tolerate`` mean "not yet" (the last
    one is named in the failure)."""
    give_up = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = check()
        except tolerate as exc:
            got, last = None, exc
        if got:
            return got
        if time.monotonic() >= give_up:
            pytest.fail(
                f"not within {timeout}s: {what}" + (f" (last error {last!r})" if last else "")
            )
        time.sleep(interval)
