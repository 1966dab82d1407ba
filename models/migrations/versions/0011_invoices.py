"""pay by invoice: a booking's invoice on terms (Stripe Invoicing), held until paid, voided or released

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 19:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "booking_invoice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("invoice_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("number", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("hosted_url", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("organisation", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("contact_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("billing_email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("po_number", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("terms_days", sa.Integer(), nullable=False),
        sa.Column("due_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reminded_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("payment_intent_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("paid_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("voided_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("created_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["booking_id"], ["booking.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("booking_invoice", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_booking_invoice_booking_id"), ["booking_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_booking_invoice_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_booking_invoice_invoice_id"), ["invoice_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_booking_invoice_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_booking_invoice_payment_intent_id"), ["payment_intent_id"], unique=False)


def downgrade() -> None:
    op.drop_table("booking_invoice")
