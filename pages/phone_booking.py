"""Phone booking: a caller wants a room. Room, days and time → week grid and quote → customer → hold → payment.

Everything the person types lives under `pb_*` keys in session state. Once a booking is held the form locks (so
what is on screen is what was booked) until "New booking" clears it; the Book button acts once per booking, so a
double-click cannot create two.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

import pandas as pd
import streamlit as st

from pages import _ui as ui
from services.booking import BookingRequest, QuoteResult, quote
from services.booking.queries import schedule
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import DomainError
from services.rules.fmt import day_label, hhmm

log = logging.getLogger("roomdesk.ui.phone")

ui.run_through_app()
svc = ui.services()
ui.require_role("phone_booking")

settings = svc.settings
ROOMS: dict[str, Room] = {r.slug: r for r in svc.catalogue.bookable_rooms}
TODAY = svc.now().astimezone(settings.tz).date()
OPEN_DAYS = set(settings.open_weekdays)


def _times() -> list[time]:
    out, t = [], datetime.combine(TODAY, settings.open_time)
    while t.time() <= settings.close_time and t.date() == TODAY:
        out.append(t.time())
        t += timedelta(minutes=settings.slot_minutes)
    return out


TIMES = _times()


def _at(options: list[time], wanted: time) -> int:
    """Index of `wanted` in `options`, or the nearest later option (opening hours are a setting)."""
    return next((i for i, t in enumerate(options) if t >= wanted), 0)


def _next_open_day(after: date) -> date:
    d = after
    while d.weekday() not in OPEN_DAYS:
        d += timedelta(days=1)
    return d


def chosen_dates() -> list[date]:
    """The dates the person picked: a first day plus following open weekdays, or separate dates."""
    ss = st.session_state
    if ss.get("pb_separate"):
        return sorted(ss.get("pb_dates") or [])
    first: date | None = ss.get("pb_first_day")
    if first is None:
        return []
    # The first day is taken as typed, even a Saturday: the quote then says why it cannot be booked, rather than
    # the page silently moving the caller to Monday.
    out, d = [first], first
    while len(out) < int(ss.get("pb_ndays") or 1):
        d += timedelta(days=1)
        if d.weekday() in OPEN_DAYS:
            out.append(d)
    return out


def request_from_state() -> BookingRequest:
    """The request as the widgets hold it now (callbacks read it too, so it never comes from a stale rerun)."""
    ss = st.session_state
    room = ROOMS[ss["pb_room"]]
    extras = ui.extras_values(room, f"pb_x_{room.slug}_")
    return BookingRequest(
        room=room.slug,
        dates=tuple(chosen_dates()),
        start=ss["pb_start"],
        end=ss["pb_end"],
        customer_name=ss.get("pb_name", ""),
        customer_email=ss.get("pb_email", ""),
        customer_phone=ss.get("pb_phone", ""),
        party_size=ss.get("pb_party"),
        extras=extras or None,
        notes=ss.get("pb_notes", ""),
        channel="phone",
    )


def _signature(req: BookingRequest) -> tuple[object, ...]:
    return req.room, req.dates, req.start, req.end, req.party_size


# ------------------------------------------------------------------------------------------------ actions


def _book(svc: Services, actor: str) -> None:
    ss = st.session_state
    if "pb_created" in ss:  # a second click on Book: the booking already exists
        return
    ss.pop("pb_error", None)
    try:
        ss["pb_created"] = ui.desk().start_booking(request_from_state())
    except DomainError as exc:
        ss["pb_error"] = exc
    except Exception:
        log.exception("Phone booking failed")
        ss["pb_error"] = DomainError("The booking failed unexpectedly; nothing is shown here, see the server log")


def _paid(svc: Services, actor: str) -> None:
    ss = st.session_state
    created = ss.get("pb_created")
    if created is None or "pb_paid" in ss:
        return
    ss.pop("pb_pay_error", None)
    try:
        ss["pb_paid"] = ui.desk().record_payment(created.booking_id)
    except DomainError as exc:
        ss["pb_pay_error"] = exc
    except Exception:
        log.exception("Sandbox payment failed")
        ss["pb_pay_error"] = DomainError("The payment failed unexpectedly; nothing is shown here, see the server log")


def _send_link(svc: Services, actor: str) -> None:
    ss = st.session_state
    created = ss.get("pb_created")
    if created is None:
        return
    ss.pop("pb_link_error", None)
    try:
        ss["pb_link"] = ui.desk().send_pay_link(created.booking_id)
    except DomainError as exc:
        ss["pb_link_error"] = exc
    except Exception:
        log.exception("Sending the pay link failed")
        ss["pb_link_error"] = DomainError("The pay link could not be sent; see the server log")


def _new_booking() -> None:
    for key in [k for k in st.session_state if str(k).startswith("pb_")]:
        del st.session_state[key]


# ------------------------------------------------------------------------------------------------ page

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
            f"{ROOMS[s].name} — {ui.money(svc, ROOMS[s].hourly_price_cents)}/h, up to {ROOMS[s].capacity}"
        ),
    )
    room = ROOMS[slug]
    facts = [
        f"**{ui.money(svc, room.hourly_price_cents)}** per hour",
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
        window = [TODAY + timedelta(days=i) for i in range(1, settings.max_days_ahead + 1)]
        st.multiselect(
            "Dates",
            [d for d in window if d.weekday() in OPEN_DAYS],
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
            value=_next_open_day(TODAY + timedelta(days=2)),
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

    req = request_from_state()
    dates = list(req.dates)
    minutes = (req.end.hour * 60 + req.end.minute) - (req.start.hour * 60 + req.start.minute)
    if dates:
        flagged = [
            f"**{day_label(d)}** :red[({why})]" if (why := ui.closed_reason(svc, d)) else day_label(d) for d in dates
        ]
        st.markdown(
            f"{room.name} · {', '.join(flagged)} · {hhmm(req.start)}–{hhmm(req.end)}"
            + (f" ({ui.hours_label(minutes)} a day)" if minutes > 0 else " — :red[**end before start**]")
        )
    else:
        st.markdown("Choose at least one date.")

# ---- week grid -------------------------------------------------------------------------------------------------
week_of = dates[0] if dates else _next_open_day(TODAY)
monday = week_of - timedelta(days=week_of.weekday())
week_days = [
    monday + timedelta(days=i)
    for i in range(7)
    if (monday + timedelta(days=i)).weekday() in OPEN_DAYS or monday + timedelta(days=i) in dates
]
with grid:
    st.markdown(f"**Who is in the rooms — week of {day_label(monday)}**")
    with ui.reporting("Loading the room calendars"):
        items = schedule(svc, monday, days=7)
        frame = ui.timeline_frame(svc, items, week_days)
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
            + (f" Not shown: {ui.days_label(later)} (other weeks)." if later else "")
        )
        ui.show_timeline(svc, frame, week_days, request=overlay, highlight=room.name)

# ---- quote -----------------------------------------------------------------------------------------------------
with form:
    st.subheader("Quote", anchor=False)
    if st.button("Quote", icon=":material/request_quote:", disabled=locked, key="pb_quote_btn"):
        with ui.reporting("Quoting"):
            st.session_state["pb_quote"] = (_signature(req), quote(svc, req))

    stored: tuple[tuple[object, ...], QuoteResult] | None = st.session_state.get("pb_quote")
    if stored is None:
        st.caption("Press **Quote** to check the calendars and get the price.")
    elif stored[0] != _signature(req):
        st.caption("The request changed since the last quote: press **Quote** again.")
    elif stored[1].reasons:
        st.error(
            "**This can't be booked:**\n\n" + "\n".join(f"- {r}" for r in stored[1].reasons), icon=":material/block:"
        )
    else:
        q = stored[1].quote
        st.success(
            f"Available — **{ui.money(svc, q.total_cents)}** for {len(q.legs)} day(s)", icon=":material/check_circle:"
        )
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Day": day_label(leg.day),
                        "Hours": ui.hours_label(q.minutes_per_day),
                        "Price": ui.money(svc, leg.base_cents),
                        "Discount": ui.money(svc, -leg.discount_cents),
                        "Day total": ui.money(svc, leg.total_cents),
                    }
                    for leg in q.legs
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        if q.discount_percent:
            st.caption(
                f"Multi-day discount {q.discount_percent} %: {ui.money(svc, q.discount_cents)} off "
                f"{ui.money(svc, q.subtotal_cents)}."
            )

    # ---- customer ----------------------------------------------------------------------------------------------
    st.subheader("Customer", anchor=False)
    st.text_input("Name", key="pb_name", disabled=locked)
    n1, n2 = st.columns([1.4, 1])
    n1.text_input(
        "Email",
        key="pb_email",
        disabled=locked,
        placeholder="name@example.com",
        help="The confirmation and receipts go here.",
    )
    n2.text_input("Phone", key="pb_phone", disabled=locked)

    if room.extras:
        st.markdown(f"**{room.name} details**")
        st.warning(
            f"The {room.name} needs these before the session. If the caller doesn't know yet you can book "
            "anyway, but someone must collect them.",
            icon=":material/assignment_late:",
        )
        ui.extras_inputs(room, f"pb_x_{room.slug}_", disabled=locked)

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
        on_click=_book,
        args=(svc, ui.actor()),
        help=f"Holds the room for {ui.hours_label(settings.phone_hold_minutes)} while the customer pays.",
    )

    if (error := st.session_state.get("pb_error")) is not None:
        ui.show_error(error, doing="Not booked")

    created = st.session_state.get("pb_created")
    if created is not None:
        paid = st.session_state.get("pb_paid")
        if paid is None:
            st.success(
                f"Booking **{created.reference}** is held: **{ui.money(svc, created.amount_cents)}** to pay by "
                f"**{ui.venue(svc, created.hold_expires_at)}** ({ui.tz_label(svc)}). "
                "Read the reference to the caller.",
                icon=":material/bookmark_added:",
            )
        st.markdown(f"### {created.reference}")  # large: it is read out letter by letter
        st.caption(f"{ui.money(svc, created.amount_cents)} · Stripe PaymentIntent `{created.payment_intent}`")

        link = st.session_state.get("pb_link")
        st.button(
            "Email pay link" if link is None else "Email the pay link again",
            type="primary" if paid is None and link is None else "secondary",
            icon=":material/forward_to_inbox:",
            key="pb_send_link",
            disabled=paid is not None,
            on_click=_send_link,
            args=(svc, ui.actor()),
            help="Emails the customer a link to the pay page: they read the cancellation policy, accept the terms "
            "and pay by card. The booking confirms itself when the payment goes through.",
        )
        if (link_error := st.session_state.get("pb_link_error")) is not None:
            ui.show_error(link_error, doing="Pay link not sent")
        if link is not None:
            url, sent = link
            email = st.session_state.get("pb_email", "")
            if sent:
                st.success(f"Pay link emailed to **{email}**.", icon=":material/mark_email_read:")
            else:
                st.warning(
                    f"The mail server did not take the email to **{email}**; it stays in the outbox and is retried. "
                    "You can also read the link out or paste it into a message.",
                    icon=":material/schedule_send:",
                )
            st.code(url, language=None)

        if settings.is_sandbox:
            st.button(
                "Customer paid",
                icon=":material/credit_score:",
                key="pb_pay",
                disabled=paid is not None,
                on_click=_paid,
                args=(svc, ui.actor()),
                help="Sandbox: pays with a test card, then runs what Stripe's webhook would (events, email).",
            )
        else:
            st.caption("The booking confirms itself when Stripe reports the payment.")
        if (pay_error := st.session_state.get("pb_pay_error")) is not None:
            ui.show_error(pay_error, doing="Payment not recorded")
        if paid is not None:
            body = "\n".join(f"- {m}" for m in paid.messages)
            if paid.outcome in ("confirmed", "already_done"):
                st.success(f"**Confirmed** — {created.reference}\n\n{body}", icon=":material/task_alt:")
            elif paid.outcome == "auto_refunded":
                st.warning(f"**Not confirmed; refunded in full** — {created.reference}\n\n{body}")
            else:
                st.error(f"**Needs attention ({paid.outcome.replace('_', ' ')})** — {created.reference}\n\n{body}")
        st.page_link(
            "pages/bookings.py",
            label=f"Open booking {created.reference}",
            icon=":material/open_in_new:",
            query_params={"ref": created.reference},
        )
        st.button("New booking", icon=":material/add:", key="pb_new", on_click=_new_booking)
