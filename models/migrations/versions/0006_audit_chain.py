"""audit chain: hash-linked, append-only audit log

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 05:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.types
from models.tables import AUDIT_GENESIS_HASH, audit_row_hash

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH = 2000
REFUSED = "audit_log is append-only"


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("row_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    _backfill_chain()
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("prev_hash", existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
        batch_op.alter_column("row_hash", existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
    # Last: SQLite's batch mode rebuilds the table, which would drop triggers made earlier.
    _append_only_triggers()


def _backfill_chain() -> None:
    """Chain the rows written before this revision, in id order, exactly as new rows are chained on insert."""
    bind = op.get_bind()
    t = sa.table(
        "audit_log",
        sa.column("id", sa.Integer()),
        sa.column("at", models.types.UTCDateTime()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("booking_id", sa.Integer()),
        sa.column("payment_intent", sa.String()),
        sa.column("payload", sa.JSON()),
        sa.column("prev_hash", sa.String()),
        sa.column("row_hash", sa.String()),
    )
    set_hashes = (
        sa.update(t)
        .where(t.c.id == sa.bindparam("row_id"))
        .values(prev_hash=sa.bindparam("p"), row_hash=sa.bindparam("h"))
    )
    head, after = AUDIT_GENESIS_HASH, 0
    while True:
        rows = bind.execute(
            sa.select(t.c.id, t.c.at, t.c.actor, t.c.action, t.c.booking_id, t.c.payment_intent, t.c.payload)
            .where(t.c.id > after)
            .order_by(t.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        updates = []
        for r in rows:
            h = audit_row_hash(
                at=r.at,
                actor=r.actor,
                action=r.action,
                booking_id=r.booking_id,
                payment_intent=r.payment_intent,
                payload=r.payload,
                prev_hash=head,
            )
            updates.append({"row_id": r.id, "p": head, "h": h})
            head = h
        bind.execute(set_hashes, updates)
        after = rows[-1].id


def _append_only_triggers() -> None:
    """The database itself refuses to change or remove an audit row, whatever code or console tries."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION '{REFUSED}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
            END $$"""
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"""CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log
            BEGIN
              SELECT RAISE(ABORT, '{REFUSED}: {event} refused');
            END"""
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("row_hash")
        batch_op.drop_column("prev_hash")
