"""Revenue & occupancy: payments taken, refunds, the tax collected and net revenue (net of tax) by month and by room,
and how full each room was (booked hours ÷ opening hours) as a heat map, over a range of venue dates.

The numbers come from services.finance.reports in integer cents; this page turns them into dollars for the axes and
draws them with altair.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from pages.ui import actions, boot, labels, session, widgets
from services.core.errors import DomainError
from services.finance import reports

svc = boot.services()
session.require_role("revenue")
today = reports.venue_today(svc)
SERIES = ["Payments", "Refunds", "Tax", "Net"]
SERIES_COLORS = ["#0f766e", "#dc2626", "#d97706", "#334155"]
SERIES_COLUMNS = ["payments_cents", "refunds_cents", "tax_cents", "net_cents"]
PERIODS: dict[str, widgets.Period] = {
    "This month": reports.this_month,
    "Last month": reports.last_month,
    "Last 3 months": reports.last_three_months,
    "This year": reports.this_year,
}


def money_frame(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Payments, refunds, tax and net in long form for a grouped bar chart: dollars for the axis, words for the
    tooltip."""
    long = frame.melt(id_vars=[by], value_vars=SERIES_COLUMNS, var_name="series", value_name="cents")
    long["series"] = long["series"].map(dict(zip(SERIES_COLUMNS, SERIES, strict=True)))
    long["dollars"] = long["cents"] / 100
    long["amount"] = [labels.money(svc, int(c)) for c in long["cents"]]
    return long


def grouped_bars(long: pd.DataFrame, by: str, title: str, *, horizontal: bool) -> alt.Chart:
    order = list(dict.fromkeys(long[by]))
    color = alt.Color(
        "series:N",
        scale=alt.Scale(domain=SERIES, range=SERIES_COLORS),
        legend=alt.Legend(title=None, orient="top", direction="horizontal"),
    )
    money_axis = alt.Axis(format="$,.0f", title=None, grid=True, labelFlush=False)
    category = alt.Axis(title=None, labelAngle=0, labelLimit=160, labelFontSize=12)
    tooltip = [
        alt.Tooltip(f"{by}:N", title=title),
        alt.Tooltip("series:N", title="What"),
        alt.Tooltip("amount:N", title="Amount"),
    ]
    base = alt.Chart(long).mark_bar(cornerRadiusEnd=2)
    if horizontal:
        chart = base.encode(
            y=alt.Y(f"{by}:N", sort=order, axis=category),
            yOffset=alt.YOffset("series:N", sort=SERIES),
            x=alt.X("dollars:Q", axis=money_axis),
            color=color,
            tooltip=tooltip,
        ).properties(height=max(len(order), 1) * 60 + 40)
    else:
        # One or two months would stretch into very wide bars: pad the sides (Vega-Lite allows at most one step).
        padding = alt.Scale(paddingInner=0.2, paddingOuter=min(1.0, max(0.0, (4 - len(order)) * 0.5)))
        chart = base.encode(
            x=alt.X(f"{by}:N", sort=order, axis=category, scale=padding),
            xOffset=alt.XOffset("series:N", sort=SERIES),
            y=alt.Y("dollars:Q", axis=money_axis),
            color=color,
            tooltip=tooltip,
        ).properties(height=300)
    return chart


def heat_map(frame: pd.DataFrame, column_title: str) -> alt.LayerChart:
    """Rooms × weekdays (or weeks): the colour is the share of opening hours booked, the label says it in %."""
    data = frame.assign(
        pct=frame["occupancy"].fillna(0.0),
        label=[f"{v:.0%}" if pd.notna(v) else "—" for v in frame["occupancy"]],
        hours=[f"{b:g} of {o:g} h" for b, o in zip(frame["booked_hours"], frame["open_hours"], strict=True)],
    )
    x = alt.X("bucket:O", sort=list(dict.fromkeys(data["bucket"])), title=column_title, axis=alt.Axis(labelAngle=0))
    y = alt.Y("room:N", sort=list(dict.fromkeys(data["room"])), title=None, axis=alt.Axis(labelFontSize=12))
    tooltip = [
        alt.Tooltip("room:N", title="Room"),
        alt.Tooltip("bucket:O", title=column_title),
        alt.Tooltip("label:N", title="Booked"),
        alt.Tooltip("hours:N", title="Hours"),
    ]
    cells = (
        alt.Chart(data)
        .mark_rect(stroke="white", strokeWidth=2, cornerRadius=3)
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "pct:Q",
                # A square-root scale: the usual 5–30 % stay tellable apart, and the legend still reads true.
                scale=alt.Scale(type="sqrt", domain=[0, 1], range=["#f0fdfa", "#0f766e"]),
                legend=alt.Legend(title="Booked", format="%", orient="right", gradientLength=160),
            ),
            tooltip=tooltip,
        )
    )
    text = cells.mark_text(fontSize=12).encode(
        text="label:N",
        color=alt.condition("datum.pct > 0.3", alt.value("white"), alt.value("#1f2933")),
    )
    rooms = data["room"].nunique()
    return (cells + text).properties(height=max(rooms, 1) * 38 + 30)


st.title("Revenue & occupancy")
st.caption(
    f"Payments are Stripe charges that succeeded, as of the last sync, and refunds those of the Refunds report, both "
    "tax included. Tax is the tax collected: on payments, less what refunds gave back (the GST owed). **Net revenue "
    f"is net of tax**: payments − refunds − tax. Money is counted on the {labels.tz_label(svc)} day it moved. "
    "Occupancy is booked hours ÷ opening hours, on the days the venue is open."
)

f1, f2, _ = st.columns([2.8, 1.5, 1.2])  # the four periods on one line at 1366 px
picked = widgets.period_picker("rv", PERIODS, today, default="Last 3 months", where=(f1, f2))
if picked is None:
    st.stop()
first, last = picked

try:
    money = reports.revenue(svc, first, last)
    weekly = reports.occupancy(svc, first, last, by="weekday")
except DomainError as exc:
    actions.show_error(exc, doing="Revenue")
    st.stop()

booked, open_hours = weekly["booked_hours"].sum(), weekly["open_hours"].sum()
# Payments and net revenue are the longest figures; occupancy is a few characters.
m1, m2, m_tax, m3, m4 = st.columns([1.3, 1.1, 1.1, 1.3, 0.8])
m1.metric("Payments", labels.money(svc, money.payments_cents), border=True, help="Tax included")
m2.metric("Refunds", labels.money(svc, money.refunds_cents), border=True, help="Tax included")
m_tax.metric(
    "Tax collected",
    labels.money(svc, money.tax_cents),
    border=True,
    help=f"Tax on payments {labels.money(svc, money.payments_tax_cents)} − tax given back on refunds "
    f"{labels.money(svc, money.refunds_tax_cents)}: the GST owed for this range",
)
m3.metric("Net revenue", labels.money(svc, money.net_cents), border=True, help="Net of tax: payments − refunds − tax")
m4.metric(
    "Occupancy",
    f"{booked / open_hours:.0%}" if open_hours else "—",
    border=True,
    help=f"{booked:g} booked hours of {open_hours:g} opening hours, all rooms together",
)
if not money.payments_cents and not money.refunds_cents:
    st.info(
        "No payments or refunds in this range yet (payments show once Stripe has been synced).",
        icon=":material/payments:",
    )

left, right = st.columns(2, gap="large")
with left:
    st.markdown("**By month**")
    st.altair_chart(
        grouped_bars(money_frame(money.by_month, "label"), "label", "Month", horizontal=False), width="stretch"
    )
with right:
    st.markdown("**By room**")
    st.altair_chart(grouped_bars(money_frame(money.by_room, "room"), "room", "Room", horizontal=True), width="stretch")

NUMBERS = {
    "Payments": "payments_cents",
    "Refunds": "refunds_cents",
    "Tax on payments": "payments_tax_cents",
    "Tax given back": "refunds_tax_cents",
    "Tax collected": "tax_cents",
    "Net revenue": "net_cents",
}
with st.expander("The numbers (tax by month, for the GST return)"):
    for frame, what, title in ((money.by_month, "label", "Month"), (money.by_room, "room", "Room")):
        st.dataframe(
            pd.DataFrame(
                {title: frame[what]}
                | {header: [labels.money(svc, int(c)) for c in frame[column]] for header, column in NUMBERS.items()}
            ),
            hide_index=True,
            width="stretch",
        )

st.subheader("Occupancy")
by = st.segmented_control(
    "Occupancy by",
    ["weekday", "week"],
    default="weekday",
    format_func={"weekday": "Weekday", "week": "Week"}.__getitem__,
    key="rv_by",
    label_visibility="collapsed",
)
grid = weekly if by != "week" else reports.occupancy(svc, first, last, by="week")
if grid.empty:
    st.info("The venue is not open on any day of this range.", icon=":material/event_busy:")
else:
    st.altair_chart(heat_map(grid, "Week starting" if by == "week" else "Weekday"), width="stretch")
    st.caption(
        "Booked hours of confirmed, in-progress and completed days inside opening hours "
        f"({svc.policy.open_time:%H:%M}–{svc.policy.close_time:%H:%M}); days the venue is closed (weekends, "
        "statutory holidays, closures) are left out."
    )
