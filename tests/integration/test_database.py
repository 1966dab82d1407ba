"""Both databases: migrations from empty, the schema matches the models, the database itself refuses overlapping
claims, and 20+ concurrent processes racing for one slot produce exactly one winner."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, SQLModel, select

from models.db import alembic_config, make_engine, session_scope, upgrade
from models.tables import (
    AuditLog,
    Booking,
    BookingLeg,
    BookingStatus,
    Channel,
    ClaimKind,
    LegState,
    RoomBlock,
    SlotClaim,
)
from services import booking as bk
from tests.conftest import NOW

CONTENDERS = 24
# The newest migration: a database that has run them all is at it.
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrations_build_the_schema_from_empty_and_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    upgrade(engine)  # a second start is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
        version = conn.execute(sa.text("select version_num from alembic_version")).scalar_one()
    assert diff == [], f"models and migrations disagree: {diff}"
    assert version == HEAD
    engine.dispose()


def test_times_come_back_timezone_aware_utc(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    at = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)
    with session_scope(engine) as s:
        s.add(AuditLog(at=at, actor="t", action="test.tz", payload={"x": 1}))
    with session_scope(engine) as s:
        row = s.exec(select(AuditLog)).one()
    assert row.at == at and row.at.tzinfo is not None and row.payload == {"x": 1}
    with pytest.raises(Exception, match="naive"), session_scope(engine) as s:
        s.add(AuditLog(at=datetime(2026, 3, 4, 10, 30), actor="t", action="test.naive"))
    engine.dispose()


def _claim(
    session: Any,
    booking_id: int,
    leg_id: int,
    start: datetime,
    end: datetime,
    room: str = "boardroom",
    active: bool = True,
) -> None:
    session.add(
        SlotClaim(
            booking_id=booking_id,
            leg_id=leg_id,
            room_slug=room,
            starts_at=start,
            ends_at=end,
            block_until=end + timedelta(minutes=15),
            active=active,
            created_at=NOW,
        )
    )
    session.flush()


def _skeleton(session: Any, n: int) -> list[tuple[int, int]]:
    out = []
    for i in range(n):
        b = Booking(
            reference=f"RDTEST{i:02d}",
            room_slug="boardroom",
            start_time="10:00",
            end_time="12:00",
            customer_name="T",
            customer_email="t@example.org",
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(b)
        session.flush()
        leg = BookingLeg(
            booking_id=b.id, day=date(2026, 3, 4), starts_at=NOW, ends_at=NOW, calendar_id="c", updated_at=NOW
        )
        session.add(leg)
        session.flush()
        out.append((b.id, leg.id))
    return out


def test_the_database_refuses_overlapping_active_claims_buffer_included(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    ten = datetime(2026, 3, 4, 18, 0, tzinfo=UTC)
    with session_scope(engine) as s:
        ids = _skeleton(s, 6)
        _claim(s, *ids[0], ten, ten + timedelta(hours=2))
    cases = [
        (ids[1], ten + timedelta(hours=1), ten + timedelta(hours=3), "boardroom", True, False),  # overlaps
        (ids[2], ten + timedelta(hours=2, minutes=10), ten + timedelta(hours=4), "boardroom", True, False),  # buffer
        (ids[3], ten + timedelta(hours=2, minutes=15), ten + timedelta(hours=4), "boardroom", True, True),  # ok
        (ids[4], ten, ten + timedelta(hours=2), "quiet-room", True, True),  # other room
        (ids[5], ten, ten + timedelta(hours=2), "boardroom", False, True),  # inactive claims do not block
    ]
    for (booking_id, leg_id), start, end, room, active, allowed in cases:
        try:
            with session_scope(engine) as s:
                _claim(s, booking_id, leg_id, start, end, room, active)
            accepted = True
        except IntegrityError as exc:
            assert bk.is_overlap_error(exc)
            accepted = False
        assert accepted == allowed, (start, end, room, active)
    # Re-activating a released claim that now overlaps is refused too.
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        s.execute(sa.update(SlotClaim).where(SlotClaim.leg_id == ids[5][1]).values(active=True))
    engine.dispose()


def test_a_bookings_own_claims_may_overlap_while_a_change_holds_its_new_shape(db_url: str) -> None:
    """A change to a booking holds 10:00–13:00 next to its booked 10:00–12:00 until the difference is paid; another
    booking still cannot touch either, and the rule holds on re-activation too."""
    engine = make_engine(db_url)
    upgrade(engine)
    ten = datetime(2026, 3, 4, 18, 0, tzinfo=UTC)
    with session_scope(engine) as s:
        (own, leg), (other, other_leg) = _skeleton(s, 2)
        _claim(s, own, leg, ten, ten + timedelta(hours=2))
        s.add(
            SlotClaim(
                booking_id=own,
                leg_id=None,
                room_slug="boardroom",
                starts_at=ten,
                ends_at=ten + timedelta(hours=3),
                block_until=ten + timedelta(hours=3, minutes=15),
                created_at=NOW,
            )
        )
    for start in (ten + timedelta(hours=2, minutes=30), ten + timedelta(hours=3)):
        with pytest.raises(IntegrityError) as caught, session_scope(engine) as s:
            _claim(s, other, other_leg, start, start + timedelta(hours=1))
        assert bk.is_overlap_error(caught.value)
    with session_scope(engine) as s:
        _claim(s, other, other_leg, ten + timedelta(hours=3, minutes=15), ten + timedelta(hours=5))
        assert len(list(s.exec(select(SlotClaim).where(SlotClaim.active)))) == 3
    engine.dispose()


def test_migration_0007_goes_down_and_up_again(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with session_scope(engine) as s:
        ids = _skeleton(s, 2)
    from alembic import command

    from models.db import alembic_config

    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    insert = sa.text(
        "INSERT INTO slot_claim (booking_id, leg_id, room_slug, starts_at, ends_at, block_until, kind, active, "
        "created_at) VALUES (:b, :leg, 'boardroom', :start, :end, :end, 'booked', :active, :start)"
    )
    row = {"b": ids[0][0], "start": "2026-03-04 18:00:00", "end": "2026-03-04 20:00:00", "active": True}
    with engine.begin() as conn:
        conn.execute(insert, {**row, "leg": ids[0][1]})
    with pytest.raises(IntegrityError), engine.begin() as conn:  # 0006's rule: not even one booking's own
        conn.execute(insert, {**row, "leg": ids[1][1]})
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []
    engine.dispose()


def _block(s: Session, start: datetime, end: datetime, room: str = "boardroom") -> int:
    block = RoomBlock(
        rooms=[room], first_day=start.date(), last_day=start.date(), reason="Maintenance", actor="t", created_at=NOW
    )
    s.add(block)
    s.flush()
    assert block.id is not None
    s.add(
        SlotClaim(
            block_id=block.id,
            room_slug=room,
            starts_at=start,
            ends_at=end,
            block_until=end,
            kind=ClaimKind.BLOCK,
            created_at=NOW,
        )
    )
    s.flush()
    return block.id


def test_a_room_block_claims_its_slot_against_bookings_and_other_blocks(db_url: str) -> None:
    """Issue 14 §5: a block takes the room like a booking does: a booking cannot overlap it, another block cannot
    either, and a claim must belong to exactly one booking or one block."""
    engine = make_engine(db_url)
    upgrade(engine)
    ten = datetime(2026, 3, 4, 18, 0, tzinfo=UTC)
    with session_scope(engine) as s:
        ((booking_id, leg_id),) = _skeleton(s, 1)
        _block(s, ten, ten + timedelta(hours=2))
    with pytest.raises(IntegrityError) as caught, session_scope(engine) as s:
        _claim(s, booking_id, leg_id, ten + timedelta(hours=1), ten + timedelta(hours=3))
    assert bk.is_overlap_error(caught.value)
    with pytest.raises(IntegrityError) as caught, session_scope(engine) as s:
        _block(s, ten + timedelta(minutes=30), ten + timedelta(hours=1))
    assert bk.is_overlap_error(caught.value)
    with session_scope(engine) as s:  # after it, and in another room: fine
        _claim(s, booking_id, leg_id, ten + timedelta(hours=2), ten + timedelta(hours=3))
        _block(s, ten, ten + timedelta(hours=2), room="quiet-room")
    with pytest.raises(IntegrityError), session_scope(engine) as s:  # no owner at all
        s.add(SlotClaim(room_slug="union-room", starts_at=ten, ends_at=ten, block_until=ten, created_at=NOW))
    engine.dispose()


def test_migration_0009_goes_down_and_up_again(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    ten = datetime(2026, 3, 4, 18, 0, tzinfo=UTC)
    with session_scope(engine) as s:
        (booking_id, leg_id), (other, other_leg) = _skeleton(s, 2)
        _claim(s, booking_id, leg_id, ten, ten + timedelta(hours=2))
        _block(s, ten + timedelta(hours=3), ten + timedelta(hours=4))
    from alembic import command

    from models.db import alembic_config

    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    insert = sa.text(
        "INSERT INTO slot_claim (booking_id, leg_id, room_slug, starts_at, ends_at, block_until, kind, active, "
        "created_at) VALUES (:b, :leg, 'boardroom', :start, :end, :end, 'booked', true, :start)"
    )
    row = {"b": other, "leg": other_leg, "start": "2026-03-04 19:00:00", "end": "2026-03-04 20:00:00"}
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the booking's claim survived, still guarded
        conn.execute(insert, row)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []
    with session_scope(engine) as s:
        _block(s, ten + timedelta(hours=3), ten + timedelta(hours=4))
    engine.dispose()


def _contend(args: tuple[str, str, str, int, Any, bool]) -> str:
    data_dir, db_url, now_iso, index, barrier, blind = args
    from services.booking import BookingRequest, quotes, start_booking
    from services.core.context import build_services
    from services.core.errors import NotAvailable
    from services.core.settings import Settings

    svc = build_services(Settings(data_dir=Path(data_dir), database_url=db_url), migrate=False)
    now = datetime.fromisoformat(now_iso)
    svc.clock = lambda: now
    request = BookingRequest(
        room="boardroom",
        dates=(date(2026, 3, 4),),
        start=time(10),
        end=time(12),
        customer_name=f"Caller {index}",
        customer_email=f"caller{index}@example.org",
    )
    if blind:  # every process passes Gate 1 as if no one else existed: only the database can stop them
        quotes.busy_times = lambda *a, **k: []  # the name Gate 1 calls
    barrier.wait(timeout=60)
    try:
        start_booking(svc, request, actor=f"proc-{index}")
        return "won"
    except NotAvailable as exc:
        return "taken: " + exc.message
    finally:
        svc.engine.dispose()


@pytest.mark.parametrize("blind", [False, True], ids=["gate1", "database-only"])
def test_twenty_plus_concurrent_processes_one_winner(db_url: str, make_services: Any, blind: bool) -> None:
    svc = make_services(db_url)  # migrates the database and the sandbox stores once
    svc.engine.dispose()
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(CONTENDERS)
        args = [(str(svc.settings.data_dir), db_url, NOW.isoformat(), i, barrier, blind) for i in range(CONTENDERS)]
        with ctx.Pool(CONTENDERS) as pool:
            outcomes = pool.map(_contend, args)
    winners = [o for o in outcomes if o == "won"]
    losers = [o for o in outcomes if o != "won"]
    by_db = sum("just taken" in o for o in losers)
    print(
        f"\n{db_url.split(':')[0]} ({'database only' if blind else 'with Gate 1'}): "
        f"{len(winners)} winner of {CONTENDERS}; {by_db} refused by the database constraint, "
        f"{len(losers) - by_db} by Gate 1 after the winner's hold was visible"
    )
    assert len(winners) == 1, outcomes
    assert all(o.startswith("taken: ") for o in losers), outcomes
    assert all("taken" in o or "held booking" in o for o in losers), outcomes
    if blind:
        assert by_db == CONTENDERS - 1
    with svc.session() as s:
        active = list(s.exec(select(SlotClaim).where(SlotClaim.active == True)))  # noqa: E712
    assert len(active) == 1


def test_the_whole_saga_on_this_database(db_url: str, make_services: Any, booking_request: Any) -> None:
    svc = make_services(db_url)
    days = (date(2026, 3, 9), date(2026, 3, 10))
    started = bk.start_booking(svc, booking_request(dates=days), actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="webhook").outcome == "confirmed"
    assert bk.confirm_payment(svc, started.payment_intent).outcome == "already_done"
    result = bk.cancel_booking(svc, started.booking_id, actor="frontdesk")
    assert result.refund_cents == started.amount_cents
    with svc.session() as s:
        b = s.get(Booking, started.booking_id)
        assert b is not None and b.status == "CANCELLED"
        assert b.hold_expires_at is None and b.created_at.tzinfo is not None


def test_state_columns_come_back_as_their_enums_and_refuse_other_values(
    db_url: str, make_services: Any, booking_request: Any
) -> None:
    svc = make_services(db_url)
    started = bk.start_booking(svc, booking_request(channel="phone"), actor="front desk")
    with svc.session() as s:
        booking = s.get(Booking, started.booking_id)
        assert booking is not None
        assert booking.status is BookingStatus.AWAITING_PAYMENT and booking.channel is Channel.PHONE
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking.id)))
        assert {leg.state for leg in legs} == {LegState.AWAITING_PAYMENT}
        assert all(isinstance(leg.state, LegState) for leg in legs)
    with pytest.raises(StatementError, match="SHIPPED"), svc.session() as s:
        s.execute(sa.update(Booking).where(Booking.id == started.booking_id).values(status="SHIPPED"))
    with svc.session() as s:
        assert s.get(Booking, started.booking_id).status is BookingStatus.AWAITING_PAYMENT  # type: ignore[union-attr]


def _start_up(args: tuple[str, Any]) -> str:
    """One process starting on the database: the migrations the app runs before anything else."""
    db_url, barrier = args
    engine = make_engine(db_url)
    barrier.wait(timeout=60)
    try:
        upgrade(engine)
        return "ok"
    except Exception as exc:  # the test reports what each process saw
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()


def test_processes_starting_at_once_on_an_empty_database_all_start(db_url: str) -> None:
    """Issue 13 #9: two API processes starting together on an empty PostgreSQL database, one exited with a
    UniqueViolation on alembic_version. The migrations run one process at a time (a lock), the others find them done."""
    ctx = mp.get_context("fork")
    starters = 6
    with ctx.Manager() as manager:
        barrier = manager.Barrier(starters)
        with ctx.Pool(starters) as pool:
            outcomes = pool.map(_start_up, [(db_url, barrier)] * starters)
    assert outcomes == ["ok"] * starters
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar_one() == HEAD
    engine.dispose()


def test_a_database_error_never_carries_customer_details_or_the_pay_token(
    db_url: str, make_services: Any, booking_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13 #4: a failed statement's log line and traceback listed its parameters: names, emails, pay tokens."""
    import logging

    svc = make_services(db_url)
    started = bk.start_booking(svc, booking_request(customer_email="secret.person@example.org"), actor="t")
    with svc.session() as s:
        token = s.exec(select(Booking.pay_token).where(Booking.id == started.booking_id)).one()
    assert token
    log = logging.getLogger("roomdesk.test")
    # A second booking under the same reference.
    with pytest.raises(IntegrityError) as err, svc.session() as s:
        copy = Booking(
            reference=started.reference,
            room_slug="boardroom",
            status=BookingStatus.AWAITING_PAYMENT,
            channel=Channel.WEB,
            start_time="10:00",
            end_time="12:00",
            customer_name="Secret Person",
            customer_email="secret.person@example.org",
            amount_cents=100,
            pay_token=token,
            created_by="t",
        )
        s.add(copy)
        try:
            s.flush()
        except IntegrityError:
            log.exception("insert failed")
            raise
    text = str(err.value) + caplog.text
    assert "parameters hidden" in text.lower()
    for secret in ("secret.person@example.org", "Secret Person", token):
        assert secret not in text


def test_a_read_session_reads_while_a_write_is_open_and_refuses_to_write(db_url: str) -> None:
    """Pages and API reads never wait for a writer (SQLite: no write lock at BEGIN), see only committed rows, and a
    write slipped into one is refused by the database itself, through the ORM or raw SQL."""
    import threading
    import time as clock

    from models.db import read_session_scope

    engine = make_engine(db_url)
    upgrade(engine)
    with session_scope(engine) as s:
        s.add(AuditLog(at=NOW, actor="t", action="test.before", payload={}))
    writing, finish = threading.Event(), threading.Event()

    def writer() -> None:
        with session_scope(engine) as s:  # holds the write lock (SQLite) until `finish`
            s.add(AuditLog(at=NOW, actor="t", action="test.during", payload={}))
            s.flush()
            writing.set()
            finish.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        started = clock.monotonic()
        with read_session_scope(engine) as s:
            seen = [a.action for a in s.exec(select(AuditLog).where(AuditLog.actor == "t"))]
        waited = clock.monotonic() - started
    finally:
        finish.set()
        thread.join(10)
    assert seen == ["test.before"]  # the committed snapshot, not the writer's open row
    assert waited < 5, f"the read waited {waited:.1f} s for the writer"  # a locked read would wait the 30 s timeout

    with pytest.raises(RuntimeError, match="read-only session"), read_session_scope(engine) as s:
        s.add(AuditLog(at=NOW, actor="t", action="test.refused", payload={}))
        s.flush()
    with pytest.raises(sa.exc.DBAPIError, match=r"readonly|read-only"), read_session_scope(engine) as s:
        s.execute(sa.text("DELETE FROM slot_claim"))
    with session_scope(engine) as s:
        assert sorted(a.action for a in s.exec(select(AuditLog).where(AuditLog.actor == "t"))) == [
            "test.before",
            "test.during",
        ]
    engine.dispose()
