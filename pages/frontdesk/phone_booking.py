"""Phone booking: a caller wants a room. Room, days and time → week grid and quote → customer → hold → payment.

Everything the person types lives under `pb_*` keys in session state. Once a booking is held the form locks (so
what is on screen is what was booked) until "New booking" clears it; the Book button acts once per booking, so a
double-click cannot create two. The state and the callbacks are pages/frontdesk/phone_form.py.
"""

from __future__ import annotations

from datetime import time, timedelta

import pandas as pd
import streamlit as st

from pages.frontdesk import phone_form
from pages.ui import actions, boot, charts, labels, session, widgets
from services.booking.availability import closed_reasons, next_open_day, open_days, slot_times, week_of
from services.booking.queries import schedule
from services.booking.quotes import quote
from services.booking.requests import QuoteResult
from services.core.catalogue import Room
from services.rules.fmt import day_label, days_label, duration_label, hhmm

svc = boot.services()
session.require_role("phone_booking")

settings = svc.settings
ROOMS: dict[str, Room] = {r.slug: r for r in svc.catalogue.bookable_rooms}
TODAY = svc.now().astimezone(settings.tz).date()
TIMES = slot_times(svc)


def _at(options: list[time], wanted: time) -> int:
    """Index of `wanted` in `options`, or the nearest later option (opening hours are a setting)."""
    return next((i for i, t in enumerate(options) if t >= wanted), 0)


st.title("Phone booking")
locked = "pb_created" in st.session_state
if locked:
    st.info(
        "This booking is saved: the form is locked. Use **New booking** below it for the next caller.",
        icon=":material/lock:",
    )

# The form on the left, the week's grid on the right: the person on the phone sees who is in the rooms while they
# type, without scrolling away from the form.
form, grid = st.columns([1, 1.15], gap="large")

# ---- room, days and time ---------------------------------------------------------------------------------------
with form:
    slug = st.selectbox(
        "Room",
        list(ROOMS),
        key="pb_room",
        disabled=locked,
        format_func=lambda s: (
            f"{ROOMS[s].name} — {labels.money(svc, ROOMS[s].hourly_price_cents)}/h, up to {ROOMS[s].capacity}"
        ),
    )
    room = ROOMS[slug]
    facts = [
        f"**{labels.money(svc, room.hourly_price_cents)}** per hour",
        f"up to **{room.capacity}** people",
        f"minimum **{room.min_hours:g} h**",
    ]
    if room.discount_eligible and settings.discount_bands:
        facts.append("multi-day discount " + ", ".join(f"{p} % from {d} days" for d, p in settings.discount_bands))
    st.markdown(" · ".join(facts) + (f"  \n:gray[{room.description}]" if room.description else ""))

    separate = st.toggle(
        "Separate dates",
        key="pb_separate",
        disabled=locked,
        help="Off: a first day and the weekdays after it. On: pick any dates.",
    )
    if separate:
        st.multiselect(
            "Dates",
            open_days(svc, TODAY + timedelta(days=1), TODAY + timedelta(days=settings.max_days_ahead)),
            key="pb_dates",
            format_func=day_label,
            disabled=locked,
            placeholder="Choose the days",
            max_selections=settings.max_days_per_booking,
        )
    else:
        d1, d2 = st.columns([1.6, 1])
        d1.date_input(
            "First day",
            value=next_open_day(svc, TODAY + timedelta(days=2)),
            key="pb_first_day",
            min_value=TODAY,
            max_value=TODAY + timedelta(days=settings.max_days_ahead + 7),
            format="YYYY-MM-DD",
            disabled=locked,
        )
        d2.number_input(
            "Weekdays",
            min_value=1,
            max_value=settings.max_days_per_booking,
            value=1,
            step=1,
            key="pb_ndays",
            disabled=locked,
            help="How many weekdays in a row, from the first day",
        )

    t1, t2, t3 = st.columns([1, 1, 1.2])
    t1.selectbox(
        "Start", TIMES[:-1], index=_at(TIMES[:-1], time(9, 0)), format_func=hhmm, key="pb_start", disabled=locked
    )
    t2.selectbox("End", TIMES[1:], index=_at(TIMES[1:], time(12, 0)), format_func=hhmm, key="pb_end", disabled=locked)
    t3.number_input(
        "Group size",
        min_value=1,
        max_value=1000,
        value=None,
        step=1,
        key="pb_party",
        placeholder="Optional",
        disabled=locked,
    )

    req = phone_form.request_from_state(svc, ROOMS)
    dates = list(req.dates)
    minutes = req.minutes_per_day
    if dates:
        flagged = [
            f"**{day_label(d)}** :red[({why[0]})]" if (why := closed_reasons(svc, d)) else day_label(d) for d in dates
        ]
        st.markdown(
            f"{room.name} · {', '.join(flagged)} · {hhmm(req.start)}–{hhmm(req.end)}"
            + (f" ({duration_label(minutes)} a day)" if minutes > 0 else " — :red[**end before start**]")
        )
    else:
        st.markdown("Choose at least one date.")

# ---- week grid -------------------------------------------------------------------------------------------------
anchor = dates[0] if dates else next_open_day(svc, TODAY)
monday = anchor - timedelta(days=anchor.weekday())
# The opening weekdays of the week, and any closed day of it the caller asked for (shown closed).
week_days = sorted({*week_of(svc, anchor), *(d for d in dates if monday <= d < monday + timedelta(days=7))})
with grid:
    st.markdown(f"**Who is in the rooms — week of {day_label(monday)}**")
    with actions.reporting("Loading the room calendars"):
        items = schedule(svc, monday, days=7)
        frame = charts.timeline_frame(svc, items, week_days)
        overlay = pd.DataFrame(
            [
                {
                    "day": day_label(d),
                    "room": room.name,
                    "kind": "Your request",
                    "start_h": req.start.hour + req.start.minute / 60,
                    "end_h": req.end.hour + req.end.minute / 60,
                    "when": f"{day_label(d)} {hhmm(req.start)}–{hhmm(req.end)}",
                    "who": "This request",
                    "reference": "",
                    "label": "",
                }
                for d in dates
                if d in week_days and minutes > 0
            ]
        )
        later = [d for d in dates if d not in week_days]
        st.caption(
            "Dashed blue outline: this request. Hover a bar for the customer and reference."
            + (f" Not shown: {days_label(later)} (other weeks)." if later else "")
        )
        charts.show_timeline(svc, frame, week_days, request=overlay, highlight=room.name)

# ---- quote -----------------------------------------------------------------------------------------------------
with form:
    st.subheader("Quote", anchor=False)
    if st.button("Quote", icon=":material/request_quote:", disabled=locked, key="pb_quote_btn"):
        with actions.reporting("Quoting"):
            st.session_state["pb_quote"] = (phone_form.signature(req), quote(svc, req))

    stored: tuple[tuple[object, ...], QuoteResult] | None = st.session_state.get("pb_quote")
    if stored is None:
        st.caption("Press **Quote** to check the calendars and get the price.")
    elif stored[0] != phone_form.signature(req):
        st.caption("The request changed since the last quote: press **Quote** again.")
    elif stored[1].reasons:
        st.error(
            "**This can't be booked:**\n\n" + "\n".join(f"- {r}" for r in stored[1].reasons), icon=":material/block:"
        )
    else:
        q = stored[1].quote
        st.success(
            f"Available — **{labels.money(svc, q.total_cents)}** for {len(q.legs)} day(s)",
            icon=":material/check_circle:",
        )
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Day": day_label(leg.day),
                        "Hours": duration_label(q.minutes_per_day),
                        "Price": labels.money(svc, leg.base_cents),
                        "Discount": labels.money(svc, -leg.discount_cents),
                        "Day total": labels.money(svc, leg.total_cents),
                    }
                    for leg in q.legs
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        if q.discount_percent:
            st.caption(
                f"Multi-day discount {q.discount_percent} %: {labels.money(svc, q.discount_cents)} off "
                f"{labels.money(svc, q.subtotal_cents)}."
            )

    # ---- customer ----------------------------------------------------------------------------------------------
    st.subheader("Customer", anchor=False)
    st.text_input("Name", key="pb_name", disabled=locked)
    n1, n2 = st.columns([1.4, 1])
    with n1:
        st.text_input(
            "Email",
            key="pb_email",
            disabled=locked,
            placeholder="name@example.com",
            help="The confirmation and receipts go here.",
        )
        widgets.email_suggestion("pb_email", disabled=locked)
    n2.text_input("Phone", key="pb_phone", disabled=locked)

    if room.extras:
        st.markdown(f"**{room.name} details**")
        st.warning(
            f"The {room.name} needs these before the session. If the caller doesn't know yet you can book "
            "anyway, but someone must collect them.",
            icon=":material/assignment_late:",
        )
        widgets.extras_inputs(room, f"pb_x_{room.slug}_", disabled=locked)

    st.text_area(
        "Notes",
        key="pb_notes",
        disabled=locked,
        height=80,
        placeholder="Anything staff should know (set-up, access, who to ask for)",
    )

    # ---- book --------------------------------------------------------------------------------------------------
    st.button(
        "Book",
        type="primary",
        icon=":material/event_available:",
        disabled=locked,
        key="pb_book",
        on_click=phone_form.book,
        args=(svc, ROOMS),
        help=f"Holds the room for {duration_label(settings.phone_hold_minutes)} while the customer pays.",
    )
    if (error := st.session_state.get("pb_error")) is not None:
        actions.show_error(error, doing="Not booked")
    if (created := st.session_state.get("pb_created")) is not None:
        phone_form.show_created(svc, created)
