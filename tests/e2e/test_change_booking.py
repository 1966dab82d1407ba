"""Front desk changes a paid booking in a real browser, at a front-desk laptop's 1366×768 (issue 12 §2): the caller
moves their day to another date (same price: made at once, the new day on the booking), then asks for a longer day
(costs more: held, waiting for payment with a pay link), and pays it (the sandbox's test card): the change is made.

The booking is made here in the test process, against the DATA_DIR the app then opens (as test_mismatch.py does):
that is how the test knows its reference and which dates are free.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from .harness import LAPTOP, open_page, screenshot, text_in_view, wait_idle, wait_text
from .seeding import demo_venue

NO_WATCHER = ["--server.fileWatcherType", "none"]  # the code as it was at start, whatever is edited meanwhile


@pytest.fixture
def booked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Any, Any, date, date]]:
    """A DATA_DIR with a few demo bookings and one paid phone booking of the Boardroom, 10:00–12:00 on one day:
    (the folder, the services over it, the booking, its day, a free day to move it to)."""
    from services.booking import BookingRequest, quote, sandbox_pay, start_booking

    data_dir = tmp_path / "data"
    with demo_venue(data_dir, monkeypatch, count=8) as svc:
        ask = BookingRequest("boardroom", (), time(10), time(13), "Morgan Mover", "morgan.mover@example.org")
        day = svc.now().astimezone(svc.settings.tz).date() + timedelta(days=3)
        free: list[date] = []
        while len(free) < 2:  # free 10:00–13:00, so the day can later take an hour more
            day += timedelta(days=1)
            if quote(svc, replace(ask, dates=(day,))).available:
                free.append(day)
        started = start_booking(
            svc, replace(ask, dates=(free[0],), end=time(12), channel="phone"), actor="frontdesk@sandbox"
        )
        assert sandbox_pay(svc, started.booking_id, actor="frontdesk@sandbox").outcome == "confirmed"
        yield data_dir, svc, started, free[0], free[1]


def _label(d: date) -> str:
    from services.rules.fmt import day_label

    return day_label(d)


def test_front_desk_moves_a_day_then_lengthens_it_and_takes_the_payment(
    start_app: Any, page: Any, booked: tuple[Path, Any, Any, date, date]
) -> None:
    data_dir, svc, started, first, other = booked
    server = start_app(data_dir=data_dir, role="frontdesk", extra_args=NO_WATCHER)
    page.set_viewport_size(LAPTOP)
    open_page(page, server, f"/bookings?ref={started.reference}", timeout=120)
    wait_text(page, f"{started.reference} · Boardroom")
    page.locator("[role=gridcell]", has_text=_label(first)).first.wait_for(state="attached")  # the Days table
    page.get_by_role("button", name="Change booking").scroll_into_view_if_needed()
    screenshot(page, "change/e2e_detail", full_page=False)

    # 1. Move the day: same price, made at once.
    page.get_by_role("button", name="Change booking").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Nothing changes yet").wait_for()
    move = dialog.get_by_test_id("stDateInput").filter(has_text="Move to").locator("input")
    move.fill(other.isoformat())
    move.press("Escape")  # closes the calendar: the date typed is then sent
    wait_idle(page)
    dialog.get_by_text("Nothing to pay").wait_for()
    dialog.locator("[role=gridcell]", has_text=f"{_label(other)}\u00a010:00–12:00").first.wait_for(state="attached")
    screenshot(page, "change/e2e_dialog_move", full_page=False)
    dialog.get_by_role("button", name="Make the change").click()

    wait_text(page, "Change 1 made.")
    wait_idle(page)
    assert page.get_by_role("dialog").count() == 0
    text_in_view(page, "Change 1 made.")
    page.locator("[role=gridcell]", has_text=_label(other)).first.wait_for(state="attached")  # the Days table
    screenshot(page, "change/e2e_moved", full_page=False)
    page.get_by_role("button", name="Dismiss").click()
    page.get_by_text("Change 1 made.").first.wait_for(state="detached")
    wait_idle(page)

    # 2. An hour longer: costs more, so it waits for payment; the booking stays as it is meanwhile.
    page.get_by_role("button", name="Change booking").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Nothing changes yet").wait_for()
    end = dialog.get_by_role("combobox", name=re.compile("End"))
    end.click()
    end.fill("13:00")
    page.get_by_role("option", name="13:00", exact=True).click()
    wait_idle(page)
    dialog.get_by_text("Charge $47.25").wait_for()
    dialog.get_by_text("stays as it is until paid").wait_for()
    confirm = dialog.get_by_role("button", name="Hold the new days and email a pay link for $47.25")
    box = confirm.bounding_box()
    assert box is not None and box["y"] + box["height"] <= LAPTOP["height"]  # in view, no scrolling in the dialog
    screenshot(page, "change/e2e_dialog_longer", full_page=False)
    confirm.click()

    wait_text(page, "Change 2 waits for payment: $47.25.")
    wait_idle(page)
    text_in_view(page, "Change 2 waits for payment: $47.25.")
    wait_text(page, f"/manage/{started.reference}/change/2?k=")
    assert page.get_by_role("button", name="Change booking").count() == 0  # one change at a time
    screenshot(page, "change/e2e_waiting", full_page=False)

    page.get_by_role("button", name="Record payment (sandbox)").click()
    wait_text(page, "Payment of $47.25 recorded; change 2 made.")
    wait_idle(page)
    text_in_view(page, "Payment of $47.25 recorded; change 2 made.")
    assert page.get_by_text("waits for payment").count() == 0
    page.locator("[role=gridcell]", has_text="10:00–13:00").first.wait_for(state="attached")
    screenshot(page, "change/e2e_paid", full_page=False)

    from services.booking.queries import booking_detail

    detail = booking_detail(svc, started.booking_id, live=False)
    tz = svc.settings.tz
    assert [(leg.day, f"{leg.ends_at.astimezone(tz):%H:%M}") for leg in detail.legs] == [(other, "13:00")]
    assert [(c.number, c.state.value) for c in detail.changes] == [(1, "applied"), (2, "applied")]
