"""Unpaid holds that lapse, and days that start and finish."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select

from models.tables import (
    Booking,
    BookingLeg,
    BookingStatus,
    InvoiceState,
    LegState,
)
from services.booking.claims import release_claims
from services.booking.invoices import mark_voided, record_invoice_payment
from services.booking.lease import lease
from services.booking.queries import invoice_of
from services.booking.saga import confirm_under_lease
from services.booking.store import booking_legs, derive_status, load_booking, resolve_now, set_leg_state
from services.core import audit
from services.core.context import Services
from services.core.errors import (
    BookingBusy,
    GatewayError,
)

log = logging.getLogger("roomdesk.booking")

# A booking paid while the process finishing it crashed is looked for this far back, a bounded number per round
# (oldest first): a backlog after a long outage is worked through over a few rounds instead of stalling one.
FINISH_WINDOW = timedelta(hours=48)
FINISH_PER_ROUND = 25


def release_hold(
    svc: Services, booking_id: int, actor: str, now: datetime, action: str = "booking.hold.expired"
) -> str:
    """Release an unpaid hold and cancel its PaymentIntent (or confirm it, if it was paid after all). Call under
    the booking's lease."""
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        pi_id = booking.payment_intent_id
    held = invoice_of(svc, booking_id)
    if held is not None and held.state == InvoiceState.OPEN and held.invoice_id:
        # Held on invoice: void it first (re-checked: one paid meanwhile confirms the booking instead).
        live = svc.payments.retrieve_invoice(held.invoice_id)
        if live.get("status") == "paid":  # we hold the lease: record the payment, then confirm under it
            recorded = record_invoice_payment(svc, held.invoice_id, actor, now)
            if isinstance(recorded, tuple):
                return confirm_under_lease(svc, booking_id, recorded[1], actor, now).outcome
            return recorded.outcome if recorded is not None else "not_paid"
        if live.get("status") == "open":
            svc.payments.void_invoice(held.invoice_id, idempotency_key=f"roomdesk-{booking.reference}-invoice-void")
        mark_voided(svc, booking_id, now)
    if pi_id:
        pi = svc.payments.retrieve_payment_intent(pi_id)
        if pi.get("status") == "succeeded":
            # The customer paid but the webhook never came: confirm instead of expiring (seed incident #2).
            return confirm_under_lease(svc, booking_id, pi_id, actor, now).outcome
        if pi.get("status") != "canceled":
            svc.payments.cancel_payment_intent(pi_id, idempotency_key=f"roomdesk-{booking.reference}-cancel-pi")
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        legs = booking_legs(s, booking_id)
        for leg in legs:
            set_leg_state(leg, LegState.CANCELLED, now)
        release_claims(s, booking_id)
        booking.status = BookingStatus.EXPIRED if action == "booking.hold.expired" else BookingStatus.CANCELLED
        booking.hold_expires_at = None
        booking.updated_at = now
        audit.record(
            s,
            action,
            actor=actor,
            at=now,
            booking=booking,
            message="Unpaid hold released and its PaymentIntent cancelled",
        )
    return "expired"


def expire_holds(svc: Services, *, actor: str = "system", now: datetime | None = None) -> dict[str, int]:
    """Release unpaid holds past their expiry, cancelling their PaymentIntents (or confirming any that were paid)."""
    now = resolve_now(svc, now)
    with svc.session() as s:
        ids = list(
            s.exec(
                select(Booking.id).where(
                    Booking.status == BookingStatus.AWAITING_PAYMENT, col(Booking.hold_expires_at) < now
                )
            )
        )
    counts: dict[str, int] = {}
    for booking_id in ids:
        assert booking_id is not None
        try:
            with lease(svc, booking_id):
                outcome = release_hold(svc, booking_id, actor, now)
        except BookingBusy:
            continue  # another process has it in hand
        except GatewayError as exc:
            log.warning("Hold expiry deferred booking=%s: %s", booking_id, exc.message)
            outcome = "deferred"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def finish_paid(
    svc: Services,
    *,
    actor: str = "system",
    now: datetime | None = None,
    window: timedelta = FINISH_WINDOW,
    limit: int = FINISH_PER_ROUND,
) -> dict[str, int]:
    """Confirm bookings still awaiting payment whose PaymentIntent has succeeded at Stripe and that nobody is
    finishing (no live lease: the process that took the payment crashed), without waiting for the hold to run out."""
    now = resolve_now(svc, now)
    wall = datetime.now(UTC)  # leases run on the wall clock (services.booking.lease)
    with svc.session() as s:
        rows = list(
            s.exec(
                select(Booking.id, Booking.payment_intent_id)
                .where(
                    Booking.status == BookingStatus.AWAITING_PAYMENT,
                    col(Booking.payment_intent_id).is_not(None),
                    col(Booking.created_at) >= now - window,
                    sa.or_(col(Booking.lease_until).is_(None), col(Booking.lease_until) < wall),
                )
                .order_by(col(Booking.created_at), col(Booking.id))
                .limit(limit)
            )
        )
    counts: dict[str, int] = {}
    for booking_id, pi_id in rows:
        assert booking_id is not None and pi_id is not None
        try:
            if svc.payments.retrieve_payment_intent(pi_id).get("status") != "succeeded":
                continue  # the customer has not paid (yet): the hold's expiry deals with it
            with lease(svc, booking_id):
                outcome = confirm_under_lease(svc, booking_id, pi_id, actor, now).outcome
        except BookingBusy:
            outcome = "busy"  # its owner is alive after all (or the webhook came): it finishes the booking
        except GatewayError as exc:
            log.warning("Finishing a paid booking deferred booking=%s: %s", booking_id, exc.message)
            outcome = "deferred"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def advance_legs(svc: Services, *, now: datetime | None = None, actor: str = "system") -> int:
    """Move confirmed days to IN_PROGRESS while they run and COMPLETED once over."""
    now = resolve_now(svc, now)
    changed = 0
    with svc.session() as s:
        legs = list(
            s.exec(
                select(BookingLeg).where(
                    col(BookingLeg.state).in_([LegState.CONFIRMED, LegState.IN_PROGRESS]), BookingLeg.starts_at <= now
                )
            )
        )
        touched: set[int] = set()
        for leg in legs:
            target = LegState.COMPLETED if leg.ends_at <= now else LegState.IN_PROGRESS
            if leg.state != target:
                set_leg_state(leg, target, now)
                touched.add(leg.booking_id)
                changed += 1
        for booking_id in touched:
            booking = load_booking(s, booking_id)
            before = booking.status
            booking.status = derive_status(booking_legs(s, booking_id))
            if booking.status != before:
                booking.updated_at = now
            audit.record(s, "booking.legs.advanced", actor=actor, at=now, booking=booking, status=booking.status)
    return changed
