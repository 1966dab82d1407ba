"""One-click remediation on sandbox gateways: each incident is made through the booking service with injected
faults, found by sync + reconcile, fixed, and the next sync + reconcile shows it resolved with nothing new."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from sqlmodel import select

from models.tables import AuditLog, Booking, BookingLeg, EmailOutbox, ExternalRef, Finding, RefundRecord
from services import booking as bk
from services.ops import demo
from services.reconciliation import findings, probes, reconcile, remediate, sync

ACTOR = "lena@venue.example"
WED = date(2026, 3, 4)
NEXT_MON = date(2026, 3, 9)
GOOD_FRIDAY = date(2026, 4, 3)
BOARDROOM = "boardroom@group.calendar.google.com"
SONIC_EXTRAS = {"show_name": "Night Shift", "set_choice": "Podcast table"}


# ------------------------------------------------------------------------------------------- helpers


def checks(svc: Any) -> dict[str, Finding]:
    """Sync + reconcile, as the dashboard does after a fix: the open findings by key."""
    sync.sync(svc)
    reconcile.reconcile(svc)
    return {f.key: f for f in findings.open_findings(svc)}


def only(found: dict[str, Finding], code: str) -> Finding:
    matching = [f for f in found.values() if f.code == code]
    assert len(matching) == 1, f"expected one {code}, open: {sorted(found)}"
    return matching[0]


def world(svc: Any) -> tuple[list[str], list[tuple[str, str]], int]:
    """What a second click must not change: Stripe's refunds, every live event, every email sent."""
    refunds = sorted(r["id"] for r in svc.payments.list_refunds()["data"])
    events = sorted(
        (room.calendar_id, e["id"])
        for room in svc.catalogue.rooms
        for e in svc.calendar.list_events(room.calendar_id)["items"]
        if e.get("status") != "cancelled"
    )
    return refunds, events, len(svc.mail.messages(limit=1000))


def fix_clears(svc: Any, code: str, action: str, **kwargs: Any) -> remediate.FixResult:
    """Run the fix on the one open finding of `code`; a second click finds nothing to do and changes nothing; the
    next sync + reconcile resolves the finding and opens nothing new."""
    before = checks(svc)
    target = only(before, code)
    assert target.id is not None
    result = remediate.run_action(svc, target.id, action, actor=ACTOR, **kwargs)
    assert result.ok, result.message
    assert result.changed and result.action == action and result.finding_id == target.id
    snapshot = world(svc)
    again = remediate.run_action(svc, target.id, action, actor=ACTOR, **kwargs)
    assert not again.ok and not again.changed
    assert "nothing to do" in again.message.lower(), again.message
    assert world(svc) == snapshot
    after = checks(svc)
    assert target.key not in after
    assert set(after) <= set(before) - {target.key}, f"new findings: {set(after) - set(before)}"
    assert findings.get_finding(svc, target.id).status == "resolved"
    return result


def booking_of(svc: Any, booking_id: int) -> tuple[Booking, list[BookingLeg]]:
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(BookingLeg.day)))
    return b, legs


def live_events(svc: Any, reference: str, calendar_id: str = BOARDROOM) -> list[dict]:
    items = svc.calendar.list_events(calendar_id, private_property=f"booking_id={reference}")["items"]
    return [e for e in items if e.get("status") != "cancelled"]


def charge(svc: Any, pi: str) -> dict:
    return svc.payments.retrieve_payment_intent(pi)["latest_charge"] or {}


def audit_rows(svc: Any, booking_id: int) -> list[AuditLog]:
    with svc.session() as s:
        return list(s.exec(select(AuditLog).where(AuditLog.booking_id == booking_id).order_by(AuditLog.id)))


def emails(svc: Any, booking_id: int) -> list[EmailOutbox]:
    with svc.session() as s:
        return list(s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == booking_id).order_by(EmailOutbox.id)))


def venue_time(svc: Any, day: date, at: time) -> str:
    return datetime.combine(day, at, tzinfo=svc.settings.tz).isoformat()


def manual_event(svc: Any, day: date, start: time, end: time, calendar: str = BOARDROOM) -> str:
    made = svc.calendar.insert_event(
        calendar,
        {
            "summary": "Staff meeting",
            "start": {"dateTime": venue_time(svc, day, start)},
            "end": {"dateTime": venue_time(svc, day, end)},
        },
    )
    return str(made["id"])


def confirmed(svc: Any, booking_request: Any, **kw: Any) -> bk.StartResult:
    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    return started


def paid_no_event(svc: Any, booking_request: Any, **kw: Any) -> bk.StartResult:
    """Seed incident #2 at its worst: the event insert failed and so did the automatic refund."""
    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    svc.calendar.faults.fail("insert_event")
    svc.payments.faults.fail("refund")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "refund_failed"
    svc.calendar.faults.clear()
    svc.payments.faults.clear()
    assert booking_of(svc, started.booking_id)[0].status == "FAILED"
    return started


def partial_multiday(svc: Any, booking_request: Any) -> bk.StartResult:
    """Seed incident #4's worst case: day 3's event failed, then the clean-up and the refund failed too."""
    started = bk.start_booking(
        svc, booking_request(dates=(NEXT_MON, date(2026, 3, 10), date(2026, 3, 11))), actor="customer"
    )
    svc.calendar.faults.fail("insert_event", nth=3)
    svc.calendar.faults.fail("delete_event", times=5)
    svc.payments.faults.fail("refund")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    svc.calendar.faults.clear()
    svc.payments.faults.clear()
    assert len(live_events(svc, started.reference)) == 2
    return started


def stale_payment(svc: Any, booking_request: Any) -> bk.StartResult:
    """Paid in Stripe, webhook never arrived."""
    started = bk.start_booking(svc, booking_request(channel="phone"), actor="frontdesk")
    svc.payments.confirm_payment_intent(started.payment_intent)
    svc.clock.advance(minutes=20)
    return started


def legacy_payment(svc: Any, *, amount: int = 9000, day: date = WED, key: str = "legacy-1") -> str:
    """A payment the old Worker took: metadata only, no booking in Room Desk, no event."""
    pi = svc.payments.create_payment_intent(
        amount_cents=amount,
        currency="cad",
        metadata={
            "room": "boardroom",
            "booking_dates": day.isoformat(),
            "booking_time": "10:00-12:00",
            "customer_name": "Old System Customer",
            "customer_email": "old@example.org",
            "customer_phone": "604-555-0199",
        },
        idempotency_key=key,
    )
    svc.payments.confirm_payment_intent(pi["id"])
    return str(pi["id"])


# ------------------------------------------------------------------------------------------- create_events


def test_create_events_confirms_a_paid_booking_that_has_no_event(svc: Any, booking_request: Any) -> None:
    started = paid_no_event(svc, booking_request)
    target = only(checks(svc), "paid_no_event")
    text = remediate.describe_action(svc, target.id, "create_events")
    assert "Wed 4 Mar" in text and "$90.00" in text and "ava@example.org" in text

    result = fix_clears(svc, "paid_no_event", "create_events")

    assert result.message == "Created 1 event: Wed 4 Mar; confirmation emailed to ava@example.org"
    b, legs = booking_of(svc, started.booking_id)
    assert b.status == "CONFIRMED" and [leg.state for leg in legs] == ["CONFIRMED"]
    assert [e["id"] for e in live_events(svc, started.reference)] == [legs[0].event_id]
    assert legs[0].event_id == bk.event_id_for(started.reference, WED)
    assert b.confirmation_sent_at is not None and charge(svc, started.payment_intent)["amount_refunded"] == 0
    # The slot is held again: the next customer is refused it.
    assert not bk.quote(svc, booking_request()).available


def test_create_events_fills_the_missing_day_of_a_multiday_booking(svc: Any, booking_request: Any) -> None:
    started = partial_multiday(svc, booking_request)

    result = fix_clears(svc, "partial_multiday", "create_events")

    assert result.message.startswith("Created 1 event: Wed 11 Mar")
    b, legs = booking_of(svc, started.booking_id)
    assert b.status == "CONFIRMED" and {leg.state for leg in legs} == {"CONFIRMED"}
    assert len(live_events(svc, started.reference)) == 3


def test_create_events_refuses_when_the_slot_was_taken_meanwhile_and_offers_a_refund(
    svc: Any, booking_request: Any
) -> None:
    started = paid_no_event(svc, booking_request)
    target = only(checks(svc), "paid_no_event")
    manual_event(svc, WED, time(11), time(13))  # staff took the room after the finding was seen
    before = world(svc)

    result = remediate.run_action(svc, target.id, "create_events", actor=ACTOR)

    assert not result.ok and result.offer == "refund" and not result.changed
    assert (
        "slot is taken now" in result.message and "Wed 4 Mar: overlaps another booking (11:00–13:00)" in result.message
    )
    assert world(svc) == before
    assert booking_of(svc, started.booking_id)[0].status == "FAILED"
    # The offered fix works.
    refunded = remediate.run_action(svc, target.id, result.offer, actor=ACTOR, reason="Room taken by staff")
    assert refunded.ok, refunded.message
    assert charge(svc, started.payment_intent)["refunded"]


def test_create_events_respects_a_hold_taken_in_room_desk_meanwhile(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = paid_no_event(svc, booking_request)
    target = only(checks(svc), "paid_no_event")
    # The failed booking released its slot; a phone customer holds it now (nothing on the calendar yet).
    bk.start_booking(svc, booking_request(customer_email="next@example.org", channel="phone"), actor="frontdesk")

    held = remediate.run_action(svc, target.id, "create_events", actor=ACTOR)
    assert not held.ok and held.offer == "refund" and "overlaps a held booking" in held.message

    # Even if the hold lands between the check and the claim, the database refuses the second claim.
    monkeypatch.setattr(probes, "slot_conflicts", lambda *a, **k: [])
    raced = remediate.run_action(svc, target.id, "create_events", actor=ACTOR)
    assert not raced.ok and raced.offer == "refund" and "another booking holds it" in raced.message
    assert live_events(svc, started.reference) == []
    assert booking_of(svc, started.booking_id)[0].status == "FAILED"


def test_create_events_adopts_a_payment_the_old_system_made(svc: Any) -> None:
    pi = legacy_payment(svc)
    target = only(checks(svc), "paid_no_event")
    assert target.booking_id is None
    assert "Adopt payment" in remediate.describe_action(svc, target.id, "create_events")

    fix_clears(svc, "paid_no_event", "create_events")

    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.payment_intent_id == pi)).one()
        refs = list(s.exec(select(ExternalRef).where(ExternalRef.booking_id == b.id)))
    b, legs = booking_of(svc, b.id)
    assert (b.status, b.customer_email, b.start_time, b.end_time) == ("CONFIRMED", "old@example.org", "10:00", "12:00")
    assert b.amount_cents == 9000 and b.pricing_snapshot["total_cents"] == 9000
    assert b.policy_snapshot["version"] == svc.policy.refund_policy_version
    assert [(leg.day, leg.state, leg.price_cents) for leg in legs] == [(WED, "CONFIRMED", 9000)]
    assert legs[0].event_id == bk.event_id_for(b.reference, WED)
    assert {(r.kind, r.external_id) for r in refs} == {
        ("payment_intent", pi),
        ("event", f"{BOARDROOM}/{legs[0].event_id}"),
    }
    assert b.confirmation_sent_at is not None
    assert [r.action for r in audit_rows(svc, b.id)][:1] == ["booking.adopted"]
    # The booking service now knows the payment: a late webhook changes nothing.
    assert bk.confirm_payment(svc, pi).outcome == "already_done"


def test_create_events_refuses_once_stripe_shows_a_refund(svc: Any, booking_request: Any) -> None:
    started = paid_no_event(svc, booking_request)
    target = only(checks(svc), "paid_no_event")
    svc.payments.refund(started.payment_intent, amount_cents=9000, reason="by hand", idempotency_key="dash-1")

    result = remediate.run_action(svc, target.id, "create_events", actor=ACTOR)

    assert not result.ok and result.message == "Already refunded in Stripe — nothing to do"
    assert live_events(svc, started.reference) == []


def test_a_calendar_failure_creates_nothing_twice_and_a_retry_finishes(svc: Any, booking_request: Any) -> None:
    started = partial_multiday(svc, booking_request)
    target = only(checks(svc), "partial_multiday")
    svc.calendar.faults.fail("insert_event")

    failed = remediate.run_action(svc, target.id, "create_events", actor=ACTOR)

    assert not failed.ok and "Google Calendar failed on Wed 11 Mar" in failed.message
    assert booking_of(svc, started.booking_id)[0].status == "FAILED"
    retried = remediate.run_action(svc, target.id, "create_events", actor=ACTOR)
    assert retried.ok, retried.message
    assert len(live_events(svc, started.reference)) == 3


# ------------------------------------------------------------------------------------------- refund


def test_refund_returns_a_paid_booking_with_no_event(svc: Any, booking_request: Any) -> None:
    started = paid_no_event(svc, booking_request)

    result = fix_clears(svc, "paid_no_event", "refund", reason="Calendar was down; customer rebooks by phone")

    assert result.message == f"Refunded $90.00 for {started.reference}; emailed ava@example.org"
    assert charge(svc, started.payment_intent)["refunded"]
    with svc.session() as s:
        record = s.exec(select(RefundRecord).where(RefundRecord.booking_id == started.booking_id)).one()
    assert (record.origin, record.amount_cents, record.actor) == ("remediation", 9000, ACTOR)
    assert record.reason == "Calendar was down; customer rebooks by phone"
    b, legs = booking_of(svc, started.booking_id)
    assert b.status == "FAILED" and legs[0].refunded_cents == 9000
    sent = [m for m in svc.mail.messages(started.booking_id) if m["kind"] == "refund"]
    assert len(sent) == 1 and "$90.00" in sent[0]["text"]


def test_refund_refuses_when_already_refunded_in_stripe_between_detection_and_click(
    svc: Any, booking_request: Any
) -> None:
    started = paid_no_event(svc, booking_request)
    target = only(checks(svc), "paid_no_event")
    svc.payments.refund(started.payment_intent, amount_cents=9000, reason="by hand", idempotency_key="dash-1")
    before = world(svc)

    result = remediate.run_action(svc, target.id, "refund", actor=ACTOR, reason="x")

    assert (result.ok, result.changed, result.message) == (False, False, "Already refunded in Stripe — nothing to do")
    assert world(svc) == before
    assert "Already refunded in Stripe" in remediate.describe_action(svc, target.id, "refund")


def test_refund_by_policy_refunds_the_cancellation_quote(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request, dates=(NEXT_MON,))
    svc.calendar.delete_event(BOARDROOM, booking_of(svc, started.booking_id)[1][0].event_id)  # deleted by hand
    target = only(checks(svc), "paid_no_event")
    svc.clock.at = datetime(2026, 3, 8, 11, 0, tzinfo=UTC)  # 30 h before Mon 10:00 PDT: the 50 % band

    text = remediate.describe_action(svc, target.id, "refund")
    assert "Refund $90.00" in text and "by the cancellation policy: refund $45.00" in text
    result = fix_clears(svc, "paid_no_event", "refund", amount="policy", reason="Customer agreed")

    assert result.message.startswith(f"Refunded $45.00 for {started.reference}")
    assert charge(svc, started.payment_intent)["amount_refunded"] == 4500
    b, legs = booking_of(svc, started.booking_id)
    assert (b.status, legs[0].state, legs[0].refunded_cents) == ("CANCELLED", "CANCELLED", 4500)
    assert len(svc.mail.messages(started.booking_id, kind="cancellation")) == 1


def test_refund_a_stale_payment_instead_of_booking_it(svc: Any, booking_request: Any) -> None:
    started = stale_payment(svc, booking_request)

    fix_clears(svc, "stale_payment", "refund", reason="Customer changed their mind")

    b, legs = booking_of(svc, started.booking_id)
    assert (b.status, legs[0].state) == ("FAILED", "FAILED")
    assert charge(svc, started.payment_intent)["refunded"] and live_events(svc, started.reference) == []
    assert bk.quote(svc, booking_request()).available  # the slot is free again


def test_refund_the_overcharge_of_a_wrong_amount_keeps_the_booking(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request)
    with svc.session() as s:  # the price the booking was sold at was $75.00: $15.00 too much was charged
        b = s.get(Booking, started.booking_id)
        b.pricing_snapshot = {**b.pricing_snapshot, "total_cents": 7500}
    target = only(checks(svc), "amount_mismatch")
    assert "just the overcharge: refund $15.00" in remediate.describe_action(svc, target.id, "refund")

    result = remediate.run_action(svc, target.id, "refund", actor=ACTOR, amount="difference", reason="Overcharged")

    assert result.ok and result.message.startswith(f"Refunded $15.00 for {started.reference}")
    assert charge(svc, started.payment_intent)["amount_refunded"] == 1500
    assert booking_of(svc, started.booking_id)[0].status == "CONFIRMED"
    assert len(live_events(svc, started.reference)) == 1
    again = remediate.run_action(svc, target.id, "refund", actor=ACTOR, amount="difference")
    assert not again.ok and "nothing to do" in again.message.lower()


def test_amount_mismatch_clears_after_refunding_the_overcharge(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request)
    with svc.session() as s:
        b = s.get(Booking, started.booking_id)
        b.pricing_snapshot = {**b.pricing_snapshot, "total_cents": 7500}
    fix_clears(svc, "amount_mismatch", "refund", amount="difference")


# ------------------------------------------------------------------------------------------- cancel


def test_cancel_a_failed_multiday_booking_refunds_it_all_and_deletes_its_events(svc: Any, booking_request: Any) -> None:
    started = partial_multiday(svc, booking_request)
    target = only(checks(svc), "partial_multiday")
    assert "refund all of it, delete its 2 events" in remediate.describe_action(svc, target.id, "cancel")

    fix_clears(svc, "partial_multiday", "cancel", reason="Clean-up failed: refunded by hand")

    assert charge(svc, started.payment_intent)["refunded"] and live_events(svc, started.reference) == []
    assert booking_of(svc, started.booking_id)[0].status == "FAILED"


def test_cancel_a_confirmed_multiday_booking_missing_a_day(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request, dates=(NEXT_MON, date(2026, 3, 10)))
    svc.calendar.delete_event(BOARDROOM, booking_of(svc, started.booking_id)[1][1].event_id)

    result = fix_clears(svc, "partial_multiday", "cancel", reason="Customer prefers to rebook")

    assert (
        result.message
        == f"Cancelled {started.reference} on Mon 9 Mar, Tue 10 Mar; refunded $180.00; the customer was emailed"
    )
    assert booking_of(svc, started.booking_id)[0].status == "CANCELLED"
    assert live_events(svc, started.reference) == []


def test_cancel_resolves_a_double_booking(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request, dates=(NEXT_MON,))
    manual_event(svc, NEXT_MON, time(11), time(12))
    target = only(checks(svc), "double_booking")
    assert f"Cancel {started.reference} (Boardroom, Mon 9 Mar 10:00–12:00)" in remediate.describe_action(
        svc, target.id, "cancel"
    )

    fix_clears(svc, "double_booking", "cancel", reason="Board meeting has the room")

    assert booking_of(svc, started.booking_id)[0].status == "CANCELLED"
    assert charge(svc, started.payment_intent)["refunded"]


def test_a_clash_staff_caused_by_hand_deletes_their_event_and_the_customer_keeps_the_room(
    svc: Any, booking_request: Any
) -> None:
    started = confirmed(svc, booking_request, dates=(NEXT_MON,))
    manual_event(svc, NEXT_MON, time(11), time(12))
    target = only(checks(svc), "double_booking")
    assert target.actions[0] == "delete_hand_added"  # the fix offered first harms no paying customer
    assert "the paying customer keeps the room" in remediate.describe_action(svc, target.id, "delete_hand_added")
    refused = remediate.run_action(svc, target.id, "delete_hand_added", actor=ACTOR)
    assert not refused.ok and "Write a note" in refused.message

    result = fix_clears(svc, "double_booking", "delete_hand_added", note="Board meeting moved to the Quiet Room")

    assert result.message.startswith("Deleted 1 hand-added event: “Staff meeting”")
    b, _ = booking_of(svc, started.booking_id)
    assert b.status == "CONFIRMED" and not charge(svc, started.payment_intent)["refunded"]
    assert len(live_events(svc, started.reference)) == 1


def test_two_paid_bookings_clashing_offer_a_cancellation_not_a_deletion(svc: Any, booking_request: Any) -> None:
    first = confirmed(svc, booking_request, dates=(NEXT_MON,))
    later = confirmed(svc, booking_request, dates=(NEXT_MON,), start=time(13), end=time(15), customer_email="b@x.org")
    moved = booking_of(svc, later.booking_id)[1][0].event_id
    start, end = venue_time(svc, NEXT_MON, time(11)), venue_time(svc, NEXT_MON, time(13))
    svc.calendar.patch_event(BOARDROOM, moved, {"start": {"dateTime": start}, "end": {"dateTime": end}})
    target = only(checks(svc), "double_booking")
    refused = remediate.run_action(svc, target.id, "delete_hand_added", actor=ACTOR, note="x")
    assert not refused.ok and "Both events belong to paid bookings" in refused.message and refused.offer == "cancel"
    assert len(live_events(svc, first.reference)) == 1 and len(live_events(svc, later.reference)) == 1


def test_cancel_picks_the_later_booking_when_two_bookings_overlap(svc: Any, booking_request: Any) -> None:
    first = confirmed(svc, booking_request, dates=(NEXT_MON,))
    svc.clock.advance(minutes=5)
    later = confirmed(svc, booking_request, dates=(NEXT_MON,), start=time(13), end=time(15), customer_email="b@x.org")
    moved = booking_of(svc, later.booking_id)[1][0].event_id  # staff dragged it onto the first booking
    start, end = venue_time(svc, NEXT_MON, time(11)), venue_time(svc, NEXT_MON, time(13))
    svc.calendar.patch_event(BOARDROOM, moved, {"start": {"dateTime": start}, "end": {"dateTime": end}})

    fix_clears(svc, "double_booking", "cancel", reason="Moved by mistake; customer rebooks")

    assert booking_of(svc, later.booking_id)[0].status == "CANCELLED"
    assert booking_of(svc, first.booking_id)[0].status == "CONFIRMED"


def test_cancel_full_refund_for_a_holiday_pays_back_more_than_the_policy(svc: Any, booking_request: Any) -> None:
    legacy = replace(svc, settings=svc.settings.model_copy(update={"observe_holidays": False}))
    started = bk.start_booking(legacy, booking_request(dates=(GOOD_FRIDAY,)), actor="customer")
    bk.sandbox_pay(legacy, started.booking_id, actor="stripe-webhook")
    svc.clock.at = datetime(2026, 4, 3, 3, 0, tzinfo=UTC)  # Thu 20:00, 14 h before: the policy refunds nothing
    target = only(checks(svc), "holiday_booking")
    assert "refund it in full, $90.00" in remediate.describe_action(svc, target.id, "cancel_full_refund")

    result = fix_clears(svc, "holiday_booking", "cancel_full_refund", reason="Closed for Good Friday")

    assert (
        result.message
        == f"Cancelled Fri 3 Apr; refunded $90.00 for {started.reference}; deleted 1 event; emailed ava@example.org"
    )
    assert charge(svc, started.payment_intent)["refunded"]
    b, legs = booking_of(svc, started.booking_id)
    assert (b.status, legs[0].state, legs[0].refunded_cents) == ("CANCELLED", "CANCELLED", 9000)
    assert len(svc.mail.messages(started.booking_id, kind="cancellation")) == 1


# ------------------------------------------------------------------------------------------- events


def test_delete_an_orphan_event_left_by_a_refunded_cancellation(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request, dates=(NEXT_MON,))
    svc.calendar.faults.fail("delete_event")
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk")
    assert len(live_events(svc, started.reference)) == 1

    fix_clears(svc, "orphan_event", "delete_events")

    assert live_events(svc, started.reference) == []


def test_delete_an_event_left_on_a_cancelled_day_while_the_other_days_stand(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request, dates=(NEXT_MON, date(2026, 3, 10)))
    monday = booking_of(svc, started.booking_id)[1][0]
    svc.calendar.faults.fail("delete_event")
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk", leg_ids=[monday.id])

    fix_clears(svc, "orphan_event", "delete_events")

    (left,) = live_events(svc, started.reference)
    assert left["id"] == booking_of(svc, started.booking_id)[1][1].event_id  # Tuesday's stays
    assert charge(svc, started.payment_intent)["amount_refunded"] == 9000


def test_delete_a_manual_event_needs_a_note_which_is_kept(svc: Any) -> None:
    event_id = manual_event(svc, NEXT_MON, time(9), time(10))
    target = only(checks(svc), "manual_event")
    refused = remediate.run_action(svc, target.id, "delete_events", actor=ACTOR)
    assert not refused.ok and "note" in refused.message

    fix_clears(svc, "manual_event", "delete_events", note="Meeting moved to the internal calendar")

    assert svc.calendar.get_event(BOARDROOM, event_id)["status"] == "cancelled"
    with svc.session() as s:
        row = s.exec(select(AuditLog).where(AuditLog.action == "booking.event.deleted")).one()
    assert row.actor == ACTOR and row.payload["note"] == "Meeting moved to the internal calendar"


def test_recreate_events_puts_a_moved_event_back_where_it_was_paid_for(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request)
    moved = booking_of(svc, started.booking_id)[1][0].event_id
    svc.calendar.patch_event(
        BOARDROOM,
        moved,
        {"start": {"dateTime": venue_time(svc, WED, time(14))}, "end": {"dateTime": venue_time(svc, WED, time(16))}},
    )
    target = only(checks(svc), "event_mismatch")
    assert "Wed 4 Mar 14:00–16:00" in remediate.describe_action(svc, target.id, "recreate_events")

    fix_clears(svc, "event_mismatch", "recreate_events")

    (event,) = live_events(svc, started.reference)
    assert event["id"] == bk.event_id_for(started.reference, WED, 1) != moved
    assert event["start"]["dateTime"] == venue_time(svc, WED, time(10))
    assert booking_of(svc, started.booking_id)[1][0].event_id == event["id"]


def test_recreate_events_adopts_an_old_payment_whose_event_is_at_the_wrong_time(svc: Any) -> None:
    pi = legacy_payment(svc)
    old = svc.calendar.insert_event(  # the old Worker's event: no private properties, the payment in the text
        BOARDROOM,
        {
            "summary": "Old System Customer",
            "description": f"Paid: {pi}\nold@example.org",
            "start": {"dateTime": venue_time(svc, WED, time(13))},
            "end": {"dateTime": venue_time(svc, WED, time(15))},
        },
    )
    target = only(checks(svc), "event_mismatch")
    assert target.booking_id is None

    fix_clears(svc, "event_mismatch", "recreate_events")

    assert svc.calendar.get_event(BOARDROOM, old["id"])["status"] == "cancelled"
    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.payment_intent_id == pi)).one()
    (event,) = live_events(svc, b.reference)
    assert event["start"]["dateTime"] == venue_time(svc, WED, time(10))
    assert b.status == "CONFIRMED" and b.confirmation_sent_at is not None


# ------------------------------------------------------------------------------------------- payment and email


def test_confirm_a_payment_whose_webhook_never_came(svc: Any, booking_request: Any) -> None:
    started = stale_payment(svc, booking_request)

    result = fix_clears(svc, "stale_payment", "confirm_payment")

    assert (
        result.message
        == f"Confirmed {started.reference}: created 1 event (Wed 4 Mar); confirmation emailed to ava@example.org"
    )
    assert booking_of(svc, started.booking_id)[0].status == "CONFIRMED"
    assert [r.actor for r in audit_rows(svc, started.booking_id) if r.action == "booking.event.created"] == [ACTOR]


def test_send_the_refund_notice_the_mail_server_lost(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    manual_event(svc, WED, time(9), time(11))  # Gate 2 conflict → the safety net refunds
    svc.mail.faults.fail("send")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "auto_refunded"

    result = fix_clears(svc, "refund_no_event", "send_refund_notice")

    assert result.message == "Emailed ava@example.org about the $90.00 refund"
    assert [(e.kind, e.status) for e in emails(svc, started.booking_id)] == [("auto_refund", "sent")]


def test_tell_the_customer_about_a_refund_made_in_the_stripe_dashboard(svc: Any, booking_request: Any) -> None:
    started = paid_no_event(svc, booking_request)
    svc.payments.refund(started.payment_intent, amount_cents=9000, reason="by hand", idempotency_key="dash-1")

    result = fix_clears(svc, "refund_no_event", "send_refund_notice")

    assert result.message == "Emailed ava@example.org about the $90.00 refund"
    (mail,) = svc.mail.messages(started.booking_id, kind="refund")
    assert "We have refunded $90.00 for booking" in mail["text"]


def test_resend_a_confirmation_that_failed(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send")
    started = confirmed(svc, booking_request)

    result = fix_clears(svc, "missing_confirmation", "resend_confirmation")

    assert result.message == "Confirmation emailed to ava@example.org"
    assert [(e.kind, e.status, e.attempts) for e in emails(svc, started.booking_id)] == [("confirmation", "sent", 2)]


def test_fill_extras_lists_what_is_wrong_then_saves_them_and_updates_the_event(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request, room="sonic-studio", channel="phone")
    target = only(checks(svc), "missing_extras")
    cal = svc.catalogue.room("sonic-studio").calendar_id

    bad = remediate.run_action(
        svc, target.id, "fill_extras", actor=ACTOR, extras={"show_name": "Night Shift", "set_choice": "Rave"}
    )
    assert not bad.ok and bad.message == ("Set choice must be one of: Podcast table, Band rehearsal, Voice-over booth")
    assert booking_of(svc, started.booking_id)[0].extras == {}

    result = fix_clears(svc, "missing_extras", "fill_extras", extras=SONIC_EXTRAS)

    assert result.message == "Saved the extras and updated 1 event (Wed 4 Mar)"
    b, _ = booking_of(svc, started.booking_id)
    assert b.extras == {"show_name": "Night Shift", "set_choice": "Podcast table"}
    (event,) = live_events(svc, started.reference, cal)
    assert "Show name: Night Shift" in event["description"] and "Set choice: Podcast table" in event["description"]


def test_acknowledge_needs_a_note_and_keeps_the_finding_out_of_the_open_list(svc: Any, booking_request: Any) -> None:
    started = confirmed(svc, booking_request)
    svc.payments.open_dispute(started.payment_intent)
    before = checks(svc)
    target = only(before, "dispute_open")
    assert not remediate.run_action(svc, target.id, "acknowledge", actor=ACTOR).ok

    result = remediate.run_action(svc, target.id, "acknowledge", actor=ACTOR, note="Evidence sent on Tuesday")

    assert result.ok and result.message == "Acknowledged: Evidence sent on Tuesday"
    after = checks(svc)
    assert target.key not in after and set(after) <= set(before)
    row = findings.get_finding(svc, target.id)
    assert (row.status, row.acknowledged_by) == ("acknowledged", ACTOR)
    again = remediate.run_action(svc, target.id, "acknowledge", actor=ACTOR, note="again")
    assert not again.ok and "nothing to do" in again.message.lower()


# ------------------------------------------------------------------------------------------- the contract


def test_refuses_actions_a_finding_does_not_offer_and_unknown_findings(svc: Any) -> None:
    manual_event(svc, NEXT_MON, time(9), time(10))
    target = only(checks(svc), "manual_event")
    wrong = remediate.run_action(svc, target.id, "refund", actor=ACTOR)
    assert not wrong.ok and wrong.message == "“Refund” is not a fix for this finding"
    assert remediate.run_action(svc, 999, "acknowledge", actor=ACTOR, note="x").message == "No finding #999"
    assert not remediate.run_action(svc, target.id, "delete_events", actor=" ", note="x").ok


def test_every_change_names_the_person_who_clicked(svc: Any, booking_request: Any) -> None:
    started = paid_no_event(svc, booking_request)
    target = only(checks(svc), "paid_no_event")

    remediate.run_action(svc, target.id, "create_events", actor=ACTOR)

    mine = {r.action: r for r in audit_rows(svc, started.booking_id) if r.actor == ACTOR}
    assert {"booking.event.created", "booking.reinstated", "email.confirmation.sent"} <= set(mine)
    fix = mine["remediation.create_events"]
    assert fix.payload["finding"] == target.key and fix.payload["ok"] is True
    assert fix.payment_intent == started.payment_intent


def test_bulk_runs_every_item_and_reports_each_even_when_one_fails(svc: Any, booking_request: Any) -> None:
    svc.mail.faults.fail("send", times=3)
    started = [confirmed(svc, booking_request, room=room) for room in ("boardroom", "union-room", "workshop")]
    ids = [f.id for f in checks(svc).values() if f.code == "missing_confirmation"]
    assert len(ids) == 3
    svc.mail.faults.fail("send", nth=2)  # the second resend fails
    seen: list[tuple[float, str]] = []

    results = remediate.run_bulk(
        svc, [*ids, 999], "resend_confirmation", actor=ACTOR, progress=lambda f, m: seen.append((f, m))
    )

    assert [r.ok for r in results] == [True, False, True, False]
    assert results[1].message == "The confirmation email could not be sent (queued to retry)"
    assert results[3].message == "No finding #999"
    assert [f for f, _ in seen] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert seen[-1][1] == "4 of 4: No finding #999"
    assert sum(booking_of(svc, s.booking_id)[0].confirmation_sent_at is not None for s in started) == 2


def test_the_whole_demo_can_be_cleared(svc: Any) -> None:
    demo.seed_demo(svc)
    found = checks(svc)
    assert {f.code for f in found.values()} >= {
        "stale_payment",
        "paid_no_event",
        "partial_multiday",
        "orphan_event",
        "double_booking",
        "manual_event",
        "holiday_booking",
        "missing_extras",
        "missing_confirmation",
        "dispute_open",
    }
    preferred = {
        "stale_payment": "confirm_payment",
        "paid_no_event": "create_events",
        "partial_multiday": "create_events",
        "orphan_event": "delete_events",
        "double_booking": "delete_hand_added",
        "manual_event": "delete_events",
        "holiday_booking": "cancel_full_refund",
        "missing_extras": "fill_extras",
        "missing_confirmation": "resend_confirmation",
        "refund_no_event": "send_refund_notice",
    }
    kwargs = {"note": "Checked with the customer", "reason": "Demo clean-up", "extras": SONIC_EXTRAS}
    for f in findings.open_findings(svc):
        assert f.id is not None
        result = remediate.run_action(svc, f.id, preferred.get(f.code, "acknowledge"), actor=ACTOR, **kwargs)
        if not result.ok and result.offer:
            result = remediate.run_action(svc, f.id, result.offer, actor=ACTOR, **kwargs)
        # A fix may already have cleared another finding (deleting a manual event ends its double booking).
        assert result.ok or "nothing to do" in result.message.lower(), (f.code, result.message)

    sync.sync(svc)
    report = reconcile.reconcile(svc)

    assert report.open_total == 0 and report.opened == 0, findings.open_findings(svc)
