"""Refund approvals: the queue of refunds above the cancellation policy (asked for in a booking's Cancel dialog),
each waiting for one manager and one finance approval from two different people, with Approve / Reject / Retry /
Withdraw as the signed-in person may; the decided ones below. The service checks every rule again (role, person,
slot, state); the buttons only save a click that would be refused.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from pages import _ui as ui
from services.core.errors import DomainError
from services.finance import overrides
from services.finance.overrides import OverrideOutcome, OverrideView

ui.run_through_app()
svc = ui.services()
role = ui.require_role("approvals")
me = ui.actor()

st.title("Refund approvals")
st.caption(
    "A refund above the cancellation policy needs two approvals from two different people: one manager and one "
    "finance person (an admin may give either). The second approval cancels the days and refunds at once; the "
    "booking is checked again first, so nothing is refunded twice or for days already cancelled."
)


def _md(text: str) -> str:
    """Staff-typed text shown as itself, not as Markdown."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|>~<$])", r"\\\1", text)


def _act(override_id: int, step: str, **kw: str) -> None:
    """Run one step on an override; its outcome (or refusal) is shown at the top of the next run, to this person."""
    try:
        if step == "approve":
            result: OverrideOutcome | DomainError = ui.desk().approve_override(override_id, **kw)
        elif step == "reject":
            note = st.session_state.get(f"ap_note_{override_id}", "")
            result = ui.desk().reject_override(override_id, note=note)
        elif step == "retry":
            result = ui.desk().retry_override(override_id)
        else:
            result = ui.desk().withdraw_override(override_id)
    except DomainError as exc:
        result = exc
    st.session_state["ap_result"] = (me, override_id, result)


done = st.session_state.get("ap_result")
if done and done[0] == me:
    _, done_id, outcome = done
    if isinstance(outcome, DomainError):
        ui.show_error(outcome, doing=f"Override #{done_id}")
    else:
        show = {"executed": st.success, "failed": st.error}.get(outcome.status, st.info)
        show(outcome.message + "".join(f"\n\n- {p}" for p in outcome.problems), icon=":material/approval:")


def _signature(view: OverrideView, slot: str) -> str:
    by = view.signer(slot)
    at = view.row.manager_approved_at if slot == "manager" else view.row.finance_approved_at
    label = slot.capitalize()
    if by:
        return f":green[:material/check_circle:] {label}: **{by}**, {ui.venue(svc, at)}"
    return f":orange[:material/hourglass_top:] {label}: waiting"


def money(cents: int | None) -> str:
    return ui.money(svc, cents)


def _card(view: OverrideView) -> None:
    row = view.row
    with st.container(border=True, key=f"ap_card_{view.id}"):
        st.markdown(
            f"**#{view.id} · [{view.reference}]({ui.booking_link(view.reference)})** · {view.room_name} · "
            f"{ui.days_label(view.days)}"
        )
        st.markdown(
            f"Policy refund **{money(row.policy_refund_cents)}** · requested **{money(row.requested_refund_cents)}** "
            f"· :orange[**+{money(view.extra_cents)}** over the policy]"
        )
        st.markdown(f"**Why:** {_md(row.reason)}")
        st.caption(f"Asked by {row.requested_by}, {ui.venue(svc, row.requested_at)} ({ui.tz_label(svc)})")
        st.markdown(" · ".join(_signature(view, slot) for slot in overrides.SLOTS))
        if row.status == "failed":
            st.error(
                f"Not executed: {(row.error or 'unknown error').rstrip('.')}. "
                "Retry once it is sorted out, or reject it.",
                icon=":material/error:",
            )

        actions = st.container(horizontal=True, vertical_alignment="center")
        if row.status == "pending":
            slots = overrides.open_slots(row, role) or ([role] if role in overrides.SLOTS else [])
            for slot in slots:
                problem = overrides.signing_problem(row, actor=me, role=role, slot=slot)
                if problem:
                    st.caption(f":material/block: {problem}")
                last = all(view.signer(s) for s in overrides.SLOTS if s != slot)
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
        if row.status in ("pending", "failed") and row.requested_by == me:
            actions.button(
                "Withdraw my request",
                key=f"ap_withdraw_{view.id}",
                icon=":material/undo:",
                on_click=_act,
                args=(view.id, "withdraw"),
            )


with ui.reporting("Loading the queue"):
    queue = overrides.list_pending(svc)
    st.subheader(f"Waiting ({len(queue)})", anchor=False)
    if not queue:
        st.info("Nothing is waiting for approval.", icon=":material/task_alt:")
    for view in queue:
        _card(view)

    st.subheader("Decided", anchor=False)
    history = overrides.list_overrides(svc, statuses=overrides.DONE, limit=200)
    if not history:
        st.caption("No decided overrides yet.")
    else:
        history.sort(key=lambda v: v.row.executed_at or v.row.decided_at or v.row.requested_at, reverse=True)
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Decided": ui.venue(svc, v.row.executed_at or v.row.decided_at),
                        "#": v.id,
                        "Booking": v.reference,
                        "Room": v.room_name,
                        "Days": ui.days_label(v.days),
                        "Policy": money(v.row.policy_refund_cents),
                        "Requested": money(v.row.requested_refund_cents),
                        "Refunded": money(v.row.refunded_cents),
                        "Outcome": overrides.status_text(v.row),
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
