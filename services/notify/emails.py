"""Customer emails as text + HTML (Jinja2, HTML autoescaped) and the confirmation's `.ics` attachment.

Works on the stored rows (Booking, its BookingLegs) plus the catalogue and settings, so an email can be rendered again
at any time from what the database holds: the same booking renders to the same bytes, which keeps the calendar UIDs
and DTSTAMP stable across retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from icalendar import Calendar, Event
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from models.tables import Amendment, Booking, BookingLeg, BookingStatus
from services.core.catalogue import Catalogue
from services.core.settings import Settings
from services.rules.bill import registration_to_show, sold_bill, sold_with_tax, tax_words, taxes_inside
from services.rules.deposits import sold_terms
from services.rules.fmt import day_label, money
from services.rules.refunds import bands_from_snapshot, describe_bands

TEMPLATES = Path(__file__).resolve().parent / "templates"
KINDS = (
    "confirmation",
    "cancellation",
    "refund",
    "auto_refund",
    "pay_link",
    "reminder",
    "changed",
    "change_pay_link",
    "change_failed",
)
ICS_MIME = "text/calendar"

Attachment = tuple[str, str, bytes]  # (filename, mime type, content), as OutgoingEmail.attachments

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    # Only the .html templates escape: customer names and extras are typed by customers.
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_env.filters["money"] = money


@dataclass(frozen=True)
class ChangeNote:
    """What a change to a booking did, for its emails: the lines people read ('Wed 4 Mar 09:00–12:00 → Thu 5 Mar
    09:00–13:00'), the money, and the days it took away (cancelled in the attached calendar file)."""

    number: int
    lines: tuple[str, ...]
    charge_cents: int = 0  # the difference to pay (or paid)
    refund_cents: int = 0  # what goes back
    # The tax inside them (Amendment.tax_cents; the change's RefundRecords' tax_cents); None: not known, not shown.
    charge_tax_cents: int | None = None
    refund_tax_cents: int | None = None
    paid_total_cents: int = 0  # what the booking has been paid in all, after the change
    removed_days: tuple[date, ...] = ()


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    attachments: list[Attachment] = field(default_factory=list)


def policy_text(snapshot: dict[str, Any]) -> str:
    """The cancellation policy the booking was sold under, in words."""
    text = snapshot.get("text")
    if text:
        return str(text)
    try:
        return describe_bands(bands_from_snapshot(snapshot))
    except ValueError:
        return ""


def manage_url(settings: Settings, booking: Booking) -> str:
    """The customer's manage page (a secret link, like the pay link: the token is the booking's pay token); empty for
    a booking without one (made before customer links existed), whose emails then carry no link."""
    if not booking.pay_token:
        return ""
    return f"{settings.public_base_url.rstrip('/')}/manage/{booking.reference}?k={booking.pay_token}"


# Bookings the manage page still has something to show for: the confirmation and what is left after a cancellation.
_STANDING = (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED, BookingStatus.COMPLETED)


def _sorted(legs: Sequence[BookingLeg]) -> list[BookingLeg]:
    return sorted(legs, key=lambda leg: leg.day)


def _context(booking: Booking, legs: Sequence[BookingLeg], catalogue: Catalogue, settings: Settings) -> dict[str, Any]:
    room = catalogue.room(booking.room_slug)
    labels = {f.key: f.label for f in room.extras}
    tz = settings.tz
    # What the booking's payment charged, in parts, from its stored amounts and the rates it was sold at.
    bill = sold_bill(booking)
    days = [
        {
            "label": day_label(leg.day),
            "start": f"{leg.starts_at.astimezone(tz):%H:%M}",
            "end": f"{leg.ends_at.astimezone(tz):%H:%M}",
        }
        for leg in _sorted(legs)
    ]
    return {
        "booking": booking,
        "name": booking.customer_name,
        "reference": booking.reference,
        "room": room,
        "venue": catalogue.venue,
        "days": days,
        "days_text": ", ".join(d["label"] for d in days),
        "time": f"{booking.start_time}–{booking.end_time}",
        "currency": booking.currency,
        "paid": money(booking.amount_cents, booking.currency),
        "bill": bill,
        "bill_rows": bill.rows(booking.currency),
        "registration_number": registration_to_show(bill, settings.gst_registration_number),
        "extras": [(labels.get(k, k.replace("_", " ").capitalize()), v) for k, v in booking.extras.items()],
        "policy": policy_text(booking.policy_snapshot),
        "manage_url": manage_url(settings, booking) if booking.status in _STANDING else "",
        "self_service": settings.self_service_changes,
        "cutoff_hours": settings.self_service_cutoff_hours,
        "deposit": deposit_words(booking),
    }


def deposit_words(booking: Booking) -> str:
    """The damage deposit the booking was sold with, in one sentence for the customer ('' when none)."""
    terms = sold_terms(booking.pricing_snapshot)
    if terms is None:
        return ""
    return (
        f"This room asks a damage deposit of {money(terms.amount_cents, booking.currency)}: it is held on your card"
        f" (not taken) from {terms.hold_hours_before} h before your first day until {terms.claim_window_hours} h after"
        " your last, and released then unless the room was damaged. Your booking page shows where it stands and asks"
        " for the card if one is still needed."
    )


def render(
    kind: str,
    *,
    booking: Booking,
    legs: Sequence[BookingLeg],
    catalogue: Catalogue,
    settings: Settings,
    refund_cents: int = 0,
    reason: str = "",
    booking_stands: bool = True,
    pay_url: str = "",
    change: ChangeNote | None = None,
    hold_until: str = "",
    refund_tax_cents: int | None = None,
) -> RenderedEmail:
    """Render one customer email. `legs` are the days the email is about (booked, cancelled or refunded ones).
    `refund_tax_cents`: the tax the refund gave back (its RefundRecords' tax_cents), said beside the refund of a taxed
    booking; None when the caller does not know it (nothing is said about tax then)."""
    if kind not in KINDS:
        raise ValueError(f"unknown email kind {kind!r}")
    if kind.startswith("change") and change is None:
        raise ValueError(f"a {kind!r} email needs the change it is about")
    ctx = _context(booking, legs, catalogue, settings)
    room_name, days_text = ctx["room"].name, ctx["days_text"]
    attachments: list[Attachment] = []
    if kind == "confirmation":
        subject = f"Booking confirmed: {room_name}, {days_text}"
        attachments.append(calendar_attachment(booking, legs, catalogue))
    elif kind == "cancellation":
        subject = f"Booking cancelled: {room_name}, {days_text}"
    elif kind == "reminder":
        first = ctx["days"][0] if ctx["days"] else {"start": booking.start_time, "end": booking.end_time}
        subject = f"Reminder: {room_name}, {days_text}, {first['start']}–{first['end']}"
    elif kind == "pay_link":
        subject = f"Pay for your booking {booking.reference}: {room_name}, {days_text}"
    elif kind == "refund":
        subject = f"Refund for your booking {booking.reference}: {money(refund_cents, booking.currency)}"
    elif kind == "changed":
        subject = f"Your booking {booking.reference} has changed: {room_name}, {days_text}"
        attachments.append(calendar_attachment(booking, legs, catalogue, change))
    elif kind == "change_pay_link":
        subject = f"Pay for the change to your booking {booking.reference}"
    elif kind == "change_failed":
        subject = f"We could not make the change to your booking {booking.reference}: refunded"
    else:
        refund_cents = refund_cents or booking.amount_cents
        if refund_cents == booking.amount_cents and refund_tax_cents is None:  # its whole payment: all of its tax
            refund_tax_cents = booking.tax_cents
        subject = f"We could not confirm your booking {booking.reference}: refunded in full"
    ctx.update(refund=money(refund_cents, booking.currency), refund_cents=refund_cents, reason=reason)
    ctx["refund_tax"] = _tax_inside(booking, refund_tax_cents)
    ctx["booking_stands"] = booking_stands
    ctx["pay_url"] = pay_url
    ctx["change"] = change
    if change is not None:
        ctx["paid"] = money(change.paid_total_cents, booking.currency)
        ctx["charge"] = money(change.charge_cents, booking.currency)
        ctx["refund"] = money(change.refund_cents, booking.currency)
        ctx["charge_tax"] = _tax_inside(booking, change.charge_tax_cents)
        ctx["refund_tax"] = _tax_inside(booking, change.refund_tax_cents)
    expires = booking.hold_expires_at
    ctx["hold_until"] = hold_until or (f"{expires.astimezone(settings.tz):%a %-d %b, %H:%M}" if expires else "")
    return RenderedEmail(
        subject=subject,
        text=_env.get_template(f"{kind}.txt").render(ctx),
        html=_env.get_template(f"{kind}.html").render(ctx, subject=subject),
        attachments=attachments,
    )


def _tax_inside(booking: Booking, tax_cents: int | None) -> str:
    """'GST 5 % $3.86': the tax inside an amount of a taxed booking, named by the rates it was sold at; '' when the
    booking was sold without tax or the amount's tax is not known."""
    if tax_cents is None or not sold_with_tax(booking.tax_snapshot):
        return ""
    return tax_words(taxes_inside(tax_cents, booking.tax_snapshot), booking.currency)


def calendar_attachment(
    booking: Booking, legs: Sequence[BookingLeg], catalogue: Catalogue, change: ChangeNote | None = None
) -> Attachment:
    """`booking-<REF>.ics`: one VEVENT per day. METHOD:PUBLISH because a service account cannot invite attendees;
    the customer adds the events to their own calendar."""
    return (f"booking-{booking.reference}.ics", ICS_MIME, ics(booking, legs, catalogue, change))


def ics(booking: Booking, legs: Sequence[BookingLeg], catalogue: Catalogue, change: ChangeNote | None = None) -> bytes:
    """RFC 5545 calendar of the booked days; UIDs derive from the reference and the day, so they never change.
    After a change the days it took away come as CANCELLED, and every event carries the change's number as its
    SEQUENCE, so a calendar that imported the earlier file updates the days instead of adding new ones."""
    room = catalogue.room(booking.room_slug)
    venue = catalogue.venue
    # DTSTAMP from the booking, not the wall clock: rendering twice yields the same bytes.
    stamp = (booking.confirmed_at or booking.created_at).astimezone(UTC)
    cal = Calendar()
    cal.add("prodid", "-//Room Desk//Bookings//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    location = ", ".join(p for p in (f"{room.name}, {venue.name}", venue.address) if p)
    contact = venue.phone or venue.email
    description = f"Booking {booking.reference} for {booking.customer_name}." + (
        f"\nQuestions: {contact}" if contact else ""
    )
    for leg in _sorted(legs):
        event = Event()
        event.add("uid", f"{booking.reference}-{leg.day:%Y%m%d}@roomdesk")
        event.add("dtstamp", stamp)
        event.add("dtstart", leg.starts_at.astimezone(UTC))
        event.add("dtend", leg.ends_at.astimezone(UTC))
        event.add("summary", f"{room.name} at {venue.name} ({booking.reference})")
        event.add("location", location)
        event.add("description", description)
        event.add("status", "CONFIRMED")
        event.add("transp", "OPAQUE")
        if change is not None:
            event.add("sequence", change.number)
        cal.add_component(event)
    if change is not None:
        kept = {leg.day for leg in legs}
        for day in sorted(set(change.removed_days) - kept):
            gone = Event()
            gone.add("uid", f"{booking.reference}-{day:%Y%m%d}@roomdesk")
            gone.add("dtstamp", stamp)
            start = datetime.combine(day, time(0), tzinfo=UTC)
            gone.add("dtstart", start)
            gone.add("dtend", start)
            gone.add("summary", f"{room.name} at {venue.name} ({booking.reference}): no longer booked")
            gone.add("status", "CANCELLED")
            gone.add("sequence", change.number)
            cal.add_component(gone)
    return cal.to_ical()


# The composers: one source for every customer email, the Jinja2 templates in services/notify/templates (text and HTML).


def confirmation(
    catalogue: Catalogue, settings: Settings, booking: Booking, legs: Sequence[BookingLeg]
) -> RenderedEmail:
    return render("confirmation", booking=booking, legs=legs, catalogue=catalogue, settings=settings)


def cancellation(
    catalogue: Catalogue,
    settings: Settings,
    booking: Booking,
    legs: Sequence[BookingLeg],
    refund_cents: int,
    *,
    refund_tax_cents: int | None = None,
) -> RenderedEmail:
    """Days cancelled and what was refunded; `refund_tax_cents` the tax in that refund (its RefundRecords')."""
    return render(
        "cancellation",
        booking=booking,
        legs=legs,
        catalogue=catalogue,
        settings=settings,
        refund_cents=refund_cents,
        refund_tax_cents=refund_tax_cents,
    )


def changed(
    catalogue: Catalogue, settings: Settings, booking: Booking, legs: Sequence[BookingLeg], change: ChangeNote
) -> RenderedEmail:
    """The one email a change sends: what changed, the money, the booking as it now stands, the updated .ics."""
    return render("changed", booking=booking, legs=legs, catalogue=catalogue, settings=settings, change=change)


def change_pay_link(
    catalogue: Catalogue,
    settings: Settings,
    booking: Booking,
    legs: Sequence[BookingLeg],
    change: ChangeNote,
    pay_url: str,
    hold_until: str,
) -> RenderedEmail:
    """A change that costs more, agreed by phone: the link to pay the difference."""
    return render(
        "change_pay_link",
        booking=booking,
        legs=legs,
        catalogue=catalogue,
        settings=settings,
        change=change,
        pay_url=pay_url,
        hold_until=hold_until,
    )


def change_failed(
    catalogue: Catalogue, settings: Settings, booking: Booking, legs: Sequence[BookingLeg], change: ChangeNote
) -> RenderedEmail:
    """The difference was paid, but the room was taken before the change could be made: refunded, booking as it was."""
    return render("change_failed", booking=booking, legs=legs, catalogue=catalogue, settings=settings, change=change)


def change_number(key: str) -> int:
    """The number of the change an email's idempotency key ('<REF>-change-<n>') is about; 0 if none."""
    _, sep, tail = key.rpartition("-change-")
    return int(tail) if sep and tail.isdigit() else 0


def removed_days(change: Amendment | None) -> tuple[date, ...]:
    """The dates a change took away from the booking (dropped, or moved off): cancelled in the updated .ics."""
    if change is None:
        return ()
    return tuple(
        date.fromisoformat(row["old"]["day"])
        for row in change.plan
        if row.get("old") and (row.get("new") is None or row["new"]["day"] != row["old"]["day"])
    )


def reminder_key(reference: str, day: date) -> str:
    """The outbox idempotency key of a day's reminder: one reminder per booked day, ever."""
    return f"{reference}-reminder-{day:%Y%m%d}"


def reminder_day(key: str) -> date | None:
    """The day a reminder's idempotency key is about (None if the key is not a reminder's)."""
    _, sep, tail = key.rpartition("-reminder-")
    try:
        return date.fromisoformat(tail) if sep and len(tail) == 8 else None
    except ValueError:
        return None


def reminder(catalogue: Catalogue, settings: Settings, booking: Booking, leg: BookingLeg) -> RenderedEmail:
    """The reminder before one booked day, with the link to the manage page."""
    return render("reminder", booking=booking, legs=[leg], catalogue=catalogue, settings=settings)


def auto_refund(
    catalogue: Catalogue, settings: Settings, booking: Booking, legs: Sequence[BookingLeg]
) -> RenderedEmail:
    return render("auto_refund", booking=booking, legs=legs, catalogue=catalogue, settings=settings)


def refund(
    catalogue: Catalogue,
    settings: Settings,
    booking: Booking,
    legs: Sequence[BookingLeg],
    refund_cents: int,
    *,
    booking_stands: bool,
    refund_tax_cents: int | None = None,
) -> RenderedEmail:
    """A refund made by staff (remediation or a Stripe-side refund the customer was never told about);
    `refund_tax_cents` the tax in it (its RefundRecords')."""
    return render(
        "refund",
        booking=booking,
        legs=legs,
        catalogue=catalogue,
        settings=settings,
        refund_cents=refund_cents,
        booking_stands=booking_stands,
        refund_tax_cents=refund_tax_cents,
    )
