"""The refunds report, its CSV and Excel exports, the export-refunds command, and the revenue and occupancy numbers,
on sandbox gateways with bookings made through the booking service.

The scenario (`ledger`): four paid bookings made on Mon 2 Mar 2026, then
- A (Boardroom) cancelled on 2 Mar → a cancellation refund;
- D (Main Hall) whose calendar event could not be created → an auto-refund at Gate 2, the same day;
- B (Union Room) cancelled at 23:30 Vancouver time on Tue 31 Mar, which is already 1 Apr in UTC;
- C (Gallery) partly refunded straight in Stripe at 10:00 on 1 Apr (the "Stripe dashboard"): Room Desk has no record;
then a sync, so the Stripe cache holds every refund.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlmodel import select

from models.tables import RefundRecord
from services import booking as bk
from services.core.errors import ValidationError
from services.finance import reports
from services.reconciliation.sync import sync
from services.web import webhooks

TZ_NAME = "America/Vancouver"
CANCEL_B_AT = datetime(2026, 4, 1, 6, 30, tzinfo=UTC)  # Tue 31 Mar 23:30 in Vancouver (PDT)
DASHBOARD_AT = datetime(2026, 4, 1, 17, 0, tzinfo=UTC)  # Wed 1 Apr 10:00 in Vancouver
DASHBOARD_CENTS = 2500
SPRING = (date(2026, 3, 1), date(2026, 4, 30))


@dataclass
class Ledger:
    a: bk.StartResult  # cancelled, Boardroom, 2 Mar
    b: bk.StartResult  # cancelled, Union Room, 31 Mar 23:30 Vancouver
    c: bk.StartResult  # refunded in the Stripe dashboard, Gallery, 1 Apr
    d: bk.StartResult  # auto-refunded at Gate 2, Main Hall, 2 Mar


def paid(svc: Any, booking_request: Any, **kw: Any) -> bk.StartResult:
    started = bk.start_booking(svc, booking_request(**kw), actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    return started


def build(svc: Any, booking_request: Any, *, synced: bool = True) -> Ledger:
    a = paid(svc, booking_request, room="boardroom", dates=[date(2026, 3, 4)], customer_name="Ava Nguyen")
    b = paid(svc, booking_request, room="union-room", dates=[date(2026, 4, 8)], customer_name="Tomás Ñúñez")
    c = paid(svc, booking_request, room="gallery", dates=[date(2026, 4, 15)], customer_name="=SUM(A1:A9)")
    svc.calendar.faults.fail("insert_event", times=1)
    d = paid(svc, booking_request, room="main-hall", dates=[date(2026, 3, 5)], start=time(13), end=time(16))
    svc.clock.advance(hours=1)
    bk.cancel_booking(svc, a.booking_id, actor="frontdesk@sandbox")
    svc.clock.at = CANCEL_B_AT
    bk.cancel_booking(svc, b.booking_id, actor="manager@sandbox", reason="Moved to another venue")
    svc.clock.at = DASHBOARD_AT
    svc.payments.refund(
        c.payment_intent, amount_cents=DASHBOARD_CENTS, reason="requested_by_customer", idempotency_key="dashboard-1"
    )
    svc.clock.advance(minutes=5)
    if synced:
        sync(svc, actor="test")
    return Ledger(a, b, c, d)


@pytest.fixture
def ledger(svc: Any, booking_request: Any) -> Ledger:
    return build(svc, booking_request)


def stripe_refunds(svc: Any) -> dict[str, dict[str, Any]]:
    """Every refund Stripe (the sandbox) holds, paged as a client would."""
    out: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = svc.payments.list_refunds(limit=2, starting_after=after)
        out.update({r["id"]: r for r in page["data"]})
        if not page["has_more"]:
            return out
        after = page["data"][-1]["id"]


def refund_of(svc: Any, started: bk.StartResult) -> str:
    ids = [r["id"] for r in stripe_refunds(svc).values() if r["payment_intent"] == started.payment_intent]
    assert len(ids) == 1
    return ids[0]


def row(report: reports.RefundReport, refund_id: str) -> dict[str, Any]:
    found = report.rows[report.rows["refund_id"] == refund_id].to_dict("records")
    assert len(found) == 1, f"{refund_id} appears {len(found)} times"
    return found[0]


# ------------------------------------------------------------------------------------------------ the report


def test_every_stripe_refund_appears_exactly_once_with_its_origin(svc: Any, ledger: Ledger) -> None:
    report = reports.refund_report(svc, *SPRING)
    in_stripe = stripe_refunds(svc)
    assert len(in_stripe) == 4
    assert sorted(report.rows["refund_id"]) == sorted(in_stripe)  # all of them, none twice

    by_booking = {r["booking_ref"]: r for r in report.rows.to_dict("records")}
    expected = {
        ledger.a.reference: ("cancellation", "Cancellation", ledger.a.amount_cents, "frontdesk@sandbox"),
        ledger.b.reference: ("cancellation", "Cancellation", ledger.b.amount_cents, "manager@sandbox"),
        ledger.c.reference: ("stripe_dashboard", "Made in the Stripe dashboard", DASHBOARD_CENTS, "Stripe"),
        ledger.d.reference: ("auto_gate2", "Auto-refund at Gate 2", ledger.d.amount_cents, "stripe-webhook"),
    }
    assert {ref: (r["origin"], r["origin_label"], r["amount_cents"], r["actor"]) for ref, r in by_booking.items()} == (
        expected
    )
    dashboard = by_booking[ledger.c.reference]
    assert (dashboard["in_ledger"], dashboard["in_stripe"], dashboard["check"]) == (False, True, "Not in our ledger")
    assert (dashboard["room"], dashboard["customer"]) == ("Gallery", "=SUM(A1:A9)")
    assert dashboard["payment_intent"] == ledger.c.payment_intent
    assert pd_missing(dashboard["policy_quote_cents"])
    for ref in (ledger.a.reference, ledger.b.reference, ledger.d.reference):
        assert (by_booking[ref]["in_ledger"], by_booking[ref]["check"]) == (True, "")
    assert by_booking[ledger.b.reference]["reason"] == "Moved to another venue"
    assert by_booking[ledger.a.reference]["policy_quote_cents"] == ledger.a.amount_cents  # 100 % band
    assert (report.count, report.not_in_ledger, report.needs_a_look) == (4, 1, 1)
    total = ledger.a.amount_cents + ledger.b.amount_cents + ledger.d.amount_cents + DASHBOARD_CENTS
    assert report.total_cents == total
    assert list(report.rows["refunded_at"]) == sorted(report.rows["refunded_at"])  # oldest first


def pd_missing(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_a_dashboard_refund_recorded_later_by_the_webhook_still_appears_once(svc: Any, ledger: Ledger) -> None:
    dashboard_id = refund_of(svc, ledger.c)
    # Two days later the charge.refunded webhook records it in our ledger (dated then).
    later = DASHBOARD_AT + timedelta(days=2)
    assert webhooks.on_charge_refunded(svc, {"payment_intent": ledger.c.payment_intent}, "stripe-webhook", later) == (
        "processed"
    )
    with svc.session() as s:
        records = list(s.exec(select(RefundRecord).where(RefundRecord.refund_id == dashboard_id)))
    assert [(r.origin, r.created_at) for r in records] == [("stripe_dashboard", later)]

    report = reports.refund_report(svc, *SPRING)
    assert report.rows["refund_id"].is_unique and len(report.rows) == 4
    got = row(report, dashboard_id)
    assert (got["origin"], got["in_ledger"], got["in_stripe"], got["check"]) == ("stripe_dashboard", True, True, "")
    # Dated when the money left (Stripe's time), not when we heard of it.
    assert got["date"] == date(2026, 4, 1)
    assert dashboard_id in set(reports.refund_report(svc, date(2026, 4, 1), date(2026, 4, 1)).rows["refund_id"])
    assert reports.refund_report(svc, date(2026, 4, 3), date(2026, 4, 3)).rows.empty
    # Read live from Stripe, the same: the late ledger row finds its refund through its payment.
    assert reports.refund_report(svc, date(2026, 4, 3), date(2026, 4, 3), live=True).rows.empty
    live = reports.refund_report(svc, date(2026, 4, 1), date(2026, 4, 1), live=True)
    assert (row(live, dashboard_id)["check"], live.count) == ("", 1)


def test_a_refund_at_2330_vancouver_belongs_to_that_day_not_the_next_utc_day(svc: Any, ledger: Ledger) -> None:
    late = refund_of(svc, ledger.b)
    report = reports.refund_report(svc, date(2026, 3, 31), date(2026, 3, 31))
    assert list(report.rows["refund_id"]) == [late]
    got = row(report, late)
    assert (got["date"], got["month"]) == (date(2026, 3, 31), "2026-03")
    assert got["refunded_at"].strftime("%Y-%m-%d %H:%M %Z") == "2026-03-31 23:30 PDT"

    april_first = reports.refund_report(svc, date(2026, 4, 1), date(2026, 4, 1))
    assert list(april_first.rows["refund_id"]) == [refund_of(svc, ledger.c)]


def test_totals_by_month_split_at_the_venue_month_boundary(svc: Any, ledger: Ledger) -> None:
    report = reports.refund_report(svc, *SPRING)
    march = ledger.a.amount_cents + ledger.b.amount_cents + ledger.d.amount_cents
    assert report.by_month[["key", "label", "refunds", "amount_cents"]].values.tolist() == [
        ["2026-03", "Mar 2026", 3, march],
        ["2026-04", "Apr 2026", 1, DASHBOARD_CENTS],
    ]
    # Every month of the range is listed, even one with no refund.
    wide = reports.refund_report(svc, date(2026, 2, 1), date(2026, 4, 30))
    assert list(wide.by_month["key"]) == ["2026-02", "2026-03", "2026-04"]
    assert list(wide.by_month["refunds"]) == [0, 3, 1]


def test_totals_by_origin_and_room_add_up_to_the_rows(svc: Any, ledger: Ledger) -> None:
    report = reports.refund_report(svc, *SPRING)
    origins = {r["key"]: (r["label"], r["refunds"], r["amount_cents"]) for r in report.by_origin.to_dict("records")}
    assert list(origins) == ["amendment", "auto_gate2", "cancellation", "remediation", "stripe_dashboard"]
    assert origins == {
        "amendment": ("Change to booking", 0, 0),
        "auto_gate2": ("Auto-refund at Gate 2", 1, ledger.d.amount_cents),
        "cancellation": ("Cancellation", 2, ledger.a.amount_cents + ledger.b.amount_cents),
        "remediation": ("Remediation", 0, 0),
        "stripe_dashboard": ("Made in the Stripe dashboard", 1, DASHBOARD_CENTS),
    }
    rooms = {r["label"]: r["amount_cents"] for r in report.by_room.to_dict("records")}
    assert rooms == {
        "Boardroom": ledger.a.amount_cents,
        "Union Room": ledger.b.amount_cents,
        "Gallery": DASHBOARD_CENTS,
        "Main Hall": ledger.d.amount_cents,
    }
    assert list(report.by_room["amount_cents"]) == sorted(rooms.values(), reverse=True)  # largest first
    for frame in (report.by_origin, report.by_room, report.by_month):
        assert frame["amount_cents"].sum() == report.total_cents and frame["refunds"].sum() == report.count


def test_filters_by_room_and_origin(svc: Any, ledger: Ledger) -> None:
    union = reports.refund_report(svc, *SPRING, rooms=["union-room"])
    assert list(union.rows["booking_ref"]) == [ledger.b.reference]
    assert union.total_cents == ledger.b.amount_cents
    assert list(union.by_room["key"]) == ["union-room"]

    dashboard = reports.refund_report(svc, *SPRING, origins=["stripe_dashboard"])
    assert list(dashboard.rows["booking_ref"]) == [ledger.c.reference]
    both = reports.refund_report(svc, *SPRING, rooms=["boardroom", "main-hall"], origins=["cancellation"])
    assert list(both.rows["booking_ref"]) == [ledger.a.reference]
    assert reports.refund_report(svc, *SPRING, rooms=["quiet-room"]).rows.empty


def test_before_a_sync_the_ledger_rows_wait_for_stripe_and_live_mode_finds_the_dashboard_refund(
    svc: Any, booking_request: Any
) -> None:
    ledger = build(svc, booking_request, synced=False)
    cached = reports.refund_report(svc, *SPRING)
    assert cached.stripe_as_of is None
    assert ledger.c.reference not in set(cached.rows["booking_ref"])  # nothing tells us of it yet
    assert set(cached.rows["check"]) == {"Not synced from Stripe yet"}

    live = reports.refund_report(svc, *SPRING, live=True)
    assert sorted(live.rows["refund_id"]) == sorted(stripe_refunds(svc))
    assert row(live, refund_of(svc, ledger.c))["check"] == "Not in our ledger"
    assert set(live.rows["check"]) == {"", "Not in our ledger"}


def test_a_ledger_amount_that_differs_from_stripe_is_flagged(svc: Any, ledger: Ledger) -> None:
    refund_id = refund_of(svc, ledger.a)
    with svc.session() as s:
        record = s.exec(select(RefundRecord).where(RefundRecord.refund_id == refund_id)).one()
        record.amount_cents += 100
    got = row(reports.refund_report(svc, *SPRING), refund_id)
    assert got["check"] == f"Stripe has {ledger.a.amount_cents / 100:.2f}"


def test_a_range_that_ends_before_it_starts_is_refused(svc: Any) -> None:
    with pytest.raises(ValidationError, match="2026-03-10 is after the end date 2026-03-01"):
        reports.refund_report(svc, date(2026, 3, 10), date(2026, 3, 1))


def test_quick_periods() -> None:
    assert reports.last_month(date(2026, 1, 15)) == (date(2025, 12, 1), date(2025, 12, 31))
    assert reports.last_month(date(2026, 3, 1)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert reports.this_month(date(2026, 12, 31)) == (date(2026, 12, 1), date(2026, 12, 31))
    assert reports.this_month(date(2028, 2, 10)) == (date(2028, 2, 1), date(2028, 2, 29))
    assert reports.last_three_months(date(2026, 2, 10)) == (date(2025, 12, 1), date(2026, 2, 28))
    assert reports.this_year(date(2026, 7, 4)) == (date(2026, 1, 1), date(2026, 12, 31))


# ------------------------------------------------------------------------------------------------ exports


def test_csv_has_a_header_decimal_amounts_cents_and_venue_dates(svc: Any, ledger: Ledger) -> None:
    report = reports.refund_report(svc, *SPRING)
    data = reports.refunds_csv(report)
    assert not data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert len(rows) == report.count
    assert list(rows[0]) == [
        "Date",
        "Time (Vancouver)",
        "Refund",
        "Booking",
        "Room",
        "Customer",
        "Origin",
        "Reason",
        "Amount",
        "Tax",
        "Net of tax",
        "Amount (cents)",
        "Tax (cents)",
        "Net of tax (cents)",
        "Currency",
        "Policy quote",
        "Policy quote (cents)",
        "By",
        "PaymentIntent",
        "Check",
    ]
    by_booking = {r["Booking"]: r for r in rows}
    late = by_booking[ledger.b.reference]
    assert (late["Date"], late["Time (Vancouver)"], late["Customer"]) == ("2026-03-31", "23:30", "Tomás Ñúñez")
    assert late["Amount"] == f"{ledger.b.amount_cents // 100}.{ledger.b.amount_cents % 100:02d}"
    assert late["Amount (cents)"] == str(ledger.b.amount_cents)
    dashboard = by_booking[ledger.c.reference]
    assert (dashboard["Amount"], dashboard["Amount (cents)"], dashboard["Policy quote"]) == ("25.00", "2500", "")
    assert (dashboard["Origin"], dashboard["Check"]) == ("Made in the Stripe dashboard", "Not in our ledger")
    assert dashboard["Customer"] == "'=SUM(A1:A9)"  # a spreadsheet must not run a customer's name
    assert sum(int(r["Amount (cents)"]) for r in rows) == report.total_cents


def test_xlsx_has_a_refunds_and_a_totals_sheet_with_real_dates_and_amounts(
    svc: Any, ledger: Ledger, tmp_path: Path
) -> None:
    report = reports.refund_report(svc, *SPRING)
    path = tmp_path / "refunds.xlsx"
    path.write_bytes(reports.refunds_xlsx(report))
    wb = load_workbook(path)
    assert wb.sheetnames == ["Refunds", "Totals"]

    ws = wb["Refunds"]
    headers = [c.value for c in ws[1]]
    assert headers[:3] == ["Refunded (Vancouver time)", "Refund", "Booking"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:O{report.count + 1}"
    assert ws.max_row == report.count + 1
    assert all(ws.column_dimensions[letter].width >= 9 for letter in "ABCDEFGHIJKLMNO")
    col = {h: i + 1 for i, h in enumerate(headers)}
    rows = {ws.cell(r, col["Booking"]).value: r for r in range(2, ws.max_row + 1)}

    late = rows[ledger.b.reference]
    when = ws.cell(late, col["Refunded (Vancouver time)"])
    assert isinstance(when.value, datetime) and when.is_date
    assert when.value.replace(second=0, microsecond=0) == datetime(2026, 3, 31, 23, 30)
    amount = ws.cell(late, col["Amount"])
    assert isinstance(amount.value, (int, float)) and amount.value == ledger.b.amount_cents / 100
    assert amount.number_format == '"$"#,##0.00'
    dashboard = rows[ledger.c.reference]
    assert ws.cell(dashboard, col["Policy quote"]).value is None
    customer = ws.cell(dashboard, col["Customer"])
    assert (customer.value, customer.data_type) == ("=SUM(A1:A9)", "s")  # text, never a formula
    assert ws.cell(dashboard, col["Check"]).value == "Not in our ledger"
    cents = sum(round(ws.cell(r, col["Amount"]).value * 100) for r in range(2, ws.max_row + 1))
    assert cents == report.total_cents

    totals = wb["Totals"]
    cells = [[c.value for c in r] for r in totals.iter_rows()]
    assert "1 Mar 2026 – 30 Apr 2026" in str(cells[0][0])
    everything = next(r for r in cells if r[0] == "All refunds")
    assert (everything[2], round(everything[3] * 100)) == (report.count, report.total_cents)
    start = next(i for i, r in enumerate(cells) if r[0] == "By month")
    months = cells[start + 1 : start + 3]
    assert [m[0] for m in months] == [datetime(2026, 3, 1), datetime(2026, 4, 1)]
    assert [(m[2], round(m[3] * 100)) for m in months] == [
        (3, ledger.a.amount_cents + ledger.b.amount_cents + ledger.d.amount_cents),
        (1, DASHBOARD_CENTS),
    ]
    month_cell = totals.cell(start + 2, 1)
    assert month_cell.is_date and month_cell.number_format == "mmm yyyy"
    assert totals.cell(start + 2, 4).number_format == '"$"#,##0.00'
    start = next(i for i, r in enumerate(cells) if r[0] == "By origin")
    origins = {r[0]: (r[2], round(r[3] * 100)) for r in cells[start + 1 : start + 1 + len(reports.ORIGINS)]}
    assert origins["Made in the Stripe dashboard"] == (1, DASHBOARD_CENTS)
    assert origins["Remediation"] == (0, 0)


def test_an_empty_report_still_exports(svc: Any) -> None:
    report = reports.refund_report(svc, date(2026, 1, 1), date(2026, 1, 31))
    assert report.rows.empty and report.total_cents == 0
    assert reports.refunds_csv(report).decode().count("\r\n") == 1  # the header only
    wb = load_workbook(io.BytesIO(reports.refunds_xlsx(report)))
    assert wb["Refunds"].max_row == 1 and wb["Refunds"].auto_filter.ref == "A1:O1"


# ------------------------------------------------------------------------------------------------ command line


@pytest.fixture
def cli_env(svc: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from services.core.settings import get_settings

    monkeypatch.setenv("DATA_DIR", str(svc.settings.data_dir))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_refunds_writes_the_file_and_prints_the_count_and_total(
    svc: Any, ledger: Ledger, cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    from services.ops import cli

    out = tmp_path / f"march.{fmt}"
    argv = ["export-refunds", "--from", "2026-03-01", "--to", "2026-03-31", "--format", fmt, "--out", str(out)]
    assert cli.main(argv) == 0
    march = ledger.a.amount_cents + ledger.b.amount_cents + ledger.d.amount_cents
    printed = capsys.readouterr().out
    assert printed == f"3 refund(s), ${march / 100:,.2f} from 2026-03-01 to 2026-03-31 → {out}\n"
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
        march_refs = [ledger.a.reference, ledger.b.reference, ledger.d.reference]
        assert sorted(r["Booking"] for r in rows) == sorted(march_refs)
    else:
        assert load_workbook(out)["Refunds"].max_row == 4

    assert cli.main([*argv[:-1], str(tmp_path / "april.csv"), "--from", "2026-04-01", "--to", "2026-04-30"]) == 0
    assert "1 refund(s), $25.00" in (printed := capsys.readouterr().out) and "not in our ledger" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-02-30", "--to", "2026-03-31", "--format", "csv"], "'2026-02-30' (use YYYY-MM-DD)"),
        (["--from", "March", "--to", "2026-03-31", "--format", "csv"], "not a date: 'March'"),
        (["--from", "2026-03-01", "--to", "2026-03-31", "--format", "pdf"], "invalid choice: 'pdf'"),
    ],
)
def test_export_refunds_refuses_bad_arguments(
    cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    from services.ops import cli

    out = tmp_path / "x.csv"
    with pytest.raises(SystemExit) as exited:
        cli.main(["export-refunds", *args, "--out", str(out)])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--from", "2026-03-31", "--to", "2026-03-01"], "error: The start date 2026-03-31 is after the end date"),
        (["--from", "2026-03-01", "--to", "2026-03-31", "--room", "ballroom"], "error: Unknown room 'ballroom'"),
    ],
)
def test_export_refunds_explains_what_is_wrong(
    cli_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    from services.ops import cli

    out = tmp_path / "x.csv"
    assert cli.main(["export-refunds", *extra, "--format", "csv", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ revenue, occupancy


def test_revenue_by_month_and_room_is_payments_less_refunds(svc: Any, ledger: Ledger) -> None:
    money = reports.revenue(svc, *SPRING)
    paid = [ledger.a, ledger.b, ledger.c, ledger.d]
    taken = sum(p.amount_cents for p in paid)  # every payment was taken on 2 Mar, Gate 2's too
    returned = ledger.a.amount_cents + ledger.b.amount_cents + ledger.d.amount_cents + DASHBOARD_CENTS
    assert (money.payments_cents, money.refunds_cents, money.net_cents) == (taken, returned, taken - returned)
    assert money.by_month[["month", "payments_cents", "refunds_cents", "net_cents"]].values.tolist() == [
        ["2026-03", taken, returned - DASHBOARD_CENTS, taken - returned + DASHBOARD_CENTS],
        ["2026-04", 0, DASHBOARD_CENTS, -DASHBOARD_CENTS],
    ]
    rooms = money.by_room.set_index("room_slug")
    assert rooms.loc["gallery", "net_cents"] == ledger.c.amount_cents - DASHBOARD_CENTS
    assert rooms.loc["boardroom", "net_cents"] == 0
    assert rooms.loc["quiet-room", "payments_cents"] == 0  # every bookable room is listed
    assert len(money.by_room) == len(svc.catalogue.bookable_rooms)
    assert rooms["payments_cents"].sum() == taken and rooms["refunds_cents"].sum() == returned


def test_occupancy_is_booked_hours_over_opening_hours(svc: Any, booking_request: Any) -> None:
    # Gallery: 10:00–12:00 on Wed 15 Apr and 08:00–17:00 on Thu 16 Apr; a cancelled day does not count.
    paid(svc, booking_request, room="gallery", dates=[date(2026, 4, 15)])
    paid(svc, booking_request, room="gallery", dates=[date(2026, 4, 16)], start=time(8), end=time(17))
    gone = paid(svc, booking_request, room="gallery", dates=[date(2026, 4, 17)])
    bk.cancel_booking(svc, gone.booking_id, actor="frontdesk@sandbox")

    week = reports.occupancy(svc, date(2026, 4, 13), date(2026, 4, 19))
    gallery = week[week["room_slug"] == "gallery"].set_index("bucket")
    assert list(gallery.index) == ["Mon", "Tue", "Wed", "Thu", "Fri"]  # the weekend is closed
    assert gallery.loc["Wed", "booked_hours"] == 2 and gallery.loc["Wed", "open_hours"] == 9
    assert gallery.loc["Wed", "occupancy"] == pytest.approx(2 / 9)
    assert gallery.loc["Thu", "occupancy"] == 1
    assert gallery.loc["Fri", "booked_hours"] == 0
    assert week[week["room_slug"] == "boardroom"]["booked_hours"].sum() == 0

    weeks = reports.occupancy(svc, date(2026, 4, 1), date(2026, 4, 19), by="week")
    gallery_weeks = weeks[weeks["room_slug"] == "gallery"].set_index("bucket")
    # Week of 30 Mar: Wed 1 and Thu 2 Apr only (Good Friday 3 Apr is a statutory holiday in BC; Easter Monday is not).
    assert gallery_weeks["open_hours"].to_dict() == {"30 Mar": 18, "6 Apr": 45, "13 Apr": 45}
    assert gallery_weeks.loc["13 Apr", "booked_hours"] == 11
    assert date(2026, 4, 3) not in reports.open_days(svc, date(2026, 4, 1), date(2026, 4, 5))
