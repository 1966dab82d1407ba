"""Customer emails through an outbox: a row is written first, then sent; a mail outage leaves it queued, never lost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, select

from models.tables import ACTIVE_LEG_STATES, Booking, BookingLeg, EmailOutbox
from services import audit, email_render
from services.catalogue import Catalogue
from services.errors import GatewayError
from services.gateways.base import MailGateway, OutgoingEmail
from services.settings import Settings


def queue(
    session: Session, booking: Booking, *, kind: str, mail: email_render.RenderedEmail, key: str, now: datetime
) -> EmailOutbox:
    """Add an email to the outbox once per idempotency key."""
    existing = session.exec(select(EmailOutbox).where(EmailOutbox.idempotency_key == key)).first()
    if existing:
        return existing
    row = EmailOutbox(
        booking_id=booking.id,
        kind=kind,
        to=booking.customer_email,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        idempotency_key=key,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def deliver(
    session: Session,
    mail: MailGateway,
    row: EmailOutbox,
    *,
    now: datetime,
    actor: str = "system",
    catalogue: Catalogue | None = None,
) -> bool:
    """Try to send one queued email; records the outcome on the row and in the audit log. A confirmation goes out
    with the .ics of the booked days as they stand when sent (a service account cannot invite attendees, so the
    calendar file is how the customer gets the days into their calendar)."""
    if row.status == "sent":
        return True
    booking = session.get(Booking, row.booking_id) if row.booking_id else None
    attachments = []
    if row.kind == "confirmation" and booking is not None and catalogue is not None:
        legs = [
            leg
            for leg in session.exec(select(BookingLeg).where(BookingLeg.booking_id == booking.id))
            if leg.state in ACTIVE_LEG_STATES
        ]
        attachments.append(email_render.calendar_attachment(booking, legs, catalogue))
    row.attempts += 1
    try:
        row.message_id = mail.send(
            OutgoingEmail(
                to=row.to,
                subject=row.subject,
                text=row.text,
                html=row.html,
                kind=row.kind,
                booking_id=row.booking_id,
                idempotency_key=row.idempotency_key,
                attachments=attachments,
            )
        )
    except GatewayError as exc:
        row.status = "failed"
        row.last_error = exc.message[:500]
        audit.record(
            session,
            f"email.{row.kind}.failed",
            actor=actor,
            at=now,
            booking=booking,
            error=exc.message,
            message=f"{row.kind.capitalize()} email failed",
        )
        return False
    row.status = "sent"
    row.sent_at = now
    row.last_error = None
    if booking is not None and row.kind == "confirmation":
        booking.confirmation_sent_at = now
    audit.record(session, f"email.{row.kind}.sent", actor=actor, at=now, booking=booking, to=row.to)
    return True


# The composers: one source for every customer email, the Jinja2 templates in services/templates/email (text and HTML).


def confirmation(
    catalogue: Catalogue, settings: Settings, booking: Booking, legs: Sequence[BookingLeg]
) -> email_render.RenderedEmail:
    return email_render.render("confirmation", booking=booking, legs=legs, catalogue=catalogue, settings=settings)


def cancellation(
    catalogue: Catalogue, settings: Settings, booking: Booking, legs: Sequence[BookingLeg], refund_cents: int
) -> email_render.RenderedEmail:
    return email_render.render(
        "cancellation", booking=booking, legs=legs, catalogue=catalogue, settings=settings, refund_cents=refund_cents
    )


def auto_refund(
    catalogue: Catalogue, settings: Settings, booking: Booking, legs: Sequence[BookingLeg]
) -> email_render.RenderedEmail:
    return email_render.render("auto_refund", booking=booking, legs=legs, catalogue=catalogue, settings=settings)


def refund(
    catalogue: Catalogue,
    settings: Settings,
    booking: Booking,
    legs: Sequence[BookingLeg],
    refund_cents: int,
    *,
    booking_stands: bool,
) -> email_render.RenderedEmail:
    """A refund made by staff (remediation or a Stripe-side refund the customer was never told about)."""
    return email_render.render(
        "refund",
        booking=booking,
        legs=legs,
        catalogue=catalogue,
        settings=settings,
        refund_cents=refund_cents,
        booking_stands=booking_stands,
    )
