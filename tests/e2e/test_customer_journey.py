"""A customer's own booking in a real browser: the rooms page, /book/<room> with a mistake first, the terms, the pay
page (sandbox test card, one declined), the confirmation with its calendar file; then the email in the outbox and the
booking on the staff dashboard. The API (`services.ops.cli serve-api`) and the dashboard run as separate processes on
one DATA_DIR, as in production."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from icalendar import Calendar
from sqlmodel import select

from models.tables import Booking, EmailOutbox
from services.core.context import build_services
from services.core.settings import Settings

from .harness import ApiServer, app_env, free_port, open_page, screenshot, wait_idle, wait_text


def test_customer_books_pays_and_staff_see_it(tmp_path: Path, page: Any, start_app: Any) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    env = app_env(data_dir, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    with ApiServer(env, port=port) as api:
        page.goto(api.url("/"))
        page.get_by_role("link", name="Book the Quiet Room").click()
        page.wait_for_url(re.compile(r"/book/quiet-room$"))
        first_day = page.locator("input[name=dates]").first
        day = first_day.get_attribute("value")
        first_day.check()
        page.select_option("#start", "10:00")
        page.select_option("#end", "11:30")
        page.fill("#customer_name", "Sam Online")
        page.fill("#customer_email", "sam.online@example.org")
        page.locator("#quote").filter(has_text="$39.38").wait_for()  # live price from /api/quotes

        # The customer forgets the terms: told so, and nothing typed is lost.
        page.click("#continue")
        wait_text_plain(page, "Please read and accept the cancellation policy and terms")
        assert page.input_value("#customer_email") == "sam.online@example.org"
        assert page.is_checked(f"input[value='{day}']")
        page.check("#accept_terms")
        page.click("#continue")
        page.wait_for_url(re.compile(r"/pay/RD[0-9A-Z]+\?k="))
        reference = page.url.split("/pay/")[1].split("?")[0]
        wait_text_plain(page, "Pay $39.38 with test card")
        screenshot(page, "customer_pay")

        # A declined card first, then a good one.
        page.select_option("#card", "pm_card_chargeDeclined")
        page.click("#pay")
        wait_text_plain(page, "The card was declined. Nothing was charged; try another card.")
        page.select_option("#card", "pm_card_visa")
        page.click("#pay")
        page.wait_for_url(re.compile(rf"/booked/{reference}\?k="))
        wait_text_plain(page, "Your booking is confirmed")
        wait_text_plain(page, "A confirmation email with a calendar file is on its way to sam.online@example.org")
        screenshot(page, "customer_booked")
        with page.expect_download() as download:
            page.get_by_role("link", name="Add to my calendar (.ics)").click()
        ics = Path(download.value.path()).read_bytes()
        [event] = Calendar.from_ical(ics).walk("VEVENT")
        assert str(event["dtstart"].dt.astimezone(Settings().tz).date()) == day

    # The email went through the outbox with the .ics, to the customer.
    svc = build_services(Settings(data_dir=data_dir))
    with svc.session() as s:
        booking = s.exec(select(Booking).where(Booking.reference == reference)).one()
        assert booking.status == "CONFIRMED" and booking.terms_version == "2026-01"
        outbox = s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == booking.id)).all()
    assert [(o.kind, o.status, o.to) for o in outbox] == [("confirmation", "sent", "sam.online@example.org")]
    [sent] = svc.mail.messages(booking_id=booking.id)
    [attachment] = sent["attachments"]
    assert attachment["filename"] == f"booking-{reference}.ics" and attachment["mime"] == "text/calendar"

    # Staff find it on the dashboard.
    dashboard = start_app(data_dir=data_dir, role="frontdesk")
    open_page(page, dashboard, f"/bookings?ref={reference}")
    wait_text(page, f"{reference} · Quiet Room")
    wait_idle(page)
    assert "Sam Online" in page.inner_text("body")


def wait_text_plain(page: Any, text: str, timeout: float = 15.0) -> None:
    """Wait until `text` is visible on a plain (non-Streamlit) page."""
    page.get_by_text(text, exact=False).first.wait_for(timeout=timeout * 1000)
