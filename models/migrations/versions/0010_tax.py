"""sales tax: the tax inside each booking's, day's, change's and refund's amount, and the rates a booking was sold at

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 19:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Rows from before tax was charged carry no tax: 0 and an empty snapshot are true of them.
_TAX_COLUMNS = (
    ("booking", "tax_cents"),
    ("booking_leg", "tax_cents"),
    ("refund_record", "tax_cents"),
    ("amendment", "tax_cents"),
)


def upgrade() -> None:
    # Plain ADD COLUMN (no batch rebuild: rebuilding `booking` on SQLite would trip its foreign keys).
    for table, column in _TAX_COLUMNS:
        op.add_column(table, sa.Column(column, sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column("booking", sa.Column("tax_snapshot", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN (SQLite 3.35+ too): rebuilding `booking` would trip its foreign keys.
    op.execute("ALTER TABLE booking DROP COLUMN tax_snapshot")
    for table, column in _TAX_COLUMNS:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
