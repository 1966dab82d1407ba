"""public limits: a web hold's client key, and the worker's status

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("booking", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_booking_client_key"), ["client_key"], unique=False)
    op.create_table(
        "worker_status",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("last_round_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_ok_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("failures_in_a_row", sa.Integer(), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("worker_status")
    op.drop_index("ix_booking_client_key", table_name="booking")
    # A plain ALTER TABLE … DROP COLUMN (SQLite 3.35+ too): rebuilding `booking` would trip its foreign keys.
    op.execute("ALTER TABLE booking DROP COLUMN client_key")
