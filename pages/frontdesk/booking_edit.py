"""The Bookings page's customer details, editable in place (issue 12: a mistyped email could not be corrected, so the
pay link and the confirmation went nowhere). "Edit" raises the `bk_edit_for` flag and fills the form from the
booking; Save goes through the Desk; what came of it shows at the top of the booking (and as a toast, which is on
screen wherever the person has scrolled), with the offer to send the confirmation again to a corrected address."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from pages.ui import actions, labels, widgets
from services.core.errors import DomainError
from services.rules.fmt import days_label

if TYPE_CHECKING:
    from models.tables import Booking
    from services.booking.queries import BookingDetail
    from services.booking.requests import CustomerUpdate
    from services.core.catalogue import Room
    from services.core.context import Services

FLAG = "bk_edit_for"
RESULT = "bk_edit_result"
RESENT = "bk_resend_result"
TOAST = "bk_edit_toast"
FIELDS = {"name": "customer_name", "email": "customer_email", "phone": "customer_phone"}
LABELS = {"name": "name", "email": "email", "phone": "phone", "party_size": "group size", "extras": "details"}


def key(field: str) -> str:
    return f"bk_ed_{field}"


def extras_prefix(room: Room) -> str:
    return f"bk_ed_x_{room.slug}_"


def open_edit(b: Booking, room: Room | None) -> None:
    """on_click: open the form with the booking's details as they are now."""
    ss = st.session_state
    for field, column in FIELDS.items():
        ss[key(field)] = getattr(b, column)
    ss[key("party_size")] = b.party_size
    ss[key("notes")] = b.notes
    if room is not None:
        for extra in room.extras:
            ss[f"{extras_prefix(room)}{extra.key}"] = b.extras.get(extra.key)
    widgets.open_flag(FLAG, b.id, forget=(RESULT, RESENT))


def _save(booking_id: int, room: Room | None) -> None:
    ss = st.session_state
    extras = widgets.extras_values(room, extras_prefix(room)) if room and room.extras else None
    actions.perform(
        RESULT,
        lambda: actions.desk().update_customer(
            booking_id,
            name=ss.get(key("name"), ""),
            email=ss.get(key("email"), ""),
            phone=ss.get(key("phone"), ""),
            party_size=ss.get(key("party_size")),
            notes=ss.get(key("notes"), ""),
            extras=extras,
        ),
        tag=booking_id,
    )
    if (done := actions.kept(RESULT, tag=booking_id)) is not None:
        widgets.close_flag(FLAG)
        ss[TOAST] = "Customer details saved" if done.changed else "Nothing to save: the details were already so"


def room_of(svc: Services, b: Booking) -> Room | None:
    """The booking's room, or None when it has left the catalogue (its extra questions went with it)."""
    try:
        return svc.catalogue.room(b.room_slug)
    except DomainError:
        return None


def edit_form(detail: BookingDetail, room: Room | None) -> None:
    """The form, in place of the customer line: name, email (with "did you mean …?"), phone, group size, notes, and
    the room's extra questions."""
    b = detail.booking
    c1, c2, c3, c4 = st.columns([1.2, 1.5, 1, 0.8])
    c1.text_input("Name", key=key("name"))
    with c2:
        st.text_input(
            "Email", key=key("email"), placeholder="name@example.com", help="The pay link and confirmation go here."
        )
        widgets.email_suggestion(key("email"))
    c3.text_input("Phone", key=key("phone"))
    c4.number_input(
        "Group size",
        min_value=1,
        max_value=1000,
        value=None,
        step=1,
        key=key("party_size"),
        placeholder="Optional",
        help=f"Up to {room.capacity} in the {room.name}." if room else None,
    )
    if room and room.extras:
        n1, n2 = st.columns([1.2, 2.3])
        with n1:
            widgets.extras_inputs(room, extras_prefix(room))
        n2.text_area("Notes", key=key("notes"), height=120)
    else:
        st.text_area("Notes", key=key("notes"), height=80)
    actions.outcome(RESULT, tag=b.id, doing="Not saved")  # the problems to fix, next to Save
    s1, s2, _ = st.columns([1, 1, 4])
    s1.button("Save", type="primary", icon=":material/save:", key="bk_ed_save", on_click=_save, args=(b.id, room))
    s2.button("Cancel", key="bk_ed_cancel", on_click=widgets.close_flag, args=(FLAG,))
    st.caption(
        "Saving corrects the booking and its calendar events. A corrected email gets the next pay link; the "
        "confirmation can be sent again to it."
    )


def show_outcome(b: Booking) -> None:
    """What the last Save changed, at the top of the booking until dismissed: a toast (seen wherever the page is
    scrolled) and a message, with the offer to send the confirmation to a corrected address."""
    if (toast := st.session_state.pop(TOAST, None)) is not None:
        st.toast(toast, icon=":material/how_to_reg:")
    done: CustomerUpdate | None = actions.kept(RESULT, tag=b.id)
    if done is None:
        return
    if not done.changed:
        widgets.kept_outcome(
            "info", "Nothing to save: the customer's details were already so.", forget=RESULT, icon=":material/info:"
        )
        return
    parts = [f"{LABELS.get(f, f)} **{labels.literal(_text(a))}**" for f, (_, a) in done.changes.items() if f != "notes"]
    if "notes" in done.changes:
        parts.append("notes")
    text = "Saved: " + ", ".join(parts) + "."
    if done.events_updated:
        text += f" The calendar events of {days_label(done.events_updated)} say so too."
    if done.pay_link_follows:
        text += f" The next pay link goes to **{labels.literal(b.customer_email)}**."
    text += "".join(f"\n\n{problem}" for problem in done.problems)
    box = widgets.kept_outcome(
        "warning" if done.problems else "success", text, forget=RESULT, icon=":material/how_to_reg:"
    )
    if done.offer_resend:
        with box:
            _offer_resend(b)


def _offer_resend(b: Booking) -> None:
    assert b.id is not None
    booking_id = b.id
    resent = actions.outcome(RESENT, tag=b.id, doing="Confirmation not sent")
    if resent is None:
        st.button(
            f"Email the confirmation to {labels.literal(b.customer_email)}",
            icon=":material/forward_to_inbox:",
            key="bk_resend",
            on_click=actions.perform,
            args=(RESENT, lambda: actions.desk().resend_confirmation(booking_id)),
            kwargs={"tag": b.id},
            help="The confirmation went to the old address; this sends it again, with the days as an .ics.",
        )
        return
    to, sent = resent
    if sent:
        st.success(f"Confirmation emailed to **{labels.literal(to)}**.", icon=":material/mark_email_read:")
    else:
        st.warning("The mail server did not take it; the email stays in the outbox and is retried.")


def _text(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in value.items()) or "—"
    return "—" if value in (None, "") else str(value)
