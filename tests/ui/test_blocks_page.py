"""The Blocks & closures screen (issue 14 §5): a manager checks a block and sees the bookings in the way — reference
(a link to the booking), customer — with Block off; a free block is made, said at the top of the page and listed;
Release (with a reason) gives the room back. Front desk and finance have no such screen."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, time, timedelta

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from models.tables import AuditLog, RoomBlock
from services.booking import BlockRequest, BookingRequest, StartResult, plan_block, quote
from services.booking.queries import booking_detail
from services.core.context import Services
from services.rules.fmt import day_label

App = Callable[..., AppTest]
BLOCKS = "pages/frontdesk/blocks.py"


def fill(at: AppTest, day: date, *, room: str = "boardroom", reason: str = "Floor sanding") -> AppTest:
    at.multiselect(key="bl_rooms").set_value([room])
    at.date_input(key="bl_days").set_value((day, day))
    at.text_input(key="bl_reason").set_value(reason)
    return at.run()


def table(at: AppTest, column: str) -> object:
    """The first table on the page that has `column`."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def free_day(svc: Services, room: str = "boardroom") -> date:
    """A day, a few days ahead, with nothing at all in the room."""
    today = svc.now().astimezone(svc.settings.tz).date()
    for offset in range(3, 60):
        day = today + timedelta(days=offset)
        try:
            if plan_block(svc, BlockRequest((room,), day, day, reason="probe")).clashes == ():
                return day
        except Exception:  # a closed day
            continue
    raise AssertionError("no free day")


def test_a_manager_sees_the_booking_in_the_way_and_block_stays_off(
    app: App, svc: Services, paid_booking: StartResult
) -> None:
    detail = booking_detail(svc, paid_booking.booking_id)
    day = detail.legs[0].day
    at = app("manager", page=BLOCKS)
    assert at.button(key="bl_block").disabled  # nothing checked yet
    at = fill(at, day)
    at.button(key="bl_check").click().run()
    assert not at.exception
    [error] = [str(e.value) for e in at.error]
    assert "1 booking in the way" in error and "Block** stays off" in error
    clashes = table(at, "Customer or title")
    row = list(clashes["Booking"]).index(f"/bookings?ref={paid_booking.reference}")
    assert clashes["Customer or title"][row] == "Wanda Testfixture" and clashes["What"][row] == "Paid booking"
    assert at.button(key="bl_block").disabled

    at.text_input(key="bl_reason").set_value("Floor sanding, second coat").run()  # the form changed
    assert any("Check** again" in str(i.value) for i in at.info)


def test_a_manager_blocks_a_free_day_sees_it_at_the_top_and_releases_it(app: App, svc: Services) -> None:
    day = free_day(svc)
    at = fill(app("manager", page=BLOCKS), day, reason="Floor sanding")
    at.button(key="bl_check").click().run()
    assert any("Nothing booked in the way" in str(s.value) for s in at.success)
    block = at.button(key="bl_block")
    assert not block.disabled
    block.click().run()
    assert not at.exception
    [done] = [str(s.value) for s in at.success]
    assert done.startswith("Blocked Boardroom on") and "whole opening day" in done
    # The outcome is the first thing under the title, before the tabs.
    kinds = [k.type for k in at.main.children.values()]  # the outcome comes right under the title, above the tabs
    assert kinds[kinds.index("title") + 1] == "success" and kinds[kinds.index("title") + 2] == "tab_container"
    listed = table(at, "Reason")
    row = list(listed["Reason"]).index("Floor sanding")
    assert listed["Rooms"][row] == "Boardroom" and listed["Events"][row] == "1 of 1"
    ask = BookingRequest("boardroom", (day,), time(10), time(12), "Cal Ler", "cal.ler@example.org")
    [refused] = quote(svc, ask).reasons  # a caller can no longer have the room that day
    assert refused.startswith(f"{day_label(day)}: overlaps")
    with svc.session() as s:
        [made] = s.exec(select(RoomBlock).where(RoomBlock.reason == "Floor sanding")).all()
        [audit] = [
            a
            for a in s.exec(select(AuditLog).where(AuditLog.action == "block.created")).all()
            if a.payload.get("block_id") == made.id
        ]
    assert made.actor == audit.actor == "manager@sandbox"

    key = next(df.key for df in at.dataframe if "Reason" in df.value.columns)
    at.session_state[key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    release = at.button(key="bl_release")
    assert release.label == f"Release #{made.id}" and not release.disabled
    release.click().run()
    assert any("not released" in str(e.value) and "at least 3 characters" in str(e.value) for e in at.error)
    at.session_state[key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.text_input(key="bl_release_reason").set_value("Sanding moved to August").run()
    at.button(key="bl_release").click().run()
    [done] = [str(s.value) for s in at.success]
    assert done == f"Released block #{made.id}: Boardroom can be booked again on its days."
    assert not any("Floor sanding" in list(df.value["Reason"]) for df in at.dataframe if "Reason" in df.value.columns)


def test_a_closure_is_the_whole_venue_for_whole_days(app: App, svc: Services) -> None:
    at = app("admin", page=BLOCKS)
    at.radio(key="bl_kind").set_value("closure").run()
    assert at.toggle(key="bl_all").value and at.toggle(key="bl_all").disabled
    assert at.toggle(key="bl_whole").value and at.selectbox(key="bl_start").disabled
    assert at.button(key="bl_block").label == "Close the venue"


@pytest.mark.parametrize("role", ["frontdesk", "finance"])
def test_only_managers_and_admins_have_the_screen(app: App, role: str) -> None:
    at = app(role)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(BLOCKS)
