"""Room calendar: all rooms for a day or a week at a glance — booked, unpaid holds, events added by hand in Google
Calendar, and orphan events whose booking is gone."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st

from pages import _ui as ui
from services.booking.queries import schedule
from services.rules.fmt import day_label

ui.run_through_app()
svc = ui.services()
ui.require_role("room_calendar")
settings = svc.settings
TODAY = svc.now().astimezone(settings.tz).date()
OPEN_DAYS = set(settings.open_weekdays)


def _step(direction: int) -> None:
    """Previous / next: a day at a time (skipping closed weekdays) or a week at a time."""
    current: date = st.session_state.get("cal_day") or TODAY
    if st.session_state.get("cal_view") == "Week":
        st.session_state["cal_day"] = current + timedelta(days=7 * direction)
        return
    d = current + timedelta(days=direction)
    while d.weekday() not in OPEN_DAYS:
        d += timedelta(days=direction)
    st.session_state["cal_day"] = d


def _first_open(day: date) -> date:
    while day.weekday() not in OPEN_DAYS:
        day += timedelta(days=1)
    return day


# On a weekend the useful day to look at is the next one the venue is open.
START = _first_open(TODAY)


def _today() -> None:
    st.session_state["cal_day"] = START


st.title("Room calendar")
c1, c2, c3, c4, c5 = st.columns([1.3, 1.2, 0.6, 0.6, 0.6], vertical_alignment="bottom")
# Seeded through session state (not value=) because Previous / Next / Today set this key from their callbacks.
st.session_state.setdefault("cal_day", START)
picked = c1.date_input("Date", key="cal_day", format="YYYY-MM-DD")
view = c2.segmented_control("View", ["Day", "Week"], default="Day", key="cal_view", required=True)
c3.button("Previous", icon=":material/chevron_left:", on_click=_step, args=(-1,), key="cal_prev", width="stretch")
c4.button("Next", icon=":material/chevron_right:", on_click=_step, args=(1,), key="cal_next", width="stretch")
c5.button("Today" if START == TODAY else "Next open day", on_click=_today, key="cal_today", width="stretch")

day = picked or TODAY
if view == "Week":
    monday = day - timedelta(days=day.weekday())
    days = [monday + timedelta(days=i) for i in range(7) if (monday + timedelta(days=i)).weekday() in OPEN_DAYS]
    start, span, title = monday, 7, f"Week of {day_label(monday)}"
else:
    days, start, span, title = [day], day, 1, day_label(day) + (" (today)" if day == TODAY else "")
    if day == START != TODAY:
        title += " (next open day)"

items = []
with ui.reporting("Loading the room calendars"):
    items = schedule(svc, start, days=span)
items = [i for i in items if i.day in days]

# ---- counts ----------------------------------------------------------------------------------------------------
booked = [i for i in items if i.kind == "booked"]
holds = [i for i in items if i.kind == "hold"]
manual = [i for i in items if i.kind == "manual"]
orphans = [i for i in items if i.kind == "orphan"]
st.subheader(title, anchor=False)
k1, k2, k3, k4, k5 = st.columns(5)
k1.metric("Booked", len(booked), help="Paid booking days (one per room per day)")
k2.metric("Unpaid holds", len(holds), help=ui.KIND_HELP["Unpaid hold"])
k3.metric("Manual events", len(manual), help=ui.KIND_HELP["Manual event"])
k4.metric("Orphan events", len(orphans), help=ui.KIND_HELP["Orphan event"])
free = ui.free_hours(svc, items, days)
k5.metric("Free room-hours", f"{sum(free.values()):g}", help="Open hours with nothing in them, all rooms together")

if len(days) == 1 and (closed := ui.closed_reason(svc, days[0])):
    st.info(f"{closed}. Nothing can be booked on this day.", icon=":material/door_front:")

# ---- chart -----------------------------------------------------------------------------------------------------
frame = ui.timeline_frame(svc, items, days)
ui.show_timeline(svc, frame, days, labels=True)
st.caption(" · ".join(f"**{k}**: {v}" for k, v in ui.KIND_HELP.items()) + f". Times in {ui.tz_label(svc)}.")
if orphans:
    st.warning(
        f"{len(orphans)} calendar event(s) belong to a booking that is cancelled or failed: open the booking "
        "and check whether the event should be deleted.",
        icon=":material/report:",
    )

left, right = st.columns([2.8, 1])
with left:
    st.markdown("#### What's on")
    if items:
        week = len(days) > 1
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        **({"Day": day_label(i.day)} if week else {}),
                        "Time": f"{i.start:%H:%M}–{i.end:%H:%M}",
                        "Room": i.room_name,
                        "Kind": ui.KIND_OF.get(i.kind, i.kind),
                        "Who / what": i.label,
                        "Booking": ui.booking_link(i.reference) if i.reference else "",
                    }
                    for i in items
                ]
            ),
            hide_index=True,
            width="stretch",
            column_config={
                "Booking": st.column_config.LinkColumn("Booking", display_text=r"ref=(.*)$"),
            },
        )
    else:
        st.caption("Nothing booked in any room. Use Previous / Next, or pick a date.")
with right:
    st.markdown("#### Free hours")
    st.dataframe(
        pd.DataFrame([{"Room": name, "Free hours": f"{hours:g}"} for name, hours in free.items()]),
        hide_index=True,
        width="stretch",
    )
