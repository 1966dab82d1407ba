"""GoogleCalendar over HTTP with the real google-api-python-client and google-auth, against the fake Google Calendar
on loopback (tests/fake_calendar): the same code path production runs, only `rootUrl` and the key's token_uri moved."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
from google.oauth2 import service_account
from googleapiclient.discovery import build_from_document

from services.core.errors import ConfigError, EventExists, GatewayError, NotFound, TimeoutFault
from services.gateways.base import CalendarGateway
from services.gateways.google_calendar import SCOPES, GoogleCalendar, _discovery_document
from tests.fake_calendar import FakeCalendar, fake_calendar
from tests.fake_calendar.keys import generate_key, write_key_file

DAY = datetime(2026, 3, 4, 18, 0, tzinfo=UTC)  # 10:00 in Vancouver
BOOKING = "RD7K2M"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeCalendar]:
    with fake_calendar(tmp_path) as running:
        yield running


class Sleeps(list[float]):
    """Records backoff sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def event(
    event_id: str, *, day: int = 0, hours: tuple[int, int] = (0, 2), booking: str = BOOKING, **extra: Any
) -> dict:
    start = DAY + timedelta(days=day, hours=hours[0])
    end = DAY + timedelta(days=day, hours=hours[1])
    body = {
        "id": event_id,
        "summary": f"Boardroom — Ava Nguyen ({booking})",
        "start": {"dateTime": start.isoformat(), "timeZone": "America/Vancouver"},
        "end": {"dateTime": end.isoformat(), "timeZone": "America/Vancouver"},
        "extendedProperties": {"private": {"booking_id": booking, "booking_date": start.date().isoformat()}},
    }
    body.update(extra)
    return body


def ids(n: int, prefix: str = "leg") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


# --------------------------------------------------------------------------------------------- single calls


def test_is_a_calendar_gateway(fake: FakeCalendar) -> None:
    calendar = fake.gateway()
    assert isinstance(calendar, CalendarGateway)
    assert calendar.mode == "google"


def test_insert_get_patch_delete(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    created = calendar.insert_event(cal, event("evt00001"))
    assert created["id"] == "evt00001" and created["status"] == "confirmed"
    assert calendar.get_event(cal, "evt00001")["summary"] == created["summary"]

    patched = calendar.patch_event(cal, "evt00001", {"description": "Paid CAD 120.00"})
    assert patched["description"] == "Paid CAD 120.00"
    assert patched["extendedProperties"]["private"]["booking_id"] == BOOKING  # patch merges, keeps the rest

    calendar.delete_event(cal, "evt00001")
    assert calendar.get_event(cal, "evt00001")["status"] == "cancelled"  # Google returns deleted events on get
    calendar.delete_event(cal, "evt00001")  # 410 on the wire: done
    calendar.delete_event(cal, "never0001")  # 404 on the wire: done
    assert calendar.get_event(cal, "never0001") is None
    with pytest.raises(NotFound):
        calendar.patch_event(cal, "never0001", {"description": "x"})
    with pytest.raises(NotFound):
        calendar.patch_event(cal, "evt00001", {"description": "x"})
    statuses = [(r.method, r.status) for r in fake.server.api_calls() if "evt00001" in r.path]
    assert ("DELETE", 204) in statuses and ("DELETE", 410) in statuses


def test_409_on_existing_and_on_deleted_id(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    calendar.insert_event(cal, event("evt00001"))
    with pytest.raises(EventExists) as existing:
        calendar.insert_event(cal, event("evt00001"))
    assert existing.value.status == 409 and existing.value.event_id == "evt00001" and not existing.value.transient

    calendar.delete_event(cal, "evt00001")
    with pytest.raises(EventExists):
        calendar.insert_event(cal, event("evt00001"))  # a deleted id can never be reused


def test_invalid_event_id_is_refused(fake: FakeCalendar) -> None:
    with pytest.raises(GatewayError) as refused:
        fake.gateway().insert_event(fake.calendar_id, event("Not-Base32hex"))
    assert refused.value.status == 400 and "Invalid resource id" in refused.value.message


def test_list_by_private_property(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    calendar.insert_event(cal, event("mine00001", booking="RD7K2M"))
    calendar.insert_event(cal, event("mine00002", day=1, booking="RD7K2M"))
    calendar.insert_event(cal, event("other0001", booking="RDZZZZ"))
    calendar.delete_event(cal, "mine00002")
    page = calendar.list_events(cal, private_property="booking_id=RD7K2M")
    assert [e["id"] for e in page["items"]] == ["mine00001"]
    deleted_too = calendar.list_events(cal, private_property="booking_id=RD7K2M", show_deleted=True)
    assert {e["id"]: e["status"] for e in deleted_too["items"]} == {"mine00001": "confirmed", "mine00002": "cancelled"}


def test_list_window_and_paging(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    for i, event_id in enumerate(ids(5)):
        calendar.insert_event(cal, event(event_id, day=i))
    seen: list[str] = []
    page_token = None
    pages = []
    while True:
        page = calendar.list_events(
            cal,
            time_min=DAY + timedelta(days=1),
            time_max=DAY + timedelta(days=4),
            page_token=page_token,
            max_results=2,
        )
        pages.append(page)
        seen += [e["id"] for e in page["items"]]
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    assert seen == ["leg00001", "leg00002", "leg00003"]
    assert [("nextSyncToken" in p, "nextPageToken" in p) for p in pages] == [(False, True), (True, False)]


def test_incremental_sync_with_token(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    calendar.insert_event(cal, event("keep00001"))
    calendar.insert_event(cal, event("gone00001", day=1))
    full = calendar.list_events(cal)
    token = full["nextSyncToken"]

    calendar.insert_event(cal, event("fresh0001", day=2))
    calendar.delete_event(cal, "gone00001")
    calendar.patch_event(cal, "keep00001", {"summary": "Boardroom — renamed"})
    changes = calendar.list_events(cal, sync_token=token)
    by_id = {e["id"]: e for e in changes["items"]}
    assert set(by_id) == {"keep00001", "gone00001", "fresh0001"}
    assert by_id["gone00001"]["status"] == "cancelled"  # deletions arrive as cancelled (id + status only)
    assert by_id["keep00001"]["summary"] == "Boardroom — renamed"
    assert calendar.list_events(cal, sync_token=changes["nextSyncToken"])["items"] == []


def test_incremental_sync_pages_carry_the_token_on_the_last_page(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    token = calendar.list_events(cal)["nextSyncToken"]
    for i, event_id in enumerate(ids(5)):
        calendar.insert_event(cal, event(event_id, day=i))
    first = calendar.list_events(cal, sync_token=token, max_results=3)
    assert "nextSyncToken" not in first
    second = calendar.list_events(cal, sync_token=token, page_token=first["nextPageToken"], max_results=3)
    assert [e["id"] for e in first["items"] + second["items"]] == ids(5)  # in change order
    assert "nextSyncToken" in second


@pytest.mark.parametrize(
    "filters",
    [{"time_min": DAY}, {"time_max": DAY}, {"private_property": "booking_id=RD7K2M"}],
    ids=["timeMin", "timeMax", "privateExtendedProperty"],
)
def test_sync_token_refuses_other_filters(fake: FakeCalendar, filters: dict[str, Any]) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    token = calendar.list_events(cal)["nextSyncToken"]
    with pytest.raises(GatewayError) as refused:
        calendar.list_events(cal, sync_token=token, **filters)
    assert refused.value.status == 400 and not refused.value.transient


def test_expired_sync_token_asks_for_a_full_sync(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps), fake.calendar_id
    token = calendar.list_events(cal)["nextSyncToken"]
    fake.server.expire_sync_tokens()
    with pytest.raises(GatewayError) as expired:
        calendar.list_events(cal, sync_token=token)
    assert expired.value.status == 410 and not expired.value.transient
    assert "full sync" in expired.value.message
    assert sleeps == []  # 410 is never retried
    assert "nextSyncToken" in calendar.list_events(cal)  # the full sync works and hands out a fresh token


# --------------------------------------------------------------------------------------------- batches


def test_batch_insert_of_ten_events_is_one_round_trip(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    calendar.list_events(cal)  # sign in first, so the count below is about the events alone
    fake.server.clear_log()
    results = calendar.insert_events(cal, [event(event_id, day=i) for i, event_id in enumerate(ids(10))])
    assert [r["id"] for r in results if isinstance(r, dict)] == ids(10)
    assert fake.server.round_trips(include_token=True) == 1
    assert [r.parts for r in fake.server.log if not r.in_batch] == [10]
    assert all(fake.server.stored(cal, event_id)["status"] == "confirmed" for event_id in ids(10))


def test_batch_above_fifty_is_split(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    results = calendar.insert_events(cal, [event(event_id) for event_id in ids(60)])
    assert all(isinstance(r, dict) for r in results)
    assert [r.parts for r in fake.server.log if r.path == "/batch/calendar/v3"] == [50, 10]


def test_batch_with_one_failing_part_reports_that_part_only(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    calendar.insert_event(cal, event("leg00003", day=3))
    results = calendar.insert_events(cal, [event(event_id, day=i) for i, event_id in enumerate(ids(5))])
    assert isinstance(results[3], EventExists) and results[3].event_id == "leg00003"
    assert all(isinstance(r, dict) for i, r in enumerate(results) if i != 3)


def test_batch_delete_counts_gone_as_done_and_reports_real_failures(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps, num_retries=2), fake.calendar_id
    calendar.insert_events(cal, [event(event_id) for event_id in ids(4)])
    calendar.delete_event(cal, "leg00001")
    fake.server.fail(500, method="DELETE", path="leg00002$", times=10)
    results = calendar.delete_events(cal, [*ids(4), "never0001"])
    assert results[0] is None and results[1] is None and results[3] is None and results[4] is None  # 204, 410, 404
    failed = results[2]
    assert isinstance(failed, GatewayError) and failed.status == 500 and failed.transient
    # The failing part alone went again, twice (num_retries=2), each time in a batch of one.
    assert [r.parts for r in fake.server.log if r.path == "/batch/calendar/v3"][-3:] == [5, 1, 1]
    assert len(sleeps) == 2


def test_batch_retries_only_the_failed_retriable_part(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps), fake.calendar_id
    calendar.list_events(cal)
    fake.server.clear_log()
    fake.server.fail(503, method="POST", path="/events$", times=1)  # the first part of the batch
    results = calendar.insert_events(cal, [event(event_id, day=i) for i, event_id in enumerate(ids(10))])
    assert all(isinstance(r, dict) for r in results)
    assert [r.parts for r in fake.server.log if not r.in_batch] == [10, 1]
    assert len(sleeps) == 1
    inserts = [r for r in fake.server.api_calls() if r.method == "POST"]
    assert [r.status for r in inserts] == [503] + [200] * 10


def test_batch_envelope_failure_resends_every_part(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps), fake.calendar_id
    fake.server.fail(503, path="^/batch/", times=1)
    results = calendar.insert_events(cal, [event(event_id) for event_id in ids(3)])
    assert all(isinstance(r, dict) for r in results)
    assert [r.status for r in fake.server.log if r.path == "/batch/calendar/v3"] == [503, 200]


def test_batch_does_not_retry_409_or_quota(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps), fake.calendar_id
    calendar.insert_event(cal, event("leg00001"))
    fake.server.fail(
        403, method="POST", path="/events$", reason="quotaExceeded", message="Calendar usage limits exceeded."
    )
    results = calendar.insert_events(cal, [event(event_id) for event_id in ids(3)])
    assert isinstance(results[0], GatewayError) and results[0].status == 403 and "quota" in results[0].message
    assert isinstance(results[1], EventExists)
    assert isinstance(results[2], dict)
    assert sleeps == [] and [r.parts for r in fake.server.log if r.path == "/batch/calendar/v3"] == [3]


# --------------------------------------------------------------------------------------------- retries


def test_retry_on_429_and_503_then_success(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps), fake.calendar_id
    fake.server.fail(429, method="POST", path="/events$")
    fake.server.fail(503, method="POST", path="/events$")
    assert calendar.insert_event(cal, event("evt00001"))["id"] == "evt00001"
    assert [r.status for r in fake.server.api_calls() if r.method == "POST"] == [429, 503, 200]
    assert len(sleeps) == 2


def test_retry_on_403_rate_limit_but_not_on_quota(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps), fake.calendar_id
    fake.server.fail(403, method="GET", reason="userRateLimitExceeded")
    assert calendar.list_events(cal)["items"] == []
    assert len(sleeps) == 1
    fake.server.fail(403, method="GET", reason="quotaExceeded", message="Calendar usage limits exceeded.")
    with pytest.raises(GatewayError) as quota:
        calendar.list_events(cal)
    assert quota.value.status == 403 and "quota" in quota.value.message
    assert len(sleeps) == 1


def test_no_retry_on_409(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps), fake.calendar_id
    calendar.insert_event(cal, event("evt00001"))
    fake.server.clear_log()
    with pytest.raises(EventExists):
        calendar.insert_event(cal, event("evt00001"))
    assert [r.status for r in fake.server.api_calls()] == [409]
    assert sleeps == []


def test_retries_give_up_with_a_transient_error(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps, num_retries=3), fake.calendar_id
    fake.server.fail(500, method="GET", times=10)
    with pytest.raises(GatewayError) as unavailable:
        calendar.list_events(cal)
    assert unavailable.value.status == 500 and unavailable.value.transient
    assert "unavailable" in unavailable.value.message
    assert len(sleeps) == 3


def test_dropped_connections_are_retried(fake: FakeCalendar) -> None:
    sleeps = Sleeps()
    calendar, cal = fake.gateway(sleep=sleeps), fake.calendar_id
    calendar.list_events(cal)
    fake.server.fail(0, method="GET", drop="before", times=2)
    assert calendar.list_events(cal)["items"] == []
    # httplib2 silently resends once on a dropped keep-alive connection; the second drop reaches googleapiclient.
    assert len(sleeps) == 1


def test_a_lost_insert_answer_comes_back_as_event_exists(fake: FakeCalendar) -> None:
    """httplib2 resends a request whose connection dropped, POST included: the insert happened, the resend gets 409.
    Deterministic ids make that safe; the booking service then fetches the event and sees it is its own."""
    calendar, cal = fake.gateway(), fake.calendar_id
    calendar.list_events(cal)
    fake.server.fail(0, method="POST", drop="after")
    with pytest.raises(EventExists):
        calendar.insert_event(cal, event("evt00001"))
    assert calendar.get_event(cal, "evt00001")["extendedProperties"]["private"]["booking_id"] == BOOKING


def test_slow_answer_is_a_timeout(fake: FakeCalendar) -> None:
    calendar = fake.gateway(num_retries=0, gateway_timeout_seconds=0.3)
    calendar.list_events(fake.calendar_id)
    fake.server.latency = 1.0
    with pytest.raises(TimeoutFault) as timed_out:
        calendar.list_events(fake.calendar_id)
    assert timed_out.value.transient and "did not answer in time" in timed_out.value.message


def test_unreachable_google(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    key_file = write_key_file(tmp_path / "sa.json", key=generate_key(), token_uri=dead + "token")
    from services.core.settings import Settings

    settings = Settings(data_dir=tmp_path, google_service_account_file=key_file, google_api_root=dead)
    calendar = GoogleCalendar(
        settings, calendar_ids=["boardroom@group.calendar.google.com"], num_retries=1, sleep=lambda s: None
    )
    with pytest.raises(GatewayError) as unreachable:
        calendar.list_events("boardroom@group.calendar.google.com")
    assert unreachable.value.message == "Google Calendar could not be reached" and unreachable.value.transient


def test_expired_access_token_is_refreshed(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    calendar.list_events(cal)
    fake.server.expire_access_tokens()
    assert calendar.list_events(cal)["items"] == []
    assert [r.status for r in fake.server.log if r.path == "/token"] == [200, 200]


def test_a_proxy_variable_does_not_divert_calls(fake: FakeCalendar, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://10.255.255.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert fake.gateway().list_events(fake.calendar_id)["items"] == []


def test_threads_share_one_gateway(fake: FakeCalendar) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            calendar.insert_events(cal, [event(f"t{n}d{i:04d}") for i in range(5)])
            calendar.list_events(cal)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(calendar.list_events(cal)["items"]) == 30


# --------------------------------------------------------------------------------------------- sign-in and sharing


def test_jwt_is_verified_and_a_wrong_key_is_refused(fake: FakeCalendar, tmp_path: Path) -> None:
    wrong = generate_key("not-the-registered-one")
    key_file = write_key_file(tmp_path / "wrong.json", key=wrong, token_uri=fake.server.token_uri)
    calendar = fake.gateway(google_service_account_file=key_file)
    with pytest.raises(GatewayError) as refused:
        calendar.list_events(fake.calendar_id)
    message = refused.value.message
    assert message == "Google refused the service account's sign-in (invalid_grant): check the key file"
    assert "PRIVATE KEY" not in message and wrong.key_id not in message
    assert [r.status for r in fake.server.log] == [400]  # refused at /token; no API call went out unsigned


def test_fake_checks_scope_and_bearer_token(fake: FakeCalendar) -> None:
    """The fake's side of sign-in: a grant for another scope is refused, and the API wants the Bearer token."""
    import google.auth.exceptions

    drive_only = service_account.Credentials.from_service_account_file(
        str(fake.key_file), scopes=["https://www.googleapis.com/auth/drive"]
    )
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_scope"):
        drive_only.refresh(google_auth_httplib2.Request(httplib2.Http(proxy_info=None)))
    response, _ = httplib2.Http(proxy_info=None).request(
        fake.server.url + "calendar/v3/calendars/boardroom%40group.calendar.google.com/events"
    )
    assert response.status == 401


def test_delegated_subject(tmp_path: Path) -> None:
    with fake_calendar(tmp_path, delegation_subjects=("frontdesk@venue.example",)) as fake:
        fake.server.share(fake.calendar_id, "frontdesk@venue.example")
        calendar = fake.gateway(google_delegated_subject="frontdesk@venue.example")
        created = calendar.insert_event(fake.calendar_id, event("evt00001"))
        assert created["creator"]["email"] == "frontdesk@venue.example"

        refused = fake.gateway(google_delegated_subject="someone@venue.example")
        with pytest.raises(GatewayError) as no_delegation:
            refused.list_events(fake.calendar_id)
        assert "(unauthorized_client)" in no_delegation.value.message
        assert "domain-wide delegation" in no_delegation.value.message


def test_calendar_not_shared_gives_a_clear_message(fake: FakeCalendar) -> None:
    calendar = fake.gateway()
    fake.server.share("quiet-room@group.calendar.google.com", "someone.else@venue.example")
    expected = f"Google Calendar refused the service account — share the room calendar with {fake.client_email}"
    for attempt in (
        lambda: calendar.insert_event("quiet-room@group.calendar.google.com", event("evt00001")),
        lambda: calendar.get_event("quiet-room@group.calendar.google.com", "evt00001"),
        lambda: calendar.delete_event("quiet-room@group.calendar.google.com", "evt00001"),  # not "done"
        lambda: calendar.list_events("quiet-room@group.calendar.google.com"),
    ):
        with pytest.raises(GatewayError) as refused:
            attempt()
        assert refused.value.message.startswith(expected) and not refused.value.transient
    results = calendar.delete_events("quiet-room@group.calendar.google.com", ["evt00001"])
    assert isinstance(results[0], GatewayError) and results[0].message.startswith(expected)


def test_read_only_share_is_refused_on_writes(fake: FakeCalendar) -> None:
    fake.server.share(fake.calendar_id, fake.client_email, role="reader")
    calendar = fake.gateway()
    assert calendar.list_events(fake.calendar_id)["items"] == []
    with pytest.raises(GatewayError) as refused:
        calendar.insert_event(fake.calendar_id, event("evt00001"))
    assert refused.value.status == 403 and "share the room calendar with" in refused.value.message


def test_check_access_names_each_unshared_calendar(fake: FakeCalendar) -> None:
    fake.server.unshare(fake.calendar_ids[1], fake.client_email)
    problems = fake.gateway().check_access()
    assert list(problems) == [fake.calendar_ids[1]]
    assert fake.client_email in problems[fake.calendar_ids[1]]


def test_unusable_key_file_is_a_config_error_without_key_material(fake: FakeCalendar, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(fake.key_file.read_text().replace("MII", "XXX", 1))
    with pytest.raises(ConfigError) as bad:
        fake.gateway(google_service_account_file=broken)
    assert "PRIVATE KEY" not in bad.value.message and "XXX" not in bad.value.message
    assert bad.value.__cause__ is None and bad.value.__suppress_context__
    with pytest.raises(ConfigError, match="cannot be read"):
        fake.gateway(google_service_account_file=tmp_path / "missing.json")


def test_production_document_is_untouched_and_tests_move_every_root() -> None:
    import json

    production = json.loads(_discovery_document(None))
    assert production["rootUrl"] == "https://www.googleapis.com/"
    moved = json.loads(_discovery_document("http://127.0.0.1:9"))
    assert moved["rootUrl"] == "http://127.0.0.1:9/" and moved["baseUrl"] == "http://127.0.0.1:9/calendar/v3/"
    assert moved["batchPath"] == "batch/calendar/v3"  # batches follow rootUrl, so they reach the test server too


# --------------------------------------------------------------------------------------------- freebusy


def test_freebusy_carries_event_ids(fake: FakeCalendar) -> None:
    calendar = fake.gateway()
    room_a, room_b = fake.calendar_ids
    calendar.insert_event(room_a, event("late00001", hours=(3, 4)))
    calendar.insert_event(room_a, event("first0001", hours=(0, 2)))
    calendar.insert_event(room_a, event("free00001", hours=(5, 6), transparency="transparent"))
    calendar.insert_event(room_a, event("gone00001", hours=(6, 7)))
    calendar.delete_event(room_a, "gone00001")
    calendar.insert_event(room_a, event("second001", day=1))
    calendar.insert_event(room_b, event("roomb0001", hours=(1, 3)))
    busy = calendar.freebusy([room_a, room_b], DAY, DAY + timedelta(hours=12))
    assert busy[room_a] == [
        {"start": "2026-03-04T18:00:00Z", "end": "2026-03-04T20:00:00Z", "event_id": "first0001"},
        {"start": "2026-03-04T21:00:00Z", "end": "2026-03-04T22:00:00Z", "event_id": "late00001"},
    ]
    assert [b["event_id"] for b in busy[room_b]] == ["roomb0001"]


# --------------------------------------------------------------------------------------------- loopback only


class _AddressRecorder:
    """Records every host name resolved and every address connected to, from any thread, and refuses (before any
    DNS packet leaves) names that are not loopback. The session guard in tests/conftest.py only sees `connect` in
    the test's own thread failing: a background thread swallows that OSError, and a DNS lookup never calls it."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self._real = socket.getaddrinfo

    def getaddrinfo(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.hosts.append(name)
        if name not in ("127.0.0.1", "::1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"refused by test: {name} is not loopback")
        return self._real(host, *args, **kwargs)

    def outside(self) -> list[str]:
        return [h for h in self.hosts if h not in ("127.0.0.1", "::1", "localhost")]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _AddressRecorder:
    recording = _AddressRecorder()
    monkeypatch.setattr(socket, "getaddrinfo", recording.getaddrinfo)
    return recording


def test_no_socket_leaves_loopback(fake: FakeCalendar, recorder: _AddressRecorder) -> None:
    calendar, cal = fake.gateway(), fake.calendar_id
    calendar.insert_event(cal, event("evt00001"))
    calendar.insert_events(cal, [event(event_id) for event_id in ids(3)])
    calendar.list_events(cal)
    calendar.freebusy([cal], DAY, DAY + timedelta(hours=2))
    time.sleep(0.3)  # room for a background lookup, were one started
    assert recorder.hosts and recorder.outside() == []
    assert calendar._credentials._rab_manager.refresh_manager._worker is None  # no lookup thread ever started


def test_without_the_override_google_auth_would_call_iam(fake: FakeCalendar, recorder: _AddressRecorder) -> None:
    """The control for the test above: plain service-account credentials, same transport, try to reach the IAM
    host from a background thread after their first token (the recorder refuses it before any DNS query)."""
    credentials = service_account.Credentials.from_service_account_file(str(fake.key_file), scopes=SCOPES)
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=5, proxy_info=None))
    service = build_from_document(_discovery_document(fake.server.url), http=http)
    service.events().list(calendarId=fake.calendar_id).execute()
    worker = credentials._rab_manager.refresh_manager._worker
    assert worker is not None
    worker.join(5)  # finish while the recorder still refuses, so nothing retries for real later
    assert recorder.outside() == ["iamcredentials.googleapis.com"]
