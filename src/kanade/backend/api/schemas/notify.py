"""Responses of ``/api/notify``: webhooks (never a secret), deliveries and their attempts."""

from __future__ import annotations

from typing import Any

from kanade.backend.api.schemas.common import Instant, Schema


class LastDelivery(Schema):
    delivery_id: str
    status: str
    at: Instant | None
    status_code: int | None
    error: str | None


class Attempt(Schema):
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    ms: float


class Delivery(Schema):
    delivery_id: str
    webhook: str
    kind: str
    summary: str
    status: str
    attempts: int
    created_at: Instant
    next_attempt_at: Instant | None
    last_attempt_at: Instant | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: Instant | None
    event_ids: list[str]
    attempt_log: list[Attempt]


class DeliveryEvent(Schema):
    id: str
    kind: str
    occurred_at: Instant
    summary: str
    details: dict[str, Any]


class DeliveryDetail(Delivery):
    events: list[DeliveryEvent]


class TestResult(Delivery):
    ok: bool
    ms: float


class DeliveryPage(Schema):
    items: list[Delivery]
    total: int
    limit: int
    offset: int


class Webhook(Schema):
    id: str
    kind: str
    url: str
    has_secret: bool
    events: list[str]
    enabled: bool
    offline_after: str
    created_at: Instant
    created_by: str
    updated_at: Instant
    updated_by: str
    deliveries: dict[str, int]
    last_delivery: LastDelivery | None


class WebhookDetail(Webhook):
    recent: list[Delivery]


class WebhookPage(Schema):
    items: list[Webhook]
    total: int
    limit: int
    offset: int


class WebhookDeleted(Schema):
    deleted: str


class EventKindInfo(Schema):
    kind: str
    description: str


class EventKinds(Schema):
    items: list[EventKindInfo]
