"""Adopting a payment the old booking system made (its booking only in the PaymentIntent's metadata) into a Room
Desk booking, so a fix can act on it like on any other: legs priced from what was charged, today's policy,
references, slot claims and the day events it already has."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from models.tables import (
    ACTIVE_LEG_STATES,
    Booking,
    BookingLeg,
    BookingStatus,
    Channel,
    ClaimKind,
    ExternalRef,
    LegState,
)
from services import booking as bk
from services.core import audit
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import DomainError
from services.reconciliation import steps
from services.reconciliation.fixes import FixContext, Refusal, days_text, slot_taken
from services.reconciliation.legacy import day_shares
from services.reconciliation.probes import EventKey, LivePayment
from services.rules.availability import LegWindow, SlotRequest, leg_windows
from services.rules.refunds import policy_snapshot


@dataclass(frozen=True)
class LegacyBooking:
    """A booking as the old system wrote it into the PaymentIntent's metadata."""

    room: Room
    dates: tuple[date, ...]
    start: time
    end: time
    name: str
    email: str
    phone: str
    old_reference: str

    def windows(self, svc: Services) -> list[LegWindow]:
        """Its days as venue time windows."""
        return leg_windows(SlotRequest(self.dates, self.start, self.end), svc.policy)

    def label(self) -> str:
        """'Boardroom, Wed 4 Mar 10:00–12:00'."""
        return f"{self.room.name}, {days_text(self.dates)} {self.start:%H:%M}–{self.end:%H:%M}"


def read_legacy(svc: Services, pay: LivePayment) -> LegacyBooking:
    """The booking in a payment's metadata; refuses when the metadata cannot be read as one."""
    md = pay.metadata
    try:
        room = svc.catalogue.room(md.get("room", ""))
        dates = tuple(sorted({date.fromisoformat(d.strip()) for d in md.get("booking_dates", "").split(",") if d}))
        start_s, end_s = md.get("booking_time", "").split("-")
        start, end = time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip())
        if not dates or end <= start:
            raise ValueError("no dates, or the time ends before it starts")
    except (DomainError, ValueError) as exc:
        message = exc.message if isinstance(exc, DomainError) else str(exc)
        raise Refusal(f"Payment {pay.id}'s metadata cannot be read as a booking ({message})") from None
    return LegacyBooking(
        room,
        dates,
        start,
        end,
        md.get("customer_name", "").strip()[:200] or "(name unknown)",
        md.get("customer_email", "").strip().lower()[:254],
        md.get("customer_phone", "").strip()[:40],
        md.get("booking_id", ""),
    )


def booking_to_fix(
    ctx: FixContext,
    booking: Booking | None,
    pay: LivePayment,
    legacy: LegacyBooking | None,
    *,
    state: LegState,
    claim: bool,
    events: dict[date, EventKey],
) -> int:
    """The booking a fix acts on: the one Room Desk has, or the old system's payment adopted now."""
    if legacy is not None:
        return adopt_payment(ctx, pay, legacy, state=state, claim=claim, events=events)
    assert booking is not None and booking.id is not None
    return booking.id


def adopt_payment(
    ctx: FixContext,
    pay: LivePayment,
    legacy: LegacyBooking,
    *,
    state: LegState,
    claim: bool,
    events: dict[date, EventKey],
) -> int:
    """Take a payment the old system made (metadata only) into a booking: legs priced from what was charged, the
    policy in force today, references, and the day events it already has. Returns the booking id."""
    svc, now = ctx.svc, ctx.now
    windows = legacy.windows(svc)
    buffer = timedelta(minutes=svc.policy.buffer_minutes)
    shares = day_shares(pay.received, len(windows))
    try:
        with svc.session() as s:
            existing = s.exec(select(Booking.id).where(Booking.payment_intent_id == pay.id)).first()
            if existing is not None:
                return existing
            seed_policy = svc.settings.policy()
            seed_room = svc.seed_room(legacy.room.slug)
            booking = Booking(
                reference=bk.new_reference(s),
                room_slug=legacy.room.slug,
                status=BookingStatus.FAILED,
                channel=Channel.WEB,
                start_time=f"{legacy.start:%H:%M}",
                end_time=f"{legacy.end:%H:%M}",
                customer_name=legacy.name,
                customer_email=legacy.email,
                customer_phone=legacy.phone,
                notes=f"Adopted from Stripe payment {pay.id}, made by the old booking system"
                + (f" (its booking id {legacy.old_reference})" if legacy.old_reference else ""),
                amount_cents=pay.received,
                currency=pay.currency,
                # What was charged is the price the customer agreed to; today's catalogue may differ.
                # The rate, discount and policy are the old system's: the price list Room Desk started from (the
                # rooms file and the environment), not a version saved on Settings since — so a later change to the
                # adopted booking re-prices its hours as the old system sold them.
                pricing_snapshot={
                    "room": legacy.room.slug,
                    "source": "adopted",
                    "total_cents": pay.received,
                    "legs": {w.day.isoformat(): c for w, c in zip(windows, shares, strict=True)},
                    "hourly_cents": seed_room.hourly_price_cents,
                    "discount_eligible": seed_room.discount_eligible,
                    "discount_bands": [list(band) for band in seed_policy.discount_bands],
                },
                policy_snapshot=policy_snapshot(seed_policy),
                payment_intent_id=pay.id,
                confirmed_at=now if state in ACTIVE_LEG_STATES else None,
                created_by=ctx.actor,
                created_at=now,
                updated_at=now,
            )
            s.add(booking)
            s.flush()
            assert booking.id is not None
            legs = []
            for window, share in zip(windows, shares, strict=True):
                linked = events.get(window.day)
                leg = BookingLeg(
                    booking_id=booking.id,
                    day=window.day,
                    starts_at=window.starts_at,
                    ends_at=window.ends_at,
                    state=state,
                    price_cents=share,
                    refunded_cents=share if state == LegState.REFUNDED else 0,
                    calendar_id=legacy.room.calendar_id,
                    event_id=linked[1] if linked else None,
                    updated_at=now,
                )
                s.add(leg)
                s.flush()
                legs.append(leg)
                assert leg.id is not None
                if claim:
                    bk.claim_slot(s, leg, room_slug=legacy.room.slug, buffer=buffer, kind=ClaimKind.BOOKED, now=now)
                    s.flush()
                if linked:
                    s.add(
                        ExternalRef(
                            provider="google",
                            kind="event",
                            external_id=f"{linked[0]}/{linked[1]}",
                            booking_id=booking.id,
                            leg_id=leg.id,
                            created_at=now,
                        )
                    )
            s.add(
                ExternalRef(
                    provider="stripe",
                    kind="payment_intent",
                    external_id=pay.id,
                    booking_id=booking.id,
                    created_at=now,
                )
            )
            booking.status = bk.derive_status(legs)
            audit.record(
                s,
                "booking.adopted",
                actor=ctx.actor,
                at=now,
                booking=booking,
                old_booking_id=legacy.old_reference or None,
                amount_cents=pay.received,
                dates=[d.isoformat() for d in legacy.dates],
                time=f"{booking.start_time}-{booking.end_time}",
                finding=ctx.finding.key,
                message="Payment made by the old system adopted into a booking",
            )
            return booking.id
    except IntegrityError as exc:
        if bk.is_overlap_error(exc):
            raise slot_taken(["another booking holds it in Room Desk"], ctx) from None
        # Another click adopted the same payment a moment earlier: carry on with that booking.
        booking_now, _ = steps.booking_for(svc, pay.id, None)
        if booking_now is None or booking_now.id is None:
            raise
        return booking_now.id
