"""Front desk answers "is the Boardroom free at 14:00 on that day?" in a real browser at a front-desk laptop's 1366×768
(issue 14 §1 and §4): the Room calendar's grid shows it free, one click opens Phone booking filled in there, Quote
says the price beside the form, a missing email is named where the person is looking, and after Book the reference
to read to the caller is on screen without scrolling.

The demo data is made here in the test process, against the DATA_DIR the app then opens (as test_change_booking.py
does): that is how the test knows a day when the Boardroom is free from 14:00 to 16:00.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.rules.fmt import day_label

from .harness import LAPTOP, in_view, open_page, screenshot, wait_idle, wait_text
from .seeding import demo_venue

NO_WATCHER = ["--server.fileWatcherType", "none"]  # the code as it was at start, whatever is edited meanwhile


@pytest.fixture
def free_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, date]]:
    """A DATA_DIR with a few demo bookings, and a day at least three days ahead when the Boardroom is free
    14:00–16:00."""
    from services.booking import BookingRequest, quote

    data_dir = tmp_path / "data"
    with demo_venue(data_dir, monkeypatch, count=8) as svc:
        day = svc.now().astimezone(svc.settings.tz).date() + timedelta(days=3)
        ask = BookingRequest("boardroom", (day,), time(14), time(16), "x", "x@example.org")
        while not quote(svc, ask).available:
            day += timedelta(days=1)
            ask = BookingRequest("boardroom", (day,), time(14), time(16), "x", "x@example.org")
        yield data_dir, day


def _settle(page: Any) -> None:
    """A click's rerun starts a moment after the click: wait for it to start, then to finish."""
    page.wait_for_timeout(300)
    wait_idle(page)


def _type(page: Any, field: str, text: str) -> None:
    """Type into a text field and leave it, as a person does before the next step."""
    box = page.get_by_role("textbox", name=field)
    box.fill(text)
    box.press("Tab")
    _settle(page)


def test_a_free_cell_becomes_a_booking_with_every_outcome_in_view(
    start_app: Any, page: Any, free_day: tuple[Path, date]
) -> None:
    data_dir, day = free_day
    server = start_app(data_dir=data_dir, role="frontdesk", extra_args=NO_WATCHER)
    page.set_viewport_size(LAPTOP)

    # The Room calendar on that day: the grid is the first thing under the date.
    open_page(page, server, "/room_calendar", timeout=120)
    picker = page.get_by_test_id("stDateInput").filter(has_text="Date").locator("input")
    picker.fill(day.isoformat())
    picker.press("Escape")  # closes the calendar: the date typed is then sent
    _settle(page)
    # 14:00 is the seventh column from 08:00 (a link with a tooltip is drawn twice, one copy hidden).
    cell = page.locator('[class*="st-key-rg_cal_free_boardroom_6"] a').filter(visible=True).first
    cell.wait_for()
    in_view(cell)
    assert cell.inner_text().strip().endswith("Free")
    screenshot(page, "grid/e2e_room_calendar", full_page=False)

    # One click: Phone booking, filled in there.
    cell.click()
    wait_text(page, "Filled in from the rooms grid")
    _settle(page)
    # The line under the times says what the form now holds.
    wait_text(page, f"Boardroom · {day_label(day)} · 14:00–16:00 (2 h a day)")
    assert page.get_by_test_id("stDateInput").filter(has_text="First day").locator("input").input_value() == (
        day.isoformat()
    )
    screenshot(page, "grid/e2e_phone_prefilled", full_page=False)

    page.get_by_role("button", name="Quote").click()
    quoted = page.get_by_text("Available — $94.50")
    quoted.wait_for()
    in_view(quoted)
    screenshot(page, "grid/e2e_phone_quoted", full_page=False)

    # A front-desk mistake: Book without the email. Book is below the fold; the error is beside the form, in view.
    _type(page, "Name", "Grace Gridcell")
    page.get_by_role("button", name="Book").click()
    error = page.get_by_text("A valid customer email is required")
    error.wait_for()
    _settle(page)
    in_view(error)
    screenshot(page, "grid/e2e_phone_error", full_page=False)

    _type(page, "Email", "grace.gridcell@example.org")
    page.get_by_role("button", name="Book").click()
    reference = page.get_by_role("heading", name=re.compile(r"^RD[A-Z0-9]{6,}$"))
    reference.wait_for()
    _settle(page)
    in_view(reference)
    in_view(page.get_by_role("button", name="Customer paid"))
    screenshot(page, "grid/e2e_phone_booked", full_page=False)

    # The grid beside the form shows the new hold where the free cells were.
    held = page.locator('[class*="st-key-rg_pb_held_req_boardroom_6"] button').filter(visible=True)
    assert held.count() == 1

    # It stays until New booking, through a payment.
    page.get_by_role("button", name="Customer paid").click()
    wait_text(page, "Confirmation email sent")
    _settle(page)
    in_view(page.get_by_text(re.compile(r"^Confirmed$|Confirmed — RD")).first)
    assert reference.count() == 1
