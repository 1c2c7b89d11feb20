"""Webhooks as operators manage them (docs/notifications.md): add, change, remove, list
with their delivery status, send a test, retry a failed delivery. Every change is audited;
no answer ever holds a secret (the HMAC key, a Slack URL) — only a masked URL and
``has_secret``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Connection

from kanade.backend.errors import Conflict, Invalid, NotFound
from kanade.backend.messaging.audit import publish_audit
from kanade.backend.store import deliveries, notify_events, webhooks
from kanade.backend.store.database import Database
from kanade.backend.store.paging import Record
from kanade.backend.webhooks.sender import new_client, send
from kanade.bus.connection import Bus
from kanade.core.durations import format_duration
from kanade.core.instants import Clock, format_instant, system_clock
from kanade.core.notify.config import MAX_WEBHOOKS, WebhookPatch, WebhookSpec, check_url, mask_url
from kanade.core.notify.events import probe_event
from kanade.core.notify.payloads import Notification, StoredEvent
from kanade.core.statuses import DeliveryStatus

RECENT_DELIVERIES = 10


def webhook_view(row: Record, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """What anyone may see of a webhook: never its secret, never its whole URL."""
    counts = (summary or {}).get("counts", {})
    return {
        "id": row["webhook_id"],
        "kind": row["kind"],
        "url": mask_url(str(row["url"])),
        "has_secret": row["secret"] is not None,
        "events": list(row["events"] or []),
        "enabled": bool(row["enabled"]),
        "offline_after": format_duration(timedelta(seconds=float(row["offline_after_s"]))),
        "created_at": row["created_at"],
        "created_by": row["created_by"],
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
        "deliveries": {s.value: int(counts.get(s.value, 0)) for s in DeliveryStatus},
        "last_delivery": (summary or {}).get("last"),
    }


def delivery_view(row: Record) -> dict[str, Any]:
    return {
        "delivery_id": row["delivery_id"],
        "webhook": row["webhook_id"],
        "kind": row["kind"],
        "summary": row["summary"],
        "status": row["status"],
        "attempts": row["attempts"],
        "created_at": row["created_at"],
        "next_attempt_at": row["next_attempt_at"] if row["status"] == "pending" else None,
        "last_attempt_at": row["last_attempt_at"],
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "delivered_at": row["delivered_at"],
        "event_ids": list(row["event_ids"] or []),
        "attempt_log": list(row["attempt_log"] or []),
    }


def _audit_view(row: Record) -> dict[str, Any]:
    return {
        "webhook": row["webhook_id"],
        "kind": row["kind"],
        "url": mask_url(str(row["url"])),
        "has_secret": row["secret"] is not None,
        "events": list(row["events"] or []),
        "enabled": bool(row["enabled"]),
        "offline_after_s": float(row["offline_after_s"]),
    }


class NotifyService:
    def __init__(
        self,
        db: Database,
        bus: Callable[[], Bus],
        *,
        timeout_s: float = 10.0,
        clock: Clock = system_clock,
    ) -> None:
        self._db = db
        self._bus = bus
        self._timeout_s = timeout_s
        self._clock = clock
        self.on_change: Callable[[], None] = lambda: None
        """Set by the app: wakes the delivery worker (a retried delivery is due now)."""

    # --- reads ---------------------------------------------------------------------------
    async def list(self) -> dict[str, Any]:
        def read(conn: Connection) -> list[dict[str, Any]]:
            summary = deliveries.summary_by_webhook(conn)
            return [
                webhook_view(w, summary.get(str(w["webhook_id"])))
                for w in webhooks.list_webhooks(conn)
            ]

        items = await self._db.read(read)
        return {"items": items, "total": len(items), "limit": len(items), "offset": 0}

    async def get(self, webhook_id: str) -> dict[str, Any]:
        def read(conn: Connection) -> dict[str, Any] | None:
            row = webhooks.get_webhook(conn, webhook_id)
            if row is None:
                return None
            view = webhook_view(row, deliveries.summary_by_webhook(conn).get(webhook_id))
            recent = deliveries.list_deliveries(
                conn, webhook_id=webhook_id, status=None, limit=RECENT_DELIVERIES, offset=0
            )
            view["recent"] = [delivery_view(d) for d in recent.items]
            return view

        found = await self._db.read(read)
        if found is None:
            raise _missing(webhook_id)
        return found

    async def deliveries(
        self, *, webhook_id: str | None, status: str | None, limit: int, offset: int
    ) -> dict[str, Any]:
        found = await self._db.read(
            lambda c: deliveries.list_deliveries(
                c, webhook_id=webhook_id, status=status, limit=limit, offset=offset
            )
        )
        return {**found.to_dict(), "items": [delivery_view(d) for d in found.items]}

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        found = await self._db.read(lambda conn: _delivery_detail(conn, delivery_id))
        if found is None:
            raise NotFound(f"delivery {delivery_id!r} not found", delivery_id=delivery_id)
        return found

    # --- changes -------------------------------------------------------------------------
    async def create(self, spec: WebhookSpec, *, actor: str) -> dict[str, Any]:
        now = self._clock()
        row = {
            "webhook_id": spec.id,
            "kind": spec.kind,
            "url": spec.url,
            "secret": spec.secret,
            "events": list(spec.events),
            "enabled": spec.enabled,
            "offline_after_s": spec.offline_after.total_seconds(),
            "created_at": now,
            "created_by": actor,
            "updated_at": now,
            "updated_by": actor,
        }

        def add(conn: Connection) -> str | None:
            if webhooks.count_webhooks(conn) >= MAX_WEBHOOKS:
                return "full"
            try:
                webhooks.add_webhook(conn, row)
            except webhooks.WebhookExists:
                return "exists"
            return None

        problem = await self._db.write(add)
        if problem == "exists":
            raise Conflict(f"webhook {spec.id!r} already exists; change it with PATCH", id=spec.id)
        if problem == "full":
            raise Conflict(f"there are {MAX_WEBHOOKS} webhooks already; remove one first")
        await publish_audit(self._bus, "webhook.create", actor, _audit_view(row))
        return webhook_view(row)

    async def update(self, webhook_id: str, patch: WebhookPatch, *, actor: str) -> dict[str, Any]:
        given = patch.model_fields_set
        if not given:
            raise Invalid.at("(body)", "name at least one field to change")
        now = self._clock()

        def change(conn: Connection) -> Record | str:
            row = webhooks.get_webhook(conn, webhook_id)
            if row is None:
                return "missing"
            changes: dict[str, Any] = {}
            if "url" in given:
                if patch.url is None:
                    raise Invalid.at("url", "cannot be removed")
                try:
                    changes["url"] = check_url(patch.url, str(row["kind"]))
                except ValueError as exc:
                    raise Invalid.at("url", str(exc)) from None
            if "secret" in given:
                if patch.secret is not None and row["kind"] == "slack":
                    raise Invalid.at(
                        "secret", "a Slack webhook is not signed (its URL is the secret)"
                    )
                changes["secret"] = patch.secret
            if "events" in given:
                if patch.events is None:
                    raise Invalid.at("events", "name at least one event")
                changes["events"] = list(patch.events)
            if "enabled" in given:
                if patch.enabled is None:
                    raise Invalid.at("enabled", "must be true or false")
                changes["enabled"] = patch.enabled
            if "offline_after" in given:
                if patch.offline_after is None:
                    raise Invalid.at("offline_after", "must be a duration between 1m and 30d")
                changes["offline_after_s"] = patch.offline_after.total_seconds()
            webhooks.update_webhook(conn, webhook_id, changes, now=now, by=actor)
            return webhooks.get_webhook(conn, webhook_id) or "missing"

        result = await self._db.write(change)
        if isinstance(result, str):
            raise _missing(webhook_id)
        details = _audit_view(result) | {"changed": sorted(given)}
        await publish_audit(self._bus, "webhook.update", actor, details)
        self.on_change()  # re-enabled: its held deliveries are due
        summary = await self._db.read(deliveries.summary_by_webhook)
        return webhook_view(result, summary.get(webhook_id))

    async def delete(self, webhook_id: str, *, actor: str) -> dict[str, Any]:
        def remove(conn: Connection) -> Record | None:
            row = webhooks.get_webhook(conn, webhook_id)
            if row is not None:
                webhooks.delete_webhook(conn, webhook_id)
            return row

        row = await self._db.write(remove)
        if row is None:
            raise _missing(webhook_id)
        await publish_audit(self._bus, "webhook.delete", actor, _audit_view(row))
        return {"deleted": webhook_id}

    async def test(self, webhook_id: str, *, actor: str) -> dict[str, Any]:
        """Send one test notification now (not through the outbox: one attempt, never
        retried), record it among the webhook's deliveries and return the outcome."""
        row = await self._db.read(lambda c: webhooks.get_webhook(c, webhook_id))
        if row is None:
            raise _missing(webhook_id)
        now = self._clock()
        event = probe_event(webhook_id=webhook_id, actor=actor, at=now, nonce=uuid.uuid4().hex)
        delivery_id = uuid.uuid4().hex
        notification = Notification(
            delivery_id=delivery_id,
            webhook_id=webhook_id,
            kind=event.kind.value,
            events=[StoredEvent(event.id, event.kind.value, now, event.summary, event.details)],
            attempt=1,
            sent_at=now,
        )
        async with new_client(self._timeout_s) as client:
            sent = await send(
                client,
                webhook_kind=str(row["kind"]),
                url=str(row["url"]),
                secret=row["secret"],
                notification=notification,
                timeout_s=self._timeout_s,
                now=now,
            )
        done = self._clock()
        entry = {
            "attempt": 1,
            "at": format_instant(now),
            "status_code": sent.status_code,
            "error": sent.error,
            "ms": round(sent.ms, 1),
        }
        record = {
            "delivery_id": delivery_id,
            "webhook_id": webhook_id,
            "kind": event.kind.value,
            "event_ids": [event.id],
            "summary": event.summary,
            "status": DeliveryStatus.DELIVERED if sent.ok else DeliveryStatus.FAILED,
            "attempts": 1,
            "created_at": now,
            "next_attempt_at": None,
            "last_attempt_at": now,
            "last_status_code": sent.status_code,
            "last_error": None if sent.error is None else sent.error[:300],
            "delivered_at": done if sent.ok else None,
            "attempt_log": [entry],
        }

        def keep(conn: Connection) -> None:
            notify_events.record_events(conn, [event], now)
            notify_events.mark_fanned_out(conn, [event.id])
            deliveries.add_sent(conn, record)

        await self._db.write(keep)
        await publish_audit(
            self._bus,
            "webhook.test",
            actor,
            {"webhook": webhook_id, "ok": sent.ok, "status_code": sent.status_code},
        )
        return delivery_view(record) | {"ok": sent.ok, "ms": round(sent.ms, 1)}

    async def retry(self, delivery_id: str, *, actor: str) -> dict[str, Any]:
        now = self._clock()

        def reset(conn: Connection) -> tuple[str | None, dict[str, Any] | None]:
            # The answer is read in the retry's own transaction: once the sender is woken it
            # may deliver at once, and the caller is told what the retry did (pending).
            before = deliveries.retry(conn, delivery_id, now)
            return before, _delivery_detail(conn, delivery_id)

        before, retried = await self._db.write(reset)
        if before is None or retried is None:
            raise NotFound(f"delivery {delivery_id!r} not found", delivery_id=delivery_id)
        if before != DeliveryStatus.FAILED:
            raise Conflict(
                f"delivery {delivery_id!r} is {before}; only a failed delivery is retried",
                status=before,
            )
        await publish_audit(self._bus, "webhook.retry", actor, {"delivery_id": delivery_id})
        self.on_change()
        return retried


def _delivery_detail(conn: Connection, delivery_id: str) -> dict[str, Any] | None:
    """A delivery as the API shows it, with the events it carries; None if unknown."""
    row = deliveries.get_delivery(conn, delivery_id)
    if row is None:
        return None
    view = delivery_view(row)
    events = notify_events.events_by_id(conn, view["event_ids"])
    view["events"] = [
        {
            "id": e["event_id"],
            "kind": e["kind"],
            "occurred_at": e["occurred_at"],
            "summary": e["summary"],
            "details": e["details"],
        }
        for e in (events.get(i) for i in view["event_ids"])
        if e is not None
    ]
    return view


def _missing(webhook_id: str) -> NotFound:
    return NotFound(f"webhook {webhook_id!r} not found", id=webhook_id)
