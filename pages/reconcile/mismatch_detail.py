"""One finding on the Mismatches page (`?finding=<id>`): what it is, the outcome of the last fix, its payment, booking
and dates, one button per fix (each opens its dialog, pages/reconcile/mismatch_fixes.py), and the booking's joined
timeline."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import streamlit as st

from pages.reconcile.mismatch_fixes import action_dialog, meaning, open_action
from pages.ui import actions, history, labels, nav, sync, widgets
from services.reconciliation.findings import ACTION_LABELS, CODES
from services.rules.fmt import days_label

if TYPE_CHECKING:
    from models.tables import Finding
    from services.core.context import Services

STATUS_COLORS = {"open": "red", "acknowledged": "blue", "resolved": "green"}


def show(svc: Services, finding: Finding) -> None:
    assert finding.id is not None
    st.divider()
    st.subheader(f"#{finding.id} · {meaning(finding.code)}", anchor=False)
    b1, b2, b3, _ = st.columns([1, 1, 2, 6])
    with b1:
        st.badge(finding.severity.capitalize(), color=sync.SEVERITY_COLORS.get(finding.severity, "gray"))  # type: ignore[arg-type]
    with b2:
        st.badge(finding.status.capitalize(), color=STATUS_COLORS.get(finding.status, "gray"))  # type: ignore[arg-type]
    b3.markdown(f"`{finding.code}`")
    st.markdown(labels.literal(finding.summary))  # may quote an event title someone typed
    _last_fix(finding)
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


def _last_fix(finding: Finding) -> None:
    """The outcome of the last fix on this finding (shown once the dialog has closed and the sync has run)."""
    fix = st.session_state.get("mm_fix")
    if not fix or fix["finding"] != finding.id:
        return
    result = fix["result"]
    label = ACTION_LABELS.get(result.action, result.action)
    if result.ok:
        st.success(f"**{label}** — {result.message}", icon=":material/check_circle:")
    else:
        st.warning(f"**{label}** did not complete — {result.message}", icon=":material/warning:")
        if result.offer and finding.status != "resolved":
            st.button(
                f"{ACTION_LABELS.get(result.offer, result.offer)}…",
                key="mm_offer",
                on_click=open_action,
                args=(finding.id, result.offer),
            )
    if fix["outcome"]:
        st.caption(fix["outcome"].text())


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
            st.markdown(f"{finding.booking_ref} (not in Room Desk)" if finding.booking_ref else "No booking behind it")
        dates = days_label([date.fromisoformat(d) for d in finding.dates], limit=3)
        st.markdown(f"{rooms.get(finding.room or '', finding.room or 'No room')} · {dates}")
    with c3:
        st.markdown("**Seen**")
        st.markdown(
            f"First {labels.venue(svc, finding.first_seen_at)} · last {labels.venue(svc, finding.last_seen_at)} "
            f"({labels.tz_label(svc)})"
        )
        st.markdown("Events: " + (", ".join(f"`{e}`" for e in finding.event_ids) if finding.event_ids else "none"))


def _fixes(svc: Services, finding: Finding) -> None:
    if finding.status == "resolved":
        st.caption("Nothing left to do here.")
    else:
        offered = list(finding.actions or CODES.get(finding.code, ("", "", ()))[2])
        if finding.status == "acknowledged":
            offered = [a for a in offered if a != "acknowledge"]
        st.markdown("**Fix it**")
        cols = st.columns(max(len(offered), 1) + 1)
        for i, action in enumerate(offered):
            cols[i].button(
                ACTION_LABELS.get(action, action),
                key=f"mm_do_{action}",
                type="primary" if i == 0 and action != "acknowledge" else "secondary",
                on_click=open_action,
                args=(finding.id, action),
                width="stretch",
            )
    pending = st.session_state.get("mm_action")
    if pending and pending[0] == finding.id:
        title = ACTION_LABELS.get(pending[1], pending[1])
        widgets.flag_dialog("mm_action", title, action_dialog, svc, finding, pending[1])
