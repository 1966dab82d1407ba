"""The sections of one booking on the Bookings page, below its header and actions: its days against the room's
calendar, the payment as Stripe has it, refunds and receipts, refunds above the policy, emails, and the joined
timeline. Everything here reads; the one button (Withdraw) goes through the Desk."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from models.tables import LegState
from pages.ui import actions, history, labels, nav, session
from services.booking.queries import CALENDAR_STATES, invoice_of
from services.finance import deposit_queries, override_queries, receipts
from services.reconciliation.findings import last_sync
from services.rules.bill import sold_bill, sold_with_tax, tax_words, taxes_inside
from services.rules.deposits import sold_terms
from services.rules.fmt import day_label, days_label, money

if TYPE_CHECKING:
    from services.booking.queries import BookingDetail
    from services.core.context import Services


# Days no longer booked, by what ended them, in the order the header names them.
ENDED_DAYS = {LegState.CANCELLED: "cancelled", LegState.REFUNDED: "refunded", LegState.FAILED: "failed"}


def days_line(detail: BookingDetail) -> str:
    """The booking's days for its header: those still booked, then apart (struck through) those cancelled, refunded
    or failed since, so a day given up is never read as booked."""
    ended = {state: [leg.day for leg in detail.legs if leg.state == state] for state in ENDED_DAYS}
    booked = [leg.day for leg in detail.legs if leg.state not in ENDED_DAYS]
    parts = [days_label(booked)] if booked else ["no day still booked"]
    parts += [f"{ENDED_DAYS[state]}: ~~{days_label(days)}~~" for state, days in ended.items() if days]
    return " · ".join(parts)


def days(svc: Services, detail: BookingDetail) -> None:
    st.markdown("#### Days")
    taxed = sold_with_tax(detail.booking.tax_snapshot)
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Day": day_label(leg.day),
                    "Time": f"{labels.venue(svc, leg.starts_at, with_day=False)}–"
                    f"{labels.venue(svc, leg.ends_at, with_day=False)}",
                    "State": leg.state.replace("_", " ").capitalize(),
                    "Price": labels.money(svc, leg.price_cents),
                    # The tax inside the day's price, rounded on the day (a refunded day gives back exactly this).
                    **({"Tax in price": labels.money(svc, leg.tax_cents)} if taxed else {}),
                    "Refunded": labels.money(svc, leg.refunded_cents),
                    "Calendar event": CALENDAR_STATES[detail.calendar_state(leg)],
                    "Event id": leg.event_id or "—",
                }
                for leg in detail.legs
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    _sold_at(svc, detail)
    _changes(svc, detail)
    for problem in detail.event_errors:
        st.warning(f"Calendar could not be checked — {problem}")
    if wrong := detail.calendar_wrong:
        st.warning(
            f"The room calendar does not match {days_label([leg.day for leg in wrong])}: an event is "
            "missing for a booked day, or still there for a day that is not booked.",
            icon=":material/event_busy:",
        )


def _sold_at(svc: Services, detail: BookingDetail) -> None:
    """What the booking's own payment charged, in parts (its stored amounts, at the rates it was sold at)."""
    b = detail.booking
    bill = sold_bill(b)
    parts = " · ".join(f"{label} {amount}" for label, amount in bill.rows(svc.settings.currency))
    sold = "sold without tax" if not bill.taxed else "tax included"
    st.caption(labels.no_formula(f"Booked for: {parts} ({sold})."))


CHANGE_STATES = {
    "awaiting_payment": "waiting for payment",
    "applying": "being made",
    "applied": "made",
    "lapsed": "lapsed unpaid",
    "withdrawn": "withdrawn",
    "failed": "failed (difference refunded)",
}


def _changes(svc: Services, detail: BookingDetail) -> None:
    """The booking's changes (moved days, new times, another room, days added or dropped), under its days."""
    if not detail.changes:
        return
    st.caption("Changes to this booking")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "#": c.number,
                    "Asked": labels.venue(svc, c.created_at),
                    "Change": "; ".join(c.lines),
                    "Money": (
                        f"charged {labels.money(svc, c.net_cents)}"
                        if c.net_cents > 0
                        else f"refunded {labels.money(svc, -c.net_cents)}"
                        if c.net_cents < 0
                        else "no difference"
                    ),
                    "State": CHANGE_STATES.get(c.state, c.state),
                    "By": c.actor,
                    "Reason": c.reason,
                }
                for c in reversed(detail.changes)
            ]
        ),
        hide_index=True,
        width="stretch",
    )


def _invoice_act(svc: Services, booking_id: int, what: str, reason: str) -> None:
    """on_click of the invoice's Extend / Release: through the Desk, the outcome kept for this booking."""
    desk = actions.desk()

    def extend() -> str:
        due = desk.extend_invoice(booking_id, days=7, reason=reason)
        return f"The days stay held until {labels.venue(svc, due)}; the invoice stays payable on its page."

    if what == "extend":
        actions.perform("bk_invoice", extend, tag=booking_id)
    else:
        actions.perform("bk_invoice", lambda: desk.release_invoice(booking_id, reason=reason), tag=booking_id)


def invoice(svc: Services, detail: BookingDetail) -> None:
    """An organisation paying on terms: the invoice Stripe sent, when it falls due, and (while unpaid) Extend and
    Void & release, each with a reason."""
    b = detail.booking
    assert b.id is not None
    inv = invoice_of(svc, b.id)
    if inv is None:
        return
    st.markdown("#### Invoice")
    states = {"draft": "Being made", "open": "Sent, unpaid", "paid": "Paid", "void": "Void"}
    overdue = inv.state == "open" and inv.due_at < svc.now()
    st.markdown(
        f"**{labels.literal(inv.organisation)}** · {labels.literal(inv.contact_name)} "
        f"<{labels.literal(inv.billing_email)}>"
        + (f" · PO {labels.literal(inv.po_number)}" if inv.po_number else "")
        + f"  \n{inv.number or 'no number yet'} · net {inv.terms_days} · "
        + ("**:red[overdue since]** " if overdue else "due ")
        + f"{labels.venue(svc, inv.due_at)} · **{states.get(inv.state.value, inv.state.value)}**"
        + (f" {labels.venue(svc, inv.paid_at)}" if inv.paid_at else "")
    )
    if inv.hosted_url:
        st.caption(f"The organisation pays it on Stripe's page: {inv.hosted_url}")
    if (said := actions.outcome("bk_invoice", tag=b.id, doing="Not done")) is not None:
        st.success(said, icon=":material/receipt_long:")
    if inv.state != "open" or not session.may("hold.release"):
        return
    reason = st.text_input(
        "Reason", key=f"bk_inv_reason_{b.id}", placeholder="What the organisation said (kept in the audit trail)"
    )
    ext, rel = st.columns(2)
    ext.button(
        "Hold 7 more days",
        key="bk_inv_extend",
        icon=":material/more_time:",
        disabled=len(reason.strip()) < 3,
        on_click=_invoice_act,
        args=(svc, b.id, "extend", reason),
        width="stretch",
        help="The invoice stays payable on its page; the days stay held to the new date.",
    )
    rel.button(
        "Void invoice and free the days",
        key="bk_inv_release",
        icon=":material/event_busy:",
        disabled=len(reason.strip()) < 3,
        on_click=_invoice_act,
        args=(svc, b.id, "release", reason),
        width="stretch",
        help="Voids it at Stripe (it can no longer be paid) and cancels the booking. An invoice paid a moment ago "
        "is never voided.",
    )


def deposit_fact(svc: Services, detail: BookingDetail) -> str:
    """' · damage deposit $250.00 (Held)' for the booking's header line; '' when it was sold without one."""
    b = detail.booking
    assert b.id is not None
    v = deposit_queries.get_deposit(svc, b.id)
    if v is not None:
        return f" · damage deposit {money(v.row.amount_cents, v.row.currency)} ({v.state_words})"
    terms = sold_terms(b.pricing_snapshot)
    if terms is None or b.status in deposit_queries.GONE:
        return ""
    return f" · damage deposit {money(terms.amount_cents, b.currency)} (not started)"


def deposit(svc: Services, detail: BookingDetail) -> None:
    """The damage deposit the booking was sold with: its state and what happens next, and the way to Deposits, where
    staff place or release the hold and file claims."""
    b = detail.booking
    assert b.id is not None
    v = deposit_queries.get_deposit(svc, b.id)
    terms = sold_terms(b.pricing_snapshot)
    if v is None and (terms is None or b.status in deposit_queries.GONE):
        return
    st.markdown("#### Damage deposit")
    if v is None:
        assert terms is not None
        st.markdown(
            f"**{money(terms.amount_cents, b.currency)}** · not started · the customer is asked for a card once the "
            "booking is paid (the payment webhook, their confirmation page, or the worker's next round)"
        )
    else:
        st.markdown(f"**{money(v.row.amount_cents, v.row.currency)}** · **{v.state_words}** · {v.next_step}")
    if nav.may_open(session.role(), "deposits"):
        st.page_link(nav.script("deposits"), label="Open Deposits", icon=":material/credit_card:")


def payment(svc: Services, detail: BookingDetail) -> None:
    st.markdown("#### Payment (live from Stripe)")
    pay, charge = detail.payment or {}, detail.charge
    if detail.payment_error:
        st.warning(f"Stripe could not be asked: {detail.payment_error}")
        return
    if not pay:
        st.caption("No payment was started for this booking.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Status": str(pay.get("status", "—")).replace("_", " "),
                    "Amount": labels.money(svc, pay.get("amount")),
                    "Received": labels.money(svc, pay.get("amount_received")),
                    "Refunded": labels.money(svc, detail.stripe_refunded_cents),
                    "Charge": charge.get("id", "—"),
                    "Created": labels.venue_from_epoch(svc, pay.get("created")),
                }
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    if charge.get("disputed"):
        st.error("The customer's bank has disputed this charge.", icon=":material/gavel:")
    if detail.refunds_disagree:
        st.warning(
            f"Room Desk recorded {labels.money(svc, detail.refunded_cents)} of refunds but Stripe shows "
            f"{labels.money(svc, detail.stripe_refunded_cents)}.",
            icon=":material/sync_problem:",
        )
    if kept := detail.kept_after_failure_cents:
        st.error(
            f"This booking failed but {labels.money(svc, kept)} of the customer's money has not been refunded.",
            icon=":material/money_off:",
        )


def refunds(svc: Services, detail: BookingDetail) -> None:
    b = detail.booking
    st.markdown("#### Refunds")
    if detail.refunds:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "When": labels.venue(svc, r.created_at),
                        "Amount": labels.money(svc, r.amount_cents),
                        # Its share of the tax of the payment it went back on (RefundRecord.tax_cents).
                        **(
                            {"Tax in it": tax_words(taxes_inside(r.tax_cents, b.tax_snapshot), b.currency)}
                            if sold_with_tax(b.tax_snapshot)
                            else {}
                        ),
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
    if not detail.received_cents:
        return
    # Receipts (PDF), made when the button is clicked (a callable: nothing is rendered on every rerun).
    assert b.id is not None
    booking_id = b.id
    # What CRA asks of this receipt that the venue lacks (e.g. the registration number from $100): said before the
    # receipt is handed over, never left out silently.
    for problem in receipts.booking_receipt_check(svc, booking_id).problems:
        st.warning(labels.no_formula(problem), icon=":material/receipt_long:")
    r1, *rcols = st.columns(min(len(detail.refunds), 4) + 2)
    r1.download_button(
        "Receipt (PDF)",
        data=lambda: receipts.booking_receipt_pdf(svc, booking_id)[1],
        file_name=f"receipt-{b.reference}.pdf",
        mime="application/pdf",
        icon=":material/receipt:",
        key="bk_receipt",
        on_click="ignore",
        help="The customer's receipt: days, price, payment, refunds so far.",
    )

    def refund_pdf(refund_id: int) -> bytes:
        return receipts.refund_receipt_pdf(svc, refund_id)[1]

    for n, (col, refund) in enumerate(zip(rcols, detail.refunds, strict=False), start=1):
        assert refund.id is not None
        col.download_button(
            f"Refund receipt {n} ({labels.money(svc, refund.amount_cents)})",
            data=partial(refund_pdf, refund.id),
            file_name=f"refund-{b.reference}-{n}.pdf",
            mime="application/pdf",
            icon=":material/receipt_long:",
            key=f"bk_refund_receipt_{refund.id}",
            on_click="ignore",
        )


def _withdraw(override_id: int, booking_id: int) -> None:
    actions.perform("bk_override_result", lambda: actions.desk().withdraw_override(override_id), tag=booking_id)


def overrides(svc: Services, detail: BookingDetail, role: str) -> None:
    b = detail.booking
    assert b.id is not None
    found = override_queries.list_overrides(svc, booking_id=b.id)
    if not found:
        return
    st.markdown("#### Refunds above the policy")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "#": o.id,
                    "Days": days_label(o.days),
                    "Policy": labels.money(svc, o.row.policy_refund_cents),
                    "Requested": labels.money(svc, o.row.requested_refund_cents),
                    "Status": override_queries.status_text(o.row),
                    "Asked by": f"{o.row.requested_by}, {labels.venue(svc, o.row.requested_at)}",
                    "Approved by": ", ".join(filter(None, (o.row.manager_approved_by, o.row.finance_approved_by)))
                    or "—",
                    "Reason": o.row.reason,
                }
                for o in found
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    if nav.may_open(role, "approvals") and any(o.row.status in override_queries.OPEN for o in found):
        st.caption("Approve or reject them on [Approvals](/approvals).")
    me = session.actor()
    for o in found:
        if override_queries.can_withdraw(o.row, me):
            st.button(
                f"Withdraw override #{o.id}",
                key=f"bk_withdraw_{o.id}",
                on_click=_withdraw,
                args=(o.id, b.id),
                help="Take your request back; nothing is cancelled or refunded.",
            )


def emails(svc: Services, detail: BookingDetail) -> None:
    st.markdown("#### Emails")
    if not detail.emails:
        st.caption("No emails.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Queued": labels.venue(svc, e.created_at),
                    "Kind": e.kind.replace("_", " "),
                    "To": e.to,
                    "Subject": e.subject,
                    "Status": e.status,
                    "Sent": labels.venue(svc, e.sent_at),
                    "Attempts": e.attempts,
                    "Error": e.last_error or "",
                }
                for e in detail.emails
            ]
        ),
        hide_index=True,
        width="stretch",
    )


def timeline(svc: Services, detail: BookingDetail) -> None:
    b = detail.booking
    assert b.id is not None
    st.markdown(f"#### Timeline ({labels.tz_label(svc)})")
    # Every surface in one list: Stripe's events and the calendar's changes (from the last sync), our audit trail and
    # the emails. A static table: the details wrap instead of being cut off; a booking's history is a few dozen rows.
    with actions.reporting("Loading the timeline"):
        history.show_history(svc, b.id, key=f"bk_sources_{b.id}")
        synced = last_sync(svc)
        st.caption(
            "Stripe and calendar rows are as of the last sync, "
            + (f"{labels.ago(svc, synced)}." if synced else "which has not run yet: only Room Desk's own rows show.")
        )
    st.caption(f"Booking id {b.id} · last change {labels.venue(svc, b.updated_at)}")
