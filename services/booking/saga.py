"""The saga (seed 000): Gate 1 → hold → PaymentIntent → on payment Gate 2 → one event per day → confirmation; on
any failure, delete what was created and refund in full."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from models.tables import (
    AmendmentState,
    Booking,
    BookingLeg,
    BookingStatus,
    Channel,
    ClaimKind,
    ExternalRef,
    LegState,
    SlotClaim,
)
from services.booking.change import change_for_payment, confirm_change_payment, open_change
from services.booking.claims import (
    busy_span,
    calendar_busy,
    claim_slot,
    is_overlap_error,
    release_claims,
    sweep_expired_claims,
)
from services.booking.details import check_request
from services.booking.events import delete_batch, event_body, event_id_for, insert_event, record_event_created
from services.booking.lease import lease
from services.booking.quotes import quote
from services.booking.refunds import refund_payment
from services.booking.requests import BookingRequest, ConfirmResult, StartResult
from services.booking.store import (
    booking_legs,
    derive_status,
    load_booking,
    new_reference,
    resolve_now,
    set_leg_state,
)
from services.booking.web_holds import hold_limit_refusal
from services.core import audit
from services.core.context import Services
from services.core.errors import (
    EventExists,
    GatewayError,
    InvalidState,
    NotAvailable,
    NotFound,
    SlotTaken,
    TooManyHolds,
    ValidationError,
)
from services.notify import emails, outbox
from services.rules.availability import (
    LegWindow,
    check_conflicts,
    leg_windows,
)
from services.rules.bill import sold_bill
from services.rules.deposits import terms_snapshot
from services.rules.refunds import policy_snapshot

log = logging.getLogger("roomdesk.booking")


def problems_for(svc: Services, req: BookingRequest, *, now: datetime | None = None) -> list[str]:
    """Every problem start_booking would raise for this request (customer details, extras, terms, Gate 1), without
    creating anything: lets a form show them all at once."""
    room = svc.catalogue.room(req.room)
    _, problems = check_request(req, room)
    if req.terms_version is not None and req.terms_version != svc.settings.terms_version:
        problems.append(_terms_changed(svc))
    return list(dict.fromkeys(problems + quote(svc, req, now=now).reasons))  # a malformed time: said once


def _terms_changed(svc: Services) -> str:
    return f"The terms have changed (now version {svc.settings.terms_version}); please read and accept them again"


class _Refused(Exception):
    """Leaves the hold's transaction (rolled back) when a web hold limit refuses it."""


def start_booking(
    svc: Services, req: BookingRequest, *, actor: str, now: datetime | None = None, on_invoice: bool = False
) -> StartResult:
    """Gate 1 → hold → PaymentIntent. Raises ValidationError, NotAvailable, TooManyHolds (web), SlotTaken or
    GatewayError. `on_invoice`: an organisation pays by invoice (services.booking.invoices makes and sends it): the
    hold has no expiry (it lasts until the invoice is paid, voided or staff release it) and no PaymentIntent is made."""
    now = resolve_now(svc, now)
    room = svc.catalogue.room(req.room)
    details, problems = check_request(req, room)
    if req.terms_version is not None and req.terms_version != svc.settings.terms_version:
        problems.append(_terms_changed(svc))
    if problems:
        raise ValidationError(problems)
    result = quote(svc, req, now=now)  # Gate 1: rules + calendar busy times + active holds
    if result.reasons:
        raise NotAvailable(result.reasons)
    policy = svc.policy
    web = req.channel == "web"
    # A web hold stays short until the customer reaches payment (reach_payment): a bot that never pays blocks little.
    hold_minutes = svc.settings.web_hold_start_minutes if web else svc.settings.phone_hold_minutes
    expires: datetime | None = None if on_invoice else now + timedelta(minutes=hold_minutes)
    buffer = timedelta(minutes=policy.buffer_minutes)

    refused: tuple[str, str, int] | None = None
    try:
        with svc.session() as s:
            # Counted in the transaction that inserts the hold, so concurrent requests cannot pass the limit.
            refused = hold_limit_refusal(svc, s, now, email=details.email, client_key=req.client_key) if web else None
            if refused is not None:
                raise _Refused()
            sweep_expired_claims(s, room.slug, now, actor)
            booking = Booking(
                reference=new_reference(s),
                room_slug=room.slug,
                status=BookingStatus.AWAITING_PAYMENT,
                channel=Channel(req.channel),
                start_time=f"{req.start:%H:%M}",
                end_time=f"{req.end:%H:%M}",
                customer_name=details.name,
                customer_email=details.email,
                customer_phone=details.phone,
                party_size=req.party_size,
                notes=details.notes,
                extras=details.extras,
                amount_cents=result.quote.total_cents,
                discount_cents=result.quote.discount_cents,
                tax_cents=result.quote.tax_cents,
                tax_snapshot=result.quote.tax_snapshot,
                currency=svc.settings.currency,
                # With the discount bands and eligibility it was sold under: a later change re-prices by them.
                pricing_snapshot={
                    **result.quote.snapshot(),
                    "discount_bands": [list(band) for band in policy.discount_bands],
                    "discount_eligible": room.discount_eligible,
                    # With the damage deposit its room asked then (or none): the deposit follows the sale.
                    **terms_snapshot(room.deposit_terms),
                },
                policy_snapshot=policy_snapshot(policy),
                hold_expires_at=expires,
                agreement_version=req.agreement_version,
                agreement_accepted_at=now if req.agreement_version else None,
                terms_version=req.terms_version,
                terms_accepted_at=now if req.terms_version else None,
                client_key=req.client_key if web else None,
                pay_token=secrets.token_urlsafe(18),
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
            s.add(booking)
            s.flush()
            assert booking.id is not None
            prices = {leg.day: leg for leg in result.quote.legs}
            for window in leg_windows(req.slot(), policy):
                leg = BookingLeg(
                    booking_id=booking.id,
                    day=window.day,
                    starts_at=window.starts_at,
                    ends_at=window.ends_at,
                    state=LegState.AWAITING_PAYMENT,
                    price_cents=prices[window.day].total_cents,
                    tax_cents=prices[window.day].tax_cents,
                    calendar_id=room.calendar_id,
                    updated_at=now,
                )
                s.add(leg)
                s.flush()
                assert leg.id is not None
                claim_slot(s, leg, room_slug=room.slug, buffer=buffer, kind=ClaimKind.HOLD, now=now, expires_at=expires)
                s.flush()
            audit.record(
                s,
                "booking.hold.created",
                actor=actor,
                at=now,
                booking=booking,
                dates=[d.isoformat() for d in sorted(req.dates)],
                time=f"{booking.start_time}-{booking.end_time}",
                amount_cents=booking.amount_cents,
                channel=req.channel,
                expires_at=expires,
            )
            if req.terms_version:
                version = req.terms_version
                audit.record(s, "booking.terms.accepted", actor=actor, at=now, booking=booking, version=version)
            booking_id, reference, pay_token = booking.id, booking.reference, booking.pay_token or ""
            bill = sold_bill(booking)
    except _Refused:
        assert refused is not None
        limit, message, held = refused
        with svc.session() as s:
            audit.record(
                s,
                "booking.hold.refused",
                actor=actor,
                at=now,
                message=f"Web hold refused: {limit} limit reached",
                limit=limit,
                held=held,
                email=details.email,
                client_key=req.client_key,  # a keyed hash: the raw address is never stored
                room=room.slug,
                dates=[d.isoformat() for d in sorted(req.dates)],
            )
        raise TooManyHolds(message) from None
    except IntegrityError as exc:
        if is_overlap_error(exc):
            log.info("Gate 1 lost the race: slot taken room=%s dates=%s", room.slug, req.dates)
            raise SlotTaken() from None
        raise

    if on_invoice:
        return StartResult(booking_id, reference, "", "", result.quote.total_cents, expires, bill, pay_token)
    metadata = {
        "room": room.slug,
        "booking_dates": ",".join(d.isoformat() for d in sorted(req.dates)),
        "booking_time": f"{req.start:%H:%M}-{req.end:%H:%M}",
        "customer_name": details.name[:200],
        "customer_email": details.email,
        "customer_phone": details.phone,
        "booking_id": reference,
    }
    try:
        pi = svc.payments.create_payment_intent(
            amount_cents=result.quote.total_cents,
            currency=svc.settings.currency.lower(),
            metadata=metadata,
            idempotency_key=f"roomdesk-{reference}-payment-intent",
        )
    except GatewayError as exc:
        with svc.session() as s:
            booking = load_booking(s, booking_id)
            for leg in booking_legs(s, booking_id):
                set_leg_state(leg, LegState.FAILED, now)
            release_claims(s, booking_id)
            booking.status = BookingStatus.FAILED
            booking.updated_at = now
            audit.record(
                s,
                "booking.payment_intent.failed",
                actor=actor,
                at=now,
                booking=booking,
                error=exc.message,
                message="PaymentIntent creation failed; hold released",
            )
        raise
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        booking.payment_intent_id = pi["id"]
        booking.updated_at = now
        s.add(
            ExternalRef(
                provider="stripe", kind="payment_intent", external_id=pi["id"], booking_id=booking_id, created_at=now
            )
        )
        audit.record(
            s, "booking.payment_intent.created", actor=actor, at=now, booking=booking, amount_cents=pi["amount"]
        )
    return StartResult(
        booking_id,
        reference,
        pi["id"],
        pi.get("client_secret") or "",
        result.quote.total_cents,
        expires,
        bill,
        pay_token,
    )


def confirm_payment(
    svc: Services, payment_intent_id: str, *, actor: str = "stripe-webhook", now: datetime | None = None
) -> ConfirmResult:
    """On payment success: Gate 2 → one event per day → confirmation email; on any failure, clean up and refund in
    full. Calling it again for the same payment changes nothing."""
    now = resolve_now(svc, now)
    with svc.read_session() as s:
        ref = s.exec(
            select(ExternalRef).where(
                ExternalRef.provider == "stripe",
                ExternalRef.kind == "payment_intent",
                ExternalRef.external_id == payment_intent_id,
            )
        ).first()
        if ref is None:
            raise NotFound(f"No booking for PaymentIntent {payment_intent_id}")
        booking_id = ref.booking_id
    if change_for_payment(svc, payment_intent_id) is not None:  # the difference a change to the booking costs
        done = confirm_change_payment(svc, payment_intent_id, actor=actor, now=now)
        return ConfirmResult(done.booking_id, done.reference, f"change_{done.outcome}", done.messages)
    with lease(svc, booking_id):
        return confirm_under_lease(svc, booking_id, payment_intent_id, actor, now)


def confirm_under_lease(svc: Services, booking_id: int, pi_id: str, actor: str, now: datetime) -> ConfirmResult:
    with svc.read_session() as s:
        booking = load_booking(s, booking_id)
        legs = booking_legs(s, booking_id)
        reference = booking.reference
        pending = [leg for leg in legs if leg.state == LegState.AWAITING_PAYMENT]
        if not pending:
            return ConfirmResult(booking_id, reference, "already_done", ["Nothing to do: already processed"])

    pi = svc.payments.retrieve_payment_intent(pi_id)  # re-fetch: never trust a webhook payload
    if pi.get("status") != "succeeded":
        return ConfirmResult(booking_id, reference, "not_paid", [f"Payment is {pi.get('status')}, not succeeded"])
    latest = pi.get("latest_charge")
    charge: dict[str, Any] = latest if isinstance(latest, dict) else {}
    received = int(pi.get("amount_received") or charge.get("amount_captured") or 0)
    if received and int(charge.get("amount_refunded") or 0) >= received:
        # Paid, then refunded in full (in Stripe's dashboard) before we processed it: the customer has their money
        # back, so the room is not theirs. The charge.refunded webhook records the refund itself.
        with svc.session() as s:
            booking = load_booking(s, booking_id)
            legs = booking_legs(s, booking_id)
            for leg in legs:
                if leg.state == LegState.AWAITING_PAYMENT:
                    set_leg_state(leg, LegState.FAILED, now)
            release_claims(s, booking_id)
            booking.status = derive_status(legs)
            booking.hold_expires_at = None
            booking.updated_at = now
            audit.record(
                s,
                "booking.payment.refunded_before_processing",
                actor=actor,
                at=now,
                booking=booking,
                amount=received,
                message="Paid, then refunded in full before Room Desk processed it: not confirmed",
            )
        return ConfirmResult(
            booking_id, reference, "refunded", ["The payment was refunded in full before it was processed"]
        )

    with svc.session() as s:
        booking = load_booking(s, booking_id)
        audit.record(s, "booking.payment.succeeded", actor=actor, at=now, booking=booking, amount=pi.get("amount"))

    # The hold may have lapsed while the customer paid: re-claim the slot (the database still refuses overlaps).
    try:
        with svc.session() as s:
            for leg in booking_legs(s, booking_id):
                claim = s.exec(select(SlotClaim).where(SlotClaim.leg_id == leg.id)).one()
                claim.kind, claim.expires_at, claim.active = ClaimKind.BOOKED, None, True
            s.flush()
    except IntegrityError as exc:
        if not is_overlap_error(exc):
            raise
        return _fail_and_refund(
            svc,
            booking_id,
            actor,
            now,
            "booking.gate2.conflict",
            "Gate 2 conflict",
            created=[],
            detail="hold lapsed and the slot was re-booked",
        )

    # Gate 2: look at the calendar itself again, ignoring this booking's own events. The booking and its days as read
    # above: under the lease nobody else changes them, and the claims just re-taken are not part of them.
    room = svc.catalogue.room(booking.room_slug)
    windows = [LegWindow(leg.day, leg.starts_at, leg.ends_at) for leg in legs]
    start, end = busy_span(windows, svc.policy.buffer_minutes)
    try:
        conflicts = check_conflicts(windows, calendar_busy(svc, room, start, end, ignore_booking=reference), svc.policy)
    except GatewayError as exc:
        return _fail_and_refund(
            svc,
            booking_id,
            actor,
            now,
            "booking.gate2.failed",
            "availability check failed",
            created=[],
            detail=exc.message,
        )
    if conflicts:
        return _fail_and_refund(
            svc,
            booking_id,
            actor,
            now,
            "booking.gate2.conflict",
            "Gate 2 conflict",
            created=[],
            detail="; ".join(conflicts),
        )

    # Every day's event in one batch request (one round trip for a 10-day booking); each day succeeds or fails alone.
    created: list[tuple[str, str]] = []
    failed: tuple[BookingLeg, GatewayError] | None = None
    bodies = [event_body(svc, booking, leg, event_id_for(reference, leg.day, leg.event_attempt)) for leg in legs]
    try:
        results: list[Any] = svc.calendar.insert_events(room.calendar_id, bodies)
    except GatewayError as exc:  # the whole batch failed to arrive (or its answer was lost)
        results = [exc] * len(legs)
    for leg, result in zip(legs, results, strict=True):
        event_id = event_id_for(reference, leg.day, leg.event_attempt)
        if isinstance(result, EventExists):
            try:  # ours from an earlier attempt, or a deleted id to move past: resolve it one by one
                event_id = insert_event(svc, booking, leg)
            except GatewayError as err:
                result = err
            else:
                result = None
        if isinstance(result, GatewayError):
            # A timeout may have created the event anyway: its id is deterministic, so clean-up deletes it too.
            created.append((leg.calendar_id, event_id))
            failed = failed or (leg, result)
            continue
        created.append((leg.calendar_id, event_id))
        record_event_created(svc, booking_id, leg, event_id, actor=actor, now=now)
    if failed is not None:
        failed_leg, failed_error = failed
        return _fail_and_refund(
            svc,
            booking_id,
            actor,
            now,
            "booking.event.failed",
            "Google Calendar event creation failed",
            created=created,
            detail=f"{failed_leg.day}: {failed_error.message}",
        )

    with svc.session() as s:
        booking = load_booking(s, booking_id)
        legs = booking_legs(s, booking_id)
        for leg in legs:
            set_leg_state(leg, LegState.CONFIRMED, now)
        booking.status = derive_status(legs)
        booking.confirmed_at = now
        booking.hold_expires_at = None
        booking.updated_at = now
        audit.record(
            s,
            "booking.confirmed",
            actor=actor,
            at=now,
            booking=booking,
            days=[leg.day for leg in legs],
            message="Booking confirmed",
        )
        mail = emails.confirmation(svc.catalogue, svc.settings, booking, legs)
        row = outbox.queue(
            s,
            booking,
            kind="confirmation",
            mail=mail,
            key=f"{reference}-confirmation",
            now=now,
        )
    assert row.id is not None
    sent = outbox.deliver(svc, row.id, now=now, actor=actor)
    messages = ["Confirmed", "Confirmation email sent" if sent else "Confirmation email could not be sent (queued)"]
    return ConfirmResult(booking_id, reference, "confirmed", messages)


def _fail_and_refund(
    svc: Services,
    booking_id: int,
    actor: str,
    now: datetime,
    action: str,
    message: str,
    *,
    created: list[tuple[str, str]],
    detail: str,
) -> ConfirmResult:
    """The seed's safety net: delete every event created for the booking, refund the full amount, tell the
    customer. If the clean-up itself fails, the audit trail says exactly what is left."""
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        reference = booking.reference
        audit.record(s, action, actor=actor, at=now, booking=booking, detail=detail, message=message)
        legs = booking_legs(s, booking_id)
    messages = [f"{message}: {detail}"]
    cleanup_failed: list[str] = []
    if created and len(legs) > 1:
        with svc.session() as s:
            audit.record(
                s,
                "booking.cleanup.started",
                actor=actor,
                at=now,
                booking=load_booking(s, booking_id),
                events=[e for _, e in created],
                message="Multi-day partial failure — cleaning up",
            )
    for _calendar_id, event_id, error in delete_batch(svc, created):
        if error is not None:
            cleanup_failed.append(event_id)
            log.error("Cleanup could not delete event %s booking=%s: %s", event_id, reference, error.message)
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        if cleanup_failed:
            audit.record(
                s,
                "booking.cleanup.failed",
                actor=actor,
                at=now,
                booking=booking,
                events=cleanup_failed,
                message="Cleanup failed: orphan events left on the calendar",
            )
            messages.append(f"Cleanup failed: {len(cleanup_failed)} event(s) left on the calendar")
        elif created:
            audit.record(
                s, "booking.cleanup.done", actor=actor, at=now, booking=booking, events=[e for _, e in created]
            )

    refunded = refund_payment(
        svc,
        booking_id,
        booking.amount_cents,
        origin="auto_gate2",
        reason=message,
        actor=actor,
        now=now,
        key=f"roomdesk-{reference}-auto-refund",
        policy_quote=booking.amount_cents,
    )
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        legs = booking_legs(s, booking_id)
        for leg in legs:
            if leg.state == LegState.AWAITING_PAYMENT:
                set_leg_state(leg, LegState.FAILED, now)
                if refunded:
                    leg.refunded_cents = leg.price_cents
        release_claims(s, booking_id)
        booking.status = BookingStatus.FAILED
        booking.hold_expires_at = None
        booking.updated_at = now
        if refunded:
            mail = emails.auto_refund(svc.catalogue, svc.settings, booking, legs)
            row = outbox.queue(
                s,
                booking,
                kind="auto_refund",
                mail=mail,
                key=f"{reference}-auto-refund",
                now=now,
            )
        else:
            messages.append("Automatic refund failed: refund by hand")
    if refunded:
        messages.append("Refunded in full")
        assert row.id is not None
        outbox.deliver(svc, row.id, now=now, actor=actor)
    outcome = "cleanup_failed" if cleanup_failed else ("auto_refunded" if refunded else "refund_failed")
    return ConfirmResult(booking_id, reference, outcome, messages)


def sandbox_pay(
    svc: Services, booking_id: int, *, actor: str, now: datetime | None = None, payment_method: str = "pm_card_visa"
) -> ConfirmResult:
    """Sandbox only: the customer pays with a test card, then the webhook's work runs (Gate 2, events, email)."""
    if svc.payments.mode != "sandbox":
        raise InvalidState("Test payments are only available in sandbox mode")
    with svc.session() as s:
        booking = load_booking(s, booking_id)
        pi_id = booking.payment_intent_id
        if booking.status != BookingStatus.AWAITING_PAYMENT or not pi_id:
            raise InvalidState(f"Booking {booking.reference} is not waiting for payment ({booking.status})")
    svc.payments.confirm_payment_intent(pi_id, payment_method=payment_method)
    return confirm_payment(svc, pi_id, actor=actor, now=now)


def sandbox_pay_change(
    svc: Services, booking_id: int, *, actor: str, now: datetime | None = None, payment_method: str = "pm_card_visa"
) -> ConfirmResult:
    """Sandbox only: the customer pays the difference of the booking's change with a test card, then the webhook's
    work runs (Gate 2, the change made, email)."""
    if svc.payments.mode != "sandbox":
        raise InvalidState("Test payments are only available in sandbox mode")
    with svc.session() as s:
        pending = open_change(s, booking_id)
        pi_id = pending.payment_intent_id if pending is not None else None
        if pending is None or pending.state != AmendmentState.AWAITING_PAYMENT or not pi_id:
            raise InvalidState("This booking has no change waiting for payment")
    svc.payments.confirm_payment_intent(pi_id, payment_method=payment_method)
    return confirm_payment(svc, pi_id, actor=actor, now=now)
