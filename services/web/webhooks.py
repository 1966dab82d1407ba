"""Stripe webhooks as triggers (pretix's pattern): verify the signature on the raw body, store the event (provider +
event id unique) before doing anything, re-fetch the object from the gateway instead of trusting the payload, and
apply only the transitions allowed from the booking's current state. Every handler converges on what Stripe says
*now*, so duplicates, replays and out-of-order deliveries all end in the same state.

The API translates the errors: SignatureError → 400, a transient GatewayError → 503 (Stripe retries), anything the
handlers do not care about → 200.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import stripe
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from models.tables import Booking, BookingStatus, ExternalRef, WebhookEvent, WebhookStatus
from services import booking
from services.booking import invoices
from services.core import audit
from services.core.context import Services
from services.core.errors import BookingBusy, ConfigError, DomainError, GatewayError, NotFound
from services.finance import deposits, disputes
from services.gateways.base import all_pages

log = logging.getLogger("roomdesk.webhooks")

PROVIDER = "stripe"
TOLERANCE_SECONDS = 300  # Stripe's default: older signatures are refused as replays
ACTOR = "stripe-webhook"
Json = dict[str, Any]
# A delivery that finds the same event being processed by another waits this long for it, then answers 200: the
# other delivery answers Stripe for the event (503 if it fails, so Stripe retries).
IN_PROGRESS_WAIT_SECONDS = 5.0
# A row still `received` this long after it arrived was left by a crash: a redelivery (or Replay) takes it over.
STALE_RECEIVED = timedelta(minutes=2)
# A handler that finds the booking leased by another process (the return page, the worker) waits this long for it.
LEASE_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.1


class SignatureError(DomainError):
    """The Stripe-Signature header is missing, wrong or too old; the body was not read."""


class WebhookNotConfigured(ConfigError):
    """No webhook signing secret is configured, so no event can be trusted."""


class MalformedEvent(DomainError):
    """A correctly signed body that is not a Stripe event we can read; it is stored as failed for the dashboard."""


@dataclass(frozen=True)
class WebhookOutcome:
    row_id: int
    event_id: str
    type: str
    status: str  # processed | ignored | failed | duplicate
    duplicate: bool = False


# --------------------------------------------------------------------------------------------------- receive


def verify_stripe_event(payload: bytes, signature: str | None, secret: str) -> Json:
    """The event as a plain dict, once its signature (and timestamp, within 300 s) checks out on the raw body."""
    if not signature:
        raise SignatureError("Missing Stripe-Signature header")
    try:
        # The signature alone: construct_event would also build a stripe.Event, which crashes on a signed body
        # that is valid JSON but not an object.
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8", "replace"), signature, secret, tolerance=TOLERANCE_SECONDS
        )
        event = json.loads(payload)
    except stripe.SignatureVerificationError:
        raise SignatureError("Invalid or expired Stripe signature") from None
    except ValueError:
        raise SignatureError("The webhook body is not valid JSON") from None
    if not isinstance(event, dict):
        return {"_malformed": "the body is not a JSON object", "_raw": payload[:2000].decode("utf-8", "replace")}
    return event


def malformation(event: Json) -> str | None:
    """Why a signed event cannot be processed (None when it has the shape every handler relies on)."""
    if "_malformed" in event:
        return str(event["_malformed"])
    if not isinstance(event.get("id"), str) or not event["id"] or len(event["id"]) > 255:
        return "the event has no id"
    if not isinstance(event.get("type"), str) or not event["type"]:
        return "the event has no type"
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return "the event's data.object is not an object"
    return None


def _malformed_id(payload: bytes) -> str:
    return "malformed_" + hashlib.sha256(payload).hexdigest()[:40]


def record_event(svc: Services, event: Json) -> tuple[int, bool]:
    """Store the event before processing it and claim it. Returns (row id, whether this delivery must process it):
    the delivery that stored it, or the one that took over a failed (or crash-abandoned) row. A redelivery of an
    event processed or ignored needs nothing; one being processed right now by another delivery is waited for."""
    now = svc.now()
    try:
        with svc.session() as s:
            existing = s.exec(
                select(WebhookEvent).where(WebhookEvent.provider == PROVIDER, WebhookEvent.event_id == event["id"])
            ).first()
            if existing is None:
                row = WebhookEvent(
                    provider=PROVIDER,
                    event_id=event["id"],
                    type=event["type"][:80],
                    received_at=now,
                    status=WebhookStatus.RECEIVED,
                    payload=event,
                )
                s.add(row)
                s.flush()
                assert row.id is not None
                return row.id, True
            assert existing.id is not None
            row_id = existing.id
    except IntegrityError:
        # Two deliveries of one event raced to store it; the other one stored it and processes it.
        with svc.session() as s:
            found = s.exec(
                select(WebhookEvent.id).where(WebhookEvent.provider == PROVIDER, WebhookEvent.event_id == event["id"])
            ).one()
            assert found is not None
            row_id = found
    return row_id, claim_event(svc, row_id)


def claim_event(svc: Services, row_id: int, *, wait_seconds: float = IN_PROGRESS_WAIT_SECONDS) -> bool:
    """Whether this delivery takes the stored event over: a failed row is claimed by exactly one delivery (an atomic
    UPDATE … WHERE status = 'failed'); a row another delivery is processing is waited for, then left to it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        now = svc.now()
        with svc.session() as s:
            claimed = s.execute(
                sa.update(WebhookEvent)
                .where(
                    col(WebhookEvent.id) == row_id,
                    sa.or_(
                        col(WebhookEvent.status) == WebhookStatus.FAILED,
                        sa.and_(
                            col(WebhookEvent.status) == WebhookStatus.RECEIVED,
                            col(WebhookEvent.received_at) < now - STALE_RECEIVED,
                        ),
                    ),
                )
                .values(status=WebhookStatus.RECEIVED, received_at=now)
            )
            if getattr(claimed, "rowcount", 0) == 1:
                return True
            status = s.exec(select(WebhookEvent.status).where(WebhookEvent.id == row_id)).one()
        if status != WebhookStatus.RECEIVED or time.monotonic() >= deadline:
            return False  # done by another delivery, or still in its hands: it answers Stripe for the event
        time.sleep(POLL_SECONDS)


def record_malformed(svc: Services, event: Json, payload: bytes, reason: str) -> int:
    """Store a signed but unreadable event as failed (listed for Replay with the reason), once per event."""
    now = svc.now()
    event_id = event.get("id") if isinstance(event.get("id"), str) and 0 < len(event["id"]) <= 255 else None
    event_id = event_id or _malformed_id(payload)
    event_type = event.get("type") if isinstance(event.get("type"), str) and event["type"] else "malformed"
    error = f"Malformed event: {reason}"
    try:
        with svc.session() as s:
            existing = s.exec(
                select(WebhookEvent).where(WebhookEvent.provider == PROVIDER, WebhookEvent.event_id == event_id)
            ).first()
            if existing is not None:
                assert existing.id is not None
                s.execute(
                    sa.update(WebhookEvent)
                    .where(col(WebhookEvent.id) == existing.id)
                    .values(attempts=WebhookEvent.attempts + 1)
                )
                return existing.id
            row = WebhookEvent(
                provider=PROVIDER,
                event_id=event_id,
                type=str(event_type)[:80],
                received_at=now,
                status=WebhookStatus.FAILED,
                attempts=1,
                last_error=error[:500],
                payload=event,
            )
            s.add(row)
            s.flush()
            audit.record(s, "webhook.failed", actor=ACTOR, at=now, event_id=event_id, type=row.type, error=error)
            assert row.id is not None
            return row.id
    except IntegrityError:  # the same malformed event delivered twice at once: the other stored it
        with svc.session() as s:
            found = s.exec(
                select(WebhookEvent.id).where(WebhookEvent.provider == PROVIDER, WebhookEvent.event_id == event_id)
            ).one()
            assert found is not None
            return found


def handle_stripe_webhook(svc: Services, payload: bytes, signature: str | None) -> WebhookOutcome:
    """Verify, store, process. Raises SignatureError, WebhookNotConfigured or a transient GatewayError."""
    secret = svc.settings.stripe_webhook_secret
    if secret is None or not secret.get_secret_value():
        raise WebhookNotConfigured("The Stripe webhook signing secret (STRIPE_WEBHOOK_SECRET) is not configured")
    event = verify_stripe_event(payload, signature, secret.get_secret_value())
    reason = malformation(event)
    if reason is not None:
        record_malformed(svc, event, payload, reason)
        raise MalformedEvent(f"Malformed event: {reason}")
    row_id, needs_work = record_event(svc, event)
    if not needs_work:
        return WebhookOutcome(row_id, event["id"], event["type"], "duplicate", duplicate=True)
    status = process_event(svc, row_id, actor=ACTOR)
    return WebhookOutcome(row_id, event["id"], event["type"], status)


# --------------------------------------------------------------------------------------------------- process


def process_event(svc: Services, row_id: int, *, actor: str) -> str:
    """Run a stored event's handler and record the outcome on its row: processed, ignored or failed.

    A transient GatewayError is re-raised after the row says failed (the API answers 503 so Stripe retries); other
    domain errors fail the row without a retry (the dashboard can replay it)."""
    now = svc.now()
    with svc.session() as s:
        # Counted in the database (attempts = attempts + 1): concurrent deliveries and replays never lose a count.
        s.execute(
            sa.update(WebhookEvent).where(col(WebhookEvent.id) == row_id).values(attempts=WebhookEvent.attempts + 1)
        )
        row = s.get(WebhookEvent, row_id)
        if row is None:
            raise NotFound(f"No webhook event #{row_id}")
        event_type, event, started_as = row.type, dict(row.payload), row.status
    handler = HANDLERS.get(event_type)
    if handler is None:
        _finish(svc, row_id, "ignored", None, now, started_as)
        return "ignored"
    reason = malformation(event)
    if reason is not None:  # stored before the shape was checked on arrival, or edited: fail it with the reason
        _finish(svc, row_id, "failed", f"Malformed event: {reason}", now, started_as)
        return "failed"
    obj = event["data"]["object"]
    try:
        status = _run_waiting_for_lease(handler, svc, obj, actor, now)
    except GatewayError as exc:
        _finish(svc, row_id, "failed", exc.message, now, started_as)
        if exc.transient:
            raise
        return "failed"
    except DomainError as exc:
        _finish(svc, row_id, "failed", exc.message, now, started_as)
        return "failed"
    except Exception:
        log.exception("Webhook event #%s (%s) crashed", row_id, event_type)
        _finish(svc, row_id, "failed", "Unexpected error while processing (see the server log)", now, started_as)
        raise
    _finish(svc, row_id, status, None, now, started_as)
    return status


def _run_waiting_for_lease(
    handler: Callable[[Services, Json, str, datetime], str], svc: Services, obj: Json, actor: str, now: datetime
) -> str:
    """Run the handler; when the booking is leased by another process (the customer's return page or the worker
    confirming it right now), wait briefly and run again: the handlers converge, so the second run finds it done."""
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    tries = 0
    while True:
        try:
            return handler(svc, obj, actor, now)
        except BookingBusy:
            tries += 1
            if tries > 1 and time.monotonic() >= deadline:  # always one more try: the first may have waited long
                raise
            time.sleep(POLL_SECONDS * 2)


def _finish(svc: Services, row_id: int, status: str, error: str | None, now: datetime, started_as: str) -> None:
    with svc.session() as s:
        row = s.get(WebhookEvent, row_id)
        assert row is not None
        if status == "failed" and row.status in ("processed", "ignored") and row.status != started_as:
            # A concurrent delivery of the same event finished it while this attempt ran (typically this one found
            # the booking's lease taken by it): the work is done, so its outcome stands and no failure is listed.
            return
        row.status = WebhookStatus(status)
        row.last_error = error[:500] if error else None
        row.processed_at = now if status != "failed" else row.processed_at
        if status == "failed":
            audit.record(s, "webhook.failed", actor=ACTOR, at=now, event_id=row.event_id, type=row.type, error=error)


def _booking_for_pi(svc: Services, payment_intent_id: str | None) -> int | None:
    if not payment_intent_id:
        return None
    with svc.session() as s:
        return s.exec(
            select(ExternalRef.booking_id).where(
                ExternalRef.provider == "stripe",
                ExternalRef.kind == "payment_intent",
                ExternalRef.external_id == payment_intent_id,
            )
        ).first()


def on_payment_intent(svc: Services, obj: Json, actor: str, now: datetime) -> str:
    """Any payment_intent.* event: re-fetch the PaymentIntent and bring the booking in line with it."""
    pi_id = obj.get("id")
    if (obj.get("metadata") or {}).get("purpose") == deposits.PURPOSE:
        # A damage-deposit hold (ExternalRef kind deposit_hold), never a booking's payment: only its lapse matters.
        return deposits.on_hold_event(svc, obj, actor, now)
    booking_id = _booking_for_pi(svc, pi_id)
    if booking_id is None or pi_id is None:
        return "ignored"  # not one of ours (another integration on the same account)
    pi = svc.payments.retrieve_payment_intent(pi_id)
    status = pi.get("status")
    if status == "succeeded":
        booking.confirm_payment(svc, pi_id, actor=actor, now=now)
        _ask_deposit_card(svc, booking_id, actor, now)
        return "processed"
    if status == "canceled":
        return release_unpaid_hold(svc, booking_id, actor=actor, now=now, action="booking.hold.cancelled")
    if status == "requires_payment_method" and pi.get("last_payment_error"):
        return record_payment_failure(svc, booking_id, pi, actor=actor, now=now)
    return "ignored"


def _ask_deposit_card(svc: Services, booking_id: int, actor: str, now: datetime) -> None:
    """A paid booking sold with a damage deposit: its card request is made now, so the confirmation page can ask for
    the card at once. A failure is only logged: the payment is recorded and the worker's round asks again."""
    try:
        deposits.start_deposit(svc, booking_id, now, actor=actor)
    except DomainError as exc:
        log.warning("Booking #%s: the card request for its deposit failed: %s", booking_id, exc.message)


def record_payment_failure(svc: Services, booking_id: int, pi: Json, *, actor: str, now: datetime) -> str:
    """A declined attempt. The hold stays until it expires so the customer can try another card (Stripe keeps the
    PaymentIntent open); a hold that has already lapsed is released now."""
    error = pi.get("last_payment_error") or {}
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        if b is None or b.status != BookingStatus.AWAITING_PAYMENT:
            return "ignored"
        lapsed = b.hold_expires_at is not None and b.hold_expires_at <= now
        audit.record(
            s,
            "booking.payment.failed",
            actor=actor,
            at=now,
            booking=b,
            decline_code=error.get("decline_code") or error.get("code"),
            message=error.get("message") or "Payment attempt failed",
        )
    if lapsed:
        return release_unpaid_hold(svc, booking_id, actor=actor, now=now, action="booking.hold.expired")
    return "processed"


def release_unpaid_hold(svc: Services, booking_id: int, *, actor: str, now: datetime, action: str) -> str:
    """Release an unpaid booking's hold (the expiry path, which confirms instead if the payment succeeded after
    all). Only from AWAITING_PAYMENT; anything else is already settled and left alone."""
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        if b is None or b.status != BookingStatus.AWAITING_PAYMENT:
            return "ignored"
    with booking.lease(svc, booking_id):
        with svc.session() as s:
            b = s.get(Booking, booking_id)
            if b is None or b.status != BookingStatus.AWAITING_PAYMENT:
                return "ignored"
        booking.release_hold(svc, booking_id, actor, now, action=action)
    return "processed"


def on_charge_refunded(svc: Services, obj: Json, actor: str, now: datetime) -> str:
    """Record every refund of the payment we have no record of (made in the Stripe dashboard, or ours recorded by
    another process a moment later). Refunds are money already returned: record them, never undo them."""
    pi_id = obj.get("payment_intent")
    booking_id = _booking_for_pi(svc, pi_id)
    if booking_id is None or pi_id is None:
        return "ignored"
    refunds = all_pages(
        lambda after: svc.payments.list_refunds(payment_intent_id=pi_id, limit=100, starting_after=after)
    )
    with svc.session() as s:
        b = s.get(Booking, booking_id)
        assert b is not None
        for refund in refunds:  # record_refund skips those already recorded
            if refund.get("status") not in ("succeeded", "pending"):
                continue
            metadata = refund.get("metadata") or {}
            ours = metadata.get("booking_id") == b.reference and metadata.get("origin")
            booking.record_refund(
                s,
                b,
                refund,
                origin=str(metadata["origin"]) if ours else "stripe_dashboard",
                reason=str(metadata.get("reason") or refund.get("reason") or "")[:500],
                actor=actor,
                now=now,
                message="Refund recorded from Stripe",
            )
    return "processed"


def on_dispute(svc: Services, obj: Json, actor: str, now: datetime) -> str:
    """charge.dispute.created / updated / closed: re-fetch the dispute and bring its DisputeCase in line (status,
    amount, reason, evidence due date, booking), audited; a redelivery changes nothing."""
    dispute = disputes.fetch_dispute(svc, obj.get("id"))
    disputes.record_dispute(svc, dispute, actor=actor, now=now)
    return "processed"


HANDLERS: dict[str, Callable[[Services, Json, str, datetime], str]] = {
    "payment_intent.succeeded": on_payment_intent,
    "payment_intent.payment_failed": on_payment_intent,
    "payment_intent.canceled": on_payment_intent,
    "setup_intent.succeeded": deposits.on_setup_intent,
    "charge.refunded": on_charge_refunded,
    "invoice.paid": invoices.on_invoice_paid,
    "invoice.voided": invoices.on_invoice_voided,
    "charge.dispute.created": on_dispute,
    "charge.dispute.updated": on_dispute,
    "charge.dispute.closed": on_dispute,
}


def replay_event(svc: Services, event_row_id: int, *, actor: str) -> str:
    """Process a stored event again (after an outage); returns its new status. Safe on any event, any number of
    times: the handlers converge on Stripe's current state."""
    now = svc.now()
    with svc.session() as s:
        row = s.get(WebhookEvent, event_row_id)
        if row is None:
            raise NotFound(f"No webhook event #{event_row_id}")
        audit.record(s, "webhook.replayed", actor=actor, at=now, event_id=row.event_id, type=row.type)
    return process_event(svc, event_row_id, actor=actor)
