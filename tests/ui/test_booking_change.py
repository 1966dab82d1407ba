"""The Change booking dialog on a booking's detail (issue 12 §2): what a front-desk person on the phone sees as they
move a day, change the times, the room or the days — before and after, the money, why it can't be made — and what
shows on the booking once it is made or waits for payment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, time, timedelta

from sqlmodel import select
from streamlit.testing.v1 import AppTest

from models.tables import BookingLeg
from services.booking import BookingRequest, StartResult, quote, sandbox_pay, start_booking
from services.booking.grid import CellState, room_grid
from services.booking.queries import booking_detail
from services.core.context import Services
from services.rules.fmt import day_label

from .conftest import next_weekday

App = Callable[..., AppTest]
BOOKINGS = "pages/frontdesk/bookings.py"


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def keys(at: AppTest) -> list[str]:
    return [str(b.key) for b in at.button]


def free_days(svc: Services, rooms: str, start: time, end: time, n: int) -> list[date]:
    """`n` open days, each free from `start` to `end` in every room of `rooms` (comma-separated), checked one by one,
    at least three days ahead."""
    day = svc.now().astimezone(svc.settings.tz).date() + timedelta(days=3)
    found: list[date] = []
    while len(found) < n:
        day += timedelta(days=1)
        request = BookingRequest("", (day,), start, end, "x", "x@example.org")
        if all(quote(svc, replace(request, room=room)).available for room in rooms.split(",")):
            found.append(day)
    return found


def booked(
    svc: Services, email: str, days: list[date], *, party: int | None = None, end: time = time(12)
) -> StartResult:
    """A paid phone booking of the Boardroom ($45/h), 10:00 to `end` on `days`."""
    started = start_booking(
        svc,
        BookingRequest(
            "boardroom", tuple(days), time(10), end, "Chris Caller", email, "604-555-0199", party, channel="phone"
        ),
        actor="frontdesk@sandbox",
    )
    assert sandbox_pay(svc, started.booking_id, actor="frontdesk@sandbox").outcome == "confirmed"
    return started


def leg_ids(svc: Services, booking_id: int) -> list[int]:
    with svc.session() as s:
        rows = s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(BookingLeg.day))
        return [leg.id for leg in rows if leg.id is not None]


def opened(app: App, started: StartResult) -> AppTest:
    at = app("frontdesk", page=BOOKINGS, ref=started.reference)
    at.button(key="bk_change_open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_moving_a_day_at_the_same_price_is_made_and_shows_on_the_booking(app: App, svc: Services) -> None:
    first, other = free_days(svc, "boardroom", time(10), time(12), 2)
    started = booked(svc, "move.day@example.org", [first])
    at = opened(app, started)
    assert "Nothing changes yet" in texts(at, "info")
    assert at.button(key="bk_ch_go").disabled

    (leg,) = leg_ids(svc, started.booking_id)
    at.date_input(key=f"bk_ch_move_{leg}").set_value(other).run()
    table = at.dataframe[-1].value  # the dialog's now/after table
    assert list(table["Now"]) == [f"{day_label(first)} 10:00–12:00".replace(" ", "\u00a0")]
    assert list(table["After"]) == [f"{day_label(other)} 10:00–12:00".replace(" ", "\u00a0")]
    assert list(table[""]) == ["moved"]
    says = texts(at, "markdown")
    # GST 5 % included (the app's default tax): $90.00 + $4.50.
    assert "**Price now** $94.50" in says and "**After** $94.50" in says and "**Difference** $0.00" in says
    assert "**Nothing to pay**" in says
    go = at.button(key="bk_ch_go")
    assert not go.disabled and go.label == "Make the change"

    go.click().run()
    assert not at.exception
    assert "bk_ch_go" not in keys(at)  # the dialog closed
    made = texts(at, "success")
    assert "Change 1 made." in made and day_label(other) in made and "Email with the new details sent" in made
    assert [t.value for t in at.toast] == ["Booking changed"]
    assert day_label(other) in list(at.dataframe[0].value["Day"])  # the Days table shows the new date
    assert [leg.day for leg in booking_detail(svc, started.booking_id, live=False).legs] == [other]

    at.run()  # any later rerun: the outcome stays …
    assert "Change 1 made." in texts(at, "success")
    at.button(key="bk_ch_dismiss").click().run()  # … until dismissed
    assert "Change 1 made." not in texts(at, "success")


def test_longer_times_wait_for_payment_then_the_sandbox_payment_makes_the_change(app: App, svc: Services) -> None:
    (day,) = free_days(svc, "boardroom", time(10), time(14), 1)
    started = booked(svc, "longer.times@example.org", [day])
    at = opened(app, started)
    at.selectbox(key="bk_ch_end").set_value(time(13)).run()
    says = texts(at, "markdown")
    # GST 5 % included: $94.50 → $141.75 (3 h at $45 + $6.75).
    assert "**Price now** $94.50" in says and "**After** $141.75" in says and "**Difference** +$47.25" in says
    assert "**Charge $47.25**" in says and "a pay link is emailed to" in says and "stays as it is until paid" in says
    go = at.button(key="bk_ch_go")
    assert go.label == "Hold the new days and email a pay link for $47.25"

    go.click().run()
    assert not at.exception
    waiting = texts(at, "info")
    assert "Change 1 waits for payment: $47.25." in waiting and "held until" in waiting
    assert f"/manage/{started.reference}/change/1?k=" in at.code[0].value
    assert "bk_change_open" not in keys(at)  # one change at a time
    assert booking_detail(svc, started.booking_id, live=False).legs[0].ends_at.astimezone(svc.settings.tz).hour == 12
    assert svc.mail.messages(booking_id=started.booking_id, kind="change_pay_link")

    at.button(key="bk_ch_pay").click().run()
    assert not at.exception
    paid = texts(at, "success")
    assert "Payment of $47.25 recorded; change 1 made." in paid and "10:00–13:00" in paid
    assert "waits for payment" not in texts(at, "info")
    assert list(at.dataframe[0].value["Time"]) == ["10:00–13:00"]


def test_withdrawing_a_change_leaves_the_booking_as_it_was(app: App, svc: Services) -> None:
    (first,) = free_days(svc, "boardroom,union-room", time(10), time(12), 1)
    started = booked(svc, "withdraw.change@example.org", [first])
    at = opened(app, started)
    at.selectbox(key="bk_ch_room").set_value("union-room").run()  # dearer room: $30.00 more, $31.50 with GST
    assert "**Room** Boardroom → **Union Room**" in texts(at, "markdown")
    at.button(key="bk_ch_go").click().run()
    assert "Change 1 waits for payment: $31.50." in texts(at, "info")
    held = [o for o in room_grid(svc, [first]).on(first) if o.reference == started.reference]
    assert {(o.room, o.state) for o in held} == {("boardroom", CellState.BOOKED), ("union-room", CellState.HELD)}
    assert "(change, unpaid)" in next(o.label for o in held if o.state == CellState.HELD)

    at.button(key="bk_ch_withdraw").click().run()
    assert "Change 1 withdrawn: the booking is as it was" in texts(at, "info")
    assert "bk_change_open" in keys(at)
    assert booking_detail(svc, started.booking_id, live=False).booking.room_slug == "boardroom"
    after = [o for o in room_grid(svc, [first]).on(first) if o.reference == started.reference]
    assert [(o.room, o.state) for o in after] == [("boardroom", CellState.BOOKED)]


def test_mistakes_get_plain_answers_and_no_confirm(app: App, svc: Services) -> None:
    a, b = free_days(svc, "boardroom", time(10), time(12), 2)
    started = booked(svc, "mistakes@example.org", [a, b], party=10)
    first, _ = leg_ids(svc, started.booking_id)
    at = opened(app, started)

    def refused(*, contains: str, kind: str = "error") -> None:
        assert contains in texts(at, kind), texts(at, kind)
        assert at.button(key="bk_ch_go").disabled

    saturday = next_weekday(svc, 5) + timedelta(days=7)
    at.date_input(key=f"bk_ch_move_{first}").set_value(saturday).run()
    refused(contains="Saturdays are closed")

    at.date_input(key=f"bk_ch_move_{first}").set_value(b).run()  # onto the booking's other day
    refused(contains="Two days of the booking would fall on the same date")

    at.date_input(key=f"bk_ch_move_{first}").set_value(a).run()
    at.selectbox(key="bk_ch_end").set_value(time(18)).run()
    refused(contains="Outside opening hours (08:00–17:00)")

    at.selectbox(key="bk_ch_end").set_value(time(12)).run()
    at.selectbox(key="bk_ch_room").set_value("quiet-room").run()
    refused(contains="holds at most 6")

    at.selectbox(key="bk_ch_room").set_value("boardroom").run()
    refused(contains="Nothing changes yet", kind="info")
    assert not at.exception


def test_times_for_chosen_days_only_and_a_quote_that_moved_is_shown_again(app: App, svc: Services) -> None:
    a, b = free_days(svc, "boardroom", time(10), time(13), 2)
    started = booked(svc, "chosen.days@example.org", [a, b], end=time(13))
    _, second = leg_ids(svc, started.booking_id)
    at = opened(app, started)
    at.button_group(key="bk_ch_scope").set_value("Chosen days").run()
    at.checkbox(key=f"bk_ch_timed_{second}").check().run()
    at.selectbox(key="bk_ch_start").set_value(time(11)).run()  # the second day an hour shorter: 11:00–13:00
    table = at.dataframe[-1].value
    assert list(table[""]) == ["as it is", "new times"]
    assert "**Refund" in texts(at, "markdown")
    shown = at.button(key="bk_ch_go").label

    # Meanwhile a colleague refunds part of that day: the refund on screen is no longer what the change would give.
    with svc.session() as s:
        leg = s.get(BookingLeg, second)
        assert leg is not None
        leg.refunded_cents = leg.price_cents - 500  # $5.00 left on it
    at.button(key="bk_ch_go").click().run()
    assert "nothing was changed; look at it again" in texts(at, "warning")
    assert at.button(key="bk_ch_go").label != shown  # the new figure, to confirm again
    at.button(key="bk_ch_go").click().run()
    assert not at.exception
    assert "Change 1 made." in texts(at, "success")


def test_finance_and_a_cancelled_booking_offer_no_change(app: App, svc: Services) -> None:
    (day,) = free_days(svc, "boardroom", time(10), time(12), 1)
    started = booked(svc, "finance.looks@example.org", [day])
    assert "bk_change_open" not in keys(app("finance", page=BOOKINGS, ref=started.reference))
    assert "bk_change_open" in keys(app("manager", page=BOOKINGS, ref=started.reference))
