"""Pay by invoice (issue 15 §2) on sandbox gateways: an organisation books on terms, Stripe Invoicing sends the
invoice, the days are held until it is paid (invoice.paid, delivered as a signed webhook, confirms the booking like a
card payment), voided (the booking is cancelled) or staff release it; an overdue invoice is reminded once, then
becomes a finding with Extend and Release."""

from __future__ import annotations

import json
from datetime import date, time, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from models.tables import (
    Amendment,
    AuditLog,
    Booking,
    BookingInvoice,
    BookingLeg,
    BookingStatus,
    Finding,
    InvoiceState,
    LegState,
    RefundRecord,
    SlotClaim,
    WebhookEvent,
)
from services import booking as bk
from services.booking import invoices
from services.booking.queries import invoice_of
from services.core.errors import GatewayError, InvalidState, NotAvailable, ValidationError
from services.gateways.base import invoice_tax
from services.reconciliation import reconcile, remediate, sync
from services.web.api import create_app
from tests.tax_settings import gst
from tests.unit.test_webhooks import SECRET, sign

DAYS = (date(2026, 4, 6), date(2026, 4, 7), date(2026, 4, 8))  # Mon–Wed, a month after the test clock's now
ACME = invoices.InvoiceTerms(
    organisation="Acme Co-op",
    contact_name="Jo Payables",
    billing_email="ap@acme.example.org",
    terms_days=14,
    po_number="PO-2026-0042",
)
# Boardroom $45/h × 3 h = $135.00 a day, 10 % off for 3 days = $121.50 net, GST 5 % = 607.5 → $6.08 (half up).
NET_DAY, TAX_DAY = 12_150, 608
GROSS = 3 * (NET_DAY + TAX_DAY)


@pytest.fixture
def isvc(make_services: Any, db_url: str) -> Any:
    """A GST-registered venue, on both databases."""
    return make_services(db_url, stripe_webhook_secret=SECRET, **gst())


@pytest.fixture
def client(isvc: Any) -> TestClient:
    return TestClient(create_app(isvc, allowed_origins=[]), raise_server_exceptions=False)


def request(booking_request: Any, **kw: Any) -> Any:
    kw.setdefault("dates", DAYS)
    kw.setdefault("start", time(9, 0))
    kw.setdefault("end", time(12, 0))
    kw.setdefault("channel", "phone")
    return booking_request(**kw)


def book(svc: Any, booking_request: Any, terms: invoices.InvoiceTerms = ACME, **kw: Any) -> invoices.InvoiceStart:
    return invoices.book_on_invoice(svc, request(booking_request, **kw), terms, actor="frontdesk@venue.example")


def row(svc: Any, booking_id: int) -> BookingInvoice:
    found = invoice_of(svc, booking_id)
    assert found is not None
    return found


def booking_of(svc: Any, booking_id: int) -> Booking:
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        return b


def legs_of(svc: Any, booking_id: int) -> list[BookingLeg]:
    with svc.session() as s:
        return list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(BookingLeg.day)))


def active_claims(svc: Any, booking_id: int) -> list[SlotClaim]:
    with svc.session() as s:
        return list(s.exec(select(SlotClaim).where(SlotClaim.booking_id == booking_id, SlotClaim.active.is_(True))))


def audit_actions(svc: Any, booking_id: int) -> list[str]:
    with svc.session() as s:
        return [a.action for a in s.exec(select(AuditLog).where(AuditLog.booking_id == booking_id))]


def deliver_latest(svc: Any, client: TestClient, event_type: str, object_id: str) -> Any:
    """Post the sandbox's latest recorded `event_type` about `object_id` to the webhook, signed as Stripe signs."""
    for event in svc.payments.list_events(limit=100)["data"]:  # newest first
        if event["type"] == event_type and event["data"]["object"]["id"] == object_id:
            payload = json.dumps(event).encode()
            return client.post(
                "/api/webhooks/stripe",
                content=payload,
                headers={"Stripe-Signature": sign(payload), "Content-Type": "application/json"},
            )
    raise AssertionError(f"no {event_type} event for {object_id}")


# --------------------------------------------------------------------------------------------- booking on terms


def test_an_organisation_books_on_terms_and_stripe_sends_the_taxed_invoice(isvc: Any, booking_request: Any) -> None:
    made = book(isvc, booking_request)
    b = booking_of(isvc, made.booking_id)
    assert (b.status, b.amount_cents, b.tax_cents, b.payment_intent_id) == (
        BookingStatus.AWAITING_PAYMENT,
        GROSS,
        3 * TAX_DAY,
        None,
    )
    # The days are held with no expiry: an invoice is a promise to pay, not a card session.
    assert b.hold_expires_at is None
    claims = active_claims(isvc, made.booking_id)
    assert len(claims) == 3 and all(c.kind == "hold" and c.expires_at is None for c in claims)

    inv = isvc.payments.retrieve_invoice(made.invoice_id)
    assert (inv["status"], inv["collection_method"], inv["total"], invoice_tax(inv)) == (
        "open",
        "send_invoice",
        GROSS,
        3 * TAX_DAY,
    )
    lines = inv["lines"]["data"]
    assert [line["amount"] for line in lines] == [NET_DAY] * 3  # one line per day, net, GST on each
    assert lines[0]["description"] == "Boardroom, Mon 6 Apr 09:00–12:00"
    assert {f["name"]: f["value"] for f in inv["custom_fields"]} == {
        "Booking": made.reference,
        "PO number": "PO-2026-0042",
        "GST/HST registration": "123456782RT0001",
    }
    assert inv["customer_email"] == "ap@acme.example.org" and inv["customer_name"] == "Acme Co-op"
    # Net 14 from the test clock's Mon 2 Mar 17:00 UTC.
    held = row(isvc, made.booking_id)
    assert (held.state, held.terms_days, held.due_at) == (InvoiceState.OPEN, 14, isvc.now() + timedelta(days=14))
    assert made.hosted_url and made.number

    # The billing contact (not the booker) hears what the invoice is for and until when the days are held.
    mail = isvc.mail.messages(booking_id=made.booking_id, kind="invoice_held")
    assert len(mail) == 1 and mail[0]["to"] == "ap@acme.example.org"
    assert "Mon 16 Mar" in mail[0]["text"] and "PO-2026-0042" in mail[0]["text"]
    assert [a for a in audit_actions(isvc, made.booking_id) if a.startswith(("booking.hold", "booking.invoice"))] == [
        "booking.hold.created",
        "booking.invoice.planned",
        "booking.invoice.sent",
    ]
    # Nobody else can take the held days.
    with pytest.raises(NotAvailable):
        bk.start_booking(isvc, request(booking_request, dates=DAYS[:1]), actor="customer")


def test_terms_are_cut_to_fall_due_before_the_first_day_and_refused_when_too_close(
    isvc: Any, booking_request: Any
) -> None:
    # First day Fri 6 Mar 09:00 Vancouver: due at the latest 48 h before → 1 whole day of terms from Mon 17:00 UTC.
    soon = book(isvc, booking_request, dates=(date(2026, 3, 6),), terms=ACME)
    assert row(isvc, soon.booking_id).terms_days == 2
    with pytest.raises(ValidationError, match="Terms: the first day is too close"):
        book(isvc, booking_request, dates=(date(2026, 3, 4),), room="union-room")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"billing_email": "ap@acme"}, "Billing email"),
        ({"organisation": "  "}, "Organisation"),
        ({"contact_name": ""}, "Billing contact"),
        ({"terms_days": 10}, "Terms"),
        ({"po_number": "P" * 61}, "PO number"),
    ],
)
def test_bad_terms_are_refused_naming_the_field_and_nothing_is_held(
    isvc: Any, booking_request: Any, change: dict[str, Any], field: str
) -> None:
    terms = invoices.InvoiceTerms(**{**ACME.__dict__, **change})
    with pytest.raises(ValidationError, match=field):
        book(isvc, booking_request, terms=terms)
    with isvc.session() as s:
        assert s.exec(select(Booking)).first() is None


def test_a_stripe_failure_while_making_the_invoice_frees_the_days(isvc: Any, booking_request: Any) -> None:
    isvc.payments.faults.fail("create_invoice")
    with pytest.raises(GatewayError):
        book(isvc, booking_request)
    with isvc.session() as s:
        b = s.exec(select(Booking)).one()
    assert b.status == BookingStatus.FAILED and active_claims(isvc, b.id) == []
    assert "booking.invoice.failed" in audit_actions(isvc, b.id or 0)
    isvc.payments.faults.clear()
    assert book(isvc, booking_request).amount_cents == GROSS  # the days were free again


# --------------------------------------------------------------------------------------------- paid, voided


def test_invoice_paid_by_webhook_confirms_the_booking_and_refunds_go_back_on_its_payment(
    isvc: Any, client: TestClient, booking_request: Any
) -> None:
    made = book(isvc, booking_request)
    isvc.payments.pay_invoice(made.invoice_id)  # the organisation pays on the hosted page
    for _ in range(2):  # Stripe may deliver it twice: processed once
        assert deliver_latest(isvc, client, "invoice.paid", made.invoice_id).status_code == 200
    b = booking_of(isvc, made.booking_id)
    pi = isvc.payments.invoice_payment_intent(made.invoice_id)
    assert (b.status, b.payment_intent_id) == (BookingStatus.CONFIRMED, pi)
    assert [leg.state for leg in legs_of(isvc, made.booking_id)] == [LegState.CONFIRMED] * 3
    assert all(leg.event_id for leg in legs_of(isvc, made.booking_id))  # one calendar event per day
    held = row(isvc, made.booking_id)
    assert (held.state, held.payment_intent_id) == (InvoiceState.PAID, pi)
    assert len(isvc.mail.messages(booking_id=made.booking_id, kind="confirmation")) == 1
    assert audit_actions(isvc, made.booking_id).count("booking.invoice.paid") == 1
    with isvc.session() as s:
        rows = list(s.exec(select(WebhookEvent).where(WebhookEvent.type == "invoice.paid")))
    assert [r.status for r in rows] == ["processed"]

    # Cancelling a day refunds it on the payment that paid the invoice, with exactly its own tax.
    later = legs_of(isvc, made.booking_id)[2]
    bk.cancel_booking(isvc, made.booking_id, actor="frontdesk@venue.example", leg_ids=[later.id or 0], reason="x")
    with isvc.session() as s:
        refund = s.exec(select(RefundRecord).where(RefundRecord.booking_id == made.booking_id)).one()
    assert (refund.payment_intent_id, refund.amount_cents, refund.tax_cents) == (pi, NET_DAY + TAX_DAY, TAX_DAY)


def test_voiding_the_invoice_in_stripe_cancels_the_booking_and_frees_its_days(
    isvc: Any, client: TestClient, booking_request: Any
) -> None:
    made = book(isvc, booking_request)
    isvc.payments.void_invoice(made.invoice_id, idempotency_key="dashboard-void")  # someone voids it in Stripe
    assert deliver_latest(isvc, client, "invoice.voided", made.invoice_id).status_code == 200
    b = booking_of(isvc, made.booking_id)
    assert b.status == BookingStatus.CANCELLED
    assert [leg.state for leg in legs_of(isvc, made.booking_id)] == [LegState.CANCELLED] * 3
    assert active_claims(isvc, made.booking_id) == []
    assert row(isvc, made.booking_id).state == InvoiceState.VOID
    assert bk.start_booking(isvc, request(booking_request, dates=DAYS[:1]), actor="customer").amount_cents > 0


def test_releasing_the_hold_voids_the_invoice_first(isvc: Any, booking_request: Any) -> None:
    made = book(isvc, booking_request)
    bk.release_unpaid_hold(isvc, made.booking_id, actor="manager@venue.example")
    assert isvc.payments.retrieve_invoice(made.invoice_id)["status"] == "void"  # it can no longer be paid
    assert booking_of(isvc, made.booking_id).status == BookingStatus.CANCELLED
    assert active_claims(isvc, made.booking_id) == []


def test_a_missed_invoice_paid_webhook_is_settled_by_the_worker(isvc: Any, booking_request: Any) -> None:
    made = book(isvc, booking_request)
    isvc.payments.pay_invoice(made.invoice_id)  # the webhook never arrives
    assert invoices.invoice_round(isvc) == {"paid": 1}
    assert booking_of(isvc, made.booking_id).status == BookingStatus.CONFIRMED
    assert invoices.invoice_round(isvc) == {}  # nothing open any more


def test_sandbox_record_payment_pays_the_invoice(isvc: Any, booking_request: Any) -> None:
    made = book(isvc, booking_request)
    done = invoices.sandbox_pay_invoice(isvc, made.booking_id, actor="frontdesk@venue.example")
    assert done.outcome == "confirmed"
    assert isvc.payments.retrieve_invoice(made.invoice_id)["status"] == "paid"


# --------------------------------------------------------------------------------------------- overdue


def findings_of(svc: Any) -> list[Finding]:
    sync.sync(svc)
    reconcile.reconcile(svc)
    with svc.session() as s:
        return list(s.exec(select(Finding).where(Finding.code == "invoice_overdue", Finding.status == "open")))


def test_an_overdue_invoice_is_reminded_once_then_staff_extend_or_release_it(isvc: Any, booking_request: Any) -> None:
    made = book(isvc, booking_request)
    assert invoices.invoice_round(isvc) == {}  # not due yet
    isvc.clock.advance(days=14, hours=1)  # past the due date
    assert invoices.invoice_round(isvc) == {"reminded": 1}
    assert invoices.invoice_round(isvc) == {}  # once per due date
    reminder = isvc.mail.messages(booking_id=made.booking_id, kind="invoice_overdue")
    assert len(reminder) == 1 and reminder[0]["to"] == "ap@acme.example.org"
    assert "was due Mon 16 Mar" in reminder[0]["text"] and made.hosted_url in reminder[0]["text"]
    assert findings_of(isvc) == []  # still within the grace period (72 h)

    isvc.clock.advance(hours=72)
    [found] = findings_of(isvc)
    assert found.booking_ref == made.reference and found.amount_cents == GROSS
    assert "Acme Co-op: invoice" in found.summary and "was due Mon 16 Mar" in found.summary
    assert found.actions == ["extend_invoice", "release_invoice", "acknowledge"]

    # The organisation says the cheque is in the mail: the days stay held 7 more days, the finding clears.
    result = remediate.run_action(isvc, found.id, "extend_invoice", actor="manager@venue.example", note="cheque sent")
    assert result.ok and "held until" in result.message
    assert row(isvc, made.booking_id).due_at == isvc.now() + timedelta(days=7)
    assert findings_of(isvc) == []
    isvc.clock.advance(days=7, hours=1)
    assert invoices.invoice_round(isvc) == {"reminded": 1}  # the new date passed: reminded again
    isvc.clock.advance(hours=72)
    [again] = findings_of(isvc)

    # No payment: release — the invoice is voided at Stripe and the days are free.
    done = remediate.run_action(isvc, again.id, "release_invoice", actor="manager@venue.example", note="no answer")
    assert done.ok and "cancelled" in done.message
    assert isvc.payments.retrieve_invoice(made.invoice_id)["status"] == "void"
    assert booking_of(isvc, made.booking_id).status == BookingStatus.CANCELLED
    assert active_claims(isvc, made.booking_id) == []
    assert findings_of(isvc) == []
    assert {"booking.invoice.reminded", "booking.invoice.extended", "booking.invoice.voided"} <= set(
        audit_actions(isvc, made.booking_id)
    )


def test_release_is_refused_when_the_invoice_was_paid_a_moment_ago(isvc: Any, booking_request: Any) -> None:
    made = book(isvc, booking_request)
    isvc.payments.pay_invoice(made.invoice_id)  # paid at Stripe, webhook not processed yet
    with pytest.raises(Exception, match="paid a moment ago"):
        invoices.release_invoice(isvc, made.booking_id, actor="manager@venue.example", reason="no answer")
    assert isvc.payments.retrieve_invoice(made.invoice_id)["status"] == "paid"
    assert booking_of(isvc, made.booking_id).status == BookingStatus.AWAITING_PAYMENT


def test_extending_stops_at_the_first_days_lead_time_then_is_refused(isvc: Any, booking_request: Any) -> None:
    # First day Mon 16 Mar 09:00 Vancouver (16:00 UTC): held at the latest to Sat 14 Mar 16:00 UTC. Whole days of
    # terms from Mon 2 Mar 17:00 UTC: due Fri 13 Mar 17:00.
    made = book(isvc, booking_request, dates=(date(2026, 3, 16),))
    assert (made.due_at.day, made.due_at.hour) == (13, 17)
    extended = invoices.extend_invoice(isvc, made.booking_id, days=7, actor="manager", reason="cheque sent")
    assert (extended.day, extended.hour) == (14, 16)  # not 7 days: no later than the lead time
    with pytest.raises(ValidationError, match="the hold cannot run longer"):
        invoices.extend_invoice(isvc, made.booking_id, days=7, actor="manager", reason="cheque sent")
    assert row(isvc, made.booking_id).due_at == extended


def test_cancelling_when_the_invoice_was_just_paid_confirms_instead_and_says_so(
    isvc: Any, booking_request: Any
) -> None:
    made = book(isvc, booking_request)
    isvc.payments.pay_invoice(made.invoice_id)  # paid at Stripe; the webhook not processed yet
    with pytest.raises(InvalidState, match="paid a moment ago and is now confirmed: nothing was cancelled"):
        bk.cancel_booking(isvc, made.booking_id, actor="frontdesk@venue.example")
    assert booking_of(isvc, made.booking_id).status == BookingStatus.CONFIRMED  # not left waiting, not cancelled
    assert row(isvc, made.booking_id).state == InvoiceState.PAID


def test_a_day_made_dearer_records_exactly_the_tax_the_day_gained(make_services: Any, booking_request: Any) -> None:
    """Lengthening 10:00–12:15 to 12:30: the day's GST goes 506 → 563 ¢ (5 % of $112.50 = 562.5, half up), so the
    change's payment carries 57 ¢ — not 5/105 of its $11.82 (56 ¢) — and the GST collected equals the days' GST."""
    from services.booking.amend import Change

    svc = make_services(**gst())
    started = bk.start_booking(
        svc, booking_request(dates=(date(2026, 3, 9),), start=time(10), end=time(12, 15)), actor="customer"
    )
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    bk.change_booking(svc, started.booking_id, Change(times=(time(10), time(12, 30))), actor="frontdesk")
    bk.sandbox_pay_change(svc, started.booking_id, actor="stripe-webhook")
    with svc.session() as s:
        b = s.get(Booking, started.booking_id)
        assert b is not None
        (a,) = s.exec(select(Amendment).where(Amendment.booking_id == b.id)).all()
        (leg,) = s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id)).all()
    assert (b.tax_cents, a.net_cents, a.tax_cents, leg.tax_cents) == (506, 1182, 57, 563)
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk@venue.example")  # 100 % band: all of it back
    with svc.session() as s:
        back = [(r.amount_cents, r.tax_cents) for r in s.exec(select(RefundRecord))]
    assert sorted(back) == [(1182, 57), (10631, 506)]


def test_the_receipt_of_a_booking_paid_by_invoice_says_so(isvc: Any, booking_request: Any) -> None:
    from services.finance.receipts import booking_receipt_pdf
    from tests.unit.test_receipts import pdf_text, shown

    # 4 days × (3 h × $45 − 10 % + GST 6.08) = $510.32: from $500 the receipt carries the payment terms.
    four = (date(2026, 4, 13), date(2026, 4, 14), date(2026, 4, 15), date(2026, 4, 16))
    made = book(isvc, booking_request, dates=four)
    assert made.amount_cents == 4 * (NET_DAY + TAX_DAY)
    invoices.sandbox_pay_invoice(isvc, made.booking_id, actor="stripe-webhook")
    text = pdf_text(booking_receipt_pdf(isvc, made.booking_id)[1])
    assert "GST 5 % $24.32" in text and "123456782RT0001" in text
    number = row(isvc, made.booking_id).number
    assert shown(f"Payment terms Paid in full on invoice {number} (net 14) on Mon 2 Mar 2026") in text


def test_reconciliation_reads_an_invoice_payment_without_metadata_from_its_booking(
    isvc: Any, booking_request: Any
) -> None:
    """On Stripe the PaymentIntent that pays an invoice carries none of the invoice's metadata: it is still the
    booking's payment, not 'not a booking'."""
    made = book(isvc, booking_request)
    isvc.payments.pay_invoice(made.invoice_id)
    pi = isvc.payments.invoice_payment_intent(made.invoice_id)
    with isvc.payments.store.transaction() as tx:  # as Stripe would have it
        obj = tx.get("payment_intent", pi)
        obj["metadata"] = {}
        tx.put("payment_intent", pi, obj)
    assert invoices.settle_paid_invoice(isvc, made.invoice_id, "stripe-webhook", isvc.now()).outcome == "confirmed"
    sync.sync(isvc)
    reconcile.reconcile(isvc)
    with isvc.session() as s:
        assert [(f.code, f.summary) for f in s.exec(select(Finding).where(Finding.status == "open"))] == []


def test_invoices_use_the_one_tax_rate_stripe_made_long_after_its_key_expired(
    isvc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripe forgets an idempotency key after 24 h: the TaxRate made for the first invoice is remembered locally, so
    an invoice a week later carries the same rate instead of a new one at Stripe every day."""
    made: list[str] = []
    create = isvc.payments.create_tax_rate

    def counting(**kw: Any) -> Any:
        rate = create(**kw)
        made.append(rate["id"])
        return rate

    monkeypatch.setattr(isvc.payments, "create_tax_rate", counting)
    first = book(isvc, booking_request)
    isvc.clock.at = isvc.now() + timedelta(days=7)
    second = book(isvc, booking_request, dates=(DAYS[0] + timedelta(days=7),))
    rates = [
        {
            t["tax_rate_details"]["tax_rate"]
            for line in isvc.payments.retrieve_invoice(i)["lines"]["data"]
            for t in line["taxes"]
        }
        for i in (first.invoice_id, second.invoice_id)
    ]
    assert len(made) == 1 and rates == [{made[0]}, {made[0]}]
