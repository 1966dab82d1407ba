"""The Daily close page through AppTest: finance runs a day's close and reads the result, the items and the history;
managers and the front desk cannot open it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from models.tables import Finding
from services.booking import StartResult
from services.core.context import Services
from services.reconciliation import reconcile, remediate, sync
from services.web import webhooks

from .conftest import APP, TIMEOUT
from .test_pages import texts

App = Callable[..., AppTest]
PAGE = "pages/finance/daily_close.py"


@pytest.fixture(scope="module", autouse=True)
def caught_up(svc: Services) -> None:
    """The demo as the app opens it after its first sync, with the missed webhook processed from Mismatches: every
    demo day then agrees with Stripe, whatever the time of day the tests run."""
    sync.sync(svc, actor="manager@sandbox")
    reconcile.reconcile(svc, actor="manager@sandbox")
    with svc.session() as s:
        stale = s.exec(select(Finding).where(Finding.code == "stale_payment", Finding.status == "open")).all()
    for f in stale:
        assert f.id is not None
        assert remediate.run_action(svc, f.id, "confirm_payment", actor="manager@sandbox").ok


def click(at: AppTest, label: str) -> AppTest:
    return next(b for b in at.button if b.label == label).click().run()


def history(at: AppTest) -> object:
    return next(d for d in at.dataframe if d.key and d.key.startswith("dc_hist_"))


def test_finance_runs_yesterdays_close_and_sees_it_passed_and_in_the_history(app: App, svc: Services) -> None:
    at = app("finance", page=PAGE)
    yesterday = svc.now().astimezone(svc.settings.tz).date() - timedelta(days=1)
    assert at.title[0].value == "Daily close" and at.date_input[0].value == yesterday
    assert "has not been closed yet" in texts(at, "info")

    at = click(at, "Run close")

    assert not at.exception, [e.value for e in at.exception]
    assert "**Passed.** Stripe and our ledger agree on every item." in texts(at, "success")
    assert "Passed" in texts(at, "markdown")  # the badge
    totals = at.table[0].value
    assert list(totals.index) == ["Charges", "Refunds", "Disputes", "Dispute reversals", "Fees", "Net payout"]
    assert set(totals["Difference"]) == {"$0.00"}
    assert [b.label for b in at.get("download_button")] == ["Download CSV"]
    runs = history(at).value  # type: ignore[attr-defined]
    assert list(runs["Status"]) == ["Passed"] and list(runs["Run by"]) == ["finance@sandbox"]
    assert list(runs["Day's result"]) == ["✓"]


def test_a_dashboard_refund_fails_today_and_a_rerun_after_recording_it_passes(
    app: App, svc: Services, paid_booking: StartResult
) -> None:
    today = svc.now().astimezone(svc.settings.tz).date()
    refund = svc.payments.refund(
        paid_booking.payment_intent, amount_cents=5000, reason="goodwill", idempotency_key="ui-dashboard-refund"
    )
    at = app("finance", page=PAGE, day=today.isoformat())
    assert at.date_input[0].value == today

    at = click(at, "Run close")

    assert "**Failed.**" in texts(at, "error") and "then rerun the day" in texts(at, "error")
    items = next(d for d in at.dataframe if "Problem" in d.value.columns).value
    row = items[items["Stripe id"] == refund["id"]].iloc[0]
    assert (row["Category"], row["Problem"], row["Stripe"], row["Difference"]) == (
        "Refunds",
        "Not in our ledger",
        "$50.00",
        "$50.00",
    )
    assert row["Booking"] == f"/bookings?ref={paid_booking.reference}"

    charge = svc.payments.retrieve_payment_intent(paid_booking.payment_intent)["latest_charge"]
    webhooks.on_charge_refunded(svc, charge, "stripe-webhook", svc.now())
    at = click(at, "Rerun this day")

    assert "**Passed.**" in texts(at, "success")
    runs = history(at).value  # type: ignore[attr-defined]
    assert list(runs["Status"][:2]) == ["Passed", "Failed"] and list(runs["Day's result"][:2]) == ["✓", ""]


def test_selecting_an_earlier_run_in_the_history_opens_it(app: App) -> None:
    at = app("finance", page=PAGE)
    runs = history(at).value  # type: ignore[attr-defined]
    failed = list(runs["Status"]).index("Failed")
    at.session_state[history(at).key] = {  # type: ignore[attr-defined]
        "selection": {"rows": [failed], "columns": [], "cells": []}
    }
    at.run()

    assert "**Failed.**" in texts(at, "error")
    assert "an earlier run: the day's result is its newest run" in texts(at, "caption")


@pytest.mark.parametrize("role", ["frontdesk", "manager"])
def test_managers_and_the_front_desk_cannot_open_the_daily_close(app: App, role: str) -> None:
    at = app(role)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)
    # Run the page file on its own, skipping the navigation: its own guard stops it.
    page = AppTest.from_file(APP.replace("app.py", PAGE), default_timeout=TIMEOUT)
    page.session_state["role"] = role
    page.run()
    assert "not available to" in texts(page, "error") and not page.title and not page.button
