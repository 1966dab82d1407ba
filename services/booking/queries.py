"""Read models for the pages: searches, a booking's full detail, and the rooms' schedule. No writes here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    Amendment,
    AmendmentState,
    AuditLog,
    Booking,
    BookingInvoice,
    BookingLeg,
    BookingStatus,
    EmailOutbox,
    RefundRecord,
)
from services.booking.amend import CHANGEABLE_STATUSES
from services.booking.change import OPEN_STATES, pay_url
from services.core.context import Services
from services.core.errors import DomainError, GatewayError, NotFound
from services.rules.audit_words import EMAIL_KINDS, plain
from services.rules.fmt import money

CANCELLABLE = frozenset({BookingStatus.AWAITING_PAYMENT, BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED})
# A booking in one of these is over: its customer details are history, no longer corrected (details.update_customer).
CLOSED = frozenset({BookingStatus.CANCELLED, BookingStatus.FAILED, BookingStatus.EXPIRED, BookingStatus.REFUNDED})
# What the room's calendar says about a day, against what it should say (BookingDetail.calendar_state).
CALENDAR_STATES = {
    "on_calendar": "✓ on calendar",
    "none": "— none",
    "deleted": "deleted",
    "missing": "✗ missing",
    "deleted_live": "✗ deleted (should be there)",
    "left_over": "⚠ still on calendar",
}
CALENDAR_WRONG = frozenset({"missing", "deleted_live", "left_over"})


def search_bookings(
    svc: Services,
    *,
    text: str = "",
    room: str | None = None,
    day_from: date | None = None,
    day_to: date | None = None,
    statuses: list[str] | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Bookings matching a PaymentIntent id, reference, customer email or name, a room and a date range."""
    with svc.read_session() as s:
        first_day = sa.func.min(BookingLeg.day).label("first_day")
        last_day = sa.func.max(BookingLeg.day).label("last_day")
        days = sa.func.count(col(BookingLeg.id)).label("days")
        q = (
            select(Booking, first_day, last_day, days)
            .join(BookingLeg, col(BookingLeg.booking_id) == col(Booking.id))
            .group_by(col(Booking.id))
        )
        needle = text.strip()
        if needle:
            like = f"%{needle.lower()}%"
            q = q.where(
                sa.or_(
                    col(Booking.payment_intent_id) == needle,
                    col(Booking.reference) == needle.upper(),
                    sa.func.lower(col(Booking.customer_email)).like(like),
                    sa.func.lower(col(Booking.customer_name)).like(like),
                )
            )
        if room:
            q = q.where(col(Booking.room_slug) == room)
        if statuses:
            q = q.where(col(Booking.status).in_(statuses))
        if day_from:
            q = q.having(sa.func.max(BookingLeg.day) >= day_from)
        if day_to:
            q = q.having(sa.func.min(BookingLeg.day) <= day_to)
        # Upcoming bookings first, soonest first (what the front desk is asked about), then the past, latest first.
        today = svc.now().astimezone(svc.settings.tz).date()
        upcoming = sa.case((sa.func.max(BookingLeg.day) >= today, 0), else_=1)
        soonest = sa.case((sa.func.max(BookingLeg.day) >= today, sa.func.min(BookingLeg.day)), else_=None)
        q = q.order_by(upcoming, soonest.asc(), first_day.desc(), col(Booking.id).desc()).limit(limit)
        rows = s.exec(q).all()
        ids = [b.id for b, *_ in rows]
        # What changes that cost more were paid on top (their own PaymentIntents): the list shows what was paid in all.
        extra = dict(
            s.exec(
                select(Amendment.booking_id, sa.func.sum(Amendment.net_cents))
                .where(col(Amendment.booking_id).in_(ids), col(Amendment.paid_at).is_not(None), Amendment.net_cents > 0)
                .group_by(col(Amendment.booking_id))
            ).all()
        )
    out = []
    for b, first, last, n in rows:
        out.append(
            {
                "id": b.id,
                "reference": b.reference,
                "room": _room_name(svc, b.room_slug),
                "first_day": first,
                "last_day": last,
                "days": n,
                "time": f"{b.start_time}–{b.end_time}",
                "customer": b.customer_name,
                "email": b.customer_email,
                "status": b.status,
                "amount_cents": b.amount_cents + int(extra.get(b.id or 0) or 0),
                "channel": b.channel,
                "payment_intent": b.payment_intent_id or "",
            }
        )
    return out


def find_booking_id(svc: Services, key: str) -> int:
    """A booking by reference (RD…), PaymentIntent id (pi_…) or numeric id."""
    key = key.strip()
    with svc.read_session() as s:
        q = select(Booking.id)
        if key.startswith("pi_"):
            changed = select(Amendment.booking_id).where(Amendment.payment_intent_id == key)
            q = q.where(sa.or_(col(Booking.payment_intent_id) == key, col(Booking.id).in_(changed)))
        elif key.isascii() and key.isdigit():
            q = q.where(Booking.id == int(key))
        else:
            q = q.where(Booking.reference == key.upper())
        found = s.exec(q).first()
    if found is None:
        raise NotFound(f"No booking matches {key!r}")
    return found


def _room_name(svc: Services, slug: str) -> str:
    try:
        return svc.catalogue.room(slug).name
    except Exception:  # a room removed from the catalogue still shows its bookings
        return slug


@dataclass(frozen=True)
class BookingChange:
    """One change to the booking (an Amendment) as staff read it: its lines, the money, and for one waiting for
    payment the customer's pay link and when the hold ends."""

    number: int
    state: AmendmentState
    lines: list[str]
    net_cents: int  # > 0 charged, < 0 refunded
    created_at: datetime
    actor: str
    reason: str
    hold_expires_at: datetime | None = None
    pay_url: str = ""
    applied_at: datetime | None = None
    paid_at: datetime | None = None  # its difference was paid (with its own PaymentIntent)

    @property
    def is_open(self) -> bool:
        """Waiting for payment, or paid and being made (a step to be retried)."""
        return self.state in OPEN_STATES


@dataclass
class BookingDetail:
    """One booking as the Bookings page shows it, with what it says about the booking's state: whether it can be
    cancelled, whether the calendar and Stripe agree with our records, which room details are still missing."""

    booking: Booking
    room_name: str
    legs: list[BookingLeg]
    refunds: list[RefundRecord]
    audit: list[AuditLog]
    emails: list[EmailOutbox]
    payment: dict[str, Any] | None = None
    payment_error: str | None = None
    events: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    event_errors: list[str] = field(default_factory=list)
    extras: list[tuple[str, Any]] = field(default_factory=list)  # (question, answer) of the room's extras form
    extras_missing: list[str] = field(default_factory=list)  # what the room needs and the booking lacks
    changes: list[BookingChange] = field(default_factory=list)  # oldest first

    @property
    def open_change(self) -> BookingChange | None:
        """The change still waiting for payment or being made, if any (one at a time)."""
        return next((c for c in self.changes if c.is_open), None)

    @property
    def changeable(self) -> bool:
        """Days, times or room may still be changed: paid, not over, and no other change under way."""
        return self.booking.status in CHANGEABLE_STATUSES and self.open_change is None

    @property
    def refunded_cents(self) -> int:
        return sum(r.amount_cents for r in self.refunds)

    @property
    def awaiting_payment(self) -> bool:
        return self.booking.status == BookingStatus.AWAITING_PAYMENT

    @property
    def cancellable(self) -> bool:
        """Something is left to cancel: an unpaid hold, or paid days not all cancelled."""
        return self.booking.status in CANCELLABLE

    @property
    def editable(self) -> bool:
        """The customer's details may still be corrected (the booking is not over)."""
        return self.booking.status not in CLOSED

    @property
    def active_days(self) -> int:
        return sum(leg.state in ACTIVE_LEG_STATES for leg in self.legs)

    def calendar_state(self, leg: BookingLeg) -> str:
        """A key of CALENDAR_STATES: what the room's calendar says about this day against what it should say."""
        live = leg.state in ACTIVE_LEG_STATES
        event = self.events.get(leg.id) if leg.event_id and leg.id is not None else None
        if not leg.event_id:
            return "missing" if live else "none"
        if event is None:
            return "missing"
        if event.get("status") == "cancelled":
            return "deleted_live" if live else "deleted"
        return "on_calendar" if live else "left_over"

    @property
    def calendar_wrong(self) -> list[BookingLeg]:
        """Days whose calendar event is missing though booked, or still there though not booked."""
        return [leg for leg in self.legs if self.calendar_state(leg) in CALENDAR_WRONG]

    @property
    def charge(self) -> dict[str, Any]:
        charge = (self.payment or {}).get("latest_charge")
        return charge if isinstance(charge, dict) else {}

    @property
    def received_cents(self) -> int:
        """What the booking's own (first) PaymentIntent took, as Stripe says."""
        return int((self.payment or {}).get("amount_received") or 0)

    @property
    def changes_paid_cents(self) -> int:
        """What changes that cost more were paid on top, each with its own PaymentIntent."""
        return sum(c.net_cents for c in self.changes if c.paid_at is not None and c.net_cents > 0)

    @property
    def first_payment_refunded_cents(self) -> int:
        """Our refunds recorded on the booking's first PaymentIntent (the one `payment` shows)."""
        first = self.booking.payment_intent_id
        return sum(r.amount_cents for r in self.refunds if (r.payment_intent_id or first) == first)

    @property
    def stripe_refunded_cents(self) -> int:
        return int(self.charge.get("amount_refunded", 0))

    @property
    def refunds_disagree(self) -> bool:
        """Stripe shows other refunds than Room Desk recorded."""
        return bool(self.received_cents) and self.first_payment_refunded_cents != self.stripe_refunded_cents

    @property
    def kept_after_failure_cents(self) -> int:
        """Money still held on a failed booking: the saga always refunds a failed booking in full, so any of it means
        that refund failed."""
        kept = self.received_cents - self.stripe_refunded_cents
        return kept if self.booking.status == BookingStatus.FAILED and kept > 0 else 0


def booking_detail(svc: Services, booking_id: int, *, live: bool = True) -> BookingDetail:
    """Everything about one booking: legs, refunds, emails, audit timeline, and (live) Stripe and calendar state."""
    with svc.read_session() as s:
        booking = s.get(Booking, booking_id)
        if booking is None:
            raise NotFound(f"No booking #{booking_id}")
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == booking_id).order_by(col(BookingLeg.day))))
        refunds = list(
            s.exec(
                select(RefundRecord).where(RefundRecord.booking_id == booking_id).order_by(col(RefundRecord.created_at))
            )
        )
        audit_rows = list(
            s.exec(
                select(AuditLog).where(AuditLog.booking_id == booking_id).order_by(col(AuditLog.at), col(AuditLog.id))
            )
        )
        emails = list(
            s.exec(
                select(EmailOutbox).where(EmailOutbox.booking_id == booking_id).order_by(col(EmailOutbox.created_at))
            )
        )
        changes = [
            BookingChange(
                a.number,
                a.state,
                [str(line) for line in a.summary],
                a.net_cents,
                a.created_at,
                a.actor,
                a.reason,
                hold_expires_at=a.hold_expires_at,
                pay_url=pay_url(svc, booking, a.number) if a.state == AmendmentState.AWAITING_PAYMENT else "",
                applied_at=a.applied_at,
                paid_at=a.paid_at,
            )
            for a in s.exec(select(Amendment).where(Amendment.booking_id == booking_id).order_by(col(Amendment.number)))
        ]
    detail = BookingDetail(booking, _room_name(svc, booking.room_slug), legs, refunds, audit_rows, emails)
    detail.changes = changes
    try:
        room = svc.catalogue.room(booking.room_slug)
    except DomainError:  # a room removed from the catalogue: its questions are gone with it
        room = None
    if room is not None and room.extras:
        detail.extras = [(f.label, booking.extras[f.key]) for f in room.extras if f.key in booking.extras]
        detail.extras_missing = room.validate_extras(booking.extras)[1]
    if not live:
        return detail
    if booking.payment_intent_id:
        try:
            detail.payment = svc.payments.retrieve_payment_intent(booking.payment_intent_id)
        except GatewayError as exc:
            detail.payment_error = exc.message
        except NotFound as exc:
            detail.payment_error = exc.message
    for leg in legs:
        if not leg.event_id or leg.id is None:
            continue
        try:
            detail.events[leg.id] = svc.calendar.get_event(leg.calendar_id, leg.event_id)
        except GatewayError as exc:
            detail.event_errors.append(f"{leg.day}: {exc.message}")
    return detail


STRIPE_EVENT_WORDS = {
    "payment_intent.created": "Payment started",
    "payment_intent.succeeded": "Payment succeeded",
    "payment_intent.payment_failed": "Payment failed",
    "payment_intent.canceled": "Payment cancelled",
    "payment_intent.processing": "Payment processing",
    "payment_intent.requires_action": "Payment waits for the customer's bank",
    "charge.succeeded": "Card charged",
    "charge.failed": "Card charge failed",
    "charge.refunded": "Refund made",
    "charge.refund.updated": "Refund updated",
    "charge.dispute.created": "Dispute opened",
    "charge.dispute.updated": "Dispute updated",
    "charge.dispute.funds_withdrawn": "Disputed money withdrawn",
    "charge.dispute.funds_reinstated": "Disputed money returned",
    "charge.dispute.closed": "Dispute closed",
}


def booking_timeline(
    svc: Services,
    booking_id: int,
    *,
    describe: Callable[[dict[str, Any]], str] | None = None,
    word: Callable[[str, dict[str, Any]], str] | None = None,
) -> list[dict[str, Any]]:
    """One timeline of every surface for a booking — Stripe events, calendar changes, our audit rows, emails — from
    the local cache (what "filter the Worker logs by PaymentIntent id" was in the seed). `describe` words an audit
    row's payload (the dashboard and the dispute evidence each their own way); by default its message, or its raw
    facts. `word(action, payload)` says what an audit row was as a sentence (services.rules.audit_words); without
    it "what" is the action name. Every row keeps the action name (or the Stripe event type) as "code"."""
    from models.tables import CalendarEventCache, StripeObjectCache

    detail = booking_detail(svc, booking_id, live=False)
    b = detail.booking
    out: list[dict[str, Any]] = []
    for a in detail.audit:
        if describe is not None:
            text = describe(a.payload or {})
        else:
            facts = {k: v for k, v in a.payload.items() if k != "message"}
            text = str(a.payload.get("message") or ", ".join(f"{k}: {v}" for k, v in facts.items()))[:300]
        what = word(a.action, a.payload or {}) if word is not None else a.action
        out.append({"at": a.at, "source": "Room Desk", "what": what, "code": a.action, "who": a.actor, "detail": text})
    for e in detail.emails:
        out.append(
            {
                "at": e.created_at,
                "source": "Email",
                "what": f"{EMAIL_KINDS.get(e.kind, e.kind.replace('_', ' ').capitalize())} email {e.status}",
                "code": f"email.{e.kind}",
                "who": e.to,
                "detail": e.subject + (f" — {e.last_error}" if e.last_error else ""),
            }
        )
    with svc.read_session() as s:
        if b.payment_intent_id:
            for ev in s.exec(
                select(StripeObjectCache).where(
                    StripeObjectCache.object == "event", StripeObjectCache.payment_intent == b.payment_intent_id
                )
            ):
                # The event type is the "what" in words; the detail gives the money and Stripe's event id.
                amount = f"{money(ev.amount, b.currency)} · " if ev.amount else ""
                out.append(
                    {
                        "at": ev.created,
                        "source": "Stripe",
                        "what": STRIPE_EVENT_WORDS.get(ev.status or "", plain(ev.status or "Stripe event")),
                        "code": ev.status or "",
                        "who": "Stripe",
                        "detail": f"{amount}{ev.id}",
                    }
                )
        q = select(CalendarEventCache).where(
            sa.or_(
                col(CalendarEventCache.booking_id) == b.reference,
                col(CalendarEventCache.matched_pi) == (b.payment_intent_id or "-"),
            )
        )
        for ce in s.exec(q):
            created = _iso(ce.data.get("created"))
            when = f"{ce.starts_at.astimezone(svc.settings.tz):%a %d %b %H:%M}" if ce.starts_at else "?"
            if created:
                out.append(
                    {
                        "at": created,
                        "source": "Calendar",
                        "what": "Event created",
                        "code": "calendar.created",
                        "who": ce.calendar_id,
                        "detail": f"{when} · {ce.event_id}",
                    }
                )
            if ce.status == "cancelled":
                out.append(
                    {
                        "at": ce.updated or ce.synced_at,
                        "source": "Calendar",
                        "what": "Event deleted",
                        "code": "calendar.deleted",
                        "who": ce.calendar_id,
                        "detail": f"{when} · {ce.event_id}",
                    }
                )
            elif ce.updated and created and ce.updated > created + timedelta(seconds=1):
                out.append(
                    {
                        "at": ce.updated,
                        "source": "Calendar",
                        "what": "Event changed",
                        "code": "calendar.changed",
                        "who": ce.calendar_id,
                        "detail": f"{when} · {ce.event_id}",
                    }
                )
    return sorted((e for e in out if e["at"] is not None), key=lambda e: e["at"])


def _iso(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC) if value else None
    except ValueError:
        return None


def invoice_of(svc: Services, booking_id: int) -> BookingInvoice | None:
    """The booking's invoice (an organisation paying on terms), or None for a booking paid by card."""
    with svc.read_session() as s:
        return s.exec(select(BookingInvoice).where(BookingInvoice.booking_id == booking_id)).first()
