"""Reminder emails, REMINDER_HOURS (48) before each booked day: the pure rule (due, not yet, too late, booked inside
the window, across the DST change in Vancouver), and the service on sandbox gateways (sent once with the manage link,
never for a cancelled or refunded day, held back when its day is cancelled during a mail outage, the worker and
`send-reminders`).

The clock is the suite's: Mon 2 Mar 2026, 09:00 in Vancouver (PST, UTC-8). The clocks go forward on Sun 8 March.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select

from models.tables import AuditLog, Booking, BookingLeg, EmailOutbox, LegState
from services import booking as bk
from services.notify import outbox, queries
from services.notify.reminders import due, send_reminders
from services.rules.reminders import ReminderCandidate, due_reminders, reminder_due
from tests.conftest import NOW

VANCOUVER = ZoneInfo("America/Vancouver")


def at(day: date, hh: int, mm: int = 0) -> datetime:
    """A Vancouver wall-clock time, as the aware UTC instant the database stores."""
    return datetime.combine(day, time(hh, mm), tzinfo=VANCOUVER).astimezone(UTC)


def paid(svc: Any, booking_request: Any, *days: date, now: datetime | None = None) -> bk.StartResult:
    if now is not None:
        svc.clock.at = now
    started = bk.start_booking(svc, booking_request(dates=list(days)), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="customer")
    return started


def reminders_sent(svc: Any) -> list[tuple[str, str]]:
    """(day in the subject, to) of every reminder the mail gateway received."""
    return sorted((m["subject"].split(", ")[1], m["to"]) for m in svc.mail.messages(kind="reminder"))


def leg_id(svc: Any, booking_id: int, day: date) -> int:
    with svc.session() as s:
        leg = s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id, BookingLeg.day == day)).one()
        assert leg.id is not None
        return leg.id


# --------------------------------------------------------------------------------------------------- the rule

WED_10 = at(date(2026, 3, 4), 10)  # Wednesday 4 March, 10:00 PST


@pytest.mark.parametrize(
    ("now", "booked_at", "booked", "expected"),
    [
        (WED_10 - timedelta(hours=48, seconds=1), NOW, True, False),  # not yet
        (WED_10 - timedelta(hours=48), NOW, True, True),  # the window opens
        (WED_10 - timedelta(minutes=1), NOW, True, True),  # a worker that was down sends it late, before the start
        (WED_10, NOW, True, False),  # started: too late
        (WED_10 - timedelta(hours=30), WED_10 - timedelta(hours=48), True, True),  # booked as the window opened
        (WED_10 - timedelta(hours=30), WED_10 - timedelta(hours=47), True, False),  # booked inside the window
        (WED_10 - timedelta(hours=30), NOW, False, False),  # cancelled, refunded…
    ],
)
def test_which_day_is_due(now: datetime, booked_at: datetime, booked: bool, expected: bool) -> None:
    day = ReminderCandidate(key=1, starts_at=WED_10, booked_at=booked_at, booked=booked)
    assert reminder_due(day, now, 48) is expected


def test_the_window_is_elapsed_hours_across_the_dst_change() -> None:
    """Mon 9 March 10:00 is PDT (UTC-7); 48 h earlier is Sat 7 March 09:00 PST, not 10:00: the reminder keeps its
    distance from the start, as the refund bands do, and arrives an hour earlier on the wall clock."""
    monday = at(date(2026, 3, 9), 10)
    assert monday == datetime(2026, 3, 9, 17, tzinfo=UTC)
    day = ReminderCandidate(key=7, starts_at=monday, booked_at=NOW)
    assert not reminder_due(day, at(date(2026, 3, 7), 8, 59), 48)
    assert reminder_due(day, at(date(2026, 3, 7), 9), 48)
    # Autumn the other way: Mon 2 Nov 10:00 PST, 48 h earlier is Sat 31 Oct 11:00 PDT.
    november = ReminderCandidate(key=8, starts_at=at(date(2026, 11, 2), 10), booked_at=NOW)
    assert not reminder_due(november, at(date(2026, 10, 31), 10, 59), 48)
    assert reminder_due(november, at(date(2026, 10, 31), 11), 48)


def test_due_reminders_keep_the_due_ones_earliest_first_and_refuse_naive_times() -> None:
    later = ReminderCandidate(key=1, starts_at=WED_10 + timedelta(hours=2), booked_at=NOW)
    sooner = ReminderCandidate(key=2, starts_at=WED_10, booked_at=NOW)
    far = ReminderCandidate(key=3, starts_at=WED_10 + timedelta(days=3), booked_at=NOW)
    assert due_reminders([later, far, sooner], WED_10 - timedelta(hours=40), 48) == [sooner, later]
    with pytest.raises(ValueError, match="timezone-aware"):
        reminder_due(sooner, datetime(2026, 3, 2, 12), 48)


# --------------------------------------------------------------------------------------------------- the service


def test_a_reminder_goes_out_once_48_hours_before_with_the_manage_link(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request, date(2026, 3, 4), date(2026, 3, 5))
    svc.clock.at = WED_10 - timedelta(hours=48, minutes=1)
    assert send_reminders(svc, now=svc.now()).sent == []

    svc.clock.at = WED_10 - timedelta(hours=48)
    report = send_reminders(svc, now=svc.now())
    assert [(r.reference, r.day) for r in report.sent] == [(started.reference, date(2026, 3, 4))]
    assert report.line() == "reminders 1 sent"
    [mail] = svc.mail.messages(kind="reminder")
    assert mail["subject"] == "Reminder: Boardroom, Wed 4 Mar, 10:00–12:00" and mail["to"] == "ava@example.org"
    link = f"http://127.0.0.1:8000/manage/{started.reference}?k={started.pay_token}"
    assert link in mail["text"] and f'href="{link}"' in mail["html"]
    assert "Wed 4 Mar, 10:00–12:00" in mail["text"] and "Thu 5 Mar" not in mail["text"]

    # Once: the next rounds (the worker runs every few minutes) find it in the outbox.
    svc.clock.advance(minutes=5)
    assert send_reminders(svc, now=svc.now()).sent == []
    with svc.session() as s:
        rows = s.exec(select(EmailOutbox).where(EmailOutbox.kind == "reminder")).all()
        audit = [
            (a.action, a.actor)
            for a in s.exec(
                select(AuditLog).where(AuditLog.booking_id == started.booking_id).order_by(col(AuditLog.id))
            )
            if "reminder" in a.action
        ]
    assert [(r.idempotency_key, r.status) for r in rows] == [(f"{started.reference}-reminder-20260304", "sent")]
    assert audit == [("booking.reminder.queued", "worker"), ("email.reminder.sent", "worker")]

    # Thursday's, a day later.
    svc.clock.at = WED_10 + timedelta(hours=-24)
    assert [r.day for r in send_reminders(svc, now=svc.now()).sent] == [date(2026, 3, 5)]
    assert reminders_sent(svc) == [("Thu 5 Mar", "ava@example.org"), ("Wed 4 Mar", "ava@example.org")]


def test_no_reminder_for_a_day_booked_inside_the_window(svc: Any, booking_request: Any) -> None:
    # Tuesday 10:00 is 25 h away: the confirmation has just told the customer.
    paid(svc, booking_request, date(2026, 3, 3))
    for hours in (0, 1, 12, 24):
        svc.clock.at = NOW + timedelta(hours=hours)
        assert due(svc, now=svc.now()) == []
    assert reminders_sent(svc) == []


@pytest.mark.parametrize("how", ["cancelled by the customer", "refunded by staff"])
def test_no_reminder_for_a_cancelled_or_refunded_day(svc: Any, booking_request: Any, how: str) -> None:
    started = paid(svc, booking_request, date(2026, 3, 5), date(2026, 3, 6))
    thursday = leg_id(svc, started.booking_id, date(2026, 3, 5))
    if how.startswith("cancelled"):
        bk.cancel_booking(svc, started.booking_id, actor="customer", leg_ids=[thursday])
    else:
        with svc.session() as s:
            leg = s.get(BookingLeg, thursday)
            assert leg is not None
            bk.set_leg_state(leg, LegState.REFUNDED, svc.now())
    svc.clock.at = at(date(2026, 3, 3), 10)  # Thursday's window opens
    assert send_reminders(svc, now=svc.now()).sent == []
    svc.clock.at = at(date(2026, 3, 4), 10)  # Friday's
    assert [r.day for r in send_reminders(svc, now=svc.now()).sent] == [date(2026, 3, 6)]
    assert reminders_sent(svc) == [("Fri 6 Mar", "ava@example.org")]


def test_a_mail_outage_delays_the_reminder_once_and_a_day_cancelled_meanwhile_gets_none(
    svc: Any, booking_request: Any
) -> None:
    started = paid(svc, booking_request, date(2026, 3, 5), date(2026, 3, 6))
    svc.mail.faults.fail("send", times=2)
    svc.clock.at = at(date(2026, 3, 4), 10)  # both days' windows are open
    report = send_reminders(svc, now=svc.now())
    assert report.sent == [] and [r.day for r in report.queued] == [date(2026, 3, 5), date(2026, 3, 6)]
    assert report.line() == "reminders 0 sent, 2 queued to retry"
    assert send_reminders(svc, now=svc.now()).queued == []  # in the outbox already: not queued twice

    # Thursday is cancelled (by staff, inside the cut-off) while the mail server is down.
    thursday = leg_id(svc, started.booking_id, date(2026, 3, 5))
    svc.mail.faults.fail("send", times=1)  # the cancellation email waits too
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk", leg_ids=[thursday])
    svc.clock.advance(minutes=10)
    outbox.deliver_due(svc, now=svc.now())
    assert reminders_sent(svc) == [("Fri 6 Mar", "ava@example.org")]
    with svc.session() as s:
        rows = {
            r.idempotency_key: (r.status, r.last_error)
            for r in s.exec(select(EmailOutbox).where(EmailOutbox.kind == "reminder"))
        }
        withdrawn = s.exec(select(AuditLog).where(AuditLog.action == "email.reminder.withdrawn")).one()
    assert rows == {
        f"{started.reference}-reminder-20260305": ("withdrawn", "Not sent: Thu 5 Mar is no longer booked"),
        f"{started.reference}-reminder-20260306": ("sent", None),
    }
    assert withdrawn.payload["reason"] == "Thu 5 Mar is no longer booked"
    # Withdrawn is nothing for staff to do: not "needs attention" on Emails & webhooks, listed under its own state.
    counts = queries.outbox_counts(svc)
    assert (counts["needs_attention"], counts["withdrawn"]) == (0, 1)
    assert [e.kind for e in queries.list_outbox(svc, states=["withdrawn"])] == ["reminder"]
    assert outbox.deliver_due(svc, now=svc.now() + timedelta(hours=5)).line().startswith("emails 0 sent, 0 failed")


def test_the_worker_and_send_reminders_command(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.core.settings import get_settings
    from services.ops import cli

    first = paid(svc, booking_request, date(2026, 3, 4))
    second = paid(svc, booking_request, date(2026, 3, 5))
    monkeypatch.setenv("DATA_DIR", str(svc.settings.data_dir))
    monkeypatch.setattr(cli, "_services", lambda: svc)  # the suite's clock
    get_settings.cache_clear()
    try:
        svc.clock.at = WED_10 - timedelta(hours=47)
        assert cli.main(["send-reminders"]) == 0
        assert capsys.readouterr().out == (
            f"  {first.reference:<10} 2026-03-04  ava@example.org  sent\nReminders 1 sent.\n"
        )
        svc.clock.at = WED_10 - timedelta(hours=23)
        assert cli.main(["worker", "--once"]) == 0
        assert "; reminders 1 sent; emails 0 sent" in capsys.readouterr().out
        assert cli.main(["send-reminders"]) == 0
        assert capsys.readouterr().out == "Reminders 0 sent.\n"
    finally:
        get_settings.cache_clear()
    assert [m["booking_id"] for m in svc.mail.messages(kind="reminder")] == [second.booking_id, first.booking_id]


def test_audit_mode_sends_no_reminder(make_services: Any, booking_request: Any) -> None:
    svc = make_services()
    paid(svc, booking_request, date(2026, 3, 4))
    audit_svc = make_services(audit_mode=True)
    audit_svc.clock.at = WED_10 - timedelta(hours=1)
    assert send_reminders(audit_svc, now=audit_svc.now()).sent == []
    assert reminders_sent(svc) == []


def test_a_reminder_that_cannot_be_composed_does_not_stop_the_others(svc: Any, booking_request: Any) -> None:
    gone = paid(svc, booking_request, date(2026, 3, 4))
    other = bk.start_booking(
        svc, booking_request(dates=[date(2026, 3, 4)], room="union-room", customer_email="bo@example.org"), actor="c"
    )
    bk.sandbox_pay(svc, other.booking_id, actor="customer")
    with svc.session() as s:  # the Boardroom booking's room has since left the catalogue
        booking = s.get(Booking, gone.booking_id)
        assert booking is not None
        booking.room_slug = "old-room"
    svc.clock.at = WED_10 - timedelta(hours=47)
    report = send_reminders(svc, now=svc.now())
    assert [r.reference for r in report.sent] == [other.reference]
    assert [r.reference for r in report.failed] == [gone.reference]
    assert report.line() == "reminders 1 sent, 1 could not be composed (see the log)"


def test_a_reminder_held_up_until_its_day_has_begun_is_not_sent_late(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request, date(2026, 3, 4))
    svc.mail.faults.fail("send", times=1)
    svc.clock.at = WED_10 - timedelta(hours=47)
    assert [r.day for r in send_reminders(svc, now=svc.now()).queued] == [date(2026, 3, 4)]
    svc.clock.at = WED_10 + timedelta(minutes=5)  # the server is back once the day has begun; no advance_legs ran
    outbox.deliver_due(svc, now=svc.now())
    assert reminders_sent(svc) == []
    with svc.session() as s:
        row = s.exec(select(EmailOutbox).where(EmailOutbox.kind == "reminder")).one()
    assert (row.status, row.last_error) == ("withdrawn", "Not sent: Wed 4 Mar has begun")
    assert row.idempotency_key == f"{started.reference}-reminder-20260304"
