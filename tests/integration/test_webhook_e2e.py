"""End to end: localstripe delivers its signed webhooks to the real API running under uvicorn.

The API (`services.web.api.create_app`) serves a loopback port from a background thread, on a service container with
PAYMENTS=stripe pointed at localstripe's shim, the sandbox calendar and mail, and a webhook signing secret. Bookings
go in over HTTP; the customer's card is confirmed against localstripe as Stripe.js would (attach the card, then
confirm); localstripe then POSTs payment_intent.succeeded / payment_intent.payment_failed to /api/webhooks/stripe
(~1 s later, once, never retried), and each test waits, bounded, for what the customer and staff would notice.

A thin ASGI wrapper around the app (`WebhookTap`) records every webhook request exactly as it arrived (raw body and
Stripe-Signature) with the status the API answered, so the replay test can send localstripe's own signed payloads
again byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
import uvicorn
from sqlmodel import col, select

from models.tables import (
    AuditLog,
    Booking,
    BookingLeg,
    DamageDeposit,
    EmailOutbox,
    RefundRecord,
    SlotClaim,
    WebhookEvent,
)
from services.gateways.sandbox_mail import attachment_bytes
from services.web.api import BookingIn, create_app
from services.web.webhook_queries import list_failed_events
from services.web.webhooks import replay_event
from tests.integration import stripe_server
from tests.integration.stripe_server import TEST_KEY, LocalStripe

lease_module = importlib.import_module("services.booking.lease")  # the module: the package exports lease() itself

localstripe_server = stripe_server.localstripe_server
localstripe = stripe_server.localstripe

SECRET = "whsec_roomdesk_e2e"
WEBHOOK_PATH = "/api/webhooks/stripe"
REPLAY_HEADER = "x-roomdesk-test-replay"  # marks the test's own re-deliveries in the tap; the API ignores it
DELIVERY_SECONDS = 15.0  # localstripe sends ~1 s after the change; the rest is slack for a loaded machine
BOARDROOM = "boardroom@group.calendar.google.com"
# Open weekdays after conftest.NOW (Monday 2 March 2026, 09:00 in Vancouver), past the 24 h notice; no holidays.
THREE_DAYS = ["2026-03-09", "2026-03-10", "2026-03-11"]
TWO_DAYS = ["2026-03-04", "2026-03-05"]
FRIDAY = ["2026-03-06"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# --------------------------------------------------------------------------------------------- the running API


@dataclass(frozen=True)
class Delivery:
    """One request to the webhook path as the API received it, and its answer."""

    body: bytes
    signature: str | None
    status: int
    replay: bool

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class WebhookTap:
    """ASGI wrapper: passes every request through unchanged and records those to the webhook path."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.deliveries: list[Delivery] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != WEBHOOK_PATH:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the sender went away before the body arrived
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        handed_over = False

        async def receive_again() -> Message:
            nonlocal handed_over
            if not handed_over:
                handed_over = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive_again, send_noting_status)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        with self.lock:
            self.deliveries.append(
                Delivery(body, headers.get("stripe-signature"), status, replay=REPLAY_HEADER in headers)
            )

    def from_localstripe(self, pis: list[str] | None = None) -> list[Delivery]:
        """localstripe's deliveries in arrival order, optionally only those about the PaymentIntents `pis`."""
        with self.lock:
            return [
                d
                for d in self.deliveries
                if not d.replay and (pis is None or d.event["data"]["object"].get("id") in pis)
            ]


@dataclass
class LiveApi:
    url: str
    svc: Any
    stripe: LocalStripe
    tap: WebhookTap
    http: httpx.Client
    customer_http: httpx.Client = field(repr=False)
    # This test's PaymentIntents. localstripe sends an event ~1 s after it happens to whatever webhook is registered
    # by then, so one caused just before this test (by another test) may still arrive here: the API stores it as
    # "ignored" (not one of ours), and the assertions look only at events about these.
    pis: list[str] = field(default_factory=list)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """uvicorn on a free loopback port in a background thread; yields the base URL once /healthz answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="e2e-api", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"the API did not answer /healthz on {url} within 10 s", pytrace=False)
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()
        if thread.is_alive():
            pytest.fail("uvicorn did not shut down within 10 s", pytrace=False)


@pytest.fixture
def api(localstripe: LocalStripe, make_services: Callable[..., Any]) -> Iterator[LiveApi]:
    svc = make_services(
        payments="stripe",
        stripe_secret_key=TEST_KEY,
        stripe_api_base=localstripe.url,
        stripe_webhook_secret=SECRET,
        gateway_timeout_seconds=10.0,
    )
    tap = WebhookTap(create_app(svc, allowed_origins=[]))
    with (
        serve(tap) as url,
        httpx.Client(base_url=url, timeout=10.0, trust_env=False) as http,
        httpx.Client(
            base_url=localstripe.url, timeout=10.0, trust_env=False, headers={"Authorization": f"Bearer {TEST_KEY}"}
        ) as customer_http,
    ):
        localstripe.register_webhook(url + WEBHOOK_PATH, SECRET, webhook_id="roomdesk-e2e")
        live = LiveApi(url, svc, localstripe, tap, http, customer_http)
        try:
            yield live
        finally:
            localstripe.mute_webhooks()  # before the server goes: deliveries still on their way go nowhere
        strays = [r for r in webhook_rows(live, ours=False) if r[2] not in live.pis]
        assert all(r[3] == "ignored" for r in strays), f"events about other tests' payments were not ignored: {strays}"


# --------------------------------------------------------------------------------------------- the customer


def terms_fields(svc: Any) -> dict[str, Any]:
    """The booking form accepts the current terms (when this version of the API asks for it)."""
    return {"terms_version": svc.settings.terms_version} if "terms_version" in BookingIn.model_fields else {}


def book(api: LiveApi, dates: list[str], *, email: str = "ava@example.org") -> dict[str, Any]:
    """The booking form posts to the API: a hold and a PaymentIntent."""
    body = {
        "room": "boardroom",
        "dates": dates,
        "start": "10:00",
        "end": "12:00",
        "customer_name": "Ava Nguyen",
        "customer_email": email,
        "customer_phone": "604-555-0101",
        **terms_fields(api.svc),
    }
    r = api.http.post("/api/bookings", json=body)
    assert r.status_code == 201, r.text
    started = dict(r.json())
    api.pis.append(started["payment_intent"])
    assert started["payment_intent"].startswith("pi_") and started["client_secret"].startswith(
        started["payment_intent"]
    )
    return started


def customer_pays(api: LiveApi, pi_id: str, card: str) -> httpx.Response:
    """What Stripe.js does with the card: attach it to the PaymentIntent, then confirm. localstripe answers 500 to
    confirm(payment_method=…) and takes confirm only with a secret key, so this is the adapter's two-step form, sent
    from outside our code."""
    r = api.customer_http.post(f"/v1/payment_intents/{pi_id}", data={"payment_method": card})
    assert r.status_code == 200, r.text
    return api.customer_http.post(f"/v1/payment_intents/{pi_id}/confirm")


# --------------------------------------------------------------------------------------------- what we notice


def wait_for_delivery(api: LiveApi, pi_id: str, event_type: str) -> Delivery:
    """Poll (bounded) until localstripe's `event_type` about `pi_id` has reached the API and been answered."""
    deadline = time.monotonic() + DELIVERY_SECONDS
    while True:
        for d in api.tap.from_localstripe():
            event = d.event
            if event.get("type") == event_type and event["data"]["object"].get("id") == pi_id:
                return d
        if time.monotonic() > deadline:
            seen = [(d.event.get("type"), d.event["data"]["object"].get("id"), d.status) for d in api.tap.deliveries]
            log_tail = api.stripe.log_file.read_text(errors="replace")[-1500:]
            pytest.fail(
                f"localstripe's {event_type} for {pi_id} did not reach {api.url}{WEBHOOK_PATH} within "
                f"{DELIVERY_SECONDS:.0f} s.\nWebhook requests seen: {seen}\n"
                f"Stored events: {webhook_rows(api, ours=False)}\n--- localstripe log ---\n{log_tail}",
                pytrace=False,
            )
        time.sleep(0.05)


def webhook_rows(api: LiveApi, *, ours: bool = True) -> list[tuple[str, str, str, str, int, str | None]]:
    """(event id, type, PaymentIntent, status, attempts, last error) per stored event about this test's payments
    (`ours`) or any, in arrival order."""
    with api.svc.session() as s:
        rows = s.exec(select(WebhookEvent).order_by(col(WebhookEvent.id)))
        out = [
            (r.event_id, r.type, r.payload["data"]["object"]["id"], r.status, r.attempts, r.last_error) for r in rows
        ]
    return [r for r in out if not ours or r[2] in api.pis]


def booking_row(svc: Any, reference: str) -> Booking:
    with svc.session() as s:
        b = s.exec(select(Booking).where(Booking.reference == reference)).one()
        s.expunge(b)
        return b


def legs_and_claims(svc: Any, booking_id: int) -> tuple[list[str], list[tuple[str, bool]]]:
    with svc.session() as s:
        legs = [
            leg.state
            for leg in s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(BookingLeg.day))
        ]
        claims = sorted((c.kind, c.active) for c in s.exec(select(SlotClaim).where(SlotClaim.booking_id == booking_id)))
    return legs, claims


def actions(svc: Any, booking_id: int) -> list[str]:
    with svc.session() as s:
        return [
            a.action for a in s.exec(select(AuditLog).where(AuditLog.booking_id == booking_id).order_by(AuditLog.id))
        ]


def outbox(svc: Any, booking_id: int) -> list[tuple[str, str, str]]:
    with svc.session() as s:
        rows = s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == booking_id).order_by(EmailOutbox.id))
        return [(o.kind, o.to, o.status) for o in rows]


def live_events(svc: Any, reference: str) -> list[dict[str, Any]]:
    items = svc.calendar.list_events(BOARDROOM, private_property=f"booking_id={reference}")["items"]
    return [e for e in items if e.get("status") != "cancelled"]


def stripe_get(api: LiveApi, path: str, **params: Any) -> dict[str, Any]:
    r = api.customer_http.get(path, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def assert_confirmed(api: LiveApi, started: dict[str, Any], days: list[str], email: str = "ava@example.org") -> int:
    """CONFIRMED with one event per day, the confirmation (with its .ics) sent to the customer; returns the id."""
    svc = api.svc
    b = booking_row(svc, started["booking_id"])
    assert b.id is not None
    assert b.status == "CONFIRMED" and b.hold_expires_at is None, (b.status, actions(svc, b.id))
    assert legs_and_claims(svc, b.id) == (["CONFIRMED"] * len(days), [("booked", True)] * len(days))
    events = live_events(svc, b.reference)
    assert sorted(e["extendedProperties"]["private"]["booking_date"] for e in events) == days
    mails = svc.mail.messages(booking_id=b.id)
    assert [(m["kind"], m["to"]) for m in mails] == [("confirmation", email)]
    assert mails[0]["subject"].startswith("Booking confirmed")
    ics = [a for a in mails[0]["attachments"] if a["filename"].endswith(".ics")]
    assert len(ics) == 1 and attachment_bytes(ics[0]).count(b"BEGIN:VEVENT") == len(days)
    assert outbox(svc, b.id) == [("confirmation", email, "sent")]
    return b.id


def assert_processed_once(api: LiveApi, pi_id: str, event_type: str, delivery: Delivery) -> None:
    """The API answered localstripe 200 and stored the event once, processed on its first attempt."""
    assert delivery.status == 200 and delivery.signature and delivery.signature.startswith("t=")
    rows = [r for r in webhook_rows(api) if r[1] == event_type and r[2] == pi_id]
    assert [(r[0], r[3], r[4], r[5]) for r in rows] == [(delivery.event["id"], "processed", 1, None)]


# --------------------------------------------------------------------------------------------- journeys


def journey_paid(api: LiveApi) -> dict[str, Any]:
    """Book three days over HTTP, pay with a good card; the webhook confirms."""
    started = book(api, THREE_DAYS)
    assert booking_row(api.svc, started["booking_id"]).status == "AWAITING_PAYMENT"
    paid = customer_pays(api, started["payment_intent"], "pm_card_visa")
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
    delivery = wait_for_delivery(api, started["payment_intent"], "payment_intent.succeeded")
    assert_processed_once(api, started["payment_intent"], "payment_intent.succeeded", delivery)
    assert_confirmed(api, started, THREE_DAYS)
    return started


def journey_gate2(api: LiveApi) -> dict[str, Any]:
    """Book two days; staff put a meeting on day two while the customer pays; the webhook refunds and says why."""
    svc = api.svc
    started = book(api, TWO_DAYS, email="ben@example.org")
    tz = svc.settings.tz
    staff = svc.calendar.insert_event(
        BOARDROOM,
        {
            "summary": "Staff meeting",
            "start": {"dateTime": datetime.fromisoformat(f"{TWO_DAYS[1]}T11:00").replace(tzinfo=tz).isoformat()},
            "end": {"dateTime": datetime.fromisoformat(f"{TWO_DAYS[1]}T13:00").replace(tzinfo=tz).isoformat()},
        },
    )
    pi_id = started["payment_intent"]
    paid = customer_pays(api, pi_id, "pm_card_visa")
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
    delivery = wait_for_delivery(api, pi_id, "payment_intent.succeeded")
    assert_processed_once(api, pi_id, "payment_intent.succeeded", delivery)

    b = booking_row(svc, started["booking_id"])
    assert b.id is not None
    assert b.status == "FAILED", (b.status, actions(svc, b.id))
    legs, claims = legs_and_claims(svc, b.id)
    assert legs == ["FAILED", "FAILED"] and [active for _, active in claims] == [False, False]  # the slot is let go
    assert "booking.gate2.conflict" in actions(svc, b.id)
    # Refunded in full in Stripe (localstripe), once, and recorded as the automatic Gate 2 refund.
    refunds = stripe_get(api, "/v1/refunds", payment_intent=pi_id)["data"]
    assert [(r["amount"], r["status"], r["metadata"]["origin"]) for r in refunds] == [
        (started["amount_cents"], "succeeded", "auto_gate2")
    ]
    charge = stripe_get(api, f"/v1/payment_intents/{pi_id}")["latest_charge"]
    assert (charge["amount_refunded"], charge["refunded"]) == (started["amount_cents"], True)
    with svc.session() as s:
        records = [(r.refund_id, r.amount_cents, r.origin) for r in s.exec(select(RefundRecord))]
    assert records == [(refunds[0]["id"], started["amount_cents"], "auto_gate2")]
    # No event of ours on the calendar; the staff meeting is untouched.
    assert live_events(svc, b.reference) == []
    assert svc.calendar.get_event(BOARDROOM, staff["id"])["status"] == "confirmed"
    # The customer is told.
    mails = svc.mail.messages(booking_id=b.id)
    assert [(m["kind"], m["to"]) for m in mails] == [("auto_refund", "ben@example.org")]
    assert "taken at the moment of your payment" in mails[0]["text"] and "refunded in full" in mails[0]["text"]
    assert outbox(svc, b.id) == [("auto_refund", "ben@example.org", "sent")]
    # Day one is free again for the next customer.
    quote = api.http.post(
        "/api/quotes", json={"room": "boardroom", "dates": TWO_DAYS[:1], "start": "10:00", "end": "12:00"}
    )
    assert quote.status_code == 200 and quote.json()["available"] is True, quote.text
    return started


def journey_declined_then_paid(api: LiveApi) -> dict[str, Any]:
    """A declined card keeps the hold (same expiry) for another try; a good card then confirms."""
    svc = api.svc
    started = book(api, FRIDAY, email="cy@example.org")
    pi_id = started["payment_intent"]
    declined = customer_pays(api, pi_id, "pm_card_chargeCustomerFail")
    assert declined.status_code == 402 and declined.json()["error"]["code"] == "card_declined", declined.text
    delivery = wait_for_delivery(api, pi_id, "payment_intent.payment_failed")
    assert_processed_once(api, pi_id, "payment_intent.payment_failed", delivery)

    b = booking_row(svc, started["booking_id"])
    assert b.id is not None
    assert b.status == "AWAITING_PAYMENT"
    assert b.hold_expires_at == datetime.fromisoformat(started["hold_expires_at"])  # the clock did not restart
    assert legs_and_claims(svc, b.id) == (["AWAITING_PAYMENT"], [("hold", True)])
    assert actions(svc, b.id)[-1] == "booking.payment.failed"
    availability = api.http.get("/api/availability", params={"room": "boardroom", "from": FRIDAY[0], "to": FRIDAY[0]})
    assert availability.json()["days"][0]["busy"] == [{"start": "10:00", "end": "12:00"}]  # nobody else can take it
    assert svc.mail.messages(booking_id=b.id) == [] and live_events(svc, b.reference) == []

    api.stripe.confirm_after_decline = True  # as on Stripe: the same PaymentIntent takes another card
    paid = customer_pays(api, pi_id, "pm_card_visa")
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
    delivery = wait_for_delivery(api, pi_id, "payment_intent.succeeded")
    assert_processed_once(api, pi_id, "payment_intent.succeeded", delivery)
    assert_confirmed(api, started, FRIDAY, email="cy@example.org")
    assert [r[1] for r in webhook_rows(api) if r[2] == pi_id] == [
        "payment_intent.payment_failed",
        "payment_intent.succeeded",
    ]
    return started


# --------------------------------------------------------------------------------------------- tests


def test_paying_confirms_through_localstripes_webhook(api: LiveApi) -> None:
    started = journey_paid(api)
    # The handler re-fetched the PaymentIntent instead of trusting the payload.
    assert any(
        s.method == "GET" and s.path == f"/v1/payment_intents/{started['payment_intent']}" for s in api.stripe.sent
    )
    assert len(api.tap.from_localstripe(api.pis)) == 1


def test_a_payment_that_loses_the_race_at_gate_2_is_refunded_and_the_customer_told(api: LiveApi) -> None:
    journey_gate2(api)


def test_a_declined_card_keeps_the_hold_and_another_card_confirms(api: LiveApi) -> None:
    journey_declined_then_paid(api)


def test_a_studio_paid_online_asks_for_its_deposit_card_and_reads_it_back_from_stripe(api: LiveApi) -> None:
    """The Sonic Studio asks a $250 damage deposit: once localstripe's webhook confirms the payment, a card request
    (Customer + off-session SetupIntent) exists at Stripe; the confirmation page offers Stripe's card form with its
    client secret (confirmSetup); when the customer comes back from saving the card, the manage page reads it from
    Stripe at once and says so."""
    svc = api.svc
    body = {
        "room": "sonic-studio",
        "dates": FRIDAY,
        "start": "10:00",
        "end": "12:00",
        "customer_name": "Ava Nguyen",
        "customer_email": "ava@example.org",
        "extras": {"show_name": "Night Shift", "set_choice": "Podcast table"},
        "agreement_version": "2026-01",
        **terms_fields(svc),
    }
    r = api.http.post("/api/bookings", json=body)
    assert r.status_code == 201, r.text
    started = dict(r.json())
    pi_id = started["payment_intent"]
    api.pis.append(pi_id)
    assert customer_pays(api, pi_id, "pm_card_visa").status_code == 200
    assert wait_for_delivery(api, pi_id, "payment_intent.succeeded").status == 200
    b = booking_row(svc, started["booking_id"])
    assert b.status == "CONFIRMED" and b.id is not None
    with svc.session() as s:
        dep = s.exec(select(DamageDeposit).where(DamageDeposit.booking_id == b.id)).one()
    assert (dep.state, dep.amount_cents) == ("card_needed", 25_000) and dep.setup_intent_id
    seti = stripe_get(api, f"/v1/setup_intents/{dep.setup_intent_id}")
    assert (seti["status"], seti["customer"], seti["usage"]) == (
        "requires_payment_method",
        dep.customer_id,
        "off_session",
    )
    assert seti["metadata"]["purpose"] == "deposit"

    page = api.http.get(f"/booked/{b.reference}", params={"k": b.pay_token})
    assert page.status_code == 200 and "Damage deposit: $250.00" in page.text
    assert "Please save a card for it below" in page.text
    assert '"confirmSetup"' in page.text and json.dumps(seti["client_secret"]) in page.text

    # Stripe.js confirmSetup with the card, from the customer's browser, then Stripe sends them back.
    confirmed = api.customer_http.post(
        f"/v1/setup_intents/{dep.setup_intent_id}/confirm", data={"payment_method": "pm_card_visa"}
    )
    assert confirmed.status_code == 200, confirmed.text
    back = api.http.get(
        f"/manage/{b.reference}",
        params={
            "k": b.pay_token,
            "deposit": "back",
            "setup_intent": dep.setup_intent_id,
            "redirect_status": "succeeded",
        },
    )
    assert back.status_code == 200 and "Card saved for the damage deposit" in back.text
    assert "Your card is saved for it" in back.text and "confirmSetup" not in back.text
    with svc.session() as s:
        dep = s.exec(select(DamageDeposit).where(DamageDeposit.booking_id == b.id)).one()
    assert dep.state == "card_saved" and dep.payment_method == confirmed.json()["payment_method"]


def snapshot(api: LiveApi, *, attempts: bool = True) -> dict[str, Any]:
    """Everything the webhooks could change, here and at Stripe (audit rows of replays aside)."""
    svc = api.svc
    with svc.session() as s:
        bookings = [
            (b.reference, b.status, b.hold_expires_at, b.confirmed_at, b.updated_at)
            for b in s.exec(select(Booking).order_by(col(Booking.id)))
        ]
        legs = [
            (leg.booking_id, leg.day, leg.state, leg.event_id, leg.refunded_cents)
            for leg in s.exec(select(BookingLeg).order_by(col(BookingLeg.id)))
        ]
        claims = [
            (c.leg_id, c.kind, c.active, c.expires_at) for c in s.exec(select(SlotClaim).order_by(col(SlotClaim.id)))
        ]
        refunds = [
            (r.refund_id, r.amount_cents, r.origin) for r in s.exec(select(RefundRecord).order_by(col(RefundRecord.id)))
        ]
        mail_rows = [
            (o.idempotency_key, o.kind, o.to, o.status, o.attempts)
            for o in s.exec(select(EmailOutbox).order_by(col(EmailOutbox.id)))
        ]
        audit = [
            (a.booking_id, a.action)
            for a in s.exec(select(AuditLog).order_by(col(AuditLog.id)))
            if a.action != "webhook.replayed"
        ]
    events = [(r[0], r[1], r[3], r[4] if attempts else None, r[5]) for r in webhook_rows(api)]
    calendar = sorted(
        (e["id"], e["status"], e.get("summary"))
        for e in svc.calendar.list_events(BOARDROOM, show_deleted=True)["items"]
    )
    sent = sorted((m["id"], m["kind"], m["to"]) for m in svc.mail.messages())
    stripe = {
        "payment_intents": sorted(
            (p["id"], p["status"]) for p in stripe_get(api, "/v1/payment_intents", limit=100)["data"]
        ),
        "charges": sorted(
            (c["id"], c["status"], c["amount_refunded"]) for c in stripe_get(api, "/v1/charges", limit=100)["data"]
        ),
        "refunds": sorted((r["id"], r["amount"]) for r in stripe_get(api, "/v1/refunds", limit=100)["data"]),
    }
    return {
        "bookings": bookings,
        "legs": legs,
        "claims": claims,
        "refunds": refunds,
        "outbox": mail_rows,
        "audit": audit,
        "webhook_events": events,
        "calendar": calendar,
        "mail": sent,
        "stripe": stripe,
    }


def test_replaying_every_webhook_in_any_order_any_number_of_times_changes_nothing(api: LiveApi) -> None:
    paid, lost, retried = journey_paid(api), journey_gate2(api), journey_declined_then_paid(api)
    originals = api.tap.from_localstripe(api.pis)
    assert [(d.event["type"], d.event["data"]["object"]["id"], d.status) for d in originals] == [
        ("payment_intent.succeeded", paid["payment_intent"], 200),
        ("payment_intent.succeeded", lost["payment_intent"], 200),
        ("payment_intent.payment_failed", retried["payment_intent"], 200),
        ("payment_intent.succeeded", retried["payment_intent"], 200),
    ]  # one delivery per event: localstripe never retries, and nothing made it try
    before = snapshot(api)

    # Stripe redelivering: localstripe's exact signed bytes, reversed, in order, reversed again.
    for d in [*reversed(originals), *originals, *reversed(originals)]:
        assert d.signature is not None
        r = api.http.post(
            WEBHOOK_PATH,
            content=d.body,
            headers={"Stripe-Signature": d.signature, "Content-Type": "application/json", REPLAY_HEADER: "1"},
        )
        assert r.status_code == 200 and r.json() == {"received": True, "status": "duplicate"}, r.text
    assert snapshot(api) == before

    # Staff replaying from the dashboard re-run each stored event's handler (no dedupe there), newest first, then
    # oldest first: every handler converges on Stripe's current state, so still nothing changes.
    ours = {r[0] for r in webhook_rows(api)}
    with api.svc.session() as s:
        rows = s.exec(select(WebhookEvent).order_by(col(WebhookEvent.id)))
        row_ids = [r.id for r in rows if r.id is not None and r.event_id in ours]
    for row_id in [*reversed(row_ids), *row_ids]:
        assert replay_event(api.svc, row_id, actor="staff@test") == "processed"
    assert snapshot(api, attempts=False) == snapshot_without_attempts(before)


def snapshot_without_attempts(snap: dict[str, Any]) -> dict[str, Any]:
    return {**snap, "webhook_events": [(*e[:3], None, e[4]) for e in snap["webhook_events"]]}


# --------------------------------------------------------------------------------------------- at the same time


def signed_event(api: LiveApi, pi_id: str, event_type: str) -> tuple[bytes, str]:
    """localstripe's own event, serialised as it sends it and signed with Stripe's scheme (`t=<unix>,v1=<HMAC>`),
    for tests that deliver it themselves (with the webhook muted)."""
    event = next(
        e
        for e in stripe_get(api, "/v1/events", limit=100)["data"]
        if e["type"] == event_type and e["data"]["object"]["id"] == pi_id
    )
    payload = json.dumps(event, indent=2, sort_keys=True).encode()
    t = int(time.time())
    return payload, f"t={t},v1={hmac.new(SECRET.encode(), f'{t}.'.encode() + payload, hashlib.sha256).hexdigest()}"


def post_event(url: str, payload: bytes, signature: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as client:
        return client.post(
            WEBHOOK_PATH,
            content=payload,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json", REPLAY_HEADER: "1"},
        )


def test_the_same_event_delivered_eight_times_at_once_confirms_once(api: LiveApi) -> None:
    started = book(api, THREE_DAYS)
    api.stripe.mute_webhooks()  # this test is Stripe: it delivers the event itself
    pi_id = started["payment_intent"]
    assert customer_pays(api, pi_id, "pm_card_visa").status_code == 200
    payload, signature = signed_event(api, pi_id, "payment_intent.succeeded")
    barrier = threading.Barrier(8)

    def deliver(_: int) -> httpx.Response:
        barrier.wait(timeout=10)
        return post_event(api.url, payload, signature)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(deliver, range(8)))
    # Every answer is 200 (processed, or a duplicate) or, while another delivery holds the booking, 503 so that
    # Stripe retries it later; never a 4xx or a 500. Deliveries that overlap the first one's work may also report
    # "processed" (they find nothing left to do): the booking's saga ran once.
    statuses = sorted((r.status_code, r.json().get("status", "")) for r in answers)
    assert (200, "processed") in statuses and set(statuses) <= {(200, "processed"), (200, "duplicate"), (503, "")}
    b = booking_row(api.svc, started["booking_id"])
    assert b.id is not None
    done = [a for a in actions(api.svc, b.id) if a in ("booking.payment.succeeded", "booking.confirmed")]
    assert done == ["booking.payment.succeeded", "booking.confirmed"], statuses
    assert_confirmed(api, started, THREE_DAYS)
    rows = webhook_rows(api)
    assert [(r[1], r[3], r[5]) for r in rows] == [("payment_intent.succeeded", "processed", None)]
    assert list_failed_events(api.svc) == []
    # Stripe's retry of a 503 is then a duplicate.
    again = post_event(api.url, payload, signature)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"


def test_a_delivery_that_finds_the_booking_busy_does_not_mark_the_finished_event_failed(
    api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving the burst above hits now and then, made certain: a second delivery of the same event arrives
    exactly when the first asks for the booking's lease. The second finds the event in hand and answers 200 without
    processing it; the first waits for the lease and finishes; the event is processed once (never listed as failed)
    and the booking is confirmed once."""
    started = book(api, THREE_DAYS)
    api.stripe.mute_webhooks()
    pi_id = started["payment_intent"]
    assert customer_pays(api, pi_id, "pm_card_visa").status_code == 200
    payload, signature = signed_event(api, pi_id, "payment_intent.succeeded")
    real_acquire = lease_module.try_acquire
    second: list[httpx.Response] = []

    def second_delivery_wins(svc: Any, booking_id: int) -> bool:
        monkeypatch.setattr(lease_module, "try_acquire", real_acquire)
        second.append(post_event(api.url, payload, signature))  # served by another worker thread, to the end
        return False  # ...and still holds the booking as far as the first can tell

    monkeypatch.setattr(lease_module, "try_acquire", second_delivery_wins)
    first = post_event(api.url, payload, signature)
    assert [r.status_code for r in second] == [200] and second[0].json()["status"] != "processed"
    assert first.status_code == 200 and first.json()["status"] == "processed"
    assert [(r[3], r[5]) for r in webhook_rows(api)] == [("processed", None)]
    assert list_failed_events(api.svc) == []
    assert_confirmed(api, started, THREE_DAYS)
    assert post_event(api.url, payload, signature).json()["status"] == "duplicate"
