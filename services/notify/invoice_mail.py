"""The pay-by-invoice emails (services.booking.invoices sends them) to the organisation's billing contact: the booking
held on invoice (Stripe emails the invoice itself; this says what it is for and until when the days are held) and
the reminder once the invoice is past due. Text + HTML from templates/invoice_*.txt|html, queued through the outbox
once per idempotency key: `<REF>-invoice-held`, `<REF>-invoice-overdue-<due date>` (an extension allows another).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlmodel import Session

from models.tables import Booking, BookingInvoice, BookingLeg, EmailOutbox
from services.core.context import Services
from services.notify import outbox
from services.notify.emails import TEMPLATES, RenderedEmail
from services.rules.fmt import day_label, local, money

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    # Organisation and contact names are typed by people: the HTML escapes them.
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
KINDS = ("invoice_held", "invoice_overdue")


def render(
    kind: str, svc: Services, booking: Booking, invoice: BookingInvoice, legs: Sequence[BookingLeg]
) -> RenderedEmail:
    """One invoice email from the stored rows (rendering again gives the same text); `legs`: the days held."""
    if kind not in KINDS:
        raise ValueError(f"unknown invoice email kind {kind!r}")
    catalogue = svc.catalogue
    room = catalogue.room(booking.room_slug)
    due = day_label(local(invoice.due_at, svc.settings.tz).date())
    ctx: dict[str, Any] = {
        "name": invoice.contact_name,
        "organisation": invoice.organisation,
        "reference": booking.reference,
        "room": room,
        "venue": catalogue.venue,
        "days_text": ", ".join(day_label(leg.day) for leg in legs) or "—",
        "time": f"{booking.start_time}–{booking.end_time}",
        "amount": money(booking.amount_cents, booking.currency),
        "tax": money(booking.tax_cents, booking.currency) if booking.tax_cents else "",
        "number": invoice.number or "",
        "po_number": invoice.po_number,
        "due": due,
        "pay_url": invoice.hosted_url or "",
    }
    subject = {
        "invoice_held": f"Booking {booking.reference} held on invoice {invoice.number or ''}".rstrip()
        + f": pay by {due}",
        "invoice_overdue": f"Reminder: invoice {invoice.number or booking.reference} was due {due}",
    }[kind]
    return RenderedEmail(
        subject=subject,
        text=_env.get_template(f"{kind}.txt").render(ctx),
        html=_env.get_template(f"{kind}.html").render(ctx, subject=subject),
    )


def queue_held(
    s: Session, svc: Services, booking: Booking, invoice: BookingInvoice, legs: Sequence[BookingLeg], *, now: datetime
) -> EmailOutbox:
    mail = render("invoice_held", svc, booking, invoice, legs)
    key = f"{booking.reference}-invoice-held"
    return outbox.queue(s, booking, kind="invoice_held", mail=mail, key=key, now=now, to=invoice.billing_email)


def queue_overdue_reminder(
    s: Session, svc: Services, booking: Booking, invoice: BookingInvoice, legs: Sequence[BookingLeg], *, now: datetime
) -> EmailOutbox:
    mail = render("invoice_overdue", svc, booking, invoice, legs)
    key = f"{booking.reference}-invoice-overdue-{invoice.due_at.date().isoformat()}"
    return outbox.queue(s, booking, kind="invoice_overdue", mail=mail, key=key, now=now, to=invoice.billing_email)
