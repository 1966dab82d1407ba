"""amendments: a change to a paid booking, the holds it keeps for its new shape, refunds per payment

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "amendment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("room_from", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("room_to", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("charge_cents", sa.Integer(), nullable=False),
        sa.Column("refund_cents", sa.Integer(), nullable=False),
        sa.Column("net_cents", sa.Integer(), nullable=False),
        sa.Column("payment_intent_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("paid_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("hold_expires_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("done", sa.JSON(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("created_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["booking_id"], ["booking.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("booking_id", "number", name="uq_amendment_number"),
    )
    with op.batch_alter_table("amendment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_amendment_booking_id"), ["booking_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_amendment_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_amendment_payment_intent_id"), ["payment_intent_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_amendment_hold_expires_at"), ["hold_expires_at"], unique=False)

    with op.batch_alter_table("refund_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payment_intent_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.create_index(batch_op.f("ix_refund_record_payment_intent_id"), ["payment_intent_id"], unique=False)

    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:  # the table is rebuilt below: its triggers go with it and are made again after
        op.execute("DROP TRIGGER IF EXISTS slot_claim_overlap_insert")
        op.execute("DROP TRIGGER IF EXISTS slot_claim_overlap_update")
    with op.batch_alter_table("slot_claim", schema=None) as batch_op:
        batch_op.alter_column("leg_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("amendment_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_slot_claim_amendment_id"), ["amendment_id"], unique=False)
        batch_op.create_foreign_key("fk_slot_claim_amendment", "amendment", ["amendment_id"], ["id"])
    _no_overlapping_claims(same_booking_exempt=True)


def _no_overlapping_claims(*, same_booking_exempt: bool) -> None:
    """As in 0001, except (when exempt) that two claims of one booking may overlap: a change to a booking holds its
    new shape next to the days it replaces until the difference is paid."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE slot_claim DROP CONSTRAINT IF EXISTS ex_slot_claim_overlap")
        other = ", booking_id WITH <>" if same_booking_exempt else ""
        op.execute(
            "ALTER TABLE slot_claim ADD CONSTRAINT ex_slot_claim_overlap EXCLUDE USING gist "
            f"(room_slug WITH =, tstzrange(starts_at, block_until, '[)') WITH &&{other}) WHERE (active)"
        )
        return
    other = "AND c.booking_id != NEW.booking_id" if same_booking_exempt else ""
    for event, extra in (("INSERT", ""), ("UPDATE OF active, starts_at, block_until, room_slug", "AND c.id != NEW.id")):
        name = "slot_claim_overlap_" + event.split()[0].lower()
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(
            f"""CREATE TRIGGER {name} BEFORE {event} ON slot_claim WHEN NEW.active
            BEGIN
              SELECT RAISE(ABORT, 'slot_claim_overlap') WHERE EXISTS (
                SELECT 1 FROM slot_claim c
                WHERE c.active AND c.room_slug = NEW.room_slug {extra} {other}
                  AND c.starts_at < NEW.block_until AND NEW.starts_at < c.block_until);
            END"""
        )


def downgrade() -> None:
    op.execute("DELETE FROM slot_claim WHERE amendment_id IS NOT NULL")
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS slot_claim_overlap_insert")
        op.execute("DROP TRIGGER IF EXISTS slot_claim_overlap_update")
    with op.batch_alter_table("slot_claim", schema=None) as batch_op:
        batch_op.drop_constraint("fk_slot_claim_amendment", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_slot_claim_amendment_id"))
        batch_op.drop_column("amendment_id")
        batch_op.alter_column("leg_id", existing_type=sa.Integer(), nullable=False)
    _no_overlapping_claims(same_booking_exempt=False)
    with op.batch_alter_table("refund_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refund_record_payment_intent_id"))
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("payment_intent_id")
    op.drop_table("amendment")
