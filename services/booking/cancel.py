"""Cancelling a whole booking or some of its days: refund per the policy snapshot, delete events, email."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from models.tables import (
    BookingLeg,
    BookingStatus,
    LegState,
)
from services.booking.claims import release_claims
from services.booking.events import delete_events
from services.booking.holds import release_hold
from services.booking.lease import lease
from services.booking.quotes import cancellation_quote
from services.booking.refunds import cancel_refund_key, refund_payment, refund_tax_for
from services.booking.requests import CancelResult
from services.booking.store import booking_legs, derive_status, load_booking, resolve_now, set_leg_state
from services.core import audit
from services.core.context import Services
from services.core.errors import GatewayError, InvalidState, QuoteChanged
from services.notify import emails, outbox
from services.rules.refunds import LegRefund


def cancel_booking(
    svc: Services,
    booking_id: int,
    *,
    actor: str,
    leg_ids: Sequence[int] | None = None,
    reason: str = "Customer asked to cancel",
    now: datetime | None = None,
    refund_cents: int | None = None,
    refund_key: str | None = None,
    expected_refund_cents: int | None = None,
) -> CancelResult:
    """Cancel a whole booking or some of its days: refund per the policy snapshot, delete their events, email.

    `refund_cents` replaces the policy's refund for these days (an approved override, services/finance/overrides.py;
    never more than what is left of them); `refund_key` is then its Stripe idempotency key. `expected_refund_cents`:
    the refund the person was shown for exactly `leg_ids`; if, under the lease, those days or that refund differ (a
    colleague cancelled a day meanwhile, a band ended), QuoteChanged and nothing happens."""
    now = resolve_now(svc, now)
    with lease(svc, booking_id):
        return cancel_under_lease(
            svc, booking_id, actor, leg_ids, reason, now, refund_cents, refund_key, expected_refund_cents
        )


def _spread(quotes: Sequence[tuple[BookingLeg, LegRefund]], total: int) -> dict[int | None, int]:
    """Share a refund over the days in day order: first up to each day's policy refund, then up to what is left of
    each day, so a day never gets back more than was paid for it."""
    shares = {leg.id: 0 for leg, _ in quotes}
    left = total
    for up_to_policy in (True, False):
        for leg, q in quotes:
            cap = q.refund_cents if up_to_policy else q.left_cents
            give = min(max(cap - shares[leg.id], 0), left)
            shares[leg.id] += give
            left -= give
    return shares


def cancel_under_lease(
    svc: Services,
    booking_id: int,
    actor: str,
    leg_ids: Sequence[int] | None,
    reason: str,
    now: datetime,
    refund_cents: int | None = None,
    refund_key: str | None = None,
    expected_refund_cents: int | None = None,
) -> CancelResult:
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        status = BookingStatus(booking.status)
    if status == BookingStatus.AWAITING_PAYMENT:
        if leg_ids is not None:
            raise InvalidState("An unpaid booking is cancelled as a whole")
        outcome = release_hold(svc, booking_id, actor, now, action="booking.hold.cancelled")
        if outcome != "expired":  # paid a moment ago (card or invoice): confirmed instead, nothing cancelled
            raise InvalidState(
                "It was paid a moment ago and is now confirmed: nothing was cancelled. Cancel it again to cancel "
                f"with the policy refund ({outcome.replace('_', ' ')})"
            )
        with svc.session() as s:
            days = [leg.day for leg in booking_legs(s, booking_id)]
        return CancelResult(booking_id, 0, days)

    quotes = cancellation_quote(svc, booking_id, leg_ids, now=now)
    quotes = [(leg, q) for leg, q in quotes if leg.state == LegState.CONFIRMED]
    if not quotes:
        raise InvalidState("None of these days can be cancelled (already cancelled, refunded or past)")
    policy_total = sum(q.refund_cents for _, q in quotes)
    if expected_refund_cents is not None and (
        policy_total != expected_refund_cents or (leg_ids is not None and {leg.id for leg, _ in quotes} != set(leg_ids))
    ):
        raise QuoteChanged("These days or their refund changed since they were shown: nothing was cancelled")
    total = policy_total if refund_cents is None else refund_cents
    left = sum(q.left_cents for _, q in quotes)
    if not 0 <= total <= left:
        raise InvalidState(f"A refund of {total / 100:.2f} is not possible: {left / 100:.2f} is left for these days")
    ids = sorted(leg.id for leg, _ in quotes if leg.id is not None)

    if total > 0:
        # Re-check against Stripe just before acting: the money must still be there to refund.
        pi = svc.payments.retrieve_payment_intent(booking.payment_intent_id or "")
        charge = pi.get("latest_charge") or {}
        remaining = int(charge.get("amount", 0)) - int(charge.get("amount_refunded", 0))
        short = f"Stripe shows {remaining / 100:.2f} left to refund, less than the {total / 100:.2f} due: "
        short += "sync and check this booking before cancelling"
        if pi.get("status") != "succeeded":
            raise InvalidState(short)
        # Less left than due can mean an earlier try of this very cancellation refunded and lost the answer: the
        # refund below then replays by its key; any other refund it would make is refused by Stripe (over-refund).
        key = refund_key or cancel_refund_key(booking.reference, ids)
        errors: list[str] = []
        if not refund_payment(
            svc,
            booking_id,
            total,
            origin="cancellation",
            reason=reason,
            actor=actor,
            now=now,
            key=key,
            policy_quote=policy_total,
            leg_ids=ids,
            errors=errors,
        ):
            if remaining < total:
                raise InvalidState(short)
            why = errors[0] if errors else "the payment provider did not answer"
            raise GatewayError(f"The refund could not be made ({why}); nothing was cancelled.", transient=True)

    with svc.session() as s:
        booking = load_booking(s, booking_id)
        shares = _spread(quotes, total)
        legs = booking_legs(s, booking_id)
        cancelled = []
        for leg in legs:
            if leg.id in shares:
                set_leg_state(leg, LegState.CANCELLED, now)
                leg.refunded_cents += shares[leg.id]
                cancelled.append(leg)
        release_claims(s, booking_id, ids)
        booking.status = derive_status(legs)
        booking.updated_at = now
        audit.record(
            s,
            "booking.cancelled",
            actor=actor,
            at=now,
            booking=booking,
            days=[leg.day for leg in cancelled],
            refund_cents=total,
            reason=reason,
            quotes={str(leg.day): q.band for leg, q in quotes},
            # An override's record says what the policy gave; an ordinary cancellation refunds exactly that.
            policy_refund_cents=None if refund_cents is None else policy_total,
        )
        refund_tax = (
            refund_tax_for(s, booking_id, refund_key or cancel_refund_key(booking.reference, ids)) if total else 0
        )
        mail = emails.cancellation(svc.catalogue, svc.settings, booking, cancelled, total, refund_tax_cents=refund_tax)
        row = outbox.queue(
            s,
            booking,
            kind="cancellation",
            mail=mail,
            key=f"{booking.reference}-cancel-{'-'.join(map(str, ids))}",
            now=now,
        )
        targets = [(leg.calendar_id, leg.event_id, leg.day) for leg in cancelled if leg.event_id]

    problems = delete_events(svc, booking_id, targets, actor, now)
    assert row.id is not None
    if not outbox.deliver(svc, row.id, now=now, actor=actor):
        problems.append("Cancellation email could not be sent (queued)")
    return CancelResult(booking_id, total, [leg.day for leg, _ in quotes], problems)
