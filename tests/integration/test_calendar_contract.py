"""One contract, two calendars: the behaviours the booking service, sync and reconciliation rely on, asserted against
the SandboxCalendar (the embedded default and every unit test's double) and against GoogleCalendar talking HTTP to
the fake Google Calendar. Where the two differ in what they return (Google lists deleted events with `id` and
`status` only; the sandbox returns them whole), the contract asserts only what both guarantee."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.core.errors import EventExists, GatewayError, NotFound
from services.gateways.base import CalendarGateway
from services.gateways.sandbox_calendar import SandboxCalendar
from tests.fake_calendar import fake_calendar

ROOM_A = "boardroom@group.calendar.google.com"
ROOM_B = "workshop@group.calendar.google.com"
DAY = datetime(2026, 3, 4, 18, 0, tzinfo=UTC)  # 10:00 in Vancouver
VANCOUVER = ZoneInfo("America/Vancouver")


@dataclass
class Backend:
    name: str
    calendar: Any  # a CalendarGateway; typed Any for the `max_results` both implementations accept
    expire_sync_tokens: Callable[[], None]


@pytest.fixture(params=["sandbox", "google"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sandbox":
        sandbox = SandboxCalendar(tmp_path / "sandbox")
        yield Backend("sandbox", sandbox, sandbox.invalidate_sync_tokens)
        return
    with fake_calendar(tmp_path, calendar_ids=[ROOM_A, ROOM_B]) as fake:
        yield Backend("google", fake.gateway(), fake.server.expire_sync_tokens)


def event(
    event_id: str, *, day: int = 0, hours: tuple[int, int] = (0, 2), booking: str = "RD7K2M", **extra: Any
) -> dict:
    """An event shaped like the booking service's `_event_body`: local time with offset and zone, private props."""
    start = (DAY + timedelta(days=day, hours=hours[0])).astimezone(VANCOUVER)
    end = (DAY + timedelta(days=day, hours=hours[1])).astimezone(VANCOUVER)
    body = {
        "id": event_id,
        "summary": f"Boardroom — Ava Nguyen ({booking})",
        "description": "PaymentIntent: pi_3Nq0000000000000000000",
        "start": {"dateTime": start.isoformat(), "timeZone": "America/Vancouver"},
        "end": {"dateTime": end.isoformat(), "timeZone": "America/Vancouver"},
        "extendedProperties": {"private": {"booking_id": booking, "booking_date": start.date().isoformat()}},
    }
    body.update(extra)
    return body


def test_both_are_calendar_gateways(backend: Backend) -> None:
    assert isinstance(backend.calendar, CalendarGateway)


def test_insert_then_get(backend: Backend) -> None:
    created = backend.calendar.insert_event(ROOM_A, event("leg000001"))
    assert created["id"] == "leg000001" and created["status"] == "confirmed"
    fetched = backend.calendar.get_event(ROOM_A, "leg000001")
    assert fetched["summary"] == created["summary"]
    assert fetched["extendedProperties"]["private"]["booking_id"] == "RD7K2M"
    assert backend.calendar.get_event(ROOM_A, "never0001") is None
    assert backend.calendar.get_event(ROOM_B, "leg000001") is None  # ids are per calendar


def test_existing_or_deleted_id_raises_event_exists(backend: Backend) -> None:
    backend.calendar.insert_event(ROOM_A, event("leg000001"))
    with pytest.raises(EventExists) as exists:
        backend.calendar.insert_event(ROOM_A, event("leg000001"))
    assert exists.value.event_id == "leg000001" and exists.value.status == 409
    backend.calendar.delete_event(ROOM_A, "leg000001")
    with pytest.raises(EventExists):
        backend.calendar.insert_event(ROOM_A, event("leg000001"))
    assert backend.calendar.get_event(ROOM_A, "leg000001")["status"] == "cancelled"


def test_invalid_id_and_naive_times_are_refused(backend: Backend) -> None:
    with pytest.raises(GatewayError) as bad_id:
        backend.calendar.insert_event(ROOM_A, event("UPPER-case"))
    assert bad_id.value.status == 400
    with pytest.raises(GatewayError) as naive:
        backend.calendar.list_events(ROOM_A, time_min=datetime(2026, 3, 4))
    assert naive.value.status == 400


def test_patch_merges_and_refuses_missing_or_deleted(backend: Backend) -> None:
    backend.calendar.insert_event(ROOM_A, event("leg000001"))
    patched = backend.calendar.patch_event(
        ROOM_A, "leg000001", {"description": "Paid", "extendedProperties": {"private": {"payment_intent": "pi_1"}}}
    )
    assert patched["description"] == "Paid"
    assert patched["extendedProperties"]["private"] == {
        "booking_id": "RD7K2M",
        "booking_date": "2026-03-04",
        "payment_intent": "pi_1",
    }
    with pytest.raises(NotFound):
        backend.calendar.patch_event(ROOM_A, "never0001", {"description": "x"})
    backend.calendar.delete_event(ROOM_A, "leg000001")
    with pytest.raises(NotFound):
        backend.calendar.patch_event(ROOM_A, "leg000001", {"description": "x"})


def test_delete_is_done_when_already_gone(backend: Backend) -> None:
    backend.calendar.insert_event(ROOM_A, event("leg000001"))
    backend.calendar.delete_event(ROOM_A, "leg000001")
    backend.calendar.delete_event(ROOM_A, "leg000001")
    backend.calendar.delete_event(ROOM_A, "never0001")
    assert backend.calendar.get_event(ROOM_A, "leg000001")["status"] == "cancelled"


def test_list_by_private_property(backend: Backend) -> None:
    backend.calendar.insert_event(ROOM_A, event("mine00001"))
    backend.calendar.insert_event(ROOM_A, event("mine00002", day=1))
    backend.calendar.insert_event(ROOM_A, event("other0001", booking="RDZZZZ"))
    backend.calendar.delete_event(ROOM_A, "mine00002")
    listing = backend.calendar.list_events(ROOM_A, private_property="booking_id=RD7K2M")
    assert [e["id"] for e in listing["items"]] == ["mine00001"]
    with_deleted = backend.calendar.list_events(ROOM_A, private_property="booking_id=RD7K2M", show_deleted=True)
    assert sorted((e["id"], e["status"]) for e in with_deleted["items"]) == [
        ("mine00001", "confirmed"),
        ("mine00002", "cancelled"),
    ]


def test_list_window_and_pages(backend: Backend) -> None:
    for i in range(5):
        backend.calendar.insert_event(ROOM_A, event(f"leg00000{i}", day=i))
    seen, pages, token = [], [], None
    while True:
        page = backend.calendar.list_events(
            ROOM_A, time_min=DAY + timedelta(days=1), time_max=DAY + timedelta(days=4), page_token=token, max_results=2
        )
        pages.append(("nextPageToken" in page, "nextSyncToken" in page))
        seen += [e["id"] for e in page["items"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == ["leg000001", "leg000002", "leg000003"]  # ordered by start; the window is [min, max)
    assert pages == [(True, False), (False, True)]  # the sync token arrives on the last page only


def test_incremental_sync(backend: Backend) -> None:
    backend.calendar.insert_event(ROOM_A, event("keep00001"))
    backend.calendar.insert_event(ROOM_A, event("gone00001", day=1))
    token = backend.calendar.list_events(ROOM_A)["nextSyncToken"]
    backend.calendar.insert_event(ROOM_A, event("fresh0001", day=2))
    backend.calendar.delete_event(ROOM_A, "gone00001")
    backend.calendar.patch_event(ROOM_A, "keep00001", {"summary": "renamed"})
    backend.calendar.insert_event(ROOM_B, event("another01"))  # another calendar's change is not ours

    changes: list[dict[str, Any]] = []
    page: dict[str, Any] = {}
    page_token = None
    while True:
        page = backend.calendar.list_events(ROOM_A, sync_token=token, page_token=page_token, max_results=2)
        changes += page["items"]
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    assert {e["id"]: e["status"] for e in changes} == {
        "keep00001": "confirmed",
        "gone00001": "cancelled",
        "fresh0001": "confirmed",
    }
    assert next(e for e in changes if e["id"] == "keep00001")["summary"] == "renamed"
    assert backend.calendar.list_events(ROOM_A, sync_token=page["nextSyncToken"])["items"] == []


def test_sync_token_with_filters_is_refused(backend: Backend) -> None:
    token = backend.calendar.list_events(ROOM_A)["nextSyncToken"]
    for filters in ({"time_min": DAY}, {"time_max": DAY}, {"private_property": "booking_id=RD7K2M"}):
        with pytest.raises(GatewayError) as refused:
            backend.calendar.list_events(ROOM_A, sync_token=token, **filters)
        assert refused.value.status == 400


def test_expired_sync_token_is_410(backend: Backend) -> None:
    token = backend.calendar.list_events(ROOM_A)["nextSyncToken"]
    backend.expire_sync_tokens()
    with pytest.raises(GatewayError) as expired:
        backend.calendar.list_events(ROOM_A, sync_token=token)
    assert expired.value.status == 410 and expired.value.transient is False


def test_insert_events_reports_each_event(backend: Backend) -> None:
    backend.calendar.insert_event(ROOM_A, event("leg000002", day=2))
    results = backend.calendar.insert_events(ROOM_A, [event(f"leg00000{i}", day=i) for i in range(4)])
    assert [type(r).__name__ for r in results] == ["dict", "dict", "EventExists", "dict"]
    assert [r["id"] for r in results if isinstance(r, dict)] == ["leg000000", "leg000001", "leg000003"]
    assert results[2].event_id == "leg000002"


def test_delete_events_counts_gone_as_done(backend: Backend) -> None:
    backend.calendar.insert_events(ROOM_A, [event(f"leg00000{i}", day=i) for i in range(3)])
    backend.calendar.delete_event(ROOM_A, "leg000001")
    assert backend.calendar.delete_events(ROOM_A, ["leg000000", "leg000001", "leg000002", "never0001"]) == [None] * 4
    assert {backend.calendar.get_event(ROOM_A, f"leg00000{i}")["status"] for i in range(3)} == {"cancelled"}


def test_freebusy_with_event_ids(backend: Backend) -> None:
    backend.calendar.insert_event(ROOM_A, event("late00001", hours=(3, 4)))
    backend.calendar.insert_event(ROOM_A, event("first0001", hours=(0, 2)))
    backend.calendar.insert_event(ROOM_A, event("free00001", hours=(5, 6), transparency="transparent"))
    backend.calendar.insert_event(ROOM_A, event("gone00001", hours=(6, 7)))
    backend.calendar.delete_event(ROOM_A, "gone00001")
    backend.calendar.insert_event(ROOM_A, event("second001", day=1))
    backend.calendar.insert_event(ROOM_B, event("roomb0001", hours=(1, 3)))
    busy = backend.calendar.freebusy([ROOM_A, ROOM_B], DAY + timedelta(hours=1), DAY + timedelta(hours=12))
    assert busy[ROOM_A] == [
        {"start": "2026-03-04T18:00:00Z", "end": "2026-03-04T20:00:00Z", "event_id": "first0001"},
        {"start": "2026-03-04T21:00:00Z", "end": "2026-03-04T22:00:00Z", "event_id": "late00001"},
    ]
    assert busy[ROOM_B] == [{"start": "2026-03-04T19:00:00Z", "end": "2026-03-04T21:00:00Z", "event_id": "roomb0001"}]
    # What Gate 2 does with it: parse the times, drop the booking's own events found by private property.
    own = {e["id"] for e in backend.calendar.list_events(ROOM_A, private_property="booking_id=RD7K2M")["items"]}
    assert all(datetime.fromisoformat(b["start"]).tzinfo is not None for b in busy[ROOM_A])
    assert {b["event_id"] for b in busy[ROOM_A]} <= own


def test_booking_retry_pattern_after_a_409(backend: Backend) -> None:
    """The booking service's `_insert_event`: a 409 is followed by a get that tells its own live event (done) from a
    deleted id (move on to the next attempt's id)."""
    backend.calendar.insert_event(ROOM_A, event("leg000001"))
    backend.calendar.insert_event(ROOM_A, event("leg000002"))
    backend.calendar.delete_event(ROOM_A, "leg000002")
    for event_id, own_and_live in (("leg000001", True), ("leg000002", False)):
        with pytest.raises(EventExists):
            backend.calendar.insert_event(ROOM_A, event(event_id))
        existing = backend.calendar.get_event(ROOM_A, event_id)
        private = existing["extendedProperties"]["private"] if existing.get("extendedProperties") else {}
        assert (existing["status"] != "cancelled" and private.get("booking_id") == "RD7K2M") is own_and_live
