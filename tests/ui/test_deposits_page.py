"""The Deposits screen (issue 15 §3): staff see each damage deposit in the group they act on, place a hold now,
release one with a reason, and file a damage claim that a manager and finance then approve on Approvals, which takes
it from the hold. What staff see on the page and what Stripe then holds or takes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlmodel import select
from streamlit.testing.v1 import AppTest

from models.tables import BookingLeg
from services.booking import BookingRequest, StartResult, sandbox_pay, start_booking
from services.core.context import Services
from services.finance import deposit_queries as dq
from services.finance import deposits

from .conftest import free_slot

App = Callable[..., AppTest]
PAGE = "pages/finance/deposits.py"
APPROVALS = "pages/finance/approvals.py"


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def studio_booking(svc: Services, name: str, *, skip: int, card: str = "pm_card_visa") -> StartResult:
    """A paid phone booking of the Sonic Studio ($250.00 deposit) with the customer's card saved."""
    slot = free_slot(svc, "sonic-studio", hours=2, skip=skip)
    email = name.lower().replace(" ", ".") + "@example.org"
    req = BookingRequest(slot.room, (slot.day,), slot.start, slot.end, name, email, channel="phone")
    started = start_booking(svc, req, actor="frontdesk@sandbox")
    assert sandbox_pay(svc, started.booking_id, actor="frontdesk@sandbox").outcome == "confirmed"
    deposits.start_deposit(svc, started.booking_id)
    deposits.sandbox_save_card(svc, started.booking_id, payment_method=card)
    return started


def show(at: AppTest, group: str, reference: str) -> AppTest:
    """Open one group of the page and select the deposit of `reference` in its table."""
    at.segmented_control(key="dp_group").set_value(group).run()
    table = at.dataframe[0]
    row = list(table.value["Booking"]).index(reference)
    at.session_state[table.key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return at.run()


def hold_at_stripe(svc: Services, booking_id: int) -> dict[str, object]:
    view = dq.get_deposit(svc, booking_id)
    assert view is not None and view.row.payment_intent_id
    return svc.payments.retrieve_payment_intent(view.row.payment_intent_id)


def test_a_manager_places_a_hold_now_and_releases_it_with_a_reason(app: App, svc: Services) -> None:
    started = studio_booking(svc, "Hana Holdnow", skip=0)
    at = show(app("manager", page=PAGE), "upcoming", started.reference)
    row = at.dataframe[0].value.set_index("Booking").loc[started.reference]
    assert (row["State"], row["Deposit"]) == ("Card saved", "$250.00")
    assert row["Next"].startswith("Card saved: $250.00 is held ")
    at.button(key="dp_hold").click().run()
    assert not at.exception
    assert f"Held $250.00 on the card for {started.reference}" in texts(at, "success")
    assert hold_at_stripe(svc, started.booking_id)["status"] == "requires_capture"

    at = show(at, "held", started.reference)
    at.button(key="dp_release").click().run()
    assert "Say why the deposit is released early" in texts(at, "error")  # no reason: refused, still held
    assert hold_at_stripe(svc, started.booking_id)["status"] == "requires_capture"
    at = show(at, "held", started.reference)
    at.text_input(key=f"dp_reason_{started.booking_id}").set_value("Event moved to another venue").run()
    at.button(key="dp_release").click().run()
    assert f"The deposit of {started.reference} is released" in texts(at, "success")
    assert hold_at_stripe(svc, started.booking_id)["status"] == "canceled"


def test_front_desk_files_a_claim_that_a_manager_and_finance_approve(app: App, svc: Services) -> None:
    started = studio_booking(svc, "Cleo Claimed", skip=1)
    deposits.place_hold_now(svc, started.booking_id, actor="manager@sandbox")
    with svc.session() as s:  # the session was yesterday: the room is checked afterwards
        for leg in s.exec(select(BookingLeg).where(BookingLeg.booking_id == started.booking_id)):
            length = leg.ends_at - leg.starts_at
            leg.ends_at = svc.now() - timedelta(hours=20)
            leg.starts_at = leg.ends_at - length

    at = show(app("frontdesk", page=PAGE), "held", started.reference)
    assert at.button(key="dp_hold").disabled  # a hold stands (and front desk does not place holds)
    at.button(key="dp_claim_open").click().run()
    bid = started.booking_id
    at.number_input(key=f"dp_amount_{bid}").set_value(75.0)
    at.text_area(key=f"dp_notes_{bid}").set_value("Mixer desk fader snapped off; headphone cable cut")
    at.text_area(key=f"dp_photos_{bid}").set_value("fader.jpg\ncable.jpg")
    at.button(key=f"FormSubmitter:dp_claim_form_{bid}-File claim").click().run()
    assert not at.exception
    said = texts(at, "info")
    assert f"$75.00 of the $250.00 held on {started.reference} now waits for a manager's and a finance approval" in said
    [claim] = dq.list_claims(svc, booking_id=bid)
    assert (claim.row.photos, claim.row.requested_by) == (["fader.jpg", "cable.jpg"], "frontdesk@sandbox")
    assert hold_at_stripe(svc, bid)["amount_received"] == 0

    queue = app("manager", page=APPROVALS)
    card = texts(queue, "markdown")
    assert f"**Damage claim #{claim.id} · [{started.reference}](/bookings?ref={started.reference})**" in card
    assert "Deposit held **\\$250.00** · claimed **\\$75.00**" in card and "fader\\.jpg, cable\\.jpg" in card
    queue.button(key=f"ap_claim_approve_{claim.id}_manager").click().run()
    assert "Approved as manager. It now waits for the finance approval." in texts(queue, "info")

    finance = app("finance", page=APPROVALS)
    go = finance.button(key=f"ap_claim_approve_{claim.id}_finance")
    assert go.label == "Approve and take $75.00" and not go.disabled
    go.click().run()
    assert f"Damage claim #{claim.id} captured: $75.00 taken from the hold on {started.reference}" in texts(
        finance, "success"
    )
    pi = hold_at_stripe(svc, bid)
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 7500)


def test_a_declined_hold_needs_attention_first(app: App, svc: Services) -> None:
    started = studio_booking(svc, "Dora Declined", skip=2, card="pm_card_chargeCustomerFail")
    deposits.place_hold_now(svc, started.booking_id, actor="manager@sandbox")
    at = app("finance", page=PAGE)
    assert at.segmented_control(key="dp_group").value == "attention"
    row = at.dataframe[0].value.set_index("Booking").loc[started.reference]
    assert row["Failed"] != "—" and row["Deposit"] == "$250.00"
    assert row["Next"] == "The card was declined: place the hold again, or ask for another card"


def test_an_admin_asks_a_deposit_for_a_room_on_settings(app: App, svc: Services) -> None:
    at = app("admin", page="pages/admin/settings.py")
    editor = at.data_editor[0]
    assert editor.value["deposit"].tolist()[-2:] == [0.0, 250.0]  # the Gallery none, the Sonic Studio $250.00
    at.session_state[editor.key] = {"edited_rows": {5: {"deposit": 100.0}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert "Gallery damage deposit none → $100.00" in texts(at, "info").replace("\\", "")
    next(b for b in at.button if b.label == "Save rooms").click().run()
    assert not at.exception
    svc.reload_venue()
    terms = svc.catalogue.room("gallery").deposit_terms
    assert terms is not None and (terms.amount_cents, terms.hold_hours_before, terms.claim_window_hours) == (
        10_000,
        48,
        72,
    )


def test_the_booking_shows_its_deposit_and_the_way_to_deposits(app: App, svc: Services) -> None:
    started = studio_booking(svc, "Dora Deposit", skip=3)
    at = app("frontdesk", page="pages/frontdesk/bookings.py", ref=started.reference)
    assert not at.exception
    shown = texts(at, "markdown")
    assert "#### Damage deposit" in shown
    assert "**$250.00** · **Card saved** · Card saved: $250.00 is held " in shown
    assert any(link.label == "Open Deposits" for link in at.get("page_link"))
    assert " · damage deposit $250.00 (Card saved)" in texts(at, "caption")  # in the header line too
