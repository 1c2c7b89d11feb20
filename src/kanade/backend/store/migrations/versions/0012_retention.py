"""Retention (SPEC §4.12): what pruning needs.

* ``executions.results_pruned_at``: when the first of the exec's results was pruned; from
  then on its counters are history and are no longer recounted from the rows left;
* ``schedule_pc_last``: the newest success and the newest result of each (schedule, pc)
  among pruned results, so a ``per_pc`` / ``per_target`` schedule does not fire again on a
  pc whose success is no longer a row;
* an index on ``inventory_history.recorded_at`` (pruned oldest first).

Revision ID: 0012_retention
Revises: 0011_notify_webhooks
Create Date: 2026-03-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_retention"
down_revision = "0011_notify_webhooks"
branch_labels = None
depends_on = None

ID = sa.String(128)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("results_pruned_at", TS, nullable=True))
    op.create_table(
        "schedule_pc_last",
        sa.Column("schedule_id", ID, nullable=False),
        sa.Column("pc_id", ID, nullable=False),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("last_result_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("schedule_id", "pc_id", name="pk_schedule_pc_last"),
    )
    op.create_index("ix_inventory_history_recorded_at", "inventory_history", ["recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_inventory_history_recorded_at", table_name="inventory_history")
    op.drop_table("schedule_pc_last")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("results_pruned_at")
