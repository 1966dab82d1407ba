"""Tax on the finance pages through AppTest, on the module's demo data (sold at the product default, GST 5 %): the
Refunds report's tax and net columns, Revenue net of tax with the tax collected, and the Daily close's tax figures.
Demo money is dated from the real clock, so the tests pick ranges around today."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from streamlit.testing.v1 import AppTest

from services.core.context import Services
from services.finance import close_queries, reports
from services.reconciliation.sync import sync

from .test_pages import texts

App = Callable[..., AppTest]


@pytest.fixture(scope="module", autouse=True)
def synced(svc: Services) -> None:
    """Payments reach revenue through the Stripe cache: the demo as the app shows it after its first sync."""
    sync(svc, actor="test")


def dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}".replace("$-", "-$")


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_refunds_report_shows_each_refunds_tax_and_net_and_the_tax_given_back(app: App, svc: Services) -> None:
    today = reports.venue_today(svc)
    span = (today - timedelta(days=60), today)
    expected = reports.refund_report(svc, *span)
    assert expected.count and expected.tax_cents > 0  # demo refunds give back GST

    at = app("finance", page="pages/finance/refunds.py")
    at.date_input(key="rf_range").set_value(span).run()
    assert not at.exception, [e.value for e in at.exception]

    assert metrics(at)["Tax given back"] == dollars(expected.tax_cents)
    table = at.dataframe[0].value
    assert round(table["Tax"].sum() * 100) == expected.tax_cents
    assert [round(n * 100) for n in table["Net of tax"]] == [
        round(a * 100) - round(t * 100) for a, t in zip(table["Amount"], table["Tax"], strict=True)
    ]
    by_origin = at.table[0].value
    assert list(by_origin.columns) == ["Origin", "Refunds", "Amount", "Tax"]


def test_revenue_is_shown_net_of_tax_with_the_tax_collected(app: App, svc: Services) -> None:
    at = app("finance", page="pages/finance/revenue.py")
    first, last = at.date_input(key="rv_range").value
    money = reports.revenue(svc, first, last)
    assert money.tax_cents > 0

    shown = metrics(at)
    assert shown["Tax collected"] == dollars(money.tax_cents)
    assert shown["Net revenue"] == dollars(money.payments_cents - money.refunds_cents - money.tax_cents)
    assert "**Net revenue is net of tax**" in texts(at, "caption")
    by_month = at.dataframe[0].value
    assert list(by_month.columns) == [
        "Month",
        "Payments",
        "Refunds",
        "Tax on payments",
        "Tax given back",
        "Tax collected",
        "Net revenue",
    ]
    assert list(by_month["Tax collected"]) == [dollars(int(c)) for c in money.by_month["tax_cents"]]


def test_the_daily_close_shows_the_days_tax_from_our_ledger(app: App, svc: Services) -> None:
    at = app("finance", page="pages/finance/daily_close.py")
    next(b for b in at.button if b.label == "Run close").click().run()
    assert not at.exception, [e.value for e in at.exception]

    day = close_queries.default_business_day(svc)
    stored = close_queries.latest_close(svc, day)
    assert stored is not None and stored.id is not None
    tax = close_queries.get_close(svc, stored.id).tax
    assert tax is not None and tax["on_payments"] + tax["on_refunds"] > 0  # demo days take and give back GST
    shown = metrics(at)
    assert {label: shown[label] for label in close_queries.TAX_LABELS.values()} == {
        label: dollars(tax[key]) for key, label in close_queries.TAX_LABELS.items()
    }
    assert "**Tax** (from our ledger)" in texts(at, "markdown")
