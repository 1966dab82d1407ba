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
from services.rules.refunds import describe_bands
from services.rules.timefmt import day_label, money
from services.settings import Settings


def queue(
    session: Session, booking: Booking, *, kind: str, subject: str, text: str, key: str, now: datetime
) -> EmailOutbox:
    """Add an email to the outbox once per idempotency key."""
    existing = session.exec(select(EmailOutbox).where(EmailOutbox.idempotency_key == key)).first()
    if existing:
        return existing
    row = EmailOutbox(
        booking_id=booking.id,
        kind=kind,
        to=booking.customer_email,
        subject=subject,
        text=text,
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
    settings: Settings | None = None,
) -> bool:
    """Try to send one queued email; records the outcome on the row and in the audit log. A confirmation goes out
    with its HTML part and the .ics of the booked days, rendered from the booking as it stands when sent (a service
    account cannot invite attendees, so the calendar file is how the customer gets the days into their calendar)."""
    if row.status == "sent":
        return True
    booking = session.get(Booking, row.booking_id) if row.booking_id else None
    html, attachments = row.html, []
    if row.kind == "confirmation" and booking is not None and catalogue is not None and settings is not None:
        legs = [
            leg
            for leg in session.exec(select(BookingLeg).where(BookingLeg.booking_id == booking.id))
            if leg.state in ACTIVE_LEG_STATES
        ]
        rendered = email_render.render(
            "confirmation", booking=booking, legs=legs, catalogue=catalogue, settings=settings
        )
        html, attachments = rendered.html, list(rendered.attachments)
    row.attempts += 1
    try:
        row.message_id = mail.send(
            OutgoingEmail(
                to=row.to,
                subject=row.subject,
                text=row.text,
                html=html,
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


def _days(legs: Sequence[BookingLeg]) -> str:
    return ", ".join(day_label(leg.day) for leg in sorted(legs, key=lambda x: x.day))


def confirmation(catalogue: Catalogue, booking: Booking, legs: Sequence[BookingLeg]) -> tuple[str, str]:
    room = catalogue.room(booking.room_slug)
    venue = catalogue.venue
    bands = booking.policy_snapshot.get("text") or ""
    extras = "".join(f"\n  {k.replace('_', ' ').capitalize()}: {v}" for k, v in booking.extras.items())
    text = (
        f"Hello {booking.customer_name},\n\n"
        f"Your booking {booking.reference} is confirmed.\n\n"
        f"  Room: {room.name}\n  Days: {_days(legs)}\n  Time: {booking.start_time}–{booking.end_time}\n"
        f"  Paid: {money(booking.amount_cents, booking.currency)}{extras}\n\n"
        f"Where: {venue.name}, {venue.address}\n\n"
        f"Cancellation policy: {bands}\n\n"
        f"Questions? Reply to this email or call {venue.phone}.\n"
    )
    return f"Booking confirmed: {room.name}, {_days(legs)}", text


def cancellation(
    catalogue: Catalogue, booking: Booking, legs: Sequence[BookingLeg], refund_cents: int
) -> tuple[str, str]:
    room = catalogue.room(booking.room_slug)
    refund = (
        f"We have refunded {money(refund_cents, booking.currency)} to your card; it appears in 5–10 days."
        if refund_cents
        else "Under the cancellation policy no refund is due for these days."
    )
    text = (
        f"Hello {booking.customer_name},\n\n"
        f"We have cancelled {room.name} on {_days(legs)} ({booking.start_time}–{booking.end_time}), "
        f"booking {booking.reference}.\n\n{refund}\n\n— {catalogue.venue.name}\n"
    )
    return f"Booking cancelled: {room.name}, {_days(legs)}", text


def auto_refund(catalogue: Catalogue, booking: Booking, legs: Sequence[BookingLeg]) -> tuple[str, str]:
    room = catalogue.room(booking.room_slug)
    text = (
        f"Hello {booking.customer_name},\n\n"
        f"We are sorry: the {room.name} on {_days(legs)} was taken at the moment of your payment, so we could not "
        f"confirm booking {booking.reference}. Your card is refunded in full "
        f"({money(booking.amount_cents, booking.currency)}); it appears in 5–10 days.\n\n"
        f"Reply to this email or call {catalogue.venue.phone} and we will help you find another time.\n\n"
        f"— {catalogue.venue.name}\n"
    )
    return f"We could not confirm your booking {booking.reference}: refunded in full", text


def policy_text(snapshot: dict[str, object]) -> str:
    from services.rules.refunds import bands_from_snapshot

    return str(snapshot.get("text") or describe_bands(bands_from_snapshot(snapshot)))


def refund(
    catalogue: Catalogue, booking: Booking, legs: Sequence[BookingLeg], refund_cents: int, *, booking_stands: bool
) -> tuple[str, str]:
    """A refund made by staff (remediation or a Stripe-side refund the customer was never told about)."""
    room = catalogue.room(booking.room_slug)
    after = (
        "Your booking itself stands as it is."
        if booking_stands
        else f"Reply to this email or call {catalogue.venue.phone} and we will help you find another time."
    )
    text = (
        f"Hello {booking.customer_name},\n\n"
        f"We have refunded {money(refund_cents, booking.currency)} for booking {booking.reference} "
        f"({room.name}, {_days(legs)}, {booking.start_time}–{booking.end_time}); it appears on your card in 5–10 "
        f"days.\n\n{after}\n\n— {catalogue.venue.name}\n"
    )
    return f"Refund for your booking {booking.reference}: {money(refund_cents, booking.currency)}", text
