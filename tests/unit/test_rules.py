"""The pure rules: the seed's limits hold and explain themselves; properties hold for any input (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.rules.availability import (
    Busy,
    LegWindow,
    RoomLimits,
    SlotRequest,
    check_conflicts,
    check_request,
    free_ranges,
    leg_windows,
)
from services.rules.policy import Policy, RefundBand
from services.rules.pricing import discount_percent, price
from services.rules.refunds import bands_from_snapshot, describe_bands, policy_snapshot, refund_for_leg

TZ = ZoneInfo("America/Vancouver")
POLICY = Policy(tz=TZ)
NOW = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)  # Monday 09:00 in Vancouver
ROOM = RoomLimits("Boardroom", capacity=14, min_minutes=120)
WED = date(2026, 3, 4)


def reasons(
    *dates: date,
    start: time = time(10),
    end: time = time(12),
    room: RoomLimits = ROOM,
    now: datetime = NOW,
    party: int | None = None,
    closures: dict[date, str] | None = None,
) -> list[str]:
    return check_request(SlotRequest(tuple(dates), start, end, party), room, POLICY, now, closures)


# ----------------------------------------------------------------------------- the seed's limits, explained


def test_a_plain_weekday_booking_is_allowed() -> None:
    assert reasons(WED) == []


def test_weekends_are_closed() -> None:
    assert reasons(date(2026, 3, 7)) == ["Sat 7 Mar: Saturdays are closed"]
    assert reasons(date(2026, 3, 8)) == ["Sun 8 Mar: Sundays are closed"]


def test_under_24_hours_notice_is_refused() -> None:
    assert reasons(date(2026, 3, 3), start=time(8, 45), end=time(10, 45)) == ["Tue 3 Mar: starts within 24 hours"]
    assert reasons(date(2026, 3, 3), start=time(9), end=time(11)) == []  # exactly 24 h is enough


def test_the_past_is_refused_plainly() -> None:
    assert reasons(date(2026, 3, 2), start=time(8), end=time(10)) == ["Mon 2 Mar: that time has already passed"]


def test_more_than_60_days_ahead_is_refused() -> None:
    # 60 days after Mon 2 Mar 09:00 PST is Fri 1 May 10:00 PDT (the clocks moved): 10:00 is the last start allowed.
    assert reasons(date(2026, 5, 1), start=time(10), end=time(12)) == []
    assert reasons(date(2026, 5, 1), start=time(10, 15), end=time(12, 15)) == ["Fri 1 May: more than 60 days ahead"]
    assert reasons(date(2026, 5, 4)) == ["Mon 4 May: more than 60 days ahead"]


def test_more_than_ten_days_is_refused() -> None:
    days = [
        date(2026, 3, 9) + timedelta(days=i) for i in range(14) if (date(2026, 3, 9) + timedelta(days=i)).weekday() < 5
    ]
    assert len(days) == 10 and reasons(*days) == []
    eleven = [*days, date(2026, 3, 23)]
    assert "At most 10 days in one booking (11 chosen)" in reasons(*eleven)


def test_outside_opening_hours_is_refused() -> None:
    assert reasons(WED, start=time(7, 30), end=time(9, 30)) == ["Outside opening hours (08:00–17:00)"]
    assert reasons(WED, start=time(15, 30), end=time(17, 30)) == ["Outside opening hours (08:00–17:00)"]
    assert reasons(WED, start=time(15), end=time(17)) == []


def test_minimum_hours_capacity_and_step() -> None:
    assert reasons(WED, end=time(11)) == ["The Boardroom has a minimum of 2 hours"]
    assert reasons(WED, party=15) == ["The Boardroom holds at most 14 people"]
    assert reasons(WED, start=time(10, 10), end=time(12, 10)) == ["Start and end times must be on a 15-minute step"]
    assert reasons(WED, start=time(12), end=time(10)) == ["The end time must be after the start time"]


def test_statutory_holidays_and_closures_are_refused() -> None:
    later = datetime(2026, 3, 20, 17, tzinfo=UTC)
    assert reasons(date(2026, 4, 3), now=later) == ["Fri 3 Apr: statutory holiday (Good Friday)"]
    assert reasons(date(2026, 3, 11), closures={date(2026, 3, 11): "Floor refinishing"}) == [
        "Wed 11 Mar: venue closed (Floor refinishing)"
    ]


def test_holidays_can_be_switched_off_like_the_old_worker() -> None:
    later = datetime(2026, 3, 20, 17, tzinfo=UTC)
    relaxed = Policy(tz=TZ, observe_holidays=False)
    request = SlotRequest((date(2026, 4, 3),), time(10), time(12))
    assert check_request(request, ROOM, relaxed, later) == []


def test_unbookable_room_and_no_dates() -> None:
    closed = RoomLimits("Gallery", 40, 60, bookable=False)
    assert reasons(WED, room=closed) == ["The Gallery is not open for booking"]
    assert reasons() == ["Choose at least one date"]


def test_within_15_minutes_of_another_booking_is_refused() -> None:
    legs = leg_windows(SlotRequest((WED,), time(12, 10), time(14)), POLICY)
    other = Busy(_at(WED, 10), _at(WED, 12), "another booking")
    assert check_conflicts(legs, [other], POLICY) == ["Wed 4 Mar: within 15 minutes of another booking (10:00–12:00)"]
    ok = leg_windows(SlotRequest((WED,), time(12, 15), time(14)), POLICY)
    assert check_conflicts(ok, [other], POLICY) == []
    overlap = leg_windows(SlotRequest((WED,), time(11), time(13)), POLICY)
    assert check_conflicts(overlap, [other], POLICY) == ["Wed 4 Mar: overlaps another booking (10:00–12:00)"]


def test_leg_windows_follow_daylight_saving() -> None:
    before, after = leg_windows(SlotRequest((date(2026, 3, 6), date(2026, 3, 9)), time(10), time(12)), POLICY)
    assert before.starts_at.hour == 18 and after.starts_at.hour == 17  # PST then PDT, both 10:00 local


def test_free_ranges_take_buffers_out() -> None:
    busy = [Busy(_at(WED, 10), _at(WED, 12))]
    assert free_ranges(WED, busy, POLICY) == [(time(8), time(9, 45)), (time(12, 15), time(17))]


# ----------------------------------------------------------------------------- pricing and refunds


def test_price_and_multi_day_discount() -> None:
    q = price(
        room_slug="boardroom",
        hourly_cents=4500,
        discount_eligible=True,
        dates=[WED, date(2026, 3, 5), date(2026, 3, 6)],
        minutes_per_day=150,
        policy=POLICY,
    )
    assert [leg.base_cents for leg in q.legs] == [11250] * 3
    assert q.discount_percent == 10 and q.total_cents == 3 * (11250 - 1125)
    single = price(
        room_slug="quiet-room",
        hourly_cents=2500,
        discount_eligible=False,
        dates=[WED, date(2026, 3, 5), date(2026, 3, 6)],
        minutes_per_day=60,
        policy=POLICY,
    )
    assert single.discount_cents == 0 and single.total_cents == 7500


def test_refund_bands_per_leg() -> None:
    start = _at(WED, 10)
    bands = POLICY.refund_bands
    full = refund_for_leg(
        leg_start=start, paid_cents=9000, already_refunded_cents=0, bands=bands, now=start - timedelta(hours=48)
    )
    half = refund_for_leg(
        leg_start=start,
        paid_cents=9000,
        already_refunded_cents=0,
        bands=bands,
        now=start - timedelta(hours=47, minutes=59),
    )
    none = refund_for_leg(
        leg_start=start, paid_cents=9000, already_refunded_cents=0, bands=bands, now=start - timedelta(hours=23)
    )
    after = refund_for_leg(
        leg_start=start, paid_cents=9000, already_refunded_cents=0, bands=bands, now=start + timedelta(minutes=1)
    )
    assert (full.refund_cents, half.refund_cents, none.refund_cents, after.refund_cents) == (9000, 4500, 0, 0)


def test_policy_snapshot_round_trips_and_reads_well() -> None:
    snap = policy_snapshot(POLICY)
    assert bands_from_snapshot(snap) == POLICY.refund_bands
    assert snap["text"] == "Full refund 48 h or more before; 50 % 24–48 h before; no refund under 24 h."


# ----------------------------------------------------------------------------- properties

weekday_dates = st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31))
quarter_times = st.integers(min_value=0, max_value=95).map(lambda q: time(q // 4, (q % 4) * 15))
instants = st.datetimes(min_value=datetime(2025, 6, 1), max_value=datetime(2028, 6, 1), timezones=st.just(UTC))


@given(dates=st.lists(weekday_dates, min_size=1, max_size=12), start=quarter_times, end=quarter_times, now=instants)
@settings(max_examples=300, deadline=None)
def test_allowed_requests_satisfy_every_limit(dates: list[date], start: time, end: time, now: datetime) -> None:
    if check_request(SlotRequest(tuple(dates), start, end), ROOM, POLICY, now) != []:
        return
    assert len(set(dates)) == len(dates) <= POLICY.max_days_per_booking
    assert POLICY.open_time <= start < end <= POLICY.close_time
    for leg in leg_windows(SlotRequest(tuple(dates), start, end), POLICY):
        assert leg.day.weekday() < 5
        assert now + timedelta(hours=24) <= leg.starts_at <= now + timedelta(days=60)
        assert (leg.ends_at - leg.starts_at) >= timedelta(minutes=ROOM.min_minutes)


@given(dates=st.lists(weekday_dates, min_size=1, max_size=5), start=quarter_times, end=quarter_times, now=instants)
@settings(max_examples=200, deadline=None)
def test_every_refusal_is_a_readable_sentence(dates: list[date], start: time, end: time, now: datetime) -> None:
    for reason in check_request(SlotRequest(tuple(dates), start, end, 0), ROOM, POLICY, now):
        assert reason and reason[0].isupper() and "Traceback" not in reason and len(reason) < 120


@given(a_start=st.integers(0, 40), a_len=st.integers(1, 16), b_start=st.integers(0, 40), b_len=st.integers(1, 16))
def test_conflict_is_symmetric_and_means_a_gap_below_the_buffer(
    a_start: int, a_len: int, b_start: int, b_len: int
) -> None:
    def leg(start: int, length: int) -> LegWindow:
        s = _at(WED, 0) + timedelta(minutes=15 * start)
        return LegWindow(WED, s, s + timedelta(minutes=15 * length))

    a, b = leg(a_start, a_len), leg(b_start, b_len)
    ab = bool(check_conflicts([a], [Busy(b.starts_at, b.ends_at)], POLICY))
    ba = bool(check_conflicts([b], [Busy(a.starts_at, a.ends_at)], POLICY))
    gap = max(a.starts_at - b.ends_at, b.starts_at - a.ends_at)
    assert ab == ba == (gap < timedelta(minutes=POLICY.buffer_minutes))


@given(hourly=st.integers(100, 100_000), minutes=st.integers(15, 540), n=st.integers(1, 10), eligible=st.booleans())
def test_price_is_integer_cents_and_sums_its_legs(hourly: int, minutes: int, n: int, eligible: bool) -> None:
    days = [date(2026, 3, 2) + timedelta(days=i) for i in range(n)]
    q = price(
        room_slug="r",
        hourly_cents=hourly,
        discount_eligible=eligible,
        dates=days,
        minutes_per_day=minutes,
        policy=POLICY,
    )
    assert q.total_cents == sum(leg.total_cents for leg in q.legs) == q.subtotal_cents - q.discount_cents
    assert all(isinstance(leg.total_cents, int) and 0 <= leg.discount_cents <= leg.base_cents for leg in q.legs)
    assert abs(q.legs[0].base_cents - hourly * minutes / 60) <= 0.5
    assert q.discount_percent == discount_percent(n, eligible, POLICY)


@given(
    paid=st.integers(0, 1_000_000),
    already=st.integers(0, 1_000_000),
    hours=st.floats(-100, 500),
    bands=st.lists(
        st.tuples(st.integers(0, 200), st.integers(0, 100)), min_size=1, max_size=4, unique_by=lambda b: b[0]
    ),
)
def test_refund_never_exceeds_what_is_left_and_grows_with_notice(
    paid: int, already: int, hours: float, bands: list[tuple[int, int]]
) -> None:
    already = min(already, paid)
    policy_bands = tuple(RefundBand(h, p) for h, p in bands)
    start = _at(WED, 10)
    now = start - timedelta(hours=hours)
    r = refund_for_leg(leg_start=start, paid_cents=paid, already_refunded_cents=already, bands=policy_bands, now=now)
    assert 0 <= r.refund_cents <= paid - already
    earlier = refund_for_leg(
        leg_start=start,
        paid_cents=paid,
        already_refunded_cents=already,
        bands=policy_bands,
        now=now - timedelta(hours=24),
    )
    monotone = sorted(policy_bands, key=lambda b: b.hours_before)
    if all(x.percent <= y.percent for x, y in itertools.pairwise(monotone)):
        assert earlier.refund_cents >= r.refund_cents


def test_describe_bands_handles_custom_policies() -> None:
    assert (
        describe_bands((RefundBand(72, 100), RefundBand(0, 25))) == "Full refund 72 h or more before; 25 % under 72 h."
    )


@pytest.mark.parametrize("minutes", [59, 61, 89])
def test_minimum_is_enforced_to_the_minute(minutes: int) -> None:
    room = RoomLimits("Quiet Room", 6, 60)
    end = (datetime.combine(WED, time(10)) + timedelta(minutes=minutes)).time()
    got = check_request(SlotRequest((WED,), time(10), end), room, Policy(tz=TZ, slot_minutes=1), NOW)
    assert ("The Quiet Room has a minimum of 1 hour" in got) == (minutes < 60)


def _at(d: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(d, time(hour, minute), tzinfo=TZ).astimezone(UTC)


def test_the_dashboard_formats_through_the_one_formatting_module() -> None:
    from services.rules import fmt

    assert fmt.range_label(date(2026, 2, 1), date(2026, 2, 28)) == "February 2026"
    assert fmt.range_label(date(2026, 2, 1), date(2026, 2, 27)) == "1 Feb 2026 – 27 Feb 2026"
    assert (fmt.duration_label(180), fmt.duration_label(90), fmt.duration_label(-5)) == ("3 h", "1 h 30 min", "0 h")
    assert (fmt.notice_label(-1), fmt.notice_label(5), fmt.notice_label(60)) == ("already started", "5 h", "2.5 days")
    assert fmt.bps_label(50) == "0.50 %" and fmt.weekdays_label([4, 0, 1]) == "Mon, Tue, Fri"
    assert fmt.zone_label("America/Vancouver") == "Vancouver time"
    now = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
    assert [fmt.ago_label(now - timedelta(minutes=m), now) for m in (0, 5, 180, 4000)] == [
        "just now",
        "5 min ago",
        "3 h ago",
        "2 days ago",
    ]
    payload = {"message": "Cancelled", "refund_cents": 4500, "days": ["2026-03-09"], "channel": "phone", "note": ""}
    assert fmt.payload_text(payload, currency="CAD", moment=str) == "Cancelled · refund: $45.00 · days: Mon 9 Mar"


# ---- issue 13: times in another form, and dates far from the window, are refused in words (never a TypeError) -----


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        (time(8, 0, 59), time(10), "Start time must be whole minutes (HH:MM), without seconds"),
        (time(8), time(10, 0, 0, 5), "End time must be whole minutes (HH:MM), without seconds"),
        (time(8, tzinfo=ZoneInfo("Asia/Karachi")), time(10), "Start time must be the venue's local time"),
        (time(8), time(10, tzinfo=UTC), "End time must be the venue's local time"),
    ],
)
def test_a_time_off_the_minute_or_with_an_offset_is_refused(start: time, end: time, reason: str) -> None:
    [why] = reasons(WED, start=start, end=end)
    assert why.startswith(reason)


@pytest.mark.parametrize(
    ("day", "reason"), [(date(9999, 12, 31), "more than 60 days ahead"), (date(1, 1, 1), "already passed")]
)
def test_dates_far_outside_the_window_are_refused_in_words(day: date, reason: str) -> None:
    found = reasons(day)
    assert any(reason in r for r in found), found
