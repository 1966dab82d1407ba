"""The Phone booking page's state and steps: the request as the widgets hold it (under `pb_*` keys), the Book / Customer
paid / Email pay link callbacks (each through the Desk, once per booking), and what is shown once a booking is held."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import streamlit as st

from pages.ui import actions, labels, nav, widgets
from services.booking.availability import open_days_from
from services.booking.requests import BookingRequest
from services.core.errors import DomainError

if TYPE_CHECKING:
    from services.booking.requests import StartResult
    from services.core.catalogue import Room
    from services.core.context import Services


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


# ------------------------------------------------------------------------------------------------ callbacks


def book(svc: Services, rooms: dict[str, Room]) -> None:
    if "pb_created" in st.session_state:  # a second click on Book: the booking already exists
        return
    st.session_state.pop("pb_error", None)
    actions.perform("pb_booked", lambda: actions.desk().start_booking(request_from_state(svc, rooms)))
    _, result = st.session_state.pop("pb_booked")
    st.session_state["pb_error" if isinstance(result, DomainError) else "pb_created"] = result


def paid() -> None:
    created: StartResult | None = st.session_state.get("pb_created")
    if created is None or actions.kept("pb_paid") is not None:
        return
    actions.perform("pb_paid", lambda: actions.desk().record_payment(created.booking_id))


def send_link() -> None:
    created: StartResult | None = st.session_state.get("pb_created")
    if created is not None:
        actions.perform("pb_link", lambda: actions.desk().send_pay_link(created.booking_id))


def new_booking() -> None:
    for key in [k for k in st.session_state if str(k).startswith("pb_")]:
        del st.session_state[key]


# ------------------------------------------------------------------------------------------------ after Book


def show_created(svc: Services, created: StartResult) -> None:
    """The held booking: its reference to read out, the pay link, the sandbox's Customer paid, what came of them."""
    paid_now = actions.kept("pb_paid")
    if paid_now is None:
        st.success(
            f"Booking **{created.reference}** is held: **{labels.money(svc, created.amount_cents)}** to pay by "
            f"**{labels.venue(svc, created.hold_expires_at)}** ({labels.tz_label(svc)}). "
            "Read the reference to the caller.",
            icon=":material/bookmark_added:",
        )
    st.markdown(f"### {created.reference}")  # large: it is read out letter by letter
    st.caption(f"{labels.money(svc, created.amount_cents)} · Stripe PaymentIntent `{created.payment_intent}`")

    sent_before = actions.kept("pb_link") is not None
    st.button(
        "Email the pay link again" if sent_before else "Email pay link",
        type="primary" if paid_now is None and not sent_before else "secondary",
        icon=":material/forward_to_inbox:",
        key="pb_send_link",
        disabled=paid_now is not None,
        on_click=send_link,
        help="Emails the customer a link to the pay page: they read the cancellation policy, accept the terms "
        "and pay by card. The booking confirms itself when the payment goes through.",
    )
    if (link := actions.outcome("pb_link", doing="Pay link not sent")) is not None:
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

    if svc.settings.is_sandbox:
        st.button(
            "Customer paid",
            icon=":material/credit_score:",
            key="pb_pay",
            disabled=paid_now is not None,
            on_click=paid,
            help="Sandbox: pays with a test card, then runs what Stripe's webhook would (events, email).",
        )
    else:
        st.caption("The booking confirms itself when Stripe reports the payment.")
    actions.outcome("pb_paid", doing="Payment not recorded")  # shows why a payment was not recorded
    if paid_now is not None:
        body = "\n".join(f"- {m}" for m in paid_now.messages)
        if paid_now.outcome in ("confirmed", "already_done"):
            st.success(f"**Confirmed** — {created.reference}\n\n{body}", icon=":material/task_alt:")
        elif paid_now.outcome == "auto_refunded":
            st.warning(f"**Not confirmed; refunded in full** — {created.reference}\n\n{body}")
        else:
            st.error(f"**Needs attention ({paid_now.outcome.replace('_', ' ')})** — {created.reference}\n\n{body}")
    st.page_link(
        nav.script("bookings"),
        label=f"Open booking {created.reference}",
        icon=":material/open_in_new:",
        query_params={"ref": created.reference},
    )
    st.button("New booking", icon=":material/add:", key="pb_new", on_click=new_booking)
