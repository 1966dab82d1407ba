"""The booking saga on sandbox gateways: what staff and customers would notice, faults included."""

from __future__ import annotations

import logging
from datetime import date, time, timedelta, timezone
from typing import Any

import pytest
from sqlmodel import select

from models.tables import AuditLog, Booking, BookingLeg, EmailOutbox, RefundRecord, SlotClaim
from services import booking as bk
from services.core.errors import InvalidState, NotAvailable, SlotTaken, ValidationError

THREE_DAYS = (date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11))


def actions(svc: Any, booking_id: int) -> list[str]:
    with svc.session() as s:
        return [
            a.action for a in s.exec(select(AuditLog).where(AuditLog.booking_id == booking_id).order_by(AuditLog.id))
        ]


def legs(svc: Any, booking_id: int) -> list[BookingLeg]:
    with svc.session() as s:
        return list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(BookingLeg.day)))


def booking(svc: Any, booking_id: int) -> Booking:
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        return b


def live_events(svc: Any, reference: str, calendar_id: str = "boardroom@group.calendar.google.com") -> list[dict]:
    items = svc.calendar.list_events(calendar_id, private_property=f"booking_id={reference}")["items"]
    return [e for e in items if e.get("status") != "cancelled"]


def charge(svc: Any, pi: str) -> dict:
    return svc.payments.retrieve_payment_intent(pi)["latest_charge"] or {}


def add_manual_event(svc: Any, day: date, start: time, end: time, calendar: str = "boardroom") -> None:
    tz = svc.settings.tz
    from datetime import datetime

    svc.calendar.insert_event(
        f"{calendar}@group.calendar.google.com",
        {
            "summary": "Staff meeting",
            "start": {"dateTime": datetime.combine(day, start, tzinfo=tz).isoformat()},
            "end": {"dateTime": datetime.combine(day, end, tzinfo=tz).isoformat()},
        },
    )


# ------------------------------------------------------------------------------------------- start


def test_start_holds_the_slot_and_creates_a_payment_intent_with_metadata(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(
        svc, booking_request(dates=THREE_DAYS, start=time(9), end=time(11, 30)), actor="customer"
    )
    pi = svc.payments.retrieve_payment_intent(started.payment_intent)
    assert pi["metadata"] == {
        "room": "boardroom",
        "booking_dates": "2026-03-09,2026-03-10,2026-03-11",
        "booking_time": "09:00-11:30",
        "customer_name": "Ava Nguyen",
        "customer_email": "ava@example.org",
        "customer_phone": "604-555-0101",
        "booking_id": started.reference,
    }
    # 2.5 h × $45 = $112.50 a day, 10 % off for three days in a discount-eligible room.
    assert pi["amount"] == started.amount_cents == 3 * (11250 - 1125)
    assert started.client_secret.startswith(started.payment_intent)
    # A web hold is short until the customer reaches payment (issue 13), then the full 30 minutes.
    assert started.hold_expires_at == svc.now() + timedelta(minutes=10)
    assert [leg.state for leg in legs(svc, started.booking_id)] == ["AWAITING_PAYMENT"] * 3
    assert actions(svc, started.booking_id) == ["booking.hold.created", "booking.payment_intent.created"]


def test_a_held_slot_is_refused_to_the_next_customer_with_a_reason(svc: Any, booking_request: Any) -> None:
    bk.start_booking(svc, booking_request(), actor="customer")
    with pytest.raises(NotAvailable) as err:
        bk.start_booking(svc, booking_request(start=time(11), end=time(13)), actor="customer")
    assert err.value.reasons == ["Wed 4 Mar: overlaps a held booking (10:00–12:00)"]
    with pytest.raises(NotAvailable) as err:
        bk.start_booking(svc, booking_request(start=time(12, 0), end=time(14, 0)), actor="customer")
    assert err.value.reasons == ["Wed 4 Mar: within 15 minutes of a held booking (10:00–12:00)"]
    bk.start_booking(svc, booking_request(start=time(12, 15), end=time(14, 15)), actor="customer")


def test_rules_refuse_before_anything_is_created(svc: Any, booking_request: Any) -> None:
    with pytest.raises(NotAvailable) as err:
        bk.start_booking(svc, booking_request(dates=[date(2026, 3, 7)]), actor="customer")
    assert err.value.reasons == ["Sat 7 Mar: Saturdays are closed"]
    assert svc.payments.list_payment_intents()["data"] == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("customer_email", "ava.example.org", "A valid customer email is required"),
        ("customer_name", "  ", "Customer name is required"),
        ("customer_phone", "call me maybe", "Phone number looks wrong"),
    ],
)
def test_bad_customer_details_are_refused_clearly(
    svc: Any, booking_request: Any, field: str, value: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        bk.start_booking(svc, booking_request(**{field: value}), actor="customer")


def test_sonic_studio_extras_required_online_but_phone_may_collect_later(svc: Any, booking_request: Any) -> None:
    with pytest.raises(ValidationError, match="Podcast or show name is required"):
        bk.start_booking(svc, booking_request(room="sonic-studio", agreement_version="2026-01"), actor="customer")
    with pytest.raises(ValidationError, match="Set choice must be one of"):
        bk.start_booking(
            svc,
            booking_request(
                room="sonic-studio",
                agreement_version="2026-01",
                extras={"show_name": "Night Shift", "set_choice": "Rave"},
            ),
            actor="customer",
        )
    phone = bk.start_booking(svc, booking_request(room="sonic-studio", channel="phone"), actor="frontdesk")
    assert booking(svc, phone.booking_id).extras == {}


def test_payment_intent_failure_releases_the_hold(svc: Any, booking_request: Any) -> None:
    from services.core.errors import GatewayError

    svc.payments.faults.fail("create_payment_intent")
    with pytest.raises(GatewayError, match="unavailable"):
        bk.start_booking(svc, booking_request(), actor="customer")
    retry = bk.start_booking(svc, booking_request(), actor="customer")  # the slot is free again
    assert retry.payment_intent


# ------------------------------------------------------------------------------------------- confirm


def test_payment_confirms_with_one_event_per_day_and_an_email(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS), actor="customer")
    result = bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    assert result.outcome == "confirmed"
    events = live_events(svc, started.reference)
    assert sorted(e["extendedProperties"]["private"]["booking_date"] for e in events) == [
        d.isoformat() for d in THREE_DAYS
    ]
    for e in events:
        assert e["id"] == bk.event_id_for(
            started.reference, date.fromisoformat(e["extendedProperties"]["private"]["booking_date"])
        )
        assert e["extendedProperties"]["private"]["payment_intent"] == started.payment_intent
        assert e["start"]["dateTime"].endswith("-07:00") or e["start"]["dateTime"].endswith("-08:00")
    b = booking(svc, started.booking_id)
    assert b.status == "CONFIRMED" and b.confirmation_sent_at == svc.now()
    mail = svc.mail.messages(booking_id=started.booking_id)
    assert len(mail) == 1 and started.reference in mail[0]["text"] and "Mon 9 Mar" in mail[0]["subject"]
    assert "Full refund 48 h or more before" in mail[0]["text"]
    with svc.session() as s:
        claims = list(s.exec(select(SlotClaim).where(SlotClaim.booking_id == started.booking_id)))
    assert {(c.kind, c.active, c.expires_at) for c in claims} == {("booked", True, None)}


def test_confirming_twice_changes_nothing(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    before = (
        actions(svc, started.booking_id),
        live_events(svc, started.reference),
        svc.mail.messages(booking_id=started.booking_id),
    )
    again = bk.confirm_payment(svc, started.payment_intent, actor="stripe-webhook")
    assert again.outcome == "already_done"
    after = (
        actions(svc, started.booking_id),
        live_events(svc, started.reference),
        svc.mail.messages(booking_id=started.booking_id),
    )
    assert before == after


def test_unpaid_payment_intent_is_not_confirmed(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    result = bk.confirm_payment(svc, started.payment_intent)
    assert result.outcome == "not_paid" and live_events(svc, started.reference) == []
    assert booking(svc, started.booking_id).status == "AWAITING_PAYMENT"


def test_gate2_conflict_refunds_in_full_and_tells_the_customer(
    svc: Any, booking_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS), actor="customer")
    add_manual_event(svc, THREE_DAYS[1], time(11), time(13))  # staff add an event while the customer pays
    with caplog.at_level(logging.INFO, logger="roomdesk"):
        result = bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    assert result.outcome == "auto_refunded"
    assert live_events(svc, started.reference) == []
    ch = charge(svc, started.payment_intent)
    assert ch["refunded"] is True and ch["amount_refunded"] == started.amount_cents
    assert [leg.state for leg in legs(svc, started.booking_id)] == ["FAILED"] * 3
    assert "booking.gate2.conflict" in actions(svc, started.booking_id)
    mail = svc.mail.messages(booking_id=started.booking_id)
    assert [m["kind"] for m in mail] == ["auto_refund"] and "taken at the moment of your payment" in mail[0]["text"]
    gate2 = [r for r in caplog.records if r.getMessage().startswith("Gate 2 conflict")]
    assert gate2 and started.reference in gate2[0].getMessage() and started.payment_intent in gate2[0].getMessage()
    # The slot is free again for someone else (outside the manual event).
    bk.start_booking(svc, booking_request(dates=[THREE_DAYS[0]]), actor="customer")


@pytest.mark.parametrize("mode", ["before", "after", "timeout"])
def test_event_failure_on_day_two_cleans_up_and_refunds(svc: Any, booking_request: Any, mode: str) -> None:
    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS), actor="customer")
    svc.calendar.faults.fail("insert_event", nth=2, mode=mode)
    result = bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    assert result.outcome == "auto_refunded", result.messages
    assert live_events(svc, started.reference) == []  # day 1 deleted; day 2 too if it was created anyway
    assert charge(svc, started.payment_intent)["amount_refunded"] == started.amount_cents
    acts = actions(svc, started.booking_id)
    assert "booking.event.failed" in acts and "booking.cleanup.started" in acts and "booking.cleanup.done" in acts
    with svc.session() as s:
        refunds = list(s.exec(select(RefundRecord).where(RefundRecord.booking_id == started.booking_id)))
    assert [(r.origin, r.amount_cents) for r in refunds] == [("auto_gate2", started.amount_cents)]


def test_cleanup_failure_is_audited_and_the_refund_still_goes_out(
    svc: Any, booking_request: Any, caplog: pytest.LogCaptureFixture
) -> None:
    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS), actor="customer")
    svc.calendar.faults.fail("insert_event", nth=3)
    svc.calendar.faults.fail("delete_event", times=10)
    with caplog.at_level(logging.INFO, logger="roomdesk"):
        result = bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    assert result.outcome == "cleanup_failed"
    assert len(live_events(svc, started.reference)) == 2  # orphans left, and the audit says which
    with svc.session() as s:
        row = s.exec(select(AuditLog).where(AuditLog.action == "booking.cleanup.failed")).one()
    assert len(row.payload["events"]) == 3
    assert charge(svc, started.payment_intent)["refunded"] is True
    assert any("Multi-day partial failure — cleaning up" in r.getMessage() for r in caplog.records)


def test_refund_failure_in_the_safety_net_is_audited(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    svc.calendar.faults.fail("insert_event")
    svc.payments.faults.fail("refund")
    result = bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    assert result.outcome == "refund_failed" and "Automatic refund failed: refund by hand" in result.messages
    assert "booking.refund.failed" in actions(svc, started.booking_id)
    assert charge(svc, started.payment_intent)["amount_refunded"] == 0


def test_confirm_retried_after_a_crash_finishes_without_duplicates(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS), actor="customer")
    svc.payments.confirm_payment_intent(started.payment_intent)
    # First delivery: the calendar answers day 2 but the response is lost, and then day 3 cannot be reached.
    svc.calendar.faults.fail("insert_event", nth=2, mode="after")
    svc.calendar.faults.fail("delete_event", times=10)
    svc.payments.faults.fail("refund", times=10)
    first = bk.confirm_payment(svc, started.payment_intent)
    assert first.outcome == "cleanup_failed"
    svc.calendar.faults.clear()
    svc.payments.faults.clear()
    # All days go out in one batch, so day 3 was created too; the clean-up could not delete any of them.
    # The booking is FAILED without a refund: a second delivery must not create more events.
    again = bk.confirm_payment(svc, started.payment_intent)
    assert again.outcome == "already_done"
    assert len(live_events(svc, started.reference)) == 3


def test_lapsed_hold_paid_after_someone_else_took_the_slot_is_refunded(svc: Any, booking_request: Any) -> None:
    first = bk.start_booking(svc, booking_request(), actor="customer")
    svc.clock.advance(minutes=31)
    second = bk.start_booking(svc, booking_request(customer_email="zoe@example.org"), actor="customer")
    assert actions(svc, first.booking_id)[-1] == "booking.hold.lapsed"
    bk.sandbox_pay(svc, second.booking_id, actor="stripe-webhook")
    late = bk.sandbox_pay(svc, first.booking_id, actor="stripe-webhook")
    assert late.outcome == "auto_refunded"
    assert charge(svc, first.payment_intent)["refunded"] is True
    assert len(live_events(svc, second.reference)) == 1 and live_events(svc, first.reference) == []


# ------------------------------------------------------------------------------------------- expire


def test_expired_holds_cancel_their_payment_intents(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    assert bk.expire_holds(svc) == {}
    svc.clock.advance(minutes=31)
    assert bk.expire_holds(svc) == {"expired": 1}
    assert svc.payments.retrieve_payment_intent(started.payment_intent)["status"] == "canceled"
    assert booking(svc, started.booking_id).status == "EXPIRED"
    assert "booking.hold.expired" in actions(svc, started.booking_id)


def test_expiry_confirms_a_payment_whose_webhook_never_came(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    svc.payments.confirm_payment_intent(started.payment_intent)
    svc.clock.advance(minutes=31)
    assert bk.expire_holds(svc) == {"confirmed": 1}
    assert booking(svc, started.booking_id).status == "CONFIRMED"
    assert len(live_events(svc, started.reference)) == 1


def test_phone_holds_last_longer(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(channel="phone"), actor="frontdesk")
    assert started.hold_expires_at == svc.now() + timedelta(hours=24)


# ------------------------------------------------------------------------------------------- cancel


def test_cancel_48h_ahead_refunds_in_full_deletes_events_and_frees_the_slot(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    result = bk.cancel_booking(svc, started.booking_id, actor="frontdesk", reason="Customer asked")
    assert result.refund_cents == started.amount_cents and result.problems == []
    assert live_events(svc, started.reference) == []
    assert booking(svc, started.booking_id).status == "CANCELLED"
    assert [m["kind"] for m in svc.mail.messages(booking_id=started.booking_id)] == ["cancellation", "confirmation"]
    bk.start_booking(svc, booking_request(customer_email="next@example.org"), actor="customer")


def test_cancel_one_day_at_30h_refunds_half_of_that_day(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    day_one = legs(svc, started.booking_id)[0]
    svc.clock.at = day_one.starts_at - timedelta(hours=30)
    quote = bk.cancellation_quote(svc, started.booking_id, [day_one.id])
    assert [(q.percent, q.refund_cents) for _, q in quote] == [(50, day_one.price_cents // 2)]
    result = bk.cancel_booking(svc, started.booking_id, actor="frontdesk", leg_ids=[day_one.id])
    assert result.refund_cents == day_one.price_cents // 2
    assert [leg.state for leg in legs(svc, started.booking_id)] == ["CANCELLED", "CONFIRMED", "CONFIRMED"]
    assert booking(svc, started.booking_id).status == "PARTLY_CANCELLED"
    assert len(live_events(svc, started.reference)) == 2
    with pytest.raises(InvalidState):
        bk.cancel_booking(svc, started.booking_id, actor="frontdesk", leg_ids=[day_one.id])


def test_policy_snapshot_is_used_not_todays_settings(make_services: Any, booking_request: Any) -> None:
    svc = make_services()
    started = bk.start_booking(svc, booking_request(), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    stricter = make_services(data_dir=svc.settings.data_dir, refund_bands=[(168, 100), (0, 0)])
    stricter.clock = svc.clock
    ((_, q),) = bk.cancellation_quote(stricter, started.booking_id)
    assert q.percent == 100  # sold under 48 h / 100 %, cancelled ~48 h ahead


def test_cancel_whose_event_delete_fails_reports_the_orphan(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    svc.calendar.faults.fail("delete_event")
    result = bk.cancel_booking(svc, started.booking_id, actor="frontdesk")
    assert result.refund_cents == started.amount_cents
    assert result.problems and "could not be deleted" in result.problems[0]
    assert len(live_events(svc, started.reference)) == 1
    assert "booking.event.delete_failed" in actions(svc, started.booking_id)


def test_refund_failure_cancels_nothing(svc: Any, booking_request: Any) -> None:
    from services.core.errors import GatewayError

    started = bk.start_booking(svc, booking_request(), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    svc.payments.faults.fail("refund")
    with pytest.raises(GatewayError, match="nothing was cancelled"):
        bk.cancel_booking(svc, started.booking_id, actor="frontdesk")
    assert booking(svc, started.booking_id).status == "CONFIRMED"
    assert len(live_events(svc, started.reference)) == 1
    assert bk.cancel_booking(svc, started.booking_id, actor="frontdesk").refund_cents == started.amount_cents


def test_cancelling_an_unpaid_booking_releases_the_hold(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk")
    assert svc.payments.retrieve_payment_intent(started.payment_intent)["status"] == "canceled"
    assert booking(svc, started.booking_id).status == "CANCELLED"


# ------------------------------------------------------------------------------------------- lifecycle


def test_days_move_to_in_progress_and_completed(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS[:2]), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    first = legs(svc, started.booking_id)[0]
    svc.clock.at = first.starts_at + timedelta(minutes=5)
    assert bk.advance_legs(svc) == 1
    assert [leg.state for leg in legs(svc, started.booking_id)] == ["IN_PROGRESS", "CONFIRMED"]
    svc.clock.at = legs(svc, started.booking_id)[1].ends_at
    assert bk.advance_legs(svc) == 2
    assert booking(svc, started.booking_id).status == "COMPLETED"


def test_find_booking_by_reference_pi_or_id(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    assert bk.find_booking_id(svc, started.reference.lower()) == started.booking_id
    assert bk.find_booking_id(svc, started.payment_intent) == started.booking_id
    assert bk.find_booking_id(svc, str(started.booking_id)) == started.booking_id


def test_every_email_is_in_the_outbox(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    svc.mail.faults.fail("send")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    with svc.session() as s:
        row = s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == started.booking_id)).one()
    assert (row.kind, row.status, row.attempts) == ("confirmation", "failed", 1)
    assert booking(svc, started.booking_id).confirmation_sent_at is None


def test_slot_taken_is_a_not_available(svc: Any) -> None:
    assert issubclass(SlotTaken, NotAvailable)


def test_search_lists_upcoming_bookings_soonest_first_then_the_past(make_services: Any, booking_request: Any) -> None:
    from services.booking.queries import search_bookings

    svc = make_services(hold_limit_per_email=3)

    later = bk.start_booking(svc, booking_request(dates=[date(2026, 3, 20)]), actor="t")
    soon = bk.start_booking(svc, booking_request(dates=[date(2026, 3, 5)]), actor="t")
    past = bk.start_booking(svc, booking_request(dates=[date(2026, 3, 9)]), actor="t")
    svc.clock.at = svc.clock.at + timedelta(days=10)  # now Thu 12 Mar: the 9 Mar booking is past
    rows = search_bookings(svc, text="ava@example.org")
    assert [r["reference"] for r in rows] == [later.reference, past.reference, soon.reference]


def test_confirm_after_a_crash_past_the_events_finishes_once(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.notify import outbox

    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS), actor="customer")
    svc.payments.confirm_payment_intent(started.payment_intent)
    real_queue = outbox.queue

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("process killed")

    monkeypatch.setattr(outbox, "queue", crash)
    with pytest.raises(RuntimeError):
        bk.confirm_payment(svc, started.payment_intent)
    assert booking(svc, started.booking_id).status == "AWAITING_PAYMENT"  # the final step was rolled back
    monkeypatch.setattr(outbox, "queue", real_queue)
    assert bk.confirm_payment(svc, started.payment_intent).outcome == "confirmed"
    assert len(live_events(svc, started.reference)) == 3
    with svc.session() as s:
        from models.tables import ExternalRef

        refs = list(
            s.exec(select(ExternalRef).where(ExternalRef.booking_id == started.booking_id, ExternalRef.kind == "event"))
        )
    assert len(refs) == 3


def test_confirmation_email_has_html_and_the_days_as_an_ics(svc: Any, booking_request: Any) -> None:
    from icalendar import Calendar

    from services.gateways.sandbox_mail import attachment_bytes

    started = bk.start_booking(svc, booking_request(dates=THREE_DAYS), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    (mail,) = svc.mail.messages(booking_id=started.booking_id)
    assert "Ava Nguyen" in mail["html"] and started.reference in mail["html"]
    (ics,) = mail["attachments"]
    assert ics["filename"].endswith(".ics") and ics["mime"].startswith("text/calendar")
    events = Calendar.from_ical(attachment_bytes(ics)).walk("VEVENT")
    assert sorted(e.decoded("dtstart").date() for e in events) == list(THREE_DAYS)


def test_the_pages_pick_days_by_the_one_closed_days_rule(svc: Any) -> None:
    from services.booking import availability

    thursday, good_friday, monday = date(2026, 4, 2), date(2026, 4, 3), date(2026, 4, 6)
    assert availability.closed_reasons(svc, good_friday) == ["Statutory holiday (Good Friday)"]
    # Three days from Thursday: the holiday and the weekend are skipped; a closed first day stays, for the quote.
    assert availability.open_days_from(svc, thursday, 3) == [thursday, monday, monday + timedelta(days=1)]
    assert availability.open_days_from(svc, good_friday, 2) == [good_friday, monday]
    assert availability.next_open_day(svc, good_friday) == monday
    assert availability.next_open_day(svc, monday - timedelta(days=1), step=-1) == thursday
    # A week's timetable keeps the holiday (shown closed) but not the weekend.
    assert availability.week_of(svc, good_friday) == [date(2026, 3, 30) + timedelta(days=i) for i in range(5)]
    times = availability.slot_times(svc)
    assert (times[0], times[1], times[-1]) == (time(8, 0), time(8, 15), time(17, 0))


def test_a_bookings_detail_says_what_is_out_of_step(svc: Any, booking_request: Any) -> None:
    from services.booking.queries import booking_detail

    started = bk.start_booking(svc, booking_request(channel="phone"), actor="frontdesk@sandbox")
    unpaid = booking_detail(svc, started.booking_id)
    assert unpaid.awaiting_payment and unpaid.cancellable and unpaid.active_days == 0
    assert [unpaid.calendar_state(leg) for leg in unpaid.legs] == ["none"] * len(unpaid.legs)
    bk.sandbox_pay(svc, started.booking_id, actor="frontdesk@sandbox")
    paid = booking_detail(svc, started.booking_id)
    assert paid.cancellable and not paid.awaiting_payment and paid.active_days == len(paid.legs)
    assert [paid.calendar_state(leg) for leg in paid.legs] == ["on_calendar"] * len(paid.legs)
    assert paid.calendar_wrong == [] and not paid.refunds_disagree and paid.kept_after_failure_cents == 0
    assert paid.received_cents == paid.booking.amount_cents
    leg = paid.legs[0]
    assert leg.event_id and leg.id is not None
    svc.calendar.delete_event(leg.calendar_id, leg.event_id)  # someone deletes the event in Google Calendar
    assert booking_detail(svc, started.booking_id).calendar_wrong == [leg]


# ---- issue 13: input that used to end in a 500 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "problem"),
    [
        (time(10, 0, 59), "Start time must be whole minutes (HH:MM), without seconds"),
        (time(10, tzinfo=timezone(timedelta(hours=5))), "Start time must be the venue's local time"),
    ],
)
def test_a_start_off_the_minute_or_with_an_offset_is_a_validation_error(
    make_services: Any, db_url: str, booking_request: Any, start: time, problem: str
) -> None:
    svc = make_services(db_url)
    req = booking_request(start=start)
    with pytest.raises(ValidationError) as err:
        bk.start_booking(svc, req, actor="customer")
    assert err.value.problems[0].startswith(problem)
    assert bk.problems_for(svc, req)[0].startswith(problem)  # the form's check says it once, no TypeError
    assert bk.quote(svc, req).reasons[0].startswith(problem)


@pytest.mark.parametrize("day", [date(9999, 12, 31), date(1, 1, 1)])
def test_a_far_date_is_refused_in_words(make_services: Any, db_url: str, booking_request: Any, day: date) -> None:
    svc = make_services(db_url)
    with pytest.raises(NotAvailable, match=r"more than 60 days ahead|already passed"):
        bk.start_booking(svc, booking_request(dates=[day]), actor="customer")


def test_availability_shows_days_outside_the_booking_window_closed(svc: Any) -> None:
    from services.booking.availability import availability

    # Now: Mon 2 Mar 09:00; 24 h notice, 60 days ahead.
    days = availability(svc, "boardroom", date(2026, 3, 2), date(2026, 5, 4)).days
    by_day = {d.date: d for d in days}
    assert by_day[date(2026, 3, 2)].closed and by_day[date(2026, 3, 2)].free == []
    assert by_day[date(2026, 3, 2)].reasons == ["Within the 24-hour notice or in the past"]
    assert not by_day[date(2026, 3, 4)].closed
    assert by_day[date(2026, 5, 4)].reasons == ["More than 60 days ahead"]
    far = availability(svc, "boardroom", date(9999, 12, 25), date(9999, 12, 31)).days  # never an OverflowError
    assert [d.closed for d in far] == [True] * 7
    assert availability(svc, "boardroom", date(1, 1, 1), date(1, 1, 2)).days[0].closed
