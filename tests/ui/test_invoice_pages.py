"""Pay by invoice in the dashboard (issue 15 §2): front desk books for an organisation on terms from Phone booking
(mistakes named beside the form), the panel shows the invoice Stripe sent; the booking shows its invoice with Extend
and Void & release, each needing a reason."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from services.booking import BookingRequest, invoices
from services.booking.queries import invoice_of, search_bookings
from services.core.context import Services

from .conftest import free_slot
from .test_pages import _fill, everything, texts

App = Callable[..., AppTest]


def _on_terms(at: AppTest, *, email: str, org: str = "Harbour Trust") -> None:
    at.radio(key="pb_pay_by").set_value("invoice").run()
    at.text_input(key="pb_inv_org").set_value(org)
    at.text_input(key="pb_inv_contact").set_value("Accounts Payable")
    at.text_input(key="pb_inv_email").set_value(email)
    at.text_input(key="pb_inv_po").set_value("PO-2026-77")
    at.selectbox(key="pb_inv_terms").set_value(14)


def test_front_desk_books_an_organisation_on_invoice_and_the_mistake_is_named(app: App, svc: Services) -> None:
    slot = free_slot(svc, "union-room", hours=2, skip=40)  # far enough ahead for terms
    at = app("frontdesk")
    _fill(at, room=slot.room, day=slot.day, start=slot.start, end=slot.end, name="Rita Rep", email="rita@ex.org")
    at.run()
    _on_terms(at, email="accounts@harbour")  # no domain ending: not an address
    assert at.button(key="pb_book").label == "Book on invoice"
    at.button(key="pb_book").click().run()
    assert not at.exception
    assert "Billing email" in texts(at, "error")
    assert not search_bookings(svc, text="rita@ex.org")  # nothing held

    at.text_input(key="pb_inv_email").set_value("accounts@harbour.example.org")
    at.button(key="pb_book").click().run()
    assert not at.exception
    held = texts(at, "success")
    [row] = search_bookings(svc, text="rita@ex.org")
    assert f"Booking **{row['reference']}** is held on invoice" in held and "accounts@harbour\\.example\\.org" in held
    assert f"## {row['reference']}" in texts(at, "markdown")
    assert row["status"] == "AWAITING_PAYMENT"

    at.button(key="pb_pay").click().run()  # sandbox: the organisation pays on Stripe's page
    assert not at.exception
    assert "Invoice paid; confirmed" in texts(at, "success")
    assert search_bookings(svc, text="rita@ex.org")[0]["status"] == "CONFIRMED"


def test_the_booking_shows_its_invoice_and_staff_extend_then_release_it(app: App, svc: Services) -> None:
    slot = free_slot(svc, "gallery", hours=2, skip=40)
    made = invoices.book_on_invoice(
        svc,
        BookingRequest(slot.room, (slot.day,), slot.start, slot.end, "Ola Org", "ola@example.org", channel="phone"),
        invoices.InvoiceTerms("Film Co-op", "Ola Accounts", "ap@film.example.org", 7, "PO-9"),
        actor="frontdesk@sandbox",
    )
    at = app("manager", page="pages/frontdesk/bookings.py", ref=made.reference)
    page = everything(at)
    assert "#### Invoice" in page and "**Film Co\\-op**" in page and "PO PO\\-9" in page and "net 7" in page
    assert at.button(key="bk_inv_extend").disabled  # a reason first
    at.text_input(key=f"bk_inv_reason_{made.booking_id}").set_value("Cheque posted Monday").run()
    at.button(key="bk_inv_extend").click().run()
    assert not at.exception
    assert "The days stay held until" in texts(at, "success")
    assert invoice_of(svc, made.booking_id).due_at > made.due_at  # type: ignore[union-attr]

    at.text_input(key=f"bk_inv_reason_{made.booking_id}").set_value("They cancelled the shoot").run()
    at.button(key="bk_inv_release").click().run()
    assert not at.exception
    assert f"Invoice voided and booking {made.reference} cancelled" in texts(at, "success")
    assert svc.payments.retrieve_invoice(made.invoice_id)["status"] == "void"
