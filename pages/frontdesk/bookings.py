"""Bookings: find a booking (PaymentIntent id, reference, email, name, room, dates, status) and see everything about
it — days, live payment and calendar state, refunds, emails, audit trail — and cancel it, by the policy or, with
"Refund more than the policy", as a request that waits for a manager's and a finance approval (pages/finance/
approvals.py).

`?pi=pi_…` or `?ref=RD…` opens a booking directly; selecting a row puts its reference in the URL, so the address
bar is always a link to what is on screen.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from models.tables import BookingStatus
from pages.frontdesk import booking_cancel, booking_change, booking_edit, booking_view
from pages.ui import actions, boot, labels, session, widgets
from services.booking.queries import BookingDetail, booking_detail, find_booking_id, search_bookings
from services.core.errors import NotFound
from services.rules.fmt import day_label, days_label

svc = boot.services()
role = session.require_role("bookings")

st.title("Bookings")

# ---- search ----------------------------------------------------------------------------------------------------
f1, f2, f3, f4, f5 = st.columns([2, 1.2, 1.15, 1.15, 1.5])
text = f1.text_input(
    "Search",
    key="bk_text",
    placeholder="Reference, pi_… id, email or name",
    help="A PaymentIntent id or reference must match exactly; email and name match any part.",
)
rooms = {r.slug: r.name for r in svc.catalogue.rooms}
room = f2.selectbox("Room", [None, *rooms], format_func=lambda s: "All rooms" if s is None else rooms[s], key="bk_room")
day_from = f3.date_input("From", value=None, key="bk_from", format="YYYY-MM-DD")
day_to = f4.date_input("To", value=None, key="bk_to", format="YYYY-MM-DD")
statuses = f5.multiselect(
    "Status",
    [s.value for s in BookingStatus],
    format_func=labels.status_label,
    key="bk_status",
    placeholder="Any status",
)

with actions.reporting("Searching"):
    rows = search_bookings(svc, text=text, room=room, day_from=day_from, day_to=day_to, statuses=statuses, limit=300)
    if not rows:
        st.info("No bookings match. Clear a filter, or search part of the name or email.", icon=":material/search_off:")
    else:
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
        picked = widgets.selectable_table(
            table,
            key=widgets.table_key("bk_table", text, room, day_from, day_to, statuses),
            rows=len(rows),
            height=widgets.fit_height(len(table), 360),
        )
        st.caption(
            f"{len(rows)} booking(s){' (first 300)' if len(rows) == 300 else ''}, upcoming first, then past. "
            "Select a row to open it."
        )
        if picked is not None:
            ref = rows[picked]["reference"]
            if st.query_params.get("ref") != ref or "pi" in st.query_params:
                st.query_params.clear()
                st.query_params["ref"] = ref


# ---- which booking ---------------------------------------------------------------------------------------------
def _selected_id() -> int | None:
    key = st.query_params.get("ref") or st.query_params.get("pi")
    if not key:
        return None
    try:
        return find_booking_id(svc, key)
    except NotFound:
        st.warning(f"No booking matches {key!r} (from the link).", icon=":material/link_off:")
        return None


booking_id = _selected_id()
if booking_id is None:
    st.caption("Open a booking by selecting a row, or with a link ending in `?ref=RD…` or `?pi=pi_…`.")
    st.stop()

detail: BookingDetail | None = None
with actions.reporting("Loading the booking"):
    detail = booking_detail(svc, booking_id)
if detail is None:
    st.stop()
b = detail.booking
assert b.id is not None

# ---- header ----------------------------------------------------------------------------------------------------
st.divider()
st.subheader(f"{b.reference} · {detail.room_name}", anchor=False)
widgets.status_badge(b.status)
booking_edit.show_outcome(b)  # a correction's outcome first: seen without scrolling
booking_change.show(svc, detail)  # a change's outcome, and a change waiting for payment, with its buttons
booked_room = booking_edit.room_of(svc, b)
editing = detail.editable and st.session_state.get(booking_edit.FLAG) == b.id
if editing:
    booking_edit.edit_form(detail, booked_room)
else:
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
        )
st.caption(
    f"{days_label([leg.day for leg in detail.legs])} · {b.start_time}–{b.end_time} ({labels.tz_label(svc)}) · "
    f"{b.channel} booking by {b.created_by}, {labels.venue(svc, b.created_at)} · "
    f"PaymentIntent `{b.payment_intent_id or '—'}` · "
    + (
        f"terms {b.terms_version} accepted {labels.venue(svc, b.terms_accepted_at)}"
        if b.terms_accepted_at
        else "terms not accepted yet (asked on the pay page)"
    )
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
        ", ".join(f"{labels.literal(str(label))}: **{labels.literal(str(value))}**" for label, value in detail.extras)
    )
if detail.extras_missing:
    st.warning(
        "Details still to collect from the customer:\n\n" + "\n".join(f"- {m}" for m in detail.extras_missing),
        icon=":material/assignment_late:",
    )

# ---- outcomes of what was done to this booking (shown once, after the dialog closed) -------------------------------
cancelled = st.session_state.get("bk_cancel_result")
if cancelled and cancelled[0] == b.id:
    res = cancelled[1]
    st.success(
        f"Cancelled {days_label(res.cancelled_days)}; refunded {labels.money(svc, res.refund_cents)}.",
        icon=":material/event_busy:",
    )
    for problem in res.problems:
        st.warning(problem)
if asked := actions.outcome("bk_override_result", tag=b.id, doing="Override not changed"):
    st.info(asked.message, icon=":material/approval:")
if paid := actions.outcome("bk_pay_result", tag=b.id, doing="Payment not recorded"):
    text = f"Payment: {paid.outcome.replace('_', ' ')}\n\n" + "\n".join(f"- {m}" for m in paid.messages)
    (st.success if paid.outcome == "confirmed" else st.warning)(text)

# ---- actions ---------------------------------------------------------------------------------------------------
may_cancel = session.may("booking.cancel")
a1, a2, a3, _ = st.columns([1, 1, 1, 2])
if may_cancel and detail.cancellable:
    a1.button(
        "Cancel booking…",
        icon=":material/event_busy:",
        key="bk_cancel_open",
        on_click=booking_cancel.open_cancel,
        args=(b.id,),
    )
booking_change.change_button(a2, svc, detail)  # a paid booking (never awaiting payment: a2 is free)
if svc.settings.is_sandbox and session.may("booking.record_payment") and detail.awaiting_payment:
    a2.button(
        "Customer paid",
        icon=":material/credit_score:",
        key="bk_pay",
        on_click=actions.perform,
        args=("bk_pay_result", lambda: actions.desk().record_payment(booking_id)),
        kwargs={"tag": b.id},
        help="Sandbox: pay with a test card and confirm the booking.",
    )
if session.may("booking.send_pay_link") and detail.awaiting_payment:
    a3.button(
        "Email pay link",
        icon=":material/forward_to_inbox:",
        key="bk_send_link",
        on_click=actions.perform,
        args=("bk_link_result", lambda: actions.desk().send_pay_link(booking_id)),
        kwargs={"tag": b.id},
        help="Emails the customer a link to the pay page (policy, terms, card payment).",
    )
if link := actions.outcome("bk_link_result", tag=b.id, doing="Pay link not sent"):
    url, sent = link
    if sent:
        st.success(f"Pay link emailed to **{labels.literal(b.customer_email)}**.", icon=":material/mark_email_read:")
    else:
        st.warning("The mail server did not take it; the email stays in the outbox and is retried.")
    st.code(url, language=None)
if st.session_state.get(booking_cancel.FLAG) == b.id:
    widgets.flag_dialog(booking_cancel.FLAG, "Cancel booking", booking_cancel.cancel_dialog, svc, detail, width="large")

# ---- the rest of the booking -----------------------------------------------------------------------------------
booking_view.days(svc, detail)
booking_view.payment(svc, detail)
booking_view.refunds(svc, detail)
booking_view.overrides(svc, detail, role)
booking_view.emails(svc, detail)
booking_view.timeline(svc, detail)
