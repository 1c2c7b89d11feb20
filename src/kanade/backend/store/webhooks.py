"""The ``webhooks`` table: where notifications go (sync, inside a transaction).

Webhooks are operator state: every change is noted for the webhook's document in KV
``kanade_state`` (:mod:`kanade.backend.store.state_outbox`), so a wiped database gets them
back. Deleting one drops its deliveries that were not sent yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, true, update
from sqlalchemy.engine import Connection

from kanade.backend.store.state_outbox import touch
from kanade.backend.store.tables import notify_deliveries, webhooks
from kanade.core.statuses import DeliveryStatus


class WebhookExists(Exception):
    pass


def get_webhook(conn: Connection, webhook_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(webhooks).where(webhooks.c.webhook_id == webhook_id))
    found = row.mappings().first()
    return None if found is None else dict(found)


def list_webhooks(conn: Connection) -> list[dict[str, Any]]:
    q = select(webhooks).order_by(webhooks.c.webhook_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def count_webhooks(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(webhooks)).scalar_one())


def add_webhook(conn: Connection, row: Mapping[str, Any]) -> None:
    """Insert a webhook (a whole row); :class:`WebhookExists` if the id is taken."""
    if get_webhook(conn, str(row["webhook_id"])) is not None:
        raise WebhookExists(str(row["webhook_id"]))
    conn.execute(webhooks.insert().values(**row))
    touch(conn, "webhook", str(row["webhook_id"]))


def update_webhook(
    conn: Connection, webhook_id: str, changes: Mapping[str, Any], *, now: datetime, by: str
) -> bool:
    """Apply ``changes`` (column → value); False when the webhook does not exist."""
    res = conn.execute(
        update(webhooks)
        .where(webhooks.c.webhook_id == webhook_id)
        .values(**changes, updated_at=now, updated_by=by)
    )
    if res.rowcount != 1:
        return False
    touch(conn, "webhook", webhook_id)
    return True


def delete_webhook(conn: Connection, webhook_id: str) -> bool:
    """Delete a webhook and its unsent deliveries; False when it did not exist."""
    if conn.execute(delete(webhooks).where(webhooks.c.webhook_id == webhook_id)).rowcount != 1:
        return False
    conn.execute(
        delete(notify_deliveries).where(
            notify_deliveries.c.webhook_id == webhook_id,
            notify_deliveries.c.status == DeliveryStatus.PENDING,
        )
    )
    touch(conn, "webhook", webhook_id)
    return True


def enabled_webhooks(conn: Connection) -> list[dict[str, Any]]:
    q = select(webhooks).where(webhooks.c.enabled == true()).order_by(webhooks.c.webhook_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def subscriptions(conn: Connection) -> tuple[frozenset[str], list[float]]:
    """What enabled webhooks want: the event kinds, and the distinct ``offline_after`` of
    those that subscribe to agent.offline (JSON lists are read here, not in SQL: there are
    few webhooks)."""
    hooks = enabled_webhooks(conn)
    kinds = frozenset(k for w in hooks for k in (w["events"] or []))
    thresholds = {
        float(w["offline_after_s"]) for w in hooks if "agent.offline" in (w["events"] or [])
    }
    return kinds, sorted(thresholds)
