"""Payments the old booking system took: their booking lives only in the PaymentIntent's metadata (room, days, times,
customer; seed 000). What reconciliation and its fixes need to judge them as they judge a booking Room Desk holds —
each day's share of what was charged, what the cancellation policy would have refunded at a given moment, the extras
the metadata carries. Pure: no database, no gateway."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, tzinfo

from services.core.catalogue import Room
from services.rules.policy import RefundBand
from services.rules.refunds import LegRefund, refund_for_leg

# Above this many days the choices of days to compare a refund with are too many to try (the old Worker sold at
# most 10 weekdays per booking): such a refund is compared with cancelling every day only.
_MAX_DAYS_TRIED = 12


def day_shares(total_cents: int, days: int) -> list[int]:
    """What was charged, shared out over the days, the odd cents to the first days, so the days add up to it (the old
    system kept no price per day; an adopted booking's days are priced the same way)."""
    if days <= 0:
        return []
    base, rest = divmod(total_cents, days)
    return [base + (1 if i < rest else 0) for i in range(days)]


def day_start(day: date, start: time, tz: tzinfo) -> datetime:
    """When a day of the old booking began, as an aware instant (venue wall-clock time)."""
    return datetime.combine(day, start, tzinfo=tz)


def policy_quotes(
    days: Sequence[date],
    start: time,
    shares: Sequence[int],
    bands: tuple[RefundBand, ...],
    at: datetime,
    tz: tzinfo,
) -> list[LegRefund]:
    """What cancelling each day at `at` would have refunded under the policy bands (hours before the day's start)."""
    return [
        refund_for_leg(
            leg_start=day_start(d, start, tz), paid_cents=paid, already_refunded_cents=0, bands=bands, now=at
        )
        for d, paid in zip(days, shares, strict=True)
    ]


def within(amount: int, quote: int, days: int) -> bool:
    """A refund agrees with the policy's quote: the old system rounded each day's percentage its own way, so a cent
    per day either side is the same answer."""
    return abs(amount - quote) <= max(days, 1)


def matches_some_days(amount: int, quotes: Sequence[int]) -> bool:
    """The refund is what cancelling some of the days (one or more) would have refunded: a partial refund of a
    multi-day payment usually cancelled only part of it, and the old system did not record which."""
    if len(quotes) > _MAX_DAYS_TRIED:
        return within(amount, sum(quotes), len(quotes))
    reachable: set[tuple[int, int]] = {(0, 0)}  # (sum of the chosen days' quotes, how many days chosen)
    for q in quotes:
        reachable |= {(total + q, n + 1) for total, n in reachable}
    return any(n and within(amount, total, n) for total, n in reachable)


def metadata_extras(metadata: Mapping[str, str], room: Room) -> dict[str, object]:
    """The extras the old system wrote into the metadata, under the room's own extras keys."""
    return {f.key: metadata[f.key] for f in room.extras if str(metadata.get(f.key) or "").strip()}


def missing_labels(room: Room, extras: Mapping[str, object]) -> list[str]:
    """The room's extras questions left unanswered."""
    return [f.label for f in room.extras if f.key not in extras]
