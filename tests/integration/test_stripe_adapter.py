"""StripePayments through the real stripe SDK.

Over HTTP against localstripe (see stripe_server.py for the shim in front of it): payments, declines, refunds,
cancellation, paging, events, balance transactions, unreachable and slow servers, what goes on the wire. Without a
network: error translation with the SDK's own error classes, and dispute evidence / balance transactions against
recorded Stripe JSON (what localstripe cannot produce)."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import stripe

from services.core.errors import ConfigError, GatewayError, InvalidState, NotFound, PaymentDeclined, TimeoutFault
from services.core.settings import Settings
from services.gateways.base import PaymentsGateway
from services.gateways.stripe_adapter import StripePayments, scrub, translate_error
from tests.integration import stripe_server
from tests.integration.stripe_server import TEST_KEY, LocalStripe

localstripe_server = stripe_server.localstripe_server
localstripe = stripe_server.localstripe

META = {"booking_id": "RD-7Q2X", "room": "boardroom", "customer_email": "ava@example.org"}


def make_adapter(api_base: str | None, *, key: str = TEST_KEY, **settings: Any) -> StripePayments:
    return StripePayments(Settings(payments="stripe", stripe_secret_key=key, stripe_api_base=api_base, **settings))


@pytest.fixture
def pay(localstripe: LocalStripe) -> StripePayments:
    return make_adapter(localstripe.url)


def paid(pay: StripePayments, amount: int = 5000, key: str = "roomdesk-RD-7Q2X-payment-intent") -> str:
    pi = pay.create_payment_intent(amount_cents=amount, currency="CAD", metadata=META, idempotency_key=key)
    pay.confirm_payment_intent(pi["id"], payment_method="pm_card_visa")
    return str(pi["id"])


# --------------------------------------------------------------------------------------------- over HTTP


def test_implements_the_payments_protocol(pay: StripePayments) -> None:
    assert isinstance(pay, PaymentsGateway)
    assert pay.mode == "stripe"


def test_pay_then_retrieve_shows_the_charge(pay: StripePayments, localstripe: LocalStripe) -> None:
    pi = pay.create_payment_intent(amount_cents=5000, currency="CAD", metadata=META, idempotency_key="roomdesk-k1")
    assert pi["status"] == "requires_payment_method"
    assert pi["client_secret"].startswith(pi["id"])
    assert pi["metadata"] == META and pi["currency"] == "cad" and pi["latest_charge"] is None
    assert pay.retrieve_payment_intent(pi["id"])["latest_charge"] is None

    confirmed = pay.confirm_payment_intent(pi["id"], payment_method="pm_card_visa")
    assert confirmed["status"] == "succeeded"
    assert isinstance(confirmed["latest_charge"], str)  # the sandbox's shape: an id, expanded only by retrieve

    got = pay.retrieve_payment_intent(pi["id"])
    charge = got["latest_charge"]
    assert isinstance(charge, dict) and charge["id"] == confirmed["latest_charge"]
    assert (charge["amount"], charge["amount_captured"], charge["amount_refunded"], charge["refunded"]) == (
        5000,
        5000,
        0,
        False,
    )
    assert got["amount_received"] == 5000
    assert type(got) is dict and type(charge) is dict  # plain dicts, never StripeObjects
    json.dumps(got)

    # What went on the wire: card-only for API 2026-09-30.endive, no parameters Stripe (or localstripe) refuses.
    create = localstripe.writes("/v1/payment_intents")[0]
    assert create.field("allowed_payment_method_types[0]") == "card"
    assert not {"description", "receipt_email", "automatic_payment_methods", "payment_method_types[0]"} & {
        k for k, _ in create.form
    }


def test_partial_then_full_refund(pay: StripePayments, localstripe: LocalStripe) -> None:
    pi_id = paid(pay)
    first = pay.refund(
        pi_id,
        amount_cents=2000,
        reason="Cancelled 30 h ahead: 50 % band",
        idempotency_key="roomdesk-RD-7Q2X-cancel-1",
        metadata={"booking_id": "RD-7Q2X", "origin": "staff"},
    )
    assert first["amount"] == 2000 and first["status"] == "succeeded" and first["payment_intent"] == pi_id
    assert first["metadata"]["reason"] == "Cancelled 30 h ahead: 50 % band"
    assert first["metadata"]["origin"] == "staff"
    charge = pay.retrieve_payment_intent(pi_id)["latest_charge"]
    assert (charge["amount_refunded"], charge["refunded"]) == (2000, False)

    pay.refund(pi_id, amount_cents=3000, reason="Gate 2 conflict", idempotency_key="roomdesk-RD-7Q2X-cancel-2")
    charge = pay.retrieve_payment_intent(pi_id)["latest_charge"]
    assert (charge["amount_refunded"], charge["refunded"]) == (5000, True)
    assert [r["amount"] for r in pay.list_refunds(payment_intent_id=pi_id)["data"]] == [3000, 2000]

    # Stripe's own `reason` enum was sent (localstripe refuses the field, so the shim recorded and dropped it).
    assert [w.field("reason") for w in localstripe.writes("/v1/refunds")] == ["requested_by_customer"] * 2


def test_over_refund_is_refused_before_stripe_is_asked(pay: StripePayments, localstripe: LocalStripe) -> None:
    pi_id = paid(pay)
    pay.refund(pi_id, amount_cents=4000, reason="partial", idempotency_key="roomdesk-r1")
    with pytest.raises(InvalidState, match="exceeds the 1000 cents still refundable"):
        pay.refund(pi_id, amount_cents=1001, reason="too much", idempotency_key="roomdesk-r2")
    assert len(localstripe.writes("/v1/refunds")) == 1  # localstripe would have accepted it
    assert pay.retrieve_payment_intent(pi_id)["latest_charge"]["amount_refunded"] == 4000


def test_refunding_an_unpaid_payment_is_refused(pay: StripePayments) -> None:
    pi = pay.create_payment_intent(amount_cents=5000, currency="cad", metadata=META, idempotency_key="roomdesk-k")
    with pytest.raises(InvalidState, match="has not been paid"):
        pay.refund(pi["id"], amount_cents=100, reason="x", idempotency_key="roomdesk-r")


def test_the_same_refund_key_refunds_once_even_where_keys_are_ignored(
    pay: StripePayments, localstripe: LocalStripe
) -> None:
    # localstripe ignores Idempotency-Key; the adapter finds the first refund by the key it stored in metadata.
    pi_id = paid(pay)
    first = pay.refund(pi_id, amount_cents=1500, reason="r", idempotency_key="roomdesk-RD-1-cancel-9")
    again = pay.refund(pi_id, amount_cents=1500, reason="r", idempotency_key="roomdesk-RD-1-cancel-9")
    assert again["id"] == first["id"]
    assert len(localstripe.writes("/v1/refunds")) == 1
    with pytest.raises(GatewayError, match="already used for a refund of 1500 cents") as info:
        pay.refund(pi_id, amount_cents=700, reason="r", idempotency_key="roomdesk-RD-1-cancel-9")
    assert info.value.status == 400 and not info.value.transient


def test_declined_card(pay: StripePayments) -> None:
    pi = pay.create_payment_intent(amount_cents=5000, currency="cad", metadata=META, idempotency_key="roomdesk-k")
    with pytest.raises(PaymentDeclined) as info:
        pay.confirm_payment_intent(pi["id"], payment_method="pm_card_chargeCustomerFail")
    assert info.value.message == "The card was declined: Your card was declined."
    assert not info.value.transient
    after = pay.retrieve_payment_intent(pi["id"])
    assert after["status"] == "requires_payment_method"
    assert after["last_payment_error"]["code"] == "card_declined"
    assert after["amount_received"] == 0


def test_cancel(pay: StripePayments, localstripe: LocalStripe) -> None:
    pi = pay.create_payment_intent(amount_cents=5000, currency="cad", metadata=META, idempotency_key="roomdesk-k")
    assert pay.cancel_payment_intent(pi["id"], idempotency_key="roomdesk-c1")["status"] == "canceled"
    # Stripe (and localstripe) refuse a second cancel with 400; the adapter answers with the cancelled intent.
    assert pay.cancel_payment_intent(pi["id"], idempotency_key="roomdesk-c2")["status"] == "canceled"
    with pytest.raises(InvalidState, match="cancelled and can no longer be paid"):
        pay.confirm_payment_intent(pi["id"])

    pi_id = paid(pay, key="roomdesk-other")
    with pytest.raises(InvalidState, match="already been paid; refund it instead"):
        pay.cancel_payment_intent(pi_id, idempotency_key="roomdesk-c3")
    with pytest.raises(NotFound, match="No such payment: pi_doesnotexist"):
        pay.cancel_payment_intent("pi_doesnotexist", idempotency_key="roomdesk-c4")


def test_confirming_a_paid_intent_again_charges_nothing(pay: StripePayments, localstripe: LocalStripe) -> None:
    pi_id = paid(pay)
    before = len(localstripe.writes())
    assert pay.confirm_payment_intent(pi_id)["status"] == "succeeded"
    assert len(localstripe.writes()) == before
    assert len(pay.list_charges()["data"]) == 1


def test_list_paging_newest_first(pay: StripePayments, localstripe: LocalStripe) -> None:
    ids = [
        pay.create_payment_intent(
            amount_cents=1000 + i, currency="cad", metadata=META, idempotency_key=f"roomdesk-{i}"
        )["id"]
        for i in range(3)
    ]
    first = pay.list_payment_intents(limit=2)
    assert [p["id"] for p in first["data"]] == [ids[2], ids[1]] and first["has_more"] is True
    second = pay.list_payment_intents(limit=2, starting_after=first["data"][-1]["id"])
    assert [p["id"] for p in second["data"]] == [ids[0]] and second["has_more"] is False
    assert first["object"] == "list"
    query = [dict(s.query) for s in localstripe.sent if s.path == "/v1/payment_intents" and s.method == "GET"]
    assert query[-2:] == [{"limit": "2"}, {"limit": "2", "starting_after": ids[1]}]
    with pytest.raises(GatewayError, match="between 1 and 100"):
        pay.list_payment_intents(limit=101)


def test_events_show_the_payment(pay: StripePayments) -> None:
    pi_id = paid(pay)
    events = pay.list_events()["data"]
    succeeded = [e for e in events if e["type"] == "payment_intent.succeeded"]
    assert [e["data"]["object"]["id"] for e in succeeded] == [pi_id]
    assert isinstance(succeeded[0]["data"]["object"]["latest_charge"], str)
    assert [e["type"] for e in pay.list_events(type="payment_intent.succeeded")["data"]] == ["payment_intent.succeeded"]


def test_balance_transactions_over_http(pay: StripePayments) -> None:
    pi_id = paid(pay)
    pay.refund(pi_id, amount_cents=1200, reason="r", idempotency_key="roomdesk-r")
    txns = pay.list_balance_transactions()["data"]
    assert [(t["reporting_category"], t["amount"]) for t in txns] == [("refund", -1200), ("charge", 5000)]


def test_dispute_evidence_through_the_stub(pay: StripePayments, localstripe: LocalStripe) -> None:
    localstripe.seed_disputes([RECORDED_DISPUTE])
    assert [d["id"] for d in pay.list_disputes()["data"]] == [RECORDED_DISPUTE["id"]]
    evidence = {
        "cancellation_policy_disclosure": "Shown at checkout; refunds by band (48 h: 100 %, 24 h: 50 %).",
        "service_date": "2026-03-04",
        "uncategorized_text": "Customer attended the booking; door log attached to the file.",
    }
    draft = pay.submit_dispute_evidence(RECORDED_DISPUTE["id"], evidence, submit=False)
    assert draft["status"] == "needs_response" and draft["evidence"]["service_date"] == "2026-03-04"
    sent = pay.submit_dispute_evidence(RECORDED_DISPUTE["id"], evidence, submit=True)
    assert sent["status"] == "under_review" and sent["evidence_details"]["submission_count"] == 1
    posts = localstripe.writes("/v1/disputes/dp_1RecordedDispute0001")
    assert posts[0].field("evidence[cancellation_policy_disclosure]") == evidence["cancellation_policy_disclosure"]
    assert [p.field("submit") for p in posts] == ["false", "true"]
    assert posts[0].idempotency_key != posts[1].idempotency_key  # submitting is a different request from saving
    with pytest.raises(NotFound, match="No such dispute: dp_nope"):
        pay.submit_dispute_evidence("dp_nope", evidence, submit=True)


def test_not_found(pay: StripePayments) -> None:
    with pytest.raises(NotFound, match="No such payment: pi_missing"):
        pay.retrieve_payment_intent("pi_missing")
    with pytest.raises(NotFound):
        pay.list_payment_intents(starting_after="pi_missing")


def test_same_create_key_is_sent_twice_verbatim(pay: StripePayments, localstripe: LocalStripe) -> None:
    # Stripe replays the first PaymentIntent for a key it has seen (24 h); localstripe ignores keys and makes two.
    # What the adapter guarantees, and this asserts: the caller's key goes out unchanged on every attempt.
    for _ in range(2):
        pay.create_payment_intent(amount_cents=5000, currency="cad", metadata=META, idempotency_key="roomdesk-RD-9-pi")
    assert [w.idempotency_key for w in localstripe.writes("/v1/payment_intents")] == ["roomdesk-RD-9-pi"] * 2
    with pytest.raises(GatewayError, match="1 to 255 characters"):
        pay.create_payment_intent(amount_cents=5000, currency="cad", metadata=META, idempotency_key="")


def test_every_write_carries_a_deterministic_key(pay: StripePayments, localstripe: LocalStripe) -> None:
    pi_id = paid(pay)
    pay.refund(pi_id, amount_cents=100, reason="r", idempotency_key="roomdesk-r")
    other = pay.create_payment_intent(amount_cents=900, currency="cad", metadata=META, idempotency_key="roomdesk-o")
    with pytest.raises(PaymentDeclined):
        pay.confirm_payment_intent(other["id"], payment_method="pm_card_chargeCustomerFail")
    pay.cancel_payment_intent(other["id"], idempotency_key="roomdesk-cancel")
    writes = localstripe.writes()
    assert len(writes) == 8
    assert all((w.idempotency_key or "").startswith("roomdesk-") for w in writes), [w.idempotency_key for w in writes]
    confirm_keys = [w.idempotency_key for w in writes if w.path.endswith("/confirm")]
    assert confirm_keys == [
        f"roomdesk-confirm-{pi_id}-first-pm_card_visa",
        f"roomdesk-confirm-{other['id']}-first-pm_card_chargeCustomerFail",
    ]


def test_unreachable_stripe(localstripe: LocalStripe) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once the socket closes
    pay = make_adapter(f"http://127.0.0.1:{closed}")
    with pytest.raises(GatewayError) as info:
        pay.list_payment_intents()
    assert info.value.message == "Stripe could not be reached; try again"
    assert info.value.transient and not isinstance(info.value, TimeoutFault)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_slow_stripe_times_out(silent_server: str) -> None:
    pay = make_adapter(silent_server, gateway_timeout_seconds=0.2)
    with pytest.raises(TimeoutFault, match="could not be reached in time") as info:
        pay.retrieve_payment_intent("pi_x")
    assert info.value.transient


def test_a_proxy_in_the_environment_is_not_used_for_loopback(
    pay: StripePayments, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the proxy, the loopback guard would refuse the connection (192.0.2.1 is not loopback).
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://192.0.2.1:3128")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert make_adapter(pay.api_base).list_payment_intents()["data"] == []


def test_the_secret_key_never_shows(localstripe: LocalStripe, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's own debug lines included
    bad_key = "rk_test_roomdesk_NOT_A_SECRET_KEY_1234"  # localstripe only accepts sk_ keys: a 401
    seen: list[str] = []
    bad = make_adapter(localstripe.url, key=bad_key)
    with pytest.raises(GatewayError) as info:
        bad.list_payment_intents()
    assert info.value.message == "Stripe rejected the API key — check STRIPE_SECRET_KEY"
    assert not info.value.transient
    seen += [str(info.value), repr(info.value), repr(bad)]

    good = make_adapter(localstripe.url)
    for call in (
        lambda: good.retrieve_payment_intent("pi_nope"),
        lambda: good.refund("pi_nope", amount_cents=1, reason="r", idempotency_key="roomdesk-x"),
    ):
        with pytest.raises(NotFound) as nf:
            call()
        seen += [str(nf.value), repr(nf.value)]
    seen += [repr(good), str(vars(good))]
    seen += [record.getMessage() for record in caplog.records]
    assert any("Stripe refused or failed" in line for line in seen)  # the originals were logged …
    for secret in (bad_key, TEST_KEY):
        assert not [line for line in seen if secret in line]  # … without the key


def test_a_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="STRIPE_SECRET_KEY"):
        StripePayments(Settings(payments="stripe"))


# --------------------------------------------------------------------------------------------- no network


def _error(cls: type[stripe.StripeError], message: str, status: int | None, code: str | None = None) -> Any:
    body = {"error": {"type": "invalid_request_error", "message": message, "code": code}}
    if cls is stripe.CardError:
        return stripe.CardError(message, None, code, http_status=status, json_body=body)
    if cls is stripe.InvalidRequestError:
        return stripe.InvalidRequestError(message, None, code, http_status=status, json_body=body)
    return cls(message, http_status=status, json_body=body, code=code)


@pytest.mark.parametrize(
    ("exc", "kind", "message", "transient", "status"),
    [
        (
            _error(stripe.CardError, "Your card has insufficient funds.", 402, "card_declined"),
            PaymentDeclined,
            "The card was declined: Your card has insufficient funds.",
            False,
            None,
        ),
        (
            _error(stripe.AuthenticationError, "Invalid API Key provided: sk_test_****1234", 401),
            GatewayError,
            "Stripe rejected the API key — check STRIPE_SECRET_KEY",
            False,
            401,
        ),
        (
            _error(stripe.PermissionError, "This key does not have access to refunds", 403),
            GatewayError,
            "Stripe rejected the API key — check STRIPE_SECRET_KEY",
            False,
            403,
        ),
        (
            stripe.APIConnectionError("Unexpected error communicating with Stripe."),
            GatewayError,
            "Stripe could not be reached; try again",
            True,
            None,
        ),
        (
            _error(stripe.RateLimitError, "Too many requests", 429),
            GatewayError,
            "Stripe is limiting how fast we call it; try again in a minute",
            True,
            429,
        ),
        (
            _error(stripe.InvalidRequestError, "No such payment_intent: 'pi_x'", 404, "resource_missing"),
            NotFound,
            "No such payment: pi_x",
            None,
            None,
        ),
        (
            _error(
                stripe.InvalidRequestError,
                "Refund amount ($60.00) is greater than unrefunded amount on charge ($50.00)",
                400,
                "amount_too_large",
            ),
            InvalidState,
            "Stripe refused to refund payment pi_x: Refund amount ($60.00) is greater than unrefunded amount on "
            "charge ($50.00)",
            None,
            None,
        ),
        (
            _error(stripe.InvalidRequestError, "Invalid currency: zzz", 400, "parameter_invalid_string"),
            GatewayError,
            "Stripe refused to refund payment pi_x: Invalid currency: zzz",
            False,
            400,
        ),
        (
            _error(
                stripe.IdempotencyError, "Keys for idempotent requests can only be used with the same parameters", 400
            ),
            GatewayError,
            "Stripe refused to refund payment pi_x: the idempotency key was already used differently (Keys for "
            "idempotent requests can only be used with the same parameters)",
            False,
            400,
        ),
        (
            _error(stripe.APIError, "An unknown error occurred", 503),
            GatewayError,
            "Stripe had a problem and could not refund payment pi_x; try again",
            True,
            503,
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, stripe.StripeError) else None,
)
def test_error_translation(
    exc: stripe.StripeError, kind: type[Exception], message: str, transient: bool | None, status: int | None
) -> None:
    out = translate_error(exc, action="refund payment pi_x", missing="No such payment: pi_x", secret=TEST_KEY)
    assert type(out) is kind
    assert out.message == message
    if isinstance(out, GatewayError):
        assert (out.transient, out.status, out.provider) == (transient, status, "payments")


def test_a_read_timeout_is_a_timeout_fault() -> None:
    try:
        try:
            raise requests.exceptions.ReadTimeout("read timed out")
        except requests.exceptions.ReadTimeout:
            raise stripe.APIConnectionError("Unexpected error communicating with Stripe.") from None
    except stripe.APIConnectionError as exc:
        out = translate_error(exc, action="look up payment pi_x")
    assert isinstance(out, TimeoutFault) and out.transient


def test_keys_are_scrubbed_from_messages_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    exc = _error(stripe.InvalidRequestError, f"Bad key {TEST_KEY} and sk_live_51Habc123DEF", 400)
    out = translate_error(exc, action="list payments", secret=TEST_KEY)
    assert TEST_KEY not in out.message and "sk_live_51Habc123DEF" not in out.message
    assert "sk_…redacted" in out.message
    assert all(TEST_KEY not in r.getMessage() and "sk_live_51H" not in r.getMessage() for r in caplog.records)
    assert scrub("rk_live_abcdEFGH1234 end") == "sk_…redacted end"


class RecordedHTTP(stripe.HTTPClient):
    """Answers with recorded Stripe JSON by (method, path); keeps what was asked."""

    name = "recorded"

    def __init__(self, answers: Mapping[tuple[str, str], tuple[int, dict[str, Any]]]) -> None:
        super().__init__()
        self.answers = answers
        self.asked: list[tuple[str, str, dict[str, str], dict[str, str]]] = []

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> Any:
        parts = urlsplit(url)
        form = dict(parse_qsl(post_data.decode() if isinstance(post_data, bytes) else post_data or ""))
        form.update(parse_qsl(parts.query))
        self.asked.append((method.upper(), parts.path, form, dict(headers or {})))
        status, body = self.answers[(method.upper(), parts.path)]
        return json.dumps(body).encode(), status, {"Request-Id": "req_recorded"}

    def close(self) -> None:
        pass


def recorded_adapter(
    answers: Mapping[tuple[str, str], tuple[int, dict[str, Any]]],
) -> tuple[StripePayments, RecordedHTTP]:
    http = RecordedHTTP(answers)
    return StripePayments(Settings(payments="stripe", stripe_secret_key=TEST_KEY), http_client=http), http


def test_balance_transactions_with_created_filters_from_recorded_json() -> None:
    pay, http = recorded_adapter({("GET", "/v1/balance_transactions"): (200, RECORDED_BALANCE_TRANSACTIONS)})
    got = pay.list_balance_transactions(
        created_gte=datetime(2026, 3, 1, tzinfo=UTC), created_lt=datetime(2026, 4, 1, tzinfo=UTC), limit=50
    )
    _, _, query, _ = http.asked[0]
    assert query == {"limit": "50", "created[gte]": "1772323200", "created[lt]": "1775001600"}
    assert [t["reporting_category"] for t in got["data"]] == ["dispute", "refund", "charge"]
    assert got["data"][2]["fee_details"][0]["type"] == "stripe_fee" and got["data"][2]["net"] == 7253
    assert type(got) is dict and type(got["data"][0]) is dict
    json.dumps(got)
    with pytest.raises(ValueError, match="timezone-aware"):
        pay.list_balance_transactions(created_gte=datetime(2026, 3, 1))


def test_dispute_evidence_request_from_recorded_json() -> None:
    answered = {**RECORDED_DISPUTE, "status": "under_review"}
    pay, http = recorded_adapter({("POST", "/v1/disputes/dp_1RecordedDispute0001"): (200, answered)})
    evidence = {"refund_policy_disclosure": "Bands shown at checkout", "service_date": "2026-03-04"}
    got = pay.submit_dispute_evidence("dp_1RecordedDispute0001", evidence, submit=True)
    assert got["status"] == "under_review" and type(got["evidence_details"]) is dict
    _, _, form, headers = http.asked[0]
    assert form == {
        "evidence[refund_policy_disclosure]": "Bands shown at checkout",
        "evidence[service_date]": "2026-03-04",
        "submit": "true",
    }
    key = headers["Idempotency-Key"]
    assert re.fullmatch(r"roomdesk-dispute-dp_1RecordedDispute0001-[0-9a-f]{24}", key)
    pay.submit_dispute_evidence("dp_1RecordedDispute0001", dict(reversed(evidence.items())), submit=True)
    assert http.asked[1][3]["Idempotency-Key"] == key  # same evidence, same key: a retry never submits twice


def test_a_recorded_decline_through_the_sdk() -> None:
    declined = {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "payment_intent": {"id": "pi_1", "object": "payment_intent", "status": "requires_payment_method"},
        }
    }
    pay, _ = recorded_adapter(
        {
            ("GET", "/v1/payment_intents/pi_1"): (
                200,
                {
                    "id": "pi_1",
                    "object": "payment_intent",
                    "status": "requires_payment_method",
                    "amount": 5000,
                    "latest_charge": None,
                },
            ),
            ("POST", "/v1/payment_intents/pi_1"): (
                200,
                {"id": "pi_1", "object": "payment_intent", "status": "requires_confirmation", "amount": 5000},
            ),
            ("POST", "/v1/payment_intents/pi_1/confirm"): (402, declined),
        }
    )
    with pytest.raises(PaymentDeclined, match=r"^The card was declined: Your card has insufficient funds\.$"):
        pay.confirm_payment_intent("pi_1", payment_method="pm_card_visa")


def test_retrieve_fetches_the_charge_when_a_server_ignores_expand() -> None:
    pi = {"id": "pi_2", "object": "payment_intent", "status": "succeeded", "amount": 5000, "amount_received": 5000}
    charge = {"id": "ch_2", "object": "charge", "amount": 5000, "amount_captured": 5000, "amount_refunded": 0}
    pay, http = recorded_adapter(
        {
            ("GET", "/v1/payment_intents/pi_2"): (200, {**pi, "latest_charge": "ch_2"}),
            ("GET", "/v1/charges/ch_2"): (200, charge),
        }
    )
    assert pay.retrieve_payment_intent("pi_2")["latest_charge"] == charge
    assert http.asked[0][2] == {"expand[0]": "latest_charge"}


# Recorded shapes, following Stripe's API reference for the Dispute and BalanceTransaction objects.
RECORDED_DISPUTE: dict[str, Any] = {
    "id": "dp_1RecordedDispute0001",
    "object": "dispute",
    "amount": 7500,
    "balance_transactions": [],
    "charge": "ch_3RecordedCharge00001",
    "created": 1772668800,
    "currency": "cad",
    "evidence": {
        "cancellation_policy": None,
        "cancellation_policy_disclosure": None,
        "customer_communication": None,
        "receipt": None,
        "refund_policy": None,
        "refund_policy_disclosure": None,
        "refund_refusal_explanation": None,
        "service_date": None,
        "service_documentation": None,
        "uncategorized_text": None,
    },
    "evidence_details": {"due_by": 1773878399, "has_evidence": False, "past_due": False, "submission_count": 0},
    "is_charge_refundable": False,
    "livemode": False,
    "metadata": {},
    "payment_intent": "pi_3RecordedCharge00001",
    "reason": "credit_not_processed",
    "status": "needs_response",
}

RECORDED_BALANCE_TRANSACTIONS: dict[str, Any] = {
    "object": "list",
    "url": "/v1/balance_transactions",
    "has_more": False,
    "data": [
        {
            "id": "txn_3RecordedDispute001",
            "object": "balance_transaction",
            "amount": -7500,
            "available_on": 1772668800,
            "created": 1772668800,
            "currency": "cad",
            "description": "Chargeback withdrawal for ch_3RecordedCharge00001",
            "fee": 1500,
            "fee_details": [
                {
                    "amount": 1500,
                    "application": None,
                    "currency": "cad",
                    "description": "Dispute fee",
                    "type": "stripe_fee",
                }
            ],
            "net": -9000,
            "reporting_category": "dispute",
            "source": "dp_1RecordedDispute0001",
            "status": "available",
            "type": "adjustment",
        },
        {
            "id": "txn_3RecordedRefund0001",
            "object": "balance_transaction",
            "amount": -2500,
            "available_on": 1772582400,
            "created": 1772582400,
            "currency": "cad",
            "description": "REFUND FOR CHARGE (Gate 2 conflict)",
            "fee": 0,
            "fee_details": [],
            "net": -2500,
            "reporting_category": "refund",
            "source": "re_3RecordedRefund0001",
            "status": "available",
            "type": "refund",
        },
        {
            "id": "txn_3RecordedCharge001",
            "object": "balance_transaction",
            "amount": 7500,
            "available_on": 1772496000,
            "created": 1772409600,
            "currency": "cad",
            "description": None,
            "fee": 247,
            "fee_details": [
                {
                    "amount": 247,
                    "application": None,
                    "currency": "cad",
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ],
            "net": 7253,
            "reporting_category": "charge",
            "source": "ch_3RecordedCharge00001",
            "status": "available",
            "type": "charge",
        },
    ],
}
