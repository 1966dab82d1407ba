"""Every unpaid hold that blocks a room right now (web, phone, and a change to a paid booking), and releasing one by
hand: what the dashboard's Holds screen shows and does (issue 13: a flood of holds must be visible and clearable)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import col, select

from models.tables import (
    Amendment,
    AmendmentState,
    Booking,
    BookingInvoice,
    BookingLeg,
    BookingStatus,
    ClaimKind,
    InvoiceState,
    LegState,
    SlotClaim,
)
from services.booking.change import withdraw_change
from services.booking.holds import release_hold
from services.booking.lease import lease
from services.booking.store import load_booking, resolve_now
from services.core.context import Services
from services.core.errors import InvalidState

RELEASED = "booking.hold.released"


@dataclass(frozen=True)
class ActiveHold:
    booking_id: int
    reference: str
    kind: str  # booking | change | invoice (held until an organisation's invoice is paid; expires_at: its due date)
    room: str  # the room's slug
    days: tuple[date, ...]
    time: str
    customer: str
    email: str
    channel: str
    created_at: datetime
    expires_at: datetime
    client_key: str | None


def active_holds(svc: Services, *, now: datetime | None = None) -> list[ActiveHold]:
    """Unpaid holds whose time has not run out, soonest to lapse first."""
    now = resolve_now(svc, now)
    out: list[ActiveHold] = []
    with svc.read_session() as s:
        bookings = s.exec(
            select(Booking).where(Booking.status == BookingStatus.AWAITING_PAYMENT, col(Booking.hold_expires_at) >= now)
        ).all()
        days: dict[int, list[date]] = {}
        ids = [b.id for b in bookings if b.id is not None]
        for leg in s.exec(select(BookingLeg).where(col(BookingLeg.booking_id).in_(ids)).order_by(col(BookingLeg.day))):
            days.setdefault(leg.booking_id, []).append(leg.day)
        for b in bookings:
            assert b.id is not None and b.hold_expires_at is not None
            out.append(
                ActiveHold(
                    b.id,
                    b.reference,
                    "booking",
                    b.room_slug,
                    tuple(days.get(b.id, [])),
                    f"{b.start_time}–{b.end_time}",
                    b.customer_name,
                    b.customer_email,
                    b.channel.value,
                    b.created_at,
                    b.hold_expires_at,
                    b.client_key,
                )
            )
        changes = s.exec(
            select(Amendment).where(
                Amendment.state == AmendmentState.AWAITING_PAYMENT, col(Amendment.hold_expires_at) >= now
            )
        ).all()
        for a in changes:
            assert a.id is not None and a.hold_expires_at is not None
            b = load_booking(s, a.booking_id)
            claims = s.exec(
                select(SlotClaim).where(
                    SlotClaim.amendment_id == a.id, col(SlotClaim.active).is_(True), SlotClaim.kind == ClaimKind.HOLD
                )
            ).all()
            tz = svc.settings.tz
            held = sorted({c.starts_at.astimezone(tz).date() for c in claims})
            times = sorted({f"{c.starts_at.astimezone(tz):%H:%M}–{c.ends_at.astimezone(tz):%H:%M}" for c in claims})
            out.append(
                ActiveHold(
                    a.booking_id,
                    b.reference,
                    "change",
                    a.room_to,
                    tuple(held),
                    ", ".join(times),
                    b.customer_name,
                    b.customer_email,
                    b.channel.value,
                    a.created_at,
                    a.hold_expires_at,
                    b.client_key,
                )
            )
        on_invoice = s.exec(
            select(BookingInvoice, Booking)
            .join(Booking, col(Booking.id) == col(BookingInvoice.booking_id))
            .where(BookingInvoice.state == InvoiceState.OPEN, Booking.status == BookingStatus.AWAITING_PAYMENT)
        ).all()
        for inv, b in on_invoice:
            assert b.id is not None
            legs = s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id).order_by(col(BookingLeg.day))).all()
            out.append(
                ActiveHold(
                    b.id,
                    b.reference,
                    "invoice",
                    b.room_slug,
                    tuple(leg.day for leg in legs if leg.state == LegState.AWAITING_PAYMENT),
                    f"{b.start_time}–{b.end_time}",
                    f"{inv.organisation} ({b.customer_name})",
                    inv.billing_email,
                    b.channel.value,
                    b.created_at,
                    inv.due_at,
                    b.client_key,
                )
            )
    return sorted(out, key=lambda h: (h.expires_at, h.reference))


def release_unpaid_hold(
    svc: Services, booking_id: int, *, kind: str = "booking", actor: str, now: datetime | None = None
) -> str:
    """Staff release an unpaid hold at once: the booking is cancelled and its PaymentIntent cancelled (or, if it was
    paid after all, it is confirmed instead); for a change, the change is withdrawn and the booking stays as it was.
    Returns what happened (released | confirmed | withdrawn | …). Raises InvalidState when nothing waits for payment,
    BookingBusy while another process works on the booking."""
    now = resolve_now(svc, now)
    if kind == "change":
        return withdraw_change(svc, booking_id, actor=actor, now=now).outcome
    with lease(svc, booking_id):
        with svc.session() as s:
            booking = load_booking(s, booking_id)
            if booking.status != BookingStatus.AWAITING_PAYMENT:
                reference = booking.reference
                raise InvalidState(f"Booking {reference} is not waiting for payment: there is no hold to release")
        outcome = release_hold(svc, booking_id, actor, now, action=RELEASED)
    return "released" if outcome == "expired" else outcome
