"""The flows the fault matrix runs: the booking saga's own steps (start, confirm, cancel whole and partial, cancel
an unpaid hold, expire), every kind of change to a paid booking (same price, cheaper, dearer paid / refused /
lapsed) and every remediation action, each with a setup that makes the state it acts on.

A setup runs once per flow on a clean container and is snapshotted (the data dir: our database and the sandbox
stores); every case then starts from a copy. An action returns nothing useful: what counts is the state it leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import Any

from sqlmodel import select

from models.tables import BookingLeg
from services import booking as bk
from services.booking import invoices
from services.reconciliation import findings, reconcile, remediate, sync
from tests.reliability.harness import ACTOR, SONIC_EXTRAS

WED = date(2026, 3, 4)
NEXT_MON, NEXT_TUE, NEXT_WED = date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11)
GOOD_FRIDAY = date(2026, 4, 3)
BOARDROOM = "boardroom@group.calendar.google.com"

Ctx = dict[str, Any]


@dataclass(frozen=True)
class Flow:
    name: str
    setup: Callable[[Any], Ctx]
    action: Callable[[Any, Ctx], Any]
    overrides: dict[str, Any] = field(default_factory=dict)


def request(**kw: Any) -> bk.BookingRequest:
    kw.setdefault("room", "boardroom")
    kw.setdefault("dates", (NEXT_MON,))
    kw.setdefault("start", time(10, 0))
    kw.setdefault("end", time(12, 0))
    kw.setdefault("customer_name", "Ava Nguyen")
    kw.setdefault("customer_email", "ava@example.org")
    kw.setdefault("customer_phone", "604-555-0101")
    kw["dates"] = tuple(kw["dates"])
    return bk.BookingRequest(**kw)


def leg_ids(svc: Any, booking_id: int) -> list[int]:
    with svc.session() as s:
        legs = s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(BookingLeg.day))
        return [leg.id for leg in legs if leg.id is not None]


def leg_events(svc: Any, booking_id: int) -> list[str]:
    with svc.session() as s:
        legs = s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(BookingLeg.day))
        return [leg.event_id for leg in legs if leg.event_id]


def venue_time(svc: Any, day: date, at: time) -> str:
    return datetime.combine(day, at, tzinfo=svc.settings.tz).isoformat()


def manual_event(svc: Any, day: date, start: time, end: time) -> str:
    made = svc.calendar.insert_event(
        BOARDROOM,
        {
            "summary": "Staff meeting",
            "start": {"dateTime": venue_time(svc, day, start)},
            "end": {"dateTime": venue_time(svc, day, end)},
        },
    )
    return str(made["id"])


# --------------------------------------------------------------------------------------------- booking states


def started(svc: Any, **kw: Any) -> Ctx:
    s = bk.start_booking(svc, request(**kw), actor="customer")
    return {"booking_id": s.booking_id, "pi": s.payment_intent, "reference": s.reference}


def confirmed(svc: Any, **kw: Any) -> Ctx:
    ctx = started(svc, **kw)
    assert bk.sandbox_pay(svc, ctx["booking_id"], actor="stripe-webhook").outcome == "confirmed"
    return ctx


def paid_no_event(svc: Any) -> Ctx:
    ctx = started(svc)
    svc.calendar.faults.fail("insert_event")
    svc.payments.faults.fail("refund")
    assert bk.sandbox_pay(svc, ctx["booking_id"], actor="stripe-webhook").outcome == "refund_failed"
    return ctx


def partial_multiday(svc: Any) -> Ctx:
    ctx = started(svc, dates=(NEXT_MON, NEXT_TUE, NEXT_WED))
    svc.calendar.faults.fail("insert_event", nth=3)
    svc.calendar.faults.fail("delete_event", times=5)
    svc.payments.faults.fail("refund")
    bk.sandbox_pay(svc, ctx["booking_id"], actor="stripe-webhook")
    return ctx


def stale_payment(svc: Any) -> Ctx:
    ctx = started(svc, channel="phone")
    svc.payments.confirm_payment_intent(ctx["pi"])
    svc.clock.advance(minutes=20)
    return ctx


def legacy_payment(svc: Any) -> Ctx:
    pi = svc.payments.create_payment_intent(
        amount_cents=9000,
        currency="cad",
        metadata={
            "room": "boardroom",
            "booking_dates": NEXT_MON.isoformat(),
            "booking_time": "10:00-12:00",
            "customer_name": "Old System Customer",
            "customer_email": "old@example.org",
            "customer_phone": "604-555-0199",
        },
        idempotency_key="legacy-1",
    )
    svc.payments.confirm_payment_intent(pi["id"])
    return {"pi": pi["id"]}


def finding(svc: Any, code: str, ctx: Ctx, action: str, **kwargs: Any) -> Ctx:
    """Clear the setup's faults, sync + reconcile, and remember the one open finding of `code` and its fix."""
    for g in (svc.payments, svc.calendar, svc.mail):
        g.faults.clear()
    sync.sync(svc)
    reconcile.reconcile(svc)
    matching = [f for f in findings.open_findings(svc) if f.code == code]
    assert len(matching) == 1, (code, [f.code for f in findings.open_findings(svc)])
    return {**ctx, "finding_id": matching[0].id, "fix": action, "fix_kwargs": kwargs}


def run_fix(svc: Any, ctx: Ctx) -> remediate.FixResult:
    return remediate.run_action(svc, ctx["finding_id"], ctx["fix"], actor=ACTOR, **ctx["fix_kwargs"])


# --------------------------------------------------------------------------------------------- remediation setups


def _moved_event(svc: Any) -> Ctx:
    ctx = confirmed(svc)
    (moved,) = leg_events(svc, ctx["booking_id"])
    svc.calendar.patch_event(
        BOARDROOM,
        moved,
        {
            "start": {"dateTime": venue_time(svc, NEXT_MON, time(14))},
            "end": {"dateTime": venue_time(svc, NEXT_MON, time(16))},
        },
    )
    return finding(svc, "event_mismatch", ctx, "recreate_events")


def _legacy_moved(svc: Any) -> Ctx:
    ctx = legacy_payment(svc)
    svc.calendar.insert_event(
        BOARDROOM,
        {
            "summary": "Old System Customer",
            "description": f"Paid: {ctx['pi']}\nold@example.org",
            "start": {"dateTime": venue_time(svc, NEXT_MON, time(13))},
            "end": {"dateTime": venue_time(svc, NEXT_MON, time(15))},
        },
    )
    return finding(svc, "event_mismatch", ctx, "recreate_events")


def _overcharged(svc: Any) -> Ctx:
    from models.tables import Booking

    ctx = confirmed(svc)
    with svc.session() as s:
        b = s.get(Booking, ctx["booking_id"])
        b.pricing_snapshot = {**b.pricing_snapshot, "total_cents": 7500}
    return finding(svc, "amount_mismatch", ctx, "refund", amount="difference", reason="Overcharged")


def _double_booked(svc: Any) -> Ctx:
    ctx = confirmed(svc)
    manual_event(svc, NEXT_MON, time(11), time(12))
    return finding(svc, "double_booking", ctx, "cancel", reason="Board meeting has the room")


def _hand_added_clash(svc: Any) -> Ctx:
    ctx = confirmed(svc)
    manual_event(svc, NEXT_MON, time(11), time(12))
    return finding(svc, "double_booking", ctx, "delete_hand_added", note="Staff meeting moved to the Quiet Room")


def _holiday(svc: Any) -> Ctx:
    legacy = replace(svc, settings=svc.settings.model_copy(update={"observe_holidays": False}))
    s = bk.start_booking(legacy, request(dates=(GOOD_FRIDAY,)), actor="customer")
    bk.sandbox_pay(legacy, s.booking_id, actor="stripe-webhook")
    svc.clock.at = datetime(2026, 4, 3, 3, 0, tzinfo=UTC)
    ctx = {"booking_id": s.booking_id, "pi": s.payment_intent}
    return finding(svc, "holiday_booking", ctx, "cancel_full_refund", reason="Closed for Good Friday")


def _orphan_after_cancel(svc: Any) -> Ctx:
    ctx = confirmed(svc, dates=(NEXT_MON, NEXT_TUE))
    svc.calendar.faults.fail("delete_event")
    bk.cancel_booking(svc, ctx["booking_id"], actor="frontdesk", leg_ids=leg_ids(svc, ctx["booking_id"])[:1])
    return finding(svc, "orphan_event", ctx, "delete_events")


def _manual(svc: Any) -> Ctx:
    manual_event(svc, NEXT_MON, time(9), time(10))
    return finding(svc, "manual_event", {}, "delete_events", note="Meeting moved to the internal calendar")


def _refund_notice_lost(svc: Any) -> Ctx:
    ctx = started(svc)
    manual_event(svc, NEXT_MON, time(9), time(11))  # Gate 2 conflict → the safety net refunds
    svc.mail.faults.fail("send")
    assert bk.sandbox_pay(svc, ctx["booking_id"], actor="stripe-webhook").outcome == "auto_refunded"
    svc.mail.faults.clear()
    # The manual event stays: delete it so that only the refund notice is left to do.
    sync.sync(svc)
    reconcile.reconcile(svc)
    manual = [f for f in findings.open_findings(svc) if f.code == "manual_event"]
    for f in manual:
        assert remediate.run_action(svc, f.id, "delete_events", actor=ACTOR, note="setup").ok
    return finding(svc, "refund_no_event", ctx, "send_refund_notice")


def _confirmation_lost(svc: Any) -> Ctx:
    svc.mail.faults.fail("send")
    ctx = confirmed(svc)
    return finding(svc, "missing_confirmation", ctx, "resend_confirmation")


def _no_extras(svc: Any) -> Ctx:
    ctx = confirmed(svc, room="sonic-studio", channel="phone")
    return finding(svc, "missing_extras", ctx, "fill_extras", extras=SONIC_EXTRAS)


REMEDIATIONS = [
    Flow(
        "fix.create_events.paid_no_event",
        lambda s: finding(s, "paid_no_event", paid_no_event(s), "create_events"),
        run_fix,
    ),
    Flow(
        "fix.create_events.partial_multiday",
        lambda s: finding(s, "partial_multiday", partial_multiday(s), "create_events"),
        run_fix,
    ),
    Flow(
        "fix.create_events.adopt_legacy",
        lambda s: finding(s, "paid_no_event", legacy_payment(s), "create_events"),
        run_fix,
    ),
    Flow("fix.recreate_events.moved", _moved_event, run_fix),
    Flow("fix.recreate_events.adopt_legacy", _legacy_moved, run_fix),
    Flow(
        "fix.refund.paid_no_event",
        lambda s: finding(s, "paid_no_event", paid_no_event(s), "refund", reason="Calendar was down"),
        run_fix,
    ),
    Flow(
        "fix.refund.stale_payment",
        lambda s: finding(s, "stale_payment", stale_payment(s), "refund", reason="Changed their mind"),
        run_fix,
    ),
    Flow("fix.refund.overcharge", _overcharged, run_fix),
    Flow(
        "fix.cancel.partial_multiday",
        lambda s: finding(s, "partial_multiday", partial_multiday(s), "cancel", reason="Refunded by hand"),
        run_fix,
    ),
    Flow("fix.cancel.double_booking", _double_booked, run_fix),
    Flow("fix.delete_hand_added.double_booking", _hand_added_clash, run_fix),
    Flow("fix.cancel_full_refund.holiday", _holiday, run_fix),
    Flow("fix.delete_events.orphan", _orphan_after_cancel, run_fix),
    Flow("fix.delete_events.manual", _manual, run_fix),
    Flow("fix.send_refund_notice.lost_mail", _refund_notice_lost, run_fix),
    Flow(
        "fix.confirm_payment.stale", lambda s: finding(s, "stale_payment", stale_payment(s), "confirm_payment"), run_fix
    ),
    Flow("fix.resend_confirmation", _confirmation_lost, run_fix),
    Flow("fix.fill_extras", _no_extras, run_fix),
]


# --------------------------------------------------------------------------------------------- booking-service flows


def _pay(svc: Any, ctx: Ctx) -> Any:
    return bk.sandbox_pay(svc, ctx["booking_id"], actor="stripe-webhook")


def _cancel_whole(svc: Any, ctx: Ctx) -> Any:
    return bk.cancel_booking(svc, ctx["booking_id"], actor="frontdesk")


def _cancel_first_day(svc: Any, ctx: Ctx) -> Any:
    return bk.cancel_booking(svc, ctx["booking_id"], actor="frontdesk", leg_ids=leg_ids(svc, ctx["booking_id"])[:1])


def _expire_setup(svc: Any, **kw: Any) -> Ctx:
    ctx = started(svc, **kw)
    svc.clock.advance(minutes=31)
    return ctx


def _expire_paid_setup(svc: Any) -> Ctx:
    ctx = started(svc)
    svc.payments.confirm_payment_intent(ctx["pi"])  # paid, but the webhook never came
    svc.clock.advance(minutes=31)
    return ctx


def _paid_at_stripe(svc: Any) -> Ctx:
    ctx = started(svc)
    svc.payments.confirm_payment_intent(ctx["pi"])
    return ctx


def _deliver_succeeded(svc: Any, ctx: Ctx) -> Any:
    from services.web import webhooks

    events = svc.payments.list_events(limit=100)["data"]
    (event,) = [e for e in events if e["type"] == "payment_intent.succeeded" and e["data"]["object"]["id"] == ctx["pi"]]
    row_id, needs = webhooks.record_event(svc, event)
    return webhooks.process_event(svc, row_id, actor="stripe-webhook") if needs else None


def _start(svc: Any, ctx: Ctx) -> Any:
    return bk.start_booking(svc, request(dates=(NEXT_TUE,)), actor="customer")


# --------------------------------------------------------------------------------------------- changes (issue 12)


def _leg(svc: Any, ctx: Ctx, index: int = 0) -> int:
    return leg_ids(svc, ctx["booking_id"])[index]


def _move_day(svc: Any, ctx: Ctx) -> Any:
    return bk.change_booking(svc, ctx["booking_id"], bk.Change(moves={_leg(svc, ctx): NEXT_TUE}), actor="frontdesk")


def _shorten(svc: Any, ctx: Ctx) -> Any:
    return bk.change_booking(svc, ctx["booking_id"], bk.Change(times=(time(10), time(12))), actor="frontdesk")


def _cheaper_room(svc: Any, ctx: Ctx) -> Any:
    return bk.change_booking(svc, ctx["booking_id"], bk.Change(room="boardroom"), actor="frontdesk")


def _drop_and_add(svc: Any, ctx: Ctx) -> Any:
    change = bk.Change(drop=frozenset({_leg(svc, ctx)}), add=(date(2026, 3, 12),))
    return bk.change_booking(svc, ctx["booking_id"], change, actor="frontdesk")


def _dearer(svc: Any, **kw: Any) -> Ctx:
    ctx = confirmed(svc)
    change = kw.pop("change", bk.Change(times=(time(10), time(13))))
    held = bk.change_booking(svc, ctx["booking_id"], change, actor="customer", channel="web")
    assert held.outcome == "awaiting_payment"
    return {**ctx, "change_pi": held.payment_intent_id}


def _dearer_taken(svc: Any) -> Ctx:
    ctx = _dearer(svc, change=bk.Change(room="union-room"))
    svc.calendar.insert_event(
        "union-room@group.calendar.google.com",
        {
            "summary": "Hand-added",
            "start": {"dateTime": venue_time(svc, NEXT_MON, time(11))},
            "end": {"dateTime": venue_time(svc, NEXT_MON, time(12))},
        },
    )
    return ctx


def _pay_change(svc: Any, ctx: Ctx) -> Any:
    return bk.sandbox_pay_change(svc, ctx["booking_id"], actor="stripe-webhook")


def _lapse_setup(svc: Any) -> Ctx:
    ctx = _dearer(svc)
    svc.clock.advance(minutes=31)
    return ctx


def _correct_customer(svc: Any, ctx: Ctx) -> Any:
    return bk.update_customer(
        svc, ctx["booking_id"], actor="frontdesk", name="Ava Nguyen-Tran", email="ava.tran@example.org", party_size=6
    )


CHANGES = [
    Flow("change.customer_details", lambda s: confirmed(s, dates=(NEXT_MON, NEXT_TUE)), _correct_customer),
    Flow("change.move_day", lambda s: confirmed(s), _move_day),
    Flow("change.shorter_refund", lambda s: confirmed(s, end=time(14)), _shorten),
    Flow("change.cheaper_room", lambda s: confirmed(s, room="union-room"), _cheaper_room),
    Flow("change.drop_and_add", lambda s: confirmed(s, dates=(NEXT_MON, NEXT_TUE, NEXT_WED)), _drop_and_add),
    Flow("change.dearer_paid", lambda s: _dearer(s), _pay_change),
    Flow("change.dearer_room_taken", _dearer_taken, _pay_change),
    Flow("change.dearer_lapsed", _lapse_setup, lambda s, c: bk.expire_change_holds(s)),
]

BOOKING = [
    Flow("start", lambda s: {}, _start),
    Flow("confirm.one_day", lambda s: started(s), _pay),
    Flow("confirm.three_days", lambda s: started(s, dates=(NEXT_MON, NEXT_TUE, NEXT_WED)), _pay),
    Flow(
        "confirm.gate2_conflict", lambda s: started(s) | {"manual": manual_event(s, NEXT_MON, time(11), time(13))}, _pay
    ),
    Flow("confirm.by_webhook", _paid_at_stripe, _deliver_succeeded),
    Flow("cancel.whole", lambda s: confirmed(s, dates=(NEXT_MON, NEXT_TUE)), _cancel_whole),
    Flow("cancel.partial", lambda s: confirmed(s, dates=(NEXT_MON, NEXT_TUE)), _cancel_first_day),
    Flow("cancel.unpaid_hold", lambda s: started(s), _cancel_whole),
    Flow("expire.unpaid", lambda s: _expire_setup(s), lambda s, c: bk.expire_holds(s)),
    Flow("expire.paid_webhook_missed", _expire_paid_setup, lambda s, c: bk.expire_holds(s)),
]

# ---------------------------------------------------------------------------------- pay by invoice (issue 15)
ORG = invoices.InvoiceTerms("Acme Co-op", "Jo Payables", "ap@acme.example.org", 14, "PO-42")


def _on_invoice(svc: Any, **kw: Any) -> Ctx:
    made = invoices.book_on_invoice(svc, request(channel="phone", **kw), ORG, actor="frontdesk")
    return {"booking_id": made.booking_id, "reference": made.reference, "invoice": made.invoice_id}


def _book_on_invoice(svc: Any, ctx: Ctx) -> Any:
    return invoices.book_on_invoice(svc, request(channel="phone", dates=(NEXT_TUE,)), ORG, actor="frontdesk")


def _invoice_paid_at_stripe(svc: Any) -> Ctx:
    ctx = _on_invoice(svc)
    svc.payments.pay_invoice(ctx["invoice"])
    return ctx


def _invoice_voided_at_stripe(svc: Any) -> Ctx:
    ctx = _on_invoice(svc)
    svc.payments.void_invoice(ctx["invoice"], idempotency_key="dashboard-void")
    return ctx


def _deliver(event_type: str) -> Callable[[Any, Ctx], Any]:
    def deliver(svc: Any, ctx: Ctx) -> Any:
        from services.web import webhooks

        events = svc.payments.list_events(limit=100)["data"]
        (event,) = [e for e in events if e["type"] == event_type and e["data"]["object"]["id"] == ctx["invoice"]]
        row_id, needs = webhooks.record_event(svc, event)
        return webhooks.process_event(svc, row_id, actor="stripe-webhook") if needs else None

    return deliver


def _overdue(svc: Any) -> Ctx:
    ctx = _on_invoice(svc, dates=(NEXT_WED,))
    svc.clock.advance(days=6)  # past the due date (48 h before the first day at the latest)
    return ctx


INVOICES = [
    Flow("invoice.book", lambda s: {}, _book_on_invoice),
    Flow("invoice.paid_by_webhook", _invoice_paid_at_stripe, _deliver("invoice.paid")),
    Flow("invoice.paid_webhook_missed", _invoice_paid_at_stripe, lambda s, c: invoices.invoice_round(s)),
    Flow("invoice.voided_in_stripe", _invoice_voided_at_stripe, _deliver("invoice.voided")),
    Flow(
        "invoice.released_by_staff",
        lambda s: _on_invoice(s),
        lambda s, c: invoices.release_invoice(s, c["booking_id"], actor="manager", reason="no answer"),
    ),
    Flow("invoice.overdue_reminder", _overdue, lambda s, c: invoices.invoice_round(s)),
]

FLOWS = {f.name: f for f in BOOKING + CHANGES + REMEDIATIONS + INVOICES}
