"""Bookings: find a booking (PaymentIntent id, reference, email, name, room, dates, status) and see everything about
it — days, live payment and calendar state, refunds, emails, audit trail — and cancel it, by the policy or, with
"Refund more than the policy", as a request that waits for a manager's and a finance approval (pages/finance/
approvals.py).

The page shows either the list or one booking, right under the search: at 1366×768 a booking opened below a
360-pixel table started off screen. Selecting a row (or `?pi=pi_…` / `?ref=RD…`) opens the booking and puts its
reference in the URL, so the address bar is always a link to what is on screen; "Back to the list" or a new search
goes back to the list.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from models.tables import BookingStatus
from pages.frontdesk import booking_cancel, booking_change, booking_edit, booking_view
from pages.ui import actions, boot, labels, session, widgets
from services.booking.queries import BookingDetail, booking_detail, find_booking_id, invoice_of, search_bookings
from services.core.errors import NotFound
from services.rules.fmt import day_label, days_label

svc = boot.services()
role = session.require_role("bookings")

# Outcomes of what was done to a booking, each kept until dismissed: (booking id, result).
OUTCOMES = ("bk_cancel_result", "bk_override_result", "bk_pay_result", "bk_link_result")


def open_booking(reference: str) -> None:
    """Show this booking (the URL names it)."""
    st.query_params.clear()
    st.query_params["ref"] = reference


def back_to_list() -> None:
    """on_click / on_change: the list again, with no row selected (the table's selection would reopen it)."""
    st.query_params.pop("ref", None)
    st.query_params.pop("pi", None)
    widgets.next_generation("bk")


# ---- search ----------------------------------------------------------------------------------------------------
def search_row() -> dict[str, Any]:
    """The filters, on every view of the page: changing one goes back to the list of what matches."""
    f1, f2, f3, f4, f5 = st.columns([2, 1.2, 1.15, 1.15, 1.5])
    text = f1.text_input(
        "Search",
        key="bk_text",
        placeholder="Reference, pi_… id, email or name",
        help="A PaymentIntent id or reference must match exactly; email and name match any part.",
        on_change=back_to_list,
    )
    rooms = {r.slug: r.name for r in svc.catalogue.rooms}
    room = f2.selectbox(
        "Room",
        [None, *rooms],
        format_func=lambda s: "All rooms" if s is None else rooms[s],
        key="bk_room",
        on_change=back_to_list,
    )
    day_from = f3.date_input("From", value=None, key="bk_from", format="YYYY-MM-DD", on_change=back_to_list)
    day_to = f4.date_input("To", value=None, key="bk_to", format="YYYY-MM-DD", on_change=back_to_list)
    statuses = f5.multiselect(
        "Status",
        [s.value for s in BookingStatus],
        format_func=labels.status_label,
        key="bk_status",
        placeholder="Any status",
        on_change=back_to_list,
    )
    return {"text": text, "room": room, "day_from": day_from, "day_to": day_to, "statuses": statuses}


# Fixed widths that add up to the content width at 1366 px with the sidebar open (no sideways scrolling).
LIST_COLUMNS = {
    "Reference": st.column_config.TextColumn(width=92),
    "Room": st.column_config.TextColumn(width=95),
    "Dates": st.column_config.TextColumn(width=125),
    "Time": st.column_config.TextColumn(width=90),
    "Customer": st.column_config.TextColumn(width=125),
    "Email": st.column_config.TextColumn(width=180),
    "Status": st.column_config.TextColumn(width=110),
    "Amount": st.column_config.TextColumn(width=72),
    "Channel": st.column_config.TextColumn(width=62),
}


def booking_list(filters: dict[str, Any]) -> None:
    """The bookings that match, to pick one from."""
    with actions.reporting("Searching"):
        rows = search_bookings(svc, limit=300, **filters)
        if not rows:
            st.info(
                "No bookings match. Clear a filter, or search part of the name or email.", icon=":material/search_off:"
            )
            return
        table = pd.DataFrame(
            [
                {
                    "Reference": r["reference"],
                    "Room": r["room"],
                    "Dates": day_label(r["first_day"]) + (f" ({r['days']} days)" if r["days"] > 1 else ""),
                    "Time": r["time"],
                    "Customer": r["customer"],
                    "Email": r["email"],
                    "Status": labels.status_label(r["status"]),
                    "Amount": labels.money(svc, r["amount_cents"]),
                    "Channel": r["channel"],
                }
                for r in rows
            ]
        )
        refs = [r["reference"] for r in rows]
        picked = widgets.selectable_table(
            table,
            key=widgets.table_key("bk_table", widgets.generation("bk"), *filters.values()),
            rows=len(rows),
            height=widgets.fit_height(len(table), 420),
            column_config=LIST_COLUMNS,
            on_pick=lambda row: open_booking(refs[row]),
        )
        st.caption(
            f"{len(rows)} booking(s){' (first 300)' if len(rows) == 300 else ''}, upcoming first, then past. "
            "Select a row to open it, or open a link ending in `?ref=RD…` or `?pi=pi_…`."
        )
    if picked is not None:  # a selection the click's callback did not see (AppTest): open it now
        open_booking(refs[picked])
        st.rerun()


def selected_id() -> int | None:
    key = st.query_params.get("ref") or st.query_params.get("pi")
    if not key:
        return None
    try:
        return find_booking_id(svc, key)
    except NotFound:
        st.warning(f"No booking matches {key!r} (from the link).", icon=":material/link_off:")
        return None


# ---- one booking -------------------------------------------------------------------------------------------------
def header(detail: BookingDetail) -> None:
    b = detail.booking
    title, back = st.columns([5, 1], vertical_alignment="center")
    title.subheader(f"{b.reference} · {detail.room_name}", anchor=False)
    back.button("Back to the list", icon=":material/arrow_back:", key="bk_back", on_click=back_to_list, width="stretch")
    widgets.status_badge(b.status)


def outcomes(detail: BookingDetail) -> None:
    """What was just done to this booking, first (seen without scrolling), each until dismissed."""
    b = detail.booking
    booking_edit.show_outcome(b)  # a correction's outcome
    booking_change.show(svc, detail)  # a change's outcome, and a change waiting for payment, with its buttons
    cancelled = st.session_state.get("bk_cancel_result")
    if cancelled and cancelled[0] == b.id:
        res = cancelled[1]
        text = f"Cancelled {days_label(res.cancelled_days)}; refunded {labels.money(svc, res.refund_cents)}."
        text += "".join(f"\n\n{problem}" for problem in res.problems)
        kind = "warning" if res.problems else "success"
        widgets.kept_outcome(kind, text, forget="bk_cancel_result", icon=":material/event_busy:")
    if asked := actions.outcome("bk_override_result", tag=b.id, doing="Override not changed"):
        widgets.kept_outcome("info", asked.message, forget="bk_override_result", icon=":material/approval:")
    if paid := actions.outcome("bk_pay_result", tag=b.id, doing="Payment not recorded"):
        text = f"Payment: {paid.outcome.replace('_', ' ')}\n\n" + "\n".join(f"- {m}" for m in paid.messages)
        widgets.kept_outcome("success" if paid.outcome == "confirmed" else "warning", text, forget="bk_pay_result")
    if link := actions.outcome("bk_link_result", tag=b.id, doing="Pay link not sent"):
        url, sent = link
        text = (
            f"Pay link emailed to **{labels.literal(b.customer_email)}**."
            if sent
            else "The mail server did not take it; the email stays in the outbox and is retried."
        )
        box = widgets.kept_outcome(
            "success" if sent else "warning", text, forget="bk_link_result", icon=":material/mark_email_read:"
        )
        box.code(url, language=None)


def customer(detail: BookingDetail) -> bool:
    """The customer line, or the form correcting it; True while the form is open."""
    b = detail.booking
    booked_room = booking_edit.room_of(svc, b)
    if detail.editable and st.session_state.get(booking_edit.FLAG) == b.id:
        booking_edit.edit_form(detail, booked_room)
        return True
    who, edit = st.columns([5, 1], vertical_alignment="center")
    who.markdown(
        # What the customer typed is shown as text, never as Markdown (a link or image in it stays inert).
        f"**{labels.literal(b.customer_name)}** · {labels.literal(b.customer_email)}"
        + (f" · {labels.literal(b.customer_phone)}" if b.customer_phone else "")
        + (f" · group of {b.party_size}" if b.party_size else "")
    )
    if detail.editable and session.may("booking.edit"):
        edit.button(
            "Edit details",
            icon=":material/edit:",
            key="bk_edit_open",
            on_click=booking_edit.open_edit,
            args=(b, booked_room),
            help="Correct the customer's name, email, phone, group size, notes or room details.",
            width="stretch",
        )
    return False


def facts(detail: BookingDetail, editing: bool) -> None:
    b = detail.booking
    st.caption(
        f"{booking_view.days_line(detail)} · {b.start_time}–{b.end_time} ({labels.tz_label(svc)}) · "
        f"{b.channel} booking by {b.created_by}, {labels.venue(svc, b.created_at)} · "
        f"PaymentIntent `{b.payment_intent_id or '—'}` · "
        + (
            f"terms {b.terms_version} accepted {labels.venue(svc, b.terms_accepted_at)}"
            if b.terms_accepted_at
            else "terms not accepted yet (asked on the pay page)"
        )
        + booking_view.deposit_fact(svc, detail)
    )
    m1, m2, m3, m4 = st.columns(4)
    if detail.changes_paid_cents:  # a change that cost more was paid with a second payment
        m1.metric(
            "Paid in all",
            labels.money(svc, b.amount_cents + detail.changes_paid_cents),
            help=f"{labels.money(svc, b.amount_cents)} at booking, "
            f"{labels.money(svc, detail.changes_paid_cents)} for changes",
        )
    else:
        m1.metric("Amount", labels.money(svc, b.amount_cents))
    m2.metric("Paid (Stripe)", labels.money(svc, detail.received_cents) if detail.payment else "—")
    m3.metric("Refunded", labels.money(svc, detail.refunded_cents))
    m4.metric("Days", f"{detail.active_days} of {len(detail.legs)} active")
    if detail.awaiting_payment and b.hold_expires_at:
        st.info(
            f"Waiting for payment; the hold ends {labels.venue(svc, b.hold_expires_at)} ({labels.tz_label(svc)}).",
            icon=":material/hourglass_top:",
        )
    if b.notes and not editing:
        st.markdown(f"**Notes:** {labels.literal(b.notes)}")
    if detail.extras and not editing:
        st.markdown(
            ", ".join(
                f"{labels.literal(str(label))}: **{labels.literal(str(value))}**" for label, value in detail.extras
            )
        )
    if detail.extras_missing:
        st.warning(
            "Details still to collect from the customer:\n\n" + "\n".join(f"- {m}" for m in detail.extras_missing),
            icon=":material/assignment_late:",
        )


def buttons(detail: BookingDetail) -> None:
    b = detail.booking
    assert b.id is not None
    booking_id = b.id
    a1, a2, a3, _ = st.columns([1, 1, 1, 2])
    if session.may("booking.cancel") and detail.cancellable:
        a1.button(
            "Cancel booking…",
            icon=":material/event_busy:",
            key="bk_cancel_open",
            on_click=booking_cancel.open_cancel,
            args=(b.id,),
        )
    booking_change.change_button(a2, svc, detail)  # a paid booking (never awaiting payment: a2 is free)
    on_invoice = detail.awaiting_payment and invoice_of(svc, booking_id) is not None  # paid on Stripe's invoice page
    if svc.settings.is_sandbox and session.may("booking.record_payment") and detail.awaiting_payment:
        a2.button(
            "Organisation paid" if on_invoice else "Customer paid",
            icon=":material/credit_score:",
            key="bk_pay",
            on_click=actions.perform,
            args=("bk_pay_result", lambda: actions.desk().record_payment(booking_id)),
            kwargs={"tag": b.id},
            help="Sandbox: pay the invoice with a test card and confirm the booking."
            if on_invoice
            else "Sandbox: pay with a test card and confirm the booking.",
        )
    if session.may("booking.send_pay_link") and detail.awaiting_payment and not on_invoice:
        a3.button(
            "Email pay link",
            icon=":material/forward_to_inbox:",
            key="bk_send_link",
            on_click=actions.perform,
            args=("bk_link_result", lambda: actions.desk().send_pay_link(booking_id)),
            kwargs={"tag": b.id},
            help="Emails the customer a link to the pay page (policy, terms, card payment).",
        )
    if st.session_state.get(booking_cancel.FLAG) == b.id:
        widgets.flag_dialog(
            booking_cancel.FLAG, "Cancel booking", booking_cancel.cancel_dialog, svc, detail, width="large"
        )


def show_booking(booking_id: int) -> None:
    detail: BookingDetail | None = None
    with actions.reporting("Loading the booking"):
        detail = booking_detail(svc, booking_id)
    if detail is None:
        return
    header(detail)
    outcomes(detail)
    editing = customer(detail)
    facts(detail, editing)
    buttons(detail)
    booking_view.invoice(svc, detail)  # an unpaid invoice is what staff act on first
    booking_view.days(svc, detail)
    booking_view.payment(svc, detail)
    booking_view.deposit(svc, detail)
    booking_view.refunds(svc, detail)
    booking_view.overrides(svc, detail, role)
    booking_view.emails(svc, detail)
    booking_view.timeline(svc, detail)


# ---- page ------------------------------------------------------------------------------------------------------
st.title("Bookings")
filters = search_row()
if (opened := selected_id()) is None:
    booking_list(filters)
else:
    show_booking(opened)
