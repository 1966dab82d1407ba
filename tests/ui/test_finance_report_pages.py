"""The Refunds report and Revenue & occupancy pages through AppTest: who may open them, what they show, what the
filters and quick choices do, and that every chart draws.

The module's demo data (tests/ui/conftest.py) gets one more refund, made straight in Stripe (the "dashboard") on a
confirmed booking and synced, so the report has a refund that is not in our ledger. Demo refunds are dated from the
real clock, so the tests pick a range around today rather than a fixed month.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlmodel import col, select
from streamlit.testing.v1 import AppTest

from models.tables import Booking, BookingStatus
from services.core.context import Services
from services.finance import reports
from services.reconciliation.sync import sync

from .conftest import APP, TIMEOUT
from .test_pages import everything, nav_pages, texts

App = Callable[..., AppTest]
REFUNDS = "pages/finance/refunds.py"
REVENUE = "pages/finance/revenue.py"


@pytest.fixture(scope="module")
def dashboard_refund(svc: Services) -> Booking:
    """A confirmed demo booking refunded $10 in the Stripe dashboard (no webhook: Room Desk has no record), synced."""
    with svc.session() as s:
        booking = s.exec(
            select(Booking).where(Booking.status == BookingStatus.CONFIRMED).order_by(col(Booking.id).desc())
        ).first()
    assert booking is not None and booking.payment_intent_id
    svc.payments.refund(
        booking.payment_intent_id, amount_cents=1000, reason="requested_by_customer", idempotency_key="ui-dashboard"
    )
    sync(svc, actor="test")
    return booking


def today(svc: Services) -> date:
    return reports.venue_today(svc)


def around_today(svc: Services) -> tuple[date, date]:
    """Six weeks up to today: every demo refund and the dashboard one, whatever the day of the month."""
    return today(svc) - timedelta(days=42), today(svc)


def report_page(app: App, role: str = "finance", span: tuple[date, date] | None = None) -> AppTest:
    at = app(role, page=REFUNDS)
    assert at.title[0].value == "Refunds report"
    if span is not None:
        at.date_input(key="rf_range").set_value(span).run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# ------------------------------------------------------------------------------------------------ who


@pytest.mark.parametrize("role", ["finance", "manager", "admin"])
def test_finance_manager_and_admin_open_both_pages(app: App, role: str) -> None:
    assert {"Refunds report", "Revenue & occupancy"} <= set(nav_pages(app(role)))
    at = app(role, page=REFUNDS)
    assert at.title[0].value == "Refunds report"
    at.switch_page(REVENUE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Revenue & occupancy"


def test_front_desk_cannot_open_either_page(app: App) -> None:
    at = app("frontdesk")
    assert not {"Refunds report", "Revenue & occupancy"} & set(nav_pages(at))
    for page in (REFUNDS, REVENUE):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page)


@pytest.mark.parametrize("page", [REFUNDS, REVENUE])
def test_each_page_checks_the_role_itself(svc: Services, page: str) -> None:
    at = AppTest.from_file(APP.replace("app.py", page), default_timeout=TIMEOUT)
    at.session_state["role"] = "frontdesk"
    at.run()
    assert "not available to Front desk" in texts(at, "error")
    assert not at.title


# ------------------------------------------------------------------------------------------------ refunds report


def test_the_report_opens_on_last_month_with_the_excel_button(app: App, svc: Services) -> None:
    at = report_page(app)
    assert at.date_input(key="rf_range").value == reports.last_month(today(svc))
    assert at.button_group(key="rf_period").value == "Last month"
    assert [b.label for b in at.get("download_button")] == ["Download Excel", "Download CSV"]
    expected = reports.refund_report(svc, *reports.last_month(today(svc)))
    assert metrics(at)["Refunds"] == str(expected.count)


def test_this_month_and_a_typed_range(app: App, svc: Services) -> None:
    at = report_page(app)
    at.button_group(key="rf_period").set_value("This month").run()
    assert at.date_input(key="rf_range").value == reports.this_month(today(svc))
    assert metrics(at)["Refunds"] == str(reports.refund_report(svc, *reports.this_month(today(svc))).count)

    at.date_input(key="rf_range").set_value(around_today(svc)).run()
    assert at.button_group(key="rf_period").value is None  # a range of one's own is neither quick choice


def test_the_table_lists_every_refund_of_the_range_once_with_totals(
    app: App, svc: Services, dashboard_refund: Booking
) -> None:
    span = around_today(svc)
    at = report_page(app, span=span)
    expected = reports.refund_report(svc, *span)
    assert expected.count >= 3 and expected.not_in_ledger == 1
    table = at.dataframe[0].value
    assert sorted(table["Refund"]) == sorted(expected.rows["refund_id"])
    assert table["Refund"].is_unique
    assert round(table["Amount"].sum() * 100) == expected.total_cents
    shown = metrics(at)
    assert shown["Refunds"] == str(expected.count)
    assert shown["Total refunded"] == f"${expected.total_cents / 100:,.2f}"
    assert shown["Not in our ledger"] == "1"
    assert "**1 refund(s) made in Stripe have no record in Room Desk**" in texts(at, "warning")

    mine = table[table["Booking"] == dashboard_refund.reference]
    assert list(mine["Origin"]) == ["Made in the Stripe dashboard"]
    assert list(mine["Check"]) == ["Not in our ledger"] and list(mine["Amount"]) == [10.0]

    by_origin, by_room, by_month = (t.value for t in at.table)
    assert list(by_origin["Origin"]) == list(reports.ORIGINS.values())
    assert by_origin["Refunds"].sum() == by_room["Refunds"].sum() == by_month["Refunds"].sum() == expected.count
    assert [b.label for b in at.get("download_button")] == ["Download Excel", "Download CSV"]


def test_filters_change_the_rows(app: App, svc: Services, dashboard_refund: Booking) -> None:
    span = around_today(svc)
    at = report_page(app, span=span)
    everything = len(at.dataframe[0].value)

    at.multiselect(key="rf_origins").set_value(["stripe_dashboard"]).run()
    table = at.dataframe[0].value
    expected = reports.refund_report(svc, *span, origins=["stripe_dashboard"])  # the demo has one of its own
    assert dashboard_refund.reference in list(table["Booking"]) and len(table) == expected.count < everything
    assert set(table["Origin"]) == {"Made in the Stripe dashboard"}
    assert metrics(at)["Refunds"] == str(expected.count)

    at.multiselect(key="rf_origins").set_value([]).run()
    room = dashboard_refund.room_slug
    at.multiselect(key="rf_rooms").set_value([room]).run()
    table = at.dataframe[0].value
    name = svc.catalogue.room(room).name
    assert set(table["Room"]) == {name} and 1 <= len(table) < everything
    assert len(table) == reports.refund_report(svc, *span, rooms=[room]).count

    at.multiselect(key="rf_origins").set_value(["remediation"]).run()  # none of those in the demo
    assert not at.dataframe
    assert "No refunds match these filters" in texts(at, "info")


def test_an_empty_last_month_offers_this_month(app: App, svc: Services) -> None:
    at = report_page(app)
    last_month = reports.refund_report(svc, *reports.last_month(today(svc))).count
    this_month = reports.refund_report(svc, *reports.this_month(today(svc))).count
    # The demo's refunds are dated from the real clock (the last 30 hours): early in a month they fall in the last.
    if last_month:
        assert len(at.dataframe[0].value) == last_month
        assert "rf_show_this" not in {b.key for b in at.button}
        return
    assert this_month, "the demo's cancellations are made in the last 30 hours"
    assert f"No refunds in {reports.last_month(today(svc))[0]:%B %Y}." in texts(at, "info")
    at.button(key="rf_show_this").click().run()
    assert at.date_input(key="rf_range").value == reports.this_month(today(svc))
    assert at.button_group(key="rf_period").value == "This month"
    assert metrics(at)["Refunds"] == str(this_month)


def test_selecting_a_row_opens_its_booking(app: App, svc: Services, dashboard_refund: Booking) -> None:
    at = report_page(app, span=around_today(svc))
    row = list(at.dataframe[0].value["Booking"]).index(dashboard_refund.reference)
    table = at.dataframe[0]
    at.session_state[table.key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert at.title[0].value == "Bookings"
    assert at.query_params["ref"] == dashboard_refund.reference
    assert f"{dashboard_refund.reference} · {svc.catalogue.room(dashboard_refund.room_slug).name}" in everything(at)


# ------------------------------------------------------------------------------------------------ revenue


def test_revenue_page_draws_its_charts_and_matches_the_numbers(
    app: App, svc: Services, dashboard_refund: Booking
) -> None:
    at = app("finance", page=REVENUE)
    first, last = at.date_input(key="rv_range").value
    assert at.button_group(key="rv_period").value == "Last 3 months"
    assert last == reports.this_month(today(svc))[1] and first.day == 1
    money = reports.revenue(svc, first, last)
    assert money.payments_cents > 0 and money.refunds_cents > 0
    shown = metrics(at)
    assert shown["Payments"] == f"${money.payments_cents / 100:,.2f}"
    assert shown["Refunds"] == f"${money.refunds_cents / 100:,.2f}"
    assert shown["Net revenue"] == f"${money.net_cents / 100:,.2f}"
    assert shown["Occupancy"].endswith("%")
    charts = at.get("vega_lite_chart")
    assert len(charts) == 3  # by month, by room, occupancy
    assert all(c.proto.datasets or c.proto.data for c in charts)

    at.button_group(key="rv_by").set_value("week").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("vega_lite_chart")) == 3

    at.button_group(key="rv_period").set_value("This month").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.date_input(key="rv_range").value == reports.this_month(today(svc))
    this_month = reports.revenue(svc, *reports.this_month(today(svc)))
    assert metrics(at)["Net revenue"] == f"${this_month.net_cents / 100:,.2f}".replace("$-", "-$")


def test_revenue_for_a_range_with_nothing_in_it(app: App, svc: Services) -> None:
    at = app("manager", page=REVENUE)
    at.date_input(key="rv_range").set_value((date(2020, 1, 1), date(2020, 1, 31))).run()
    assert not at.exception, [e.value for e in at.exception]
    assert metrics(at)["Payments"] == "$0.00"
    assert "No payments or refunds in this range" in texts(at, "info")
    assert len(at.get("vega_lite_chart")) == 3
