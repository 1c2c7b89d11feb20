"""Connect to NATS and stay connected: retry the first connect, reconnect forever after;
the :class:`Bus` wrapper.

Why full jitter and an endless reconnect: docs/bus.md, "Connecting and staying connected".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from kanade.bus import headers
from kanade.bus.credentials import BusCredentials
from kanade.bus.kvsigned import SignedKeyValue
from kanade.bus.retry import Backoff, retry
from kanade.core.signing import Signer
from kanade.core.subjects import COMMANDS_ALL, SIGNED_BUCKETS

__all__ = [
    "MSG_ID_HEADER",
    "Backoff",
    "Bus",
    "BusConnectError",
    "FailoverJetStream",
    "StateCallback",
    "connect",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _not_nats_tls_noise(record: logging.LogRecord) -> bool:
    # nats-py's protocol answers end-of-stream with True, which asyncio's TLS transport
    # ignores and warns about on every closed TLS connection (every connection is TLS:
    # SPEC §8.1); the close itself is reported by our callbacks.
    return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_not_nats_tls_noise)

StateCallback = Callable[[str], None]
"""Receives "connected", "disconnected", "reconnected" or "closed"."""

MSG_ID_HEADER: Final = Header.MSG_ID.value
"""The JetStream dedup header; its values come from :mod:`kanade.core.msgids`."""

# Defaults applied to every connection; any of them can be overridden through **opts.
_DEFAULT_OPTS: dict[str, Any] = {
    "connect_timeout": 2,
    # Detect a half-open TCP connection (broker host vanished) within ~1.5 min instead
    # of nats-py's default 2 min x 2 pings.
    "ping_interval": 30,
    "max_outstanding_pings": 3,
    # Publishes made while reconnecting are buffered up to this size; it must hold at
    # least one max_payload (8MB) message or a large result cannot wait out a restart.
    "pending_size": 16 * 1024 * 1024,
}
COMMAND_PREFIX: Final = COMMANDS_ALL.removesuffix(">")
_CONNECT_ERRORS = (OSError, TimeoutError, nats.errors.Error)
_CALLBACK_OPTS = ("error_cb", "disconnected_cb", "reconnected_cb", "closed_cb")
_WARN_EVERY_S = 30.0


class BusConnectError(ConnectionError):
    """No broker could be reached before the deadline (or at all, without retry)."""


async def connect(
    servers: str | list[str],
    *,
    name: str,
    retry_forever: bool = True,
    deadline: float | None = None,
    on_state: StateCallback | None = None,
    credentials: BusCredentials | None = None,
    **opts: Any,
) -> Client:
    """Connect to NATS, waiting for a broker to appear if none is reachable yet.

    ``retry_forever``: keep trying until connected, or until ``deadline`` seconds have
    passed if one is given. Without it, one attempt is made when ``deadline`` is None
    (fail fast, for CLI verbs), else attempts continue until the deadline. Raises
    :class:`BusConnectError` when giving up.

    After the first success the client reconnects forever on its own. ``on_state`` is
    told "connected", "disconnected", "reconnected" and "closed". Extra ``opts`` go to
    ``nats.aio.client.Client.connect`` (e.g. ``user``, ``password``, ``tls``); the
    ``*_cb`` callbacks in ``opts`` are still called, after ours.
    """
    server_list = [servers] if isinstance(servers, str) else list(servers)
    if not server_list:
        raise ValueError("connect() needs at least one server URL")
    if credentials is not None:
        opts = {**credentials.connect_options(), **opts}
    give_up_at = None if deadline is None else time.monotonic() + deadline
    one_shot = not retry_forever and deadline is None
    attempt = 0
    first_failure = time.monotonic()
    last_warning = 0.0

    async def once() -> Client:
        nonlocal attempt
        attempt += 1
        remaining = None if give_up_at is None else give_up_at - time.monotonic()
        try:
            return await _connect_once(server_list, name, on_state, dict(opts), remaining)
        except _CONNECT_ERRORS as exc:
            log.debug("nats connect attempt %d to %s failed: %r", attempt, server_list, exc)
            raise

    def warn(failed: int, exc: BaseException, _delay: float) -> None:
        nonlocal last_warning
        now = time.monotonic()
        if now - last_warning >= _WARN_EVERY_S:
            last_warning = now
            log.warning(
                "NATS at %s unreachable for %.0fs (%d attempts, last error %r); retrying",
                ", ".join(server_list),
                now - first_failure,
                failed,
                exc,
            )

    try:
        nc = await retry(
            once,
            attempts=1 if one_shot else None,
            deadline=deadline,
            retry_on=_CONNECT_ERRORS,
            on_retry=warn,
        )
    except _CONNECT_ERRORS as exc:
        raise BusConnectError(
            f"cannot connect to NATS at {', '.join(server_list)} "
            f"after {attempt} attempt(s): {exc!r}"
        ) from exc
    log.info("connected to NATS %s as %r (attempt %d)", _where(nc), name, attempt)
    _notify(on_state, "connected")
    return nc


async def until_closed(work: Awaitable[T], closed: asyncio.Event) -> T | None:
    """Run ``work`` until it ends (its result) or ``closed`` is set first (None).

    nats-py gives a connection up for good when the broker answers with an error
    (credentials refused or revoked, authentication expired, a protocol violation), and
    work bound to that connection would then wait forever: long-lived processes run
    their per-connection work through this and connect again. An error in ``work``
    propagates; ``work`` is cancelled when ``closed`` wins.
    """
    doing = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait({doing, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (doing, watching):
            task.cancel()
        await asyncio.gather(doing, watching, return_exceptions=True)
    if doing.cancelled():
        return None
    return doing.result()


async def _connect_once(
    servers: list[str],
    name: str,
    on_state: StateCallback | None,
    opts: dict[str, Any],
    remaining: float | None,
) -> Client:
    """One attempt: TCP-probe the servers, then let nats-py do the handshake."""
    settings = {**_DEFAULT_OPTS, **opts}
    connect_timeout = float(settings["connect_timeout"])
    if remaining is not None and remaining <= 0:
        raise TimeoutError("connect deadline reached")
    if not await _any_reachable(servers, connect_timeout):
        raise ConnectionRefusedError(f"no NATS server reachable at {', '.join(servers)}")

    user_cbs = {key: settings.pop(key, None) for key in _CALLBACK_OPTS}
    errors_seen: list[BaseException] = []
    connected = False
    refused = asyncio.Event()

    async def error_cb(exc: Exception) -> None:
        if not connected:
            errors_seen.append(exc)
            if _is_refusal(exc):
                refused.set()
        _log_connection_error(exc)
        await _chain(user_cbs["error_cb"], exc)

    async def disconnected_cb() -> None:
        # nats-py also calls this on a deliberate close(), right before closed_cb:
        # that is reported as "closed" only.
        if connected and not nc.is_closed:
            log.warning("disconnected from NATS (%s); reconnecting", name)
            _notify(on_state, "disconnected")
        await _chain(user_cbs["disconnected_cb"])

    async def reconnected_cb() -> None:
        log.info("reconnected to NATS %s (%s)", _where(nc), name)
        _notify(on_state, "reconnected")
        await _chain(user_cbs["reconnected_cb"])

    async def closed_cb() -> None:
        if connected:
            log.info("NATS connection closed (%s)", name)
            _notify(on_state, "closed")
        await _chain(user_cbs["closed_cb"])

    settings.setdefault("allow_reconnect", True)
    settings.setdefault("max_reconnect_attempts", -1)  # reconnect forever
    # Per-process random wait: a fleet dropped by a broker restart spreads its
    # reconnects over the interval instead of arriving in one burst.
    settings.setdefault("reconnect_time_wait", random.uniform(1.0, 3.0))

    nc: Client = headers.Client()  # nats-py's, with a faster header parser
    # The handshake is INFO, CONNECT, PING/PONG, each bounded by connect_timeout; if a
    # reachable server keeps refusing us (e.g. bad credentials), nats-py would retry
    # forever inside connect(): bound it and fall back to our own backoff loop.
    bound = 3 * connect_timeout + 1.0
    if remaining is not None:
        bound = min(bound, remaining)
    try:
        await _until_connected_or_refused(
            nc.connect(
                servers,
                name=name,
                error_cb=error_cb,
                disconnected_cb=disconnected_cb,
                reconnected_cb=reconnected_cb,
                closed_cb=closed_cb,
                **settings,
            ),
            refused,
            bound,
        )
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        if isinstance(exc, TimeoutError) and errors_seen:
            raise TimeoutError(f"NATS handshake failed: {errors_seen[-1]!r}") from exc
        raise
    connected = True
    return nc


def _is_refusal(exc: BaseException) -> bool:
    """The broker answered but will not have us (credentials refused or revoked, or it
    is not the broker our CA vouches for): retrying at once cannot help."""
    text = str(exc).lower()
    return "authorization violation" in text or "certificate verify failed" in text or (
        "authentication" in text and "expired" in text
    )


async def _until_connected_or_refused(
    handshake: Awaitable[None], refused: asyncio.Event, bound: float
) -> None:
    """Await ``handshake`` for at most ``bound`` seconds; a refusal ends it early
    (nats-py alone would keep retrying a refusing server until the bound)."""
    connecting = asyncio.ensure_future(handshake)
    watching = asyncio.ensure_future(refused.wait())
    try:
        done, _ = await asyncio.wait(
            {connecting, watching}, timeout=bound, return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:
        # Our caller is being stopped: the handshake must not outlive it (nats-py's own
        # connect loop keeps retrying a refusing server, and asyncio.run would wait on it).
        connecting.cancel()
        raise
    finally:
        watching.cancel()
    if connecting in done:
        connecting.result()
        return
    connecting.cancel()
    # Let it unwind without mistaking its CancelledError for ours: a stop landing in this
    # wait (our caller cancelled: SIGINT to a swarm its broker keeps refusing) must end
    # the caller, not become one more "refused" to retry — a suppressed one left the
    # swarm retrying until it was killed.
    await asyncio.wait({connecting})
    if not connecting.cancelled():
        connecting.exception()  # retrieved: it ended as refused or timed out, said below
    raise TimeoutError("refused by the broker" if refused.is_set() else "handshake timed out")


async def _any_reachable(servers: list[str], timeout: float) -> bool:
    """True if a TCP connection to any server succeeds (cheap, no NATS handshake).

    Probing first keeps the retry loop (and its logging) ours: nats-py's connect would
    otherwise sit in its own fixed-interval loop while the broker is down.
    """
    for url in servers:
        host, port = _host_port(url)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def _where(nc: Client) -> str:
    url = nc.connected_url
    return url.netloc if url is not None else "?"


def _host_port(url: str) -> tuple[str, int]:
    if "://" not in url:
        url = f"nats://{url}"
    parts = urlsplit(url)
    default = {"ws": 80, "wss": 443}.get(parts.scheme, 4222)
    return parts.hostname or "127.0.0.1", parts.port or default


_last_error_warning: dict[str, float] = {}


def _log_connection_error(exc: BaseException) -> None:
    """Errors repeat every reconnect attempt while the broker is down: log each at debug,
    and a warning per kind of error at most every 30s."""
    kind = type(exc).__name__
    now = time.monotonic()
    if now - _last_error_warning.get(kind, -_WARN_EVERY_S) >= _WARN_EVERY_S:
        _last_error_warning[kind] = now
        log.warning("NATS connection error: %r", exc)
    else:
        log.debug("NATS connection error: %r", exc)


def _notify(on_state: StateCallback | None, state: str) -> None:
    if on_state is None:
        return
    try:
        on_state(state)
    except Exception:  # a buggy observer must never break the NATS client's loops
        log.exception("on_state(%r) callback failed", state)


async def _chain(cb: Callable[..., Awaitable[None]] | None, *args: Any) -> None:
    if cb is not None:
        await cb(*args)


FAILOVER_S: Final = 15.0
"""How long a JetStream publish waits out a stream without a leader (SPEC §9): when a
cluster node dies, the streams it led elect a new leader among the others within a few
seconds, and meanwhile nobody answers on their subjects ("no responders")."""


class FailoverJetStream(JetStreamContext):
    """A JetStream context whose publishes — messages and KV writes alike — are retried
    while nobody answers on the stream's subject: a stream electing a new leader after a
    cluster node died. Safe: an unanswered publish was not stored.

    A publish carrying a message id is also retried when its answer timed out (the request
    reached the dying leader, or the new one answered too late): if the first copy was
    stored after all, the stream's duplicate window drops the second. Without an id a
    timeout stays the caller's, as does any error from the stream."""

    async def publish(self, *args: Any, **kwargs: Any) -> PubAck:
        return await retry(
            lambda: JetStreamContext.publish(self, *args, **kwargs),
            retry_on=_failover_errors(kwargs.get("headers")),
            deadline=FAILOVER_S,
            base=0.05,
            cap=1.0,
        )


def _failover_errors(headers: dict[str, str] | None) -> tuple[type[Exception], ...]:
    if headers and headers.get(Header.MSG_ID):
        return (nats.js.errors.NoStreamResponseError, nats.errors.TimeoutError)
    return (nats.js.errors.NoStreamResponseError,)


class Bus:
    """A connected NATS client, its JetStream context and cached KV / object handles."""

    def __init__(
        self, nc: Client, *, js_timeout: float = 5.0, signer: Signer | None = None
    ) -> None:
        self._nc = nc
        self._js = FailoverJetStream(nc, timeout=js_timeout)
        self._kv: dict[str, KeyValue] = {}
        self._obj: dict[str, ObjectStore] = {}
        self.signer = signer
        """The backend's signer (SPEC §8.2): with one, every command this bus publishes
        and every write to a bucket agents obey carries its signature. Agents and
        read-only tools have none."""

    @classmethod
    async def connect(
        cls,
        servers: str | list[str],
        *,
        name: str,
        js_timeout: float = 5.0,
        signer: Signer | None = None,
        **kwargs: Any,
    ) -> Bus:
        """:func:`connect` then wrap; ``kwargs`` as for :func:`connect`."""
        return cls(
            await connect(servers, name=name, **kwargs), js_timeout=js_timeout, signer=signer
        )

    @property
    def nc(self) -> Client:
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self._js

    async def kv(self, name: str) -> KeyValue:
        """The KV bucket ``name`` (must exist: see ``ensure_topology``), cached. A bucket
        agents obey is written through :class:`~kanade.bus.kvsigned.SignedKeyValue` when
        this bus has a signer: every put, update, delete and purge is signed."""
        bucket = self._kv.get(name)
        if bucket is None:
            bucket = await self._js.key_value(name)
            if self.signer is not None and name in SIGNED_BUCKETS:
                bucket = SignedKeyValue(bucket, self.signer)
            self._kv[name] = bucket
        return bucket

    def signed(self, subject: str, payload: bytes, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` plus the command signature when ``subject`` is a command subject
        and this bus signs: every command the backend publishes goes through here."""
        if self.signer is not None and subject.startswith(COMMAND_PREFIX):
            headers.update(self.signer.command_headers(subject, payload))
        return headers

    async def obj(self, name: str) -> ObjectStore:
        """The object store ``name`` (must exist: see ``ensure_topology``), cached."""
        store = self._obj.get(name)
        if store is None:
            store = await self._js.object_store(name)
            self._obj[name] = store
        return store

    async def publish_js(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str | None = None,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        """Publish to JetStream and wait for the ack.

        ``msg_id`` becomes the ``Nats-Msg-Id`` header: within the stream's duplicate
        window the broker stores a message id once, so a publish retried after a lost
        ack (timeout, reconnect) is harmless; ``PubAck.duplicate`` tells it was one.
        """
        hdrs = self.signed(subject, payload, dict(headers) if headers else {})
        if msg_id is not None:
            hdrs[MSG_ID_HEADER] = msg_id
        return await self._js.publish(subject, payload, timeout=timeout, headers=hdrs or None)

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what was published, then close. Idempotent; never hangs past ``timeout``."""
        nc = self._nc
        if nc.is_closed:
            return
        if nc.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.flush(), timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout)

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
