"""One finding on the Mismatches page (`?finding=<id>`): what it is, the outcome of the last fix (kept until
dismissed), its payment, booking and dates, one button per fix (each opens its dialog, pages/reconcile/
mismatch_fixes.py), and the booking's joined timeline. A dispute says what the customer told their bank in words and
offers its page on Disputes first among the fixes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

import streamlit as st

from models.tables import ACTIVE_LEG_STATES
from pages.reconcile.mismatch_fixes import action_dialog, meaning, open_action
from pages.ui import actions, history, labels, nav, session, sync, widgets
from services.booking.queries import booking_detail
from services.reconciliation.findings import (
    ACTION_LABELS,
    CODES,
    dispute_id,
    fix_label,
    summary_text,
)
from services.rules.fmt import days_label, plural

if TYPE_CHECKING:
    from models.tables import Finding
    from services.core.context import Services

STATUS_COLORS = {"open": "red", "acknowledged": "blue", "resolved": "green"}


def show(svc: Services, finding: Finding, *, on_back: Callable[[], None]) -> None:
    assert finding.id is not None
    title, back = st.columns([5, 1], vertical_alignment="center")
    title.subheader(f"#{finding.id} · {meaning(finding.code)}", anchor=False)
    back.button("All findings", icon=":material/arrow_back:", key="mm_back_list", on_click=on_back, width="stretch")
    b1, b2, b3, _ = st.columns([1, 1, 2, 6])
    with b1:
        st.badge(finding.severity.capitalize(), color=sync.SEVERITY_COLORS.get(finding.severity, "gray"))  # type: ignore[arg-type]
    with b2:
        st.badge(finding.status.capitalize(), color=STATUS_COLORS.get(finding.status, "gray"))  # type: ignore[arg-type]
    b3.markdown(f"`{finding.code}`")
    _last_fix(svc, finding)  # first: the outcome of what was just done is where the person looks
    st.markdown(labels.literal(summary_text(svc, finding)))  # may quote an event title someone typed
    if finding.status == "resolved":
        st.success(
            f"**Resolved** {labels.venue(svc, finding.resolved_at)}: the last sync no longer sees this mismatch.",
            icon=":material/task_alt:",
        )
    elif finding.status == "acknowledged":
        st.info(
            f"**Acknowledged** by {finding.acknowledged_by} {labels.venue(svc, finding.acknowledged_at)}: "
            f"{finding.note}",
            icon=":material/done:",
        )
    _facts(svc, finding)
    _fixes(svc, finding)
    if finding.booking_id:
        st.markdown(f"#### Booking timeline ({labels.tz_label(svc)})")
        with actions.reporting("Loading the timeline"):
            history.show_history(svc, finding.booking_id, key=f"mm_sources_{finding.id}")


def _last_fix(svc: Services, finding: Finding) -> None:
    """The outcome of the last fix on this finding (shown once the dialog has closed and the sync has run), until
    dismissed."""
    fix = st.session_state.get("mm_fix")
    if not fix or fix["finding"] != finding.id:
        return
    result = fix["result"]
    label = fix.get("label") or ACTION_LABELS.get(result.action, result.action)
    if result.ok:
        text, kind, icon = f"**{label}** — {result.message}", "success", ":material/check_circle:"
    else:
        text, kind, icon = f"**{label}** did not complete — {result.message}", "warning", ":material/warning:"
    if fix["outcome"]:
        text += f"\n\n{fix['outcome'].text()}"
    box = widgets.kept_outcome(kind, text, forget="mm_fix", icon=icon)
    if not result.ok and result.offer and finding.status != "resolved":
        box.button(
            f"{fix_label(svc, finding, result.offer)}…",
            key="mm_offer",
            on_click=open_action,
            args=(finding.id, result.offer),
        )


def _answer_dispute(finding: Finding, where: Any) -> None:
    """A dispute's way to be answered, first among its fixes: its page on Disputes (the evidence, the PDF, Submit)."""
    dispute = dispute_id(finding)
    if not nav.may_open(session.role(), "disputes"):
        where.caption("Finance answers disputes on the Disputes page.")
        return
    if where.button(
        "Answer it on Disputes",
        icon=":material/gavel:",
        type="primary",
        key="mm_answer_dispute",
        help=f"Opens dispute {dispute} with the evidence assembled from the booking.",
        width="stretch",
    ):
        st.switch_page(nav.script("disputes"), query_params={"dispute": dispute or ""})


def _facts(svc: Services, finding: Finding) -> None:
    rooms = {r.slug: r.name for r in svc.catalogue.rooms}
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Payment**")
        st.markdown(f"PaymentIntent `{finding.payment_intent}`" if finding.payment_intent else "No payment")
        at_risk = labels.money(svc, finding.amount_cents)
        st.markdown(f"At risk: **{at_risk}**" if finding.amount_cents else "No money at risk")
    with c2:
        st.markdown("**Booking**")
        if finding.booking_id and finding.booking_ref:
            st.page_link(
                nav.script("bookings"),
                label=f"Open booking {finding.booking_ref}",
                icon=":material/open_in_new:",
                query_params={"ref": finding.booking_ref},
            )
        else:
            if finding.booking_ref:
                st.markdown(f"{finding.booking_ref}: made by the old system, not in Room Desk")
            elif finding.payment_intent:
                st.markdown("Made outside Room Desk (the old system or Stripe): no booking here")
            else:
                st.markdown("No booking behind it")
        dates = days_label([date.fromisoformat(d) for d in finding.dates], limit=3)
        st.markdown(f"{rooms.get(finding.room or '', finding.room or 'No room')} · {dates}")
    with c3:
        st.markdown("**Seen**")
        st.markdown(
            f"First {labels.venue(svc, finding.first_seen_at)} · last {labels.venue(svc, finding.last_seen_at)} "
            f"({labels.tz_label(svc)})"
        )
        st.markdown(_events_line(svc, finding))


def _events_line(svc: Services, finding: Finding) -> str:
    """The calendar events behind the finding. For a booking, what its booked days have now (a fix may have created
    them since the finding was seen: "none" would then be wrong); otherwise, and for a booking with no day left, the
    events the finding named when it was seen."""
    if finding.booking_id:
        with actions.reporting("Reading the booking's events"):
            legs = booking_detail(svc, finding.booking_id, live=False).legs
            booked = [leg for leg in legs if leg.state in ACTIVE_LEG_STATES]
            if booked:
                having = [leg.day for leg in booked if leg.event_id]
                where = f" ({days_label(having, limit=3)})" if having else ""
                return f"Events now: {len(having)} of {plural(len(booked), 'booked day')}{where}"
    if finding.event_ids:
        return "Events when seen: " + ", ".join(f"`{e}`" for e in finding.event_ids)
    return "Events when seen: none"


def _fixes(svc: Services, finding: Finding) -> None:
    if finding.status == "resolved":
        st.caption("Nothing left to do here.")
    else:
        offered = list(finding.actions or CODES.get(finding.code, ("", "", ()))[2])
        if finding.status == "acknowledged":
            offered = [a for a in offered if a != "acknowledge"]
        st.markdown("**Fix it**")
        first = 1 if dispute_id(finding) is not None else 0  # a dispute's first way out: its page on Disputes
        cols = st.columns(max(len(offered), 1) + first + 1)
        if first:
            _answer_dispute(finding, cols[0])
        for i, action in enumerate(offered, start=first):
            cols[i].button(
                fix_label(svc, finding, action),
                key=f"mm_do_{action}",
                type="primary" if i == first == 0 and action != "acknowledge" else "secondary",
                on_click=open_action,
                args=(finding.id, action),
                width="stretch",
            )
    pending = st.session_state.get("mm_action")
    if pending and pending[0] == finding.id:
        title = fix_label(svc, finding, pending[1])
        widgets.flag_dialog("mm_action", title, action_dialog, svc, finding, pending[1])
