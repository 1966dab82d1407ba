"""Refund overrides (runbook 003's dual approval) on sandbox gateways: what staff, finance and the customer notice."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from sqlmodel import select

from models.tables import AuditLog, BookingLeg, EmailOutbox, RefundOverride, RefundRecord
from services import booking as bk
from services.core.errors import InvalidState, ValidationError
from services.finance import override_queries as oq
from services.finance import overrides as ov

TWO_DAYS = (date(2026, 3, 9), date(2026, 3, 10))  # Boardroom 10:00–12:00: $90.00 a day
DAY = 9000
REQUESTER, MANAGER, FINANCE, ADMIN = "frontdesk@venue", "mia.manager@venue", "fred.finance@venue", "ada.admin@venue"


def legs(svc: Any, booking_id: int) -> list[BookingLeg]:
    with svc.session() as s:
        return list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(BookingLeg.day)))


def actions(svc: Any, booking_id: int) -> list[str]:
    with svc.session() as s:
        rows = s.exec(select(AuditLog).where(AuditLog.booking_id == booking_id).order_by(AuditLog.id))
        return [a.action for a in rows]


def override(svc: Any, override_id: int) -> RefundOverride:
    with svc.session() as s:
        row = s.get(RefundOverride, override_id)
        assert row is not None
        return row


def stripe_refunds(svc: Any, pi: str) -> list[int]:
    return [r["amount"] for r in svc.payments.list_refunds(payment_intent_id=pi)["data"]]


def live_days(svc: Any, reference: str) -> list[str]:
    items = svc.calendar.list_events("boardroom@group.calendar.google.com", private_property=f"booking_id={reference}")
    return sorted(
        e["extendedProperties"]["private"]["booking_date"] for e in items["items"] if e.get("status") != "cancelled"
    )


@pytest.fixture
def paid(svc: Any, booking_request: Any) -> Any:
    """A paid two-day booking, looked at 30 h before its first day: day one is in the 50 % band, day two in 100 %."""
    started = bk.start_booking(svc, booking_request(dates=TWO_DAYS), actor="customer")
    assert bk.sandbox_pay(svc, started.booking_id, actor="stripe-webhook").outcome == "confirmed"
    svc.clock.at = legs(svc, started.booking_id)[0].starts_at - timedelta(hours=30)
    return started


def day_one(svc: Any, paid: Any) -> int:
    leg_id = legs(svc, paid.booking_id)[0].id
    assert leg_id is not None
    return leg_id


def ask(svc: Any, paid: Any, cents: int = DAY, leg_ids: list[int] | None = None, **kw: Any) -> ov.OverrideOutcome:
    kw.setdefault("reason", "The customer's flight was cancelled by the airline")
    kw.setdefault("actor", REQUESTER)
    return ov.request_override(svc, paid.booking_id, leg_ids=leg_ids or [day_one(svc, paid)], refund_cents=cents, **kw)


# ------------------------------------------------------------------------------------------- request


def test_the_policy_quote_is_shown_per_day(svc: Any, paid: Any) -> None:
    quotes = bk.cancellation_quote(svc, paid.booking_id)
    assert [(leg.day, q.percent, q.refund_cents) for leg, q in quotes] == [
        (TWO_DAYS[0], 50, DAY // 2),
        (TWO_DAYS[1], 100, DAY),
    ]
    assert [q.band for _, q in quotes] == ["50 % (30 h before)", "100 % (54 h before)"]


def test_a_request_above_the_policy_waits_and_changes_nothing_at_stripe(svc: Any, paid: Any) -> None:
    outcome = ask(svc, paid)
    assert outcome.status == "pending"
    assert "$90.00 for Mon 9 Mar (the policy gives $45.00)" in outcome.message
    assert "waits for a manager's and a finance approval" in outcome.message
    row = override(svc, outcome.override_id)
    assert (row.status, row.policy_refund_cents, row.requested_refund_cents, row.requested_by) == (
        "pending",
        DAY // 2,
        DAY,
        REQUESTER,
    )
    assert stripe_refunds(svc, paid.payment_intent) == []
    assert [leg.state for leg in legs(svc, paid.booking_id)] == ["CONFIRMED", "CONFIRMED"]
    assert live_days(svc, paid.reference) == ["2026-03-09", "2026-03-10"]
    assert [m["kind"] for m in svc.mail.messages(booking_id=paid.booking_id)] == ["confirmation"]
    assert actions(svc, paid.booking_id)[-1] == "booking.override.requested"
    [queued] = oq.list_pending(svc)
    assert (queued.reference, queued.room_name, queued.days, queued.extra_cents) == (
        paid.reference,
        "Boardroom",
        [TWO_DAYS[0]],
        DAY // 2,
    )


def test_a_refund_within_the_policy_needs_no_approval(svc: Any, paid: Any) -> None:
    with pytest.raises(ValidationError, match=r"not above the policy refund of \$45\.00.*cancel them normally"):
        ask(svc, paid, cents=DAY // 2)
    assert oq.list_overrides(svc) == []


def test_more_than_was_paid_for_those_days_is_refused(svc: Any, paid: Any) -> None:
    with pytest.raises(ValidationError, match=r"At most \$90\.00 can be refunded for these days"):
        ask(svc, paid, cents=DAY + 1)
    assert oq.list_overrides(svc) == []


def test_a_reason_is_required_and_one_open_request_per_day(svc: Any, paid: Any) -> None:
    with pytest.raises(ValidationError, match="Give a reason"):
        ask(svc, paid, reason="   ")
    first = ask(svc, paid)
    with pytest.raises(InvalidState, match=f"Override #{first.override_id} for Mon 9 Mar is still open"):
        ask(svc, paid, cents=DAY * 2, leg_ids=[leg.id for leg in legs(svc, paid.booking_id)])


def test_days_already_cancelled_cannot_be_asked_for(svc: Any, paid: Any) -> None:
    bk.cancel_booking(svc, paid.booking_id, actor=REQUESTER, leg_ids=[day_one(svc, paid)])
    with pytest.raises(InvalidState, match="Mon 9 Mar is cancelled"):
        ask(svc, paid)


# ------------------------------------------------------------------------------------------- signatures


def test_one_signature_does_nothing(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    outcome = ov.approve(svc, asked.override_id, actor=MANAGER, role="manager")
    assert outcome.status == "pending"
    assert outcome.message == "Approved as manager. It now waits for the finance approval."
    assert stripe_refunds(svc, paid.payment_intent) == []
    assert [leg.state for leg in legs(svc, paid.booking_id)] == ["CONFIRMED", "CONFIRMED"]
    row = override(svc, asked.override_id)
    assert (row.manager_approved_by, row.finance_approved_by) == (MANAGER, None)


def test_the_same_person_cannot_sign_both_slots(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid, actor=ADMIN)
    # The requester may sign one slot: an admin may take either.
    assert ov.approve(svc, asked.override_id, actor=ADMIN, role="admin").status == "pending"
    assert override(svc, asked.override_id).manager_approved_by == ADMIN
    with pytest.raises(ov.NotAllowed, match=re.escape("You already approved override #1 (as manager)")):
        ov.approve(svc, asked.override_id, actor=ADMIN, role="admin", slot="finance")
    with pytest.raises(ov.NotAllowed, match="already approved"):  # same person, other letter case, other role
        ov.approve(svc, asked.override_id, actor=ADMIN.upper(), role="finance")
    assert stripe_refunds(svc, paid.payment_intent) == []


def test_a_slot_already_signed_is_refused(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    ov.approve(svc, asked.override_id, actor=MANAGER, role="manager")
    with pytest.raises(
        InvalidState, match=re.escape("manager approval of override #1 is already given (by mia.manager")
    ):
        ov.approve(svc, asked.override_id, actor="other.manager@venue", role="manager")
    with pytest.raises(ov.NotAllowed, match="signs the manager approval, not the finance one"):
        ov.approve(svc, asked.override_id, actor="other.manager@venue", role="manager", slot="finance")


def test_front_desk_cannot_sign_or_reject(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    with pytest.raises(ov.NotAllowed, match="Front desk cannot approve a refund above the policy"):
        ov.approve(svc, asked.override_id, actor="someone@venue", role="frontdesk")
    with pytest.raises(ov.NotAllowed, match="Front desk cannot reject"):
        ov.reject(svc, asked.override_id, actor="someone@venue", role="frontdesk", note="no")
    row = override(svc, asked.override_id)
    assert (row.status, row.manager_approved_by, row.finance_approved_by) == ("pending", None, None)
    assert oq.signing_problem(row, actor="someone@venue", role="frontdesk") is not None
    assert oq.signing_problem(row, actor=FINANCE, role="finance") is None


# ------------------------------------------------------------------------------------------- execution


def test_manager_and_finance_approvals_execute_the_override(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    ov.approve(svc, asked.override_id, actor=MANAGER, role="manager")
    outcome = ov.approve(svc, asked.override_id, actor=FINANCE, role="finance")

    assert outcome.status == "executed", outcome.message
    assert outcome.message == f"Override #1 executed: cancelled {paid.reference} on Mon 9 Mar and refunded $90.00"
    assert stripe_refunds(svc, paid.payment_intent) == [DAY]
    with svc.session() as s:
        [record] = s.exec(select(RefundRecord).where(RefundRecord.booking_id == paid.booking_id)).all()
    assert (record.origin, record.amount_cents, record.policy_quote_cents) == ("cancellation", DAY, DAY // 2)
    assert record.reason.startswith(f"Override #1 (approved by {MANAGER} and {FINANCE}): The customer's flight")
    assert record.leg_ids == [day_one(svc, paid)] and record.actor == FINANCE
    assert [(leg.state, leg.refunded_cents) for leg in legs(svc, paid.booking_id)] == [
        ("CANCELLED", DAY),
        ("CONFIRMED", 0),
    ]
    assert live_days(svc, paid.reference) == ["2026-03-10"]
    with svc.session() as s:
        emails = s.exec(select(EmailOutbox).where(EmailOutbox.booking_id == paid.booking_id)).all()
    [cancellation] = [e for e in emails if e.kind == "cancellation"]
    assert "$90.00" in cancellation.text
    row = override(svc, asked.override_id)
    assert (row.status, row.refunded_cents, row.executed_at, row.error) == ("executed", DAY, svc.now(), None)
    acts = actions(svc, paid.booking_id)
    start = acts.index("booking.override.requested")
    assert acts[start:] == [
        "booking.override.requested",
        "booking.override.signed",
        "booking.override.signed",
        "booking.override.approved",
        "booking.refund.cancellation",
        "booking.cancelled",
        "booking.event.deleted",
        "email.cancellation.sent",
        "booking.override.executed",
    ]
    assert oq.list_pending(svc) == []


def test_both_days_spread_over_their_legs(svc: Any, paid: Any) -> None:
    both = [leg.id for leg in legs(svc, paid.booking_id) if leg.id is not None]
    asked = ask(svc, paid, cents=2 * DAY, leg_ids=both)
    assert override(svc, asked.override_id).policy_refund_cents == DAY // 2 + DAY
    ov.approve(svc, asked.override_id, actor=FINANCE, role="finance")
    assert ov.approve(svc, asked.override_id, actor=ADMIN, role="admin").status == "executed"  # admin: the free slot
    assert [(leg.state, leg.refunded_cents) for leg in legs(svc, paid.booking_id)] == [("CANCELLED", DAY)] * 2
    assert stripe_refunds(svc, paid.payment_intent) == [2 * DAY]


def test_reconciliation_accepts_an_approved_refund_above_the_policy(svc: Any, paid: Any) -> None:
    from services.reconciliation import findings, reconcile, sync

    asked = ask(svc, paid)
    ov.approve(svc, asked.override_id, actor=MANAGER, role="manager")
    assert ov.approve(svc, asked.override_id, actor=FINANCE, role="finance").status == "executed"
    sync.sync(svc, actor="test")
    reconcile.reconcile(svc, actor="test")
    assert "refund_policy_mismatch" not in {f.code for f in findings.open_findings(svc)}
    # The same refund without the approvals is flagged.
    with svc.session() as s:
        row = s.get(RefundOverride, asked.override_id)
        assert row is not None
        row.status = "rejected"
    reconcile.reconcile(svc, actor="test")
    assert "refund_policy_mismatch" in {f.code for f in findings.open_findings(svc)}


def test_executing_twice_refunds_once(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    ov.approve(svc, asked.override_id, actor=MANAGER, role="manager")
    ov.approve(svc, asked.override_id, actor=FINANCE, role="finance")
    with pytest.raises(InvalidState, match="already executed"):
        ov.approve(svc, asked.override_id, actor=ADMIN, role="admin")
    with pytest.raises(InvalidState, match="already executed"):
        ov.retry(svc, asked.override_id, actor=ADMIN, role="admin")
    # A crash after the refund but before the override was marked: a retry finishes the record, refunds nothing.
    with svc.session() as s:
        row = s.get(RefundOverride, asked.override_id)
        assert row is not None
        row.status, row.refunded_cents = "approved", None
    again = ov.retry(svc, asked.override_id, actor=ADMIN, role="admin")
    assert again.status == "executed" and override(svc, asked.override_id).refunded_cents == DAY
    assert stripe_refunds(svc, paid.payment_intent) == [DAY]


def test_a_booking_cancelled_meanwhile_fails_clearly_and_moves_no_money(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    ov.approve(svc, asked.override_id, actor=MANAGER, role="manager")
    bk.cancel_booking(svc, paid.booking_id, actor="someone.else@venue")  # by the policy: $45 + $90
    outcome = ov.approve(svc, asked.override_id, actor=FINANCE, role="finance")
    assert outcome.status == "failed" and not outcome.ok
    assert outcome.message == (
        "Override #1 was not executed. The booking changed since the request: Mon 9 Mar is now cancelled. "
        "Nothing was refunded or cancelled."
    )
    assert stripe_refunds(svc, paid.payment_intent) == [DAY // 2 + DAY]  # only the ordinary cancellation
    row = override(svc, asked.override_id)
    assert row.status == "failed" and row.error and "Mon 9 Mar is now cancelled" in row.error
    assert actions(svc, paid.booking_id)[-1] == "booking.override.failed"
    [still_open] = oq.list_pending(svc)  # an approver closes it
    ov.reject(svc, still_open.id, actor=FINANCE, role="finance", note="Already cancelled by the policy")
    assert override(svc, asked.override_id).status == "rejected"


def test_money_already_refunded_in_stripe_fails_before_anything_moves(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    ov.approve(svc, asked.override_id, actor=MANAGER, role="manager")
    svc.payments.refund(paid.payment_intent, amount_cents=15000, reason="dashboard", idempotency_key="dash-1")
    outcome = ov.approve(svc, asked.override_id, actor=FINANCE, role="finance")
    assert outcome.status == "failed"
    assert "Stripe shows 30.00 left to refund, less than the 90.00 due" in outcome.message
    assert stripe_refunds(svc, paid.payment_intent) == [15000]
    assert [leg.state for leg in legs(svc, paid.booking_id)] == ["CONFIRMED", "CONFIRMED"]


def test_a_stripe_failure_can_be_retried_by_an_approver(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    ov.approve(svc, asked.override_id, actor=MANAGER, role="manager")
    svc.payments.faults.fail("refund")
    failed = ov.approve(svc, asked.override_id, actor=FINANCE, role="finance")
    assert failed.status == "failed" and "nothing was cancelled" in failed.message
    assert [leg.state for leg in legs(svc, paid.booking_id)] == ["CONFIRMED", "CONFIRMED"]
    with pytest.raises(ov.NotAllowed, match="Front desk cannot retry"):
        ov.retry(svc, asked.override_id, actor=REQUESTER, role="frontdesk")
    done = ov.retry(svc, asked.override_id, actor=FINANCE, role="finance")
    assert done.status == "executed" and stripe_refunds(svc, paid.payment_intent) == [DAY]
    assert "booking.override.retried" in actions(svc, paid.booking_id)


# ------------------------------------------------------------------------------------------- reject, withdraw


def test_reject_needs_a_note_and_ends_the_request(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    ov.approve(svc, asked.override_id, actor=MANAGER, role="manager")
    with pytest.raises(ValidationError, match="Say why it is rejected"):
        ov.reject(svc, asked.override_id, actor=FINANCE, role="finance", note=" ")
    outcome = ov.reject(svc, asked.override_id, actor=FINANCE, role="finance", note="Policy was explained at booking")
    assert outcome.status == "rejected"
    row = override(svc, asked.override_id)
    assert (row.decided_by, row.decision_note) == (FINANCE, "Policy was explained at booking")
    with pytest.raises(InvalidState, match=re.escape("was rejected by fred.finance@venue")):
        ov.approve(svc, asked.override_id, actor=ADMIN, role="admin")
    assert stripe_refunds(svc, paid.payment_intent) == []
    assert [leg.state for leg in legs(svc, paid.booking_id)] == ["CONFIRMED", "CONFIRMED"]
    assert actions(svc, paid.booking_id)[-1] == "booking.override.rejected"
    assert [v.row.status for v in oq.list_overrides(svc, booking_id=paid.booking_id)] == ["rejected"]


def test_only_the_requester_withdraws_and_the_days_can_be_asked_for_again(svc: Any, paid: Any) -> None:
    asked = ask(svc, paid)
    with pytest.raises(ov.NotAllowed, match=f"Only {REQUESTER}, who asked for override #1, can withdraw it"):
        ov.withdraw(svc, asked.override_id, actor=MANAGER)
    assert ov.withdraw(svc, asked.override_id, actor=REQUESTER, note="Customer kept the booking").status == "withdrawn"
    assert actions(svc, paid.booking_id)[-1] == "booking.override.withdrawn"
    with pytest.raises(InvalidState, match="was withdrawn"):
        ov.withdraw(svc, asked.override_id, actor=REQUESTER)
    assert ask(svc, paid, cents=DAY - 500).status == "pending"
    assert stripe_refunds(svc, paid.payment_intent) == []
