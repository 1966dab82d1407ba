"""Correcting a customer's details on the booking's detail, and "did you mean …?" under the email fields (issue 12)."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from services.booking import BookingRequest, StartResult, cancel_booking, sandbox_pay, start_booking
from services.booking.queries import booking_detail
from services.core.context import Services

from .conftest import free_slot

App = Callable[..., AppTest]
BOOKINGS = "pages/frontdesk/bookings.py"


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def buttons(at: AppTest) -> list[str]:
    return [str(b.key) for b in at.button]


def booked(svc: Services, email: str, *, pay: bool = True, skip: int = 0) -> StartResult:
    slot = free_slot(svc, "union-room", hours=2, skip=skip)
    started = start_booking(
        svc,
        BookingRequest(
            slot.room, (slot.day,), slot.start, slot.end, "Rae Typo", email, "604-555-0123", channel="phone"
        ),
        actor="frontdesk@sandbox",
    )
    if pay:
        assert sandbox_pay(svc, started.booking_id, actor="frontdesk@sandbox").outcome == "confirmed"
    return started


def test_a_mistyped_email_is_corrected_in_place_and_the_confirmation_sent_again(app: App, svc: Services) -> None:
    started = booked(svc, "rae.typo@gmial.com")
    at = app("frontdesk", page=BOOKINGS, ref=started.reference)
    at.button(key="bk_edit_open").click().run()
    assert at.text_input(key="bk_ed_name").value == "Rae Typo"
    assert at.text_input(key="bk_ed_email").value == "rae.typo@gmial.com"
    assert "Did you mean" in texts(at, "warning")  # shown as soon as the form opens with the typo in it

    use = at.button(key="bk_ed_email_use_suggestion")
    assert use.label == "Use rae.typo@gmail.com"
    use.click().run()
    assert at.text_input(key="bk_ed_email").value == "rae.typo@gmail.com"
    assert "Did you mean" not in texts(at, "warning")

    at.text_input(key="bk_ed_name").set_value("Rae Tipo")
    at.button(key="bk_ed_save").click().run()
    assert not at.exception
    assert "bk_ed_save" not in buttons(at)  # the form closed
    saved = texts(at, "success")
    assert "Saved: name **Rae Tipo**, email **rae\\.typo@gmail\\.com**." in saved
    assert "The calendar events of" in saved
    assert [t.value for t in at.toast] == ["Customer details saved"]
    assert "**Rae Tipo** · rae\\.typo@gmail\\.com · 604\\-555\\-0123" in texts(at, "markdown")  # as text
    detail = booking_detail(svc, started.booking_id)
    assert detail.booking.customer_email == "rae.typo@gmail.com"
    [event] = [e for e in detail.events.values() if e]
    assert "Customer: Rae Tipo <rae.typo@gmail.com>" in event["description"]

    at.button(key="bk_resend").click().run()
    assert "Confirmation emailed to **rae\\.typo@gmail\\.com**." in texts(at, "success")
    assert svc.mail.messages(booking_id=started.booking_id, kind="confirmation")[0]["to"] == "rae.typo@gmail.com"


def test_every_problem_shows_by_save_and_the_form_stays_open(app: App, svc: Services) -> None:
    started = booked(svc, "kim.form@example.org", pay=False, skip=1)
    at = app("frontdesk", page=BOOKINGS, ref=started.reference)
    at.button(key="bk_edit_open").click().run()
    at.text_input(key="bk_ed_name").set_value("")
    at.text_input(key="bk_ed_email").set_value("kim.form@gmail")
    at.number_input(key="bk_ed_party_size").set_value(99)
    at.run()
    assert at.button(key="bk_ed_email_use_suggestion").label == "Use kim.form@gmail.com"
    at.button(key="bk_ed_save").click().run()
    errors = texts(at, "error")
    assert "Not saved: please fix" in errors
    assert "Customer name is required" in errors and "The Union Room holds at most 30 people" in errors
    assert "Did you mean kim.form@gmail.com?" in errors
    assert "bk_ed_save" in buttons(at)  # still open, with what was typed
    assert at.text_input(key="bk_ed_email").value == "kim.form@gmail"
    assert booking_detail(svc, started.booking_id, live=False).booking.customer_name == "Rae Typo"

    at.button(key="bk_ed_cancel").click().run()
    assert "bk_ed_save" not in buttons(at) and "bk_edit_open" in buttons(at)


def test_the_next_pay_link_goes_to_the_corrected_address(app: App, svc: Services) -> None:
    started = booked(svc, "lou.link@hotmial.com", pay=False, skip=2)
    at = app("frontdesk", page=BOOKINGS, ref=started.reference)
    at.button(key="bk_edit_open").click().run()
    at.button(key="bk_ed_email_use_suggestion").click().run()
    at.button(key="bk_ed_save").click().run()
    assert "The next pay link goes to **lou\\.link@hotmail\\.com**." in texts(at, "success")
    assert "bk_resend" not in buttons(at)  # nothing was confirmed yet: the pay link is what to send
    at.button(key="bk_send_link").click().run()
    assert "Pay link emailed to **lou\\.link@hotmail\\.com**." in texts(at, "success")


def test_finance_and_a_cancelled_booking_offer_no_edit(app: App, svc: Services, paid_booking: StartResult) -> None:
    assert "bk_edit_open" not in buttons(app("finance", page=BOOKINGS, ref=paid_booking.reference))
    started = booked(svc, "cy.cancelled@example.org", pay=False, skip=3)
    cancel_booking(svc, started.booking_id, actor="frontdesk@sandbox")
    assert "bk_edit_open" not in buttons(app("frontdesk", page=BOOKINGS, ref=started.reference))


def test_phone_booking_suggests_the_address_under_the_email_field(app: App) -> None:
    at = app("frontdesk")
    at.text_input(key="pb_email").set_value("pat@gmail.con").run()
    assert "Did you mean" in texts(at, "warning")
    at.button(key="pb_email_use_suggestion").click().run()
    assert at.text_input(key="pb_email").value == "pat@gmail.com"
    assert "Did you mean" not in texts(at, "warning")
    at.text_input(key="pb_email").set_value("pat@labourtemple.example").run()
    assert not [b for b in at.button if b.key == "pb_email_use_suggestion"]
