"""damage deposits: a booking's saved card and card holds (damage_deposit), and claims against a hold that need two
approvals (deposit_claim)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _text(length: int, *, nullable: bool) -> dict[str, object]:
    return {"type_": sqlmodel.sql.sqltypes.AutoString(length=length), "nullable": nullable}


def _time(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, models.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "damage_deposit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("state", **_text(16, nullable=False)),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", **_text(3, nullable=False)),
        sa.Column("hold_hours_before", sa.Integer(), nullable=False),
        sa.Column("claim_window_hours", sa.Integer(), nullable=False),
        sa.Column("customer_id", **_text(64, nullable=True)),
        sa.Column("setup_intent_id", **_text(64, nullable=True)),
        sa.Column("setup_client_secret", **_text(200, nullable=True)),
        sa.Column("setup_attempt", sa.Integer(), nullable=False),
        sa.Column("payment_method", **_text(64, nullable=True)),
        _time("card_saved_at"),
        sa.Column("payment_intent_id", **_text(64, nullable=True)),
        _time("held_at"),
        sa.Column("hold_attempt", sa.Integer(), nullable=False),
        sa.Column("holds", sa.JSON(), nullable=False),
        sa.Column("captured_cents", sa.Integer(), nullable=False),
        _time("captured_at"),
        _time("closed_at"),
        _time("failed_at"),
        sa.Column("last_error", **_text(500, nullable=True)),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["booking_id"], ["booking.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("damage_deposit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_damage_deposit_booking_id"), ["booking_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_damage_deposit_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_damage_deposit_setup_intent_id"), ["setup_intent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_damage_deposit_payment_intent_id"), ["payment_intent_id"], unique=True)

    op.create_table(
        "deposit_claim",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deposit_id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", **_text(3, nullable=False)),
        sa.Column("notes", **_text(2000, nullable=False)),
        sa.Column("photos", sa.JSON(), nullable=False),
        sa.Column("status", **_text(12, nullable=False)),
        sa.Column("requested_by", **_text(254, nullable=False)),
        _time("requested_at", nullable=False),
        sa.Column("manager_approved_by", **_text(254, nullable=True)),
        _time("manager_approved_at"),
        sa.Column("finance_approved_by", **_text(254, nullable=True)),
        _time("finance_approved_at"),
        sa.Column("decided_by", **_text(254, nullable=True)),
        _time("decided_at"),
        sa.Column("decision_note", **_text(500, nullable=True)),
        sa.Column("captured_cents", sa.Integer(), nullable=True),
        _time("captured_at"),
        sa.Column("error", **_text(500, nullable=True)),
        sa.ForeignKeyConstraint(["booking_id"], ["booking.id"]),
        sa.ForeignKeyConstraint(["deposit_id"], ["damage_deposit.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deposit_claim", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deposit_claim_deposit_id"), ["deposit_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deposit_claim_booking_id"), ["booking_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deposit_claim_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_deposit_claim_requested_at"), ["requested_at"], unique=False)


def downgrade() -> None:
    op.drop_table("deposit_claim")
    op.drop_table("damage_deposit")
