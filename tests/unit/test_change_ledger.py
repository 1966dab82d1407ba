"""Reconciliation and finance after a booking was changed (services/booking/change.py): a booking paid by more than
one PaymentIntent (its own, then the difference of a change that cost more), refunded on either, whose days, times
or room moved away from what its first payment's metadata says. What staff would notice: no false findings, a missed
change payment found and fixed, a daily close that balances, a receipt and a refunds report that tell it right."""

from __future__ import annotations

from datetime import date, time
from typing import Any

from sqlmodel import select

from models.tables import Amendment, AmendmentState, BookingLeg, Finding, LegState, RefundRecord
from services import booking as bk
from services.booking.amend import Change
from services.finance import reports
from services.finance.close import run_close
from services.finance.receipts import booking_receipt_pdf, refund_receipt_pdf
from services.reconciliation import cycle, findings, remediate
from tests.reliability.invariants import violations
from tests.unit.test_receipts import CARD, pdf_text, shown

TODAY = date(2026, 3, 2)  # the fixed clock: Monday 2 March 2026, 09:00 in Vancouver
MON = date(2026, 3, 16)  # two weeks ahead: changes and cancellations refund in full


def paid(svc: Any, booking_request: Any, **kw: Any) -> bk.StartResult:
    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    return started


def legs_of(svc: Any, booking_id: int) -> list[BookingLeg]:
    with svc.session() as s:
        return bk.booking_legs(s, booking_id)


def open_by_code(svc: Any) -> dict[str, list[Finding]]:
    """Sync + reconcile (one cycle, as the worker runs it); the open findings by code."""
    cycle.run_cycle(svc)
    out: dict[str, list[Finding]] = {}
    for f in findings.open_findings(svc):
        out.setdefault(f.code, []).append(f)
    return out


def dearer_then_cheaper(svc: Any, booking_request: Any) -> tuple[bk.StartResult, str]:
    """Mon 16 Mar 10:00–12:00 ($90), made 10:00–13:00 (+$45, paid separately), then 10:00–12:00 again ($45 back)."""
    mine = paid(svc, booking_request, dates=(MON,))
    waiting = bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    assert waiting.payment_intent_id is not None
    svc.clock.advance(minutes=30)
    assert bk.sandbox_pay_change(svc, mine.booking_id, actor="stripe-webhook").outcome == "change_applied"
    svc.clock.advance(minutes=30)
    back = bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(12))), actor="frontdesk")
    assert (back.outcome, back.net_cents) == ("applied", -4_500)
    return mine, waiting.payment_intent_id


# ------------------------------------------------------------------------------------------ reconciliation


def test_a_booking_changed_dearer_then_cheaper_reconciles_clean(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request, dates=(MON,))
    bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    bk.sandbox_pay_change(svc, mine.booking_id, actor="stripe-webhook")
    # The first payment's metadata still says 10:00–12:00; the event and the booking say 10:00–13:00, and a second
    # PaymentIntent without booking_dates paid the difference: none of that is a mismatch.
    assert open_by_code(svc) == {}
    bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(12))), actor="frontdesk")
    assert open_by_code(svc) == {}
    assert violations(svc) == []


def test_a_date_move_and_a_room_move_reconcile_clean(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request, dates=(MON,))
    (leg,) = legs_of(svc, mine.booking_id)
    moved = bk.change_booking(svc, mine.booking_id, Change(moves={leg.id: date(2026, 3, 17)}), actor="frontdesk")
    assert (moved.outcome, moved.net_cents) == ("applied", 0)
    assert open_by_code(svc) == {}
    to_union = bk.change_booking(svc, mine.booking_id, Change(room="union-room"), actor="frontdesk")
    assert to_union.outcome == "awaiting_payment"
    bk.sandbox_pay_change(svc, mine.booking_id, actor="stripe-webhook")
    assert open_by_code(svc) == {}
    # Back to the cheaper room: the difference goes back on the change's payment and the first one.
    assert bk.change_booking(svc, mine.booking_id, Change(room="boardroom"), actor="frontdesk").net_cents == -3_000
    assert open_by_code(svc) == {}


def test_an_event_left_on_the_old_rooms_calendar_is_still_a_mismatch(svc: Any, booking_request: Any) -> None:
    """The near miss: comparing with the booking's days must still catch an event where the booking no longer is."""
    mine = paid(svc, booking_request, room="union-room", dates=(MON,))
    svc.calendar.faults.fail("delete_event", times=10)
    stalled = bk.change_booking(svc, mine.booking_id, Change(room="boardroom"), actor="frontdesk")
    assert stalled.outcome == "applying"  # the new event is made; the old one could not be deleted
    found = open_by_code(svc)
    (f,) = found["event_mismatch"]
    assert f.payment_intent == mine.payment_intent and f.booking_ref == mine.reference
    assert f.room == "boardroom" and "Boardroom, Mon 16 Mar 10:00–12:00" in f.summary and len(f.event_ids) == 1
    svc.calendar.faults.clear()
    assert bk.expire_change_holds(svc, actor="worker") == {"resumed:applied": 1}
    assert open_by_code(svc) == {}


def test_a_change_paid_but_never_processed_is_found_and_its_fix_makes_the_change(
    svc: Any, booking_request: Any
) -> None:
    mine = paid(svc, booking_request, dates=(MON,))
    waiting = bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    pi = waiting.payment_intent_id
    assert pi is not None
    svc.payments.confirm_payment_intent(pi)  # the customer paid; the webhook never came
    svc.clock.advance(minutes=5)
    assert open_by_code(svc) == {}  # the webhook may still come
    svc.clock.advance(minutes=15)
    found = open_by_code(svc)
    assert list(found) == ["stale_payment"]
    (f,) = found["stale_payment"]
    assert (f.payment_intent, f.booking_ref, f.amount_cents) == (pi, mine.reference, 4_500)
    assert "(change 1)" in f.summary and "never processed" in f.summary
    assert f.details["change"] == 1

    refused = remediate.run_action(svc, f.id or 0, "refund", actor="manager@test")
    assert not refused.ok and refused.offer == "confirm_payment" and "payment of change 1" in refused.message
    assert "10:00–13:00" in remediate.describe_action(svc, f.id or 0, "confirm_payment")

    fixed = remediate.run_action(svc, f.id or 0, "confirm_payment", actor="manager@test")

    assert fixed.ok and fixed.changed, fixed.message
    assert f"Made change 1 of {mine.reference}" in fixed.message
    tz = svc.settings.tz
    (leg,) = legs_of(svc, mine.booking_id)
    assert (leg.day, f"{leg.ends_at.astimezone(tz):%H:%M}", leg.price_cents) == (MON, "13:00", 13_500)
    with svc.session() as s:
        (a,) = s.exec(select(Amendment)).all()
    assert a.state == AmendmentState.APPLIED and a.paid_at is not None
    assert open_by_code(svc) == {}
    again = remediate.run_action(svc, f.id or 0, "confirm_payment", actor="manager@test")
    assert not again.ok and "resolved" in again.message
    assert violations(svc) == []


def test_the_daily_close_names_a_missed_change_payment_then_balances_once_it_is_processed(
    svc: Any, booking_request: Any
) -> None:
    mine = paid(svc, booking_request, dates=(MON,))
    waiting = bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    assert waiting.payment_intent_id is not None
    svc.payments.confirm_payment_intent(waiting.payment_intent_id)
    svc.clock.advance(minutes=20)

    before = run_close(svc, TODAY, actor="finance@test")
    assert before.close.status == "failed"
    (item,) = before.items
    assert (item.category, item.problem, item.stripe_cents) == ("charge", "missing_in_ledger", 4_500)
    assert f"change 1 of booking {mine.reference}" in item.note and "webhook was missed" in item.note

    bk.confirm_payment(svc, waiting.payment_intent_id, actor="stripe-webhook")
    after = run_close(svc, TODAY, actor="finance@test")
    assert (after.close.status, after.close.variance_bps, after.items) == ("passed", 0, [])


def test_a_day_with_a_dearer_and_a_cheaper_change_closes_with_zero_variance(svc: Any, booking_request: Any) -> None:
    mine, change_pi = dearer_then_cheaper(svc, booking_request)

    result = run_close(svc, TODAY, actor="finance@test")

    c = result.close
    assert (c.status, c.variance_bps, result.items) == ("passed", 0, [])
    assert c.totals["charge"] == {"stripe": 13_500, "ledger": 13_500, "stripe_count": 2, "ledger_count": 2}
    assert c.totals["refund"] == {"stripe": 4_500, "ledger": 4_500, "stripe_count": 1, "ledger_count": 1}
    assert c.totals["net"]["stripe"] == c.totals["net"]["ledger"]
    # Cancelling the rest refunds both payments (the first in part already): the day still balances.
    bk.cancel_booking(svc, mine.booking_id, actor="frontdesk")
    with svc.session() as s:
        on = {r.payment_intent_id for r in s.exec(select(RefundRecord))}
    assert on == {mine.payment_intent, change_pi}
    again = run_close(svc, TODAY, actor="finance@test")
    assert (again.close.status, again.close.variance_bps, again.items) == ("passed", 0, [])
    assert again.close.totals["refund"]["ledger"] == 13_500


def test_a_change_refused_after_payment_closes_with_its_charge_and_its_refund(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request, dates=(MON,))
    waiting = bk.change_booking(svc, mine.booking_id, Change(room="union-room"), actor="frontdesk")
    union = svc.catalogue.room("union-room").calendar_id
    svc.calendar.insert_event(
        union,
        {
            "summary": "Hand-added",
            "start": {"dateTime": "2026-03-16T10:30:00-07:00"},
            "end": {"dateTime": "2026-03-16T11:00:00-07:00"},
        },
    )
    assert bk.sandbox_pay_change(svc, mine.booking_id, actor="stripe-webhook").outcome == "change_failed"

    result = run_close(svc, TODAY, actor="finance@test")

    assert (result.close.status, result.items) == ("passed", [])
    assert result.close.totals["refund"]["ledger"] == 3_000
    found = open_by_code(svc)
    assert set(found) == {"manual_event"}  # the hand-added event; nothing about the change's payment
    rows = reports.refund_report(svc, TODAY, TODAY).rows
    (row,) = rows.to_dict("records")
    assert (row["origin"], row["origin_label"], row["payment_intent"]) == (
        "auto_gate2",
        "Auto-refund at Gate 2",
        waiting.payment_intent_id,
    )
    assert row["booking_ref"] == mine.reference and row["check"] == ""


# ------------------------------------------------------------------------------------------ receipts and reports


def test_the_receipt_lists_both_payments_the_days_as_they_are_now_and_the_net(svc: Any, booking_request: Any) -> None:
    mine, _ = dearer_then_cheaper(svc, booking_request)

    text = pdf_text(booking_receipt_pdf(svc, mine.booking_id)[1])

    for expected in [
        "Mon 16 Mar 2026 10:00–12:00 Booked $90.00",
        f"Paid by {CARD}, Mon 2 Mar 2026 09:00 $90.00",
        f"Change 1: paid by {CARD}, Mon 2 Mar 2026 09:30 $45.00",
        "Total paid $135.00",
        "Refunded Mon 2 Mar 2026 10:00: Change to the booking: the difference refunded -$45.00",
        "Net paid $90.00",
    ]:
        assert shown(expected) in text, expected
    assert "10:00–13:00" not in text  # the hour given up is no longer booked


def test_a_refund_receipt_after_cancelling_a_changed_booking_shows_every_payment(
    svc: Any, booking_request: Any
) -> None:
    mine, change_pi = dearer_then_cheaper(svc, booking_request)
    bk.cancel_booking(svc, mine.booking_id, actor="frontdesk")
    with svc.session() as s:
        on_change = s.exec(select(RefundRecord).where(RefundRecord.payment_intent_id == change_pi)).one()

    text = pdf_text(refund_receipt_pdf(svc, on_change.id or 0)[1])

    assert shown(f"Refunded to {CARD}") in text and "Amount refunded $45.00" in text
    assert "Total paid $135.00" in text
    assert "Net paid after this refund $0.00" in text


def test_the_refunds_report_and_revenue_show_the_change(svc: Any, booking_request: Any) -> None:
    mine, change_pi = dearer_then_cheaper(svc, booking_request)
    cycle.run_cycle(svc)  # revenue reads Stripe's charges from the sync cache

    report = reports.refund_report(svc, TODAY, TODAY)

    (row,) = report.rows.to_dict("records")
    assert (row["origin"], row["origin_label"], row["amount_cents"]) == ("amendment", "Change to booking", 4_500)
    assert (row["booking_ref"], row["room"], row["check"]) == (mine.reference, "Boardroom", "")
    assert row["payment_intent"] == mine.payment_intent  # our refunds take the booking's own payment first
    by_origin = {r["key"]: r["amount_cents"] for r in report.by_origin.to_dict("records")}
    assert by_origin["amendment"] == 4_500
    revenue = reports.revenue(svc, TODAY, TODAY, report=report)
    assert (revenue.payments_cents, revenue.refunds_cents, revenue.net_cents) == (13_500, 4_500, 9_000)
    paid_rows = reports.payments_frame(svc, TODAY, TODAY)
    assert set(paid_rows["booking_ref"]) == {mine.reference}
    assert set(paid_rows["payment_intent"]) == {mine.payment_intent, change_pi}
    with svc.session() as s:
        assert [leg.state for leg in s.exec(select(BookingLeg))] == [LegState.CONFIRMED]
