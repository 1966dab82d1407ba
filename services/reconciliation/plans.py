"""One planner per remediation action, and the table of them. A planner re-checks its finding against Stripe and
the calendars now (`probes`) and returns a `Plan`: the text the confirmation dialog shows, and the function that
does exactly that through the booking package's steps (and `steps`, `adopt` for what they lack)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Literal

from sqlmodel import col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    Amendment,
    AmendmentState,
    BlockState,
    Booking,
    BookingLeg,
    BookingStatus,
    EmailOutbox,
    InvoiceState,
    LegState,
    RoomBlock,
)
from services import booking as bk
from services.booking import invoices
from services.booking.blocks import BLOCK_PROPERTY
from services.booking.queries import invoice_of
from services.core import audit
from services.core.context import Services
from services.core.errors import ValidationError
from services.gateways.base import Json
from services.notify import emails, outbox
from services.reconciliation import adopt, probes, reconcile, steps
from services.reconciliation.findings import REFUND_TOLD_KINDS
from services.reconciliation.fixes import FixContext, FixResult, Plan, Refusal, days_text, slot_taken
from services.reconciliation.legacy import day_shares, metadata_extras
from services.reconciliation.probes import EventKey, LivePayment
from services.rules.availability import LegWindow, closure_reason
from services.rules.fmt import day_label, plural


def _who(svc: Services, booking: Booking, days: Sequence[date] = ()) -> str:
    """'RD4K7M2Q (Boardroom, Wed 4 Mar 10:00–12:00)': a booking as staff name it."""
    room = svc.catalogue.room(booking.room_slug)
    when = f"{days_text(days)} " if days else ""
    return f"{booking.reference} ({room.name}, {when}{booking.start_time}–{booking.end_time})"


def _legacy_who(pay: LivePayment, legacy: adopt.LegacyBooking | None) -> str:
    return f"payment {pay.id} ({legacy.label()})" if legacy else f"payment {pay.id}"


def _old_booking(ctx: FixContext) -> tuple[LivePayment, adopt.LegacyBooking, dict[date, EventKey]]:
    """A payment the old system took that still keeps money, its booking as the metadata says, and the days that
    have their event now: what a fix needs to adopt it as the booking it is."""
    svc, f = ctx.svc, ctx.finding
    pay = probes.require_paid(probes.fetch_payment(svc, f.payment_intent), f.payment_intent)
    legacy = adopt.read_legacy(svc, pay)
    _refuse_unknown_days(pay, legacy)
    calendar_id = legacy.room.calendar_id
    events = probes.own_events(svc, calendar_id, None, pay.id, probes.named_events(svc, f))
    return pay, legacy, probes.days_with_events(svc, events, calendar_id)


def _refuse_unknown_days(pay: LivePayment, legacy: adopt.LegacyBooking) -> None:
    """Refuse to book an old payment of several days that is partly refunded: which days the refund gave up is not
    recorded, and booking every day could hold the room for days the customer cancelled. One day still paid for (the
    refund was not its cancellation, or it would not be expected) is booked."""
    if pay.refunded and len(legacy.dates) > 1:
        raise Refusal(
            f"Payment {pay.id} is partly refunded in Stripe ({pay.money(pay.refunded)}) and the old system did not "
            "record which of its days that gave up: check with the customer, or refund the rest"
        )


def _adopt_as_booked(ctx: FixContext, pay: LivePayment, legacy: adopt.LegacyBooking, have: dict[date, EventKey]) -> int:
    """Adopt an old payment as the confirmed booking it is: its days held, the events it has noted on them."""
    return adopt.booking_to_fix(ctx, None, pay, legacy, state=LegState.CONFIRMED, claim=True, events=have)


def _plan_create_events(ctx: FixContext) -> Plan:
    """Create the missing days' events (seed incident #2's last resort), after Gate 2 on the calendar itself."""
    svc, f = ctx.svc, ctx.finding
    pay = probes.require_paid(probes.fetch_payment(svc, f.payment_intent), f.payment_intent)
    booking, legs = ctx.booking, ctx.legs
    named = probes.named_events(svc, f)
    legacy: adopt.LegacyBooking | None = None
    if booking is None:
        legacy = adopt.read_legacy(svc, pay)
        _refuse_unknown_days(pay, legacy)
        room = legacy.room
        events = probes.own_events(svc, room.calendar_id, None, pay.id, named)
        have = probes.days_with_events(svc, events, room.calendar_id)
        targets = legacy.windows(svc)
        reinstate, reference, to = True, "", legacy.email
        who = f"payment {pay.id} ({legacy.room.name}, {legacy.start:%H:%M}–{legacy.end:%H:%M})"
    else:
        status = BookingStatus(booking.status)
        if status == BookingStatus.AWAITING_PAYMENT:
            raise Refusal(f"Booking {booking.reference} still waits for its payment to be processed: do that first")
        if status == BookingStatus.FAILED:
            if pay.refunded:
                raise Refusal(f"Payment {pay.id} is partly refunded in Stripe: check it before creating events")
            chosen = [leg for leg in legs if leg.state == LegState.FAILED and leg.refunded_cents == 0]
        elif status in (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED, BookingStatus.COMPLETED):
            chosen = [leg for leg in legs if leg.state in ACTIVE_LEG_STATES]
        else:
            raise Refusal(f"Booking {booking.reference} is {status.value.lower()}: no events to create")
        room = svc.catalogue.room(booking.room_slug)
        events = probes.own_events(svc, room.calendar_id, booking.reference, pay.id, named)
        have = probes.days_with_events(svc, events, room.calendar_id)
        targets = [LegWindow(leg.day, leg.starts_at, leg.ends_at) for leg in chosen]
        reinstate, reference, to = status == BookingStatus.FAILED, booking.reference, booking.customer_email
        who = _who(svc, booking)
    missing = [w for w in targets if w.day not in have]
    if not missing and not reinstate:
        raise Refusal("Nothing to do: every day already has its calendar event")
    # (A failed booking whose events all exist — an earlier try created them and lost the answer — is still
    # restored: its slots held again, the events noted on its days, the customer confirmed.)
    own_ids = {eid for _, eid in events}
    conflicts = (
        probes.slot_conflicts(svc, room, missing, own=own_ids, booking_id=booking.id if booking else None, now=ctx.now)
        if missing
        else []
    )
    if conflicts:
        raise slot_taken(conflicts, ctx)
    days = [w.day for w in missing]
    todo = []
    if legacy is not None:
        refunded = f", {pay.money(pay.refunded)} of it refunded in Stripe" if pay.refunded else ""
        todo.append(
            f"Adopt payment {pay.id} ({pay.money(pay.received)}{refunded}, made by the old system) into a booking"
        )
    elif reinstate:
        todo.append(
            f"Restore booking {reference} (its days were marked failed, but the {pay.money(pay.kept)} was kept)"
        )
    if days:
        todo.append(f"create {plural(len(days), 'calendar event')} for {who}: {days_text(days)}")
    else:
        todo.append(f"note the calendar events already there for {who}")
    if booking is None or booking.confirmation_sent_at is None:
        todo.append(f"email the confirmation to {to}")
    text = ", then ".join([todo[0][:1].upper() + todo[0][1:], *todo[1:]]) + "."

    def apply() -> FixResult:
        booking_id = adopt.booking_to_fix(ctx, booking, pay, legacy, state=LegState.FAILED, claim=True, events=have)
        with bk.lease(svc, booking_id):
            failed_ids: list[int] = []
            if reinstate:
                with svc.session() as s:
                    legs = bk.booking_legs(s, booking_id)
                    failed_ids = [leg.id for leg in legs if leg.state == LegState.FAILED and leg.id]
                steps.claim_slots(svc, booking_id, failed_ids, ctx)
            created, problem = steps.create_events(svc, booking_id, days, ctx.actor, ctx.now)
            if problem:
                if reinstate:  # a failed booking holds no slot; the retry claims it again
                    with svc.session() as s:
                        bk.release_claims(s, booking_id, failed_ids)
                return FixResult(
                    f.id or 0,
                    "",
                    False,
                    f"Created {len(created)} of {plural(len(days), 'event')}; Google Calendar failed on {problem}. "
                    "Try again: nothing is duplicated.",
                    changed=bool(created) or legacy is not None,
                )
            steps.record_existing_events(svc, booking_id, have, ctx.actor, ctx.now)
            if reinstate:
                steps.reinstate(ctx, booking_id, failed_ids)
            emailed = steps.send_confirmation(svc, booking_id, ctx.actor, ctx.now)
        message = (
            f"Created {plural(len(days), 'event')}: {days_text(days)}" if days else "The events were already there"
        ) + (f"; {emailed}" if emailed else "")
        return FixResult(f.id or 0, "", True, message, changed=True)

    return Plan(text, apply)


def _plan_recreate_events(ctx: FixContext) -> Plan:
    """Replace the events that disagree with the payment (room, date or time) by the right ones."""
    svc, f = ctx.svc, ctx.finding
    pay = probes.require_paid(probes.fetch_payment(svc, f.payment_intent), f.payment_intent)
    booking, legs = ctx.booking, ctx.legs
    legacy: adopt.LegacyBooking | None = None
    if booking is None:
        legacy = adopt.read_legacy(svc, pay)
        room, windows, reference = legacy.room, legacy.windows(svc), None
        hours = f"{legacy.start:%H:%M}–{legacy.end:%H:%M}"
    else:
        room, reference = svc.catalogue.room(booking.room_slug), booking.reference
        windows = [LegWindow(leg.day, leg.starts_at, leg.ends_at) for leg in legs if leg.state in ACTIVE_LEG_STATES]
        hours = f"{booking.start_time}–{booking.end_time}"
    events = probes.own_events(svc, room.calendar_id, reference, pay.id, probes.named_events(svc, f))
    right: dict[date, EventKey] = {}
    for key, ev in events.items():
        for w in windows:
            if probes.event_matches(svc, key, ev, w, room.calendar_id):
                right.setdefault(w.day, key)
    wrong = [key for key in events if key not in right.values()]
    if not wrong:
        raise Refusal("Nothing to do: the events now agree with the payment")
    missing = [w for w in windows if w.day not in right]
    conflicts = (
        probes.slot_conflicts(
            svc, room, missing, own={eid for _, eid in events}, booking_id=booking.id if booking else None, now=ctx.now
        )
        if missing
        else []
    )
    if conflicts:
        raise Refusal(
            f"Nothing was changed: the booked slot is taken now ({'; '.join(conflicts)}). Call the customer.",
            offer=ctx.offer("refund", "cancel"),
        )
    wrong_labels = [probes.event_label(svc, key, events[key]) for key in wrong]
    days = [w.day for w in missing]
    text = f"Delete {plural(len(wrong), 'event')} that disagree with the payment ({'; '.join(wrong_labels)})"
    if days:
        text += f" and create {plural(len(days), 'event')} as paid: {room.name}, {days_text(days)} {hours}"
    text += ". The new events are created first, so the room is never shown free."
    if legacy is not None:
        text = (
            f"Adopt payment {pay.id} (made by the old system) into a booking, then d{text[1:-1]}; email the "
            f"confirmation to {legacy.email}."
        )

    def apply() -> FixResult:
        booking_id = adopt.booking_to_fix(ctx, booking, pay, legacy, state=LegState.CONFIRMED, claim=True, events=right)
        with bk.lease(svc, booking_id):
            wrong_ids = {eid for _, eid in wrong}
            with svc.session() as s:
                for leg in bk.booking_legs(s, booking_id):
                    if leg.day in days and leg.event_id in wrong_ids:
                        # The leg's own event was moved: a new id, since Google would answer "exists" for the old one.
                        leg.event_attempt += 1
            created, problem = steps.create_events(svc, booking_id, days, ctx.actor, ctx.now)
            if problem:
                return FixResult(
                    f.id or 0,
                    "",
                    False,
                    f"Created {len(created)} of {plural(len(days), 'event')} and deleted none; Google Calendar "
                    f"failed on {problem}. Try again.",
                    changed=bool(created) or legacy is not None,
                )
            deleted, problems = steps.delete_events(
                svc, wrong, booking_id=booking_id, pi_id=pay.id, actor=ctx.actor, now=ctx.now
            )
            steps.record_existing_events(svc, booking_id, right, ctx.actor, ctx.now)  # incl. one an earlier try created
            # An adopted booking is new to the customer too: it gets the confirmation the old system never sent.
            emailed = steps.send_confirmation(svc, booking_id, ctx.actor, ctx.now) if legacy is not None else ""
        parts = [f"Deleted {deleted} of {plural(len(wrong), 'wrong event')}"]
        if created:
            parts.append(f"created {plural(len(created), 'event')}: {days_text(created)}")
        if emailed:
            parts.append(emailed)
        return FixResult(f.id or 0, "", not problems, "; ".join(parts + problems), changed=True)

    return Plan(text, apply)


def _plan_refund(ctx: FixContext) -> Plan:
    """Refund what remains, the policy's quote or (amount_mismatch) what was charged above the price."""
    svc, f, amount_kind = ctx.svc, ctx.finding, ctx.opts.amount
    booking, legs = ctx.booking, ctx.legs
    change = steps.change_of(svc, f.payment_intent)
    if change is not None:
        # A change's payment is never refunded on its own from here: while the change waits for it, processing it
        # makes the change or (the room taken meanwhile) refunds the difference in full; once made, money goes back
        # by changing or cancelling the booking, which spreads it over all its payments.
        if f.code == "stale_payment":
            raise Refusal(
                f"This is the payment of change {change.number} to the booking: process it instead (if the change "
                "can no longer be made, the difference is refunded in full)",
                offer=ctx.offer("confirm_payment"),
            )
        raise Refusal(
            f"This is the payment of change {change.number} to the booking: give money back by changing or "
            "cancelling the booking, which refunds over all its payments",
            offer=ctx.offer("acknowledge"),
        )
    fetched = probes.fetch_payment(svc, f.payment_intent)
    key = f"roomdesk-{booking.reference if booking else f.payment_intent}-{ctx.key}-refund"
    earlier = probes.unrecorded_refund(svc, fetched, key)
    if earlier is not None and fetched is not None:
        # Plan as the first click did, before its refund: this click records it and closes the booking.
        fetched = replace(fetched, refunded=max(fetched.refunded - int(earlier.get("amount") or 0), 0))
    pay = probes.require_paid(fetched, f.payment_intent)
    legacy = adopt.read_legacy(svc, pay) if booking is None else None
    reason = ctx.opts.reason.strip() or {
        "paid_no_event": "Paid, but the booking could not be put on the calendar",
        "stale_payment": "Payment never processed; refunded instead of booking",
        "amount_mismatch": "Charged a different amount than the room's price",
    }.get(f.code, "Refunded by staff")
    who = _who(svc, booking, [leg.day for leg in legs]) if booking else _legacy_who(pay, legacy)
    if amount_kind == "difference":
        if f.code != "amount_mismatch":
            raise Refusal("Only a wrong amount has a difference to refund")
        expected = f.details.get("expected_cents")
        if not isinstance(expected, int):
            raise Refusal("This finding does not say what the price was; refund in full or by the policy")
        cents = pay.kept - expected  # what Stripe still keeps above the price: nothing once it was refunded
        if cents <= 0:
            raise Refusal(f"Nothing to do: Stripe keeps {pay.money(pay.kept)}, not more than the price")
        leg_ids: list[int] = []
        to_state: LegState | None = None
        text = (
            f"Refund {pay.money(cents)} of {who}: what was charged above its price ({pay.money(pay.received)} "
            f"charged, {pay.money(expected)} due). The booking itself is unchanged; the customer is emailed."
        )
    elif amount_kind == "policy":
        if booking is None or booking.id is None:
            raise Refusal("This payment has no booking in Room Desk, so no cancellation policy applies: refund in full")
        cents, leg_ids, bands = steps.policy_refund(svc, booking.id, ctx.now)
        if not leg_ids and booking.status in (BookingStatus.CANCELLED, BookingStatus.REFUNDED):
            raise Refusal(f"Nothing to do: booking {booking.reference} has no confirmed day left to refund")
        if not leg_ids:
            raise Refusal(f"Booking {booking.reference} has no confirmed days to apply the policy to: refund in full")
        cents = min(cents, probes.booking_kept(svc, booking, pay))
        if cents <= 0:
            raise Refusal(f"Nothing to refund: the policy gives nothing back now ({bands})")
        # A refund by the policy is a cancellation: the days end CANCELLED (REFUNDED means all the money went back).
        to_state = LegState.CANCELLED
        text = (
            f"Refund {pay.money(cents)} for {who} under its cancellation policy ({bands}); its days are cancelled, "
            "their slots released and events deleted, and the customer is emailed."
        )
    else:
        # Everything Stripe holds for the booking: its own payment and those of changes that cost more.
        cents = probes.booking_kept(svc, booking, pay) if booking is not None else pay.kept
        leg_ids = [leg.id for leg in legs if leg.id is not None] if booking else []
        to_state = LegState.REFUNDED
        of = f" (all that is left of {pay.money(pay.received)})" if pay.refunded else ""
        text = (
            f"Refund {pay.money(cents)}{of} for {who}; its days are marked refunded, their slots released and "
            "events deleted, and the customer is emailed."
        )
    if legacy is not None:
        text = f"Adopt payment {pay.id} (made by the old system) into a booking, then r" + text[1:]

    def apply() -> FixResult:
        # Adopted as failed: the old system never booked it on our side; the refund closes it.
        booking_id = adopt.booking_to_fix(ctx, booking, pay, legacy, state=LegState.FAILED, claim=False, events={})
        ids = leg_ids
        if legacy is not None:
            with svc.session() as s:
                ids = [leg.id for leg in bk.booking_legs(s, booking_id) if leg.id is not None]
        with bk.lease(svc, booking_id):
            return steps.refund_and_close(
                ctx,
                booking_id,
                amount=cents,
                leg_ids=ids,
                to_state=to_state,
                key=key,
                reason=reason,
                email="cancellation" if to_state == LegState.CANCELLED else "refund",
                extra_events=probes.named_events(svc, f),
                replay=earlier is not None,
            )

    return Plan(text, apply)


def _double_booking_target(ctx: FixContext) -> tuple[Booking | None, list[BookingLeg]]:
    """The booking to cancel in an overlapping pair: the finding's payment's, or of two bookings the later one."""
    pis = [p for p in ctx.finding.details.get("payment_intents", []) if isinstance(p, str)]
    if not pis and ctx.finding.payment_intent:
        pis = [ctx.finding.payment_intent]
    found = [(b, legs) for b, legs in (steps.booking_for(ctx.svc, p, None) for p in pis) if b is not None]
    if not found:
        return ctx.booking, ctx.legs
    return max(found, key=lambda pair: (pair[0].created_at, pair[0].id or 0) if pair[0] else (ctx.now, 0))


def _plan_give_back(ctx: FixContext, booking: Booking | None, legs: list[BookingLeg], reason: str) -> Plan:
    """Cancelling what never became a confirmed booking (the saga gave up, or the old system half-made it) while
    the money was kept: everything goes back and whatever events were made are deleted (seed incident #4's
    "cleanup failed" fix)."""
    svc, f = ctx.svc, ctx.finding
    pi_id = booking.payment_intent_id if booking else f.payment_intent
    pay = probes.require_paid(probes.fetch_payment(svc, pi_id), pi_id)
    legacy = adopt.read_legacy(svc, pay) if booking is None else None
    named = probes.named_events(svc, f)
    calendar_id = (
        svc.catalogue.room(booking.room_slug).calendar_id if booking else legacy.room.calendar_id if legacy else ""
    )
    events = probes.own_events(svc, calendar_id, booking.reference if booking else None, pay.id, named)
    who = _who(svc, booking, [leg.day for leg in legs]) if booking else _legacy_who(pay, legacy)
    text = (
        f"{who} never became a confirmed booking but the {pay.money(pay.kept)} was kept: refund all of it, delete "
        f"its {plural(len(events), 'event')} on the calendar and email the customer."
    )

    def apply() -> FixResult:
        booking_id = adopt.booking_to_fix(ctx, booking, pay, legacy, state=LegState.FAILED, claim=False, events={})
        with svc.session() as s:
            ids = [leg.id for leg in bk.booking_legs(s, booking_id) if leg.id is not None]
            reference = bk.load_booking(s, booking_id).reference
        with bk.lease(svc, booking_id):
            return steps.refund_and_close(
                ctx,
                booking_id,
                amount=pay.kept,
                leg_ids=ids,
                to_state=LegState.REFUNDED,
                key=f"roomdesk-{reference}-{ctx.key}-refund",
                reason=reason,
                email="refund",
                extra_events=named,
            )

    return Plan(text, apply)


def _plan_cancel(ctx: FixContext, *, full: bool) -> Plan:
    """Cancel the booking's affected days: by its policy (`cancel`) or refunding them in full (`cancel_full_refund`,
    for a closed venue day: the venue's fault)."""
    svc, f = ctx.svc, ctx.finding
    booking, legs = _double_booking_target(ctx) if f.code == "double_booking" else (ctx.booking, ctx.legs)
    if f.code == "double_booking" and not probes.still_overlapping(svc, probes.named_events(svc, f)):
        raise Refusal("Nothing to do: the two events no longer overlap (one was moved or deleted)")
    reason = ctx.opts.reason.strip() or {
        "double_booking": "Double-booked: the room was given to someone else",
        "holiday_booking": "The venue is closed that day",
        "partial_multiday": "Some days of the booking could not be put on the calendar",
    }.get(f.code, "Cancelled by staff")
    if booking is None and f.code == "holiday_booking" and full:
        return _plan_refund_closed_old_days(ctx, reason)
    if booking is None or booking.status == BookingStatus.FAILED:
        return _plan_give_back(ctx, booking, legs, reason)

    assert booking.id is not None
    booking_id, reference = booking.id, booking.reference
    if f.code == "double_booking":
        chosen = [leg for leg in legs if leg.state == LegState.CONFIRMED and leg.day.isoformat() in f.dates]
    elif f.code == "holiday_booking":
        # A closed day already under way or past is refunded too (full refund only): the customer paid for a day the
        # venue was shut.
        states = ACTIVE_LEG_STATES if full else {LegState.CONFIRMED}
        closures = svc.catalogue.closure_map
        chosen = [leg for leg in legs if leg.state in states and closure_reason(leg.day, svc.policy, closures)]
    else:
        chosen = [leg for leg in legs if leg.state == LegState.CONFIRMED]
    if not chosen:
        raise Refusal(f"Nothing to do: booking {reference} has no confirmed day left to cancel here")
    fetched = probes.fetch_payment(svc, booking.payment_intent_id)
    full_key = f"roomdesk-{reference}-{ctx.key}-cancel-full"
    # The key bk.cancel_booking refunds a policy cancellation under (it replays a refund whose answer was lost).
    policy_key = bk.cancel_refund_key(reference, [leg.id for leg in chosen if leg.id is not None])
    earlier = probes.unrecorded_refund(svc, fetched, full_key if full else policy_key)
    if earlier is not None and fetched is not None:
        # An earlier click refunded and lost the answer: plan as it did; this click records it and closes.
        fetched = replace(fetched, refunded=max(fetched.refunded - int(earlier.get("amount") or 0), 0))
    pay = probes.require_paid(fetched, booking.payment_intent_id)
    ids = [leg.id for leg in chosen if leg.id is not None]
    days = [leg.day for leg in chosen]
    who = _who(svc, booking, days)
    to_state, email = _full_refund_outcome(chosen, ctx.now)
    if full:
        cents = sum(max(leg.price_cents - leg.refunded_cents, 0) for leg in chosen)
        kept = probes.booking_kept(svc, booking, pay)
        if kept < cents:
            raise Refusal(f"Stripe shows only {pay.money(kept)} left to refund, not {pay.money(cents)} — sync first")
        if to_state == LegState.CANCELLED:
            text = (
                f"Cancel {who} and refund it in full, {pay.money(cents)} (the venue's fault, whatever the policy "
                f"says); delete its {plural(len(chosen), 'event')} and email the customer."
            )
        else:
            text = (
                f"Refund {who} in full, {pay.money(cents)}: {_past_text(days)} (the venue's fault, whatever the "
                f"policy says); mark {_them(days)} refunded, delete {_its(days)} {plural(len(chosen), 'event')} and "
                "email the customer."
            )
    else:
        quotes = bk.cancellation_quote(svc, booking_id, ids, now=ctx.now)
        cents = sum(q.refund_cents for _, q in quotes)
        bands = ", ".join(f"{day_label(leg.day)}: {q.band}" for leg, q in quotes)
        text = (
            f"Cancel {who} with the policy refund of {pay.money(cents)} ({bands}); delete its "
            f"{plural(len(chosen), 'event')} and email the customer."
        )

    def apply() -> FixResult:
        if full:
            with bk.lease(svc, booking_id):
                result = steps.refund_and_close(
                    ctx,
                    booking_id,
                    amount=cents,
                    leg_ids=ids,
                    to_state=to_state,
                    key=full_key,
                    reason=reason,
                    replay=earlier is not None,
                    email=email,
                )
            return _said_closed(result, days, to_state)
        done = bk.cancel_booking(svc, booking_id, actor=ctx.actor, leg_ids=ids, reason=reason, now=ctx.now)
        message = f"Cancelled {reference} on {days_text(done.cancelled_days)}; "
        message += f"refunded {pay.money(done.refund_cents)}; "
        message += "; ".join(done.problems) if done.problems else "the customer was emailed"
        return FixResult(f.id or 0, "", True, message, changed=True)

    return Plan(text, apply)


def _full_refund_outcome(
    legs: Sequence[BookingLeg], now: datetime
) -> tuple[LegState, Literal["cancellation", "refund"]]:
    """What refunding closed days in full makes of them: days all still ahead are cancelled (the cancellation email);
    a day under way or past can no longer be cancelled, so they are marked refunded (the refund email)."""
    if all(leg.state == LegState.CONFIRMED and leg.starts_at > now for leg in legs):
        return LegState.CANCELLED, "cancellation"
    return LegState.REFUNDED, "refund"


def _past_text(days: Sequence[date]) -> str:
    return f"the venue was shut on {days_text(days)}" if days else "the venue was shut"


def _them(days: Sequence[date]) -> str:
    return "the day" if len(days) == 1 else "the days"


def _its(days: Sequence[date]) -> str:
    return "its" if len(days) == 1 else "their"


def _said_closed(result: FixResult, days: Sequence[date], to_state: LegState) -> FixResult:
    """The refund's message, led by what happened to the closed days."""
    lead = "Cancelled" if to_state == LegState.CANCELLED else "Marked refunded:"
    result.message = f"{lead} {days_text(days)}; " + result.message[:1].lower() + result.message[1:]
    return result


def _plan_refund_closed_old_days(ctx: FixContext, reason: str) -> Plan:
    """A payment the old system took for days the venue is shut (seed #6: it never checked holidays): adopt it as the
    confirmed booking it is, then give those days back in full as for a booking of ours — cancelled if still ahead,
    marked refunded if past. Its other days stay booked."""
    svc = ctx.svc
    pay, legacy, have = _old_booking(ctx)
    closures = svc.catalogue.closure_map
    shares = dict(zip(legacy.dates, day_shares(pay.received, len(legacy.dates)), strict=True))
    closed = [d for d in legacy.dates if closure_reason(d, svc.policy, closures)]
    if not closed:
        raise Refusal("Nothing to do: none of its days is a holiday or a closure now")
    cents = min(sum(shares[d] for d in closed), pay.kept)
    starts = {w.day: w.starts_at for w in legacy.windows(svc)}
    ahead = all(starts[d] > ctx.now for d in closed)
    what = f"cancel {days_text(closed)}" if ahead else f"mark {days_text(closed)} refunded ({_past_text(closed)})"
    text = (
        f"Adopt payment {pay.id} ({legacy.label()}, made by the old system) into a booking, then {what} and refund "
        f"{pay.money(cents)} in full (the venue's fault, whatever the policy says); delete "
        f"{_its(closed)} {plural(len(closed), 'event')} and email {legacy.email or 'the customer'}."
    )

    def apply() -> FixResult:
        booking_id = _adopt_as_booked(ctx, pay, legacy, have)
        with svc.session() as s:
            reference = bk.load_booking(s, booking_id).reference
            legs = [leg for leg in bk.booking_legs(s, booking_id) if leg.day in closed]
        to_state, email = _full_refund_outcome(legs, ctx.now)
        with bk.lease(svc, booking_id):
            result = steps.refund_and_close(
                ctx,
                booking_id,
                amount=cents,
                leg_ids=[leg.id for leg in legs if leg.id is not None],
                to_state=to_state,
                # The key a booking of ours uses: a retry after the adoption takes that path and replays this refund.
                key=f"roomdesk-{reference}-{ctx.key}-cancel-full",
                reason=reason,
                email=email,
                extra_events=probes.named_events(svc, ctx.finding),
            )
        return _said_closed(result, closed, to_state)

    return Plan(text, apply)


def _plan_delete_events(ctx: FixContext) -> Plan:
    """Delete the finding's events: an orphan only once Stripe shows nothing is kept for it; a hand-made one with a
    note saying why."""
    svc, f = ctx.svc, ctx.finding
    named = probes.named_events(svc, f)
    live: list[tuple[EventKey, Json]] = []
    for key in named:
        ev = svc.calendar.get_event(*key)
        if ev is not None and probes.is_live(ev):
            live.append((key, ev))
    if not live:
        raise Refusal("Nothing to do: the events are already deleted")
    for _, ev in live:
        if (block_id := _active_block(svc, ev)) is not None:
            raise Refusal(f"This event belongs to room block #{block_id}, still in force; it was not deleted")
    if f.code == "manual_event":
        for _, ev in live:
            private = (ev.get("extendedProperties") or {}).get("private") or {}
            if private.get("booking_id") or private.get("payment_intent"):
                raise Refusal("This event now belongs to a booking; it was not deleted")
    else:
        for _, ev in live:
            why = _orphan_still_paid(ctx, ev)
            if why:
                raise Refusal(why, offer=ctx.offer("acknowledge"))
    labels = [probes.event_label(svc, key, ev) for key, ev in live]
    text = f"Delete {plural(len(live), 'event')}: {'; '.join(labels)}."
    if f.code == "manual_event":
        text += " Your note is kept with the deletion."

    def apply() -> FixResult:
        if f.code == "manual_event" and not ctx.opts.note.strip():
            raise Refusal("Write a note saying why this event can be deleted")
        return _delete(ctx, [k for k, _ in live], labels, "event")

    return Plan(text, apply)


def _delete(ctx: FixContext, keys: list[EventKey], labels: list[str], noun: str) -> FixResult:
    """Delete these events with the person's note kept, and say what was deleted."""
    f = ctx.finding
    deleted, problems = steps.delete_events(
        ctx.svc,
        keys,
        booking_id=ctx.booking.id if ctx.booking else None,
        pi_id=f.payment_intent,
        actor=ctx.actor,
        now=ctx.now,
        note=ctx.opts.note.strip(),
    )
    message = f"Deleted {plural(deleted, noun)}: {'; '.join(labels)}"
    return FixResult(f.id or 0, "", not problems, "; ".join([message, *problems]), changed=deleted > 0)


def _hand_added(ev: Json) -> bool:
    """An event nobody paid for and no block put there: no booking, PaymentIntent or room block in its private
    properties, no PaymentIntent in its description (the old system wrote it there)."""
    private = (ev.get("extendedProperties") or {}).get("private") or {}
    ours = private.get("booking_id") or private.get("payment_intent") or private.get(BLOCK_PROPERTY)
    return not ours and "pi_" not in str(ev.get("description"))


def _active_block(svc: Services, ev: Json) -> int | None:
    """The room block in force this event belongs to (the venue's own: never deleted as a stray), else None."""
    private = (ev.get("extendedProperties") or {}).get("private") or {}
    block_id = str(private.get(BLOCK_PROPERTY) or "")
    if not block_id.isdigit():
        return None
    with svc.session() as s:
        block = s.get(RoomBlock, int(block_id))
    return block.id if block is not None and block.state == BlockState.ACTIVE else None


def _plan_delete_hand_added(ctx: FixContext) -> Plan:
    """A double booking staff caused by adding an event by hand: delete that event (with a note), and the paying
    customer keeps the room. Re-checked just before acting: both events still there and still clashing, and the one
    to delete still belongs to no booking."""
    svc, f = ctx.svc, ctx.finding
    named = probes.named_events(svc, f)
    if not probes.still_overlapping(svc, named):
        raise Refusal("Nothing to do: the two events no longer overlap (one was moved or deleted)")
    live = [(key, ev) for key in named if (ev := svc.calendar.get_event(*key)) is not None and probes.is_live(ev)]
    hand = [(key, ev) for key, ev in live if _hand_added(ev)]
    if not hand:
        raise Refusal(
            "Both events belong to paid bookings: none was added by hand. Cancel one of the bookings instead",
            offer=ctx.offer("cancel"),
        )
    labels = [probes.event_label(svc, key, ev) for key, ev in hand]
    text = (
        f"Delete {plural(len(hand), 'hand-added event')} ({'; '.join(labels)}): the paying customer keeps the room, "
        "nobody is cancelled or refunded. Your note is kept with the deletion."
    )

    def apply() -> FixResult:
        if not ctx.opts.note.strip():
            raise Refusal("Write a note saying why this event can be deleted (e.g. who added it and why)")
        fresh = [svc.calendar.get_event(*key) for key, _ in hand]
        if any(ev is None or not probes.is_live(ev) or not _hand_added(ev) for ev in fresh):
            raise Refusal("The event changed since you looked (deleted, or now belongs to a booking): look again")
        return _delete(ctx, [k for k, _ in hand], labels, "hand-added event")

    return Plan(text, apply)


def _orphan_still_paid(ctx: FixContext, ev: Json) -> str | None:
    """Why an orphan event may be real after all (None when the payment behind it keeps no money, or its day was
    cancelled): Stripe is asked, not the cache."""
    svc = ctx.svc
    private = (ev.get("extendedProperties") or {}).get("private") or {}
    pi_id = private.get("payment_intent") or ctx.finding.payment_intent
    booking = ctx.booking
    if not pi_id and private.get("booking_id"):
        with svc.session() as s:
            booking = s.exec(select(Booking).where(Booking.reference == private["booking_id"])).first()
        pi_id = booking.payment_intent_id if booking else None
    pay = probes.fetch_payment(svc, pi_id)
    if pay is None or pay.status != "succeeded" or pay.kept <= 0:
        return None  # unknown to Stripe, never paid, or refunded in full
    day = probes.event_day(ev, svc)
    if booking is not None and booking.id is not None:
        with svc.session() as s:
            legs = {leg.day: leg for leg in bk.booking_legs(s, booking.id)}
        leg = legs.get(day) if day else None
        if leg is None or leg.state in (LegState.CANCELLED, LegState.REFUNDED):
            return None  # the event's day is not (or no longer) booked
    return (
        f"Not deleted: Stripe still holds {pay.money(pay.kept)} of payment {pay.id} for "
        f"{day_label(day) if day else 'this day'} — the event may be a real booking"
    )


def _plan_send_refund_notice(ctx: FixContext) -> Plan:
    """Tell the customer their payment was refunded (the seed's 'email customer: slot was taken, card refunded')."""
    svc, f = ctx.svc, ctx.finding
    pay = probes.fetch_payment(svc, f.payment_intent)
    if pay is None or pay.status != "succeeded" or pay.received <= 0:
        raise Refusal(f"Stripe shows no paid payment {f.payment_intent}: there is no refund to tell about")
    if pay.kept > 0:
        raise Refusal(
            f"Stripe still holds {pay.money(pay.kept)}: not refunded in full, so there is nothing to tell yet"
        )
    booking = ctx.booking
    legacy = adopt.read_legacy(svc, pay) if booking is None else None
    pending: EmailOutbox | None = None
    if booking is not None:
        with svc.session() as s:
            rows = list(
                s.exec(
                    select(EmailOutbox)
                    .where(EmailOutbox.booking_id == booking.id)
                    .where(col(EmailOutbox.kind).in_(sorted(REFUND_TOLD_KINDS)))
                    .order_by(col(EmailOutbox.id))
                )
            )
        sent = [r for r in rows if r.status == "sent"]
        if sent:
            raise Refusal(f"Nothing to do: the customer was already told ({sent[0].kind.replace('_', ' ')} email)")
        pending = rows[-1] if rows else None
    to = booking.customer_email if booking else legacy.email if legacy else ""
    what = f"the {pending.kind.replace('_', ' ')} email that could not be sent" if pending else "a refund email"
    text = (
        f"Send {to} {what}: {pay.money(pay.refunded)} refunded for "
        + (_who(svc, booking, [leg.day for leg in ctx.legs]) if booking else f"{legacy.label() if legacy else pay.id}")
        + "."
    )
    if legacy is not None:
        text = f"Adopt payment {pay.id} (made by the old system) into a refunded booking, then s" + text[1:]

    def apply() -> FixResult:
        booking_id = adopt.booking_to_fix(ctx, booking, pay, legacy, state=LegState.REFUNDED, claim=False, events={})
        if pending is not None:
            assert pending.id is not None
            ok = outbox.deliver(svc, pending.id, now=ctx.now, actor=ctx.actor)
        else:
            with svc.session() as s:
                b = bk.load_booking(s, booking_id)
                legs = bk.booking_legs(s, booking_id)
                mail = emails.refund(svc.catalogue, svc.settings, b, legs, pay.refunded, booking_stands=False)
                reference = b.reference
            ok = steps.send_email(
                svc,
                booking_id,
                kind="refund",
                mail=mail,
                key=f"{reference}-refund-notice",
                actor=ctx.actor,
                now=ctx.now,
            )
        if ok:
            message = f"Emailed {to} about the {pay.money(pay.refunded)} refund"
            return FixResult(f.id or 0, "", True, message, changed=True)
        return FixResult(f.id or 0, "", False, "The email could not be sent (queued to retry)", changed=True)

    return Plan(text, apply)


def _plan_confirm_payment(ctx: FixContext) -> Plan:
    """Do now what the missed webhook would have done (booking.confirm_payment: Gate 2 → events → email)."""
    svc, f = ctx.svc, ctx.finding
    change = steps.change_of(svc, f.payment_intent)
    if change is not None:
        return _plan_confirm_change(ctx, change)
    booking = ctx.booking
    if booking is None or not booking.payment_intent_id:
        raise Refusal("This payment has no booking in Room Desk to confirm")
    pay = probes.require_paid(probes.fetch_payment(svc, booking.payment_intent_id), booking.payment_intent_id)
    if pay.refunded:
        raise Refusal(f"Payment {pay.id} was partly refunded in Stripe meanwhile: check it before confirming")
    if booking.status != BookingStatus.AWAITING_PAYMENT:
        raise Refusal(f"Nothing to do: booking {booking.reference} was already processed ({booking.status.lower()})")
    days = [leg.day for leg in ctx.legs]
    text = (
        f"Process payment {pay.id} ({pay.money(pay.received)}) for {_who(svc, booking, days)} as the webhook would "
        f"have: check the calendar again, create {plural(len(days), 'event')} and email the confirmation to "
        f"{booking.customer_email}. If the slot was taken meanwhile, the customer is refunded in full and told."
    )

    def apply() -> FixResult:
        result = bk.confirm_payment(svc, pay.id, actor=ctx.actor, now=ctx.now)
        text_out = "; ".join(result.messages)
        if result.outcome == "confirmed":
            with svc.session() as s:
                done = bk.load_booking(s, result.booking_id)
            emailed = (
                f"confirmation emailed to {done.customer_email}"
                if done.confirmation_sent_at
                else "the confirmation email could not be sent (queued to retry)"
            )
            message = f"Confirmed {done.reference}: created {plural(len(days), 'event')} ({days_text(days)}); {emailed}"
            return FixResult(f.id or 0, "", True, message, changed=True)
        if result.outcome == "auto_refunded":
            message = f"The slot was taken meanwhile, so nothing was booked: {text_out.lower()}; the customer was told"
            return FixResult(f.id or 0, "", True, message, changed=True)
        if result.outcome == "already_done":
            return FixResult(f.id or 0, "", False, "Nothing to do: the payment was already processed")
        return FixResult(f.id or 0, "", False, text_out, changed=result.outcome in ("cleanup_failed", "refund_failed"))

    return Plan(text, apply)


def _plan_confirm_change(ctx: FixContext, change: Amendment) -> Plan:
    """The payment of a change that cost more succeeded and the webhook was missed: make the change now as the webhook
    would have (booking.confirm_payment routes it: Gate 2 again → the days moved → events → email; the difference
    back in full if the room was taken meanwhile)."""
    svc, f, booking = ctx.svc, ctx.finding, ctx.booking
    if booking is None:
        raise Refusal("This change's booking is not in Room Desk")
    pi_id = change.payment_intent_id
    pay = probes.require_paid(probes.fetch_payment(svc, pi_id), pi_id)
    if pay.refunded:
        raise Refusal(f"Payment {pay.id} was partly refunded in Stripe meanwhile: check it before making the change")
    if change.paid_at is not None or change.state not in (
        AmendmentState.AWAITING_PAYMENT,
        AmendmentState.LAPSED,
        AmendmentState.WITHDRAWN,
    ):
        raise Refusal(
            f"Nothing to do: change {change.number} of booking {booking.reference} was already processed "
            f"({change.state.replace('_', ' ')})"
        )
    what = "; ".join(change.summary) or "the change"
    text = (
        f"Process payment {pay.id} ({pay.money(pay.received)}) for change {change.number} of booking "
        f"{booking.reference} as the webhook would have: check the calendar again, make the change ({what}), "
        f"move its events and email {booking.customer_email}. If the room was taken meanwhile, the "
        f"{pay.money(pay.received)} is refunded in full and the booking stays as it was."
    )

    def apply() -> FixResult:
        result = bk.confirm_payment(svc, pay.id, actor=ctx.actor, now=ctx.now)
        outcome = result.outcome.removeprefix("change_")
        said = "; ".join(result.messages)
        if outcome == "applied":
            message = f"Made change {change.number} of {booking.reference} ({what}); {said.lower()}"
            return FixResult(f.id or 0, "", True, message, changed=True)
        if outcome == "failed":
            return FixResult(f.id or 0, "", True, f"The change could not be made: {said.lower()}", changed=True)
        if outcome == "already_done":
            return FixResult(f.id or 0, "", False, "Nothing to do: the payment was already processed")
        return FixResult(f.id or 0, "", False, said, changed=outcome in ("applying", "refund_failed"))

    return Plan(text, apply)


def _plan_resend_confirmation(ctx: FixContext) -> Plan:
    """Deliver the confirmation the customer never received (queued or failed), or queue one. A booking the old system
    made (it sent none) is adopted first, then confirmed like one of ours."""
    svc, f, booking = ctx.svc, ctx.finding, ctx.booking
    if booking is None:
        return _plan_confirm_old_booking(ctx)
    if booking.id is None:
        raise Refusal("This payment has no booking in Room Desk to confirm")
    if booking.status not in (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED):
        raise Refusal(f"Booking {booking.reference} is {booking.status.lower()}: no confirmation to send")
    if booking.confirmation_sent_at is not None:
        raise Refusal(f"Nothing to do: the confirmation was sent on {day_label(booking.confirmation_sent_at.date())}")
    days = [leg.day for leg in ctx.legs if leg.state in ACTIVE_LEG_STATES]
    text = f"Email the confirmation of {_who(svc, booking, days)} to {booking.customer_email}."
    booking_id = booking.id

    def apply() -> FixResult:
        emailed = steps.send_confirmation(svc, booking_id, ctx.actor, ctx.now)
        ok = emailed.startswith("confirmation emailed")
        return FixResult(f.id or 0, "", ok, emailed[:1].upper() + emailed[1:], changed=True)

    return Plan(text, apply)


def _plan_confirm_old_booking(ctx: FixContext) -> Plan:
    """An old payment whose days are on the calendar and whose customer may never have had a confirmation (the old
    system sent none): adopt it as the booking it is, then email the confirmation."""
    pay, legacy, have = _old_booking(ctx)
    if not legacy.email:
        raise Refusal(f"Payment {pay.id}'s metadata has no customer email: there is no one to send a confirmation to")
    text = (
        f"Adopt payment {pay.id} ({legacy.label()}, made by the old system) into a booking, then email its "
        f"confirmation to {legacy.email}."
    )

    def apply() -> FixResult:
        booking_id = _adopt_as_booked(ctx, pay, legacy, have)
        emailed = steps.send_confirmation(ctx.svc, booking_id, ctx.actor, ctx.now)
        ok = emailed.startswith("confirmation emailed")
        return FixResult(ctx.finding.id or 0, "", ok, emailed[:1].upper() + emailed[1:], changed=True)

    return Plan(text, apply)


def _plan_fill_extras(ctx: FixContext) -> Plan:
    """Save the extras staff collected (seed incident #9) and put them in each day's event description."""
    svc, booking = ctx.svc, ctx.booking
    if booking is None:
        return _plan_fill_old_extras(ctx)
    if booking.id is None:
        raise Refusal("This payment has no booking in Room Desk")
    room = svc.catalogue.room(booking.room_slug)
    if not room.extras:
        raise Refusal(f"The {room.name} has no extras form")
    if not room.validate_extras(booking.extras)[1]:
        raise Refusal("Nothing to do: the extras are already filled in")
    legs = [leg for leg in ctx.legs if leg.state in ACTIVE_LEG_STATES and leg.event_id]
    who = _who(svc, booking, [leg.day for leg in legs])
    text = (
        f"Save the extras ({', '.join(x.label for x in room.extras)}) on {who} and add them to the description of "
        f"its {plural(len(legs), 'calendar event')}."
    )
    booking_id = booking.id

    def apply() -> FixResult:
        clean, problems = room.validate_extras({**booking.extras, **(ctx.opts.extras or {})})
        if problems:
            raise ValidationError(problems)
        return _save_extras(ctx, booking_id, clean)

    return Plan(text, apply)


def _save_extras(ctx: FixContext, booking_id: int, clean: dict[str, object]) -> FixResult:
    """Save the booking's extras and rewrite its events' descriptions with them."""
    svc, f = ctx.svc, ctx.finding
    with bk.lease(svc, booking_id):
        with svc.session() as s:
            b = bk.load_booking(s, booking_id)
            b.extras, b.updated_at = clean, ctx.now
            audit.record(
                s, "booking.extras.filled", actor=ctx.actor, at=ctx.now, booking=b, extras=clean, finding=f.key
            )
        patched, problems = bk.update_event_details(svc, booking_id, actor=ctx.actor, now=ctx.now)
    message = f"Saved the extras and updated {plural(len(patched), 'event')}" + (
        f" ({days_text(patched)})" if patched else ""
    )
    return FixResult(f.id or 0, "", not problems, "; ".join([message, *problems]), changed=True)


def _plan_fill_old_extras(ctx: FixContext) -> Plan:
    """An old payment for a room with an extras form, the extras not in its metadata (seed incident #9): adopt it as
    the booking it is, then save the extras staff collected and put them in its events' descriptions."""
    pay, legacy, have = _old_booking(ctx)
    room = legacy.room
    if not room.extras:
        raise Refusal(f"The {room.name} has no extras form")
    given = metadata_extras(pay.metadata, room)
    if not room.validate_extras(given)[1]:
        raise Refusal("Nothing to do: the payment's metadata has the extras already")
    text = (
        f"Adopt payment {pay.id} ({legacy.label()}, made by the old system) into a booking, then save the extras "
        f"({', '.join(x.label for x in room.extras)}) on it and add them to the description of its "
        f"{plural(len(have), 'calendar event')}."
    )

    def apply() -> FixResult:
        clean, problems = room.validate_extras({**given, **(ctx.opts.extras or {})})
        if problems:
            raise ValidationError(problems)  # before anything is adopted
        return _save_extras(ctx, _adopt_as_booked(ctx, pay, legacy, have), clean)

    return Plan(text, apply)


def _plan_acknowledge(ctx: FixContext) -> Plan:
    """A person says the finding may stay as it is, with a note (reconcile.acknowledge)."""
    f = ctx.finding
    if f.status != "open":
        raise Refusal(f"Nothing to do: {f.acknowledged_by or 'someone'} already acknowledged this finding")
    text = "Mark this finding as looked at, with your note: it leaves the open list and stays in the history."

    def apply() -> FixResult:
        row = reconcile.acknowledge(ctx.svc, f.id or 0, actor=ctx.actor, note=ctx.opts.note, now=ctx.now)
        return FixResult(f.id or 0, "", True, f"Acknowledged: {row.note}", changed=True)

    return Plan(text, apply)


EXTEND_DAYS = 7


def _plan_extend_invoice(ctx: FixContext) -> Plan:
    """The organisation says the payment is on its way: hold the days longer (at most up to the first day's lead
    time); the invoice stays payable on its page and the reminder may go again at the new date."""
    booking = ctx.booking
    if booking is None or booking.id is None:
        raise Refusal("This finding has no booking to extend")
    row = invoice_of(ctx.svc, booking.id)
    if row is None or row.state != InvoiceState.OPEN:
        raise Refusal(f"Nothing to extend: the invoice is {row.state.value if row else 'gone'}")
    text = (
        f"Hold {booking.reference}'s days {EXTEND_DAYS} more days for the unpaid invoice "
        f"{row.number or ''} (due {day_label(row.due_at.astimezone(ctx.svc.settings.tz).date())}). The invoice stays "
        "payable on its page; the billing contact is reminded again if the new date passes. Your note is kept."
    )

    def apply() -> FixResult:
        assert booking.id is not None
        due = invoices.extend_invoice(
            ctx.svc, booking.id, days=EXTEND_DAYS, actor=ctx.actor, reason=ctx.opts.note, now=ctx.now
        )
        when = day_label(due.astimezone(ctx.svc.settings.tz).date())
        return FixResult(ctx.finding.id or 0, "", True, f"The days stay held until {when}", changed=True)

    return Plan(text, apply)


def _plan_release_invoice(ctx: FixContext) -> Plan:
    """Give up on an unpaid invoice: void it at Stripe (re-checked: one paid meanwhile is kept) and cancel the
    booking, freeing its days."""
    booking = ctx.booking
    if booking is None or booking.id is None:
        raise Refusal("This finding has no booking to release")
    row = invoice_of(ctx.svc, booking.id)
    if row is None or row.state != InvoiceState.OPEN:
        raise Refusal(f"Nothing to release: the invoice is {row.state.value if row else 'gone'}")
    text = (
        f"Void invoice {row.number or ''} at Stripe (it can no longer be paid) and cancel {booking.reference}: its "
        "days are free for others at once. If it was paid a moment ago, nothing is voided. Your note is kept."
    )

    def apply() -> FixResult:
        assert booking.id is not None
        said = invoices.release_invoice(ctx.svc, booking.id, actor=ctx.actor, reason=ctx.opts.note, now=ctx.now)
        return FixResult(ctx.finding.id or 0, "", True, said, changed=True)

    return Plan(text, apply)


# Action (findings.ACTION_LABELS) → its planner.
PLANNERS: dict[str, Callable[[FixContext], Plan]] = {
    "create_events": _plan_create_events,
    "recreate_events": _plan_recreate_events,
    "refund": _plan_refund,
    "cancel": lambda ctx: _plan_cancel(ctx, full=False),
    "cancel_full_refund": lambda ctx: _plan_cancel(ctx, full=True),
    "delete_events": _plan_delete_events,
    "delete_hand_added": _plan_delete_hand_added,
    "send_refund_notice": _plan_send_refund_notice,
    "confirm_payment": _plan_confirm_payment,
    "resend_confirmation": _plan_resend_confirmation,
    "fill_extras": _plan_fill_extras,
    "extend_invoice": _plan_extend_invoice,
    "release_invoice": _plan_release_invoice,
    "acknowledge": _plan_acknowledge,
}
