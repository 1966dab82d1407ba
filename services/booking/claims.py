"""Slot claims (the database's no-overlap guard) and what blocks a room: claims, holds and calendar events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.tables import (
    Booking,
    BookingLeg,
    ClaimKind,
    RoomBlock,
    SlotClaim,
)
from services.booking.store import resolve_now
from services.core import audit
from services.core.catalogue import Room
from services.core.context import Services
from services.rules.availability import (
    Busy,
    LegWindow,
)


def is_overlap_error(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return "slot_claim_overlap" in text or "ex_slot_claim_overlap" in text or code == "23P01"


def claim_slot(
    session: Session,
    leg: BookingLeg,
    *,
    room_slug: str,
    buffer: timedelta,
    kind: ClaimKind,
    now: datetime,
    expires_at: datetime | None = None,
) -> SlotClaim:
    """Claim a day-leg's time on its room, the buffer after it included: the database refuses an overlapping active
    claim (IntegrityError, see is_overlap_error) when the session flushes."""
    assert leg.id is not None
    claim = SlotClaim(
        booking_id=leg.booking_id,
        leg_id=leg.id,
        room_slug=room_slug,
        starts_at=leg.starts_at,
        ends_at=leg.ends_at,
        block_until=leg.ends_at + buffer,
        kind=kind,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(claim)
    return claim


def release_claims(session: Session, booking_id: int, leg_ids: Sequence[int] | None = None) -> None:
    q = sa.update(SlotClaim).where(col(SlotClaim.booking_id) == booking_id).values(active=False)
    if leg_ids is not None:
        q = q.where(col(SlotClaim.leg_id).in_(list(leg_ids)))
    session.execute(q)


def sweep_expired_claims(session: Session, room_slug: str, now: datetime, actor: str) -> None:
    """Expired holds stop blocking at once (audited); the expiry job tidies their bookings and PaymentIntents."""
    lapsed = list(
        session.exec(
            select(SlotClaim).where(
                SlotClaim.room_slug == room_slug,
                col(SlotClaim.active).is_(True),
                SlotClaim.kind == ClaimKind.HOLD,
                col(SlotClaim.expires_at) < now,
            )
        )
    )
    for booking_id in sorted({c.booking_id for c in lapsed if c.booking_id is not None}):
        for claim in lapsed:
            if claim.booking_id == booking_id:
                claim.active = False
        audit.record(
            session,
            "booking.hold.lapsed",
            actor=actor,
            at=now,
            booking=session.get(Booking, booking_id),
            message="Unpaid hold lapsed; slot released for a new booking",
        )
    session.flush()


def claims_busy(
    session: Session, room_slug: str, start: datetime, end: datetime, now: datetime, exclude_booking: int | None
) -> list[Busy]:
    """The room's active claims overlapping [start, end) as busy times (a lapsed hold is not), leaving out
    `exclude_booking`'s own. Rows of the columns it needs, a staff block's reason joined in: the availability read
    runs on every request, so no ORM object is built."""
    c, block = SlotClaim, RoomBlock
    q = (
        sa.select(
            col(c.starts_at),
            col(c.ends_at),
            col(c.kind),
            col(c.booking_id),
            col(c.block_id),
            col(c.expires_at),
            col(block.reason),
        )
        .select_from(c)
        .outerjoin(block, col(block.id) == col(c.block_id))
        .where(col(c.room_slug) == room_slug, col(c.active).is_(True), col(c.starts_at) < end, col(c.ends_at) > start)
    )
    out = []
    for starts_at, ends_at, kind, booking_id, block_id, expires_at, reason in session.execute(q):
        if booking_id is not None and booking_id == exclude_booking:
            continue
        if kind == ClaimKind.HOLD and expires_at is not None and expires_at < now:
            continue
        if block_id is not None:
            out.append(
                Busy(
                    starts_at, ends_at, f"a staff block ({reason})" if reason else "a staff block", f"block:{block_id}"
                )
            )
            continue
        out.append(
            Busy(starts_at, ends_at, "a held booking" if kind == ClaimKind.HOLD else "a booking", f"claim:{booking_id}")
        )
    return out


def calendar_busy(
    svc: Services, room: Room, start: datetime, end: datetime, *, ignore_booking: str | None = None
) -> list[Busy]:
    """Busy intervals on the room's calendar, ignoring the events of `ignore_booking` (its own, during Gate 2)."""
    busy = svc.calendar.freebusy([room.calendar_id], start, end).get(room.calendar_id, [])
    own: set[str] = set()
    if ignore_booking:
        listing = svc.calendar.list_events(room.calendar_id, private_property=f"booking_id={ignore_booking}")
        own = {e["id"] for e in listing.get("items", [])}
    return [
        Busy(
            datetime.fromisoformat(b["start"]),
            datetime.fromisoformat(b["end"]),
            "another booking",
            b.get("event_id", ""),
        )
        for b in busy
        if b.get("event_id") not in own
    ]


def busy_times(
    svc: Services, room_slug: str, start: datetime, end: datetime, now: datetime | None = None
) -> list[Busy]:
    """Everything that blocks a room between two instants: calendar events and active holds/bookings."""
    now = resolve_now(svc, now)
    room = svc.catalogue.room(room_slug)
    out = calendar_busy(svc, room, start, end)
    with svc.read_session() as s:
        claims = claims_busy(s, room_slug, start, end, now, None)
    # A block's own event has its claim's times: the claim's wording (naming the block) wins over the event's.
    blocks = {(c.starts_at, c.ends_at) for c in claims if c.ref.startswith("block:")}
    out = [b for b in out if (b.starts_at, b.ends_at) not in blocks]
    seen = {(b.starts_at, b.ends_at) for b in out}
    return out + [c for c in claims if (c.starts_at, c.ends_at) not in seen]


def busy_span(legs: Sequence[LegWindow], buffer_minutes: int) -> tuple[datetime, datetime]:
    pad = timedelta(minutes=buffer_minutes)
    return min(leg.starts_at for leg in legs) - pad, max(leg.ends_at for leg in legs) + pad
