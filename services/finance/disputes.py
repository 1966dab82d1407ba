"""Disputes (chargebacks): DisputeCase rows kept in step with Stripe, and the evidence we answer them with.

Stripe decides a dispute's status. The webhooks (charge.dispute.created / updated / closed) and `refresh_disputes`
re-read the dispute from Stripe and copy status, amount, reason, due date and booking onto its DisputeCase; a
redelivery or a second refresh changes nothing and writes no audit row.

The evidence pack is assembled from what Room Desk knows about the booking (its days and price, the calendar
events that reserved the room, the policy and terms the customer accepted, the emails sent, the refunds, the audit
timeline), rendered as a PDF, and sent to Stripe's evidence *text* fields (no file upload). Staff may save a draft
as often as they like while the dispute needs a response; submitting happens once, after re-reading the dispute
from Stripe just before sending: it must still need a response and its due date must not have passed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.tables import ACTIVE_LEG_STATES, Booking, BookingLeg, DisputeCase, ExternalRef, LegState
from services.booking.queries import BookingDetail, booking_detail, booking_timeline
from services.core import audit
from services.core.context import Services
from services.core.errors import InvalidState, NotFound, ValidationError
from services.finance.pdf import Document
from services.finance.receipts import (
    LEG_WORDS,
    Payment,
    full_date,
    leg_times,
    letterhead,
    origin_words,
    payment_from_intent,
    tz_words,
    venue_time,
)
from services.gateways.base import all_pages
from services.notify.emails import policy_text
from services.rules.fmt import money

Json = dict[str, Any]

RESPONDABLE = frozenset({"needs_response", "warning_needs_response"})
CLOSED = frozenset({"won", "lost", "warning_closed"})
STATUS_WORDS = {
    "warning_needs_response": "Inquiry: needs a response",
    "warning_under_review": "Inquiry: under review",
    "warning_closed": "Inquiry closed",
    "needs_response": "Needs a response",
    "under_review": "Under review",
    "won": "Won",
    "lost": "Lost",
}
REASON_WORDS = {
    "product_not_received": "Service not received",
    "product_unacceptable": "Service not as described",
    "credit_not_processed": "Refund not processed",
    "subscription_canceled": "Cancelled",
    "fraudulent": "Fraudulent charge",
    "unrecognized": "Charge not recognised",
    "duplicate": "Duplicate charge",
    "general": "General",
}
# The evidence we send: Stripe's text fields (API reference), in the order a reviewer reads them.
TEXT_FIELDS = (
    "product_description",
    "service_date",
    "customer_name",
    "customer_email_address",
    "cancellation_policy_disclosure",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "cancellation_rebuttal",
    "uncategorized_text",
)
FIELD_LABELS = {
    "product_description": "What was bought",
    "service_date": "Service date(s)",
    "customer_name": "Customer name",
    "customer_email_address": "Customer email",
    "cancellation_policy_disclosure": "How the cancellation policy was shown",
    "refund_policy_disclosure": "How the refund policy was shown",
    "refund_refusal_explanation": "Why no (further) refund is due",
    "cancellation_rebuttal": "Why the cancellation does not apply",
    "uncategorized_text": "Summary",
}
MAX_FIELD_CHARS = 20_000  # Stripe's limit on one text field
SUBMITTED_IN_STRIPE = "Stripe (outside Room Desk)"


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status.replace("_", " ").capitalize())


def reason_words(reason: str) -> str:
    return REASON_WORDS.get(reason, reason.replace("_", " ").capitalize() or "No reason given")


# --------------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class DisputeSummary:
    """A DisputeCase as the list and the detail show it, with the time left to answer it."""

    id: int
    dispute_id: str
    booking_id: int | None
    reference: str | None
    customer: str | None
    amount_cents: int
    currency: str
    reason: str
    status: str
    evidence_due_by: datetime | None
    opened_at: datetime | None
    closed_at: datetime | None
    evidence_submitted_at: datetime | None
    evidence_submitted_by: str | None
    evidence: dict[str, str]
    evidence_pdf_sha256: str | None
    days_left: int | None  # whole days until the evidence is due (negative once overdue); None when not needed
    overdue: bool

    @property
    def needs_response(self) -> bool:
        return self.status in RESPONDABLE and self.evidence_submitted_at is None

    @property
    def status_words(self) -> str:
        return status_words(self.status)

    @property
    def reason_words(self) -> str:
        return reason_words(self.reason)


def _summary(row: DisputeCase, booking: Booking | None, now: datetime) -> DisputeSummary:
    assert row.id is not None
    waiting = row.status in RESPONDABLE and row.evidence_submitted_at is None and row.evidence_due_by is not None
    days_left = overdue = None
    if waiting and row.evidence_due_by is not None:
        days_left = math.floor((row.evidence_due_by - now) / timedelta(days=1))
        overdue = row.evidence_due_by <= now
    return DisputeSummary(
        id=row.id,
        dispute_id=row.dispute_id,
        booking_id=row.booking_id,
        reference=booking.reference if booking else None,
        customer=booking.customer_name if booking else None,
        amount_cents=row.amount_cents,
        currency=row.currency,
        reason=row.reason,
        status=row.status,
        evidence_due_by=row.evidence_due_by,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
        evidence_submitted_at=row.evidence_submitted_at,
        evidence_submitted_by=row.evidence_submitted_by,
        evidence={str(k): str(v) for k, v in (row.evidence or {}).items()},
        evidence_pdf_sha256=row.evidence_pdf_sha256,
        days_left=days_left,
        overdue=bool(overdue),
    )


def list_cases(svc: Services, *, now: datetime | None = None) -> list[DisputeSummary]:
    """Every dispute we know of: those still needing a response first, soonest due first; then the rest, newest
    first."""
    now = now or svc.now()
    with svc.session() as s:
        rows = list(s.exec(select(DisputeCase, Booking).join(Booking, isouter=True, onclause=_booking_join())))
        cases = [_summary(row, b, now) for row, b in rows]
    far = datetime.max.replace(tzinfo=UTC)
    waiting = sorted((c for c in cases if c.needs_response), key=lambda c: (c.evidence_due_by or far, c.id))
    rest = sorted(
        (c for c in cases if not c.needs_response),
        key=lambda c: (c.opened_at or datetime.min.replace(tzinfo=UTC), c.id),
        reverse=True,
    )
    return waiting + rest


def _booking_join() -> Any:
    return col(Booking.id) == col(DisputeCase.booking_id)


def get_case(svc: Services, case_id: int, *, now: datetime | None = None) -> DisputeSummary:
    """One dispute. NotFound if there is no such case."""
    with svc.session() as s:
        row = s.get(DisputeCase, case_id)
        if row is None:
            raise NotFound(f"No dispute #{case_id}")
        booking = s.get(Booking, row.booking_id) if row.booking_id is not None else None
        return _summary(row, booking, now or svc.now())


# --------------------------------------------------------------------------------------------------- from Stripe


def stripe_disputes(svc: Services) -> list[Json]:
    """Every dispute on the Stripe account, newest first."""
    return all_pages(lambda after: svc.payments.list_disputes(limit=100, starting_after=after))


def fetch_dispute(svc: Services, dispute_id: str | None) -> Json:
    """The dispute as Stripe has it now (the gateway lists disputes; an account has few). NotFound if absent."""
    dispute = next((d for d in stripe_disputes(svc) if d.get("id") == dispute_id), None)
    if dispute is None:
        raise NotFound(f"Stripe has no dispute {dispute_id}")
    return dispute


def _ref(value: Any) -> str | None:
    """A Stripe reference that may come expanded: the id either way."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def _epoch(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def booking_for_payment(session: Session, payment_intent_id: str | None) -> Booking | None:
    """Our booking paid by this PaymentIntent (through the external-reference table, then the booking itself)."""
    if not payment_intent_id:
        return None
    booking_id = session.exec(
        select(ExternalRef.booking_id).where(
            ExternalRef.provider == "stripe",
            ExternalRef.kind == "payment_intent",
            ExternalRef.external_id == payment_intent_id,
        )
    ).first()
    if booking_id is not None:
        return session.get(Booking, booking_id)
    return session.exec(select(Booking).where(Booking.payment_intent_id == payment_intent_id)).first()


def _values(dispute: Json) -> dict[str, Any]:
    details = dispute.get("evidence_details") or {}
    return {
        "payment_intent_id": _ref(dispute.get("payment_intent")),
        "charge_id": _ref(dispute.get("charge")),
        "amount_cents": int(dispute.get("amount") or 0),
        "currency": str(dispute.get("currency") or "cad").upper()[:3],
        "reason": str(dispute.get("reason") or "")[:64],
        "status": str(dispute.get("status") or "needs_response")[:32],
        "evidence_due_by": _epoch(details.get("due_by")),
        "opened_at": _epoch(dispute.get("created")),
    }


def _stripe_evidence(dispute: Json) -> dict[str, str]:
    evidence = dispute.get("evidence") or {}
    return {k: str(evidence[k]) for k in TEXT_FIELDS if isinstance(evidence.get(k), str) and evidence[k]}


def record_dispute(svc: Services, dispute: Json, *, actor: str, now: datetime | None = None) -> str:
    """Bring the dispute's DisputeCase in line with Stripe's dispute (as just re-read from Stripe): 'created',
    'updated' or 'unchanged'. Audited: booking.dispute.opened / .updated / .closed."""
    now = now or svc.now()
    try:
        return _record(svc, dispute, actor, now)
    except IntegrityError:
        # Two deliveries about one new dispute raced (created and updated arrive together); the other inserted it.
        return _record(svc, dispute, actor, now)


def _record(svc: Services, dispute: Json, actor: str, now: datetime) -> str:
    dispute_id = str(dispute["id"])
    values = _values(dispute)
    submitted = int((dispute.get("evidence_details") or {}).get("submission_count") or 0) > 0
    with svc.session() as s:
        booking = booking_for_payment(s, values["payment_intent_id"])
        row = s.exec(select(DisputeCase).where(DisputeCase.dispute_id == dispute_id)).first()
        changes: dict[str, Any] = {}
        if row is None:
            row = DisputeCase(dispute_id=dispute_id, booking_id=booking.id if booking else None, updated_at=now)
            s.add(row)
            outcome, before = "created", None
        else:
            outcome, before = "updated", row.status
        for key, value in values.items():
            if getattr(row, key) != value:
                if outcome == "updated":
                    changes[key] = value
                setattr(row, key, value)
        if booking is not None and row.booking_id is None:
            row.booking_id = booking.id
            changes["booking"] = booking.reference
        if submitted and row.evidence_submitted_at is None:
            # Submitted in Stripe's dashboard (or by us, a moment before our own record of it): never again here.
            row.evidence_submitted_at = now
            row.evidence_submitted_by = SUBMITTED_IN_STRIPE
            row.evidence = row.evidence or _stripe_evidence(dispute)
            changes["evidence_submitted"] = True
        closing = row.status in CLOSED and row.closed_at is None
        if closing:
            row.closed_at = now
            changes["closed_at"] = now
        if outcome == "updated" and not changes:
            return "unchanged"
        row.updated_at = now
        facts = {
            "dispute_id": dispute_id,
            "amount_cents": row.amount_cents,
            "reason": row.reason,
            "status": row.status,
            "due_by": row.evidence_due_by,
        }
        if outcome == "created":
            audit.record(
                s,
                "booking.dispute.opened",
                actor=actor,
                at=now,
                booking=booking,
                payment_intent=row.payment_intent_id,
                message=f"Dispute opened: {reason_words(row.reason)}",
                **facts,
            )
        if closing or outcome == "updated":
            audit.record(
                s,
                "booking.dispute.closed" if closing else "booking.dispute.updated",
                actor=actor,
                at=now,
                booking=booking,
                payment_intent=row.payment_intent_id,
                message=f"Dispute {status_words(row.status).lower()}",
                previous_status=before,
                changes=changes,
                **facts,
            )
        return outcome


@dataclass(frozen=True)
class RefreshReport:
    seen: int
    created: int
    updated: int

    def line(self) -> str:
        return f"{self.seen} dispute(s) on Stripe: {self.created} new, {self.updated} changed"


def refresh_disputes(svc: Services, *, actor: str) -> RefreshReport:
    """Read every dispute from Stripe and bring each DisputeCase in line: the disputes no webhook told us about."""
    now = svc.now()
    outcomes = [record_dispute(svc, d, actor=actor, now=now) for d in stripe_disputes(svc)]
    return RefreshReport(len(outcomes), outcomes.count("created"), outcomes.count("updated"))


# --------------------------------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class EventProof:
    """A booked day's calendar event: the proof that the room was reserved for the customer."""

    day: str
    calendar_id: str
    event_id: str
    status: str  # confirmed | cancelled | missing | unreadable
    when: str
    summary: str


@dataclass(frozen=True)
class EmailLine:
    kind: str
    to: str
    subject: str
    status: str
    sent_at: datetime | None


@dataclass(frozen=True)
class RefundLine:
    at: datetime
    amount_cents: int
    origin: str
    reason: str
    days: str


@dataclass
class EvidencePack:
    """Everything we know that answers a dispute, and the evidence fields made from it."""

    case: DisputeSummary
    booking: Booking
    room_name: str
    legs: list[BookingLeg]
    payment: Payment | None
    events: list[EventProof]
    policy: str
    policy_version: str
    emails: list[EmailLine]
    refunds: list[RefundLine]
    timeline: list[dict[str, Any]]
    generated_at: datetime
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def refunded_cents(self) -> int:
        return sum(r.amount_cents for r in self.refunds)

    @property
    def filename(self) -> str:
        return f"dispute-{self.case.dispute_id}-{self.booking.reference}.pdf"


def assemble_evidence(svc: Services, case_id: int, *, now: datetime | None = None) -> EvidencePack:
    """The evidence pack for one dispute, from our records plus Stripe (the card) and the calendars (the events).
    InvalidState when the dispute is not on one of our bookings."""
    now = now or svc.now()
    case = get_case(svc, case_id, now=now)
    if case.booking_id is None:
        raise InvalidState(
            f"Dispute {case.dispute_id} is not on a Room Desk booking: answer it in the Stripe dashboard"
        )
    detail = booking_detail(svc, case.booking_id, live=True)
    b = detail.booking
    tz = svc.settings.tz
    events: list[EventProof] = []
    for leg in detail.legs:
        if not leg.event_id or leg.id is None:
            continue
        ev = detail.events.get(leg.id)
        status, when, summary = "unreadable", "", ""
        if leg.id in detail.events:
            status = "missing" if ev is None else str(ev.get("status") or "confirmed")
        if ev:
            summary = str(ev.get("summary") or "")
            try:
                start = datetime.fromisoformat(str(ev["start"]["dateTime"])).astimezone(tz)
                end = datetime.fromisoformat(str(ev["end"]["dateTime"])).astimezone(tz)
                when = f"{full_date(start.date())} {start:%H:%M}–{end:%H:%M}"
            except (KeyError, TypeError, ValueError):
                when = ""
        events.append(EventProof(full_date(leg.day), leg.calendar_id, leg.event_id, status, when, summary))
    days_by_leg = {leg.id: full_date(leg.day) for leg in detail.legs}
    pack = EvidencePack(
        case=case,
        booking=b,
        room_name=detail.room_name,
        legs=detail.legs,
        payment=payment_from_intent(detail.payment, b),
        events=events,
        policy=policy_text(b.policy_snapshot or {}),
        policy_version=str((b.policy_snapshot or {}).get("version") or ""),
        emails=[EmailLine(e.kind, e.to, e.subject, e.status, e.sent_at) for e in detail.emails],
        refunds=[
            RefundLine(
                r.created_at, r.amount_cents, r.origin, r.reason, ", ".join(days_by_leg.get(i, "?") for i in r.leg_ids)
            )
            for r in detail.refunds
        ],
        timeline=_timeline(svc, detail, now),
        generated_at=now,
    )
    pack.fields = evidence_fields(svc, pack)
    return pack


# Audit payload keys that tell a reader nothing (the calendar is the room's; the message is shown first).
_AUDIT_SKIP = {"message", "calendar_id", "channel"}


def _fact(svc: Services, key: str, value: Any, currency: str) -> str:
    if (key == "amount" or key.endswith("_cents")) and isinstance(value, int):
        return money(value, currency)
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        try:
            return venue_time(svc, datetime.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, str) and len(value) == 10 and value[4:5] == "-":
        try:
            return full_date(date.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, list):
        return ", ".join(_fact(svc, key, v, currency) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{_fact(svc, '', k, currency)}: {_fact(svc, key, v, currency)}" for k, v in value.items())
    return str(value)


def _audit_text(svc: Services, payload: dict[str, Any], currency: str) -> str:
    """An audit payload as one line: its message, then the other facts with money and dates formatted."""
    parts = [str(payload["message"])] if payload.get("message") else []
    parts += [
        f"{key.removesuffix('_cents').replace('_', ' ')}: {_fact(svc, key, value, currency)}"
        for key, value in payload.items()
        if key not in _AUDIT_SKIP and value not in (None, "", [], {})
    ]
    return " · ".join(parts)


def _timeline(svc: Services, detail: BookingDetail, now: datetime) -> list[dict[str, Any]]:
    """The booking's joined timeline up to `now`, our audit rows' payloads in words. The dispute's own story is
    left out: it is no evidence about the service."""
    assert detail.booking.id is not None
    texts: dict[tuple[datetime, str], list[str]] = {}
    for a in detail.audit:
        texts.setdefault((a.at, a.action), []).append(_audit_text(svc, a.payload or {}, detail.booking.currency))
    out = []
    for row in booking_timeline(svc, detail.booking.id):
        if str(row["what"]).startswith("booking.dispute.") or row["at"] > now:
            continue
        if row["source"] == "Room Desk" and (queue := texts.get((row["at"], row["what"]))):
            row = {**row, "detail": queue.pop(0)}
        out.append(row)
    return out


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _served_legs(pack: EvidencePack) -> list[BookingLeg]:
    served = [leg for leg in pack.legs if LegState(leg.state) in ACTIVE_LEG_STATES]
    return served or list(pack.legs)


def _days_words(legs: list[BookingLeg]) -> str:
    return ", ".join(full_date(leg.day) for leg in legs)


def _accepted_words(svc: Services, b: Booking) -> str:
    if b.terms_accepted_at is None:
        return ""
    when = venue_time(svc, b.terms_accepted_at)
    return f"accepted the cancellation policy and terms (version {b.terms_version}) on {when}"


def evidence_fields(svc: Services, pack: EvidencePack) -> dict[str, str]:
    """Stripe's evidence text fields, written from the pack: facts with dates, money and ids, no adjectives."""
    b, venue = pack.booking, svc.catalogue.venue
    cur = b.currency
    served = _served_legs(pack)
    where = f"{pack.room_name} at {venue.name}" + (f", {venue.address}" if venue.address else "")
    times = f"{b.start_time}–{b.end_time} ({tz_words(svc)})"
    sent = [e for e in pack.emails if e.sent_at is not None]
    confirmation = next((e for e in sent if e.kind == "confirmation"), None)
    accepted = _accepted_words(svc, b)
    shown_on = "the pay page" if b.channel == "phone" else "the booking page"
    if accepted:
        disclosure = (
            f"The cancellation policy was shown on {shown_on} before payment, next to a required tick box, and the "
            f"customer {accepted}. "
        )
    else:
        disclosure = "The cancellation policy is part of the venue's published terms. "
    if confirmation:
        disclosure += f"It was repeated in the confirmation email sent to {confirmation.to} on " + (
            f"{venue_time(svc, confirmation.sent_at)}. "
        )
    policy = f'The policy (version {pack.policy_version or "?"}): "{pack.policy}"'
    fields = {
        "product_description": (
            f"Hire of a meeting room: {where}, on {_days_words(served)}, {times}. "
            f"Booking {b.reference}, {_count(len(pack.legs), 'day')}, {money(b.amount_cents, cur)}."
        ),
        "service_date": ", ".join(f"{leg.day.isoformat()} {leg_times(svc, leg)}" for leg in served),
        "customer_name": b.customer_name,
        "customer_email_address": b.customer_email,
        "cancellation_policy_disclosure": disclosure + policy,
        "refund_policy_disclosure": (
            f"Refunds follow the cancellation policy, day by day, by notice given before each day starts. "
            f"{policy} {disclosure.strip()}"
        ),
    }
    rebuttal = _rebuttal(svc, pack, served)
    key = "cancellation_rebuttal" if pack.case.reason == "subscription_canceled" else "refund_refusal_explanation"
    fields[key] = rebuttal
    fields["uncategorized_text"] = _narrative(svc, pack, served, accepted, sent)
    return {k: v.strip()[:MAX_FIELD_CHARS] for k, v in fields.items() if v and v.strip()}


def _rebuttal(svc: Services, pack: EvidencePack, served: list[BookingLeg]) -> str:
    b, cur = pack.booking, pack.booking.currency
    reserved = [e for e in pack.events if e.status == "confirmed"]
    parts = [
        f"This was a one-off booking of a meeting room for set days and times, not a subscription or goods. "
        f"The room was reserved for the customer alone on {_days_words(served)}, {b.start_time}–{b.end_time}"
        + (f", and blocked on the room's calendar ({_count(len(reserved), 'event')})" if reserved else "")
        + "; nobody else could book it for those times."
    ]
    cancelled = [leg for leg in pack.legs if LegState(leg.state) in (LegState.CANCELLED, LegState.REFUNDED)]
    if pack.refunds:
        listed = "; ".join(
            f"{money(r.amount_cents, cur)} on {venue_time(svc, r.at)} ({origin_words(r.origin).lower()}"
            + (f", for {r.days}" if r.days else "")
            + ")"
            for r in pack.refunds
        )
        parts.append(f"Refunds already made: {listed}.")
    elif not cancelled:
        parts.append("The customer never asked to cancel any of the booked days.")
    paid = pack.payment.received_cents if pack.payment else b.amount_cents
    parts.append(
        f"Under the cancellation policy the customer accepted, no further refund is due: of {money(paid, cur)} paid, "
        f"{money(paid - pack.refunded_cents, cur)} remains for the days the room was held."
    )
    return " ".join(parts)


def _narrative(
    svc: Services, pack: EvidencePack, served: list[BookingLeg], accepted: str, sent: list[EmailLine]
) -> str:
    b, cur, venue = pack.booking, pack.booking.currency, svc.catalogue.venue
    pay = pack.payment
    lines = [
        f"Booking {b.reference} ({b.channel} booking made {venue_time(svc, b.created_at)}): {pack.room_name} at "
        f"{venue.name}, {_days_words(served)}, {b.start_time}–{b.end_time} ({tz_words(svc)}).",
    ]
    if pay:
        lines.append(
            f"Paid {money(pay.received_cents, cur)} by {pay.method}"
            + (f" on {venue_time(svc, pay.paid_at)}" if pay.paid_at else "")
            + f" (PaymentIntent {b.payment_intent_id})."
        )
    ids = ", ".join(e.event_id for e in pack.events if e.status == "confirmed")
    if ids:
        lines.append(
            f"The slot was reserved on the room's calendar: {'event ids' if ',' in ids else 'event id'} {ids}."
        )
    if accepted:
        lines.append(f"The customer {accepted}.")
    if sent:
        lines.append(
            f"Emails sent to {b.customer_email}: "
            + "; ".join(f"{e.kind.replace('_', ' ')} on {venue_time(svc, e.sent_at)}" for e in sent)
            + "."
        )
    lines.append(
        f"Refunded so far: {money(pack.refunded_cents, cur)}." if pack.refunds else "No refund was requested or made."
    )
    lines.append(
        f"The bank's reason: {reason_words(pack.case.reason).lower()}. Our records show the room was held for the "
        "customer as booked. The venue keeps a PDF evidence pack with the booking, its calendar events, the "
        "policy, the emails, the refunds and the audit trail."
    )
    return " ".join(lines)


def clean_fields(fields: dict[str, str]) -> dict[str, str]:
    """Evidence edited by staff: only our text fields, trimmed, empty ones left out. ValidationError otherwise."""
    unknown = sorted(set(fields) - set(TEXT_FIELDS))
    problems = [f"{k!r} is not an evidence field Room Desk sends" for k in unknown]
    clean = {k: str(v).strip() for k, v in fields.items() if k in TEXT_FIELDS and str(v or "").strip()}
    problems += [
        f"{FIELD_LABELS[k]} is {len(v):,} characters; Stripe takes at most {MAX_FIELD_CHARS:,}"
        for k, v in clean.items()
        if len(v) > MAX_FIELD_CHARS
    ]
    if not clean:
        problems.append("The evidence is empty: there is nothing to send")
    if problems:
        raise ValidationError(problems)
    return {k: clean[k] for k in TEXT_FIELDS if k in clean}


# --------------------------------------------------------------------------------------------------- PDF


def evidence_pdf(svc: Services, pack: EvidencePack, fields: dict[str, str] | None = None) -> bytes:
    """The evidence pack as a PDF: the dispute, the booking, the calendar events, the policy and terms, the emails,
    the refunds, the audit timeline, and the text sent to Stripe."""
    b, case, cur = pack.booking, pack.case, pack.booking.currency
    tz_label = tz_words(svc)
    doc = Document(
        "Dispute evidence",
        letterhead=letterhead(svc),
        generated_at=pack.generated_at,
        footer=f"Evidence for Stripe dispute {case.dispute_id} · booking {b.reference}",
    )
    doc.fields(
        [
            ("Dispute", f"{case.dispute_id} ({reason_words(case.reason)})"),
            ("Amount disputed", money(case.amount_cents, case.currency)),
            ("Status", status_words(case.status)),
            ("Evidence due", f"{venue_time(svc, case.evidence_due_by)} ({tz_label})"),
            ("Booking", b.reference),
            ("Prepared", f"{venue_time(svc, pack.generated_at)} ({tz_label})"),
        ]
    )
    doc.heading("Summary")
    doc.paragraph((fields or pack.fields).get("uncategorized_text", ""))

    doc.heading("The booking")
    pay = pack.payment
    doc.fields(
        [
            ("Reference", b.reference),
            ("Customer", "\n".join(p for p in (b.customer_name, b.customer_email, b.customer_phone) if p)),
            ("Room", f"{pack.room_name}, {svc.catalogue.venue.name}"),
            ("Booked", f"{venue_time(svc, b.created_at)} ({b.channel}, by {b.created_by})"),
            (
                "Amount",
                money(b.amount_cents, cur)
                + (f" after a {money(b.discount_cents, cur)} discount" if b.discount_cents else ""),
            ),
            (
                "Payment",
                (
                    f"{money(pay.received_cents, cur)} by {pay.method}"
                    + (f", {venue_time(svc, pay.paid_at)}" if pay.paid_at else "")
                )
                if pay
                else "—",
            ),
            ("Stripe PaymentIntent", b.payment_intent_id or "—"),
            ("Confirmed", venue_time(svc, b.confirmed_at)),
        ]
    )
    doc.table(
        ["Day", "Time", "Status", "Price"],
        [
            [
                full_date(leg.day),
                leg_times(svc, leg),
                LEG_WORDS.get(LegState(leg.state), leg.state),
                money(leg.price_cents, cur),
            ]
            for leg in pack.legs
        ],
        (30, 22, 30, 18),
        align=("LEFT", "LEFT", "LEFT", "RIGHT"),
    )

    doc.heading("The room's calendar: the slot reserved")
    if pack.events:
        doc.table(
            ["Day", "Event id", "Status", "Event time", "Title"],
            [[e.day, e.event_id, e.status, e.when or "—", e.summary or "—"] for e in pack.events],
            (17, 36, 11, 17, 19),
            size=8,
        )
        rooms = sorted({e.calendar_id for e in pack.events})
        doc.note("Calendar: " + ", ".join(rooms) + ". Each event carries the booking reference and PaymentIntent.")
    else:
        doc.paragraph("No calendar event was made for this booking.", muted=True)

    doc.heading("Cancellation policy and terms")
    doc.fields(
        [
            ("Policy sold with it", f"{pack.policy} (version {pack.policy_version or '?'})"),
            (
                "Terms accepted",
                f"version {b.terms_version}, {venue_time(svc, b.terms_accepted_at)}" if b.terms_accepted_at else "—",
            ),
            (
                "Room agreement",
                f"version {b.agreement_version}, {venue_time(svc, b.agreement_accepted_at)}"
                if b.agreement_accepted_at
                else "not required",
            ),
        ]
    )

    doc.heading("Emails sent to the customer")
    if pack.emails:
        doc.table(
            ["Kind", "To", "Subject", "Sent"],
            [
                [e.kind.replace("_", " "), e.to, e.subject, venue_time(svc, e.sent_at) if e.sent_at else e.status]
                for e in pack.emails
            ],
            (14, 26, 40, 20),
        )
    else:
        doc.paragraph("No email was sent about this booking.", muted=True)

    doc.heading("Refunds")
    if pack.refunds:
        rows: list[list[object]] = [
            [venue_time(svc, r.at), origin_words(r.origin), r.days or "—", money(r.amount_cents, cur)]
            for r in pack.refunds
        ]
        rows.append(["", "Total refunded", "", money(pack.refunded_cents, cur)])
        doc.table(
            ["When", "Why", "Days", "Amount"],
            rows,
            (22, 44, 20, 14),
            align=("LEFT", "LEFT", "LEFT", "RIGHT"),
            emphasise_last=True,
        )
    else:
        doc.paragraph("No refund has been made on this booking.", muted=True)

    doc.heading("Timeline")
    if pack.timeline:
        doc.table(
            ["When", "Source", "What", "Details"],
            [
                [venue_time(svc, r["at"]), r["source"], str(r["what"]).removeprefix("booking."), r.get("detail") or ""]
                for r in pack.timeline
            ],
            (20, 12, 22, 46),
            size=8,
        )
    else:
        doc.paragraph("Nothing recorded.", muted=True)

    doc.heading("Evidence text for Stripe")
    for key, value in (fields or pack.fields).items():
        doc.paragraph(f"{FIELD_LABELS.get(key, key)} ({key})", size=9, bold=True)
        doc.paragraph(
            "The summary on page 1." if key == "uncategorized_text" else value,
            size=9,
            muted=key == "uncategorized_text",
        )
    return doc.output()


def evidence_pdf_file(svc: Services, case_id: int, fields: dict[str, str] | None = None) -> tuple[str, bytes]:
    """The dispute's evidence pack as (file name, PDF bytes), with `fields` (edited by staff) or the assembled ones."""
    pack = assemble_evidence(svc, case_id)
    return pack.filename, evidence_pdf(svc, pack, clean_fields(fields) if fields else None)


# --------------------------------------------------------------------------------------------------- submit


@dataclass(frozen=True)
class EvidenceResult:
    case: DisputeSummary
    submitted: bool
    fields: dict[str, str]
    pdf_sha256: str


def _check_not_submitted(case: DisputeSummary) -> None:
    if case.evidence_submitted_at is not None:
        who = case.evidence_submitted_by or "someone"
        raise InvalidState(
            f"The evidence for dispute {case.dispute_id} was already submitted ({case.evidence_submitted_at:%Y-%m-%d}"
            f" by {who}); Stripe takes one submission"
        )


def _check_can_respond(case: DisputeSummary, now: datetime, dispute: Json) -> None:
    _check_not_submitted(case)
    if case.status not in RESPONDABLE:
        raise InvalidState(
            f"Dispute {case.dispute_id} is {status_words(case.status).lower()}: Stripe takes evidence only while a "
            "dispute needs a response"
        )
    past_due = bool((dispute.get("evidence_details") or {}).get("past_due"))
    if past_due or (case.evidence_due_by is not None and case.evidence_due_by <= now):
        raise InvalidState(
            f"The evidence for dispute {case.dispute_id} was due {case.evidence_due_by:%Y-%m-%d %H:%M} UTC; the "
            "deadline has passed and Stripe no longer accepts evidence"
            if case.evidence_due_by
            else f"The deadline for dispute {case.dispute_id} has passed; Stripe no longer accepts evidence"
        )


def save_evidence(
    svc: Services, case_id: int, *, submit: bool, actor: str, fields: dict[str, str] | None = None
) -> EvidenceResult:
    """Send the evidence to Stripe: as a draft (`submit=False`, as often as wanted) or for good (`submit=True`,
    once). Re-reads the dispute from Stripe first; refuses (InvalidState) once it is submitted, no longer needs a
    response, or is past its due date. Records the fields, the PDF's SHA-256 and, on submission, who and when."""
    now = svc.now()
    case = get_case(svc, case_id, now=now)
    _check_not_submitted(case)  # our own record first: a second submission never even asks Stripe
    dispute = fetch_dispute(svc, case.dispute_id)
    record_dispute(svc, dispute, actor=actor, now=now)
    case = get_case(svc, case_id, now=now)
    _check_can_respond(case, now, dispute)
    pack = assemble_evidence(svc, case_id, now=now)
    final = clean_fields(fields) if fields else pack.fields
    pdf = evidence_pdf(svc, pack, final)
    digest = hashlib.sha256(pdf).hexdigest()
    result = svc.payments.submit_dispute_evidence(case.dispute_id, final, submit)
    with svc.session() as s:
        row = s.get(DisputeCase, case_id)
        assert row is not None
        booking = s.get(Booking, row.booking_id) if row.booking_id is not None else None
        row.evidence = dict(final)
        row.evidence_pdf_sha256 = digest
        if submit:
            row.evidence_submitted_at = now
            row.evidence_submitted_by = actor
        values = _values(result) if result.get("id") == row.dispute_id else {}
        row.status = values.get("status") or row.status
        row.updated_at = now
        audit.record(
            s,
            "booking.dispute.evidence.submitted" if submit else "booking.dispute.evidence.saved",
            actor=actor,
            at=now,
            booking=booking,
            payment_intent=row.payment_intent_id,
            message="Dispute evidence submitted to Stripe" if submit else "Dispute evidence saved to Stripe as a draft",
            dispute_id=row.dispute_id,
            fields=sorted(final),
            pdf_sha256=digest,
            status=row.status,
        )
    return EvidenceResult(get_case(svc, case_id, now=now), submit, final, digest)
