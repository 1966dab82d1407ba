"""The customer's manage page: their booking (each day with its time and state, what was paid, refunds), the receipt
and the calendar file, and cancelling one day or all of them under the booking's refund policy.

The link is the pay link's secret (`/manage/<reference>?k=<token>`, see customer.open_booking): a wrong token is an
unknown booking. A day can be cancelled here until `SELF_SERVICE_CUTOFF_HOURS` before it starts (then the venue does
it), and not at all when `SELF_SERVICE_CHANGES` is off. The customer sees the refund before confirming; the
confirmation carries that amount, and if the policy would now give a different one (a refund band ended in
between) nothing is cancelled and the new amount is shown to confirm again. The cancelling itself is
booking.cancel_booking, as for staff, with actor "customer": refund, calendar events, audit, cancellation email.

Changing a day (its date, its times) follows the same shape: a preview (booking.plan_change: old → new, the
difference and every reason it cannot be made, with this page's cut-off applied to the day as it is and as it would
become), then a confirmation carrying the difference shown, made by booking.change_booking (channel "web"). A change
that costs more is held and paid on its own page (`/manage/<ref>/change/<n>?k=…`); the webhook, or the sandbox's
test card, makes it. Once no day is open for changes, the customer can ask the venue in a few words instead: the
request goes to the venue's address through the outbox, once per booking and text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

import sqlalchemy as sa
from markupsafe import escape
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.tables import (
    ACTIVE_LEG_STATES,
    Amendment,
    AmendmentState,
    Booking,
    BookingLeg,
    BookingStatus,
    EmailOutbox,
    LegState,
    RefundRecord,
)
from services import booking
from services.booking import CancelResult, Change
from services.core import audit
from services.core.catalogue import Venue
from services.core.context import Services
from services.core.errors import (
    InvalidState,
    NotAllowed,
    NotAvailable,
    NotFound,
    QuoteChanged,
    ValidationError,
)
from services.finance.receipts import LEG_WORDS, booking_receipt_pdf, origin_words
from services.notify import emails, outbox
from services.rules.bill import registration_to_show, sold_bill
from services.rules.fmt import day_label, hhmm, moment_label, money, zone_label
from services.rules.self_service import change_deadline, closed_among, open_for_changes
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
    bill_rows: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # subtotal, discount, taxes, total
    taxed: bool = False
    registration_number: str | None = None  # the venue's GST/HST number, shown with the tax
    changes_made: int = 0  # the booking's changes so far (any state): a confirmed change is number changes_made + 1
    pending_change: int | None = None  # the number of a change waiting for payment

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
    svc: Services,
    b: Booking,
    legs: Sequence[BookingLeg],
    refunds: Sequence[RefundRecord],
    now: datetime,
    changes: Sequence[Amendment] = (),
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
    bill = sold_bill(b)  # what the payment charged, in parts, at the rates it was sold at
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
        bill_rows=bill.rows(cur),
        taxed=bool(bill.taxes),
        registration_number=registration_to_show(bill, settings.gst_registration_number),
        changes_made=max((a.number for a in changes), default=0),
        pending_change=next((a.number for a in changes if a.state == AmendmentState.AWAITING_PAYMENT), None),
    )


def _load(svc: Services, reference: str, token: str | None, now: datetime) -> tuple[int, ManageView]:
    with svc.read_session() as s:
        b = open_booking(s, reference, token)
        assert b.id is not None
        legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id)))
        refunds = list(
            s.exec(select(RefundRecord).where(RefundRecord.booking_id == b.id).order_by(col(RefundRecord.created_at)))
        )
        changes = list(s.exec(select(Amendment).where(Amendment.booking_id == b.id)))
        return b.id, _read(svc, b, legs, refunds, now, changes)


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
    with svc.read_session() as s:
        b = open_booking(s, reference, token)
        assert b.id is not None
        booking_id = b.id
    return booking_receipt_pdf(svc, booking_id)


# --------------------------------------------------------------------------------------------- changing a day

CHANGE_REASON = "Changed by the customer on their manage page"
MAX_CHANGE_DAYS = 31
_DAY_FIELD = re.compile(r"(date|start|end)_(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class DayChoice:
    """One booked day as the customer wants it: `day` names it (its date now), the rest is its new shape."""

    day: date
    new_day: date
    start: time
    end: time

    @property
    def iso(self) -> str:
        return self.day.isoformat()


@dataclass(frozen=True)
class ChangeChoice:
    """The change form as sent: every row the customer saw, changed or not."""

    days: tuple[DayChoice, ...]

    def fields(self) -> list[tuple[str, str]]:
        """The form's fields, for the confirmation (and the way back) to send exactly this again."""
        out = []
        for c in self.days:
            out += [(f"date_{c.iso}", c.new_day.isoformat()), (f"start_{c.iso}", hhmm(c.start))]
            out.append((f"end_{c.iso}", hhmm(c.end)))
        return out


def choice_from_fields(items: Iterable[tuple[str, str]]) -> tuple[ChangeChoice | None, list[str]]:
    """The change form (`date_<day>`, `start_<day>`, `end_<day>` per booked day, `same_times=yes` to give every day
    the first day's times) → a ChangeChoice, or None and the problems, each naming its field."""
    rows: dict[str, dict[str, str]] = {}
    same_times = False
    for name, value in items:
        if name == "same_times":
            same_times = value == "yes"
        elif match := _DAY_FIELD.fullmatch(name):
            rows.setdefault(match.group(2), {})[match.group(1)] = value.strip()
    if not rows:
        return None, ["date: pick a new date or new times for a day of the booking"]
    if len(rows) > MAX_CHANGE_DAYS:
        return None, [f"date: at most {MAX_CHANGE_DAYS} days at a time"]
    problems: list[str] = []
    days: list[DayChoice] = []
    first_times: tuple[time, time] | None = None
    for iso, row in sorted(rows.items()):
        try:
            day = date.fromisoformat(iso)
        except ValueError:
            problems.append(f"date_{iso}: {iso} is not a date")
            continue
        label = day_label(day)
        new_day = _field_date(row.get("date", ""), f"date_{iso}", label, problems)
        start = _field_time(row.get("start", ""), f"start_{iso}", label, problems)
        end = _field_time(row.get("end", ""), f"end_{iso}", label, problems)
        if same_times and first_times is not None:
            start, end = first_times
        elif start is not None and end is not None and end <= start:
            problems.append(f"end_{iso}: the end ({hhmm(end)}) must be after the start ({hhmm(start)}) on {label}")
            continue
        if new_day is None or start is None or end is None:
            continue
        first_times = first_times or (start, end)
        days.append(DayChoice(day, new_day, start, end))
    return (None, problems) if problems else (ChangeChoice(tuple(days)), [])


def _field_date(raw: str, field: str, label: str, problems: list[str]) -> date | None:
    if not raw:
        problems.append(f"{field}: pick the new date for {label}")
        return None
    try:
        if len(raw) > 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        problems.append(f"{field}: {raw[:20]!r} is not a date (YYYY-MM-DD)")
        return None


def _field_time(raw: str, field: str, label: str, problems: list[str]) -> time | None:
    try:
        if not raw or len(raw) > 5:
            raise ValueError(raw)
        return time.fromisoformat(raw)
    except ValueError:
        problems.append(f"{field}: {raw[:20]!r} is not a time (HH:MM) for {label}")
        return None


@dataclass(frozen=True)
class ChangeLine:
    old: str  # 'Wed 4 Mar 10:00–12:00'
    new: str
    old_price: str
    new_price: str


@dataclass(frozen=True)
class ChangePreview:
    """What the change would do, before anything happens: the days old → new, the difference, and every reason it
    cannot be made."""

    view: ManageView
    choice: ChangeChoice
    change: Change
    lines: list[ChangeLine]
    reasons: list[str]
    net_cents: int

    @property
    def possible(self) -> bool:
        return not self.reasons

    @property
    def amount(self) -> str:
        return money(abs(self.net_cents), self.view.currency)

    @property
    def outcome(self) -> str:
        """What happens to the money, in words."""
        return net_words(self.net_cents, self.view.currency)

    @property
    def base(self) -> int:
        return self.view.changes_made


def net_words(net_cents: int, currency: str) -> str:
    if net_cents > 0:
        return f"You pay {money(net_cents, currency)} more"
    if net_cents < 0:
        return f"We refund {money(-net_cents, currency)} to your card"
    return "Same price: nothing to pay, nothing refunded"


class ChangeQuoteChanged(InvalidState):
    """The difference the customer confirmed is no longer what the change settles at: nothing was changed."""

    def __init__(self, preview: ChangePreview, confirmed_cents: int) -> None:
        cur = preview.view.currency
        super().__init__(
            f"This change now comes to: {net_words(preview.net_cents, cur).lower()} — not "
            f"{net_words(confirmed_cents, cur).lower()} as shown before (a refund band has ended, or the booking "
            "changed). Nothing was changed; please confirm again."
        )
        self.preview = preview


def change_preview(
    svc: Services, reference: str, token: str | None, choice: ChangeChoice, *, now: datetime | None = None
) -> ChangePreview:
    """What this change would do now. Raises NotAllowed when self-service changes are off, ValidationError for a day
    not in the booking or a change that changes nothing, InvalidState for a day not booked or past the cut-off;
    the plan's own reasons (closed day, hours, taken) come back in `reasons`."""
    now = now or svc.now()
    booking_id, v = _load(svc, reference, token, now)
    return _preview(svc, booking_id, v, choice, now)


def _preview(svc: Services, booking_id: int, v: ManageView, choice: ChangeChoice, now: datetime) -> ChangePreview:
    if not v.changes_enabled:
        raise NotAllowed(f"Bookings are changed by {v.venue.name}: please {contact_words(v.venue)}.")
    by_day = {d.day: d for d in v.days}
    unknown = [c for c in choice.days if c.day not in by_day]
    if unknown:
        raise ValidationError([f"date_{c.iso}: {c.iso} is not a day of booking {v.reference}" for c in unknown])
    rows = [(c, by_day[c.day]) for c in choice.days]
    moves = {d.leg_id: c.new_day for c, d in rows if c.new_day != d.day}
    timed = [(c, d) for c, d in rows if (hhmm(c.start), hhmm(c.end)) != (d.start, d.end)]
    touched = [d for c, d in rows if d.leg_id in moves or (c, d) in timed]
    if not touched:
        raise ValidationError(["date: nothing to change: pick a new date or new times for a day"])
    not_booked = [d for d in touched if not d.booked]
    if not_booked:
        raise InvalidState("; ".join(f"{d.label} cannot be changed: {_why_not(d)}" for d in not_booked) + ".")
    closed = [d for d in touched if not d.open_for_changes]
    if closed:
        raise InvalidState(_closed_words(v, closed))
    new_times = {(c.start, c.end) for c, _ in timed}
    if len(new_times) > 1:
        # One change gives one set of new times (booking.Change): different times per day are one change each.
        raise ValidationError(
            [
                f"start_{timed[1][0].iso}: different new times for different days: change one day's times at a time, "
                "or tick “Same times for every day”"
            ]
        )
    change = Change(
        moves=moves,
        times=next(iter(new_times)) if new_times else None,
        time_legs=frozenset(d.leg_id for _, d in timed) if timed else None,
    )
    plan = booking.plan_change(svc, booking_id, change, now=now)
    reasons = list(plan.reasons)
    tz = svc.settings.tz
    late = closed_among(
        [datetime.combine(c.new_day, c.start, tzinfo=tz) for c, d in rows if d in touched],
        now,
        v.cutoff_hours,
    )
    if late:
        which = ", ".join(day_label(s.date()) for s in late)
        reasons.append(
            f"{which} {'is' if len(late) == 1 else 'are'} less than {v.cutoff_hours} h away: only "
            f"{v.venue.name} can move a day there. Please {contact_words(v.venue)}."
        )
    if v.pending_change is not None:
        reasons.append(f"Your change {v.pending_change} is still waiting for payment: pay for it or withdraw it first.")
    cur = v.currency
    lines = [
        ChangeLine(
            _shape_label(d.old) if d.old else "—",
            _shape_label(d.new) if d.new else "dropped",
            money(d.old_left_cents, cur),
            money(d.new_price_cents, cur),
        )
        for d in plan.settlement.days
        if d.kind != "kept"
    ]
    return ChangePreview(v, choice, change, lines, list(dict.fromkeys(reasons)), plan.settlement.net_cents)


def _shape_label(shape: object) -> str:
    day, start, end = (getattr(shape, k) for k in ("day", "start", "end"))
    return f"{day_label(day)} {hhmm(start)}–{hhmm(end)}"


@dataclass(frozen=True)
class ChangeDone:
    number: int
    outcome: str  # the Amendment's state: applied | applying | awaiting_payment | failed | lapsed | withdrawn

    @property
    def made(self) -> bool:
        return self.outcome in (AmendmentState.APPLIED, AmendmentState.APPLYING)


def make_change(
    svc: Services,
    reference: str,
    token: str | None,
    choice: ChangeChoice,
    *,
    confirmed_net_cents: int,
    base: int,
    now: datetime | None = None,
) -> ChangeDone:
    """Make the change as the customer confirmed it: exactly the difference shown (else ChangeQuoteChanged and
    nothing happens). The same confirmation sent again (a double click, a reload) gives the first one's outcome:
    `base` is the number of changes the booking had when it was shown. Raises NotAvailable with the reasons."""
    now = now or svc.now()
    booking_id, v = _load(svc, reference, token, now)
    earlier = _same_change(svc, booking_id, base, choice)
    if earlier is not None:
        return earlier
    p = _preview(svc, booking_id, v, choice, now)
    if p.reasons:
        raise NotAvailable(p.reasons)
    if p.net_cents != confirmed_net_cents:
        raise ChangeQuoteChanged(p, confirmed_net_cents)
    try:
        # Planned again under the booking's lease: exactly this change and this difference, or nothing.
        result = booking.change_booking(
            svc,
            booking_id,
            p.change,
            actor="customer",
            expected_net_cents=confirmed_net_cents,
            reason=CHANGE_REASON,
            channel="web",
            now=now,
        )
    except QuoteChanged:
        _, v = _load(svc, reference, token, now)
        raise ChangeQuoteChanged(_preview(svc, booking_id, v, choice, now), confirmed_net_cents) from None
    return ChangeDone(result.number, result.outcome)


def _same_change(svc: Services, booking_id: int, base: int, choice: ChangeChoice) -> ChangeDone | None:
    """The change made right after the preview this confirmation came from, if it is this very change."""
    with svc.session() as s:
        a = s.exec(select(Amendment).where(Amendment.booking_id == booking_id, Amendment.number == base + 1)).first()
    if a is None or a.actor != "customer":
        return None
    asked = {(c.iso, c.new_day.isoformat(), hhmm(c.start), hhmm(c.end)) for c in choice.days}
    made = [
        (row["old"]["day"], row["new"]["day"], row["new"]["start"], row["new"]["end"])
        for row in a.plan
        if row.get("old") and row.get("new")
    ]
    if made and len(made) == len(a.plan) and set(made) <= asked:
        return ChangeDone(a.number, str(a.state))
    return None


# --------------------------------------------------------------------------------------------- a change's own page


@dataclass(frozen=True)
class ChangeStatus:
    """One change of the booking, as its page shows it."""

    view: ManageView
    number: int
    state: str  # an AmendmentState, or "expired": waiting for payment past its hold (the worker lapses it soon)
    lines: list[str]
    net_cents: int
    hold_until: str | None
    payment_intent_id: str | None
    refunded: str | None  # a failed change: what went back

    @property
    def amount(self) -> str:
        return money(abs(self.net_cents), self.view.currency)

    @property
    def payable(self) -> bool:
        return self.state == AmendmentState.AWAITING_PAYMENT

    @property
    def path(self) -> str:
        return f"/manage/{self.view.reference}/change/{self.number}?{self.view.query}"


def _amendment(s: Session, booking_id: int, number: int) -> Amendment:
    a = s.exec(select(Amendment).where(Amendment.booking_id == booking_id, Amendment.number == number)).first()
    if a is None:
        raise NotFound("This link is not valid. Check it against your email, or call us.")
    return a


def change_status(
    svc: Services, reference: str, token: str | None, number: int, *, now: datetime | None = None
) -> ChangeStatus:
    """The booking's change `number` (NotFound for a wrong link or a change the booking never had)."""
    now = now or svc.now()
    booking_id, v = _load(svc, reference, token, now)
    with svc.session() as s:
        a = _amendment(s, booking_id, number)
        refunded = None
        state = str(a.state)
        if a.state == AmendmentState.FAILED:
            back = s.exec(
                select(sa.func.sum(RefundRecord.amount_cents)).where(
                    RefundRecord.booking_id == booking_id, col(RefundRecord.payment_intent_id) == a.payment_intent_id
                )
            ).one()
            refunded = money(int(back or a.net_cents), v.currency)
        expires = a.hold_expires_at
        if a.state == AmendmentState.AWAITING_PAYMENT and expires is not None and expires <= now:
            state = "expired"
        return ChangeStatus(
            v,
            a.number,
            state,
            list(a.summary),
            a.net_cents,
            moment_label(expires, svc.settings.tz) if expires else None,
            a.payment_intent_id,
            refunded,
        )


def finish_change_after_return(svc: Services, reference: str, token: str | None, number: int) -> None:
    """Stripe sends the customer back to the change's page after paying: if the payment went through and the webhook
    has not made the change yet, make it now (leased and idempotent, so racing the webhook is harmless)."""
    st = change_status(svc, reference, token, number)
    if st.state not in (AmendmentState.AWAITING_PAYMENT, "expired") or not st.payment_intent_id:
        return
    if svc.payments.retrieve_payment_intent(st.payment_intent_id).get("status") == "succeeded":
        booking.confirm_change_payment(svc, st.payment_intent_id, actor="customer")


def _payable_change(svc: Services, reference: str, token: str | None, number: int, now: datetime) -> ChangeStatus:
    st = change_status(svc, reference, token, number, now=now)
    if st.state == "expired":
        raise InvalidState(f"The hold on this change ran out at {st.hold_until}. Nothing was charged or changed.")
    if not st.payable:
        raise InvalidState("This change is not waiting for payment.")
    return st


def change_client_secret(
    svc: Services, reference: str, token: str | None, number: int, *, now: datetime | None = None
) -> str:
    """The change's PaymentIntent client secret for Stripe's Payment Element, while it waits for payment."""
    st = _payable_change(svc, reference, token, number, now or svc.now())
    secret = svc.payments.retrieve_payment_intent(st.payment_intent_id or "").get("client_secret")
    if not st.payment_intent_id or not secret:
        raise InvalidState("The payment cannot be taken right now; please call us")
    return str(secret)


def pay_change_with_test_card(
    svc: Services,
    reference: str,
    token: str | None,
    number: int,
    *,
    card: str = "pm_card_visa",
    now: datetime | None = None,
) -> None:
    """Sandbox: pay the change's difference with a Stripe test card; then the webhook's work makes it. A declined
    card raises PaymentDeclined and the change keeps its hold."""
    now = now or svc.now()
    _payable_change(svc, reference, token, number, now)
    with svc.session() as s:
        booking_id = open_booking(s, reference, token).id
    assert booking_id is not None
    booking.sandbox_pay_change(svc, booking_id, actor="customer", payment_method=card, now=now)


def withdraw_change(
    svc: Services, reference: str, token: str | None, number: int, *, now: datetime | None = None
) -> None:
    """The customer gives up a change waiting for payment: the hold is released, nothing is charged."""
    now = now or svc.now()
    st = change_status(svc, reference, token, number, now=now)
    if st.state not in (AmendmentState.AWAITING_PAYMENT, "expired"):
        return  # already settled one way or the other: its page says how
    with svc.session() as s:
        booking_id = open_booking(s, reference, token).id
    assert booking_id is not None
    booking.withdraw_change(svc, booking_id, actor="customer", now=now)


# --------------------------------------------------------------------------------------------- asking the venue

REQUEST_MIN_CHARS = 10
REQUEST_MAX_CHARS = 1000


def request_change(
    svc: Services, reference: str, token: str | None, message: str, *, now: datetime | None = None
) -> bool:
    """The customer asks the venue for a change in their own words: audited and emailed to the venue's address
    through the outbox, once per booking and text (True when this call queued it). ValidationError names the field."""
    now = now or svc.now()
    text = "\n".join(line.rstrip() for line in message.replace("\r\n", "\n").strip().split("\n"))
    if len(text) < REQUEST_MIN_CHARS:
        raise ValidationError(
            [f"message: say in a few words what you would like changed (at least {REQUEST_MIN_CHARS} characters)"]
        )
    if len(text) > REQUEST_MAX_CHARS:
        raise ValidationError([f"message: at most {REQUEST_MAX_CHARS} characters (yours has {len(text)})"])
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in text):
        raise ValidationError(["message: plain text only, please"])
    venue = svc.catalogue.venue
    if not venue.email:
        raise InvalidState(f"Please {contact_words(venue)}: requests cannot be sent from this page.")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    try:
        with svc.session() as s:
            b = open_booking(s, reference, token)
            key = f"{b.reference}-change-request-{digest}"
            if s.exec(select(EmailOutbox.id).where(EmailOutbox.idempotency_key == key)).first() is not None:
                return False
            legs = list(s.exec(select(BookingLeg).where(BookingLeg.booking_id == b.id)))
            row = outbox.queue(s, b, kind="change_request", mail=_request_mail(svc, b, legs, text), key=key, now=now)
            row.to = venue.email  # this one goes to the venue, not the customer
            audit.record(
                s, "booking.change.requested", actor="customer", at=now, booking=b, text=text, to=venue.email, key=key
            )
            row_id = row.id
    except IntegrityError:  # the same request sent twice at once: the other one queued it
        return False
    assert row_id is not None
    outbox.deliver(svc, row_id, now=now, actor="customer")  # on a mail outage it stays queued for the worker
    return True


def _request_mail(svc: Services, b: Booking, legs: Sequence[BookingLeg], text: str) -> emails.RenderedEmail:
    tz = svc.settings.tz
    days = [
        f"{day_label(leg.day)} {leg.starts_at.astimezone(tz):%H:%M}–{leg.ends_at.astimezone(tz):%H:%M} "
        f"({LEG_WORDS.get(LegState(leg.state), str(leg.state)).lower()})"
        for leg in sorted(legs, key=lambda leg: leg.day)
    ]
    room = svc.catalogue.room(b.room_slug).name
    subject = f"Change request for booking {b.reference} ({b.customer_name})"
    head = [
        f"{b.customer_name} asks for a change to booking {b.reference}, {room}, from their manage page:",
        "",
        text,
        "",
        f"Reply to: {b.customer_email}" + (f", phone {b.customer_phone}" if b.customer_phone else ""),
        "The booking now:",
        *[f"  {d}" for d in days],
    ]
    body = "\n".join(head) + "\n"
    html = (
        f"<p>{escape(b.customer_name)} asks for a change to booking <strong>{escape(b.reference)}</strong>, "
        f'{escape(room)}, from their manage page:</p><blockquote style="white-space:pre-wrap">{escape(text)}'
        f'</blockquote><p>Reply to: <a href="mailto:{escape(b.customer_email)}">{escape(b.customer_email)}</a>'
        + (f", phone {escape(b.customer_phone)}" if b.customer_phone else "")
        + "</p><p>The booking now:</p><ul>"
        + "".join(f"<li>{escape(d)}</li>" for d in days)
        + "</ul>"
    )
    return emails.RenderedEmail(subject=subject, text=body, html=html)
