"""The sandbox gateways behave like Stripe, Google Calendar and a mail server where users would notice, and their
fault injection fails exactly the calls it is told to."""

from __future__ import annotations

import base64
import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.core.errors import EventExists, GatewayError, InvalidState, NotFound, PaymentDeclined, TimeoutFault
from services.gateways.base import CalendarGateway, MailGateway, OutgoingEmail, PaymentsGateway
from services.gateways.faults import Faults
from services.gateways.sandbox_calendar import SandboxCalendar
from services.gateways.sandbox_mail import SandboxMail, attachment_bytes
from services.gateways.sandbox_payments import SandboxPayments

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
ROOM_A = "room-a@rooms.example"
ROOM_B = "room-b@rooms.example"


class Clock:
    """A hand-driven clock."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def payments(tmp_path: Path, clock: Clock, faults: Faults) -> SandboxPayments:
    return SandboxPayments(tmp_path, clock=clock, faults=faults)


@pytest.fixture
def calendar(tmp_path: Path, clock: Clock, faults: Faults) -> SandboxCalendar:
    return SandboxCalendar(tmp_path, clock=clock, faults=faults)


@pytest.fixture
def mail(tmp_path: Path, clock: Clock, faults: Faults) -> SandboxMail:
    return SandboxMail(tmp_path, clock=clock, faults=faults)


def create_pi(payments: SandboxPayments, **params: Any) -> dict[str, Any]:
    params.setdefault("amount_cents", 10_000)
    params.setdefault("currency", "EUR")
    params.setdefault("metadata", {"booking_id": "1"})
    params.setdefault("idempotency_key", f"booking-1-pay-{time.monotonic_ns()}")
    return payments.create_payment_intent(**params)


def paid_pi(payments: SandboxPayments, **params: Any) -> dict[str, Any]:
    pi = create_pi(payments, **params)
    return payments.confirm_payment_intent(pi["id"])


def make_event(
    event_id: str | None = "bk1d1aaaaa", *, day: int = 10, hours: tuple[int, int] = (9, 12), **extra: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "summary": "Board meeting",
        "start": {"dateTime": f"2025-03-{day:02d}T{hours[0]:02d}:00:00+00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2025-03-{day:02d}T{hours[1]:02d}:00:00+00:00", "timeZone": "UTC"},
        "extendedProperties": {"private": {"booking_id": "1"}},
        **extra,
    }
    if event_id is not None:
        event["id"] = event_id
    return event


def all_ids(payments: SandboxPayments) -> list[str]:
    ids: list[str] = []
    page = payments.list_payment_intents(limit=100)
    while True:
        ids += [pi["id"] for pi in page["data"]]
        if not page["has_more"]:
            return ids
        page = payments.list_payment_intents(limit=100, starting_after=ids[-1])


# -- payments ----------------------------------------------------------------------------------------------------


def test_sandboxes_satisfy_the_gateway_protocols(
    payments: SandboxPayments, calendar: SandboxCalendar, mail: SandboxMail
) -> None:
    assert isinstance(payments, PaymentsGateway)
    assert isinstance(calendar, CalendarGateway)
    assert isinstance(mail, MailGateway)
    assert payments.mode == calendar.mode == mail.mode == "sandbox"


def test_payment_intent_lifecycle(payments: SandboxPayments, clock: Clock) -> None:
    pi = create_pi(payments, amount_cents=45_000, currency="EUR", metadata={"booking_id": "7"})
    assert pi["id"].startswith("pi_") and len(pi["id"]) == 27
    assert pi["object"] == "payment_intent"
    assert pi["status"] == "requires_payment_method"
    assert pi["currency"] == "eur"
    assert pi["client_secret"].startswith(pi["id"] + "_secret_")
    assert pi["created"] == int(T0.timestamp())
    assert pi["livemode"] is False and pi["latest_charge"] is None

    clock.advance(minutes=3)
    confirmed = payments.confirm_payment_intent(pi["id"], payment_method="pm_card_visa")
    assert confirmed["status"] == "succeeded"
    assert confirmed["amount_received"] == 45_000

    fetched = payments.retrieve_payment_intent(pi["id"])
    charge = fetched["latest_charge"]
    assert charge["object"] == "charge" and charge["id"].startswith("ch_")
    assert charge["amount_captured"] == 45_000 and charge["amount_refunded"] == 0
    assert charge["refunded"] is False and charge["disputed"] is False
    assert charge["payment_intent"] == pi["id"] and charge["status"] == "succeeded"
    assert charge["created"] == int(clock.now.timestamp())

    types = [e["type"] for e in payments.list_events()["data"]]
    assert types == ["payment_intent.succeeded", "charge.succeeded", "payment_intent.created"]
    assert payments.list_events(type="charge.succeeded")["data"][0]["data"]["object"]["id"] == charge["id"]


def test_confirming_twice_returns_the_payment_unchanged(payments: SandboxPayments) -> None:
    pi = paid_pi(payments)
    again = payments.confirm_payment_intent(pi["id"])
    assert again["latest_charge"] == pi["latest_charge"]
    assert len(payments.list_events(type="charge.succeeded")["data"]) == 1


def test_declined_card_leaves_the_payment_payable(payments: SandboxPayments) -> None:
    pi = create_pi(payments)
    with pytest.raises(PaymentDeclined) as info:
        payments.confirm_payment_intent(pi["id"], payment_method="pm_card_chargeDeclined")
    assert info.value.transient is False
    after = payments.retrieve_payment_intent(pi["id"])
    assert after["status"] == "requires_payment_method"
    assert after["last_payment_error"]["code"] == "card_declined"
    assert after["latest_charge"] is None
    assert payments.list_events(type="payment_intent.payment_failed")["data"][0]["data"]["object"]["id"] == pi["id"]

    with pytest.raises(PaymentDeclined):
        payments.confirm_payment_intent(pi["id"], payment_method="pm_card_chargeCustomerFail")
    assert payments.confirm_payment_intent(pi["id"])["status"] == "succeeded"


def test_cancel_unpaid_then_twice_and_refuse_paid(payments: SandboxPayments) -> None:
    pi = create_pi(payments)
    canceled = payments.cancel_payment_intent(pi["id"], idempotency_key="cancel-1")
    assert canceled["status"] == "canceled" and canceled["canceled_at"] == int(T0.timestamp())
    assert payments.cancel_payment_intent(pi["id"], idempotency_key="cancel-2")["status"] == "canceled"
    assert len(payments.list_events(type="payment_intent.canceled")["data"]) == 1
    with pytest.raises(InvalidState):
        payments.confirm_payment_intent(pi["id"])

    paid = paid_pi(payments)
    with pytest.raises(InvalidState, match="refund"):
        payments.cancel_payment_intent(paid["id"], idempotency_key="cancel-3")
    assert payments.retrieve_payment_intent(paid["id"])["status"] == "succeeded"


def test_create_with_a_known_idempotency_key_returns_the_first_payment(payments: SandboxPayments) -> None:
    first = create_pi(payments, idempotency_key="booking-9-pay")
    second = create_pi(payments, idempotency_key="booking-9-pay")
    assert second["id"] == first["id"]
    assert all_ids(payments) == [first["id"]]
    with pytest.raises(GatewayError) as info:
        create_pi(payments, idempotency_key="booking-9-pay", amount_cents=1)
    assert info.value.status == 400 and not info.value.transient


def test_refund_with_the_same_key_refunds_once(payments: SandboxPayments) -> None:
    pi = paid_pi(payments, amount_cents=10_000)
    first = payments.refund(pi["id"], amount_cents=2_500, reason="Cancelled 10 days ahead", idempotency_key="rf-1")
    again = payments.refund(pi["id"], amount_cents=2_500, reason="Cancelled 10 days ahead", idempotency_key="rf-1")
    assert again["id"] == first["id"]
    assert first["object"] == "refund" and first["status"] == "succeeded"
    assert first["reason"] == "requested_by_customer"
    assert first["metadata"]["reason"] == "Cancelled 10 days ahead"
    assert [r["id"] for r in payments.list_refunds(payment_intent_id=pi["id"])["data"]] == [first["id"]]
    assert payments.retrieve_payment_intent(pi["id"])["latest_charge"]["amount_refunded"] == 2_500


def test_over_refund_is_refused_and_full_refund_flips_refunded(payments: SandboxPayments) -> None:
    pi = paid_pi(payments, amount_cents=1_000)
    payments.refund(pi["id"], amount_cents=600, reason="partial", idempotency_key="rf-a", metadata={"day": "1"})
    assert payments.retrieve_payment_intent(pi["id"])["latest_charge"]["refunded"] is False

    with pytest.raises(InvalidState, match="400 cents still refundable"):
        payments.refund(pi["id"], amount_cents=500, reason="too much", idempotency_key="rf-b")
    with pytest.raises(InvalidState):
        payments.refund(pi["id"], amount_cents=0, reason="nothing", idempotency_key="rf-c")

    payments.refund(pi["id"], amount_cents=400, reason="rest", idempotency_key="rf-d")
    charge = payments.retrieve_payment_intent(pi["id"])["latest_charge"]
    assert charge["amount_refunded"] == 1_000 and charge["refunded"] is True
    assert len(payments.list_refunds()["data"]) == 2
    assert [e["data"]["object"]["amount_refunded"] for e in payments.list_events(type="charge.refunded")["data"]] == [
        1_000,
        600,
    ]


def test_refund_of_an_unpaid_payment_is_refused(payments: SandboxPayments) -> None:
    pi = create_pi(payments)
    with pytest.raises(InvalidState, match="not been paid"):
        payments.refund(pi["id"], amount_cents=100, reason="x", idempotency_key="rf-unpaid")


def test_concurrent_refunds_never_exceed_the_charge(payments: SandboxPayments) -> None:
    pi = paid_pi(payments, amount_cents=1_000)
    outcomes: list[str] = []

    def refund(n: int) -> None:
        try:
            payments.refund(pi["id"], amount_cents=300, reason="race", idempotency_key=f"race-{n}")
            outcomes.append("ok")
        except InvalidState:
            outcomes.append("refused")

    threads = [threading.Thread(target=refund, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["refused"] * 7
    assert payments.retrieve_payment_intent(pi["id"])["latest_charge"]["amount_refunded"] == 900


def test_dispute_appears_in_list_disputes(payments: SandboxPayments) -> None:
    pi = paid_pi(payments, amount_cents=30_000)
    dispute = payments.open_dispute(pi["id"], due_in_days=5)
    listed = payments.list_disputes()["data"]
    assert [d["id"] for d in listed] == [dispute["id"]]
    assert listed[0]["status"] == "needs_response" and listed[0]["reason"] == "product_not_received"
    assert listed[0]["amount"] == 30_000 and listed[0]["payment_intent"] == pi["id"]
    assert listed[0]["evidence_details"]["due_by"] == int(T0.timestamp()) + 5 * 86_400
    assert payments.retrieve_payment_intent(pi["id"])["latest_charge"]["disputed"] is True
    assert payments.list_events(type="charge.dispute.created")["data"][0]["data"]["object"]["id"] == dispute["id"]
    with pytest.raises(InvalidState, match="disputed"):
        payments.refund(pi["id"], amount_cents=100, reason="x", idempotency_key="rf-disputed")


def test_dispute_evidence_is_added_then_submitted_once_and_the_bank_decides(payments: SandboxPayments) -> None:
    pi = paid_pi(payments, amount_cents=30_000)
    dispute = payments.open_dispute(pi["id"])
    with pytest.raises(GatewayError, match="unknown parameter: evidence\\[favourite_colour\\]"):
        payments.submit_dispute_evidence(dispute["id"], {"favourite_colour": "blue"}, submit=False)
    draft = payments.submit_dispute_evidence(dispute["id"], {"service_date": "2026-03-04"}, submit=False)
    assert draft["status"] == "needs_response" and draft["evidence"] == {"service_date": "2026-03-04"}
    sent = payments.submit_dispute_evidence(dispute["id"], {"uncategorized_text": "Room was ready"}, submit=True)
    assert sent["status"] == "under_review" and sent["evidence_details"]["submission_count"] == 1
    assert sent["evidence"] == {"service_date": "2026-03-04", "uncategorized_text": "Room was ready"}
    with pytest.raises(InvalidState, match="already been submitted"):
        payments.submit_dispute_evidence(dispute["id"], {"uncategorized_text": "again"}, submit=True)
    closed = payments.close_dispute(dispute["id"], won=True)
    assert closed["status"] == "won"
    assert payments.list_events(type="charge.dispute.closed")["data"][0]["data"]["object"]["status"] == "won"


def test_balance_transactions_follow_charges_refunds_and_disputes(payments: SandboxPayments, clock: Clock) -> None:
    first = paid_pi(payments, amount_cents=10_000)
    clock.advance(days=1)
    second = paid_pi(payments, amount_cents=20_000)
    payments.refund(second["id"], amount_cents=5_000, reason="x", idempotency_key="rf-bt")
    dispute = payments.open_dispute(first["id"])
    payments.close_dispute(dispute["id"], won=True)
    txns = payments.list_balance_transactions()["data"]
    summary = [(t["reporting_category"], t["amount"], t["fee"], t["net"]) for t in txns]
    assert sorted(summary) == sorted(
        [
            ("charge", 10_000, 320, 9_680),
            ("charge", 20_000, 610, 19_390),
            ("refund", -5_000, 0, -5_000),
            ("dispute", -10_000, 1_500, -11_500),
            ("dispute_reversal", 10_000, -1_500, 11_500),
        ]
    )
    day_two = payments.list_balance_transactions(created_gte=T0 + timedelta(days=1), created_lt=T0 + timedelta(days=2))
    assert sorted(t["reporting_category"] for t in day_two["data"]) == [
        "charge", "dispute", "dispute_reversal", "refund"
    ]  # fmt: skip
    page = payments.list_balance_transactions(limit=2)
    rest = payments.list_balance_transactions(limit=100, starting_after=page["data"][-1]["id"])
    assert page["has_more"] and [t["id"] for t in page["data"] + rest["data"]] == [t["id"] for t in txns]


def test_lists_are_newest_first_and_paged(payments: SandboxPayments) -> None:
    ids = [create_pi(payments, idempotency_key=f"k{n}")["id"] for n in range(5)]
    page = payments.list_payment_intents(limit=2)
    assert page["object"] == "list" and page["url"] == "/v1/payment_intents"
    assert [pi["id"] for pi in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    last = payments.list_payment_intents(limit=2, starting_after=ids[1])
    assert [pi["id"] for pi in last["data"]] == [ids[0]] and last["has_more"] is False


def test_unknown_ids_raise_not_found(payments: SandboxPayments) -> None:
    with pytest.raises(NotFound, match="pi_missing"):
        payments.retrieve_payment_intent("pi_missing")
    with pytest.raises(NotFound):
        payments.confirm_payment_intent("pi_missing")
    with pytest.raises(NotFound):
        payments.refund("pi_missing", amount_cents=1, reason="x", idempotency_key="rf-x")


def test_state_persists_across_instances_and_reset_empties_it(tmp_path: Path, clock: Clock) -> None:
    first = SandboxPayments(tmp_path, clock=clock)
    assert first.is_empty()
    pi = paid_pi(first)
    second = SandboxPayments(tmp_path, clock=clock)
    assert second.retrieve_payment_intent(pi["id"])["status"] == "succeeded"
    assert (tmp_path / "stripe.sqlite3").exists()
    second.reset()
    assert first.is_empty()


def test_load_imports_recorded_stripe_objects(payments: SandboxPayments) -> None:
    charge = {"id": "ch_rec", "object": "charge", "amount": 500, "amount_captured": 500, "amount_refunded": 0}
    payments.load(
        "payment_intent",
        [{"id": "pi_rec", "object": "payment_intent", "status": "succeeded", "amount": 500, "latest_charge": charge}],
    )
    fetched = payments.retrieve_payment_intent("pi_rec")
    assert fetched["latest_charge"]["id"] == "ch_rec"
    assert not payments.is_empty()


# -- calendar ----------------------------------------------------------------------------------------------------


def test_insert_returns_a_google_shaped_event(calendar: SandboxCalendar) -> None:
    event = calendar.insert_event(ROOM_A, make_event("bk1d1aaaaa"))
    assert event["kind"] == "calendar#event" and event["id"] == "bk1d1aaaaa"
    assert event["status"] == "confirmed" and event["sequence"] == 0
    assert event["created"] == event["updated"] == "2025-03-10T09:00:00.000Z"
    assert event["organizer"]["email"] == ROOM_A and event["iCalUID"] == "bk1d1aaaaa@google.com"
    assert event["etag"].startswith('"') and event["htmlLink"].startswith("https://")
    assert calendar.get_event(ROOM_A, "bk1d1aaaaa") == event
    assert calendar.get_event(ROOM_B, "bk1d1aaaaa") is None


@pytest.mark.parametrize("bad_id", ["abc", "BK1DAY1AAAA", "bk1dayw", "bk1-day1", "a" * 1025])
def test_invalid_event_ids_are_refused(calendar: SandboxCalendar, bad_id: str) -> None:
    with pytest.raises(GatewayError) as info:
        calendar.insert_event(ROOM_A, make_event(bad_id))
    assert info.value.status == 400 and not info.value.transient
    assert calendar.is_empty()


def test_insert_without_id_generates_a_base32hex_id(calendar: SandboxCalendar) -> None:
    event = calendar.insert_event(ROOM_A, make_event(None))
    assert set(event["id"]) <= set("0123456789abcdefghijklmnopqrstuv") and len(event["id"]) >= 5


def test_empty_time_range_is_refused(calendar: SandboxCalendar) -> None:
    with pytest.raises(GatewayError) as info:
        calendar.insert_event(ROOM_A, make_event(hours=(12, 9)))
    assert info.value.status == 400


def test_reinserting_an_existing_or_deleted_id_gives_409(calendar: SandboxCalendar) -> None:
    calendar.insert_event(ROOM_A, make_event("bk1d1aaaaa"))
    with pytest.raises(EventExists) as info:
        calendar.insert_event(ROOM_A, make_event("bk1d1aaaaa"))
    assert info.value.status == 409
    calendar.delete_event(ROOM_A, "bk1d1aaaaa")
    with pytest.raises(EventExists):
        calendar.insert_event(ROOM_A, make_event("bk1d1aaaaa"))
    calendar.insert_event(ROOM_B, make_event("bk1d1aaaaa"))  # ids are unique per calendar only


def test_delete_twice_and_unknown_are_fine_and_keep_a_cancelled_event(calendar: SandboxCalendar) -> None:
    calendar.insert_event(ROOM_A, make_event("bk1d1aaaaa"))
    calendar.delete_event(ROOM_A, "bk1d1aaaaa")
    calendar.delete_event(ROOM_A, "bk1d1aaaaa")
    calendar.delete_event(ROOM_A, "nevercreated")
    assert calendar.get_event(ROOM_A, "bk1d1aaaaa")["status"] == "cancelled"  # type: ignore[index]
    assert calendar.get_event(ROOM_A, "nevercreated") is None


def test_patch_merges_private_properties_and_bumps_sequence(calendar: SandboxCalendar, clock: Clock) -> None:
    calendar.insert_event(ROOM_A, make_event("bk1d1aaaaa"))
    clock.advance(minutes=5)
    patched = calendar.patch_event(
        ROOM_A, "bk1d1aaaaa", {"summary": "Board (paid)", "extendedProperties": {"private": {"state": "paid"}}}
    )
    assert patched["summary"] == "Board (paid)"
    assert patched["extendedProperties"]["private"] == {"booking_id": "1", "state": "paid"}
    assert patched["sequence"] == 1 and patched["updated"] == "2025-03-10T09:05:00.000Z"
    assert calendar.get_event(ROOM_A, "bk1d1aaaaa") == patched

    calendar.delete_event(ROOM_A, "bk1d1aaaaa")
    with pytest.raises(NotFound):
        calendar.patch_event(ROOM_A, "bk1d1aaaaa", {"summary": "x"})
    with pytest.raises(NotFound):
        calendar.patch_event(ROOM_A, "nevercreated", {"summary": "x"})


def test_list_filters_by_window_and_private_property(calendar: SandboxCalendar) -> None:
    calendar.insert_event(ROOM_A, make_event("d11bbbbbbb", day=11))
    calendar.insert_event(ROOM_A, make_event("d10aaaaaaa", day=10))
    other = make_event("d10other00", day=10, hours=(13, 14))
    other["extendedProperties"] = {"private": {"booking_id": "2"}}
    calendar.insert_event(ROOM_A, other)
    calendar.insert_event(ROOM_A, make_event("d12ccccccc", day=12))
    calendar.delete_event(ROOM_A, "d12ccccccc")

    listed = calendar.list_events(ROOM_A)
    assert [e["id"] for e in listed["items"]] == ["d10aaaaaaa", "d10other00", "d11bbbbbbb"]  # by start
    assert "nextSyncToken" in listed and "nextPageToken" not in listed

    window = calendar.list_events(
        ROOM_A, time_min=datetime(2025, 3, 10, 12, tzinfo=UTC), time_max=datetime(2025, 3, 11, 9, 30, tzinfo=UTC)
    )
    assert [e["id"] for e in window["items"]] == ["d10other00", "d11bbbbbbb"]  # end == time_min is not overlapping

    mine = calendar.list_events(ROOM_A, private_property="booking_id=1")
    assert [e["id"] for e in mine["items"]] == ["d10aaaaaaa", "d11bbbbbbb"]
    with_deleted = calendar.list_events(ROOM_A, private_property="booking_id=1", show_deleted=True)
    assert [e["id"] for e in with_deleted["items"]] == ["d10aaaaaaa", "d11bbbbbbb", "d12ccccccc"]


def test_list_pages_carry_the_sync_token_on_the_last_page_only(calendar: SandboxCalendar) -> None:
    for day in range(1, 6):
        calendar.insert_event(ROOM_A, make_event(f"d{day}aaaaa", day=day))
    seen: list[str] = []
    page = calendar.list_events(ROOM_A, max_results=2)
    while "nextPageToken" in page:
        assert "nextSyncToken" not in page
        seen += [e["id"] for e in page["items"]]
        page = calendar.list_events(ROOM_A, max_results=2, page_token=page["nextPageToken"])
    seen += [e["id"] for e in page["items"]]
    assert seen == [f"d{day}aaaaa" for day in range(1, 6)]
    assert page["nextSyncToken"]


def test_sync_token_returns_only_changes_including_cancelled(calendar: SandboxCalendar) -> None:
    calendar.insert_event(ROOM_A, make_event("keptaaaaaa", day=10))
    calendar.insert_event(ROOM_A, make_event("gonebbbbbb", day=11))
    token = calendar.list_events(ROOM_A)["nextSyncToken"]

    calendar.delete_event(ROOM_A, "gonebbbbbb")
    calendar.insert_event(ROOM_A, make_event("freshccccc", day=12))
    calendar.insert_event(ROOM_B, make_event("otherroom1", day=12))

    changes = calendar.list_events(ROOM_A, sync_token=token)
    assert {e["id"]: e["status"] for e in changes["items"]} == {"gonebbbbbb": "cancelled", "freshccccc": "confirmed"}
    again = calendar.list_events(ROOM_A, sync_token=changes["nextSyncToken"])
    assert again["items"] == []


def test_sync_token_cannot_be_combined_with_filters(calendar: SandboxCalendar) -> None:
    token = calendar.list_events(ROOM_A)["nextSyncToken"]
    with pytest.raises(GatewayError) as info:
        calendar.list_events(ROOM_A, sync_token=token, time_min=T0)
    assert info.value.status == 400
    with pytest.raises(GatewayError):
        calendar.list_events(ROOM_A, sync_token=token, private_property="booking_id=1")


def test_invalidated_sync_token_gives_410(calendar: SandboxCalendar) -> None:
    token = calendar.list_events(ROOM_A)["nextSyncToken"]
    calendar.invalidate_sync_tokens()
    with pytest.raises(GatewayError) as info:
        calendar.list_events(ROOM_A, sync_token=token)
    assert info.value.status == 410 and not info.value.transient
    fresh = calendar.list_events(ROOM_A)["nextSyncToken"]
    assert calendar.list_events(ROOM_A, sync_token=fresh)["items"] == []
    with pytest.raises(GatewayError) as info:
        calendar.list_events(ROOM_B, sync_token=fresh)  # another calendar's token is no good either
    assert info.value.status == 410


def test_freebusy_ignores_cancelled_and_transparent_events(calendar: SandboxCalendar) -> None:
    calendar.insert_event(ROOM_A, make_event("bookedaaaa", day=10, hours=(9, 12)))
    calendar.insert_event(ROOM_A, make_event("freeaaaaaa", day=10, hours=(13, 14), transparency="transparent"))
    calendar.insert_event(ROOM_A, make_event("goneaaaaaa", day=10, hours=(15, 16)))
    calendar.delete_event(ROOM_A, "goneaaaaaa")
    calendar.insert_event(ROOM_A, make_event("later0aaaa", day=11))
    local = {"dateTime": "2025-03-10T18:00:00", "timeZone": "Europe/Berlin"}  # 17:00 UTC
    calendar.insert_event(
        ROOM_B, make_event("berlinaaaa", start=local, end={**local, "dateTime": "2025-03-10T19:00:00"})
    )

    busy = calendar.freebusy([ROOM_A, ROOM_B, "room-c@rooms.example"], T0, T0 + timedelta(hours=12))
    assert busy[ROOM_A] == [{"start": "2025-03-10T09:00:00Z", "end": "2025-03-10T12:00:00Z", "event_id": "bookedaaaa"}]
    assert busy[ROOM_B] == [{"start": "2025-03-10T17:00:00Z", "end": "2025-03-10T18:00:00Z", "event_id": "berlinaaaa"}]
    assert busy["room-c@rooms.example"] == []


def test_freebusy_follows_every_change_another_process_makes(tmp_path: Path, clock: Clock) -> None:
    """The sandbox keeps each calendar's busy times between asks; whatever another process (another instance on the
    same file) writes, moves, cancels, frees or deletes shows in the next answer."""
    asker, other = SandboxCalendar(tmp_path, clock=clock), SandboxCalendar(tmp_path, clock=clock)
    window = (T0 - timedelta(hours=9), T0 + timedelta(hours=15))

    def busy() -> list[tuple[str, str, str]]:
        return [(b["event_id"], b["start"][11:16], b["end"][11:16]) for b in asker.freebusy([ROOM_A], *window)[ROOM_A]]

    assert busy() == []
    other.insert_event(ROOM_A, make_event("firstaaaaa", day=10, hours=(9, 11)))
    assert busy() == [("firstaaaaa", "09:00", "11:00")]
    assert busy() == [("firstaaaaa", "09:00", "11:00")]  # asked again, nothing changed
    other.insert_event(ROOM_A, make_event("secondaaaa", day=10, hours=(13, 14)))
    other.patch_event(ROOM_A, "firstaaaaa", {"end": {"dateTime": "2025-03-10T12:00:00Z"}})
    assert busy() == [("firstaaaaa", "09:00", "12:00"), ("secondaaaa", "13:00", "14:00")]
    other.patch_event(ROOM_A, "secondaaaa", {"transparency": "transparent"})
    assert busy() == [("firstaaaaa", "09:00", "12:00")]
    other.delete_event(ROOM_A, "firstaaaaa")  # Google keeps it, cancelled
    assert busy() == []
    other.insert_event(ROOM_A, make_event("thirdaaaaa", day=10, hours=(15, 16)))
    assert busy() == [("thirdaaaaa", "15:00", "16:00")]
    with other.store.transaction() as tx:  # gone for good from the store (the sandbox's reset does this)
        tx.delete(f"event:{ROOM_A}", "thirdaaaaa")
    assert busy() == []


def test_calendar_state_persists_across_instances(tmp_path: Path, clock: Clock) -> None:
    SandboxCalendar(tmp_path, clock=clock).insert_event(ROOM_A, make_event("bk1d1aaaaa"))
    other = SandboxCalendar(tmp_path, clock=clock)
    assert other.get_event(ROOM_A, "bk1d1aaaaa") is not None
    with pytest.raises(EventExists):
        other.insert_event(ROOM_A, make_event("bk1d1aaaaa"))


def test_load_imports_an_events_list_response(calendar: SandboxCalendar) -> None:
    calendar.load(ROOM_A, {"kind": "calendar#events", "items": [make_event("loadedaaaa", status="confirmed")]})
    assert [e["id"] for e in calendar.list_events(ROOM_A)["items"]] == ["loadedaaaa"]
    calendar.reset()
    assert calendar.is_empty()


# -- mail --------------------------------------------------------------------------------------------------------


def test_mail_is_kept_newest_first_and_sent_once_per_key(mail: SandboxMail, clock: Clock) -> None:
    first = mail.send(
        OutgoingEmail(
            to="ana@example.com",
            subject="Your booking",
            text="See you",
            kind="confirmation",
            booking_id=1,
            attachments=[("invoice.pdf", "application/pdf", b"%PDF-1.7")],
            idempotency_key="booking-1-confirmation",
        )
    )
    clock.advance(minutes=1)
    again = mail.send(
        OutgoingEmail(
            to="ana@example.com", subject="Your booking", text="See you", idempotency_key="booking-1-confirmation"
        )
    )
    other = mail.send(OutgoingEmail(to="bo@example.com", subject="Refund", text="Done", kind="refund", booking_id=2))
    assert again == first and first.startswith("msg_")
    assert [m["id"] for m in mail.messages()] == [other, first]
    [kept] = mail.messages(booking_id=1)
    assert kept["subject"] == "Your booking" and kept["kind"] == "confirmation"
    assert kept["sent_at"] == T0.isoformat()
    assert kept["attachments"][0]["filename"] == "invoice.pdf"
    assert attachment_bytes(kept["attachments"][0]) == b"%PDF-1.7"
    assert base64.b64decode(kept["attachments"][0]["content_b64"]) == b"%PDF-1.7"
    assert mail.messages(kind="refund")[0]["id"] == other
    assert len(mail.messages(limit=1)) == 1


# -- faults ------------------------------------------------------------------------------------------------------


def test_before_fault_has_no_side_effect(payments: SandboxPayments, faults: Faults) -> None:
    faults.fail("create_payment_intent")
    with pytest.raises(GatewayError) as info:
        create_pi(payments, idempotency_key="k1")
    assert info.value.transient and info.value.status == 503 and info.value.provider == "payments"
    assert "injected" in info.value.message
    assert payments.list_payment_intents()["data"] == []
    assert faults.injected == 1 and faults.calls["create_payment_intent"] == 1
    assert create_pi(payments, idempotency_key="k1")["status"] == "requires_payment_method"  # one-shot


def test_after_fault_loses_the_response_but_the_side_effect_happened(payments: SandboxPayments, faults: Faults) -> None:
    faults.fail("create_payment_intent", mode="after")
    with pytest.raises(GatewayError):
        create_pi(payments, idempotency_key="k1")
    [stored] = payments.list_payment_intents()["data"]
    assert create_pi(payments, idempotency_key="k1")["id"] == stored["id"]  # the retry finds the first one
    assert len(payments.list_payment_intents()["data"]) == 1


def test_timeout_fault_happens_after_the_side_effect(calendar: SandboxCalendar, faults: Faults) -> None:
    faults.fail("insert_event", mode="timeout")
    with pytest.raises(TimeoutFault) as info:
        calendar.insert_event(ROOM_A, make_event("bk1d1aaaaa"))
    assert info.value.provider == "calendar"
    assert calendar.get_event(ROOM_A, "bk1d1aaaaa") is not None
    with pytest.raises(EventExists):
        calendar.insert_event(ROOM_A, make_event("bk1d1aaaaa"))


def test_nth_and_times_count_from_when_the_rule_is_added(mail: SandboxMail, faults: Faults) -> None:
    def send(n: int) -> str:
        try:
            mail.send(OutgoingEmail(to="ana@example.com", subject=f"#{n}", text="x"))
            return "ok"
        except GatewayError:
            return "fail"

    send(0)  # before the rule: not counted
    faults.fail("send", nth=2, times=2)
    assert [send(n) for n in range(1, 6)] == ["ok", "fail", "fail", "ok", "ok"]
    assert [m["subject"] for m in mail.messages()] == ["#5", "#4", "#1", "#0"]
    assert faults.calls["send"] == 6 and faults.injected == 2


def test_match_decides_which_calls_count(calendar: SandboxCalendar, faults: Faults) -> None:
    faults.fail("insert_event", match=lambda ctx: ctx["calendar_id"] == ROOM_B, error=GatewayError("quota", status=429))
    calendar.insert_event(ROOM_A, make_event("roomaaaaaa"))
    with pytest.raises(GatewayError) as info:
        calendar.insert_event(ROOM_B, make_event("roombbbbbb"))
    assert info.value.status == 429
    calendar.insert_event(ROOM_B, make_event("roombbbbbb"))
    assert calendar.get_event(ROOM_B, "roombbbbbb") is not None


def test_faults_are_counted_exactly_under_threads(calendar: SandboxCalendar, faults: Faults) -> None:
    faults.fail("get_event", nth=3, times=5)
    failures: list[int] = []

    def worker() -> None:
        for _ in range(10):
            try:
                calendar.get_event(ROOM_A, "nothing")
            except GatewayError:
                failures.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(failures) == 5 and faults.injected == 5 and faults.calls["get_event"] == 80


def test_latency_and_clear(payments: SandboxPayments, faults: Faults) -> None:
    faults.latency("*", 0.05)
    started = time.monotonic()
    payments.list_disputes()
    assert time.monotonic() - started >= 0.05
    faults.fail("list_disputes", times=3)
    faults.clear()
    assert payments.list_disputes()["data"] == [] and faults.injected == 0
    assert faults.calls == {"list_disputes": 1}


def test_argument_errors_are_refused(faults: Faults) -> None:
    with pytest.raises(ValueError):
        faults.fail("send", nth=0)
    with pytest.raises(ValueError):
        faults.fail("send", mode="sideways")  # type: ignore[arg-type]


# -- many processes ----------------------------------------------------------------------------------------------

PROCESSES = 20
PER_PROCESS = 10


def _create_many(store_dir: str, worker: int, go: Any, results: Any) -> None:
    try:
        gateway = SandboxPayments(Path(store_dir))
        go.wait(30)
        ids = [
            create_pi(gateway, idempotency_key=f"w{worker}-{n}", metadata={"worker": str(worker)})["id"]
            for n in range(PER_PROCESS)
        ]
        shared = create_pi(gateway, idempotency_key="shared-key", metadata={})["id"]
        results.put((worker, ids, shared, None))
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put((worker, [], "", repr(exc)))


def test_twenty_processes_create_payments_without_lost_writes(tmp_path: Path) -> None:
    # fork, not spawn: spawn re-runs the parent's __main__, which after the AppTest modules is the Streamlit app.
    # The store opens a fresh SQLite connection per operation, so the children share nothing but the file.
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_create_many, args=(str(tmp_path), w, go, results)) for w in range(PROCESSES)]
    for proc in procs:
        proc.start()
    go.set()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert [error for *_, error in outcomes if error] == []
    created = [pi_id for _, ids, _, _ in outcomes for pi_id in ids]
    shared = {shared_id for _, _, shared_id, _ in outcomes}
    assert len(set(created)) == PROCESSES * PER_PROCESS
    assert len(shared) == 1  # one idempotency key, one PaymentIntent, whoever won the race

    stored = all_ids(SandboxPayments(tmp_path))
    assert sorted(stored) == sorted([*created, *shared])
