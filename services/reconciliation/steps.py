"""The booking steps fixes take that the booking package has no public step for in this shape: holding slots
again, creating a booking's missing events and noting ones already there, deleting events that may belong to no
booking, sending one email, refunding and closing days, restoring failed days. Each is audited under the person who
clicked; the booking package's own steps (`services.booking`) do the rest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from models.tables import (
    ACTIVE_LEG_STATES,
    Amendment,
    Booking,
    BookingLeg,
    BookingStatus,
    ClaimKind,
    LegState,
    SlotClaim,
)
from services import booking as bk
from services.core import audit
from services.core.context import Services
from services.core.errors import GatewayError
from services.notify import emails, outbox
from services.notify.emails import RenderedEmail
from services.reconciliation import probes
from services.reconciliation.fixes import FixContext, FixResult, Refusal, slot_taken
from services.rules.fmt import day_label, money, plural


def booking_for(svc: Services, pi_id: str | None, booking_id: int | None) -> tuple[Booking | None, list[BookingLeg]]:
    """The booking of a payment (or, with none, of an id) and its legs; (None, []) when Room Desk has none."""
    # By payment first: a booking adopted by an earlier click is found although the finding still has no booking.
    with svc.session() as s:
        booking = s.exec(select(Booking).where(Booking.payment_intent_id == pi_id)).first() if pi_id else None
        if booking is None and booking_id:
            booking = s.get(Booking, booking_id)
        legs = bk.booking_legs(s, booking.id) if booking and booking.id else []
    return booking, legs


def change_of(svc: Services, pi_id: str | None) -> Amendment | None:
    """The change to a booking that this PaymentIntent paid for (a change that cost more); None for any other."""
    if not pi_id:
        return None
    with svc.session() as s:
        return s.exec(select(Amendment).where(Amendment.payment_intent_id == pi_id)).first()


def claim_slots(svc: Services, booking_id: int, leg_ids: Sequence[int], ctx: FixContext) -> None:
    """Hold the legs' slots as booked again (the database refuses an overlap: someone else has the slot)."""
    buffer = timedelta(minutes=svc.policy.buffer_minutes)
    try:
        with svc.session() as s:
            booking = bk.load_booking(s, booking_id)
            for leg in bk.booking_legs(s, booking_id):
                if leg.id is None or leg.id not in leg_ids:
                    continue
                claim = s.exec(select(SlotClaim).where(SlotClaim.leg_id == leg.id)).first()
                if claim is None:
                    bk.claim_slot(
                        s, leg, room_slug=booking.room_slug, buffer=buffer, kind=ClaimKind.BOOKED, now=ctx.now
                    )
                elif not claim.active or claim.kind != ClaimKind.BOOKED:
                    claim.kind, claim.expires_at, claim.active = ClaimKind.BOOKED, None, True
                s.flush()
    except IntegrityError as exc:
        if not bk.is_overlap_error(exc):
            raise
        raise slot_taken(["another booking holds it in Room Desk"], ctx) from None


def create_events(
    svc: Services, booking_id: int, days: Sequence[date], actor: str, now: datetime
) -> tuple[list[date], str | None]:
    """Insert the days' events with their deterministic ids; stops at the first failure: (created days, problem)."""
    with svc.session() as s:
        booking = bk.load_booking(s, booking_id)
        legs = [leg for leg in bk.booking_legs(s, booking_id) if leg.day in days]
    created: list[date] = []
    for leg in legs:
        try:
            event_id = bk.insert_event(svc, booking, leg)
        except GatewayError as exc:
            return created, f"{day_label(leg.day)}: {exc.message}"
        bk.record_event_created(svc, booking_id, leg, event_id, actor=actor, now=now)
        created.append(leg.day)
    return created, None


def record_existing_events(
    svc: Services, booking_id: int, found: dict[date, probes.EventKey], actor: str, now: datetime
) -> None:
    """Note on each day the event that is there for it (one an earlier try created but never heard back about)."""
    with svc.session() as s:
        legs = bk.booking_legs(s, booking_id)
    for leg in legs:
        key = found.get(leg.day)
        if key is not None and key[0] == leg.calendar_id and leg.event_id != key[1]:
            bk.record_event_created(svc, booking_id, leg, key[1], actor=actor, now=now)


def delete_events(
    svc: Services,
    targets: Sequence[probes.EventKey],
    *,
    booking_id: int | None,
    pi_id: str | None,
    actor: str,
    now: datetime,
    note: str = "",
) -> tuple[int, list[str]]:
    """Delete events, audited against the booking (or, with none, the payment) with the clicker's note: (how many
    deleted, problems). Unlike `services.booking.delete_events`, the events need not belong to a booking."""
    deleted, problems = 0, []
    for calendar_id, event_id in targets:
        try:
            svc.calendar.delete_event(calendar_id, event_id)
        except GatewayError as exc:
            problems.append(f"event {event_id} could not be deleted ({exc.message})")
            action, extra = "booking.event.delete_failed", {"error": exc.message}
        else:
            deleted += 1
            action, extra = "booking.event.deleted", {}
        with svc.session() as s:
            booking = s.get(Booking, booking_id) if booking_id else None
            audit.record(
                s,
                action,
                actor=actor,
                at=now,
                booking=booking,
                payment_intent=pi_id,
                event_id=event_id,
                calendar_id=calendar_id,
                note=note or None,
                **extra,
            )
    return deleted, problems


def send_email(
    svc: Services, booking_id: int, *, kind: str, mail: RenderedEmail, key: str, actor: str, now: datetime
) -> bool:
    """Queue an email (once per key; an unsent one gets today's text) and try to send it."""
    with svc.session() as s:
        booking = bk.load_booking(s, booking_id)
        row = outbox.queue(s, booking, kind=kind, mail=mail, key=key, now=now)
        if row.status != "sent":
            row.subject, row.text, row.html = mail.subject, mail.text, mail.html
        row_id = row.id
    # Committed before the attempt (the outbox): a mail outage leaves it queued, never lost.
    assert row_id is not None
    return outbox.deliver(svc, row_id, now=now, actor=actor)


def send_confirmation(svc: Services, booking_id: int, actor: str, now: datetime) -> str:
    """Queue and send the confirmation if the customer never had one; what happened, for the result message."""
    with svc.session() as s:
        booking = bk.load_booking(s, booking_id)
        if booking.confirmation_sent_at is not None:
            return ""
        legs = [leg for leg in bk.booking_legs(s, booking_id) if leg.state in ACTIVE_LEG_STATES]
        mail = emails.confirmation(svc.catalogue, svc.settings, booking, legs)
        reference, to = booking.reference, booking.customer_email
    key = f"{reference}-confirmation"
    if send_email(svc, booking_id, kind="confirmation", mail=mail, key=key, actor=actor, now=now):
        return f"confirmation emailed to {to}"
    return "the confirmation email could not be sent (queued to retry)"


def reinstate(ctx: FixContext, booking_id: int, leg_ids: Sequence[int]) -> None:
    """Confirm days the saga marked FAILED whose money was never refunded, once their events exist."""
    with ctx.svc.session() as s:
        booking = bk.load_booking(s, booking_id)
        legs = bk.booking_legs(s, booking_id)
        for leg in legs:
            if leg.id in leg_ids and leg.state == LegState.FAILED:
                # The state machine has no FAILED → CONFIRMED edge on purpose: only this fix may take it, after it
                # re-checked the payment in Stripe, held the slot again and created the day's event.
                leg.state, leg.updated_at = LegState.CONFIRMED, ctx.now
        booking.status = bk.derive_status(legs)
        booking.confirmed_at = booking.confirmed_at or ctx.now
        booking.hold_expires_at = None
        booking.updated_at = ctx.now
        audit.record(
            s,
            "booking.reinstated",
            actor=ctx.actor,
            at=ctx.now,
            booking=booking,
            days=[leg.day for leg in legs if leg.id in leg_ids],
            finding=ctx.finding.key,
            message="Paid booking confirmed after its events were created by hand",
        )


# --------------------------------------------------------------------------------------------- refunding


def refund_and_close(
    ctx: FixContext,
    booking_id: int,
    *,
    amount: int,
    leg_ids: Sequence[int],
    to_state: LegState | None,
    key: str,
    reason: str,
    email: Literal["refund", "cancellation"],
    extra_events: Sequence[probes.EventKey] = (),
    replay: bool = False,
) -> FixResult:
    """Refund through Stripe (idempotent key, RefundRecord origin `remediation`), then move the legs on (active days
    to `to_state`, unpaid ones to FAILED), release their slots, delete their events and email the customer."""
    svc, now, actor = ctx.svc, ctx.now, ctx.actor
    with svc.session() as s:
        booking = bk.load_booking(s, booking_id)
        pi_id = booking.payment_intent_id
    # Re-checked under the lease: the money must still be there (unless this click finishes one whose refund Stripe
    # made and whose answer was lost: the refund below then replays by its key).
    pay = probes.fetch_payment(svc, pi_id)
    if not (replay and probes.unrecorded_refund(svc, pay, key) is not None):
        pay = probes.require_paid(pay, pi_id)
        kept = probes.booking_kept(svc, booking, pay)  # a change that cost more was paid separately
        if kept < amount:
            raise Refusal(f"Stripe shows only {pay.money(kept)} left to refund, not {pay.money(amount)} — sync first")
    errors: list[str] = []
    ok = bk.refund_payment(
        svc,
        booking_id,
        amount,
        origin="remediation",
        reason=reason,
        actor=actor,
        now=now,
        key=key,
        # The amount staff chose is the quote: a venue's-fault refund is its own policy (no refund_policy_mismatch).
        policy_quote=amount,
        leg_ids=leg_ids,
        errors=errors,
    )
    if not ok:
        why = errors[0] if errors else "Stripe did not answer"
        raise Refusal(f"The refund failed ({why}); nothing was changed. Try again.")

    with svc.session() as s:
        booking = bk.load_booking(s, booking_id)
        legs = bk.booking_legs(s, booking_id)
        touched, left = [], amount
        for leg in legs:
            if leg.id not in leg_ids:
                continue
            share = min(left, max(leg.price_cents - leg.refunded_cents, 0))
            leg.refunded_cents += share
            left -= share
            if to_state is not None and LegState(leg.state) in ACTIVE_LEG_STATES:
                bk.set_leg_state(leg, to_state, now)
            elif to_state is not None and leg.state == LegState.AWAITING_PAYMENT:
                bk.set_leg_state(leg, LegState.FAILED, now)
            touched.append(leg)
            leg.updated_at = now
        if to_state is not None:
            bk.release_claims(s, booking_id, leg_ids)
            booking.hold_expires_at = None
        booking.status = bk.derive_status(legs)
        booking.updated_at = now
        stands = booking.status in (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED, BookingStatus.COMPLETED)
        audit.record(
            s,
            "booking.cancelled" if email == "cancellation" else "booking.refunded",
            actor=actor,
            at=now,
            booking=booking,
            days=[leg.day for leg in touched],
            refund_cents=amount,
            reason=reason,
            finding=ctx.finding.key,
        )
        refund_tax = bk.refund_tax_for(s, booking_id, key)
        if email == "cancellation":
            mail = emails.cancellation(
                svc.catalogue, svc.settings, booking, touched, amount, refund_tax_cents=refund_tax
            )
        else:
            mail = emails.refund(
                svc.catalogue,
                svc.settings,
                booking,
                touched or legs,
                amount,
                booking_stands=stands,
                refund_tax_cents=refund_tax,
            )
        reference, to = booking.reference, booking.customer_email
        room_cal = svc.catalogue.room(booking.room_slug).calendar_id
        days = {leg.day for leg in touched}
        targets = {(leg.calendar_id, leg.event_id) for leg in touched if leg.event_id and to_state is not None}

    if to_state is not None and days:
        # Events of the refunded days: the legs' own, plus any the old system or a retry left on those days.
        for ev_key, ev in probes.own_events(svc, room_cal, reference, pi_id, extra_events).items():
            if probes.event_day(ev, svc) in days:
                targets.add(ev_key)
    live = [t for t in sorted(targets) if probes.is_live(svc.calendar.get_event(*t))]
    deleted, problems = delete_events(svc, live, booking_id=booking_id, pi_id=pi_id, actor=actor, now=now)
    sent = send_email(
        svc,
        booking_id,
        kind=email,
        mail=mail,
        key=f"{reference}-{ctx.key}-{email}",
        actor=actor,
        now=now,
    )
    with svc.session() as s:
        currency = bk.load_booking(s, booking_id).currency
    parts = [f"Refunded {money(amount, currency)} for {reference}"]
    if deleted:
        parts.append(f"deleted {plural(deleted, 'event')}")
    parts.append(f"emailed {to}" if sent else "the email could not be sent (queued to retry)")
    message = "; ".join(parts + problems)
    return FixResult(ctx.finding.id or 0, "", True, message, changed=True)


def policy_refund(svc: Services, booking_id: int, now: datetime) -> tuple[int, list[int], str]:
    """What the booking's cancellation policy refunds now for its confirmed days: (cents, leg ids, bands)."""
    quotes = [(leg, q) for leg, q in bk.cancellation_quote(svc, booking_id, now=now) if leg.state == LegState.CONFIRMED]
    bands = ", ".join(f"{day_label(leg.day)}: {q.band}" for leg, q in quotes)
    return sum(q.refund_cents for _, q in quotes), [leg.id for leg, _ in quotes if leg.id is not None], bands
