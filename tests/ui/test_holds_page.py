"""The Holds screen (issue 13): every unpaid hold with who holds it and when it lapses; Release frees the room at
once, audited under the person's name, and says so at the top of the page."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from models.tables import AuditLog, Booking, BookingStatus
from services.booking import BookingRequest, StartResult, start_booking
from services.core.context import Services

from .conftest import free_slot

App = Callable[..., AppTest]
HOLDS = "pages/frontdesk/holds.py"


def hold(svc: Services, email: str, channel: str, skip: int) -> StartResult:
    slot = free_slot(svc, "quiet-room", hours=1, skip=skip)
    req = BookingRequest(
        slot.room, (slot.day,), slot.start, slot.end, "Holly Holder", email, "604-555-0199", channel=channel
    )
    return start_booking(svc, req, actor="customer" if channel == "web" else "frontdesk@sandbox")


def select_row(at: AppTest, row: int) -> AppTest:
    key = at.dataframe[0].key
    at.session_state[key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return at.run()


def test_staff_see_every_hold_and_release_one(app: App, svc: Services) -> None:
    web = hold(svc, "holly.web@example.org", "web", 0)
    phone = hold(svc, "holly.phone@example.org", "phone", 1)
    at = app("frontdesk", page=HOLDS)
    table = at.dataframe[0].value
    refs = list(table["Reference"])
    assert {web.reference, phone.reference} <= set(refs)
    row = refs.index(web.reference)
    assert table["Channel"][row] == "Web" and table["Customer"][row] == "Holly Holder"
    assert table["Email"][row] == "holly.web@example.org"
    assert table["Expires in"][row] in ("10 min", "9 min")
    assert table["Channel"][refs.index(phone.reference)] == "Phone"

    release = at.button(key="holds_release")
    assert release.disabled
    at = select_row(at, row)
    release = at.button(key="holds_release")
    assert release.label == f"Release {web.reference}" and not release.disabled
    release.click().run()
    assert not at.exception
    [done] = [str(s.value) for s in at.success]
    assert done.startswith(f"Released the hold on {web.reference}")
    assert web.reference not in list(at.dataframe[0].value["Reference"])

    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.reference == web.reference)).one()
        assert b.status == BookingStatus.CANCELLED
        [row_] = s.exec(select(AuditLog).where(AuditLog.booking_id == b.id, AuditLog.action == "booking.hold.released"))
        assert row_.actor == "frontdesk@sandbox"
    assert svc.payments.retrieve_payment_intent(web.payment_intent)["status"] == "canceled"


def test_finance_has_no_holds_screen(app: App) -> None:
    at = app("finance")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(HOLDS)


def test_a_booking_held_on_invoice_shows_its_due_date_and_release_voids_the_invoice(app: App, svc: Services) -> None:
    from services.booking import invoices

    slot = free_slot(svc, "union-room", hours=2, skip=40)  # a week or more ahead: time for terms
    made = invoices.book_on_invoice(
        svc,
        BookingRequest(slot.room, (slot.day,), slot.start, slot.end, "Ivy Invoice", "ivy@example.org", channel="phone"),
        invoices.InvoiceTerms("Harbour Trust", "Accounts", "ap@harbour.example.org", 7, "PO-7"),
        actor="frontdesk@sandbox",
    )
    at = app("frontdesk", page=HOLDS)
    table = at.dataframe[0].value
    refs = list(table["Reference"])
    row = refs.index(made.reference)
    assert table["Channel"][row] == "Phone · invoice"
    assert table["Customer"][row] == "Harbour Trust (Ivy Invoice)" and table["Email"][row] == "ap@harbour.example.org"
    assert str(table["Expires in"][row]).startswith("invoice due ")
    at = select_row(at, row)
    at.button(key="holds_release").click().run()
    assert not at.exception
    [done] = [str(s.value) for s in at.success]
    assert done.startswith(f"Released the hold on {made.reference}") and "its invoice was voided" in done
    assert svc.payments.retrieve_invoice(made.invoice_id)["status"] == "void"
