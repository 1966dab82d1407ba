"""email_outbox indexes for the outbox page on years of mail: (status, next_attempt_at) for the counts by state and
what is due (it replaces the status index it starts with), (created_at, id) and (kind, created_at, id) for the list,
newest first, of every kind or of one

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 12:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NEW = {
    "ix_email_outbox_status_next_attempt_at": ["status", "next_attempt_at"],
    "ix_email_outbox_created_at_id": ["created_at", "id"],
    "ix_email_outbox_kind_created_at_id": ["kind", "created_at", "id"],
}


def upgrade() -> None:
    for name, columns in NEW.items():
        op.create_index(name, "email_outbox", columns, unique=False)
    op.drop_index("ix_email_outbox_status", table_name="email_outbox")


def downgrade() -> None:
    op.create_index("ix_email_outbox_status", "email_outbox", ["status"], unique=False)
    for name in NEW:
        op.drop_index(name, table_name="email_outbox")
