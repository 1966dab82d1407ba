"""The Disputes page through AppTest: the demo's open dispute listed with its due date (found by the first visit's
refresh from Stripe, as no webhook reached the seeded sandbox), its evidence pack, Submit evidence through the
confirmation dialog, and who may open the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from models.tables import Booking, DisputeCase
from pages.ui import labels
from services.core.context import Services

from .conftest import APP, TIMEOUT
from .test_pages import everything, nav_pages, texts

App = Callable[..., AppTest]
PAGE = "pages/finance/disputes.py"


@pytest.fixture(scope="module")
def demo_dispute(svc: Services) -> tuple[dict[str, Any], Booking]:
    """The dispute the demo opened in the sandbox, and its booking."""
    (dispute,) = svc.payments.list_disputes()["data"]
    with svc.session() as s:
        booking = s.exec(select(Booking).where(Booking.payment_intent_id == dispute["payment_intent"])).one()
    return dispute, booking


def cases_table(at: AppTest) -> Any:
    found = [d for d in at.dataframe if d.key and d.key.startswith("ds_cases_")]
    assert found, "no disputes table on the page"
    return found[0]


def open_dispute(app: App, row: int = 0) -> AppTest:
    at = app("finance", PAGE)
    at.session_state[cases_table(at).key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_list_shows_the_demos_open_dispute_with_its_due_date(
    app: App, svc: Services, demo_dispute: tuple[dict[str, Any], Booking]
) -> None:
    dispute, booking = demo_dispute
    at = app("manager", PAGE)
    assert at.title[0].value == "Disputes"
    frame = cases_table(at).value
    assert list(frame["Dispute"]) == [dispute["id"]]
    row = frame.iloc[0]
    assert (row["Booking"], row["Customer"], row["Status"]) == (
        booking.reference,
        booking.customer_name,
        "Needs a response",
    )
    assert row["Evidence due"] == labels.venue_from_epoch(svc, dispute["evidence_details"]["due_by"])
    assert row["Days left"] == "5 days"  # opened a day ago with 7 days to answer: 5 whole days and some hours left
    assert [m.value for m in at.metric][:3] == ["1", "0", "0"]


def test_selecting_the_dispute_shows_its_evidence_pack(
    app: App, svc: Services, demo_dispute: tuple[dict[str, Any], Booking]
) -> None:
    dispute, booking = demo_dispute
    at = open_dispute(app)
    shown = everything(at)
    assert f"{dispute['id']} · {booking.reference}" in shown
    assert f"Booking {booking.reference}" in shown  # the summary narrative
    fields = {t.key.split("_", 3)[3]: t.value for t in at.text_area}  # keys ds_f_<case>_<Stripe field>
    assert {"product_description", "service_date", "customer_email_address", "uncategorized_text"} <= set(fields)
    assert svc.catalogue.room(booking.room_slug).name in fields["product_description"]
    assert fields["customer_email_address"] == booking.customer_email
    assert not at.button(key="ds_submit").disabled and not at.button(key="ds_draft").disabled


def test_submit_asks_first_then_sends_the_evidence_once(
    app: App, svc: Services, demo_dispute: tuple[dict[str, Any], Booking]
) -> None:
    dispute, booking = demo_dispute
    at = open_dispute(app)
    at.button(key="ds_submit").click().run()
    assert "This can be done only once." in texts(at, "warning")
    assert svc.payments.list_disputes()["data"][0]["status"] == "needs_response"  # asking sent nothing

    at.button(key="ds_submit_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"Evidence for {dispute['id']} submitted to Stripe: the dispute is now under review." in texts(at, "success")
    sent = svc.payments.list_disputes()["data"][0]
    assert (sent["status"], sent["evidence_details"]["submission_count"]) == ("under_review", 1)
    assert sent["evidence"]["customer_email_address"] == booking.customer_email
    with svc.session() as s:
        case = s.exec(select(DisputeCase).where(DisputeCase.dispute_id == dispute["id"])).one()
    assert (case.status, case.evidence_submitted_by) == ("under_review", "finance@sandbox")
    # The same dispute stays selected, now read-only.
    assert "Evidence submitted" in texts(at, "success")
    assert at.button(key="ds_submit").disabled and at.button(key="ds_draft").disabled
    assert cases_table(at).value.iloc[0]["Status"] == "Under review"


def test_front_desk_cannot_open_the_page(app: App) -> None:
    at = app("frontdesk")
    assert "Disputes" not in nav_pages(at)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)
    direct = AppTest.from_file(APP.replace("app.py", PAGE), default_timeout=TIMEOUT)
    direct.session_state["role"] = "frontdesk"
    direct.run()
    assert "This page is not available to Front desk" in texts(direct, "error")
    assert not direct.title
