"""Disputes: the chargebacks on our payments, the time left to answer each, and the evidence we answer with.

The list reads the DisputeCase rows the Stripe webhooks keep in step; the first visit in a session and "Refresh
from Stripe" also read Stripe's own list, for disputes no webhook told us about. Selecting a dispute (or a
`?dispute=dp_…` link, as the Mismatches page gives) shows the evidence pack assembled from its booking, the text
that goes to Stripe (editable while the dispute needs a response), the PDF, Save draft to Stripe, and Submit
evidence (once, after a confirmation): pages/finance/dispute_view.py. Every action runs through the Desk with the
signed-in person as the audit trail's actor.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pages.finance.dispute_view import after_action, days_left, detail
from pages.ui import actions, boot, labels, session, widgets
from services.core.errors import DomainError
from services.finance import dispute_queries as dq
from services.finance.dispute_queries import SOON_DAYS, DisputeSummary

svc = boot.services()
session.require_role("disputes")
TZ = labels.tz_label(svc)


def refresh(*, quiet: bool = False) -> None:
    with st.spinner("Reading Stripe's disputes…"):
        try:
            report = actions.desk().refresh_disputes()
        except DomainError as exc:
            actions.show_error(exc, doing="Refresh from Stripe")
            return
    if not quiet:
        st.session_state["ds_outcome"] = ("success", f"Refreshed from Stripe: {report.line()}.")


def cases_table(cases: list[DisputeSummary]) -> Any:
    frame = pd.DataFrame(
        [
            {
                # What decides the next step first (who, how much, by when); the long Stripe id last.
                "Booking": c.reference or "—",
                "Customer": c.customer or "Not a Room Desk booking",
                "Amount": labels.money(svc, c.amount_cents),
                "Reason": c.reason_words,
                "Status": c.status_words,
                "Evidence due": labels.venue(svc, c.evidence_due_by),
                "Days left": days_left(svc, c),
                "Evidence": "Submitted" if c.evidence_submitted_at else ("Draft saved" if c.evidence else "—"),
                "Dispute": c.dispute_id,
            }
            for c in cases
        ]
    )

    def highlight(row: pd.Series) -> list[str]:
        case = cases[int(str(row.name))]
        colour = ""
        if case.overdue:
            colour = "background-color: #fee2e2; color: #991b1b; font-weight: 600"
        elif case.due_soon:
            colour = "background-color: #ffedd5; color: #9a3412"
        return [colour if col in ("Days left", "Evidence due") else "" for col in row.index]

    return frame.style.apply(highlight, axis=1)


def metrics(cases: list[DisputeSummary]) -> None:
    waiting = [c for c in cases if c.needs_response]
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Need a response", len(waiting), border=True, help="Open disputes whose evidence is not submitted yet")
    m2.metric(
        f"Due within {SOON_DAYS} days",
        sum(c.due_soon for c in waiting),
        border=True,
    )
    m3.metric("Overdue", sum(c.overdue for c in waiting), border=True, help="Past the evidence due date")
    m4.metric("Under review", sum(c.status.endswith("under_review") for c in cases), border=True)


def kept_row(cases: list[DisputeSummary]) -> int | None:
    """The row selected when the table is drawn afresh: the dispute a `?dispute=dp_…` link names (the Mismatches
    page links a dispute_open finding here), else the one an action just worked on."""
    linked = st.query_params.get("dispute")
    wanted = next((c.id for c in cases if c.dispute_id == linked), None) if linked else None
    if linked and wanted is None:
        st.warning(f"No dispute {linked!r} (from the link).", icon=":material/link_off:")
    return next((i for i, c in enumerate(cases) if c.id == (wanted or st.session_state.get("ds_keep"))), None)


def follow_link(cases: list[DisputeSummary], row: int | None) -> None:
    """The address bar names the dispute on screen, so it is always a link to it."""
    shown = cases[row].dispute_id if row is not None else None
    if shown and st.query_params.get("dispute") != shown:
        st.query_params["dispute"] = shown
    elif shown is None and st.query_params.get("dispute") in {c.dispute_id for c in cases}:
        st.query_params.pop("dispute", None)


# ------------------------------------------------------------------------------------------------ page

st.title("Disputes")
st.caption(
    "Chargebacks on our payments. Stripe decides each status and tells Room Desk through its webhooks; answer each "
    "dispute needing a response before its evidence due date, with the evidence assembled from the booking."
)
top1, _ = st.columns([1, 3], vertical_alignment="center")
if top1.button("Refresh from Stripe", icon=":material/sync:", key="ds_refresh", width="stretch"):
    refresh()
    after_action()
elif not st.session_state.get("ds_refreshed"):
    # Once per session: a dispute whose webhook never came (or came before Room Desk was connected) still shows.
    refresh(quiet=True)
st.session_state["ds_refreshed"] = True
if outcome := st.session_state.get("ds_outcome"):
    # At the top until dismissed; a toast too, as Save draft and Submit are far down the page.
    widgets.kept_outcome(outcome[0], outcome[1], forget="ds_outcome", toast=outcome[1][:120])

cases = dq.list_cases(svc)
if not cases:
    st.success("No dispute: no customer's bank has disputed a payment.", icon=":material/task_alt:")
    st.stop()
metrics(cases)
row = widgets.selectable_table(
    cases_table(cases),
    key=f"ds_cases_{widgets.generation('ds')}",
    rows=len(cases),
    keep=kept_row(cases),
    # Widths that fit 1366 px with the sidebar open (no sideways scrolling); hover a cut cell to read it all.
    column_config={
        "Booking": st.column_config.TextColumn(width=88),
        "Customer": st.column_config.TextColumn(width=110),
        "Amount": st.column_config.TextColumn(width=75),
        "Reason": st.column_config.TextColumn(width=150),
        "Status": st.column_config.TextColumn(width=125),
        "Evidence due": st.column_config.TextColumn(width=115, help=f"In {TZ}"),
        "Days left": st.column_config.TextColumn(width=90),
        "Evidence": st.column_config.TextColumn(width=95, help="Evidence sent to Stripe: a draft, or submitted"),
        "Dispute": st.column_config.TextColumn(width=110, help="Stripe's dispute id"),
    },
)
st.caption(f"Needing a response first, soonest due first; times in {TZ}. Select a dispute to see its evidence.")
follow_link(cases, row)
if row is not None:
    detail(svc, dq.get_case(svc, cases[row].id))
