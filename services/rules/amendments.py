"""Changing a paid booking (runbook 003 §3, amendments): what each day becomes and the money that settles it.

A change maps every active day of a booking to its new shape (a date and a time on it), or to nothing (dropped), and
may add days. The new days are priced at the booking's own hourly rate (a new room's when it moves room) with the
multi-day discount band recomputed for the new number of days. Money then settles day by day:

- a day added, or a day whose new price is higher, is charged the difference;
- a day dropped is a cancellation: it refunds under the policy bands the booking was sold with;
- a day made shorter is a partial cancellation: the share of its price for the hours given up refunds under the
  policy; any other fall in price (a cheaper room, a discount band reached) is refunded in full.

The charge and the refunds are netted into one amount: charged with a new payment, or refunded on the payment made.
Pure: no I/O, `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time

from services.rules.policy import Policy, RefundBand
from services.rules.pricing import DiscountBands, discount_percent
from services.rules.refunds import refund_for_leg
from services.rules.rounding import round_half_up
from services.rules.tax import TaxPolicy


@dataclass(frozen=True, order=True)
class DayShape:
    """One day of a booking: the date and its start and end in venue time."""

    day: date
    start: time
    end: time

    @property
    def minutes(self) -> int:
        return (self.end.hour * 60 + self.end.minute) - (self.start.hour * 60 + self.start.minute)


@dataclass(frozen=True)
class PaidDay:
    """An active day of the booking as it stands, with what was paid for it and refunded on it so far."""

    leg_id: int
    shape: DayShape
    starts_at: datetime  # the day's start, timezone-aware
    paid_cents: int
    refunded_cents: int = 0

    @property
    def left_cents(self) -> int:
        return max(self.paid_cents - self.refunded_cents, 0)


@dataclass(frozen=True)
class DayChange:
    """What happens to one day and the money on it."""

    leg_id: int | None  # None: a day added
    old: DayShape | None  # None: added
    new: DayShape | None  # None: dropped
    old_left_cents: int
    new_price_cents: int
    charge_cents: int = 0
    new_tax_cents: int = 0  # the tax inside new_price_cents
    refund_cents: int = 0
    band: str = ""  # the policy band applied to a cancelled part, e.g. '50 % (30 h before)'

    @property
    def kind(self) -> str:
        """'added', 'dropped', 'kept' (same date and times) or 'changed'."""
        if self.old is None:
            return "added"
        if self.new is None:
            return "dropped"
        return "kept" if self.old == self.new else "changed"


@dataclass(frozen=True)
class Settlement:
    days: tuple[DayChange, ...]

    @property
    def charge_cents(self) -> int:
        return sum(d.charge_cents for d in self.days)

    @property
    def refund_cents(self) -> int:
        return sum(d.refund_cents for d in self.days)

    @property
    def net_cents(self) -> int:
        """Positive: to charge the customer; negative: to refund; zero: no money moves."""
        return self.charge_cents - self.refund_cents

    @property
    def new_total_cents(self) -> int:
        return sum(d.new_price_cents for d in self.days if d.new is not None)

    @property
    def old_total_cents(self) -> int:
        return sum(d.old_left_cents for d in self.days if d.old is not None)

    @property
    def changes_anything(self) -> bool:
        return any(d.kind != "kept" for d in self.days) or self.net_cents != 0


def price_days(
    shapes: Sequence[DayShape],
    *,
    hourly_cents: int,
    discount_eligible: bool,
    policy: Policy,
    bands: DiscountBands | None = None,
    other_days: int = 0,
    tax: TaxPolicy | None = None,
) -> dict[date, int]:
    """Each day's price, tax included (see taxed_days)."""
    taxed = taxed_days(
        shapes,
        hourly_cents=hourly_cents,
        discount_eligible=discount_eligible,
        policy=policy,
        bands=bands,
        other_days=other_days,
        tax=tax,
    )
    return {day: gross for day, (gross, _tax) in taxed.items()}


def taxed_days(
    shapes: Sequence[DayShape],
    *,
    hourly_cents: int,
    discount_eligible: bool,
    policy: Policy,
    bands: DiscountBands | None = None,
    other_days: int = 0,
    tax: TaxPolicy | None = None,
) -> dict[date, tuple[int, int]]:
    """Each day's (price, tax inside it): hourly rate × its own duration, less the discount band the booking's number
    of days reaches — these days plus `other_days` (days of the booking that count but are not re-priced: begun or
    over) — from `bands` (those the booking was sold with; the policy's when None), plus the tax at `tax` (the rates
    the booking was sold at; None: no tax). Rounded half up per day, as a new booking's price is, so a day's refund
    is exact."""
    if hourly_cents < 0 or any(s.minutes <= 0 for s in shapes):
        raise ValueError("price and durations must be positive")
    pct = discount_percent(len({s.day for s in shapes}) + other_days, discount_eligible, policy, bands)
    prices = {}
    for shape in shapes:
        base = round_half_up(hourly_cents * shape.minutes, 60)
        net = base - round_half_up(base * pct, 100)
        day_tax = tax.total_tax_cents([("room", net)]) if tax is not None else 0
        prices[shape.day] = (net + day_tax, day_tax)
    return prices


def resulting_days(
    current: Sequence[PaidDay], target: Sequence[tuple[int | None, DayShape | None]]
) -> list[tuple[int | None, DayShape | None]]:
    """Every day after a change: `target`'s pairs, then the days of `current` it does not name, kept as they are.
    Raises ValueError for a leg id that is not one of `current`'s days."""
    named = {leg_id for leg_id, _ in target if leg_id is not None}
    unknown = named - {d.leg_id for d in current}
    if unknown:
        raise ValueError(f"not days of this booking: {sorted(unknown)}")
    return list(target) + [(d.leg_id, d.shape) for d in current if d.leg_id not in named]


def settle(
    current: Sequence[PaidDay],
    target: Sequence[tuple[int | None, DayShape | None]],
    prices: dict[date, int],
    *,
    bands: tuple[RefundBand, ...],
    now: datetime,
    taxes: dict[date, int] | None = None,
) -> Settlement:
    """The money for a change: `target` pairs each current day's leg id with its new shape (None: dropped) and adds
    (None, shape) for new days; `prices` are the new days' prices (price_days). Days of `current` not named in
    `target` are kept as they are."""
    by_leg = {d.leg_id: d for d in current}
    out = []
    for leg_id, new in resulting_days(current, target):
        old = by_leg[leg_id] if leg_id is not None else None
        if old is None and new is None:
            continue
        day = _settle_day(old, new, prices, bands, now)
        if taxes and day.new is not None:
            day = replace(day, new_tax_cents=taxes.get(day.new.day, 0))
        out.append(day)
    return Settlement(tuple(sorted(out, key=lambda c: ((c.new or c.old) or DayShape(date.min, time(), time())).day)))


def _settle_day(
    old: PaidDay | None, new: DayShape | None, prices: dict[date, int], bands: tuple[RefundBand, ...], now: datetime
) -> DayChange:
    new_price = prices[new.day] if new is not None else 0
    if old is None:
        return DayChange(None, None, new, 0, new_price, charge_cents=new_price)
    left = old.left_cents
    if new is None:  # dropped: a cancellation of the day
        q = refund_for_leg(
            leg_start=old.starts_at,
            paid_cents=old.paid_cents,
            already_refunded_cents=old.refunded_cents,
            bands=bands,
            now=now,
        )
        return DayChange(old.leg_id, old.shape, None, left, 0, refund_cents=q.refund_cents, band=q.band)
    # Against what the day was sold at, not what is left of it: a refund already made on it (goodwill, a fix) stays
    # made and is never charged back.
    difference = new_price - old.paid_cents
    if difference >= 0:
        return DayChange(old.leg_id, old.shape, new, left, new_price, charge_cents=difference)
    fall = -difference
    given_up = max(old.shape.minutes - new.minutes, 0)
    cancelled = min(fall, round_half_up(old.paid_cents * given_up, old.shape.minutes)) if given_up else 0
    band = ""
    refund = fall - cancelled
    if cancelled:
        q = refund_for_leg(
            leg_start=old.starts_at, paid_cents=cancelled, already_refunded_cents=0, bands=bands, now=now
        )
        refund += q.refund_cents
        band = q.band
    return DayChange(old.leg_id, old.shape, new, left, new_price, refund_cents=min(refund, left), band=band)
