"""bus.connection: a stop that lands while a refused handshake unwinds ends the caller;
what a failover publish retries."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from nats.js.api import Header
from nats.js.errors import NoStreamResponseError

from kanade.bus.connection import _failover_errors, _until_connected_or_refused


async def test_a_stop_while_a_refused_handshake_unwinds_is_not_taken_for_a_retry() -> None:
    unwinding, released = asyncio.Event(), asyncio.Event()

    async def handshake() -> None:
        try:
            await asyncio.Event().wait()  # a server that never completes the handshake
        except asyncio.CancelledError:
            unwinding.set()
            await released.wait()  # nats-py's connect takes a while to give up
            raise

    refused = asyncio.Event()
    refused.set()  # the broker said "Authorization Violation"
    caller = asyncio.ensure_future(_until_connected_or_refused(handshake(), refused, 10.0))
    await asyncio.wait_for(unwinding.wait(), 5)
    caller.cancel()  # the process is told to stop (SIGINT) right then
    released.set()
    # Before: the stop was swallowed with the handshake's own CancelledError and the
    # caller saw "refused by the broker" (TimeoutError), which its retry loop retried.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, 5)


async def test_a_refusal_still_ends_the_handshake_as_refused() -> None:
    async def handshake() -> None:
        await asyncio.Event().wait()

    refused = asyncio.Event()
    refused.set()
    with pytest.raises(TimeoutError, match="refused by the broker"):
        await asyncio.wait_for(_until_connected_or_refused(handshake(), refused, 10.0), 5)


def test_a_publish_with_a_message_id_is_retried_after_a_timeout_one_without_is_not() -> None:
    # The duplicate window makes a second copy of an identified message harmless.
    with_id = _failover_errors({Header.MSG_ID: "election-1"})
    assert NoStreamResponseError in with_id and nats.errors.TimeoutError in with_id
    for headers in (None, {}, {"Other": "x"}, {Header.MSG_ID: ""}):
        assert _failover_errors(headers) == (NoStreamResponseError,)
