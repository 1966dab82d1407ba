"""One-click remediation: a fix for every reconciliation finding (the actions `findings.CODES` offers).

Each fix re-loads its finding, re-checks the finding's condition against Stripe and the calendars just before acting
(the cache the finding was read from may be minutes old), acts through the booking service's own steps (Gate 2,
deterministic event ids, idempotent refund keys, the outbox, leases), and audits under the name of the person who
clicked. A second click finds the condition gone and says there is nothing to do.

A fix is planned first, then applied: `describe_action` shows the plan's text in the confirmation dialog and
`run_action` applies the same plan, so the dialog says exactly what the button does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    AuditLog,
    Booking,
    BookingLeg,
    BookingStatus,
    CalendarEventCache,
    EmailOutbox,
    ExternalRef,
    Finding,
    LegState,
    RefundRecord,
    SlotClaim,
)
from services import booking as bk
from services.core import audit
from services.core.catalogue import Room
from services.core.context import Progress, Services
from services.core.errors import DomainError, GatewayError, NotFound, ValidationError
from services.gateways.base import Json, all_pages
from services.notify import emails, outbox
from services.notify.emails import RenderedEmail
from services.reconciliation import findings, reconcile
from services.rules.availability import LegWindow, SlotRequest, check_conflicts, closure_reason, leg_windows
from services.rules.fmt import day_label, days_label, money, plural
from services.rules.refunds import policy_snapshot

log = logging.getLogger("roomdesk.remediate")
_days = partial(days_label, limit=6)  # a fix names at most 6 days, then '+N more'

Amount = Literal["full", "policy", "difference"]
EventKey = tuple[str, str]  # (calendar id, event id)


@dataclass
class FixResult:
    finding_id: int
    action: str
    ok: bool
    message: str  # one plain sentence for staff
    offer: str | None = None  # another action to offer instead (e.g. "refund" when the slot is taken)
    changed: bool = False  # something was written (Stripe, a calendar, mail, our records); False: nothing happened


class Refusal(DomainError):
    """The fix does not run: its condition no longer holds (or never did). Nothing was changed."""

    def __init__(self, message: str, offer: str | None = None) -> None:
        super().__init__(message)
        self.offer = offer


@dataclass(frozen=True)
class _Opts:
    note: str = ""
    reason: str = ""
    amount: Amount = "full"
    extras: dict[str, object] | None = None


@dataclass
class _Ctx:
    svc: Services
    finding: Finding
    actor: str
    now: datetime
    opts: _Opts
    booking: Booking | None
    legs: list[BookingLeg] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Names the finding in idempotency keys: one fix per finding occurrence."""
        return f"fix{self.finding.id}"

    def offer(self, *candidates: str) -> str | None:
        """The first of these actions the finding offers."""
        return next((a for a in candidates if a in self.finding.actions), None)


@dataclass(frozen=True)
class _Plan:
    text: str  # what applying will do, for the confirmation dialog
    apply: Callable[[], FixResult]


# --------------------------------------------------------------------------------------------- what Stripe says now


@dataclass(frozen=True)
class _Pay:
    id: str
    status: str
    received: int
    refunded: int
    currency: str
    metadata: dict[str, str]

    @property
    def kept(self) -> int:
        return max(self.received - self.refunded, 0)

    def money(self, cents: int) -> str:
        return money(cents, self.currency)


def _fetch_pay(svc: Services, pi_id: str | None) -> _Pay | None:
    """The PaymentIntent as Stripe has it right now; None if Stripe does not know it."""
    if not pi_id:
        return None
    try:
        pi = svc.payments.retrieve_payment_intent(pi_id)
    except NotFound:
        return None
    charge = pi.get("latest_charge") or {}
    status = str(pi.get("status") or "unknown")
    received = int(charge.get("amount_captured", charge.get("amount", 0)) or 0) if status == "succeeded" else 0
    return _Pay(
        pi_id,
        status,
        received,
        int(charge.get("amount_refunded", 0) or 0),
        str(pi.get("currency") or "cad").upper(),
        {str(k): str(v) for k, v in (pi.get("metadata") or {}).items()},
    )


def _unrecorded_refund(svc: Services, pay: _Pay | None, key: str) -> Json | None:
    """A refund Stripe made with this fix's key that we never recorded: an earlier click refunded, then lost the
    answer (a timeout). Its retry must finish that click's work, not refuse because the money is already back."""
    if pay is None or not pay.refunded:
        return None
    refunds = all_pages(
        lambda after: svc.payments.list_refunds(payment_intent_id=pay.id, limit=100, starting_after=after)
    )
    ours = [r for r in refunds if (r.get("metadata") or {}).get("idempotency_key") == key]
    mine = next((r for r in ours if r.get("status") != "failed"), None)
    if mine is None:
        return None
    with svc.session() as s:
        recorded = s.exec(select(RefundRecord.id).where(RefundRecord.refund_id == mine["id"])).first()
    return None if recorded is not None else mine


def _paid(pay: _Pay | None, pi_id: str | None) -> _Pay:
    """The payment, if it is paid and not fully refunded; otherwise refuse with what Stripe says."""
    if pay is None:
        raise Refusal(f"Stripe does not know payment {pi_id or '(none)'} — nothing to do")
    if pay.status != "succeeded":
        raise Refusal(f"Payment {pay.id} is {pay.status.replace('_', ' ')} in Stripe, not paid — nothing to do")
    if pay.kept <= 0:
        raise Refusal("Already refunded in Stripe — nothing to do")
    return pay


# --------------------------------------------------------------------------------------------- what the calendars say


def _when(part: Any, tz: Any) -> datetime:
    if not isinstance(part, dict):
        raise ValueError("no time")
    if part.get("dateTime"):
        moment = datetime.fromisoformat(str(part["dateTime"]).replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)
    return datetime.combine(date.fromisoformat(str(part["date"])), time(0), tzinfo=tz)


def _event_span(ev: Json, svc: Services) -> tuple[datetime, datetime] | None:
    try:
        return _when(ev.get("start"), svc.settings.tz), _when(ev.get("end"), svc.settings.tz)
    except (ValueError, TypeError, KeyError):
        return None


def _event_day(ev: Json, svc: Services) -> date | None:
    span = _event_span(ev, svc)
    return span[0].astimezone(svc.settings.tz).date() if span else None


def _event_label(svc: Services, key: EventKey, ev: Json) -> str:
    """'“Staff meeting”, Main Hall Thu 19 Mar 08:00–11:00'."""
    room = svc.catalogue.room_by_calendar(key[0])
    span = _event_span(ev, svc)
    when = ""
    if span:
        s_local, e_local = span[0].astimezone(svc.settings.tz), span[1].astimezone(svc.settings.tz)
        when = f" {day_label(s_local.date())} {s_local:%H:%M}–{e_local:%H:%M}"
    return f"“{ev.get('summary') or '(no title)'}”, {room.name if room else key[0]}{when}"


def _live(ev: Json | None) -> bool:
    return ev is not None and ev.get("status") != "cancelled"


def _named_events(svc: Services, f: Finding) -> list[EventKey]:
    """The events a finding names, with their calendars (the finding keeps only ids; the cache knows where)."""
    if not f.event_ids:
        return []
    with svc.session() as s:
        rows = list(s.exec(select(CalendarEventCache).where(col(CalendarEventCache.event_id).in_(list(f.event_ids)))))
    found = {r.event_id: r.calendar_id for r in rows}
    fallback = svc.catalogue.room(f.room).calendar_id if f.room else None
    out = []
    for event_id in f.event_ids:
        calendar_id = found.get(event_id, fallback)
        if calendar_id:
            out.append((calendar_id, event_id))
    return out


def _own_events(
    svc: Services, calendar_id: str, reference: str | None, pi_id: str | None, extra: Sequence[EventKey] = ()
) -> dict[EventKey, Json]:
    """Live events of one booking: by our private properties, plus any the finding names (the old system's)."""
    found: dict[EventKey, Json] = {}
    props = ([f"booking_id={reference}"] if reference else []) + ([f"payment_intent={pi_id}"] if pi_id else [])
    for prop in props:
        for ev in svc.calendar.list_events(calendar_id, private_property=prop).get("items") or []:
            if _live(ev):
                found[(calendar_id, str(ev["id"]))] = ev
    for cal, eid in extra:
        if (cal, eid) not in found:
            ev = svc.calendar.get_event(cal, eid)
            if ev is not None and _live(ev):
                found[(cal, eid)] = ev
    return found


def _days_with_events(svc: Services, events: dict[EventKey, Json], calendar_id: str) -> dict[date, EventKey]:
    out: dict[date, EventKey] = {}
    for key, ev in events.items():
        day = _event_day(ev, svc)
        if key[0] == calendar_id and day is not None:
            out.setdefault(day, key)
    return out


def _matches(svc: Services, key: EventKey, ev: Json, window: LegWindow, calendar_id: str) -> bool:
    span = _event_span(ev, svc)
    return key[0] == calendar_id and span is not None and span == (window.starts_at, window.ends_at)


def _gate2(
    svc: Services, room: Room, windows: Sequence[LegWindow], *, own: set[str], booking_id: int | None, now: datetime
) -> list[str]:
    """Gate 2 again, just before acting: the calendar itself and live holds, ignoring the booking's own events."""
    start, end = bk.busy_span(windows, svc.policy.buffer_minutes)
    busy = [b for b in bk.calendar_busy(svc, room, start, end) if b.ref not in own]
    with svc.session() as s:
        busy += bk.claims_busy(s, room.slug, start, end, now, booking_id)
    return check_conflicts(windows, busy, svc.policy)


# --------------------------------------------------------------------------------------------- small booking steps


def _booking_for(svc: Services, pi_id: str | None, booking_id: int | None) -> tuple[Booking | None, list[BookingLeg]]:
    # By payment first: a booking adopted by an earlier click is found although the finding still has no booking.
    with svc.session() as s:
        booking = s.exec(select(Booking).where(Booking.payment_intent_id == pi_id)).first() if pi_id else None
        if booking is None and booking_id:
            booking = s.get(Booking, booking_id)
        legs = bk.booking_legs(s, booking.id) if booking and booking.id else []
    return booking, legs


def _slot_taken(conflicts: Sequence[str], ctx: _Ctx) -> Refusal:
    return Refusal(
        f"Nothing was created: the slot is taken now ({'; '.join(conflicts)}). Refund the customer instead?",
        offer=ctx.offer("refund", "cancel"),
    )


def _claim(svc: Services, booking_id: int, leg_ids: Sequence[int], now: datetime, ctx: _Ctx) -> None:
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
                    s.add(
                        SlotClaim(
                            booking_id=booking_id,
                            leg_id=leg.id,
                            room_slug=booking.room_slug,
                            starts_at=leg.starts_at,
                            ends_at=leg.ends_at,
                            block_until=leg.ends_at + buffer,
                            kind="booked",
                            created_at=now,
                        )
                    )
                elif not claim.active or claim.kind != "booked":
                    claim.kind, claim.expires_at, claim.active = "booked", None, True
                s.flush()
    except IntegrityError as exc:
        if not bk.is_overlap_error(exc):
            raise
        raise _slot_taken(["another booking holds it in Room Desk"], ctx) from None


def _release(svc: Services, booking_id: int, leg_ids: Sequence[int]) -> None:
    with svc.session() as s:
        bk.release_claims(s, booking_id, leg_ids)


def _create_events(
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


def _record_existing(svc: Services, booking_id: int, found: dict[date, EventKey], actor: str, now: datetime) -> None:
    """Note on each day the event that is there for it (one an earlier try created but never heard back about)."""
    with svc.session() as s:
        legs = bk.booking_legs(s, booking_id)
    for leg in legs:
        key = found.get(leg.day)
        if key is not None and key[0] == leg.calendar_id and leg.event_id != key[1]:
            bk.record_event_created(svc, booking_id, leg, key[1], actor=actor, now=now)


def _delete_events(
    svc: Services,
    targets: Sequence[EventKey],
    *,
    booking_id: int | None,
    pi_id: str | None,
    actor: str,
    now: datetime,
    note: str = "",
) -> tuple[int, list[str]]:
    """Delete events, audited against the booking (or, with none, the payment): (how many deleted, problems)."""
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


def _send(
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


def _send_confirmation(svc: Services, booking_id: int, actor: str, now: datetime) -> str:
    """Queue and send the confirmation if the customer never had one; what happened, for the result message."""
    with svc.session() as s:
        booking = bk.load_booking(s, booking_id)
        if booking.confirmation_sent_at is not None:
            return ""
        legs = [leg for leg in bk.booking_legs(s, booking_id) if leg.state in ACTIVE_LEG_STATES]
        mail = emails.confirmation(svc.catalogue, svc.settings, booking, legs)
        reference, to = booking.reference, booking.customer_email
    key = f"{reference}-confirmation"
    if _send(svc, booking_id, kind="confirmation", mail=mail, key=key, actor=actor, now=now):
        return f"confirmation emailed to {to}"
    return "the confirmation email could not be sent (queued to retry)"


def _last_refund_error(svc: Services, booking_id: int) -> str:
    with svc.session() as s:
        row = s.exec(
            select(AuditLog)
            .where(AuditLog.booking_id == booking_id, AuditLog.action == "booking.refund.failed")
            .order_by(col(AuditLog.id).desc())
        ).first()
    return str(row.payload.get("error")) if row else "Stripe did not answer"


def _who(svc: Services, booking: Booking, days: Sequence[date] = ()) -> str:
    """'RD4K7M2Q (Boardroom, Wed 4 Mar 10:00–12:00)': a booking as staff name it."""
    room = svc.catalogue.room(booking.room_slug)
    when = f"{_days(days)} " if days else ""
    return f"{booking.reference} ({room.name}, {when}{booking.start_time}–{booking.end_time})"


# --------------------------------------------------------------------------------------------- adopting old payments


@dataclass(frozen=True)
class _Meta:
    """A booking as the old system wrote it into the PaymentIntent's metadata."""

    room: Room
    dates: tuple[date, ...]
    start: time
    end: time
    name: str
    email: str
    phone: str
    old_reference: str

    def windows(self, svc: Services) -> list[LegWindow]:
        return leg_windows(SlotRequest(self.dates, self.start, self.end), svc.policy)

    def label(self) -> str:
        return f"{self.room.name}, {_days(self.dates)} {self.start:%H:%M}–{self.end:%H:%M}"


def _meta(svc: Services, pay: _Pay) -> _Meta:
    md = pay.metadata
    try:
        room = svc.catalogue.room(md.get("room", ""))
        dates = tuple(sorted({date.fromisoformat(d.strip()) for d in md.get("booking_dates", "").split(",") if d}))
        start_s, end_s = md.get("booking_time", "").split("-")
        start, end = time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip())
        if not dates or end <= start:
            raise ValueError("no dates, or the time ends before it starts")
    except (DomainError, ValueError) as exc:
        message = exc.message if isinstance(exc, DomainError) else str(exc)
        raise Refusal(f"Payment {pay.id}'s metadata cannot be read as a booking ({message})") from None
    return _Meta(
        room,
        dates,
        start,
        end,
        md.get("customer_name", "").strip()[:200] or "(name unknown)",
        md.get("customer_email", "").strip().lower()[:254],
        md.get("customer_phone", "").strip()[:40],
        md.get("booking_id", ""),
    )


def _legacy_who(pay: _Pay, meta: _Meta | None) -> str:
    return f"payment {pay.id} ({meta.label()})" if meta else f"payment {pay.id}"


def _split(total: int, parts: int) -> list[int]:
    """Cents shared out over the days, the odd cents to the first days, so the legs add up to the total."""
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def _adopt(ctx: _Ctx, pay: _Pay, meta: _Meta, *, state: LegState, claim: bool, events: dict[date, EventKey]) -> int:
    """Take a payment the old system made (metadata only) into a booking: legs priced from what was charged, the
    policy in force today, references, and the day events it already has. Returns the booking id."""
    svc, now = ctx.svc, ctx.now
    windows = meta.windows(svc)
    buffer = timedelta(minutes=svc.policy.buffer_minutes)
    shares = _split(pay.received, len(windows))
    try:
        with svc.session() as s:
            existing = s.exec(select(Booking.id).where(Booking.payment_intent_id == pay.id)).first()
            if existing is not None:
                return existing
            booking = Booking(
                reference=bk.new_reference(s),
                room_slug=meta.room.slug,
                status=BookingStatus.FAILED,
                channel="web",
                start_time=f"{meta.start:%H:%M}",
                end_time=f"{meta.end:%H:%M}",
                customer_name=meta.name,
                customer_email=meta.email,
                customer_phone=meta.phone,
                notes=f"Adopted from Stripe payment {pay.id}, made by the old booking system"
                + (f" (its booking id {meta.old_reference})" if meta.old_reference else ""),
                amount_cents=pay.received,
                currency=pay.currency,
                # What was charged is the price the customer agreed to; today's catalogue may differ.
                pricing_snapshot={
                    "room": meta.room.slug,
                    "source": "adopted",
                    "total_cents": pay.received,
                    "legs": {w.day.isoformat(): c for w, c in zip(windows, shares, strict=True)},
                },
                policy_snapshot=policy_snapshot(svc.policy),
                payment_intent_id=pay.id,
                confirmed_at=now if state in ACTIVE_LEG_STATES else None,
                created_by=ctx.actor,
                created_at=now,
                updated_at=now,
            )
            s.add(booking)
            s.flush()
            assert booking.id is not None
            legs = []
            for window, share in zip(windows, shares, strict=True):
                linked = events.get(window.day)
                leg = BookingLeg(
                    booking_id=booking.id,
                    day=window.day,
                    starts_at=window.starts_at,
                    ends_at=window.ends_at,
                    state=state,
                    price_cents=share,
                    refunded_cents=share if state == LegState.REFUNDED else 0,
                    calendar_id=meta.room.calendar_id,
                    event_id=linked[1] if linked else None,
                    updated_at=now,
                )
                s.add(leg)
                s.flush()
                legs.append(leg)
                assert leg.id is not None
                if claim:
                    s.add(
                        SlotClaim(
                            booking_id=booking.id,
                            leg_id=leg.id,
                            room_slug=meta.room.slug,
                            starts_at=window.starts_at,
                            ends_at=window.ends_at,
                            block_until=window.ends_at + buffer,
                            kind="booked",
                            created_at=now,
                        )
                    )
                    s.flush()
                if linked:
                    s.add(
                        ExternalRef(
                            provider="google",
                            kind="event",
                            external_id=f"{linked[0]}/{linked[1]}",
                            booking_id=booking.id,
                            leg_id=leg.id,
                            created_at=now,
                        )
                    )
            s.add(
                ExternalRef(
                    provider="stripe",
                    kind="payment_intent",
                    external_id=pay.id,
                    booking_id=booking.id,
                    created_at=now,
                )
            )
            booking.status = bk.derive_status(legs)
            audit.record(
                s,
                "booking.adopted",
                actor=ctx.actor,
                at=now,
                booking=booking,
                old_booking_id=meta.old_reference or None,
                amount_cents=pay.received,
                dates=[d.isoformat() for d in meta.dates],
                time=f"{booking.start_time}-{booking.end_time}",
                finding=ctx.finding.key,
                message="Payment made by the old system adopted into a booking",
            )
            return booking.id
    except IntegrityError as exc:
        if bk.is_overlap_error(exc):
            raise _slot_taken(["another booking holds it in Room Desk"], ctx) from None
        # Another click adopted the same payment a moment earlier: carry on with that booking.
        booking_now, _ = _booking_for(svc, pay.id, None)
        if booking_now is None or booking_now.id is None:
            raise
        return booking_now.id


def _booking_id(
    ctx: _Ctx,
    booking: Booking | None,
    pay: _Pay,
    meta: _Meta | None,
    *,
    state: LegState,
    claim: bool,
    events: dict[date, EventKey],
) -> int:
    """The booking a fix acts on: the one Room Desk has, or the old system's payment adopted now."""
    if meta is not None:
        return _adopt(ctx, pay, meta, state=state, claim=claim, events=events)
    assert booking is not None and booking.id is not None
    return booking.id


# --------------------------------------------------------------------------------------------- refunding


def _refund_and_close(
    ctx: _Ctx,
    booking_id: int,
    *,
    amount: int,
    leg_ids: Sequence[int],
    to_state: LegState | None,
    key: str,
    reason: str,
    email: Literal["refund", "cancellation"],
    extra_events: Sequence[EventKey] = (),
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
    pay = _fetch_pay(svc, pi_id)
    if not (replay and _unrecorded_refund(svc, pay, key) is not None):
        pay = _paid(pay, pi_id)
        if pay.kept < amount:
            raise Refusal(
                f"Stripe shows only {pay.money(pay.kept)} left to refund, not {pay.money(amount)} — sync first"
            )
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
    )
    if not ok:
        raise Refusal(f"The refund failed ({_last_refund_error(svc, booking_id)}); nothing was changed. Try again.")

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
        if email == "cancellation":
            mail = emails.cancellation(svc.catalogue, svc.settings, booking, touched, amount)
        else:
            mail = emails.refund(svc.catalogue, svc.settings, booking, touched or legs, amount, booking_stands=stands)
        reference, to = booking.reference, booking.customer_email
        room_cal = svc.catalogue.room(booking.room_slug).calendar_id
        days = {leg.day for leg in touched}
        targets = {(leg.calendar_id, leg.event_id) for leg in touched if leg.event_id and to_state is not None}

    if to_state is not None and days:
        # Events of the refunded days: the legs' own, plus any the old system or a retry left on those days.
        for ev_key, ev in _own_events(svc, room_cal, reference, pi_id, extra_events).items():
            if _event_day(ev, svc) in days:
                targets.add(ev_key)
    live = [t for t in sorted(targets) if _live(svc.calendar.get_event(*t))]
    deleted, problems = _delete_events(svc, live, booking_id=booking_id, pi_id=pi_id, actor=actor, now=now)
    sent = _send(
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


def _policy_refund(svc: Services, booking_id: int, now: datetime) -> tuple[int, list[int], str]:
    """What the booking's cancellation policy refunds now for its confirmed days: (cents, leg ids, bands)."""
    quotes = [(leg, q) for leg, q in bk.cancellation_quote(svc, booking_id, now=now) if leg.state == LegState.CONFIRMED]
    bands = ", ".join(f"{day_label(leg.day)}: {q.band}" for leg, q in quotes)
    return sum(q.refund_cents for _, q in quotes), [leg.id for leg, _ in quotes if leg.id is not None], bands


# --------------------------------------------------------------------------------------------- the actions


def _plan_create_events(ctx: _Ctx) -> _Plan:
    """Create the missing days' events (seed incident #2's last resort), after Gate 2 on the calendar itself."""
    svc, f = ctx.svc, ctx.finding
    pay = _paid(_fetch_pay(svc, f.payment_intent), f.payment_intent)
    booking, legs = ctx.booking, ctx.legs
    named = _named_events(svc, f)
    meta: _Meta | None = None
    if booking is None:
        meta = _meta(svc, pay)
        if pay.refunded:
            raise Refusal(f"Payment {pay.id} is partly refunded in Stripe: check it before creating events")
        room = meta.room
        events = _own_events(svc, room.calendar_id, None, pay.id, named)
        have = _days_with_events(svc, events, room.calendar_id)
        targets = meta.windows(svc)
        reinstate, reference, to = True, "", meta.email
        who = f"payment {pay.id} ({meta.room.name}, {meta.start:%H:%M}–{meta.end:%H:%M})"
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
        events = _own_events(svc, room.calendar_id, booking.reference, pay.id, named)
        have = _days_with_events(svc, events, room.calendar_id)
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
        _gate2(svc, room, missing, own=own_ids, booking_id=booking.id if booking else None, now=ctx.now)
        if missing
        else []
    )
    if conflicts:
        raise _slot_taken(conflicts, ctx)
    days = [w.day for w in missing]
    steps = []
    if meta is not None:
        steps.append(f"Adopt payment {pay.id} ({pay.money(pay.received)}, made by the old system) into a booking")
    elif reinstate:
        steps.append(
            f"Restore booking {reference} (its days were marked failed, but the {pay.money(pay.kept)} was kept)"
        )
    if days:
        steps.append(f"create {plural(len(days), 'calendar event')} for {who}: {_days(days)}")
    else:
        steps.append(f"note the calendar events already there for {who}")
    if booking is None or booking.confirmation_sent_at is None:
        steps.append(f"email the confirmation to {to}")
    text = ", then ".join([steps[0][:1].upper() + steps[0][1:], *steps[1:]]) + "."

    def apply() -> FixResult:
        booking_id = _booking_id(ctx, booking, pay, meta, state=LegState.FAILED, claim=True, events=have)
        with bk.lease(svc, booking_id):
            failed_ids: list[int] = []
            if reinstate:
                with svc.session() as s:
                    legs = bk.booking_legs(s, booking_id)
                    failed_ids = [leg.id for leg in legs if leg.state == LegState.FAILED and leg.id]
                _claim(svc, booking_id, failed_ids, ctx.now, ctx)
            created, problem = _create_events(svc, booking_id, days, ctx.actor, ctx.now)
            if problem:
                if reinstate:  # a failed booking holds no slot; the retry claims it again
                    _release(svc, booking_id, failed_ids)
                return FixResult(
                    f.id or 0,
                    "",
                    False,
                    f"Created {len(created)} of {plural(len(days), 'event')}; Google Calendar failed on {problem}. "
                    "Try again: nothing is duplicated.",
                    changed=bool(created) or meta is not None,
                )
            _record_existing(svc, booking_id, have, ctx.actor, ctx.now)
            if reinstate:
                _reinstate(ctx, booking_id, failed_ids)
            emailed = _send_confirmation(svc, booking_id, ctx.actor, ctx.now)
        message = (
            f"Created {plural(len(days), 'event')}: {_days(days)}" if days else "The events were already there"
        ) + (f"; {emailed}" if emailed else "")
        return FixResult(f.id or 0, "", True, message, changed=True)

    return _Plan(text, apply)


def _reinstate(ctx: _Ctx, booking_id: int, leg_ids: Sequence[int]) -> None:
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


def _plan_recreate_events(ctx: _Ctx) -> _Plan:
    """Replace the events that disagree with the payment (room, date or time) by the right ones."""
    svc, f = ctx.svc, ctx.finding
    pay = _paid(_fetch_pay(svc, f.payment_intent), f.payment_intent)
    booking, legs = ctx.booking, ctx.legs
    meta: _Meta | None = None
    if booking is None:
        meta = _meta(svc, pay)
        room, windows, reference = meta.room, meta.windows(svc), None
        hours = f"{meta.start:%H:%M}–{meta.end:%H:%M}"
    else:
        room, reference = svc.catalogue.room(booking.room_slug), booking.reference
        windows = [LegWindow(leg.day, leg.starts_at, leg.ends_at) for leg in legs if leg.state in ACTIVE_LEG_STATES]
        hours = f"{booking.start_time}–{booking.end_time}"
    events = _own_events(svc, room.calendar_id, reference, pay.id, _named_events(svc, f))
    right: dict[date, EventKey] = {}
    for key, ev in events.items():
        for w in windows:
            if _matches(svc, key, ev, w, room.calendar_id):
                right.setdefault(w.day, key)
    wrong = [key for key in events if key not in right.values()]
    if not wrong:
        raise Refusal("Nothing to do: the events now agree with the payment")
    missing = [w for w in windows if w.day not in right]
    conflicts = (
        _gate2(
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
    wrong_labels = [_event_label(svc, key, events[key]) for key in wrong]
    days = [w.day for w in missing]
    text = f"Delete {plural(len(wrong), 'event')} that disagree with the payment ({'; '.join(wrong_labels)})"
    if days:
        text += f" and create {plural(len(days), 'event')} as paid: {room.name}, {_days(days)} {hours}"
    text += ". The new events are created first, so the room is never shown free."
    if meta is not None:
        text = (
            f"Adopt payment {pay.id} (made by the old system) into a booking, then d{text[1:-1]}; email the "
            f"confirmation to {meta.email}."
        )

    def apply() -> FixResult:
        booking_id = _booking_id(ctx, booking, pay, meta, state=LegState.CONFIRMED, claim=True, events=right)
        with bk.lease(svc, booking_id):
            wrong_ids = {eid for _, eid in wrong}
            with svc.session() as s:
                for leg in bk.booking_legs(s, booking_id):
                    if leg.day in days and leg.event_id in wrong_ids:
                        # The leg's own event was moved: a new id, since Google would answer "exists" for the old one.
                        leg.event_attempt += 1
            created, problem = _create_events(svc, booking_id, days, ctx.actor, ctx.now)
            if problem:
                return FixResult(
                    f.id or 0,
                    "",
                    False,
                    f"Created {len(created)} of {plural(len(days), 'event')} and deleted none; Google Calendar "
                    f"failed on {problem}. Try again.",
                    changed=bool(created) or meta is not None,
                )
            deleted, problems = _delete_events(
                svc, wrong, booking_id=booking_id, pi_id=pay.id, actor=ctx.actor, now=ctx.now
            )
            _record_existing(svc, booking_id, right, ctx.actor, ctx.now)  # incl. one an earlier try created
            # An adopted booking is new to the customer too: it gets the confirmation the old system never sent.
            emailed = _send_confirmation(svc, booking_id, ctx.actor, ctx.now) if meta is not None else ""
        parts = [f"Deleted {deleted} of {plural(len(wrong), 'wrong event')}"]
        if created:
            parts.append(f"created {plural(len(created), 'event')}: {_days(created)}")
        if emailed:
            parts.append(emailed)
        return FixResult(f.id or 0, "", not problems, "; ".join(parts + problems), changed=True)

    return _Plan(text, apply)


def _plan_refund(ctx: _Ctx) -> _Plan:
    """Refund what remains, the policy's quote or (amount_mismatch) what was charged above the price."""
    svc, f, amount_kind = ctx.svc, ctx.finding, ctx.opts.amount
    booking, legs = ctx.booking, ctx.legs
    fetched = _fetch_pay(svc, f.payment_intent)
    key = f"roomdesk-{booking.reference if booking else f.payment_intent}-{ctx.key}-refund"
    earlier = _unrecorded_refund(svc, fetched, key)
    if earlier is not None and fetched is not None:
        # Plan as the first click did, before its refund: this click records it and closes the booking.
        fetched = replace(fetched, refunded=max(fetched.refunded - int(earlier.get("amount") or 0), 0))
    pay = _paid(fetched, f.payment_intent)
    meta = _meta(svc, pay) if booking is None else None
    reason = ctx.opts.reason.strip() or {
        "paid_no_event": "Paid, but the booking could not be put on the calendar",
        "stale_payment": "Payment never processed; refunded instead of booking",
        "amount_mismatch": "Charged a different amount than the room's price",
    }.get(f.code, "Refunded by staff")
    who = _who(svc, booking, [leg.day for leg in legs]) if booking else _legacy_who(pay, meta)
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
        cents, leg_ids, bands = _policy_refund(svc, booking.id, ctx.now)
        if not leg_ids and booking.status in (BookingStatus.CANCELLED, BookingStatus.REFUNDED):
            raise Refusal(f"Nothing to do: booking {booking.reference} has no confirmed day left to refund")
        if not leg_ids:
            raise Refusal(f"Booking {booking.reference} has no confirmed days to apply the policy to: refund in full")
        cents = min(cents, pay.kept)
        if cents <= 0:
            raise Refusal(f"Nothing to refund: the policy gives nothing back now ({bands})")
        # A refund by the policy is a cancellation: the days end CANCELLED (REFUNDED means all the money went back).
        to_state = LegState.CANCELLED
        text = (
            f"Refund {pay.money(cents)} for {who} under its cancellation policy ({bands}); its days are cancelled, "
            "their slots released and events deleted, and the customer is emailed."
        )
    else:
        cents = pay.kept
        leg_ids = [leg.id for leg in legs if leg.id is not None] if booking else []
        to_state = LegState.REFUNDED
        of = f" (all that is left of {pay.money(pay.received)})" if pay.refunded else ""
        text = (
            f"Refund {pay.money(cents)}{of} for {who}; its days are marked refunded, their slots released and "
            "events deleted, and the customer is emailed."
        )
    if meta is not None:
        text = f"Adopt payment {pay.id} (made by the old system) into a booking, then r" + text[1:]

    def apply() -> FixResult:
        # Adopted as failed: the old system never booked it on our side; the refund closes it.
        booking_id = _booking_id(ctx, booking, pay, meta, state=LegState.FAILED, claim=False, events={})
        ids = leg_ids
        if meta is not None:
            with svc.session() as s:
                ids = [leg.id for leg in bk.booking_legs(s, booking_id) if leg.id is not None]
        with bk.lease(svc, booking_id):
            return _refund_and_close(
                ctx,
                booking_id,
                amount=cents,
                leg_ids=ids,
                to_state=to_state,
                key=key,
                reason=reason,
                email="cancellation" if to_state == LegState.CANCELLED else "refund",
                extra_events=_named_events(svc, f),
                replay=earlier is not None,
            )

    return _Plan(text, apply)


def _double_booking_target(ctx: _Ctx) -> tuple[Booking | None, list[BookingLeg]]:
    """The booking to cancel in an overlapping pair: the finding's payment's, or of two bookings the later one."""
    pis = [p for p in ctx.finding.details.get("payment_intents", []) if isinstance(p, str)]
    if not pis and ctx.finding.payment_intent:
        pis = [ctx.finding.payment_intent]
    found = [(b, legs) for b, legs in (_booking_for(ctx.svc, p, None) for p in pis) if b is not None]
    if not found:
        return ctx.booking, ctx.legs
    return max(found, key=lambda pair: (pair[0].created_at, pair[0].id or 0) if pair[0] else (ctx.now, 0))


def _plan_give_back(ctx: _Ctx, booking: Booking | None, legs: list[BookingLeg], reason: str) -> _Plan:
    """Cancelling what never became a confirmed booking (the saga gave up, or the old system half-made it) while
    the money was kept: everything goes back and whatever events were made are deleted (seed incident #4's
    "cleanup failed" fix)."""
    svc, f = ctx.svc, ctx.finding
    pi_id = booking.payment_intent_id if booking else f.payment_intent
    pay = _paid(_fetch_pay(svc, pi_id), pi_id)
    meta = _meta(svc, pay) if booking is None else None
    named = _named_events(svc, f)
    calendar_id = (
        svc.catalogue.room(booking.room_slug).calendar_id if booking else meta.room.calendar_id if meta else ""
    )
    events = _own_events(svc, calendar_id, booking.reference if booking else None, pay.id, named)
    who = _who(svc, booking, [leg.day for leg in legs]) if booking else _legacy_who(pay, meta)
    text = (
        f"{who} never became a confirmed booking but the {pay.money(pay.kept)} was kept: refund all of it, delete "
        f"its {plural(len(events), 'event')} on the calendar and email the customer."
    )

    def apply() -> FixResult:
        booking_id = _booking_id(ctx, booking, pay, meta, state=LegState.FAILED, claim=False, events={})
        with svc.session() as s:
            ids = [leg.id for leg in bk.booking_legs(s, booking_id) if leg.id is not None]
            reference = bk.load_booking(s, booking_id).reference
        with bk.lease(svc, booking_id):
            return _refund_and_close(
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

    return _Plan(text, apply)


def _still_overlapping(svc: Services, keys: Sequence[EventKey]) -> bool:
    spans = []
    for key in keys:
        ev = svc.calendar.get_event(*key)
        span = _event_span(ev, svc) if ev is not None and _live(ev) else None
        if span:
            spans.append(span)
    buffer = timedelta(minutes=svc.policy.buffer_minutes)
    return len(spans) == 2 and spans[0][0] < spans[1][1] + buffer and spans[1][0] < spans[0][1] + buffer


def _plan_cancel(ctx: _Ctx, *, full: bool) -> _Plan:
    """Cancel the booking's affected days: by its policy (`cancel`) or refunding them in full (`cancel_full_refund`,
    for a closed venue day: the venue's fault)."""
    svc, f = ctx.svc, ctx.finding
    booking, legs = _double_booking_target(ctx) if f.code == "double_booking" else (ctx.booking, ctx.legs)
    if f.code == "double_booking" and not _still_overlapping(svc, _named_events(svc, f)):
        raise Refusal("Nothing to do: the two events no longer overlap (one was moved or deleted)")
    reason = ctx.opts.reason.strip() or {
        "double_booking": "Double-booked: the room was given to someone else",
        "holiday_booking": "The venue is closed that day",
        "partial_multiday": "Some days of the booking could not be put on the calendar",
    }.get(f.code, "Cancelled by staff")
    if booking is None or booking.status == BookingStatus.FAILED:
        return _plan_give_back(ctx, booking, legs, reason)

    assert booking.id is not None
    booking_id, reference = booking.id, booking.reference
    if f.code == "double_booking":
        chosen = [leg for leg in legs if leg.state == LegState.CONFIRMED and leg.day.isoformat() in f.dates]
    elif f.code == "holiday_booking":
        closures = svc.catalogue.closure_map
        chosen = [
            leg for leg in legs if leg.state == LegState.CONFIRMED and closure_reason(leg.day, svc.policy, closures)
        ]
    else:
        chosen = [leg for leg in legs if leg.state == LegState.CONFIRMED]
    if not chosen:
        raise Refusal(f"Nothing to do: booking {reference} has no confirmed day left to cancel here")
    fetched = _fetch_pay(svc, booking.payment_intent_id)
    full_key = f"roomdesk-{reference}-{ctx.key}-cancel-full"
    # The key bk.cancel_booking refunds a policy cancellation under (it replays a refund whose answer was lost).
    policy_key = bk.cancel_refund_key(reference, [leg.id for leg in chosen if leg.id is not None])
    earlier = _unrecorded_refund(svc, fetched, full_key if full else policy_key)
    if earlier is not None and fetched is not None:
        # An earlier click refunded and lost the answer: plan as it did; this click records it and closes.
        fetched = replace(fetched, refunded=max(fetched.refunded - int(earlier.get("amount") or 0), 0))
    pay = _paid(fetched, booking.payment_intent_id)
    ids = [leg.id for leg in chosen if leg.id is not None]
    days = [leg.day for leg in chosen]
    who = _who(svc, booking, days)
    if full:
        cents = sum(max(leg.price_cents - leg.refunded_cents, 0) for leg in chosen)
        if pay.kept < cents:
            raise Refusal(
                f"Stripe shows only {pay.money(pay.kept)} left to refund, not {pay.money(cents)} — sync first"
            )
        text = (
            f"Cancel {who} and refund it in full, {pay.money(cents)} (the venue's fault, whatever the policy says); "
            f"delete its {plural(len(chosen), 'event')} and email the customer."
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
                result = _refund_and_close(
                    ctx,
                    booking_id,
                    amount=cents,
                    leg_ids=ids,
                    to_state=LegState.CANCELLED,
                    key=full_key,
                    reason=reason,
                    replay=earlier is not None,
                    email="cancellation",
                )
            result.message = f"Cancelled {_days(days)}; " + result.message[:1].lower() + result.message[1:]
            return result
        done = bk.cancel_booking(svc, booking_id, actor=ctx.actor, leg_ids=ids, reason=reason, now=ctx.now)
        message = f"Cancelled {reference} on {_days(done.cancelled_days)}; refunded {pay.money(done.refund_cents)}; "
        message += "; ".join(done.problems) if done.problems else "the customer was emailed"
        return FixResult(f.id or 0, "", True, message, changed=True)

    return _Plan(text, apply)


def _plan_delete_events(ctx: _Ctx) -> _Plan:
    """Delete the finding's events: an orphan only once Stripe shows nothing is kept for it; a hand-made one with a
    note saying why."""
    svc, f = ctx.svc, ctx.finding
    named = _named_events(svc, f)
    live: list[tuple[EventKey, Json]] = []
    for key in named:
        ev = svc.calendar.get_event(*key)
        if ev is not None and _live(ev):
            live.append((key, ev))
    if not live:
        raise Refusal("Nothing to do: the events are already deleted")
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
    labels = [_event_label(svc, key, ev) for key, ev in live]
    text = f"Delete {plural(len(live), 'event')}: {'; '.join(labels)}."
    if f.code == "manual_event":
        text += " Your note is kept with the deletion."

    def apply() -> FixResult:
        if f.code == "manual_event" and not ctx.opts.note.strip():
            raise Refusal("Write a note saying why this event can be deleted")
        deleted, problems = _delete_events(
            svc,
            [k for k, _ in live],
            booking_id=ctx.booking.id if ctx.booking else None,
            pi_id=f.payment_intent,
            actor=ctx.actor,
            now=ctx.now,
            note=ctx.opts.note.strip(),
        )
        message = f"Deleted {plural(deleted, 'event')}: {'; '.join(labels)}"
        return FixResult(f.id or 0, "", not problems, "; ".join([message, *problems]), changed=deleted > 0)

    return _Plan(text, apply)


def _orphan_still_paid(ctx: _Ctx, ev: Json) -> str | None:
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
    pay = _fetch_pay(svc, pi_id)
    if pay is None or pay.status != "succeeded" or pay.kept <= 0:
        return None  # unknown to Stripe, never paid, or refunded in full
    day = _event_day(ev, svc)
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


def _plan_send_refund_notice(ctx: _Ctx) -> _Plan:
    """Tell the customer their payment was refunded (the seed's 'email customer: slot was taken, card refunded')."""
    svc, f = ctx.svc, ctx.finding
    pay = _fetch_pay(svc, f.payment_intent)
    if pay is None or pay.status != "succeeded" or pay.received <= 0:
        raise Refusal(f"Stripe shows no paid payment {f.payment_intent}: there is no refund to tell about")
    if pay.kept > 0:
        raise Refusal(
            f"Stripe still holds {pay.money(pay.kept)}: not refunded in full, so there is nothing to tell yet"
        )
    booking = ctx.booking
    meta = _meta(svc, pay) if booking is None else None
    pending: EmailOutbox | None = None
    if booking is not None:
        with svc.session() as s:
            rows = list(
                s.exec(
                    select(EmailOutbox)
                    .where(EmailOutbox.booking_id == booking.id)
                    .where(col(EmailOutbox.kind).in_(sorted(reconcile.REFUND_TOLD_KINDS)))
                    .order_by(col(EmailOutbox.id))
                )
            )
        sent = [r for r in rows if r.status == "sent"]
        if sent:
            raise Refusal(f"Nothing to do: the customer was already told ({sent[0].kind.replace('_', ' ')} email)")
        pending = rows[-1] if rows else None
    to = booking.customer_email if booking else meta.email if meta else ""
    what = f"the {pending.kind.replace('_', ' ')} email that could not be sent" if pending else "a refund email"
    text = (
        f"Send {to} {what}: {pay.money(pay.refunded)} refunded for "
        + (_who(svc, booking, [leg.day for leg in ctx.legs]) if booking else f"{meta.label() if meta else pay.id}")
        + "."
    )
    if meta is not None:
        text = f"Adopt payment {pay.id} (made by the old system) into a refunded booking, then s" + text[1:]

    def apply() -> FixResult:
        booking_id = _booking_id(ctx, booking, pay, meta, state=LegState.REFUNDED, claim=False, events={})
        if pending is not None:
            assert pending.id is not None
            ok = outbox.deliver(svc, pending.id, now=ctx.now, actor=ctx.actor)
        else:
            with svc.session() as s:
                b = bk.load_booking(s, booking_id)
                legs = bk.booking_legs(s, booking_id)
                mail = emails.refund(svc.catalogue, svc.settings, b, legs, pay.refunded, booking_stands=False)
                reference = b.reference
            ok = _send(
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

    return _Plan(text, apply)


def _plan_confirm_payment(ctx: _Ctx) -> _Plan:
    """Do now what the missed webhook would have done (booking.confirm_payment: Gate 2 → events → email)."""
    svc, f = ctx.svc, ctx.finding
    booking = ctx.booking
    if booking is None or not booking.payment_intent_id:
        raise Refusal("This payment has no booking in Room Desk to confirm")
    pay = _paid(_fetch_pay(svc, booking.payment_intent_id), booking.payment_intent_id)
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
            message = f"Confirmed {done.reference}: created {plural(len(days), 'event')} ({_days(days)}); {emailed}"
            return FixResult(f.id or 0, "", True, message, changed=True)
        if result.outcome == "auto_refunded":
            message = f"The slot was taken meanwhile, so nothing was booked: {text_out.lower()}; the customer was told"
            return FixResult(f.id or 0, "", True, message, changed=True)
        if result.outcome == "already_done":
            return FixResult(f.id or 0, "", False, "Nothing to do: the payment was already processed")
        return FixResult(f.id or 0, "", False, text_out, changed=result.outcome in ("cleanup_failed", "refund_failed"))

    return _Plan(text, apply)


def _plan_resend_confirmation(ctx: _Ctx) -> _Plan:
    """Deliver the confirmation the customer never received (queued or failed), or queue one."""
    svc, f, booking = ctx.svc, ctx.finding, ctx.booking
    if booking is None or booking.id is None:
        raise Refusal("This payment has no booking in Room Desk to confirm")
    if booking.status not in (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED):
        raise Refusal(f"Booking {booking.reference} is {booking.status.lower()}: no confirmation to send")
    if booking.confirmation_sent_at is not None:
        raise Refusal(f"Nothing to do: the confirmation was sent on {day_label(booking.confirmation_sent_at.date())}")
    days = [leg.day for leg in ctx.legs if leg.state in ACTIVE_LEG_STATES]
    text = f"Email the confirmation of {_who(svc, booking, days)} to {booking.customer_email}."
    booking_id = booking.id

    def apply() -> FixResult:
        emailed = _send_confirmation(svc, booking_id, ctx.actor, ctx.now)
        ok = emailed.startswith("confirmation emailed")
        return FixResult(f.id or 0, "", ok, emailed[:1].upper() + emailed[1:], changed=True)

    return _Plan(text, apply)


def _plan_fill_extras(ctx: _Ctx) -> _Plan:
    """Save the extras staff collected (seed incident #9) and put them in each day's event description."""
    svc, f, booking = ctx.svc, ctx.finding, ctx.booking
    if booking is None or booking.id is None:
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
        with bk.lease(svc, booking_id):
            with svc.session() as s:
                b = bk.load_booking(s, booking_id)
                b.extras, b.updated_at = clean, ctx.now
                audit.record(
                    s, "booking.extras.filled", actor=ctx.actor, at=ctx.now, booking=b, extras=clean, finding=f.key
                )
                fresh = b
            patched, problems = [], []
            for leg in legs:
                assert leg.event_id is not None
                if not _live(svc.calendar.get_event(leg.calendar_id, leg.event_id)):
                    problems.append(f"{day_label(leg.day)} has no event to update")
                    continue
                body = bk.event_body(svc, fresh, leg, leg.event_id)
                try:
                    svc.calendar.patch_event(leg.calendar_id, leg.event_id, {"description": body["description"]})
                except (GatewayError, NotFound) as exc:
                    problems.append(f"{day_label(leg.day)}'s event could not be updated ({exc.message})")
                    continue
                patched.append(leg.day)
            if patched:
                with svc.session() as s:
                    audit.record(
                        s,
                        "booking.event.updated",
                        actor=ctx.actor,
                        at=ctx.now,
                        booking=bk.load_booking(s, booking_id),
                        days=patched,
                        fields=["description"],
                    )
        message = f"Saved the extras and updated {plural(len(patched), 'event')}" + (
            f" ({_days(patched)})" if patched else ""
        )
        return FixResult(f.id or 0, "", not problems, "; ".join([message, *problems]), changed=True)

    return _Plan(text, apply)


def _plan_acknowledge(ctx: _Ctx) -> _Plan:
    """A person says the finding may stay as it is, with a note (reconcile.acknowledge)."""
    f = ctx.finding
    if f.status != "open":
        raise Refusal(f"Nothing to do: {f.acknowledged_by or 'someone'} already acknowledged this finding")
    text = "Mark this finding as looked at, with your note: it leaves the open list and stays in the history."

    def apply() -> FixResult:
        row = reconcile.acknowledge(ctx.svc, f.id or 0, actor=ctx.actor, note=ctx.opts.note, now=ctx.now)
        return FixResult(f.id or 0, "", True, f"Acknowledged: {row.note}", changed=True)

    return _Plan(text, apply)


_PLANNERS: dict[str, Callable[[_Ctx], _Plan]] = {
    "create_events": _plan_create_events,
    "recreate_events": _plan_recreate_events,
    "refund": _plan_refund,
    "cancel": lambda ctx: _plan_cancel(ctx, full=False),
    "cancel_full_refund": lambda ctx: _plan_cancel(ctx, full=True),
    "delete_events": _plan_delete_events,
    "send_refund_notice": _plan_send_refund_notice,
    "confirm_payment": _plan_confirm_payment,
    "resend_confirmation": _plan_resend_confirmation,
    "fill_extras": _plan_fill_extras,
    "acknowledge": _plan_acknowledge,
}
ACTIONS = tuple(_PLANNERS)


# --------------------------------------------------------------------------------------------- entry points


def _context(svc: Services, finding_id: int, action: str, actor: str, now: datetime, opts: _Opts) -> _Ctx:
    if action not in _PLANNERS:
        raise Refusal(f"Unknown action {action!r}")
    if not actor.strip():
        raise Refusal("Sign in first: every fix is recorded under the name of the person who made it")
    with svc.session() as s:
        finding = s.get(Finding, finding_id)
    if finding is None:
        raise Refusal(f"No finding #{finding_id}")
    if finding.status == "resolved":
        when = day_label(finding.resolved_at.date()) if finding.resolved_at else "an earlier run"
        raise Refusal(f"Nothing to do: this finding was resolved ({when})")
    # An acknowledged finding may still be fixed later (the Mismatches page offers its fixes).
    if action not in (finding.actions or findings.CODES.get(finding.code, ("", "", ()))[2]):
        label = findings.ACTION_LABELS.get(action, action)
        raise Refusal(f"“{label}” is not a fix for this finding")
    booking, legs = _booking_for(svc, finding.payment_intent, finding.booking_id)
    return _Ctx(svc, finding, actor.strip(), now, opts, booking, legs)


def describe_action(svc: Services, finding_id: int, action: str) -> str:
    """The confirmation-dialog text: exactly what the action will do now, with amounts and days (or why it won't)."""
    now = svc.now()
    try:
        ctx = _context(svc, finding_id, action, "(preview)", now, _Opts())
        text = _PLANNERS[action](ctx).text
        if action == "refund":
            others: tuple[Amount, ...] = (
                ("policy", "difference") if ctx.finding.code == "amount_mismatch" else ("policy",)
            )
            for kind in others:
                try:
                    alt_ctx = _Ctx(svc, ctx.finding, ctx.actor, now, _Opts(amount=kind), ctx.booking, ctx.legs)
                    alt = _plan_refund(alt_ctx)
                except DomainError:
                    continue
                text += f" — Or, {'by the cancellation policy' if kind == 'policy' else 'just the overcharge'}: " + (
                    alt.text[:1].lower() + alt.text[1:]
                )
        return text
    except DomainError as exc:
        return exc.message


def run_action(
    svc: Services,
    finding_id: int,
    action: str,
    *,
    actor: str,
    note: str = "",
    reason: str = "",
    amount: Amount = "full",
    extras: dict[str, object] | None = None,
    now: datetime | None = None,
) -> FixResult:
    """Re-check one finding against Stripe and the calendars, then fix it; refusals and failures come back as a
    result with ok=False (never raised), audited under `actor` when anything changed."""
    now = now or svc.now()
    opts = _Opts(note=note, reason=reason, amount=amount, extras=extras)
    ctx: _Ctx | None = None
    try:
        ctx = _context(svc, finding_id, action, actor, now, opts)
        result = _PLANNERS[action](ctx).apply()
    except Refusal as exc:
        return FixResult(finding_id, action, False, exc.message, exc.offer)
    except DomainError as exc:
        # Raised before the fix changed anything (bad input, a gateway down during the checks, a busy booking).
        log.warning("%s on finding %s failed: %s", action, finding_id, exc.message)
        return FixResult(finding_id, action, False, exc.message)
    result.finding_id, result.action = finding_id, action
    if action != "acknowledge" and result.changed:  # acknowledge audits itself
        booking, _ = _booking_for(svc, ctx.finding.payment_intent, ctx.finding.booking_id)
        with svc.session() as s:
            audit.record(
                s,
                f"remediation.{action}",
                actor=ctx.actor,
                at=now,
                booking=booking,
                payment_intent=ctx.finding.payment_intent,
                finding=ctx.finding.key,
                finding_id=finding_id,
                ok=result.ok,
                result=result.message,
                note=note.strip() or None,
                reason=reason.strip() or None,
            )
    return result


def run_bulk(
    svc: Services,
    finding_ids: list[int],
    action: str,
    *,
    actor: str,
    progress: Progress | None = None,
    **kwargs: Any,
) -> list[FixResult]:
    """Run one action over many findings, one at a time: each gets its own result, and a failure never stops the
    rest."""
    results: list[FixResult] = []
    total = len(finding_ids)
    report = progress or (lambda _f, _m: None)
    report(0.0, f"0 of {total} done")
    for i, finding_id in enumerate(finding_ids, start=1):
        try:
            result = run_action(svc, finding_id, action, actor=actor, **kwargs)
        except Exception:  # one broken item must not stop the batch; the log has the details
            log.exception("%s on finding %s failed unexpectedly", action, finding_id)
            result = FixResult(finding_id, action, False, "Failed unexpectedly; the details are in the server log")
        results.append(result)
        report(i / total, f"{i} of {total}: {result.message}")
    return results
