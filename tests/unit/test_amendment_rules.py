"""The money of a change to a paid booking (services/rules/amendments.py): what a caller is charged or refunded when
a day moves, grows, shrinks, is added or dropped, or the booking changes room."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.rules.amendments import DayShape, PaidDay, price_days, settle
from services.rules.policy import Policy, RefundBand
from services.rules.refunds import refund_for_leg

TZ = ZoneInfo("America/Vancouver")
POLICY = Policy(tz=TZ)
BANDS = (RefundBand(48, 100), RefundBand(24, 50), RefundBand(0, 0))
HOURLY = 4_500  # $45.00 an hour
WED, THU, FRI, MON = date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6), date(2026, 3, 9)


def shape(day: date, start: int = 9, end: int = 12) -> DayShape:
    return DayShape(day, time(start), time(end))


def paid(leg_id: int, s: DayShape, cents: int, refunded: int = 0) -> PaidDay:
    return PaidDay(leg_id, s, datetime.combine(s.day, s.start, tzinfo=TZ), cents, refunded)


def at(hours_before: float, day: date = WED, start: int = 9) -> datetime:
    return (datetime.combine(day, time(start), tzinfo=TZ) - timedelta(hours=hours_before)).astimezone(UTC)


def prices(*shapes: DayShape, hourly: int = HOURLY, eligible: bool = False) -> dict[date, int]:
    return price_days(shapes, hourly_cents=hourly, discount_eligible=eligible, policy=POLICY)


def test_nothing_changed_moves_no_money() -> None:
    current = [paid(1, shape(WED), 13_500)]
    result = settle(current, [], prices(shape(WED)), bands=BANDS, now=at(72))
    assert [d.kind for d in result.days] == ["kept"] and result.net_cents == 0 and not result.changes_anything


def test_moving_a_day_to_another_date_costs_nothing() -> None:
    current = [paid(1, shape(WED), 13_500), paid(2, shape(THU), 13_500)]
    result = settle(current, [(1, shape(FRI))], prices(shape(FRI), shape(THU)), bands=BANDS, now=at(30))
    assert sorted(d.kind for d in result.days) == ["changed", "kept"]
    assert (result.charge_cents, result.refund_cents, result.net_cents) == (0, 0, 0)
    assert result.changes_anything


def test_staying_an_hour_longer_is_charged_that_hour() -> None:
    result = settle(
        [paid(1, shape(WED), 13_500)], [(1, shape(WED, 9, 13))], prices(shape(WED, 9, 13)), bands=BANDS, now=at(2)
    )
    assert result.net_cents == 4_500 and result.new_total_cents == 18_000


@pytest.mark.parametrize(("hours_before", "refund"), [(72, 4_500), (30, 2_250), (5, 0)])
def test_leaving_an_hour_early_refunds_that_hour_under_the_policy(hours_before: float, refund: int) -> None:
    result = settle(
        [paid(1, shape(WED), 13_500)],
        [(1, shape(WED, 9, 11))],
        prices(shape(WED, 9, 11)),
        bands=BANDS,
        now=at(hours_before),
    )
    assert result.net_cents == -refund
    assert result.days[0].band.startswith(("100 %", "50 %", "0 %"))


def test_dropping_a_day_refunds_what_cancelling_it_would() -> None:
    current = [paid(1, shape(WED), 13_500), paid(2, shape(MON), 13_500, refunded=1_000)]
    now = at(30, MON)
    result = settle(current, [(2, None)], prices(shape(WED)), bands=BANDS, now=now)
    cancel = refund_for_leg(
        leg_start=current[1].starts_at, paid_cents=13_500, already_refunded_cents=1_000, bands=BANDS, now=now
    )
    assert result.refund_cents == cancel.refund_cents == 6_750 and result.charge_cents == 0
    assert {d.kind for d in result.days} == {"kept", "dropped"}


def test_adding_the_third_day_earns_the_discount_on_every_day() -> None:
    # Two days at $135 each (no discount yet); a third day reaches the 10 % band: every day is now $121.50.
    current = [paid(1, shape(WED), 13_500), paid(2, shape(THU), 13_500)]
    new = prices(shape(WED), shape(THU), shape(FRI), eligible=True)
    assert set(new.values()) == {12_150}
    result = settle(current, [(None, shape(FRI))], new, bands=BANDS, now=at(10))
    assert result.charge_cents == 12_150
    assert result.refund_cents == 2 * 1_350  # the discount on the kept days, in full: not a cancellation
    assert result.net_cents == 12_150 - 2_700 and result.new_total_cents == 3 * 12_150


def test_dropping_below_the_discount_band_charges_the_lost_discount_and_refunds_the_day_by_the_policy() -> None:
    current = [paid(i, shape(d), 12_150) for i, d in enumerate((WED, THU, FRI), start=1)]
    new = prices(shape(WED), shape(THU), eligible=True)
    result = settle(current, [(3, None)], new, bands=BANDS, now=at(100))
    assert result.charge_cents == 2 * 1_350 and result.refund_cents == 12_150
    assert result.net_cents == 2_700 - 12_150


def test_moving_to_a_cheaper_room_refunds_the_difference_in_full() -> None:
    current = [paid(1, shape(WED), 13_500)]
    result = settle(current, [(1, shape(WED))], prices(shape(WED), hourly=3_000), bands=BANDS, now=at(1))
    assert result.net_cents == -4_500 and result.days[0].band == ""


def test_a_day_that_is_not_the_bookings_is_refused() -> None:
    with pytest.raises(ValueError, match="not days of this booking"):
        settle([paid(1, shape(WED), 13_500)], [(7, shape(THU))], prices(shape(THU)), bands=BANDS, now=at(72))


days = st.sampled_from([WED, THU, FRI, MON])
hours = st.integers(min_value=8, max_value=16)


@st.composite
def day_shapes(draw: st.DrawFn) -> DayShape:
    start = draw(hours)
    return shape(draw(days), start, draw(st.integers(min_value=start + 1, max_value=17)))


@given(
    old=st.lists(day_shapes(), min_size=1, max_size=4, unique_by=lambda s: s.day),
    new=st.lists(st.one_of(st.none(), day_shapes()), min_size=1, max_size=4),
    hours_before=st.floats(min_value=-5, max_value=200),
    eligible=st.booleans(),
)
def test_the_money_always_adds_up(
    old: list[DayShape], new: list[DayShape | None], hours_before: float, eligible: bool
) -> None:
    current = [
        paid(i, s, price_days([s], hourly_cents=HOURLY, discount_eligible=False, policy=POLICY)[s.day])
        for i, s in enumerate(old, start=1)
    ]
    target: list[tuple[int | None, DayShape | None]] = [(i, s) for i, s in zip(range(1, len(old) + 1), new)]
    shapes = [s for _, s in target if s is not None] + [c.shape for c in current if c.leg_id > len(new)]
    if len({s.day for s in shapes}) != len(shapes) or not shapes:
        return  # two days on one date is refused before pricing
    result = settle(current, target, prices(*shapes, eligible=eligible), bands=BANDS, now=at(hours_before))
    assert result.net_cents == result.charge_cents - result.refund_cents
    for d in result.days:
        assert d.charge_cents >= 0 and d.refund_cents >= 0 and not (d.charge_cents and d.refund_cents)
        assert d.refund_cents <= d.old_left_cents  # never more back than is left of the day
    identity = settle(current, [], prices(*[c.shape for c in current]), bands=BANDS, now=at(hours_before))
    assert identity.net_cents == 0


def test_a_refund_already_made_on_a_day_is_never_charged_back() -> None:
    # $20 given back on Wednesday earlier (goodwill): keeping or moving it costs nothing; dropping refunds what is left.
    current = [paid(1, shape(WED), 13_500, refunded=2_000)]
    kept = settle(current, [], prices(shape(WED)), bands=BANDS, now=at(72))
    assert kept.net_cents == 0 and not kept.changes_anything
    moved = settle(current, [(1, shape(THU))], prices(shape(THU)), bands=BANDS, now=at(72))
    assert moved.net_cents == 0
    shorter = settle(current, [(1, shape(WED, 9, 10))], prices(shape(WED, 9, 10)), bands=BANDS, now=at(72))
    assert shorter.refund_cents == 9_000  # two of three hours back in full, within the $115 left


def test_days_that_do_not_change_still_count_toward_the_discount_band() -> None:
    three = price_days([shape(WED)], hourly_cents=HOURLY, discount_eligible=True, policy=POLICY, other_days=2)
    assert three == {WED: 12_150}
    sold = price_days([shape(WED)], hourly_cents=HOURLY, discount_eligible=True, policy=POLICY, bands=((1, 20),))
    assert sold == {WED: 10_800}
