"""The booking service: one function per user action. Pages, the API, the CLI and the webhook all call these.

The saga (seed 000): Gate 1 (rules + calendar busy times + active holds) → hold → PaymentIntent → on payment:
Gate 2 (the calendar itself, again) → one event per day → confirmation. If any day fails: delete every event
already created for the booking and refund the full amount. Each external call is followed by a commit of what it
did, so a crash never loses what happened outside; every write outside is idempotent (keys and event ids derive from
the booking), so a retry never duplicates.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    LEG_TRANSITIONS,
    Booking,
    BookingLeg,
    BookingStatus,
    ExternalRef,
    LegState,
    RefundRecord,
    SlotClaim,
)
from services.core import audit
from services.core.catalogue import Room
from services.core.context import Services
from services.core.errors import (
    EventExists,
    GatewayError,
    InvalidState,
    NotAvailable,
    NotFound,
    SlotTaken,
    ValidationError,
)
from services.notify import emails, outbox
from services.rules.availability import (
    Busy,
    LegWindow,
    RoomLimits,
    SlotRequest,
    check_conflicts,
    check_request,
    leg_windows,
)
from services.rules.pricing import Quote, price
from services.rules.refunds import LegRefund, bands_from_snapshot, policy_snapshot, refund_for_leg

log = logging.getLogger("roomdesk.booking")

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LEASE = timedelta(minutes=2)
REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud on the phone


# --------------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class BookingRequest:
    room: str
    dates: tuple[date, ...]
    start: time
    end: time
    customer_name: str
    customer_email: str
    customer_phone: str = ""
    party_size: int | None = None
    extras: dict[str, Any] | None = None
    notes: str = ""
    channel: str = "web"  # web | phone
    agreement_version: str | None = None
    # The version of the cancellation policy and terms the customer accepted (web); None = not yet (phone bookings
    # accept on the pay page). Must be the current version (settings.terms_version).
    terms_version: str | None = None

    def slot(self) -> SlotRequest:
        return SlotRequest(tuple(self.dates), self.start, self.end, self.party_size)


@dataclass(frozen=True)
class QuoteResult:
    quote: Quote
    reasons: list[str]

    @property
    def available(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class StartResult:
    booking_id: int
    reference: str
    payment_intent: str
    client_secret: str
    amount_cents: int
    hold_expires_at: datetime
    pay_token: str = ""

    @property
    def pay_path(self) -> str:
        """The customer's pay page (relative to settings.public_base_url)."""
        return f"/pay/{self.reference}?k={self.pay_token}"


@dataclass
class ConfirmResult:
    booking_id: int
    reference: str
    outcome: str  # confirmed | already_done | auto_refunded | cleanup_failed | not_paid
    messages: list[str] = field(default_factory=list)


@dataclass
class CancelResult:
    booking_id: int
    refund_cents: int
    cancelled_days: list[date]
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- helpers


def room_limits(room: Room) -> RoomLimits:
    return RoomLimits(room.name, room.capacity, room.min_minutes, room.bookable)


def event_id_for(reference: str, day: date, attempt: int = 0) -> str:
    """Deterministic Google Calendar event id (base32hex: lower-case hex is a subset), so a retry never
    duplicates an event; `attempt` moves on when a deleted event must be re-created (Google refuses old ids)."""
    digest = hashlib.sha256(f"roomdesk|{reference}|{day.isoformat()}|{attempt}".encode()).hexdigest()
    return "rd" + digest[:30]


def _now(svc: Services, now: datetime | None) -> datetime:
    now = now or svc.now()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _set_state(leg: BookingLeg, new: LegState, now: datetime) -> None:
    current = LegState(leg.state)
    if new == current:
        return
    if new not in LEG_TRANSITIONS[current]:
        raise InvalidState(f"{leg.day}: cannot go from {current.value} to {new.value}")
    leg.state = new
    leg.updated_at = now


def derive_status(legs: Sequence[BookingLeg]) -> BookingStatus:
    """A booking's status follows its day-legs (runbook 003)."""
    states = {LegState(leg.state) for leg in legs}
    if not states:
        return BookingStatus.FAILED
    if LegState.AWAITING_PAYMENT in states or LegState.DRAFT in states:
        return BookingStatus.AWAITING_PAYMENT
    active = states & ACTIVE_LEG_STATES
    if not active:
        if states == {LegState.FAILED}:
            return BookingStatus.FAILED
        if states <= {LegState.REFUNDED, LegState.FAILED}:
            return BookingStatus.REFUNDED
        return BookingStatus.CANCELLED
    if active == {LegState.COMPLETED}:
        return BookingStatus.COMPLETED if states == {LegState.COMPLETED} else BookingStatus.PARTLY_CANCELLED
    return BookingStatus.CONFIRMED if states <= ACTIVE_LEG_STATES else BookingStatus.PARTLY_CANCELLED


def _legs(session: Session, booking_id: int) -> list[BookingLeg]:
    return list(
        session.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(col(BookingLeg.day)))
    )


def _load(session: Session, booking_id: int) -> Booking:
    booking = session.get(Booking, booking_id)
    if booking is None:
        raise NotFound(f"No booking #{booking_id}")
    return booking


def find_booking_id(svc: Services, key: str) -> int:
    """A booking by reference (RD…), PaymentIntent id (pi_…) or numeric id."""
    key = key.strip()
    with svc.session() as s:
        q = select(Booking.id)
        if key.startswith("pi_"):
            q = q.where(Booking.payment_intent_id == key)
        elif key.isdigit():
            q = q.where(Booking.id == int(key))
        else:
            q = q.where(Booking.reference == key.upper())
        found = s.exec(q).first()
    if found is None:
        raise NotFound(f"No booking matches {key!r}")
    return found


def _new_reference(session: Session) -> str:
    for _ in range(20):
        ref = "RD" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))
        if session.exec(select(Booking.id).where(Booking.reference == ref)).first() is None:
            return ref
    raise RuntimeError("could not allocate a booking reference")


def _is_overlap_error(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return "slot_claim_overlap" in text or "ex_slot_claim_overlap" in text or code == "23P01"


def _release_claims(session: Session, booking_id: int, leg_ids: Sequence[int] | None = None) -> None:
    q = sa.update(SlotClaim).where(col(SlotClaim.booking_id) == booking_id).values(active=False)
    if leg_ids is not None:
        q = q.where(col(SlotClaim.leg_id).in_(list(leg_ids)))
    session.execute(q)


def _sweep_expired_claims(session: Session, room_slug: str, now: datetime, actor: str) -> None:
    """Expired holds stop blocking at once (audited); the expiry job tidies their bookings and PaymentIntents."""
    lapsed = list(
        session.exec(
            select(SlotClaim).where(
                SlotClaim.room_slug == room_slug,
                col(SlotClaim.active).is_(True),
                SlotClaim.kind == "hold",
                col(SlotClaim.expires_at) < now,
            )
        )
    )
    for booking_id in sorted({c.booking_id for c in lapsed}):
        for claim in lapsed:
            if claim.booking_id == booking_id:
                claim.active = False
        audit.record(
            session,
            "booking.hold.lapsed",
            actor=actor,
            at=now,
            booking=session.get(Booking, booking_id),
            message="Unpaid hold lapsed; slot released for a new booking",
        )
    session.flush()


def _window_busy_from_claims(
    session: Session, room_slug: str, start: datetime, end: datetime, now: datetime, exclude_booking: int | None
) -> list[Busy]:
    q = select(SlotClaim).where(
        SlotClaim.room_slug == room_slug,
        col(SlotClaim.active).is_(True),
        SlotClaim.starts_at < end,
        SlotClaim.ends_at > start,
    )
    out = []
    for c in session.exec(q):
        if c.booking_id == exclude_booking:
            continue
        if c.kind == "hold" and c.expires_at is not None and c.expires_at < now:
            continue
        out.append(
            Busy(c.starts_at, c.ends_at, "a held booking" if c.kind == "hold" else "a booking", f"claim:{c.booking_id}")
        )
    return out


def calendar_busy(
    svc: Services, room: Room, start: datetime, end: datetime, *, ignore_booking: str | None = None
) -> list[Busy]:
    """Busy intervals on the room's calendar, ignoring the events of `ignore_booking` (its own, during Gate 2)."""
    busy = svc.calendar.freebusy([room.calendar_id], start, end).get(room.calendar_id, [])
    own: set[str] = set()
    if ignore_booking:
        listing = svc.calendar.list_events(room.calendar_id, private_property=f"booking_id={ignore_booking}")
        own = {e["id"] for e in listing.get("items", [])}
    return [
        Busy(
            datetime.fromisoformat(b["start"]),
            datetime.fromisoformat(b["end"]),
            "another booking",
            b.get("event_id", ""),
        )
        for b in busy
        if b.get("event_id") not in own
    ]


def busy_times(
    svc: Services, room_slug: str, start: datetime, end: datetime, now: datetime | None = None
) -> list[Busy]:
    """Everything that blocks a room between two instants: calendar events and active holds/bookings."""
    now = _now(svc, now)
    room = svc.catalogue.room(room_slug)
    out = calendar_busy(svc, room, start, end)
    with svc.session() as s:
        claims = _window_busy_from_claims(s, room_slug, start, end, now, None)
    seen = {(b.starts_at, b.ends_at) for b in out}
    return out + [c for c in claims if (c.starts_at, c.ends_at) not in seen]


def _span(legs: Sequence[LegWindow], buffer_minutes: int) -> tuple[datetime, datetime]:
    pad = timedelta(minutes=buffer_minutes)
    return min(leg.starts_at for leg in legs) - pad, max(leg.ends_at for leg in legs) + pad


# --------------------------------------------------------------------------------------------------- quote


def quote(
    svc: Services, req: BookingRequest, *, now: datetime | None = None, check_calendar: bool = True
) -> QuoteResult:
    """The price of a request and every reason it cannot be booked (rules, then calendars and holds)."""
    now = _now(svc, now)
    room = svc.catalogue.room(req.room)
    policy = svc.policy
    slot = req.slot()
    reasons = check_request(slot, room_limits(room), policy, now, svc.catalogue.closure_map)
    minutes = max((req.end.hour * 60 + req.end.minute) - (req.start.hour * 60 + req.start.minute), 0)
    q = price(
        room_slug=room.slug,
        hourly_cents=room.hourly_price_cents,
        discount_eligible=room.discount_eligible,
        dates=list(req.dates),
        minutes_per_day=minutes,
        policy=policy,
        currency=svc.settings.currency,
    )
    if check_calendar and not reasons and req.dates:
        legs = leg_windows(slot, policy)
        start, end = _span(legs, policy.buffer_minutes)
        reasons = check_conflicts(legs, busy_times(svc, room.slug, start, end, now), policy)
    return QuoteResult(q, reasons)


def _validate_customer(req: BookingRequest, room: Room) -> tuple[dict[str, Any], list[str]]:
    problems = []
    if not req.customer_name.strip():
        problems.append("Customer name is required")
    if not EMAIL.match(req.customer_email.strip()):
        problems.append("A valid customer email is required (name@example.com)")
    if req.customer_phone and not re.fullmatch(r"[0-9 +().-]{7,20}", req.customer_phone.strip()):
        problems.append("Phone number looks wrong (digits, spaces, + - ( ) only)")
    extras, extra_problems = room.validate_extras(req.extras)
    # A phone booking may be saved before the customer knows their extras (seed incident #9 is then flagged for
    # follow-up); a web booking must carry them.
    if req.channel == "web" or req.extras:
        problems.extend(extra_problems)
    if room.agreement_required and req.channel == "web" and not req.agreement_version:
        problems.append(f"The {room.name} requires accepting the room agreement")
    return extras, problems


def problems_for(svc: Services, req: BookingRequest, *, now: datetime | None = None) -> list[str]:
    """Every problem start_booking would raise for this request (customer details, extras, terms, Gate 1), without
    creating anything: lets a form show them all at once."""
    room = svc.catalogue.room(req.room)
    _, problems = _validate_customer(req, room)
    if req.terms_version is not None and req.terms_version != svc.settings.terms_version:
        problems.append(_terms_changed(svc))
    return problems + quote(svc, req, now=now).reasons


def _terms_changed(svc: Services) -> str:
    return f"The terms have changed (now version {svc.settings.terms_version}); please read and accept them again"


# --------------------------------------------------------------------------------------------------- start


def start_booking(svc: Services, req: BookingRequest, *, actor: str, now: datetime | None = None) -> StartResult:
    """Gate 1 → hold → PaymentIntent. Raises ValidationError, NotAvailable, SlotTaken or GatewayError."""
    now = _now(svc, now)
    room = svc.catalogue.room(req.room)
    extras, problems = _validate_customer(req, room)
    if req.terms_version is not None and req.terms_version != svc.settings.terms_version:
        problems.append(_terms_changed(svc))
    if problems:
        raise ValidationError(problems)
    result = quote(svc, req, now=now)  # Gate 1: rules + calendar busy times + active holds
    if result.reasons:
        raise NotAvailable(result.reasons)
    policy = svc.policy
    hold_minutes = svc.settings.phone_hold_minutes if req.channel == "phone" else svc.settings.hold_minutes
    expires = now + timedelta(minutes=hold_minutes)
    buffer = timedelta(minutes=policy.buffer_minutes)

    try:
        with svc.session() as s:
            _sweep_expired_claims(s, room.slug, now, actor)
            booking = Booking(
                reference=_new_reference(s),
                room_slug=room.slug,
                status=BookingStatus.AWAITING_PAYMENT,
                channel=req.channel,
                start_time=f"{req.start:%H:%M}",
                end_time=f"{req.end:%H:%M}",
                customer_name=req.customer_name.strip(),
                customer_email=req.customer_email.strip().lower(),
                customer_phone=req.customer_phone.strip(),
                party_size=req.party_size,
                notes=req.notes.strip(),
                extras=extras,
                amount_cents=result.quote.total_cents,
                discount_cents=result.quote.discount_cents,
                currency=svc.settings.currency,
                pricing_snapshot=result.quote.snapshot(),
                policy_snapshot=policy_snapshot(policy),
                hold_expires_at=expires,
                agreement_version=req.agreement_version,
                agreement_accepted_at=now if req.agreement_version else None,
                terms_version=req.terms_version,
                terms_accepted_at=now if req.terms_version else None,
                pay_token=secrets.token_urlsafe(18),
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
            s.add(booking)
            s.flush()
            assert booking.id is not None
            prices = {leg.day: leg.total_cents for leg in result.quote.legs}
            for window in leg_windows(req.slot(), policy):
                leg = BookingLeg(
                    booking_id=booking.id,
                    day=window.day,
                    starts_at=window.starts_at,
                    ends_at=window.ends_at,
                    state=LegState.AWAITING_PAYMENT,
                    price_cents=prices[window.day],
                    calendar_id=room.calendar_id,
                    updated_at=now,
                )
                s.add(leg)
                s.flush()
                assert leg.id is not None
                s.add(
                    SlotClaim(
                        booking_id=booking.id,
                        leg_id=leg.id,
                        room_slug=room.slug,
                        starts_at=window.starts_at,
                        ends_at=window.ends_at,
                        block_until=window.ends_at + buffer,
                        kind="hold",
                        expires_at=expires,
                        created_at=now,
                    )
                )
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
    except IntegrityError as exc:
        if _is_overlap_error(exc):
            log.info("Gate 1 lost the race: slot taken room=%s dates=%s", room.slug, req.dates)
            raise SlotTaken() from None
        raise

    metadata = {
        "room": room.slug,
        "booking_dates": ",".join(d.isoformat() for d in sorted(req.dates)),
        "booking_time": f"{req.start:%H:%M}-{req.end:%H:%M}",
        "customer_name": req.customer_name.strip()[:200],
        "customer_email": req.customer_email.strip().lower(),
        "customer_phone": req.customer_phone.strip(),
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
            booking = _load(s, booking_id)
            for leg in _legs(s, booking_id):
                _set_state(leg, LegState.FAILED, now)
            _release_claims(s, booking_id)
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
        booking = _load(s, booking_id)
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
        booking_id, reference, pi["id"], pi.get("client_secret") or "", result.quote.total_cents, expires, pay_token
    )


# --------------------------------------------------------------------------------------------------- confirm


def _acquire_lease(svc: Services, booking_id: int, now: datetime) -> bool:
    """Compare-and-set a short lease so two processes never run one booking's saga at once. The lease runs on the
    wall clock, not the business `now` (which may be a demo's past or a test's fixed time)."""
    now = datetime.now(UTC)
    with svc.session() as s:
        res = s.execute(
            sa.update(Booking)
            .where(col(Booking.id) == booking_id)
            .where(sa.or_(col(Booking.lease_until).is_(None), col(Booking.lease_until) < now))
            .values(lease_until=now + LEASE)
        )
        return bool(res.rowcount)  # type: ignore[attr-defined]


def _release_lease(svc: Services, booking_id: int) -> None:
    with svc.session() as s:
        s.execute(sa.update(Booking).where(col(Booking.id) == booking_id).values(lease_until=None))


def _event_body(svc: Services, booking: Booking, leg: BookingLeg, event_id: str) -> dict[str, Any]:
    room = svc.catalogue.room(booking.room_slug)
    tz = svc.settings.venue_timezone
    lines = [
        f"Booking {booking.reference} — paid {booking.currency} {booking.amount_cents / 100:.2f}",
        f"Customer: {booking.customer_name} <{booking.customer_email}> {booking.customer_phone}".rstrip(),
        f"PaymentIntent: {booking.payment_intent_id}",
    ]
    if booking.party_size:
        lines.append(f"Group size: {booking.party_size}")
    for key, value in booking.extras.items():
        lines.append(f"{key.replace('_', ' ').capitalize()}: {value}")
    if booking.notes:
        lines.append(f"Notes: {booking.notes}")
    return {
        "id": event_id,
        "summary": f"{room.name} — {booking.customer_name} ({booking.reference})",
        "description": "\n".join(lines),
        "start": {"dateTime": leg.starts_at.astimezone(svc.settings.tz).isoformat(), "timeZone": tz},
        "end": {"dateTime": leg.ends_at.astimezone(svc.settings.tz).isoformat(), "timeZone": tz},
        "extendedProperties": {
            "private": {
                "booking_id": booking.reference,
                "payment_intent": booking.payment_intent_id or "",
                "booking_date": leg.day.isoformat(),
            }
        },
    }


def _insert_event(svc: Services, booking: Booking, leg: BookingLeg) -> str:
    """Insert the leg's event idempotently: a 409 on our own live event is success; on a deleted one, move on to
    the next attempt's id."""
    for _ in range(5):
        event_id = event_id_for(booking.reference, leg.day, leg.event_attempt)
        try:
            svc.calendar.insert_event(leg.calendar_id, _event_body(svc, booking, leg, event_id))
            return event_id
        except EventExists:
            existing = svc.calendar.get_event(leg.calendar_id, event_id)
            private = ((existing or {}).get("extendedProperties") or {}).get("private") or {}
            if existing and existing.get("status") != "cancelled" and private.get("booking_id") == booking.reference:
                return event_id
            leg.event_attempt += 1
    raise GatewayError("Could not create a calendar event id for this day", transient=False, provider="calendar")


def record_event_created(
    svc: Services, booking_id: int, leg: BookingLeg, event_id: str, *, actor: str, now: datetime
) -> None:
    """Remember a day's event on its leg, in external_ref and the audit log; safe to repeat after a crash."""
    with svc.session() as s:
        db_leg = s.get(BookingLeg, leg.id)
        assert db_leg is not None
        db_leg.event_id, db_leg.event_attempt, db_leg.updated_at = event_id, leg.event_attempt, now
        external = f"{leg.calendar_id}/{event_id}"
        known = s.exec(
            select(ExternalRef.id).where(
                ExternalRef.provider == "google", ExternalRef.kind == "event", ExternalRef.external_id == external
            )
        ).first()
        if known is None:
            s.add(
                ExternalRef(
                    provider="google",
                    kind="event",
                    external_id=external,
                    booking_id=booking_id,
                    leg_id=leg.id,
                    created_at=now,
                )
            )
        audit.record(
            s,
            "booking.event.created",
            actor=actor,
            at=now,
            booking=_load(s, booking_id),
            day=leg.day,
            event_id=event_id,
            calendar_id=leg.calendar_id,
        )


def confirm_payment(
    svc: Services, payment_intent_id: str, *, actor: str = "stripe-webhook", now: datetime | None = None
) -> ConfirmResult:
    """On payment success: Gate 2 → one event per day → confirmation email; on any failure, clean up and refund in
    full. Calling it again for the same payment changes nothing."""
    now = _now(svc, now)
    with svc.session() as s:
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
    if not _acquire_lease(svc, booking_id, now):
        raise GatewayError("This booking is being processed right now; try again in a minute", transient=True)
    try:
        return _confirm_locked(svc, booking_id, payment_intent_id, actor, now)
    finally:
        _release_lease(svc, booking_id)


def _confirm_locked(svc: Services, booking_id: int, pi_id: str, actor: str, now: datetime) -> ConfirmResult:
    with svc.session() as s:
        booking = _load(s, booking_id)
        legs = _legs(s, booking_id)
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
            booking = _load(s, booking_id)
            legs = _legs(s, booking_id)
            for leg in legs:
                if leg.state == LegState.AWAITING_PAYMENT:
                    _set_state(leg, LegState.FAILED, now)
            _release_claims(s, booking_id)
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
        booking = _load(s, booking_id)
        audit.record(s, "booking.payment.succeeded", actor=actor, at=now, booking=booking, amount=pi.get("amount"))

    # The hold may have lapsed while the customer paid: re-claim the slot (the database still refuses overlaps).
    try:
        with svc.session() as s:
            for leg in _legs(s, booking_id):
                claim = s.exec(select(SlotClaim).where(SlotClaim.leg_id == leg.id)).one()
                claim.kind, claim.expires_at, claim.active = "booked", None, True
            s.flush()
    except IntegrityError as exc:
        if not _is_overlap_error(exc):
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

    # Gate 2: look at the calendar itself again, ignoring this booking's own events.
    with svc.session() as s:
        booking = _load(s, booking_id)
        legs = _legs(s, booking_id)
    room = svc.catalogue.room(booking.room_slug)
    windows = [LegWindow(leg.day, leg.starts_at, leg.ends_at) for leg in legs]
    start, end = _span(windows, svc.policy.buffer_minutes)
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
    bodies = [_event_body(svc, booking, leg, event_id_for(reference, leg.day, leg.event_attempt)) for leg in legs]
    try:
        results: list[Any] = svc.calendar.insert_events(room.calendar_id, bodies)
    except GatewayError as exc:  # the whole batch failed to arrive (or its answer was lost)
        results = [exc] * len(legs)
    for leg, result in zip(legs, results, strict=True):
        event_id = event_id_for(reference, leg.day, leg.event_attempt)
        if isinstance(result, EventExists):
            try:  # ours from an earlier attempt, or a deleted id to move past: resolve it one by one
                event_id = _insert_event(svc, booking, leg)
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
        booking = _load(s, booking_id)
        legs = _legs(s, booking_id)
        for leg in legs:
            _set_state(leg, LegState.CONFIRMED, now)
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
        booking = _load(s, booking_id)
        reference = booking.reference
        audit.record(s, action, actor=actor, at=now, booking=booking, detail=detail, message=message)
        legs = _legs(s, booking_id)
    messages = [f"{message}: {detail}"]
    cleanup_failed: list[str] = []
    if created and len(legs) > 1:
        with svc.session() as s:
            audit.record(
                s,
                "booking.cleanup.started",
                actor=actor,
                at=now,
                booking=_load(s, booking_id),
                events=[e for _, e in created],
                message="Multi-day partial failure — cleaning up",
            )
    for _calendar_id, event_id, error in _delete_batch(svc, created):
        if error is not None:
            cleanup_failed.append(event_id)
            log.error("Cleanup could not delete event %s booking=%s: %s", event_id, reference, error.message)
    with svc.session() as s:
        booking = _load(s, booking_id)
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

    refunded = _refund(
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
        booking = _load(s, booking_id)
        legs = _legs(s, booking_id)
        for leg in legs:
            if leg.state == LegState.AWAITING_PAYMENT:
                _set_state(leg, LegState.FAILED, now)
                if refunded:
                    leg.refunded_cents = leg.price_cents
        _release_claims(s, booking_id)
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


def _refund(
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
        booking = _load(s, booking_id)
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
                booking=_load(s, booking_id),
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
            _load(s, booking_id),
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


# --------------------------------------------------------------------------------------------------- cancel


def cancel_refund_key(reference: str, leg_ids: Sequence[int]) -> str:
    """The Stripe idempotency key of the refund for cancelling these days (a retry replays that refund)."""
    return f"roomdesk-{reference}-cancel-" + "-".join(str(i) for i in sorted(leg_ids))


def cancellation_quote(
    svc: Services, booking_id: int, leg_ids: Sequence[int] | None = None, *, now: datetime | None = None
) -> list[tuple[BookingLeg, LegRefund]]:
    """What cancelling these days (default: all still active) refunds under the booking's policy snapshot."""
    now = _now(svc, now)
    with svc.session() as s:
        booking = _load(s, booking_id)
        bands = bands_from_snapshot(booking.policy_snapshot)
        legs = [leg for leg in _legs(s, booking_id) if leg_ids is None or leg.id in leg_ids]
    out = []
    for leg in legs:
        if leg.state not in (LegState.CONFIRMED, LegState.AWAITING_PAYMENT):
            continue
        paid = leg.price_cents if leg.state == LegState.CONFIRMED else 0
        out.append(
            (
                leg,
                refund_for_leg(
                    leg_start=leg.starts_at,
                    paid_cents=paid,
                    already_refunded_cents=leg.refunded_cents,
                    bands=bands,
                    now=now,
                ),
            )
        )
    return out


def cancel_booking(
    svc: Services,
    booking_id: int,
    *,
    actor: str,
    leg_ids: Sequence[int] | None = None,
    reason: str = "Customer asked to cancel",
    now: datetime | None = None,
    refund_cents: int | None = None,
    refund_key: str | None = None,
) -> CancelResult:
    """Cancel a whole booking or some of its days: refund per the policy snapshot, delete their events, email.

    `refund_cents` replaces the policy's refund for these days (an approved override, services/finance/overrides.py;
    never more than what is left of them); `refund_key` is then its Stripe idempotency key."""
    now = _now(svc, now)
    if not _acquire_lease(svc, booking_id, now):
        raise GatewayError("This booking is being processed right now; try again in a minute", transient=True)
    try:
        return _cancel_locked(svc, booking_id, actor, leg_ids, reason, now, refund_cents, refund_key)
    finally:
        _release_lease(svc, booking_id)


def _spread(quotes: Sequence[tuple[BookingLeg, LegRefund]], total: int) -> dict[int | None, int]:
    """Share a refund over the days in day order: first up to each day's policy refund, then up to what is left of
    each day, so a day never gets back more than was paid for it."""
    shares = {leg.id: 0 for leg, _ in quotes}
    left = total
    for up_to_policy in (True, False):
        for leg, q in quotes:
            cap = q.refund_cents if up_to_policy else q.paid_cents - q.already_refunded_cents
            give = min(max(cap - shares[leg.id], 0), left)
            shares[leg.id] += give
            left -= give
    return shares


def _cancel_locked(
    svc: Services,
    booking_id: int,
    actor: str,
    leg_ids: Sequence[int] | None,
    reason: str,
    now: datetime,
    refund_cents: int | None = None,
    refund_key: str | None = None,
) -> CancelResult:
    with svc.session() as s:
        booking = _load(s, booking_id)
        status = BookingStatus(booking.status)
    if status == BookingStatus.AWAITING_PAYMENT:
        if leg_ids is not None:
            raise InvalidState("An unpaid booking is cancelled as a whole")
        _expire_one(svc, booking_id, actor, now, action="booking.hold.cancelled")
        with svc.session() as s:
            days = [leg.day for leg in _legs(s, booking_id)]
        return CancelResult(booking_id, 0, days)

    quotes = cancellation_quote(svc, booking_id, leg_ids, now=now)
    quotes = [(leg, q) for leg, q in quotes if leg.state == LegState.CONFIRMED]
    if not quotes:
        raise InvalidState("None of these days can be cancelled (already cancelled, refunded or past)")
    policy_total = sum(q.refund_cents for _, q in quotes)
    total = policy_total if refund_cents is None else refund_cents
    left = sum(max(q.paid_cents - q.already_refunded_cents, 0) for _, q in quotes)
    if not 0 <= total <= left:
        raise InvalidState(f"A refund of {total / 100:.2f} is not possible: {left / 100:.2f} is left for these days")
    ids = sorted(leg.id for leg, _ in quotes if leg.id is not None)

    if total > 0:
        # Re-check against Stripe just before acting: the money must still be there to refund.
        pi = svc.payments.retrieve_payment_intent(booking.payment_intent_id or "")
        charge = pi.get("latest_charge") or {}
        remaining = int(charge.get("amount", 0)) - int(charge.get("amount_refunded", 0))
        short = f"Stripe shows {remaining / 100:.2f} left to refund, less than the {total / 100:.2f} due: "
        short += "sync and check this booking before cancelling"
        if pi.get("status") != "succeeded":
            raise InvalidState(short)
        # Less left than due can mean an earlier try of this very cancellation refunded and lost the answer: the
        # refund below then replays by its key; any other refund it would make is refused by Stripe (over-refund).
        key = refund_key or cancel_refund_key(booking.reference, ids)
        errors: list[str] = []
        if not _refund(
            svc,
            booking_id,
            total,
            origin="cancellation",
            reason=reason,
            actor=actor,
            now=now,
            key=key,
            policy_quote=policy_total,
            leg_ids=ids,
            errors=errors,
        ):
            if remaining < total:
                raise InvalidState(short)
            why = errors[0] if errors else "the payment provider did not answer"
            raise GatewayError(f"The refund could not be made ({why}); nothing was cancelled.", transient=True)

    with svc.session() as s:
        booking = _load(s, booking_id)
        shares = _spread(quotes, total)
        legs = _legs(s, booking_id)
        cancelled = []
        for leg in legs:
            if leg.id in shares:
                _set_state(leg, LegState.CANCELLED, now)
                leg.refunded_cents += shares[leg.id]
                cancelled.append(leg)
        _release_claims(s, booking_id, ids)
        booking.status = derive_status(legs)
        booking.updated_at = now
        audit.record(
            s,
            "booking.cancelled",
            actor=actor,
            at=now,
            booking=booking,
            days=[leg.day for leg in cancelled],
            refund_cents=total,
            reason=reason,
            quotes={str(leg.day): q.band for leg, q in quotes},
            # An override's record says what the policy gave; an ordinary cancellation refunds exactly that.
            policy_refund_cents=None if refund_cents is None else policy_total,
        )
        mail = emails.cancellation(svc.catalogue, svc.settings, booking, cancelled, total)
        row = outbox.queue(
            s,
            booking,
            kind="cancellation",
            mail=mail,
            key=f"{booking.reference}-cancel-{'-'.join(map(str, ids))}",
            now=now,
        )
        targets = [(leg.calendar_id, leg.event_id, leg.day) for leg in cancelled if leg.event_id]

    problems = _delete_events(svc, booking_id, targets, actor, now)
    assert row.id is not None
    if not outbox.deliver(svc, row.id, now=now, actor=actor):
        problems.append("Cancellation email could not be sent (queued)")
    return CancelResult(booking_id, total, [leg.day for leg, _ in quotes], problems)


def _delete_batch(svc: Services, targets: Sequence[tuple[str, str]]) -> list[tuple[str, str, GatewayError | None]]:
    """Delete events with one batch request per calendar; (calendar, event id, error or None) for each."""
    by_calendar: dict[str, list[str]] = {}
    for calendar_id, event_id in targets:
        by_calendar.setdefault(calendar_id, []).append(event_id)
    out: list[tuple[str, str, GatewayError | None]] = []
    for calendar_id, ids in by_calendar.items():
        try:
            errors: list[GatewayError | None] = svc.calendar.delete_events(calendar_id, ids)
        except GatewayError as exc:
            errors = [exc] * len(ids)
        out.extend((calendar_id, event_id, error) for event_id, error in zip(ids, errors, strict=True))
    return out


def _delete_events(
    svc: Services, booking_id: int, targets: Sequence[tuple[str, str | None, date]], actor: str, now: datetime
) -> list[str]:
    days = {(calendar_id, event_id): day for calendar_id, event_id, day in targets if event_id}
    problems = []
    for calendar_id, event_id, error in _delete_batch(svc, list(days)):
        with svc.session() as s:
            if error is not None:
                problems.append(
                    f"{days[(calendar_id, event_id)]}: the calendar event could not be deleted ({error.message})"
                )
                audit.record(
                    s,
                    "booking.event.delete_failed",
                    actor=actor,
                    at=now,
                    booking=_load(s, booking_id),
                    event_id=event_id,
                    calendar_id=calendar_id,
                    error=error.message,
                    message="Calendar event deletion failed: orphan event left",
                )
            else:
                audit.record(
                    s,
                    "booking.event.deleted",
                    actor=actor,
                    at=now,
                    booking=_load(s, booking_id),
                    event_id=event_id,
                    calendar_id=calendar_id,
                )
    return problems


# --------------------------------------------------------------------------------------------------- expire


def _expire_one(svc: Services, booking_id: int, actor: str, now: datetime, action: str = "booking.hold.expired") -> str:
    with svc.session() as s:
        booking = _load(s, booking_id)
        pi_id = booking.payment_intent_id
    if pi_id:
        pi = svc.payments.retrieve_payment_intent(pi_id)
        if pi.get("status") == "succeeded":
            # The customer paid but the webhook never came: confirm instead of expiring (seed incident #2).
            return _confirm_locked(svc, booking_id, pi_id, actor, now).outcome
        if pi.get("status") != "canceled":
            svc.payments.cancel_payment_intent(pi_id, idempotency_key=f"roomdesk-{booking.reference}-cancel-pi")
    with svc.session() as s:
        booking = _load(s, booking_id)
        legs = _legs(s, booking_id)
        for leg in legs:
            _set_state(leg, LegState.CANCELLED, now)
        _release_claims(s, booking_id)
        booking.status = BookingStatus.EXPIRED if action == "booking.hold.expired" else BookingStatus.CANCELLED
        booking.hold_expires_at = None
        booking.updated_at = now
        audit.record(
            s,
            action,
            actor=actor,
            at=now,
            booking=booking,
            message="Unpaid hold released and its PaymentIntent cancelled",
        )
    return "expired"


def expire_holds(svc: Services, *, actor: str = "system", now: datetime | None = None) -> dict[str, int]:
    """Release unpaid holds past their expiry, cancelling their PaymentIntents (or confirming any that were paid)."""
    now = _now(svc, now)
    with svc.session() as s:
        ids = list(
            s.exec(
                select(Booking.id).where(
                    Booking.status == BookingStatus.AWAITING_PAYMENT, col(Booking.hold_expires_at) < now
                )
            )
        )
    counts: dict[str, int] = {}
    for booking_id in ids:
        assert booking_id is not None
        if not _acquire_lease(svc, booking_id, now):
            continue
        try:
            outcome = _expire_one(svc, booking_id, actor, now)
        except GatewayError as exc:
            log.warning("Hold expiry deferred booking=%s: %s", booking_id, exc.message)
            outcome = "deferred"
        finally:
            _release_lease(svc, booking_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def advance_legs(svc: Services, *, now: datetime | None = None, actor: str = "system") -> int:
    """Move confirmed days to IN_PROGRESS while they run and COMPLETED once over."""
    now = _now(svc, now)
    changed = 0
    with svc.session() as s:
        legs = list(
            s.exec(
                select(BookingLeg).where(
                    col(BookingLeg.state).in_([LegState.CONFIRMED, LegState.IN_PROGRESS]), BookingLeg.starts_at <= now
                )
            )
        )
        touched: set[int] = set()
        for leg in legs:
            target = LegState.COMPLETED if leg.ends_at <= now else LegState.IN_PROGRESS
            if leg.state != target:
                _set_state(leg, target, now)
                touched.add(leg.booking_id)
                changed += 1
        for booking_id in touched:
            booking = _load(s, booking_id)
            before = booking.status
            booking.status = derive_status(_legs(s, booking_id))
            if booking.status != before:
                booking.updated_at = now
            audit.record(s, "booking.legs.advanced", actor=actor, at=now, booking=booking, status=booking.status)
    return changed


# --------------------------------------------------------------------------------------------------- sandbox


def sandbox_pay(
    svc: Services, booking_id: int, *, actor: str, now: datetime | None = None, payment_method: str = "pm_card_visa"
) -> ConfirmResult:
    """Sandbox only: the customer pays with a test card, then the webhook's work runs (Gate 2, events, email)."""
    if svc.payments.mode != "sandbox":
        raise InvalidState("Test payments are only available in sandbox mode")
    with svc.session() as s:
        booking = _load(s, booking_id)
        pi_id = booking.payment_intent_id
        if booking.status != BookingStatus.AWAITING_PAYMENT or not pi_id:
            raise InvalidState(f"Booking {booking.reference} is not waiting for payment ({booking.status})")
    svc.payments.confirm_payment_intent(pi_id, payment_method=payment_method)
    return confirm_payment(svc, pi_id, actor=actor, now=now)
