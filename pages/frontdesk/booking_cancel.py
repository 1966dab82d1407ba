"""The Bookings page's Cancel dialog: the days to cancel with what the policy refunds for each, and — with "Refund
more than the policy" — a request for a larger refund that waits for two approvals (pages/finance/approvals.py).
Opened from the `bk_cancel_for` flag (widgets.flag_dialog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from pages.ui import actions, labels, widgets
from services.booking.quotes import cancellation_quote
from services.core.errors import DomainError
from services.finance import override_queries
from services.rules.fmt import day_label, days_label, notice_label

if TYPE_CHECKING:
    from models.tables import BookingLeg
    from services.booking.queries import BookingDetail
    from services.core.context import Services
    from services.rules.refunds import LegRefund

FLAG = "bk_cancel_for"


def open_cancel(booking_id: int) -> None:
    widgets.open_flag(FLAG, booking_id, forget=("bk_cancel_result",))


def cancel_dialog(svc: Services, detail: BookingDetail) -> None:
    b = detail.booking
    assert b.id is not None
    st.markdown(f"**{b.reference}** — {detail.room_name}, {labels.literal(b.customer_name)}")
    unpaid = detail.awaiting_payment
    with actions.reporting("Working out the refund"):
        quotes = cancellation_quote(svc, b.id)
        if not quotes:
            st.info("Nothing left to cancel: every day is already cancelled, refunded or over.")
            if st.button("Close"):
                widgets.close_flag(FLAG)
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
        _quote_table(svc, quotes, unpaid=unpaid)
        policy = b.policy_snapshot or {}
        if unpaid:
            st.caption("Not paid yet: cancelling releases the hold and cancels the payment request. No refund.")
        elif policy.get("text"):
            st.caption(f"Policy sold with this booking ({policy.get('version', '?')}): {policy['text']}")
        total = sum(q.refund_cents for _, q in quotes)
        clashes = [] if unpaid else override_queries.open_on_days(svc, b.id, [leg.id for leg, _ in quotes if leg.id])
        for waiting in clashes:
            st.warning(
                f"Override #{waiting.id} (refund {labels.money(svc, waiting.row.requested_refund_cents)} for "
                f"{days_label(waiting.days)}) is waiting for approval: cancelling here by the policy would make it "
                "fail.",
                icon=":material/approval:",
            )
        more = not unpaid and st.toggle(
            "Refund more than the policy",
            key="bk_override_on",
            help="Needs two approvals from two different people, a manager and a finance person. Nothing is "
            "cancelled or refunded until both have approved.",
        )
        if more:
            _override_form(svc, b.id, quotes, total, blocked=bool(clashes))
            return
        reason = st.text_input("Reason", value="Customer asked to cancel", key="bk_cancel_reason")
        c1, c2 = st.columns(2)
        label = (
            "Cancel the unpaid booking"
            if unpaid
            else f"Cancel {len(quotes)} day(s) and refund {labels.money(svc, total)}"
        )
        go = c1.button(label, type="primary", disabled=not quotes, key="bk_cancel_go")
        if c2.button("Keep the booking", key="bk_cancel_keep"):
            widgets.close_flag(FLAG)
            st.rerun()
        if go:
            try:
                done = actions.desk().cancel_booking(b.id, leg_ids=None if unpaid else leg_ids, reason=reason)
            except DomainError as exc:
                actions.show_error(exc, doing="Not cancelled")
                return
            st.session_state["bk_cancel_result"] = (b.id, done)
            widgets.close_flag(FLAG)
            st.rerun()


def _quote_table(svc: Services, quotes: list[tuple[BookingLeg, LegRefund]], *, unpaid: bool) -> None:
    rows = [
        {
            "Day": day_label(leg.day),
            "Starts in": notice_label(q.hours_before),
            "Policy band": q.band,
            "Paid": labels.money(svc, q.paid_cents),
            "Already refunded": labels.money(svc, q.already_refunded_cents),
            "Refund now": labels.money(svc, q.refund_cents),
        }
        for leg, q in quotes
    ]
    if unpaid:  # nothing was paid: the refund columns would only say $0.00 under a misleading "100 %"
        rows = [{"Day": r["Day"], "Starts in": r["Starts in"]} for r in rows]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _override_form(
    svc: Services, booking_id: int, quotes: list[tuple[BookingLeg, LegRefund]], policy_cents: int, *, blocked: bool
) -> None:
    """Ask for a refund above the policy: creates a pending override (services/finance/overrides.py) instead of
    cancelling."""
    left = sum(q.left_cents for _, q in quotes)
    ids = [leg.id for leg, _ in quotes if leg.id is not None]
    # Keyed by the days: their refundable total is the input's maximum, and a kept value above a new maximum fails.
    dollars = st.number_input(
        f"Refund in {svc.settings.currency} (dollars)",
        min_value=0.0,
        max_value=left / 100,
        value=left / 100,
        step=5.0,
        format="%.2f",
        key=f"bk_override_amount_{'-'.join(map(str, ids))}",
        help=f"Up to {labels.money(svc, left)}: what was paid for these days less what was already refunded.",
    )
    cents = round(dollars * 100)
    why = st.text_area(
        "Why more than the policy",
        key="bk_override_reason",
        max_chars=override_queries.MAX_TEXT,
        placeholder="e.g. The customer's flight was cancelled; the manager agreed on the phone",
        help="The approvers decide on this; it is kept with the refund.",
    )
    extra = cents - policy_cents
    st.caption(
        f"The policy gives {labels.money(svc, policy_cents)}"
        + (f"; this asks {labels.money(svc, extra)} more." if extra > 0 else ".")
        + " It then waits on **Approvals** for a manager and a finance approval; the second approval cancels "
        "the days and refunds at once."
    )
    c1, c2 = st.columns(2)
    ask = c1.button(
        f"Ask for approval to refund {labels.money(svc, cents)}",
        type="primary",
        key="bk_override_go",
        disabled=blocked,
        help="These days already have an override waiting: withdraw or reject it first." if blocked else None,
    )
    if c2.button("Keep the booking", key="bk_override_keep"):
        widgets.close_flag(FLAG)
        st.rerun()
    if ask:
        try:
            asked = actions.desk().request_override(booking_id, leg_ids=ids, refund_cents=cents, reason=why)
        except DomainError as exc:
            actions.show_error(exc, doing="Not sent for approval")
            return
        st.session_state["bk_override_result"] = (booking_id, asked)
        widgets.close_flag(FLAG)
        st.session_state.pop("bk_override_on", None)
        st.rerun()
