"""Disputes (chargebacks): DisputeCase rows kept in step with Stripe, and the evidence we answer them with.

Stripe decides a dispute's status. The webhooks (charge.dispute.created / updated / closed) and `refresh_disputes`
re-read the dispute from Stripe and copy status, amount, reason, due date and booking onto its DisputeCase; a
redelivery or a second refresh changes nothing and writes no audit row.

The evidence pack is assembled from what Room Desk knows about the booking (its days and price, the calendar
events that reserved the room, the policy and terms the customer accepted, the emails sent, the refunds, the audit
timeline), rendered as a PDF, and sent to Stripe's evidence *text* fields (no file upload). Staff may save a draft
as often as they like while the dispute needs a response; submitting happens once, after re-reading the dispute
from Stripe just before sending: it must still need a response and its due date must not have passed. The cases as
the dashboard lists them and the evidence pack are services.finance.dispute_queries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from models.tables import Booking, DisputeCase, ExternalRef
from services.core import audit
from services.core.context import Services
from services.core.errors import InvalidState, NotFound
from services.finance.dispute_queries import (
    CLOSED,
    RESPONDABLE,
    TEXT_FIELDS,
    DisputeSummary,
    assemble_evidence,
    clean_fields,
    evidence_pdf,
    get_case,
    reason_words,
    status_words,
)
from services.gateways.base import all_pages

Json = dict[str, Any]

SUBMITTED_IN_STRIPE = "Stripe (outside Room Desk)"


# --------------------------------------------------------------------------------------------------- from Stripe


def stripe_disputes(svc: Services) -> list[Json]:
    """Every dispute on the Stripe account, newest first."""
    return all_pages(lambda after: svc.payments.list_disputes(limit=100, starting_after=after))


def fetch_dispute(svc: Services, dispute_id: str | None) -> Json:
    """The dispute as Stripe has it now (the gateway lists disputes; an account has few). NotFound if absent."""
    dispute = next((d for d in stripe_disputes(svc) if d.get("id") == dispute_id), None)
    if dispute is None:
        raise NotFound(f"Stripe has no dispute {dispute_id}")
    return dispute


def _ref(value: Any) -> str | None:
    """A Stripe reference that may come expanded: the id either way."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def _epoch(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def booking_for_payment(session: Session, payment_intent_id: str | None) -> Booking | None:
    """Our booking paid by this PaymentIntent (through the external-reference table, then the booking itself)."""
    if not payment_intent_id:
        return None
    booking_id = session.exec(
        select(ExternalRef.booking_id).where(
            ExternalRef.provider == "stripe",
            ExternalRef.kind == "payment_intent",
            ExternalRef.external_id == payment_intent_id,
        )
    ).first()
    if booking_id is not None:
        return session.get(Booking, booking_id)
    return session.exec(select(Booking).where(Booking.payment_intent_id == payment_intent_id)).first()


def _values(dispute: Json) -> dict[str, Any]:
    details = dispute.get("evidence_details") or {}
    return {
        "payment_intent_id": _ref(dispute.get("payment_intent")),
        "charge_id": _ref(dispute.get("charge")),
        "amount_cents": int(dispute.get("amount") or 0),
        "currency": str(dispute.get("currency") or "cad").upper()[:3],
        "reason": str(dispute.get("reason") or "")[:64],
        "status": str(dispute.get("status") or "needs_response")[:32],
        "evidence_due_by": _epoch(details.get("due_by")),
        "opened_at": _epoch(dispute.get("created")),
    }


def _stripe_evidence(dispute: Json) -> dict[str, str]:
    evidence = dispute.get("evidence") or {}
    return {k: str(evidence[k]) for k in TEXT_FIELDS if isinstance(evidence.get(k), str) and evidence[k]}


def record_dispute(svc: Services, dispute: Json, *, actor: str, now: datetime | None = None) -> str:
    """Bring the dispute's DisputeCase in line with Stripe's dispute (as just re-read from Stripe): 'created',
    'updated' or 'unchanged'. Audited: booking.dispute.opened / .updated / .closed."""
    now = now or svc.now()
    try:
        return _record(svc, dispute, actor, now)
    except IntegrityError:
        # Two deliveries about one new dispute raced (created and updated arrive together); the other inserted it.
        return _record(svc, dispute, actor, now)


def _record(svc: Services, dispute: Json, actor: str, now: datetime) -> str:
    dispute_id = str(dispute["id"])
    values = _values(dispute)
    submitted = int((dispute.get("evidence_details") or {}).get("submission_count") or 0) > 0
    with svc.session() as s:
        booking = booking_for_payment(s, values["payment_intent_id"])
        row = s.exec(select(DisputeCase).where(DisputeCase.dispute_id == dispute_id)).first()
        changes: dict[str, Any] = {}
        if row is None:
            row = DisputeCase(dispute_id=dispute_id, booking_id=booking.id if booking else None, updated_at=now)
            s.add(row)
            outcome, before = "created", None
        else:
            outcome, before = "updated", row.status
        for key, value in values.items():
            if getattr(row, key) != value:
                if outcome == "updated":
                    changes[key] = value
                setattr(row, key, value)
        if booking is not None and row.booking_id is None:
            row.booking_id = booking.id
            changes["booking"] = booking.reference
        if submitted and row.evidence_submitted_at is None:
            # Submitted in Stripe's dashboard (or by us, a moment before our own record of it): never again here.
            row.evidence_submitted_at = now
            row.evidence_submitted_by = SUBMITTED_IN_STRIPE
            row.evidence = row.evidence or _stripe_evidence(dispute)
            changes["evidence_submitted"] = True
        closing = row.status in CLOSED and row.closed_at is None
        if closing:
            row.closed_at = now
            changes["closed_at"] = now
        if outcome == "updated" and not changes:
            return "unchanged"
        row.updated_at = now
        facts = {
            "dispute_id": dispute_id,
            "amount_cents": row.amount_cents,
            "reason": row.reason,
            "status": row.status,
            "due_by": row.evidence_due_by,
        }
        if outcome == "created":
            audit.record(
                s,
                "booking.dispute.opened",
                actor=actor,
                at=now,
                booking=booking,
                payment_intent=row.payment_intent_id,
                message=f"Dispute opened: {reason_words(row.reason)}",
                **facts,
            )
        if closing or outcome == "updated":
            audit.record(
                s,
                "booking.dispute.closed" if closing else "booking.dispute.updated",
                actor=actor,
                at=now,
                booking=booking,
                payment_intent=row.payment_intent_id,
                message=f"Dispute {status_words(row.status).lower()}",
                previous_status=before,
                changes=changes,
                **facts,
            )
        return outcome


@dataclass(frozen=True)
class RefreshReport:
    seen: int
    created: int
    updated: int

    def line(self) -> str:
        return f"{self.seen} dispute(s) on Stripe: {self.created} new, {self.updated} changed"


def refresh_disputes(svc: Services, *, actor: str) -> RefreshReport:
    """Read every dispute from Stripe and bring each DisputeCase in line: the disputes no webhook told us about."""
    now = svc.now()
    outcomes = [record_dispute(svc, d, actor=actor, now=now) for d in stripe_disputes(svc)]
    return RefreshReport(len(outcomes), outcomes.count("created"), outcomes.count("updated"))


# --------------------------------------------------------------------------------------------------- submit


@dataclass(frozen=True)
class EvidenceResult:
    case: DisputeSummary
    submitted: bool
    fields: dict[str, str]
    pdf_sha256: str


def _check_not_submitted(case: DisputeSummary) -> None:
    if case.evidence_submitted_at is not None:
        who = case.evidence_submitted_by or "someone"
        raise InvalidState(
            f"The evidence for dispute {case.dispute_id} was already submitted ({case.evidence_submitted_at:%Y-%m-%d}"
            f" by {who}); Stripe takes one submission"
        )


def _check_can_respond(case: DisputeSummary, now: datetime, dispute: Json) -> None:
    _check_not_submitted(case)
    if case.status not in RESPONDABLE:
        raise InvalidState(
            f"Dispute {case.dispute_id} is {status_words(case.status).lower()}: Stripe takes evidence only while a "
            "dispute needs a response"
        )
    past_due = bool((dispute.get("evidence_details") or {}).get("past_due"))
    if past_due or (case.evidence_due_by is not None and case.evidence_due_by <= now):
        raise InvalidState(
            f"The evidence for dispute {case.dispute_id} was due {case.evidence_due_by:%Y-%m-%d %H:%M} UTC; the "
            "deadline has passed and Stripe no longer accepts evidence"
            if case.evidence_due_by
            else f"The deadline for dispute {case.dispute_id} has passed; Stripe no longer accepts evidence"
        )


def save_evidence(
    svc: Services, case_id: int, *, submit: bool, actor: str, fields: dict[str, str] | None = None
) -> EvidenceResult:
    """Send the evidence to Stripe: as a draft (`submit=False`, as often as wanted) or for good (`submit=True`,
    once). Re-reads the dispute from Stripe first; refuses (InvalidState) once it is submitted, no longer needs a
    response, or is past its due date. Records the fields, the PDF's SHA-256 and, on submission, who and when."""
    now = svc.now()
    case = get_case(svc, case_id, now=now)
    _check_not_submitted(case)  # our own record first: a second submission never even asks Stripe
    dispute = fetch_dispute(svc, case.dispute_id)
    record_dispute(svc, dispute, actor=actor, now=now)
    case = get_case(svc, case_id, now=now)
    _check_can_respond(case, now, dispute)
    pack = assemble_evidence(svc, case_id, now=now)
    final = clean_fields(fields) if fields else pack.fields
    pdf = evidence_pdf(svc, pack, final)
    digest = hashlib.sha256(pdf).hexdigest()
    result = svc.payments.submit_dispute_evidence(case.dispute_id, final, submit)
    with svc.session() as s:
        row = s.get(DisputeCase, case_id)
        assert row is not None
        booking = s.get(Booking, row.booking_id) if row.booking_id is not None else None
        row.evidence = dict(final)
        row.evidence_pdf_sha256 = digest
        if submit:
            row.evidence_submitted_at = now
            row.evidence_submitted_by = actor
        values = _values(result) if result.get("id") == row.dispute_id else {}
        row.status = values.get("status") or row.status
        row.updated_at = now
        audit.record(
            s,
            "booking.dispute.evidence.submitted" if submit else "booking.dispute.evidence.saved",
            actor=actor,
            at=now,
            booking=booking,
            payment_intent=row.payment_intent_id,
            message="Dispute evidence submitted to Stripe" if submit else "Dispute evidence saved to Stripe as a draft",
            dispute_id=row.dispute_id,
            fields=sorted(final),
            pdf_sha256=digest,
            status=row.status,
        )
    return EvidenceResult(get_case(svc, case_id, now=now), submit, final, digest)
