"""Damage-deposit timing and claims (issue 15 §3): a card hold lasts 7 days, so it is placed shortly before the day,
held again when one hold cannot stand through the claim window, and a claim is at most what is held, with notes,
inside the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.rules.deposits import AUTH_LIFETIME, DepositTerms, claim_problems, plan_deposit

STUDIO = DepositTerms(amount_cents=20_000)  # $200 held, 48 h before, claims for 72 h after
NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
WED_10 = datetime(2026, 3, 4, 17, 0, tzinfo=UTC)  # Wed 4 Mar 09:00 Vancouver


def test_the_hold_is_placed_two_days_before_and_released_three_days_after() -> None:
    first = WED_10 + timedelta(days=7)
    plan = plan_deposit(STUDIO, first_start=first, last_end=first + timedelta(hours=3), now=NOW)
    assert plan.holds == (first - timedelta(hours=48),)
    assert plan.release_at == first + timedelta(hours=3 + 72)
    assert not plan.rehold_needed


def test_a_booking_made_inside_the_two_days_is_held_at_once() -> None:
    plan = plan_deposit(STUDIO, first_start=WED_10, last_end=WED_10 + timedelta(hours=2), now=NOW)
    assert plan.first_hold == NOW


def test_a_long_booking_is_held_again_before_the_first_hold_lapses() -> None:
    """Five days in a row plus a 72 h claim window: one 7-day authorisation cannot stand from two days before the
    first day to the window's end."""
    first = WED_10 + timedelta(days=7)
    plan = plan_deposit(STUDIO, first_start=first, last_end=first + timedelta(days=4, hours=3), now=NOW)
    assert plan.rehold_needed and len(plan.holds) == 2
    assert plan.holds[1] == plan.holds[0] + timedelta(days=6, hours=12)


@given(
    lead=st.integers(min_value=0, max_value=60 * 24),
    days=st.integers(min_value=0, max_value=30),
    hours_before=st.integers(min_value=0, max_value=144),
    window=st.integers(min_value=1, max_value=144),
)
def test_some_hold_always_stands_from_the_first_hold_to_the_release(
    lead: int, days: int, hours_before: int, window: int
) -> None:
    terms = DepositTerms(amount_cents=100, hold_hours_before=hours_before, claim_window_hours=window)
    first = NOW + timedelta(hours=lead)
    plan = plan_deposit(terms, first_start=first, last_end=first + timedelta(days=days, hours=2), now=NOW)
    assert plan.first_hold >= NOW and plan.first_hold <= first
    for earlier, later in zip(plan.holds, plan.holds[1:], strict=False):
        assert later < earlier + AUTH_LIFETIME  # placed before the one before it lapses
    assert plan.holds[-1] + AUTH_LIFETIME > plan.release_at  # the last one stands through the claim window


def test_terms_and_a_backwards_booking_are_refused() -> None:
    with pytest.raises(ValueError, match=r"more than \$0.00"):
        plan_deposit(DepositTerms(0), first_start=WED_10, last_end=WED_10 + timedelta(hours=1), now=NOW)
    with pytest.raises(ValueError, match="at most 6 days"):
        plan_deposit(
            DepositTerms(100, hold_hours_before=200), first_start=WED_10, last_end=WED_10 + timedelta(hours=1), now=NOW
        )
    with pytest.raises(ValueError, match="must end after"):
        plan_deposit(STUDIO, first_start=WED_10, last_end=WED_10, now=NOW)


def test_a_claim_is_at_most_what_is_held_with_notes_inside_the_window() -> None:
    closes = WED_10 + timedelta(hours=75)
    ok = claim_problems(7_500, held_cents=20_000, notes="Mic stand bent, cable cut", now=WED_10, release_at=closes)
    assert ok == []
    assert (
        claim_problems(20_000, held_cents=20_000, notes="Mixer desk water damage", now=WED_10, release_at=closes) == []
    )
    too_much = claim_problems(20_001, held_cents=20_000, notes="Mixer desk water damage", now=WED_10, release_at=closes)
    assert too_much == ["At most the $200.00 held can be claimed ($200.01 asked)"]
    assert claim_problems(0, held_cents=20_000, notes="Mixer desk water damage", now=WED_10, release_at=closes) == [
        "Claim more than $0.00"
    ]
    short = claim_problems(100, held_cents=20_000, notes="broken", now=WED_10, release_at=closes)
    assert short and "at least 10 characters" in short[0]
    late = claim_problems(100, held_cents=20_000, notes="Mixer desk water damage", now=closes, release_at=closes)
    assert late == ["The claim window has closed: the hold was due to be released"]
