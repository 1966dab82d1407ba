"""The Stripe webhook on sandbox gateways, through the HTTP API: payloads are the sandbox's own recorded events,
signed with Stripe's scheme (`t=<unix>,v1=<HMAC-SHA256("<t>.<payload>")>`), as stripe-python's tests do."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time as wallclock
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from models.tables import AuditLog, Booking, BookingLeg, RefundRecord, SlotClaim, WebhookEvent
from services import booking as bk
from services.core.errors import GatewayError, PaymentDeclined
from services.web.api import create_app
from services.web.webhook_queries import list_failed_events
from services.web.webhooks import replay_event

SECRET = "whsec_test_roomdesk"


def sign(payload: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    t = int(wallclock.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def deliver(client: TestClient, event: dict[str, Any], **kw: Any) -> Any:
    payload = json.dumps(event).encode()
    return client.post(
        "/api/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": sign(payload, **kw), "Content-Type": "application/json"},
    )


def stripe_events(svc: Any, pi: str) -> dict[str, dict[str, Any]]:
    """The sandbox's recorded events about one payment, by type (the latest of each type)."""
    out: dict[str, dict[str, Any]] = {}
    for event in reversed(svc.payments.list_events(limit=100)["data"]):  # oldest first
        obj = event["data"]["object"]
        if pi in (obj.get("id"), obj.get("payment_intent")):
            out[event["type"]] = event
    return out


def state(svc: Any, booking_id: int) -> tuple[Any, ...]:
    """What staff and the customer would notice, free of ids and times."""
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        legs = [leg.state for leg in s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id))]
        claims = sorted((c.kind, c.active) for c in s.exec(select(SlotClaim).where(SlotClaim.booking_id == booking_id)))
        refunds = sorted(
            (r.origin, r.amount_cents)
            for r in s.exec(select(RefundRecord).where(RefundRecord.booking_id == booking_id))
        )
    mails = sorted(m["kind"] for m in svc.mail.messages(booking_id=booking_id))
    return b.status, legs, claims, refunds, mails


def actions(svc: Any, booking_id: int) -> list[str]:
    with svc.session() as s:
        rows = s.exec(select(AuditLog).where(AuditLog.booking_id == booking_id).order_by(AuditLog.id))
        return [a.action for a in rows]


@pytest.fixture
def wsvc(make_services: Any) -> Any:
    return make_services(stripe_webhook_secret=SECRET)


@pytest.fixture
def client(wsvc: Any) -> TestClient:
    return TestClient(create_app(wsvc, allowed_origins=[]), raise_server_exceptions=False)


def paid_booking(svc: Any, booking_request: Any, *, decline_first: bool = False, dashboard_refund: int = 0) -> Any:
    """A hold the customer then pays for in Stripe (optionally after a declined card, optionally partly refunded
    from the Stripe dashboard): everything Stripe knows, nothing our webhook has processed yet."""
    started = bk.start_booking(svc, booking_request(), actor="customer")
    if decline_first:
        with pytest.raises(PaymentDeclined):
            svc.payments.confirm_payment_intent(started.payment_intent, payment_method="pm_card_chargeDeclined")
    svc.payments.confirm_payment_intent(started.payment_intent)
    if dashboard_refund:
        svc.payments.refund(
            started.payment_intent, amount_cents=dashboard_refund, reason="goodwill", idempotency_key="dash-1"
        )
    return started


# --------------------------------------------------------------------------------------------------- basics


def test_payment_succeeded_confirms_the_booking_with_events_and_an_email(
    wsvc: Any, client: TestClient, booking_request: Any
) -> None:
    started = paid_booking(wsvc, booking_request)
    r = deliver(client, stripe_events(wsvc, started.payment_intent)["payment_intent.succeeded"])
    assert r.status_code == 200 and r.json() == {"received": True, "status": "processed"}
    assert state(wsvc, started.booking_id) == ("CONFIRMED", ["CONFIRMED"], [("booked", True)], [], ["confirmation"])
    assert "booking.payment.succeeded" in actions(wsvc, started.booking_id)
    items = wsvc.calendar.list_events(
        "boardroom@group.calendar.google.com", private_property=f"booking_id={started.reference}"
    )["items"]
    assert len(items) == 1
    with wsvc.session() as s:
        row = s.exec(select(WebhookEvent)).one()
    assert (row.provider, row.type, row.status, row.attempts) == ("stripe", "payment_intent.succeeded", "processed", 1)


def test_bad_signature_is_refused_and_nothing_is_stored(wsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = paid_booking(wsvc, booking_request)
    event = stripe_events(wsvc, started.payment_intent)["payment_intent.succeeded"]
    r = deliver(client, event, secret="whsec_someone_else")
    assert r.status_code == 400 and "signature" in r.json()["detail"].lower()
    payload = json.dumps(event).encode()
    tampered = client.post("/api/webhooks/stripe", content=payload + b" ", headers={"Stripe-Signature": sign(payload)})
    assert tampered.status_code == 400
    assert client.post("/api/webhooks/stripe", content=payload).status_code == 400  # no header at all
    with wsvc.session() as s:
        assert s.exec(select(WebhookEvent)).first() is None
    assert state(wsvc, started.booking_id)[0] == "AWAITING_PAYMENT"


def test_stale_timestamp_is_refused(wsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = paid_booking(wsvc, booking_request)
    event = stripe_events(wsvc, started.payment_intent)["payment_intent.succeeded"]
    r = deliver(client, event, at=int(wallclock.time()) - 301)
    assert r.status_code == 400
    assert state(wsvc, started.booking_id)[0] == "AWAITING_PAYMENT"


def test_without_a_signing_secret_nothing_is_trusted(make_services: Any, booking_request: Any) -> None:
    svc = make_services()
    client = TestClient(create_app(svc, allowed_origins=[]), raise_server_exceptions=False)
    started = paid_booking(svc, booking_request)
    r = deliver(client, stripe_events(svc, started.payment_intent)["payment_intent.succeeded"])
    assert r.status_code == 503 and "SECRET" not in r.text and SECRET not in r.text
    assert state(svc, started.booking_id)[0] == "AWAITING_PAYMENT"


def test_duplicate_delivery_changes_nothing_and_sends_no_second_email(
    wsvc: Any, client: TestClient, booking_request: Any
) -> None:
    started = paid_booking(wsvc, booking_request)
    event = stripe_events(wsvc, started.payment_intent)["payment_intent.succeeded"]
    assert deliver(client, event).json()["status"] == "processed"
    before = state(wsvc, started.booking_id), actions(wsvc, started.booking_id)
    second = deliver(client, event)
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    assert (state(wsvc, started.booking_id), actions(wsvc, started.booking_id)) == before
    assert len(wsvc.mail.messages(booking_id=started.booking_id)) == 1


def test_unknown_event_types_are_stored_as_ignored(wsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = paid_booking(wsvc, booking_request)
    r = deliver(client, stripe_events(wsvc, started.payment_intent)["charge.succeeded"])
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    with wsvc.session() as s:
        assert s.exec(select(WebhookEvent.status)).one() == "ignored"


def test_a_declined_card_keeps_the_hold_for_another_try(wsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = bk.start_booking(wsvc, booking_request(), actor="customer")
    with pytest.raises(PaymentDeclined):
        wsvc.payments.confirm_payment_intent(started.payment_intent, payment_method="pm_card_chargeDeclined")
    r = deliver(client, stripe_events(wsvc, started.payment_intent)["payment_intent.payment_failed"])
    assert r.json()["status"] == "processed"
    assert state(wsvc, started.booking_id)[:3] == ("AWAITING_PAYMENT", ["AWAITING_PAYMENT"], [("hold", True)])
    assert actions(wsvc, started.booking_id)[-1] == "booking.payment.failed"


def test_a_declined_card_after_the_hold_lapsed_releases_it(wsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = bk.start_booking(wsvc, booking_request(), actor="customer")
    with pytest.raises(PaymentDeclined):
        wsvc.payments.confirm_payment_intent(started.payment_intent, payment_method="pm_card_chargeDeclined")
    wsvc.clock.advance(minutes=31)
    deliver(client, stripe_events(wsvc, started.payment_intent)["payment_intent.payment_failed"])
    assert state(wsvc, started.booking_id)[:3] == ("EXPIRED", ["CANCELLED"], [("hold", False)])
    assert wsvc.payments.retrieve_payment_intent(started.payment_intent)["status"] == "canceled"


def test_payment_cancelled_in_stripe_releases_the_hold(wsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = bk.start_booking(wsvc, booking_request(), actor="customer")
    wsvc.payments.cancel_payment_intent(started.payment_intent, idempotency_key="dashboard-cancel")
    r = deliver(client, stripe_events(wsvc, started.payment_intent)["payment_intent.canceled"])
    assert r.json()["status"] == "processed"
    assert state(wsvc, started.booking_id)[:3] == ("CANCELLED", ["CANCELLED"], [("hold", False)])
    # The slot is free again for the next customer.
    bk.start_booking(wsvc, booking_request(customer_email="next@example.org"), actor="customer")


def test_dashboard_refund_is_recorded_once_and_not_undone(wsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = paid_booking(wsvc, booking_request, dashboard_refund=2500)
    events = stripe_events(wsvc, started.payment_intent)
    deliver(client, events["payment_intent.succeeded"])
    assert deliver(client, events["charge.refunded"]).json()["status"] == "processed"
    with wsvc.session() as s:
        records = list(s.exec(select(RefundRecord)))
    assert [(r.origin, r.amount_cents, r.booking_id) for r in records] == [
        ("stripe_dashboard", 2500, started.booking_id)
    ]
    assert state(wsvc, started.booking_id)[0] == "CONFIRMED"
    assert "booking.refund.stripe_dashboard" in actions(wsvc, started.booking_id)


def test_our_own_refunds_are_not_mistaken_for_dashboard_ones(
    wsvc: Any, client: TestClient, booking_request: Any
) -> None:
    started = paid_booking(wsvc, booking_request)
    deliver(client, stripe_events(wsvc, started.payment_intent)["payment_intent.succeeded"])
    bk.cancel_booking(wsvc, started.booking_id, actor="staff")
    deliver(client, stripe_events(wsvc, started.payment_intent)["charge.refunded"])
    with wsvc.session() as s:
        origins = [r.origin for r in s.exec(select(RefundRecord))]
    assert origins == ["cancellation"]


def test_disputes_leave_audit_rows(wsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = paid_booking(wsvc, booking_request)
    deliver(client, stripe_events(wsvc, started.payment_intent)["payment_intent.succeeded"])
    dispute = wsvc.payments.open_dispute(started.payment_intent)
    assert deliver(client, stripe_events(wsvc, started.payment_intent)["charge.dispute.created"]).status_code == 200
    with wsvc.session() as s:
        row = s.exec(select(AuditLog).where(AuditLog.action == "booking.dispute.opened")).one()
    assert row.booking_id == started.booking_id and row.payload["dispute_id"] == dispute["id"]
    assert row.payload["status"] == "needs_response"


# --------------------------------------------------------------------------------------------------- ordering


def test_payment_failed_after_succeeded_ends_as_in_order(
    make_services: Any, booking_request: Any, tmp_path: Any
) -> None:
    finals = []
    for n, order in enumerate([("payment_failed", "succeeded"), ("succeeded", "payment_failed")]):
        svc = make_services(stripe_webhook_secret=SECRET, data_dir=tmp_path / f"o{n}")
        client = TestClient(create_app(svc, allowed_origins=[]))
        started = paid_booking(svc, booking_request, decline_first=True)
        events = stripe_events(svc, started.payment_intent)
        for name in order:
            assert deliver(client, events[f"payment_intent.{name}"]).status_code == 200
        finals.append(state(svc, started.booking_id))
    assert finals[0] == finals[1]
    assert finals[0][0] == "CONFIRMED"


def test_refunded_before_succeeded_ends_as_in_order(make_services: Any, booking_request: Any, tmp_path: Any) -> None:
    finals = []
    for n, order in enumerate(
        [("payment_intent.succeeded", "charge.refunded"), ("charge.refunded", "payment_intent.succeeded")]
    ):
        svc = make_services(stripe_webhook_secret=SECRET, data_dir=tmp_path / f"r{n}")
        client = TestClient(create_app(svc, allowed_origins=[]))
        started = paid_booking(svc, booking_request, dashboard_refund=1000)
        events = stripe_events(svc, started.payment_intent)
        for name in order:
            assert deliver(client, events[name]).status_code == 200
        finals.append(state(svc, started.booking_id))
    assert finals[0] == finals[1]
    assert finals[0] == ("CONFIRMED", ["CONFIRMED"], [("booked", True)], [("stripe_dashboard", 1000)], ["confirmation"])


def test_any_order_any_number_of_times_gives_the_state_of_once(
    make_services: Any, booking_request: Any, tmp_path: Any
) -> None:
    kinds = ("payment_intent.payment_failed", "payment_intent.succeeded", "charge.refunded", "charge.succeeded")
    expected = None
    for n, order in enumerate(itertools.permutations(kinds)):
        svc = make_services(stripe_webhook_secret=SECRET, data_dir=tmp_path / f"p{n}")
        client = TestClient(create_app(svc, allowed_origins=[]))
        started = paid_booking(svc, booking_request, decline_first=True, dashboard_refund=1500)
        events = stripe_events(svc, started.payment_intent)
        # Each permutation, then a storm of redeliveries in reverse, then dashboard replays of everything.
        for name in [*order, *reversed(order), order[n % 4]]:
            assert deliver(client, events[name]).status_code == 200
        with svc.session() as s:
            row_ids = list(s.exec(select(WebhookEvent.id)))
        for row_id in row_ids:
            assert row_id is not None
            replay_event(svc, row_id, actor="staff")
        final = state(svc, started.booking_id)
        expected = expected or final
        assert final == expected, order
        svc.engine.dispose()
    assert expected == (
        "CONFIRMED",
        ["CONFIRMED"],
        [("booked", True)],
        [("stripe_dashboard", 1500)],
        ["confirmation"],
    )


# --------------------------------------------------------------------------------------------------- outages


def test_gateway_outage_answers_503_and_replay_after_recovery_processes(
    wsvc: Any, client: TestClient, booking_request: Any
) -> None:
    started = paid_booking(wsvc, booking_request)
    event = stripe_events(wsvc, started.payment_intent)["payment_intent.succeeded"]
    wsvc.payments.faults.fail("retrieve_payment_intent")
    r = deliver(client, event)
    assert r.status_code == 503 and "Traceback" not in r.text
    assert state(wsvc, started.booking_id)[0] == "AWAITING_PAYMENT"
    failed = list_failed_events(wsvc)
    assert [(f.event_id, f.type, f.attempts) for f in failed] == [(event["id"], "payment_intent.succeeded", 1)]
    assert failed[0].last_error and "unavailable" in failed[0].last_error

    assert replay_event(wsvc, failed[0].id, actor="staff") == "processed"
    assert list_failed_events(wsvc) == []
    assert state(wsvc, started.booking_id)[0] == "CONFIRMED"
    # Stripe's own retry arriving later is now a duplicate.
    assert deliver(client, event).json()["status"] == "duplicate"
    assert len(wsvc.mail.messages(booking_id=started.booking_id)) == 1


def test_stripe_retry_after_an_outage_processes_the_failed_event(
    wsvc: Any, client: TestClient, booking_request: Any
) -> None:
    started = paid_booking(wsvc, booking_request)
    event = stripe_events(wsvc, started.payment_intent)["payment_intent.succeeded"]
    wsvc.payments.faults.fail("retrieve_payment_intent")
    assert deliver(client, event).status_code == 503
    assert deliver(client, event).json()["status"] == "processed"
    with wsvc.session() as s:
        row = s.exec(select(WebhookEvent)).one()
    assert (row.status, row.attempts, row.last_error) == ("processed", 2, None)


def test_replay_surfaces_a_continuing_outage(wsvc: Any, client: TestClient, booking_request: Any) -> None:
    started = paid_booking(wsvc, booking_request)
    wsvc.payments.faults.fail("retrieve_payment_intent", times=2)
    deliver(client, stripe_events(wsvc, started.payment_intent)["payment_intent.succeeded"])
    with pytest.raises(GatewayError):
        replay_event(wsvc, list_failed_events(wsvc)[0].id, actor="staff")
    assert list_failed_events(wsvc)[0].attempts == 2


def test_events_for_other_payments_are_ignored(wsvc: Any, client: TestClient) -> None:
    pi = wsvc.payments.create_payment_intent(
        amount_cents=1000, currency="cad", metadata={}, idempotency_key="not-a-booking"
    )
    wsvc.payments.confirm_payment_intent(pi["id"])
    r = deliver(client, stripe_events(wsvc, pi["id"])["payment_intent.succeeded"])
    assert r.status_code == 200 and r.json()["status"] == "ignored"
