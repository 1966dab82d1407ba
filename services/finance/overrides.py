"""Refund overrides: cancelling days with a refund above what the cancellation policy gives (runbook 003: "overrides
require dual approval").

Staff ask (request_override); the request waits as a pending RefundOverride holding the policy amount next to the
amount asked for. Two different people sign it, one in the manager slot and one in the finance slot (an admin may take
either); the second signature executes it at once: under the booking's lease the precondition is checked again (the
days still active, the amount still refundable, not already executed), then the days are cancelled through the booking
service with the override's amount (a Stripe refund whose idempotency key names the override, a RefundRecord
"cancellation" whose policy_quote_cents is what the policy gave, events deleted, the cancellation email). A failure
leaves the override `failed` with its error, for an approver to retry or reject. Every state change is audited on the
booking as `booking.override.*`.

Signing is a compare-and-set on the slot (`sign_slot`, then `seal` once both are given), so two people clicking at once
can neither both take one slot nor, being the same person in two tabs, take both. A claim against a damage deposit
(services.finance.deposits) is signed through the same two functions, under the same rules
(services.finance.two_signatures). The queue, the states in words and the signing rules are
services.finance.override_queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models.tables import BookingLeg, DepositClaim, LegState, OverrideStatus, RefundOverride, RefundRecord
from services import booking as bk
from services.core import audit
from services.core.context import Services
from services.core.errors import BookingBusy, DomainError, InvalidState, NotAllowed, NotFound, ValidationError
from services.finance import override_queries as oq
from services.finance.two_signatures import SLOTS
from services.rules.fmt import day_label, days_label, money


@dataclass(frozen=True)
class OverrideOutcome:
    override_id: int
    status: str  # the override's status afterwards
    message: str  # one plain sentence for staff
    problems: list[str] = field(default_factory=list)  # after an execution: event or email trouble, money done

    @property
    def ok(self) -> bool:
        return self.status != "failed"


# --------------------------------------------------------------------------------------------------- helpers


def _get(s: Session, override_id: int) -> RefundOverride:
    row = s.get(RefundOverride, override_id)
    if row is None:
        raise NotFound(f"No refund override #{override_id}")
    return row


def _legs(s: Session, booking_id: int, leg_ids: Sequence[int]) -> list[BookingLeg]:
    wanted = set(leg_ids)
    return [leg for leg in bk.booking_legs(s, booking_id) if leg.id in wanted]


def _refund_reason(row: RefundOverride) -> str:
    """The RefundRecord's (and Stripe's) reason: names the override and both approvers. Fixed once both have signed,
    so a retry sends Stripe exactly the same request under the same idempotency key."""
    head = f"Override #{row.id} (approved by {row.manager_approved_by} and {row.finance_approved_by}): "
    return (head + row.reason)[: oq.MAX_TEXT]


def _refund_key(reference: str, row: RefundOverride) -> str:
    return f"roomdesk-{reference}-override-{row.id}"


# --------------------------------------------------------------------------------------------------- request


def request_override(
    svc: Services,
    booking_id: int,
    *,
    leg_ids: Sequence[int],
    refund_cents: int,
    reason: str,
    actor: str,
    now: datetime | None = None,
) -> OverrideOutcome:
    """Ask to cancel these days with a refund above the policy's: stored pending, nothing cancelled or refunded."""
    now = bk.resolve_now(svc, now)
    actor = oq.person(actor)
    reason = reason.strip()
    problems = []
    if not reason:
        problems.append("Give a reason: the approvers decide on it")
    elif len(reason) > oq.MAX_TEXT:
        problems.append(f"The reason is too long ({len(reason)} characters; at most {oq.MAX_TEXT})")
    if not leg_ids:
        problems.append("Choose at least one day to cancel")
    if problems:
        raise ValidationError(problems)
    wanted = sorted(set(leg_ids))

    with bk.lease(svc, booking_id):
        with svc.session() as s:
            booking = bk.load_booking(s, booking_id)
            legs = _legs(s, booking_id, wanted)
            if len(legs) != len(wanted):
                raise NotFound(f"Some of these days are not part of booking {booking.reference}")
            inactive = [leg for leg in legs if leg.state != LegState.CONFIRMED]
            if inactive:
                states = ", ".join(f"{day_label(leg.day)} is {leg.state.replace('_', ' ').lower()}" for leg in inactive)
                raise InvalidState(f"Only paid, active days can be cancelled with a refund: {states}")
            clash = _open_for(s, booking_id, wanted)
            if clash is not None:
                raise InvalidState(
                    f"Override #{clash.id} for {days_label([leg.day for leg in legs if leg.id in clash.leg_ids])} is "
                    f"still open ({clash.status}): withdraw or reject it first"
                )
            currency = booking.currency
        quotes = bk.cancellation_quote(svc, booking_id, wanted, now=now)
        policy = sum(q.refund_cents for _, q in quotes)
        left = sum(q.left_cents for _, q in quotes)
        if refund_cents <= policy:
            raise ValidationError(
                f"{money(refund_cents, currency)} is not above the policy refund of {money(policy, currency)} for "
                "these days: no approval is needed, cancel them normally"
            )
        if refund_cents > left:
            paid = sum(q.paid_cents for _, q in quotes)
            raise ValidationError(
                f"At most {money(left, currency)} can be refunded for these days (paid {money(paid, currency)}, "
                f"already refunded {money(paid - left, currency)})"
            )
        with svc.session() as s:
            booking = bk.load_booking(s, booking_id)
            row = RefundOverride(
                booking_id=booking_id,
                leg_ids=wanted,
                policy_refund_cents=policy,
                requested_refund_cents=refund_cents,
                currency=currency,
                reason=reason,
                status=OverrideStatus.PENDING,
                requested_by=actor,
                requested_at=now,
            )
            s.add(row)
            s.flush()
            days = [leg.day for leg, _ in quotes]
            audit.record(
                s,
                "booking.override.requested",
                actor=actor,
                at=now,
                booking=booking,
                override=row.id,
                days=days,
                policy_refund_cents=policy,
                requested_refund_cents=refund_cents,
                reason=reason,
                message=f"Refund above the policy requested (override #{row.id}): waits for manager and finance",
            )
            assert row.id is not None
            override_id = row.id
    return OverrideOutcome(
        override_id,
        "pending",
        f"Override #{override_id}: refunding {money(refund_cents, currency)} for {days_label(days)} (the policy gives "
        f"{money(policy, currency)}) now waits for a manager's and a finance approval. Nothing is cancelled yet.",
    )


def _open_for(s: Session, booking_id: int, leg_ids: Sequence[int]) -> RefundOverride | None:
    """An open override of this booking sharing any of these days."""
    rows = s.exec(
        select(RefundOverride).where(RefundOverride.booking_id == booking_id, col(RefundOverride.status).in_(oq.OPEN))
    )
    return next((r for r in rows if set(r.leg_ids) & set(leg_ids)), None)


# --------------------------------------------------------------------------------------------------- sign


def approve(
    svc: Services,
    override_id: int,
    *,
    actor: str,
    role: str,
    slot: str | None = None,
    now: datetime | None = None,
) -> OverrideOutcome:
    """Sign one slot (manager or finance; an admin either, `slot` says which). The second signature executes the
    override at once."""
    now = bk.resolve_now(svc, now)
    actor = oq.person(actor)
    with svc.session() as s:
        row = _get(s, override_id)
        chosen = oq.slot_for(row, actor, role, slot)
        other = next(x for x in SLOTS if x != chosen)
        if not sign_slot(s, RefundOverride, override_id, slot=chosen, actor=actor, now=now):
            raise InvalidState(f"Override #{override_id} changed while you looked at it; reload and check it again")
        booking = bk.load_booking(s, row.booking_id)
        audit.record(
            s,
            "booking.override.signed",
            actor=actor,
            at=now,
            booking=booking,
            override=override_id,
            slot=chosen,
            role=role,
            message=f"Override #{override_id} approved ({chosen})",
        )
        both = seal(s, RefundOverride, override_id)
        if both:
            s.refresh(row)
            audit.record(
                s,
                "booking.override.approved",
                actor=actor,
                at=now,
                booking=booking,
                override=override_id,
                manager=row.manager_approved_by,
                finance=row.finance_approved_by,
                message=f"Override #{override_id} has both approvals: executing",
            )
    if both:
        return _execute(svc, override_id, actor=actor, now=now)
    return OverrideOutcome(override_id, "pending", f"Approved as {chosen}. It now waits for the {other} approval.")


# The rows that wait for two signatures: a refund above the policy, a claim against a damage deposit. Both carry
# status, manager_approved_by/at and finance_approved_by/at.
Signed = type[RefundOverride] | type[DepositClaim]


def sign_slot(s: Session, table: Signed, row_id: int, *, slot: str, actor: str, now: datetime) -> bool:
    """Record `actor`'s signature in `slot` if the row is still pending, the slot still empty and the other slot not
    signed by this same person (two tabs, one person): a compare-and-set, so two clicks at once cannot both sign.
    False when the row changed meanwhile (the caller says so; nothing is recorded)."""
    other = next(x for x in SLOTS if x != slot)
    mine, theirs = getattr(table, f"{slot}_approved_by"), getattr(table, f"{other}_approved_by")
    signed = s.execute(
        sa.update(table)
        .where(col(table.id) == row_id, col(table.status) == "pending")
        .where(col(mine).is_(None))
        .where(sa.or_(col(theirs).is_(None), sa.func.lower(col(theirs)) != actor.lower()))
        .values({f"{slot}_approved_by": actor, f"{slot}_approved_at": now})
    ).rowcount  # type: ignore[attr-defined]
    return bool(signed)


def seal(s: Session, table: Signed, row_id: int) -> bool:
    """pending → approved once both slots are signed; True for the one call that makes the change (the caller then
    acts on it), False otherwise."""
    done = s.execute(
        sa.update(table)
        .where(col(table.id) == row_id, col(table.status) == "pending")
        .where(col(table.manager_approved_by).is_not(None))
        .where(col(table.finance_approved_by).is_not(None))
        .values(status="approved")
    ).rowcount  # type: ignore[attr-defined]
    return bool(done)


def retry(svc: Services, override_id: int, *, actor: str, role: str, now: datetime | None = None) -> OverrideOutcome:
    """Execute a failed (or interrupted) override again; it is checked again first, and never refunds twice."""
    now = bk.resolve_now(svc, now)
    actor = oq.person(actor)
    oq.check_approver(role, "retry")
    with svc.session() as s:
        row = _get(s, override_id)
        if row.status not in ("failed", "approved"):
            raise InvalidState(oq.status_sentence(row) if row.status != "pending" else "It still needs its approvals")
        audit.record(
            s,
            "booking.override.retried",
            actor=actor,
            at=now,
            booking=bk.load_booking(s, row.booking_id),
            override=override_id,
            error=row.error,
        )
    return _execute(svc, override_id, actor=actor, now=now)


# --------------------------------------------------------------------------------------------------- execute


def _execute(svc: Services, override_id: int, *, actor: str, now: datetime) -> OverrideOutcome:
    with svc.session() as s:
        booking_id = _get(s, override_id).booking_id
    try:
        with bk.lease(svc, booking_id):
            return _execute_locked(svc, override_id, actor, now)
    except BookingBusy:
        return _fail(svc, override_id, actor, now, "The booking is being processed right now; retry in a minute")


def _execute_locked(svc: Services, override_id: int, actor: str, now: datetime) -> OverrideOutcome:
    with svc.session() as s:
        row = _get(s, override_id)
        if row.status == "executed":
            return OverrideOutcome(override_id, "executed", oq.status_sentence(row))
        if row.status not in ("approved", "failed"):
            raise InvalidState(oq.status_sentence(row))
        booking = bk.load_booking(s, row.booking_id)
        legs = _legs(s, row.booking_id, row.leg_ids)
        made = s.exec(
            select(RefundRecord).where(
                RefundRecord.booking_id == row.booking_id,
                col(RefundRecord.reason).startswith(f"Override #{row.id} "),
            )
        ).first()
        reference, currency = booking.reference, booking.currency
        reason, key = _refund_reason(row), _refund_key(booking.reference, row)
        amount, leg_ids = row.requested_refund_cents, list(row.leg_ids)
    if made is not None and not any(leg.state == LegState.CONFIRMED for leg in legs):
        # An earlier run refunded and cancelled but stopped before saying so: finish the record, refund nothing.
        return _executed(svc, override_id, actor, now, made.amount_cents, [], recovered=True)
    problem = _precondition(legs, leg_ids, amount, currency)
    if problem:
        return _fail(svc, override_id, actor, now, f"{problem}. Nothing was refunded or cancelled")
    try:
        result = bk.cancel_under_lease(
            svc, row.booking_id, actor, leg_ids, reason, now, refund_cents=amount, refund_key=key
        )
    except DomainError as exc:
        return _fail(svc, override_id, actor, now, exc.message)
    message = (
        f"Override #{override_id} executed: cancelled {reference} on {days_label(result.cancelled_days)} and refunded "
        f"{money(result.refund_cents, currency)}"
    )
    return _executed(svc, override_id, actor, now, result.refund_cents, result.problems, message=message)


def _precondition(legs: Sequence[BookingLeg], leg_ids: Sequence[int], amount: int, currency: str) -> str | None:
    """Why the override can no longer run as approved (None: it can)."""
    if len(legs) != len(set(leg_ids)):
        return "Some of its days no longer belong to the booking"
    gone = [leg for leg in legs if leg.state != LegState.CONFIRMED]
    if gone:
        states = ", ".join(f"{day_label(leg.day)} is now {leg.state.replace('_', ' ').lower()}" for leg in gone)
        return f"The booking changed since the request: {states}"
    left = sum(max(leg.price_cents - leg.refunded_cents, 0) for leg in legs)
    if amount > left:
        return f"Only {money(left, currency)} is left to refund for these days, not {money(amount, currency)}"
    return None


def _executed(
    svc: Services,
    override_id: int,
    actor: str,
    now: datetime,
    refunded: int,
    problems: list[str],
    *,
    message: str = "",
    recovered: bool = False,
) -> OverrideOutcome:
    with svc.session() as s:
        row = _get(s, override_id)
        row.status, row.executed_at, row.refunded_cents, row.error = OverrideStatus.EXECUTED, now, refunded, None
        audit.record(
            s,
            "booking.override.executed",
            actor=actor,
            at=now,
            booking=bk.load_booking(s, row.booking_id),
            override=override_id,
            refund_cents=refunded,
            policy_refund_cents=row.policy_refund_cents,
            problems=problems,
            recovered=recovered or None,
            message=f"Override #{override_id} executed",
        )
        text = message or f"Override #{override_id} executed: {money(refunded, row.currency)} refunded"
    return OverrideOutcome(override_id, "executed", text, problems)


def _fail(svc: Services, override_id: int, actor: str, now: datetime, error: str) -> OverrideOutcome:
    with svc.session() as s:
        row = _get(s, override_id)
        row.status, row.error = OverrideStatus.FAILED, error[: oq.MAX_TEXT]
        audit.record(
            s,
            "booking.override.failed",
            actor=actor,
            at=now,
            booking=bk.load_booking(s, row.booking_id),
            override=override_id,
            error=error,
            message=f"Override #{override_id} could not be executed",
        )
    return OverrideOutcome(override_id, "failed", f"Override #{override_id} was not executed. {error.rstrip('.')}.")


# --------------------------------------------------------------------------------------------------- decide


def reject(
    svc: Services, override_id: int, *, actor: str, role: str, note: str, now: datetime | None = None
) -> OverrideOutcome:
    """A manager or finance person turns the request down (with a note for the requester); nothing is cancelled."""
    now = bk.resolve_now(svc, now)
    actor = oq.person(actor)
    oq.check_approver(role, "reject")
    if not note.strip():
        raise ValidationError("Say why it is rejected: the note goes back to the person who asked")
    return _close(svc, override_id, "rejected", actor=actor, note=note.strip(), now=now)


def withdraw(
    svc: Services, override_id: int, *, actor: str, note: str = "", now: datetime | None = None
) -> OverrideOutcome:
    """The person who asked takes the request back; nothing is cancelled."""
    now = bk.resolve_now(svc, now)
    actor = oq.person(actor)
    with svc.session() as s:
        row = _get(s, override_id)
        if not oq.same_person(row.requested_by, actor):
            raise NotAllowed(f"Only {row.requested_by}, who asked for override #{override_id}, can withdraw it")
    return _close(svc, override_id, "withdrawn", actor=actor, note=note.strip(), now=now)


def _close(svc: Services, override_id: int, status: str, *, actor: str, note: str, now: datetime) -> OverrideOutcome:
    if len(note) > oq.MAX_TEXT:
        raise ValidationError(f"The note is too long ({len(note)} characters; at most {oq.MAX_TEXT})")
    with svc.session() as s:
        row = _get(s, override_id)
        done = s.execute(
            sa.update(RefundOverride)
            .where(col(RefundOverride.id) == override_id, col(RefundOverride.status).in_(("pending", "failed")))
            .values(status=status, decided_by=actor, decided_at=now, decision_note=note or None)
        ).rowcount  # type: ignore[attr-defined]
        if not done:
            raise InvalidState(oq.status_sentence(row))
        audit.record(
            s,
            f"booking.override.{status}",
            actor=actor,
            at=now,
            booking=bk.load_booking(s, row.booking_id),
            override=override_id,
            note=note or None,
            message=f"Override #{override_id} {status}; nothing was refunded",
        )
    return OverrideOutcome(override_id, status, f"Override #{override_id} {status}. Nothing was cancelled or refunded.")
