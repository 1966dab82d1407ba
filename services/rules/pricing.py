"""Pricing in integer cents: hourly rate × duration per day, with a multi-day discount for eligible rooms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.rules.policy import Policy

# (at least this many days, percent off), e.g. ((3, 10), (5, 15)).
DiscountBands = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LegPrice:
    day: date
    base_cents: int
    discount_cents: int

    @property
    def total_cents(self) -> int:
        return self.base_cents - self.discount_cents


@dataclass(frozen=True)
class Quote:
    room_slug: str
    hourly_cents: int
    minutes_per_day: int
    discount_percent: int
    legs: tuple[LegPrice, ...]
    currency: str = "CAD"

    @property
    def subtotal_cents(self) -> int:
        return sum(leg.base_cents for leg in self.legs)

    @property
    def discount_cents(self) -> int:
        return sum(leg.discount_cents for leg in self.legs)

    @property
    def total_cents(self) -> int:
        return sum(leg.total_cents for leg in self.legs)

    def snapshot(self) -> dict[str, object]:
        """What the booking stores so later checks compare against the price it was sold at."""
        return {
            "room": self.room_slug,
            "hourly_cents": self.hourly_cents,
            "minutes_per_day": self.minutes_per_day,
            "discount_percent": self.discount_percent,
            "total_cents": self.total_cents,
            "legs": {leg.day.isoformat(): leg.total_cents for leg in self.legs},
        }


def discount_percent(days: int, eligible: bool, policy: Policy, bands: DiscountBands | None = None) -> int:
    """The largest band the number of days reaches (the policy's bands, or `bands` — those a booking was sold
    with); 0 for rooms that are not discount-eligible."""
    if not eligible:
        return 0
    pct = 0
    for min_days, percent in sorted(policy.discount_bands if bands is None else bands):
        if days >= min_days:
            pct = percent
    return pct


def round_half_up(numerator: int, denominator: int) -> int:
    """Round half up on non-negative integers, so a price never depends on float representation."""
    return (2 * numerator + denominator) // (2 * denominator)


def price(
    *,
    room_slug: str,
    hourly_cents: int,
    discount_eligible: bool,
    dates: tuple[date, ...] | list[date],
    minutes_per_day: int,
    policy: Policy,
    currency: str = "CAD",
) -> Quote:
    """Price each day-leg; the discount is applied per leg so a per-day refund is exact."""
    if hourly_cents < 0 or minutes_per_day < 0:
        raise ValueError("price and duration must be non-negative")
    days = sorted(set(dates))
    pct = discount_percent(len(days), discount_eligible, policy)
    base = round_half_up(hourly_cents * minutes_per_day, 60)
    discount = round_half_up(base * pct, 100)
    legs = tuple(LegPrice(d, base, discount) for d in days)
    return Quote(room_slug, hourly_cents, minutes_per_day, pct, legs, currency)
