"""A front-desk person's whole phone booking in a real browser: sign in, pick a free slot, quote, book, take the
payment (sandbox), then find the booking on the Bookings page."""

from __future__ import annotations

import re
from typing import Any

from .harness import open_page, screenshot, wait_idle, wait_text


def _pick(page: Any, label: str, option: str) -> None:
    """Choose an option of a Streamlit selectbox by its label and visible text, as a person would: open it, type to
    filter the (virtualised) list, click the option — and look that it took, trying again if a rerun of the page
    swallowed the click (it happens on a loaded machine)."""
    box = page.get_by_role("combobox", name=re.compile(label))
    for _ in range(3):
        box.click()
        box.fill(option)
        page.get_by_role("option", name=option, exact=True).click()
        wait_idle(page)
        box.press("Escape")  # a list still open (the click swallowed) closes and shows what is really chosen
        wait_idle(page)
        if box.input_value() == option:
            return
    raise AssertionError(f"{label}: {option!r} could not be chosen (it shows {box.input_value()!r})")


def test_phone_booking_paid_and_found(app_server: Any, page: Any) -> None:
    open_page(page, app_server, "/", timeout=120)  # the first start seeds the demo data behind a progress bar
    wait_text(page, "Sandbox — no real payments or calendars", timeout=120)

    # Sign in with the sandbox role picker.
    page.get_by_text("Front desk — phone bookings").click()
    page.get_by_role("button", name="Sign in").click()
    wait_text(page, "Phone booking")
    wait_idle(page)
    nav = page.get_by_test_id("stSidebarNav")
    # Lines like "call" are the material icons' names; the rest are the page names.
    assert [t.strip() for t in nav.inner_text().splitlines() if t.strip() and not re.fullmatch(r"[a-z_]+", t)] == [
        "Phone booking",
        "Holds",
        "Bookings",
        "Room calendar",
        "Deposits",  # front desk files damage claims
    ]

    # The demo data fills the rooms at random: try start times until the quote says the slot is free.
    _pick(page, "Room", "Quiet Room — $25.00/h, up to 6")
    quoted = False
    for start, end in [("08:00", "09:00"), ("16:00", "17:00"), ("12:00", "13:00"), ("10:00", "11:00")]:
        _pick(page, "Start", start)
        _pick(page, "End", end)
        page.get_by_role("button", name="Quote").click()
        wait_idle(page)
        page.wait_for_selector("text=/Available —|can.t be booked/")
        if page.get_by_text("can't be booked").count() == 0:
            quoted = True
            break
    assert quoted, "no free hour found for the Quiet Room on the default day"
    screenshot(page, "e2e_quote")

    # A front-desk mistake first: no email.
    page.get_by_role("textbox", name="Name").fill("Robin Caller")
    page.get_by_role("button", name="Book").click()
    wait_text(page, "A valid customer email is required")
    page.get_by_role("textbox", name="Email").fill("robin.caller@example.org")
    page.get_by_role("textbox", name="Email").press("Tab")
    wait_idle(page)
    page.get_by_role("button", name="Book").click()
    wait_text(page, "Customer paid")
    reference = re.search(r"RD[A-Z0-9]{6}", page.get_by_test_id("stMain").inner_text())
    assert reference, "the booking reference is shown after booking"

    page.get_by_role("button", name="Customer paid").click()
    wait_text(page, "Confirmation email sent")
    screenshot(page, "e2e_paid")

    # Find it on the Bookings page by the customer's email.
    page.get_by_test_id("stSidebarNav").get_by_text("Bookings").click()
    wait_text(page, "Search")
    search = page.get_by_role("textbox", name="Search")
    search.fill("robin.caller@example.org")
    search.press("Enter")
    wait_idle(page)
    wait_text(page, "1 booking(s)")
    # A deep link opens a new session: sign in again and land on the booking itself.
    page.goto(app_server.url(f"/bookings?ref={reference.group(0)}"))
    wait_idle(page)
    page.get_by_text("Front desk — phone bookings").click()
    page.get_by_role("button", name="Sign in").click()
    wait_text(page, f"{reference.group(0)} · Quiet Room")
    wait_text(page, "Confirmed")
    # The days table is a canvas grid; its accessible cells carry the text.
    page.locator("[role=gridcell]", has_text="on calendar").first.wait_for(state="attached")
    screenshot(page, "e2e_found")
