"""Holds: every unpaid hold that blocks a room now (web and phone bookings waiting for payment, and a change to a paid
booking waiting for its difference), with who holds it, how they came and when it lapses; Release frees the room at
once (the PaymentIntent is cancelled; a payment that arrived meanwhile confirms the booking instead). Issue 13: one
client once held every slot of the venue, and nobody could see or clear it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.ui import actions, boot, labels, session, widgets
from services.booking import ActiveHold, active_holds
from services.core.context import Services
from services.core.errors import DomainError
from services.rules.fmt import days_label, duration_label, plural

OUTCOME = "holds_outcome"
CHANNELS = {"web": "Web", "phone": "Phone"}
KINDS = {"change": " change", "invoice": " · invoice"}


def expires_in(svc: Services, hold: ActiveHold) -> str:
    minutes = int((hold.expires_at - svc.now()).total_seconds() // 60)
    if hold.kind == "invoice":  # held until the invoice is paid: its due date, not an expiry
        due = labels.venue(svc, hold.expires_at)
        return f"invoice due {due}" if minutes >= 0 else f"invoice overdue since {due}"
    return "under a minute" if minutes < 1 else duration_label(minutes) if minutes >= 60 else f"{minutes} min"


def release(hold: ActiveHold) -> None:
    """Release the selected hold; the outcome shows at the top of the page on the next run."""
    what = "the change to " if hold.kind == "change" else ""
    try:
        done = actions.desk().release_hold(hold.booking_id, kind=hold.kind)
    except DomainError as exc:
        st.session_state[OUTCOME] = ("error", f"Could not release {what}{hold.reference}: {exc.message}")
    else:
        if done in ("released", "withdrawn"):
            paid_by = "its invoice was voided" if hold.kind == "invoice" else "its payment was cancelled"
            text = f"Released the hold on {what}{hold.reference}: the room is free again and {paid_by}."
            st.session_state[OUTCOME] = ("success", text)
        elif "confirmed" in done:
            text = f"{hold.reference} was paid meanwhile, so it was confirmed instead of released."
            st.session_state[OUTCOME] = ("info", text)
        else:
            st.session_state[OUTCOME] = ("warning", f"{hold.reference}: {done.replace('_', ' ')}.")
    widgets.next_generation("holds")


svc = boot.services()
role = session.require_role("holds")
settings = svc.settings

st.title("Holds")
st.caption(
    f"Unpaid bookings and changes that keep a room until they are paid. A web hold lasts "
    f"{settings.web_hold_start_minutes} min until the customer reaches payment, then {settings.hold_minutes} min; "
    f"a phone hold {duration_label(settings.phone_hold_minutes)}. One email may hold "
    f"{plural(settings.hold_limit_per_email, 'booking')} at a time, one connection "
    f"{settings.hold_limit_per_client}; phone holds are not limited. A booking on invoice is held until its invoice is "
    "paid; releasing it voids the invoice."
)
if kept := st.session_state.pop(OUTCOME, None):
    widgets.show_outcome(*kept)

holds: list[ActiveHold] = []
with actions.reporting("Loading the holds"):
    holds = active_holds(svc)
if not holds:
    st.info("No unpaid holds: every room's time is either free or paid for.", icon=":material/lock_open:")
    st.stop()

rooms = {r.slug: r.name for r in svc.catalogue.rooms}
# Customer text goes into a table (plain text, never Markdown). What staff act on first: when it lapses, how it came.
table = pd.DataFrame(
    [
        {
            "Reference": h.reference,
            "Expires in": expires_in(svc, h),
            "Channel": CHANNELS.get(h.channel, h.channel)
            + {"change": " change", "invoice": " · invoice"}.get(h.kind, ""),
            "Room": rooms.get(h.room, h.room),
            "Days": days_label(h.days, limit=3),
            "Time": h.time,
            "Customer": h.customer,
            "Email": h.email,
            "Created": labels.venue(svc, h.created_at),
        }
        for h in holds
    ]
)
web = sum(1 for h in holds if h.channel == "web")
# The button sits left of the table's own toolbar (top right), which would cover it.
left, right = st.columns([1, 3], vertical_alignment="center")
right.markdown(f"**{plural(len(holds), 'hold')}** ({web} web), soonest to lapse first. Select one to release it.")
picked = widgets.selectable_table(
    table,
    key=widgets.table_key(f"holds_{widgets.generation('holds')}", [(h.reference, h.kind) for h in holds]),
    rows=len(holds),
    height=widgets.fit_height(len(holds), 420),
)
chosen = holds[picked] if picked is not None else None
may_release = session.may("hold.release")
left.button(
    f"Release {chosen.reference}" if chosen else "Release",
    key="holds_release",
    type="primary",
    icon=":material/lock_open:",
    disabled=chosen is None or not may_release,
    on_click=release,
    args=(chosen,),
    help="Frees the room at once and cancels the hold's payment"
    if may_release
    else "Only front desk, managers and admins can release holds",
    width="stretch",
)
