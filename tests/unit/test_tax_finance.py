"""Tax in finance: refunds give back tax (a day its own, a partial refund its proportional share, the refund that
completes a payment exactly what is left), and the refunds report, revenue and the daily close carry it, in integer
cents.

The scenario (`Sold`), all on Mon 2 Mar 2026 at a GST-registered venue (GST 5 %, tests/tax_settings.gst):
- booking A: the Boardroom 10:00–12:00 on Tue 3, Wed 4 and Thu 5 Mar, three days so 10 % off: each day 90.00 − 9.00
  = 81.00 net + 4.05 GST = 85.05; in all 255.15 with 12.15 GST;
- booking B: the Union Room 13:00–15:00 on Mon 9 Mar: 120.00 net + 6.00 GST = 126.00, kept;
then A is refunded in four parts: Thu cancelled (49 h ahead: 100 %), Tue cancelled (25 h ahead: 50 %), Wed
cancelled (100 %), and the rest of Tue (42.52) refunded in the Stripe dashboard and recorded by the webhook.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlmodel import col, select

from models.tables import Booking, BookingLeg, DailyClose, RefundRecord
from services import booking as bk
from services.booking.amend import Change
from services.finance import close_queries, reports
from services.finance.close import run_close
from services.reconciliation.sync import sync
from services.web import webhooks
from tests.tax_settings import gst

DAY = date(2026, 3, 2)  # NOW (tests/conftest.py) is 09:00 on Monday 2 March in Vancouver
TUE, WED, THU = date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)
DAY_GROSS, DAY_TAX = 8505, 405  # 81.00 net + 4.05 GST
A_GROSS, A_TAX = 3 * DAY_GROSS, 3 * DAY_TAX  # 255.15, 12.15
B_GROSS, B_TAX = 12600, 600  # 120.00 + 6.00
HALF_TUE = 4253  # 50 % of 85.05, half up
REST_OF_TUE = DAY_GROSS - HALF_TUE  # 42.52


@dataclass
class Sold:
    svc: Any
    a: bk.StartResult
    b: bk.StartResult
    refunds: list[tuple[str, int, int]]  # (refund id, amount, tax) in the order they were made


def paid(svc: Any, request: bk.BookingRequest) -> bk.StartResult:
    started = bk.start_booking(svc, request, actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    return started


def leg_ids(svc: Any, booking_id: int) -> dict[date, int]:
    with svc.session() as s:
        legs = s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id))
        return {leg.day: leg.id for leg in legs if leg.id is not None}


def ledger_refunds(svc: Any) -> list[tuple[str, int, int]]:
    with svc.session() as s:
        rows = s.exec(select(RefundRecord).order_by(col(RefundRecord.created_at), col(RefundRecord.id)))
        return [(r.refund_id, r.amount_cents, r.tax_cents) for r in rows]


def sell_and_refund(svc: Any, booking_request: Any) -> Sold:
    a = paid(svc, booking_request(dates=(TUE, WED, THU)))
    svc.clock.advance(minutes=5)
    b = paid(svc, booking_request(room="union-room", dates=(date(2026, 3, 9),), start=time(13), end=time(15)))
    days = leg_ids(svc, a.booking_id)
    for day in (THU, TUE, WED):
        svc.clock.advance(minutes=10)
        bk.cancel_booking(svc, a.booking_id, actor="frontdesk@test", leg_ids=[days[day]])
    svc.clock.advance(minutes=10)
    svc.payments.refund(
        a.payment_intent, amount_cents=REST_OF_TUE, reason="requested_by_customer", idempotency_key="d1"
    )
    assert webhooks.on_charge_refunded(svc, {"payment_intent": a.payment_intent}, "stripe-webhook", svc.now()) == (
        "processed"
    )
    svc.clock.advance(minutes=5)
    sync(svc, actor="test")
    return Sold(svc, a, b, ledger_refunds(svc))


@pytest.fixture
def sold(make_services: Any, db_url: str, booking_request: Any) -> Sold:
    """The scenario on SQLite and on PostgreSQL."""
    return sell_and_refund(make_services(db_url, **gst()), booking_request)


def test_refunds_give_back_a_days_own_tax_a_proportional_share_and_in_all_exactly_the_bookings_tax(
    sold: Sold,
) -> None:
    with sold.svc.session() as s:
        a = s.get(Booking, sold.a.booking_id)
        assert (a.amount_cents, a.tax_cents, a.discount_cents) == (A_GROSS, A_TAX, 3 * 900)

    assert [(amount, tax) for _, amount, tax in sold.refunds] == [
        (DAY_GROSS, DAY_TAX),  # Thursday: its own 4.05 exactly
        (HALF_TUE, 203),  # half of Tuesday: 42.53 / 255.15 of 12.15 = 2.0252… → 2.03
        (DAY_GROSS, DAY_TAX),  # Wednesday: its own again, the earlier rounding up does not drift into it
        (REST_OF_TUE, 202),  # the rest: exactly the tax left, so Tuesday's 4.05 is 2.03 + 2.02
    ]
    assert sum(amount for _, amount, _ in sold.refunds) == A_GROSS
    assert sum(tax for _, _, tax in sold.refunds) == A_TAX


def test_the_refunds_report_has_each_refunds_tax_and_net_and_totals_them(sold: Sold) -> None:
    report = reports.refund_report(sold.svc, DAY, DAY)

    got = report.rows[["refund_id", "origin", "amount_cents", "tax_cents", "net_cents"]].values.tolist()
    assert got == [
        [rid, origin, amount, tax, amount - tax]
        for (rid, amount, tax), origin in zip(sold.refunds, ["cancellation"] * 3 + ["stripe_dashboard"], strict=True)
    ]
    assert (report.count, report.total_cents, report.tax_cents, report.net_cents) == (4, A_GROSS, A_TAX, 24300)
    by_origin = {
        r["key"]: (r["refunds"], r["amount_cents"], r["tax_cents"]) for r in report.by_origin.to_dict("records")
    }
    assert by_origin["cancellation"] == (3, 2 * DAY_GROSS + HALF_TUE, 2 * DAY_TAX + 203)
    assert by_origin["stripe_dashboard"] == (1, REST_OF_TUE, 202)
    assert by_origin["remediation"] == (0, 0, 0)
    assert report.by_month[["key", "amount_cents", "tax_cents"]].values.tolist() == [["2026-03", A_GROSS, A_TAX]]

    # The CSV: the tax and the net next to the amount, in decimals and in cents (the header's order is checked in
    # test_finance_reports).
    half = list(csv.DictReader(io.StringIO(reports.refunds_csv(report).decode("utf-8"))))[1]
    assert (half["Amount"], half["Tax"], half["Net of tax"]) == ("42.53", "2.03", "40.50")
    assert (half["Amount (cents)"], half["Tax (cents)"], half["Net of tax (cents)"]) == ("4253", "203", "4050")

    # The workbook: real amounts in the Tax and Net columns, and tax in the totals.
    book = load_workbook(io.BytesIO(reports.refunds_xlsx(report)))
    sheet = book["Refunds"]
    headers = [c.value for c in sheet[1]]
    tax_col, net_col = headers.index("Tax") + 1, headers.index("Net of tax") + 1
    assert [sheet.cell(row=i, column=tax_col).value for i in range(2, 6)] == [4.05, 2.03, 4.05, 2.02]
    assert sheet.cell(row=3, column=net_col).value == 40.50
    totals = book["Totals"]
    assert [c.value for c in totals[3]] == ["All refunds", None, 4, 255.15, 12.15, 243.0]
    assert [c.value for c in totals[5]] == ["By origin", "Currency", "Refunds", "Amount", "Tax", "Net of tax"]


def test_revenue_is_net_of_tax_and_shows_the_tax_collected(sold: Sold) -> None:
    money = reports.revenue(sold.svc, DAY, DAY)

    assert (money.payments_cents, money.payments_tax_cents) == (A_GROSS + B_GROSS, A_TAX + B_TAX)
    assert (money.refunds_cents, money.refunds_tax_cents) == (A_GROSS, A_TAX)
    # A was given back in full, tax too: what is left is B, 6.00 of GST owed and 120.00 of revenue.
    assert (money.tax_cents, money.net_cents) == (B_TAX, 12000)
    columns = ["payments_cents", "refunds_cents", "payments_tax_cents", "refunds_tax_cents", "tax_cents", "net_cents"]
    assert money.by_month[["month", *columns]].values.tolist() == [
        ["2026-03", A_GROSS + B_GROSS, A_GROSS, A_TAX + B_TAX, A_TAX, B_TAX, 12000]
    ]
    rooms = {r["room_slug"]: [r[c] for c in columns] for r in money.by_room.to_dict("records")}
    assert rooms["union-room"] == [B_GROSS, 0, B_TAX, 0, B_TAX, 12000]
    assert rooms["boardroom"] == [A_GROSS, A_GROSS, A_TAX, A_TAX, 0, 0]


def test_the_daily_close_matches_gross_amounts_and_reports_the_days_tax(sold: Sold) -> None:
    svc = sold.svc
    svc.clock.at = datetime(2026, 3, 3, 17, 0, tzinfo=UTC)  # the next morning

    result = run_close(svc, DAY, actor="finance@test")

    c = result.close
    # Stripe knows nothing of tax: the gross amounts, tax included, still agree to the cent.
    assert (c.status, c.variance_bps, result.items) == ("passed", 0, [])
    assert c.totals["charge"]["stripe"] == c.totals["charge"]["ledger"] == A_GROSS + B_GROSS
    assert c.totals["refund"]["stripe"] == c.totals["refund"]["ledger"] == A_GROSS
    assert result.tax == {"on_payments": A_TAX + B_TAX, "on_refunds": A_TAX, "net": B_TAX, "net_sales": 12000}
    # Stored with the close: reading it back gives the same figures.
    assert c.id is not None
    assert close_queries.get_close(svc, c.id).tax == result.tax

    rows = list(csv.DictReader(io.StringIO(close_queries.close_csv(svc, c.id).decode("utf-8-sig"))))
    tax_rows = [(r["category"], r["ledger"], r["stripe"], r["note"]) for r in rows if r["record"] == "tax"]
    assert tax_rows == [
        ("on_payments", "18.15", "", "Tax collected on payments"),
        ("on_refunds", "12.15", "", "Tax given back on refunds"),
        ("net", "6.00", "", "Net tax"),
        ("net_sales", "120.00", "", "Net sales (net of tax)"),
    ]


def test_a_change_paid_at_a_cost_counts_its_own_tax_in_revenue_and_the_close(
    make_services: Any, booking_request: Any
) -> None:
    svc = make_services(**gst())
    mine = paid(svc, booking_request())  # Wed 10:00–12:00: 90.00 + 4.50
    svc.clock.advance(minutes=10)
    waiting = bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    assert waiting.net_cents == 4725  # the third hour: 45.00 + 2.25
    bk.sandbox_pay_change(svc, mine.booking_id, actor="stripe-webhook")
    sync(svc, actor="test")

    money = reports.revenue(svc, DAY, DAY)
    assert (money.payments_cents, money.payments_tax_cents, money.tax_cents) == (9450 + 4725, 450 + 225, 675)
    assert money.net_cents == 13500

    result = run_close(svc, DAY, actor="finance@test")
    assert (result.close.status, result.items) == ("passed", [])
    assert result.tax == {"on_payments": 675, "on_refunds": 0, "net": 675, "net_sales": 13500}


def test_a_stripe_refund_not_in_our_ledger_shows_the_tax_recording_it_will_give_back(
    make_services: Any, booking_request: Any
) -> None:
    svc = make_services(**gst())
    mine = paid(svc, booking_request())  # 94.50 with 4.50 GST
    svc.clock.advance(minutes=10)
    svc.payments.refund(mine.payment_intent, amount_cents=2000, reason="requested_by_customer", idempotency_key="d1")
    sync(svc, actor="test")

    (row,) = reports.refund_report(svc, DAY, DAY).rows.to_dict("records")
    assert (row["in_ledger"], row["amount_cents"], row["tax_cents"], row["net_cents"]) == (False, 2000, 95, 1905)

    webhooks.on_charge_refunded(svc, {"payment_intent": mine.payment_intent}, "stripe-webhook", svc.now())
    assert [tax for _, _, tax in ledger_refunds(svc)] == [95]  # 20.00 / 94.50 of 4.50 = 0.952… → 0.95
    (row,) = reports.refund_report(svc, DAY, DAY).rows.to_dict("records")
    assert (row["in_ledger"], row["tax_cents"]) == (True, 95)


def test_a_booking_sold_without_tax_refunds_no_tax_and_an_older_close_has_no_tax_figures(
    svc: Any, booking_request: Any
) -> None:
    mine = paid(svc, booking_request())  # no tax configured: 90.00, as before tax
    bk.cancel_booking(svc, mine.booking_id, actor="frontdesk@test")
    sync(svc, actor="test")

    (row,) = reports.refund_report(svc, DAY, DAY).rows.to_dict("records")
    assert (row["amount_cents"], row["tax_cents"], row["net_cents"]) == (9000, 0, 9000)
    money = reports.revenue(svc, DAY, DAY)
    assert (money.payments_cents, money.refunds_cents, money.tax_cents, money.net_cents) == (9000, 9000, 0, 0)

    # A close run before the close kept tax figures: none shown, none exported, nothing invented.
    result = run_close(svc, DAY, actor="finance@test")
    with svc.session() as s:
        stored = s.get(DailyClose, result.close.id)
        stored.totals = {k: v for k, v in stored.totals.items() if k != "tax"}
        s.add(stored)
    assert result.close.id is not None
    assert close_queries.get_close(svc, result.close.id).tax is None
    rows = list(csv.DictReader(io.StringIO(close_queries.close_csv(svc, result.close.id).decode("utf-8-sig"))))
    assert not [r for r in rows if r["record"] == "tax"]
    assert run_close(svc, DAY, actor="finance@test").tax == {
        "on_payments": 0,
        "on_refunds": 0,
        "net": 0,
        "net_sales": 0,
    }
