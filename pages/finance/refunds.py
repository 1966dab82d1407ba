"""Refunds report: every refund in Stripe, once, with its origin (auto-refund at Gate 2, cancellation, remediation,
made in the Stripe dashboard), over a range of venue dates, with totals and the Excel / CSV exports finance hands on.

Opens on last calendar month with the Excel button in the first screenful: last month's report is two clicks away.
The report is built from our ledger and the Stripe cache by services.finance.reports; this page only draws it.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

import pandas as pd
import streamlit as st

from pages.ui import actions, boot, labels, nav, session, widgets
from services.core.errors import DomainError
from services.finance import reports
from services.rules.fmt import range_label

svc = boot.services()
session.require_role("refunds")
ROOMS = {r.slug: r.name for r in svc.catalogue.rooms}
PERIODS: dict[str, widgets.Period] = {"Last month": reports.last_month, "This month": reports.this_month}
today = reports.venue_today(svc)


@st.cache_data(show_spinner=False, max_entries=16)
def export_bytes(rows: pd.DataFrame, first: date, last: date, currency: str, venue_timezone: str, kind: str) -> bytes:
    """The file for the rows on screen (cached: a rerun that changes nothing builds no workbook)."""
    report = reports.summarise(rows, first, last, currency, venue_timezone)
    return reports.refunds_xlsx(report) if kind == "xlsx" else reports.refunds_csv(report)


st.title("Refunds report")
st.caption(
    f"Every refund in Stripe exactly once, with why it was made. Dates are {labels.tz_label(svc)}; the range includes "
    "both days. Amounts include tax; each refund gives back its proportional share of its payment's tax."
)

f1, f2, f3, f4 = st.columns([1.55, 1.5, 1.5, 1.7])
picked = widgets.period_picker("rf", PERIODS, today, default="Last month", where=(f1, f2))
rooms = f3.multiselect(
    "Rooms", list(ROOMS), format_func=lambda s: ROOMS.get(s, s), key="rf_rooms", placeholder="All rooms"
)
origins = f4.multiselect(
    "Origin", list(reports.ORIGINS), format_func=reports.ORIGINS.__getitem__, key="rf_origins", placeholder="Any origin"
)
if picked is None:
    st.stop()
first, last = picked

try:
    report = reports.refund_report(svc, first, last, rooms=rooms, origins=origins)
except DomainError as exc:
    actions.show_error(exc, doing="The refunds report")
    st.stop()
period = range_label(first, last)

# ---- the numbers and the downloads, in the first screenful ---------------------------------------------------------
m1, m2, m_tax, m3, downloads = st.columns([0.8, 1, 1, 1, 1.2], vertical_alignment="center")
m1.metric("Refunds", report.count, border=True)
m2.metric("Total refunded", labels.money(svc, report.total_cents), border=True, help="Tax included")
m_tax.metric(
    "Tax given back",
    labels.money(svc, report.tax_cents),
    border=True,
    help=f"The tax inside the refunds; net of tax they gave back {labels.money(svc, report.net_cents)}",
)
m3.metric(
    "Not in our ledger",
    report.not_in_ledger,
    border=True,
    help="Refunds Stripe has and Room Desk has no record of: made in the Stripe dashboard without us hearing of it.",
)
stem = f"refunds-{first:%Y-%m-%d}-to-{last:%Y-%m-%d}"
args = (report.rows, first, last, report.currency, report.venue_timezone)
EXPORTS: list[tuple[str, str, str, Literal["primary", "secondary"]]] = [
    ("xlsx", "Download Excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "primary"),
    ("csv", "Download CSV", "text/csv", "secondary"),
]
with downloads:
    for kind, label, mime, look in EXPORTS:
        st.download_button(
            label,
            export_bytes(*args, kind),
            file_name=f"{stem}.{kind}",
            mime=mime,
            type=look,
            icon=":material/download:",
            key=f"rf_{kind}",
            on_click="ignore",
            width="stretch",
        )

if report.stripe_as_of is None:
    st.warning(
        "Stripe's refunds have not been synced yet: only the refunds Room Desk recorded are listed. A refund made "
        "in the Stripe dashboard shows here after the next sync.",
        icon=":material/sync_problem:",
    )
else:
    st.caption(f"Checked against Stripe as of the last sync, {labels.ago(svc, report.stripe_as_of)}.")
if report.not_in_ledger:
    st.warning(
        f"**{report.not_in_ledger} refund(s) made in Stripe have no record in Room Desk** (marked *Not in our "
        "ledger* below). They are counted in the totals; look each one up in Stripe to learn who made it and why.",
        icon=":material/receipt_long:",
    )

# ---- the rows ------------------------------------------------------------------------------------------------------
if report.rows.empty:
    filtered = bool(rooms or origins)
    st.info(
        f"No refunds {'match these filters in' if filtered else 'in'} {period}.",
        icon=":material/filter_alt_off:" if filtered else ":material/receipt_long:",
    )
    other = "This month" if st.session_state.get("rf_period") == "Last month" else None
    if other and not filtered:
        now_count = reports.refund_report(svc, *reports.this_month(today)).count
        if now_count:
            st.button(
                f"Show this month ({now_count} refund(s) so far)",
                key="rf_show_this",
                on_click=widgets.show_period,
                args=("rf", PERIODS, today, other),
            )
    st.stop()

rows = report.rows
dollars = "dollar" if report.currency.upper() in ("CAD", "USD") else "%.2f"
table = pd.DataFrame(
    {
        "Refunded": rows["refunded_at"].dt.strftime("%Y-%m-%d %H:%M"),
        "Booking": rows["booking_ref"],
        "Room": rows["room"],
        "Customer": rows["customer"],
        "Origin": rows["origin_label"],
        "Amount": rows["amount_cents"] / 100,
        "Tax": rows["tax_cents"] / 100,
        "Net of tax": rows["net_cents"] / 100,
        # Text, so a refund without a quote reads "—" rather than "None".
        "Policy quote": [labels.money(svc, None if pd.isna(c) else int(c)) for c in rows["policy_quote_cents"]],
        "Reason": rows["reason"],
        "By": rows["actor"],
        "Check": rows["check"],
        "Refund": rows["refund_id"],
        "PaymentIntent": rows["payment_intent"],
    }
)
checked = bool((rows["check"] != "").any())
chosen = widgets.selectable_table(
    table,
    key=f"rf_table_{first}_{last}_{'-'.join(rooms)}_{'-'.join(origins)}_{len(rows)}",
    rows=len(rows),
    height=widgets.fit_height(len(table), 460),
    # Widths that fit 1366 px with the sidebar open, no sideways scrolling. Who made each refund and the Stripe ids
    # are in the exports and on the booking a row opens; "Check" shows only when a refund needs one, and then takes
    # the policy quote's place (that is in the exports too).
    column_config={
        "Refunded": st.column_config.TextColumn(width=112, help=labels.tz_label(svc)),
        "Booking": st.column_config.TextColumn(width=80),
        "Room": st.column_config.TextColumn(width=86),
        "Customer": st.column_config.TextColumn(width=96),
        "Origin": st.column_config.TextColumn(width=160 if checked else 180),
        "Amount": st.column_config.NumberColumn(format=dollars, width=76, help="Tax included"),
        "Tax": st.column_config.NumberColumn(format=dollars, width=56, help="The tax this refund gave back"),
        "Net of tax": st.column_config.NumberColumn(format=dollars, width=72),
        "Policy quote": None
        if checked
        else st.column_config.TextColumn(
            width=78, help="What the cancellation policy gave, where the refund followed a quote"
        ),
        "Reason": st.column_config.TextColumn(width=108 if checked else 124, help="Hover a cell to read it all"),
        "Check": st.column_config.TextColumn(width=110, help="Empty when our ledger and Stripe agree")
        if checked
        else None,
        "By": None,
        "Refund": None,
        "PaymentIntent": None,
    },
)
st.caption(
    f"{report.count} refund(s) in {period}, oldest first. Select a row to open its booking; the downloads also have "
    "who made each refund and Stripe's ids."
)
if chosen is not None and (ref := str(rows["booking_ref"].iloc[chosen])):
    st.switch_page(nav.script("bookings"), query_params={"ref": ref})

# ---- totals --------------------------------------------------------------------------------------------------------
st.subheader("Totals")


def totals_table(frame: pd.DataFrame, what: str) -> None:
    shown = pd.DataFrame(
        {
            what: frame["label"],
            "Refunds": frame["refunds"],
            "Amount": [labels.money(svc, int(c)) for c in frame["amount_cents"]],
            "Tax": [labels.money(svc, int(c)) for c in frame["tax_cents"]],
        }
    )
    st.table(shown, hide_index=True, border="horizontal")


t1, t2, t3 = st.columns(3, gap="medium")
with t1:
    totals_table(report.by_origin, "Origin")
with t2:
    totals_table(report.by_room, "Room")
with t3:
    totals_table(report.by_month, "Month")
