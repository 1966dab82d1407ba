"""The audit log is append-only and hash-chained (SQLite): rows written by the booking flow verify, and changing or
removing one behind the application's back is detected and named."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.tables import AUDIT_GENESIS_HASH, AuditLog
from services import booking as bk
from services.core import audit
from services.ops import cli

AUDIT = AuditLog.__table__  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------- helpers (shared)


def book_and_pay(svc: Any, booking_request: Any, day: date = date(2026, 3, 9)) -> int:
    """A booking started and paid through the real service functions; returns the booking id."""
    started = bk.start_booking(svc, booking_request(dates=(day,)), actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="webhook").outcome == "confirmed"
    return int(started.booking_id)


def audit_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(AUDIT.c.id).order_by(AUDIT.c.id)).scalars())


def behind_the_triggers(engine: Engine, statement: Any) -> None:
    """What someone with database access could do: switch the append-only triggers off, then write directly."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            conn.execute(statement)
            conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
            conn.execute(statement)


def edit_payload(engine: Engine, row_id: int, payload: dict[str, Any]) -> None:
    behind_the_triggers(engine, sa.update(AUDIT).where(AUDIT.c.id == row_id).values(payload=payload))


def delete_row(engine: Engine, row_id: int) -> None:
    behind_the_triggers(engine, sa.delete(AUDIT).where(AUDIT.c.id == row_id))


@pytest.fixture(autouse=True)
def fresh_status_cache() -> None:
    audit._status.clear()


# --------------------------------------------------------------------------------------------- tests


def test_rows_written_by_the_booking_flow_form_one_intact_chain(svc: Any, booking_request: Any) -> None:
    book_and_pay(svc, booking_request)
    book_and_pay(svc, booking_request, date(2026, 3, 10))
    ids = audit_ids(svc.engine)
    assert len(ids) >= 4

    report = audit.verify_chain(svc)

    assert report.ok, report.line()
    assert report.rows == len(ids) and report.head_id == ids[-1]
    assert report.line().startswith(f"Audit chain intact: {len(ids)} row(s) checked")
    with svc.session() as s:
        rows = list(s.exec(sa.select(AuditLog).order_by(AuditLog.id)).scalars())  # type: ignore[call-overload]
    assert rows[0].prev_hash == AUDIT_GENESIS_HASH
    assert all(len(r.row_hash) == 64 and r.row_hash == r.compute_hash() for r in rows)
    assert [r.prev_hash for r in rows[1:]] == [r.row_hash for r in rows[:-1]]


def test_several_rows_in_one_transaction_chain_in_id_order(svc: Any) -> None:
    with svc.session() as s:
        for i in range(5):
            audit.record(s, "test.batch", actor="t", at=svc.now(), n=i, when=svc.now(), keys={1: "int key"})
    with svc.session() as s:
        audit.record(s, "test.after", actor="t", at=svc.now() + timedelta(microseconds=1))
    report = audit.verify_chain(svc)
    assert report.ok and report.rows == 6, report.line()


def test_editing_a_rows_payload_is_detected_and_the_row_named(svc: Any, booking_request: Any) -> None:
    book_and_pay(svc, booking_request)
    ids = audit_ids(svc.engine)
    victim = ids[len(ids) // 2]

    edit_payload(svc.engine, victim, {"message": "nothing to see here"})
    report = audit.verify_chain(svc)

    assert not report.ok
    assert report.broken_id == victim and report.reason == f"row {victim} was changed"
    assert report.rows == ids.index(victim)
    assert report.line().startswith(f"Audit chain BROKEN at row {victim}: row {victim} was changed")


def test_deleting_a_row_is_detected_at_the_next_row(svc: Any, booking_request: Any) -> None:
    book_and_pay(svc, booking_request)
    ids = audit_ids(svc.engine)
    victim = ids[2]

    delete_row(svc.engine, victim)
    report = audit.verify_chain(svc)

    assert not report.ok
    assert report.broken_id == ids[3] and report.reason == f"a row before {ids[3]} is missing (deleted)"


def test_deleting_the_first_row_shows_as_a_wrong_start(svc: Any, booking_request: Any) -> None:
    book_and_pay(svc, booking_request)
    ids = audit_ids(svc.engine)

    delete_row(svc.engine, ids[0])
    report = audit.verify_chain(svc)

    assert not report.ok and report.broken_id == ids[1] and report.reason.startswith("chain starts wrong")


def test_the_database_refuses_to_update_or_delete_audit_rows(svc: Any, booking_request: Any) -> None:
    book_and_pay(svc, booking_request)
    ids = audit_ids(svc.engine)
    for statement in (
        sa.update(AUDIT).where(AUDIT.c.id == ids[0]).values(actor="someone else"),
        sa.delete(AUDIT).where(AUDIT.c.id == ids[-1]),
    ):
        with pytest.raises(sa.exc.DatabaseError, match="audit_log is append-only"), svc.engine.begin() as conn:
            conn.execute(statement)
    # Through the ORM as well.
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), svc.session() as s:
        row = s.get(AuditLog, ids[0])
        assert row is not None
        row.payload = {"changed": True}
    assert audit_ids(svc.engine) == ids and audit.verify_chain(svc).ok


def test_chain_status_checks_only_new_rows_between_full_walks(svc: Any, booking_request: Any) -> None:
    book_and_pay(svc, booking_request)
    first = audit.chain_status(svc)
    assert first.ok and first.rows == len(audit_ids(svc.engine))

    book_and_pay(svc, booking_request, date(2026, 3, 10))
    second = audit.chain_status(svc)
    assert second.ok and second.rows == len(audit_ids(svc.engine)) and second.head_id == audit_ids(svc.engine)[-1]

    # An edit to an old row is only seen by the next full walk; an incremental check stays cheap.
    edit_payload(svc.engine, audit_ids(svc.engine)[0], {"x": 1})
    assert audit.chain_status(svc).ok
    broken = audit.chain_status(svc, full_every_s=0)
    assert not broken.ok and broken.broken_id == audit_ids(svc.engine)[0]
    assert audit.chain_status(svc) == broken  # cached until the next full walk


def test_removing_rows_at_the_end_is_caught_against_the_last_verified_head(svc: Any, booking_request: Any) -> None:
    book_and_pay(svc, booking_request)
    head = audit.chain_status(svc).head_id
    assert head is not None

    delete_row(svc.engine, head)  # the chain before it is still self-consistent
    assert audit.verify_chain(svc).ok
    report = audit.chain_status(svc)
    assert not report.ok and report.broken_id == head
    assert report.reason == f"row {head} is missing (deleted) since it was last verified"


def test_verify_audit_cli_exit_codes(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_services", lambda: svc)
    book_and_pay(svc, booking_request)
    assert cli.main(["verify-audit"]) == 0
    assert capsys.readouterr().out.startswith("Audit chain intact: ")

    victim = audit_ids(svc.engine)[1]
    edit_payload(svc.engine, victim, {})
    assert cli.main(["verify-audit"]) == 1
    assert capsys.readouterr().out.strip().startswith(f"Audit chain BROKEN at row {victim}: row {victim} was changed")
