"""The customer's manage page: their booking (each day with its time and state, what was paid, refunds), the receipt
and the calendar file, and cancelling one day or all of them under the booking's refund policy.

The link is the pay link's secret (`/manage/<reference>?k=<token>`, see customer.open_booking): a wrong token is an
unknown booking. A day can be cancelled here until `SELF_SERVICE_CUTOFF_HOURS` before it starts (then the venue does
it), and not at all when `SELF_SERVICE_CHANGES` is off. The customer sees the refund before confirming; the
confirmation carries that amount, and if the policy would now give a different one (a refund band ended in
between) nothing is cancelled and the new amount is shown to confirm again. The cancelling itself is
booking.cancel_booking, as for staff, with actor "customer": refund, calendar events, audit, cancellation email.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import col, select

from models.tables import ACTIVE_LEG_STATES, Booking, BookingLeg, BookingStatus, LegState, RefundRecord
from services import booking
from services.booking import CancelResult
from services.core.catalogue import Venue
from services.core.context import Services
from services.core.errors import InvalidState, NotAllowed, QuoteChanged, ValidationError
from services.finance.receipts import LEG_WORDS, booking_receipt_pdf, origin_words
from services.notify import emails
from services.rules.fmt import day_label, moment_label, money, zone_label
from services.rules.self_service import change_deadline, open_for_changes
from services.web.customer import open_booking

CANCEL_REASON = "Cancelled by the customer on their manage page"
CONFIRMED_STATUSES = (BookingStatus.CONFIRMED, BookingStatus.PARTLY_CANCELLED, BookingStatus.COMPLETED)


@dataclass(frozen=True)
class ManageDay:
    leg_id: int
    day: date
    label: str
    start: str
    end: str
    state: str  # in words: Booked, Cancelled, Used…
    price: str
    refunded: str | None
    booked: bool  # confirmed and still to come
    cancelled: bool  # cancelled or refunded
    leg_state: LegState
    open_for_changes: bool  # booked, before the cut-off, and self-service changes are on
    closes: str  # when the cut-off falls, venue time ('Mon 2 Mar 10:00')

    @property
    def iso(self) -> str:
        return self.day.isoformat()


@dataclass(frozen=True)
class RefundLine:
    when: str
    amount: str
    why: str


@dataclass(frozen=True)
class ManageView:
    reference: str
    token: str
    status: BookingStatus
    room_name: str
    venue: Venue
    customer_name: str
    customer_email: str
    days: list[ManageDay]
    total: str
    discount: str | None
    paid: bool
    refunds: list[RefundLine]
    refunded: str | None
    net: str
    extras: list[tuple[str, str]]
    policy: str
    changes_enabled: bool  # SELF_SERVICE_CHANGES
    cutoff_hours: int
    zone: str  # 'Vancouver time'
    currency: str

    @property
    def open_days(self) -> list[ManageDay]:
        return [d for d in self.days if d.open_for_changes]

    @property
    def closed_days(self) -> list[ManageDay]:
        """Booked days the customer can no longer change themselves: the page gives the venue's contact instead."""
        return [d for d in self.days if d.booked and not d.open_for_changes]

    @property
    def awaiting_payment(self) -> bool:
        return self.status == BookingStatus.AWAITING_PAYMENT

    @property
    def has_calendar(self) -> bool:
        return self.status in CONFIRMED_STATUSES

    @property
    def query(self) -> str:
        return f"k={self.token}"

    @property
    def path(self) -> str:
        return f"/manage/{self.reference}?{self.query}"

    @property
    def pay_path(self) -> str:
        return f"/pay/{self.reference}?{self.query}"


@dataclass(frozen=True)
class DayRefund:
    day: ManageDay
    paid: str
    percent: int
    refund_cents: int
    refund: str
    hours_before: float


@dataclass(frozen=True)
class CancelQuote:
    """What cancelling these days refunds now, under the policy the booking was sold with."""

    view: ManageView
    days: list[DayRefund]
    total_cents: int
    total: str
    whole_booking: bool  # every day still booked is in it

    @property
    def isos(self) -> list[str]:
        return [d.day.iso for d in self.days]


class RefundChanged(InvalidState):
    """The refund the customer confirmed is no longer what the policy gives: nothing was cancelled."""

    def __init__(self, quote: CancelQuote, confirmed_cents: int) -> None:
        shown = money(confirmed_cents, quote.view.currency)
        super().__init__(
            f"The refund for these days is now {quote.total}, not the {shown} shown before (a refund band has ended "
            "since). Nothing was cancelled; please confirm again."
        )
        self.quote = quote


def _read(
    svc: Services, b: Booking, legs: Sequence[BookingLeg], refunds: Sequence[RefundRecord], now: datetime
) -> ManageView:
    tz = svc.settings.tz
    settings = svc.settings
    cur = b.currency
    room = svc.catalogue.room(b.room_slug)
    labels = {f.key: f.label for f in room.extras}
    days = []
    for leg in sorted(legs, key=lambda leg: leg.day):
        assert leg.id is not None
        booked = leg.state == LegState.CONFIRMED and leg.starts_at > now
        days.append(
            ManageDay(
                leg_id=leg.id,
                day=leg.day,
                label=day_label(leg.day),
                start=f"{leg.starts_at.astimezone(tz):%H:%M}",
                end=f"{leg.ends_at.astimezone(tz):%H:%M}",
                state=LEG_WORDS.get(LegState(leg.state), str(leg.state)),
                price=money(leg.price_cents, cur),
                refunded=money(leg.refunded_cents, cur) if leg.refunded_cents else None,
                booked=booked,
                cancelled=leg.state in (LegState.CANCELLED, LegState.REFUNDED),
                leg_state=LegState(leg.state),
                open_for_changes=booked
                and settings.self_service_changes
                and open_for_changes(leg.starts_at, now, settings.self_service_cutoff_hours),
                closes=moment_label(change_deadline(leg.starts_at, settings.self_service_cutoff_hours), tz),
            )
        )
    refunded = sum(r.amount_cents for r in refunds)
    paid = b.confirmed_at is not None or bool(refunds)
    return ManageView(
        reference=b.reference,
        token=b.pay_token or "",
        status=BookingStatus(b.status),
        room_name=room.name,
        venue=svc.catalogue.venue,
        customer_name=b.customer_name,
        customer_email=b.customer_email,
        days=days,
        total=money(b.amount_cents, cur),
        discount=money(b.discount_cents, cur) if b.discount_cents else None,
        paid=paid,
        refunds=[
            RefundLine(moment_label(r.created_at, tz), money(r.amount_cents, cur), origin_words(r.origin))
            for r in refunds
        ],
        refunded=money(refunded, cur) if refunded else None,
        net=money((b.amount_cents if paid else 0) - refunded, cur),
        extras=[(labels.get(k, k.replace("_", " ").capitalize()), str(v)) for k, v in b.extras.items()],
        policy=emails.policy_text(b.policy_snapshot),
        changes_enabled=settings.self_service_changes,
        cutoff_hours=settings.self_service_cutoff_hours,
        zone=zone_label(settings.venue_timezone),
        currency=cur,
    )


def _load(svc: Services, reference: str, token: str | None, now: datetime) -> tuple[int, ManageView]:
    with svc.session() as s:
        b = open_booking(s, reference, token)
        assert b.id is not None
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id)))
        refunds = list(
            s.exec(select(RefundRecord).where(RefundRecord.booking_id == b.id).order_by(col(RefundRecord.created_at)))
        )
        return b.id, _read(svc, b, legs, refunds, now)


def view(svc: Services, reference: str, token: str | None, *, now: datetime | None = None) -> ManageView:
    """The manage page's booking, read in one transaction. NotFound for a wrong reference or token."""
    return _load(svc, reference, token, now or svc.now())[1]


def _quote(svc: Services, booking_id: int, v: ManageView, days: Sequence[date] | None, now: datetime) -> CancelQuote:
    if not v.changes_enabled:
        raise NotAllowed(f"Bookings are changed by {v.venue.name}: please {contact_words(v.venue)}.")
    by_day = {d.day: d for d in v.days}
    unknown = [d for d in days or () if d not in by_day]
    if unknown:
        raise ValidationError([f"day: {d.isoformat()} is not a day of booking {v.reference}" for d in unknown])
    if days is None:
        chosen = v.open_days
        if not chosen:
            raise InvalidState(_closed_words(v, v.closed_days) if v.closed_days else "No day is left to cancel.")
    else:
        chosen = [by_day[d] for d in sorted(set(days))]
        not_booked = [d for d in chosen if not d.booked]
        if not_booked:
            raise InvalidState("; ".join(f"{d.label} cannot be cancelled: {_why_not(d)}" for d in not_booked) + ".")
        closed = [d for d in chosen if not d.open_for_changes]
        if closed:
            raise InvalidState(_closed_words(v, closed))
    quotes = {leg.id: q for leg, q in booking.cancellation_quote(svc, booking_id, [d.leg_id for d in chosen], now=now)}
    cur = v.currency
    lines = []
    for d in chosen:
        q = quotes[d.leg_id]
        lines.append(
            DayRefund(
                d, money(q.paid_cents, cur), q.percent, q.refund_cents, money(q.refund_cents, cur), q.hours_before
            )
        )
    total = sum(line.refund_cents for line in lines)
    whole = {d.leg_id for d in chosen} == {d.leg_id for d in v.days if d.booked}
    return CancelQuote(v, lines, total, money(total, cur), whole)


def _why_not(d: ManageDay) -> str:
    if d.cancelled:
        return f"it is {d.state.lower()}"
    return "it has begun" if d.leg_state in ACTIVE_LEG_STATES else "it was never confirmed"


def _closed_words(v: ManageView, closed: Sequence[ManageDay]) -> str:
    which = ", ".join(d.label for d in closed)
    return (
        f"{which} {'is' if len(closed) == 1 else 'are'} closed for changes online (from {v.cutoff_hours} h before "
        f"the start). Please {contact_words(v.venue)}."
    )


def contact_words(venue: Venue) -> str:
    """'call 604-555-0142 or email admin@…' — how the customer reaches the venue."""
    ways = [f"call {venue.phone}" if venue.phone else "", f"email {venue.email}" if venue.email else ""]
    return " or ".join(w for w in ways if w) or "contact us"


def cancel_quote(
    svc: Services, reference: str, token: str | None, days: Sequence[date] | None, *, now: datetime | None = None
) -> CancelQuote:
    """What cancelling these days (None: every day still open for changes) refunds now. Raises NotAllowed when
    self-service changes are off, ValidationError for a day not in the booking, InvalidState for a day that is not
    booked or is past the cut-off."""
    now = now or svc.now()
    booking_id, v = _load(svc, reference, token, now)
    return _quote(svc, booking_id, v, days, now)


def cancel(
    svc: Services,
    reference: str,
    token: str | None,
    days: Sequence[date] | None,
    *,
    confirmed_refund_cents: int,
    now: datetime | None = None,
) -> CancelResult:
    """Cancel these days as the customer confirmed them: refunded under the booking's policy, exactly the amount
    they were shown (else RefundChanged and nothing is cancelled), with the cancellation email."""
    now = now or svc.now()
    booking_id, v = _load(svc, reference, token, now)
    if days and _already_cancelled(v, days):
        # The same confirmation sent twice (a double click, a reload): the first one did it; show its outcome.
        return CancelResult(booking_id, 0, sorted(set(days)))
    q = _quote(svc, booking_id, v, days, now)
    if q.total_cents != confirmed_refund_cents:
        raise RefundChanged(q, confirmed_refund_cents)
    try:
        # Quoted again under the booking's lease: exactly these days and this refund, or nothing.
        return booking.cancel_booking(
            svc,
            booking_id,
            actor="customer",
            leg_ids=[d.day.leg_id for d in q.days],
            reason=CANCEL_REASON,
            now=now,
            expected_refund_cents=q.total_cents,
        )
    except QuoteChanged:
        _, v = _load(svc, reference, token, now)
        raise RefundChanged(_quote(svc, booking_id, v, days, now), confirmed_refund_cents) from None


def _already_cancelled(v: ManageView, days: Sequence[date]) -> bool:
    by_day = {d.day: d for d in v.days}
    return all(d in by_day and by_day[d].cancelled for d in days)


def receipt(svc: Services, reference: str, token: str | None) -> tuple[str, bytes]:
    """The booking's receipt PDF (file name, bytes); InvalidState when nothing was paid."""
    with svc.session() as s:
        b = open_booking(s, reference, token)
        assert b.id is not None
        booking_id = b.id
    return booking_receipt_pdf(svc, booking_id)
