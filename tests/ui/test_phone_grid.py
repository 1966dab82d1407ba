"""Phone booking and the rooms grid through AppTest (issue 14 §1 and §4): a link from a free cell fills the form in;
a free cell on the page's own grid does too; each front-desk mistake is named in the panel beside the form; the Room
calendar's free cells link to a prefilled Phone booking for the roles that may book."""

from __future__ import annotations

from collections.abc import Callable
from datetime import time, timedelta
from urllib.parse import parse_qs

from streamlit.testing.v1 import AppTest

from services.booking import BookingRequest, sandbox_pay, start_booking
from services.core.context import Services
from services.rules.fmt import day_label

from .conftest import APP, TIMEOUT, free_slot, next_weekday

App = Callable[..., AppTest]
PHONE = "pages/frontdesk/phone_booking.py"
CALENDAR = "pages/frontdesk/room_calendar.py"


def texts(at: AppTest, *kinds: str) -> str:
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def form(at: AppTest) -> tuple[object, ...]:
    return (
        at.selectbox(key="pb_room").value,
        at.date_input(key="pb_first_day").value,
        at.selectbox(key="pb_start").value,
        at.selectbox(key="pb_end").value,
    )


def linked(svc: Services, **query: str) -> AppTest:
    """Phone booking opened by a link, signed in as front desk (whose first page it is: the query goes along)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["role"] = "frontdesk"
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_link_from_a_free_cell_fills_in_the_form(svc: Services) -> None:
    slot = free_slot(svc, "boardroom", hours=2)
    at = linked(svc, room="boardroom", day=slot.day.isoformat(), start=f"{slot.start:%H:%M}")
    assert at.title[0].value == "Phone booking"
    # The Boardroom's 2-hour minimum gives the end.
    assert form(at) == ("boardroom", slot.day, slot.start, slot.end)
    assert f"Filled in from the rooms grid: **Boardroom**, {day_label(slot.day)}" in texts(at, "info")
    assert not at.query_params.get("room")  # used once: a rerun or New booking does not fill it in again
    at.button(key="pb_quote_btn").click().run()
    assert "Available — **$94.50**" in texts(at, "success")  # $90.00 + GST 5 %


def test_a_link_names_what_is_wrong_with_it(svc: Services) -> None:
    at = linked(svc, room="ballroom", day="2020-01-01", start="25:00")
    said = texts(at, "info")
    assert "The link could not fill in the form" in said
    assert "no bookable room “ballroom”" in said and "“2020-01-01” is not a day that can be booked" in said
    assert "“25:00” is not a start time" in said


def test_a_link_waits_while_a_booking_is_on_screen(app: App, svc: Services) -> None:
    slot = free_slot(svc, "workshop", hours=2)
    at = app("frontdesk", page=PHONE)
    at.selectbox(key="pb_room").set_value(slot.room)
    at.date_input(key="pb_first_day").set_value(slot.day)
    at.selectbox(key="pb_start").set_value(slot.start)
    at.selectbox(key="pb_end").set_value(slot.end)
    at.text_input(key="pb_name").set_value("Wes Waiting")
    at.text_input(key="pb_email").set_value("wes.waiting@example.org").run()
    at.button(key="pb_book").click().run()
    reference = at.session_state["pb_created"].reference

    later = free_slot(svc, "quiet-room", hours=1)
    at.query_params.update(room="quiet-room", day=later.day.isoformat(), start=f"{later.start:%H:%M}")
    at.run()
    assert "press **New booking**" in texts(at, "info")
    assert reference in texts(at, "markdown")  # the reference stays on screen
    assert at.selectbox(key="pb_room").value == "workshop"

    at.button(key="pb_new").click().run()
    assert "pb_created" not in at.session_state
    assert form(at) == ("quiet-room", later.day, later.start, later.end)
    assert at.text_input(key="pb_name").value == ""  # the last caller's details are gone


def test_a_free_cell_on_the_page_puts_its_booking_in_the_form(app: App, svc: Services) -> None:
    slot = free_slot(svc, "gallery", hours=2, skip=3)
    at = app("frontdesk", page=PHONE)
    at.date_input(key="pb_first_day").set_value(slot.day).run()
    column = slot.start.hour - 8
    [cell] = [b for b in at.button if str(b.key).startswith("rg_pb_free") and b.key.endswith(f"_gallery_{column}")]
    assert not cell.disabled
    cell.click().run()
    assert form(at) == ("gallery", slot.day, slot.start, slot.end)


def test_each_mistake_is_named(app: App, svc: Services) -> None:
    at = app("frontdesk", page=PHONE)
    slot = free_slot(svc, "boardroom", hours=2, skip=1)
    at.selectbox(key="pb_room").set_value("boardroom")
    at.date_input(key="pb_first_day").set_value(slot.day)

    # End before start: said under the times at once, and by the quote.
    at.selectbox(key="pb_start").set_value(time(14))
    at.selectbox(key="pb_end").set_value(time(12)).run()
    assert "end before start" in texts(at, "markdown")
    at.button(key="pb_quote_btn").click().run()
    assert "The end time must be after the start time" in texts(at, "error")

    # Too many people for the room.
    at.selectbox(key="pb_start").set_value(slot.start)
    at.selectbox(key="pb_end").set_value(slot.end)
    at.number_input(key="pb_party").set_value(40).run()
    assert "40 people: the Boardroom holds 14" in texts(at, "markdown")
    at.button(key="pb_quote_btn").click().run()
    assert "The Boardroom holds at most 14 people" in texts(at, "error")

    # A closed day.
    saturday = next_weekday(svc, 5)
    at.number_input(key="pb_party").set_value(None)
    at.date_input(key="pb_first_day").set_value(saturday).run()
    at.button(key="pb_quote_btn").click().run()
    assert f"{day_label(saturday)}: Saturdays are closed" in texts(at, "error")

    # A taken slot: someone else books it first.
    at.date_input(key="pb_first_day").set_value(slot.day).run()
    taken = start_booking(
        svc,
        BookingRequest("boardroom", (slot.day,), slot.start, slot.end, "First Caller", "first.caller@example.org"),
        actor="frontdesk@sandbox",
    )
    sandbox_pay(svc, taken.booking_id, actor="frontdesk@sandbox")
    at.button(key="pb_quote_btn").click().run()
    assert f"{day_label(slot.day)}: overlaps another booking" in texts(at, "error")

    # Missing email, at Book.
    later = free_slot(svc, "boardroom", hours=2, skip=2)
    at.date_input(key="pb_first_day").set_value(later.day)
    at.selectbox(key="pb_start").set_value(later.start)
    at.selectbox(key="pb_end").set_value(later.end)
    at.text_input(key="pb_name").set_value("No Email").run()
    at.button(key="pb_book").click().run()
    assert "A valid customer email is required" in texts(at, "error")
    assert "Fix it in the form, then press **Book** again." in texts(at, "caption")


def test_the_room_calendar_links_free_cells_to_a_prefilled_phone_booking(app: App, svc: Services) -> None:
    slot = free_slot(svc, "union-room", hours=2, skip=4)
    at = app("frontdesk", page=CALENDAR)
    at.date_input(key="cal_day").set_value(slot.day).run()
    links = [p for p in at.page_link if p.proto.query_string]
    assert links, "free cells are links"
    query = {k: v[0] for k, v in parse_qs(links[0].proto.query_string).items()}
    assert set(query) == {"room", "day", "start", "end"} and query["day"] == slot.day.isoformat()
    wanted = {"room": "union-room", "day": slot.day.isoformat(), "start": f"{slot.start:%H:%M}"}
    mine = [p for p in links if wanted.items() <= {k: v[0] for k, v in parse_qs(p.proto.query_string).items()}.items()]
    assert [p.proto.page for p in mine] == ["phone_booking"]

    # Finance reads the grid; its cells link nowhere.
    at = app("finance", page=CALENDAR)
    at.date_input(key="cal_day").set_value(slot.day).run()
    assert not [p for p in at.page_link if p.proto.query_string]
    assert [b for b in at.button if str(b.key).startswith("rg_cal_free") and b.disabled]


def test_the_week_grid_says_how_much_is_free_each_day(app: App, svc: Services) -> None:
    day = free_slot(svc, "quiet-room").day
    at = app("frontdesk", page=CALENDAR)
    at.date_input(key="cal_day").set_value(day)
    at.button_group(key="cal_view").set_value("Week").run()
    monday = day - timedelta(days=day.weekday())
    assert at.subheader[0].value == f"Week of {day_label(monday)}"
    heads = [h.proto.body for h in at.get("html")]
    assert any(day_label(day) in h for h in heads)  # a column per weekday
    said = [p.value for p in at.page_link] + [b.label for b in at.button if str(b.key).startswith("rg_cal_")]
    assert any(label == "Free all day" or label.endswith(" h free") for label in said)


def test_the_room_calendar_lists_a_block_as_blocked_not_as_an_event_added_by_hand(app: App, svc: Services) -> None:
    from services.booking import create_block
    from services.booking.block_queries import BlockRequest

    day = free_slot(svc, "sonic-studio", hours=3, skip=6).day
    create_block(svc, BlockRequest(("sonic-studio",), day, day, reason="Re-cabling the desk"), actor="manager@sandbox")
    at = app("manager", page=CALENDAR)
    at.date_input(key="cal_day").set_value(day).run()
    listing = at.dataframe[0].value
    [row] = listing[listing["Who / what"] == "Re-cabling the desk"].to_dict("records")
    assert row["Kind"] == "Blocked" and row["Room"] == "Sonic Studio"
    assert {b.label for b in at.button if "_sonic-studio_" in str(b.key)} == {"Blocked"}
