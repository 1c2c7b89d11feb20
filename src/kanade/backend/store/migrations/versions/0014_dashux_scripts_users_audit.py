"""Script text, disabled users, audit action names (issue #18 items 4, 5).

* ``scripts`` (inline script text by sha256) and ``executions.script_sha256`` /
  ``script_shell`` / ``script_object`` (indexed ``script_sha256``: retention deletes a text
  with the last exec naming it): what an exec runs, readable by operators;
* ``users.disabled_at`` / ``disabled_by``: a disabled user cannot log in;
* audit rows written before the per-verb names (``put_job``, ``exec``, ``user_add`` …) are
  renamed (kanade.core.auditactions.LEGACY; the projector renames records still in the
  stream the same way), one UPDATE per old name.

Revision ID: 0014_dashux_scripts_users_audit
Revises: 0013_cliux_agent_local_config
Create Date: 2026-02-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kanade.core.auditactions import LEGACY

revision = "0014_dashux_scripts_users_audit"
down_revision = "0013_cliux_agent_local_config"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scripts",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_scripts"),
    )
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("script_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("script_shell", sa.String(16), nullable=True))
        batch.add_column(sa.Column("script_object", sa.String(300), nullable=True))
    # Retention deletes a script's text with the last exec that names it.
    op.create_index("ix_executions_script_sha256", "executions", ["script_sha256"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled_at", TS, nullable=True))
        batch.add_column(sa.Column("disabled_by", sa.String(128), nullable=True))
    audit = sa.table("audit", sa.column("action", sa.String(128)))
    for old, new in LEGACY.items():
        op.execute(audit.update().where(audit.c.action == old).values(action=new))


def downgrade() -> None:
    # The old audit names are not restored: the new ones say more.
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled_by")
        batch.drop_column("disabled_at")
    op.drop_index("ix_executions_script_sha256", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("script_object")
        batch.drop_column("script_shell")
        batch.drop_column("script_sha256")
    op.drop_table("scripts")
