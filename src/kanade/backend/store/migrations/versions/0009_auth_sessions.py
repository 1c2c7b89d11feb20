"""Session revocation (SPEC §4.10): ``revoked_tokens`` (a logged-out token's id until its
expiry) and ``session_cutoffs`` (per user, tokens issued before this instant are void).

Revision ID: 0009_auth_sessions
Revises: 0008_rebuild_whole
Create Date: 2026-02-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_auth_sessions"
down_revision = "0008_rebuild_whole"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_revoked_tokens"),
    )
    op.create_index("ix_revoked_tokens_expires_at", "revoked_tokens", ["expires_at"])
    op.create_table(
        "session_cutoffs",
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("not_before", TS, nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_session_cutoffs"),
    )


def downgrade() -> None:
    op.drop_table("session_cutoffs")
    op.drop_index("ix_revoked_tokens_expires_at", table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
