"""Room calendar: all rooms for a day or a week at a glance. First the rooms × hours grid ("what is free at 14:00 on
Friday?"): each cell free, held, booked, blocked, an event or closed, a free cell a click away from a phone booking
there. Below it the counts, the list of what is on and the timeline (booked, unpaid holds, blocks, events added by hand
in Google Calendar, orphan events whose booking is gone), all from the grid's one read."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st

from pages.ui import actions, boot, charts, labels, nav, session
from services.booking.availability import closed_reasons, next_open_day, week_of
from services.booking.grid import room_grid
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
    title = f"Week of {day_label(monday)}"
else:
    days, title = [day], day_label(day) + (" (today)" if day == TODAY else "")
    if day == START != TODAY:
        title += " (next open day)"

st.subheader(title, anchor=False)
if len(days) == 1 and (closed := closed_reasons(svc, days[0])):
    st.info(f"{'; '.join(closed)}. Nothing can be booked on this day.", icon=":material/door_front:")

# ---- the grid: what front desk looks at first ------------------------------------------------------------------
books = nav.may_open(session.role(), "phone_booking")
grid = None
with actions.reporting("Loading the rooms"):
    grid = room_grid(svc, days)
if grid is None:
    st.stop()
charts.show_grid(svc, grid, ns="rg_cal", day=None if view == "Week" else day, link=books)
for problem in grid.calendar_errors:
    st.warning(f"Calendar not read — {problem}. Events added by hand are not shown.", icon=":material/sync_problem:")
charts.grid_legend()
click = "**Click a free cell** to start a phone booking there. " if books else ""
st.caption(f"{click}Hover a cell for who or what is there. Times in {labels.tz_label(svc)}.")

# ---- counts ----------------------------------------------------------------------------------------------------
rows = [(d, o) for d in days for o in grid.on(d)]
kinds = [charts.kind_of(o) for _, o in rows]
orphans = kinds.count("Orphan event")
k1, k2, k3, k4, k5, k6 = st.columns(6)
k1.metric("Booked", kinds.count("Booked"), help="Paid booking days (one per room per day)")
k2.metric("Unpaid holds", kinds.count("Unpaid hold"), help=charts.KIND_HELP["Unpaid hold"])
k3.metric("Blocked", kinds.count("Blocked"), help=charts.KIND_HELP["Blocked"])
k4.metric("Manual events", kinds.count("Manual event"), help=charts.KIND_HELP["Manual event"])
k5.metric("Orphan events", orphans, help=charts.KIND_HELP["Orphan event"])
idle = grid.idle_hours()
k6.metric("Free room-hours", f"{sum(idle.values()):g}", help="Open hours with nothing in them, all rooms together")

if orphans:
    st.warning(
        f"{orphans} calendar event(s) belong to a booking that is cancelled or failed: open the booking "
        "and check whether the event should be deleted.",
        icon=":material/report:",
    )

# ---- below the grid: the list of what is on, and the timeline with the names in the bars -----------------------
# The timeline is drawn only while its tab is open (a click on the tab reruns the page): a new visit then neither
# builds its charts nor makes the browser load the chart library before the grid and the list are ready.
listing, timeline = st.tabs(["What's on", "Timeline"], key="cal_tab", on_change="rerun")
if timeline.open:
    with timeline:
        charts.show_timeline(svc, charts.timeline_frame(svc, grid), days, labels=True)
        st.caption(
            " · ".join(f"**{k}**: {v}" for k, v in charts.KIND_HELP.items()) + f". Times in {labels.tz_label(svc)}."
        )

names = {r.slug: r.name for r in grid.rooms}
left, right = listing.columns([2.8, 1])
with left:
    if rows:
        week = len(days) > 1
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        **({"Day": day_label(d)} if week else {}),
                        "Time": o.span,
                        "Room": names.get(o.room, o.room),
                        "Kind": kind,
                        "Who / what": o.label,
                        "Booking": nav.booking_link(o.reference) if o.reference else "",
                    }
                    for (d, o), kind in zip(rows, kinds, strict=True)
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
    st.dataframe(
        pd.DataFrame([{"Room": name, "Free hours": f"{hours:g}"} for name, hours in idle.items()]),
        hide_index=True,
        width="stretch",
    )
