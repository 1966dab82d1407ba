"""The public endpoints under abuse (issue 13), through the HTTP API and the booking form: hold caps per email and per
client, rate limits with Retry-After, body-size limits that never buffer an oversized body, strict input parsing on
both databases, the optional challenge against a fake provider on loopback, and concurrent webhook duplicates."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
import time as wallclock
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from models.tables import AuditLog, Booking, BookingStatus, WebhookEvent
from services import booking as bk
from services.web.api import create_app
from services.web.guard import SALT_FILE
from services.web.webhook_queries import list_failed_events
from tests.unit.test_webhooks import SECRET, deliver, sign, stripe_events

DAYS = ["2026-03-04", "2026-03-05", "2026-03-06", "2026-03-09", "2026-03-10", "2026-03-11", "2026-03-12"]


def body(**kw: Any) -> dict[str, Any]:
    kw.setdefault("room", "boardroom")
    kw.setdefault("dates", [DAYS[0]])
    kw.setdefault("start", "10:00")
    kw.setdefault("end", "12:00")
    kw.setdefault("customer_name", "Ava Nguyen")
    kw.setdefault("customer_email", "ava@example.org")
    kw.setdefault("terms_version", "2026-01")
    return kw


def app_client(make_services: Any, db_url: str | None = None, **settings: Any) -> tuple[Any, TestClient]:
    settings.setdefault("rate_limit_bookings", "1000/minute")
    settings.setdefault("trust_forwarded_for", True)
    svc = make_services(db_url, **settings)
    return svc, TestClient(create_app(svc, allowed_origins=[]), raise_server_exceptions=False)


def from_addr(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"{ip}, 10.0.0.1"}


# --------------------------------------------------------------------------------------------------- holds


def test_one_client_flooding_holds_is_capped_and_another_customer_can_still_book(make_services: Any) -> None:
    svc, client = app_client(make_services)
    answers = [
        client.post(
            "/api/bookings",
            json=body(dates=[day], customer_email=f"f{i}@example.org"),
            headers=from_addr("203.0.113.7"),
        )
        for i, day in enumerate(DAYS)
    ]
    codes = [a.status_code for a in answers]
    assert codes == [201] * 4 + [429] * 3, codes  # hold_limit_per_client = 4
    assert "waiting for payment" in answers[4].json()["detail"]
    # The same email from elsewhere: two holds at most.
    mails = [
        client.post(
            "/api/bookings", json=body(dates=[day], start="14:00", end="16:00"), headers=from_addr(f"198.51.100.{i}")
        )
        for i, day in enumerate(DAYS[:3])
    ]
    assert [m.status_code for m in mails] == [201, 201, 429]
    # Somebody else books a day the flood did not take.
    other = client.post(
        "/api/bookings",
        json=body(dates=[DAYS[5]], customer_email="bo@example.org", customer_name="Bo"),
        headers=from_addr("192.0.2.50"),
    )
    assert other.status_code == 201
    with svc.session() as s:
        keys = {b.client_key for b in s.exec(select(Booking))}
        assert all(k and len(k) == 64 and "203.0.113" not in k for k in keys)
    salt = svc.settings.data_dir / SALT_FILE
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600


def test_the_form_says_why_a_fifth_hold_is_refused(make_services: Any) -> None:
    _, client = app_client(make_services, hold_limit_per_client=1)
    form = {"start": "10:00", "end": "12:00", "customer_name": "Ava", "accept_terms": "yes", "terms_version": "2026-01"}
    first = client.post(
        "/book/boardroom", data={**form, "dates": DAYS[0], "customer_email": "a@example.org"}, follow_redirects=False
    )
    assert first.status_code == 303
    second = client.post("/book/boardroom", data={**form, "dates": DAYS[1], "customer_email": "b@example.org"})
    assert second.status_code == 429 and "waiting for payment" in second.text


def test_reaching_the_pay_page_gives_the_full_hold_once(make_services: Any) -> None:
    svc, client = app_client(make_services)
    out = client.post("/api/bookings", json=body()).json()
    assert out["hold_expires_at"].startswith("2026-03-02T17:10")
    path = out["pay_url"].split("8000", 1)[1]
    assert client.get(path).status_code == 200
    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.reference == out["booking_id"])).one()
        assert f"{b.hold_expires_at:%H:%M}" == "17:30"


# --------------------------------------------------------------------------------------------------- rate limits


def test_booking_requests_are_rate_limited_per_client_with_retry_after(make_services: Any) -> None:
    _, client = app_client(make_services, rate_limit_bookings="3/minute", hold_limit_per_client=100)
    codes = [
        client.post(
            "/api/bookings",
            json=body(dates=[day], customer_email=f"r{i}@example.org"),
            headers=from_addr("203.0.113.9"),
        ).status_code
        for i, day in enumerate(DAYS[:4])
    ]
    assert codes == [201, 201, 201, 429]
    refused = client.post("/api/bookings", json=body(dates=[DAYS[5]]), headers=from_addr("203.0.113.9"))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "3 per 1 minute" in refused.json()["detail"]
    form = client.post("/book/boardroom", data={"dates": DAYS[6]}, headers=from_addr("203.0.113.9"))
    assert form.status_code == 429 and "Retry-After" in form.headers and "Too many requests" in form.text
    # Another client is not affected; the webhook is never rate limited.
    assert (
        client.post(
            "/api/bookings", json=body(dates=[DAYS[6]], customer_email="z@example.org"), headers=from_addr("192.0.2.1")
        ).status_code
        == 201
    )
    assert client.post("/api/webhooks/stripe", content=b"{}", headers=from_addr("203.0.113.9")).status_code != 429


def test_availability_reads_are_rate_limited(make_services: Any) -> None:
    _, client = app_client(make_services, rate_limit_reads="2/minute")
    params = {"room": "boardroom", "from": DAYS[0], "to": DAYS[1]}
    codes = [client.get("/api/availability", params=params).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


# --------------------------------------------------------------------------------------------------- body size


def test_an_oversized_body_is_refused_before_it_is_read(make_services: Any) -> None:
    _, client = app_client(make_services, stripe_webhook_secret=SECRET)
    started = wallclock.monotonic()
    padded = body(extras={"pad": "x" * 50_000_000})
    r = client.post("/api/bookings", content=json.dumps(padded).encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than 32768 bytes" in r.json()["detail"]
    assert wallclock.monotonic() - started < 5
    hook = client.post(
        "/api/webhooks/stripe", content=b"{" + b" " * 600_000 + b"}", headers={"Stripe-Signature": "t=1,v1=x"}
    )
    assert hook.status_code == 413 and "524288" in hook.json()["detail"]
    small = client.post(
        "/api/webhooks/stripe", content=b"{" + b" " * 100_000 + b"}", headers={"Stripe-Signature": "t=1,v1=x"}
    )
    assert small.status_code == 400  # under the webhook's own limit: read, then refused for its signature


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(make_services: Any) -> None:
    """Driven over raw ASGI: 50 MB offered in 64 KiB chunks with no Content-Length; the app pulls at most one chunk
    past the limit and answers 413."""
    svc = make_services()
    app = create_app(svc, allowed_origins=[])
    chunk, total = b"x" * 65_536, 50 * 1024 * 1024
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/bookings",
        "raw_path": b"/api/bookings",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
    }
    # In its own thread: a browser test earlier in the session may have left an event loop running on this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    assert sent[0]["status"] == 413
    assert pulled <= svc.settings.max_json_body_bytes + len(chunk)


# --------------------------------------------------------------------------------------------------- input


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"customer_name": "Ava\x00"}, "customer_name"),
        ({"notes": "hi\x00there"}, "notes"),
        ({"customer_email": "ava\x00@example.org"}, "customer_email"),
        ({"extras": {"k": "v\x00"}}, "extras"),
        ({"start": "08:00+05:00"}, "start"),
        ({"start": "10:00:59"}, "start"),
        ({"end": "12:00:00.5"}, "end"),
        ({"start": "10:07"}, "start"),
        ({"dates": ["9999-12-25"]}, "dates.0"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_on_both_databases(
    make_services: Any, db_url: str, change: dict[str, Any], field: str
) -> None:
    _, client = app_client(make_services, db_url)
    r = client.post("/api/bookings", json=body(**change))
    assert r.status_code == 422, r.text
    assert field in r.json()["fields"], r.json()
    assert client.post(
        "/api/quotes", json={k: v for k, v in body(**change).items() if k in ("room", "dates", "start", "end")}
    ).status_code in (200, 422)


def test_the_form_refuses_nul_bytes_and_odd_times_with_field_messages(make_services: Any, db_url: str) -> None:
    _, client = app_client(make_services, db_url)
    form = {
        "dates": DAYS[0],
        "start": "10:00",
        "end": "12:00",
        "customer_name": "Ava\x00",
        "customer_email": "a@example.org",
        "accept_terms": "yes",
        "terms_version": "2026-01",
    }
    r = client.post("/book/boardroom", data=form)
    assert r.status_code == 422 and "customer_name: must not contain control characters" in r.text
    r = client.post("/book/boardroom", data={**form, "customer_name": "Ava", "start": "10:00:59"})
    assert r.status_code == 422 and "Pick a start and an end time" in r.text


def test_far_dates_in_availability_are_closed_not_free_and_never_crash(make_services: Any) -> None:
    _, client = app_client(make_services)
    far = client.get("/api/availability", params={"room": "boardroom", "from": "9999-12-25", "to": "9999-12-31"})
    assert far.status_code == 200
    days = far.json()["days"]
    assert len(days) == 7 and all(d["closed"] and not d["free"] for d in days)
    assert "days ahead" in days[0]["reasons"][0]
    edge = client.get("/api/availability", params={"room": "boardroom", "from": "2026-04-30", "to": "2026-05-04"})
    by_day = {d["date"]: d for d in edge.json()["days"]}
    assert by_day["2026-04-30"]["free"] and by_day["2026-05-04"]["closed"]  # the window ends 60 days from now
    past = client.get("/api/availability", params={"room": "boardroom", "from": "0001-01-01", "to": "0001-01-02"})
    assert past.status_code == 200 and all(d["closed"] for d in past.json()["days"])


# --------------------------------------------------------------------------------------------------- challenge


class _FakeVerifier(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        type(self).seen.append(data)
        ok = "response=good" in data and "secret=s3cret" in data
        payload = json.dumps({"success": ok}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def verifier() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeVerifier)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/siteverify"
    server.shutdown()
    server.server_close()


def test_a_configured_challenge_is_verified_by_the_provider(make_services: Any, verifier: str) -> None:
    _, client = app_client(
        make_services,
        challenge="turnstile",
        challenge_site_key="site-1",
        challenge_secret="s3cret",
        challenge_verify_url=verifier,
    )
    page = client.get("/book/boardroom")
    assert 'class="cf-turnstile" data-sitekey="site-1"' in page.text
    missing = client.post("/api/bookings", json=body())
    assert missing.status_code == 422 and "challenge_token" in missing.json()["fields"]
    wrong = client.post("/api/bookings", json=body(challenge_token="bad"))
    assert wrong.status_code == 422 and "challenge_token" in wrong.json()["fields"]
    assert client.post("/api/bookings", json=body(challenge_token="good")).status_code == 201
    form = {
        "dates": DAYS[1],
        "start": "10:00",
        "end": "12:00",
        "customer_name": "Bo",
        "customer_email": "bo@example.org",
        "accept_terms": "yes",
        "terms_version": "2026-01",
    }
    assert client.post("/book/boardroom", data=form).status_code == 422
    ok = client.post("/book/boardroom", data={**form, "cf-turnstile-response": "good"}, follow_redirects=False)
    assert ok.status_code == 303


def test_an_unreachable_challenge_provider_is_a_503_not_a_500(make_services: Any) -> None:
    svc, client = app_client(
        make_services, challenge="hcaptcha", challenge_secret="s", challenge_verify_url="http://127.0.0.1:9/siteverify"
    )
    r = client.post("/api/bookings", json=body(challenge_token="tok"))
    assert r.status_code == 503 and "nothing was booked" in r.json()["detail"]
    with svc.session() as s:
        assert s.exec(select(Booking)).first() is None


# --------------------------------------------------------------------------------------------------- webhooks


def test_twenty_concurrent_duplicates_answer_200_and_process_once(make_services: Any, db_url: str) -> None:
    svc = make_services(db_url, stripe_webhook_secret=SECRET)
    app = create_app(svc, allowed_origins=[])
    started = bk.start_booking(svc, bk.BookingRequest(**_req()), actor="t")
    svc.payments.confirm_payment_intent(started.payment_intent)
    event = stripe_events(svc, started.payment_intent)["payment_intent.succeeded"]
    payload = json.dumps(event).encode()
    headers = {"Stripe-Signature": sign(payload), "Content-Type": "application/json"}
    barrier = threading.Barrier(20)
    codes: list[int] = []

    def one() -> None:
        with TestClient(app, raise_server_exceptions=False) as c:
            barrier.wait()
            codes.append(c.post("/api/webhooks/stripe", content=payload, headers=headers).status_code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [200] * 20, codes
    with svc.session() as s:
        row = s.exec(select(WebhookEvent)).one()
        assert row.status == "processed" and row.attempts == 1
        assert not s.exec(select(AuditLog).where(AuditLog.action == "webhook.failed")).all()
        assert s.exec(select(Booking)).one().status == BookingStatus.CONFIRMED
    assert len([m for m in svc.mail.messages() if m["kind"] == "confirmation"]) == 1


def _req() -> dict[str, Any]:
    from datetime import date, time

    return {
        "room": "boardroom",
        "dates": (date(2026, 3, 4),),
        "start": time(10),
        "end": time(12),
        "customer_name": "Ava",
        "customer_email": "ava@example.org",
        "channel": "web",
        "terms_version": "2026-01",
    }


@pytest.mark.parametrize(
    "event",
    [
        [{"id": "evt_1"}],
        {"id": "evt_list", "type": "payment_intent.succeeded", "data": [1, 2]},
        {"id": "evt_str", "type": "payment_intent.succeeded", "data": {"object": "pi_123"}},
        {"type": "payment_intent.succeeded", "data": {"object": {}}},
    ],
    ids=["array body", "data as a list", "object as a string", "no id"],
)
def test_malformed_signed_events_are_a_400_and_listed_for_replay(make_services: Any, event: Any) -> None:
    svc = make_services(stripe_webhook_secret=SECRET)
    client = TestClient(create_app(svc, allowed_origins=[]), raise_server_exceptions=False)
    r = deliver(client, event)
    assert r.status_code == 400 and "Malformed event" in r.json()["detail"]
    assert deliver(client, event).status_code == 400  # a redelivery adds no second row
    failed = list_failed_events(svc)
    assert len(failed) == 1 and failed[0].status == "failed" and "Malformed" in (failed[0].last_error or "")
    with svc.session() as s:
        assert not s.exec(select(WebhookEvent).where(WebhookEvent.status == "received")).all()


def test_each_api_worker_counts_its_share_of_every_limit() -> None:
    """Four workers over "10/minute;60/hour": each lets one client through 3 times a minute (10 / 4 rounded up), so
    together they allow no more than about the configured limit; the refusal names the share that ran out."""
    from services.web.guard import RateLimits

    one_of_four = RateLimits({"bookings": "10/minute;60/hour"}, processes=4)
    answers = [one_of_four.hit("bookings", "203.0.113.9") for _ in range(4)]
    assert answers[:3] == [None, None, None]
    refusal = answers[3]
    assert refusal is not None and refusal.limit == "3 per 1 minute" and refusal.retry_after >= 1
    assert one_of_four.hit("bookings", "198.51.100.7") is None  # another client has its own count
    alone = RateLimits({"bookings": "10/minute"})
    assert all(alone.hit("bookings", "203.0.113.9") is None for _ in range(10))
    assert alone.hit("bookings", "203.0.113.9") is not None
