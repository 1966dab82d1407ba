"""Room calendar: all rooms for a day or a week at a glance — booked, unpaid holds, events added by hand in Google
Calendar, and orphan events whose booking is gone."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st

from pages.ui import actions, boot, charts, labels, nav, session
from services.booking.availability import closed_reasons, next_open_day, week_of
from services.booking.queries import free_hours, schedule
from services.rules.fmt import day_label

svc = boot.services()
session.require_role("room_calendar")
TODAY = svc.now().astimezone(svc.settings.tz).date()


def _step(direction: int) -> None:
    """Previous / next: a day at a time (skipping the days the venue is closed) or a week at a time."""
    current: date = st.session_state.get("cal_day") or TODAY
    if st.session_state.get("cal_view") == "Week":
        st.session_state["cal_day"] = current + timedelta(days=7 * direction)
        return
    st.session_state["cal_day"] = next_open_day(svc, current + timedelta(days=direction), step=direction)


# On a weekend (or a holiday) the useful day to look at is the next one the venue is open.
START = next_open_day(svc, TODAY)


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
    days = week_of(svc, day)
    start, span, title = monday, 7, f"Week of {day_label(monday)}"
else:
    days, start, span, title = [day], day, 1, day_label(day) + (" (today)" if day == TODAY else "")
    if day == START != TODAY:
        title += " (next open day)"

items = []
with actions.reporting("Loading the room calendars"):
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
k2.metric("Unpaid holds", len(holds), help=charts.KIND_HELP["Unpaid hold"])
k3.metric("Manual events", len(manual), help=charts.KIND_HELP["Manual event"])
k4.metric("Orphan events", len(orphans), help=charts.KIND_HELP["Orphan event"])
free = free_hours(svc, items, days)
k5.metric("Free room-hours", f"{sum(free.values()):g}", help="Open hours with nothing in them, all rooms together")

if len(days) == 1 and (closed := closed_reasons(svc, days[0])):
    st.info(f"{'; '.join(closed)}. Nothing can be booked on this day.", icon=":material/door_front:")

# ---- chart -----------------------------------------------------------------------------------------------------
frame = charts.timeline_frame(svc, items, days)
charts.show_timeline(svc, frame, days, labels=True)
st.caption(" · ".join(f"**{k}**: {v}" for k, v in charts.KIND_HELP.items()) + f". Times in {labels.tz_label(svc)}.")
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
                        "Kind": charts.KIND_OF.get(i.kind, i.kind),
                        "Who / what": i.label,
                        "Booking": nav.booking_link(i.reference) if i.reference else "",
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
