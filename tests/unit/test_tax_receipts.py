"""Receipts with tax, read back from their PDFs: the GST on every receipt of a taxed booking, CRA's items at the $100
and $500 thresholds (tax included), a registration number that is owed but not set said plainly, refunds with the
tax they give back, and nothing about tax on a booking sold without it.

Totals land exactly on a threshold with the Quiet Room for one hour at a chosen price: a net of $95.23 carries
476.15 ¢ → 476 ¢ of GST ($99.99), $95.24 → $100.00, $476.19 → 2380.95 ¢ → 2381 ¢ ($500.00)."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
from sqlmodel import select

from models.tables import Booking, RefundRecord
from services import booking as bk
from services.finance.receipts import NOT_ON_FILE, booking_receipt_check, booking_receipt_pdf, refund_receipt_pdf
from tests import tax_settings
from tests.unit.test_receipts import CARD, legs, pdf_text, shown
from tests.unit.test_tax_quotes import priced

THREE_DAYS = (date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11))
NUMBER = tax_settings.REGISTRATION


@pytest.fixture
def gst(make_services: Any) -> Any:
    return make_services(**tax_settings.gst())


def paid(svc: Any, booking_request: Any, **kw: Any) -> bk.StartResult:
    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    return started


def quiet_hour(svc: Any, booking_request: Any, hourly_cents: int) -> bk.StartResult:
    """The Quiet Room, Wed 4 Mar 10:00–11:00, sold at `hourly_cents` an hour, paid."""
    priced(svc, "quiet-room", hourly_cents)
    return paid(svc, booking_request, room="quiet-room", start=time(10), end=time(11))


def amount(svc: Any, booking_id: int) -> int:
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        return b.amount_cents


# --------------------------------------------------------------------------------------------- CRA's thresholds


@pytest.mark.parametrize(
    ("hourly_cents", "total", "tax", "with_number", "with_details"),
    [
        (9_523, "$99.99", "$4.76", False, False),
        (9_524, "$100.00", "$4.76", True, False),
        (47_619, "$500.00", "$23.81", True, True),
    ],
)
def test_a_receipt_shows_what_cra_asks_at_its_total(
    gst: Any, booking_request: Any, hourly_cents: int, total: str, tax: str, with_number: bool, with_details: bool
) -> None:
    started = quiet_hour(gst, booking_request, hourly_cents)
    assert f"${amount(gst, started.booking_id) / 100:,.2f}" == total  # the gross lands exactly on the threshold
    text = pdf_text(booking_receipt_pdf(gst, started.booking_id)[1])
    assert f"GST 5 % {tax}" in text and f"Total {total}" in text  # the GST amount and rate: always
    assert "Ava Nguyen" in text  # the buyer's name is on every receipt
    assert (f"GST/HST registration no. {NUMBER}" in text) is with_number
    assert (shown("Supply Hire of the Quiet Room at Labour Temple, 1 day: Wed 4 Mar 2026 10:00–11:00") in text) is (
        with_details
    )
    assert ("Payment terms Paid in full by card on Mon 2 Mar 2026" in text) is with_details
    assert booking_receipt_check(gst, started.booking_id).problems == ()


def test_a_registration_number_owed_but_not_set_is_said_on_the_receipt_and_to_staff(
    make_services: Any, booking_request: Any
) -> None:
    svc = make_services(tax_rates=tax_settings.GST_ONLY)  # registered for GST, the number never entered
    small = quiet_hour(svc, booking_request, 9_523)
    assert booking_receipt_check(svc, small.booking_id).problems == ()  # $99.99: no number needed
    assert "registration" not in pdf_text(booking_receipt_pdf(svc, small.booking_id)[1])

    priced(svc, "quiet-room", 9_524)
    big = paid(svc, booking_request, room="quiet-room", start=time(13), end=time(14), customer_email="bo@example.org")
    assert amount(svc, big.booking_id) == 10_000
    text = pdf_text(booking_receipt_pdf(svc, big.booking_id)[1])
    assert f"GST/HST registration no. {NOT_ON_FILE}" in text
    (problem,) = booking_receipt_check(svc, big.booking_id).problems
    assert "This receipt is $100.00 (tax included)" in problem and "GST_REGISTRATION_NUMBER" in problem


def test_a_booking_sold_without_tax_has_no_tax_line_and_asks_for_no_number(svc: Any, booking_request: Any) -> None:
    started = quiet_hour(svc, booking_request, 47_619)  # $476.19 with no tax
    text = pdf_text(booking_receipt_pdf(svc, started.booking_id)[1])
    assert "Total $476.19" in text
    assert "GST" not in text and "tax" not in text.lower() and "Subtotal" not in text
    assert booking_receipt_check(svc, started.booking_id).problems == ()


# --------------------------------------------------------------------------------------------- the figures


def test_a_one_day_receipt_gives_subtotal_gst_and_total(gst: Any, booking_request: Any) -> None:
    started = paid(gst, booking_request)  # Boardroom, Wed 4 Mar 10:00–12:00 at $45/h
    text = pdf_text(booking_receipt_pdf(gst, started.booking_id)[1])
    for expected in [
        "Wed 4 Mar 2026 10:00–12:00 Booked $90.00",
        "Subtotal $90.00",
        "GST 5 % $4.50",
        "Total $94.50",
        f"Paid by {CARD}, Mon 2 Mar 2026 09:00 $94.50",
        "Net paid (including GST 5 % $4.50) $94.50",
        "Amounts in CAD; totals, payments and refunds include tax.",
    ]:
        assert shown(expected) in text, expected
    assert "Multi-day discount" not in text


def test_a_three_day_discounted_receipt_and_a_cancelled_day_give_back_exactly_its_gst(
    gst: Any, booking_request: Any
) -> None:
    """$45.50/h × 2 h: each day $91.00 before tax, 10 % off, 410 ¢ of GST (409.5 rounded on the day), $86.00."""
    priced(gst, "boardroom", 4550)
    started = paid(gst, booking_request, dates=THREE_DAYS)
    text = pdf_text(booking_receipt_pdf(gst, started.booking_id)[1])
    for expected in [
        "Mon 9 Mar 2026 10:00–12:00 Booked $91.00",
        "Subtotal $273.00",
        "Multi-day discount (10 %) -$27.30",
        "GST 5 % $12.30",  # 3 × 410 ¢, not 5 % of $245.70
        "Total $258.00",
    ]:
        assert shown(expected) in text, expected

    tuesday = legs(gst, started.booking_id)[1]
    assert (tuesday.price_cents, tuesday.tax_cents) == (8600, 410)
    gst.clock.advance(hours=3)
    bk.cancel_booking(gst, started.booking_id, actor="frontdesk@sandbox", leg_ids=[tuesday.id], reason="Flu")
    text = pdf_text(booking_receipt_pdf(gst, started.booking_id)[1])
    assert (
        "Refunded Mon 2 Mar 2026 12:00: Cancellation, refunded under the booking's cancellation policy "
        "(including GST 5 % $4.10) -$86.00" in text
    )
    assert "Net paid (including GST 5 % $8.20) $172.00" in text

    with gst.session() as s:
        (refund,) = s.exec(select(RefundRecord).where(RefundRecord.booking_id == started.booking_id)).all()
    refund_text = pdf_text(refund_receipt_pdf(gst, refund.id or 0)[1])
    assert "Amount refunded $86.00" in refund_text
    assert "Tax refunded GST 5 % $4.10 (included in the amount refunded)" in refund_text
    assert f"GST/HST registration no. {NUMBER}" in refund_text  # the booking's total is over $100


def test_a_partial_refund_reverses_a_proportional_share_of_the_gst(gst: Any, booking_request: Any) -> None:
    from services.web.webhooks import on_charge_refunded

    started = paid(gst, booking_request)  # $94.50, of which $4.50 GST
    gst.payments.refund(started.payment_intent, amount_cents=2500, reason="goodwill", idempotency_key="dash-1")
    on_charge_refunded(gst, {"payment_intent": started.payment_intent}, "stripe-webhook", gst.now())
    with gst.session() as s:
        (refund,) = s.exec(select(RefundRecord).where(RefundRecord.booking_id == started.booking_id)).all()
    assert refund.tax_cents == 119  # 2500 × 450 / 9450 = 119.05 ¢
    text = pdf_text(refund_receipt_pdf(gst, refund.id or 0)[1])
    assert "Amount refunded $25.00" in text and "Tax refunded GST 5 % $1.19" in text
    booking_text = pdf_text(booking_receipt_pdf(gst, started.booking_id)[1])
    assert "Net paid (including GST 5 % $3.31) $69.50" in booking_text


def test_a_receipt_names_the_rate_the_booking_was_sold_at(gst: Any, booking_request: Any) -> None:
    from services.core.settings import TaxRateSetting

    started = paid(gst, booking_request)
    sixth = TaxRateSetting(code="GST", label="GST 6 %", rate_bps=600, applies_to=["room"])
    gst.settings = gst.settings.model_copy(update={"tax_rates": [sixth]})
    text = pdf_text(booking_receipt_pdf(gst, started.booking_id)[1])
    assert "GST 5 % $4.50" in text and "Total $94.50" in text and "6 %" not in text
