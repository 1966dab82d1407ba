"""Blocks & closures (issue 14 §5): managers take rooms out of sale — maintenance, the venue's own use — or close the
venue, instead of adding events to a room's calendar by hand (seed 000 #5: those caused double bookings).

"Check" shows the slots and everything in the way (bookings with their reference and customer, holds, other blocks,
events added by hand) before anything is saved; "Block" stays off while a booking is in the way, and makes the block
exactly as checked (the service checks again). What happened shows at the top of the page, in view at 1366×768. The
second tab lists the current and upcoming blocks; "Release" (with a reason) gives a block's rooms back.
Widgets and results live under `bl_*` keys in session state.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from models.tables import BlockKind
from pages.ui import actions, boot, labels, nav, session, widgets
from services.booking.availability import next_open_day, slot_times
from services.booking.block_queries import (
    CLASH_LABELS,
    BlockPlan,
    BlockRequest,
    BlockRow,
    current_blocks,
    kind_label,
    rooms_label,
)
from services.core.errors import DomainError, NotAvailable, ValidationError
from services.rules.fmt import day_label, days_label, hhmm, plural

OUTCOME = "bl_outcome"  # ("success" | "error" | …, text): what the last Block or Release did, until the next one
PLAN = "bl_plan"  # (the request checked, its plan or the error): actions.perform's shape

svc = boot.services()
session.require_role("blocks")
tz = svc.settings.tz
ROOMS = {r.slug: r.name for r in svc.catalogue.rooms}
TODAY = svc.now().astimezone(tz).date()
TIMES = slot_times(svc)


# ---- the request the form holds ----------------------------------------------------------------------------------


def form_request() -> BlockRequest | None:
    """The request the form's widgets hold now (None until a day is picked). A closure is every room, whole days."""
    kind = BlockKind(st.session_state.get("bl_kind") or BlockKind.MAINTENANCE)
    closure = kind == BlockKind.CLOSURE
    every = closure or bool(st.session_state.get("bl_all"))
    rooms = tuple(ROOMS) if every else tuple(st.session_state.get("bl_rooms") or ())
    picked: Any = st.session_state.get("bl_days") or ()
    days = (picked,) if isinstance(picked, date) else tuple(picked)
    if not days:
        return None
    whole = closure or bool(st.session_state.get("bl_whole", True))
    start: time | None = None if whole else st.session_state.get("bl_start")
    end: time | None = None if whole else st.session_state.get("bl_end")
    reason = str(st.session_state.get("bl_reason") or "")
    return BlockRequest(rooms, days[0], days[-1], start, end, kind, reason)


def kind_chosen() -> None:
    """on_change: a closure is the whole venue for whole days, so the form says so."""
    if st.session_state.get("bl_kind") == BlockKind.CLOSURE:
        st.session_state["bl_all"] = True
        st.session_state["bl_whole"] = True


# ---- actions ------------------------------------------------------------------------------------------------------


def check() -> None:
    """on_click: plan the form's request (reads only); the plan shows beside the form."""
    req = form_request()
    st.session_state.pop(OUTCOME, None)
    if req is not None:
        actions.perform(PLAN, lambda: actions.desk().plan_block(req), tag=req)


def block(req: BlockRequest) -> None:
    """on_click: make the block as checked; the outcome shows at the top, the list gains it."""
    try:
        done = actions.desk().block_rooms(req)
    except NotAvailable as exc:
        lines = "\n".join(f"- {r}" for r in exc.reasons)
        st.session_state[OUTCOME] = ("error", f"Nothing was blocked —\n\n{lines}")
    except ValidationError as exc:
        st.session_state[OUTCOME] = ("error", "Nothing was blocked: " + "; ".join(exc.problems))
    except DomainError as exc:
        st.session_state[OUTCOME] = ("error", f"Nothing was blocked: {exc.message}")
    else:
        kind = "warning" if done.problems else "success"
        st.session_state[OUTCOME] = (kind, done.message)
        st.session_state.pop(PLAN, None)
        widgets.next_generation("bl")


def release(row: BlockRow) -> None:
    """on_click: release the selected block with the reason typed."""
    reason = str(st.session_state.get("bl_release_reason") or "")
    try:
        done = actions.desk().release_block(row.id, reason=reason)
    except ValidationError as exc:
        st.session_state[OUTCOME] = ("error", f"Block #{row.id} was not released: " + "; ".join(exc.problems))
    except DomainError as exc:
        st.session_state[OUTCOME] = ("error", f"Block #{row.id} was not released: {exc.message}")
    else:
        st.session_state[OUTCOME] = ("warning" if done.problems else "success", done.message)
        st.session_state.pop("bl_release_reason", None)
        st.session_state.pop(PLAN, None)
        widgets.next_generation("bl")


# ---- drawing ------------------------------------------------------------------------------------------------------


def draw_form() -> BlockRequest | None:
    st.radio(
        "What for",
        list(BlockKind),
        format_func=kind_label,
        key="bl_kind",
        horizontal=True,
        on_change=kind_chosen,
        help="A closure shuts the whole venue for whole days; the others take chosen rooms or hours out of sale.",
    )
    closure = st.session_state.get("bl_kind") == BlockKind.CLOSURE
    r1, r2 = st.columns([3, 1], vertical_alignment="bottom")
    every = r2.toggle("All rooms", key="bl_all", disabled=closure)
    r1.multiselect(
        "Rooms",
        list(ROOMS),
        format_func=ROOMS.__getitem__,
        key="bl_rooms",
        disabled=every or closure,
        placeholder="All rooms" if every or closure else "Choose the rooms",
    )
    d1, d2 = st.columns([2.4, 1.1], vertical_alignment="bottom")
    first = next_open_day(svc, TODAY + timedelta(days=1))
    d1.date_input("Days", value=(first, first), min_value=TODAY, key="bl_days", format="YYYY-MM-DD")
    whole = d2.toggle("Whole day", value=True, key="bl_whole", disabled=closure)
    t1, t2, t3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    t1.selectbox("From", TIMES[:-1], index=_at(time(9)), format_func=hhmm, key="bl_start", disabled=whole or closure)
    t2.selectbox("To", TIMES[1:], index=_at(time(12)) - 1, format_func=hhmm, key="bl_end", disabled=whole or closure)
    t3.caption(f"{labels.tz_label(svc)}. Whole day: the opening hours. A closed day in the range is left out.")
    st.text_input(
        "Reason",
        key="bl_reason",
        max_chars=500,
        placeholder="Floor sanding — on the calendar and in the audit trail",
    )
    return form_request()


def _at(wanted: time) -> int:
    return next((i for i, t in enumerate(TIMES) if t >= wanted), 0)


def draw_plan(plan: BlockPlan) -> None:
    req = plan.request
    when = "whole opening day" if req.whole_day else f"{hhmm(req.start)}–{hhmm(req.end)}"  # type: ignore[arg-type]
    days = plan.days
    span = days_label(days) if len(days) <= 2 else f"{day_label(days[0])} – {day_label(days[-1])}"
    st.markdown(
        f"**{kind_label(req.kind)}** · {rooms_label(svc, req.rooms)} · {span} · {when}  \n"
        f"{plural(len(plan.slots), 'slot')} ({plural(len(plan.days), 'open day')} × "
        f"{plural(len(req.rooms), 'room')}), {labels.tz_label(svc)}"
    )
    if plan.closed_days:
        skipped = ", ".join(f"{day_label(d)} ({why})" for d, why in plan.closed_days[:4])
        more = len(plan.closed_days) - 4
        st.caption(f"Left out, closed anyway: {skipped}" + (f" and {more} more" if more > 0 else ""))
    blocking = plan.in_the_way
    if blocking:
        others = sum(1 for c in blocking if c.kind == "block")
        what = " and ".join(
            part
            for part in (
                plural(len(blocking) - others, "booking") if len(blocking) > others else "",
                plural(others, "block") if others else "",
            )
            if part
        )
        st.error(
            f"**{what} in the way.** Move or cancel {'them' if len(blocking) > 1 else 'it'} first (open a booking "
            "from its reference), then check again. **Block** stays off until then.",
            icon=":material/block:",
        )
    else:
        st.success("Nothing booked in the way: **Block** takes these slots now.", icon=":material/check_circle:")
    for problem in plan.calendar_problems:
        st.warning(problem)
    if plan.clashes:
        draw_clashes(plan)


def draw_clashes(plan: BlockPlan) -> None:
    several = len(plan.request.rooms) > 1  # one room is named above the table: its column would only crowd it
    rows = [
        {
            "What": CLASH_LABELS.get(c.kind, c.kind),
            **({"Room": c.room_name} if several else {}),
            "When": f"{day_label(c.day)} {c.starts_at.astimezone(tz):%H:%M}–{c.ends_at.astimezone(tz):%H:%M}",
            "Booking": nav.booking_link(c.reference) if c.booking_id is not None else "",
            "Customer or title": c.customer,
        }
        for c in plan.clashes
    ]
    events = sum(1 for c in plan.clashes if not c.blocking)
    if events:
        st.caption(
            f"{plural(events, 'event')} added by hand on these slots: the block leaves "
            f"{'them' if events > 1 else 'it'} on the calendar (Mismatches lists hand-added events to delete)."
        )
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        key=f"bl_clashes_{widgets.generation('bl')}",
        height=widgets.fit_height(len(rows), 280),
        column_config={
            "What": st.column_config.TextColumn(width=90),
            "Room": st.column_config.TextColumn(width=90),
            "When": st.column_config.TextColumn(width=150),
            "Booking": st.column_config.LinkColumn("Booking", display_text=r"ref=(.*)$", width=80),
        },
    )


def draw_new() -> None:
    left, right = st.columns([1, 1.25], gap="large")
    may_block = session.may("block.create")
    with left:
        req = draw_form()
        b1, b2 = st.columns(2)
        b1.button(
            "Check",
            key="bl_check",
            icon=":material/search:",
            on_click=check,
            disabled=req is None or not may_block,
            width="stretch",
            help="Lists every booking, hold and block in the way; saves nothing",
        )
    plan: BlockPlan | None = None
    with right:
        if req is not None:
            plan = actions.outcome(PLAN, tag=req, doing="Checking")
        if plan is not None:
            draw_plan(plan)
        elif st.session_state.get(PLAN) is not None and (req is None or st.session_state[PLAN][0] != req):
            st.info("The form changed since the last check: **Check** again.", icon=":material/refresh:")
        elif st.session_state.get(PLAN) is None:
            st.info(
                "Choose the rooms, days and a reason, then **Check**: every booking in the way is listed before "
                "anything is saved. A block claims its time like a booking — nobody can book over it — and puts a "
                "marked event on each room's calendar. Never add events to a room's calendar by hand: block it here.",
                icon=":material/info:",
            )
    ready = plan is not None and plan.can_block
    b2.button(
        "Close the venue" if req is not None and req.kind == BlockKind.CLOSURE else "Block",
        key="bl_block",
        type="primary",
        icon=":material/block:",
        on_click=block,
        args=(req,),
        disabled=not ready or not may_block,
        width="stretch",
        help="Check first"
        if plan is None
        else "Bookings are in the way: move or cancel them first"
        if not ready
        else "Takes the slots now and puts the events on the calendars",
    )


def draw_list(blocks: list[BlockRow]) -> None:
    if not blocks:
        st.info("No current or upcoming blocks: every room is open for booking.", icon=":material/event_available:")
        return
    table = pd.DataFrame(
        [
            {
                "#": b.id,
                "Kind": kind_label(b.kind).split(" (")[0],
                "Rooms": rooms_label(svc, b.rooms),
                "Days": b.days_label,
                "Time": b.time_label,
                "Reason": b.reason,
                "Events": b.events_label,
                "By": b.actor,
            }
            for b in blocks
        ]
    )
    st.markdown(f"**{plural(len(blocks), 'block')}**, soonest first. Select one to release it.")
    picked = widgets.selectable_table(
        table,
        key=widgets.table_key(f"bl_list_{widgets.generation('bl')}", [b.id for b in blocks]),
        rows=len(blocks),
        height=widgets.fit_height(len(blocks), 300),
        column_config={
            "#": st.column_config.NumberColumn(width=45),
            "Kind": st.column_config.TextColumn(width=105),
            "Days": st.column_config.TextColumn(width=145),
            "Time": st.column_config.TextColumn(width=95),
            "Events": st.column_config.TextColumn(width=95, help="Its events on the room calendars"),
        },
    )
    chosen = blocks[picked] if picked is not None else None
    may_release = session.may("block.release")
    r1, r2 = st.columns([3, 1], vertical_alignment="bottom")
    r1.text_input(
        "Why release it",
        key="bl_release_reason",
        max_chars=500,
        disabled=chosen is None or not may_release,
        placeholder="Painters finished early" if chosen else "Select a block first",
    )
    r2.button(
        f"Release #{chosen.id}" if chosen else "Release",
        key="bl_release",
        icon=":material/lock_open:",
        disabled=chosen is None or not may_release,
        on_click=release,
        args=(chosen,),
        width="stretch",
        help="Its rooms can be booked again at once; its calendar events are deleted",
    )


st.title("Blocks & closures")
if kept := st.session_state.get(OUTCOME):
    widgets.show_outcome(*kept)

listed: list[BlockRow] = []
with actions.reporting("Loading the blocks"):
    listed = current_blocks(svc)
new_tab, list_tab = st.tabs(["Block rooms", f"Current blocks ({len(listed)})"])
with new_tab:
    draw_new()
with list_tab:
    draw_list(listed)
