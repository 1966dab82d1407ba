"""Loading bookings and moving their day-legs through the state machine (runbook 003)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    LEG_TRANSITIONS,
    Booking,
    BookingLeg,
    BookingStatus,
    LegState,
)
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import (
    InvalidState,
    NotFound,
)
from services.rules.availability import (
    RoomLimits,
)

REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud on the phone


def resolve_now(svc: Services, now: datetime | None) -> datetime:
    now = now or svc.now()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def room_limits(room: Room) -> RoomLimits:
    return RoomLimits(room.name, room.capacity, room.min_minutes, room.bookable)


def set_leg_state(leg: BookingLeg, new: LegState, now: datetime) -> None:
    current = LegState(leg.state)
    if new == current:
        return
    if new not in LEG_TRANSITIONS[current]:
        raise InvalidState(f"{leg.day}: cannot go from {current.value} to {new.value}")
    leg.state = new
    leg.updated_at = now


def derive_status(legs: Sequence[BookingLeg]) -> BookingStatus:
    """A booking's status follows its day-legs (runbook 003)."""
    states = {LegState(leg.state) for leg in legs}
    if not states:
        return BookingStatus.FAILED
    if LegState.AWAITING_PAYMENT in states or LegState.DRAFT in states:
        return BookingStatus.AWAITING_PAYMENT
    active = states & ACTIVE_LEG_STATES
    if not active:
        if states == {LegState.FAILED}:
            return BookingStatus.FAILED
        if states <= {LegState.REFUNDED, LegState.FAILED}:
            return BookingStatus.REFUNDED
        return BookingStatus.CANCELLED
    if active == {LegState.COMPLETED}:
        return BookingStatus.COMPLETED if states == {LegState.COMPLETED} else BookingStatus.PARTLY_CANCELLED
    return BookingStatus.CONFIRMED if states <= ACTIVE_LEG_STATES else BookingStatus.PARTLY_CANCELLED


def booking_legs(session: Session, booking_id: int) -> list[BookingLeg]:
    return list(
        session.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(col(BookingLeg.day)))
    )


def load_booking(session: Session, booking_id: int) -> Booking:
    booking = session.get(Booking, booking_id)
    if booking is None:
        raise NotFound(f"No booking #{booking_id}")
    return booking


def new_reference(session: Session) -> str:
    for _ in range(20):
        ref = "RD" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))
        if session.exec(select(Booking.id).where(Booking.reference == ref)).first() is None:
            return ref
    raise RuntimeError("could not allocate a booking reference")
