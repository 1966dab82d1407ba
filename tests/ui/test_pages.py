"""The staff dashboard through AppTest: what a person signed in with each role sees and can do."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, time, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages.ui import nav
from pages.ui.labels import literal
from services.booking import StartResult
from services.booking.queries import search_bookings
from services.core.context import Services
from services.core.roles import ROLES
from services.rules.fmt import day_label

from .conftest import APP, TIMEOUT, free_slot, next_weekday

App = Callable[..., AppTest]

BANNER = "**Sandbox — no real payments or calendars.** Test cards, test calendars, emails kept locally."
FINANCE_PAGES = ["Refunds report", "Revenue & occupancy", "Approvals", "Deposits", "Disputes"]
ROLE_PAGES = {
    "frontdesk": ["Phone booking", "Holds", "Bookings", "Room calendar", "Deposits"],
    "manager": [
        "Overview",
        "Mismatches",
        "Phone booking",
        "Holds",
        "Bookings",
        "Room calendar",
        "Blocks & closures",
        *FINANCE_PAGES,
        "Emails & webhooks",
    ],
    "admin": [
        "Overview",
        "Mismatches",
        "Phone booking",
        "Holds",
        "Bookings",
        "Room calendar",
        "Blocks & closures",
        *FINANCE_PAGES,
        "Daily close",
        "Emails & webhooks",
        "Settings",
    ],
    "finance": ["Overview", "Bookings", "Room calendar", *FINANCE_PAGES, "Daily close"],
}


def nav_pages(at: AppTest) -> list[str]:
    """The pages the navigation can open. AppTest keeps what st.navigation registered (the list the browser's
    sidebar is drawn from) but exposes no element for it. The hidden '/' redirect (a function in app.py, no file)
    is left out: it only forwards to one of these."""
    return [info["page_name"] for info in at._registered_pages.values() if info.get("script_path")]


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def everything(at: AppTest) -> str:
    return "\n".join(
        texts(at, k) for k in ("title", "subheader", "markdown", "caption", "success", "info", "warning", "error")
    )


# ------------------------------------------------------------------------------------------------ app shell


def signed_out(at: AppTest) -> bool:
    """Every URL the navigation knows runs the sign-in page (hidden entries keep deep links for after sign-in)."""
    return {Path(info["script_path"]).name for info in at._registered_pages.values()} == {"sign_in.py"}


def test_sandbox_banner_and_role_picker_on_first_visit(app: App) -> None:
    at = app()
    assert "Sandbox — no real payments or calendars" in texts(at, "warning")
    assert signed_out(at) and at.title[0].value == "Room Desk"
    at.radio(key="sign_in_role").set_value("manager")
    at.button[0].click().run()  # the form's "Sign in"
    assert nav_pages(at) == ROLE_PAGES["manager"]
    assert "Signed in as **Manager**" in texts(at, "markdown")
    assert at.title[0].value == "Overview"  # the first page of the role's navigation


@pytest.mark.parametrize("role", list(ROLE_PAGES))
def test_each_role_sees_exactly_its_pages(app: App, role: str) -> None:
    at = app(role)
    assert nav_pages(at) == ROLE_PAGES[role]
    assert "Sandbox — no real payments or calendars" in texts(at, "warning")


def test_switch_role_goes_back_to_the_role_picker(app: App) -> None:
    at = app("frontdesk")
    at.button(key="switch_role").click().run()
    assert signed_out(at) and at.radio(key="sign_in_role")
    assert "role" not in at.session_state


def test_a_deep_link_survives_signing_in(app: App, paid_booking: StartResult) -> None:
    # AppTest cannot open a URL signed out, so sign out on it: the same URL then shows the sign-in page.
    at = app("manager", page="pages/frontdesk/bookings.py", ref=paid_booking.reference)
    at.button(key="switch_role").click().run()
    assert signed_out(at) and [t.value for t in at.title] == ["Room Desk"]
    at.radio(key="sign_in_role").set_value("finance")
    at.button[0].click().run()
    assert at.title[0].value == "Bookings"
    assert f"{paid_booking.reference} · Boardroom" in everything(at)


def test_finance_cannot_open_phone_booking(app: App) -> None:
    at = app("finance")
    assert at.title[0].value == "Overview"
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/frontdesk/phone_booking.py")

    # On the page as a manager, then the role changes: the next run lands on an allowed page instead.
    at = app("manager", page="pages/frontdesk/phone_booking.py")
    assert at.title[0].value == "Phone booking"
    at.session_state["role"] = "finance"
    at.run()
    assert [t.value for t in at.title] == ["Overview"]


def test_phone_booking_page_checks_the_role_itself(svc: Services) -> None:  # svc: this module's DATA_DIR
    # Run the page file on its own, skipping the navigation altogether: its own guard stops it.
    at = AppTest.from_file(APP.replace("app.py", "pages/frontdesk/phone_booking.py"), default_timeout=TIMEOUT)
    at.session_state["role"] = "finance"
    at.run()
    assert "not available to Finance" in texts(at, "error")
    assert not at.title


FORBIDDEN = sorted((role, s.key) for s in nav.SCREENS for role in ROLES if role not in s.roles)


@pytest.mark.parametrize(("role", "page"), FORBIDDEN, ids=[f"{r}-{p}" for r, p in FORBIDDEN])
def test_no_page_runs_for_a_role_without_it_whatever_the_url(svc: Services, role: str, page: str) -> None:
    """Each page file run straight (the URL of a page outside the role's navigation, or an old pages-folder URL)
    stops at its own role check before showing or doing anything."""
    at = AppTest.from_file(APP.replace("app.py", nav.script(page)), default_timeout=TIMEOUT)
    at.session_state["role"] = role
    at.run()
    assert f"not available to {ROLES[role]}" in texts(at, "error")
    assert not at.title and not at.button and not at.dataframe


# ------------------------------------------------------------------------------------------------ phone booking


def _fill(at: AppTest, *, room: str, day: date, start: time, end: time, name: str = "", email: str = "") -> None:
    at.selectbox(key="pb_room").set_value(room)
    at.date_input(key="pb_first_day").set_value(day)
    at.selectbox(key="pb_start").set_value(start)
    at.selectbox(key="pb_end").set_value(end)
    at.text_input(key="pb_name").set_value(name)
    at.text_input(key="pb_email").set_value(email)


def test_quote_for_a_saturday_says_saturdays_are_closed(app: App, svc: Services) -> None:
    at = app("frontdesk")
    saturday = next_weekday(svc, 5)
    slot = free_slot(svc)
    _fill(at, room=slot.room, day=saturday, start=slot.start, end=slot.end)
    at.run()
    at.button(key="pb_quote_btn").click().run()
    errors = texts(at, "error")
    assert f"{day_label(saturday)}: Saturdays are closed" in errors
    assert "- " in errors  # every reason is a list item


def test_quote_shows_the_price_per_day(app: App, svc: Services) -> None:
    at = app("frontdesk")
    slot = free_slot(svc, "quiet-room", hours=2)
    _fill(at, room=slot.room, day=slot.day, start=slot.start, end=slot.end)
    at.run()
    at.button(key="pb_quote_btn").click().run()
    # Quiet Room: $25/h × 2 h = $50.00, GST 5 % (the app's default tax) $2.50.
    assert "Available — **$52.50** (including GST 5 % $2.50)" in texts(at, "success")
    table = at.dataframe[0].value
    assert list(table["Day"]) == [day_label(slot.day)] and list(table["Day total"]) == ["$52.50"]


def test_missing_email_shows_the_validation_error(app: App, svc: Services) -> None:
    at = app("frontdesk")
    slot = free_slot(svc)
    _fill(at, room=slot.room, day=slot.day, start=slot.start, end=slot.end, name="No Email")
    at.run()
    at.button(key="pb_book").click().run()
    assert "A valid customer email is required" in texts(at, "error")
    assert "pb_created" not in at.session_state
    assert not at.button(key="pb_book").disabled  # they can fix it and book


def test_phone_booking_then_customer_paid_confirms_it(app: App, svc: Services) -> None:
    at = app("frontdesk")
    slot = free_slot(svc, "union-room", hours=2)
    email = "pat.phonetest@example.org"
    _fill(at, room=slot.room, day=slot.day, start=slot.start, end=slot.end, name="Pat Phonetest", email=email)
    at.run()
    book = at.button(key="pb_book")
    book.click().run()
    assert not at.exception
    created = at.session_state["pb_created"]
    assert f"Booking **{created.reference}** is held" in texts(at, "success")
    assert at.button(key="pb_book").disabled  # the button is disabled once booked
    assert at.text_input(key="pb_email").disabled  # the form is locked to what was booked

    # A double-click: the second click was sent from the page as it was before the first one finished.
    book.click().run()
    assert at.session_state["pb_created"] == created
    assert len(search_bookings(svc, text=email)) == 1

    at.button(key="pb_pay").click().run()
    assert "**Confirmed**" in texts(at, "success")
    [row] = search_bookings(svc, text=email)
    assert row["status"] == "CONFIRMED" and row["reference"] == created.reference and row["channel"] == "phone"
    assert at.button(key="pb_pay").disabled

    at.button(key="pb_new").click().run()
    assert "pb_created" not in at.session_state
    assert at.text_input(key="pb_email").value == "" and not at.button(key="pb_book").disabled


def test_phone_booking_emails_the_customer_a_pay_link(app: App, svc: Services) -> None:
    at = app("frontdesk")
    slot = free_slot(svc, "workshop", hours=2)
    email = "lee.paylink@example.org"
    _fill(at, room=slot.room, day=slot.day, start=slot.start, end=slot.end, name="Lee Paylink", email=email)
    at.run()
    at.button(key="pb_book").click().run()
    created = at.session_state["pb_created"]
    at.button(key="pb_send_link").click().run()
    assert not at.exception
    assert f"Pay link emailed to **{literal(email)}**." in texts(at, "success")
    url = f"{svc.settings.public_base_url}{created.pay_path}"
    assert [c.value for c in at.code] == [url]
    [mail] = svc.mail.messages(booking_id=created.booking_id)
    assert mail["kind"] == "pay_link" and mail["to"] == email and url in mail["text"]
    assert at.button(key="pb_send_link").label == "Email the pay link again"

    # From the booking's detail too, while it waits for payment; the customer accepts the terms on the pay page.
    detail = app("frontdesk", page="pages/frontdesk/bookings.py", ref=created.reference)
    assert "terms not accepted yet (asked on the pay page)" in texts(detail, "caption")
    detail.button(key="bk_send_link").click().run()
    assert f"Pay link emailed to **{literal(email)}**." in texts(detail, "success")
    assert [m["kind"] for m in svc.mail.messages(booking_id=created.booking_id)] == ["pay_link", "pay_link"]


def test_sonic_studio_warns_that_extras_must_be_collected(app: App) -> None:
    at = app("manager", page="pages/frontdesk/phone_booking.py")
    at.selectbox(key="pb_room").set_value("sonic-studio").run()
    assert "needs these before the session" in texts(at, "warning")
    assert at.text_input(key="pb_x_sonic-studio_show_name").label == "Podcast or show name"


# ------------------------------------------------------------------------------------------------ bookings


def test_search_by_email_then_select_the_row_shows_the_detail(app: App, paid_booking: StartResult) -> None:
    at = app("finance", page="pages/frontdesk/bookings.py")
    at.text_input(key="bk_text").set_value("wanda.testfixture@example.org").run()
    [table] = at.dataframe
    assert list(table.value["Reference"]) == [paid_booking.reference]
    assert list(table.value["Status"]) == ["Confirmed"]

    at.session_state[table.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert at.query_params.get("ref") == paid_booking.reference
    page = everything(at)
    assert f"{paid_booking.reference} · Boardroom" in page
    assert "#### Days" in page and "#### Timeline (Vancouver time)" in page
    assert not [d for d in at.dataframe if "Reference" in d.value.columns]  # the booking, not the list, under search
    days, timeline = at.dataframe[0].value, at.table[0].value
    assert list(days["State"]) == ["Confirmed"] and list(days["Calendar event"]) == ["✓ on calendar"]
    assert {"Payment of $94.50 requested", "Payment of $94.50 received"} <= set(timeline["What"])  # GST included
    assert any(str(w).startswith("Slot held until ") for w in timeline["What"])
    assert not [b for b in at.button if b.key == "bk_cancel_open"]  # finance looks, does not cancel


def test_deep_link_by_payment_intent_opens_the_booking(app: App, paid_booking: StartResult) -> None:
    at = app("frontdesk", page="pages/frontdesk/bookings.py", pi=paid_booking.payment_intent)
    assert f"{paid_booking.reference} · Boardroom" in everything(at)
    # Through app.py (banner, role, navigation) even though AppTest, like a fresh server, offers the old
    # pages-folder mode that would run pages/frontdesk/bookings.py on its own.
    assert [w.value for w in at.warning].count(BANNER) == 1 and nav_pages(at) == ROLE_PAGES["frontdesk"]
    payment = at.dataframe[1].value
    assert list(payment["Status"]) == ["succeeded"] and list(payment["Received"]) == ["$94.50"]


def test_a_root_link_with_a_reference_opens_the_booking(app: App, paid_booking: StartResult) -> None:
    at = app("frontdesk", ref=paid_booking.reference)  # /?ref=RD…, where front desk would land on Phone booking
    assert at.title[0].value == "Bookings"
    assert f"{paid_booking.reference} · Boardroom" in everything(at)


def test_deep_link_to_an_unknown_reference_says_so(app: App) -> None:
    at = app("frontdesk", page="pages/frontdesk/bookings.py", ref="RDNOPE99")
    assert "No booking matches 'RDNOPE99'" in texts(at, "warning")


def test_cancel_booking_shows_the_refund_then_cancels(app: App, svc: Services) -> None:
    from services.booking import BookingRequest, sandbox_pay, start_booking

    slot = free_slot(svc, "workshop", hours=2)
    started = start_booking(
        svc,
        BookingRequest(
            slot.room, (slot.day,), slot.start, slot.end, "Cass Cancel", "cass.cancel@example.org", channel="phone"
        ),
        actor="t",
    )
    sandbox_pay(svc, started.booking_id, actor="t")

    at = app("manager", page="pages/frontdesk/bookings.py", ref=started.reference)
    at.button(key="bk_cancel_open").click().run()
    quote = at.dataframe[-1].value  # the dialog's per-day refund table
    # Workshop $40/h × 2 h + GST 5 %: all of it back (100 % band).
    assert list(quote["Refund now"]) == ["$84.00"] and "100 %" in quote["Policy band"][0]
    at.button(key="bk_cancel_go").click().run()
    assert not at.exception
    assert "refunded $84.00" in texts(at, "success")
    [row] = search_bookings(svc, text="cass.cancel@example.org")
    assert row["status"] == "CANCELLED"


def test_keep_the_booking_closes_the_dialog_for_good(app: App, paid_booking: StartResult, svc: Services) -> None:
    at = app("frontdesk", page="pages/frontdesk/bookings.py", ref=paid_booking.reference)
    at.button(key="bk_cancel_open").click().run()
    at.button(key="bk_cancel_keep").click().run()
    assert not [b for b in at.button if b.key == "bk_cancel_go"]
    at.run()  # any later rerun: the dialog stays closed
    assert not [b for b in at.button if b.key == "bk_cancel_go"]
    assert search_bookings(svc, text=paid_booking.reference)[0]["status"] == "CONFIRMED"


# ------------------------------------------------------------------------------------------------ room calendar


def test_room_calendar_draws_the_day_with_its_bookings(app: App, paid_booking: StartResult, svc: Services) -> None:
    day = search_bookings(svc, text=paid_booking.reference)[0]["first_day"]
    at = app("frontdesk", page="pages/frontdesk/room_calendar.py")
    at.date_input(key="cal_day").set_value(day).run()
    assert not at.exception
    assert day_label(day) in texts(at, "subheader")
    assert not at.get("vega_lite_chart")  # the timeline is drawn when its tab is opened
    at.session_state["cal_tab"] = "Timeline"
    at.run()
    [chart] = at.get("vega_lite_chart")
    # The chart's data (Arrow bytes) carries the booking, for its bar's tooltip.
    assert any(paid_booking.reference.encode() in ds.data.data for ds in chart.proto.datasets)
    listing = at.dataframe[0].value
    assert paid_booking.reference in " ".join(str(v) for v in listing["Booking"])
    assert int(at.metric[0].value) >= 1  # booked


def test_room_calendar_week_view_and_next(app: App, svc: Services) -> None:
    at = app("finance", page="pages/frontdesk/room_calendar.py")
    at.button_group(key="cal_view").set_value("Week").run()
    shown = at.date_input(key="cal_day").value  # today, or Monday when today is a weekend
    monday = shown - timedelta(days=shown.weekday())
    assert at.subheader[0].value == f"Week of {day_label(monday)}"
    at.session_state["cal_tab"] = "Timeline"
    at.run()
    assert len(at.get("vega_lite_chart")) == 5  # one chart per weekday
    at.button(key="cal_next").click().run()
    assert at.subheader[0].value == f"Week of {day_label(monday + timedelta(days=7))}"


def test_booking_detail_offers_the_receipt_and_one_per_refund(app: App, svc: Services) -> None:
    from services.booking import BookingRequest, cancel_booking, sandbox_pay, start_booking
    from services.finance import receipts

    slot = free_slot(svc, "gallery", hours=2)
    req = BookingRequest(slot.room, (slot.day,), slot.start, slot.end, "Rae Receipt", "rae.receipt@example.org")
    started = start_booking(svc, req, actor="test")
    sandbox_pay(svc, started.booking_id, actor="test")
    at = app("frontdesk", page="pages/frontdesk/bookings.py", ref=started.reference)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Receipt (PDF)"]

    cancel_booking(svc, started.booking_id, actor="test")
    at = app("frontdesk", page="pages/frontdesk/bookings.py", ref=started.reference)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Receipt (PDF)", f"Refund receipt 1 (${started.amount_cents / 100:,.2f})"]
    name, pdf = receipts.booking_receipt_pdf(svc, started.booking_id)
    assert name == f"receipt-{started.reference}.pdf" and pdf.startswith(b"%PDF")
