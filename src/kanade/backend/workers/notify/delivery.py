"""``notify-delivery``: sends due deliveries from the outbox (``notify_deliveries``).

Each pass claims up to ``concurrency`` due deliveries (:func:`~kanade.backend.store.
deliveries.claim_due`), sends them at once, and writes every outcome in one transaction:
delivered, due again after its exponential backoff (capped), or failed when out of
attempts. A crash between claim and outcome only delays that delivery until its claim
lapses; it is then sent again with the same idempotency key. Why: docs/notifications.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx
import structlog

from kanade.backend.messaging.live import hub
from kanade.backend.store import deliveries, notify_events
from kanade.backend.store.database import Database
from kanade.backend.store.deliveries import Claimed, Outcome
from kanade.backend.webhooks.sender import new_client, send
from kanade.core.instants import Clock, system_clock
from kanade.core.notify.payloads import Notification, StoredEvent
from kanade.core.notify.retry import RetryPolicy
from kanade.worker import Worker

log = structlog.get_logger(__name__)


def stored_event(row: dict[str, object]) -> StoredEvent:
    details = row.get("details")
    return StoredEvent(
        id=str(row["event_id"]),
        kind=str(row["kind"]),
        occurred_at=row["occurred_at"],  # type: ignore[arg-type]
        summary=str(row["summary"]),
        details=details if isinstance(details, dict) else {},
    )


class NotifyDelivery(Worker):
    name = "notify-delivery"

    def __init__(
        self,
        db: Database,
        *,
        leading: Callable[[], bool],
        policy: RetryPolicy,
        timeout_s: float = 10.0,
        concurrency: int = 8,
        interval_s: float = 1.0,
        clock: Clock = system_clock,
        on_attempt: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(interval=interval_s)
        self._db = db
        self._leading = leading
        self.policy = policy
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self._clock = clock
        self._on_attempt = on_attempt
        self._client: httpx.AsyncClient | None = None

    @property
    def hold(self) -> timedelta:
        """How long a claimed delivery is not due: longer than any send can take."""
        return timedelta(seconds=self._timeout_s * 2 + 5)

    async def setup(self) -> None:
        self._client = new_client(self._timeout_s)

    async def teardown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def step(self) -> bool | None:
        if not self._leading() or self._client is None:
            return None
        now = self._clock()
        claimed = await self._db.write(
            lambda c: deliveries.claim_due(c, now, self._concurrency, self.hold)
        )
        if not claimed:
            return None
        wanted = {e for c in claimed for e in c.event_ids}
        events = await self._db.read(lambda c: notify_events.events_by_id(c, wanted))
        outcomes = await asyncio.gather(*(self._send(c, events) for c in claimed))
        done = self._clock()
        await self._db.write(lambda c: deliveries.record_outcomes(c, outcomes, done, self.policy))
        self._count(outcomes)
        hub.publish("notify", {"webhooks": sorted({c.webhook_id for c in claimed})})
        return len(claimed) >= self._concurrency

    async def _send(self, claim: Claimed, events: dict[str, dict[str, object]]) -> Outcome:
        assert self._client is not None
        now = self._clock()
        notification = Notification(
            delivery_id=claim.delivery_id,
            webhook_id=claim.webhook_id,
            kind=claim.kind,
            events=[stored_event(events[e]) for e in claim.event_ids if e in events],
            attempt=claim.attempt,
            sent_at=now,
        )
        sent = await send(
            self._client,
            webhook_kind=claim.webhook_kind,
            url=claim.url,
            secret=claim.secret,
            notification=notification,
            timeout_s=self._timeout_s,
            now=now,
        )
        if not sent.ok:
            log.info(
                "notification not delivered",
                webhook=claim.webhook_id,
                delivery=claim.delivery_id,
                attempt=claim.attempt,
                error=sent.error,
            )
        return Outcome(
            claim.delivery_id,
            claim.attempt,
            now,
            sent.status_code,
            sent.error,
            sent.ms,
            sent.retry_after_s,
        )

    def _count(self, outcomes: list[Outcome]) -> None:
        if self._on_attempt is None:
            return
        for o in outcomes:
            if o.ok:
                self._on_attempt("delivered", 1)
            elif self.policy.exhausted(o.attempt):
                self._on_attempt("failed", 1)
            else:
                self._on_attempt("retry", 1)
