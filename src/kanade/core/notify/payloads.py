"""The bytes a webhook receives: a generic JSON document or a Slack-compatible message.

Both carry the delivery's idempotency key (the same on every attempt, also across a backend
restart), so a receiver that saw a delivery already can drop a repeat. Both are bounded:
at most :data:`MAX_EVENTS` events, each already bounded by :mod:`.events`, and never more
than :data:`MAX_BODY` bytes (events are dropped from the end, and counted, to fit).
Shapes: docs/notifications.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from kanade.core.instants import format_instant
from kanade.core.notify.events import MAX_SUMMARY, clip, group_summary
from kanade.core.notify.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

MAX_EVENTS: Final = 50
"""Events in one delivery: a burst (a fleet going offline at once) is grouped, not sent
one request per event."""
MAX_BODY: Final = 64 * 1024
SLACK_LINES: Final = 10
"""Event lines in a Slack message (Slack truncates long blocks; the count is given)."""
SLACK_TEXT: Final = 2900
"""Characters of that section (Slack's limit is 3000)."""
PAYLOAD_TYPE: Final = "kanade.notification"
PAYLOAD_VERSION: Final = 1

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
DELIVERY_HEADER: Final = "X-Kanade-Delivery"
EVENT_HEADER: Final = "X-Kanade-Event"


@dataclass(frozen=True)
class StoredEvent:
    id: str
    kind: str
    occurred_at: datetime
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "occurred_at": format_instant(self.occurred_at),
            "summary": self.summary,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Notification:
    """One delivery: the events it carries, to one webhook, at one attempt."""

    delivery_id: str
    webhook_id: str
    kind: str
    events: Sequence[StoredEvent]
    attempt: int
    sent_at: datetime

    @property
    def summary(self) -> str:
        return clip(
            group_summary(self.kind, [e.summary for e in self.events], len(self.events)),
            MAX_SUMMARY,
        )


def _dump(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def generic_body(n: Notification) -> bytes:
    """``{"type": "kanade.notification", "idempotency_key", "kind", "summary", "count",
    "events": [...], "omitted", …}`` as compact UTF-8 JSON, at most :data:`MAX_BODY`."""
    events = [e.as_json() for e in list(n.events)[:MAX_EVENTS]]
    total = len(n.events)

    def doc(listed: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "type": PAYLOAD_TYPE,
            "version": PAYLOAD_VERSION,
            "idempotency_key": n.delivery_id,
            "webhook": n.webhook_id,
            "kind": n.kind,
            "summary": n.summary,
            "count": total,
            "omitted": total - len(listed),
            "events": listed,
            "attempt": n.attempt,
            "sent_at": format_instant(n.sent_at),
        }

    body = _dump(doc(events))
    while len(body) > MAX_BODY and events:
        events = events[: len(events) // 2] if len(events) > 1 else []
        body = _dump(doc(events))
    return body


def _escape(text: str) -> str:
    """Slack mrkdwn treats ``&``, ``<`` and ``>`` as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(n: Notification) -> bytes:
    """A Slack incoming-webhook message: ``text`` (the fallback and the notification
    line), one section listing up to :data:`SLACK_LINES` events, and a context line with
    the idempotency key. Mattermost and Rocket.Chat read the same shape."""
    head = f"kanade · {n.kind}: {n.summary}"
    lines = [f"• {_escape(e.summary)}" for e in list(n.events)[:SLACK_LINES]]
    if len(n.events) > SLACK_LINES:
        lines.append(f"… and {len(n.events) - SLACK_LINES} more")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_escape(head)}*"}},
    ]
    if len(n.events) > 1:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": clip("\n".join(lines), SLACK_TEXT)},
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"delivery {n.delivery_id} · {format_instant(n.sent_at)}",
                }
            ],
        }
    )
    return _dump({"text": head, "blocks": blocks})


def body_for(kind: str, n: Notification) -> bytes:
    """The body a webhook of ``kind`` (``generic`` | ``slack``) receives."""
    return slack_body(n) if kind == "slack" else generic_body(n)


def headers_for(
    kind: str, n: Notification, *, body: bytes, secret: str | None, timestamp: int, agent: str
) -> dict[str, str]:
    """The request headers: content type, ids, and — for a generic webhook with a secret —
    the timestamp and the HMAC-SHA256 signature of ``<timestamp>.<body>``."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": agent,
        IDEMPOTENCY_HEADER: n.delivery_id,
        DELIVERY_HEADER: n.delivery_id,
        EVENT_HEADER: n.kind,
    }
    if kind == "generic" and secret:
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return headers
