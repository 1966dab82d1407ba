"""The rooms × hours grid front desk reads first (issue 14 §4): each cell free / held / booked / blocked / an event /
closed / not bookable now, in venue time, with the booking a click on it offers. The clock is Monday 2 March 2026,
09:00 in Vancouver (PST); clocks go forward on Sunday 8 March."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from models.tables import BlockKind
from services import booking as bk
from services.booking.block_queries import BlockRequest
from services.booking.grid import CellState, describe, room_grid

MON, TUE, WED, THU, FRI = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)
SAT, MON_AFTER_DST, GOOD_FRIDAY = date(2026, 3, 7), date(2026, 3, 9), date(2026, 4, 3)
BOARDROOM = "boardroom@group.calendar.google.com"


def paid(svc: Any, request: bk.BookingRequest) -> bk.StartResult:
    started = bk.start_booking(svc, request, actor="frontdesk@venue.example")
    bk.sandbox_pay(svc, started.booking_id, actor="webhook")
    return started


def hand_added(svc: Any, summary: str, day: date, start: time, end: time) -> None:
    """An event someone put on the Boardroom's calendar straight in Google Calendar."""
    tz = svc.settings.tz
    start_at, end_at = datetime.combine(day, start, tzinfo=tz), datetime.combine(day, end, tzinfo=tz)
    event = {"summary": summary, "start": {"dateTime": start_at.isoformat()}, "end": {"dateTime": end_at.isoformat()}}
    svc.calendar.insert_event(BOARDROOM, event)


def states(grid: Any, room: str, day: date) -> dict[int, CellState]:
    """The day's cells of a room by hour: {8: FREE, 9: …}."""
    return {h.hour: grid.cell(room, day, h).state for h in grid.hours}


def test_a_paid_booking_fills_its_hours_and_the_buffer_moves_the_next_start(svc: Any, booking_request: Any) -> None:
    started = paid(svc, booking_request(dates=(WED,), start=time(10), end=time(12), customer_name="Ava Nguyen"))
    grid = room_grid(svc, [WED])
    row = states(grid, "boardroom", WED)
    assert row[10] == row[11] == CellState.BOOKED
    booked = grid.cell("boardroom", WED, time(10))
    assert [(o.label, o.reference, o.span) for o in booked.occupants] == [
        ("Ava Nguyen", started.reference, "10:00–12:00")
    ]
    assert booked.book_at is None and "Ava Nguyen" in describe(booked)

    # Free from 12:00, but the 15-minute buffer means a booking starts at 12:15 (the Boardroom's 2 hours from there).
    after = grid.cell("boardroom", WED, time(12))
    assert after.state == CellState.FREE and (after.book_at, after.book_end) == (time(12, 15), time(14, 15))
    # Before it, 08:00–09:45 is free but shorter than the Boardroom's 2-hour minimum: nothing to click.
    before = grid.cell("boardroom", WED, time(9))
    assert before.state == CellState.UNBOOKABLE and before.note == "Short gap"
    assert "Free 08:00–09:45" in before.why and before.book_at is None
    # Other rooms are untouched.
    assert set(states(grid, "workshop", WED).values()) == {CellState.FREE}


def test_a_free_hour_near_the_end_of_a_gap_offers_the_booking_that_covers_it(svc: Any, booking_request: Any) -> None:
    paid(svc, booking_request(dates=(WED,), start=time(14), end=time(16)))
    cell = room_grid(svc, [WED]).cell("boardroom", WED, time(13))
    # 13:00–13:45 is free before the buffer: the 2-hour booking that includes it ends at 13:45.
    assert cell.state == CellState.FREE and (cell.book_at, cell.book_end) == (time(11, 45), time(13, 45))


def test_an_unpaid_hold_is_held_until_it_lapses(svc: Any, booking_request: Any) -> None:
    held = bk.start_booking(svc, booking_request(dates=(THU,), customer_name="Ben Hold"), actor="frontdesk")
    cell = room_grid(svc, [THU]).cell("boardroom", THU, time(10))
    assert cell.state == CellState.HELD
    assert [(o.label, o.reference) for o in cell.occupants] == [("Ben Hold (unpaid)", held.reference)]

    svc.clock.at = held.hold_expires_at + timedelta(minutes=1)  # lapsed: it stops no one, even before the sweep
    assert room_grid(svc, [THU]).cell("boardroom", THU, time(10)).state == CellState.FREE


def test_a_block_shows_blocked_with_its_reason_and_a_closure_shows_closed(svc: Any) -> None:
    bk.create_block(
        svc,
        BlockRequest(("boardroom",), THU, THU, time(9), time(12), reason="Painting the walls"),
        actor="manager@venue.example",
    )
    bk.create_block(
        svc,
        BlockRequest(tuple(r.slug for r in svc.catalogue.rooms), FRI, FRI, kind=BlockKind.CLOSURE, reason="Flooded"),
        actor="manager@venue.example",
    )
    grid = room_grid(svc, [THU, FRI])
    blocked = grid.cell("boardroom", THU, time(10))
    assert blocked.state == CellState.BLOCKED and [o.label for o in blocked.occupants] == ["Painting the walls"]
    assert blocked.book_at is None
    assert states(grid, "boardroom", THU)[12] != CellState.BLOCKED
    assert states(grid, "workshop", THU)[10] == CellState.FREE  # only the Boardroom
    closed = grid.day_cell("workshop", FRI)
    assert closed.state == CellState.CLOSED and [o.label for o in closed.occupants] == ["Flooded"]
    assert set(states(grid, "quiet-room", FRI).values()) == {CellState.CLOSED}
    # The block's own calendar events are the block, not hand-added events.
    assert all(o.state != CellState.EVENT for o in grid.occupants)


def test_closed_days_say_why(svc: Any) -> None:
    grid = room_grid(svc, [SAT, GOOD_FRIDAY])
    saturday = grid.cell("quiet-room", SAT, time(14))
    assert saturday.state == CellState.CLOSED and saturday.why == "Saturdays are closed"
    holiday = grid.day_cell("main-hall", GOOD_FRIDAY)
    assert holiday.state == CellState.CLOSED and "Good Friday" in holiday.why and not holiday.bookable


def test_an_event_added_by_hand_is_shown_and_our_own_events_are_not_counted_twice(
    svc: Any, booking_request: Any
) -> None:
    paid(svc, booking_request(dates=(WED,), start=time(10), end=time(12)))
    hand_added(svc, "Staff lunch", WED, time(13), time(14))
    grid = room_grid(svc, [WED])
    lunch = grid.cell("boardroom", WED, time(13))
    assert lunch.state == CellState.EVENT and [o.label for o in lunch.occupants] == ["Staff lunch"]
    assert [o.state for o in grid.occupants if o.room == "boardroom"].count(CellState.BOOKED) == 1
    assert grid.cell("boardroom", WED, time(10)).state == CellState.BOOKED


def test_times_are_venue_time_across_utc_midnight_and_the_dst_change(svc: Any, booking_request: Any) -> None:
    # 15:00–17:00 in Vancouver is 23:00–01:00 UTC (PST), then 22:00–00:00 UTC after the clocks go forward.
    paid(svc, booking_request(dates=(WED,), start=time(15), end=time(17), customer_email="pst@example.org"))
    paid(svc, booking_request(dates=(MON_AFTER_DST,), start=time(15), end=time(17), customer_email="pdt@example.org"))
    grid = room_grid(svc, [WED, THU, MON_AFTER_DST])
    for day in (WED, MON_AFTER_DST):
        row = states(grid, "boardroom", day)
        assert (row[14], row[15], row[16]) == (CellState.FREE, CellState.BOOKED, CellState.BOOKED), day
        [occupant] = grid.cell("boardroom", day, time(15)).occupants
        assert occupant.span == "15:00–17:00" and occupant.starts_at.utcoffset() != timedelta(0)
    assert CellState.BOOKED not in states(grid, "boardroom", THU).values()  # not spilled onto the next UTC day
    assert grid.cell("boardroom", MON_AFTER_DST, time(15)).starts_at.astimezone(UTC).hour == 22


def test_the_notice_and_the_past_make_free_cells_unbookable(svc: Any) -> None:
    grid = room_grid(svc, [MON, TUE])  # now: Monday 09:00; 24 hours' notice
    assert grid.cell("quiet-room", MON, time(8)).note == "Past"
    assert grid.cell("quiet-room", MON, time(15)).note == "Too soon"
    assert grid.cell("quiet-room", TUE, time(8)).note == "Too soon"
    tuesday = grid.cell("quiet-room", TUE, time(9))
    assert tuesday.state == CellState.FREE and tuesday.book_at == time(9)
    far = room_grid(svc, [MON + timedelta(days=91)]).day_cell("quiet-room", MON + timedelta(days=91))
    assert far.state == CellState.UNBOOKABLE and far.note == "Too far"


def test_a_week_cell_is_free_while_a_booking_still_fits_the_day(svc: Any, booking_request: Any) -> None:
    paid(svc, booking_request(dates=(WED,), start=time(8), end=time(12)))
    paid(svc, booking_request(dates=(WED,), start=time(13), end=time(17), customer_email="pm@example.org"))
    paid(svc, booking_request(room="workshop", dates=(WED,), start=time(8), end=time(10)))
    grid = room_grid(svc, [WED, THU])
    # Boardroom: only 12:15–12:45 left, shorter than its 2 hours: the day is booked.
    assert grid.day_cell("boardroom", WED).state == CellState.BOOKED
    workshop = grid.day_cell("workshop", WED)
    assert workshop.state == CellState.FREE and workshop.free == ((time(10, 15), time(17)),)
    assert (workshop.book_at, workshop.book_end, workshop.free_minutes) == (time(10, 15), time(12, 15), 405)
    whole = grid.day_cell("boardroom", THU)
    assert whole.free == ((time(8), time(17)),) and whole.free_minutes == 9 * 60


def test_the_grid_needs_an_aware_clock(svc: Any) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        room_grid(svc, [WED], now=datetime(2026, 3, 2, 9))


def test_idle_hours_count_the_open_hours_nothing_takes(svc: Any, booking_request: Any) -> None:
    paid(svc, booking_request(dates=(WED,), start=time(10), end=time(12)))
    paid(svc, booking_request(dates=(WED,), start=time(14), end=time(16, 30), customer_email="b@example.org"))
    grid = room_grid(svc, [WED, SAT])
    idle = grid.idle_hours()
    assert idle["Boardroom"] == 9 - 2 - 2.5  # the Saturday counts none
    assert idle["Workshop"] == 9
    assert [o.span for o in grid.on(WED)] == ["10:00–12:00", "14:00–16:30"]


def test_a_hand_added_event_over_a_booking_is_a_clash(svc: Any, booking_request: Any) -> None:
    paid(svc, booking_request(dates=(WED,), start=time(10), end=time(12)))
    hand_added(svc, "Board meeting", WED, time(11), time(13))
    grid = room_grid(svc, [WED])
    both = grid.cell("boardroom", WED, time(11))
    assert both.state == CellState.BOOKED and both.clash and describe(both).startswith("Clash")
    assert not grid.cell("boardroom", WED, time(10)).clash  # the booking alone
    assert grid.cell("boardroom", WED, time(12)).state == CellState.EVENT
