"""Refunds: through the payments gateway under a deterministic key, recorded once (ledger, external ref, audit)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from models.tables import (
    Amendment,
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
from services.rules.tax import refund_split


def booking_payments(session: Session, booking: Booking) -> list[tuple[str, int]]:
    """Every PaymentIntent that paid for the booking with what it took: the booking's own first, then those of its
    changes (amendments whose difference was paid), oldest first."""
    out: list[tuple[str, int]] = []
    if booking.payment_intent_id:
        out.append((booking.payment_intent_id, booking.amount_cents))
    paid = session.exec(
        select(Amendment)
        .where(Amendment.booking_id == booking.id, col(Amendment.paid_at).is_not(None))
        .order_by(col(Amendment.number))
    )
    out.extend((a.payment_intent_id, a.net_cents) for a in paid if a.payment_intent_id)
    return out


def payment_tax(session: Session, booking: Booking) -> dict[str, tuple[int, int]]:
    """Per PaymentIntent of the booking: (what it took, the tax inside it)."""
    out: dict[str, tuple[int, int]] = {}
    if booking.payment_intent_id:
        out[booking.payment_intent_id] = (booking.amount_cents, booking.tax_cents)
    paid = session.exec(
        select(Amendment).where(Amendment.booking_id == booking.id, col(Amendment.paid_at).is_not(None))
    )
    out.update({a.payment_intent_id: (a.net_cents, a.tax_cents) for a in paid if a.payment_intent_id})
    return out


def refund_tax(session: Session, booking: Booking, payment_intent_id: str | None, amount_cents: int) -> int:
    """The tax a refund of `amount_cents` on this payment gives back: its proportional share of the payment's tax,
    counted with the refunds already made on it (tax.refund_split), so refunds in parts add up to exactly the tax."""
    pi = payment_intent_id or booking.payment_intent_id or ""
    gross, tax = payment_tax(session, booking).get(pi, (0, 0))
    if tax <= 0 or amount_cents <= 0:
        return 0
    before = [
        r
        for r in session.exec(select(RefundRecord).where(RefundRecord.booking_id == booking.id))
        if (r.payment_intent_id or booking.payment_intent_id) == pi
    ]
    already = sum(r.amount_cents for r in before)
    already_tax = sum(r.tax_cents for r in before)
    try:
        _net, share = refund_split(
            amount_cents, gross, tax, already_refunded_cents=already, already_refunded_tax_cents=already_tax
        )
    except ValueError:  # more refunded than the payment took (only a broken ledger does that): what tax is left
        return max(min(tax - already_tax, amount_cents), 0)
    return share


def refund_tax_for(session: Session, booking_id: int, key: str) -> int:
    """The tax given back by the refund made under idempotency key `key`: all its parts (`key`, and `key-<pi_…>` for
    the parts on a change's payment; refund_parts), for the email that tells the customer about it."""
    return sum(
        r.tax_cents
        for r in session.exec(select(RefundRecord).where(RefundRecord.booking_id == booking_id))
        if r.idempotency_key == key or (r.idempotency_key or "").startswith(f"{key}-pi_")
    )


def paid_total(session: Session, booking: Booking) -> int:
    """What the customer has paid for the booking in all (before refunds)."""
    return sum(amount for _, amount in booking_payments(session, booking))


def _part_key(key: str, booking: Booking, pi: str) -> str:
    return key if pi == booking.payment_intent_id else f"{key}-{pi}"


def refund_parts(session: Session, booking: Booking, amount_cents: int, key: str) -> list[tuple[str, int, str]]:
    """How a refund of `amount_cents` is spread over the booking's payments: (PaymentIntent, cents, idempotency key)
    for each part, the booking's own payment first, each part no more than is left of its payment. Worked out
    without the parts of this same refund already made, so a retry after a crash finds the same parts."""
    payments = booking_payments(session, booking)
    if not payments:
        return []
    keys = {pi: _part_key(key, booking, pi) for pi, _ in payments}
    refunded: dict[str, int] = {pi: 0 for pi, _ in payments}
    for r in session.exec(select(RefundRecord).where(RefundRecord.booking_id == booking.id)):
        pi = r.payment_intent_id or booking.payment_intent_id or ""
        if pi in refunded and r.idempotency_key != keys[pi]:
            refunded[pi] += r.amount_cents
    parts: list[tuple[str, int, str]] = []
    left = amount_cents
    for pi, took in payments:
        give = min(max(took - refunded[pi], 0), left)
        if give:
            parts.append((pi, give, keys[pi]))
            left -= give
    if left:  # more than the payments have left: ask for it on the first one, and let the gateway say no
        first = payments[0][0]
        merged = {pi: cents for pi, cents, _ in parts}
        merged[first] = merged.get(first, 0) + left
        parts = [(pi, merged[pi], keys[pi]) for pi, _ in payments if merged.get(pi)]
    return parts


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
    payment_intent: str | None = None,
) -> bool:
    """Refund through the gateway (idempotent key) and record it; False (audited) if the gateway failed. A booking
    paid by more than one PaymentIntent (a change that cost more) is refunded on its own payment first, then on the
    changes' (refund_parts), one Stripe refund per payment — or, with `payment_intent`, all of it on that one payment
    under `key` (a change that could not be made gives back exactly what its own payment took)."""
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        if payment_intent is not None:
            parts = [(payment_intent, amount_cents, key)] if amount_cents > 0 else []
        else:
            parts = refund_parts(s, booking, amount_cents, key) if amount_cents > 0 else []
        done = {
            r.idempotency_key
            for r in s.exec(select(RefundRecord).where(RefundRecord.booking_id == booking_id))
            if r.idempotency_key
        }
    if not parts or amount_cents <= 0:
        return amount_cents == 0
    for pi, cents, part_key in parts:
        if part_key in done:
            continue
        try:
            refund = svc.payments.refund(
                pi,
                amount_cents=cents,
                reason=reason,
                idempotency_key=part_key,
                # The key in metadata too (the Stripe adapter adds it itself): a retry finds a refund whose answer was
                # lost.
                metadata={"booking_id": booking.reference, "origin": origin, "idempotency_key": part_key},
            )
        except (GatewayError, InvalidState) as exc:  # InvalidState: e.g. an open dispute blocks refunds
            with svc.session() as s:
                audit.record(
                    s,
                    "booking.refund.failed",
                    actor=actor,
                    at=now,
                    booking=load_booking(s, booking_id),
                    amount_cents=cents,
                    payment_intent=pi,
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
                policy_quote=_part_quote(policy_quote, amount_cents, cents, first=pi == parts[0][0]),
                leg_ids=leg_ids,
                payment_intent_id=pi,
                idempotency_key=part_key,
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
    payment_intent_id: str | None = None,
    idempotency_key: str | None = None,
) -> bool:
    """Record a Stripe refund of the booking once (RefundRecord, its external ref, an audit row); False if it was
    already recorded. Both our own refunds and those Stripe reports (webhooks) are recorded here."""
    if session.exec(select(RefundRecord.id).where(RefundRecord.refund_id == refund["id"])).first() is not None:
        return False
    assert booking.id is not None
    paid_with = payment_intent_id or _pi_of(refund) or booking.payment_intent_id
    tax_cents = refund_tax(session, booking, paid_with, int(refund["amount"]))
    session.add(
        RefundRecord(
            booking_id=booking.id,
            refund_id=refund["id"],
            payment_intent_id=paid_with,
            idempotency_key=idempotency_key,
            amount_cents=int(refund["amount"]),
            tax_cents=tax_cents,
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
        tax_cents=tax_cents,
        reason=reason,
        **extra,
    )
    return True


def _part_quote(policy_quote: int | None, amount_cents: int, cents: int, *, first: bool) -> int | None:
    """The policy's share of one part of a split refund: the part itself when the whole refund is what the policy
    said; otherwise the policy's figure stays on the first part, so a difference still shows."""
    if policy_quote is None or policy_quote == amount_cents:
        return cents if policy_quote is not None else None
    return policy_quote if first else 0


def _pi_of(refund: dict[str, Any]) -> str | None:
    pi = refund.get("payment_intent")
    if isinstance(pi, dict):
        pi = pi.get("id")
    return str(pi) if pi else None


def cancel_refund_key(reference: str, leg_ids: Sequence[int]) -> str:
    """The Stripe idempotency key of the refund for cancelling these days (a retry replays that refund)."""
    return f"roomdesk-{reference}-cancel-" + "-".join(str(i) for i in sorted(leg_ids))
