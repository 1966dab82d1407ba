"""The Phone booking page's state and steps: the request as the widgets hold it (under `pb_*` keys), how a link or a
click on the rooms grid fills it in, the Quote / Book / Customer paid / Email pay link callbacks (each write through
the Desk, once per booking), and the panel beside the form that shows what came of them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, TypeVar

import pandas as pd
import streamlit as st

from pages.ui import actions, labels, nav, widgets
from services.booking.availability import next_open_day, open_days_from
from services.booking.quotes import quote
from services.booking.requests import BookingRequest, InvoiceStart, InvoiceTerms, QuoteResult
from services.core.errors import DomainError
from services.rules.bill import quote_bill, tax_words
from services.rules.fmt import day_label, days_label, duration_label, hhmm

if TYPE_CHECKING:
    from services.booking.grid import Cell
    from services.booking.requests import StartResult
    from services.core.catalogue import Room
    from services.core.context import Services

T = TypeVar("T")
# /phone_booking?room=boardroom&day=2026-12-11&start=14:00[&end=16:00]: a booking started from the rooms grid.
LINK_KEYS = ("room", "day", "start", "end")
# The form's own values (buttons and outcomes are pb_* keys too, but not these).
FORM_KEYS = (
    "pb_room", "pb_separate", "pb_dates", "pb_first_day", "pb_ndays", "pb_start", "pb_end", "pb_party",
    "pb_name", "pb_email", "pb_phone", "pb_notes",
    "pb_pay_by", "pb_inv_org", "pb_inv_contact", "pb_inv_email", "pb_inv_po", "pb_inv_terms",
)  # fmt: skip
CUSTOMER_KEYS = (
    "pb_name", "pb_email", "pb_phone", "pb_notes", "pb_party", "pb_inv_org", "pb_inv_contact", "pb_inv_email",
    "pb_inv_po",
)  # fmt: skip


def chosen_dates(svc: Services) -> list[date]:
    """The dates the person picked: a first day and the open days after it, or separate dates."""
    ss = st.session_state
    if ss.get("pb_separate"):
        return sorted(ss.get("pb_dates") or [])
    first: date | None = ss.get("pb_first_day")
    if first is None:
        return []
    # The first day is taken as typed, even a Saturday: the quote then says why it cannot be booked, rather than
    # the page silently moving the caller to Monday.
    return open_days_from(svc, first, int(ss.get("pb_ndays") or 1))


def request_from_state(svc: Services, rooms: dict[str, Room]) -> BookingRequest:
    """The request as the widgets hold it now (callbacks read it too, so it never comes from a stale rerun)."""
    ss = st.session_state
    room = rooms[ss["pb_room"]]
    extras = widgets.extras_values(room, f"pb_x_{room.slug}_")
    return BookingRequest(
        room=room.slug,
        dates=tuple(chosen_dates(svc)),
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


def signature(req: BookingRequest) -> tuple[object, ...]:
    """What a quote depends on: a quote for another signature is stale."""
    return req.room, req.dates, req.start, req.end, req.party_size


def panel_state(svc: Services, rooms: dict[str, Room]) -> tuple[object, ...]:
    """What the panel beside the form shows depends on: the request (the grid's day and outline, a quote's
    staleness) and the outcomes kept (each a new object when an action replaces it). The customer's details are not
    in it: typing them changes nothing there."""
    ss = st.session_state
    kept = (id(ss.get(key)) if key in ss else None for key in ("pb_quote", "pb_error", "pb_created"))
    return (*signature(request_from_state(svc, rooms)), *kept)


# ------------------------------------------------------------------------------------------------ filling it in


def seed(svc: Services, rooms: dict[str, Room], times: list[time], today: date) -> None:
    """The form's starting values, set in session state rather than as widget defaults: a link or a grid click sets
    the same keys, and Streamlit warns when a widget has both."""
    ss = st.session_state
    # A held booking's form shows what was booked, even after a visit to another page (Streamlit forgets the values
    # of widgets a page did not draw).
    for key, value in (ss.get("pb_booked_form") or {}).items():
        ss.setdefault(key, value)
    ss.setdefault("pb_room", next(iter(rooms)))
    ss.setdefault("pb_first_day", next_open_day(svc, today + timedelta(days=2)))
    ss.setdefault("pb_ndays", 1)
    ss.setdefault("pb_start", _at(times[:-1], time(9, 0)))
    ss.setdefault("pb_end", _at(times[1:], time(12, 0)))


def _at(options: list[time], wanted: time) -> time:
    """`wanted`, or the nearest later option (opening hours are a setting)."""
    return next((t for t in options if t >= wanted), options[-1])


def default_end(room: Room, start: time, times: list[time]) -> time:
    """The end a booking started at `start` gets: the room's minimum later (an hour at least), or closing."""
    minutes = min(start.hour * 60 + start.minute + max(room.min_minutes, 60), 24 * 60 - 1)
    return _at(times[1:], time(minutes // 60, minutes % 60))


def take_link(svc: Services, rooms: dict[str, Room], times: list[time], today: date) -> str | None:
    """Fill the form from /phone_booking?room=…&day=…&start=…[&end=…] (a free cell on the Room calendar), then drop
    the query so a later rerun or New booking does not fill it again. While a booking is on screen the link waits
    for New booking. Returns what to tell the person (what was filled in, or what in the link was wrong)."""
    qp = st.query_params
    if not any(k in qp for k in LINK_KEYS):
        return None
    if "pb_created" in st.session_state:
        return "A free cell was picked: press **New booking** (when the caller has the reference) to start it."
    problems: list[str] = []
    room = rooms.get(qp.get("room", ""))
    if room is None:
        problems.append(f"no bookable room “{qp.get('room', '')}”")
    day = _parse(date.fromisoformat, qp.get("day", ""))
    if day is None or not today <= day <= today + timedelta(days=svc.policy.max_days_ahead + 7):
        problems.append(f"“{qp.get('day', '')}” is not a day that can be booked")
    start = _parse(_hhmm, qp.get("start", ""))
    if start not in times[:-1]:
        problems.append(f"“{qp.get('start', '')}” is not a start time")
    end = _parse(_hhmm, qp.get("end", ""))
    for key in LINK_KEYS:
        if key in qp:
            del qp[key]
    if problems or room is None or day is None or start is None:
        return "The link could not fill in the form: " + "; ".join(problems) + "."
    new_booking()
    ss = st.session_state
    ss.update(pb_room=room.slug, pb_separate=False, pb_first_day=day, pb_ndays=1, pb_start=start)
    ss["pb_end"] = end if end in times[1:] and end is not None and end > start else default_end(room, start, times)
    filled = f"**{room.name}**, {day_label(day)}, {hhmm(start)}–{hhmm(ss['pb_end'])}"
    return f"Filled in from the rooms grid: {filled}. Press **Quote** to check it and get the price."


def _parse(parse: Callable[[str], T], text: str) -> T | None:
    try:
        return parse(text)
    except ValueError:
        return None


def _hhmm(text: str) -> time:
    return datetime.strptime(text, "%H:%M").time()


def pick(cell: Cell) -> None:
    """on_click of a free cell on the page's own grid: its room, day and the booking it offers go in the form (the
    customer's details stay; a run of weekdays keeps its length)."""
    ss = st.session_state
    if "pb_created" in ss or cell.book_at is None or cell.book_end is None:
        return
    ss["pb_room"] = cell.room
    if not (ss.get("pb_separate") and cell.day in (ss.get("pb_dates") or [])):
        ss["pb_separate"] = False
        ss["pb_first_day"] = cell.day
    ss["pb_start"], ss["pb_end"] = cell.book_at, cell.book_end
    for key in ("pb_quote", "pb_error"):
        ss.pop(key, None)


# ------------------------------------------------------------------------------------------------ callbacks


def quote_now(svc: Services, rooms: dict[str, Room]) -> None:
    """on_click of Quote: the price and every reason it cannot be booked, kept for the request it was made for."""
    req = request_from_state(svc, rooms)
    st.session_state.pop("pb_error", None)
    actions.perform("pb_quote", lambda: quote(svc, req), tag=signature(req))


def book(svc: Services, rooms: dict[str, Room]) -> None:
    if "pb_created" in st.session_state:  # a second click on Book: the booking already exists
        return
    ss = st.session_state
    ss.pop("pb_error", None)
    if ss.get("pb_pay_by") == "invoice":  # an organisation on terms: the days held until Stripe's invoice is paid
        terms = InvoiceTerms(
            organisation=ss.get("pb_inv_org") or "",
            contact_name=ss.get("pb_inv_contact") or "",
            billing_email=ss.get("pb_inv_email") or "",
            terms_days=int(ss.get("pb_inv_terms") or svc.settings.invoice_terms_days[0]),
            po_number=ss.get("pb_inv_po") or "",
        )
        req = request_from_state(svc, rooms)
        actions.perform("pb_booked", lambda: actions.desk().book_on_invoice(req, terms))
    else:
        actions.perform("pb_booked", lambda: actions.desk().start_booking(request_from_state(svc, rooms)))
    _, result = ss.pop("pb_booked")
    if isinstance(result, DomainError):
        ss["pb_error"] = result
        return
    ss["pb_created"] = result
    ss["pb_booked_form"] = {k: ss[k] for k in ss if isinstance(k, str) and (k in FORM_KEYS or k.startswith("pb_x_"))}


def paid() -> None:
    created: StartResult | InvoiceStart | None = st.session_state.get("pb_created")
    if created is None or actions.kept("pb_paid") is not None:
        return
    actions.perform("pb_paid", lambda: actions.desk().record_payment(created.booking_id))


def send_link() -> None:
    created: StartResult | None = st.session_state.get("pb_created")
    if created is not None:
        actions.perform("pb_link", lambda: actions.desk().send_pay_link(created.booking_id))


def new_booking() -> None:
    """Forget the booking on screen and its outcomes; blank the customer's details. The room, days and times stay
    (the next caller often wants the same room). Details are blanked, not deleted: a deleted key would leave the
    browser showing (and sending back) the last caller's name."""
    ss = st.session_state
    for key in [k for k in ss if isinstance(k, str) and k.startswith("pb_")]:
        if key in CUSTOMER_KEYS or key.startswith("pb_x_"):
            ss[key] = "" if isinstance(ss[key], str) else None
        elif key not in FORM_KEYS:
            del ss[key]


# ------------------------------------------------------------------------------------------------ the panel


def show_outcome(svc: Services, req: BookingRequest, room: Room, note: str | None) -> None:
    """The last action's outcome, at the top of the panel beside the form: the held booking (its reference to read
    out), why Book failed, or the quote. One at a time, newest first; it stays until the next action."""
    created: StartResult | InvoiceStart | None = st.session_state.get("pb_created")
    if created is not None:
        if note:
            st.info(note, icon=":material/touch_app:")
        if isinstance(created, InvoiceStart):
            show_invoiced(svc, created, req, room)
        else:
            show_created(svc, created, req, room)
        return
    if note:
        st.info(note, icon=":material/touch_app:")
        return
    if (error := st.session_state.get("pb_error")) is not None:
        actions.show_error(error, doing="Not booked")
        st.caption("Fix it in the form, then press **Book** again.")
        return
    kept = st.session_state.get("pb_quote")
    if kept is None:
        st.caption(
            "Pick a **free cell** below, or choose the room, day and times; then press **Quote** to check the "
            "calendars and get the price."
        )
    elif kept[0] != signature(req):
        st.caption("The request changed since the last quote: press **Quote** again.")
    elif isinstance(kept[1], DomainError):
        actions.show_error(kept[1], doing="Not quoted")
    else:
        _show_quote(svc, kept[1], room)


def _show_quote(svc: Services, result: QuoteResult, room: Room) -> None:
    if result.reasons:
        st.error("**This can't be booked:**\n\n" + "\n".join(f"- {r}" for r in result.reasons), icon=":material/block:")
        return
    q = result.quote
    bill = quote_bill(q)
    tax = tax_words(bill.taxes, svc.settings.currency)
    st.success(
        f"Available — **{labels.money(svc, q.total_cents)}**{f' (including {tax})' if tax else ''} for "
        f"{len(q.legs)} day(s) in the {room.name}. Next: the customer's details, then **Book**.",
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
                    **({"Tax": labels.money(svc, leg.tax_cents)} if bill.taxes else {}),
                    "Day total": labels.money(svc, leg.total_cents),
                }
                for leg in q.legs
            ]
        ),
        hide_index=True,
        width="stretch",
        height=widgets.fit_height(len(q.legs), 180),
    )
    # The parts the customer will see on the pay page and the receipt: subtotal, discount, each tax, total.
    st.caption(labels.no_formula(" · ".join(f"{label} {amount}" for label, amount in bill.rows(svc.settings.currency))))


def show_created(svc: Services, created: StartResult, req: BookingRequest, room: Room) -> None:
    """The held booking: its reference large (it is read out letter by letter), the pay link, the sandbox's Customer
    paid, what came of them, and New booking."""
    paid_now = actions.kept("pb_paid")
    if paid_now is None:
        st.success(
            f"Booking **{created.reference}** is held: **{labels.money(svc, created.amount_cents)}** to pay by "
            f"**{labels.venue(svc, created.hold_expires_at)}** ({labels.tz_label(svc)}). "
            "Read the reference to the caller.",
            icon=":material/bookmark_added:",
        )
    st.markdown(f"## {created.reference}")
    st.caption(
        f"{room.name} · {days_label(list(req.dates))} · {hhmm(req.start)}–{hhmm(req.end)} · "
        f"{labels.money(svc, created.amount_cents)} · Stripe `{created.payment_intent}`. "
        "The form is locked to what was booked."
    )
    sent_before = actions.kept("pb_link") is not None
    pay, link = st.columns(2)
    pay.button(
        "Email the pay link again" if sent_before else "Email pay link",
        type="primary" if paid_now is None and not sent_before else "secondary",
        icon=":material/forward_to_inbox:",
        key="pb_send_link",
        disabled=paid_now is not None,
        on_click=send_link,
        width="stretch",
        help="Emails the customer a link to the pay page: they read the cancellation policy, accept the terms "
        "and pay by card. The booking confirms itself when the payment goes through.",
    )
    if svc.settings.is_sandbox:
        link.button(
            "Customer paid",
            icon=":material/credit_score:",
            key="pb_pay",
            disabled=paid_now is not None,
            on_click=paid,
            width="stretch",
            help="Sandbox: pays with a test card, then runs what Stripe's webhook would (events, email).",
        )
    else:
        link.caption("The booking confirms itself when Stripe reports the payment.")
    _show_pay_link()
    actions.outcome("pb_paid", doing="Payment not recorded")  # shows why a payment was not recorded
    if paid_now is not None:
        body = "\n".join(f"- {m}" for m in paid_now.messages)
        if paid_now.outcome in ("confirmed", "already_done"):
            st.success(f"**Confirmed** — {created.reference}\n\n{body}", icon=":material/task_alt:")
        elif paid_now.outcome == "auto_refunded":
            st.warning(f"**Not confirmed; refunded in full** — {created.reference}\n\n{body}")
        else:
            st.error(f"**Needs attention ({paid_now.outcome.replace('_', ' ')})** — {created.reference}\n\n{body}")
    open_it, again = st.columns(2)
    open_it.page_link(
        nav.script("bookings"),
        label=f"Open booking {created.reference}",
        icon=":material/open_in_new:",
        query_params={"ref": created.reference},
    )
    again.button("New booking", icon=":material/add:", key="pb_new", on_click=new_booking, width="stretch")


def show_invoiced(svc: Services, made: InvoiceStart, req: BookingRequest, room: Room) -> None:
    """A booking held on invoice: its reference to read out, the invoice Stripe sent and when it falls due."""
    paid_now = actions.kept("pb_paid")
    if paid_now is None:
        st.success(
            f"Booking **{made.reference}** is held on invoice **{labels.literal(made.number)}**: "
            f"**{labels.money(svc, made.amount_cents)}** due **{labels.venue(svc, made.due_at)}** "
            f"({labels.tz_label(svc)}). Stripe emailed it to **{labels.literal(made.billing_email)}**. "
            "Read the reference to the caller.",
            icon=":material/receipt_long:",
        )
    st.markdown(f"## {made.reference}")
    st.caption(
        f"{room.name} · {days_label(list(req.dates))} · {hhmm(req.start)}–{hhmm(req.end)} · "
        f"{labels.literal(made.organisation)} · Stripe invoice `{made.invoice_id}`. The days stay held until "
        "it is paid; an overdue invoice shows on Mismatches. The form is locked to what was booked."
    )
    if made.hosted_url:
        st.code(made.hosted_url, language=None)
    if svc.settings.is_sandbox:
        st.button(
            "Organisation paid",
            icon=":material/credit_score:",
            key="pb_pay",
            disabled=paid_now is not None,
            on_click=paid,
            help="Sandbox: pays the invoice with a test card, then runs what Stripe's invoice.paid webhook would.",
        )
    actions.outcome("pb_paid", doing="Payment not recorded")
    if paid_now is not None:
        body = "\n".join(f"- {m}" for m in paid_now.messages)
        if paid_now.outcome in ("confirmed", "already_done"):
            st.success(f"**Invoice paid; confirmed** — {made.reference}\n\n{body}", icon=":material/task_alt:")
        else:
            st.warning(f"**Needs attention ({paid_now.outcome.replace('_', ' ')})** — {made.reference}\n\n{body}")
    open_it, again = st.columns(2)
    open_it.page_link(
        nav.script("bookings"),
        label=f"Open booking {made.reference}",
        icon=":material/open_in_new:",
        query_params={"ref": made.reference},
    )
    again.button("New booking", icon=":material/add:", key="pb_new", on_click=new_booking, width="stretch")


def _show_pay_link() -> None:
    if (link := actions.outcome("pb_link", doing="Pay link not sent")) is None:
        return
    url, sent = link
    email = st.session_state.get("pb_email", "")
    if sent:
        st.success(f"Pay link emailed to **{labels.literal(email)}**.", icon=":material/mark_email_read:")
    else:
        st.warning(
            f"The mail server did not take the email to **{email}**; it stays in the outbox and is retried. "
            "You can also read the link out or paste it into a message.",
            icon=":material/schedule_send:",
        )
    st.code(url, language=None)
