"""Pricing in integer cents: hourly rate × duration per day, with a multi-day discount for eligible rooms, and the
sales tax on each day's net (services/rules/tax.py: per line and per rate, half up).

A day's price (`LegPrice.total_cents`, stored as BookingLeg.price_cents) is what the customer pays for it: the net
after the discount plus its tax. Refund percentages apply to that price, and the tax inside a refund is its
proportional share (tax.refund_split), so one refunded day gives back exactly its own tax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from services.rules.policy import Policy
from services.rules.rounding import round_half_up

if TYPE_CHECKING:
    from services.rules.tax import TaxLine, TaxPolicy

# (at least this many days, percent off), e.g. ((3, 10), (5, 15)).
DiscountBands = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LegPrice:
    day: date
    base_cents: int
    discount_cents: int
    taxes: tuple[TaxLine, ...] = ()

    @property
    def net_cents(self) -> int:
        """The day's price before tax, after the discount."""
        return self.base_cents - self.discount_cents

    @property
    def tax_cents(self) -> int:
        return sum(t.tax_cents for t in self.taxes)

    @property
    def total_cents(self) -> int:
        """What the customer pays for the day: net + tax."""
        return self.net_cents + self.tax_cents


@dataclass(frozen=True)
class Quote:
    room_slug: str
    hourly_cents: int
    minutes_per_day: int
    discount_percent: int
    legs: tuple[LegPrice, ...]
    currency: str = "CAD"
    # The rates it was taxed at (TaxPolicy.snapshot()); {} = sold without tax.
    tax_snapshot: dict[str, object] = field(default_factory=dict)

    @property
    def subtotal_cents(self) -> int:
        return sum(leg.base_cents for leg in self.legs)

    @property
    def discount_cents(self) -> int:
        return sum(leg.discount_cents for leg in self.legs)

    @property
    def net_cents(self) -> int:
        return sum(leg.net_cents for leg in self.legs)

    @property
    def tax_cents(self) -> int:
        return sum(leg.tax_cents for leg in self.legs)

    @property
    def total_cents(self) -> int:
        """What the customer pays in all, tax included."""
        return sum(leg.total_cents for leg in self.legs)

    def tax_lines(self) -> list[tuple[str, int]]:
        """Per tax (in the order the rates were configured): (label, cents) summed over the days."""
        out: dict[str, int] = {}
        for leg in self.legs:
            for t in leg.taxes:
                out[t.label] = out.get(t.label, 0) + t.tax_cents
        return list(out.items())

    def snapshot(self) -> dict[str, object]:
        """What the booking stores so later checks compare against the price it was sold at."""
        return {
            "room": self.room_slug,
            "hourly_cents": self.hourly_cents,
            "minutes_per_day": self.minutes_per_day,
            "discount_percent": self.discount_percent,
            "total_cents": self.total_cents,
            "tax_cents": self.tax_cents,
            "legs": {leg.day.isoformat(): leg.total_cents for leg in self.legs},
            "legs_tax": {leg.day.isoformat(): leg.tax_cents for leg in self.legs},
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


def price(
    *,
    room_slug: str,
    hourly_cents: int,
    discount_eligible: bool,
    dates: tuple[date, ...] | list[date],
    minutes_per_day: int,
    policy: Policy,
    currency: str = "CAD",
    tax: TaxPolicy | None = None,
    bands: DiscountBands | None = None,
) -> Quote:
    """Price each day-leg; the discount and the tax are applied per leg so a per-day refund is exact. `tax` None:
    no tax (the old system's prices); `bands`: the discount bands a booking was sold with."""
    if hourly_cents < 0 or minutes_per_day < 0:
        raise ValueError("price and duration must be non-negative")
    days = sorted(set(dates))
    pct = discount_percent(len(days), discount_eligible, policy, bands)
    base = round_half_up(hourly_cents * minutes_per_day, 60)
    discount = round_half_up(base * pct, 100)
    taxes = tax.taxes_for("room", base - discount) if tax is not None else ()
    legs = tuple(LegPrice(d, base, discount, taxes) for d in days)
    snapshot = tax.snapshot() if tax is not None else {}
    return Quote(room_slug, hourly_cents, minutes_per_day, pct, legs, currency, snapshot)
