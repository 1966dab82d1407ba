"""The public API under the abuse seen in issue 13, counted for the reliability summary: a client flooding holds
(refused past its cap while others still book), a burst past the rate limit, oversized bodies (refused unread) and
one signed event delivered many times at once (every answer 200, processed once, nothing recorded as failed)."""

from __future__ import annotations

import json
import threading

from fastapi.testclient import TestClient
from sqlmodel import select

from models.tables import AuditLog, WebhookEvent
from services import booking as bk
from services.web.api import create_app
from tests.reliability.harness import fresh_services
from tests.reliability.stats import COUNTS, FLOWS
from tests.unit.test_public_limits import DAYS, _req, body
from tests.unit.test_webhooks import SECRET, sign, stripe_events

FLOOD = 40
DUPLICATES = 30


def test_a_hold_flood_is_refused_past_the_cap_and_others_still_book() -> None:
    FLOWS.add("public: hold flood")
    svc = fresh_services(rate_limit_bookings="1000/minute", trust_forwarded_for=True)
    client = TestClient(create_app(svc, allowed_origins=[]), raise_server_exceptions=False)
    codes = []
    for i in range(FLOOD):
        day = DAYS[i % len(DAYS)]
        start = f"{8 + 2 * (i // len(DAYS)) % 8:02d}:00"
        end = f"{int(start[:2]) + 2:02d}:00"
        r = client.post(
            "/api/bookings",
            json=body(dates=[day], start=start, end=end, customer_email=f"flood{i}@example.org"),
            headers={"X-Forwarded-For": "203.0.113.66"},
        )
        codes.append(r.status_code)
    assert codes.count(201) == svc.settings.hold_limit_per_client and 500 not in codes
    COUNTS["holds refused"] += codes.count(429)
    other = client.post(
        "/api/bookings",
        json=body(dates=[DAYS[-1]], start="15:00", end="17:00", customer_email="ok@example.org"),
        headers={"X-Forwarded-For": "192.0.2.9"},
    )
    assert other.status_code == 201


def test_a_burst_past_the_rate_limit_is_refused_with_retry_after() -> None:
    FLOWS.add("public: rate limit")
    svc = fresh_services(rate_limit_reads="20/minute")
    client = TestClient(create_app(svc, allowed_origins=[]), raise_server_exceptions=False)
    answers = [
        client.get("/api/availability", params={"room": "boardroom", "from": DAYS[0], "to": DAYS[1]}) for _ in range(50)
    ]
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == 30 and all(a.headers.get("Retry-After") for a in refused)
    COUNTS["rate-limit refusals"] += len(refused)


def test_oversized_bodies_are_refused_unread() -> None:
    FLOWS.add("public: body size")
    svc = fresh_services(stripe_webhook_secret=SECRET)
    client = TestClient(create_app(svc, allowed_origins=[]), raise_server_exceptions=False)
    big = b"x" * (5 * 1024 * 1024)
    for path in ["/api/bookings", "/api/quotes", "/api/webhooks/stripe", "/book/boardroom"] * 3:
        r = client.post(path, content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (path, r.status_code)
        COUNTS["body-size refusals"] += 1


def test_one_event_delivered_many_times_at_once_is_processed_once() -> None:
    FLOWS.add("public: concurrent webhook duplicates")
    svc = fresh_services(stripe_webhook_secret=SECRET)
    app = create_app(svc, allowed_origins=[])
    started = bk.start_booking(svc, bk.BookingRequest(**_req()), actor="t")
    svc.payments.confirm_payment_intent(started.payment_intent)
    payload = json.dumps(stripe_events(svc, started.payment_intent)["payment_intent.succeeded"]).encode()
    headers = {"Stripe-Signature": sign(payload), "Content-Type": "application/json"}
    barrier = threading.Barrier(DUPLICATES)
    codes: list[int] = []

    def deliver() -> None:
        with TestClient(app, raise_server_exceptions=False) as c:
            barrier.wait()
            codes.append(c.post("/api/webhooks/stripe", content=payload, headers=headers).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(DUPLICATES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [200] * DUPLICATES, codes
    with svc.session() as s:
        row = s.exec(select(WebhookEvent)).one()
        assert row.status == "processed" and row.attempts == 1
        assert not s.exec(select(AuditLog).where(AuditLog.action == "webhook.failed")).all()
    COUNTS["concurrent duplicate deliveries"] += DUPLICATES
