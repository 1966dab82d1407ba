"""Making a change to a paid booking (services/booking/change.py): what the caller and the venue notice — the room,
the calendar, the money and the one email — for each kind of change, and what is left when it cannot be made."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
from sqlmodel import select

from models.tables import Amendment, AmendmentState, BookingLeg, BookingStatus, LegState, RefundRecord
from services import booking as bk
from services.booking.amend import Change
from services.core.errors import InvalidState, NotAvailable, QuoteChanged, SlotTaken, ValidationError
from services.gateways.sandbox_mail import attachment_bytes
from tests.reliability.invariants import violations

WED, THU, FRI = date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)
THREE_DAYS = (date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11))


def paid(svc: Any, request: bk.BookingRequest) -> bk.StartResult:
    started = bk.start_booking(svc, request, actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    return started


def legs_of(svc: Any, booking_id: int) -> list[BookingLeg]:
    with svc.session() as s:
        return bk.booking_legs(s, booking_id)


def active(svc: Any, booking_id: int) -> list[tuple[date, str, str, int]]:
    tz = svc.settings.tz
    return [
        (leg.day, f"{leg.starts_at.astimezone(tz):%H:%M}", f"{leg.ends_at.astimezone(tz):%H:%M}", leg.price_cents)
        for leg in legs_of(svc, booking_id)
        if leg.state == LegState.CONFIRMED
    ]


def events(svc: Any, room: str, reference: str) -> list[tuple[str, str, str]]:
    cal = svc.catalogue.room(room).calendar_id
    out = []
    for ev in svc.calendar.list_events(cal).get("items") or []:
        private = (ev.get("extendedProperties") or {}).get("private") or {}
        if ev.get("status") != "cancelled" and private.get("booking_id") == reference:
            out.append((ev["start"]["dateTime"][:10], ev["start"]["dateTime"][11:16], ev["end"]["dateTime"][11:16]))
    return sorted(out)


def kept_by_stripe(svc: Any, pi_id: str) -> int:
    charge = svc.payments.retrieve_payment_intent(pi_id).get("latest_charge") or {}
    return int(charge.get("amount_captured", 0)) - int(charge.get("amount_refunded", 0))


def test_moving_a_day_at_the_same_price_moves_the_event_and_sends_one_email_with_the_new_ics(
    svc: Any, booking_request: Any
) -> None:
    mine = paid(svc, booking_request())
    (leg,) = legs_of(svc, mine.booking_id)
    plan = bk.plan_change(svc, mine.booking_id, Change(moves={leg.id: THU}))
    assert plan.settlement.net_cents == 0

    done = bk.change_booking(svc, mine.booking_id, Change(moves={leg.id: THU}), actor="frontdesk", expected_net_cents=0)

    assert done.outcome == "applied" and done.lines == ["Wed 4 Mar 10:00–12:00 → Thu 5 Mar 10:00–12:00"]
    assert active(svc, mine.booking_id) == [(THU, "10:00", "12:00", 9_000)]
    assert events(svc, "boardroom", mine.reference) == [("2026-03-05", "10:00", "12:00")]
    assert kept_by_stripe(svc, mine.payment_intent) == 9_000  # nothing charged, nothing refunded
    (mail,) = svc.mail.messages(mine.booking_id, kind="changed")
    assert "Thu 5 Mar" in mail["text"] and "nothing more to pay" in mail["text"]
    ics = attachment_bytes(mail["attachments"][0]).decode()
    assert "DTSTART:20260305T" in ics and "STATUS:CANCELLED" in ics and f"{mine.reference}-20260304@roomdesk" in ics
    # Wednesday is free again for anyone; Thursday is not.
    assert bk.quote(svc, booking_request(customer_email="x@example.org")).reasons == []
    assert bk.quote(svc, booking_request(dates=(THU,), customer_email="x@example.org")).reasons
    assert violations(svc) == []
    # Repeating the same request changes nothing more: Thursday is already the booking's day.
    with pytest.raises(ValidationError, match="leaves the booking as it is"):
        bk.change_booking(svc, mine.booking_id, Change(moves={leg.id: THU}), actor="frontdesk")


def test_a_change_that_costs_more_holds_the_new_shape_and_changes_the_calendar_only_after_payment(
    svc: Any, booking_request: Any
) -> None:
    mine = paid(svc, booking_request())  # Wed 10:00–12:00, $90
    waiting = bk.change_booking(
        svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk", expected_net_cents=4_500
    )
    assert waiting.outcome == "awaiting_payment" and waiting.net_cents == 4_500
    assert svc.payments.retrieve_payment_intent(waiting.payment_intent_id)["amount"] == 4_500
    assert f"/manage/{mine.reference}/change/1?k=" in waiting.pay_url
    # Until it is paid the booking and its event are as they were, and the extra hour is held against others.
    assert active(svc, mine.booking_id) == [(WED, "10:00", "12:00", 9_000)]
    assert events(svc, "boardroom", mine.reference) == [("2026-03-04", "10:00", "12:00")]
    other = booking_request(start=time(12, 30), end=time(14), customer_email="next@example.org")
    assert bk.quote(svc, other).reasons
    (link,) = svc.mail.messages(mine.booking_id, kind="change_pay_link")
    assert "$45.00" in link["text"] and waiting.pay_url in link["text"]

    paid_change = bk.sandbox_pay_change(svc, mine.booking_id, actor="stripe-webhook")

    assert paid_change.outcome == "change_applied"
    assert active(svc, mine.booking_id) == [(WED, "10:00", "13:00", 13_500)]
    assert events(svc, "boardroom", mine.reference) == [("2026-03-04", "10:00", "13:00")]
    assert kept_by_stripe(svc, mine.payment_intent) == 9_000
    assert kept_by_stripe(svc, waiting.payment_intent_id) == 4_500  # exactly the difference
    with svc.session() as s:
        assert bk.paid_total(s, bk.load_booking(s, mine.booking_id)) == 13_500
    (mail,) = svc.mail.messages(mine.booking_id, kind="changed")
    assert "charged the difference, $45.00" in mail["text"] and "Paid in all: $135.00" in mail["text"]
    assert violations(svc) == []
    # The webhook arriving afterwards changes nothing.
    again = bk.confirm_payment(svc, waiting.payment_intent_id, actor="stripe-webhook")
    assert again.outcome == "change_already_done"
    assert len(svc.mail.messages(mine.booking_id, kind="changed")) == 1


def test_a_hold_that_lapses_leaves_the_original_booking_untouched(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())
    waiting = bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    svc.clock.advance(hours=25)  # phone holds last a day
    assert bk.expire_change_holds(svc, actor="worker") == {"lapsed": 1}
    assert svc.payments.retrieve_payment_intent(waiting.payment_intent_id)["status"] == "canceled"
    assert active(svc, mine.booking_id) == [(WED, "10:00", "12:00", 9_000)]
    assert events(svc, "boardroom", mine.reference) == [("2026-03-04", "10:00", "12:00")]
    later = booking_request(start=time(12, 30), end=time(14, 30), customer_email="n@example.org")
    assert bk.quote(svc, later).reasons == []
    with svc.session() as s:
        (a,) = s.exec(select(Amendment)).all()
    assert a.state == AmendmentState.LAPSED and svc.mail.messages(mine.booking_id, kind="changed") == []
    assert violations(svc) == []


def test_shortening_a_day_refunds_the_hours_given_up_at_the_policy_band(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request(end=time(14)))  # Wed 10:00–14:00, $180
    svc.clock.advance(hours=10)  # 39 h before it starts: the 50 % band
    done = bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(12))), actor="frontdesk")
    assert done.outcome == "applied" and done.net_cents == -4_500  # half of the $90 given up
    assert active(svc, mine.booking_id) == [(WED, "10:00", "12:00", 9_000)]
    assert kept_by_stripe(svc, mine.payment_intent) == 13_500
    with svc.session() as s:
        (record,) = s.exec(select(RefundRecord)).all()
    assert (record.origin, record.amount_cents, record.policy_quote_cents) == ("amendment", 4_500, 4_500)
    (mail,) = svc.mail.messages(mine.booking_id, kind="changed")
    assert "refunded $45.00" in mail["text"]
    assert violations(svc) == []


def test_dropping_a_day_and_adding_another_nets_the_money(svc: Any, booking_request: Any) -> None:
    three = paid(svc, booking_request(dates=THREE_DAYS))  # 3 × $81, a week ahead: full refund band
    first = legs_of(svc, three.booking_id)[0]
    change = Change(drop=frozenset({first.id}), add=(date(2026, 3, 12),))
    plan = bk.plan_change(svc, three.booking_id, change)
    assert plan.settlement.net_cents == 0  # the same three-day discount: $81 back, $81 for the new day
    done = bk.change_booking(svc, three.booking_id, change, actor="frontdesk", expected_net_cents=0)
    assert done.outcome == "applied"
    assert [d for d, *_ in active(svc, three.booking_id)] == [date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12)]
    assert [d for d, *_ in events(svc, "boardroom", three.reference)] == ["2026-03-10", "2026-03-11", "2026-03-12"]
    assert kept_by_stripe(svc, three.payment_intent) == 3 * 8_100
    assert violations(svc) == []


def test_a_room_move_refused_at_gate_2_changes_nothing_and_says_why(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())
    union = svc.catalogue.room("union-room").calendar_id
    svc.calendar.insert_event(  # staff put a meeting on the Union Room's calendar by hand
        union,
        {
            "summary": "Board meeting",
            "start": {"dateTime": "2026-03-04T11:00:00-08:00"},
            "end": {"dateTime": "2026-03-04T12:00:00-08:00"},
        },
    )
    with pytest.raises(NotAvailable) as refused:
        bk.change_booking(svc, mine.booking_id, Change(room="union-room"), actor="frontdesk")
    assert any("overlaps" in r for r in refused.value.reasons), refused.value.reasons
    assert active(svc, mine.booking_id) == [(WED, "10:00", "12:00", 9_000)]
    assert events(svc, "boardroom", mine.reference) == [("2026-03-04", "10:00", "12:00")]
    with svc.session() as s:
        assert s.exec(select(Amendment)).all() == []
    assert violations(svc) == []


def test_a_room_taken_between_the_hold_and_the_payment_refunds_the_difference_in_full(
    svc: Any, booking_request: Any
) -> None:
    mine = paid(svc, booking_request())
    waiting = bk.change_booking(svc, mine.booking_id, Change(room="union-room"), actor="frontdesk")
    assert waiting.net_cents == 3_000
    union = svc.catalogue.room("union-room").calendar_id
    svc.calendar.insert_event(
        union,
        {
            "summary": "Hand-added",
            "start": {"dateTime": "2026-03-04T10:30:00-08:00"},
            "end": {"dateTime": "2026-03-04T11:00:00-08:00"},
        },
    )
    result = bk.sandbox_pay_change(svc, mine.booking_id, actor="stripe-webhook")
    assert result.outcome == "change_failed"
    assert kept_by_stripe(svc, waiting.payment_intent_id) == 0
    with svc.session() as s:
        booking = bk.load_booking(s, mine.booking_id)
        assert booking.room_slug == "boardroom" and booking.status == BookingStatus.CONFIRMED
    assert active(svc, mine.booking_id) == [(WED, "10:00", "12:00", 9_000)]
    assert events(svc, "boardroom", mine.reference) == [("2026-03-04", "10:00", "12:00")]
    (mail,) = svc.mail.messages(mine.booking_id, kind="change_failed")
    assert "refunded the $30.00 in full" in mail["text"]
    assert violations(svc) == []


def test_a_room_move_at_the_same_price_moves_the_event_to_the_new_rooms_calendar(
    svc: Any, booking_request: Any
) -> None:
    mine = paid(svc, booking_request(room="union-room"))
    done = bk.change_booking(svc, mine.booking_id, Change(room="boardroom"), actor="frontdesk")
    assert done.net_cents == -3_000 and done.outcome == "applied"  # a cheaper room: the difference back in full
    assert events(svc, "union-room", mine.reference) == []
    assert events(svc, "boardroom", mine.reference) == [("2026-03-04", "10:00", "12:00")]
    assert violations(svc) == []


def test_a_refund_after_a_dearer_change_is_spread_over_both_payments(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request(dates=(date(2026, 3, 16),)))  # two weeks ahead: full refunds
    waiting = bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    bk.sandbox_pay_change(svc, mine.booking_id, actor="stripe-webhook")
    cancelled = bk.cancel_booking(svc, mine.booking_id, actor="frontdesk")
    assert cancelled.refund_cents == 13_500
    assert kept_by_stripe(svc, mine.payment_intent) == 0
    assert kept_by_stripe(svc, waiting.payment_intent_id) == 0
    with svc.session() as s:
        parts = sorted((r.payment_intent_id, r.amount_cents) for r in s.exec(select(RefundRecord)))
    assert parts == sorted([(mine.payment_intent, 9_000), (waiting.payment_intent_id, 4_500)])
    assert violations(svc) == []


def test_the_difference_shown_is_checked_again_and_one_change_at_a_time(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())
    with pytest.raises(QuoteChanged):
        bk.change_booking(
            svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk", expected_net_cents=0
        )
    bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    (leg,) = legs_of(svc, mine.booking_id)
    with pytest.raises(InvalidState, match="waiting for payment"):
        bk.change_booking(svc, mine.booking_id, Change(moves={leg.id: THU}), actor="frontdesk")
    assert bk.withdraw_change(svc, mine.booking_id, actor="frontdesk").outcome == "withdrawn"
    assert bk.change_booking(svc, mine.booking_id, Change(moves={leg.id: THU}), actor="frontdesk").outcome == "applied"
    assert violations(svc) == []


def test_a_calendar_outage_mid_change_is_finished_by_the_worker(svc: Any, booking_request: Any) -> None:
    mine = paid(svc, booking_request())
    (leg,) = legs_of(svc, mine.booking_id)
    svc.calendar.faults.fail("patch_event", times=3)
    stalled = bk.change_booking(svc, mine.booking_id, Change(moves={leg.id: FRI}), actor="frontdesk")
    assert stalled.outcome == "applying" and "tried again automatically" in stalled.messages[0]
    assert active(svc, mine.booking_id) == [(FRI, "10:00", "12:00", 9_000)]  # the room is held on its new day
    assert svc.mail.messages(mine.booking_id, kind="changed") == []
    svc.calendar.faults.clear()
    assert bk.expire_change_holds(svc, actor="worker") == {"resumed:applied": 1}
    assert events(svc, "boardroom", mine.reference) == [("2026-03-06", "10:00", "12:00")]
    assert len(svc.mail.messages(mine.booking_id, kind="changed")) == 1
    assert violations(svc) == []


def test_a_date_cancelled_earlier_cannot_be_moved_into(svc: Any, booking_request: Any) -> None:
    three = paid(svc, booking_request(dates=THREE_DAYS))
    first, second, _ = legs_of(svc, three.booking_id)
    bk.cancel_booking(svc, three.booking_id, actor="frontdesk", leg_ids=[first.id])
    plan = bk.plan_change(svc, three.booking_id, Change(moves={second.id: first.day}))
    assert plan.reasons == ["Mon 9 Mar was cancelled from this booking earlier: book it as a new booking"]


def test_a_slot_taken_under_the_lease_is_refused_cleanly(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = paid(svc, booking_request())
    (leg,) = legs_of(svc, mine.booking_id)
    # Another process claims Thursday after this plan was checked: the database refuses, nothing is changed.
    other = bk.start_booking(svc, booking_request(dates=(THU,), customer_email="o@example.org"), actor="customer")
    from services.booking import change as change_module

    real = change_module.plan_change

    def blind(*a: Any, **k: Any) -> Any:
        plan = real(*a, **k)
        return type(plan)(
            plan.booking_id, plan.reference, plan.room_from, plan.room_to, plan.settlement, [], plan.target
        )

    monkeypatch.setattr(change_module, "plan_change", blind)
    with pytest.raises(SlotTaken):
        bk.change_booking(svc, mine.booking_id, Change(moves={leg.id: THU}), actor="frontdesk")
    assert active(svc, mine.booking_id) == [(WED, "10:00", "12:00", 9_000)]
    with svc.session() as s:
        assert s.exec(select(Amendment)).all() == []
    assert other.booking_id


def test_the_cli_offers_every_refund_origin_finance_can_filter_by() -> None:
    from services.finance.reports import ORIGINS
    from services.ops.cli import build_parser

    parser = build_parser()
    (export,) = [a for a in parser._subparsers._group_actions if a.choices]  # type: ignore[union-attr]
    origin = next(a for a in export.choices["export-refunds"]._actions if a.dest == "origin")
    assert sorted(origin.choices) == sorted(ORIGINS)


def test_the_worker_finishes_a_change_and_lapses_an_unpaid_one(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.ops import cli

    mine = paid(svc, booking_request())
    bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="customer", channel="web")
    svc.clock.advance(minutes=31)
    monkeypatch.setattr(cli, "_services", lambda: svc)
    assert cli.main(["expire-holds"]) == 0
    assert "Changes: lapsed: 1" in capsys.readouterr().out
    assert active(svc, mine.booking_id) == [(WED, "10:00", "12:00", 9_000)]


def test_the_bookings_list_shows_what_was_paid_in_all_and_finds_a_change_payment(
    svc: Any, booking_request: Any
) -> None:
    from services.booking.queries import find_booking_id, search_bookings

    mine = paid(svc, booking_request())
    waiting = bk.change_booking(svc, mine.booking_id, Change(times=(time(10), time(13))), actor="frontdesk")
    bk.sandbox_pay_change(svc, mine.booking_id, actor="stripe-webhook")
    (row,) = search_bookings(svc, text=mine.reference)
    assert row["amount_cents"] == 13_500 and row["time"] == "10:00–13:00"
    assert find_booking_id(svc, waiting.payment_intent_id or "") == mine.booking_id
