"""Read models of the disputes (services.finance.disputes keeps them in step with Stripe and sends the evidence):
the cases with the time left to answer each, and the evidence pack — assembled from what Room Desk knows about the
booking, its text fields for Stripe, and its PDF. No writes here; assembling reads Stripe (the card) and the
calendars (the events)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import col, select

from models.tables import ACTIVE_LEG_STATES, Booking, BookingLeg, DisputeCase, LegState
from services.booking.queries import BookingDetail, booking_detail, booking_timeline
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
from services.notify.emails import policy_text
from services.rules import audit_words
from services.rules.fmt import money, payload_text, plural

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
SOON_DAYS = 3  # a dispute due within this many days is highlighted


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
    time_left: timedelta | None = None  # until the evidence is due (negative once overdue); None when not needed

    @property
    def needs_response(self) -> bool:
        return self.status in RESPONDABLE and self.evidence_submitted_at is None

    @property
    def can_respond(self) -> bool:
        """Evidence can still be saved or submitted: it needs a response and the due date has not passed."""
        return self.needs_response and not self.overdue

    @property
    def due_soon(self) -> bool:
        """Not overdue, but due within SOON_DAYS: the list highlights it."""
        return not self.overdue and self.days_left is not None and self.days_left < SOON_DAYS

    @property
    def status_words(self) -> str:
        return status_words(self.status)

    @property
    def reason_words(self) -> str:
        return reason_words(self.reason)


def summary(row: DisputeCase, booking: Booking | None, now: datetime) -> DisputeSummary:
    assert row.id is not None
    waiting = row.status in RESPONDABLE and row.evidence_submitted_at is None and row.evidence_due_by is not None
    days_left = overdue = time_left = None
    if waiting and row.evidence_due_by is not None:
        time_left = row.evidence_due_by - now
        days_left = math.floor(time_left / timedelta(days=1))
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
        time_left=time_left,
    )


def list_cases(svc: Services, *, now: datetime | None = None) -> list[DisputeSummary]:
    """Every dispute we know of: those still needing a response first, soonest due first; then the rest, newest
    first."""
    now = now or svc.now()
    with svc.read_session() as s:
        rows = list(s.exec(select(DisputeCase, Booking).join(Booking, isouter=True, onclause=_booking_join())))
        cases = [summary(row, b, now) for row, b in rows]
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
    with svc.read_session() as s:
        row = s.get(DisputeCase, case_id)
        if row is None:
            raise NotFound(f"No dispute #{case_id}")
        booking = s.get(Booking, row.booking_id) if row.booking_id is not None else None
        return summary(row, booking, now or svc.now())


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


def _timeline(svc: Services, detail: BookingDetail, now: datetime) -> list[dict[str, Any]]:
    """The booking's joined timeline up to `now`, our audit rows' payloads in words. The dispute's own story is
    left out: it is no evidence about the service."""
    assert detail.booking.id is not None

    def describe(payload: dict[str, Any]) -> str:
        return payload_text(
            payload, currency=detail.booking.currency, day=full_date, moment=lambda m: venue_time(svc, m)
        )

    def word(action: str, payload: dict[str, Any]) -> str:
        return audit_words.sentence(
            action, payload, currency=detail.booking.currency, moment=lambda m: venue_time(svc, m)
        )

    return [
        row
        for row in booking_timeline(svc, detail.booking.id, describe=describe, word=word)
        if not str(row["code"]).startswith("booking.dispute.") and row["at"] <= now
    ]


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
            f"Booking {b.reference}, {plural(len(pack.legs), 'day')}, {money(b.amount_cents, cur)}."
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
        + (f", and blocked on the room's calendar ({plural(len(reserved), 'event')})" if reserved else "")
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
    # Never claim an acceptance the record does not show (a phone booking paid by link may have none).
    policy = (
        "the cancellation policy the customer accepted"
        if b.terms_accepted_at is not None
        else f"the venue's cancellation policy (version {b.policy_snapshot.get('version') or 'of the booking'})"
    )
    parts.append(
        f"Under {policy}, no further refund is due: of {money(paid, cur)} paid, "
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
            [[venue_time(svc, r["at"]), r["source"], str(r["what"]), r.get("detail") or ""] for r in pack.timeline],
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
