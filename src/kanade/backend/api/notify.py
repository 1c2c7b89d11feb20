"""``/api/notify``: webhooks and their deliveries (docs/notifications.md). Reading is for
every role, changing is for admins (the role table); answers never carry a secret."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from kanade.backend.api.deps import ServicesDep
from kanade.backend.api.params import DeliveryId, WebhookId
from kanade.backend.api.request_context import request_actor
from kanade.backend.api.schemas.notify import (
    DeliveryDetail,
    DeliveryPage,
    EventKinds,
    TestResult,
    Webhook,
    WebhookDeleted,
    WebhookDetail,
    WebhookPage,
)
from kanade.core.notify.config import WebhookPatch, WebhookSpec
from kanade.core.notify.events import DESCRIPTIONS, SUBSCRIBABLE
from kanade.core.statuses import DeliveryStatus

router = APIRouter(prefix="/api/notify", tags=["notify"])


@router.get("/kinds", response_model=EventKinds)
async def event_kinds() -> dict[str, Any]:
    """The event kinds a webhook can subscribe to."""
    return {"items": [{"kind": k.value, "description": DESCRIPTIONS[k]} for k in SUBSCRIBABLE]}


@router.get("/webhooks", response_model=WebhookPage)
async def webhooks_list(services: ServicesDep) -> dict[str, Any]:
    """Every webhook with its delivery counts and its newest attempt."""
    return await services.notify.list()


@router.post("/webhooks", status_code=201, response_model=Webhook)
async def webhook_create(
    body: WebhookSpec, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Add a webhook (admin). Its secret and URL are never shown again in full."""
    return await services.notify.create(body, actor=request_actor(request))


@router.get("/webhooks/{webhook_id}", response_model=WebhookDetail)
async def webhook_show(webhook_id: WebhookId, services: ServicesDep) -> dict[str, Any]:
    return await services.notify.get(webhook_id)


@router.patch("/webhooks/{webhook_id}", response_model=Webhook)
async def webhook_update(
    webhook_id: WebhookId, body: WebhookPatch, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Change the fields given (admin); ``"secret": null`` removes the signing key."""
    return await services.notify.update(webhook_id, body, actor=request_actor(request))


@router.delete("/webhooks/{webhook_id}", response_model=WebhookDeleted)
async def webhook_delete(
    webhook_id: WebhookId, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Remove a webhook and its unsent deliveries (admin)."""
    return await services.notify.delete(webhook_id, actor=request_actor(request))


@router.post("/webhooks/{webhook_id}/test", response_model=TestResult)
async def webhook_test(
    webhook_id: WebhookId, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Send a test notification now and say how it went (admin; one attempt)."""
    return await services.notify.test(webhook_id, actor=request_actor(request))


@router.get("/deliveries", response_model=DeliveryPage)
async def deliveries_list(
    services: ServicesDep,
    webhook: Annotated[str | None, Query(max_length=128)] = None,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Deliveries, newest first, with their attempts (status code, error)."""
    return await services.notify.deliveries(
        webhook_id=webhook,
        status=None if status is None else status.value,
        limit=limit,
        offset=offset,
    )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def delivery_show(delivery_id: DeliveryId, services: ServicesDep) -> dict[str, Any]:
    return await services.notify.delivery(delivery_id)


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryDetail)
async def delivery_retry(
    delivery_id: DeliveryId, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Try a failed delivery again, with a fresh allowance of attempts (admin)."""
    return await services.notify.retry(delivery_id, actor=request_actor(request))
