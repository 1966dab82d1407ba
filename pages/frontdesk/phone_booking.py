"""Phone booking: a caller wants a room. Room, days and time → quote → customer → hold → payment.

The form is on the left, a fragment: typing in it reruns the form alone, never the grid, and the page reruns only
when the panel has something new to show. On the right the panel: what came of the last action (the quote, why Book
failed, the held booking's reference to read out), which stays in view while the form scrolls, above the rooms ×
hours grid of the day asked for, where a free cell fills the form in.

Everything the person types lives under `pb_*` keys in session state. Once a booking is held the form locks (so what
is on screen is what was booked) until "New booking" clears it; the Book button acts once per booking, so a
double-click cannot create two. The state and the callbacks are pages/frontdesk/phone_form.py. A free cell on the
Room calendar opens this page as /phone_booking?room=…&day=…&start=…&end=….
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from pages.frontdesk import phone_form
from pages.ui import actions, boot, charts, labels, session, widgets
from services.booking.availability import closed_reasons, next_open_day, open_days, slot_times, week_of
from services.booking.grid import room_grid
from services.core.catalogue import Room
from services.rules.fmt import day_label, days_label, duration_label, hhmm

svc = boot.services()
session.require_role("phone_booking")

settings = svc.settings
policy = svc.policy  # the venue rules in force (Settings may have changed them)
ROOMS: dict[str, Room] = {r.slug: r for r in svc.catalogue.bookable_rooms}
TODAY = svc.now().astimezone(settings.tz).date()
TIMES = slot_times(svc)

# The outcome at the top of the panel follows the page down (over the grid), so it is in view wherever the person is
# in the form (the panel's column is as tall as the form's).
st.html(
    "<style>"
    "div[data-testid='stLayoutWrapper']:has(>.st-key-pb_outcome){position:sticky;top:3.75rem;z-index:5;"
    "background:#fff;padding-bottom:.25rem}"
    "</style>"
)

note = phone_form.take_link(svc, ROOMS, TIMES, TODAY)
phone_form.seed(svc, ROOMS, TIMES, TODAY)
# What the panel is drawn from in this run: the form's fragment reruns the whole page only when it changes.
st.session_state["pb_panel_drawn"] = phone_form.panel_state(svc, ROOMS)
st.title("Phone booking")
locked = "pb_created" in st.session_state
form, panel = st.columns([1, 1.15], gap="medium")


@st.fragment
def fill_in(locked: bool) -> None:
    """The form: room, days and times, Quote, the customer, Book. A fragment: typing reruns this alone, never the
    grid; when the panel has something new to show (a quote, Book's outcome, another request to outline on the
    grid) it reruns the page. Every button of the form is in it, so a click right after typing is never lost."""
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
    facts = [f"minimum **{room.min_hours:g} h**"]
    if room.discount_eligible and policy.discount_bands:
        facts.append("multi-day discount " + ", ".join(f"{p} % from {d} days" for d, p in policy.discount_bands))
    st.caption(" · ".join(facts) + (f" · {room.description}" if room.description else ""))

    separate = st.toggle(
        "Separate dates",
        key="pb_separate",
        disabled=locked,
        help="Off: a first day and the weekdays after it. On: pick any dates.",
    )
    if separate:
        st.multiselect(
            "Dates",
            open_days(svc, TODAY + timedelta(days=1), TODAY + timedelta(days=policy.max_days_ahead)),
            key="pb_dates",
            format_func=day_label,
            disabled=locked,
            placeholder="Choose the days",
            max_selections=policy.max_days_per_booking,
        )
    else:
        d1, d2 = st.columns([1.6, 1])
        d1.date_input(
            "First day",
            key="pb_first_day",
            min_value=TODAY,
            max_value=TODAY + timedelta(days=policy.max_days_ahead + 7),
            format="YYYY-MM-DD",
            disabled=locked,
        )
        d2.number_input(
            "Weekdays",
            min_value=1,
            max_value=policy.max_days_per_booking,
            step=1,
            key="pb_ndays",
            disabled=locked,
            help="How many weekdays in a row, from the first day",
        )

    t1, t2, t3 = st.columns([1, 1, 1.2])
    t1.selectbox("Start", TIMES[:-1], format_func=hhmm, key="pb_start", disabled=locked)
    t2.selectbox("End", TIMES[1:], format_func=hhmm, key="pb_end", disabled=locked)
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

    # What the request says, and the mistakes that can be seen before quoting, right under the fields.
    req = phone_form.request_from_state(svc, ROOMS)
    dates = list(req.dates)
    minutes = req.minutes_per_day
    if dates:
        flagged = [
            f"**{day_label(d)}** :red[({why[0]})]" if (why := closed_reasons(svc, d)) else day_label(d) for d in dates
        ]
        problems = []
        if minutes <= 0:
            problems.append(":red[**end before start**]")
        if req.party_size and req.party_size > room.capacity:
            problems.append(f":red[**{req.party_size} people: the {room.name} holds {room.capacity}**]")
        st.markdown(
            f"{room.name} · {', '.join(flagged)} · {hhmm(req.start)}–{hhmm(req.end)}"
            + (f" ({duration_label(minutes)} a day)" if minutes > 0 else "")
            + "".join(f" — {p}" for p in problems)
        )
    else:
        st.markdown(":red[Choose at least one date.]")
    st.button(
        "Quote",
        icon=":material/request_quote:",
        disabled=locked,
        key="pb_quote_btn",
        on_click=phone_form.quote_now,
        args=(svc, ROOMS),
        help="Checks the rules, the calendars and the holds, and prices it. The answer shows on the right.",
    )

    # ---- customer ------------------------------------------------------------------------------------------------
    st.markdown("**Customer**")
    n1, n2 = st.columns([1.4, 1])
    n1.text_input("Name", key="pb_name", disabled=locked)
    n2.text_input("Phone", key="pb_phone", disabled=locked)
    st.text_input(
        "Email",
        key="pb_email",
        disabled=locked,
        placeholder="name@example.com",
        help="The confirmation and receipts go here.",
    )
    widgets.email_suggestion("pb_email", disabled=locked)
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
        height=68,
        placeholder="Anything staff should know (set-up, access, who to ask for)",
    )

    # ---- how it is paid ---------------------------------------------------------------------------------------------
    on_invoice = (
        st.radio(
            "Pay by",
            ["card", "invoice"],
            key="pb_pay_by",
            horizontal=True,
            disabled=locked,
            format_func={"card": "Card (pay link)", "invoice": "Invoice (an organisation on terms)"}.get,
        )
        == "invoice"
    )
    if on_invoice:
        o1, o2 = st.columns([1.4, 1])
        o1.text_input("Organisation", key="pb_inv_org", disabled=locked, placeholder="Who the invoice is made out to")
        o2.text_input("PO number", key="pb_inv_po", disabled=locked, placeholder="Optional")
        c1, c2, c3 = st.columns([1, 1.4, 0.8])
        c1.text_input("Billing contact", key="pb_inv_contact", disabled=locked)
        c2.text_input("Billing email", key="pb_inv_email", disabled=locked, placeholder="accounts@example.org")
        c3.selectbox(
            "Terms",
            settings.invoice_terms_days,
            key="pb_inv_terms",
            disabled=locked,
            format_func=lambda d: f"net {d}",
        )
        st.caption(
            "Stripe emails the invoice (with the GST and PO number) to the billing email; the days stay held until it "
            f"is paid, due at the latest {settings.invoice_due_lead_hours} h before the first day."
        )

    # ---- book ----------------------------------------------------------------------------------------------------
    st.button(
        "Book on invoice" if on_invoice else "Book",
        type="primary",
        icon=":material/event_available:",
        disabled=locked,
        key="pb_book",
        on_click=phone_form.book,
        args=(svc, ROOMS),
        help=(
            "Holds the room until the invoice is paid, and has Stripe send the invoice."
            if on_invoice
            else f"Holds the room for {duration_label(settings.phone_hold_minutes)} while the customer pays."
        )
        + " The reference shows on the right.",
    )
    if phone_form.panel_state(svc, ROOMS) != st.session_state.get("pb_panel_drawn"):
        st.rerun(scope="app")


with form:
    fill_in(locked)

# ---- the panel: the outcome, then the rooms grid ----------------------------------------------------------------
req = phone_form.request_from_state(svc, ROOMS)
room, dates, minutes = ROOMS[req.room], list(req.dates), req.minutes_per_day
with panel:
    with st.container(key="pb_outcome"):
        phone_form.show_outcome(svc, req, room, note)

    shown = dates[0] if dates else next_open_day(svc, TODAY)
    g1, g2 = st.columns([2.4, 1], vertical_alignment="center")
    view = g2.segmented_control(
        "Grid", ["Day", "Week"], default="Day", key="pbg_view", required=True, label_visibility="collapsed"
    )
    week = view == "Week"
    monday = shown - timedelta(days=shown.weekday())
    g1.markdown(f"**Rooms — {f'week of {day_label(monday)}' if week else day_label(shown)}**")
    asked = charts.Asked(req.room, frozenset(dates), req.start, req.end) if minutes > 0 else None
    shown_days = week_of(svc, shown) if week else [shown]
    with actions.reporting("Loading the rooms"):
        grid = room_grid(svc, shown_days)
        charts.show_grid(
            svc,
            grid,
            ns="rg_pb",
            day=None if week else shown,
            pick=None if locked else phone_form.pick,
            asked=asked,
            compact=True,
        )
        for problem in grid.calendar_errors:
            st.warning(f"Calendar not read — {problem}.", icon=":material/sync_problem:")
    charts.grid_legend()
    later = [d for d in dates if d not in shown_days]
    st.caption(
        ("Click a free cell to put it in the form. " if not locked else "")
        + "Dashed outline: this request."
        + (f" Also asked: {days_label(later)}." if later else "")
        + f" Times in {labels.tz_label(svc)}."
    )
