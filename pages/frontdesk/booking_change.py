"""The Bookings page's Change booking dialog (issue 12 §2): a front-desk person on the phone moves a day, changes the
times (all days or some), moves the booking to another room, adds or drops days — and sees, as the inputs change,
the booking now and after, the price before and after, and exactly what happens to the money, before anything is
done. Opened from the `bk_change_for` flag (widgets.flag_dialog).

The plan is read through the Desk (services.booking.amend, read only); Confirm makes it through the Desk with the
difference that was on screen, so a quote that moved meanwhile is refused and shown again. What came of it, and a
change still waiting for payment (Record payment (sandbox), Withdraw change), show at the top of the booking until
dismissed.
"""

from __future__ import annotations

from datetime import date, time
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from models.tables import AmendmentState, LegState
from pages.ui import actions, labels, session, widgets
from services.booking.amend import Change
from services.booking.availability import slot_times
from services.booking.requests import ConfirmResult
from services.core.errors import DomainError, QuoteChanged
from services.rules.fmt import day_label, hhmm

if TYPE_CHECKING:
    from models.tables import BookingLeg
    from services.booking.amend import ChangePlan
    from services.booking.queries import BookingChange, BookingDetail
    from services.core.context import Services
    from services.rules.amendments import DayChange, DayShape

FLAG = "bk_change_for"
RESULT = "bk_change_result"  # (booking id, ChangeResult | ConfirmResult | DomainError): stays until dismissed
CONFIRM = "bk_ch_confirm"  # (booking id, Change, the difference on screen): set by Confirm, acted on in the next run
STALE = "bk_ch_stale"  # what QuoteChanged said: shown by the new figure until the person confirms again
PREFIX = "bk_ch_"
ALL_DAYS, SOME_DAYS = "All days", "Chosen days"
# Times a caller may ask for: two hours either side of opening, so a time outside them gets the rules' own answer
# ("Outside opening hours …") instead of silently missing from the list.
MARGIN_MINUTES = 120


def key(name: str, leg_id: int | None = None) -> str:
    return f"{PREFIX}{name}" if leg_id is None else f"{PREFIX}{name}_{leg_id}"


def open_change(booking_id: int) -> None:
    """on_click: open the dialog with nothing changed yet (the last inputs and outcome forgotten)."""
    for k in [k for k in st.session_state if str(k).startswith(PREFIX)]:
        del st.session_state[k]
    widgets.open_flag(FLAG, booking_id, forget=(RESULT,))


def change_button(where: Any, svc: Services, detail: BookingDetail) -> None:
    """The 'Change booking…' button (in the booking's actions row, `where`) and, while its flag is up, the dialog."""
    b = detail.booking
    if not (detail.changeable and session.may("booking.change")):
        return
    where.button(
        "Change booking…",
        icon=":material/edit_calendar:",
        key="bk_change_open",
        on_click=open_change,
        args=(b.id,),
        help="Move a day, change the times, the room, add or drop days: the price difference is shown first.",
    )
    if st.session_state.get(FLAG) == b.id:
        widgets.flag_dialog(FLAG, "Change booking", change_dialog, svc, detail, width="large")


# ------------------------------------------------------------------------------------------------ the dialog


def change_dialog(svc: Services, detail: BookingDetail) -> None:
    b = detail.booking
    assert b.id is not None
    ss = st.session_state
    if (asked := ss.pop(CONFIRM, None)) is not None and asked[0] == b.id:
        _confirm(b.id, asked[1], asked[2])  # done: the page reruns, the dialog closed; else it says why, below
    legs = [leg for leg in detail.legs if leg.state == LegState.CONFIRMED and leg.id is not None]
    rooms = {r.slug: r for r in svc.catalogue.rooms}
    st.markdown(f"**{b.reference}** — {detail.room_name}, {labels.literal(b.customer_name)}" + _party(b.party_size))
    change = _inputs(svc, b.room_slug, b.start_time, b.end_time, legs, rooms)

    plan: ChangePlan | None = None
    with actions.reporting("Can't work the change out"):
        plan = actions.desk().plan_change(b.id, change)
    if plan is not None:
        _show_plan(svc, detail, plan, rooms)
    ready = plan is not None and plan.possible
    net = plan.settlement.net_cents if plan is not None else 0
    if stale := ss.get(STALE):
        st.warning(f"{stale}. The figure above is the new one: confirm again if the customer agrees.")
    c0, c1, c2 = st.columns([2, 2.2, 1.3], vertical_alignment="bottom")
    c0.text_input("Reason (kept with the change)", value="Customer asked on the phone", key=key("reason"))
    c1.button(
        _confirm_label(svc, net) if ready else "Make the change",
        type="primary",
        icon=":material/event_available:",
        key="bk_ch_go",
        disabled=not ready,
        on_click=_ask,
        args=(b.id, change, net),
        width="stretch",
    )
    if c2.button("Keep it as it is", key="bk_ch_keep", width="stretch"):
        widgets.close_flag(FLAG)
        st.rerun()


def _party(size: int | None) -> str:
    return f", group of {size}" if size else ""


def _inputs(
    svc: Services, room_slug: str, start: str, end: str, legs: list[BookingLeg], rooms: dict[str, Any]
) -> Change:
    """The form, top to bottom as a caller asks: the room and the times, then day by day (move to / new times / drop),
    then days to add. Returns the change it says (empty while nothing is touched)."""
    ss = st.session_state
    times = _times(svc)
    was = (time.fromisoformat(start), time.fromisoformat(end))
    r1, r2, r3, r4 = st.columns([2.4, 1, 1, 1.6])
    picked_room = r1.selectbox(
        "Room",
        list(rooms),
        index=list(rooms).index(room_slug) if room_slug in rooms else 0,
        format_func=lambda s: (
            f"{rooms[s].name} — {labels.money(svc, rooms[s].hourly_price_cents)}/h, up to {rooms[s].capacity}"
        ),
        key=key("room"),
    )
    new_start = r2.selectbox("Start", times, index=_at(times, was[0]), format_func=hhmm, key=key("start"))
    new_end = r3.selectbox("End", times, index=_at(times, was[1]), format_func=hhmm, key=key("end"))
    several = len(legs) > 1
    scope = r4.segmented_control(
        "New times for",
        [ALL_DAYS, SOME_DAYS],
        default=ALL_DAYS,
        key=key("scope"),
        disabled=not several,
        help="Chosen days: tick 'New times' on the days below. Added days always take the times above.",
    )
    some = several and scope == SOME_DAYS

    st.markdown("**Days**" + (" — tick 'New times' on the days that change time" if some else ""))
    moves: dict[int, date] = {}
    drop: set[int] = set()
    timed: set[int] = set()
    for n, leg in enumerate(legs):
        assert leg.id is not None
        d1, d2, d3, d4 = st.columns([1.6, 1.4, 1, 1.6], vertical_alignment="bottom")
        d1.markdown(f"{day_label(leg.day)} {_hhmm(svc, leg.starts_at)}–{_hhmm(svc, leg.ends_at)}")
        dropped = d4.checkbox("Drop", key=key("drop", leg.id))
        to = d2.date_input(
            "Move to",
            value=leg.day,
            key=key("move", leg.id),
            format="YYYY-MM-DD",
            disabled=dropped,
            label_visibility="visible" if n == 0 else "collapsed",  # one heading for the column
        )
        if some and d3.checkbox("New times", key=key("timed", leg.id), disabled=dropped):
            timed.add(leg.id)
        if dropped:
            drop.add(leg.id)
        elif isinstance(to, date) and to != leg.day:
            moves[leg.id] = to

    a1, a2, a3 = st.columns([1.6, 1, 2.8], vertical_alignment="bottom")
    a1.date_input("Add a day", value=None, key=key("add_pick"), format="YYYY-MM-DD")
    a2.button("Add", icon=":material/add:", key=key("add_go"), on_click=_add_day, width="stretch")
    added: list[date] = list(ss.get(key("add")) or [])
    if added:
        a3.multiselect(
            "Days to add",
            added,
            format_func=day_label,
            key=key("add_kept"),
            on_change=_keep_added,
        )

    new_times = (new_start, new_end)
    set_times = new_times != was or bool(timed)
    return Change(
        room=picked_room if picked_room != room_slug else None,
        moves=moves,
        times=new_times if set_times else None,
        time_legs=frozenset(timed) if some else None,
        add=tuple(sorted(added)),
        drop=frozenset(drop),
    )


def _times(svc: Services) -> list[time]:
    grid = slot_times(svc)
    step = svc.policy.slot_minutes
    first = grid[0].hour * 60 + grid[0].minute
    last = grid[-1].hour * 60 + grid[-1].minute
    lo, hi = max(first - MARGIN_MINUTES, 0), min(last + MARGIN_MINUTES, 24 * 60 - step)
    return [time(m // 60, m % 60) for m in range(lo - (lo - first) % step, hi + 1, step)]


def _at(options: list[time], wanted: time) -> int:
    return options.index(wanted) if wanted in options else 0


def _hhmm(svc: Services, moment: Any) -> str:
    return labels.venue(svc, moment, with_day=False)


def _add_day() -> None:
    ss = st.session_state
    picked = ss.get(key("add_pick"))
    if not isinstance(picked, date):
        return
    added = sorted({*(ss.get(key("add")) or []), picked})
    ss[key("add")] = added
    ss[key("add_kept")] = added
    ss[key("add_pick")] = None


def _keep_added() -> None:
    ss = st.session_state
    ss[key("add")] = sorted(ss.get(key("add_kept")) or [])


# ------------------------------------------------------------------------------------------------ the plan


def _show_plan(svc: Services, detail: BookingDetail, plan: ChangePlan, rooms: dict[str, Any]) -> None:
    """Now against after, day by day and in money, then what happens in one sentence."""
    s = plan.settlement
    if not plan.changes_anything:
        st.info(
            "Nothing changes yet: pick a new date for a day, new times, another room, or a day to add or drop.",
            icon=":material/edit_calendar:",
        )
        return
    room_from = rooms[plan.room_from].name if plan.room_from in rooms else plan.room_from
    room_to = rooms[plan.room_to].name if plan.room_to in rooms else plan.room_to
    st.dataframe(
        pd.DataFrame([_row(svc, d) for d in s.days]),
        hide_index=True,
        width="stretch",
        height=widgets.fit_height(len(s.days), 250),
    )
    # One line, not metrics: the dialog's Confirm must stay in view on a 768 px high screen.
    m1, m2, m3, m4 = st.columns([2.2, 1, 1, 1])
    m1.markdown(f"**Room** {room_from} → **{room_to}**" if room_from != room_to else f"**Room** {room_from}, as it is")
    m2.markdown(f"**Price now** {labels.money(svc, s.old_total_cents)}")
    m3.markdown(f"**After** {labels.money(svc, s.new_total_cents)}")
    m4.markdown(f"**Difference** {_signed(svc, s.net_cents)}")
    if plan.reasons:
        st.error("This change can't be made —\n\n" + "\n".join(f"- {r}" for r in plan.reasons), icon=":material/block:")
        return
    st.markdown(_what_happens(svc, detail, plan))


def _row(svc: Services, d: DayChange) -> dict[str, str]:
    money = labels.money
    return {
        "Now": _shape(d.old) if d.old else "—",
        "After": _shape(d.new) if d.new else "dropped",
        "": _kind(d),
        "Paid": money(svc, d.old_left_cents) if d.old else "—",
        "New price": money(svc, d.new_price_cents) if d.new else "—",
        "Charge": money(svc, d.charge_cents) if d.charge_cents else "",
        "Refund": (money(svc, d.refund_cents) + (f" ({d.band})" if d.band else "")) if d.refund_cents else "",
    }


def _shape(shape: DayShape) -> str:
    return f"{day_label(shape.day)} {hhmm(shape.start)}–{hhmm(shape.end)}".replace(" ", labels.NBSP)


def _kind(d: DayChange) -> str:
    if d.kind != "changed" or d.old is None or d.new is None:
        return {"kept": "as it is", "added": "added", "dropped": "dropped"}.get(d.kind, d.kind)
    what = []
    if d.old.day != d.new.day:
        what.append("moved")
    if (d.old.start, d.old.end) != (d.new.start, d.new.end):
        what.append("new times")
    return ", ".join(what) or "new room"


def _signed(svc: Services, cents: int) -> str:
    if cents > 0:
        return f"+{labels.money(svc, cents)}"
    if cents < 0:
        return f"−{labels.money(svc, -cents)}"
    return labels.money(svc, 0)


def _what_happens(svc: Services, detail: BookingDetail, plan: ChangePlan) -> str:
    s = plan.settlement
    net = s.net_cents
    if net > 0:
        hours = svc.settings.phone_hold_minutes / 60
        hold = f"{hours:g} hours" if hours != 1 else "an hour"
        return (
            f":orange-background[**Charge {labels.money(svc, net)}**]: the new days are held for {hold} and a pay link "
            f"is emailed to {labels.literal(detail.booking.customer_email)}; the booking stays as it is until paid."
        )
    if net < 0:
        bands = sorted({d.band for d in s.days if d.refund_cents and d.band})
        band = f" (policy band {', '.join(bands)})" if bands else ""
        kept = (s.old_total_cents - s.new_total_cents) + net
        note = f"; the policy keeps {labels.money(svc, kept)} of what is given up" if kept > 0 else ""
        return f":blue-background[**Refund {labels.money(svc, -net)} to the card**]{band}{note}."
    if s.charge_cents:
        return (
            f":green-background[**Nothing to pay**]: the {labels.money(svc, s.charge_cents)} the new days cost equals "
            "what the days given up give back."
        )
    return ":green-background[**Nothing to pay**]: the price stays the same."


def _confirm_label(svc: Services, net: int) -> str:
    if net > 0:
        return f"Hold the new days and email a pay link for {labels.money(svc, net)}"
    if net < 0:
        return f"Make the change and refund {labels.money(svc, -net)}"
    return "Make the change"


def _ask(booking_id: int, change: Change, net: int) -> None:
    """on_click: the change and the difference that were on screen when Confirm was clicked."""
    st.session_state[CONFIRM] = (booking_id, change, net)


def _confirm(booking_id: int, change: Change, net: int) -> None:
    """Make the change; when done the dialog closes and the page reruns to show the outcome at the top."""
    ss = st.session_state
    try:
        done = actions.desk().change_booking(
            booking_id, change, expected_net_cents=net, reason=str(ss.get(key("reason"), "") or "")
        )
    except QuoteChanged as exc:
        ss[STALE] = exc.message
        return
    except DomainError as exc:
        ss.pop(STALE, None)
        actions.show_error(exc, doing="Not changed")
        return
    except Exception:
        actions.unexpected("The change")
        return
    ss.pop(STALE, None)
    ss[RESULT] = (booking_id, done)
    ss["bk_change_toast"] = "Booking changed" if done.outcome == "applied" else "Change held, waiting for payment"
    widgets.close_flag(FLAG)
    st.rerun()


# ------------------------------------------------------------------------------------------------ on the booking


def show(svc: Services, detail: BookingDetail) -> None:
    """At the top of the booking: what the last change, payment or withdrawal did (until dismissed), and a change
    still waiting for payment or being made, with what can be done about it."""
    b = detail.booking
    if (toast := st.session_state.pop("bk_change_toast", None)) is not None:
        st.toast(toast, icon=":material/edit_calendar:")
    pending = detail.open_change
    kept = st.session_state.get(RESULT)
    if kept and kept[0] == b.id:
        _outcome(svc, kept[1], pending, detail.changes[-1] if detail.changes else None)
    if pending is not None:
        _pending(svc, detail, pending)


def _dismiss() -> None:
    st.session_state.pop(RESULT, None)


def _outcome(svc: Services, result: Any, pending: BookingChange | None, last: BookingChange | None) -> None:
    text, kind = _outcome_text(svc, result, pending, last)
    if text:
        c1, c2 = st.columns([6, 1], vertical_alignment="center")
        getattr(c1, kind)(text)
        c2.button("Dismiss", key="bk_ch_dismiss", on_click=_dismiss, icon=":material/close:")


def _outcome_text(
    svc: Services, result: Any, pending: BookingChange | None, last: BookingChange | None
) -> tuple[str, str]:
    if isinstance(result, DomainError):
        return f"Not done: {result.message}", "error"
    if isinstance(result, ConfirmResult):
        if result.outcome == "change_applied" and last is not None:
            return (
                f"Payment of {labels.money(svc, last.net_cents)} recorded; change {last.number} made.\n\n"
                + _bullets(last.lines)
                + "\n\n"
                + " · ".join(m for m in result.messages if m != "Changed"),
                "success",
            )
        if result.outcome == "change_failed":
            return "Paid, but the change could not be made.\n\n" + _bullets(result.messages), "error"
        return f"Payment: {result.outcome.replace('_', ' ')}\n\n" + _bullets(result.messages), "warning"
    lines = _bullets(result.lines)
    if result.outcome == "applied":
        return f"Change {result.number} made.\n\n{lines}\n\n" + " · ".join(result.messages[1:]), "success"
    if result.outcome == "awaiting_payment":
        if pending is not None and pending.number == result.number:
            return "", "info"  # the waiting change below says it all, with its buttons
        return f"Change {result.number} is no longer waiting for payment.", "info"
    if result.outcome == "applying":
        return (
            f"Change {result.number}: the days are moved; a step is tried again automatically.\n\n{lines}\n\n"
            + _bullets(result.messages),
            "warning",
        )
    if result.outcome == "withdrawn":
        return f"Change {result.number} withdrawn: the booking is as it was; the hold is released.", "info"
    return f"Change {result.number}: {result.outcome.replace('_', ' ')}.\n\n" + _bullets(result.messages), "info"


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {labels.literal(i)}" for i in items)


def _pending(svc: Services, detail: BookingDetail, c: BookingChange) -> None:
    b = detail.booking
    assert b.id is not None
    booking_id = b.id
    box = st.container(border=True)
    if c.state != AmendmentState.AWAITING_PAYMENT:
        box.warning(
            f"**Change {c.number} is being made**: a step failed and is tried again automatically.\n\n"
            + _bullets(c.lines),
            icon=":material/sync_problem:",
        )
        return
    until = f"{labels.venue(svc, c.hold_expires_at)} ({labels.tz_label(svc)})" if c.hold_expires_at else "—"
    box.info(
        f"**Change {c.number} waits for payment: {labels.money(svc, c.net_cents)}.** The new days are held until "
        f"{until}; the booking stays as it is until paid.\n\n" + _bullets(c.lines),
        icon=":material/hourglass_top:",
    )
    box.caption(f"Pay link (emailed to {labels.literal(b.customer_email)}):")
    box.code(c.pay_url, language=None)
    p1, p2, _ = box.columns([1.3, 1.2, 2])
    if svc.settings.is_sandbox and session.may("booking.record_payment"):
        p1.button(
            "Record payment (sandbox)",
            icon=":material/credit_score:",
            key="bk_ch_pay",
            on_click=actions.perform,
            args=(RESULT, lambda: actions.desk().record_change_payment(booking_id)),
            kwargs={"tag": booking_id},
            help="Sandbox: the customer pays the difference with a test card; the change is then made.",
        )
    if session.may("booking.change"):
        p2.button(
            "Withdraw change",
            icon=":material/undo:",
            key="bk_ch_withdraw",
            on_click=actions.perform,
            args=(RESULT, lambda: actions.desk().withdraw_change(booking_id)),
            kwargs={"tag": booking_id},
            help="Give the change up: the hold is released and the pay link stops working; the booking stays.",
        )
