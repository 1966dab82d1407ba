"""Receipts read back from their PDFs with pypdf: what the customer sees (days, times, amounts, card, refunds, net),
right after a partial cancellation too."""

from __future__ import annotations

import io
import re
from datetime import date
from typing import Any

import pytest
from pypdf import PdfReader
from sqlmodel import select

from models.tables import BookingLeg, RefundRecord
from services import booking as bk
from services.core.errors import InvalidState, NotFound
from services.finance.pdf import latin1_safe, unicode_font
from services.finance.receipts import booking_receipt_pdf, refund_receipt_pdf

THREE_DAYS = (date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11))  # Boardroom 10:00–12:00: 3 × $90 − 10 %
CARD = "Visa •••• 4242"


def shown(text: str) -> str:
    """`text` as the PDF prints it: as is with the embedded Unicode font, mapped to Latin-1 without it."""
    return text if unicode_font() else latin1_safe(text)


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


def paid(svc: Any, booking_request: Any, **kw: Any) -> bk.StartResult:
    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    return started


def legs(svc: Any, booking_id: int) -> list[BookingLeg]:
    with svc.session() as s:
        return list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(BookingLeg.day)))


def refunds(svc: Any, booking_id: int) -> list[RefundRecord]:
    with svc.session() as s:
        return list(s.exec(select(RefundRecord).where(RefundRecord.booking_id == booking_id)))


def test_a_booking_receipt_lists_each_day_the_discount_the_card_and_the_total(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request, dates=THREE_DAYS)
    name, data = booking_receipt_pdf(svc, started.booking_id)
    text = pdf_text(data)
    assert name == f"receipt-{started.reference}.pdf"
    for expected in [
        "Labour Temple",
        f"Receipt number R-{started.reference}",
        f"Booking reference {started.reference}",
        "Ava Nguyen",
        "Boardroom, Labour Temple",
        "Mon 9 Mar 2026 10:00–12:00 Booked $90.00",
        "Tue 10 Mar 2026 10:00–12:00 Booked $90.00",
        "Wed 11 Mar 2026 10:00–12:00 Booked $90.00",
        "Subtotal $270.00",
        "Multi-day discount (10 %) -$27.00",
        "Total $243.00",
        f"Paid by {CARD}, Mon 2 Mar 2026 09:00 $243.00",
        "Net paid $243.00",
    ]:
        assert shown(expected) in text, expected
    assert "Refunded" not in text


def test_totals_are_right_after_a_partial_cancellation(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request, dates=THREE_DAYS)
    tuesday = legs(svc, started.booking_id)[1]
    svc.clock.advance(hours=3)
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk@sandbox", leg_ids=[tuesday.id], reason="Flu")
    text = pdf_text(booking_receipt_pdf(svc, started.booking_id)[1])
    assert shown("Tue 10 Mar 2026 10:00–12:00 Cancelled ($81.00 back) $90.00") in text
    assert "Total $243.00" in text
    assert (
        "Refunded Mon 2 Mar 2026 12:00: Cancellation, refunded under the booking's cancellation policy -$81.00" in text
    )
    assert "Net paid $162.00" in text


def test_a_refund_receipt_says_how_much_why_which_days_and_from_which_payment(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request, dates=THREE_DAYS)
    days = legs(svc, started.booking_id)
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk@sandbox", leg_ids=[days[2].id], reason="Flu")
    bk.cancel_booking(svc, started.booking_id, actor="frontdesk@sandbox", leg_ids=[days[0].id], reason="Moved")
    first, second = sorted(refunds(svc, started.booking_id), key=lambda r: r.id or 0)
    name, data = refund_receipt_pdf(svc, second.id or 0)
    text = pdf_text(data)
    assert name == f"refund-{started.reference}-2.pdf"
    for expected in [
        f"Refund receipt number RF-{started.reference}-2",
        "Amount refunded $81.00",
        f"Refunded to {CARD}",
        "Why Cancellation, refunded under the booking's cancellation policy",
        "Reason given Moved",
        f"Stripe refund {second.refund_id}",
        "Mon 9 Mar 2026 10:00–12:00 Cancelled ($81.00 back) $81.00",
        "Paid by",
        "$243.00",
        "Refunded up to and including this refund -$162.00",
        "Net paid after this refund $81.00",
    ]:
        assert shown(expected) in text, expected
    assert "Wed 11 Mar 2026" not in text  # the first refund's day is not this one's
    assert "Net paid after this refund $162.00" in pdf_text(refund_receipt_pdf(svc, first.id or 0)[1])


def test_a_stripe_dashboard_refund_covers_no_particular_day(svc: Any, booking_request: Any) -> None:
    from services.web.webhooks import on_charge_refunded

    started = paid(svc, booking_request)
    svc.payments.refund(started.payment_intent, amount_cents=2500, reason="goodwill", idempotency_key="dash-1")
    on_charge_refunded(svc, {"payment_intent": started.payment_intent}, "stripe-webhook", svc.now())
    (refund,) = refunds(svc, started.booking_id)
    text = pdf_text(refund_receipt_pdf(svc, refund.id or 0)[1])
    assert "Amount refunded $25.00" in text and "Refund made in the Stripe dashboard" in text
    assert "Not tied to particular days" in text and "Net paid after this refund $65.00" in text


def test_without_stripe_the_receipt_still_prints_from_our_records(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request)
    svc.payments.faults.fail("retrieve_payment_intent")
    text = pdf_text(booking_receipt_pdf(svc, started.booking_id)[1])
    assert shown("Paid by Card, Mon 2 Mar 2026 09:00 $90.00") in text and "Net paid $90.00" in text


def test_nothing_paid_means_no_receipt(svc: Any, booking_request: Any) -> None:
    started = bk.start_booking(svc, booking_request(), actor="customer")
    with pytest.raises(InvalidState, match="has not been paid"):
        booking_receipt_pdf(svc, started.booking_id)
    with pytest.raises(NotFound):
        refund_receipt_pdf(svc, 999)


def test_the_same_booking_gives_the_same_bytes(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request, customer_name="Łukasz O’Brien–Smith")
    assert booking_receipt_pdf(svc, started.booking_id) == booking_receipt_pdf(svc, started.booking_id)
