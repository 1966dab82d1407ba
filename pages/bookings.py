"""Bookings: find a booking (PaymentIntent id, reference, email, name, room, dates, status) and see everything about
it — days, live payment and calendar state, refunds, emails, audit trail — and cancel it, by the policy or, with
"Refund more than the policy", as a request that waits for a manager's and a finance approval (pages/approvals.py).

`?pi=pi_…` or `?ref=RD…` opens a booking directly; selecting a row puts its reference in the URL, so the address
bar is always a link to what is on screen.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import streamlit as st

from models.tables import BookingLeg, BookingStatus, LegState
from pages import _ui as ui
from services.booking import cancellation_quote, find_booking_id
from services.booking.queries import BookingDetail, booking_detail, booking_timeline, search_bookings
from services.core.context import Services
from services.core.errors import DomainError, NotFound
from services.finance import overrides, receipts
from services.reconciliation.findings import last_sync
from services.rules.fmt import day_label
from services.rules.refunds import LegRefund

ui.run_through_app()
svc = ui.services()
role = ui.require_role("bookings")
settings = svc.settings

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
    "Status", [s.value for s in BookingStatus], format_func=ui.status_label, key="bk_status", placeholder="Any status"
)

with ui.reporting("Searching"):
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
                    "Status": ui.status_label(r["status"]),
                    "Amount": ui.money(svc, r["amount_cents"]),
                    "Channel": r["channel"],
                }
                for r in rows
            ]
        )
        # The key follows the filters: a new result set starts with no row selected, so a remembered row number
        # can never point at a different booking.
        digest = hashlib.sha1(
            json.dumps([text, room, str(day_from), str(day_to), statuses]).encode(), usedforsecurity=False
        ).hexdigest()[:10]
        event = st.dataframe(
            table,
            hide_index=True,
            on_select="rerun",
            selection_mode="single-row",
            key=f"bk_table_{digest}",
            height=min(38 + 35 * len(table), 360),
        )
        st.caption(
            f"{len(rows)} booking(s){' (first 300)' if len(rows) == 300 else ''}, upcoming first, then past. "
            "Select a row to open it."
        )
        picked = event.selection.rows if event is not None else []
        if picked:
            ref = rows[picked[0]]["reference"]
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


# ---- actions ---------------------------------------------------------------------------------------------------
def _open_cancel(booking_id: int) -> None:
    # A session-state flag, not the button's return value, opens the dialog: it must survive the rerun its own
    # buttons cause (see REFERENCE.md, AppTest and dialogs).
    st.session_state["bk_cancel_for"] = booking_id
    st.session_state.pop("bk_cancel_result", None)


def _paid(svc: Services, booking_id: int, actor: str) -> None:
    try:
        st.session_state["bk_pay_result"] = (booking_id, ui.desk().record_payment(booking_id))
    except DomainError as exc:
        st.session_state["bk_pay_result"] = (booking_id, exc)


def _send_link(svc: Services, booking_id: int, actor: str) -> None:
    try:
        st.session_state["bk_link_result"] = (booking_id, ui.desk().send_pay_link(booking_id))
    except DomainError as exc:
        st.session_state["bk_link_result"] = (booking_id, exc)


def _close_cancel() -> None:
    st.session_state.pop("bk_cancel_for", None)


@st.dialog("Cancel booking", width="large", on_dismiss=_close_cancel)
def cancel_dialog(detail: BookingDetail) -> None:
    b = detail.booking
    assert b.id is not None
    st.markdown(f"**{b.reference}** — {detail.room_name}, {b.customer_name}")
    unpaid = b.status == BookingStatus.AWAITING_PAYMENT
    with ui.reporting("Working out the refund"):
        quotes = cancellation_quote(svc, b.id)
        if not quotes:
            st.info("Nothing left to cancel: every day is already cancelled, refunded or over.")
            if st.button("Close"):
                st.session_state.pop("bk_cancel_for", None)
                st.rerun()
            return
        leg_ids: list[int] | None = None
        if not unpaid and len(quotes) > 1:
            chosen = st.multiselect(
                "Days to cancel",
                [leg.id for leg, _ in quotes],
                default=[leg.id for leg, _ in quotes],
                key="bk_cancel_days",
                format_func=lambda i: next(day_label(leg.day) for leg, _ in quotes if leg.id == i),
            )
            leg_ids = [i for i in chosen if i is not None]
            quotes = [(leg, q) for leg, q in quotes if leg.id in leg_ids]
        rows = [
            {
                "Day": day_label(leg.day),
                "Starts in": _notice(q.hours_before),
                "Policy band": q.band,
                "Paid": ui.money(svc, q.paid_cents),
                "Already refunded": ui.money(svc, q.already_refunded_cents),
                "Refund now": ui.money(svc, q.refund_cents),
            }
            for leg, q in quotes
        ]
        if unpaid:  # nothing was paid: the refund columns would only say $0.00 under a misleading "100 %"
            rows = [{"Day": r["Day"], "Starts in": r["Starts in"]} for r in rows]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        policy_text = (b.policy_snapshot or {}).get("text", "")
        if unpaid:
            st.caption("Not paid yet: cancelling releases the hold and cancels the payment request. No refund.")
        elif policy_text:
            st.caption(
                f"Policy sold with this booking ({(b.policy_snapshot or {}).get('version', '?')}): {policy_text}"
            )
        total = sum(q.refund_cents for _, q in quotes)
        chosen_ids = [leg.id for leg, _ in quotes if leg.id is not None]
        clashes = []
        if not unpaid:
            for waiting in overrides.list_overrides(svc, booking_id=b.id, statuses=overrides.OPEN):
                if set(waiting.row.leg_ids) & set(chosen_ids):
                    clashes.append(waiting.id)
                    st.warning(
                        f"Override #{waiting.id} (refund {ui.money(svc, waiting.row.requested_refund_cents)} for "
                        f"{ui.days_label(waiting.days)}) is waiting for approval: cancelling here by the policy "
                        "would make it fail.",
                        icon=":material/approval:",
                    )
        more = not unpaid and st.toggle(
            "Refund more than the policy",
            key="bk_override_on",
            help="Needs two approvals from two different people, a manager and a finance person. Nothing is "
            "cancelled or refunded until both have approved.",
        )
        if more:
            _override_form(b.id, quotes, total, blocked=bool(clashes))
            return
        reason = st.text_input("Reason", value="Customer asked to cancel", key="bk_cancel_reason")
        c1, c2 = st.columns(2)
        label = (
            f"Cancel {len(quotes)} day(s) and refund {ui.money(svc, total)}"
            if not unpaid
            else "Cancel the unpaid booking"
        )
        go = c1.button(label, type="primary", disabled=not quotes, key="bk_cancel_go")
        if c2.button("Keep the booking", key="bk_cancel_keep"):
            st.session_state.pop("bk_cancel_for", None)
            st.rerun()
        if go:
            try:
                st.session_state["bk_cancel_result"] = (
                    b.id,
                    ui.desk().cancel_booking(b.id, leg_ids=None if unpaid else leg_ids, reason=reason),
                )
            except DomainError as exc:
                ui.show_error(exc, doing="Not cancelled")
                return
            st.session_state.pop("bk_cancel_for", None)
            st.rerun()


def _override_form(
    booking_id: int, quotes: list[tuple[BookingLeg, LegRefund]], policy_cents: int, *, blocked: bool
) -> None:
    """Ask for a refund above the policy: creates a pending override (services/finance/overrides.py) instead of
    cancelling."""
    left = sum(max(q.paid_cents - q.already_refunded_cents, 0) for _, q in quotes)
    ids = [leg.id for leg, _ in quotes if leg.id is not None]
    # Keyed by the days: their refundable total is the input's maximum, and a kept value above a new maximum fails.
    dollars = st.number_input(
        f"Refund in {settings.currency} (dollars)",
        min_value=0.0,
        max_value=left / 100,
        value=left / 100,
        step=5.0,
        format="%.2f",
        key=f"bk_override_amount_{'-'.join(map(str, ids))}",
        help=f"Up to {ui.money(svc, left)}: what was paid for these days less what was already refunded.",
    )
    cents = round(dollars * 100)
    why = st.text_area(
        "Why more than the policy",
        key="bk_override_reason",
        max_chars=overrides.MAX_TEXT,
        placeholder="e.g. The customer's flight was cancelled; the manager agreed on the phone",
        help="The approvers decide on this; it is kept with the refund.",
    )
    extra = cents - policy_cents
    st.caption(
        f"The policy gives {ui.money(svc, policy_cents)}"
        + (f"; this asks {ui.money(svc, extra)} more." if extra > 0 else ".")
        + " It then waits on **Refund approvals** for a manager and a finance approval; the second approval cancels "
        "the days and refunds at once."
    )
    c1, c2 = st.columns(2)
    ask = c1.button(
        f"Ask for approval to refund {ui.money(svc, cents)}",
        type="primary",
        key="bk_override_go",
        disabled=blocked,
        help="These days already have an override waiting: withdraw or reject it first." if blocked else None,
    )
    if c2.button("Keep the booking", key="bk_override_keep"):
        st.session_state.pop("bk_cancel_for", None)
        st.rerun()
    if ask:
        try:
            outcome = ui.desk().request_override(booking_id, leg_ids=ids, refund_cents=cents, reason=why)
        except DomainError as exc:
            ui.show_error(exc, doing="Not sent for approval")
            return
        st.session_state["bk_override_result"] = (booking_id, outcome)
        st.session_state.pop("bk_cancel_for", None)
        st.session_state.pop("bk_override_on", None)
        st.rerun()


def _withdraw(override_id: int, booking_id: int) -> None:
    try:
        outcome: overrides.OverrideOutcome | DomainError = ui.desk().withdraw_override(override_id)
    except DomainError as exc:
        outcome = exc
    st.session_state["bk_override_result"] = (booking_id, outcome)


def _notice(hours: float) -> str:
    if hours < 0:
        return "already started"
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.0f} h"


# ---- detail ----------------------------------------------------------------------------------------------------
LIVE_STATES = {LegState.CONFIRMED, LegState.IN_PROGRESS, LegState.COMPLETED}
detail: BookingDetail | None = None
with ui.reporting("Loading the booking"):
    detail = booking_detail(svc, booking_id)
if detail is None:
    st.stop()
b = detail.booking
payment = detail.payment or {}
charge = payment.get("latest_charge") if isinstance(payment.get("latest_charge"), dict) else {}

st.divider()
st.subheader(f"{b.reference} · {detail.room_name}", anchor=False)
ui.status_badge(b.status)
st.markdown(
    f"**{b.customer_name}** · {b.customer_email}"
    + (f" · {b.customer_phone}" if b.customer_phone else "")
    + (f" · group of {b.party_size}" if b.party_size else "")
)
st.caption(
    f"{ui.days_label([leg.day for leg in detail.legs])} · {b.start_time}–{b.end_time} ({ui.tz_label(svc)}) · "
    f"{b.channel} booking by {b.created_by}, {ui.venue(svc, b.created_at)} · "
    f"PaymentIntent `{b.payment_intent_id or '—'}` · "
    + (
        f"terms {b.terms_version} accepted {ui.venue(svc, b.terms_accepted_at)}"
        if b.terms_accepted_at
        else "terms not accepted yet (asked on the pay page)"
    )
)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Amount", ui.money(svc, b.amount_cents))
m2.metric("Paid (Stripe)", ui.money(svc, payment.get("amount_received", 0)) if payment else "—")
m3.metric("Refunded", ui.money(svc, detail.refunded_cents))
m4.metric("Days", f"{sum(leg.state in LIVE_STATES for leg in detail.legs)} of {len(detail.legs)} active")

if b.status == BookingStatus.AWAITING_PAYMENT and b.hold_expires_at:
    st.info(
        f"Waiting for payment; the hold ends {ui.venue(svc, b.hold_expires_at)} ({ui.tz_label(svc)}).",
        icon=":material/hourglass_top:",
    )
if b.notes:
    st.markdown(f"**Notes:** {b.notes}")
try:
    room = svc.catalogue.room(b.room_slug)
except DomainError:
    room = None
if room is not None and room.extras:
    shown = ", ".join(f"{f.label}: **{b.extras[f.key]}**" for f in room.extras if f.key in b.extras)
    missing = room.validate_extras(b.extras)[1]
    if shown:
        st.markdown(shown)
    if missing:
        st.warning(
            "Details still to collect from the customer:\n\n" + "\n".join(f"- {m}" for m in missing),
            icon=":material/assignment_late:",
        )

# Results of an action taken on this booking (shown once, after the dialog closed).
done = st.session_state.get("bk_cancel_result")
if done and done[0] == b.id:
    res = done[1]
    st.success(
        f"Cancelled {ui.days_label(res.cancelled_days)}; refunded {ui.money(svc, res.refund_cents)}.",
        icon=":material/event_busy:",
    )
    for problem in res.problems:
        st.warning(problem)
asked = st.session_state.get("bk_override_result")
if asked and asked[0] == b.id:
    if isinstance(asked[1], DomainError):
        ui.show_error(asked[1], doing="Override not changed")
    else:
        st.info(asked[1].message, icon=":material/approval:")
paid_result = st.session_state.get("bk_pay_result")
if paid_result and paid_result[0] == b.id:
    outcome = paid_result[1]
    if isinstance(outcome, DomainError):
        ui.show_error(outcome, doing="Payment not recorded")
    else:
        text = f"Payment: {outcome.outcome.replace('_', ' ')}\n\n" + "\n".join(f"- {m}" for m in outcome.messages)
        (st.success if outcome.outcome == "confirmed" else st.warning)(text)

can_cancel = role in ui.CAN_CANCEL and b.status in (
    BookingStatus.AWAITING_PAYMENT,
    BookingStatus.CONFIRMED,
    BookingStatus.PARTLY_CANCELLED,
)
a1, a2, a3, _ = st.columns([1, 1, 1, 2])
if can_cancel:
    a1.button(
        "Cancel booking…", icon=":material/event_busy:", key="bk_cancel_open", on_click=_open_cancel, args=(b.id,)
    )
if settings.is_sandbox and role in ui.CAN_CANCEL and b.status == BookingStatus.AWAITING_PAYMENT:
    a2.button(
        "Customer paid",
        icon=":material/credit_score:",
        key="bk_pay",
        on_click=_paid,
        args=(svc, b.id, ui.actor()),
        help="Sandbox: pay with a test card and confirm the booking.",
    )
if role in ui.CAN_CANCEL and b.status == BookingStatus.AWAITING_PAYMENT:
    a3.button(
        "Email pay link",
        icon=":material/forward_to_inbox:",
        key="bk_send_link",
        on_click=_send_link,
        args=(svc, b.id, ui.actor()),
        help="Emails the customer a link to the pay page (policy, terms, card payment).",
    )
link_result = st.session_state.get("bk_link_result")
if link_result and link_result[0] == b.id:
    if isinstance(link_result[1], DomainError):
        ui.show_error(link_result[1], doing="Pay link not sent")
    else:
        url, sent = link_result[1]
        if sent:
            st.success(f"Pay link emailed to **{b.customer_email}**.", icon=":material/mark_email_read:")
        else:
            st.warning("The mail server did not take it; the email stays in the outbox and is retried.")
        st.code(url, language=None)
if st.session_state.get("bk_cancel_for") == b.id:
    cancel_dialog(detail)

# ---- days ------------------------------------------------------------------------------------------------------


def _event_state(leg: BookingLeg) -> str:
    """What the room's calendar says about this day, compared with what it should say."""
    if not leg.event_id:
        return "✗ missing" if leg.state in LIVE_STATES else "— none"
    event = detail.events.get(leg.id) if detail else None
    if event is None:
        return "✗ missing"
    if event.get("status") == "cancelled":
        return "deleted" if leg.state not in LIVE_STATES else "✗ deleted (should be there)"
    return "✓ on calendar" if leg.state in LIVE_STATES else "⚠ still on calendar"


st.markdown("#### Days")
st.dataframe(
    pd.DataFrame(
        [
            {
                "Day": day_label(leg.day),
                "Time": f"{ui.venue(svc, leg.starts_at, with_day=False)}–{ui.venue(svc, leg.ends_at, with_day=False)}",
                "State": leg.state.replace("_", " ").capitalize(),
                "Price": ui.money(svc, leg.price_cents),
                "Refunded": ui.money(svc, leg.refunded_cents),
                "Calendar event": _event_state(leg),
                "Event id": leg.event_id or "—",
            }
            for leg in detail.legs
        ]
    ),
    hide_index=True,
    width="stretch",
)
for problem in detail.event_errors:
    st.warning(f"Calendar could not be checked — {problem}")
leftover = [leg for leg in detail.legs if _event_state(leg).startswith(("⚠", "✗"))]
if leftover:
    st.warning(
        f"The room calendar does not match {ui.days_label([leg.day for leg in leftover])}: an event is "
        "missing for a booked day, or still there for a day that is not booked.",
        icon=":material/event_busy:",
    )

# ---- payment ---------------------------------------------------------------------------------------------------
st.markdown("#### Payment (live from Stripe)")
stripe_refunded = int((charge or {}).get("amount_refunded", 0))
if detail.payment_error:
    st.warning(f"Stripe could not be asked: {detail.payment_error}")
elif not payment:
    st.caption("No payment was started for this booking.")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Status": str(payment.get("status", "—")).replace("_", " "),
                    "Amount": ui.money(svc, payment.get("amount")),
                    "Received": ui.money(svc, payment.get("amount_received")),
                    "Refunded": ui.money(svc, stripe_refunded),
                    "Charge": (charge or {}).get("id", "—"),
                    "Created": ui.venue_from_epoch(svc, payment.get("created")),
                }
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    if (charge or {}).get("disputed"):
        st.error("The customer's bank has disputed this charge.", icon=":material/gavel:")
    if payment.get("amount_received") and detail.refunded_cents != stripe_refunded:
        st.warning(
            f"Room Desk recorded {ui.money(svc, detail.refunded_cents)} of refunds but Stripe shows "
            f"{ui.money(svc, stripe_refunded)}.",
            icon=":material/sync_problem:",
        )
    kept = int(payment.get("amount_received") or 0) - stripe_refunded
    if b.status == BookingStatus.FAILED and kept > 0:
        # A failed booking is always refunded in full by the saga; money still held means that refund failed.
        st.error(
            f"This booking failed but {ui.money(svc, kept)} of the customer's money has not been refunded.",
            icon=":material/money_off:",
        )

st.markdown("#### Refunds")
if detail.refunds:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "When": ui.venue(svc, r.created_at),
                    "Amount": ui.money(svc, r.amount_cents),
                    "Why": r.origin.replace("_", " "),
                    "Reason": r.reason,
                    "By": r.actor,
                    "Refund id": r.refund_id,
                }
                for r in detail.refunds
            ]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("No refunds.")

# Receipts (PDF), made when the button is clicked (a callable: nothing is rendered on every rerun).
if payment.get("amount_received"):
    r1, *rcols = st.columns(min(len(detail.refunds), 4) + 2)
    r1.download_button(
        "Receipt (PDF)",
        data=lambda: receipts.booking_receipt_pdf(svc, b.id)[1],
        file_name=f"receipt-{b.reference}.pdf",
        mime="application/pdf",
        icon=":material/receipt:",
        key="bk_receipt",
        on_click="ignore",
        help="The customer's receipt: days, price, payment, refunds so far.",
    )
    for n, (col, refund) in enumerate(zip(rcols, detail.refunds, strict=False), start=1):
        col.download_button(
            f"Refund receipt {n} ({ui.money(svc, refund.amount_cents)})",
            data=lambda rid=refund.id: receipts.refund_receipt_pdf(svc, rid)[1],
            file_name=f"refund-{b.reference}-{n}.pdf",
            mime="application/pdf",
            icon=":material/receipt_long:",
            key=f"bk_refund_receipt_{refund.id}",
            on_click="ignore",
        )

booking_overrides = overrides.list_overrides(svc, booking_id=b.id)
if booking_overrides:
    st.markdown("#### Refunds above the policy")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "#": o.id,
                    "Days": ui.days_label(o.days),
                    "Policy": ui.money(svc, o.row.policy_refund_cents),
                    "Requested": ui.money(svc, o.row.requested_refund_cents),
                    "Status": overrides.status_text(o.row),
                    "Asked by": f"{o.row.requested_by}, {ui.venue(svc, o.row.requested_at)}",
                    "Approved by": ", ".join(filter(None, (o.row.manager_approved_by, o.row.finance_approved_by)))
                    or "—",
                    "Reason": o.row.reason,
                }
                for o in booking_overrides
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    if role in ui.PAGE_ROLES["approvals"] and any(o.row.status in overrides.OPEN for o in booking_overrides):
        st.caption("Approve or reject them on [Refund approvals](/approvals).")
    for o in booking_overrides:
        if o.row.status == "pending" and o.row.requested_by == ui.actor():
            st.button(
                f"Withdraw override #{o.id}",
                key=f"bk_withdraw_{o.id}",
                on_click=_withdraw,
                args=(o.id, b.id),
                help="Take your request back; nothing is cancelled or refunded.",
            )

# ---- emails ----------------------------------------------------------------------------------------------------
st.markdown("#### Emails")
if detail.emails:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Queued": ui.venue(svc, e.created_at),
                    "Kind": e.kind.replace("_", " "),
                    "To": e.to,
                    "Subject": e.subject,
                    "Status": e.status,
                    "Sent": ui.venue(svc, e.sent_at),
                    "Attempts": e.attempts,
                    "Error": e.last_error or "",
                }
                for e in detail.emails
            ]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("No emails.")

# ---- timeline --------------------------------------------------------------------------------------------------
st.markdown(f"#### Timeline ({ui.tz_label(svc)})")
# Every surface in one list: Stripe's events and the calendar's changes (from the last sync), our audit trail and
# the emails. A static table: the details wrap instead of being cut off; a booking's history is a few dozen rows.
with ui.reporting("Loading the timeline"):
    ui.show_history(svc, detail, booking_timeline(svc, b.id), key=f"bk_sources_{b.id}")
    synced = last_sync(svc)
    st.caption(
        "Stripe and calendar rows are as of the last sync, "
        + (f"{ui.ago(svc, synced)}." if synced else "which has not run yet: only Room Desk's own rows show.")
    )
st.caption(f"Booking id {b.id} · last change {ui.venue(svc, b.updated_at)}")
