"""The worker keeps going through failures (backoff, one safe log line, its status on record), finishes bookings
paid while their process crashed, and the command line refuses impossible dates with one line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from models.db import make_engine
from models.tables import AuditLog, Booking, BookingStatus, EmailOutbox, WorkerStatus
from services import booking as bk
from services.booking.holds import finish_paid
from services.ops import cli, health, worker

EMAIL = "ava@example.org"


def status(svc: Any) -> WorkerStatus | None:
    with svc.session() as s:
        return s.get(WorkerStatus, "worker")


def actions(svc: Any, booking_id: int) -> list[str]:
    with svc.session() as s:
        rows = s.exec(select(AuditLog).where(AuditLog.booking_id == booking_id).order_by(col(AuditLog.id)))
        return [a.action for a in rows]


def one_booking(svc: Any, booking_id: int) -> Booking:
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        return b


def set_lease(svc: Any, booking_id: int, until: datetime | None) -> None:
    with svc.session() as s:
        s.execute(sa.update(Booking).where(Booking.id == booking_id).values(lease_until=until))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ failing rounds


def test_failed_rounds_back_off_are_logged_in_one_line_and_the_worker_carries_on(
    svc: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An outage (the database error carries a customer's email as a SQL parameter) for three rounds, then over."""
    outage = {"rounds": 3}

    def expire_holds(*_a: Any, **_k: Any) -> dict[str, int]:
        if outage["rounds"]:
            outage["rounds"] -= 1
            raise sa.exc.OperationalError(
                "SELECT * FROM booking WHERE customer_email = %(e)s", {"e": EMAIL}, ConnectionError("server closed")
            )
        return {}

    monkeypatch.setattr(bk, "expire_holds", expire_holds)
    svc.settings.worker_backoff_max_seconds = 5
    waits: list[float] = []
    assert worker.run(svc, every=2, sleep=waits.append, rounds=5) == 0

    assert waits == [4, 5, 5, 2]  # doubling, capped, back to --every after a success
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if "round failed" in line]
    assert len(failed) == 3 and "(3 in a row" in failed[2]
    assert "OperationalError" in failed[0] and "server closed" in failed[0]
    assert EMAIL not in err and "SELECT" not in err and "Traceback" not in err
    row = status(svc)
    assert row is not None and row.failures_in_a_row == 0 and row.last_ok_at == svc.now() and row.last_error is None


def test_with_the_database_unreachable_the_worker_keeps_running_and_notes_nothing(
    svc: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    svc.engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/gone")  # nothing listens on port 9
    waits: list[float] = []
    assert worker.run(svc, every=1, sleep=waits.append, rounds=3) == 0
    assert waits == [2, 4]
    err = capsys.readouterr().err
    assert err.count("round failed") == 3 and "OperationalError" in err
    assert worker.record_round(svc, svc.now(), summary="x") is False  # never raises


def test_once_reports_a_failed_round_by_its_exit_status(svc: Any) -> None:
    svc.engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/gone")
    assert worker.run(svc, every=60, once=True, sleep=lambda _s: None) == 1


# ------------------------------------------------------------------------------------------ status on the Overview


def test_the_overview_line_says_never_ok_or_failing_since(svc: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert health.worker_health(svc).text == "Worker: never ran"
    assert worker.run(svc, every=60, once=True) == 0
    svc.clock.advance(minutes=3)
    seen = health.worker_health(svc)
    assert seen.ok and seen.text == "Worker: last successful round 3 min ago"

    def broken(*_a: Any, **_k: Any) -> dict[str, int]:
        raise RuntimeError("calendar service exploded\nsecond line with details")

    monkeypatch.setattr(bk, "expire_holds", broken)
    worker.run(svc, every=60, rounds=2, sleep=lambda _s: None)
    seen = health.worker_health(svc)
    assert not seen.ok and seen.failures_in_a_row == 2
    assert "failing (last success 3 min ago), 2 round(s) in a row" in seen.text
    assert seen.text.endswith("RuntimeError: calendar service exploded")


# ------------------------------------------------------------------------------------------ paid, owner crashed


def paid_at_stripe_only(svc: Any, booking_request: Any, **kw: Any) -> bk.StartResult:
    """The customer paid; the process that was to confirm it died (no webhook processed, nothing confirmed)."""
    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    svc.payments.confirm_payment_intent(started.payment_intent)
    return started


def test_a_booking_paid_while_its_process_crashed_is_confirmed_on_the_next_round(
    make_services: Any, db_url: str, booking_request: Any
) -> None:
    svc = make_services(db_url)
    crashed = paid_at_stripe_only(svc, booking_request)
    set_lease(svc, crashed.booking_id, datetime.now(UTC) - timedelta(minutes=1))  # its owner's lease ran out
    unpaid = bk.start_booking(svc, booking_request(room="gallery"), actor="customer")

    assert worker.run(svc, every=60, once=True) == 0  # long before either hold expires

    b = one_booking(svc, crashed.booking_id)
    assert b.status == BookingStatus.CONFIRMED and b.lease_until is None
    assert "booking.payment.succeeded" in actions(svc, crashed.booking_id)
    assert "booking.confirmed" in actions(svc, crashed.booking_id)
    events = svc.calendar.list_events(
        "boardroom@group.calendar.google.com", private_property=f"booking_id={crashed.reference}"
    )["items"]
    assert len(events) == 1
    with svc.session() as s:
        mails = list(s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == crashed.booking_id)))
    assert [m.kind for m in mails] == ["confirmation"]
    assert one_booking(svc, unpaid.booking_id).status == BookingStatus.AWAITING_PAYMENT  # not paid: left alone


def test_a_paid_booking_under_a_live_lease_is_left_to_its_owner(svc: Any, booking_request: Any) -> None:
    started = paid_at_stripe_only(svc, booking_request)
    set_lease(svc, started.booking_id, datetime.now(UTC) + timedelta(minutes=1))
    assert finish_paid(svc, actor="worker") == {}
    assert one_booking(svc, started.booking_id).status == BookingStatus.AWAITING_PAYMENT
    set_lease(svc, started.booking_id, None)
    assert finish_paid(svc, actor="worker") == {"confirmed": 1}
    assert finish_paid(svc, actor="worker") == {}  # nothing left to do


def test_a_backlog_is_worked_through_a_few_per_round_oldest_first(svc: Any, booking_request: Any) -> None:
    rooms = ["boardroom", "gallery", "workshop"]
    ids = []
    for i, room in enumerate(rooms):
        ids.append(paid_at_stripe_only(svc, booking_request, room=room, customer_email=f"c{i}@example.org").booking_id)
        svc.clock.advance(minutes=1)
    assert finish_paid(svc, actor="worker", limit=2) == {"confirmed": 2}
    assert [one_booking(svc, i).status for i in ids] == [BookingStatus.CONFIRMED] * 2 + [BookingStatus.AWAITING_PAYMENT]
    assert finish_paid(svc, actor="worker", limit=2) == {"confirmed": 1}


def test_expire_holds_from_the_command_line_finishes_paid_bookings_too(
    make_services: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.core.settings import get_settings

    now = datetime.now(UTC)  # the command runs on the real clock
    svc = make_services(now=now)
    day = (now + timedelta(days=7)).date()
    day += timedelta(days=(2 - day.weekday()) % 7)  # a Wednesday, within the booking window
    started = paid_at_stripe_only(svc, booking_request, dates=(day,))
    monkeypatch.setenv("DATA_DIR", str(svc.settings.data_dir))
    get_settings.cache_clear()
    try:
        assert cli.main(["expire-holds"]) == 0
    finally:
        get_settings.cache_clear()
    assert "Paid, finished now: confirmed: 1" in capsys.readouterr().out
    assert one_booking(svc, started.booking_id).status == BookingStatus.CONFIRMED


# ------------------------------------------------------------------------------------------ command line dates


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["export-refunds", "--from", "0001-01-01", "--to", "2026-03-01"], "--from"),
        (["export-refunds", "--from", "2026-03-01", "--to", "9999-12-31"], "--to"),
        (["close", "--day", "9999-12-31"], "--day"),
        (["close", "--day", "0001-01-01"], "--day"),
        (["worker", "--every", "nan"], "--every"),
        (["worker", "--every=-5s"], "--every"),
        (["send-mail", "--limit", "-1"], "--limit"),
    ],
)
def test_impossible_dates_and_numbers_are_one_line_errors(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    if argv[0] == "export-refunds":
        argv += ["--format", "csv", "--out", str(tmp_path / "r.csv")]
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: " in err and "out of range" in err and "Traceback" not in err


def test_the_worker_health_endpoint_says_starting_ok_failing_and_stalled() -> None:
    """What a process manager hears on GET /healthz (worker --health-port): 503 until a round has run, 200 while rounds
    succeed, 503 with the error's first line once one fails, 503 stalled when no round finished for too long."""
    import socket
    import time as clock

    import httpx

    from services.ops import liveness

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    alive = liveness.Liveness(stale_after=3600)
    server = liveness.serve(alive, port)
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        first = httpx.get(url, trust_env=False)
        assert (first.status_code, first.json()["status"]) == (503, "starting")
        alive.round_done()
        ok = httpx.get(url, trust_env=False)
        assert (ok.status_code, ok.json()["status"], ok.json()["failures_in_a_row"]) == (200, "ok", 0)
        alive.round_done(error="GatewayError: Stripe did not answer")
        failing = httpx.get(url, trust_env=False)
        assert failing.status_code == 503
        assert failing.json() | {"last_ok_seconds_ago": 0} == {
            "status": "failing",
            "error": "GatewayError: Stripe did not answer",
            "failures_in_a_row": 1,
            "last_ok_seconds_ago": 0,
        }
        assert httpx.get(f"http://127.0.0.1:{port}/", trust_env=False).status_code == 404
        alive.round_done()
        alive.stale_after = 0.05
        clock.sleep(0.1)
        stalled = httpx.get(url, trust_env=False)
        assert (stalled.status_code, stalled.json()["status"]) == (503, "stalled")
    finally:
        server.shutdown()
