"""A booking's calendar events: deterministic ids, idempotent insert, details kept up to date, batch delete, each step
audited."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlmodel import select

from models.tables import (
    ACTIVE_LEG_STATES,
    Booking,
    BookingLeg,
    ExternalRef,
)
from services.booking.store import booking_legs, load_booking
from services.core import audit
from services.core.context import Services
from services.core.errors import (
    EventExists,
    GatewayError,
    NotFound,
)
from services.rules.fmt import day_label


def event_id_for(reference: str, day: date, attempt: int = 0) -> str:
    """Deterministic Google Calendar event id (base32hex: lower-case hex is a subset), so a retry never
    duplicates an event; `attempt` moves on when a deleted event must be re-created (Google refuses old ids)."""
    digest = hashlib.sha256(f"roomdesk|{reference}|{day.isoformat()}|{attempt}".encode()).hexdigest()
    return "rd" + digest[:30]


def event_body(svc: Services, booking: Booking, leg: BookingLeg, event_id: str) -> dict[str, Any]:
    room = svc.catalogue.room(booking.room_slug)
    tz = svc.settings.venue_timezone
    lines = [
        f"Booking {booking.reference} — paid {booking.currency} {booking.amount_cents / 100:.2f}",
        f"Customer: {booking.customer_name} <{booking.customer_email}> {booking.customer_phone}".rstrip(),
        f"PaymentIntent: {booking.payment_intent_id}",
    ]
    if booking.party_size:
        lines.append(f"Group size: {booking.party_size}")
    for key, value in booking.extras.items():
        lines.append(f"{key.replace('_', ' ').capitalize()}: {value}")
    if booking.notes:
        lines.append(f"Notes: {booking.notes}")
    return {
        "id": event_id,
        "summary": f"{room.name} — {booking.customer_name} ({booking.reference})",
        "description": "\n".join(lines),
        "start": {"dateTime": leg.starts_at.astimezone(svc.settings.tz).isoformat(), "timeZone": tz},
        "end": {"dateTime": leg.ends_at.astimezone(svc.settings.tz).isoformat(), "timeZone": tz},
        "extendedProperties": {
            "private": {
                "booking_id": booking.reference,
                "payment_intent": booking.payment_intent_id or "",
                "booking_date": leg.day.isoformat(),
            }
        },
    }


def insert_event(svc: Services, booking: Booking, leg: BookingLeg) -> str:
    """Insert the leg's event idempotently: a 409 on our own live event is success; on a deleted one, move on to
    the next attempt's id."""
    for _ in range(5):
        event_id = event_id_for(booking.reference, leg.day, leg.event_attempt)
        try:
            svc.calendar.insert_event(leg.calendar_id, event_body(svc, booking, leg, event_id))
            return event_id
        except EventExists:
            existing = svc.calendar.get_event(leg.calendar_id, event_id)
            private = ((existing or {}).get("extendedProperties") or {}).get("private") or {}
            ours = private.get("booking_id") == booking.reference
            # A day moved by a change keeps its event's id (patched in place): that id may name another date now.
            same_day = private.get("booking_date") in (None, "", leg.day.isoformat())
            if existing and existing.get("status") != "cancelled" and ours and same_day:
                return event_id
            leg.event_attempt += 1
    raise GatewayError("Could not create a calendar event id for this day", transient=False, provider="calendar")


def record_event_created(
    svc: Services, booking_id: int, leg: BookingLeg, event_id: str, *, actor: str, now: datetime
) -> None:
    """Remember a day's event on its leg, in external_ref and the audit log; safe to repeat after a crash."""
    with svc.session() as s:
        db_leg = s.get(BookingLeg, leg.id)
        assert db_leg is not None
        db_leg.event_id, db_leg.event_attempt, db_leg.updated_at = event_id, leg.event_attempt, now
        external = f"{leg.calendar_id}/{event_id}"
        known = s.exec(
            select(ExternalRef.id).where(
                ExternalRef.provider == "google", ExternalRef.kind == "event", ExternalRef.external_id == external
            )
        ).first()
        if known is None:
            s.add(
                ExternalRef(
                    provider="google",
                    kind="event",
                    external_id=external,
                    booking_id=booking_id,
                    leg_id=leg.id,
                    created_at=now,
                )
            )
        audit.record(
            s,
            "booking.event.created",
            actor=actor,
            at=now,
            booking=load_booking(s, booking_id),
            day=leg.day,
            event_id=event_id,
            calendar_id=leg.calendar_id,
        )


def update_event_details(svc: Services, booking_id: int, *, actor: str, now: datetime) -> tuple[list[date], list[str]]:
    """Rewrite the title and description of the booking's live days' events from the booking as it is now (corrected
    customer details, extras filled in). Returns (days updated, problems a person can act on); audited."""
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        legs = [leg for leg in booking_legs(s, booking_id) if leg.state in ACTIVE_LEG_STATES and leg.event_id]
    updated: list[date] = []
    problems: list[str] = []
    for leg in legs:
        assert leg.event_id is not None
        body = event_body(svc, booking, leg, leg.event_id)
        patch = {"summary": body["summary"], "description": body["description"]}
        try:
            svc.calendar.patch_event(leg.calendar_id, leg.event_id, patch)
        except NotFound:
            problems.append(f"{day_label(leg.day)} has no event to update")
        except GatewayError as exc:
            problems.append(f"{day_label(leg.day)}'s event could not be updated ({exc.message})")
        else:
            updated.append(leg.day)
    if updated:
        with svc.session() as s:
            audit.record(
                s,
                "booking.event.updated",
                actor=actor,
                at=now,
                booking=load_booking(s, booking_id),
                days=updated,
                fields=sorted(patch),
            )
    return updated, problems


def delete_batch(svc: Services, targets: Sequence[tuple[str, str]]) -> list[tuple[str, str, GatewayError | None]]:
    """Delete events with one batch request per calendar; (calendar, event id, error or None) for each."""
    by_calendar: dict[str, list[str]] = {}
    for calendar_id, event_id in targets:
        by_calendar.setdefault(calendar_id, []).append(event_id)
    out: list[tuple[str, str, GatewayError | None]] = []
    for calendar_id, ids in by_calendar.items():
        try:
            errors: list[GatewayError | None] = svc.calendar.delete_events(calendar_id, ids)
        except GatewayError as exc:
            errors = [exc] * len(ids)
        out.extend((calendar_id, event_id, error) for event_id, error in zip(ids, errors, strict=True))
    return out


def delete_events(
    svc: Services, booking_id: int, targets: Sequence[tuple[str, str | None, date]], actor: str, now: datetime
) -> list[str]:
    days = {(calendar_id, event_id): day for calendar_id, event_id, day in targets if event_id}
    problems = []
    for calendar_id, event_id, error in delete_batch(svc, list(days)):
        with svc.session() as s:
            if error is not None:
                problems.append(
                    f"{days[(calendar_id, event_id)]}: the calendar event could not be deleted ({error.message})"
                )
                audit.record(
                    s,
                    "booking.event.delete_failed",
                    actor=actor,
                    at=now,
                    booking=load_booking(s, booking_id),
                    event_id=event_id,
                    calendar_id=calendar_id,
                    error=error.message,
                    message="Calendar event deletion failed: orphan event left",
                )
            else:
                audit.record(
                    s,
                    "booking.event.deleted",
                    actor=actor,
                    at=now,
                    booking=load_booking(s, booking_id),
                    event_id=event_id,
                    calendar_id=calendar_id,
                )
    return problems
