"""The customer's manage page in a real browser. A customer books two days and pays with the sandbox test card, reads
the confirmation email in the sandbox mail outbox, follows its manage link, cancels one day (the refund is shown before
confirming, and the result after), and the database shows that day cancelled and the refund recorded. Another moves
a day to another date from the change card and sees it there. The API
(`services.ops.cli serve-api`) runs as its own process on a DATA_DIR this test reads, as in production."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select

from models.tables import Booking, BookingLeg, LegState, RefundRecord
from services.core.context import build_services
from services.core.settings import Settings

from .harness import ApiServer, app_env, free_port, screenshot


def book_and_pay(page: Any, days: list[str], name: str, email: str) -> tuple[str, str]:
    """On the booking page already open: these days 10:00–12:00, the customer's details and the terms, then the
    sandbox's test card. Returns (reference, token) once the booking is confirmed."""
    for day in days:
        page.check(f"input[name=dates][value='{day}']")
    page.select_option("#start", "10:00")
    page.select_option("#end", "12:00")
    page.fill("#customer_name", name)
    page.fill("#customer_email", email)
    page.check("#accept_terms")
    page.click("#continue")
    page.wait_for_url(re.compile(r"/pay/RD[0-9A-Z]+\?k="))
    reference, token = page.url.split("/pay/")[1].split("?k=")
    page.select_option("#card", "pm_card_visa")
    page.click("#pay")
    page.wait_for_url(re.compile(rf"/booked/{reference}\?k="))
    page.get_by_text("Your booking is confirmed").wait_for()
    return reference, token


def test_customer_cancels_one_day_from_the_confirmation_emails_link(tmp_path: Path, page: Any) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    env = app_env(data_dir, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    tz = Settings().tz
    with ApiServer(env, port=port) as api:
        page.goto(api.url("/book/quiet-room"))
        # Two days at least four days ahead: well outside the 48 h cut-off and the full-refund band.
        soon = datetime.now(tz).date() + timedelta(days=4)
        days = [d for d in page.locator("input[name=dates]").evaluate_all("els => els.map(e => e.value)")]
        first, second = [d for d in days if date.fromisoformat(d) >= soon][:2]
        reference, _ = book_and_pay(page, [first, second], "Sam Online", "sam.online@example.org")

        # The confirmation email, as the customer gets it (the sandbox keeps every email it was asked to send).
        svc = build_services(Settings(data_dir=data_dir))
        [mail] = svc.mail.messages(kind="confirmation")
        link = re.search(r"(http://127\.0\.0\.1:\d+/manage/RD[0-9A-Z]+\?k=\S+)", mail["text"])
        assert link and mail["to"] == "sam.online@example.org"
        assert f'href="{link.group(1)}"' in mail["html"]

        page.goto(link.group(1))
        page.get_by_role("heading", name=f"Your booking {reference}").wait_for()
        second_row = page.locator(f"tr[data-day='{second}']")
        assert "Booked" in second_row.inner_text()
        price = re.search(r"\$\d+\.\d\d", second_row.inner_text())
        assert price
        screenshot(page, "customer_manage")

        second_row.get_by_role("link", name="Cancel this day").click()
        page.get_by_role("heading", name="Cancel this day?").wait_for()
        # The refund, before anything happens: the whole day's price, 100 % under the policy.
        assert page.inner_text("#refund-total") == price.group(0)
        assert page.get_by_role("button", name=f"Cancel and refund {price.group(0)}").is_visible()
        screenshot(page, "customer_manage_cancel")
        page.click("#confirm-cancel")

        page.locator("#cancelled-notice").wait_for()
        notice = page.inner_text("#cancelled-notice")
        label = f"{date.fromisoformat(second):%a} {date.fromisoformat(second).day} {date.fromisoformat(second):%b}"
        assert f"Cancelled: {label}." in notice and f"Refunded to your card: {price.group(0)} for {label}" in notice
        assert "Cancelled" in page.locator(f"tr[data-day='{second}']").inner_text()
        assert "Booked" in page.locator(f"tr[data-day='{first}']").inner_text()
        screenshot(page, "customer_manage_cancelled")

    with svc.session() as s:
        booking = s.exec(select(Booking).where(Booking.reference == reference)).one()
        legs = {str(leg.day): leg for leg in s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking.id))}
        [refund] = s.exec(select(RefundRecord).where(RefundRecord.booking_id == booking.id)).all()
    assert booking.status == "PARTLY_CANCELLED"
    assert (legs[first].state, legs[second].state) == (LegState.CONFIRMED, LegState.CANCELLED)
    assert (refund.origin, refund.actor, refund.leg_ids) == ("cancellation", "customer", [legs[second].id])
    assert f"${refund.amount_cents // 100}.{refund.amount_cents % 100:02d}" == price.group(0)
    assert legs[second].refunded_cents == refund.amount_cents
    [cancel_mail] = svc.mail.messages(kind="cancellation")
    assert cancel_mail["to"] == "sam.online@example.org" and link.group(1) in cancel_mail["text"]


def test_customer_moves_a_day_to_another_date_from_the_manage_page(tmp_path: Path, page: Any) -> None:
    """The change card: pick a new date for a day, see the change (same price: nothing to pay), confirm, and the page
    shows the day on its new date; the database agrees and the "changed" email went out."""
    data_dir = tmp_path / "data"
    port = free_port()
    env = app_env(data_dir, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    tz = Settings().tz
    with ApiServer(env, port=port) as api:
        page.goto(api.url("/book/quiet-room"))
        soon = datetime.now(tz).date() + timedelta(days=4)  # well outside the 48 h cut-off
        days = [d for d in page.locator("input[name=dates]").evaluate_all("els => els.map(e => e.value)")]
        day, new_day = [d for d in days if date.fromisoformat(d) >= soon][:2]
        reference, token = book_and_pay(page, [day], "Max Mover", "max.mover@example.org")

        page.goto(api.url(f"/manage/{reference}?k={token}"))
        page.get_by_role("heading", name="Change a date or time").wait_for()
        page.fill(f"#date_{day}", new_day)
        page.click("#see-change")
        page.get_by_role("heading", name="Make this change?").wait_for()
        new = date.fromisoformat(new_day)
        new_label = f"{new:%a} {new.day} {new:%b}"
        assert f"{new_label} 10:00–12:00" in page.inner_text("#change-table")
        assert page.inner_text("#change-outcome") == "Same price: nothing to pay, nothing refunded"
        page.click("#confirm-change")

        page.get_by_text(f"→ {new_label} 10:00–12:00").first.wait_for()
        page.locator(f"tr[data-day='{new_day}']").get_by_text("Booked").wait_for()
        assert page.locator(f"tr[data-day='{day}']").count() == 0
        screenshot(page, "customer_manage_changed")

    svc = build_services(Settings(data_dir=data_dir))
    with svc.session() as s:
        booking = s.exec(select(Booking).where(Booking.reference == reference)).one()
        legs = s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking.id)).all()
    assert [(str(leg.day), leg.state) for leg in legs] == [(new_day, LegState.CONFIRMED)]
    [mail] = svc.mail.messages(kind="changed")
    assert mail["to"] == "max.mover@example.org" and new_label in mail["text"]
