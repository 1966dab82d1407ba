"""Reconciliation and the venue's own room blocks (issue 14 §5): an event whose private property `roomdesk_block` names
a block in force is the venue's own — never a hand-added event, never an orphan — while one naming a released or
unknown block is an orphan whose fix deletes it. A hand-added event clashing with a block is the one deleted."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from services import booking as bk
from services.booking.block_queries import BlockRequest
from services.reconciliation import remediate
from tests.unit.test_remediate import ACTOR, checks

WED, THU = date(2026, 3, 4), date(2026, 3, 5)
BOARDROOM = "boardroom@group.calendar.google.com"


def block(svc: Any, day: date = WED, start: time = time(9), end: time = time(11)) -> int:
    made = bk.create_block(
        svc,
        BlockRequest(rooms=("boardroom",), first_day=day, last_day=day, start=start, end=end, reason="Painting"),
        actor="manager@venue.example",
    )
    assert made.state == "active", made.message
    return made.block_id


def event(svc: Any, day: date, start: time, end: time, summary: str, **private: str) -> str:
    tz = svc.settings.tz
    body: dict[str, Any] = {
        "summary": summary,
        "start": {"dateTime": datetime.combine(day, start, tzinfo=tz).isoformat()},
        "end": {"dateTime": datetime.combine(day, end, tzinfo=tz).isoformat()},
    }
    if private:
        body["extendedProperties"] = {"private": private}
    return str(svc.calendar.insert_event(BOARDROOM, body)["id"])


def live(svc: Any, event_id: str) -> bool:
    ev = svc.calendar.get_event(BOARDROOM, event_id)
    return ev is not None and ev.get("status") != "cancelled"


def test_an_active_blocks_events_are_the_venues_own(svc: Any) -> None:
    block(svc)
    block(svc, THU)
    assert checks(svc) == {}


def test_an_event_of_a_released_block_is_an_orphan_and_its_fix_deletes_it(svc: Any) -> None:
    released = block(svc)
    bk.release_block(svc, released, actor="manager@venue.example", reason="Painter cancelled")
    # A copy of its event came back (restored from the calendar's bin), and one names a block Room Desk never had.
    left = event(svc, WED, time(9), time(11), "Blocked: Painting", roomdesk_block=str(released), roomdesk="block")
    stray = event(svc, THU, time(13), time(14), "Blocked: Old", roomdesk_block="9999")

    found = checks(svc)

    assert {f.code for f in found.values()} == {"orphan_event"}
    by_event = {f.event_ids[0]: f for f in found.values()}
    assert by_event[left].summary == (
        f"Boardroom Wed 4 Mar 09:00–11:00: “Blocked: Painting” is the event of room block #{released}, "
        "which was released"
    )
    assert by_event[stray].summary.endswith("is the event of room block #9999, which Room Desk does not know")
    assert by_event[left].actions == ["delete_events", "acknowledge"]

    result = remediate.run_action(svc, by_event[left].id, "delete_events", actor=ACTOR)

    assert result.ok and result.message.startswith("Deleted 1 event: “Blocked: Painting”, Boardroom"), result.message
    assert not live(svc, left) and live(svc, stray)
    assert set(checks(svc)) == {f"orphan_event:{BOARDROOM}/{stray}"}


def test_a_hand_added_event_clashing_with_a_block_is_the_one_deleted(svc: Any) -> None:
    block_id = block(svc)
    lunch = event(svc, WED, time(10), time(12), "Staff lunch")
    found = checks(svc)
    (clash,) = [f for f in found.values() if f.code == "double_booking"]
    assert {f.code for f in found.values()} == {"double_booking", "manual_event"}

    text = remediate.describe_action(svc, clash.id, "delete_hand_added")
    assert "“Staff lunch”" in text and "Blocked" not in text

    result = remediate.run_action(svc, clash.id, "delete_hand_added", actor=ACTOR, note="Lunch moved upstairs")

    assert result.ok, result.message
    assert not live(svc, lunch)
    listing = svc.calendar.list_events(BOARDROOM, private_property=f"roomdesk_block={block_id}")["items"]
    assert [e["status"] for e in listing] == ["confirmed"]
    assert checks(svc) == {}
