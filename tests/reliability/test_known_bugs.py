"""The bugs the fault matrix found (all fixed), each pinned by one small test of what a user would notice."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from models.tables import Booking, BookingLeg, RefundRecord
from services import booking as bk
from tests.reliability import flows
from tests.reliability.harness import clear_faults, fresh_services, quietly


def booking(svc: Any, booking_id: int) -> tuple[Booking, list[BookingLeg], list[RefundRecord]]:
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id)))
        refunds = list(s.exec(select(RefundRecord).where(RefundRecord.booking_id == booking_id)))
    return b, legs, refunds


def live(svc: Any, reference: str) -> list[str]:
    items = svc.calendar.list_events(flows.BOARDROOM, private_property=f"booking_id={reference}")["items"]
    return [e["id"] for e in items if e.get("status") != "cancelled"]


@pytest.fixture
def svc() -> Any:
    services = fresh_services()
    yield services
    services.engine.dispose()


def test_retrying_a_cancellation_whose_refund_answer_was_lost_finishes_it(svc: Any) -> None:
    ctx = flows.confirmed(svc, dates=(flows.NEXT_MON, flows.NEXT_TUE))
    svc.payments.faults.fail("refund", mode="timeout")
    quietly(lambda: bk.cancel_booking(svc, ctx["booking_id"], actor="frontdesk"))
    clear_faults(svc)

    retried = quietly(lambda: bk.cancel_booking(svc, ctx["booking_id"], actor="frontdesk"))

    b, _, refunds = booking(svc, ctx["booking_id"])
    assert isinstance(retried, bk.CancelResult), retried
    assert b.status == "CANCELLED" and live(svc, ctx["reference"]) == [] and len(refunds) == 1


def test_retrying_a_refund_fix_whose_answer_was_lost_closes_the_booking(svc: Any) -> None:
    ctx = flows.finding(svc, "stale_payment", flows.stale_payment(svc), "refund", reason="Changed their mind")
    svc.payments.faults.fail("refund", mode="after")
    flows.run_fix(svc, ctx)
    clear_faults(svc)

    retried = flows.run_fix(svc, ctx)

    b, _, refunds = booking(svc, ctx["booking_id"])
    assert retried.ok, retried.message
    assert b.status == "FAILED" and len(refunds) == 1


def test_a_payment_refunded_before_its_webhook_is_not_confirmed(svc: Any) -> None:
    ctx = flows.started(svc)
    svc.payments.confirm_payment_intent(ctx["pi"])
    paid = svc.payments.retrieve_payment_intent(ctx["pi"])["amount"]  # all of it, tax included
    svc.payments.refund(ctx["pi"], amount_cents=paid, reason="dashboard", idempotency_key="dash-1")

    result = bk.confirm_payment(svc, ctx["pi"])

    assert result.outcome != "confirmed"
    assert live(svc, ctx["reference"]) == []


def test_retrying_create_events_after_a_lost_insert_answer_reinstates_the_booking(svc: Any) -> None:
    ctx = flows.finding(svc, "paid_no_event", flows.paid_no_event(svc), "create_events")
    svc.calendar.faults.fail("insert_event", mode="timeout")
    flows.run_fix(svc, ctx)
    clear_faults(svc)

    retried = flows.run_fix(svc, ctx)

    b, legs, _ = booking(svc, ctx["booking_id"])
    assert retried.ok, retried.message
    assert b.status == "CONFIRMED" and b.confirmation_sent_at is not None
    assert [leg.event_id for leg in legs] == live(svc, ctx["reference"])


def test_retrying_recreate_events_records_the_new_event_on_the_day(svc: Any) -> None:
    ctx = flows._moved_event(svc)
    svc.calendar.faults.fail("insert_event", mode="after")
    flows.run_fix(svc, ctx)
    clear_faults(svc)
    flows.run_fix(svc, ctx)

    _, legs, _ = booking(svc, ctx["booking_id"])
    assert [leg.event_id for leg in legs] == live(svc, ctx["reference"])
    bk.cancel_booking(svc, ctx["booking_id"], actor="frontdesk")
    assert live(svc, ctx["reference"]) == []  # what the customer and staff see: the room is free again


def test_a_failed_booking_that_kept_the_money_stays_a_finding_even_with_its_events(svc: Any) -> None:
    from services.reconciliation import findings, reconcile, sync

    ctx = flows.finding(svc, "paid_no_event", flows.paid_no_event(svc), "create_events")
    svc.calendar.faults.fail("insert_event", mode="timeout")
    flows.run_fix(svc, ctx)  # the event was made, the answer lost: the booking is still FAILED
    clear_faults(svc)
    b, _, _ = booking(svc, ctx["booking_id"])
    assert b.status == "FAILED" and live(svc, ctx["reference"])

    sync.sync(svc)
    reconcile.reconcile(svc)
    still = [f for f in findings.open_findings(svc) if f.booking_id == ctx["booking_id"]]
    assert [f.code for f in still] == ["paid_no_event"] and "marked failed" in still[0].summary
    assert flows.run_fix(svc, {**ctx, "finding_id": still[0].id}).ok
    assert booking(svc, ctx["booking_id"])[0].status == "CONFIRMED"
