"""customer pages: terms acceptance, pay-link token, outbox retry time

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("booking", schema=None) as batch_op:
        batch_op.add_column(sa.Column("terms_version", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column("terms_accepted_at", models.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pay_token", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    with op.batch_alter_table("email_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", models.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_email_outbox_next_attempt_at"), ["next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("email_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_outbox_next_attempt_at"))
        batch_op.drop_column("next_attempt_at")
    with op.batch_alter_table("booking", schema=None) as batch_op:
        batch_op.drop_column("pay_token")
        batch_op.drop_column("terms_accepted_at")
        batch_op.drop_column("terms_version")
