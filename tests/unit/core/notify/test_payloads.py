"""Payloads (kanade.core.notify.payloads): shapes, idempotency key, bounds, signature."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from kanade.core.notify.payloads import (
    MAX_BODY,
    MAX_EVENTS,
    Notification,
    StoredEvent,
    generic_body,
    headers_for,
    slack_body,
)
from kanade.core.notify.signature import verify

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _n(count: int, detail: str = "x") -> Notification:
    events = [
        StoredEvent(f"id{i}", "agent.offline", T0, f"agent pc-{i} offline", {"d": detail})
        for i in range(count)
    ]
    return Notification("d" * 32, "ops", "agent.offline", events, attempt=2, sent_at=T0)


def test_the_generic_body_carries_the_idempotency_key_and_every_event() -> None:
    doc = json.loads(generic_body(_n(2)))
    assert doc["type"] == "kanade.notification" and doc["version"] == 1
    assert doc["idempotency_key"] == "d" * 32
    assert doc["summary"] == "2 agents offline" and doc["count"] == 2 and doc["omitted"] == 0
    assert [e["id"] for e in doc["events"]] == ["id0", "id1"]
    assert doc["events"][0]["occurred_at"] == "2026-03-01T12:00:00Z"
    assert doc["attempt"] == 2


def test_a_body_never_exceeds_its_bound() -> None:
    doc = json.loads(generic_body(_n(500, detail="y" * 5000)))
    assert len(generic_body(_n(500, detail="y" * 5000))) <= MAX_BODY
    assert doc["count"] == 500 and len(doc["events"]) < MAX_EVENTS
    assert doc["omitted"] == 500 - len(doc["events"])


def test_the_slack_body_is_a_message_with_a_fallback_text() -> None:
    doc = json.loads(slack_body(_n(12)))
    assert doc["text"] == "kanade · agent.offline: 12 agents offline"
    lines = doc["blocks"][1]["text"]["text"].splitlines()
    assert len(lines) == 11 and lines[-1] == "… and 2 more"
    assert "d" * 32 in doc["blocks"][-1]["elements"][0]["text"]
    escaped = Notification("k", "ops", "exec.failed",
                           [StoredEvent("i", "exec.failed", T0, "a <b> & c")], 1, T0)  # fmt: skip
    assert "a &lt;b&gt; &amp; c" in slack_body(escaped).decode()


def test_a_generic_webhook_with_a_secret_is_signed_over_timestamp_and_body() -> None:
    n = _n(1)
    body = generic_body(n)
    h = headers_for("generic", n, body=body, secret="k" * 20, timestamp=1_700_000_000, agent="t")
    assert h["Idempotency-Key"] == h["X-Kanade-Delivery"] == "d" * 32
    assert h["X-Kanade-Event"] == "agent.offline"
    assert verify("k" * 20, h["X-Kanade-Timestamp"], body, h["X-Kanade-Signature"],
                  now=1_700_000_010)  # fmt: skip
    assert not verify("k" * 20, h["X-Kanade-Timestamp"], body + b" ", h["X-Kanade-Signature"],
                      now=1_700_000_010)  # fmt: skip
    assert not verify("other" * 4, h["X-Kanade-Timestamp"], body, h["X-Kanade-Signature"],
                      now=1_700_000_010)  # fmt: skip
    # A replay much later is refused by its age.
    assert not verify("k" * 20, h["X-Kanade-Timestamp"], body, h["X-Kanade-Signature"],
                      now=1_700_009_999)  # fmt: skip
    assert "X-Kanade-Signature" not in headers_for("slack", n, body=b"{}", secret=None,
                                                   timestamp=1, agent="t")  # fmt: skip
    assert "X-Kanade-Signature" not in headers_for("generic", n, body=b"{}", secret=None,
                                                   timestamp=1, agent="t")  # fmt: skip
