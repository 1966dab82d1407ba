"""Issue 13: one web client can no longer hold the whole venue. Unpaid web holds are capped per email and per client,
start short and get the full hold once the customer reaches payment; staff phone holds are not limited. Run on
SQLite and PostgreSQL (the count is taken under the hold's own transaction)."""

from __future__ import annotations

import threading
from datetime import date, time, timedelta
from typing import Any

import pytest
from sqlmodel import select

from models.tables import AuditLog, Booking, SlotClaim
from services import booking as bk
from services.core.errors import InvalidState, NotAvailable, TooManyHolds

DAYS = [date(2026, 3, d) for d in (4, 5, 6, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20)]


def refusals(svc: Any) -> list[dict[str, Any]]:
    with svc.session() as s:
        return [a.payload for a in s.exec(select(AuditLog).where(AuditLog.action == "booking.hold.refused"))]


def claims(svc: Any, booking_id: int) -> list[SlotClaim]:
    with svc.session() as s:
        return list(s.exec(select(SlotClaim).where(SlotClaim.booking_id == booking_id)))


def test_one_email_holds_two_slots_at_most_and_another_customer_still_books(
    make_services: Any, db_url: str, booking_request: Any
) -> None:
    svc = make_services(db_url)
    for day in DAYS[:2]:
        bk.start_booking(svc, booking_request(dates=[day], customer_email="Flood@Example.org"), actor="customer")
    with pytest.raises(TooManyHolds) as err:  # the same address in other letters is the same customer
        bk.start_booking(svc, booking_request(dates=[DAYS[2]], customer_email="flood@example.ORG"), actor="customer")
    assert err.value.message == "You already have 2 unpaid bookings waiting for payment: pay or let them lapse first"
    with svc.session() as s:
        assert len(list(s.exec(select(Booking)))) == 2  # nothing of the refused request was kept
    [refused] = refusals(svc)
    assert refused["limit"] == "email" and refused["held"] == 2 and refused["dates"] == ["2026-03-06"]

    other = bk.start_booking(svc, booking_request(dates=[DAYS[2]], customer_email="zoe@example.org"), actor="customer")
    assert other.booking_id


def test_one_client_address_is_capped_across_emails(make_services: Any, db_url: str, booking_request: Any) -> None:
    svc = make_services(db_url, hold_limit_per_client=3)
    for n, day in enumerate(DAYS[:3]):
        req = booking_request(dates=[day], customer_email=f"bot{n}@example.org", client_key="k" * 64)
        bk.start_booking(svc, req, actor="customer")
    with svc.session() as s:
        assert {b.client_key for b in s.exec(select(Booking))} == {"k" * 64}
    with pytest.raises(TooManyHolds, match="Your connection already has 3 unpaid bookings"):
        req = booking_request(dates=[DAYS[3]], customer_email="bot9@example.org", client_key="k" * 64)
        bk.start_booking(svc, req, actor="customer")
    [refused] = refusals(svc)
    assert refused["limit"] == "client" and refused["client_key"] == "k" * 64
    # Another client (another key), and staff taking a phone booking, are not held back.
    bk.start_booking(
        svc, booking_request(dates=[DAYS[3]], customer_email="bot9@example.org", client_key="other"), actor="c"
    )
    for day in DAYS[4:8]:
        bk.start_booking(
            svc, booking_request(dates=[day], customer_email="bot0@example.org", channel="phone"), actor="desk"
        )


def test_a_paid_or_lapsed_hold_no_longer_counts(make_services: Any, db_url: str, booking_request: Any) -> None:
    svc = make_services(db_url)
    first = bk.start_booking(svc, booking_request(dates=[DAYS[0]]), actor="customer")
    bk.start_booking(svc, booking_request(dates=[DAYS[1]]), actor="customer")
    with pytest.raises(TooManyHolds):
        bk.start_booking(svc, booking_request(dates=[DAYS[2]]), actor="customer")
    assert bk.sandbox_pay(svc, first.booking_id, actor="stripe-webhook").outcome == "confirmed"
    bk.start_booking(svc, booking_request(dates=[DAYS[2]]), actor="customer")
    with pytest.raises(TooManyHolds):
        bk.start_booking(svc, booking_request(dates=[DAYS[3]]), actor="customer")
    svc.clock.advance(minutes=11)  # the short web holds ran out, nobody reached payment
    bk.start_booking(svc, booking_request(dates=[DAYS[3]]), actor="customer")


def test_concurrent_requests_cannot_pass_the_limit(make_services: Any, db_url: str, booking_request: Any) -> None:
    svc = make_services(db_url)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(day: date) -> None:
        barrier.wait()
        try:
            bk.start_booking(svc, booking_request(dates=[day], client_key="flood"), actor="customer")
            outcomes.append("held")
        except TooManyHolds:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(day,)) for day in DAYS[:8]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["held"] * 2 + ["refused"] * 6
    assert len(refusals(svc)) == 6


def test_a_web_hold_is_short_until_the_customer_reaches_payment(
    make_services: Any, db_url: str, booking_request: Any
) -> None:
    svc = make_services(db_url)
    now = svc.now()
    started = bk.start_booking(svc, booking_request(), actor="customer")
    assert started.hold_expires_at == now + timedelta(minutes=10)
    assert {c.expires_at for c in claims(svc, started.booking_id)} == {now + timedelta(minutes=10)}

    svc.clock.advance(minutes=4)
    until = bk.reach_payment(svc, started.booking_id)
    assert until == now + timedelta(minutes=34)
    assert {c.expires_at for c in claims(svc, started.booking_id)} == {until}
    svc.clock.advance(minutes=5)  # the pay page loaded again: once only, never longer
    assert bk.reach_payment(svc, started.booking_id) == until
    with svc.session() as s:
        extended = list(s.exec(select(AuditLog).where(AuditLog.action == "booking.hold.extended")))
        assert [a.booking_id for a in extended] == [started.booking_id]
        assert s.get(Booking, started.booking_id).hold_expires_at == until  # type: ignore[union-attr]

    # Past the short hold the slot would have been free again; with the full hold it is still the customer's.
    svc.clock.advance(minutes=10)
    with pytest.raises(NotAvailable):
        bk.start_booking(svc, booking_request(customer_email="zoe@example.org"), actor="customer")

    bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook")
    with pytest.raises(InvalidState, match="not waiting for payment"):
        bk.reach_payment(svc, started.booking_id)


def test_a_phone_hold_keeps_its_long_hold(make_services: Any, db_url: str, booking_request: Any) -> None:
    svc = make_services(db_url)
    started = bk.start_booking(svc, booking_request(channel="phone", start=time(13), end=time(15)), actor="desk")
    assert started.hold_expires_at == svc.now() + timedelta(minutes=svc.settings.phone_hold_minutes)
    assert bk.reach_payment(svc, started.booking_id) == started.hold_expires_at
