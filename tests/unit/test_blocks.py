"""Blocking a room and closing the venue (issue 14 §5; seed 000 #5: hand-added calendar events caused double
bookings). A block claims its slots like a booking — later bookings are refused with a sentence naming it, a block
over a booking is refused listing the booking — puts one marked event per room and day on the calendar, is audited,
survives a calendar outage (the worker puts the missing events once), and released gives the rooms back."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from models.tables import AuditLog, BlockKind, BlockState, Finding, RoomBlock, SlotClaim
from services import booking as bk
from services.booking import blocks
from services.booking.block_queries import BlockRequest
from services.core.errors import NotAvailable, SlotTaken, ValidationError
from services.ops import worker
from services.reconciliation import findings, reconcile, sync

MON, WED, THU, FRI = date(2026, 3, 2), date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)
SAT, SUN, NEXT_MON = date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)
BOARDROOM = "boardroom@group.calendar.google.com"
ALL_ROOMS = ("main-hall", "boardroom", "union-room", "workshop", "quiet-room", "gallery", "sonic-studio")


def block_request(**kw: Any) -> BlockRequest:
    kw.setdefault("rooms", ("boardroom",))
    kw.setdefault("first_day", WED)
    kw.setdefault("last_day", kw["first_day"])
    kw.setdefault("reason", "Painting the walls")
    kw["rooms"] = tuple(kw["rooms"])
    return BlockRequest(**kw)


def block_events(svc: Any, block_id: int, calendar: str = BOARDROOM) -> list[dict[str, Any]]:
    listing = svc.calendar.list_events(calendar, private_property=f"roomdesk_block={block_id}")
    return [e for e in listing["items"] if e.get("status") != "cancelled"]


def audit(svc: Any, action: str) -> list[AuditLog]:
    with svc.session() as s:
        return list(s.exec(select(AuditLog).where(AuditLog.action == action).order_by(col(AuditLog.id))))


def paid(svc: Any, request: bk.BookingRequest) -> bk.StartResult:
    started = bk.start_booking(svc, request, actor="customer")
    bk.sandbox_pay(svc, started.booking_id, actor="webhook")
    return started


def hand_added(svc: Any, day: date, start: time, end: time, **extra: Any) -> None:
    tz = svc.settings.tz
    svc.calendar.insert_event(
        BOARDROOM,
        {
            "summary": "Staff lunch",
            "start": {"dateTime": datetime.combine(day, start, tzinfo=tz).isoformat()},
            "end": {"dateTime": datetime.combine(day, end, tzinfo=tz).isoformat()},
            **extra,
        },
    )


def nothing_blocked(svc: Any) -> None:
    with svc.session() as s:
        assert s.exec(select(RoomBlock)).all() == []
        assert s.exec(select(SlotClaim).where(col(SlotClaim.block_id).is_not(None))).all() == []
    assert audit(svc, "block.created") == []


# ------------------------------------------------------------------------------------------ a block refuses bookings


def test_a_block_refuses_a_later_booking_with_a_sentence_naming_it(svc: Any, booking_request: Any) -> None:
    made = bk.create_block(svc, block_request(start=time(9), end=time(12)), actor="manager@venue.example")
    assert made.state == "active" and not made.problems
    assert "Blocked Boardroom on Wed 4 Mar, 09:00–12:00" in made.message

    inside = booking_request(start=time(10), end=time(12))
    [reason] = bk.quote(svc, inside).reasons
    assert reason.startswith("Wed 4 Mar: overlaps") and "Painting the walls" in reason
    with pytest.raises(NotAvailable) as refused:
        bk.start_booking(svc, inside, actor="customer")
    assert refused.value.reasons == [reason]
    # The buffer after the block counts like a booking's; a quarter of an hour later the room is free.
    [near] = bk.quote(svc, booking_request(start=time(12), end=time(14))).reasons
    assert "within 15 minutes of" in near and "Painting the walls" in near
    assert bk.quote(svc, booking_request(start=time(12, 15), end=time(14, 15))).available
    assert bk.quote(svc, booking_request(room="quiet-room", start=time(10), end=time(12))).available


def test_the_block_puts_one_marked_event_per_room_and_open_day(svc: Any) -> None:
    req = block_request(rooms=("boardroom", "gallery"), first_day=FRI, last_day=NEXT_MON, kind=BlockKind.INTERNAL)
    plan = bk.plan_block(svc, req)
    assert plan.days == (FRI, NEXT_MON) and len(plan.slots) == 4  # the weekend is closed anyway
    assert [d for d, _ in plan.closed_days] == [SAT, SUN] and "Saturdays are closed" in plan.closed_days[0][1]
    made = bk.create_block(svc, req, actor="manager@venue.example")
    [fri, mon] = sorted(block_events(svc, made.block_id), key=lambda e: e["start"]["dateTime"])
    assert fri["summary"] == "Blocked: Painting the walls"
    assert fri["start"]["dateTime"].startswith("2026-03-06T08:00") and fri["end"]["dateTime"].startswith(
        "2026-03-06T17"
    )
    assert fri["extendedProperties"]["private"] == {"roomdesk_block": str(made.block_id), "roomdesk": "block"}
    assert mon["start"]["dateTime"].startswith("2026-03-09T08:00")
    assert len(block_events(svc, made.block_id, "gallery@group.calendar.google.com")) == 2
    with svc.session() as s:
        block = s.get(RoomBlock, made.block_id)
        assert block is not None and len(block.events) == 4 and block.start_time is None
    [row] = bk.current_blocks(svc)
    assert (row.id, row.slots, row.events, row.time_label) == (made.block_id, 4, 4, "Whole day")


def test_a_block_made_for_today_starts_at_the_next_quarter_hour(svc: Any) -> None:
    svc.clock.advance(minutes=2)  # Monday 09:02 in Vancouver
    plan = bk.plan_block(svc, block_request(first_day=MON))
    [slot] = plan.slots
    assert slot.starts_at.astimezone(svc.settings.tz).time() == time(9, 15)
    svc.clock.advance(hours=8)  # 17:02: nothing left of today
    with pytest.raises(ValidationError, match="that time has already passed"):
        bk.plan_block(svc, block_request(first_day=MON))


# ------------------------------------------------------------------------------------------ clashes before saving


def test_a_block_over_bookings_is_refused_listing_them_and_nothing_is_written(svc: Any, booking_request: Any) -> None:
    booked = paid(svc, booking_request())  # Wed 10:00–12:00, paid
    held = bk.start_booking(svc, booking_request(dates=[THU], customer_name="Hana Hold"), actor="customer")
    paid(svc, booking_request(room="gallery"))  # another room: not in the way
    ends_before = paid(svc, booking_request(dates=[FRI], start=time(8), end=time(10)))
    req = block_request(first_day=WED, last_day=FRI, start=time(10), end=time(17))

    plan = bk.plan_block(svc, req)
    assert not plan.can_block
    got = {(c.kind, c.reference, c.customer) for c in plan.in_the_way}
    assert got == {
        ("booking", booked.reference, "Ava Nguyen"),
        ("hold", held.reference, "Hana Hold"),
        # Its buffer runs to 10:15: the database would refuse the block's 10:00 claim, so it is listed.
        ("booking", ends_before.reference, "Ava Nguyen"),
    }
    [wed] = [c for c in plan.clashes if c.reference == booked.reference]
    assert wed.text == f"Boardroom Wed 4 Mar 10:00–12:00: booking {booked.reference} (Ava Nguyen)"

    with pytest.raises(NotAvailable) as refused:
        bk.create_block(svc, req, actor="manager@venue.example")
    assert f"{wed.text}: move or cancel it first" in refused.value.reasons
    assert any(held.reference in r and "unpaid hold" in r for r in refused.value.reasons)
    nothing_blocked(svc)
    assert svc.calendar.list_events(BOARDROOM, private_property="roomdesk=block")["items"] == []

    # Once staff cancel the booking and the hold, the same block goes through.
    bk.cancel_booking(svc, booked.booking_id, actor="frontdesk")
    bk.release_unpaid_hold(svc, held.booking_id, actor="frontdesk")
    bk.cancel_booking(svc, ends_before.booking_id, actor="frontdesk")
    assert bk.create_block(svc, req, actor="manager@venue.example").state == "active"


def test_another_block_is_in_the_way_and_hand_added_events_are_only_listed(svc: Any) -> None:
    first = bk.create_block(svc, block_request(start=time(9), end=time(11)), actor="m")
    hand_added(svc, THU, time(12), time(13))
    hand_added(svc, THU, time(14), time(15), transparency="transparent")  # marked free: not in the way of anything
    hand_added(
        svc, THU, time(15), time(16), extendedProperties={"private": {"payment_intent": "pi_OLDSYSTEM1"}}
    )  # a payment the old system took
    plan = bk.plan_block(svc, block_request(first_day=WED, last_day=THU))
    kinds = [(c.kind, c.blocking) for c in plan.clashes]
    assert kinds == [("block", True), ("old_payment", True), ("event", False)]
    assert f"already blocked (block #{first.block_id}, Maintenance: Painting the walls)" in plan.clashes[0].text
    assert "pi_OLDSYSTEM1" in plan.clashes[1].text
    assert plan.clashes[2].text == (
        "Boardroom Thu 5 Mar 12:00–13:00: “Staff lunch” is on the calendar, added by hand (the block leaves it there)"
    )
    # Only the hand-added event left: the block can be made (the event stays for staff to deal with).
    assert bk.plan_block(svc, block_request(first_day=THU, start=time(8), end=time(15))).can_block


def test_a_booking_that_takes_a_slot_after_the_check_ends_in_a_clean_refusal(
    svc: Any, booking_request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = block_request()
    checked = bk.plan_block(svc, req)
    assert checked.can_block
    bk.start_booking(svc, booking_request(), actor="customer")  # the race: a hold lands after the check
    monkeypatch.setattr(blocks, "plan_block", lambda *a, **k: checked)  # the re-check saw the room free too
    with pytest.raises(SlotTaken, match="nothing was blocked"):
        bk.create_block(svc, req, actor="m")
    nothing_blocked(svc)


# ------------------------------------------------------------------------------------------ what staff may ask


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"reason": "x "}, "Give a reason of at least 3 characters"),
        ({"reason": "x" * 501}, "The reason is at most 500 characters (501 given)"),
        ({"rooms": ()}, "Choose at least one room, or All rooms"),
        ({"rooms": ("attic",)}, "There is no room 'attic'"),
        ({"last_day": date(2026, 3, 3)}, "The last day must be on or after the first day"),
        ({"last_day": WED + timedelta(days=366)}, "At most 366 days in one block (367 chosen)"),
        ({"first_day": date(2026, 2, 27), "last_day": date(2026, 2, 27)}, "These days are over"),
        ({"start": time(10)}, "Give both a start and an end time"),
        ({"start": time(12), "end": time(10)}, "The end time must be after the start time"),
        ({"start": time(7), "end": time(10)}, "Outside opening hours (08:00–17:00)"),
        ({"start": time(10, 5), "end": time(11)}, "Start and end times must be on a 15-minute step"),
        ({"kind": BlockKind.CLOSURE}, "A closure closes the whole venue for whole days"),
        ({"kind": BlockKind.CLOSURE, "rooms": ALL_ROOMS, "start": time(8), "end": time(12)}, "whole days"),
        ({"first_day": SAT, "last_day": SUN}, "Nothing to block from Sat 7 Mar to Sun 8 Mar"),
        # Today (Mon 2 Mar): its morning's bookings were served; a closure would call them "booked on a closed day".
        (
            {"kind": BlockKind.CLOSURE, "rooms": ALL_ROOMS, "first_day": MON, "last_day": WED},
            "A closure starts tomorrow at the earliest",
        ),
    ],
)
def test_a_malformed_request_is_refused_with_a_sentence(svc: Any, change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        bk.plan_block(svc, block_request(**change))
    assert any(problem in p for p in refused.value.problems), refused.value.problems
    with pytest.raises(ValidationError):
        bk.create_block(svc, block_request(**change), actor="m")
    nothing_blocked(svc)


def test_the_near_misses_of_those_rules_are_accepted(svc: Any) -> None:
    for req in (
        block_request(reason="Gas"),
        block_request(reason="x" * 500),
        block_request(last_day=WED + timedelta(days=365)),
        block_request(first_day=MON, start=time(16), end=time(17)),
        block_request(start=time(8), end=time(8, 15)),
        block_request(kind=BlockKind.CLOSURE, rooms=ALL_ROOMS),
    ):
        assert bk.plan_block(svc, req).can_block, req


# ------------------------------------------------------------------------------------------ release


def test_release_frees_the_slot_deletes_the_events_and_is_audited(svc: Any, booking_request: Any) -> None:
    made = bk.create_block(svc, block_request(last_day=THU), actor="manager@venue.example")
    events = block_events(svc, made.block_id)
    assert len(events) == 2 and not bk.quote(svc, booking_request()).available
    with pytest.raises(ValidationError, match="at least 3 characters"):
        bk.release_block(svc, made.block_id, actor="manager@venue.example", reason=" ")

    done = bk.release_block(svc, made.block_id, actor="manager@venue.example", reason="Painters cancelled")
    assert done.message == f"Released block #{made.block_id}: Boardroom can be booked again on its days."
    assert bk.quote(svc, booking_request()).available
    assert block_events(svc, made.block_id) == []
    assert all(svc.calendar.get_event(BOARDROOM, e["id"])["status"] == "cancelled" for e in events)
    assert bk.current_blocks(svc) == []
    with svc.session() as s:
        block = s.get(RoomBlock, made.block_id)
        assert block is not None and block.state == BlockState.RELEASED and block.events == []
        assert (block.released_by, block.release_reason) == ("manager@venue.example", "Painters cancelled")
    [row] = audit(svc, "block.released")
    assert row.actor == "manager@venue.example" and row.payload["reason"] == "Painters cancelled"

    again = bk.release_block(svc, made.block_id, actor="manager@venue.example", reason="Double click")
    assert again.message == f"Block #{made.block_id} was already released."
    assert len(audit(svc, "block.released")) == 1


def test_the_audit_trail_says_who_blocked_what_and_why(svc: Any) -> None:
    made = bk.create_block(
        svc, block_request(rooms=("boardroom", "gallery"), last_day=THU, start=time(13), end=time(15)), actor="m@v.ex"
    )
    [created] = audit(svc, "block.created")
    assert created.actor == "m@v.ex"
    assert {k: created.payload[k] for k in ("block_id", "kind", "rooms", "days", "time", "reason", "slots")} == {
        "block_id": made.block_id,
        "kind": "maintenance",
        "rooms": ["boardroom", "gallery"],
        "days": 2,
        "time": "13:00–15:00",
        "reason": "Painting the walls",
        "slots": 4,
    }
    [events] = audit(svc, "block.events.created")
    assert (events.payload["events"], events.payload["failed"]) == (4, [])


# ------------------------------------------------------------------------------------------ calendar outages


def test_a_calendar_failure_leaves_the_block_and_the_worker_puts_the_events_once(
    svc: Any, booking_request: Any
) -> None:
    svc.calendar.faults.fail("insert_event", nth=2)  # Thursday's insert fails outright
    svc.calendar.faults.fail("insert_event", nth=3, mode="after")  # Friday's is made, its answer lost
    made = bk.create_block(svc, block_request(first_day=WED, last_day=FRI), actor="m")
    assert made.state == "active" and len(made.problems) == 2 and "the worker retries them" in made.message
    assert len(block_events(svc, made.block_id)) == 2  # Wednesday's and Friday's (whose answer was lost)
    # The claims protect every day meanwhile.
    for day in (WED, THU, FRI):
        assert not bk.quote(svc, booking_request(dates=[day])).available
    [row] = bk.current_blocks(svc)
    assert row.events_label == "1 of 3, the worker retries"

    assert bk.repair_block_events(svc) == 1
    events = block_events(svc, made.block_id)
    assert sorted(e["start"]["dateTime"][:10] for e in events) == ["2026-03-04", "2026-03-05", "2026-03-06"]
    assert bk.repair_block_events(svc) == 0  # nothing left: no calendar call
    assert "blocks -" in worker.run_round(svc)
    with svc.session() as s:
        block = s.get(RoomBlock, made.block_id)
        assert block is not None and len(block.events) == 3


def test_events_a_failed_release_left_are_deleted_by_the_worker(svc: Any) -> None:
    made = bk.create_block(svc, block_request(last_day=THU), actor="m")
    svc.calendar.faults.fail("delete_event")
    done = bk.release_block(svc, made.block_id, actor="m", reason="Not needed after all")
    assert done.state == "released" and len(done.problems) == 1
    assert len(block_events(svc, made.block_id)) == 1
    assert bk.repair_block_events(svc) == 1
    assert block_events(svc, made.block_id) == []
    assert bk.repair_block_events(svc) == 0


# ------------------------------------------------------------------------------------------ closures, reconciliation


def test_closing_the_venue_takes_every_room_for_whole_days(svc: Any, booking_request: Any) -> None:
    made = bk.create_block(
        svc, block_request(kind=BlockKind.CLOSURE, rooms=ALL_ROOMS, reason="Burst water pipe"), actor="m"
    )
    assert made.message.startswith("Closed the venue on Wed 4 Mar, whole opening day")
    [event] = block_events(svc, made.block_id)
    assert event["summary"] == "Closed: Burst water pipe"
    for room in ALL_ROOMS:
        if svc.catalogue.room(room).bookable:
            reasons = bk.quote(svc, booking_request(room=room, start=time(13), end=time(16))).reasons
            assert reasons == ["Wed 4 Mar: venue closed (Burst water pipe)"], (room, reasons)
    assert bk.quote(svc, booking_request(dates=[THU])).available
    # The closed day is still planned for another block (which the closure is in the way of), not skipped as shut.
    [clash] = bk.plan_block(svc, block_request()).in_the_way
    assert f"already blocked (block #{made.block_id}, Closure (whole venue): Burst water pipe)" in clash.text

    bk.release_block(svc, made.block_id, actor="m", reason="Pipe fixed overnight")
    assert bk.quote(svc, booking_request(room="main-hall", start=time(13), end=time(16))).available


def test_a_block_event_is_not_a_hand_added_event_for_reconciliation(svc: Any) -> None:
    made = bk.create_block(svc, block_request(last_day=THU, start=time(9), end=time(11)), actor="m")
    hand_added(svc, FRI, time(9), time(10))  # the near miss: a real hand-added event is still found
    sync.sync(svc)
    reconcile.reconcile(svc)
    found: dict[str, list[Finding]] = defaultdict(list)
    for f in findings.open_findings(svc):
        found[f.code].append(f)
    assert [f.summary for f in found["manual_event"]] == [
        "Boardroom Fri 6 Mar 09:00–10:00: “Staff lunch” added by hand, no payment behind it"
    ]
    assert found.keys() <= {"manual_event"}, {k: [f.summary for f in v] for k, v in found.items()}
    assert len(block_events(svc, made.block_id)) == 2


def test_a_blocks_claims_are_utc_and_add_no_buffer_of_their_own(svc: Any) -> None:
    made = bk.create_block(svc, block_request(start=time(9), end=time(12)), actor="m")
    with svc.session() as s:
        [claim] = s.exec(select(SlotClaim).where(SlotClaim.block_id == made.block_id)).all()
    assert claim.starts_at == datetime(2026, 3, 4, 17, 0, tzinfo=UTC) and claim.block_until == claim.ends_at


def test_a_closure_records_the_days_it_closes_not_the_weekend_it_was_asked_from(svc: Any) -> None:
    made = bk.create_block(
        svc,
        block_request(kind=BlockKind.CLOSURE, rooms=ALL_ROOMS, first_day=SAT, last_day=NEXT_MON, reason="Move-out"),
        actor="m",
    )
    with svc.session() as s:
        block = s.get(RoomBlock, made.block_id)
        assert block is not None and (block.first_day, block.last_day) == (NEXT_MON, NEXT_MON)
    closures = svc.catalogue.closure_map
    assert closures.get(NEXT_MON) == "Move-out" and SAT not in closures and SUN not in closures


def test_a_blocked_room_cannot_be_removed_on_settings(svc: Any) -> None:
    """The worker puts and deletes a block's events on its room's calendar: removing the room would leave it nothing
    to put them on (and stop its rounds)."""
    from services.core.errors import ValidationError as Invalid
    from services.core.venue import save_venue_config
    from services.core.venue_state import VenueEdit

    bk.create_block(svc, block_request(rooms=("quiet-room",), reason="Carpet"), actor="m")
    rows = tuple(r.model_dump(mode="json") for r in svc.venue.stored.rooms if r.slug != "quiet-room")
    with pytest.raises(Invalid) as refused:
        save_venue_config(svc, VenueEdit(svc.venue.version, rooms=rows), actor="admin@venue.example")
    assert any("Quiet Room has been blocked" in p for p in refused.value.problems), refused.value.problems
    assert svc.catalogue.room("quiet-room").name == "Quiet Room"


def test_opening_longer_is_refused_while_a_whole_day_block_lies_ahead(svc: Any, booking_request: Any) -> None:
    """A whole-day block claimed 08:00–17:00; opening until 21:00 would put 17:00–21:00 of a room under renovation
    on sale. Settings refuses until the block is released (and made again)."""
    from services.core.errors import ValidationError as Invalid
    from services.core.venue import save_venue_config
    from services.core.venue_state import VenueEdit

    made = bk.create_block(svc, block_request(reason="Renovation"), actor="m")
    later = VenueEdit(svc.venue.version, rules={"close_time": "21:00"})
    with pytest.raises(Invalid) as refused:
        save_venue_config(svc, later, actor="admin@venue.example")
    assert any(f"#{made.block_id} (Renovation)" in p for p in refused.value.problems), refused.value.problems
    assert not bk.quote(svc, booking_request(dates=[WED], start=time(18), end=time(20))).available

    bk.release_block(svc, made.block_id, actor="m", reason="Renovation moved")
    save_venue_config(svc, VenueEdit(svc.venue.version, rules={"close_time": "21:00"}), actor="admin@venue.example")
    assert str(svc.policy.close_time) == "21:00:00"
