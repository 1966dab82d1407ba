"""room blocks (staff take a room out of sale: claims + marked events) and the venue configuration edited on Settings

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 16:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "room_block",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("rooms", sa.JSON(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("start_time", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("end_time", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("created_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("released_at", models.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("released_by", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
        sa.Column("release_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("updated_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("room_block", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_room_block_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_room_block_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_room_block_first_day"), ["first_day"], unique=False)
        batch_op.create_index(batch_op.f("ix_room_block_last_day"), ["last_day"], unique=False)
    op.create_table(
        "venue_config",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("catalogue", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("staff_roles", sa.JSON(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("created_at", models.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("venue_config", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_venue_config_version"), ["version"], unique=True)

    if op.get_bind().dialect.name == "sqlite":  # the table is rebuilt below: its triggers go with it
        op.execute("DROP TRIGGER IF EXISTS slot_claim_overlap_insert")
        op.execute("DROP TRIGGER IF EXISTS slot_claim_overlap_update")
    with op.batch_alter_table("slot_claim", schema=None) as batch_op:
        batch_op.alter_column("booking_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("block_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_slot_claim_block_id"), ["block_id"], unique=False)
        batch_op.create_foreign_key("fk_slot_claim_room_block", "room_block", ["block_id"], ["id"])
        batch_op.create_check_constraint("ck_slot_claim_owner", "(booking_id IS NULL) <> (block_id IS NULL)")
    _no_overlapping_claims(with_blocks=True)


# Who a claim belongs to, as one number: a booking's id, or minus a block's id. Two claims of one owner may overlap
# (a change's new shape next to the days it replaces); claims of different owners may not.
_OWNER = "coalesce(booking_id, -block_id)"


def _no_overlapping_claims(*, with_blocks: bool) -> None:
    """As in 0007, with a block as an owner of claims like a booking."""
    owner = _OWNER if with_blocks else "booking_id"
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE slot_claim DROP CONSTRAINT IF EXISTS ex_slot_claim_overlap")
        op.execute(
            "ALTER TABLE slot_claim ADD CONSTRAINT ex_slot_claim_overlap EXCLUDE USING gist "
            f"(room_slug WITH =, tstzrange(starts_at, block_until, '[)') WITH &&, ({owner}) WITH <>) WHERE (active)"
        )
        return
    other = f"AND {owner.replace('booking_id', 'c.booking_id').replace('block_id', 'c.block_id')} != " + (
        owner.replace("booking_id", "NEW.booking_id").replace("block_id", "NEW.block_id")
    )
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
    op.execute("DELETE FROM slot_claim WHERE block_id IS NOT NULL")
    if op.get_bind().dialect.name == "postgresql":  # it reads block_id: made again without it below
        op.execute("ALTER TABLE slot_claim DROP CONSTRAINT IF EXISTS ex_slot_claim_overlap")
    else:
        op.execute("DROP TRIGGER IF EXISTS slot_claim_overlap_insert")
        op.execute("DROP TRIGGER IF EXISTS slot_claim_overlap_update")
    with op.batch_alter_table("slot_claim", schema=None) as batch_op:
        batch_op.drop_constraint("ck_slot_claim_owner", type_="check")
        batch_op.drop_constraint("fk_slot_claim_room_block", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_slot_claim_block_id"))
        batch_op.drop_column("block_id")
        batch_op.alter_column("booking_id", existing_type=sa.Integer(), nullable=False)
    _no_overlapping_claims(with_blocks=False)
    op.drop_table("venue_config")
    op.drop_table("room_block")
