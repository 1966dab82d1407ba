"""Damage deposits (issue 15 §3, runbook 003 §6): when the card hold is placed, how long it lasts, when it is
released, and what a claim against it may be. Pure: times are UTC-aware datetimes, money integer cents; the caller
passes `now`.

Why the timing matters: a card authorisation does not last. Stripe cancels an uncaptured PaymentIntent after 7 days
for card payments made by the customer; an off-session hold placed with a saved card is treated the same way. So the
card is saved (SetupIntent) when the booking is made, and the hold placed shortly before the first day — early enough
to find a declined card and ask for another, late enough that it still stands when the claim window after the last
day closes. A booking too long for one hold to cover is held again before the first hold lapses (each re-hold is a new
authorisation on the saved card; the old one is released once the new one stands).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from services.rules.fmt import money

# Stripe cancels an uncaptured card PaymentIntent after 7 days; we act half a day before that.
AUTH_LIFETIME = timedelta(days=7)
AUTH_MARGIN = timedelta(hours=12)
NOTES_MIN, NOTES_MAX = 10, 2000


@dataclass(frozen=True)
class DepositTerms:
    """What a room asks: the amount held, how long before the first day the hold is placed, and how long after the
    last day a claim may be filed before the hold is released."""

    amount_cents: int
    hold_hours_before: int = 48
    claim_window_hours: int = 72

    def problems(self) -> list[str]:
        found = []
        if self.amount_cents <= 0:
            found.append("A deposit must be more than $0.00")
        if not 0 <= self.hold_hours_before <= 144:
            found.append("The hold is placed at most 6 days (144 h) before the first day: a card hold lasts 7")
        if not 1 <= self.claim_window_hours <= 144:
            found.append("The claim window is 1 to 144 hours after the last day")
        return found


# Where a booking keeps the deposit its room asked when it was sold (inside Booking.pricing_snapshot).
SNAPSHOT_KEY = "deposit"


def terms_snapshot(terms: DepositTerms | None) -> dict[str, Any]:
    """The pricing snapshot's part for a sale: {"deposit": terms}, or {"deposit": None} when the room asks none."""
    return {SNAPSHOT_KEY: asdict(terms) if terms is not None else None}


def terms_recorded(pricing_snapshot: Mapping[str, Any]) -> bool:
    """The sale recorded whether a deposit was asked (every sale since Room Desk kept deposits; not older ones)."""
    return SNAPSHOT_KEY in pricing_snapshot


def sold_terms(pricing_snapshot: Mapping[str, Any]) -> DepositTerms | None:
    """The deposit a booking was sold with (None: its room asked none then, or the sale did not record it). A later
    change to the room's deposit never reaches a booking already made."""
    raw = pricing_snapshot.get(SNAPSHOT_KEY)
    if not isinstance(raw, Mapping):
        return None
    try:
        terms = DepositTerms(int(raw["amount_cents"]), int(raw["hold_hours_before"]), int(raw["claim_window_hours"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None if terms.problems() else terms


@dataclass(frozen=True)
class DepositPlan:
    """When each hold is placed (the first, then any re-hold), and when the last one is released unless a claim is
    filed. `holds[i]` stands until `holds[i] + AUTH_LIFETIME`; each is placed before the one before it lapses."""

    holds: tuple[datetime, ...]
    release_at: datetime

    @property
    def first_hold(self) -> datetime:
        return self.holds[0]

    @property
    def rehold_needed(self) -> bool:
        return len(self.holds) > 1


def plan_deposit(terms: DepositTerms, *, first_start: datetime, last_end: datetime, now: datetime) -> DepositPlan:
    """The holds a booking from `first_start` to `last_end` needs: the first `hold_hours_before` the first day (at
    once when the booking is made later than that), then again every AUTH_LIFETIME − AUTH_MARGIN until one stands
    through the claim window."""
    problems = terms.problems()
    if problems:
        raise ValueError("; ".join(problems))
    if last_end <= first_start:
        raise ValueError("the last day must end after the first one starts")
    release_at = last_end + timedelta(hours=terms.claim_window_hours)
    at = max(now, first_start - timedelta(hours=terms.hold_hours_before))
    holds = [at]
    usable = AUTH_LIFETIME - AUTH_MARGIN
    while holds[-1] + usable < release_at:
        holds.append(holds[-1] + usable)
    return DepositPlan(tuple(holds), release_at)


def claim_problems(
    amount_cents: int,
    *,
    held_cents: int,
    notes: str,
    now: datetime,
    release_at: datetime,
    currency: str = "CAD",
) -> list[str]:
    """Why a claim against a deposit cannot be filed, as sentences (empty: it can, and then needs two approvals)."""
    found = []
    if amount_cents <= 0:
        found.append("Claim more than $0.00")
    elif amount_cents > held_cents:
        found.append(
            f"At most the {money(held_cents, currency)} held can be claimed ({money(amount_cents, currency)} asked)"
        )
    if len(notes.strip()) < NOTES_MIN:
        found.append(f"Say what was damaged and how (at least {NOTES_MIN} characters): it is the claim's evidence")
    elif len(notes) > NOTES_MAX:
        found.append(f"The notes are at most {NOTES_MAX} characters ({len(notes)} given)")
    if now >= release_at:
        found.append("The claim window has closed: the hold was due to be released")
    return found
