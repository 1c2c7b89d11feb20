"""The backend's connection to the broker, brought up in the background.

The backend must start (and answer ``/health``) even while the broker is not up
yet: the link connects with retry in a task, then ensures the topology, creates
the projector consumers and starts the workers. Routes that need the broker ask
:meth:`BrokerLink.bus`, which raises a 503-mapped error until it is ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from kanade.backend.errors import Unavailable
from kanade.bus.connection import Bus, until_closed
from kanade.bus.credentials import BusCredentials
from kanade.bus.retry import retry
from kanade.bus.tasks import cancel_and_wait
from kanade.bus.topology import ensure_topology
from kanade.core.signing import Signer

log = structlog.get_logger(__name__)

OnReady = Callable[[Bus], Awaitable[list[asyncio.Task[None]]]]


class BrokerLink:
    def __init__(
        self,
        urls: str | list[str],
        *,
        credentials: BusCredentials,
        name: str = "kanade-backend",
        signer: Signer | None = None,
        stream_replicas: int | None = None,
    ) -> None:
        """``urls``: the broker, or every node of a cluster (the connection fails over
        between them); ``stream_replicas`` as for
        :func:`~kanade.bus.topology.ensure_topology` (None: as the cluster warrants)."""
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.url = ", ".join(self.urls)
        self._replicas = stream_replicas
        self._credentials = credentials
        self.signer = signer
        self._name = name
        self._bus: Bus | None = None
        self._ready = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and self._bus is not None and self._bus.nc.is_connected

    def bus(self) -> Bus:
        """The connected bus, or :class:`Unavailable` (HTTP 503)."""
        if self._bus is None or not self._ready.is_set():
            raise Unavailable(
                f"the broker at {self.url} is not connected yet; retry shortly",
                broker=False,
            )
        if not self._bus.nc.is_connected:
            raise Unavailable(
                f"the connection to the broker at {self.url} is down; reconnecting",
                broker=False,
            )
        return self._bus

    async def wait_ready(self, timeout: float) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def start(self, on_ready: OnReady) -> None:
        self._main = asyncio.create_task(self._bring_up(on_ready), name="broker-link")

    async def _bring_up(self, on_ready: OnReady) -> None:
        while True:
            closed = asyncio.Event()

            def on_state(state: str, closed: asyncio.Event = closed) -> None:
                if state == "closed":
                    closed.set()

            bus = await Bus.connect(
                self.urls,
                name=self._name,
                retry_forever=True,
                credentials=self._credentials,
                signer=self.signer,
                on_state=on_state,
            )
            self._bus = bus
            await until_closed(self._set_up(bus, on_ready), closed)
            await closed.wait()
            # The broker gave this connection up for good (see bus.connection.until_closed):
            # stop what ran on it and connect again; routes answer 503 meanwhile.
            self._ready.clear()
            self.last_error = str(bus.nc.last_error or "connection closed by the broker")
            log.error("the broker closed the backend's connection; connecting again",
                      error=self.last_error)
            await cancel_and_wait(self._workers)
            self._workers = []
            await asyncio.sleep(1.0)  # a broker that keeps closing us is not hammered

    async def _set_up(self, bus: Bus, on_ready: OnReady) -> None:
        async def setup() -> list[asyncio.Task[None]]:
            await ensure_topology(bus.js, replicas=self._replicas)
            return await on_ready(bus)

        def failed(_attempt: int, exc: BaseException, delay: float) -> None:
            self.last_error = str(exc)
            log.warning("broker setup failed; retrying", error=str(exc), delay_s=delay)

        # Topology and consumers need a live broker; a failure here (broker restarting,
        # JetStream still recovering) is retried without limit, never fatal.
        self._workers = await retry(setup, base=0.2, cap=5.0, on_retry=failed)
        self.last_error = None
        self._ready.set()
        log.info("broker ready", url=self.url)

    async def close(self) -> None:
        tasks = [t for t in (self._main, *self._workers) if t is not None]
        await cancel_and_wait(tasks)
        self._ready.clear()
        if self._bus is not None:
            await self._bus.close()
            self._bus = None
