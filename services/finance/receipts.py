"""Receipts as PDF: one for a booking (each day, discount, what was paid and how, refunds so far, net) and one per
refund (amount, why, the days it covers, the payment it returns money from).

A booking that was changed (services/booking/change.py) may have been paid more than once: its own payment, then
the difference of each change that cost more. Its receipt lists its days as they are now at their current prices and
every payment with its date; the total paid is their sum, the net what is left after the refunds.

Built from our own rows; Stripe is asked only for the card (brand and last four digits of the PaymentIntent's
latest charge), and a receipt still prints, saying "Card", when Stripe cannot be reached. Money is integer cents
formatted with `money`; dates and times are venue time.

Tax (services/rules/tax.py, services/rules/bill.py): amounts are the stored ones, named by the rates the booking was
sold at (its tax snapshot), never worked out again at today's rates. Every receipt of a taxed booking shows each tax
with its rate and amount (GST 5 %  $4.50); a booking sold without tax shows no tax line at all. What else it shows
follows CRA's thresholds on the total paid, tax included (receipt_requirements): from $100 the venue's GST/HST
registration number; from $500 also a description of the supply (room, days, times) and the payment terms ("Paid in
full by card on …") — the buyer's name is on every receipt.

A registration number CRA requires but the venue has not set is never left out silently: the receipt prints the
line with "Not on file" (the customer sees that one is owed and can ask), and `receipt_check` reports the problem in
staff's words, which the booking view shows beside the receipt button, so staff set the number before handing the
receipt over. The same goes for a missing buyer's name from $500. A refund receipt shows the tax the refund gave back
(RefundRecord.tax_cents) and, on the same terms, the registration number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlmodel import col, select

from models.tables import Amendment, AmendmentState, Booking, BookingInvoice, BookingLeg, LegState, RefundRecord
from services.booking.queries import BookingDetail, booking_detail, invoice_of
from services.booking.refunds import booking_payments, payment_tax
from services.core.context import Services
from services.core.errors import DomainError, InvalidState, NotFound
from services.finance.pdf import Document, Letterhead
from services.rules.bill import registration_to_show, sold_bill, tax_words, taxes_inside
from services.rules.fmt import day_label, money
from services.rules.tax import ReceiptRequirements, receipt_requirements

log = logging.getLogger("roomdesk.finance.receipts")

ORIGIN_WORDS = {
    "cancellation": "Cancellation, refunded under the booking's cancellation policy",
    "amendment": "Change to the booking: the difference refunded",
    "auto_gate2": "Automatic refund: the room was taken by another booking at the moment of payment",
    "remediation": "Refund made by staff to put a problem right",
    "stripe_dashboard": "Refund made in the Stripe dashboard",
    "override": "Refund above the policy, approved by a manager and by finance",
}
LEG_WORDS = {
    LegState.DRAFT: "Not booked",
    LegState.AWAITING_PAYMENT: "Awaiting payment",
    LegState.CONFIRMED: "Booked",
    LegState.IN_PROGRESS: "In progress",
    LegState.COMPLETED: "Used",
    LegState.CANCELLED: "Cancelled",
    LegState.REFUNDED: "Cancelled, refunded",
    LegState.FAILED: "Not confirmed",
}
NOT_ON_FILE = "Not on file: ask us for it (required on receipts of $100 or more)"
CARD_BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express", "interac": "Interac"}


def origin_words(origin: str) -> str:
    """Why a refund was made, in words a customer or a bank reads."""
    return ORIGIN_WORDS.get(origin, origin.replace("_", " ").capitalize())


def full_date(d: date) -> str:
    """'Wed 4 Mar 2026': receipts and evidence outlive the year they were made in."""
    return f"{day_label(d)} {d.year}"


def venue_time(svc: Services, moment: datetime | None) -> str:
    """'Wed 4 Mar 2026 10:05' in venue time, or '—'."""
    if moment is None:
        return "—"
    local = moment.astimezone(svc.settings.tz)
    return f"{full_date(local.date())} {local:%H:%M}"


def tz_words(svc: Services) -> str:
    """'Vancouver time'."""
    return svc.settings.venue_timezone.rsplit("/", 1)[-1].replace("_", " ") + " time"


def letterhead(svc: Services) -> Letterhead:
    venue = svc.catalogue.venue
    contact = " · ".join(p for p in (venue.email, venue.phone) if p)
    return Letterhead(venue.name, tuple(p for p in (venue.address, contact) if p))


def leg_times(svc: Services, leg: BookingLeg) -> str:
    tz = svc.settings.tz
    return f"{leg.starts_at.astimezone(tz):%H:%M}–{leg.ends_at.astimezone(tz):%H:%M}"


@dataclass(frozen=True)
class Payment:
    """What Stripe says about the payment, as far as a receipt needs it."""

    received_cents: int
    method: str  # 'Visa •••• 4242', or 'Card' when unknown
    paid_at: datetime | None
    charge_id: str | None = None


def payment_of(svc: Services, booking: Booking) -> Payment | None:
    """The booking's payment from Stripe (card brand and last four from the latest charge); from our own records,
    paid by 'Card', when Stripe cannot be read; None when nothing was ever paid."""
    pi: dict[str, Any] | None = None
    if booking.payment_intent_id:
        try:
            pi = svc.payments.retrieve_payment_intent(booking.payment_intent_id)
        except DomainError as exc:
            log.warning("Receipt for %s without card details: %s", booking.reference, exc.message)
    return payment_from_intent(pi, booking)


def payment_from_intent(pi: dict[str, Any] | None, booking: Booking) -> Payment | None:
    """A PaymentIntent (latest_charge expanded) as a Payment; without one, our own record of the payment."""
    if pi is not None:
        if pi.get("status") != "succeeded":
            return None
        charge = pi.get("latest_charge") if isinstance(pi.get("latest_charge"), dict) else {}
        created = charge.get("created") if charge else None
        return Payment(
            int(pi.get("amount_received") or 0),
            card_text(charge),
            datetime.fromtimestamp(int(created), tz=UTC) if created else booking.confirmed_at,
            charge.get("id") if charge else None,
        )
    if booking.confirmed_at is None:
        return None
    return Payment(booking.amount_cents, "Card", booking.confirmed_at)


def card_text(charge: dict[str, Any] | None) -> str:
    """'Visa •••• 4242' from a Stripe Charge's payment_method_details; 'Card' when it says nothing usable."""
    card = ((charge or {}).get("payment_method_details") or {}).get("card") or {}
    brand = str(card.get("brand") or "").lower()
    name = CARD_BRANDS.get(brand, brand.replace("_", " ").title() or "Card")
    return f"{name} •••• {card['last4']}" if card.get("last4") else name


def paid_words(svc: Services, payment: Payment) -> str:
    """'Paid by Visa •••• 4242, Wed 4 Mar 2026 10:05'."""
    return f"Paid by {payment.method}" + (f", {venue_time(svc, payment.paid_at)}" if payment.paid_at else "")


@dataclass(frozen=True)
class PaidBy:
    """One payment of the booking as a receipt lists it."""

    label: str  # 'Paid by Visa •••• 4242, Wed 4 Mar 2026 10:05' or 'Change 1 paid by …'
    payment_intent_id: str
    payment: Payment


def _changes(svc: Services, booking: Booking) -> tuple[bool, dict[str, Amendment]]:
    """Whether the booking was ever changed (a change made, or paid for), and its paid changes by PaymentIntent."""
    with svc.read_session() as s:
        rows = list(s.exec(select(Amendment).where(Amendment.booking_id == booking.id).order_by(col(Amendment.number))))
    changed = any(a.paid_at is not None or a.state in (AmendmentState.APPLIED, AmendmentState.APPLYING) for a in rows)
    return changed, {a.payment_intent_id: a for a in rows if a.payment_intent_id and a.paid_at is not None}


def payments_of(svc: Services, booking: Booking, first: Payment) -> list[PaidBy]:
    """Every payment of the booking, oldest first: its own (`first`, already read) and the difference of each change
    that cost more (card and date from Stripe; from our records, by 'Card', when Stripe cannot be read)."""
    _, paid = _changes(svc, booking)
    out = [PaidBy(paid_words(svc, first), booking.payment_intent_id or "", first)]
    with svc.read_session() as s:
        payments = booking_payments(s, booking)
    for pi_id, amount in payments:
        change = paid.get(pi_id)
        if change is None:
            continue
        intent: dict[str, Any] | None = None
        try:
            intent = svc.payments.retrieve_payment_intent(pi_id)
        except DomainError as exc:
            log.warning("Receipt for %s without card details of change %s: %s", booking.reference, pi_id, exc.message)
        got = payment_from_intent(intent, booking) if intent is not None else None
        if got is None:
            got = Payment(amount, "Card", change.paid_at)
        words = paid_words(svc, got)
        out.append(PaidBy(f"Change {change.number}: {words[:1].lower()}{words[1:]}", pi_id, got))
    return out


def _paid_detail(svc: Services, booking_id: int) -> tuple[BookingDetail, Payment]:
    detail = booking_detail(svc, booking_id, live=False)
    payment = payment_of(svc, detail.booking)
    if payment is None and not detail.refunds:
        raise InvalidState(f"Booking {detail.booking.reference} has not been paid, so there is no receipt to give")
    if payment is None:  # refunded, so it was paid: Stripe's answer was odd, our records stand
        payment = Payment(detail.booking.amount_cents, "Card", detail.booking.confirmed_at)
    return detail, payment


def list_prices(booking: Booking, legs: Sequence[BookingLeg]) -> list[int]:
    """Each day's price before the multi-day discount and before tax: the discount was taken off every day alike,
    and the tax added to each day's net after it."""
    if not legs:
        return []
    share, left = divmod(booking.discount_cents, len(legs))
    return [leg.price_cents - leg.tax_cents + share + (1 if i < left else 0) for i, leg in enumerate(legs)]


@dataclass(frozen=True)
class ReceiptCheck:
    """What CRA asks of a booking's receipt at its total paid (tax included), and what is missing, for staff."""

    total_cents: int
    taxed: bool  # sold with tax (a non-empty tax snapshot)
    needs: ReceiptRequirements
    registration_number: str | None  # the one recorded at the sale, else the one configured now
    problems: tuple[str, ...]  # staff's words: what to put right before the receipt is handed over

    @property
    def shows_number(self) -> bool:
        """The receipt has a registration number line (the number, or 'Not on file')."""
        return self.taxed and self.needs.registration_number


def receipt_check(svc: Services, booking: Booking, total_cents: int) -> ReceiptCheck:
    """CRA's items for a receipt of `total_cents` (tax included) of this booking, and what the venue lacks for them."""
    needs = receipt_requirements(total_cents)
    bill = sold_bill(booking)
    number = registration_to_show(bill, svc.tax.registration_number)
    problems: list[str] = []
    if bill.taxed and needs.registration_number and not number:
        problems.append(
            f"This receipt is {money(total_cents, booking.currency)} (tax included): from $100 CRA requires the "
            "venue's GST/HST registration number on it, and none is set. Set GST_REGISTRATION_NUMBER before handing "
            "it over; until then the receipt says the number is not on file."
        )
    if needs.buyer_name and not booking.customer_name.strip():
        problems.append(
            f"This receipt is {money(total_cents, booking.currency)} (tax included): from $500 CRA requires the "
            "buyer's name on it, and the booking has none. Add it with Edit details."
        )
    return ReceiptCheck(total_cents, bill.taxed, needs, number, tuple(problems))


def booking_receipt_check(svc: Services, booking_id: int) -> ReceiptCheck:
    """receipt_check on what the booking has been paid in all, from our own records (no Stripe call)."""
    with svc.read_session() as s:
        booking = s.get(Booking, booking_id)
        if booking is None:
            raise NotFound(f"No booking #{booking_id}")
        total = sum(amount for _, amount in booking_payments(s, booking))
        return receipt_check(svc, booking, total)


def supply_text(svc: Services, room_name: str, legs: Sequence[BookingLeg]) -> str:
    """'Hire of the Boardroom at Labour Temple, 2 days: Mon 9 Mar 2026 10:00–12:00; Tue 10 Mar 2026 10:00–12:00'."""
    days = "; ".join(f"{full_date(leg.day)} {leg_times(svc, leg)}" for leg in legs)
    count = f"{len(legs)} day{'s' if len(legs) != 1 else ''}"
    return f"Hire of the {room_name} at {svc.catalogue.venue.name}, {count}: {days}"


def terms_text(svc: Services, paid: Sequence[Payment], invoice: BookingInvoice | None = None) -> str:
    """'Paid in full by card on Mon 2 Mar 2026' (and the dates of the changes paid for since); a booking paid by
    invoice: 'Paid in full on invoice SBX-0003 (net 14) on …'."""
    dates: list[str] = []
    for p in paid:
        when = full_date(p.paid_at.astimezone(svc.settings.tz).date()) if p.paid_at else "—"
        if when not in dates:
            dates.append(when)
    how = f"on invoice {invoice.number or ''} (net {invoice.terms_days})".replace("  ", " ") if invoice else "by card"
    return f"Paid in full {how} on " + " and ".join(dates)


def _cra_fields(
    svc: Services,
    check: ReceiptCheck,
    room_name: str,
    legs: Sequence[BookingLeg],
    paid: Sequence[Payment],
    invoice: BookingInvoice | None = None,
) -> list[tuple[str, str]]:
    """The label/value lines CRA's thresholds add to a receipt."""
    out: list[tuple[str, str]] = []
    if check.shows_number:
        out.append(("GST/HST registration no.", check.registration_number or NOT_ON_FILE))
    if check.needs.description:
        out.append(("Supply", supply_text(svc, room_name, legs)))
    if check.needs.payment_terms:
        out.append(("Payment terms", terms_text(svc, paid, invoice)))
    return out


def _days_table(
    svc: Services, doc: Document, booking: Booking, legs: Sequence[BookingLeg], prices: Sequence[int], heading: str
) -> None:
    cur = booking.currency
    rows: list[list[object]] = []
    for leg, price in zip(legs, prices, strict=True):
        state = LEG_WORDS.get(LegState(leg.state), leg.state)
        if leg.refunded_cents:
            state += f" ({money(leg.refunded_cents, cur)} back)"
        rows.append([full_date(leg.day), leg_times(svc, leg), state, money(price, cur)])
    doc.table(["Day", "Time", "Status", heading], rows, (30, 18, 34, 18), align=("LEFT", "LEFT", "LEFT", "RIGHT"))


def booking_receipt_pdf(svc: Services, booking_id: int) -> tuple[str, bytes]:
    """The booking's receipt as (file name, PDF bytes). InvalidState when nothing was paid, NotFound if absent."""
    detail, payment = _paid_detail(svc, booking_id)
    b, cur = detail.booking, detail.booking.currency
    now = svc.now()
    changed, _ = _changes(svc, b)
    paid = payments_of(svc, b, payment) if changed else [PaidBy(paid_words(svc, payment), "", payment)]
    with svc.read_session() as s:
        taxes_paid = payment_tax(s, b)
        total_paid = sum(amount for _, amount in booking_payments(s, b))
    check = receipt_check(svc, b, total_paid)
    doc = Document(
        "Receipt",
        letterhead=letterhead(svc),
        generated_at=now,
        footer=f"Receipt R-{b.reference} · {svc.catalogue.venue.name}",
    )
    doc.fields(
        [
            ("Receipt number", f"R-{b.reference}"),
            ("Issued", venue_time(svc, now)),
            ("Booking reference", b.reference),
            ("Customer", "\n".join(p for p in (b.customer_name, b.customer_email, b.customer_phone) if p)),
            ("Room", f"{detail.room_name}, {svc.catalogue.venue.name}"),
            ("Booked", venue_time(svc, b.created_at)),
            *_cra_fields(
                svc,
                check,
                detail.room_name,
                detail.legs,
                [p.payment for p in paid],
                invoice_of(svc, detail.booking.id or 0),
            ),
        ]
    )
    doc.heading("Days booked")
    lines: list[list[object]] = []
    if changed:
        # Changed since the sale: each day at its price now (any discount and its tax are in it), then every payment.
        _days_table(svc, doc, b, detail.legs, [leg.price_cents for leg in detail.legs], "Price")
        lines += [[p.label, money(p.payment.received_cents, cur)] for p in paid]
        total = sum(p.payment.received_cents for p in paid)
        lines.append(["Total paid", money(total, cur)])
        tax_paid = sum(taxes_paid.get(p.payment_intent_id, (0, 0))[1] for p in paid)
        lines += [[f"{t.label} included", money(t.cents, cur)] for t in taxes_inside(tax_paid, b.tax_snapshot)]
    else:
        bill = sold_bill(b)
        heading = "Price before tax" if bill.taxes else "Price"
        _days_table(svc, doc, b, detail.legs, list_prices(b, detail.legs), heading)
        lines += [[label, amount] for label, amount in bill.rows(cur)]
        lines.append([paid_words(svc, payment), money(payment.received_cents, cur)])
        total, tax_paid = payment.received_cents, b.tax_cents
    for r in detail.refunds:
        words = f"Refunded {venue_time(svc, r.created_at)}: {origin_words(r.origin)}"
        if tax := tax_words(taxes_inside(r.tax_cents, b.tax_snapshot), cur):
            words += f" (including {tax})"
        lines.append([words, money(-r.amount_cents, cur)])
    net_tax = tax_words(taxes_inside(tax_paid - sum(r.tax_cents for r in detail.refunds), b.tax_snapshot), cur)
    net_words = f"Net paid (including {net_tax})" if net_tax else "Net paid"
    lines.append([net_words, money(total - detail.refunded_cents, cur)])
    doc.heading("Payment")
    doc.table(["", "Amount"], lines, (82, 18), align=("LEFT", "RIGHT"), emphasise_last=True)
    doc.note(
        f"Times are {tz_words(svc)}. Amounts in {cur}"
        + ("; totals, payments and refunds include tax" if check.taxed else "")
        + ". Refunds go back to the card paid with and take 5–10 business days to appear on the statement."
    )
    return f"receipt-{b.reference}.pdf", doc.output()


def refund_receipt_pdf(svc: Services, refund_record_id: int) -> tuple[str, bytes]:
    """One refund's receipt as (file name, PDF bytes). NotFound if there is no such refund record."""
    with svc.read_session() as s:
        refund = s.get(RefundRecord, refund_record_id)
        if refund is None:
            raise NotFound(f"No refund #{refund_record_id}")
        booking_id = refund.booking_id
    detail, payment = _paid_detail(svc, booking_id)
    b, cur = detail.booking, refund.currency or detail.booking.currency
    number = f"RF-{b.reference}-{next(i for i, r in enumerate(detail.refunds, 1) if r.id == refund.id)}"
    covered = [leg for leg in detail.legs if leg.id in set(refund.leg_ids)]
    paid = payments_of(svc, b, payment)
    # The refund went back to the card of the payment it was made on (a changed booking may have more than one).
    refunded_to = next((p for p in paid if p.payment_intent_id == refund.payment_intent_id), paid[0])
    so_far = sum(r.amount_cents for r in detail.refunds if (r.created_at, r.id or 0) <= (refund.created_at, refund.id))
    check = booking_receipt_check(svc, booking_id)
    tax_back = tax_words(taxes_inside(refund.tax_cents, b.tax_snapshot), cur)
    doc = Document(
        "Refund receipt",
        letterhead=letterhead(svc),
        generated_at=refund.created_at,
        footer=f"Refund receipt {number} · {svc.catalogue.venue.name}",
    )
    doc.fields(
        [
            ("Refund receipt number", number),
            ("Refund date", venue_time(svc, refund.created_at)),
            ("Amount refunded", money(refund.amount_cents, cur)),
            *([("Tax refunded", f"{tax_back} (included in the amount refunded)")] if tax_back else []),
            ("Refunded to", refunded_to.payment.method),
            ("Why", origin_words(refund.origin)),
            ("Reason given", refund.reason or "—"),
            ("Booking reference", b.reference),
            ("Customer", "\n".join(p for p in (b.customer_name, b.customer_email) if p)),
            ("Room", f"{detail.room_name}, {svc.catalogue.venue.name}"),
            ("Stripe refund", refund.refund_id),
            *([("GST/HST registration no.", check.registration_number or NOT_ON_FILE)] if check.shows_number else []),
        ]
    )
    doc.heading("Days this refund covers")
    if covered:
        _days_table(svc, doc, b, covered, [leg.price_cents for leg in covered], "Paid")
    else:
        doc.paragraph("Not tied to particular days: a refund on the booking as a whole.", muted=True)
    total = sum(p.payment.received_cents for p in paid)
    rows: list[list[object]] = [[p.label, money(p.payment.received_cents, cur)] for p in paid]
    if len(paid) > 1:
        rows.append(["Total paid", money(total, cur)])
    doc.heading("Original payment" if len(paid) == 1 else "Payments")
    doc.table(
        ["", "Amount"],
        [
            *rows,
            ["Refunded up to and including this refund", money(-so_far, cur)],
            ["Net paid after this refund", money(total - so_far, cur)],
        ],
        (82, 18),
        align=("LEFT", "RIGHT"),
        emphasise_last=True,
    )
    doc.note("Refunds take 5–10 business days to appear on the card statement.")
    return f"refund-{number.removeprefix('RF-')}.pdf", doc.output()
