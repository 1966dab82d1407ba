"""What one web customer may hold (issue 13: one client held every slot of the venue with 28 requests in 0.35 s).

An unpaid web hold starts short (settings.web_hold_start_minutes) and gets the full hold (settings.hold_minutes) once,
when the customer reaches payment; one email address and one client (a keyed hash of its address, never the address)
may have only a few such holds at a time. Phone holds made by staff are not limited.

The count runs in the transaction that inserts the hold: on PostgreSQL under transaction-level advisory locks keyed
on the email and the client key (taken in one order, so two requests never wait on each other crosswise); SQLite
takes its write lock at BEGIN (models.db), so there the whole transaction is already serialised.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from models.tables import AuditLog, Booking, BookingStatus, Channel, ClaimKind, SlotClaim
from services.booking.store import resolve_now
from services.core import audit
from services.core.context import Services
from services.core.errors import InvalidState, NotFound

EXTENDED = "booking.hold.extended"


def lock_hold_keys(session: Session, *keys: str | None) -> None:
    """PostgreSQL: wait for every other transaction counting holds under the same email or client key (released at
    commit or rollback). A no-op on SQLite, whose transactions already run one at a time."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted({k for k in keys if k}):
        digest = hashlib.blake2b(f"roomdesk-hold:{key}".encode(), digest_size=8).digest()
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest, "big", signed=True)})


def active_web_holds(session: Session, now: datetime, *, email: str = "", client_key: str | None = None) -> int:
    """Unpaid web bookings whose hold has not run out, for this email (case-insensitive) or this client key."""
    q = (
        select(func.count())
        .select_from(Booking)
        .where(
            Booking.status == BookingStatus.AWAITING_PAYMENT,
            Booking.channel == Channel.WEB,
            col(Booking.hold_expires_at) >= now,
        )
    )
    if email:
        q = q.where(func.lower(col(Booking.customer_email)) == email.strip().lower())
    elif client_key:
        q = q.where(col(Booking.client_key) == client_key)
    else:
        return 0
    return int(session.exec(q).one())


def hold_limit_refusal(
    svc: Services, session: Session, now: datetime, *, email: str, client_key: str | None
) -> tuple[str, str, int] | None:
    """(which limit, a sentence for the customer, how many holds) when another web hold would pass a limit."""
    lock_hold_keys(session, f"email:{email.strip().lower()}", f"client:{client_key}" if client_key else None)
    per_email = svc.settings.hold_limit_per_email
    held = active_web_holds(session, now, email=email)
    if held >= per_email:
        return "email", _message(held, "You already have"), held
    if client_key:
        held = active_web_holds(session, now, client_key=client_key)
        if held >= svc.settings.hold_limit_per_client:
            return "client", _message(held, "Your connection already has"), held
    return None


def _message(held: int, who: str) -> str:
    bookings = "unpaid booking" if held == 1 else "unpaid bookings"
    return f"{who} {held} {bookings} waiting for payment: pay or let them lapse first"


def reach_payment(svc: Services, booking_id: int, *, now: datetime | None = None) -> datetime:
    """The customer reached payment: an unpaid web booking's short hold becomes the full hold (now +
    settings.hold_minutes) once, never shortened; returns when the hold ends. Raises InvalidState when the booking is
    not waiting for payment."""
    now = resolve_now(svc, now)
    with svc.session() as s:
        # Row-locked (PostgreSQL; SQLite's write lock is taken at BEGIN): two pay-page loads extend once.
        booking = s.exec(select(Booking).where(Booking.id == booking_id).with_for_update()).first()
        if booking is None:
            raise NotFound(f"No booking #{booking_id}")
        if booking.status != BookingStatus.AWAITING_PAYMENT:
            raise InvalidState(f"Booking {booking.reference} is not waiting for payment ({booking.status.value})")
        current = booking.hold_expires_at
        if current is None or booking.channel != Channel.WEB or current < now:
            return current or now  # a phone hold is long already; a lapsed one is the expiry job's
        extended_before = s.exec(
            select(AuditLog.id).where(AuditLog.booking_id == booking_id, AuditLog.action == EXTENDED)
        ).first()
        target = now + timedelta(minutes=svc.settings.hold_minutes)
        if extended_before is not None or target <= current:
            return current
        booking.hold_expires_at = target
        booking.updated_at = now
        s.execute(
            sa.update(SlotClaim)
            .where(
                col(SlotClaim.booking_id) == booking_id,
                col(SlotClaim.active).is_(True),
                col(SlotClaim.kind) == ClaimKind.HOLD,
                col(SlotClaim.amendment_id).is_(None),
            )
            .values(expires_at=target)
        )
        audit.record(s, EXTENDED, actor="customer", at=now, booking=booking, before=current, expires_at=target)
    return target
