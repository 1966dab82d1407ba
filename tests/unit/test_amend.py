"""Planning a change to a paid booking (services/booking/amend.py): what front desk sees before anything happens —
whether the new shape can be booked (the booking's own slot never blocks it) and what it costs or gives back."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
from sqlmodel import select

from models.tables import BookingLeg
from services import booking as bk
from services.booking.amend import Change, plan_change
from services.core.errors import InvalidState, ValidationError

WED, THU, SAT = date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 7)
THREE_DAYS = (date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11))


def paid(svc: Any, request: bk.BookingRequest) -> bk.StartResult:
    started = bk.start_booking(svc, request, actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    return started


def leg_ids(svc: Any, booking_id: int) -> list[int]:
    with svc.session() as s:
        return [leg.id for leg in bk.booking_legs(s, booking_id) if leg.id]


def test_the_bookings_own_slot_does_not_block_staying_an_hour_longer(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())  # Wed 10:00–12:00 in the Boardroom, $90
    # As a new request, 10:00–13:00 collides with the booking itself: the old way was cancel and rebook.
    assert bk.quote(svc, booking_request(end=time(13))).reasons
    plan = plan_change(svc, mine.booking_id, Change(times=(time(10), time(13))))
    assert plan.reasons == [] and plan.possible
    assert (plan.settlement.charge_cents, plan.settlement.refund_cents, plan.settlement.net_cents) == (4_500, 0, 4_500)
    assert plan.settlement.new_total_cents == 13_500


def test_another_booking_next_door_still_blocks_the_extension(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())
    paid(svc, booking_request(start=time(13), end=time(15), customer_email="next@example.org"))
    plan = plan_change(svc, mine.booking_id, Change(times=(time(10), time(13))))
    assert not plan.possible
    assert any("Wed 4 Mar" in r and ("overlaps" in r or "within 15 minutes" in r) for r in plan.reasons), plan.reasons


def test_moving_a_day_to_a_free_date_costs_nothing(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())
    (leg,) = leg_ids(svc, mine.booking_id)
    plan = plan_change(svc, mine.booking_id, Change(moves={leg: THU}))
    assert plan.possible and plan.settlement.net_cents == 0
    assert [(d.kind, d.new.day if d.new else None) for d in plan.settlement.days] == [("changed", THU)]


def test_the_rules_apply_to_the_new_shape(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())
    (leg,) = leg_ids(svc, mine.booking_id)
    plan = plan_change(svc, mine.booking_id, Change(moves={leg: SAT}))
    assert plan.reasons == ["Sat 7 Mar: Saturdays are closed"]
    plan = plan_change(svc, mine.booking_id, Change(times=(time(16), time(18))))
    assert any("Outside opening hours" in r for r in plan.reasons)


def test_a_room_move_onto_a_taken_room_is_refused_with_the_reason(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())
    paid(svc, booking_request(room="union-room", customer_email="union@example.org"))
    plan = plan_change(svc, mine.booking_id, Change(room="union-room"))
    assert not plan.possible and any("overlaps" in r for r in plan.reasons)
    assert plan.settlement.net_cents == 12_000 - 9_000  # the Union Room's rate: what it would cost


def test_dropping_a_day_refunds_it_by_the_policy_and_charges_the_lost_discount(svc: Any, booking_request: Any) -> None:
    three = paid(svc, booking_request(dates=THREE_DAYS))  # 3 × (2 h × $45 − 10 %) = 3 × $81
    first, *_ = leg_ids(svc, three.booking_id)
    plan = plan_change(svc, three.booking_id, Change(drop=frozenset({first})))
    assert plan.possible
    # A week ahead: the dropped day comes back in full ($81); the two left lose the 3-day discount ($9 each).
    assert (plan.settlement.refund_cents, plan.settlement.charge_cents) == (8_100, 1_800)
    assert plan.settlement.net_cents == -6_300


def test_asking_for_nothing_new_is_not_a_change(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())
    plan = plan_change(svc, mine.booking_id, Change(times=(time(10), time(12))))
    assert plan.reasons == [] and not plan.possible


def test_only_a_paid_booking_that_is_not_over_can_change(svc: Any, booking_request: Any) -> None:
    unpaid = bk.start_booking(svc, booking_request(), actor="customer")
    with pytest.raises(InvalidState, match="only a paid booking"):
        plan_change(svc, unpaid.booking_id, Change(times=(time(10), time(13))))
    mine = paid(svc, booking_request(dates=[THU]))
    svc.clock.advance(days=3, hours=2)  # Thursday 11:00: the day has started
    (leg,) = leg_ids(svc, mine.booking_id)
    with pytest.raises(InvalidState, match="already started"):
        plan_change(svc, mine.booking_id, Change(times=(time(10), time(13))))
    with pytest.raises(ValidationError, match="Not active days"):
        plan_change(svc, mine.booking_id, Change(drop=frozenset({leg + 99})))


def test_nonsense_requests_are_refused_clearly(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request(dates=[WED, THU]))
    first, second = leg_ids(svc, mine.booking_id)
    with pytest.raises(ValidationError, match="same date"):
        plan_change(svc, mine.booking_id, Change(moves={first: THU}))
    with pytest.raises(ValidationError, match="at least one day"):
        plan_change(svc, mine.booking_id, Change(drop=frozenset({first, second})))
    with pytest.raises(ValidationError, match="Unknown room"):
        plan_change(svc, mine.booking_id, Change(room="ballroom"))
    with svc.session() as s:
        assert all(leg.state == "CONFIRMED" for leg in s.exec(select(BookingLeg)))  # planning changed nothing


def test_a_day_already_used_still_counts_for_the_discount(svc: Any, booking_request: Any) -> None:
    three = paid(svc, booking_request(dates=THREE_DAYS))  # Mon–Wed 9–11 Mar, $81 a day with the 3-day discount
    svc.clock.advance(days=7, hours=5)  # Monday 9 Mar, 14:00: the first day is over
    bk.advance_legs(svc)
    *_, last = leg_ids(svc, three.booking_id)
    plan = plan_change(svc, three.booking_id, Change(moves={last: date(2026, 3, 12)}))
    assert plan.possible and plan.settlement.net_cents == 0


def test_a_change_is_priced_by_the_discount_the_booking_was_sold_with(svc: Any, booking_request: Any) -> None:
    three = paid(svc, booking_request(dates=THREE_DAYS))
    svc.settings.__dict__["discount_bands"] = [[3, 5]]  # the venue lowers its discount after the sale
    svc.venue_cache.forget()
    *_, last = leg_ids(svc, three.booking_id)
    plan = plan_change(svc, three.booking_id, Change(moves={last: date(2026, 3, 12)}))
    assert plan.possible and plan.settlement.net_cents == 0
