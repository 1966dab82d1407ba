"""Deposits (issue 15 §3): every damage deposit, in the groups staff act on — holds that failed (a declined card, or no
card saved in time), upcoming holds, holds standing, claims, and the released or captured ones — with what happens
next to each. Select one to place its hold now, release it (with a reason) or file a damage claim (the amount, what
was found, the photos' file names); a claim is approved or rejected on Approvals by a manager and finance.
Widgets and results live under `dp_*` keys in session state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from pages.ui import actions, boot, labels, nav, session, widgets
from services.finance import deposit_queries as dq
from services.finance.deposit_queries import DepositView
from services.rules.deposits import NOTES_MAX
from services.rules.fmt import days_label, plural

RESULT = "dp_result"  # (tag, outcome or error): what the last action did, shown at the top until dismissed
CLAIM_FORM = "dp_claim_for"  # the booking whose claim form is open
OPEN = ("card_needed", "card_saved", "held", "hold_failed")
# What each group's table shows: the moment that matters there, then what happens next.
COLUMNS = {
    "attention": ("Booking", "Room", "Days", "Customer", "Deposit", "Failed", "Next"),
    "upcoming": ("Booking", "State", "Room", "Days", "Customer", "Deposit", "Hold", "Next"),
    "held": ("Booking", "Room", "Days", "Customer", "Deposit", "Release", "Next"),
    "claims": ("Booking", "State", "Room", "Days", "Customer", "Deposit", "Next"),
    "closed": ("Booking", "State", "Room", "Days", "Customer", "Deposit", "Closed", "Next"),
}
EMPTY = {
    "attention": "No failed holds: every deposit due has its hold.",
    "upcoming": "No holds coming up.",
    "held": "No deposit holds stand right now.",
    "claims": "No damage claims are open.",
    "closed": "No deposit has been released or captured yet.",
}

svc = boot.services()
role = session.require_role("deposits")
me = session.actor()


def money(cents: int | None) -> str:
    return labels.money(svc, cents)


def _do(doing: str, call: Callable[[], Any]) -> None:
    """on_click: run one Desk action; its outcome (or why it was refused) shows at the top of the next run."""
    actions.perform(RESULT, call, tag=(me, doing))
    widgets.next_generation("dp")


def place_hold(view: DepositView) -> None:
    _do(f"Holding the deposit of {view.reference}", lambda: actions.desk().place_deposit_hold(view.row.booking_id))


def release(view: DepositView) -> None:
    reason = str(st.session_state.get(f"dp_reason_{view.row.booking_id}") or "")
    _do(
        f"Releasing the deposit of {view.reference}",
        lambda: actions.desk().release_deposit(view.row.booking_id, reason=reason),
    )


def file_claim(view: DepositView) -> None:
    key = view.row.booking_id
    dollars = st.session_state.get(f"dp_amount_{key}")
    notes = str(st.session_state.get(f"dp_notes_{key}") or "")
    photos = str(st.session_state.get(f"dp_photos_{key}") or "").splitlines()
    cents = round(float(dollars) * 100) if dollars is not None else 0

    def call() -> Any:
        return actions.desk().file_deposit_claim(key, amount_cents=cents, notes=notes, photos=photos)

    _do(f"Filing a damage claim on {view.reference}", call)
    found = st.session_state.get(RESULT)
    if found and not isinstance(found[1], Exception):
        st.session_state.pop(CLAIM_FORM, None)


# ---- the page ------------------------------------------------------------------------------------------------------

st.title("Deposits")
st.caption(
    "A room's damage deposit is held on the customer's card shortly before the first day (a card hold lasts 7 days, "
    "so a long booking is held again) and released after the claim window unless a claim is filed. A claim is taken "
    "from the hold only once a manager and finance approve it on Approvals."
)

kept = st.session_state.get(RESULT)
if kept and kept[0][0] == me:
    doing = kept[0][1]
    if (done := actions.outcome(RESULT, tag=(me, doing), doing=doing)) is not None:
        waiting = getattr(done, "status", "") == "pending"  # a claim filed or signed: it waits for approvals
        kind = "error" if not done.ok else "info" if waiting else "success"
        widgets.kept_outcome(kind, done.message, forget=RESULT, icon=":material/credit_card:")

views: list[DepositView] = []
with actions.reporting("Loading the deposits"):
    counts = dq.group_counts(svc)
    default = "attention" if counts["attention"] else "claims" if counts["claims"] else "upcoming"
    group = st.segmented_control(
        "Show",
        options=list(dq.GROUPS),
        format_func=lambda g: f"{dq.GROUPS[g]} ({counts[g]})",
        default=default,
        key="dp_group",
        label_visibility="collapsed",
    )
    views = dq.list_deposits(svc, group=group or default)

if not views:
    st.info(EMPTY[group or default], icon=":material/credit_card:")
    st.stop()

shown = group or default
table = pd.DataFrame(
    [
        {
            "Booking": v.reference,
            "State": v.state_words,
            "Room": v.room_name,
            "Days": days_label(v.days, limit=3),
            "Customer": v.customer,
            "Deposit": money(v.row.amount_cents),
            "Failed": labels.venue(svc, v.row.failed_at) if v.row.failed_at else "—",
            "Hold": labels.venue(svc, v.hold_at) if v.hold_at else "—",
            "Release": labels.venue(svc, v.release_at) if v.release_at else "—",
            "Closed": labels.venue(svc, v.row.closed_at) if v.row.closed_at else "—",
            "Next": v.next_step,
        }
        for v in views
    ]
)[list(COLUMNS[shown])]
st.markdown(f"**{plural(len(views), 'deposit')}**, soonest first. Select one to act on it.")
picked = widgets.selectable_table(
    table,
    key=widgets.table_key(f"dp_table_{widgets.generation('dp')}", shown, [v.reference for v in views]),
    rows=len(views),
    height=widgets.fit_height(len(views), 320),
    column_config={"Next": st.column_config.TextColumn("Next", width="large")},
)
chosen = views[picked] if picked is not None else None
if chosen is None:
    st.caption("Select a deposit to place its hold now, release it, or file a damage claim.")
    st.stop()

row, bid = chosen.row, chosen.row.booking_id
st.markdown(
    f"**[{chosen.reference}]({nav.booking_link(chosen.reference)})** · {chosen.room_name} · "
    f"{labels.literal(chosen.customer)} ({labels.literal(chosen.email)}) · deposit **{money(row.amount_cents)}** · "
    f"{chosen.state_words}"
)
buttons = st.container(horizontal=True, vertical_alignment="bottom")
may_hold, may_release, may_claim = (
    session.may("deposit.hold"),
    session.may("deposit.release"),
    session.may("deposit.claim"),
)
can_hold = row.state in ("card_saved", "hold_failed") or (row.state == "held" and not chosen.standing)
buttons.button(
    "Place hold now",
    key="dp_hold",
    type="primary",
    icon=":material/credit_card:",
    disabled=not (may_hold and can_hold and row.payment_method),
    on_click=place_hold,
    args=(chosen,),
    help="Holds the deposit on the saved card at once"
    if may_hold
    else "Only managers, finance and admins place deposit holds",
)
if row.state in OPEN and chosen.claim is None:
    buttons.text_input(
        "Why release it now",
        key=f"dp_reason_{bid}",
        placeholder="Why release it now (needed)",
        label_visibility="collapsed",
        width=280,
        disabled=not may_release,
    )
    buttons.button(
        "Release",
        key="dp_release",
        icon=":material/lock_open:",
        disabled=not may_release,
        on_click=release,
        args=(chosen,),
        help="Releases the hold (or drops the deposit) and emails the customer"
        if may_release
        else "Only managers, finance and admins release deposits",
    )
if chosen.standing and chosen.claim is None:
    buttons.button(
        "File a claim…",
        key="dp_claim_open",
        icon=":material/report:",
        disabled=not may_claim,
        on_click=widgets.open_flag,
        args=(CLAIM_FORM, bid),
    )
if chosen.claim is not None:
    st.info(
        f"Damage claim #{chosen.claim.id} for {money(chosen.claim.amount_cents)}: "
        f"{dq.claim_status_text(chosen.claim)}. It is approved or rejected on Approvals.",
        icon=":material/approval:",
    )
    if nav.may_open(role, "approvals"):
        st.page_link(nav.script("approvals"), label="Open Approvals", icon=":material/approval:")

if st.session_state.get(CLAIM_FORM) == bid and chosen.standing and chosen.claim is None:
    with st.form(f"dp_claim_form_{bid}", border=True):
        st.markdown(f"**Damage claim on {chosen.reference}** · at most {money(row.amount_cents)} (what is held)")
        amount, notes, photos = st.columns([1, 2, 2])
        amount.number_input(
            "Amount ($)", key=f"dp_amount_{bid}", min_value=0.0, max_value=row.amount_cents / 100, step=5.0, value=None
        )
        notes.text_area("What was damaged, and how", key=f"dp_notes_{bid}", height=68, max_chars=NOTES_MAX)
        photos.text_area(
            "Photos (file names, one per line)",
            key=f"dp_photos_{bid}",
            height=68,
            placeholder="mixer-fader.jpg",
            help="The names of the photos as staff keep them; the photos themselves are not uploaded",
        )
        st.form_submit_button(
            "File claim", type="primary", on_click=file_claim, args=(chosen,), icon=":material/report:"
        )
