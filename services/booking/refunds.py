"""Refunds: through the payments gateway under a deterministic key, recorded once (ledger, external ref, audit)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from models.tables import (
    Booking,
    ExternalRef,
    RefundRecord,
)
from services.booking.store import load_booking
from services.core import audit
from services.core.context import Services
from services.core.errors import (
    GatewayError,
    InvalidState,
)


def refund_payment(
    svc: Services,
    booking_id: int,
    amount_cents: int,
    *,
    origin: str,
    reason: str,
    actor: str,
    now: datetime,
    key: str,
    policy_quote: int | None,
    leg_ids: Sequence[int] = (),
    errors: list[str] | None = None,
) -> bool:
    """Refund through the gateway (idempotent key) and record it; False (audited) if the gateway failed."""
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        pi = booking.payment_intent_id
    if not pi or amount_cents <= 0:
        return amount_cents == 0
    try:
        refund = svc.payments.refund(
            pi,
            amount_cents=amount_cents,
            reason=reason,
            idempotency_key=key,
            # The key in metadata too (the Stripe adapter adds it itself): a retry finds a refund whose answer was lost.
            metadata={"booking_id": booking.reference, "origin": origin, "idempotency_key": key},
        )
    except (GatewayError, InvalidState) as exc:  # InvalidState: e.g. an open dispute blocks refunds
        with svc.session() as s:
            audit.record(
                s,
                "booking.refund.failed",
                actor=actor,
                at=now,
                booking=load_booking(s, booking_id),
                amount_cents=amount_cents,
                error=exc.message,
                origin=origin,
                message="Refund failed",
            )
        if errors is not None:
            errors.append(exc.message)
        return False
    with svc.session() as s:
        record_refund(
            s,
            load_booking(s, booking_id),
            refund,
            origin=origin,
            reason=reason,
            actor=actor,
            now=now,
            policy_quote=policy_quote,
            leg_ids=leg_ids,
        )
    return True


def record_refund(
    session: Session,
    booking: Booking,
    refund: dict[str, Any],
    *,
    origin: str,
    reason: str,
    actor: str,
    now: datetime,
    policy_quote: int | None = None,
    leg_ids: Sequence[int] = (),
    message: str | None = None,
) -> bool:
    """Record a Stripe refund of the booking once (RefundRecord, its external ref, an audit row); False if it was
    already recorded. Both our own refunds and those Stripe reports (webhooks) are recorded here."""
    if session.exec(select(RefundRecord.id).where(RefundRecord.refund_id == refund["id"])).first() is not None:
        return False
    assert booking.id is not None
    session.add(
        RefundRecord(
            booking_id=booking.id,
            refund_id=refund["id"],
            amount_cents=int(refund["amount"]),
            currency=str(refund.get("currency") or booking.currency).upper(),
            origin=origin,
            reason=reason,
            policy_quote_cents=policy_quote,
            leg_ids=list(leg_ids),
            actor=actor,
            created_at=now,
        )
    )
    known = session.exec(
        select(ExternalRef.id).where(
            ExternalRef.provider == "stripe", ExternalRef.kind == "refund", ExternalRef.external_id == refund["id"]
        )
    ).first()
    if known is None:
        session.add(
            ExternalRef(
                provider="stripe", kind="refund", external_id=refund["id"], booking_id=booking.id, created_at=now
            )
        )
    extra = {"message": message} if message else {}
    audit.record(
        session,
        f"booking.refund.{origin}",
        actor=actor,
        at=now,
        booking=booking,
        refund_id=refund["id"],
        amount_cents=int(refund["amount"]),
        reason=reason,
        **extra,
    )
    return True


def cancel_refund_key(reference: str, leg_ids: Sequence[int]) -> str:
    """The Stripe idempotency key of the refund for cancelling these days (a retry replays that refund)."""
    return f"roomdesk-{reference}-cancel-" + "-".join(str(i) for i in sorted(leg_ids))
