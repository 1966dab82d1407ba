"""Both databases: the audit chain holds for rows written by the booking flow, tampering behind the triggers is
detected, the triggers refuse changes, the migration chains rows written before it, and concurrent writers on
PostgreSQL never fork the chain."""

from __future__ import annotations

import multiprocessing as mp
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from models.db import make_engine, upgrade
from services.core import audit
from tests.conftest import NOW
from tests.unit.test_audit_chain import AUDIT, audit_ids, book_and_pay, delete_row, edit_payload

THREADS, PROCESSES, APPENDS = 8, 6, 25


@pytest.fixture(autouse=True)
def fresh_status_cache() -> None:
    audit._status.clear()


def test_the_booking_flow_chains_and_tampering_is_detected(
    db_url: str, make_services: Any, booking_request: Any
) -> None:
    svc = make_services(db_url)
    book_and_pay(svc, booking_request)
    book_and_pay(svc, booking_request, date(2026, 3, 10))
    ids = audit_ids(svc.engine)
    assert audit.verify_chain(svc).ok and audit.verify_chain(svc).rows == len(ids)

    edit_payload(svc.engine, ids[3], {"amount": 1})
    report = audit.verify_chain(svc)
    assert not report.ok and report.broken_id == ids[3] and report.reason == f"row {ids[3]} was changed"


def test_deleting_a_row_is_detected(db_url: str, make_services: Any, booking_request: Any) -> None:
    svc = make_services(db_url)
    book_and_pay(svc, booking_request)
    ids = audit_ids(svc.engine)

    delete_row(svc.engine, ids[1])
    report = audit.verify_chain(svc)
    assert not report.ok and report.broken_id == ids[2]
    assert report.reason == f"a row before {ids[2]} is missing (deleted)"


def test_the_database_refuses_update_and_delete(db_url: str, make_services: Any, booking_request: Any) -> None:
    svc = make_services(db_url)
    book_and_pay(svc, booking_request)
    ids = audit_ids(svc.engine)
    for statement in (
        sa.update(AUDIT).where(AUDIT.c.id == ids[0]).values(payload={}),
        sa.delete(AUDIT).where(AUDIT.c.id == ids[-1]),
        sa.delete(AUDIT),
    ):
        with pytest.raises(sa.exc.DatabaseError, match="audit_log is append-only"), svc.engine.begin() as conn:
            conn.execute(statement)
    if svc.engine.dialect.name == "postgresql":
        with pytest.raises(sa.exc.DatabaseError, match="append-only: TRUNCATE refused"), svc.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE audit_log")
    assert audit_ids(svc.engine) == ids and audit.verify_chain(svc).ok


def test_the_migration_chains_rows_written_before_it(db_url: str, make_services: Any) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0005")
    old = sa.table(
        "audit_log",
        sa.column("at", sa.DateTime()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("booking_id", sa.Integer()),
        sa.column("payment_intent", sa.String()),
        sa.column("payload", sa.JSON()),
    )
    at = NOW if engine.dialect.name == "postgresql" else NOW.replace(tzinfo=None)
    rows = [
        {
            "at": at + timedelta(seconds=i, microseconds=7),
            "actor": "legacy",
            "action": "booking.legacy",
            "booking_id": i or None,
            "payment_intent": f"pi_{i}" if i % 2 else None,
            "payload": {"n": i, "note": "é", "nested": {"b": [1, 2.5, None], "a": True}},
        }
        for i in range(2500)  # more than one batch of the backfill
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(old), rows)
    upgrade(engine)
    engine.dispose()

    svc = make_services(db_url)
    with svc.session() as s:
        audit.record(s, "test.after_migration", actor="t", at=svc.now())
    report = audit.verify_chain(svc)
    assert report.ok and report.rows == 2501, report.line()

    delete_row(svc.engine, 1200)
    assert audit.verify_chain(svc).broken_id == 1201


def _append(svc: Any, who: str, barrier: Any) -> None:
    barrier.wait(timeout=60)
    for i in range(APPENDS):
        with svc.session() as s:
            audit.record(s, "test.concurrent", actor=who, at=datetime.now(UTC), i=i)
            if i % 5 == 0:  # two rows in one transaction, in separate flushes
                s.flush()
                audit.record(s, "test.concurrent.second", actor=who, at=datetime.now(UTC), i=i)


def _append_in_process(args: tuple[str, str, int, Any]) -> None:
    from services.core.context import build_services
    from services.core.settings import Settings

    data_dir, db_url, index, barrier = args
    svc = build_services(Settings(data_dir=Path(data_dir), database_url=db_url), migrate=False)
    try:
        _append(svc, f"proc-{index}", barrier)
    finally:
        svc.engine.dispose()


def test_concurrent_appends_on_postgresql_keep_one_chain(pg_url: str, make_services: Any) -> None:
    svc = make_services(pg_url)
    svc.engine.dispose()
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(THREADS + PROCESSES)
        args = [(str(svc.settings.data_dir), pg_url, i, barrier) for i in range(PROCESSES)]
        with ctx.Pool(PROCESSES) as pool:
            result = pool.map_async(_append_in_process, args)
            threads = [threading.Thread(target=_append, args=(svc, f"thread-{i}", barrier)) for i in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            result.get(timeout=120)

    report = audit.verify_chain(svc)
    per_writer = APPENDS + APPENDS // 5
    assert report.ok, report.line()
    assert report.rows == len(audit_ids(svc.engine)) == (THREADS + PROCESSES) * per_writer
    with svc.engine.connect() as conn:
        forks = conn.execute(sa.select(AUDIT.c.prev_hash).group_by(AUDIT.c.prev_hash).having(sa.func.count() > 1)).all()
    assert forks == []
