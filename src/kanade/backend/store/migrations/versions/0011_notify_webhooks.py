"""Notifications (docs/notifications.md): ``webhooks`` (operator state, mirrored in KV
``kanade_state``), ``notify_events`` (facts worth telling, one row per fact) and
``notify_deliveries`` (the outbox: one notification to one webhook until delivered), and the
indexes the event detector scans by.

Revision ID: 0011_notify_webhooks
Revises: 0010_agent_update
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_notify_webhooks"
down_revision = "0010_agent_update"
branch_labels = None
depends_on = None

ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("webhook_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(256), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("offline_after_s", sa.Float(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id", name="pk_webhooks"),
    )
    op.create_table(
        "notify_events",
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(600), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("summary", sa.String(300), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("threshold_s", sa.Float(), nullable=True),
        sa.Column("fanned_out", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("event_id", name="pk_notify_events"),
    )
    op.create_index(
        "ix_notify_events_fanned_out_detected_at", "notify_events", ["fanned_out", "detected_at"]
    )
    op.create_index("ix_notify_events_detected_at", "notify_events", ["detected_at"])
    op.create_table(
        "notify_deliveries",
        sa.Column("delivery_id", sa.String(32), nullable=False),
        sa.Column("webhook_id", ID, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("event_ids", sa.JSON(), nullable=False),
        sa.Column("summary", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("last_attempt_at", TS, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("attempt_log", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", name="pk_notify_deliveries"),
    )
    op.create_index(
        "ix_notify_deliveries_status_next_attempt_at",
        "notify_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        "ix_notify_deliveries_webhook_id_created_at",
        "notify_deliveries",
        ["webhook_id", "created_at"],
    )
    op.create_index("ix_notify_deliveries_created_at", "notify_deliveries", ["created_at"])
    op.create_index("ix_executions_status_updated_at", "executions", ["status", "updated_at"])
    op.create_index("ix_schedule_decisions_decided_at", "schedule_decisions", ["decided_at"])
    op.create_index(
        "ix_agent_schedule_decisions_recorded_at", "agent_schedule_decisions", ["recorded_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_agent_schedule_decisions_recorded_at", table_name="agent_schedule_decisions")
    op.drop_index("ix_schedule_decisions_decided_at", table_name="schedule_decisions")
    op.drop_index("ix_executions_status_updated_at", table_name="executions")
    op.drop_index("ix_notify_deliveries_created_at", table_name="notify_deliveries")
    op.drop_index("ix_notify_deliveries_webhook_id_created_at", table_name="notify_deliveries")
    op.drop_index("ix_notify_deliveries_status_next_attempt_at", table_name="notify_deliveries")
    op.drop_table("notify_deliveries")
    op.drop_index("ix_notify_events_detected_at", table_name="notify_events")
    op.drop_index("ix_notify_events_fanned_out_detected_at", table_name="notify_events")
    op.drop_table("notify_events")
    op.drop_table("webhooks")
