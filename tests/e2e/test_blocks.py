"""A manager blocks a room in a real browser at a front-desk laptop's 1366×768 (issue 14 §5): Check over a day with a
paid booking lists it (reference, customer) with Block off; on a free day Check finds nothing in the way and Block
makes it — the outcome in view at once; the list shows it. Then a customer asks the booking API for that room and
day and is refused, and reconciliation does not take the block's calendar event for one added by hand.

The booking is made in the test process, against the DATA_DIR the app then opens (as test_change_booking.py does).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from .harness import LAPTOP, ApiServer, app_env, free_port, open_page, screenshot, text_in_view, wait_idle, wait_text
from .seeding import demo_venue

NO_WATCHER = ["--server.fileWatcherType", "none"]  # the code as it was at start, whatever is edited meanwhile


@pytest.fixture
def venue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Any, Any, date, date]]:
    """A DATA_DIR with a few demo bookings and a paid Boardroom booking: (the folder, the services over it, the
    booking, its day, a day the Boardroom is entirely free)."""
    from services.booking import BlockRequest, BookingRequest, plan_block, quote, sandbox_pay, start_booking
    from services.core.errors import ValidationError

    data_dir = tmp_path / "data"
    with demo_venue(data_dir, monkeypatch, count=8) as svc:
        ask = BookingRequest(
            "boardroom", (), time(10), time(12), "Bea Booked", "bea.booked@example.org", channel="phone"
        )
        day = svc.now().astimezone(svc.settings.tz).date() + timedelta(days=3)
        free: list[date] = []
        while len(free) < 2:
            day += timedelta(days=1)
            try:
                nothing_there = plan_block(svc, BlockRequest(("boardroom",), day, day, reason="probe")).clashes == ()
            except ValidationError:  # closed that day
                continue
            if nothing_there and quote(svc, replace(ask, dates=(day,))).available:
                free.append(day)
        started = start_booking(svc, replace(ask, dates=(free[0],)), actor="frontdesk@sandbox")
        assert sandbox_pay(svc, started.booking_id, actor="frontdesk@sandbox").outcome == "confirmed"
        yield data_dir, svc, started, free[0], free[1]


def _days(page: Any, day: date) -> None:
    fields = page.get_by_test_id("stDateInput").filter(has_text="Days").locator("input")
    fields.nth(0).fill(day.isoformat())  # the first day, then the last
    fields.nth(1).fill(day.isoformat())
    fields.nth(1).press("Escape")  # closes the calendar: the range typed is then sent
    wait_idle(page)


def _post_booking(api: ApiServer, day: date) -> tuple[int, dict[str, Any]]:
    body = {
        "room": "boardroom",
        "dates": [day.isoformat()],
        "start": "13:00",
        "end": "15:00",
        "customer_name": "Cass Customer",
        "customer_email": "cass.customer@example.org",
        "terms_version": "2026-01",
    }
    request = urllib.request.Request(
        api.url("/api/bookings"), data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_manager_blocks_the_boardroom_and_a_customer_can_no_longer_book_it(
    start_app: Any, page: Any, venue: tuple[Path, Any, Any, date, date]
) -> None:
    from services.reconciliation import findings, reconcile, sync
    from services.rules.fmt import day_label

    data_dir, svc, booked, busy_day, free_day = venue
    server = start_app(data_dir=data_dir, role="manager", extra_args=NO_WATCHER)
    page.set_viewport_size(LAPTOP)
    open_page(page, server, "/blocks", timeout=120)
    wait_text(page, "Blocks & closures")
    screenshot(page, "blocks/e2e_empty", full_page=False)

    # The form: the Boardroom, the booked day, a reason; Check lists the booking with Block off.
    page.get_by_test_id("stMultiSelect").filter(has_text="Rooms").click()
    page.get_by_role("option", name="Boardroom", exact=True).click()
    page.keyboard.press("Escape")
    wait_idle(page)
    _days(page, busy_day)
    reason = page.get_by_label("Reason")
    reason.fill("Boiler repair")
    reason.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Check").click()
    wait_text(page, "1 booking in the way.")
    wait_idle(page)
    page.locator("[role=gridcell]", has_text=booked.reference).first.wait_for(state="attached")
    page.locator("[role=gridcell]", has_text="Bea Booked").first.wait_for(state="attached")
    assert page.get_by_role("button", name="Block", exact=True).is_disabled()
    text_in_view(page, "1 booking in the way.")
    page.mouse.move(1000, 700)  # no tooltip over the form in the picture
    page.wait_for_timeout(500)
    screenshot(page, "blocks/e2e_clash", full_page=False)

    # A free day: nothing in the way, Block makes it and says so at the top, in view.
    _days(page, free_day)
    wait_text(page, "The form changed since the last check")
    page.get_by_role("button", name="Check").click()
    wait_text(page, "Nothing booked in the way")
    wait_idle(page)
    page.get_by_role("button", name="Block", exact=True).click()
    outcome = f"Blocked Boardroom on {day_label(free_day)}, whole opening day"
    wait_text(page, outcome)
    wait_idle(page)
    text_in_view(page, outcome)
    screenshot(page, "blocks/e2e_outcome", full_page=False)
    page.get_by_role("tab", name=re.compile(r"^Current blocks \(\d+\)$")).click()
    page.locator("[role=gridcell]", has_text="Boiler repair").first.wait_for(state="attached")
    screenshot(page, "blocks/e2e_list", full_page=False)

    # A customer asks the booking API for the Boardroom that afternoon: refused.
    port = free_port()
    with ApiServer(app_env(data_dir, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}"), port=port) as api:
        status, answer = _post_booking(api, free_day)
        assert status == 409, answer
        [why] = answer["reasons"]
        assert why.startswith(f"{day_label(free_day)}: overlaps"), why

    # Reconciliation knows the block's event is the venue's own, not one added by hand.
    sync.sync(svc, actor="test")
    reconcile.reconcile(svc, actor="test")
    hand_added = [f.summary for f in findings.open_findings(svc, codes=["manual_event"])]
    assert not [s for s in hand_added if "Boiler repair" in s], hand_added
