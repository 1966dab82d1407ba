"""Making a change to a paid booking (issue 12, runbook 003 §3): the plan from `amend.plan_change`, re-checked under
the booking's lease and carried out.

- Costs the same or less: Gate 2 (the plan's availability check, the booking's own days and events left out) → one
  transaction moves the days and their slot claims (the database still refuses an overlap) → the events follow
  (patched in place, or made on the new room's calendar and the old one deleted) → the difference is refunded on the
  booking's payment(s) under one key → one "your booking has changed" email with the updated .ics.
- Costs more: the new shape is held (claims of this change, next to the days they replace) and the difference gets
  its own PaymentIntent; the booking stays exactly as it was. When that payment succeeds (webhook, pay page or the
  hold expiry's check) Gate 2 runs again and the change is applied as above; if the room was taken meanwhile the
  difference goes back in full and the booking is untouched. A hold that lapses unpaid, or a change withdrawn, only
  releases its claims and cancels its PaymentIntent.

Every step is audited and every external write keyed by the booking's reference and the change's number. An
Amendment in `applying` records the steps it finished (`done`), so `resume_changes` (the worker) completes one a
crash interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    Amendment,
    AmendmentState,
    Booking,
    BookingLeg,
    ClaimKind,
    ExternalRef,
    LegState,
    RefundRecord,
    SlotClaim,
)
from services.booking.amend import Change, ChangePlan, describe, plan_change
from services.booking.claims import busy_span, calendar_busy, claim_slot, is_overlap_error, release_claims
from services.booking.events import delete_batch, event_body, insert_event, record_event_created
from services.booking.lease import lease
from services.booking.refunds import paid_total, refund_payment, refund_tax_for
from services.booking.store import booking_legs, derive_status, load_booking, resolve_now, set_leg_state
from services.core import audit
from services.core.context import Services
from services.core.errors import (
    BookingBusy,
    GatewayError,
    InvalidState,
    NotAvailable,
    NotFound,
    QuoteChanged,
    SlotTaken,
    ValidationError,
)
from services.notify import emails, outbox
from services.rules.availability import LegWindow, check_conflicts
from services.rules.fmt import money
from services.rules.rounding import round_half_up
from services.rules.tax import policy_from

log = logging.getLogger("roomdesk.booking")

OPEN_STATES = (AmendmentState.AWAITING_PAYMENT, AmendmentState.APPLYING)


@dataclass(frozen=True)
class ChangeResult:
    booking_id: int
    reference: str
    number: int
    outcome: str  # applied | applying (a step will be retried) | awaiting_payment | failed | lapsed | withdrawn | …
    messages: list[str]
    net_cents: int = 0
    payment_intent_id: str | None = None
    client_secret: str = ""
    pay_url: str = ""
    hold_expires_at: datetime | None = None
    lines: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- the plan rows


def _shape(day: Any, start: time, end: time) -> dict[str, str]:
    return {"day": day.isoformat(), "start": f"{start:%H:%M}", "end": f"{end:%H:%M}"}


def _rows(plan: ChangePlan, legs: dict[int, BookingLeg]) -> list[dict[str, Any]]:
    """The plan as stored: one row per day that changes, with the old day's calendar and event (to move or delete)."""
    rows = []
    moved_room = plan.room_from != plan.room_to
    for d in plan.settlement.days:
        if d.kind == "kept" and not moved_room:
            continue
        old = None
        if d.old is not None and d.leg_id is not None:
            leg = legs[d.leg_id]
            old = {
                **_shape(d.old.day, d.old.start, d.old.end),
                "calendar_id": leg.calendar_id,
                "event_id": leg.event_id,
            }
        rows.append(
            {
                "leg_id": d.leg_id,
                "old": old,
                "new": _shape(d.new.day, d.new.start, d.new.end) if d.new is not None else None,
                "price_cents": d.new_price_cents,
                "tax_cents": d.new_tax_cents,
                "charge_cents": d.charge_cents,
                "refund_cents": d.refund_cents,
                "band": d.band,
            }
        )
    return rows


def _window(svc: Services, shape: dict[str, str]) -> tuple[datetime, datetime]:
    tz = svc.policy.tz
    day = date.fromisoformat(shape["day"])
    start = datetime.combine(day, time.fromisoformat(shape["start"]), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day, time.fromisoformat(shape["end"]), tzinfo=tz).astimezone(UTC)
    return start, end


def _note(session: Session, booking: Booking, a: Amendment) -> emails.ChangeNote:
    assert booking.id is not None
    refund_key = f"roomdesk-{booking.reference}-change-{a.number}-refund"
    return emails.ChangeNote(
        number=a.number,
        lines=tuple(a.summary),
        charge_cents=max(a.net_cents, 0),
        refund_cents=max(-a.net_cents, 0),
        charge_tax_cents=a.tax_cents if a.net_cents > 0 else None,
        refund_tax_cents=refund_tax_for(session, booking.id, refund_key) if a.net_cents < 0 else None,
        paid_total_cents=paid_total(session, booking) - _refunded(session, booking),
        removed_days=emails.removed_days(a),
    )


def _refunded(session: Session, booking: Booking) -> int:
    return sum(r.amount_cents for r in session.exec(select(RefundRecord).where(RefundRecord.booking_id == booking.id)))


def open_change(session: Session, booking_id: int) -> Amendment | None:
    """The booking's change still in progress (waiting for payment, or being applied), if any: one at a time."""
    return session.exec(
        select(Amendment).where(Amendment.booking_id == booking_id, col(Amendment.state).in_(OPEN_STATES))
    ).first()


def pay_url(svc: Services, booking: Booking, number: int) -> str:
    """The customer's page to pay for a change (the booking's secret link, as the pay and manage pages)."""
    base = svc.settings.public_base_url.rstrip("/")
    return f"{base}/manage/{booking.reference}/change/{number}?k={booking.pay_token or ''}"


# --------------------------------------------------------------------------------------------------- the use case


def change_booking(
    svc: Services,
    booking_id: int,
    change: Change,
    *,
    actor: str,
    expected_net_cents: int | None = None,
    reason: str = "",
    channel: str = "phone",
    now: datetime | None = None,
) -> ChangeResult:
    """Make a change to a paid booking. `expected_net_cents` is the difference the person was shown (positive: to
    charge, negative: to refund); if, under the lease, the plan settles differently, QuoteChanged and nothing
    happens. Raises NotAvailable (with the plan's reasons), SlotTaken, ValidationError, InvalidState."""
    now = resolve_now(svc, now)
    with lease(svc, booking_id):
        plan = plan_change(svc, booking_id, change, now=now)
        if plan.reasons:
            raise NotAvailable(plan.reasons)
        if not plan.changes_anything:
            raise ValidationError("The change leaves the booking as it is")
        net = plan.settlement.net_cents
        if expected_net_cents is not None and net != expected_net_cents:
            raise QuoteChanged(
                f"The change now settles at {_net_words(net, svc.settings.currency)}, not "
                f"{_net_words(expected_net_cents, svc.settings.currency)}: nothing was changed; look at it again"
            )
        with svc.session() as s:
            pending = open_change(s, booking_id)
            if pending is not None:
                raise InvalidState(
                    f"Change {pending.number} of this booking is still "
                    f"{'waiting for payment' if pending.state == AmendmentState.AWAITING_PAYMENT else 'being made'}: "
                    "finish or withdraw it first"
                )
        names = {r.slug: r.name for r in svc.catalogue.rooms}
        if net > 0:
            return _hold(svc, plan, describe(plan, names), actor=actor, reason=reason, channel=channel, now=now)
        amendment_id = _start_applying(svc, plan, describe(plan, names), actor=actor, reason=reason, now=now)
        return _finish(svc, amendment_id, actor, now)


def _net_words(net: int, currency: str) -> str:
    if net > 0:
        return f"{money(net, currency)} to pay"
    if net < 0:
        return f"{money(-net, currency)} back"
    return "no difference"


def _change_tax(plan: ChangePlan, legs: dict[int, BookingLeg]) -> int:
    """The tax inside what a change charges (its own PaymentIntent), day by day so the booking's tax stays the sum
    of its days' tax: a day added brings its whole tax, a day made dearer the difference of its new and old tax; a
    day dropped or made cheaper in the same change gives back its proportional share of its own tax. 0 when the
    change charges nothing (its refund's tax is worked out from the payments it goes back on)."""
    net = plan.settlement.net_cents
    if net <= 0:
        return 0
    charged = refunded = 0
    for d in plan.settlement.days:
        old = legs.get(d.leg_id) if d.leg_id is not None else None
        if d.charge_cents:
            charged += d.new_tax_cents - (old.tax_cents if old is not None else 0)
        if d.refund_cents and old is not None and old.price_cents > 0:
            refunded += round_half_up(d.refund_cents * old.tax_cents, old.price_cents)
    return min(max(charged - refunded, 0), net)


def _new_amendment(
    s: Session,
    plan: ChangePlan,
    lines: list[str],
    state: AmendmentState,
    *,
    actor: str,
    reason: str,
    now: datetime,
    hold_expires_at: datetime | None = None,
) -> Amendment:
    booking = load_booking(s, plan.booking_id)
    legs = {leg.id: leg for leg in booking_legs(s, plan.booking_id) if leg.id is not None}
    number = (
        s.exec(select(sa.func.max(Amendment.number)).where(Amendment.booking_id == plan.booking_id)).one() or 0
    ) + 1
    a = Amendment(
        booking_id=plan.booking_id,
        number=number,
        room_from=plan.room_from,
        room_to=plan.room_to,
        plan=_rows(plan, legs),
        summary=lines,
        charge_cents=plan.settlement.charge_cents,
        refund_cents=plan.settlement.refund_cents,
        net_cents=plan.settlement.net_cents,
        # The tax inside what the change charges, at the rates the booking was sold at (a refund's is worked out
        # when it is made, from the payments it goes back on).
        tax_cents=_change_tax(plan, legs) if policy_from(booking.tax_snapshot) is not None else 0,
        state=state,
        hold_expires_at=hold_expires_at,
        reason=reason,
        actor=actor,
        created_at=now,
        updated_at=now,
    )
    s.add(a)
    s.flush()
    assert a.id is not None and booking.id is not None
    return a


def _start_applying(
    svc: Services, plan: ChangePlan, lines: list[str], *, actor: str, reason: str, now: datetime
) -> int:
    """Record the change and move the days and their claims, in one transaction: nothing is written if the database
    refuses the new shape."""
    try:
        with svc.session() as s:
            a = _new_amendment(s, plan, lines, AmendmentState.APPLYING, actor=actor, reason=reason, now=now)
            booking = load_booking(s, plan.booking_id)
            audit.record(
                s,
                "booking.change.started",
                actor=actor,
                at=now,
                booking=booking,
                change=a.number,
                lines=lines,
                net_cents=a.net_cents,
                reason=reason,
            )
            _apply_shape(svc, s, booking, a, actor, now)
            assert a.id is not None
            return a.id
    except IntegrityError as exc:
        if is_overlap_error(exc):
            raise SlotTaken("The room was taken for that time a moment ago: nothing was changed") from None
        raise


def _release_hold_claims(s: Session, a: Amendment) -> None:
    """The slots a change held for its new shape stop blocking (it was made, given up, refused or lapsed)."""
    s.execute(sa.update(SlotClaim).where(col(SlotClaim.amendment_id) == a.id).values(active=False))


def _apply_shape(svc: Services, s: Session, booking: Booking, a: Amendment, actor: str, now: datetime) -> None:
    """The days and their claims take the new shape (DB only; the caller's transaction). Dropped days are cancelled
    with their share of the refund; changed days move (date, times, room, price); added days are made, confirmed."""
    assert booking.id is not None and a.id is not None
    room = svc.catalogue.room(a.room_to)
    buffer = timedelta(minutes=svc.policy.buffer_minutes)
    legs = {leg.id: leg for leg in booking_legs(s, booking.id)}
    _release_hold_claims(s, a)
    rows = [dict(row) for row in a.plan]
    for row in rows:  # dropped days first: their time is free for the others
        if row["leg_id"] is not None and row["new"] is None:
            leg = legs[row["leg_id"]]
            set_leg_state(leg, LegState.CANCELLED, now)
            leg.refunded_cents += int(row["refund_cents"])
            release_claims(s, booking.id, [row["leg_id"]])
    s.flush()
    for row in rows:
        new = row["new"]
        if new is None or row["leg_id"] is None:
            continue
        leg = legs[row["leg_id"]]
        if leg.state != LegState.CONFIRMED:
            raise InvalidState(f"{leg.day} is {leg.state.lower()}: the change no longer fits the booking")
        leg.day = date.fromisoformat(new["day"])
        leg.starts_at, leg.ends_at = _window(svc, new)
        leg.price_cents = int(row["price_cents"])
        leg.tax_cents = int(row.get("tax_cents", 0))
        leg.calendar_id = room.calendar_id
        leg.updated_at = now
        claim = s.exec(select(SlotClaim).where(SlotClaim.leg_id == leg.id)).first()
        if claim is None:
            claim_slot(s, leg, room_slug=room.slug, buffer=buffer, kind=ClaimKind.BOOKED, now=now)
        else:
            claim.room_slug, claim.starts_at, claim.ends_at = room.slug, leg.starts_at, leg.ends_at
            claim.block_until = leg.ends_at + buffer
            claim.kind, claim.expires_at, claim.active = ClaimKind.BOOKED, None, True
        s.flush()
    for row in rows:
        new = row["new"]
        if row["leg_id"] is not None or new is None:
            continue
        starts, ends = _window(svc, new)
        leg = BookingLeg(
            booking_id=booking.id,
            day=date.fromisoformat(new["day"]),
            starts_at=starts,
            ends_at=ends,
            state=LegState.CONFIRMED,
            price_cents=int(row["price_cents"]),
            tax_cents=int(row.get("tax_cents", 0)),
            calendar_id=room.calendar_id,
            updated_at=now,
        )
        s.add(leg)
        s.flush()
        assert leg.id is not None
        claim_slot(s, leg, room_slug=room.slug, buffer=buffer, kind=ClaimKind.BOOKED, now=now)
        s.flush()
        row["leg_id"], row["added"] = leg.id, True
    a.plan = rows
    all_legs = booking_legs(s, booking.id)
    active = sorted((leg for leg in all_legs if leg.state in ACTIVE_LEG_STATES), key=lambda leg: leg.day)
    tz = svc.settings.tz
    if active:
        booking.start_time = f"{active[0].starts_at.astimezone(tz):%H:%M}"
        booking.end_time = f"{active[0].ends_at.astimezone(tz):%H:%M}"
    booking.room_slug = room.slug
    booking.status = derive_status(all_legs)
    booking.updated_at = now
    a.done = ["shape"]
    a.updated_at = now
    audit.record(
        s,
        "booking.change.days_moved",
        actor=actor,
        at=now,
        booking=booking,
        change=a.number,
        days=[leg.day for leg in active],
        room=room.slug,
    )


def _finish(svc: Services, amendment_id: int, actor: str, now: datetime) -> ChangeResult:
    """The steps after the days moved, each done once: events, refund, email. Safe to call again after a crash or
    a failed step; a step that fails leaves the change `applying` for the next try (the worker's resume_changes)."""
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        booking = load_booking(s, a.booking_id)
        reference, number, net, done = booking.reference, a.number, a.net_cents, list(a.done)
        lines = list(a.summary)
    messages: list[str] = []
    if "events" not in done:
        problems = _move_events(svc, amendment_id, actor, now)
        if problems:
            return _stalled(svc, amendment_id, reference, number, net, lines, problems, actor, now)
        done.append("events")
        _mark(svc, amendment_id, done, now)
    if "refund" not in done:
        errors: list[str] = []
        if net < 0:
            with svc.session() as s:
                a = s.get(Amendment, amendment_id)
                assert a is not None
                leg_ids = [row["leg_id"] for row in a.plan if row["refund_cents"] and row["leg_id"] is not None]
            ok = refund_payment(
                svc,
                a.booking_id,
                -net,
                origin="amendment",
                reason=f"Change {number} to the booking",
                actor=actor,
                now=now,
                key=f"roomdesk-{reference}-change-{number}-refund",
                policy_quote=-net,
                leg_ids=leg_ids,
                errors=errors,
            )
            if not ok:
                problems = [f"Refund failed: {'; '.join(errors)}"]
                return _stalled(svc, amendment_id, reference, number, net, lines, problems, actor, now)
            messages.append(f"Refunded {money(-net, svc.settings.currency)}")
        done.append("refund")
        _mark(svc, amendment_id, done, now)
    if "email" not in done:
        with svc.session() as s:
            a = s.get(Amendment, amendment_id)
            assert a is not None
            booking = load_booking(s, a.booking_id)
            legs = [leg for leg in booking_legs(s, a.booking_id) if leg.state in ACTIVE_LEG_STATES]
            mail = emails.changed(svc.catalogue, svc.settings, booking, legs, _note(s, booking, a))
            row = outbox.queue(s, booking, kind="changed", mail=mail, key=f"{reference}-change-{number}", now=now)
            done.append("email")
            a.done = list(done)
            a.state = AmendmentState.APPLIED
            a.applied_at = now
            a.updated_at = now
            audit.record(
                s,
                "booking.changed",
                actor=actor,
                at=now,
                booking=booking,
                change=number,
                lines=lines,
                net_cents=net,
                message=f"Change {number} made",
            )
        assert row.id is not None
        sent = outbox.deliver(svc, row.id, now=now, actor=actor)
        messages.append("Email with the new details sent" if sent else "Email queued (could not be sent yet)")
    return ChangeResult(a.booking_id, reference, number, "applied", ["Changed", *messages], net, lines=lines)


def _mark(svc: Services, amendment_id: int, done: list[str], now: datetime) -> None:
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        a.done, a.updated_at = list(done), now


def _stalled(
    svc: Services,
    amendment_id: int,
    reference: str,
    number: int,
    net: int,
    lines: list[str],
    problems: list[str],
    actor: str,
    now: datetime,
) -> ChangeResult:
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        audit.record(
            s,
            "booking.change.step_failed",
            actor=actor,
            at=now,
            booking=load_booking(s, a.booking_id),
            change=number,
            problems=problems,
            message="A step of the change failed; it is tried again automatically",
        )
        booking_id = a.booking_id
    return ChangeResult(
        booking_id,
        reference,
        number,
        "applying",
        ["The days are moved; " + "; ".join(problems) + " — tried again automatically"],
        net,
        lines=lines,
    )


def _move_events(svc: Services, amendment_id: int, actor: str, now: datetime) -> list[str]:
    """Bring the calendar to the new shape: a dropped day's event deleted; a changed day's event patched in place
    (same calendar) or made on the new room's calendar and the old one deleted; an added day's event made. Each call
    is idempotent (patch, deterministic ids, delete of a deleted event counts as done)."""
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        booking = load_booking(s, a.booking_id)
        legs = {leg.id: leg for leg in booking_legs(s, a.booking_id)}
        rows = list(a.plan)
    problems: list[str] = []
    to_delete: list[tuple[str, str]] = []
    for row in rows:
        old, new = row["old"], row["new"]
        leg = legs.get(row["leg_id"]) if row["leg_id"] is not None else None
        if new is None:
            if old and old.get("event_id"):
                to_delete.append((old["calendar_id"], old["event_id"]))
            continue
        assert leg is not None
        same_calendar = old is not None and old.get("event_id") and old["calendar_id"] == leg.calendar_id
        if same_calendar:
            body = event_body(svc, booking, leg, old["event_id"])
            patch = {k: body[k] for k in ("summary", "description", "start", "end", "extendedProperties")}
            try:
                svc.calendar.patch_event(leg.calendar_id, old["event_id"], patch)
            except NotFound:
                same_calendar = False  # gone from the calendar: make it afresh below
            except GatewayError as exc:
                problems.append(f"{date.fromisoformat(new['day']):%a %-d %b}: {exc.message}")
                continue
            else:
                _record_moved(svc, booking, leg, old["event_id"], actor, now, row)
                continue
        try:
            event_id = insert_event(svc, booking, leg)
        except GatewayError as exc:
            problems.append(f"{date.fromisoformat(new['day']):%a %-d %b}: {exc.message}")
            continue
        record_event_created(svc, a.booking_id, leg, event_id, actor=actor, now=now)
        if old and old.get("event_id") and (old["calendar_id"], old["event_id"]) != (leg.calendar_id, event_id):
            to_delete.append((old["calendar_id"], old["event_id"]))
    for calendar_id, event_id, error in delete_batch(svc, to_delete):
        if error is not None and not isinstance(error, NotFound) and error.status not in (404, 410):
            problems.append(f"the old event {event_id} could not be deleted ({error.message})")
            continue
        with svc.session() as s:
            audit.record(
                s,
                "booking.event.deleted",
                actor=actor,
                at=now,
                booking=load_booking(s, booking.id or 0),
                event_id=event_id,
                calendar_id=calendar_id,
            )
    return problems


def _record_moved(
    svc: Services, booking: Booking, leg: BookingLeg, event_id: str, actor: str, now: datetime, row: dict[str, Any]
) -> None:
    with svc.session() as s:
        db_leg = s.get(BookingLeg, leg.id)
        assert db_leg is not None
        db_leg.event_id, db_leg.updated_at = event_id, now
        audit.record(
            s,
            "booking.event.moved",
            actor=actor,
            at=now,
            booking=load_booking(s, booking.id or 0),
            event_id=event_id,
            calendar_id=leg.calendar_id,
            old=row["old"],
            new=row["new"],
        )


# --------------------------------------------------------------------------------------- a change that costs more


def _hold(
    svc: Services, plan: ChangePlan, lines: list[str], *, actor: str, reason: str, channel: str, now: datetime
) -> ChangeResult:
    minutes = svc.settings.phone_hold_minutes if channel == "phone" else svc.settings.hold_minutes
    expires = now + timedelta(minutes=minutes)
    room = svc.catalogue.room(plan.room_to)
    buffer = timedelta(minutes=svc.policy.buffer_minutes)
    try:
        with svc.session() as s:
            waiting = AmendmentState.AWAITING_PAYMENT
            a = _new_amendment(s, plan, lines, waiting, actor=actor, reason=reason, now=now, hold_expires_at=expires)
            assert a.id is not None
            for row in a.plan:
                if row["new"] is None:
                    continue
                starts, ends = _window(svc, row["new"])
                s.add(
                    SlotClaim(
                        booking_id=plan.booking_id,
                        leg_id=None,
                        amendment_id=a.id,
                        room_slug=room.slug,
                        starts_at=starts,
                        ends_at=ends,
                        block_until=ends + buffer,
                        kind=ClaimKind.HOLD,
                        expires_at=expires,
                        created_at=now,
                    )
                )
            s.flush()
            booking = load_booking(s, plan.booking_id)
            audit.record(
                s,
                "booking.change.held",
                actor=actor,
                at=now,
                booking=booking,
                change=a.number,
                lines=lines,
                net_cents=a.net_cents,
                expires_at=expires,
                reason=reason,
            )
            amendment_id, number, reference = a.id, a.number, booking.reference
            metadata = {
                "booking_id": booking.reference,
                "booking_change": str(a.number),
                "room": room.slug,
                "customer_email": booking.customer_email,
            }
    except IntegrityError as exc:
        if is_overlap_error(exc):
            raise SlotTaken("The room was taken for that time a moment ago: nothing was changed") from None
        raise
    try:
        pi = svc.payments.create_payment_intent(
            amount_cents=plan.settlement.net_cents,
            currency=svc.settings.currency.lower(),
            metadata=metadata,
            idempotency_key=f"roomdesk-{reference}-change-{number}-payment-intent",
        )
    except GatewayError:
        _release(svc, amendment_id, AmendmentState.WITHDRAWN, actor, now, "The payment could not be started")
        raise
    with svc.session() as s:
        held = s.get(Amendment, amendment_id)
        assert held is not None
        a = held
        a.payment_intent_id, a.updated_at = pi["id"], now
        s.add(
            ExternalRef(
                provider="stripe", kind="payment_intent", external_id=pi["id"], booking_id=a.booking_id, created_at=now
            )
        )
        booking = load_booking(s, a.booking_id)
        audit.record(
            s,
            "booking.change.payment_intent.created",
            actor=actor,
            at=now,
            booking=booking,
            change=number,
            payment_intent=pi["id"],
            amount_cents=pi["amount"],
        )
        url = pay_url(svc, booking, number)
        row = None
        if channel == "phone":
            legs = [leg for leg in booking_legs(s, a.booking_id) if leg.state in ACTIVE_LEG_STATES]
            until = f"{expires.astimezone(svc.settings.tz):%a %-d %b, %H:%M}"
            mail = emails.change_pay_link(svc.catalogue, svc.settings, booking, legs, _note(s, booking, a), url, until)
            row = outbox.queue(
                s, booking, kind="change_pay_link", mail=mail, key=f"{reference}-change-{number}-pay-link", now=now
            )
    messages = [f"{money(plan.settlement.net_cents, svc.settings.currency)} to pay: the new days are held"]
    if row is not None:
        assert row.id is not None
        sent = outbox.deliver(svc, row.id, now=now, actor=actor)
        messages.append("Pay link emailed" if sent else "Pay link email queued (could not be sent yet)")
    return ChangeResult(
        plan.booking_id,
        reference,
        number,
        "awaiting_payment",
        messages,
        plan.settlement.net_cents,
        payment_intent_id=pi["id"],
        client_secret=pi.get("client_secret") or "",
        pay_url=url,
        hold_expires_at=expires,
        lines=lines,
    )


def change_for_payment(svc: Services, payment_intent_id: str) -> Amendment | None:
    with svc.read_session() as s:
        return s.exec(select(Amendment).where(Amendment.payment_intent_id == payment_intent_id)).first()


def confirm_change_payment(
    svc: Services, payment_intent_id: str, *, actor: str = "stripe-webhook", now: datetime | None = None
) -> ChangeResult:
    """The difference was paid: Gate 2 again, then the change is applied; if the room was taken (or the booking
    changed) meanwhile, the difference is refunded in full and the booking stays as it was. Repeating it changes
    nothing."""
    now = resolve_now(svc, now)
    a = change_for_payment(svc, payment_intent_id)
    if a is None or a.id is None:
        raise NotFound(f"No change to a booking for PaymentIntent {payment_intent_id}")
    with lease(svc, a.booking_id):
        return _confirm_under_lease(svc, a.id, payment_intent_id, actor, now)


def _confirm_under_lease(svc: Services, amendment_id: int, pi_id: str, actor: str, now: datetime) -> ChangeResult:
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        booking = load_booking(s, a.booking_id)
        reference, number, state = booking.reference, a.number, a.state
    if state == AmendmentState.APPLYING:
        return _finish(svc, amendment_id, actor, now)
    if state in (AmendmentState.APPLIED, AmendmentState.FAILED) or (
        state != AmendmentState.AWAITING_PAYMENT and a.paid_at is not None
    ):
        return ChangeResult(a.booking_id, reference, number, "already_done", ["Nothing to do: already processed"])
    pi = svc.payments.retrieve_payment_intent(pi_id)  # never trust a webhook payload
    if pi.get("status") != "succeeded":
        return ChangeResult(
            a.booking_id, reference, number, "not_paid", [f"Payment is {pi.get('status')}, not succeeded"]
        )
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        a.paid_at, a.updated_at = now, now
        audit.record(
            s,
            "booking.change.paid",
            actor=actor,
            at=now,
            booking=load_booking(s, a.booking_id),
            change=number,
            payment_intent=pi_id,
            amount_cents=pi.get("amount"),
        )
    # Precondition: the days the change moves are still as they were when it was planned.
    stale = _stale_rows(svc, amendment_id)
    if stale:
        return _fail_change(svc, amendment_id, actor, now, f"the booking changed meanwhile ({stale})")
    # Gate 2: the new shape against the room's calendar, this booking's own events left out.
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        windows = []
        for row in a.plan:
            if row["new"] is not None:
                starts, ends = _window(svc, row["new"])
                windows.append(LegWindow(date.fromisoformat(row["new"]["day"]), starts, ends))
        room = svc.catalogue.room(a.room_to)
    if windows:
        first, last = busy_span(windows, svc.policy.buffer_minutes)
        try:
            busy = calendar_busy(svc, room, first, last, ignore_booking=reference)
        except GatewayError as exc:
            return _fail_change(svc, amendment_id, actor, now, f"availability check failed: {exc.message}")
        conflicts = check_conflicts(sorted(windows, key=lambda w: w.starts_at), busy, svc.policy)
        if conflicts:
            return _fail_change(svc, amendment_id, actor, now, "; ".join(conflicts))
    try:
        with svc.session() as s:
            a = s.get(Amendment, amendment_id)
            assert a is not None
            booking = load_booking(s, a.booking_id)
            a.state = AmendmentState.APPLYING
            a.hold_expires_at = None
            _apply_shape(svc, s, booking, a, actor, now)
    except IntegrityError as exc:
        if not is_overlap_error(exc):
            raise
        return _fail_change(svc, amendment_id, actor, now, "the hold lapsed and the room was booked meanwhile")
    return _finish(svc, amendment_id, actor, now)


def _stale_rows(svc: Services, amendment_id: int) -> str:
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        legs = {leg.id: leg for leg in booking_legs(s, a.booking_id)}
        tz = svc.settings.tz
        for row in a.plan:
            old = row["old"]
            if row["leg_id"] is None or old is None:
                continue
            leg = legs.get(row["leg_id"])
            if leg is None or leg.state != LegState.CONFIRMED:
                return f"{old['day']} is no longer booked"
            now_shape = _shape(leg.day, leg.starts_at.astimezone(tz).time(), leg.ends_at.astimezone(tz).time())
            if now_shape != {k: old[k] for k in ("day", "start", "end")} or leg.calendar_id != old["calendar_id"]:
                return f"{old['day']} was changed"
    return ""


def _fail_change(svc: Services, amendment_id: int, actor: str, now: datetime, detail: str) -> ChangeResult:
    """Paid, but the change cannot be made: refund the difference in full on its own payment, release the hold,
    tell the customer; the booking is as it was."""
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        booking = load_booking(s, a.booking_id)
        reference, number, pi_id, net = booking.reference, a.number, a.payment_intent_id, a.net_cents
        audit.record(
            s, "booking.change.gate2_failed", actor=actor, at=now, booking=booking, change=number, detail=detail
        )
    messages = [f"The change could not be made: {detail}"]
    refunded = True
    if pi_id and net > 0:
        refunded = refund_payment(
            svc,
            a.booking_id,
            net,
            origin="auto_gate2",
            reason=f"Change {number} could not be made",
            actor=actor,
            now=now,
            key=f"roomdesk-{reference}-change-{number}-auto-refund",
            policy_quote=net,
            payment_intent=pi_id,
        )
    if not refunded:
        return ChangeResult(
            a.booking_id, reference, number, "refund_failed", [*messages, "Automatic refund failed: it is retried"]
        )
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        _release_hold_claims(s, a)
        a.state, a.hold_expires_at, a.updated_at = AmendmentState.FAILED, None, now
        booking = load_booking(s, a.booking_id)
        legs = [leg for leg in booking_legs(s, a.booking_id) if leg.state in ACTIVE_LEG_STATES]
        mail = emails.change_failed(svc.catalogue, svc.settings, booking, legs, _note(s, booking, a))
        key = f"{reference}-change-{number}-failed"
        row = outbox.queue(s, booking, kind="change_failed", mail=mail, key=key, now=now)
    assert row.id is not None
    outbox.deliver(svc, row.id, now=now, actor=actor)
    return ChangeResult(a.booking_id, reference, number, "failed", [*messages, "The difference was refunded in full"])


def _release(svc: Services, amendment_id: int, state: AmendmentState, actor: str, now: datetime, message: str) -> None:
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        _release_hold_claims(s, a)
        a.state, a.hold_expires_at, a.updated_at = state, None, now
        audit.record(
            s,
            f"booking.change.{state.value}",
            actor=actor,
            at=now,
            booking=load_booking(s, a.booking_id),
            change=a.number,
            message=message,
        )


def _end_unpaid(svc: Services, amendment_id: int, state: AmendmentState, actor: str, now: datetime) -> ChangeResult:
    """Lapse or withdraw a change waiting for payment (under the lease): if it was paid after all, make it instead."""
    with svc.session() as s:
        a = s.get(Amendment, amendment_id)
        assert a is not None
        reference = load_booking(s, a.booking_id).reference
        number, pi_id, current = a.number, a.payment_intent_id, a.state
    if current != AmendmentState.AWAITING_PAYMENT:
        return ChangeResult(a.booking_id, reference, number, "already_done", ["Nothing to do: already settled"])
    if pi_id:
        pi = svc.payments.retrieve_payment_intent(pi_id)
        if pi.get("status") == "succeeded":
            return _confirm_under_lease(svc, amendment_id, pi_id, actor, now)
        if pi.get("status") != "canceled":
            svc.payments.cancel_payment_intent(pi_id, idempotency_key=f"roomdesk-{reference}-change-{number}-cancel-pi")
    words = "The hold ran out unpaid" if state == AmendmentState.LAPSED else "Withdrawn before payment"
    _release(svc, amendment_id, state, actor, now, f"{words}: the booking is as it was")
    return ChangeResult(a.booking_id, reference, number, state.value, [f"{words}: the booking is as it was"])


def withdraw_change(svc: Services, booking_id: int, *, actor: str, now: datetime | None = None) -> ChangeResult:
    """Give up the booking's change that waits for payment: its hold is released, its PaymentIntent cancelled."""
    now = resolve_now(svc, now)
    with lease(svc, booking_id):
        with svc.session() as s:
            a = open_change(s, booking_id)
            if a is None or a.id is None or a.state != AmendmentState.AWAITING_PAYMENT:
                raise InvalidState("This booking has no change waiting for payment")
            amendment_id = a.id
        return _end_unpaid(svc, amendment_id, AmendmentState.WITHDRAWN, actor, now)


def expire_change_holds(svc: Services, *, actor: str = "system", now: datetime | None = None) -> dict[str, int]:
    """Changes whose hold ran out unpaid lapse (or are made, if paid after all); changes a crash or a failed step
    left half made are completed."""
    now = resolve_now(svc, now)
    with svc.session() as s:
        lapsed = list(
            s.exec(
                select(Amendment.id, Amendment.booking_id).where(
                    Amendment.state == AmendmentState.AWAITING_PAYMENT, col(Amendment.hold_expires_at) < now
                )
            )
        )
        halfway = list(
            s.exec(select(Amendment.id, Amendment.booking_id).where(Amendment.state == AmendmentState.APPLYING))
        )
    counts: dict[str, int] = {}
    jobs: Sequence[tuple[Any, Any, bool]] = [(i, b, True) for i, b in lapsed] + [(i, b, False) for i, b in halfway]
    for amendment_id, booking_id, expiring in jobs:
        try:
            with lease(svc, booking_id):
                if expiring:
                    outcome = _end_unpaid(svc, amendment_id, AmendmentState.LAPSED, actor, now).outcome
                else:
                    outcome = "resumed:" + _finish(svc, amendment_id, actor, now).outcome
        except BookingBusy:
            continue
        except GatewayError as exc:
            log.warning("Change %s deferred: %s", amendment_id, exc.message)
            outcome = "deferred"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
