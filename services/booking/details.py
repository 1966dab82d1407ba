"""A booking's customer details: the checks a new booking and a correction share, the correction itself, and sending
the confirmation again to a corrected address (issue 12: a mistyped email could not be fixed, so the pay link and
the confirmation went nowhere)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from models.tables import ACTIVE_LEG_STATES, Booking, BookingStatus
from services.booking.events import update_event_details
from services.booking.lease import lease
from services.booking.queries import CLOSED
from services.booking.requests import BookingRequest, CustomerUpdate
from services.booking.store import booking_legs, load_booking, resolve_now, room_limits
from services.core import audit
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import InvalidState, ValidationError
from services.notify import emails, outbox
from services.rules.availability import party_size_reasons, time_form_problems
from services.rules.contact import suggest_email, validate_email

PHONE = re.compile(r"[0-9 +().-]{7,20}")
NAME_MAX = 200  # the booking's columns (models.tables.Booking)
NOTES_MAX = 2000
AUDIT_TEXT_MAX = 120  # an audit row keeps this much of a long text (notes), and its length

# Field of update_customer → the booking's column.
COLUMNS = {
    "name": "customer_name",
    "email": "customer_email",
    "phone": "customer_phone",
    "party_size": "party_size",
    "extras": "extras",
    "notes": "notes",
}


@dataclass(frozen=True)
class CustomerDetails:
    """The customer details as a booking stores them: trimmed, the email normalised, the extras cleaned."""

    name: str
    email: str
    phone: str
    party_size: int | None
    extras: dict[str, Any]
    notes: str


def check_customer(
    name: str,
    email: str,
    phone: str,
    party_size: int | None,
    extras: dict[str, Any] | None,
    room: Room,
    channel: str,
    agreement_version: str | None,
    notes: str = "",
) -> tuple[CustomerDetails, list[str]]:
    """The details cleaned, and every problem a person must fix (in the form's order) — empty when they may be
    booked. The group size is the rules' (availability.check_request), as it depends on the room."""
    clean_extras, extra_problems = room.validate_extras(extras)
    problems = [*_name_problems(name), *_email_problems(email), *_phone_problems(phone), *_extras_text_problems(extras)]
    # A phone booking may be saved before the customer knows their extras (seed incident #9 is then flagged for
    # follow-up); a web booking must carry them.
    if channel == "web" or extras:
        problems.extend(extra_problems)
    if room.agreement_required and channel == "web" and not agreement_version:
        problems.append(f"The {room.name} requires accepting the room agreement")
    problems.extend(_notes_problems(notes))
    details = CustomerDetails(name.strip(), _clean_email(email), phone.strip(), party_size, clean_extras, notes.strip())
    return details, problems


def check_request(req: BookingRequest, room: Room) -> tuple[CustomerDetails, list[str]]:
    """check_customer for a new booking's request, and its times' form (the rules check the grid and the hours)."""
    details, problems = check_customer(
        req.customer_name,
        req.customer_email,
        req.customer_phone,
        req.party_size,
        req.extras,
        room,
        req.channel,
        req.agreement_version,
        req.notes,
    )
    return details, [*time_form_problems(req.start, req.end), *problems]


class Keep(Enum):
    """A detail left as it is (where None is a value: a group size can be cleared)."""

    KEEP = "keep"


def update_customer(
    svc: Services,
    booking_id: int,
    *,
    actor: str,
    now: datetime | None = None,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    party_size: int | Keep | None = Keep.KEEP,
    extras: dict[str, Any] | None = None,
    notes: str | None = None,
) -> CustomerUpdate:
    """Correct a booking's customer details: only the fields given change (`extras` is the room's whole form;
    `party_size=None` clears a group size no longer known), held to a new booking's checks; the live days' calendar
    events follow. Raises ValidationError (every problem at once), InvalidState for a booking that is over,
    BookingBusy while another process works on it."""
    now = resolve_now(svc, now)
    asked: dict[str, Any] = {"name": name, "email": email, "phone": phone, "extras": extras, "notes": notes}
    given = {key: value for key, value in asked.items() if value is not None}
    if not isinstance(party_size, Keep):
        given["party_size"] = party_size
    with svc.session() as s:
        _checked(svc, load_booking(s, booking_id), given)  # refuse early, before taking the lease
    with lease(svc, booking_id):
        with svc.session() as s:
            booking = load_booking(s, booking_id)
            clean = _checked(svc, booking, given)  # again: it may have been cancelled meanwhile
            before = {key: getattr(booking, COLUMNS[key]) for key in clean}
            changes = {key: (before[key], after) for key, after in clean.items() if before[key] != after}
            result = CustomerUpdate(booking_id, booking.reference, changes)
            if not changes:
                return result
            for key, (_, after) in changes.items():
                setattr(booking, COLUMNS[key], after)
            booking.updated_at = now
            # Each changed field as {before, after}: what the timeline shows and what an auditor reads back.
            fields: dict[str, Any] = {k: {"before": _bounded(b), "after": _bounded(a)} for k, (b, a) in changes.items()}
            audit.record(
                s,
                "booking.customer.updated",
                actor=actor,
                at=now,
                booking=booking,
                message="Customer details corrected",
                **fields,
            )
            status = booking.status
        # Every field here is on the events (title: name; description: customer line, group size, extras, notes).
        updated, problems = update_event_details(svc, booking_id, actor=actor, now=now)
    new_email = "email" in changes
    return CustomerUpdate(
        booking_id,
        result.reference,
        changes,
        updated,
        problems,
        offer_resend=new_email and status in (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED),
        pay_link_follows=new_email and status == BookingStatus.AWAITING_PAYMENT,
    )


def resend_confirmation(svc: Services, booking_id: int, *, actor: str, now: datetime | None = None) -> tuple[str, bool]:
    """Email the confirmation again, to the address the booking has now (after a corrected email). Returns (to, sent
    now); when the mail server is down the email stays in the outbox and is retried. Once per address: a second
    click sends nothing more."""
    now = resolve_now(svc, now)
    with lease(svc, booking_id):
        with svc.session() as s:
            booking = load_booking(s, booking_id)
            if booking.status not in (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED):
                raise InvalidState(f"Booking {booking.reference} is not confirmed: there is no confirmation to send")
            legs = [leg for leg in booking_legs(s, booking_id) if leg.state in ACTIVE_LEG_STATES]
            mail = emails.confirmation(svc.catalogue, svc.settings, booking, legs)
            to = booking.customer_email
            digest = hashlib.sha256(to.encode()).hexdigest()[:12]
            row = outbox.queue(
                s, booking, kind="confirmation", mail=mail, key=f"{booking.reference}-confirmation-{digest}", now=now
            )
            audit.record(s, "booking.confirmation.resent", actor=actor, at=now, booking=booking, to=to)
            row_id = row.id
        assert row_id is not None
        sent = outbox.deliver(svc, row_id, now=now, actor=actor)
    return to, sent


# ------------------------------------------------------------------------------------------------ the checks


def _checked(svc: Services, booking: Booking, given: dict[str, Any]) -> dict[str, Any]:
    """The given fields cleaned as a new booking's would be; InvalidState or ValidationError otherwise."""
    if booking.status in CLOSED:
        raise InvalidState(
            f"Booking {booking.reference} is {booking.status.value.lower()}: its customer details can no longer be "
            "changed"
        )
    room = svc.catalogue.room(booking.room_slug)
    problems: list[str] = []
    clean: dict[str, Any] = {}
    if "name" in given:
        problems += _name_problems(given["name"])
        clean["name"] = given["name"].strip()
    if "email" in given:
        problems += _email_problems(given["email"])
        clean["email"] = _clean_email(given["email"])
    if "phone" in given:
        problems += _phone_problems(given["phone"])
        clean["phone"] = given["phone"].strip()
    if "party_size" in given:
        problems += party_size_reasons(given["party_size"], room_limits(room))
        clean["party_size"] = given["party_size"]
    if "extras" in given:
        clean["extras"], extra_problems = room.validate_extras(given["extras"])
        if booking.channel == "web" or given["extras"]:
            problems += extra_problems
    if "notes" in given:
        problems += _notes_problems(given["notes"])
        clean["notes"] = given["notes"].strip()
    if problems:
        raise ValidationError(problems)
    return clean


def control_characters(text: str, *, allow: str = "") -> bool:
    """The text holds a control character (NUL, escape, a line break in a one-line field…) other than `allow`:
    PostgreSQL refuses NUL outright, and the rest only ever come from a script or a paste gone wrong."""
    return any(unicodedata.category(ch) == "Cc" and ch not in allow for ch in text)


def _extras_text_problems(extras: Any, path: str = "") -> list[str]:
    """Control characters anywhere in the extras' answers or names (a nested answer too)."""
    if isinstance(extras, str):
        return [f"Extras: {path or 'an answer'} contains a control character"] if control_characters(extras) else []
    if isinstance(extras, dict):
        problems = []
        for key, value in extras.items():
            name = str(key)
            if control_characters(name):
                return ["Extras: a field name contains a control character"]
            problems += _extras_text_problems(value, name)
        return problems
    if isinstance(extras, (list, tuple)):
        return [p for item in extras for p in _extras_text_problems(item, path)][:1]
    return []


def _name_problems(name: str) -> list[str]:
    if control_characters(name):
        return ["Customer name contains a control character (such as a line break or NUL): type it again"]
    if not name.strip():
        return ["Customer name is required"]
    if len(name.strip()) > NAME_MAX:
        return [f"Customer name is too long ({NAME_MAX} characters at most)"]
    return []


def _email_problems(email: str) -> list[str]:
    text = email.strip()
    if control_characters(email):
        return ["Customer email contains a control character (such as a line break or NUL): type it again"]
    if len(text.split("@")) > 2 or any(sep in text for sep in ",;<>"):
        # One address only: "a@x, b@y" or "Name <a@x>" would put other recipients on the envelope (issue 13).
        return ["Customer email must be one address only (name@example.com), without a name, brackets or a list"]
    if "@" not in text:
        return ["A valid customer email is required (name@example.com)"]
    try:
        validate_email(text)
    except ValueError as exc:
        better = suggest_email(text)
        return [f"A valid customer email is required: {exc}" + (f" Did you mean {better}?" if better else "")]
    return []


def _clean_email(email: str) -> str:
    try:
        return validate_email(email)
    except ValueError:
        return email.strip().lower()


def _phone_problems(phone: str) -> list[str]:
    if control_characters(phone):
        return ["Phone number contains a control character: type it again"]
    if phone.strip() and not PHONE.fullmatch(phone.strip()):
        return ["Phone number looks wrong (digits, spaces, + - ( ) only)"]
    return []


def _notes_problems(notes: str) -> list[str]:
    if control_characters(notes, allow="\n\r\t"):
        return ["Notes contain a control character (such as NUL): only line breaks and tabs may be used"]
    if len(notes.strip()) > NOTES_MAX:
        return [f"Notes are too long ({NOTES_MAX} characters at most, {len(notes.strip())} given)"]
    return []


def _bounded(value: Any) -> Any:
    """A value as the audit row keeps it: a long text (notes) cut, with its length, so a row stays small."""
    if isinstance(value, str) and len(value) > AUDIT_TEXT_MAX:
        return f"{value[:AUDIT_TEXT_MAX]}… ({len(value)} characters)"
    return value
