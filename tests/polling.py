"""Waiting in tests: poll a condition until it holds, failing at a deadline (never a bare sleep).

The one poll-with-deadline helper of the suites, in an async (:func:`eventually`) and a
sync (:func:`wait_until`) form with the same rules:

* ``check`` returns something truthy when the condition holds; that value is returned;
* an exception in ``tolerate`` means "not yet" (e.g. the broker is restarting), the last one is
  named in the failure; any other exception — and :class:`Fatal` ones always — propagates;
* at ``timeout`` the test fails with ``what``, the last tolerated error and, when given,
  ``diagnostics()`` (a log tail, a table dump).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import pytest

DEFAULT_TIMEOUT = 15.0
EVERYTHING: tuple[type[BaseException], ...] = (Exception,)


class Fatal(AssertionError):
    """Raised inside a check: stop waiting at once (e.g. the process under test died)."""


def _not_yet(exc: BaseException, tolerate: tuple[type[BaseException], ...]) -> bool:
    return isinstance(exc, tolerate) and not isinstance(exc, Fatal)


def _give_up(
    what: str,
    timeout: float,
    last: BaseException | None,
    diagnostics: Callable[[], str] | None,
) -> None:
    message = f"{what or 'condition'}: not true within {timeout:g}s"
    if last is not None:
        message += f"\nlast error: {last!r}"
    if diagnostics is not None:
        message += "\n" + diagnostics()
    pytest.fail(message)


async def eventually(
    check: Callable[[], Any],
    what: str = "",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
    tolerate: tuple[type[BaseException], ...] = (),
    tolerate_errors: bool = False,
    diagnostics: Callable[[], str] | None = None,
) -> Any:
    """Await ``check()`` (sync or async) until it returns something truthy (returned).

    ``tolerate_errors=True`` is ``tolerate=EVERYTHING``: any exception means "not yet".
    """
    if tolerate_errors:
        tolerate = EVERYTHING
    give_up = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = check()
            if inspect.isawaitable(got):
                got = await got
        except Exception as exc:
            if not _not_yet(exc, tolerate):
                raise
            got, last = None, exc
        if got:
            return got
        if time.monotonic() >= give_up:
            _give_up(what, timeout, last, diagnostics)
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], Any],
    what: str = "",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.05,
    tolerate: tuple[type[BaseException], ...] = (),
    diagnostics: Callable[[], str] | None = None,
) -> Any:
    """The synchronous :func:`eventually`: call ``check()`` until it returns something truthy
    (returned); fail after ``timeout``."""
    give_up = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = check()
        except Exception as exc:
            if not _not_yet(exc, tolerate):
                raise
            got, last = None, exc
        if got:
            return got
        if time.monotonic() >= give_up:
            _give_up(what, timeout, last, diagnostics)
        time.sleep(interval)
