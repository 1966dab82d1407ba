"""Both databases: migration 0013 (the outbox page's indexes on email_outbox) goes down and up again around existing
mail, the schema then matches the models, and the outbox lists the same emails newest first either way."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from models.db import alembic_config, make_engine, session_scope, upgrade
from models.tables import EmailOutbox, OutboxStatus
from services.notify import queries
from tests.conftest import NOW

INDEXES = {
    "ix_email_outbox_status_next_attempt_at",
    "ix_email_outbox_created_at_id",
    "ix_email_outbox_kind_created_at_id",
}


def _indexes(engine: sa.Engine) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(engine).get_indexes("email_outbox")}


def test_migration_0013_goes_down_and_up_again_around_existing_mail(db_url: str, make_services: Any) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    assert _indexes(engine) >= INDEXES and "ix_email_outbox_status" not in _indexes(engine)
    with session_scope(engine) as s:
        for i in range(12):
            s.add(
                EmailOutbox(
                    kind="reminder" if i % 3 else "confirmation",
                    to=f"guest{i}@example.org",
                    subject=f"Email {i}",
                    text="…",
                    idempotency_key=f"k{i}",
                    status=OutboxStatus.SENT if i % 4 else OutboxStatus.QUEUED,
                    created_at=NOW + timedelta(minutes=i),
                )
            )
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0012")
    assert not INDEXES & _indexes(engine) and "ix_email_outbox_status" in _indexes(engine)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    engine.dispose()

    svc = make_services(db_url)
    every = queries.list_outbox(svc)
    assert [e.subject for e in every] == [f"Email {i}" for i in reversed(range(12))]
    assert queries.list_outbox(svc, states=list(queries.OUTBOX_STATES)) == every
    reminders = queries.list_outbox(svc, kinds=["reminder"], limit=3)
    assert [e.subject for e in reminders] == ["Email 11", "Email 10", "Email 8"]
    assert queries.outbox_counts(svc) == {"queued": 3, "failed": 0, "needs_attention": 0, "sent": 9, "withdrawn": 0}
