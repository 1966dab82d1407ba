"""Approvals: the queue of refunds above the cancellation policy (asked for in a booking's Cancel dialog) and of
damage claims against a deposit hold (filed on Deposits), each waiting for one manager and one finance approval from
two different people, with Approve / Reject / Retry / Withdraw as the signed-in person may; the decided ones below.
The service checks every rule again (role, person, slot, state); the buttons only save a click that would be refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from pages.ui import actions, boot, labels, nav, session, widgets
from services.finance import deposit_queries as dq
from services.finance import override_queries as oq
from services.finance import two_signatures as ts
from services.rules.fmt import days_label

if TYPE_CHECKING:
    from services.finance.deposit_queries import ClaimView
    from services.finance.deposits import ClaimOutcome
    from services.finance.override_queries import OverrideView
    from services.finance.overrides import OverrideOutcome

svc = boot.services()
role = session.require_role("approvals")
me = session.actor()

st.title("Approvals")
st.caption(
    "A refund above the cancellation policy, and a damage claim against a deposit hold, each need two approvals from "
    "two different people: one manager and one finance person (an admin may give either). The second approval acts "
    "at once — cancels the days and refunds, or takes the claim from the hold and releases the rest — after checking "
    "the booking again, so nothing is refunded or taken twice."
)


def _act(override_id: int, step: str, **kw: str) -> None:
    """Run one step on an override; its outcome (or refusal) is shown at the top of the next run, to this person."""
    desk = actions.desk()
    calls: dict[str, Callable[[], OverrideOutcome]] = {
        "approve": lambda: desk.approve_override(override_id, slot=kw.get("slot")),
        "reject": lambda: desk.reject_override(override_id, note=st.session_state.get(f"ap_note_{override_id}", "")),
        "retry": lambda: desk.retry_override(override_id),
        "withdraw": lambda: desk.withdraw_override(override_id),
    }
    actions.perform("ap_result", calls[step], tag=(me, override_id))


def _claim_act(claim_id: int, step: str, **kw: str) -> None:
    """Run one step on a damage claim; its outcome (or refusal) is shown at the top of the next run, to this person."""
    desk = actions.desk()
    calls: dict[str, Callable[[], ClaimOutcome]] = {
        "approve": lambda: desk.approve_deposit_claim(claim_id, slot=kw.get("slot")),
        "reject": lambda: desk.reject_deposit_claim(claim_id, note=st.session_state.get(f"ap_cnote_{claim_id}", "")),
        "retry": lambda: desk.retry_deposit_claim(claim_id),
        "withdraw": lambda: desk.withdraw_deposit_claim(claim_id),
    }
    actions.perform("ap_claim_result", calls[step], tag=(me, claim_id))


kept_claim = st.session_state.get("ap_claim_result")
if kept_claim and kept_claim[0][0] == me:
    claim_id = kept_claim[0][1]
    if (said := actions.outcome("ap_claim_result", tag=(me, claim_id), doing=f"Damage claim #{claim_id}")) is not None:
        widgets.kept_outcome(
            {"captured": "success", "failed": "error"}.get(said.status, "info"),
            said.message,
            forget="ap_claim_result",
            icon=":material/approval:",
        )

kept = st.session_state.get("ap_result")
if kept and kept[0][0] == me:
    done_id = kept[0][1]
    if (done := actions.outcome("ap_result", tag=(me, done_id), doing=f"Override #{done_id}")) is not None:
        widgets.kept_outcome(  # at the top until dismissed
            {"executed": "success", "failed": "error"}.get(done.status, "info"),
            done.message + "".join(f"\n\n- {p}" for p in done.problems),
            forget="ap_result",
            icon=":material/approval:",
        )


def _signature(view: OverrideView, slot: str) -> str:
    by = view.signer(slot)
    at = view.row.manager_approved_at if slot == "manager" else view.row.finance_approved_at
    label = slot.capitalize()
    if by:
        return f":green[:material/check_circle:] {label}: **{by}**, {labels.venue(svc, at)}"
    return f":orange[:material/hourglass_top:] {label}: waiting"


def money(cents: int | None) -> str:
    return labels.money(svc, cents)


def _card(view: OverrideView) -> None:
    row = view.row
    with st.container(border=True, key=f"ap_card_{view.id}"):
        st.markdown(
            f"**#{view.id} · [{view.reference}]({nav.booking_link(view.reference)})** · {view.room_name} · "
            f"{days_label(view.days)}"
        )
        st.markdown(
            f"Policy refund **{money(row.policy_refund_cents)}** · requested **{money(row.requested_refund_cents)}** "
            f"· :orange[**+{money(view.extra_cents)}** over the policy]"
        )
        st.markdown(f"**Why:** {labels.literal(row.reason)}")
        st.caption(f"Asked by {row.requested_by}, {labels.venue(svc, row.requested_at)} ({labels.tz_label(svc)})")
        st.markdown(" · ".join(_signature(view, slot) for slot in oq.SLOTS))
        if row.status == "failed":
            st.error(
                f"Not executed: {(row.error or 'unknown error').rstrip('.')}. "
                "Retry once it is sorted out, or reject it.",
                icon=":material/error:",
            )

        actions = st.container(horizontal=True, vertical_alignment="center")
        if row.status == "pending":
            slots = oq.open_slots(row, role) or ([role] if role in oq.SLOTS else [])
            for slot in slots:
                problem = oq.signing_problem(row, actor=me, role=role, slot=slot)
                if problem:
                    st.caption(f":material/block: {problem}")
                last = view.completes(slot)
                actions.button(
                    f"Approve and refund {money(row.requested_refund_cents)}" if last else f"Approve as {slot}",
                    key=f"ap_approve_{view.id}_{slot}",
                    type="primary",
                    icon=":material/check:",
                    disabled=problem is not None,
                    help=problem or ("Executes at once: cancels the days and refunds." if last else None),
                    on_click=_act,
                    args=(view.id, "approve"),
                    kwargs={"slot": slot},
                )
        if row.status == "failed":
            actions.button(
                "Retry",
                key=f"ap_retry_{view.id}",
                type="primary",
                icon=":material/refresh:",
                on_click=_act,
                args=(view.id, "retry"),
                help="Checks the booking and Stripe again, then cancels and refunds. Never refunds twice.",
            )
        if row.status in ("pending", "failed"):
            actions.text_input(
                "Note for the requester",
                key=f"ap_note_{view.id}",
                placeholder="Why it is rejected (needed to reject)",
                label_visibility="collapsed",
                width=320,
            )
            actions.button("Reject", key=f"ap_reject_{view.id}", on_click=_act, args=(view.id, "reject"))
        if oq.can_withdraw(row, me):
            actions.button(
                "Withdraw my request",
                key=f"ap_withdraw_{view.id}",
                icon=":material/undo:",
                on_click=_act,
                args=(view.id, "withdraw"),
            )


def _claim_signature(view: ClaimView, slot: str) -> str:
    by = view.signer(slot)
    at = view.row.manager_approved_at if slot == "manager" else view.row.finance_approved_at
    label = slot.capitalize()
    if by:
        return f":green[:material/check_circle:] {label}: **{by}**, {labels.venue(svc, at)}"
    return f":orange[:material/hourglass_top:] {label}: waiting"


def _claim_card(view: ClaimView) -> None:
    """A damage claim waiting for its two approvals: what was found, the photos' names, the hold, the signatures."""
    row = view.row
    with st.container(border=True, key=f"ap_claim_card_{view.id}"):
        st.markdown(
            f"**Damage claim #{view.id} · [{view.reference}]({nav.booking_link(view.reference)})** · "
            f"{view.room_name} · {days_label(view.days)}"
        )
        st.markdown(
            labels.no_formula(f"Deposit held **{money(view.held_cents)}** · claimed **{money(row.amount_cents)}**")
        )
        st.markdown(f"**What was found:** {labels.literal(row.notes)}")
        if row.photos:
            st.markdown(f"**Photos:** {labels.literal(', '.join(row.photos))}")
        st.caption(f"Filed by {row.requested_by}, {labels.venue(svc, row.requested_at)} ({labels.tz_label(svc)})")
        st.markdown(" · ".join(_claim_signature(view, slot) for slot in ts.SLOTS))
        if row.status == "failed":
            st.error(
                f"Not taken: {(row.error or 'unknown error').rstrip('.')}. Retry once it is sorted out, or reject it.",
                icon=":material/error:",
            )
        buttons = st.container(horizontal=True, vertical_alignment="center")
        if row.status == "pending":
            slots = ts.open_slots(row, role) or ([role] if role in ts.SLOTS else [])
            for slot in slots:
                problem = dq.claim_signing_problem(row, actor=me, role=role, slot=slot)
                if problem:
                    st.caption(f":material/block: {problem}")
                last = view.completes(slot)
                buttons.button(
                    f"Approve and take {money(row.amount_cents)}" if last else f"Approve as {slot}",
                    key=f"ap_claim_approve_{view.id}_{slot}",
                    type="primary",
                    icon=":material/check:",
                    disabled=problem is not None,
                    help=problem or ("Takes it from the hold at once and releases the rest." if last else None),
                    on_click=_claim_act,
                    args=(view.id, "approve"),
                    kwargs={"slot": slot},
                )
        if row.status == "failed":
            buttons.button(
                "Retry",
                key=f"ap_claim_retry_{view.id}",
                type="primary",
                icon=":material/refresh:",
                on_click=_claim_act,
                args=(view.id, "retry"),
                help="Takes the claim from the hold again. Never takes it twice.",
            )
        if row.status in ("pending", "failed"):
            buttons.text_input(
                "Note for the person who filed it",
                key=f"ap_cnote_{view.id}",
                placeholder="Why it is rejected (needed to reject)",
                label_visibility="collapsed",
                width=320,
            )
            buttons.button("Reject", key=f"ap_claim_reject_{view.id}", on_click=_claim_act, args=(view.id, "reject"))
        if dq.can_withdraw_claim(row, me):
            buttons.button(
                "Withdraw my claim",
                key=f"ap_claim_withdraw_{view.id}",
                icon=":material/undo:",
                on_click=_claim_act,
                args=(view.id, "withdraw"),
            )


with actions.reporting("Loading the queue"):
    queue = oq.list_pending(svc)
    claims = dq.list_open_claims(svc)
    st.subheader(f"Waiting ({len(queue) + len(claims)})", anchor=False)
    if not queue and not claims:
        st.info("Nothing is waiting for approval.", icon=":material/task_alt:")
    for view in queue:
        _card(view)
    for claim in claims:
        _claim_card(claim)

    st.subheader("Decided", anchor=False)
    history = oq.list_overrides(svc, statuses=oq.DONE, limit=200)
    if not history:
        st.caption("No decided overrides yet.")
    else:
        history.sort(key=lambda v: v.row.executed_at or v.row.decided_at or v.row.requested_at, reverse=True)
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Decided": labels.venue(svc, v.row.executed_at or v.row.decided_at),
                        "#": v.id,
                        "Booking": v.reference,
                        "Room": v.room_name,
                        "Days": days_label(v.days),
                        "Policy": money(v.row.policy_refund_cents),
                        "Requested": money(v.row.requested_refund_cents),
                        "Refunded": money(v.row.refunded_cents),
                        "Outcome": oq.status_text(v.row),
                        "Asked by": v.row.requested_by,
                        "Approved by": ", ".join(filter(None, (v.row.manager_approved_by, v.row.finance_approved_by)))
                        or "—",
                        "Reason": v.row.reason,
                    }
                    for v in history
                ]
            ),
            hide_index=True,
            width="stretch",
        )

    decided_claims = dq.list_claims(svc, statuses=dq.DONE_CLAIMS, limit=200)
    if decided_claims:
        st.subheader("Decided damage claims", anchor=False)
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Decided": labels.venue(svc, c.row.captured_at or c.row.decided_at),
                        "#": c.id,
                        "Booking": c.reference,
                        "Room": c.room_name,
                        "Held": money(c.held_cents),
                        "Claimed": money(c.row.amount_cents),
                        "Taken": money(c.row.captured_cents),
                        "Outcome": dq.claim_status_text(c.row),
                        "Filed by": c.row.requested_by,
                        "Approved by": ", ".join(filter(None, (c.row.manager_approved_by, c.row.finance_approved_by)))
                        or "—",
                        "What was found": c.row.notes,
                    }
                    for c in decided_claims
                ]
            ),
            hide_index=True,
            width="stretch",
        )
