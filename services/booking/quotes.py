"""What a booking would cost and what cancelling it would refund: the quotes staff and customers see before they
act. Reads only; start_booking (saga) and cancel_booking (cancel) act on the same quotes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from models.tables import BookingLeg, LegState
from services.booking.claims import busy_span, busy_times
from services.booking.requests import BookingRequest, QuoteResult
from services.booking.store import booking_legs, load_booking, resolve_now, room_limits
from services.core.context import Services
from services.rules.availability import check_conflicts, check_request, leg_windows
from services.rules.pricing import price
from services.rules.refunds import LegRefund, bands_from_snapshot, refund_for_leg


def quote(
    svc: Services, req: BookingRequest, *, now: datetime | None = None, check_calendar: bool = True
) -> QuoteResult:
    """The price of a request and every reason it cannot be booked (rules, then calendars and holds)."""
    now = resolve_now(svc, now)
    room = svc.catalogue.room(req.room)
    policy = svc.policy
    slot = req.slot()
    reasons = check_request(slot, room_limits(room), policy, now, svc.catalogue.closure_map)
    q = price(
        room_slug=room.slug,
        hourly_cents=room.hourly_price_cents,
        discount_eligible=room.discount_eligible,
        dates=list(req.dates),
        minutes_per_day=req.minutes_per_day,
        policy=policy,
        currency=svc.settings.currency,
        tax=svc.tax,
    )
    if check_calendar and not reasons and req.dates:
        legs = leg_windows(slot, policy)
        start, end = busy_span(legs, policy.buffer_minutes)
        reasons = check_conflicts(legs, busy_times(svc, room.slug, start, end, now), policy)
    return QuoteResult(q, reasons)


def cancellation_quote(
    svc: Services, booking_id: int, leg_ids: Sequence[int] | None = None, *, now: datetime | None = None
) -> list[tuple[BookingLeg, LegRefund]]:
    """What cancelling these days (default: all still active) refunds under the booking's policy snapshot."""
    now = resolve_now(svc, now)
    with svc.read_session() as s:
        booking = load_booking(s, booking_id)
        bands = bands_from_snapshot(booking.policy_snapshot)
        legs = [leg for leg in booking_legs(s, booking_id) if leg_ids is None or leg.id in leg_ids]
    out = []
    for leg in legs:
        if leg.state not in (LegState.CONFIRMED, LegState.AWAITING_PAYMENT):
            continue
        paid = leg.price_cents if leg.state == LegState.CONFIRMED else 0
        out.append(
            (
                leg,
                refund_for_leg(
                    leg_start=leg.starts_at,
                    paid_cents=paid,
                    already_refunded_cents=leg.refunded_cents,
                    bands=bands,
                    now=now,
                ),
            )
        )
    return out
