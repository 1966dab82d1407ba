"""What a person picks, and what a fix did, is on screen at a front-desk laptop's 1366×768 without scrolling (issue 14
§1): selecting a finding on Mismatches or a booking on Bookings (clicking the grid's row, a canvas, by position)
shows it at the top, the deep links do too, and a fix's outcome shows where the person looks.

The demo data is made, synced and reconciled in the test process (test_mismatch.py's fixture), against the DATA_DIR
the app then opens: that is how the test knows which row is which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import test_mismatch
from .harness import LAPTOP, open_page, screenshot, wait_idle, wait_text
from .harness import text_in_view as in_view

NO_WATCHER = test_mismatch.NO_WATCHER
seeded = test_mismatch.seeded  # the fixture: a DATA_DIR with demo bookings, synced and reconciled

HEADER_ROW = 35  # the grid's header and each row are 35 px high; the row's checkbox is the first column
ROW = 35


def pick_row(page: Any, row: int) -> None:
    """Select row `row` (0 = first) of the page's first grid by clicking its checkbox."""
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 18, box["y"] + HEADER_ROW + ROW * row + ROW / 2)


def test_selecting_a_finding_shows_it_in_view_and_its_fix_outcome_too(
    start_app: Any, page: Any, seeded: tuple[Path, Any]
) -> None:
    from services.reconciliation.findings import CODES, open_findings

    data_dir, svc = seeded
    listed = open_findings(svc)
    [row] = [i for i, f in enumerate(listed) if f.code == "partial_multiday"]
    finding = listed[row]
    assert row >= 3  # far enough down the list that a detail under the table would start off screen
    server = start_app(data_dir=data_dir, role="manager", extra_args=NO_WATCHER)
    page.set_viewport_size(LAPTOP)
    open_page(page, server, "/mismatches", timeout=120)
    wait_text(page, "Select a row to see it and fix it")

    pick_row(page, row)
    heading = f"#{finding.id} · {CODES['partial_multiday'][1]}"
    wait_text(page, heading)
    wait_idle(page)
    in_view(page, heading)
    fix = "Refund it all and delete its events"  # the booking never became confirmed: no policy to apply
    in_view(page, fix)
    assert f"finding={finding.id}" in page.url  # the address bar links to what is on screen
    screenshot(page, "e2e_in_view_finding", full_page=False)

    page.get_by_role("button", name=fix).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("refund all of it").wait_for()  # the dialog says what the button said
    dialog.get_by_role("button", name=fix).click()
    wait_text(page, f"{fix} —", timeout=60)
    wait_idle(page)
    in_view(page, f"{fix} —")  # the outcome, at the top of the finding
    in_view(page, "the last sync no longer sees this mismatch")
    screenshot(page, "e2e_in_view_fix_outcome", full_page=False)


def test_selecting_a_booking_shows_it_in_view_and_so_does_its_link(
    start_app: Any, page: Any, seeded: tuple[Path, Any]
) -> None:
    from services.booking.queries import search_bookings

    data_dir, svc = seeded
    rows = search_bookings(svc)
    pick = rows[6]  # down the list: a booking opened under the table would start off screen
    server = start_app(data_dir=data_dir, role="frontdesk", extra_args=NO_WATCHER)
    page.set_viewport_size(LAPTOP)
    open_page(page, server, "/bookings", timeout=120)
    wait_text(page, "Select a row to open it")

    pick_row(page, 6)
    heading = f"{pick['reference']} · {pick['room']}"
    wait_text(page, heading)
    wait_idle(page)
    in_view(page, heading)
    in_view(page, "Back to the list")
    assert f"ref={pick['reference']}" in page.url
    screenshot(page, "e2e_in_view_booking", full_page=False)

    page.get_by_role("button", name="Back to the list").click()
    wait_text(page, "Select a row to open it")
    wait_idle(page)
    assert "ref=" not in page.url

    other = rows[-1]  # a deep link to the last booking of the list
    open_page(page, server, f"/bookings?ref={other['reference']}")
    wait_text(page, f"{other['reference']} · {other['room']}")
    in_view(page, f"{other['reference']} · {other['room']}")
