"""The HTTP API on sandbox gateways (FastAPI TestClient): what a booking form would see."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from models.tables import AuditLog, Booking
from services import booking as bk
from services.web.api import create_app

ORIGIN = "https://www.venue.example"
WEDNESDAY = "2026-03-04"
SATURDAY = "2026-03-07"


def body(**kw: Any) -> dict[str, Any]:
    kw.setdefault("room", "boardroom")
    kw.setdefault("dates", [WEDNESDAY])
    kw.setdefault("start", "10:00")
    kw.setdefault("end", "12:00")
    kw.setdefault("customer_name", "Ava Nguyen")
    kw.setdefault("customer_email", "ava@example.org")
    kw.setdefault("terms_version", "2026-01")
    return kw


@pytest.fixture
def client(svc: Any) -> TestClient:
    return TestClient(create_app(svc, allowed_origins=[ORIGIN]), raise_server_exceptions=False)


def test_rooms_lists_the_catalogue_with_prices_and_forms(client: TestClient) -> None:
    r = client.get("/api/rooms")
    assert r.status_code == 200
    rooms = {room["slug"]: room for room in r.json()}
    board = rooms["boardroom"]
    assert (board["name"], board["hourly_price_cents"], board["capacity"], board["min_hours"]) == (
        "Boardroom",
        4500,
        14,
        2,
    )
    assert board["agreement_required"] is False and board["extras"] == []
    assert "calendar_id" not in board
    assert any(room["extras"] for room in rooms.values())  # the Sonic Studio's form travels with it


def test_availability_shows_a_held_slot_busy_and_saturday_closed(client: TestClient) -> None:
    assert client.post("/api/bookings", json=body()).status_code == 201
    r = client.get("/api/availability", params={"room": "boardroom", "from": WEDNESDAY, "to": SATURDAY})
    assert r.status_code == 200
    days = {d["date"]: d for d in r.json()["days"]}
    assert list(days) == ["2026-03-04", "2026-03-05", "2026-03-06", "2026-03-07"]
    wed = days[WEDNESDAY]
    assert wed["busy"] == [{"start": "10:00", "end": "12:00"}]
    assert wed["free"] == [{"start": "08:00", "end": "09:45"}, {"start": "12:15", "end": "17:00"}]
    assert days["2026-03-05"]["free"] == [{"start": "08:00", "end": "17:00"}] and not days["2026-03-05"]["closed"]
    sat = days[SATURDAY]
    assert sat["closed"] is True and sat["reasons"] == ["Saturdays are closed"] and sat["free"] == []
    assert r.json()["timezone"] == "America/Vancouver"


def test_availability_refuses_bad_ranges_with_field_errors(client: TestClient) -> None:
    r = client.get("/api/availability", params={"room": "boardroom", "from": SATURDAY, "to": WEDNESDAY})
    assert r.status_code == 422 and "to" in r.json()["fields"]
    r = client.get("/api/availability", params={"room": "attic", "from": WEDNESDAY, "to": WEDNESDAY})
    assert r.status_code == 422 and "Unknown room" in r.json()["fields"]["room"]
    r = client.get("/api/availability", params={"room": "boardroom", "from": "March 4", "to": WEDNESDAY})
    assert r.status_code == 422 and "from" in r.json()["fields"]


def test_quote_gives_the_breakdown_or_the_reasons(client: TestClient) -> None:
    r = client.post("/api/quotes", json={"room": "boardroom", "dates": [WEDNESDAY], "start": "10:00", "end": "12:00"})
    assert r.status_code == 200
    q = r.json()
    assert q["available"] is True and q["reasons"] == []
    assert (q["subtotal_cents"], q["discount_cents"], q["total_cents"], q["currency"]) == (9000, 0, 9000, "CAD")
    assert q["legs"] == [
        {
            "date": WEDNESDAY,
            "base_cents": 9000,
            "discount_cents": 0,
            "net_cents": 9000,
            "tax_cents": 0,
            "total_cents": 9000,
        }
    ]
    assert (q["net_cents"], q["tax_cents"], q["tax_lines"]) == (9000, 0, [])  # this venue charges no tax
    r = client.post("/api/quotes", json={"room": "boardroom", "dates": [SATURDAY], "start": "10:00", "end": "12:00"})
    assert r.status_code == 200
    assert r.json()["available"] is False and r.json()["reasons"] == ["Sat 7 Mar: Saturdays are closed"]


def test_booking_returns_what_the_payment_form_needs(svc: Any, client: TestClient) -> None:
    r = client.post("/api/bookings", json=body())
    assert r.status_code == 201
    out = r.json()
    assert out["booking_id"].startswith("RD") and out["amount_cents"] == 9000
    assert out["client_secret"].startswith(out["payment_intent"])
    assert out["hold_expires_at"].startswith("2026-03-02T17:10:00")  # short until the customer reaches payment
    token = out["pay_url"].split("?k=")[1]
    started = client.post(f"/api/bookings/{out['booking_id']}/payment-started", json={"pay_token": token})
    assert started.status_code == 200 and started.json()["hold_expires_at"].startswith("2026-03-02T17:30:00")
    again = client.post(f"/api/bookings/{out['booking_id']}/payment-started", json={"pay_token": token})
    assert again.json()["hold_expires_at"] == started.json()["hold_expires_at"]
    wrong = client.post(f"/api/bookings/{out['booking_id']}/payment-started", json={"pay_token": "nope"})
    assert wrong.status_code == 404
    assert svc.payments.retrieve_payment_intent(out["payment_intent"])["metadata"]["booking_id"] == out["booking_id"]
    assert bk.find_booking_id(svc, out["booking_id"]) > 0
    assert out["pay_url"].startswith(f"http://127.0.0.1:8000/pay/{out['booking_id']}?k=")


def test_a_booking_is_refused_until_the_current_terms_are_accepted(svc: Any, client: TestClient) -> None:
    no_terms = body()
    del no_terms["terms_version"]
    r = client.post("/api/bookings", json=no_terms)
    assert r.status_code == 422 and "terms_version" in r.json()["fields"]
    r = client.post("/api/bookings", json=body(terms_version="2025-06"))
    assert r.status_code == 422
    assert r.json()["problems"] == ["The terms have changed (now version 2026-01); please read and accept them again"]
    assert svc.payments.list_payment_intents()["data"] == []  # nothing was held or charged for the refusals
    terms = client.get("/api/terms").json()
    assert terms["version"] == "2026-01" and terms["cancellation_policy"].startswith("Full refund 48 h")
    out = client.post("/api/bookings", json=body(terms_version=terms["version"])).json()
    with svc.session() as s:
        row = s.get(Booking, bk.find_booking_id(svc, out["booking_id"]))
        assert row is not None
        assert row.terms_version == "2026-01" and row.terms_accepted_at == svc.now()
        audits = s.exec(select(AuditLog).where(AuditLog.booking_id == row.id)).all()
        assert [a.payload.get("version") for a in audits if a.action == "booking.terms.accepted"] == ["2026-01"]


def test_a_taken_slot_answers_409_with_reasons(client: TestClient) -> None:
    assert client.post("/api/bookings", json=body()).status_code == 201
    r = client.post("/api/bookings", json=body(start="11:00", end="13:00", customer_email="bo@example.org"))
    assert r.status_code == 409
    assert r.json() == {"reasons": ["Wed 4 Mar: overlaps a held booking (10:00–12:00)"]}
    r = client.post("/api/bookings", json=body(dates=[SATURDAY]))
    assert r.status_code == 409 and r.json()["reasons"] == ["Sat 7 Mar: Saturdays are closed"]


def test_bad_input_answers_422_with_field_errors(client: TestClient) -> None:
    r = client.post("/api/bookings", json=body(dates=["not-a-date"], customer_name=""))
    assert r.status_code == 422
    fields = r.json()["fields"]
    assert set(fields) == {"dates.0", "customer_name"}
    assert r.json()["problems"] and all(isinstance(p, str) for p in r.json()["problems"])
    r = client.post("/api/bookings", json={"room": "boardroom"})
    assert r.status_code == 422 and {"dates", "start", "end", "customer_name", "customer_email"} <= set(
        r.json()["fields"]
    )
    r = client.post("/api/bookings", json=body(room="attic"))
    assert r.status_code == 422 and r.json()["fields"] == {"room": "Unknown room 'attic'"}


def test_service_validation_problems_answer_422(client: TestClient) -> None:
    r = client.post("/api/bookings", json=body(customer_email="ava-at-example", customer_phone="call me"))
    assert r.status_code == 422
    assert r.json()["problems"] == [
        "A valid customer email is required (name@example.com)",
        "Phone number looks wrong (digits, spaces, + - ( ) only)",
    ]


def test_cors_admits_only_the_allow_list(client: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = client.options("/api/bookings", headers={"Origin": ORIGIN, **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    bad = client.options("/api/bookings", headers={"Origin": "https://evil.example", **preflight})
    assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
    simple = client.get("/api/rooms", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers
    assert client.get("/api/rooms", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN


def test_cors_defaults_to_the_setting_and_to_nobody(svc: Any) -> None:
    client = TestClient(create_app(svc))
    r = client.get("/api/rooms", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in r.headers


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    spec = client.get("/openapi.json").json()
    assert {"/api/rooms", "/api/availability", "/api/quotes", "/api/bookings", "/api/webhooks/stripe"} <= set(
        spec["paths"]
    )


def test_crashes_and_outages_reveal_no_internals(svc: Any, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("sk_live_SECRET leaked in a stack trace")

    monkeypatch.setattr(bk, "quote", boom)
    r = client.post("/api/quotes", json={"room": "boardroom", "dates": [WEDNESDAY], "start": "10:00", "end": "12:00"})
    assert r.status_code == 500 and r.json() == {"detail": "Internal error"}
    monkeypatch.undo()

    svc.payments.faults.fail("create_payment_intent")
    r = client.post("/api/bookings", json=body())
    assert r.status_code == 503 and "Traceback" not in r.text
    assert r.json()["detail"] == "Stripe is unavailable (injected fault)"
